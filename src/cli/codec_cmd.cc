// `tqlm codec`: the codec's proof. Measures every configuration of issue 2 on random unit
// vectors (distortion, inner-product bias and variance, one-core throughput) and prints a
// table, or a JSON array with --json, with the acceptance verdicts.
#include <cmath>
#include <cstdio>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/command.h"
#include "cli/progress.h"
#include "codec/codec_report.h"
#include "tqlm/error.h"

namespace tqlm::cli {
namespace {

struct CodecArgs {
  bool json = false;
  bool check = false;
  size_t vectors = 100000;
  std::vector<int> dims = {64, 128, 256};
  int threads = 0;
  uint64_t seed = 20250425;
};

std::string BitsText(double b) {
  return b == std::floor(b) ? fmt::format("{:.0f}", b) : fmt::format("{:.1f}", b);
}

nlohmann::json RowJson(const codec::ReportRow& r) {
  nlohmann::json j;
  j["variant"] = r.config.variant == codec::Variant::kMse ? "mse" : "prod";
  j["dim"] = r.config.dim;
  j["bits"] = r.config.bits;
  j["bits_per_value"] = r.bits_per_value;
  j["bytes_per_vector"] = r.bytes_per_vector;
  j["vectors"] = r.vectors;
  j["mse"] = r.mse;
  j["mse_stderr"] = r.mse_stderr;
  j["ip_bias"] = r.ip_bias;
  j["ip_bias_stderr"] = r.ip_bias_stderr;
  j["ip_var_times_d"] = r.ip_var_times_d;
  j["encode_vectors_per_s"] = r.encode_vectors_per_s;
  j["dot_vectors_per_s"] = r.dot_vectors_per_s;
  if (r.fp16_dot_vectors_per_s) {
    j["fp16_dot_vectors_per_s"] = *r.fp16_dot_vectors_per_s;
    j["dot_vs_fp16"] = *r.dot_vs_fp16;
  }
  j["acceptance"] = r.pass ? nlohmann::json(*r.pass ? "pass" : "fail") : nlohmann::json(nullptr);
  if (r.pass) j["acceptance_detail"] = r.verdict;
  return j;
}

void PrintTable(const std::vector<codec::ReportRow>& rows) {
  std::printf("%-7s %4s %5s %7s %6s %10s %20s %9s %11s %11s  %s\n", "variant", "dim", "bits",
              "bits/v", "bytes", "mse", "ip_bias ± stderr", "var*d", "encode/s", "dot/s",
              "acceptance");
  for (const auto& r : rows) {
    std::printf("%-7s %4d %5s %7.4f %6zu %10.6f %+9.2e ± %8.2e %9.5f %11.4g %11.4g  %s\n",
                r.config.variant == codec::Variant::kMse ? "mse" : "prod", r.config.dim,
                BitsText(r.config.bits).c_str(), r.bits_per_value, r.bytes_per_vector, r.mse,
                r.ip_bias, r.ip_bias_stderr, r.ip_var_times_d, r.encode_vectors_per_s,
                r.dot_vectors_per_s,
                r.pass ? fmt::format("{}: {}", *r.pass ? "PASS" : "FAIL", r.verdict).c_str() : "");
  }
  for (const auto& r : rows) {
    if (!r.fp16_dot_vectors_per_s) continue;
    std::printf(
        "\nd=%d b=%s, one core, %s: compressed dot %.4g vectors/s vs fp16 dot %.4g vectors/s "
        "(ratio %.2f); encode %.4g vectors/s\n",
        r.config.dim, BitsText(r.config.bits).c_str(), "same run", r.dot_vectors_per_s,
        *r.fp16_dot_vectors_per_s, *r.dot_vs_fp16, r.encode_vectors_per_s);
  }
}

int RunCodec(const CodecArgs& args) {
  if (args.vectors < 2) throw Error("codec: --vectors must be at least 2");
  codec::ReportOptions opt;
  opt.vectors = args.vectors;
  opt.seed = args.seed;
  opt.threads = args.threads > 0 ? args.threads
                                 : int(std::max(1u, std::thread::hardware_concurrency()));
  const auto configs = codec::DefaultReportConfigs(args.dims);
  std::vector<codec::ReportRow> rows;
  ProgressBar bar("codec");
  for (size_t i = 0; i < configs.size(); ++i) {
    bar.Update(double(i), double(configs.size()));
    rows.push_back(codec::MeasureConfig(configs[i], opt));
  }
  bar.Update(double(configs.size()), double(configs.size()));
  bar.Finish();
  int passed = 0, checked = 0;
  for (const auto& r : rows) {
    if (!r.pass) continue;
    ++checked;
    passed += *r.pass ? 1 : 0;
  }
  if (args.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& r : rows) out.push_back(RowJson(r));
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    PrintTable(rows);
  }
  std::fprintf(stderr, "codec: acceptance %d/%d passed\n", passed, checked);
  return args.check && passed != checked ? 1 : 0;
}

const CommandRegistration kRegistration{
    "codec", "Measure the TurboQuant codec: distortion, inner-product bias/variance, throughput",
    [](CLI::App& app) -> std::function<int()> {
      auto args = std::make_shared<CodecArgs>();
      app.add_flag("--json", args->json, "Print a JSON array instead of a table");
      app.add_option("--vectors", args->vectors, "Random unit vectors per configuration")
          ->capture_default_str();
      app.add_option("--dims", args->dims, "Head dimensions to sweep")
          ->delimiter(',')
          ->capture_default_str();
      app.add_option("--threads", args->threads,
                     "Threads for the statistics (0 = all cores); throughput uses one core")
          ->capture_default_str();
      app.add_option("--seed", args->seed, "Seed of the random test vectors")->capture_default_str();
      app.add_flag("--check", args->check, "Exit with status 1 if an acceptance check fails");
      return [args] { return RunCodec(*args); };
    }};

}  // namespace
}  // namespace tqlm::cli
