#include "runtime/kv_policy.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <optional>

#include "tqlm/error.h"

namespace tqlm::runtime {
namespace {

int ParseInt(std::string_view s, const std::string& rule) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < 0)
    throw Error(fmt::format("kv profile: bad number '{}' in rule '{}'", s, rule));
  return v;
}

std::string Trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return std::string(s);
}

// A K or V type name of a policy, parsed once (unknown names throw): a fixed type, or "auto"
// (nullopt) resolved per layer.
std::optional<kv::KvType> ParseTypeOrAuto(const std::string& name) {
  if (name == "auto") return std::nullopt;
  return kv::KvType::Parse(name);
}

}  // namespace

kv::KvCacheConfig MakeKvCacheConfig(const model::ModelInfo& info, const ResolvedKv& kv,
                                    int max_tokens) {
  kv::KvCacheConfig config;
  config.layers = info.layers;
  config.k_types = kv.k_types;
  config.v_types = kv.v_types;
  config.attn_scale = info.attn_scale;
  config.max_tokens = max_tokens;
  config.sink_tokens = kv.sink_tokens;
  config.recent_tokens = kv.recent_tokens;
  return config;
}

KvPolicy DefaultKvPolicy() {
  KvPolicy p;
  p.k_type = "auto";
  p.v_type = "auto";
  p.sink_tokens = 4;
  p.tools_head_max = kDefaultToolsHeadMax;
  return p;
}

kv::KvType AutoKvType(bool key, int /*head_dim*/) {
  return kv::KvType::Parse(key ? "tq8" : "tq4");
}

std::string ResolvedKv::Label() const {
  if (k_types.empty()) return "none";
  std::string s = k_types[0].Name() + "/" + v_types[0].Name();
  for (size_t l = 1; l < k_types.size(); ++l) {
    if (k_types[l].Name() != k_types[0].Name() || v_types[l].Name() != v_types[0].Name())
      return s + " (per-layer)";
  }
  return s;
}

KvPolicy ConcreteKvPolicy(const KvPolicy& policy, const std::vector<kv::LayerGeometry>& layers) {
  KvPolicy p = policy;
  for (auto [name, key] : {std::pair{&p.k_type, true}, std::pair{&p.v_type, false}}) {
    if (*name != "auto" || layers.empty()) continue;
    const std::string first = AutoKvType(key, layers[0].head_dim).Name();
    bool uniform = true;
    for (const kv::LayerGeometry& g : layers)
      uniform = uniform && AutoKvType(key, g.head_dim).Name() == first;
    if (uniform) *name = first;
  }
  return p;
}

std::string ExpandKvProfilePreset(const std::string& profile) {
  static const std::map<std::string, std::string> presets = {
      {"edges1", "first:1=q8_0/q8_0,last:1=q8_0/q8_0"},
      {"edges2", "first:2=q8_0/q8_0,last:2=q8_0/q8_0"},
      {"edges2-tq8", "first:2=tq8/tq8,last:2=tq8/tq8"},
  };
  auto it = presets.find(profile);
  return it == presets.end() ? profile : it->second;
}

ResolvedKv ResolveKvPolicy(const KvPolicy& policy, const std::vector<kv::LayerGeometry>& layers,
                           int prompt_tokens, int tools_head_tokens) {
  const int n_layers = int(layers.size());
  auto type_at = [&](const std::optional<kv::KvType>& t, bool key, int layer) {
    return t ? *t : AutoKvType(key, layers[size_t(layer)].head_dim);
  };
  const std::optional<kv::KvType> k_all = ParseTypeOrAuto(policy.k_type);
  const std::optional<kv::KvType> v_all = ParseTypeOrAuto(policy.v_type);
  ResolvedKv r;
  for (int l = 0; l < n_layers; ++l) {
    r.k_types.push_back(type_at(k_all, true, l));
    r.v_types.push_back(type_at(v_all, false, l));
  }
  const std::string rules = ExpandKvProfilePreset(policy.profile);
  size_t start = 0;
  while (start < rules.size()) {
    size_t end = rules.find(',', start);
    if (end == std::string::npos) end = rules.size();
    const std::string rule = Trim(std::string_view(rules).substr(start, end - start));
    start = end + 1;
    if (rule.empty()) continue;
    const size_t eq = rule.find('='), slash = rule.find('/');
    if (eq == std::string::npos || slash == std::string::npos || slash < eq)
      throw Error(fmt::format("kv profile: rule '{}' is not LAYERS=K/V", rule));
    const std::string range = Trim(std::string_view(rule).substr(0, eq));
    const std::optional<kv::KvType> k =
        ParseTypeOrAuto(Trim(std::string_view(rule).substr(eq + 1, slash - eq - 1)));
    const std::optional<kv::KvType> v = ParseTypeOrAuto(Trim(std::string_view(rule).substr(slash + 1)));
    int lo = 0, hi = n_layers - 1;
    if (range == "*") {
    } else if (range.rfind("first:", 0) == 0) {
      hi = std::min(n_layers, ParseInt(std::string_view(range).substr(6), rule)) - 1;
    } else if (range.rfind("last:", 0) == 0) {
      lo = std::max(0, n_layers - ParseInt(std::string_view(range).substr(5), rule));
    } else if (const size_t dash = range.find('-'); dash != std::string::npos) {
      lo = ParseInt(std::string_view(range).substr(0, dash), rule);
      hi = ParseInt(std::string_view(range).substr(dash + 1), rule);
    } else {
      lo = hi = ParseInt(range, rule);
    }
    if (lo > hi + 1 || hi >= n_layers)
      throw Error(fmt::format("kv profile: layers '{}' outside 0..{}", range, n_layers - 1));
    for (int l = lo; l <= hi; ++l) {
      r.k_types[l] = type_at(k, true, l);
      r.v_types[l] = type_at(v, false, l);
    }
  }
  if (policy.sink_tokens < 0 || policy.tools_head_max < 0 || policy.recent_tokens < 0 ||
      policy.recent_ratio < 0 || tools_head_tokens < 0)
    throw Error("kv policy: sink, head and buffer sizes must be >= 0");
  r.sink_tokens =
      std::max(policy.sink_tokens, std::min(tools_head_tokens, policy.tools_head_max));
  r.recent_tokens = policy.recent_tokens;
  if (policy.recent_ratio > 0)
    r.recent_tokens = std::max({r.recent_tokens, policy.recent_floor,
                                int(std::ceil(policy.recent_ratio * prompt_tokens))});
  return r;
}

}  // namespace tqlm::runtime
