// The Llama family as GGUF names it: llama (Llama 2/3.x, SmolLM2), mistral, qwen2 (the same
// block with q/k/v biases and NeoX-style RoPE) and qwen3 (no biases; per-head RMSNorm of q and k
// before RoPE, "QK-norm", and a head size that need not be n_embd / n_head).
//
// One block, as the model card draws it:
//   h = x + Wo · Attention(RoPE(Wq·norm(x)), RoPE(Wk·norm(x)), Wv·norm(x))
//   x' = h + Wdown · (silu(Wgate·norm(h)) ⊙ Wup·norm(h))
// with RMSNorm, grouped-query attention (n_head_kv ≤ n_head) and optional tied embeddings.
#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <unordered_set>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/thread_pool.h"
#include "model/model.h"
#include "model/weights.h"
#include "tqlm/error.h"

namespace tqlm::model {
namespace {

struct LlamaLayer {
  const float* attn_norm = nullptr;
  kernels::WeightView wq, wk, wv, wo;
  const float *bq = nullptr, *bk = nullptr, *bv = nullptr;
  const float *q_norm = nullptr, *k_norm = nullptr;  // qwen3: per-head RMSNorm weights
  const float* ffn_norm = nullptr;
  kernels::WeightView w_gate, w_up, w_down;
};

class LlamaModel final : public Model {
 public:
  explicit LlamaModel(std::unique_ptr<GgufFile> file) : Model(std::move(file)) { LoadWeights(); }

  void Forward(const int* tokens, int n, kv::KvCache& cache, bool all_logits, float* logits,
               kernels::ThreadPool& pool) override;
  void ForwardBatch(std::span<const BatchItem> items, kernels::ThreadPool& pool) override;

 private:
  void LoadWeights();
  void EnsureScratch(int n);
  // q_, k_, v_ of n tokens at positions pos_ from the normalized input h_: projections, biases,
  // QK-norm and RoPE.
  void ProjectQkv(const LlamaLayer& L, int n, kernels::ThreadPool& pool);

  int n_head_ = 0, n_head_kv_ = 0, head_dim_ = 0, n_ff_ = 0, rot_dim_ = 0;
  float eps_ = 1e-5f;
  bool neox_rope_ = false;
  std::vector<float> inv_freq_;
  kernels::WeightView tok_embd_, output_;
  const float* output_norm_ = nullptr;
  std::vector<LlamaLayer> layers_;

  int scratch_tokens_ = 0;
  std::vector<float> x_, h_, q_, k_, v_, att_, gate_, up_;
  std::vector<int> pos_;
  std::vector<float> batch_logits_;  // ForwardBatch: all items' logits before scattering
};

void LlamaModel::LoadWeights() {
  const GgufFile& f = *file_;
  const std::string arch = f.GetString("general.architecture");
  auto key = [&](const char* suffix) { return fmt::format("{}.{}", arch, suffix); };

  info_.arch = arch;
  info_.name = f.GetString("general.name", arch);
  info_.n_embd = int(f.GetU32(key("embedding_length")));
  info_.n_layer = int(f.GetU32(key("block_count")));
  info_.n_ctx_train = int(f.GetU32(key("context_length"), 4096));
  n_head_ = int(f.GetU32(key("attention.head_count")));
  n_head_kv_ = int(f.GetU32(key("attention.head_count_kv"), uint32_t(n_head_)));
  if (n_head_ <= 0 || n_head_kv_ <= 0 || n_head_ % n_head_kv_ != 0)
    throw Error(fmt::format("{}: bad head counts {} / {}", f.name(), n_head_, n_head_kv_));
  head_dim_ = int(f.GetU32(key("attention.key_length"), uint32_t(info_.n_embd / n_head_)));
  n_ff_ = int(f.GetU32(key("feed_forward_length")));
  info_.n_ff = n_ff_;
  eps_ = f.GetF32(key("attention.layer_norm_rms_epsilon"), 1e-5f);
  rot_dim_ = int(f.GetU32(key("rope.dimension_count"), uint32_t(head_dim_)));
  if (rot_dim_ <= 0 || rot_dim_ > head_dim_ || rot_dim_ % 2 != 0)
    throw Error(fmt::format("{}: bad rope.dimension_count {}", f.name(), rot_dim_));
  neox_rope_ = arch == "qwen2" || arch == "qwen3";

  const float base = f.GetF32(key("rope.freq_base"), 10000.0f);
  inv_freq_.resize(rot_dim_ / 2);
  // Llama 3 rope scaling ships as per-frequency divisors in rope_freqs.weight.
  const float* freq_factors = nullptr;
  if (const GgufTensor* rf = f.FindTensor("rope_freqs.weight"))
    freq_factors = F32Vector(*rf, rot_dim_ / 2);
  for (int i = 0; i < rot_dim_ / 2; ++i) {
    inv_freq_[i] = float(std::pow(double(base), -2.0 * i / rot_dim_));
    if (freq_factors) inv_freq_[i] /= freq_factors[i];
  }

  const int d = info_.n_embd, q_dim = n_head_ * head_dim_, kv_dim = n_head_kv_ * head_dim_;
  tok_embd_ = Matrix(f.GetTensor("token_embd.weight"), d, -1);
  info_.n_vocab = int(tok_embd_.rows);
  output_norm_ = F32Vector(f.GetTensor("output_norm.weight"), d);
  const GgufTensor* out = f.FindTensor("output.weight");
  output_ = out ? Matrix(*out, d, info_.n_vocab) : tok_embd_;  // tied embeddings

  layers_.resize(info_.n_layer);
  for (int l = 0; l < info_.n_layer; ++l) {
    auto t = [&](const char* name) -> const GgufTensor& {
      return f.GetTensor(fmt::format("blk.{}.{}", l, name));
    };
    auto bias = [&](const char* name, int len) -> const float* {
      const GgufTensor* b = f.FindTensor(fmt::format("blk.{}.{}", l, name));
      return b ? F32Vector(*b, len) : nullptr;
    };
    LlamaLayer& L = layers_[l];
    L.attn_norm = F32Vector(t("attn_norm.weight"), d);
    L.wq = Matrix(t("attn_q.weight"), d, q_dim);
    L.wk = Matrix(t("attn_k.weight"), d, kv_dim);
    L.wv = Matrix(t("attn_v.weight"), d, kv_dim);
    L.wo = Matrix(t("attn_output.weight"), q_dim, d);
    L.bq = bias("attn_q.bias", q_dim);
    L.bk = bias("attn_k.bias", kv_dim);
    L.bv = bias("attn_v.bias", kv_dim);
    if (arch == "qwen3") {
      L.q_norm = F32Vector(t("attn_q_norm.weight"), head_dim_);
      L.k_norm = F32Vector(t("attn_k_norm.weight"), head_dim_);
    }
    L.ffn_norm = F32Vector(t("ffn_norm.weight"), d);
    L.w_gate = Matrix(t("ffn_gate.weight"), d, n_ff_);
    L.w_up = Matrix(t("ffn_up.weight"), d, n_ff_);
    L.w_down = Matrix(t("ffn_down.weight"), n_ff_, d);
  }

  info_.layers.assign(info_.n_layer, kv::LayerGeometry{n_head_, n_head_kv_, head_dim_, 0});
  info_.attn_scale = 1.0f / std::sqrt(float(head_dim_));
  info_.weight_bytes = 0;
  for (const auto& tensor : f.tensors()) info_.weight_bytes += tensor.nbytes;
}

void LlamaModel::EnsureScratch(int n) {
  if (n <= scratch_tokens_) return;
  scratch_tokens_ = n;
  const size_t d = info_.n_embd, qd = size_t(n_head_) * head_dim_,
               kvd = size_t(n_head_kv_) * head_dim_;
  x_.resize(n * d);
  h_.resize(n * d);
  q_.resize(n * qd);
  att_.resize(n * qd);
  k_.resize(n * kvd);
  v_.resize(n * kvd);
  gate_.resize(size_t(n) * n_ff_);
  up_.resize(size_t(n) * n_ff_);
  pos_.resize(n);
}

void LlamaModel::ProjectQkv(const LlamaLayer& L, int n, kernels::ThreadPool& pool) {
  using namespace kernels;
  const int qd = n_head_ * head_dim_, kvd = n_head_kv_ * head_dim_;
  MatMul(L.wq, h_.data(), n, q_.data(), pool);
  MatMul(L.wk, h_.data(), n, k_.data(), pool);
  MatMul(L.wv, h_.data(), n, v_.data(), pool);
  if (L.bq) AddRows(q_.data(), L.bq, n, qd);
  if (L.bk) AddRows(k_.data(), L.bk, n, kvd);
  if (L.bv) AddRows(v_.data(), L.bv, n, kvd);
  if (L.q_norm) RmsNorm(q_.data(), L.q_norm, 0.0f, eps_, n * n_head_, head_dim_, q_.data());
  if (L.k_norm) RmsNorm(k_.data(), L.k_norm, 0.0f, eps_, n * n_head_kv_, head_dim_, k_.data());
  Rope(q_.data(), n, n_head_, head_dim_, rot_dim_, pos_.data(), inv_freq_.data(), neox_rope_);
  Rope(k_.data(), n, n_head_kv_, head_dim_, rot_dim_, pos_.data(), inv_freq_.data(), neox_rope_);
}

void LlamaModel::Forward(const int* tokens, int n, kv::KvCache& cache, bool all_logits,
                         float* logits, kernels::ThreadPool& pool) {
  using namespace kernels;
  if (n <= 0) return;
  EnsureScratch(n);
  const int d = info_.n_embd;
  const int pos0 = cache.n_tokens();
  for (int t = 0; t < n; ++t) {
    if (tokens[t] < 0 || tokens[t] >= info_.n_vocab)
      throw Error(fmt::format("token id {} out of range [0, {})", tokens[t], info_.n_vocab));
    DequantizeRow(tok_embd_, tokens[t], &x_[size_t(t) * d]);
    pos_[t] = pos0 + t;
  }

  for (int l = 0; l < info_.n_layer; ++l) {
    const LlamaLayer& L = layers_[l];
    // Attention.
    RmsNorm(x_.data(), L.attn_norm, 0.0f, eps_, n, d, h_.data());
    ProjectQkv(L, n, pool);
    cache.Append(l, k_.data(), v_.data(), n);
    cache.Attend(l, q_.data(), n, att_.data(), pool);
    MatMul(L.wo, att_.data(), n, h_.data(), pool);
    Add(x_.data(), h_.data(), size_t(n) * d);
    // Feed-forward (SwiGLU).
    RmsNorm(x_.data(), L.ffn_norm, 0.0f, eps_, n, d, h_.data());
    MatMul(L.w_gate, h_.data(), n, gate_.data(), pool);
    MatMul(L.w_up, h_.data(), n, up_.data(), pool);
    SiluMul(gate_.data(), up_.data(), size_t(n) * n_ff_);
    MatMul(L.w_down, gate_.data(), n, h_.data(), pool);
    Add(x_.data(), h_.data(), size_t(n) * d);
  }
  cache.Commit(n);

  const int first = all_logits ? 0 : n - 1;
  const int rows = n - first;
  RmsNorm(&x_[size_t(first) * d], output_norm_, 0.0f, eps_, rows, d, h_.data());
  MatMul(output_, h_.data(), rows, logits, pool);
}

// The same block as Forward with one token per sequence: every matmul runs once over the n
// sequences' tokens (a matrix-matrix product that reads each weight block once), and only RoPE
// positions and attention differ per sequence (each against its own cache).
void LlamaModel::ForwardBatch(std::span<const BatchItem> items, kernels::ThreadPool& pool) {
  using namespace kernels;
  const int n = int(items.size());
  if (n == 0) return;
  std::unordered_set<const kv::KvCache*> seen;
  for (const BatchItem& it : items) {
    if (!seen.insert(&it.cache).second)
      throw Error("ForwardBatch: the same KV cache appears twice in one batch");
    if (it.token < 0 || it.token >= info_.n_vocab)
      throw Error(fmt::format("token id {} out of range [0, {})", it.token, info_.n_vocab));
  }
  EnsureScratch(n);
  const int d = info_.n_embd, qd = n_head_ * head_dim_, kvd = n_head_kv_ * head_dim_;
  for (int t = 0; t < n; ++t) {
    DequantizeRow(tok_embd_, items[t].token, &x_[size_t(t) * d]);
    pos_[t] = items[t].cache.n_tokens();
  }

  for (int l = 0; l < info_.n_layer; ++l) {
    const LlamaLayer& L = layers_[l];
    RmsNorm(x_.data(), L.attn_norm, 0.0f, eps_, n, d, h_.data());
    ProjectQkv(L, n, pool);
    for (int t = 0; t < n; ++t) {
      kv::KvCache& cache = items[t].cache;
      cache.Append(l, &k_[size_t(t) * kvd], &v_[size_t(t) * kvd], 1);
      cache.Attend(l, &q_[size_t(t) * qd], 1, &att_[size_t(t) * qd], pool);
    }
    MatMul(L.wo, att_.data(), n, h_.data(), pool);
    Add(x_.data(), h_.data(), size_t(n) * d);
    RmsNorm(x_.data(), L.ffn_norm, 0.0f, eps_, n, d, h_.data());
    MatMul(L.w_gate, h_.data(), n, gate_.data(), pool);
    MatMul(L.w_up, h_.data(), n, up_.data(), pool);
    SiluMul(gate_.data(), up_.data(), size_t(n) * n_ff_);
    MatMul(L.w_down, gate_.data(), n, h_.data(), pool);
    Add(x_.data(), h_.data(), size_t(n) * d);
  }
  for (const BatchItem& it : items) it.cache.Commit(1);

  const size_t nv = size_t(info_.n_vocab);
  batch_logits_.resize(size_t(n) * nv);
  RmsNorm(x_.data(), output_norm_, 0.0f, eps_, n, d, h_.data());
  MatMul(output_, h_.data(), n, batch_logits_.data(), pool);
  for (int t = 0; t < n; ++t)
    std::memcpy(items[t].logits, &batch_logits_[size_t(t) * nv], nv * sizeof(float));
}

}  // namespace

std::unique_ptr<Model> CreateLlamaFamily(std::unique_ptr<GgufFile> file) {
  return std::make_unique<LlamaModel>(std::move(file));
}

}  // namespace tqlm::model
