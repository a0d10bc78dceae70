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
#include "model/block_scratch.h"
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
  void Reserve(int n);
  // s_.q, s_.k, s_.v of n tokens at positions s_.pos from the residual stream s_.x: RMSNorm,
  // projections, biases, QK-norm and RoPE.
  void ProjectQkv(const LlamaLayer& L, int n, kernels::ThreadPool& pool);
  // The rest of the block once s_.att holds the attention output: Wo and the residual add,
  // then the feed-forward sub-layer and its residual add.
  void FinishBlock(const LlamaLayer& L, int n, kernels::ThreadPool& pool);

  int n_head_ = 0, n_head_kv_ = 0, head_dim_ = 0, n_ff_ = 0, rot_dim_ = 0;
  float eps_ = 1e-5f;
  bool neox_rope_ = false;
  std::vector<float> inv_freq_;
  kernels::WeightView tok_embd_, output_;
  const float* output_norm_ = nullptr;
  std::vector<LlamaLayer> layers_;

  BlockScratch s_;
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
  info_.weight_bytes = TensorDataBytes(f);
}

void LlamaModel::Reserve(int n) {
  s_.Reserve(n, info_.n_embd, n_head_ * head_dim_, n_head_kv_ * head_dim_, n_ff_);
}

void LlamaModel::ProjectQkv(const LlamaLayer& L, int n, kernels::ThreadPool& pool) {
  using namespace kernels;
  const int qd = n_head_ * head_dim_, kvd = n_head_kv_ * head_dim_;
  RmsNorm(s_.x.data(), L.attn_norm, 0.0f, eps_, n, info_.n_embd, s_.h.data());
  MatMul(L.wq, s_.h.data(), n, s_.q.data(), pool);
  MatMul(L.wk, s_.h.data(), n, s_.k.data(), pool);
  MatMul(L.wv, s_.h.data(), n, s_.v.data(), pool);
  if (L.bq) AddRows(s_.q.data(), L.bq, n, qd);
  if (L.bk) AddRows(s_.k.data(), L.bk, n, kvd);
  if (L.bv) AddRows(s_.v.data(), L.bv, n, kvd);
  if (L.q_norm) RmsNorm(s_.q.data(), L.q_norm, 0.0f, eps_, n * n_head_, head_dim_, s_.q.data());
  if (L.k_norm)
    RmsNorm(s_.k.data(), L.k_norm, 0.0f, eps_, n * n_head_kv_, head_dim_, s_.k.data());
  Rope(s_.q.data(), n, n_head_, head_dim_, rot_dim_, s_.pos.data(), inv_freq_.data(), neox_rope_);
  Rope(s_.k.data(), n, n_head_kv_, head_dim_, rot_dim_, s_.pos.data(), inv_freq_.data(),
       neox_rope_);
}

void LlamaModel::FinishBlock(const LlamaLayer& L, int n, kernels::ThreadPool& pool) {
  using namespace kernels;
  const int d = info_.n_embd;
  MatMul(L.wo, s_.att.data(), n, s_.h.data(), pool);
  Add(s_.x.data(), s_.h.data(), size_t(n) * d);
  // Feed-forward (SwiGLU).
  RmsNorm(s_.x.data(), L.ffn_norm, 0.0f, eps_, n, d, s_.h.data());
  MatMul(L.w_gate, s_.h.data(), n, s_.gate.data(), pool);
  MatMul(L.w_up, s_.h.data(), n, s_.up.data(), pool);
  SiluMul(s_.gate.data(), s_.up.data(), size_t(n) * n_ff_);
  MatMul(L.w_down, s_.gate.data(), n, s_.h.data(), pool);
  Add(s_.x.data(), s_.h.data(), size_t(n) * d);
}

void LlamaModel::Forward(const int* tokens, int n, kv::KvCache& cache, bool all_logits,
                         float* logits, kernels::ThreadPool& pool) {
  using namespace kernels;
  if (n <= 0) return;
  Reserve(n);
  const int d = info_.n_embd;
  const int pos0 = cache.n_tokens();
  for (int t = 0; t < n; ++t) {
    EmbedToken(tok_embd_, info_.n_vocab, tokens[t], &s_.x[size_t(t) * d]);
    s_.pos[t] = pos0 + t;
  }

  for (int l = 0; l < info_.n_layer; ++l) {
    const LlamaLayer& L = layers_[l];
    ProjectQkv(L, n, pool);
    cache.Append(l, s_.k.data(), s_.v.data(), n);
    cache.Attend(l, s_.q.data(), n, s_.att.data(), pool);
    FinishBlock(L, n, pool);
  }
  cache.Commit(n);

  const int first = all_logits ? 0 : n - 1;
  const int rows = n - first;
  RmsNorm(&s_.x[size_t(first) * d], output_norm_, 0.0f, eps_, rows, d, s_.h.data());
  MatMul(output_, s_.h.data(), rows, logits, pool);
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
    CheckTokenId(it.token, info_.n_vocab);  // before any cache is touched
  }
  Reserve(n);
  const int d = info_.n_embd, qd = n_head_ * head_dim_, kvd = n_head_kv_ * head_dim_;
  for (int t = 0; t < n; ++t) {
    EmbedToken(tok_embd_, info_.n_vocab, items[t].token, &s_.x[size_t(t) * d]);
    s_.pos[t] = items[t].cache.n_tokens();
  }

  for (int l = 0; l < info_.n_layer; ++l) {
    const LlamaLayer& L = layers_[l];
    ProjectQkv(L, n, pool);
    for (int t = 0; t < n; ++t) {
      kv::KvCache& cache = items[t].cache;
      cache.Append(l, &s_.k[size_t(t) * kvd], &s_.v[size_t(t) * kvd], 1);
      cache.Attend(l, &s_.q[size_t(t) * qd], 1, &s_.att[size_t(t) * qd], pool);
    }
    FinishBlock(L, n, pool);
  }
  for (const BatchItem& it : items) it.cache.Commit(1);

  const size_t nv = size_t(info_.n_vocab);
  batch_logits_.resize(size_t(n) * nv);
  RmsNorm(s_.x.data(), output_norm_, 0.0f, eps_, n, d, s_.h.data());
  MatMul(output_, s_.h.data(), n, batch_logits_.data(), pool);
  for (int t = 0; t < n; ++t)
    std::memcpy(items[t].logits, &batch_logits_[size_t(t) * nv], nv * sizeof(float));
}

}  // namespace

std::unique_ptr<Model> CreateLlamaFamily(std::unique_ptr<GgufFile> file) {
  return std::make_unique<LlamaModel>(std::move(file));
}

}  // namespace tqlm::model
