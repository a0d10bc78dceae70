#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <sstream>

#include "cli/eval_cmds.h"
#include "cli/progress.h"
#include "eval/kv_configs.h"
#include "eval/sha256.h"
#include "kernels/cpu/matmul.h"
#include "kv/block_format.h"
#include "tqlm/error.h"

namespace tqlm::cli {

// Bump when the evaluation protocol changes in a way that makes old rows incomparable.
constexpr int kEvalProtocol = 1;
constexpr const char* kTqlmVersion = TQLM_VERSION;  // as `tqlm --version`

std::string CacheDir() {
  const std::string model = DefaultModelPath();  // <cache>/models/<file>
  return model.substr(0, model.rfind("/models/"));
}

std::string ModelPathOf(const ModelFlags& f) { return f.model.empty() ? DefaultModelPath() : f.model; }

std::string ReadTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteTextFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) throw Error("cannot write " + path);
}

std::string ModelSha256(const std::string& path) {
  return eval::CachedFileSha256(path, CacheDir() + "/sha256-cache.json");
}

nlohmann::json BaseCellConfig(const std::string& task, const std::string& model_path) {
  return {{"task", task},
          {"engine", "tqlm"},
          {"tqlm_version", kTqlmVersion},
          {"numerics", kernels::NumericsSignature()},
          {"protocol", kEvalProtocol},
          {"kv_key_centering", kv::KeyCenteringEnabled()},
          {"model", model_path.substr(model_path.find_last_of('/') + 1)},
          {"model_sha256", ModelSha256(model_path)}};
}

struct SweepProgressBar::State {
  explicit State(const std::string& label) : bar(label) {}
  ProgressBar bar;
  double done = 0, total = 0;  // cost of the cells before the current one, of all
};

SweepProgressBar::SweepProgressBar(const std::string& label)
    : state_(std::make_shared<State>(label)) {}

eval::SweepProgress SweepProgressBar::Callback() {
  return [s = state_](double done, double total, const std::string&) {
    s->bar.Update(done, total);
    if (done >= total) s->bar.Finish();
    s->done = done;
    s->total = total;
  };
}

void SweepProgressBar::Within(const eval::SweepCell& cell, double fraction) {
  State& s = *state_;
  if (s.total <= 0 || s.done >= s.total) return;
  s.bar.Update(std::min(s.total, s.done + std::clamp(fraction, 0.0, 1.0) * cell.cost), s.total);
}

eval::ResultsFile OpenResults(const std::string& path) {
  eval::ResultsFile r(path);
  if (r.truncated_bytes() > 0)
    std::fprintf(stderr,
                 "[eval] %s: ignoring a truncated last line (%zu bytes, a run killed mid-write); "
                 "it is cut off at the next write\n",
                 path.c_str(), r.truncated_bytes());
  return r;
}

std::vector<nlohmann::json> CurrentRows(const eval::ResultsFile& results,
                                        const std::string& numerics) {
  const std::string want = numerics.empty() ? kernels::NumericsSignature() : numerics;
  std::vector<nlohmann::json> out;
  for (const nlohmann::json& r : results.rows()) {
    const nlohmann::json& c = r.value("config", nlohmann::json::object());
    if (c.value("engine", "tqlm") == "tqlm" &&
        (c.value("tqlm_version", "") != kTqlmVersion ||
         c.value("numerics", "") != want ||
         c.value("kv_key_centering", false) != kv::KeyCenteringEnabled() ||
         !eval::KvJsonCurrent(c.value("kv", nlohmann::json::object()))))
      continue;
    out.push_back(r);
  }
  return out;
}

int ReportSweep(const eval::SweepSummary& s, const eval::ResultsFile& results) {
  std::fprintf(stderr, "[eval] %d cells: %d already in %s, %d run now%s\n", s.total, s.skipped,
               results.path().c_str(), s.ran,
               s.interrupted ? "; interrupted, rerun the same command to resume" : "");
  return s.interrupted ? 130 : 0;
}

}  // namespace tqlm::cli
