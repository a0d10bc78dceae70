// Teacher-forced logits of tqlm's forward pass for a fixed list of token ids, for comparisons
// with other engines and exact references (bench/fp64_reference_gemma3.py):
//   bench_dump_logits MODEL.gguf TOKENS.json OUT.f32
// TOKENS.json: an object with "tokens" (e.g. tests/data/model/*_golden.json). Writes the
// logits of every position as float32 [n_tokens][n_vocab]; runs on an f32 KV cache in chunks
// of 64 tokens.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <vector>

#include "kernels/cpu/thread_pool.h"
#include "model/model.h"
#include "tqlm/error.h"

int main(int argc, char** argv) {
  using namespace tqlm;
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s MODEL.gguf TOKENS.json OUT.f32\n", argv[0]);
    return 2;
  }
  try {
    auto model = model::Model::Load(argv[1]);
    std::ifstream in(argv[2]);
    if (!in) throw Error(std::string("cannot read ") + argv[2]);
    const std::vector<int> tokens = nlohmann::json::parse(in).at("tokens");
    kv::KvCacheConfig c;
    c.layers = model->info().layers;
    c.attn_scale = model->info().attn_scale;
    c.max_tokens = std::max<int>(1, int(tokens.size()));
    c.k_types.assign(c.layers.size(), kv::KvType::Parse("f32"));
    c.v_types = c.k_types;
    auto cache = kv::KvCache::Create(c);
    kernels::ThreadPool pool(2);
    const size_t n_vocab = size_t(model->info().n_vocab);
    std::vector<float> logits(64 * n_vocab);
    FILE* out = std::fopen(argv[3], "wb");
    if (!out) throw Error(std::string("cannot write ") + argv[3]);
    for (size_t at = 0; at < tokens.size(); at += 64) {
      const int n = int(std::min<size_t>(64, tokens.size() - at));
      model->Forward(tokens.data() + at, n, *cache, true, logits.data(), pool);
      if (std::fwrite(logits.data(), sizeof(float), n * n_vocab, out) != n * n_vocab)
        throw Error("short write");
    }
    std::fclose(out);
    std::printf("%zu tokens x %zu logits -> %s\n", tokens.size(), n_vocab, argv[3]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
