// Flags shared by the commands that run a model (run, chat, serve, eval): llama.cpp's names,
// each with a TQLM_* environment-variable twin and its default shown in --help.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "model/model.h"
#include "runtime/sampler.h"
#include "runtime/session.h"
#include "runtime/spec_params.h"
#include "chat/chat_format.h"
#include "tokenizer/tokenizer.h"

namespace tqlm::cli {

struct ModelFlags {
  std::string model;  // empty: the default model in the cache
  std::string device = "cpu";  // cpu, cuda or auto (backend::ResolveDevice)
  runtime::SessionOptions session;
  bool flash_attn = false;  // llama.cpp's -fa: accepted, changes nothing
  int n_gpu_layers = -1;    // llama.cpp's -ngl: -1 unset
  std::string numerics = "native";  // matmul activations: native or float (kernels/cpu/matmul.h)
};

void AddModelFlags(CLI::App& app, ModelFlags& flags);
void AddSamplerFlags(CLI::App& app, runtime::SamplerParams& params);

// Speculative decoding (run, chat): --spec none|ngram|draft, --spec-max, --spec-ngram-min/max,
// --spec-min-p, -md/--model-draft (which implies --spec draft).
struct SpecFlags {
  std::string mode = "none";
  std::string draft_model;
  runtime::SpecParams params;  // .mode set by ResolveSpec
};
void AddSpecFlags(CLI::App& app, SpecFlags& flags);

// "8GiB", "512MiB", "2GB", "1000000": binary (K/KiB, M/MiB, G/GiB) and decimal (KB, MB, GB)
// units. Anything else, or more than 1e15 bytes, is an Error that names the flag.
size_t ParseByteSize(const std::string& flag, const std::string& text);

// "4096", "16k", "32K", "1M" (k = 1024 tokens, as llama.cpp's sizes): an Error naming the flag
// for anything else or more than 16M tokens.
size_t ParseTokenCount(const std::string& flag, const std::string& text);

// ~/.cache/tqlm/models/SmolLM2-135M-Instruct.Q4_1.gguf (or under $TQLM_CACHE).
std::string DefaultModelPath();

struct LoadedModel {
  std::unique_ptr<model::Model> model;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
  std::unique_ptr<chat::ChatFormatter> chat;
  double load_seconds = 0;
};
// Loads model + tokenizer with a progress bar on stderr.
LoadedModel LoadModel(const ModelFlags& flags);

// The draft model of -md with its own session (the default KV policy, the target's context and
// threads), after checking that it shares the target's vocabulary; nullptr without draft
// speculation. Also settles flags.params.mode (an Error for --spec draft without -md).
struct DraftModel {
  LoadedModel lm;
  std::unique_ptr<runtime::Session> session;
};
std::unique_ptr<DraftModel> ResolveSpec(SpecFlags& flags, const ModelFlags& target_flags,
                                        const LoadedModel& target);

// For commands that chat (chat, serve, run --chat): one line on stderr when the model has no
// chat template of its own (usually a base model, not instruction-tuned), so its rambling is
// not a surprise.
void WarnIfNoChatTemplate(const LoadedModel& lm);

}  // namespace tqlm::cli
