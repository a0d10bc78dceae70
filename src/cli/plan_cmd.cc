// `tqlm plan`: which KV configuration fits a memory budget at a target context (or the
// longest context a configuration allows), with the arithmetic printed.
#include <fmt/format.h>

#include <cstdio>

#include "cli/command.h"
#include "cli/common_flags.h"
#include "runtime/memory_plan.h"
#include "tqlm/error.h"

namespace tqlm::cli {
namespace {

double MiB(size_t b) { return b / 1048576.0; }

void PrintEstimate(const runtime::KvPolicy& p, int ctx, const runtime::MemoryEstimate& m,
                   size_t budget) {
  std::printf(
      "  K=%-5s V=%-5s ctx %6d: weights %8.1f + KV compressed %8.1f + KV full-precision %7.1f "
      "+ activations %6.1f = %8.1f MiB %s budget %.1f MiB (KV %.2fx smaller than f16's %.1f)\n",
      p.k_type.c_str(), p.v_type.c_str(), ctx, MiB(m.weights), MiB(m.kv_compressed),
      MiB(m.kv_full), MiB(m.activations), MiB(m.total()), m.total() <= budget ? "<=" : "> ",
      MiB(budget), double(m.kv_f16) / double(std::max<size_t>(1, m.kv_compressed + m.kv_full)),
      MiB(m.kv_f16));
}

struct PlanFlags {
  ModelFlags model;
  std::string memory = "8GiB";
  std::string ctx = "32768";
  bool fixed_types = false;
};

int Plan(const PlanFlags& f) {
  if (f.model.device == "cuda")
    throw Error("plan --device cuda: not implemented yet (plan budgets host memory)");
  const size_t budget = ParseByteSize("--memory", f.memory);
  const std::string path = f.model.model.empty() ? DefaultModelPath() : f.model.model;
  auto model = model::Model::Load(path);
  const model::ModelInfo& info = model->info();
  const int batch = f.model.session.batch;
  const runtime::KvPolicy& base = f.model.session.kv;
  std::vector<runtime::KvPolicy> candidates =
      f.fixed_types ? std::vector<runtime::KvPolicy>{base} : runtime::PlanCandidates(base);
  std::printf("model %s: %d layers, %d KV heads x %d dims, trained context %d\n",
              info.name.c_str(), info.n_layer, info.layers[0].n_kv_heads, info.layers[0].head_dim,
              info.n_ctx_train);
  if (f.ctx == "max") {
    // Longest context per configuration, capped at 4x the trained context.
    for (const auto& p : candidates) {
      const int best = runtime::MaxContextThatFits(info, p, budget, batch, 4 * info.n_ctx_train);
      PrintEstimate(p, best, runtime::EstimateMemory(info, p, best, batch), budget);
    }
    return 0;
  }
  int ctx = 0;
  try {
    ctx = std::stoi(f.ctx);
  } catch (const std::exception&) {
    throw Error("--ctx: expected a number of tokens or 'max'");
  }
  if (ctx <= 0) throw Error("--ctx must be positive");
  for (const auto& p : candidates) {
    const runtime::MemoryEstimate m = runtime::EstimateMemory(info, p, ctx, batch);
    PrintEstimate(p, ctx, m, budget);
    if (m.total() <= budget) {
      std::printf("best fit: --ctk %s --ctv %s -c %d\n", p.k_type.c_str(), p.v_type.c_str(), ctx);
      return 0;
    }
  }
  std::printf("nothing fits: even the smallest configuration needs more than %.1f MiB at %d tokens\n",
              MiB(budget), ctx);
  return 3;
}

CommandRegistration reg("plan", "pick a KV configuration for a memory budget", [](CLI::App& app) {
  auto f = std::make_shared<PlanFlags>();
  AddModelFlags(app, f->model);
  app.add_option("--memory", f->memory, "memory budget (e.g. 8GiB, 512MiB)")->capture_default_str();
  app.add_option("--ctx", f->ctx, "target context in tokens, or 'max'")->capture_default_str();
  app.add_flag("--fixed", f->fixed_types, "evaluate only the --ctk/--ctv given, no search");
  return [f] { return Plan(*f); };
});

}  // namespace
}  // namespace tqlm::cli
