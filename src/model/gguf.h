// GGUF (v2/v3) model files: header, metadata and tensor table, read from a read-only mmap.
//
// Everything the file claims (counts, lengths, offsets, dimensions, tensor byte ranges) is
// checked against the file size with overflow-safe arithmetic before it is used; a malformed
// file throws tqlm::Error naming the offending item. Tensor data is never copied: tensors point
// into the mapping, which lives as long as the GgufFile.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kernels/tensor_format.h"

namespace tqlm::model {

// Metadata value types, numbered as in the GGUF spec.
enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

const char* GgufTypeName(GgufType type);

// One metadata value. Strings and arrays point into the file mapping (no copies).
struct GgufValue {
  GgufType type = GgufType::kUint8;
  // Scalars: integers widen into i64/u64 (both set when representable), floats into f64.
  uint64_t u64 = 0;
  int64_t i64 = 0;
  double f64 = 0;
  bool is_negative = false;  // integer scalar below zero (u64 is then meaningless)
  std::string_view str;      // kString
  // kArray: element type and count. Elements of fixed-size scalar types are `raw` (count *
  // size bytes, little-endian, possibly unaligned); string elements are in `strings`; nested
  // arrays in `items`.
  GgufType elem_type = GgufType::kUint8;
  uint64_t count = 0;
  const uint8_t* raw = nullptr;
  std::vector<std::string_view> strings;
  std::vector<GgufValue> items;

  bool is_integer() const;
  bool is_float() const { return type == GgufType::kFloat32 || type == GgufType::kFloat64; }
};

struct GgufTensor {
  std::string name;
  kernels::TensorType type = kernels::TensorType::kF32;
  int n_dims = 0;
  std::array<int64_t, 4> ne{1, 1, 1, 1};  // ne[0] varies fastest (the row length)
  uint64_t offset = 0;                     // from the start of the data section
  const void* data = nullptr;
  size_t nbytes = 0;

  int64_t elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t rows() const { return ne[1] * ne[2] * ne[3]; }
  size_t row_bytes() const { return kernels::RowBytes(type, ne[0]); }
};

class GgufFile {
 public:
  // Maps and parses `path`. Throws tqlm::Error if it cannot be opened or is malformed.
  static std::unique_ptr<GgufFile> Open(const std::string& path);
  // Parses a buffer the caller keeps alive (and unchanged) for the GgufFile's lifetime.
  static std::unique_ptr<GgufFile> FromMemory(const void* data, size_t size,
                                              std::string name = "<memory>");
  // Parses a copy of `bytes` that the GgufFile owns.
  static std::unique_ptr<GgufFile> FromBytes(std::vector<uint8_t> bytes,
                                             std::string name = "<memory>");

  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& name() const { return name_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  size_t file_size() const { return size_; }

  // --- Metadata ---------------------------------------------------------------------------
  // Keys in file order.
  const std::vector<std::string>& keys() const { return keys_; }
  const GgufValue* Find(std::string_view key) const;
  // The i-th key-value pair exactly as the file stores it (key, type, value), for tools that
  // copy metadata into a new file (tqlm convert) without re-encoding it.
  std::string_view RawMetadata(size_t i) const;
  bool Has(std::string_view key) const { return Find(key) != nullptr; }

  // Typed getters: throw tqlm::Error when the key is missing (and no default is given), has
  // the wrong type, or its value does not fit the requested type. Integer getters accept any
  // integer type whose value fits; float getters accept float32/float64.
  std::string GetString(std::string_view key) const;
  std::string GetString(std::string_view key, std::string_view def) const;
  uint32_t GetU32(std::string_view key) const;
  uint32_t GetU32(std::string_view key, uint32_t def) const;
  uint64_t GetU64(std::string_view key) const;
  uint64_t GetU64(std::string_view key, uint64_t def) const;
  int64_t GetI64(std::string_view key) const;
  int64_t GetI64(std::string_view key, int64_t def) const;
  float GetF32(std::string_view key) const;
  float GetF32(std::string_view key, float def) const;
  bool GetBool(std::string_view key) const;
  bool GetBool(std::string_view key, bool def) const;

  // Array getters. GetStringArray views into the mapping. GetArray<T> converts each element
  // of a numeric array to T (T = int32_t, uint32_t, int64_t, uint64_t, float, double, ...),
  // throwing if an element does not fit. Missing key: throws, or returns nullopt from Try*.
  const std::vector<std::string_view>& GetStringArray(std::string_view key) const;
  template <typename T>
  std::vector<T> GetArray(std::string_view key) const;
  template <typename T>
  std::optional<std::vector<T>> TryGetArray(std::string_view key) const;

  // --- Tensors ----------------------------------------------------------------------------
  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* FindTensor(std::string_view name) const;
  // Throws tqlm::Error naming the tensor if it is missing.
  const GgufTensor& GetTensor(std::string_view name) const;

 private:
  GgufFile() = default;
  void Parse();
  const GgufValue& Require(std::string_view key) const;
  const GgufValue& RequireArray(std::string_view key) const;

  std::string name_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  void* mapping_ = nullptr;  // munmap on destruction when set
  size_t mapping_size_ = 0;
  std::vector<uint8_t> owned_;

  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::string> keys_;
  std::vector<std::pair<size_t, size_t>> kv_ranges_;  // [begin, end) of each pair in the file
  std::unordered_map<std::string, GgufValue> kv_;
  std::vector<GgufTensor> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

// Element `i` of a numeric array value as double / int64 (for generic code and GetArray).
double GgufArrayElementAsDouble(const GgufValue& array, uint64_t i);
// Returns false when the element is not an integer or does not fit into int64 (u64 > max).
bool GgufArrayElementAsInt(const GgufValue& array, uint64_t i, int64_t* out, uint64_t* uout,
                           bool* negative);

}  // namespace tqlm::model

#include "model/gguf_array-inl.h"
