// The sweep machinery on real files: configuration hashes, resume, a run killed mid-write
// (truncated last line), Ctrl-C semantics (first: finish the cell and stop; second: exit now).
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "eval/results_file.h"
#include "eval/sweep.h"
#include "tqlm/error.h"

namespace tqlm::eval {
namespace {

// A results file in the test temp directory, removed before and after the test.
struct TempPath {
  explicit TempPath(const std::string& name)
      : path(::testing::TempDir() + "tqlm_sweep_" + std::to_string(::getpid()) + "_" + name) {
    std::filesystem::remove(path);
  }
  ~TempPath() {
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
  operator const std::string&() const { return path; }
  const std::string path;
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<SweepCell> Cells(int n) {
  std::vector<SweepCell> cells;
  for (int i = 0; i < n; ++i) cells.push_back({{{"task", "t"}, {"i", i}}, "cell", 1.0});
  return cells;
}

TEST(EvalSweep, HashIsCanonicalAndSensitive) {
  const nlohmann::json a = {{"kv", "tq3/tq3"}, {"ctx", 512}, {"seed", 1}};
  nlohmann::json b = nlohmann::json::object();  // same fields inserted in another order
  b["seed"] = 1;
  b["ctx"] = 512;
  b["kv"] = "tq3/tq3";
  EXPECT_EQ(ConfigHash(a), ConfigHash(b));
  EXPECT_EQ(ConfigHash(a).size(), 16u);
  nlohmann::json c = a;
  c["seed"] = 2;
  EXPECT_NE(ConfigHash(a), ConfigHash(c));
  c = a;
  c["ctx"] = 512.5;
  EXPECT_NE(ConfigHash(a), ConfigHash(c));
}

TEST(EvalSweep, ResumeSkipsCellsPresent) {
  const TempPath tmp("resume.jsonl");
  const std::string& path = tmp;
  int calls = 0;
  auto run = [&](const SweepCell& c) {
    ++calls;
    return nlohmann::json{{"value", int(c.config["i"]) * 10}};
  };
  {
    ResultsFile r(path);
    const std::vector<SweepCell> first = Cells(3);
    const SweepSummary s = RunSweep(r, first, run);
    EXPECT_EQ(s.ran, 3);
    EXPECT_EQ(s.skipped, 0);
    EXPECT_FALSE(s.interrupted);
  }
  ResultsFile r(path);
  ASSERT_EQ(r.rows().size(), 3u);
  EXPECT_EQ(r.rows()[2]["value"], 20);
  EXPECT_EQ(r.rows()[1]["config"]["i"], 1);
  EXPECT_TRUE(r.rows()[0].contains("wall_seconds"));
  EXPECT_GT(r.rows()[0]["peak_rss_bytes"].get<double>(), 0);
  calls = 0;
  const SweepSummary s = RunSweep(r, Cells(5), run);  // two new cells
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(s.skipped, 3);
  EXPECT_EQ(s.ran, 2);
  EXPECT_EQ(ResultsFile(path).rows().size(), 5u);
  EXPECT_EQ(PendingCells(ResultsFile(path), Cells(6)), 1);
}

TEST(EvalSweep, TruncatedLastLineIsIgnoredReportedAndCutOff) {
  const TempPath tmp("trunc.jsonl");
  const std::string& path = tmp;
  {
    ResultsFile r(path);
    RunSweep(r, Cells(2), [](const SweepCell&) { return nlohmann::json{{"v", 1}}; });
  }
  const std::string good = Slurp(path);
  {  // a run killed in the middle of its write
    std::ofstream out(path, std::ios::app | std::ios::binary);
    out << R"({"hash":"abc","config":{"i":)";
  }
  ResultsFile r(path);
  EXPECT_EQ(r.rows().size(), 2u);
  EXPECT_EQ(r.truncated_bytes(), std::string(R"({"hash":"abc","config":{"i":)").size());
  const SweepSummary s = RunSweep(r, Cells(3), [](const SweepCell&) { return nlohmann::json{{"v", 2}}; });
  EXPECT_EQ(s.ran, 1);
  const std::string after = Slurp(path);
  ASSERT_EQ(after.substr(0, good.size()), good);  // earlier rows untouched
  ResultsFile again(path);
  EXPECT_EQ(again.truncated_bytes(), 0u);
  ASSERT_EQ(again.rows().size(), 3u);
  EXPECT_EQ(again.rows()[2]["v"], 2);
}

TEST(EvalSweep, CorruptCompleteLineIsAnError) {
  const TempPath tmp("corrupt.jsonl");
  const std::string& path = tmp;
  {
    std::ofstream out(path);
    out << R"({"hash":"a1","x":1})" << "\n" << "not json\n";
  }
  try {
    ResultsFile r(path);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
  }
}

TEST(EvalSweep, FirstSigintFinishesTheCellThenStops) {
  const TempPath tmp("sigint.jsonl");
  const std::string& path = tmp;
  ResultsFile r(path);
  int calls = 0;
  const SweepSummary s = RunSweep(r, Cells(4), [&](const SweepCell&) {
    if (++calls == 2) std::raise(SIGINT);  // Ctrl-C during the second cell
    return nlohmann::json{{"done", true}};
  });
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(s.ran, 2);
  EXPECT_TRUE(s.interrupted);
  EXPECT_EQ(ResultsFile(path).rows().size(), 2u);
  // The handler is gone after the sweep: a later sweep starts afresh and resumes.
  const SweepSummary rest = RunSweep(r, Cells(4), [](const SweepCell&) { return nlohmann::json{}; });
  EXPECT_EQ(rest.skipped, 2);
  EXPECT_EQ(rest.ran, 2);
  EXPECT_FALSE(rest.interrupted);
}

TEST(EvalSweepDeathTest, SecondSigintExitsAtOnce) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const TempPath tmp("sigint2.jsonl");
  const std::string& path = tmp;
  EXPECT_EXIT(
      {
        ResultsFile r(path);
        RunSweep(r, Cells(3), [](const SweepCell&) {
          std::raise(SIGINT);
          std::raise(SIGINT);
          return nlohmann::json{};
        });
        std::exit(0);
      },
      ::testing::ExitedWithCode(130), "");
  EXPECT_TRUE(ResultsFile(path).rows().empty());  // nothing half-written
}

}  // namespace
}  // namespace tqlm::eval
