#include "cli/progress.h"

#include <cstdio>

namespace tqlm::cli {

ProgressBar::ProgressBar(std::string label)
    : label_(std::move(label)), start_(std::chrono::steady_clock::now()), last_(start_) {}

void ProgressBar::Update(double done, double total) {
  const auto now = std::chrono::steady_clock::now();
  if (done < total && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  const double frac = total > 0 ? done / total : 1.0;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double eta = frac > 0 ? elapsed * (1 - frac) / frac : 0;
  constexpr int kWidth = 30;
  const int fill = int(frac * kWidth + 0.5);
  std::fprintf(stderr, "\r%s [%.*s%*s] %5.1f%%  %.1fs elapsed, eta %.1fs ", label_.c_str(), fill,
               "##############################", kWidth - fill, "", 100 * frac, elapsed, eta);
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::Finish() {
  if (drawn_) std::fprintf(stderr, "\n");
  drawn_ = false;
}

}  // namespace tqlm::cli
