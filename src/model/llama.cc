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
#include <unordered_set>
#include <vector>

#include "backend/backend.h"
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
  LlamaModel(std::unique_ptr<GgufFile> file, std::unique_ptr<backend::Backend> backend)
      : Model(std::move(file), std::move(backend)) {
    s_.Bind(*backend_);
    batch_logits_.Bind(*backend_);
    LoadWeights();
  }

  void Forward(const int* tokens, int n, kv::KvCache& cache, bool all_logits, float* logits,
               kernels::ThreadPool& pool) override;
  void ForwardBatch(std::span<const BatchItem> items, kernels::ThreadPool& pool) override;

 private:
  void LoadWeights();
  void Reserve(int n);
  // s_.q, s_.k, s_.v of n tokens at positions s_.pos from the residual stream s_.x: RMSNorm,
  // projections, biases, QK-norm and RoPE.
  void ProjectQkv(const LlamaLayer& L, int n);
  // The rest of the block once s_.att holds the attention output: Wo and the residual add,
  // then the feed-forward sub-layer and its residual add.
  void FinishBlock(const LlamaLayer& L, int n);
  // Embeds the step's n tokens into s_.x and hands their positions to the backend.
  void BeginStep(const int* tokens, int n);

  int n_head_ = 0, n_head_kv_ = 0, head_dim_ = 0, n_ff_ = 0, rot_dim_ = 0;
  float eps_ = 1e-5f;
  bool neox_rope_ = false;
  std::vector<float> inv_freq_host_;
  const float* inv_freq_ = nullptr;
  kernels::WeightView tok_embd_, output_;
  const float* output_norm_ = nullptr;
  std::vector<LlamaLayer> layers_;

  BlockScratch s_;
  backend::Array<float> batch_logits_;  // ForwardBatch: all items' logits before scattering
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
  inv_freq_host_.resize(rot_dim_ / 2);
  // Llama 3 rope scaling ships as per-frequency divisors in rope_freqs.weight.
  const float* freq_factors = nullptr;
  if (const GgufTensor* rf = f.FindTensor("rope_freqs.weight"))
    freq_factors = F32Vector(*rf, rot_dim_ / 2);
  for (int i = 0; i < rot_dim_ / 2; ++i) {
    inv_freq_host_[i] = float(std::pow(double(base), -2.0 * i / rot_dim_));
    if (freq_factors) inv_freq_host_[i] /= freq_factors[i];
  }
  backend::Backend& b = *backend_;
  inv_freq_ = b.UploadVector(inv_freq_host_.data(), inv_freq_host_.size());
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
  for (int l = 0; l < info_.n_layer; ++l) {
    auto t = [&](const char* name) -> const GgufTensor& {
      return f.GetTensor(fmt::format("blk.{}.{}", l, name));
    };
    auto bias = [&](const char* name, int len) -> const float* {
      const GgufTensor* t = f.FindTensor(fmt::format("blk.{}.{}", l, name));
      return t ? vec(*t, len) : nullptr;
    };
    LlamaLayer& L = layers_[l];
    L.attn_norm = vec(t("attn_norm.weight"), d);
    L.wq = matrix(t("attn_q.weight"), d, q_dim);
    L.wk = matrix(t("attn_k.weight"), d, kv_dim);
    L.wv = matrix(t("attn_v.weight"), d, kv_dim);
    L.wo = matrix(t("attn_output.weight"), q_dim, d);
    L.bq = bias("attn_q.bias", q_dim);
    L.bk = bias("attn_k.bias", kv_dim);
    L.bv = bias("attn_v.bias", kv_dim);
    if (arch == "qwen3") {
      L.q_norm = vec(t("attn_q_norm.weight"), head_dim_);
      L.k_norm = vec(t("attn_k_norm.weight"), head_dim_);
    }
    L.ffn_norm = vec(t("ffn_norm.weight"), d);
    L.w_gate = matrix(t("ffn_gate.weight"), d, n_ff_);
    L.w_up = matrix(t("ffn_up.weight"), d, n_ff_);
    L.w_down = matrix(t("ffn_down.weight"), n_ff_, d);
  }

  info_.layers.assign(info_.n_layer, kv::LayerGeometry{n_head_, n_head_kv_, head_dim_, 0});
  info_.attn_scale = 1.0f / std::sqrt(float(head_dim_));
  info_.weight_bytes = TensorDataBytes(f);
}

void LlamaModel::Reserve(int n) {
  s_.Reserve(n, info_.n_embd, n_head_ * head_dim_, n_head_kv_ * head_dim_, n_ff_);
}

void LlamaModel::ProjectQkv(const LlamaLayer& L, int n) {
  backend::Backend& b = *backend_;
  const int qd = n_head_ * head_dim_, kvd = n_head_kv_ * head_dim_;
  b.RmsNorm(s_.x.data(), L.attn_norm, 0.0f, eps_, n, info_.n_embd, s_.h.data());
  b.MatMul(L.wq, s_.h.data(), n, s_.q.data());
  b.MatMul(L.wk, s_.h.data(), n, s_.k.data());
  b.MatMul(L.wv, s_.h.data(), n, s_.v.data());
  if (L.bq) b.AddRows(s_.q.data(), L.bq, n, qd);
  if (L.bk) b.AddRows(s_.k.data(), L.bk, n, kvd);
  if (L.bv) b.AddRows(s_.v.data(), L.bv, n, kvd);
  if (L.q_norm) b.RmsNorm(s_.q.data(), L.q_norm, 0.0f, eps_, n * n_head_, head_dim_, s_.q.data());
  if (L.k_norm)
    b.RmsNorm(s_.k.data(), L.k_norm, 0.0f, eps_, n * n_head_kv_, head_dim_, s_.k.data());
  b.Rope(s_.q.data(), n, n_head_, head_dim_, rot_dim_, inv_freq_, neox_rope_);
  b.Rope(s_.k.data(), n, n_head_kv_, head_dim_, rot_dim_, inv_freq_, neox_rope_);
}

void LlamaModel::FinishBlock(const LlamaLayer& L, int n) {
  backend::Backend& b = *backend_;
  const int d = info_.n_embd;
  b.MatMul(L.wo, s_.att.data(), n, s_.h.data());
  b.Add(s_.x.data(), s_.h.data(), size_t(n) * d);
  // Feed-forward (SwiGLU).
  b.RmsNorm(s_.x.data(), L.ffn_norm, 0.0f, eps_, n, d, s_.h.data());
  b.MatMul(L.w_gate, s_.h.data(), n, s_.gate.data());
  b.MatMul(L.w_up, s_.h.data(), n, s_.up.data());
  b.SiluMul(s_.gate.data(), s_.up.data(), size_t(n) * n_ff_);
  b.MatMul(L.w_down, s_.gate.data(), n, s_.h.data());
  b.Add(s_.x.data(), s_.h.data(), size_t(n) * d);
}

void LlamaModel::BeginStep(const int* tokens, int n) {
  Reserve(n);
  backend_->Embed(tok_embd_, tokens, n, 1.0f, s_.x.data());
  backend_->SetPositions(s_.pos.data(), n);
}

void LlamaModel::Forward(const int* tokens, int n, kv::KvCache& cache, bool all_logits,
                         float* logits, kernels::ThreadPool& pool) {
  if (n <= 0) return;
  backend::StepScope scope(*backend_, pool);
  backend::Backend& b = *backend_;
  const int d = info_.n_embd;
  Reserve(n);
  const int pos0 = cache.n_tokens();
  for (int t = 0; t < n; ++t) s_.pos[t] = pos0 + t;
  BeginStep(tokens, n);

  for (int l = 0; l < info_.n_layer; ++l) {
    const LlamaLayer& L = layers_[l];
    ProjectQkv(L, n);
    b.AppendAttend(cache, l, s_.k.data(), s_.v.data(), s_.q.data(), n, s_.att.data());
    FinishBlock(L, n);
  }
  cache.Commit(n);

  const int first = all_logits ? 0 : n - 1;
  const int rows = n - first;
  const size_t count = size_t(rows) * info_.n_vocab;
  float* out = b.OutputBuffer(logits, count);
  b.RmsNorm(s_.x.data() + size_t(first) * d, output_norm_, 0.0f, eps_, rows, d, s_.h.data());
  b.MatMul(output_, s_.h.data(), rows, out);
  b.OutputToHost(out, logits, count);
}

// The same block as Forward with one token per sequence: every matmul runs once over the n
// sequences' tokens (a matrix-matrix product that reads each weight block once), and only RoPE
// positions and attention differ per sequence (each against its own cache; the backend may
// attend all of them in one launch).
void LlamaModel::ForwardBatch(std::span<const BatchItem> items, kernels::ThreadPool& pool) {
  const int n = int(items.size());
  if (n == 0) return;
  std::unordered_set<const kv::KvCache*> seen;
  std::vector<int> tokens(n);
  std::vector<kv::KvCache*> caches(n);
  for (int t = 0; t < n; ++t) {
    if (!seen.insert(&items[t].cache).second)
      throw Error("ForwardBatch: the same KV cache appears twice in one batch");
    tokens[t] = items[t].token;
    caches[t] = &items[t].cache;
  }
  backend::StepScope scope(*backend_, pool);
  backend::Backend& b = *backend_;
  Reserve(n);
  for (int t = 0; t < n; ++t) s_.pos[t] = items[t].cache.n_tokens();
  BeginStep(tokens.data(), n);  // checks every token id before any cache is touched
  const int d = info_.n_embd, qd = n_head_ * head_dim_, kvd = n_head_kv_ * head_dim_;

  for (int l = 0; l < info_.n_layer; ++l) {
    const LlamaLayer& L = layers_[l];
    ProjectQkv(L, n);
    b.AppendAttendBatch(caches, l, s_.k.data(), s_.v.data(), kvd, s_.q.data(), qd,
                        s_.att.data());
    FinishBlock(L, n);
  }
  for (const BatchItem& it : items) it.cache.Commit(1);

  const size_t nv = size_t(info_.n_vocab);
  batch_logits_.Reserve(size_t(n) * nv);
  b.RmsNorm(s_.x.data(), output_norm_, 0.0f, eps_, n, d, s_.h.data());
  b.MatMul(output_, s_.h.data(), n, batch_logits_.data());
  for (int t = 0; t < n; ++t)
    b.OutputToHost(batch_logits_.data() + size_t(t) * nv, items[t].logits, nv);
}

}  // namespace

std::unique_ptr<Model> CreateLlamaFamily(std::unique_ptr<GgufFile> file,
                                         std::unique_ptr<backend::Backend> backend) {
  return std::make_unique<LlamaModel>(std::move(file), std::move(backend));
}

}  // namespace tqlm::model
