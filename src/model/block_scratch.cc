#include "model/block_scratch.h"

#include <fmt/format.h>

#include "tqlm/error.h"

namespace tqlm::model {

void BlockScratch::Reserve(int n, int d, int q_dim, int kv_dim, int ff) {
  const size_t t = size_t(n);
  if (t <= pos.size()) return;
  x.resize(t * d);
  h.resize(t * d);
  q.resize(t * q_dim);
  att.resize(t * q_dim);
  k.resize(t * kv_dim);
  v.resize(t * kv_dim);
  gate.resize(t * ff);
  up.resize(t * ff);
  pos.resize(t);
}

void CheckTokenId(int token, int n_vocab) {
  if (token < 0 || token >= n_vocab)
    throw Error(fmt::format("token id {} out of range [0, {})", token, n_vocab));
}

void EmbedToken(const kernels::WeightView& embd, int n_vocab, int token, float* out) {
  CheckTokenId(token, n_vocab);
  kernels::DequantizeRow(embd, token, out);
}

size_t TensorDataBytes(const GgufFile& f) {
  size_t bytes = 0;
  for (const auto& tensor : f.tensors()) bytes += tensor.nbytes;
  return bytes;
}

}  // namespace tqlm::model
