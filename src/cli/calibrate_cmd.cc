// `tqlm calibrate`: measures, on a few windows of the installed corpus, which KV policy is the
// cheapest that keeps the model's predictions close to the f16 cache's (eval/calibrate.h), and
// writes it where `--ctk auto --ctv auto` finds it (eval/calib_file.h). The measurements are
// cells of a resumable results file beside it: Ctrl-C keeps what is done, a rerun goes on.
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "cli/command.h"
#include "cli/eval_cmds.h"
#include "cli/progress.h"
#include "eval/calib_file.h"
#include "eval/calibrate.h"
#include "eval/sha256.h"
#include "tqlm/error.h"

namespace tqlm::cli {
namespace {

struct CalibFlags {
  ModelFlags model;
  std::string file;  // default: the installed Persuasion (evaluations default to another book)
  int windows = 2;
  double budget_bits = 0;
  double max_kld = -1, max_dppl = -1;  // < 0: not given
  double margin = 0.7;
  double dppl_z = 1.0;
  std::string results;  // default: beside the calibration file
  bool dry_run = false;  // measure and print, write no calibration file
};

int Calibrate(const CalibFlags& f) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string path = f.file.empty() ? CacheDir() + "/corpus/persuasion.txt" : f.file;
  const std::string text = ReadTextFile(path);
  LoadedModel lm = LoadModel(f.model);
  const int ctx = f.model.session.n_ctx;
  if (ctx < 64) throw Error("calibrate: -c must be at least 64 tokens");
  if (f.windows < 1 || f.windows > 64) throw Error("calibrate: --windows must be in 1..64");
  // Only the first windows are used: tokenize a prefix that is surely long enough (a token is
  // rarely more than 8 bytes of English), the whole text when it is not.
  std::vector<int> tokens = lm.tokenizer->Encode(
      text.substr(0, size_t(f.windows) * size_t(ctx) * 8), false, false);
  if (tokens.size() < size_t(f.windows) * size_t(ctx))
    tokens = lm.tokenizer->Encode(text, false, false);

  eval::CalibBar bar;
  bar.margin = f.margin;
  bar.dppl_z = f.dppl_z;
  if (f.budget_bits > 0) {
    bar.budget_bits = f.budget_bits;
  } else if (f.max_kld >= 0 || f.max_dppl >= 0) {  // only what was given is the bar
    bar.max_kld = std::max(0.0, f.max_kld);
    bar.max_dppl = std::max(0.0, f.max_dppl);
  }
  const std::string model_path = ModelPathOf(f.model);
  eval::CalibSetup setup;
  setup.model = lm.model.get();
  setup.tokens = tokens;
  setup.ctx = ctx;
  setup.windows = f.windows;
  setup.session = f.model.session;
  setup.base = runtime::DefaultKvPolicy();  // sinks and the tools head as in run/chat/serve
  setup.cell_base = BaseCellConfig("calib", model_path);
  setup.cell_base["text"] = path.substr(path.find_last_of('/') + 1);
  setup.cell_base["text_sha256"] = eval::Sha256Hex(text);
  const std::string sha = setup.cell_base["model_sha256"];
  const std::string calib_path = eval::CalibFilePath(CacheDir(), sha);
  const std::string rows_path =
      f.results.empty() ? CacheDir() + "/calib/" + sha + ".rows.jsonl" : f.results;
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(rows_path).parent_path(), ec);
  eval::ResultsFile results = OpenResults(rows_path);
  std::fprintf(stderr,
               "calibrating %s on %d windows of %d tokens of %s, %s numerics (%s); rows in %s\n",
               lm.model->info().name.c_str(), f.windows, ctx,
               std::string(setup.cell_base["text"]).c_str(), f.model.numerics.c_str(),
               bar.budget_bits > 0 ? fmt::format("budget {} bits/value", bar.budget_bits).c_str()
                                   : fmt::format("bar: mean KLD <= {}, ΔPPL <= {}% (less {} s.e.), "
                                                 "margin {}",
                                                 bar.max_kld, 100 * bar.max_dppl, bar.dppl_z,
                                                 bar.margin)
                                         .c_str(),
               rows_path.c_str());
  ProgressBar pbar("calibrate");
  const eval::CalibOutcome o =
      eval::Calibrate(setup, bar, results, [&](int done, int expected, const std::string&) {
        pbar.Update(done, expected);
      });
  if (o.complete) pbar.Update(1, 1);  // the estimate of cells ahead may have been high
  pbar.Finish();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s", eval::CalibMarkdownTable(o).c_str());
  if (!o.complete) {
    std::fprintf(stderr, "calibrate: interrupted after %.0f s (%d cells measured, kept in %s); "
                 "rerun the same command to resume\n", seconds, o.cells_run, rows_path.c_str());
    return 130;
  }
  const eval::CalibRow& c = o.chosen;
  std::printf("\nchosen: %s  (%.3f bits/value, mean KLD %.5f, ΔPPL %+.2f%% ± %.2f%% on the "
              "sample)%s\n",
              c.name.c_str(), c.bits, c.mean_kld, 100 * c.delta_ppl, 100 * c.dppl_se,
              o.met ? "" : "  -- no candidate met the bar");
  std::printf("took %.0f s (%d cells measured, %d reused from %s)\n", seconds, o.cells_run,
              o.cells_reused, rows_path.c_str());
  if (f.dry_run) return 0;
  eval::CalibFile file;
  file.model_sha256 = sha;
  file.model = setup.cell_base["model"];
  file.k_type = c.policy.k_type;
  file.v_type = c.policy.v_type;
  file.profile = c.policy.profile;
  file.bits_per_value = c.bits;
  file.max_kld = bar.max_kld;
  file.max_dppl = bar.max_dppl;
  file.budget_bits = bar.budget_bits;
  file.mean_kld = c.mean_kld;
  file.delta_ppl = c.delta_ppl;
  file.text = setup.cell_base["text"];
  file.ctx = ctx;
  file.windows = f.windows;
  file.seconds = seconds;
  file.tqlm_version = setup.cell_base["tqlm_version"];
  file.numerics = f.model.numerics;
  eval::WriteCalibFile(calib_path, file);
  std::printf("wrote %s: --ctk auto --ctv auto (the default) now uses it for this model\n",
              calib_path.c_str());
  return 0;
}

CommandRegistration reg("calibrate", "measure the cheapest KV policy that meets a quality bar",
                        [](CLI::App& app) {
  auto f = std::make_shared<CalibFlags>();
  f->model.session.n_ctx = 512;  // -c: the window size, as in eval ppl
  f->model.session.batch = 64;   // one cache block per chunk, as in eval ppl
  // Float activations: with the native int8 ones any change upstream re-rolls the rounding of
  // every later matmul's activations, which alone costs ~0.01 KLD on Gemma 3 whatever the cache
  // (docs/RESULTS.md "Calibrated KV defaults"); calibration measures what the cache changes.
  f->model.numerics = "float";
  AddModelFlags(app, f->model);
  app.add_option("-f,--file", f->file, "calibration text (default: the installed Persuasion)");
  app.add_option("--windows", f->windows, "windows of -c tokens measured")->capture_default_str();
  auto* budget = app.add_option("--budget-bits", f->budget_bits,
                                "instead of a bar: the most precise policy within B bits per value");
  auto* kld = app.add_option("--max-kld", f->max_kld,
                             "bar: mean KL divergence vs f16 (nats/token; default 0.01 with "
                             "--max-dppl 0.01)");
  auto* dppl = app.add_option("--max-dppl", f->max_dppl,
                              "bar: perplexity increase vs f16 as a fraction (0.01 = 1%)");
  budget->excludes(kld)->excludes(dppl);
  app.add_option("--margin", f->margin,
                 "the sample must meet this fraction of the bar (room for unseen text)")
      ->capture_default_str()->check(CLI::Range(0.05, 1.0));
  app.add_option("--dppl-z", f->dppl_z,
                 "the ΔPPL half of the bar is met when ΔPPL less this many standard errors "
                 "(measured over the sample's tokens) meets it (0: the raw sample ΔPPL)")
      ->capture_default_str()->check(CLI::Range(0.0, 5.0));
  app.add_option("-o,--results", f->results,
                 "results JSONL of the measurements (resumed; default beside the calibration)");
  app.add_flag("--dry-run", f->dry_run, "measure and print, write no calibration file");
  return [f] { return Calibrate(*f); };
});

}  // namespace
}  // namespace tqlm::cli
