// Exports the codec's rotation matrices and Lloyd–Max codebooks (dims 64/128/256, 1..4 bits) for
// the GPU test, which runs where the codec (Highway) is not built, and checks on the CPU that the
// GPU's decode formula — |x|_fp16 * R^T levels[#{thresholds < (R x / |x|)_j}] — reproduces
// TurboQuantCodec::Decode(Encode(x)).
//   g++ -std=c++20 -O2 -Iinclude -Isrc bench/cuda_attention/export_codec_tables.cc src/codec/*.cc \
//       $(pkg-config --cflags --libs libhwy) -lfmt -o /tmp/export && /tmp/export bench/cuda_attention/codec_tables.bin
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <random>
#include <vector>

#include "codec/half.h"
#include "tqlm/codec.h"

using tqlm::codec::CodecConfig;
using tqlm::codec::TurboQuantCodec;

static void Put(std::FILE* f, int32_t dim, int32_t bits, const std::vector<float>& v) {
  const int32_t n = int32_t(v.size());
  std::fwrite(&dim, 4, 1, f);
  std::fwrite(&bits, 4, 1, f);
  std::fwrite(&n, 4, 1, f);
  std::fwrite(v.data(), 4, v.size(), f);
}

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  std::FILE* f = std::fopen(argv[1], "wb");
  std::fwrite("TQCT1\n", 1, 6, f);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0, 1);
  int bad = 0;
  for (int dim : {64, 128, 256}) {
    std::vector<float> rot(size_t(dim) * dim);  // row-major, y = R x
    for (int bits = 1; bits <= 4; ++bits) {
      CodecConfig cfg;
      cfg.dim = dim;
      cfg.bits = bits;
      TurboQuantCodec codec(cfg);
      std::vector<float> e(dim), col(dim), r(dim);
      std::vector<float> this_rot(size_t(dim) * dim);
      for (int i = 0; i < dim; ++i) {
        std::fill(e.begin(), e.end(), 0.0f);
        e[i] = 1;
        codec.Rotate(e.data(), col.data());
        for (int j = 0; j < dim; ++j) this_rot[size_t(j) * dim + i] = col[j];
      }
      if (bits == 1) {
        rot = this_rot;
        Put(f, dim, 0, rot);
      } else if (this_rot != rot) {
        std::printf("dim %d: rotation depends on bits\n", dim);
        ++bad;
      }
      const auto& cb = codec.codebook_hi();
      std::vector<float> tab = cb.levels;
      tab.insert(tab.end(), cb.thresholds.begin(), cb.thresholds.end());
      Put(f, dim, bits, tab);
      // GPU formula vs the codec's round trip.
      double worst = 0;
      int differ = 0;  // vectors where an index lands on the other side of a threshold (ties)
      std::vector<uint8_t> code(codec.layout().bytes_per_vector);
      std::vector<float> x(dim), xc(dim), y(dim), yh(dim);
      for (int t = 0; t < 2000; ++t) {
        const float scale = 0.1f + 5.0f * float(t % 17) / 17.0f;
        for (float& v : x) v = scale * normal(rng);
        codec.Encode(x.data(), code.data());
        codec.Decode(code.data(), xc.data());
        double n2 = 0;
        for (float v : x) n2 += double(v) * v;
        const float norm = float(std::sqrt(n2));
        for (int j = 0; j < dim; ++j) {
          double acc = 0;
          for (int i = 0; i < dim; ++i) acc += double(rot[size_t(j) * dim + i]) * x[i];
          const float u = float(acc / norm);
          int k = 0;
          for (float th : cb.thresholds) k += th < u ? 1 : 0;
          yh[j] = cb.levels[k];
        }
        const float nh = tqlm::codec::F16ToF32(tqlm::codec::F32ToF16(norm));
        double err2 = 0, ref2 = 0;
        for (int i = 0; i < dim; ++i) {
          double acc = 0;
          for (int j = 0; j < dim; ++j) acc += double(rot[size_t(j) * dim + i]) * yh[j];
          const double mine = double(nh) * acc;
          err2 += (mine - xc[i]) * (mine - xc[i]);
          ref2 += double(xc[i]) * xc[i];
        }
        const double rel = std::sqrt(err2 / ref2);
        worst = std::max(worst, rel);
        differ += rel > 1e-5;
      }
      std::printf("dim %3d bits %d: GPU formula vs codec round trip: %d of 2000 vectors differ "
                  "(> 1e-5, threshold ties), largest relative difference %.2e\n",
                  dim, bits, differ, worst);
      if (differ > 20) ++bad;
    }
  }
  std::fclose(f);
  return bad ? 1 : 0;
}
