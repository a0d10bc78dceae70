// Calibration on a tiny random-weight model (tests/data/model/qwen3_tiny.gguf, 2 layers) whose
// layer 1 was made sensitive on purpose: its key norm weights are scaled up, so its attention
// scores are sharp and a coarse key code moves them; the calibration must give layer 1 the
// extra bits, in budget mode and in bar mode. Also the profile rules it writes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "eval/calibrate.h"
#include "eval/kv_configs.h"
#include "model/gguf.h"
#include "tqlm/error.h"

namespace tqlm::eval {
namespace {

struct TempPath {
  explicit TempPath(const std::string& name)
      : path(::testing::TempDir() + "tqlm_calibrate_" + std::to_string(::getpid()) + "_" + name) {
    std::filesystem::remove(path);
  }
  ~TempPath() {
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
  const std::string path;
};

// The tiny model with the F32 tensor `name` scaled by `factor`, written to `out`.
void WriteScaled(const std::string& out, const std::string& name, float factor) {
  const std::string src = std::string(TQLM_SOURCE_DIR) + "/tests/data/model/qwen3_tiny.gguf";
  std::ifstream in(src, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto f = model::GgufFile::Open(src);
  const model::GgufTensor& t = f->GetTensor(name);
  ASSERT_EQ(t.type, kernels::TensorType::kF32);
  const size_t n = size_t(t.ne[0] * t.ne[1] * t.ne[2] * t.ne[3]);
  char* p = bytes.data() + f->data_offset() + t.offset;
  for (size_t i = 0; i < n; ++i) {
    float v;
    std::memcpy(&v, p + 4 * i, 4);
    v *= factor;
    std::memcpy(p + 4 * i, &v, 4);
  }
  std::ofstream(out, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

struct CalibrateTiny : ::testing::Test {
  void SetUp() override {
    WriteScaled(model_path.path, "blk.1.attn_k_norm.weight", 6.0f);
    model = model::Model::Load(model_path.path);
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> tok(0, model->info().n_vocab - 1);
    for (int i = 0; i < 2 * kCtx; ++i) tokens.push_back(tok(rng));
    setup.model = model.get();
    setup.tokens = tokens;
    setup.ctx = kCtx;
    setup.windows = 1;
    setup.session.n_threads = 1;
    setup.session.batch = 64;  // chunks see the earlier blocks compressed
    setup.base = runtime::DefaultKvPolicy();
    setup.cell_base = {{"model", "qwen3_tiny_sensitive"}};
    setup.ladder = {{"tq2", "tq2"}, {"tq8", "tq8"}};
  }
  static constexpr int kCtx = 256;
  TempPath model_path{"model.gguf"};
  TempPath rows{"rows.jsonl"};
  std::unique_ptr<model::Model> model;
  std::vector<int> tokens;
  CalibSetup setup;
};

const CalibRow* Find(const CalibOutcome& o, const std::string& stage) {
  for (const CalibRow& r : o.table)
    if (r.stage == stage) return &r;
  return nullptr;
}

TEST_F(CalibrateTiny, BudgetGivesTheSensitiveLayerTheBits) {
  // Room for one of the two layers at tq8.
  runtime::KvPolicy lo = setup.base, hi = setup.base;
  lo.k_type = lo.v_type = "tq2";
  hi.k_type = hi.v_type = "tq8";
  CalibBar bar;
  bar.budget_bits = 0.5 * (FormatBitsPerValue(model->info(), lo) +
                           FormatBitsPerValue(model->info(), hi)) + 1e-6;
  ResultsFile results(rows.path);
  const CalibOutcome o = Calibrate(setup, bar, results);
  ASSERT_TRUE(o.complete);
  const CalibRow* l0 = Find(o, "layer 0");
  const CalibRow* l1 = Find(o, "layer 1");
  ASSERT_TRUE(l0 && l1);
  EXPECT_GT(l1->mean_kld, 2 * l0->mean_kld) << "layer 1 was not made sensitive";
  EXPECT_EQ(o.chosen.policy.k_type, "tq8");
  EXPECT_EQ(o.chosen.policy.profile, "0=tq2/tq2") << o.chosen.name;
  EXPECT_LE(o.chosen.bits, bar.budget_bits);
  // A rerun measures nothing: every cell is in the results file.
  ResultsFile again(rows.path);
  const CalibOutcome o2 = Calibrate(setup, bar, again);
  EXPECT_EQ(o2.cells_run, 0);
  EXPECT_EQ(o2.chosen.name, o.chosen.name);
}

TEST_F(CalibrateTiny, BarMovesOnlyTheInsensitiveLayerDown) {
  // First the costs per layer (budget mode's scan), then a bar between "layer 0 cheap" and
  // "both cheap": the calibration must keep layer 1 at tq8 and move layer 0 to tq2.
  runtime::KvPolicy hi = setup.base;
  hi.k_type = hi.v_type = "tq8";
  CalibBar probe;
  probe.budget_bits = FormatBitsPerValue(model->info(), hi) - 1e-6;
  ResultsFile results(rows.path);
  const CalibOutcome scan = Calibrate(setup, probe, results);
  const CalibRow* base = Find(scan, "scan base");
  const CalibRow* l0 = Find(scan, "layer 0");
  const CalibRow* l1 = Find(scan, "layer 1");
  ASSERT_TRUE(base && l0 && l1);
  CalibBar bar;
  bar.margin = 1;
  bar.max_dppl = 0;  // KLD only: ΔPPL of random text is noise
  bar.max_kld = l0->mean_kld + 0.5 * (l1->mean_kld - base->mean_kld);
  const CalibOutcome o = Calibrate(setup, bar, results);
  ASSERT_TRUE(o.complete);
  EXPECT_TRUE(o.met);
  EXPECT_EQ(o.chosen.policy.k_type, "tq8") << o.chosen.name;
  EXPECT_EQ(o.chosen.policy.profile, "0=tq2/tq2") << o.chosen.name;
}

// Rows carry the standard error of their ΔPPL (from the per-token NLL differences): zero
// only for a run equal to the reference, larger for a coarser cache.
TEST_F(CalibrateTiny, RowsCarryTheDpplStandardError) {
  CalibBar bar;
  bar.budget_bits = 1e-6 + FormatBitsPerValue(model->info(), [&] {
    runtime::KvPolicy p = setup.base;
    p.k_type = p.v_type = "tq2";
    return p;
  }());
  ResultsFile results(rows.path);
  const CalibOutcome o = Calibrate(setup, bar, results);
  ASSERT_TRUE(o.complete);
  const CalibRow* lo = Find(o, "uniform");
  const CalibRow* hi = Find(o, "scan base");
  ASSERT_TRUE(lo && hi);
  EXPECT_GT(lo->dppl_se, 0.0);
  EXPECT_GT(hi->dppl_se, 0.0);
  EXPECT_GT(lo->dppl_se, hi->dppl_se) << lo->name << " against " << hi->name;
}

// The ΔPPL half is judged less dppl_z standard errors; the KLD half as measured.
TEST(CalibrateRules, DpplHalfAllowsItsStandardError) {
  CalibBar bar;  // KLD 0.01, ΔPPL 1%, margin 0.7, one standard error
  CalibRow r;
  r.mean_kld = 0.005;
  r.delta_ppl = 0.008;
  r.dppl_se = 0.002;
  EXPECT_TRUE(MeetsBar(r, bar));
  r.dppl_se = 0.0005;
  EXPECT_FALSE(MeetsBar(r, bar));
  r.dppl_se = 0.002;
  bar.dppl_z = 0;
  EXPECT_FALSE(MeetsBar(r, bar));
  bar.dppl_z = 1;
  r.mean_kld = 0.0071;  // above 0.7 x 0.01 whatever the ΔPPL
  r.delta_ppl = -0.01;
  EXPECT_FALSE(MeetsBar(r, bar));
}

TEST(CalibrateRules, ProfileRulesMergeRanges) {
  EXPECT_EQ(ProfileRules({"tq4", "tq4", "tq8", "tq8", "tq4"}, {"tq3", "tq3", "tq4", "tq4", "tq3"},
                         "tq4", "tq3"),
            "2-3=tq8/tq4");
  EXPECT_EQ(ProfileRules({"tq2", "tq8", "tq2"}, {"tq2", "tq8", "tq2"}, "tq8", "tq8"),
            "0=tq2/tq2,2=tq2/tq2");
  EXPECT_EQ(ProfileRules({"tq8"}, {"tq8"}, "tq8", "tq8"), "");
}

}  // namespace
}  // namespace tqlm::eval
