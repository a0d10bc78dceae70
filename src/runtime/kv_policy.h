// Which KV storage each layer gets and how many tokens stay full precision: the user-facing
// policy (--ctk/--ctv, --kv-profile, --kv-sink, --kv-buffer, --kv-buffer-ratio) resolved
// into the per-layer KvCacheConfig fields for a given model and prompt length.
//
// Profile text: comma-separated rules LAYERS=K/V applied in order (later rules win), where
// LAYERS is `*`, `N`, `A-B`, `first:N` or `last:N`, and K/V are cache type names
// (e.g. "first:2=q8_0/q8_0,last:2=q8_0/q8_0"). Named presets expand to such rules:
//   edges1 / edges2   the first and last 1 / 2 layers at q8_0 K and V
//   edges2-tq8        the same with tq8
#pragma once

#include <string>
#include <vector>

#include "kv/kv_cache.h"
#include "model/model.h"

namespace tqlm::runtime {

struct KvPolicy {
  // Cache type names (kv::KvType::Parse) or "auto": the measured default for each layer's head
  // size (AutoKvType).
  std::string k_type = "f16";
  std::string v_type = "f16";
  std::string profile;        // rules or a preset name; empty: every layer k_type/v_type
  int sink_tokens = 0;
  // A prompt that defines tools keeps its head (the rendered turns before the first user
  // message's text: system message and tool definitions) full precision, up to this many
  // tokens, as extra sinks; 0: off. See DefaultKvPolicy for why.
  int tools_head_max = 0;
  int recent_tokens = 0;      // fixed full-precision recent buffer
  double recent_ratio = 0;    // > 0: buffer = max(recent_floor, ceil(ratio × prompt tokens))
  int recent_floor = 128;
};

// The cache `tqlm run`, `chat` and `serve` use unless told otherwise: K and V "auto" (the
// model's calibration, else AutoKvType), 4 full-precision sink tokens, a tool-defining head kept full precision (up to
// kDefaultToolsHeadMax tokens), no recent buffer beyond the block being filled. The head rule
// is there because with K3/V2 and 4 sinks Qwen2.5-Coder missed tool calls that f16 made on
// 8K-token prompts at every buffer size, and with the head full precision it did not.
// Chosen by the rule of docs/RESULTS.md ("Default KV policy"): the smallest cache that passed
// every tested prompt length of the tool-calling sweep on Qwen2.5-Coder (no cliff at any buffer
// ratio), matched f16 on every needle cell that was run on both installed models, and met the
// evaluation issue's quality bars (ΔPPL <= 2%, KL divergence below llama.cpp q4_0's).
// --ctk f16 --ctv f16 gives the plain cache.
KvPolicy DefaultKvPolicy();
inline constexpr int kDefaultToolsHeadMax = 2048;

// What "auto" stands for on a layer when the model has no calibration (`tqlm calibrate`, read
// by the front ends; see eval/calib_file.h): the conservative built-in rule, TurboQuant K 8 bits
// / V 4 bits at every head size. On a hold-out book it met the calibration bar (mean KLD <= 0.01
// and ΔPPL <= 1% against f16) on SmolLM2 and Qwen2.5-Coder and missed it narrowly on Gemma 3
// (+1.01%, KLD 0.0128), where no compressed cache below 8.5 bits meets the KLD half
// (docs/RESULTS.md, "Calibrated KV defaults"); the former head-size rule (K3/V2 at head size
// >= 128) cost Gemma 3 +18% perplexity. The head size stays a parameter: a rule may need it.
kv::KvType AutoKvType(bool key, int head_dim);

struct ResolvedKv {
  std::vector<kv::KvType> k_types, v_types;  // per layer
  int sink_tokens = 0;
  int recent_tokens = 0;

  // "K/V" of the first layer, with " (per-layer)" when the layers differ: for logs.
  std::string Label() const;
};

// Per layer of `layers` (their head sizes resolve "auto"). `tools_head_tokens` is the length of
// the prompt's tool-defining head (0 when it defines no tools): sinks cover it up to
// policy.tools_head_max. Throws tqlm::Error for unknown type names, malformed rules,
// out-of-range layers or negative sizes.
ResolvedKv ResolveKvPolicy(const KvPolicy& policy, const std::vector<kv::LayerGeometry>& layers,
                           int prompt_tokens, int tools_head_tokens = 0);

// The policy with "auto" replaced by the type it stands for on `layers`, when that is one type
// for every layer (else left as "auto"): for names and result keys that must not change meaning
// when the auto rule does.
KvPolicy ConcreteKvPolicy(const KvPolicy& policy, const std::vector<kv::LayerGeometry>& layers);

// The cache configuration for `info`'s layers with the resolved types and buffers.
kv::KvCacheConfig MakeKvCacheConfig(const model::ModelInfo& info, const ResolvedKv& kv,
                                    int max_tokens);

// The rule text a preset name stands for, or the text itself when it is not a preset.
std::string ExpandKvProfilePreset(const std::string& profile);

}  // namespace tqlm::runtime
