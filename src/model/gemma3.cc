// Gemma 3 (GGUF architecture "gemma3"), text decoder.
//
// One block, as the model card draws it (every norm is RMSNorm):
//   q, k, v = Wq·norm(x), Wk·norm(x), Wv·norm(x)
//   q, k    = RoPE(qnorm(q)), RoPE(knorm(k))          per-head QK-norm, NeoX pairs
//   h       = x + postnorm(Wo · Attention(q, k, v))   scale 1/sqrt(query_pre_attn_scalar)
//   x'      = h + postnorm(Wdown · (gelu_tanh(Wgate·norm(h)) ⊙ Wup·norm(h)))
// with the embedding scaled by sqrt(n_embd) and tied output embeddings.
//
// Layers alternate between local sliding-window attention (RoPE base 10000) and global
// attention (RoPE base rope.freq_base): every `pattern`-th layer is global (6 in Gemma 3).
// The window goes into ModelInfo.layers so the KV cache keeps only what a local layer can see.
//
// Gemma's checkpoints store RMSNorm weights as (w - 1); llama.cpp's GGUF converter adds the 1
// back, so the GGUF holds w itself and every norm here uses offset 0.
#include <fmt/format.h>

#include <cmath>
#include <vector>

#include "backend/backend.h"
#include "model/block_scratch.h"
#include "model/model.h"
#include "model/weights.h"
#include "tqlm/error.h"

namespace tqlm::model {
namespace {

// Gemma 3's fixed hyper-parameters that its GGUF files do not carry (llama.cpp hard-codes the
// same values): the local layers' RoPE base and the local/global layer pattern.
constexpr float kLocalRopeBase = 10000.0f;
constexpr uint32_t kDefaultSwaPattern = 6;

struct Gemma3Layer {
  bool global = false;
  const float* attn_norm = nullptr;
  kernels::WeightView wq, wk, wv, wo;
  const float *q_norm = nullptr, *k_norm = nullptr;
  const float* post_attn_norm = nullptr;
  const float* ffn_norm = nullptr;
  kernels::WeightView w_gate, w_up, w_down;
  const float* post_ffn_norm = nullptr;
};

class Gemma3Model final : public Model {
 public:
  Gemma3Model(std::unique_ptr<GgufFile> file, std::unique_ptr<backend::Backend> backend)
      : Model(std::move(file), std::move(backend)) {
    s_.Bind(*backend_);
    LoadWeights();
  }

  void Forward(const int* tokens, int n, kv::KvCache& cache, bool all_logits, float* logits,
               kernels::ThreadPool& pool) override;

 private:
  void LoadWeights();

  int n_head_ = 0, n_head_kv_ = 0, head_dim_ = 0, n_ff_ = 0;
  float eps_ = 1e-6f;
  float embd_scale_ = 1.0f;
  float final_softcap_ = 0.0f;  // 0: none (Gemma 3); tanh capping of logits otherwise
  std::vector<float> inv_freq_local_host_, inv_freq_global_host_;
  const float *inv_freq_local_ = nullptr, *inv_freq_global_ = nullptr;
  kernels::WeightView tok_embd_, output_;
  const float* output_norm_ = nullptr;
  std::vector<Gemma3Layer> layers_;

  BlockScratch s_;
};

std::vector<float> InverseFrequencies(float base, float scale, int dims) {
  std::vector<float> f(dims / 2);
  for (int i = 0; i < dims / 2; ++i) f[i] = float(std::pow(double(base), -2.0 * i / dims)) * scale;
  return f;
}

void Gemma3Model::LoadWeights() {
  const GgufFile& f = *file_;
  auto key = [](const char* suffix) { return fmt::format("gemma3.{}", suffix); };

  info_.arch = "gemma3";
  info_.name = f.GetString("general.name", "gemma3");
  info_.n_embd = int(f.GetU32(key("embedding_length")));
  info_.n_layer = int(f.GetU32(key("block_count")));
  info_.n_ctx_train = int(f.GetU32(key("context_length"), 32768));
  n_head_ = int(f.GetU32(key("attention.head_count")));
  n_head_kv_ = int(f.GetU32(key("attention.head_count_kv"), uint32_t(n_head_)));
  if (info_.n_embd <= 0 || info_.n_layer <= 0)
    throw Error(fmt::format("{}: bad embedding length or block count", f.name()));
  if (n_head_ <= 0 || n_head_kv_ <= 0 || n_head_ % n_head_kv_ != 0)
    throw Error(fmt::format("{}: bad head counts {} / {}", f.name(), n_head_, n_head_kv_));
  head_dim_ = int(f.GetU32(key("attention.key_length"), 256));
  if (int(f.GetU32(key("attention.value_length"), uint32_t(head_dim_))) != head_dim_)
    throw Error(fmt::format("{}: key and value head sizes differ", f.name()));
  if (head_dim_ <= 0 || head_dim_ % 2 != 0)
    throw Error(fmt::format("{}: bad head size {}", f.name(), head_dim_));
  n_ff_ = int(f.GetU32(key("feed_forward_length")));
  info_.n_ff = n_ff_;
  eps_ = f.GetF32(key("attention.layer_norm_rms_epsilon"), 1e-6f);
  final_softcap_ = f.GetF32(key("final_logit_softcapping"), 0.0f);
  // Embeddings are multiplied by sqrt(n_embd) (in f32, as llama.cpp does).
  embd_scale_ = std::sqrt(float(info_.n_embd));

  const int window = int(f.GetU32(key("attention.sliding_window"), 0));
  const uint32_t pattern = f.GetU32(key("attention.sliding_window_pattern"), kDefaultSwaPattern);
  if (window < 0 || pattern == 0)
    throw Error(fmt::format("{}: bad sliding window {} / pattern {}", f.name(), window, pattern));

  // Global layers use the file's base and, for the long-context models, linear rope scaling;
  // local layers always use base 10000 unscaled.
  float global_scale = 1.0f;
  if (f.GetString(key("rope.scaling.type"), "none") == "linear") {
    const float factor = f.GetF32(key("rope.scaling.factor"), 1.0f);
    if (!(factor > 0)) throw Error(fmt::format("{}: bad rope scaling factor", f.name()));
    global_scale = 1.0f / factor;
  }
  inv_freq_global_host_ =
      InverseFrequencies(f.GetF32(key("rope.freq_base"), 1000000.0f), global_scale, head_dim_);
  inv_freq_local_host_ = InverseFrequencies(kLocalRopeBase, 1.0f, head_dim_);
  backend::Backend& b = *backend_;
  inv_freq_global_ = b.UploadVector(inv_freq_global_host_.data(), inv_freq_global_host_.size());
  inv_freq_local_ = b.UploadVector(inv_freq_local_host_.data(), inv_freq_local_host_.size());
  auto matrix = [&](const GgufTensor& t, int64_t cols, int64_t rows) {
    return b.UploadMatrix(Matrix(t, cols, rows));
  };
  auto vec = [&](const GgufTensor& t, int64_t len) {
    return b.UploadVector(F32Vector(t, len), size_t(len));
  };

  const int d = info_.n_embd, q_dim = n_head_ * head_dim_, kv_dim = n_head_kv_ * head_dim_;
  tok_embd_ = matrix(f.GetTensor("token_embd.weight"), d, -1);
  info_.n_vocab = int(tok_embd_.rows);
  output_norm_ = vec(f.GetTensor("output_norm.weight"), d);
  const GgufTensor* out = f.FindTensor("output.weight");
  output_ = out ? matrix(*out, d, info_.n_vocab) : tok_embd_;  // tied embeddings

  layers_.resize(info_.n_layer);
  info_.layers.clear();
  for (int l = 0; l < info_.n_layer; ++l) {
    auto t = [&](const char* name) -> const GgufTensor& {
      return f.GetTensor(fmt::format("blk.{}.{}", l, name));
    };
    Gemma3Layer& L = layers_[l];
    L.global = window == 0 || uint32_t(l) % pattern == pattern - 1;
    L.attn_norm = vec(t("attn_norm.weight"), d);
    L.wq = matrix(t("attn_q.weight"), d, q_dim);
    L.wk = matrix(t("attn_k.weight"), d, kv_dim);
    L.wv = matrix(t("attn_v.weight"), d, kv_dim);
    L.wo = matrix(t("attn_output.weight"), q_dim, d);
    L.q_norm = vec(t("attn_q_norm.weight"), head_dim_);
    L.k_norm = vec(t("attn_k_norm.weight"), head_dim_);
    L.post_attn_norm = vec(t("post_attention_norm.weight"), d);
    L.ffn_norm = vec(t("ffn_norm.weight"), d);
    L.w_gate = matrix(t("ffn_gate.weight"), d, n_ff_);
    L.w_up = matrix(t("ffn_up.weight"), d, n_ff_);
    L.w_down = matrix(t("ffn_down.weight"), n_ff_, d);
    L.post_ffn_norm = vec(t("post_ffw_norm.weight"), d);
    info_.layers.push_back(kv::LayerGeometry{n_head_, n_head_kv_, head_dim_, L.global ? 0 : window});
  }

  // Gemma 3 scales queries by 1/sqrt(query_pre_attn_scalar), which equals the head size for
  // every released size but 27B (n_embd / n_head there); the GGUF does not store it.
  const float pre_attn = f.GetF32(key("attention.query_pre_attn_scalar"), float(head_dim_));
  if (!(pre_attn > 0)) throw Error(fmt::format("{}: bad query_pre_attn_scalar", f.name()));
  info_.attn_scale = 1.0f / std::sqrt(pre_attn);
  info_.weight_bytes = TensorDataBytes(f);
}

void Gemma3Model::Forward(const int* tokens, int n, kv::KvCache& cache, bool all_logits,
                          float* logits, kernels::ThreadPool& pool) {
  if (n <= 0) return;
  backend::StepScope scope(*backend_, pool);
  backend::Backend& b = *backend_;
  const int d = info_.n_embd;
  s_.Reserve(n, d, n_head_ * head_dim_, n_head_kv_ * head_dim_, n_ff_);
  float *x = s_.x.data(), *h = s_.h.data(), *q = s_.q.data(), *k = s_.k.data(),
        *v = s_.v.data(), *att = s_.att.data(), *gate = s_.gate.data(), *up = s_.up.data();
  const int pos0 = cache.n_tokens();
  for (int t = 0; t < n; ++t) s_.pos[t] = pos0 + t;
  b.Embed(tok_embd_, tokens, n, embd_scale_, x);
  b.SetPositions(s_.pos.data(), n);

  for (int l = 0; l < info_.n_layer; ++l) {
    const Gemma3Layer& L = layers_[l];
    const float* inv_freq = L.global ? inv_freq_global_ : inv_freq_local_;
    // Attention.
    b.RmsNorm(x, L.attn_norm, 0.0f, eps_, n, d, h);
    b.MatMul(L.wq, h, n, q);
    b.MatMul(L.wk, h, n, k);
    b.MatMul(L.wv, h, n, v);
    b.RmsNorm(q, L.q_norm, 0.0f, eps_, n * n_head_, head_dim_, q);
    b.RmsNorm(k, L.k_norm, 0.0f, eps_, n * n_head_kv_, head_dim_, k);
    b.Rope(q, n, n_head_, head_dim_, head_dim_, inv_freq, /*neox=*/true);
    b.Rope(k, n, n_head_kv_, head_dim_, head_dim_, inv_freq, /*neox=*/true);
    b.AppendAttend(cache, l, k, v, q, n, att);
    b.MatMul(L.wo, att, n, h);
    b.RmsNorm(h, L.post_attn_norm, 0.0f, eps_, n, d, h);
    b.Add(x, h, size_t(n) * d);
    // Feed-forward (GELU-gated).
    b.RmsNorm(x, L.ffn_norm, 0.0f, eps_, n, d, h);
    b.MatMul(L.w_gate, h, n, gate);
    b.MatMul(L.w_up, h, n, up);
    b.GeluMul(gate, up, size_t(n) * n_ff_);
    b.MatMul(L.w_down, gate, n, h);
    b.RmsNorm(h, L.post_ffn_norm, 0.0f, eps_, n, d, h);
    b.Add(x, h, size_t(n) * d);
  }
  cache.Commit(n);

  const int first = all_logits ? 0 : n - 1;
  const int rows = n - first;
  const size_t count = size_t(rows) * info_.n_vocab;
  float* out = b.OutputBuffer(logits, count);
  b.RmsNorm(x + size_t(first) * d, output_norm_, 0.0f, eps_, rows, d, h);
  b.MatMul(output_, h, rows, out);
  if (final_softcap_ > 0) b.Softcap(out, final_softcap_, count);
  b.OutputToHost(out, logits, count);
}

}  // namespace

std::unique_ptr<Model> CreateGemma3(std::unique_ptr<GgufFile> file,
                                    std::unique_ptr<backend::Backend> backend) {
  return std::make_unique<Gemma3Model>(std::move(file), std::move(backend));
}

}  // namespace tqlm::model
