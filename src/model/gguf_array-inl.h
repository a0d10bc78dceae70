// GgufFile::GetArray<T>: typed copies of numeric metadata arrays. Included by gguf.h only.
#pragma once

#include <limits>
#include <string>
#include <type_traits>

#include "tqlm/error.h"

namespace tqlm::model {

template <typename T>
std::optional<std::vector<T>> GgufFile::TryGetArray(std::string_view key) const {
  if (Find(key) == nullptr) return std::nullopt;
  return GetArray<T>(key);
}

template <typename T>
std::vector<T> GgufFile::GetArray(std::string_view key) const {
  static_assert(std::is_arithmetic_v<T>, "GetArray<T> needs a numeric T");
  const GgufValue& v = RequireArray(key);
  if (v.elem_type == GgufType::kString || v.elem_type == GgufType::kArray) {
    throw Error("gguf: metadata '" + std::string(key) + "' is an array of " +
                GgufTypeName(v.elem_type) + ", expected numbers");
  }
  std::vector<T> out;
  out.reserve(size_t(v.count));
  for (uint64_t i = 0; i < v.count; ++i) {
    if constexpr (std::is_floating_point_v<T>) {
      out.push_back(T(GgufArrayElementAsDouble(v, i)));
    } else {
      int64_t s = 0;
      uint64_t u = 0;
      bool negative = false;
      const bool ok = GgufArrayElementAsInt(v, i, &s, &u, &negative);
      bool fits = ok;
      if (ok && negative) {
        fits = std::is_signed_v<T> && s >= int64_t(std::numeric_limits<T>::min());
      } else if (ok) {
        fits = u <= uint64_t(std::numeric_limits<T>::max());
      }
      if (!fits) {
        throw Error("gguf: metadata '" + std::string(key) + "' element " + std::to_string(i) +
                    " does not fit the requested integer type");
      }
      out.push_back(negative ? T(s) : T(u));
    }
  }
  return out;
}

}  // namespace tqlm::model
