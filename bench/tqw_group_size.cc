// Group-size experiment behind the TurboQuant weight formats (docs/RESULTS.md, "TurboQuant
// weights"): the TQW encoder (rotation, int8 Lloyd–Max levels, scale grid + least squares,
// fp16 scale; src/kernels/cpu/tq_weights.cc) re-run with groups of 32, 64 and 128 columns on
// every 37th row of a model's block matrices, printing the relative squared error and the bits
// per weight each group size costs:
//   bench_tqw_group_size MODEL.gguf
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>
#include "codec/rotation.h"
#include "kernels/cpu/dequant.h"
#include "kernels/tensor_format.h"
#include "model/gguf.h"
#include "tqlm/codec.h"
using namespace tqlm;
struct Q { int n; float level[16]; float mid[15]; };
Q MakeQ(int G, int bits) {
  Q q; q.n = 1 << bits;
  const auto& cb = codec::LloydMaxCodebook::Get(G, bits, codec::CodebookKind::kSphere);
  for (int i = 0; i < q.n; ++i) q.level[i] = std::lround(127.0f * cb.levels[i] / cb.levels.back());
  for (int i = 0; i + 1 < q.n; ++i) q.mid[i] = 0.5f * (q.level[i] + q.level[i + 1]);
  return q;
}
double Assign(const Q& q, const float* y, int G, float d, float* ls) {
  double err = 0, yl = 0, ll = 0; float inv = 1 / d;
  for (int j = 0; j < G; ++j) { int k = 0; for (int i = 0; i + 1 < q.n; ++i) k += y[j] * inv > q.mid[i];
    double l = q.level[k], e = y[j] - d * l; err += e * e; yl += y[j] * l; ll += l * l; }
  *ls = ll > 0 ? yl / ll : d; return err;
}
double Group(const Q& q, const codec::Rotation& R, const float* w, int G) {
  std::vector<float> y(G); R.Apply(w, y.data()); float amax = 0; for (float v : y) amax = std::max(amax, std::fabs(v));
  if (!(amax > 0)) return 0;
  double best = INFINITY; float bd = 0; float top = q.level[q.n - 1];
  for (int s = 0; s < 10; ++s) { float d0 = amax / top * (0.6f + 0.05f * s), ls, ls2;
    double e0 = Assign(q, y.data(), G, d0, &ls); if (e0 < best) best = e0, bd = d0;
    if (ls > 0) { double e1 = Assign(q, y.data(), G, ls, &ls2); if (e1 < best) best = e1, bd = ls; } }
  float d = kernels::F16ToF32(kernels::F32ToF16(bd)), u; return Assign(q, y.data(), G, d, &u);
}
int main(int, char** argv) {
  auto f = model::GgufFile::Open(argv[1]);
  for (int bits = 2; bits <= 4; ++bits) for (int G : {32, 64, 128}) {
    Q q = MakeQ(G, bits); codec::Rotation R(G, 0x74514d5f726f7431ull);
    double err = 0, ref = 0; long skipped = 0;
    for (const auto& t : f->tensors()) {
      if (t.n_dims < 2 || t.name.find("blk.") != 0) continue;
      if (t.ne[0] % G) { skipped++; continue; }
      std::vector<float> a(t.ne[0]);
      for (int64_t r = 0; r < t.rows(); r += 37) {
        kernels::DequantizeValues(t.type, (const uint8_t*)t.data + r * t.row_bytes(), t.ne[0], a.data());
        for (int64_t c = 0; c < t.ne[0]; c += G) err += Group(q, R, a.data() + c, G);
        for (float v : a) ref += v * v;
      }
    }
    std::printf("bits %d G %3d: %.3f bpw, relative squared error %.5f (tensors skipped %ld)\n", bits, G, bits + 16.0 / G, err / ref, skipped);
  }
}
