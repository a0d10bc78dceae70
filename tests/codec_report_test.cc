// The measurement behind `tqlm codec`: sane fields, thread-count independence, verdicts.
#include <gtest/gtest.h>

#include "codec/codec_report.h"

namespace tqlm::codec {
namespace {

ReportOptions Quick(int threads) {
  ReportOptions o;
  o.vectors = 3000;
  o.threads = threads;
  o.min_timing_s = 0.001;
  return o;
}

TEST(CodecReport, SweepCoversIssueConfigs) {
  const auto configs = DefaultReportConfigs({64, 128, 256});
  EXPECT_EQ(configs.size(), 30u);  // 3 dims x (7 mse + 3 prod)
}

TEST(CodecReport, MeasuresAndJudgesD128) {
  const ReportRow mse = MeasureConfig({Variant::kMse, 128, 3}, Quick(2));
  EXPECT_EQ(mse.vectors, 3000u);
  EXPECT_EQ(mse.bytes_per_vector, 50u);
  EXPECT_DOUBLE_EQ(mse.bits_per_value, 3.125);
  EXPECT_NEAR(mse.mse, 0.0340, 0.002);
  ASSERT_TRUE(mse.pass.has_value());
  EXPECT_TRUE(*mse.pass) << mse.verdict;
  ASSERT_TRUE(mse.dot_vs_fp16.has_value());  // the fp16 baseline row
  EXPECT_GT(mse.encode_vectors_per_s, 0);
  EXPECT_GT(mse.dot_vectors_per_s, 0);

  const ReportRow prod = MeasureConfig({Variant::kProd, 128, 3}, Quick(1));
  ASSERT_TRUE(prod.pass.has_value());
  EXPECT_NEAR(prod.ip_var_times_d, 0.182, 0.03);
  EXPECT_FALSE(prod.dot_vs_fp16.has_value());

  // No target outside d = 128 or for fractional widths.
  EXPECT_FALSE(MeasureConfig({Variant::kMse, 64, 2.5}, Quick(1)).pass.has_value());
}

TEST(CodecReport, StatisticsDoNotDependOnThreads) {
  const ReportRow a = MeasureConfig({Variant::kMse, 64, 2}, Quick(1));
  const ReportRow b = MeasureConfig({Variant::kMse, 64, 2}, Quick(3));
  EXPECT_EQ(a.mse, b.mse);
  EXPECT_EQ(a.ip_bias, b.ip_bias);
  EXPECT_EQ(a.ip_var_times_d, b.ip_var_times_d);
}

}  // namespace
}  // namespace tqlm::codec
