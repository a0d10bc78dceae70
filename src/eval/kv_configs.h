// KV configurations as evaluation sweeps name them: a comma-separated list of entries
//   K/V[+s=SINKS][+th=TOOLS_HEAD_MAX][+b=BUFFER][+r=RATIO][+floor=N][+p=PROFILE]
// e.g. "f16/f16,q4_0/q4_0,tq4/tq3,tq3/tq3+s=4+b=128,tq3/tq3+p=edges2". Each entry becomes a
// runtime::KvPolicy (validated by runtime::ResolveKvPolicy, the same code `tqlm run` uses);
// PROFILE is a preset name or rules separated by ';' (',' separates entries).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/model.h"
#include "runtime/kv_policy.h"

namespace tqlm::eval {

struct NamedKvConfig {
  std::string name;  // canonical text of the entry (options in a fixed order)
  runtime::KvPolicy policy;
};

// `base` supplies what an entry leaves out (the --kv-sink/--kv-buffer… flags); "auto" types
// become the types they stand for on `layers` (the model's), so names and result keys say what
// ran. With `calibrated` (the model's calibration, eval/calib_file.h), entries whose K and V are
// both "auto" and that name no profile take its types and profile instead, as `tqlm run` does.
// Throws tqlm::Error for malformed entries, unknown types, bad profiles or duplicates.
std::vector<NamedKvConfig> ParseKvConfigs(const std::string& list, const runtime::KvPolicy& base,
                                          const std::vector<kv::LayerGeometry>& layers,
                                          const runtime::KvPolicy* calibrated = nullptr);

// The policy's fields as JSON (part of a cell's configuration hash). Types whose storage changed
// after rows were recorded add a field naming the current layout ("tq8_layout"), so their old
// rows are neither reused nor summarized beside new ones.
nlohmann::json KvPolicyJson(const runtime::KvPolicy& policy);

// False for a row's "kv" JSON made with an older layout of one of its types (see KvPolicyJson).
bool KvJsonCurrent(const nlohmann::json& kv);

// Bits per cached K/V value when every token is stored in the configuration's (compressed)
// block layouts: whole blocks as allocated, averaged over layers, K and V (sinks and the
// recent buffer excluded; those are the effective figure measured on a real cache).
double FormatBitsPerValue(const model::ModelInfo& info, const runtime::KvPolicy& policy);

}  // namespace tqlm::eval
