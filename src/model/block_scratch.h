// What every architecture's forward pass shares: the per-token activation buffers of one
// decoder block in the backend's memory, grown on demand, and the byte count of the weights.
#pragma once

#include <vector>

#include "backend/backend.h"
#include "model/gguf.h"

namespace tqlm::model {

// Activations of n tokens through one block, reused by every layer: residual stream x, the
// normalized input h (also each sub-layer's output), q/k/v, the attention output and the two
// feed-forward halves, plus each token's position (host side; the backend gets a copy per
// step). Never shrinks, so decode allocates nothing.
struct BlockScratch {
  backend::Array<float> x, h, q, k, v, att, gate, up;
  std::vector<int> pos;

  void Bind(backend::Backend& b) {
    for (auto* a : {&x, &h, &q, &k, &v, &att, &gate, &up}) a->Bind(b);
  }
  // Makes room for n tokens of widths d (model), q_dim, kv_dim and ff (feed-forward); the
  // widths are the model's, the same on every call, so pos.size() is the token capacity.
  void Reserve(int n, int d, int q_dim, int kv_dim, int ff);
};

// Bytes of tensor data in the file (what a forward pass streams per token, at most).
size_t TensorDataBytes(const GgufFile& f);

}  // namespace tqlm::model
