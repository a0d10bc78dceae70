#include "kv/block_format.h"

#include <fmt/format.h>

#include <algorithm>

#include "kv/block_format_internal.h"
#include "tqlm/error.h"

namespace tqlm::kv {

void BlockFormat::PrepareQueries(const float* q, int nq, PreparedQueries* out) const {
  out->nq = nq;
  out->dim = dim_;
  out->f32.assign(q, q + size_t(nq) * dim_);
}

KvType RawTypeFor(const KvType& type) {
  return KvType::Parse(type.kind == KvType::Kind::kF32 ? "f32" : "f16");
}

std::unique_ptr<BlockFormat> MakeBlockFormat(const KvType& type, int head_dim, TensorRole role) {
  if (head_dim <= 0 || head_dim % 16 != 0)
    throw Error(fmt::format("KV cache: head dimension {} is not a multiple of 16", head_dim));
  switch (type.kind) {
    case KvType::Kind::kF32: return MakeF32Format(head_dim, role);
    case KvType::Kind::kF16: return MakeF16Format(head_dim, role);
    case KvType::Kind::kQ8_0:
    case KvType::Kind::kQ4_0:
      if (head_dim % 32 != 0)
        throw Error(fmt::format("KV cache type {} needs a head dimension that is a multiple of "
                                "32 (got {})",
                                type.Name(), head_dim));
      return MakeGgmlFormat(head_dim, type.kind == KvType::Kind::kQ8_0);
    case KvType::Kind::kTurbo: {
      auto f = MakeTurboFormat(type, head_dim, role);
      if (!f) throw Error(fmt::format("KV cache type {} is not available yet", type.Name()));
      return f;
    }
  }
  throw Error("KV cache: unknown type");
}

}  // namespace tqlm::kv
