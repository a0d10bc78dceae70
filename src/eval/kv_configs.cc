#include "eval/kv_configs.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <set>

#include "kv/block_format.h"
#include "tqlm/error.h"

namespace tqlm::eval {
namespace {

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t end = s.find(sep, start);
    out.push_back(s.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) return out;
    start = end + 1;
  }
}

template <typename T>
T ParseNumber(const std::string& text, const std::string& entry) {
  T v{};
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size() || v < T(0))
    throw Error(fmt::format("kv config '{}': '{}' is not a non-negative number", entry, text));
  return v;
}

std::string Trim(const std::string& s) {
  const size_t a = s.find_first_not_of(' ');
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(' ') - a + 1);
}

}  // namespace

std::vector<NamedKvConfig> ParseKvConfigs(const std::string& list, const runtime::KvPolicy& base,
                                          const std::vector<kv::LayerGeometry>& layers,
                                          const runtime::KvPolicy* calibrated) {
  std::vector<NamedKvConfig> out;
  std::set<std::string> seen;
  for (const std::string& raw : Split(list, ',')) {
    const std::string entry = Trim(raw);
    if (entry.empty()) continue;
    const std::vector<std::string> parts = Split(entry, '+');
    const std::vector<std::string> kv = Split(parts[0], '/');
    if (kv.size() != 2 || kv[0].empty() || kv[1].empty())
      throw Error(fmt::format("kv config '{}': expected K/V types first (e.g. tq4/tq3)", entry));
    runtime::KvPolicy p = base;
    p.k_type = kv[0];
    p.v_type = kv[1];
    for (size_t i = 1; i < parts.size(); ++i) {
      const size_t eq = parts[i].find('=');
      if (eq == std::string::npos)
        throw Error(fmt::format("kv config '{}': option '{}' is not NAME=VALUE", entry, parts[i]));
      const std::string key = parts[i].substr(0, eq), value = parts[i].substr(eq + 1);
      if (key == "s") p.sink_tokens = ParseNumber<int>(value, entry);
      else if (key == "th") p.tools_head_max = ParseNumber<int>(value, entry);
      else if (key == "b") p.recent_tokens = ParseNumber<int>(value, entry);
      else if (key == "r") p.recent_ratio = ParseNumber<double>(value, entry);
      else if (key == "floor") p.recent_floor = ParseNumber<int>(value, entry);
      else if (key == "p") {
        p.profile = value;
        std::replace(p.profile.begin(), p.profile.end(), ';', ',');
      } else {
        throw Error(fmt::format("kv config '{}': unknown option '{}' (s, th, b, r, floor, p)",
                                entry, key));
      }
    }
    if (calibrated && p.k_type == "auto" && p.v_type == "auto" && p.profile.empty()) {
      p.k_type = calibrated->k_type;
      p.v_type = calibrated->v_type;
      p.profile = calibrated->profile;
    }
    runtime::ResolveKvPolicy(p, layers, 0);  // throws on unknown types or bad profiles
    p = runtime::ConcreteKvPolicy(p, layers);
    // Canonical name: types, then only the options that differ from "none".
    std::string name = p.k_type + "/" + p.v_type;
    if (p.sink_tokens > 0) name += fmt::format("+s={}", p.sink_tokens);
    if (p.tools_head_max > 0) name += fmt::format("+th={}", p.tools_head_max);
    if (p.recent_tokens > 0) name += fmt::format("+b={}", p.recent_tokens);
    if (p.recent_ratio > 0) name += fmt::format("+r={}+floor={}", p.recent_ratio, p.recent_floor);
    if (!p.profile.empty()) {
      std::string prof = p.profile;
      std::replace(prof.begin(), prof.end(), ',', ';');
      name += "+p=" + prof;
    }
    if (!seen.insert(name).second) {
      // "auto" may resolve to a configuration listed beside it (tq3/tq2 on 128-wide heads).
      if (entry.find("auto") != std::string::npos) continue;
      throw Error(fmt::format("kv config '{}' is listed twice", name));
    }
    out.push_back({name, p});
  }
  if (out.empty()) throw Error("no KV configuration given");
  return out;
}

namespace {

// tq8 (not tq8p) anywhere in a type or profile text.
bool MentionsTq8(const std::string& s) {
  for (size_t at = s.find("tq8"); at != std::string::npos; at = s.find("tq8", at + 3))
    if (at + 3 >= s.size() || s[at + 3] != 'p') return true;
  return false;
}

// tq8 rows before 2026-11-23 used the codec's per-vector layout with uncentered keys.
constexpr const char* kTq8Layout = "simd-centered";

bool UsesTq8(const nlohmann::json& kv) {
  for (const char* field : {"k_type", "v_type", "profile"})
    if (kv.contains(field) && kv[field].is_string() && MentionsTq8(kv[field].get<std::string>()))
      return true;
  return false;
}

}  // namespace

nlohmann::json KvPolicyJson(const runtime::KvPolicy& p) {
  nlohmann::json j = {{"k_type", p.k_type},
                      {"v_type", p.v_type},
                      {"profile", runtime::ExpandKvProfilePreset(p.profile)},
                      {"sink_tokens", p.sink_tokens},
                      {"recent_tokens", p.recent_tokens},
                      {"recent_ratio", p.recent_ratio},
                      {"recent_floor", p.recent_ratio > 0 ? p.recent_floor : 0}};
  if (UsesTq8(j)) j["tq8_layout"] = kTq8Layout;
  // Only when on, so rows recorded before the field existed keep their hashes.
  if (p.tools_head_max > 0) j["tools_head_max"] = p.tools_head_max;
  return j;
}

bool KvJsonCurrent(const nlohmann::json& kv) {
  return !kv.is_object() || !UsesTq8(kv) || kv.value("tq8_layout", "") == kTq8Layout;
}

double FormatBitsPerValue(const model::ModelInfo& info, const runtime::KvPolicy& policy) {
  const runtime::ResolvedKv kv = runtime::ResolveKvPolicy(policy, info.layers, 0);
  double bits = 0, values = 0;
  for (int l = 0; l < info.n_layer; ++l) {
    const kv::LayerGeometry& g = info.layers[size_t(l)];
    for (auto [type, role] : {std::pair{kv.k_types[size_t(l)], kv::TensorRole::kKey},
                              std::pair{kv.v_types[size_t(l)], kv::TensorRole::kValue}}) {
      const size_t block = kv::MakeBlockFormat(type, g.head_dim, role)->block_bytes();
      bits += 8.0 * double(block) * g.n_kv_heads;
      values += double(kv::kBlockTokens) * g.head_dim * g.n_kv_heads;
    }
  }
  return values > 0 ? bits / values : 0;
}

}  // namespace tqlm::eval
