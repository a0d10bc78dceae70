#include "model/block_scratch.h"

namespace tqlm::model {

void BlockScratch::Reserve(int n, int d, int q_dim, int kv_dim, int ff) {
  const size_t t = size_t(n);
  if (t <= pos.size()) return;
  x.Reserve(t * d);
  h.Reserve(t * d);
  q.Reserve(t * q_dim);
  att.Reserve(t * q_dim);
  k.Reserve(t * kv_dim);
  v.Reserve(t * kv_dim);
  gate.Reserve(t * ff);
  up.Reserve(t * ff);
  pos.resize(t);
}

size_t TensorDataBytes(const GgufFile& f) {
  size_t bytes = 0;
  for (const auto& tensor : f.tensors()) bytes += tensor.nbytes;
  return bytes;
}

}  // namespace tqlm::model
