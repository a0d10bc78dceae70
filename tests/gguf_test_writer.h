// Builds small GGUF files in memory for tests (and the fuzz seed corpus): metadata of any
// type, tensors with given bytes. Deliberately dumb: it writes what it is told, so tests can
// also produce malformed files by patching the returned bytes.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/tensor_format.h"
#include "model/gguf.h"

namespace tqlm::testing {

class ByteSink {
 public:
  template <typename T>
  void Put(T v) {
    const size_t at = bytes_.size();
    bytes_.resize(at + sizeof(T));
    std::memcpy(bytes_.data() + at, &v, sizeof(T));
  }
  void PutString(const std::string& s) {
    Put<uint64_t>(s.size());
    bytes_.insert(bytes_.end(), s.begin(), s.end());
  }
  void PutBytes(const std::vector<uint8_t>& b) { bytes_.insert(bytes_.end(), b.begin(), b.end()); }
  std::vector<uint8_t>& bytes() { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

class GgufWriter {
 public:
  explicit GgufWriter(uint32_t version = 3) : version_(version) {}

  template <typename T>
  void AddScalar(const std::string& key, model::GgufType type, T v) {
    ByteSink s;
    s.Put<uint32_t>(uint32_t(type));
    s.Put<T>(v);
    AddRaw(key, s.bytes());
  }
  void AddU32(const std::string& key, uint32_t v) { AddScalar(key, model::GgufType::kUint32, v); }
  void AddF32(const std::string& key, float v) { AddScalar(key, model::GgufType::kFloat32, v); }
  void AddBool(const std::string& key, bool v) {
    AddScalar<uint8_t>(key, model::GgufType::kBool, v ? 1 : 0);
  }
  void AddString(const std::string& key, const std::string& v) {
    ByteSink s;
    s.Put<uint32_t>(uint32_t(model::GgufType::kString));
    s.PutString(v);
    AddRaw(key, s.bytes());
  }
  template <typename T>
  void AddArray(const std::string& key, model::GgufType elem, const std::vector<T>& v) {
    ByteSink s;
    s.Put<uint32_t>(uint32_t(model::GgufType::kArray));
    s.Put<uint32_t>(uint32_t(elem));
    s.Put<uint64_t>(v.size());
    for (const T& x : v) s.Put<T>(x);
    AddRaw(key, s.bytes());
  }
  void AddStringArray(const std::string& key, const std::vector<std::string>& v) {
    ByteSink s;
    s.Put<uint32_t>(uint32_t(model::GgufType::kArray));
    s.Put<uint32_t>(uint32_t(model::GgufType::kString));
    s.Put<uint64_t>(v.size());
    for (const std::string& x : v) s.PutString(x);
    AddRaw(key, s.bytes());
  }
  // `value` starts with the u32 value type.
  void AddRaw(const std::string& key, const std::vector<uint8_t>& value) {
    kv_.PutString(key);
    kv_.PutBytes(value);
    ++n_kv_;
  }

  void AddTensor(const std::string& name, kernels::TensorType type, std::vector<uint64_t> dims,
                 const std::vector<uint8_t>& data) {
    tensors_.push_back({name, type, std::move(dims), data});
  }

  std::vector<uint8_t> Build(uint64_t alignment = 32) const {
    ByteSink s;
    s.Put<uint32_t>(0x46554747);
    s.Put<uint32_t>(version_);
    s.Put<uint64_t>(tensors_.size());
    s.Put<uint64_t>(n_kv_);
    std::vector<uint8_t> kv = kv_bytes();
    s.PutBytes(kv);
    uint64_t offset = 0;
    for (const auto& t : tensors_) {
      s.PutString(t.name);
      s.Put<uint32_t>(uint32_t(t.dims.size()));
      for (uint64_t d : t.dims) s.Put<uint64_t>(d);
      s.Put<uint32_t>(uint32_t(t.type));
      s.Put<uint64_t>(offset);
      offset += (t.data.size() + alignment - 1) / alignment * alignment;
    }
    while (s.bytes().size() % alignment != 0) s.Put<uint8_t>(0);
    for (const auto& t : tensors_) {
      s.PutBytes(t.data);
      while (s.bytes().size() % alignment != 0) s.Put<uint8_t>(0);
    }
    return s.bytes();
  }

 private:
  struct Tensor {
    std::string name;
    kernels::TensorType type;
    std::vector<uint64_t> dims;
    std::vector<uint8_t> data;
  };
  std::vector<uint8_t> kv_bytes() const {
    ByteSink copy = kv_;
    return copy.bytes();
  }

  uint32_t version_;
  ByteSink kv_;
  uint64_t n_kv_ = 0;
  std::vector<Tensor> tensors_;
};

}  // namespace tqlm::testing
