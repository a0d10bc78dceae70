// SHA-256 (FIPS 180-4) of byte strings and files, for the configuration hashes of evaluation
// results, plus a cache of file digests keyed by path, size and modification time so that a
// multi-GB model is hashed once, not at every sweep.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace tqlm::eval {

class Sha256 {
 public:
  Sha256();
  void Update(const void* data, size_t n);
  std::array<uint8_t, 32> Final();  // the object must not be updated afterwards
  static std::string Hex(std::string_view bytes);

 private:
  void Block(const uint8_t* p);
  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buf_{};
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

std::string Sha256Hex(std::string_view bytes);

// Hex digest of the file's contents. Throws tqlm::Error when it cannot be read.
std::string FileSha256(const std::string& path);

// The same, looked up first in `cache_file` (a JSON object path -> {size, mtime_ns, sha256});
// a miss or a stale entry hashes the file and rewrites the cache (atomically, via rename).
// An empty cache_file disables caching. An unreadable cache file is ignored and rebuilt.
std::string CachedFileSha256(const std::string& path, const std::string& cache_file);

}  // namespace tqlm::eval
