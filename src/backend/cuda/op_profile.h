// Per-op GPU time of the CUDA backend, for PERF_NOTES: with TQLM_CUDA_PROFILE=1 in the
// environment every op is bracketed by CUDA events (which adds a little host work per op but
// no synchronization); the table (op, calls, GPU time, mean, share, and the gaps between ops)
// is printed to stderr when the backend is destroyed. Off, it costs one branch per op.
#pragma once

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

namespace tqlm::backend {

class OpProfile {
 public:
  OpProfile() : on_(std::getenv("TQLM_CUDA_PROFILE") != nullptr) {}
  ~OpProfile() {
    if (!on_) return;
    Resolve();
    double total = 0;
    for (const auto& [name, s] : stats_) total += s.ms;
    std::fprintf(stderr, "CUDA op profile (GPU time between events; %.3f ms in ops, %.3f ms in "
                 "gaps between consecutive ops):\n", total, gaps_ms_);
    std::fprintf(stderr, "%-18s %8s %12s %10s %7s\n", "op", "calls", "total ms", "mean us",
                 "share");
    for (const auto& [name, s] : stats_)
      std::fprintf(stderr, "%-18s %8ld %12.3f %10.2f %6.1f%%\n", name.c_str(), s.calls, s.ms,
                   1e3 * s.ms / double(s.calls), 100 * s.ms / total);
    for (auto& e : free_) cudaEventDestroy(e);
  }
  bool on() const { return on_; }

  // Marks the start / end of op `name` on `stream`.
  void Begin(cudaStream_t stream) {
    if (!on_) return;
    current_start_ = Event();
    cudaEventRecord(current_start_, stream);
  }
  void End(const char* name, cudaStream_t stream) {
    if (!on_) return;
    cudaEvent_t end = Event();
    cudaEventRecord(end, stream);
    pending_.push_back({name, current_start_, end});
    if (pending_.size() > 4096) Resolve();
  }
  // A synchronizing point (the output copied to the host): a new step's first op starts a new
  // chain of gaps.
  void Break() {
    if (on_) pending_.push_back({nullptr, nullptr, nullptr});
  }

 private:
  struct Mark {
    const char* name;
    cudaEvent_t start, end;
  };
  struct Stat {
    long calls = 0;
    double ms = 0;
  };
  cudaEvent_t Event() {
    if (free_.empty()) {
      cudaEvent_t e;
      cudaEventCreate(&e);
      return e;
    }
    cudaEvent_t e = free_.back();
    free_.pop_back();
    return e;
  }
  void Resolve() {
    cudaDeviceSynchronize();
    cudaEvent_t prev_end = nullptr;
    for (const Mark& m : pending_) {
      if (!m.name) {
        prev_end = nullptr;
        continue;
      }
      float ms = 0;
      cudaEventElapsedTime(&ms, m.start, m.end);
      Stat& s = stats_[m.name];
      ++s.calls;
      s.ms += ms;
      if (prev_end) {
        float gap = 0;
        cudaEventElapsedTime(&gap, prev_end, m.start);
        gaps_ms_ += gap;
        free_.push_back(prev_end);
      }
      free_.push_back(m.start);
      prev_end = m.end;
    }
    if (prev_end) free_.push_back(prev_end);
    pending_.clear();
  }

  bool on_;
  cudaEvent_t current_start_ = nullptr;
  std::vector<Mark> pending_;
  std::vector<cudaEvent_t> free_;
  std::map<std::string, Stat> stats_;
  double gaps_ms_ = 0;
};

}  // namespace tqlm::backend
