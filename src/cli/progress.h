// A one-line progress bar on stderr for long work (model load, prefill, sweeps).
#pragma once

#include <chrono>
#include <string>

namespace tqlm::cli {

class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  // Redraws at most every 100 ms, and always at done == total.
  void Update(double done, double total);
  void Finish();

 private:
  std::string label_;
  std::chrono::steady_clock::time_point start_, last_;
  bool drawn_ = false;
};

}  // namespace tqlm::cli
