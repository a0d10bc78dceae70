// What every architecture's forward pass shares: the per-token activation buffers of one
// decoder block, grown on demand, and the checked embedding lookup that starts a pass.
#pragma once

#include <vector>

#include "kernels/cpu/matmul.h"
#include "model/gguf.h"

namespace tqlm::model {

// Activations of n tokens through one block, reused by every layer: residual stream x, the
// normalized input h (also each sub-layer's output), q/k/v, the attention output and the two
// feed-forward halves, plus each token's position. Never shrinks, so decode allocates nothing.
struct BlockScratch {
  std::vector<float> x, h, q, k, v, att, gate, up;
  std::vector<int> pos;

  // Makes room for n tokens of widths d (model), q_dim, kv_dim and ff (feed-forward); the
  // widths are the model's, the same on every call, so pos.size() is the token capacity.
  void Reserve(int n, int d, int q_dim, int kv_dim, int ff);
};

// Throws tqlm::Error when a token id is not in [0, n_vocab), so a bad id from a client never
// indexes past the embedding table.
void CheckTokenId(int token, int n_vocab);

// Writes the embedding row of `token` (d floats) to `out`, after CheckTokenId.
void EmbedToken(const kernels::WeightView& embd, int n_vocab, int token, float* out);

// Bytes of tensor data in the file (what a forward pass streams per token, at most).
size_t TensorDataBytes(const GgufFile& f);

}  // namespace tqlm::model
