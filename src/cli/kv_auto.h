// What `--ctk auto --ctv auto` stands for on a model: the policy `tqlm calibrate` measured for
// it (~/.cache/tqlm/calib/<model sha256>.json) when that file is present and valid, else the
// built-in rule of runtime::AutoKvType. Shared by run, chat, serve, plan and the eval sweeps.
#pragma once

#include <string>

#include "cli/common_flags.h"
#include "model/model.h"
#include "runtime/kv_policy.h"

namespace tqlm::cli {

struct KvAuto {
  runtime::KvPolicy policy;  // `policy` given, with the calibrated types and profile if any
  bool calibrated = false;
  std::string source;        // where the K/V types came from, for logs and banners
};

// Replaces K and V "auto" (both, with no --kv-profile) by the model's calibration. A file that
// cannot be used is refused with a one-line warning on stderr; with `hint`, a missing one
// prints a one-line hint to run `tqlm calibrate`. Other policies are returned unchanged.
KvAuto ResolveKvAuto(const runtime::KvPolicy& policy, const std::string& model_path,
                     const model::ModelInfo& info, bool hint = true);

// f.session with its KV policy through ResolveKvAuto (run, chat).
runtime::SessionOptions SessionWithKvAuto(const ModelFlags& f, const model::ModelInfo& info);

// For eval sweeps: the calibrated policy standing for "auto/auto" entries (its file path in
// a note on stderr), or nullptr when the model has no usable calibration.
const runtime::KvPolicy* CalibratedAuto(const std::string& model_path,
                                        const model::ModelInfo& info);

// "K/V with layers RULES from SOURCE": one line for banners.
std::string DescribeKvAuto(const KvAuto& a, const model::ModelInfo& info);

}  // namespace tqlm::cli
