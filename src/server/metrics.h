// Counters of the HTTP front end and the Prometheus text exposition of /metrics: requests by
// endpoint and status, tokens, throughput, queue depth, KV bytes against their f16 equivalent,
// prompt-cache hits. Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "runtime/scheduler.h"

namespace tqlm::server {

class Metrics {
 public:
  Metrics() : start_(std::chrono::steady_clock::now()) {}
  void CountRequest(const std::string& endpoint, int status);
  // The exposition text for the current counters and the scheduler's snapshot.
  std::string Render(const runtime::SchedulerStats& s) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace tqlm::server
