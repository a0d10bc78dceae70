// Typed metadata lookups for GgufFile: each getter names the key and the type mismatch.
#include <cmath>
#include <cstring>
#include <fmt/format.h>

#include "model/gguf.h"
#include "tqlm/error.h"

namespace tqlm::model {

const char* GgufTypeName(GgufType type) {
  switch (type) {
    case GgufType::kUint8: return "uint8";
    case GgufType::kInt8: return "int8";
    case GgufType::kUint16: return "uint16";
    case GgufType::kInt16: return "int16";
    case GgufType::kUint32: return "uint32";
    case GgufType::kInt32: return "int32";
    case GgufType::kFloat32: return "float32";
    case GgufType::kBool: return "bool";
    case GgufType::kString: return "string";
    case GgufType::kArray: return "array";
    case GgufType::kUint64: return "uint64";
    case GgufType::kInt64: return "int64";
    case GgufType::kFloat64: return "float64";
  }
  return "unknown";
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kUint16:
    case GgufType::kInt16:
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kUint64:
    case GgufType::kInt64:
      return true;
    default:
      return false;
  }
}

namespace {

template <typename T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

[[noreturn]] void WrongType(const std::string& file, std::string_view key, const GgufValue& v,
                            const char* expected) {
  throw Error(fmt::format("gguf: {}: metadata '{}' has type {}, expected {}", file, key,
                          GgufTypeName(v.type), expected));
}

// Checked integer extraction: the value must be an integer within [lo, hi].
uint64_t UnsignedIn(const std::string& file, std::string_view key, const GgufValue& v,
                    uint64_t hi, const char* expected) {
  if (!v.is_integer()) WrongType(file, key, v, expected);
  if (v.is_negative || v.u64 > hi) {
    throw Error(fmt::format("gguf: {}: metadata '{}' value {} does not fit {}", file, key,
                            v.is_negative ? std::to_string(v.i64) : std::to_string(v.u64),
                            expected));
  }
  return v.u64;
}

}  // namespace

double GgufArrayElementAsDouble(const GgufValue& a, uint64_t i) {
  const uint8_t* p = a.raw;
  switch (a.elem_type) {
    case GgufType::kUint8: return Load<uint8_t>(p + i);
    case GgufType::kInt8: return Load<int8_t>(p + i);
    case GgufType::kBool: return Load<uint8_t>(p + i);
    case GgufType::kUint16: return Load<uint16_t>(p + 2 * i);
    case GgufType::kInt16: return Load<int16_t>(p + 2 * i);
    case GgufType::kUint32: return Load<uint32_t>(p + 4 * i);
    case GgufType::kInt32: return Load<int32_t>(p + 4 * i);
    case GgufType::kFloat32: return Load<float>(p + 4 * i);
    case GgufType::kUint64: return double(Load<uint64_t>(p + 8 * i));
    case GgufType::kInt64: return double(Load<int64_t>(p + 8 * i));
    case GgufType::kFloat64: return Load<double>(p + 8 * i);
    default: return 0;
  }
}

bool GgufArrayElementAsInt(const GgufValue& a, uint64_t i, int64_t* s, uint64_t* u,
                           bool* negative) {
  const uint8_t* p = a.raw;
  int64_t sv = 0;
  uint64_t uv = 0;
  bool is_signed = false;
  switch (a.elem_type) {
    case GgufType::kUint8:
    case GgufType::kBool: uv = Load<uint8_t>(p + i); break;
    case GgufType::kInt8: sv = Load<int8_t>(p + i); is_signed = true; break;
    case GgufType::kUint16: uv = Load<uint16_t>(p + 2 * i); break;
    case GgufType::kInt16: sv = Load<int16_t>(p + 2 * i); is_signed = true; break;
    case GgufType::kUint32: uv = Load<uint32_t>(p + 4 * i); break;
    case GgufType::kInt32: sv = Load<int32_t>(p + 4 * i); is_signed = true; break;
    case GgufType::kUint64: uv = Load<uint64_t>(p + 8 * i); break;
    case GgufType::kInt64: sv = Load<int64_t>(p + 8 * i); is_signed = true; break;
    default: return false;
  }
  if (is_signed) {
    *negative = sv < 0;
    *s = sv;
    *u = sv < 0 ? 0 : uint64_t(sv);
  } else {
    *negative = false;
    *u = uv;
    *s = uv > uint64_t(INT64_MAX) ? INT64_MAX : int64_t(uv);
  }
  return true;
}

const GgufValue* GgufFile::Find(std::string_view key) const {
  auto it = kv_.find(std::string(key));
  return it == kv_.end() ? nullptr : &it->second;
}

const GgufValue& GgufFile::Require(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) throw Error(fmt::format("gguf: {}: missing metadata '{}'", name_, key));
  return *v;
}

const GgufValue& GgufFile::RequireArray(std::string_view key) const {
  const GgufValue& v = Require(key);
  if (v.type != GgufType::kArray) WrongType(name_, key, v, "array");
  return v;
}

std::string GgufFile::GetString(std::string_view key) const {
  const GgufValue& v = Require(key);
  if (v.type != GgufType::kString) WrongType(name_, key, v, "string");
  return std::string(v.str);
}
std::string GgufFile::GetString(std::string_view key, std::string_view def) const {
  return Has(key) ? GetString(key) : std::string(def);
}

uint32_t GgufFile::GetU32(std::string_view key) const {
  return uint32_t(UnsignedIn(name_, key, Require(key), UINT32_MAX, "uint32"));
}
uint32_t GgufFile::GetU32(std::string_view key, uint32_t def) const {
  return Has(key) ? GetU32(key) : def;
}

uint64_t GgufFile::GetU64(std::string_view key) const {
  return UnsignedIn(name_, key, Require(key), UINT64_MAX, "uint64");
}
uint64_t GgufFile::GetU64(std::string_view key, uint64_t def) const {
  return Has(key) ? GetU64(key) : def;
}

int64_t GgufFile::GetI64(std::string_view key) const {
  const GgufValue& v = Require(key);
  if (!v.is_integer()) WrongType(name_, key, v, "int64");
  if (!v.is_negative && v.u64 > uint64_t(INT64_MAX)) {
    throw Error(fmt::format("gguf: {}: metadata '{}' value {} does not fit int64", name_, key,
                            v.u64));
  }
  return v.i64;
}
int64_t GgufFile::GetI64(std::string_view key, int64_t def) const {
  return Has(key) ? GetI64(key) : def;
}

float GgufFile::GetF32(std::string_view key) const {
  const GgufValue& v = Require(key);
  if (!v.is_float()) WrongType(name_, key, v, "float32");
  return float(v.f64);
}
float GgufFile::GetF32(std::string_view key, float def) const {
  return Has(key) ? GetF32(key) : def;
}

bool GgufFile::GetBool(std::string_view key) const {
  const GgufValue& v = Require(key);
  if (v.type != GgufType::kBool) WrongType(name_, key, v, "bool");
  return v.u64 != 0;
}
bool GgufFile::GetBool(std::string_view key, bool def) const {
  return Has(key) ? GetBool(key) : def;
}

const std::vector<std::string_view>& GgufFile::GetStringArray(std::string_view key) const {
  const GgufValue& v = RequireArray(key);
  if (v.elem_type != GgufType::kString) {
    throw Error(fmt::format("gguf: {}: metadata '{}' is an array of {}, expected strings", name_,
                            key, GgufTypeName(v.elem_type)));
  }
  return v.strings;
}

}  // namespace tqlm::model
