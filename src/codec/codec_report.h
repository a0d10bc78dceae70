// The measurements behind `tqlm codec`: distortion, inner-product bias/variance and one-core
// throughput of one codec configuration, with the acceptance targets of issue 2.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "tqlm/codec.h"

namespace tqlm::codec {

struct ReportConfig {
  Variant variant = Variant::kMse;
  int dim = 128;
  double bits = 3;
};

struct ReportRow {
  ReportConfig config;
  double bits_per_value = 0;   // 8 * bytes_per_vector / dim: everything, norm included
  size_t bytes_per_vector = 0;
  size_t vectors = 0;          // random unit vectors measured
  double mse = 0;              // mean ‖u - û‖²
  double mse_stderr = 0;
  double ip_bias = 0;          // mean of <q, x̂> - <q, x>, q an independent random unit vector
  double ip_bias_stderr = 0;
  double ip_var_times_d = 0;   // variance of <q, x̂> - <q, x>, times dim
  double encode_vectors_per_s = 0;  // EncodeBatch, one core
  double dot_vectors_per_s = 0;     // DotBatch from the codes, one core
  // Only where asked (d = 128, b = 3 mse): a plain fp16 dot over the same number of vectors.
  std::optional<double> fp16_dot_vectors_per_s;
  std::optional<double> dot_vs_fp16;  // dot_vectors_per_s / fp16_dot_vectors_per_s
  // Acceptance, where issue 2 sets a target for this row.
  std::optional<bool> pass;
  std::string verdict;  // what was checked, with the numbers
};

struct ReportOptions {
  size_t vectors = 100000;
  int threads = 2;                 // for the statistics only; throughput is one core
  double min_timing_s = 0.1;      // per throughput figure
  uint64_t seed = 20250425;
  std::function<void(const std::string&)> progress;  // one line per step, may be empty
};

// Issue 2's sweep: dims x {mse: 1, 2, 2.5, 3, 3.5, 4, 8; prod: 2, 3, 4}.
std::vector<ReportConfig> DefaultReportConfigs(const std::vector<int>& dims);

ReportRow MeasureConfig(const ReportConfig& config, const ReportOptions& options);

// Targets, as quoted in issue 2 / docs/CODEC.md: Gaussian Lloyd–Max distortion for unit
// vectors (Max 1960; the paper rounds to 0.36, 0.117, 0.03, 0.009), and π/2 times the
// (b-1)-bit figure for the prod variance (the paper quotes ≈ 0.56, 0.18, 0.047).
inline constexpr double kGaussianLloydMaxMse[5] = {0, 0.3634, 0.1175, 0.03454, 0.009497};
inline constexpr double kProdVarTimesD[5] = {0, 0, 0.571, 0.185, 0.0543};
inline constexpr double kMseSlack = 1.01;
inline constexpr double kVarSlack = 1.05;
inline constexpr double kBiasSigmas = 3;

}  // namespace tqlm::codec
