#include "cli/common_flags.h"

#include <fmt/format.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "cli/model_names.h"
#include "kernels/cpu/matmul.h"
#include "runtime/kv_policy.h"
#include "runtime/proposer.h"
#include "runtime/sampling_limits.h"
#include "cli/progress.h"
#include "tqlm/error.h"

namespace tqlm::cli {

size_t ParseByteSize(const std::string& flag, const std::string& s) {
  double v = -1;
  const auto num = std::from_chars(s.data(), s.data() + s.size(), v, std::chars_format::fixed);
  const std::string unit(num.ptr, s.data() + s.size());
  double mult = -1;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "KiB" || unit == "K") mult = 1024.0;
  else if (unit == "MiB" || unit == "M") mult = 1024.0 * 1024;
  else if (unit == "GiB" || unit == "G") mult = 1024.0 * 1024 * 1024;
  else if (unit == "KB") mult = 1e3;
  else if (unit == "MB") mult = 1e6;
  else if (unit == "GB") mult = 1e9;
  if (num.ec != std::errc() || !(v >= 0) || mult < 0 || v * mult > 1e15)
    throw Error(fmt::format("{}: expected a size like 256MiB, 1GiB or 1000000, got '{}'", flag, s));
  return size_t(v * mult);
}

size_t ParseTokenCount(const std::string& flag, const std::string& s) {
  uint64_t v = 0;
  const auto num = std::from_chars(s.data(), s.data() + s.size(), v);
  const std::string unit(num.ptr, s.data() + s.size());
  uint64_t mult = 0;
  if (unit.empty()) mult = 1;
  else if (unit == "k" || unit == "K") mult = 1024;
  else if (unit == "m" || unit == "M") mult = 1024 * 1024;
  if (num.ec != std::errc() || mult == 0 || v > (uint64_t(1) << 24) / mult)
    throw Error(fmt::format("{}: expected a token count like 4096, 16k or 1M (at most 16M), got "
                            "'{}'", flag, s));
  return size_t(v * mult);
}

std::string DefaultModelPath() { return ModelCacheDir() + "/" + ModelAliases()[0].file; }

std::function<std::string(std::string)> TokenCount(std::string flag, bool allow_zero) {
  return [flag, allow_zero](std::string text) {
    try {
      const size_t n = ParseTokenCount(flag, text);
      if (n == 0 && !allow_zero) throw Error(flag + " must be at least 1");
      return std::to_string(n);
    } catch (const Error& e) {
      throw CLI::ValidationError(e.what());
    }
  };
}

void AddModelFlags(CLI::App& app, ModelFlags& f) {
  app.add_option("-m,--model", f.model,
                 "GGUF model file, or an installed model's file name or alias (tqlm models "
                 "lists them; default: " + DefaultModelPath() + ")")
      ->envname("TQLM_MODEL")
      ->transform(std::function<std::string(std::string)>([](std::string name) {
        try {
          return ResolveModel(name);
        } catch (const Error& e) {
          throw CLI::ValidationError(e.what());
        }
      }));
  app.add_option("--device", f.device,
                 "where the model runs: cpu, cuda (weights, activations and KV cache on the GPU) "
                 "or auto (cuda when this build has CUDA and a GPU is visible)")
      ->envname("TQLM_DEVICE")->capture_default_str();
  app.add_option("-c,--ctx-size", f.session.n_ctx, "context size in tokens (0: model's own)")
      ->envname("TQLM_CTX_SIZE")->capture_default_str()
      ->transform(TokenCount("--ctx-size", /*allow_zero=*/true));
  app.add_option("-t,--threads", f.session.n_threads, "threads (0: all cores)")
      ->envname("TQLM_THREADS")->capture_default_str()->check(CLI::Range(0, 1024));
  app.add_option("-b,--batch-size", f.session.batch, "prefill chunk in tokens")
      ->envname("TQLM_BATCH_SIZE")->capture_default_str()
      ->transform(TokenCount("--batch-size", /*allow_zero=*/false));
  app.add_flag("--flash-attn", f.flash_attn,
               "accepted for llama.cpp compatibility: tqlm's attention is always fused");
  app.add_option("--n-gpu-layers", f.n_gpu_layers,
                 "llama.cpp's offload count: > 0 puts the whole model on the GPU when one is usable "
                 "(as --device auto), 0 keeps it on the CPU")
      ->envname("TQLM_N_GPU_LAYERS")->check(CLI::Range(-1, 1 << 20));
  app.add_option("--numerics", f.numerics,
                 "matmul activations on the CPU: native (int8 where AVX-512 VNNI exists, fast) or "
                 "float (slower; calibrate's default, and for eval: measures what a KV cache alone "
                 "changes, without the int8 rounding that any upstream change re-draws)")
      ->envname("TQLM_NUMERICS")->capture_default_str()->check(CLI::IsMember({"native", "float"}));
  app.add_option("--ctk,--cache-type-k", f.session.kv.k_type,
                 "K cache type: auto f32 f16 q8_0 q4_0 tq2 tq2.5 tq3 tq3.5 tq4 tq8 (tqBp: QJL variant; "
                 "auto: the model's calibration (tqlm calibrate), else tq8 K / tq4 V)")
      ->envname("TQLM_CACHE_TYPE_K")->capture_default_str();
  app.add_option("--ctv,--cache-type-v", f.session.kv.v_type, "V cache type (as --ctk)")
      ->envname("TQLM_CACHE_TYPE_V")->capture_default_str();
  app.add_option("--kv-sink", f.session.kv.sink_tokens, "first N tokens kept full precision")
      ->envname("TQLM_KV_SINK")->capture_default_str();
  app.add_option("--kv-sink-tools", f.session.kv.tools_head_max,
                 "a prompt that defines tools keeps its head (system message and tool "
                 "definitions) full precision, up to N tokens (0: off)")
      ->envname("TQLM_KV_SINK_TOOLS")->capture_default_str();
  app.add_option("--kv-buffer", f.session.kv.recent_tokens,
                 "most recent N tokens kept full precision")
      ->envname("TQLM_KV_BUFFER")->capture_default_str();
  app.add_option("--kv-buffer-ratio", f.session.kv.recent_ratio,
                 "recent buffer as a fraction of the prompt (0: off), at least --kv-buffer-floor")
      ->envname("TQLM_KV_BUFFER_RATIO")->capture_default_str();
  app.add_option("--kv-buffer-floor", f.session.kv.recent_floor, "floor for --kv-buffer-ratio")
      ->envname("TQLM_KV_BUFFER_FLOOR")->capture_default_str();
  app.add_option("--kv-profile", f.session.kv.profile,
                 "per-layer K/V types: rules LAYERS=K/V (LAYERS: *, N, A-B, first:N, last:N) "
                 "or a preset (edges1, edges2, edges2-tq8)")
      ->envname("TQLM_KV_PROFILE");
}

void AddSamplerFlags(CLI::App& app, runtime::SamplerParams& p) {
  namespace lim = runtime::sampling_limits;
  auto in = [](lim::Range r) { return CLI::Range(r.lo, r.hi); };
  app.add_option("--temp", p.temperature, "temperature (0: greedy)")
      ->envname("TQLM_TEMP")->capture_default_str()->check(in(lim::kTemperature));
  app.add_option("--top-k", p.top_k, "top-k (0: off)")
      ->envname("TQLM_TOP_K")->capture_default_str()->check(in(lim::kTopK));
  app.add_option("--top-p", p.top_p, "top-p (1: off)")
      ->envname("TQLM_TOP_P")->capture_default_str()->check(in(lim::kTopP));
  app.add_option("--min-p", p.min_p, "min-p (0: off)")
      ->envname("TQLM_MIN_P")->capture_default_str()->check(in(lim::kMinP));
  app.add_option("--repeat-penalty", p.repeat_penalty, "repetition penalty (1: off)")
      ->envname("TQLM_REPEAT_PENALTY")->capture_default_str()->check(in(lim::kRepeatPenalty));
  app.add_option("--repeat-last-n", p.penalty_last_n, "tokens the penalties look back")
      ->envname("TQLM_REPEAT_LAST_N")->capture_default_str()->check(in(lim::kRepeatLastN));
  app.add_option("--presence-penalty", p.presence_penalty, "presence penalty")
      ->envname("TQLM_PRESENCE_PENALTY")->capture_default_str()
      ->check(in(lim::kPresencePenalty));
  app.add_option("--frequency-penalty", p.frequency_penalty, "frequency penalty")
      ->envname("TQLM_FREQUENCY_PENALTY")->capture_default_str()
      ->check(in(lim::kFrequencyPenalty));
  app.add_option("-s,--seed", p.seed, "random seed")->envname("TQLM_SEED")->capture_default_str();
}

void AddSpecFlags(CLI::App& app, SpecFlags& f) {
  app.add_option("--spec", f.mode,
                 "speculative decoding: none, ngram (prompt lookup: continue an earlier "
                 "occurrence of the last tokens) or draft (a small model of the same vocabulary, "
                 "-md); the output is unchanged, only faster")
      ->envname("TQLM_SPEC")->capture_default_str()->check(CLI::IsMember({"none", "ngram", "draft"}));
  app.add_option("--model-draft", f.draft_model, "draft model for --spec draft (GGUF file or "
                 "installed name; llama.cpp's -md); implies --spec draft")
      ->envname("TQLM_MODEL_DRAFT")
      ->transform(std::function<std::string(std::string)>([](std::string name) {
        try {
          return ResolveModel(name);
        } catch (const Error& e) {
          throw CLI::ValidationError(e.what());
        }
      }));
  app.add_option("--spec-max", f.params.max_draft, "most tokens proposed per step")
      ->envname("TQLM_SPEC_MAX")->capture_default_str()->check(CLI::Range(1, 256));
  app.add_option("--spec-ngram-min", f.params.ngram_min, "shortest suffix looked up (ngram)")
      ->capture_default_str()->check(CLI::Range(1, 64));
  app.add_option("--spec-ngram-max", f.params.ngram_max, "longest suffix looked up (ngram)")
      ->capture_default_str()->check(CLI::Range(1, 64));
  app.add_option("--spec-min-p", f.params.draft_min_p,
                 "the draft stops proposing when its top token's probability is below P")
      ->capture_default_str()->check(CLI::Range(0.0, 1.0));
  app.add_flag("!--spec-fixed", f.params.adaptive,
               "always propose --spec-max tokens when there are any (no adaptation)");
}

std::unique_ptr<DraftModel> ResolveSpec(SpecFlags& f, const ModelFlags& target_flags,
                                        const LoadedModel& target) {
  if (f.mode == "none" && !f.draft_model.empty()) f.mode = "draft";
  f.params.mode = runtime::ParseSpecMode(f.mode);
  if (f.params.ngram_min > f.params.ngram_max)
    throw Error(fmt::format("--spec-ngram-min {} is above --spec-ngram-max {}", f.params.ngram_min,
                            f.params.ngram_max));
  if (f.params.mode != runtime::SpecMode::kDraft) {
    if (!f.draft_model.empty()) throw Error("-md/--model-draft needs --spec draft");
    return nullptr;
  }
  if (f.draft_model.empty()) throw Error("--spec draft needs a draft model: -md FILE");
  auto out = std::make_unique<DraftModel>();
  ModelFlags df = target_flags;
  df.model = f.draft_model;
  df.session.kv = runtime::DefaultKvPolicy();
  out->lm = LoadModel(df);
  runtime::CheckDraftVocabulary(*target.tokenizer, *out->lm.tokenizer);
  out->session = std::make_unique<runtime::Session>(*out->lm.model, df.session);
  return out;
}

LoadedModel LoadModel(const ModelFlags& flags) {
  // llama.cpp's -ngl N offloads N layers; tqlm keeps a model on one device, so any N > 0 means
  // the GPU when one is usable (--device auto), and -ngl 0 the CPU.
  std::string device_name = flags.device;
  if (flags.n_gpu_layers > 0 && device_name == "cpu") device_name = "auto";
  if (flags.n_gpu_layers == 0) device_name = "cpu";
  LoadedModel out;
  kernels::SetMatMulNumerics(kernels::ParseMatMulNumerics(flags.numerics));
  const std::string path = flags.model.empty() ? DefaultModelPath() : flags.model;
  const auto t0 = std::chrono::steady_clock::now();
  const backend::Device device = backend::ResolveDevice(device_name);
  if (flags.n_gpu_layers > 0 && device == backend::Device::kCpu)
    std::fprintf(stderr, "note: -ngl %d: no usable GPU in this build or machine, running on the "
                 "CPU\n", flags.n_gpu_layers);
  ProgressBar bar("loading " + path.substr(path.find_last_of('/') + 1));
  out.model = model::Model::Load(
      path, [&](size_t done, size_t total) { bar.Update(double(done), double(total)); }, device);
  bar.Finish();
  if (device != backend::Device::kCpu)
    std::fprintf(stderr, "device: %s\n", out.model->backend().Describe().c_str());
  out.tokenizer = tokenizer::Tokenizer::FromGguf(out.model->file());
  out.chat = chat::MakeChatFormatter(out.tokenizer->vocab());
  out.load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

void WarnIfNoChatTemplate(const LoadedModel& lm) {
  if (!lm.tokenizer->vocab().chat_template.empty()) return;
  std::fprintf(stderr,
               "warning: %s has no chat template (likely a base model, not instruction-tuned); "
               "using a built-in %s format, replies may ramble\n",
               lm.model->info().name.c_str(), lm.model->info().arch.c_str());
}

}  // namespace tqlm::cli
