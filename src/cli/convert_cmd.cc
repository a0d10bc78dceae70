// `tqlm convert`: a GGUF model's weight matrices to TurboQuant weights (tq2/tq3/tq4), other
// tensors kept or re-stored per --keep; the result is reopened and loaded before success.
#include <fmt/format.h>

#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "cli/progress.h"
#include "kernels/tensor_format.h"
#include "model/convert.h"
#include "tqlm/error.h"

namespace tqlm::cli {
namespace {

struct ConvertFlags {
  std::string input, output, wtype = "tq4";
  std::vector<std::string> keep;
  int threads = 2;
  bool quiet = false;
  bool no_load_check = false;
};

int RunConvert(const ConvertFlags& f) {
  model::ConvertOptions o;
  o.input = f.input;
  o.output = f.output;
  const model::TensorTarget w = model::ParseTensorTarget(f.wtype);
  if (w.keep || !kernels::IsTqWeight(w.type)) throw Error("--wtype must be tq2, tq3 or tq4");
  o.wtype = w.type;
  for (const std::string& k : f.keep) {
    const size_t eq = k.rfind('=');
    if (eq == std::string::npos || eq == 0) {
      throw Error(fmt::format("--keep '{}': expected TENSOR_GLOB=TYPE", k));
    }
    o.rules.push_back({k.substr(0, eq), model::ParseTensorTarget(k.substr(eq + 1))});
  }
  o.threads = f.threads;
  o.load_check = !f.no_load_check;
  ProgressBar bar("convert");
  if (!f.quiet) o.progress = [&](size_t done, size_t total, const std::string&) {
    bar.Update(double(done), double(total));
  };
  const model::ConvertReport r = model::ConvertModel(o);
  bar.Finish();
  for (const std::string& n : r.notes) std::printf("note: %s\n", n.c_str());
  std::printf("%s: %lld tensors re-encoded (matrices to %s unless --keep said otherwise), "
              "%lld kept; %.1f MiB -> %.1f MiB; matrices %.3f bits per weight\n",
              f.output.c_str(), (long long)r.converted_tensors, kernels::TypeName(o.wtype),
              (long long)r.kept_tensors, r.input_bytes / 1048576.0, r.output_bytes / 1048576.0,
              r.weights > 0 ? 8.0 * double(r.weight_bytes) / double(r.weights) : 0.0);
  return 0;
}

const CommandRegistration kRegistration{
    "convert", "rewrite a GGUF model with TurboQuant weights (tq2, tq3, tq4)",
    [](CLI::App& app) {
      auto f = std::make_shared<ConvertFlags>();
      app.add_option("-m,--model", f->input, "input GGUF model")->required();
      app.add_option("-o,--output", f->output, "output GGUF file (never the input)")->required();
      app.add_option("--wtype", f->wtype, "weight type of the matrices: tq2, tq3 or tq4")
          ->capture_default_str();
      app.add_option("--keep", f->keep,
                     "TENSOR_GLOB=TYPE (tq2 tq3 tq4 f32 f16 q8_0 keep) for matrices, first match "
                     "wins; repeatable. Default: token_embd and output kept (vectors always)")
          ->take_all();
      app.add_option("-t,--threads", f->threads, "encoding threads")->capture_default_str();
      app.add_flag("-q,--quiet", f->quiet, "no progress bar");
      app.add_flag("--no-load-check", f->no_load_check,
                   "accept an output that is no complete model (test files); the GGUF reader "
                   "still checks it");
      return [f] { return RunConvert(*f); };
    }};

}  // namespace
}  // namespace tqlm::cli
