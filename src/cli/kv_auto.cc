#include "cli/kv_auto.h"

#include <fmt/format.h>

#include <cstdio>

#include "cli/eval_cmds.h"
#include "eval/calib_file.h"

namespace tqlm::cli {

KvAuto ResolveKvAuto(const runtime::KvPolicy& policy, const std::string& model_path,
                     const model::ModelInfo& info, bool hint) {
  KvAuto a;
  a.policy = policy;
  const bool k_auto = policy.k_type == "auto", v_auto = policy.v_type == "auto";
  if (!k_auto && !v_auto) {
    a.source = "--ctk/--ctv";
    return a;
  }
  a.source = "built-in rule (no calibration)";
  if (!k_auto || !v_auto || !policy.profile.empty()) return a;
  const std::string sha = ModelSha256(model_path);
  const std::string path = eval::CalibFilePath(CacheDir(), sha);
  std::string warning;
  a.policy = eval::ApplyCalibration(policy, path, sha, info.layers, &a.calibrated, &warning);
  if (!warning.empty()) std::fprintf(stderr, "warning: %s\n", warning.c_str());
  if (!a.calibrated) {
    if (hint)
      std::fprintf(stderr,
                   "hint: no KV calibration for this model: the built-in rule applies; "
                   "`tqlm calibrate -m %s` measures the smallest cache that meets the quality "
                   "bar (minutes)\n",
                   model_path.substr(model_path.find_last_of('/') + 1).c_str());
    return a;
  }
  a.source = "calibration " + path;
  return a;
}

runtime::SessionOptions SessionWithKvAuto(const ModelFlags& f, const model::ModelInfo& info) {
  runtime::SessionOptions o = f.session;
  o.kv = ResolveKvAuto(o.kv, ModelPathOf(f), info).policy;
  return o;
}

const runtime::KvPolicy* CalibratedAuto(const std::string& model_path,
                                        const model::ModelInfo& info) {
  static KvAuto a;  // one model per process
  a = ResolveKvAuto(runtime::DefaultKvPolicy(), model_path, info, /*hint=*/false);
  if (!a.calibrated) return nullptr;
  std::fprintf(stderr, "[eval] auto/auto entries: %s\n", DescribeKvAuto(a, info).c_str());
  return &a.policy;
}

std::string DescribeKvAuto(const KvAuto& a, const model::ModelInfo& info) {
  // The policy's own K/V and rules: ResolvedKv::Label names the first layer's types, which a
  // calibration's profile may have changed.
  const runtime::KvPolicy c = runtime::ConcreteKvPolicy(a.policy, info.layers);
  std::string s = c.k_type + "/" + c.v_type;
  if (!c.profile.empty()) s += " with layers " + c.profile;
  return s + " from " + a.source;
}

}  // namespace tqlm::cli
