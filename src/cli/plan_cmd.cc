// `tqlm plan`: which KV configuration fits a memory budget at a target context (or the
// longest context a configuration allows), with the arithmetic printed; --device cuda plans
// the GPU cache against the GPU's free memory.
#include <fmt/format.h>

#include <cstdio>
#include <vector>

#include "backend/device_memory.h"
#include "cli/command.h"
#include "cli/common_flags.h"
#include "cli/kv_auto.h"
#include "runtime/kv_policy.h"
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
  std::string ctx;            // --ctx: tokens ("16k" too) or "max"; empty: -c, else 32768
  bool ctx_from_c = false;    // -c/--ctx-size was given
  bool fixed_types = false;
  bool memory_given = false;  // --memory was given (else --device cuda budgets the GPU's free memory)
};

int Plan(const PlanFlags& f) {
  // --device cuda: the GPU's cache and workspace, against the GPU's free memory unless
  // --memory says otherwise (the weights go to the GPU too).
  const bool gpu = backend::ResolveDevice(f.model.device) == backend::Device::kCuda;
  const runtime::PlanDevice device = gpu ? runtime::PlanDevice::kCuda : runtime::PlanDevice::kCpu;
  size_t budget = ParseByteSize("--memory", f.memory);
  if (gpu && !f.memory_given) {
    budget = backend::DeviceFreeBytes(backend::Device::kCuda);
    std::printf("budget: the GPU's free memory, %.1f MiB\n", MiB(budget));
  }
  const std::string path = f.model.model.empty() ? DefaultModelPath() : f.model.model;
  auto model = model::Model::Load(path);
  const model::ModelInfo& info = model->info();
  const int batch = f.model.session.batch;
  const runtime::KvPolicy base = ResolveKvAuto(f.model.session.kv, path, info, false).policy;
  std::vector<runtime::KvPolicy> candidates =
      f.fixed_types ? std::vector<runtime::KvPolicy>{base} : runtime::PlanCandidates(base);
  if (gpu) {  // only the types the GPU cache takes
    std::erase_if(candidates, [&](const runtime::KvPolicy& p) { return !runtime::GpuTakesKv(info, p); });
    if (candidates.empty())
      throw Error("plan --device cuda: the GPU cache takes f16 and tq2..tq4, tq2.5, tq3.5, tq8 "
                  "(not q8_0, q4_0, f32 or tqBp)");
  }
  std::printf("model %s: %d layers, %d KV heads x %d dims, trained context %d\n",
              info.name.c_str(), info.n_layer, info.layers[0].n_kv_heads, info.layers[0].head_dim,
              info.n_ctx_train);
  const KvAuto auto_kv = ResolveKvAuto(runtime::DefaultKvPolicy(), path, info);
  std::printf("default KV policy (--ctk auto --ctv auto): %s\n",
              DescribeKvAuto(auto_kv, info).c_str());
  if (f.ctx == "max") {
    // Longest context per configuration, up to the context the model was trained for.
    const runtime::KvPolicy* best = nullptr;
    int best_ctx = 0;
    for (const auto& p : candidates) {
      const int c = runtime::MaxContextThatFits(info, p, budget, batch, info.n_ctx_train, device);
      PrintEstimate(p, c, runtime::EstimateMemory(info, p, c, batch, device), budget);
      if (c > best_ctx) {  // candidates go from most to least precise: ties keep precision
        best_ctx = c;
        best = &p;
      }
    }
    if (!best || best_ctx <= 0) {
      std::printf("nothing fits in %.1f MiB\n", MiB(budget));
      return 3;
    }
    std::printf("best fit: --ctk %s --ctv %s -c %d%s\n", best->k_type.c_str(),
                best->v_type.c_str(), best_ctx,
                best_ctx == info.n_ctx_train ? " (the trained context)" : "");
    return 0;
  }
  const int ctx = !f.ctx.empty()  ? int(ParseTokenCount("--ctx", f.ctx))
                  : f.ctx_from_c ? f.model.session.n_ctx
                                 : 32768;
  if (ctx <= 0) throw Error("--ctx must be positive");
  for (const auto& p : candidates) {
    const runtime::MemoryEstimate m = runtime::EstimateMemory(info, p, ctx, batch, device);
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
  app.add_option("--memory", f->memory,
                 "memory budget (e.g. 8GiB, 512MiB; with --device cuda default: the GPU's free memory)")
      ->capture_default_str();
  app.add_option("--ctx", f->ctx,
                 "target context in tokens (16k, 32K ...), or 'max' (default: -c, else 32768)");
  app.add_flag("--fixed", f->fixed_types, "evaluate only the --ctk/--ctv given, no search");
  CLI::Option* c = app.get_option("-c");
  CLI::Option* mem = app.get_option("--memory");
  return [f, c, mem] {
    f->ctx_from_c = c->count() > 0;
    f->memory_given = mem->count() > 0;
    return Plan(*f);
  };
});

}  // namespace
}  // namespace tqlm::cli
