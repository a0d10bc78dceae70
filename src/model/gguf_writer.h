// Writing GGUF v3 files in one pass: metadata and the tensor table first (every tensor's
// type and shape known up front, so its offset is), then each tensor's data in table order,
// padded to the alignment. Used by `tqlm convert`; tests build files with it too.
#pragma once

#include <array>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/tensor_format.h"

namespace tqlm::model {

struct GgufTensorInfo {
  std::string name;
  kernels::TensorType type = kernels::TensorType::kF32;
  int n_dims = 1;
  std::array<int64_t, 4> ne{1, 1, 1, 1};
  size_t nbytes() const;  // SIZE_MAX when the shape does not fit the type
};

class GgufWriter {
 public:
  // Opens `path` for writing (truncating it). alignment: a power of two >= 8, the value of
  // general.alignment if the metadata carries one.
  GgufWriter(const std::string& path, uint64_t alignment);
  ~GgufWriter();
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;

  // Metadata, before WriteHeader: a pair copied byte for byte from another GGUF file
  // (GgufFile::RawMetadata), or a string value.
  void AddRawMetadata(std::string_view raw_pair);
  void AddString(std::string_view key, std::string_view value);
  void AddTensor(GgufTensorInfo info);

  // Writes header, metadata and tensor table; then WriteTensor once per tensor in the order
  // added, each with exactly its nbytes(); then Finish (flushes and closes; throws on error).
  void WriteHeader();
  void WriteTensor(const void* data, size_t size);
  void Finish();
  uint64_t bytes_written() const { return pos_; }

 private:
  void Put(const void* p, size_t n);
  void Pad();

  std::string path_;
  std::FILE* f_ = nullptr;
  uint64_t alignment_;
  uint64_t pos_ = 0;
  uint64_t n_kv_ = 0;
  std::string kv_;
  std::vector<GgufTensorInfo> tensors_;
  size_t next_ = 0;
};

}  // namespace tqlm::model
