#include "eval/calib_file.h"

#include <fmt/format.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "eval/sha256.h"
#include "runtime/kv_policy.h"
#include "tqlm/error.h"

namespace tqlm::eval {
namespace {

// A calibration file is a few hundred bytes; anything far larger is not one.
constexpr size_t kMaxFileBytes = 64 * 1024;
constexpr size_t kMaxText = 4096;

nlohmann::json Body(const CalibFile& f) {
  return {{"format", kCalibFileFormat},
          {"version", kCalibFileVersion},
          {"model_sha256", f.model_sha256},
          {"model", f.model},
          {"policy", {{"k_type", f.k_type}, {"v_type", f.v_type}, {"profile", f.profile}}},
          {"bits_per_value", f.bits_per_value},
          {"bar", {{"max_kld", f.max_kld}, {"max_dppl", f.max_dppl}, {"budget_bits", f.budget_bits}}},
          {"measured",
           {{"mean_kld", f.mean_kld},
            {"delta_ppl", f.delta_ppl},
            {"text", f.text},
            {"ctx", f.ctx},
            {"windows", f.windows},
            {"seconds", f.seconds},
            {"numerics", f.numerics}}},
          {"tqlm_version", f.tqlm_version}};
}

std::string Checksum(const nlohmann::json& body) {
  return Sha256Hex(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

const nlohmann::json& Field(const nlohmann::json& j, const char* key, const char* where) {
  if (!j.is_object() || !j.contains(key))
    throw Error(fmt::format("calibration file: '{}' missing in {}", key, where));
  return j.at(key);
}

std::string Str(const nlohmann::json& j, const char* key, const char* where) {
  const nlohmann::json& v = Field(j, key, where);
  if (!v.is_string()) throw Error(fmt::format("calibration file: '{}' is not a string", key));
  std::string s = v.get<std::string>();
  if (s.size() > kMaxText) throw Error(fmt::format("calibration file: '{}' is too long", key));
  return s;
}

double Num(const nlohmann::json& j, const char* key, const char* where, double lo, double hi) {
  const nlohmann::json& v = Field(j, key, where);
  if (!v.is_number()) throw Error(fmt::format("calibration file: '{}' is not a number", key));
  const double d = v.get<double>();
  if (!std::isfinite(d) || d < lo || d > hi)
    throw Error(fmt::format("calibration file: '{}' = {} outside [{}, {}]", key, d, lo, hi));
  return d;
}

bool IsSha256Hex(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

}  // namespace

std::string SerializeCalibFile(const CalibFile& f) {
  nlohmann::json j = Body(f);
  j["checksum"] = Checksum(j);
  return j.dump(2) + "\n";
}

CalibFile ParseCalibFile(const std::string& text) {
  if (text.size() > kMaxFileBytes)
    throw Error(fmt::format("calibration file: {} bytes, more than a calibration file holds",
                            text.size()));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) throw Error("calibration file: not a JSON object");
  if (!j.contains("format") || j["format"] != kCalibFileFormat)
    throw Error("calibration file: not a tqlm KV calibration (format field)");
  const double version = Num(j, "version", "the file", 0, 1e9);
  if (version != kCalibFileVersion)
    throw Error(fmt::format("calibration file: version {} (this build reads version {})",
                            version, kCalibFileVersion));
  const std::string checksum = Str(j, "checksum", "the file");
  nlohmann::json body = j;
  body.erase("checksum");
  if (Checksum(body) != checksum)
    throw Error("calibration file: checksum mismatch (corrupt or edited)");
  CalibFile f;
  f.model_sha256 = Str(j, "model_sha256", "the file");
  if (!IsSha256Hex(f.model_sha256))
    throw Error("calibration file: model_sha256 is not 64 lowercase hex digits");
  f.model = Str(j, "model", "the file");
  const nlohmann::json& p = Field(j, "policy", "the file");
  f.k_type = Str(p, "k_type", "policy");
  f.v_type = Str(p, "v_type", "policy");
  f.profile = Str(p, "profile", "policy");
  if (f.k_type.empty() || f.v_type.empty() || f.k_type == "auto" || f.v_type == "auto")
    throw Error("calibration file: the policy must name concrete K and V types");
  f.bits_per_value = Num(j, "bits_per_value", "the file", 0, 64);
  const nlohmann::json& bar = Field(j, "bar", "the file");
  f.max_kld = Num(bar, "max_kld", "bar", 0, 1e6);
  f.max_dppl = Num(bar, "max_dppl", "bar", 0, 1e6);
  f.budget_bits = Num(bar, "budget_bits", "bar", 0, 64);
  const nlohmann::json& m = Field(j, "measured", "the file");
  f.mean_kld = Num(m, "mean_kld", "measured", 0, 1e6);
  f.delta_ppl = Num(m, "delta_ppl", "measured", -1, 1e6);
  f.text = Str(m, "text", "measured");
  f.ctx = int(Num(m, "ctx", "measured", 0, 1 << 24));
  f.windows = int(Num(m, "windows", "measured", 0, 1 << 20));
  f.seconds = Num(m, "seconds", "measured", 0, 1e9);
  f.numerics = m.contains("numerics") ? Str(m, "numerics", "measured") : "native";
  if (f.numerics != "native" && f.numerics != "float")
    throw Error("calibration file: numerics must be native or float");
  f.tqlm_version = Str(j, "tqlm_version", "the file");
  return f;
}

std::string CalibFilePath(const std::string& cache_dir, const std::string& model_sha256) {
  return cache_dir + "/calib/" + model_sha256 + ".json";
}

std::optional<CalibFile> LoadCalibFile(const std::string& path, const std::string& model_sha256,
                                       const std::vector<kv::LayerGeometry>& layers,
                                       std::string* warning) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::nullopt;
  auto refuse = [&](const std::string& why) -> std::optional<CalibFile> {
    if (warning) *warning = fmt::format("ignoring {}: {}", path, why);
    return std::nullopt;
  };
  std::ifstream in(path, std::ios::binary);
  if (!in) return refuse("cannot read it");
  std::string text(kMaxFileBytes + 1, '\0');
  in.read(text.data(), std::streamsize(text.size()));
  text.resize(size_t(in.gcount()));
  try {
    CalibFile f = ParseCalibFile(text);
    if (f.model_sha256 != model_sha256)
      return refuse(fmt::format("made for another model (sha256 {}…)", f.model_sha256.substr(0, 12)));
    runtime::KvPolicy p;
    p.k_type = f.k_type;
    p.v_type = f.v_type;
    p.profile = f.profile;
    runtime::ResolveKvPolicy(p, layers, 0);  // types and layer ranges valid for this model
    return f;
  } catch (const Error& e) {
    return refuse(e.what());
  }
}

runtime::KvPolicy ApplyCalibration(const runtime::KvPolicy& policy, const std::string& path,
                                   const std::string& model_sha256,
                                   const std::vector<kv::LayerGeometry>& layers, bool* calibrated,
                                   std::string* warning) {
  *calibrated = false;
  if (policy.k_type != "auto" || policy.v_type != "auto" || !policy.profile.empty()) return policy;
  const std::optional<CalibFile> f = LoadCalibFile(path, model_sha256, layers, warning);
  if (!f) return policy;
  runtime::KvPolicy p = policy;
  p.k_type = f->k_type;
  p.v_type = f->v_type;
  p.profile = f->profile;
  *calibrated = true;
  return p;
}

void WriteCalibFile(const std::string& path, const CalibFile& f) {
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!dir.empty()) std::filesystem::create_directories(dir, ec);
  const std::string tmp = fmt::format("{}.{}.tmp", path, ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary);
    out << SerializeCalibFile(f);
    if (!out) throw Error("cannot write " + tmp);
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw Error("cannot write " + path);
  }
}

}  // namespace tqlm::eval
