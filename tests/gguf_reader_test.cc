// GGUF reader: round trips of every metadata type, tensor tables, and malformed files that
// must throw tqlm::Error (never crash). The real default model is opened when present.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <cstring>
#include <unistd.h>

#include "gguf_test_writer.h"
#include "model/gguf.h"
#include "tqlm/error.h"

namespace tqlm::model {
namespace {

using kernels::TensorType;
using testing::ByteSink;
using testing::GgufWriter;

std::vector<uint8_t> Filled(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = uint8_t(seed + i * 7);
  return v;
}

GgufWriter RichWriter() {
  GgufWriter w;
  w.AddString("general.architecture", "llama");
  w.AddScalar<uint8_t>("u8", GgufType::kUint8, 200);
  w.AddScalar<int8_t>("i8", GgufType::kInt8, -5);
  w.AddScalar<uint16_t>("u16", GgufType::kUint16, 60000);
  w.AddScalar<int16_t>("i16", GgufType::kInt16, -30000);
  w.AddU32("llama.context_length", 2048);
  w.AddScalar<int32_t>("i32", GgufType::kInt32, -7);
  w.AddF32("llama.rope.freq_base", 10000.5f);
  w.AddBool("flag", true);
  w.AddScalar<uint64_t>("u64", GgufType::kUint64, 1ull << 40);
  w.AddScalar<int64_t>("i64", GgufType::kInt64, -(1ll << 40));
  w.AddScalar<double>("f64", GgufType::kFloat64, 0.125);
  w.AddStringArray("tokenizer.ggml.tokens", {"a", "", "héllo", "<|im_end|>"});
  w.AddArray<float>("scores", GgufType::kFloat32, {0.5f, -1.0f, 3.0f});
  w.AddArray<int32_t>("types", GgufType::kInt32, {1, 2, -3});
  w.AddArray<uint8_t>("empty", GgufType::kUint8, {});
  // Nested: array of 2 arrays of uint16.
  ByteSink nested;
  nested.Put<uint32_t>(uint32_t(GgufType::kArray));
  nested.Put<uint32_t>(uint32_t(GgufType::kArray));
  nested.Put<uint64_t>(2);
  for (int a = 0; a < 2; ++a) {
    nested.Put<uint32_t>(uint32_t(GgufType::kArray));
    nested.Put<uint32_t>(uint32_t(GgufType::kUint16));
    nested.Put<uint64_t>(3);
    for (int i = 0; i < 3; ++i) nested.Put<uint16_t>(uint16_t(a * 10 + i));
  }
  w.AddRaw("nested", nested.bytes());
  w.AddTensor("tok_embd.weight", TensorType::kF32, {4, 3}, Filled(48, 1));
  w.AddTensor("blk.0.attn_q.weight", TensorType::kQ4_0, {64, 2}, Filled(4 * 18, 2));
  w.AddTensor("blk.0.ffn.weight", TensorType::kQ6_K, {256}, Filled(210, 3));
  return w;
}

TEST(GgufReader, ReadsEveryMetadataType) {
  auto f = GgufFile::FromBytes(RichWriter().Build());
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->GetString("general.architecture"), "llama");
  EXPECT_EQ(f->GetU32("u8"), 200u);
  EXPECT_EQ(f->GetI64("i8"), -5);
  EXPECT_EQ(f->GetU32("u16"), 60000u);
  EXPECT_EQ(f->GetI64("i16"), -30000);
  EXPECT_EQ(f->GetU32("llama.context_length"), 2048u);
  EXPECT_EQ(f->GetI64("i32"), -7);
  EXPECT_FLOAT_EQ(f->GetF32("llama.rope.freq_base"), 10000.5f);
  EXPECT_TRUE(f->GetBool("flag"));
  EXPECT_EQ(f->GetU64("u64"), 1ull << 40);
  EXPECT_EQ(f->GetI64("i64"), -(1ll << 40));
  EXPECT_FLOAT_EQ(f->GetF32("f64"), 0.125f);
  const auto& toks = f->GetStringArray("tokenizer.ggml.tokens");
  ASSERT_EQ(toks.size(), 4u);
  EXPECT_EQ(toks[2], "héllo");
  EXPECT_EQ(toks[1], "");
  EXPECT_EQ(f->GetArray<float>("scores"), (std::vector<float>{0.5f, -1.0f, 3.0f}));
  EXPECT_EQ(f->GetArray<int32_t>("types"), (std::vector<int32_t>{1, 2, -3}));
  EXPECT_TRUE(f->GetArray<int>("empty").empty());
  const GgufValue* nested = f->Find("nested");
  ASSERT_NE(nested, nullptr);
  ASSERT_EQ(nested->elem_type, GgufType::kArray);
  ASSERT_EQ(nested->items.size(), 2u);
  EXPECT_EQ(GgufArrayElementAsDouble(nested->items[1], 2), 12.0);
  EXPECT_EQ(f->keys().front(), "general.architecture");
  EXPECT_EQ(f->keys().size(), 17u);
}

TEST(GgufReader, TypedErrorsAndDefaults) {
  auto f = GgufFile::FromBytes(RichWriter().Build());
  EXPECT_EQ(f->GetU32("missing", 7u), 7u);
  EXPECT_EQ(f->GetString("missing", "x"), "x");
  EXPECT_FLOAT_EQ(f->GetF32("missing", 1.5f), 1.5f);
  EXPECT_FALSE(f->GetBool("missing", false));
  EXPECT_FALSE(f->TryGetArray<float>("missing").has_value());
  EXPECT_THROW(f->GetU32("missing"), Error);
  EXPECT_THROW(f->GetU32("general.architecture"), Error);  // string, not integer
  EXPECT_THROW(f->GetU32("i8"), Error);                    // negative
  EXPECT_THROW(f->GetU32("u64"), Error);                   // too large
  EXPECT_THROW(f->GetString("u8"), Error);
  EXPECT_THROW(f->GetF32("u8"), Error);
  EXPECT_THROW(f->GetBool("u8"), Error);
  EXPECT_THROW(f->GetStringArray("scores"), Error);
  EXPECT_THROW(f->GetArray<float>("tokenizer.ggml.tokens"), Error);
  EXPECT_THROW(f->GetArray<uint32_t>("types"), Error);  // -3 does not fit
  EXPECT_THROW(f->GetArray<int>("scores"), Error);      // floats are not integers
  try {
    f->GetU32("general.architecture");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("general.architecture"), std::string::npos);
  }
}

TEST(GgufReader, TensorTable) {
  auto bytes = RichWriter().Build();
  auto f = GgufFile::FromMemory(bytes.data(), bytes.size());
  ASSERT_EQ(f->tensors().size(), 3u);
  const GgufTensor& e = f->GetTensor("tok_embd.weight");
  EXPECT_EQ(e.type, TensorType::kF32);
  EXPECT_EQ(e.n_dims, 2);
  EXPECT_EQ(e.ne[0], 4);
  EXPECT_EQ(e.ne[1], 3);
  EXPECT_EQ(e.nbytes, 48u);
  EXPECT_EQ(e.row_bytes(), 16u);
  EXPECT_EQ(static_cast<const uint8_t*>(e.data)[5], uint8_t(1 + 5 * 7));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(e.data) - reinterpret_cast<uintptr_t>(bytes.data()),
            f->data_offset());
  const GgufTensor* q = f->FindTensor("blk.0.attn_q.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->nbytes, 72u);
  EXPECT_EQ(q->rows(), 2);
  EXPECT_EQ(q->offset % f->alignment(), 0u);
  EXPECT_EQ(f->FindTensor("nope"), nullptr);
  EXPECT_THROW(f->GetTensor("nope"), Error);
  EXPECT_EQ(f->GetTensor("blk.0.ffn.weight").nbytes, 210u);
}

TEST(GgufReader, CustomAlignmentAndVersion2) {
  GgufWriter w(2);
  w.AddU32("general.alignment", 64);
  w.AddTensor("a", TensorType::kF16, {3}, Filled(6, 9));
  w.AddTensor("b", TensorType::kQ8_0, {32}, Filled(34, 4));
  auto f = GgufFile::FromBytes(w.Build(64));
  EXPECT_EQ(f->version(), 2u);
  EXPECT_EQ(f->alignment(), 64u);
  EXPECT_EQ(f->data_offset() % 64, 0u);
  EXPECT_EQ(f->GetTensor("b").offset, 64u);
}

TEST(GgufReader, NoTensorsNoMetadata) {
  auto f = GgufFile::FromBytes(GgufWriter().Build());
  EXPECT_TRUE(f->tensors().empty());
  EXPECT_TRUE(f->keys().empty());
}

// Every proper prefix of a valid file is truncated somewhere: all must throw, none crash.
TEST(GgufReader, EveryTruncationThrows) {
  const auto bytes = RichWriter().Build();
  // The last tensor's padding is not needed; cut only within the needed part.
  auto full = GgufFile::FromBytes(bytes);
  const GgufTensor& last = full->GetTensor("blk.0.ffn.weight");
  const size_t needed = full->data_offset() + last.offset + last.nbytes;
  for (size_t n = 0; n < needed; ++n) {
    std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + n);
    EXPECT_THROW(GgufFile::FromBytes(cut), Error) << "prefix " << n;
  }
  EXPECT_NO_THROW(GgufFile::FromBytes(std::vector<uint8_t>(bytes.begin(), bytes.begin() + needed)));
}

std::string ErrorOf(const std::vector<uint8_t>& bytes) {
  try {
    GgufFile::FromBytes(bytes);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

template <typename T>
void Poke(std::vector<uint8_t>& b, size_t at, T v) {
  std::memcpy(b.data() + at, &v, sizeof(T));
}

TEST(GgufReader, CorruptHeaders) {
  auto ok = GgufWriter().Build();
  auto b = ok;
  b[0] = 'X';
  EXPECT_NE(ErrorOf(b).find("not a GGUF file"), std::string::npos);
  b = ok;
  Poke<uint32_t>(b, 4, 1);
  EXPECT_NE(ErrorOf(b).find("version 1"), std::string::npos);
  b = ok;
  Poke<uint64_t>(b, 8, ~0ull);  // tensor count
  EXPECT_NE(ErrorOf(b).find("tensor count"), std::string::npos);
  b = ok;
  Poke<uint64_t>(b, 16, 1ull << 62);  // kv count
  EXPECT_NE(ErrorOf(b).find("metadata count"), std::string::npos);
}

TEST(GgufReader, CorruptMetadata) {
  {
    GgufWriter w;
    w.AddString("k", "value");
    auto b = w.Build();
    Poke<uint64_t>(b, 24 + 8 + 1 + 4, ~0ull);  // string length
    EXPECT_NE(ErrorOf(b).find("metadata 'k'"), std::string::npos);
  }
  {
    GgufWriter w;
    w.AddArray<uint32_t>("arr", GgufType::kUint32, {1, 2, 3});
    auto b = w.Build();
    Poke<uint64_t>(b, 24 + 8 + 3 + 4 + 4, 1ull << 62);  // array length
    EXPECT_NE(ErrorOf(b).find("claims"), std::string::npos);
    Poke<uint64_t>(b, 24 + 8 + 3 + 4 + 4, 3);
    Poke<uint32_t>(b, 24 + 8 + 3 + 4, 99);  // element type
    EXPECT_NE(ErrorOf(b).find("unknown array element type 99"), std::string::npos);
  }
  {
    GgufWriter w;
    w.AddU32("k", 1);
    auto b = w.Build();
    Poke<uint32_t>(b, 24 + 8 + 1, 13);  // value type
    EXPECT_NE(ErrorOf(b).find("unknown value type 13"), std::string::npos);
  }
  {
    GgufWriter w;
    w.AddU32("k", 1);
    w.AddU32("k", 2);
    EXPECT_NE(ErrorOf(w.Build()).find("duplicate metadata key 'k'"), std::string::npos);
  }
  {
    GgufWriter w;
    w.AddScalar<uint8_t>("b", GgufType::kBool, 7);
    EXPECT_NE(ErrorOf(w.Build()).find("bool"), std::string::npos);
  }
  {
    GgufWriter w;
    w.AddU32("general.alignment", 48);
    EXPECT_NE(ErrorOf(w.Build()).find("power of two"), std::string::npos);
  }
  {
    GgufWriter w;
    w.AddU32("general.alignment", 1);
    EXPECT_NE(ErrorOf(w.Build()).find("below 8"), std::string::npos);
  }
  {
    GgufWriter w;
    w.AddF32("general.alignment", 32.0f);
    EXPECT_NE(ErrorOf(w.Build()).find("expected uint32"), std::string::npos);
  }
  {
    // Arrays nested 100 deep: rejected, not a stack overflow.
    ByteSink s;
    s.Put<uint32_t>(uint32_t(GgufType::kArray));
    for (int i = 0; i < 100; ++i) {
      s.Put<uint32_t>(uint32_t(GgufType::kArray));
      s.Put<uint64_t>(1);
      s.Put<uint32_t>(uint32_t(GgufType::kArray));
    }
    GgufWriter w;
    w.AddRaw("deep", s.bytes());
    EXPECT_NE(ErrorOf(w.Build()).find("deeper"), std::string::npos);
  }
}

// Offset of the tensor-info fields of the only tensor of a file without metadata.
struct InfoLayout {
  size_t n_dims, dim0, type, offset;
};
InfoLayout LayoutFor(const std::string& name, int n_dims) {
  const size_t start = 24 + 8 + name.size();
  return {start, start + 4, start + 4 + 8 * size_t(n_dims), start + 4 + 8 * size_t(n_dims) + 4};
}

TEST(GgufReader, CorruptTensorInfos) {
  GgufWriter w;
  w.AddTensor("blk.3.attn_q.weight", TensorType::kQ4_0, {64, 2}, Filled(72, 1));
  const auto ok = w.Build();
  const InfoLayout at = LayoutFor("blk.3.attn_q.weight", 2);
  auto b = ok;
  Poke<uint32_t>(b, at.n_dims, 5);
  EXPECT_NE(ErrorOf(b).find("5 dimensions"), std::string::npos);
  b = ok;
  Poke<uint64_t>(b, at.dim0, 1ull << 62);
  Poke<uint64_t>(b, at.dim0 + 8, 1ull << 62);
  EXPECT_NE(ErrorOf(b).find("too many elements"), std::string::npos);
  b = ok;
  Poke<uint64_t>(b, at.dim0, 48);
  EXPECT_NE(ErrorOf(b).find("not a multiple of the Q4_0 block size"), std::string::npos);
  b = ok;
  Poke<uint64_t>(b, at.dim0 + 8, 3);  // one more row than the file holds
  const std::string past = ErrorOf(b);
  EXPECT_NE(past.find("tensor 'blk.3.attn_q.weight' data"), std::string::npos) << past;
  EXPECT_NE(past.find("past end of file"), std::string::npos) << past;
  b = ok;
  Poke<uint32_t>(b, at.type, 4);  // retired ggml type id
  EXPECT_NE(ErrorOf(b).find("unknown tensor type 4"), std::string::npos);
  b = ok;
  Poke<uint64_t>(b, at.offset, 8);
  EXPECT_NE(ErrorOf(b).find("alignment"), std::string::npos);
  b = ok;
  Poke<uint64_t>(b, at.offset, ~0ull & ~31ull);
  EXPECT_NE(ErrorOf(b).find("past end of file"), std::string::npos);
}

TEST(GgufReader, DuplicateAndOverlappingTensors) {
  GgufWriter w;
  w.AddTensor("a", TensorType::kF32, {8}, Filled(32, 1));
  w.AddTensor("a", TensorType::kF32, {8}, Filled(32, 1));
  EXPECT_NE(ErrorOf(w.Build()).find("duplicate tensor name 'a'"), std::string::npos);

  GgufWriter v;
  v.AddTensor("a", TensorType::kF32, {8}, Filled(32, 1));
  v.AddTensor("b", TensorType::kF32, {8}, Filled(32, 1));
  auto b = v.Build();
  const InfoLayout second = {0, 0, 0, LayoutFor("a", 1).offset + 8 + 8 + 1 + 4 + 8 + 4};
  Poke<uint64_t>(b, second.offset, 0);
  EXPECT_NE(ErrorOf(b).find("overlap"), std::string::npos);
}

TEST(GgufReader, OpenMissingFile) {
  EXPECT_THROW(GgufFile::Open("/nonexistent/model.gguf"), Error);
  EXPECT_THROW(GgufFile::Open("/"), Error);
}

TEST(GgufReader, OpenFromDisk) {
  const auto bytes = RichWriter().Build();
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("tqlm_gguf_test_" + std::to_string(::getpid()) + ".gguf"))
                               .string();
  {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  }
  auto f = GgufFile::Open(path);
  std::filesystem::remove(path);  // the mapping stays valid
  EXPECT_EQ(f->GetString("general.architecture"), "llama");
  EXPECT_EQ(static_cast<const float*>(f->GetTensor("tok_embd.weight").data) != nullptr, true);
}

std::string DefaultModelPath() {
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "") + "/.cache/tqlm/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

TEST(GgufReader, RealSmolLM2) {
  const std::string path = DefaultModelPath();
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not installed";
  auto f = GgufFile::Open(path);
  EXPECT_EQ(f->GetString("general.architecture"), "llama");
  EXPECT_EQ(f->GetU32("llama.embedding_length"), 576u);
  EXPECT_EQ(f->GetU32("llama.block_count"), 30u);
  EXPECT_EQ(f->GetStringArray("tokenizer.ggml.tokens").size(), 49152u);
  const GgufTensor& emb = f->GetTensor("token_embd.weight");
  EXPECT_EQ(emb.type, TensorType::kQ8_0);
  EXPECT_EQ(emb.ne[0], 576);
  EXPECT_EQ(emb.ne[1], 49152);
  const GgufTensor& down = f->GetTensor("blk.0.ffn_down.weight");
  EXPECT_EQ(down.type, TensorType::kQ4_1);
  EXPECT_EQ(down.ne[0], 1536);
  EXPECT_EQ(down.ne[1], 576);
  EXPECT_EQ(f->tensors().size(), 272u);
}

}  // namespace
}  // namespace tqlm::model
