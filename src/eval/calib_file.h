// The calibration file `tqlm calibrate` writes and `--ctk auto --ctv auto` reads:
// ~/.cache/tqlm/calib/<model sha256>.json, one small JSON object that names the model it was
// measured on (its sha256), the KV policy chosen (K/V types and per-layer profile), the bar it
// was chosen for and what was measured. A checksum over the rest of the object makes a
// truncated or hand-edited file fail to load; a file for another model, another format
// version or with a policy this build cannot resolve is refused too. The caller warns and
// falls back to the built-in rule: the file is a cache of a measurement, never trusted blindly.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "kv/kv_cache.h"
#include "runtime/kv_policy.h"

namespace tqlm::eval {

inline constexpr int kCalibFileVersion = 1;
inline constexpr const char* kCalibFileFormat = "tqlm-kv-calibration";

struct CalibFile {
  std::string model_sha256;  // 64 hex digits: the model file's sha256
  std::string model;         // the file name, for people reading the file
  std::string k_type, v_type;
  std::string profile;       // per-layer rules (runtime/kv_policy.h), may be empty
  double bits_per_value = 0;
  // The bar the policy was chosen for (0: not part of the bar) and what calibration measured.
  double max_kld = 0, max_dppl = 0, budget_bits = 0;
  double mean_kld = 0, delta_ppl = 0;
  std::string text;          // calibration text (file name) and its windows
  int ctx = 0, windows = 0;
  double seconds = 0;        // wall time of the calibration
  std::string tqlm_version;
  std::string numerics = "native";  // matmul activations measured with (native, float);
                                    // files without the field were measured with native
};

// The file's text (pretty JSON with the checksum field).
std::string SerializeCalibFile(const CalibFile& f);

// Parses `text`; throws tqlm::Error saying what is wrong (not JSON, another format or version,
// a missing or mistyped field, a checksum that does not match, a malformed sha256, texts or
// sizes out of range). Does not check which model it is for.
CalibFile ParseCalibFile(const std::string& text);

// The calibration path of a model: <cache_dir>/calib/<sha256>.json.
std::string CalibFilePath(const std::string& cache_dir, const std::string& model_sha256);

// Loads the calibration of the model whose sha256 is `model_sha256` and whose layers are
// `layers` (the policy must resolve on them). nullopt when there is no file; nullopt and a
// one-line reason in *warning when there is one that cannot be used.
std::optional<CalibFile> LoadCalibFile(const std::string& path, const std::string& model_sha256,
                                       const std::vector<kv::LayerGeometry>& layers,
                                       std::string* warning);

// `policy` with K and V "auto" (both, and no profile) replaced by the calibration at `path`
// when it is valid for the model (*calibrated true); otherwise `policy` unchanged, so "auto"
// resolves to the built-in rule (runtime::AutoKvType), with the reason in *warning when a
// file was there but refused.
runtime::KvPolicy ApplyCalibration(const runtime::KvPolicy& policy, const std::string& path,
                                   const std::string& model_sha256,
                                   const std::vector<kv::LayerGeometry>& layers, bool* calibrated,
                                   std::string* warning);

// Writes the file atomically (temporary file + rename), creating the directory.
void WriteCalibFile(const std::string& path, const CalibFile& f);

}  // namespace tqlm::eval
