// The calibration file of `tqlm calibrate`: it round-trips; a corrupt, truncated, edited,
// foreign (another model's) or newer-version file is refused with a reason, never trusted;
// and "auto" without a file (or with a refused one) stays the built-in rule.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "eval/calib_file.h"
#include "eval/sha256.h"
#include "runtime/kv_policy.h"
#include "tqlm/error.h"

namespace tqlm::eval {
namespace {

const std::string kSha(64, 'a');

CalibFile Sample() {
  CalibFile f;
  f.model_sha256 = kSha;
  f.model = "model.gguf";
  f.k_type = "tq4";
  f.v_type = "tq3";
  f.profile = "0=tq8/tq4,2-3=tq8/tq3";
  f.bits_per_value = 4.25;
  f.max_kld = 0.01;
  f.max_dppl = 0.01;
  f.mean_kld = 0.0042;
  f.delta_ppl = -0.0012;
  f.text = "persuasion.txt";
  f.ctx = 512;
  f.windows = 3;
  f.seconds = 61.5;
  f.tqlm_version = "test";
  f.numerics = "float";
  return f;
}

std::vector<kv::LayerGeometry> Layers(int n) {
  return std::vector<kv::LayerGeometry>(size_t(n), kv::LayerGeometry{4, 2, 64, 0});
}

struct TempFile {
  TempFile() : path(::testing::TempDir() + "tqlm_calib_" + std::to_string(::getpid()) + ".json") {}
  ~TempFile() {
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
  void Write(const std::string& text) const { std::ofstream(path, std::ios::binary) << text; }
  const std::string path;
};

TEST(CalibFile, RoundTrips) {
  const CalibFile a = Sample();
  const CalibFile b = ParseCalibFile(SerializeCalibFile(a));
  EXPECT_EQ(b.model_sha256, a.model_sha256);
  EXPECT_EQ(b.k_type, a.k_type);
  EXPECT_EQ(b.v_type, a.v_type);
  EXPECT_EQ(b.profile, a.profile);
  EXPECT_EQ(b.bits_per_value, a.bits_per_value);
  EXPECT_EQ(b.mean_kld, a.mean_kld);
  EXPECT_EQ(b.delta_ppl, a.delta_ppl);
  EXPECT_EQ(b.ctx, a.ctx);
  EXPECT_EQ(b.windows, a.windows);
  EXPECT_EQ(b.numerics, a.numerics);
  EXPECT_EQ(SerializeCalibFile(b), SerializeCalibFile(a));
  TempFile t;
  WriteCalibFile(t.path, a);
  std::string warning;
  const auto loaded = LoadCalibFile(t.path, kSha, Layers(4), &warning);
  ASSERT_TRUE(loaded) << warning;
  EXPECT_TRUE(warning.empty());
  EXPECT_EQ(loaded->profile, a.profile);
}

TEST(CalibFile, RefusesCorruptAndEdited) {
  const std::string good = SerializeCalibFile(Sample());
  EXPECT_THROW(ParseCalibFile(""), Error);
  EXPECT_THROW(ParseCalibFile("[1,2]"), Error);
  EXPECT_THROW(ParseCalibFile(good.substr(0, good.size() / 2)), Error);  // truncated
  std::string edited = good;
  edited.replace(edited.find("\"tq4\""), 5, "\"tq2\"");  // a hand edit without a new checksum
  EXPECT_THROW(ParseCalibFile(edited), Error);
  CalibFile v = Sample();
  std::string newer = SerializeCalibFile(v);
  newer.replace(newer.find("\"version\": 1"), 12, "\"version\": 2");
  EXPECT_THROW(ParseCalibFile(newer), Error);
  CalibFile bad_sha = Sample();
  bad_sha.model_sha256 = "not-a-sha";
  EXPECT_THROW(ParseCalibFile(SerializeCalibFile(bad_sha)), Error);
  CalibFile auto_types = Sample();
  auto_types.k_type = "auto";
  EXPECT_THROW(ParseCalibFile(SerializeCalibFile(auto_types)), Error);
  EXPECT_THROW(ParseCalibFile(std::string(100000, ' ')), Error);  // far too large

  TempFile t;
  t.Write(edited);
  std::string warning;
  EXPECT_FALSE(LoadCalibFile(t.path, kSha, Layers(4), &warning));
  EXPECT_NE(warning.find("checksum"), std::string::npos) << warning;
}

TEST(CalibFile, RefusesForeignModelAndUnresolvablePolicy) {
  TempFile t;
  WriteCalibFile(t.path, Sample());
  std::string warning;
  EXPECT_FALSE(LoadCalibFile(t.path, std::string(64, 'b'), Layers(4), &warning));
  EXPECT_NE(warning.find("another model"), std::string::npos) << warning;
  warning.clear();
  // The profile names layer 3: a 2-layer model cannot take it.
  EXPECT_FALSE(LoadCalibFile(t.path, kSha, Layers(2), &warning));
  EXPECT_FALSE(warning.empty());
  CalibFile unknown = Sample();
  unknown.v_type = "tq9";
  WriteCalibFile(t.path, unknown);
  warning.clear();
  EXPECT_FALSE(LoadCalibFile(t.path, kSha, Layers(4), &warning));
  EXPECT_FALSE(warning.empty());
}

TEST(CalibFile, AutoWithoutFileFallsBackToTheBuiltInRule) {
  const runtime::KvPolicy def = runtime::DefaultKvPolicy();
  TempFile t;
  bool calibrated = true;
  std::string warning;
  runtime::KvPolicy p = ApplyCalibration(def, t.path, kSha, Layers(4), &calibrated, &warning);
  EXPECT_FALSE(calibrated);
  EXPECT_TRUE(warning.empty());  // no file: no warning (the caller prints a hint)
  const runtime::ResolvedKv r = runtime::ResolveKvPolicy(p, Layers(4), 0);
  for (int l = 0; l < 4; ++l) {
    EXPECT_EQ(r.k_types[size_t(l)].Name(), runtime::AutoKvType(true, 64).Name());
    EXPECT_EQ(r.v_types[size_t(l)].Name(), runtime::AutoKvType(false, 64).Name());
  }
  // A valid file replaces auto, with the sinks kept.
  WriteCalibFile(t.path, Sample());
  p = ApplyCalibration(def, t.path, kSha, Layers(4), &calibrated, &warning);
  EXPECT_TRUE(calibrated);
  EXPECT_EQ(p.k_type, "tq4");
  EXPECT_EQ(p.profile, Sample().profile);
  EXPECT_EQ(p.sink_tokens, def.sink_tokens);
  // A foreign one is refused with a warning and auto stays the rule.
  p = ApplyCalibration(def, t.path, std::string(64, 'c'), Layers(4), &calibrated, &warning);
  EXPECT_FALSE(calibrated);
  EXPECT_EQ(p.k_type, "auto");
  EXPECT_FALSE(warning.empty());
  // Explicit types are never replaced.
  runtime::KvPolicy fixed = def;
  fixed.k_type = "q8_0";
  fixed.v_type = "q8_0";
  p = ApplyCalibration(fixed, t.path, kSha, Layers(4), &calibrated, &warning);
  EXPECT_FALSE(calibrated);
  EXPECT_EQ(p.k_type, "q8_0");
}

// Files written before the numerics field were measured with native numerics; a numerics
// value this build does not know is refused (the checksum is recomputed as a writer would).
TEST(CalibFile, NumericsFieldIsOptionalAndChecked) {
  auto rewrite = [](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json j = nlohmann::json::parse(SerializeCalibFile(Sample()));
    j.erase("checksum");
    edit(j);
    j["checksum"] = Sha256Hex(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    return j.dump(2);
  };
  const CalibFile old = ParseCalibFile(rewrite([](nlohmann::json& j) { j["measured"].erase("numerics"); }));
  EXPECT_EQ(old.numerics, "native");
  EXPECT_EQ(ParseCalibFile(rewrite([](nlohmann::json&) {})).numerics, "float");
  EXPECT_THROW(ParseCalibFile(rewrite([](nlohmann::json& j) { j["measured"]["numerics"] = "int4"; })),
               Error);
}

}  // namespace
}  // namespace tqlm::eval
