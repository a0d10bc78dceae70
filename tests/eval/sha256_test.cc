// SHA-256 against the FIPS 180-4 / NIST example digests, streaming across block boundaries,
// and the file-digest cache (hit, and a changed file rehashed).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "eval/sha256.h"
#include "tqlm/error.h"

namespace tqlm::eval {
namespace {

TEST(EvalSha256, NistVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  Sha256 h;  // one million 'a', fed in pieces that straddle 64-byte blocks
  const std::string piece(997, 'a');
  size_t fed = 0;
  while (fed < 1000000) {
    const size_t n = std::min(piece.size(), 1000000 - fed);
    h.Update(piece.data(), n);
    fed += n;
  }
  const auto d = h.Final();
  EXPECT_EQ(Sha256::Hex(std::string_view(reinterpret_cast<const char*>(d.data()), d.size())),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(EvalSha256, FileDigestIsCachedAndRefreshedOnChange) {
  const std::string dir = ::testing::TempDir() + "tqlm_sha_" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  const std::string file = dir + "/data.bin", cache = dir + "/cache.json";
  { std::ofstream(file) << "abc"; }
  EXPECT_EQ(FileSha256(file), Sha256Hex("abc"));
  EXPECT_EQ(CachedFileSha256(file, cache), Sha256Hex("abc"));
  ASSERT_TRUE(std::filesystem::exists(cache));
  // A cache hit returns the stored digest without reading the file: prove it by planting a
  // different digest for the same size and mtime.
  std::string text;
  {
    std::ifstream in(cache);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  const std::string abc = Sha256Hex("abc"), planted = std::string(64, 'f');
  text.replace(text.find(abc), abc.size(), planted);
  { std::ofstream(cache) << text; }
  EXPECT_EQ(CachedFileSha256(file, cache), planted);
  // Changing the file (size differs) invalidates the entry.
  { std::ofstream(file) << "abcd"; }
  EXPECT_EQ(CachedFileSha256(file, cache), Sha256Hex("abcd"));
  // A corrupt cache is rebuilt, not an error.
  { std::ofstream(cache) << "{not json"; }
  EXPECT_EQ(CachedFileSha256(file, cache), Sha256Hex("abcd"));
  EXPECT_THROW(FileSha256(dir + "/missing"), Error);
  EXPECT_THROW(CachedFileSha256(dir + "/missing", cache), Error);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tqlm::eval
