// Scalar reference of the KV cache contract: f32 storage, textbook causal GQA softmax
// attention in double precision. Tests compare every real cache type and kernel against it,
// and model tests run on it so they do not depend on the caches under test.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "kv/kv_cache.h"

namespace tqlm::testing {

class ReferenceKvCache final : public kv::KvCache {
 public:
  explicit ReferenceKvCache(const kv::KvCacheConfig& config)
      : config_(config), k_(config.layers.size()), v_(config.layers.size()) {}

  int n_tokens() const override { return n_tokens_; }

  void Append(int layer, const float* k, const float* v, int n) override {
    const auto& g = config_.layers[layer];
    const size_t len = size_t(n) * g.n_kv_heads * g.head_dim;
    k_[layer].resize(size_t(n_tokens_) * g.n_kv_heads * g.head_dim);
    v_[layer].resize(k_[layer].size());
    k_[layer].insert(k_[layer].end(), k, k + len);
    v_[layer].insert(v_[layer].end(), v, v + len);
  }

  void Attend(int layer, const float* q, int n, float* out, kernels::ThreadPool&) override {
    const auto& g = config_.layers[layer];
    const int group = g.n_heads / g.n_kv_heads, d = g.head_dim;
    const size_t kv_stride = size_t(g.n_kv_heads) * d;
    std::vector<double> scores;
    for (int i = 0; i < n; ++i) {
      const int pos = n_tokens_ + i;
      const int first = g.sliding_window > 0 ? std::max(0, pos - g.sliding_window + 1) : 0;
      for (int h = 0; h < g.n_heads; ++h) {
        const float* qh = q + (size_t(i) * g.n_heads + h) * d;
        const int kvh = h / group;
        scores.assign(pos + 1 - first, 0.0);
        double max_s = -1e300;
        for (int t = first; t <= pos; ++t) {
          const float* kt = &k_[layer][t * kv_stride + size_t(kvh) * d];
          double s = 0;
          for (int j = 0; j < d; ++j) s += double(qh[j]) * kt[j];
          s *= config_.attn_scale;
          scores[t - first] = s;
          max_s = std::max(max_s, s);
        }
        double sum = 0;
        for (double& s : scores) sum += (s = std::exp(s - max_s));
        float* o = out + (size_t(i) * g.n_heads + h) * d;
        for (int j = 0; j < d; ++j) {
          double acc = 0;
          for (int t = first; t <= pos; ++t)
            acc += scores[t - first] * v_[layer][t * kv_stride + size_t(kvh) * d + j];
          o[j] = float(acc / sum);
        }
      }
    }
  }

  void Commit(int n) override { n_tokens_ += n; }

  void Truncate(int n) override {
    n_tokens_ = std::min(n_tokens_, n);
    for (size_t l = 0; l < k_.size(); ++l) {
      const auto& g = config_.layers[l];
      k_[l].resize(std::min(k_[l].size(), size_t(n_tokens_) * g.n_kv_heads * g.head_dim));
      v_[l].resize(k_[l].size());
    }
  }

  kv::KvMemoryStats MemoryStats() const override {
    kv::KvMemoryStats s;
    for (size_t l = 0; l < k_.size(); ++l) {
      s.bytes_used += (k_[l].size() + v_[l].size()) * sizeof(float);
      s.bytes_f16 += (k_[l].size() + v_[l].size()) * 2;
    }
    s.bytes_allocated = s.bytes_used;
    return s;
  }

 private:
  kv::KvCacheConfig config_;
  int n_tokens_ = 0;
  std::vector<std::vector<float>> k_, v_;
};

}  // namespace tqlm::testing
