#include "model/gguf_writer.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

#include "tqlm/error.h"

namespace tqlm::model {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF"
constexpr uint32_t kVersion = 3;
constexpr uint32_t kStringType = 8;      // GgufType::kString

template <typename T>
void Append(std::string* s, T v) {
  s->append(reinterpret_cast<const char*>(&v), sizeof(T));
}
void AppendString(std::string* s, std::string_view v) {
  Append<uint64_t>(s, v.size());
  s->append(v);
}

}  // namespace

size_t GgufTensorInfo::nbytes() const {
  const size_t row = kernels::RowBytes(type, ne[0]);
  if (row == SIZE_MAX) return SIZE_MAX;
  uint64_t rows = 1;
  for (int d = 1; d < 4; ++d) {
    if (ne[size_t(d)] < 0 || (ne[size_t(d)] != 0 && rows > UINT64_MAX / uint64_t(ne[size_t(d)])))
      return SIZE_MAX;
    rows *= uint64_t(ne[size_t(d)]);
  }
  if (rows != 0 && row > SIZE_MAX / rows) return SIZE_MAX;
  return size_t(rows) * row;
}

GgufWriter::GgufWriter(const std::string& path, uint64_t alignment)
    : path_(path), alignment_(alignment) {
  if (alignment < 8 || (alignment & (alignment - 1)) != 0) {
    throw Error(fmt::format("gguf write: alignment {} is not a power of two >= 8", alignment));
  }
  f_ = std::fopen(path.c_str(), "wb");
  if (f_ == nullptr) {
    throw Error(fmt::format("gguf write: cannot create '{}': {}", path, std::strerror(errno)));
  }
}

GgufWriter::~GgufWriter() {
  if (f_ != nullptr) std::fclose(f_);
}

void GgufWriter::AddRawMetadata(std::string_view raw_pair) {
  kv_.append(raw_pair);
  ++n_kv_;
}

void GgufWriter::AddString(std::string_view key, std::string_view value) {
  AppendString(&kv_, key);
  Append<uint32_t>(&kv_, kStringType);
  AppendString(&kv_, value);
  ++n_kv_;
}

void GgufWriter::AddTensor(GgufTensorInfo info) {
  if (info.n_dims < 1 || info.n_dims > 4 || info.nbytes() == SIZE_MAX) {
    throw Error(fmt::format("gguf write: tensor '{}' has a shape its type {} cannot hold",
                            info.name, kernels::TypeName(info.type)));
  }
  tensors_.push_back(std::move(info));
}

void GgufWriter::Put(const void* p, size_t n) {
  if (n > 0 && std::fwrite(p, 1, n, f_) != n) {
    throw Error(fmt::format("gguf write: writing '{}' failed: {}", path_, std::strerror(errno)));
  }
  pos_ += n;
}

void GgufWriter::Pad() {
  static const char zeros[256] = {};
  while (pos_ % alignment_ != 0) Put(zeros, std::min<uint64_t>(sizeof zeros, alignment_ - pos_ % alignment_));
}

void GgufWriter::WriteHeader() {
  std::string h;
  Append<uint32_t>(&h, kMagic);
  Append<uint32_t>(&h, kVersion);
  Append<uint64_t>(&h, tensors_.size());
  Append<uint64_t>(&h, n_kv_);
  h += kv_;
  uint64_t offset = 0;
  for (const GgufTensorInfo& t : tensors_) {
    AppendString(&h, t.name);
    Append<uint32_t>(&h, uint32_t(t.n_dims));
    for (int d = 0; d < t.n_dims; ++d) Append<uint64_t>(&h, uint64_t(t.ne[size_t(d)]));
    Append<uint32_t>(&h, uint32_t(t.type));
    Append<uint64_t>(&h, offset);
    offset += t.nbytes();
    offset += (alignment_ - offset % alignment_) % alignment_;
  }
  Put(h.data(), h.size());
  Pad();
}

void GgufWriter::WriteTensor(const void* data, size_t size) {
  if (next_ >= tensors_.size() || size != tensors_[next_].nbytes()) {
    throw Error(fmt::format("gguf write: tensor #{} written with {} bytes, expected {}", next_,
                            size, next_ < tensors_.size() ? tensors_[next_].nbytes() : 0));
  }
  Put(data, size);
  Pad();
  ++next_;
}

void GgufWriter::Finish() {
  if (next_ != tensors_.size()) {
    throw Error(fmt::format("gguf write: {} of {} tensors written", next_, tensors_.size()));
  }
  const int rc = std::fclose(f_);
  f_ = nullptr;
  if (rc != 0) {
    throw Error(fmt::format("gguf write: closing '{}' failed: {}", path_, std::strerror(errno)));
  }
}

}  // namespace tqlm::model
