#include "eval/sweep.h"

#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <string>

#include "eval/sha256.h"
#include "kernels/cpu/attention_tq.h"
#include "kernels/cpu/matmul.h"

namespace tqlm::eval {
namespace {

std::atomic<int> g_sigints{0};

void OnSigint(int) {
  // Only async-signal-safe calls here: write() and _exit().
  if (g_sigints.fetch_add(1) == 0) {
    static const char msg[] = "\n[sweep] Ctrl-C: finishing the current cell, then stopping "
                              "(press again to exit now)\n";
    [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, msg, sizeof(msg) - 1);
  } else {
    ::_exit(130);
  }
}

// Installs the handler for the lifetime of a sweep and restores the previous one after.
class SigintScope {
 public:
  SigintScope() {
    g_sigints = 0;
    struct sigaction sa {};
    sa.sa_handler = OnSigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_);
  }
  ~SigintScope() { sigaction(SIGINT, &old_, nullptr); }

 private:
  struct sigaction old_ {};
};

// Which CPU kernels made a row: wall times, and the last bits of the numbers, depend on them.
std::string CpuKernels() {
  return fmt::format("matmul {}; tq attention {}", kernels::MatMulKernelSummary(),
                     kernels::TqKernelPathName(kernels::TqBestKernelPath()));
}

}  // namespace

std::string ConfigHash(const nlohmann::json& config) {
  return Sha256Hex(config.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
      .substr(0, 16);
}

int PendingCells(const ResultsFile& results, const std::vector<SweepCell>& cells) {
  int n = 0;
  for (const SweepCell& c : cells) n += !results.Has(ConfigHash(c.config));
  return n;
}

bool SweepStopRequested() { return g_sigints.load() > 0; }

bool ResetPeakRss() {
  // Linux >= 4.0: writing 5 to clear_refs resets VmHWM to the current RSS.
  std::ofstream f("/proc/self/clear_refs");
  if (!f) return false;
  f << "5";
  f.flush();
  return bool(f);
}

size_t PeakRssBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return size_t(std::stoull(line.substr(6))) * 1024;
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return size_t(usage.ru_maxrss) * 1024;  // KiB on Linux
}

SweepSummary RunSweep(ResultsFile& results, const std::vector<SweepCell>& cells,
                      const std::function<nlohmann::json(const SweepCell&)>& run,
                      const SweepProgress& progress) {
  SweepSummary s;
  s.total = int(cells.size());
  std::vector<const SweepCell*> todo;
  std::vector<std::string> hashes;
  for (const SweepCell& c : cells) {
    std::string h = ConfigHash(c.config);
    if (results.Has(h)) {
      ++s.skipped;
    } else {
      todo.push_back(&c);
      hashes.push_back(std::move(h));
    }
  }
  double total_cost = 0, done_cost = 0;
  for (const SweepCell* c : todo) total_cost += c->cost;
  SigintScope sigint;
  for (size_t i = 0; i < todo.size(); ++i) {
    if (SweepStopRequested()) {
      s.interrupted = true;
      break;
    }
    if (progress) progress(done_cost, total_cost, todo[i]->label);
    const bool cell_scope = ResetPeakRss();
    const auto t0 = std::chrono::steady_clock::now();
    const nlohmann::json result = run(*todo[i]);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    nlohmann::json row = {{"hash", hashes[i]},
                          {"config", todo[i]->config},
                          {"wall_seconds", wall},
                          {"peak_rss_bytes", PeakRssBytes()},
                          {"peak_rss_scope", cell_scope ? "cell" : "process"},
                          {"cpu_kernels", CpuKernels()}};
    for (auto it = result.begin(); it != result.end(); ++it) row[it.key()] = it.value();
    results.Append(row);
    ++s.ran;
    done_cost += todo[i]->cost;
  }
  if (progress && !s.interrupted) progress(total_cost, total_cost, "done");
  if (SweepStopRequested() && s.ran < int(todo.size())) s.interrupted = true;
  return s;
}

}  // namespace tqlm::eval
