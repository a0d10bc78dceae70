// libFuzzer target for the GGUF reader: any input must either parse or throw tqlm::Error;
// never crash, hang, read out of bounds or hit undefined behaviour. After a successful parse
// it exercises the metadata getters and reads every tensor's bytes (first row decoded), so
// the reader's bounds are checked against what the kernels will touch.
// The seed corpus holds a converted file with every TurboQuant weight type (llama_tiny_tqw.gguf:
// `tqlm convert --no-load-check -m llama_tiny.gguf --wtype tq3 --keep "blk.0.attn_v*=tq2"
// --keep "blk.0.ffn_down*=tq4"`).
//
//   CC=clang CXX=clang++ cmake -S . -B build-fuzz -DTQLM_FUZZ=ON -DTQLM_TESTS=OFF \
//       -DTQLM_BENCH=OFF && cmake --build build-fuzz --target fuzz_gguf_reader
//   build-fuzz/fuzz_gguf_reader -dict=fuzz/gguf.dict fuzz/corpus/gguf -max_total_time=60
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "model/gguf.h"
#include "tqlm/error.h"

namespace {

void Exercise(const tqlm::model::GgufFile& f) {
  using tqlm::model::GgufType;
  for (const std::string& key : f.keys()) {
    const tqlm::model::GgufValue* v = f.Find(key);
    try {
      switch (v->type) {
        case GgufType::kString: (void)f.GetString(key); break;
        case GgufType::kBool: (void)f.GetBool(key); break;
        case GgufType::kFloat32:
        case GgufType::kFloat64: (void)f.GetF32(key); break;
        case GgufType::kArray:
          if (v->elem_type == GgufType::kString) {
            (void)f.GetStringArray(key);
          } else if (v->elem_type != GgufType::kArray) {
            (void)f.GetArray<float>(key);
            (void)f.GetArray<int32_t>(key);
          }
          break;
        default:
          (void)f.GetU32(key);
          (void)f.GetI64(key);
          break;
      }
    } catch (const tqlm::Error&) {
    }
  }
  unsigned sum = 0;
  std::vector<float> row;
  for (const tqlm::model::GgufTensor& t : f.tensors()) {
    if (t.nbytes > 0) {
      const auto* p = static_cast<const uint8_t*>(t.data);
      sum += p[0] + p[t.nbytes - 1];
    }
    // Decode the first row, as an embedding lookup would.
    if (tqlm::kernels::MatMulSupports(t.type) && t.ne[0] > 0 && t.ne[0] <= 4096 &&
        t.elements() > 0) {
      const tqlm::kernels::WeightView w = tqlm::kernels::MakeWeightView(
          t.type, t.data, t.elements() / t.ne[0], t.ne[0]);
      row.resize(size_t(t.ne[0]));
      tqlm::kernels::DequantizeRow(w, 0, row.data());
    }
  }
  volatile unsigned sink = sum;
  (void)sink;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = tqlm::model::GgufFile::FromMemory(data, size, "fuzz");
    Exercise(*f);
  } catch (const tqlm::Error&) {
  }
  return 0;
}
