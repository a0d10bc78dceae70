#include "model/convert.h"

#include <fmt/format.h>
#include <fnmatch.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "kernels/cpu/dequant.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/cpu/tq_weights.h"
#include "model/gguf.h"
#include "model/gguf_writer.h"
#include "model/model.h"
#include "tqlm/error.h"

namespace tqlm::model {
namespace {

using kernels::TensorType;

// Metadata the converter writes itself (replacing any copy from an earlier conversion).
constexpr const char* kWeightsKey = "tqlm.weights.converted";

bool SameFile(const std::string& a, const std::string& b) {
  struct stat sa {}, sb {};
  if (::stat(a.c_str(), &sa) != 0 || ::stat(b.c_str(), &sb) != 0) return false;
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

bool EndsWith(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

struct Plan {
  const GgufTensor* src = nullptr;
  TensorTarget target;
};

TensorTarget Choose(const ConvertOptions& o, const GgufTensor& t, std::vector<std::string>* notes) {
  // Vectors (norms, biases) stay as they are whatever the rules say: the forward passes read
  // them as F32.
  if (t.n_dims < 2) return {};
  for (const ConvertRule& r : o.rules) {
    if (::fnmatch(r.glob.c_str(), t.name.c_str(), 0) == 0) return r.target;
  }
  const bool matrix = EndsWith(t.name, "weight");
  if (!matrix || t.name == "token_embd.weight" || t.name == "output.weight") return {};
  if (t.ne[0] % kernels::Traits(o.wtype).block_size != 0) {
    notes->push_back(fmt::format("{} kept as {}: rows of {} are not a multiple of {}", t.name,
                                 kernels::TypeName(t.type), t.ne[0],
                                 kernels::Traits(o.wtype).block_size));
    return {};
  }
  return {false, o.wtype};
}

void EncodeQ8_0(const float* x, int64_t n, uint8_t* out) {
  for (int64_t b = 0; b < n / kernels::kQK; ++b) {
    const float* v = x + b * kernels::kQK;
    float amax = 0;
    for (int j = 0; j < kernels::kQK; ++j) amax = std::max(amax, std::fabs(v[j]));
    const float d = amax / 127.0f, inv = d != 0 ? 1.0f / d : 0.0f;
    kernels::BlockQ8_0 blk;
    blk.d = kernels::F32ToF16(d);
    for (int j = 0; j < kernels::kQK; ++j) blk.qs[j] = int8_t(std::lrint(v[j] * inv));
    std::memcpy(out + size_t(b) * sizeof blk, &blk, sizeof blk);
  }
}

// One row of n values to `type`.
void EncodeRow(TensorType type, const float* x, int64_t n, uint8_t* out) {
  switch (type) {
    case TensorType::kF32: std::memcpy(out, x, size_t(n) * 4); return;
    case TensorType::kF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = kernels::F32ToF16(x[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
      return;
    case TensorType::kQ8_0: EncodeQ8_0(x, n, out); return;
    default: kernels::TqwEncode(type, x, n, out); return;
  }
}

// The tensor's data in its target type.
std::vector<uint8_t> Encode(const GgufTensor& t, TensorType type, kernels::ThreadPool& pool) {
  const int64_t cols = t.ne[0], rows = t.rows();
  const size_t in_row = t.row_bytes(), out_row = kernels::RowBytes(type, cols);
  if (!kernels::DequantizeSupports(t.type)) {
    throw Error(fmt::format("convert: tensor '{}': cannot decode {} (keep it with --keep '{}=keep')",
                            t.name, kernels::TypeName(t.type), t.name));
  }
  if (out_row == SIZE_MAX) {
    throw Error(fmt::format("convert: tensor '{}': rows of {} do not fit {}", t.name, cols,
                            kernels::TypeName(type)));
  }
  std::vector<uint8_t> out(out_row * size_t(rows));
  const auto* src = static_cast<const uint8_t*>(t.data);
  constexpr int64_t kRowsPerTask = 16;
  pool.ParallelTasks(size_t((rows + kRowsPerTask - 1) / kRowsPerTask), [&](size_t task, int) {
    thread_local std::vector<float> buf;
    buf.resize(size_t(cols));
    const int64_t r0 = int64_t(task) * kRowsPerTask, r1 = std::min(rows, r0 + kRowsPerTask);
    for (int64_t r = r0; r < r1; ++r) {
      kernels::DequantizeValues(t.type, src + size_t(r) * in_row, cols, buf.data());
      for (int64_t c = 0; c < cols; ++c) {
        if (!std::isfinite(buf[size_t(c)])) {
          throw Error(fmt::format("convert: tensor '{}' row {} holds a non-finite value",
                                  t.name, r));
        }
      }
      EncodeRow(type, buf.data(), cols, out.data() + size_t(r) * out_row);
    }
  });
  return out;
}

// The output as the reader sees it must be the plan, tensor for tensor.
void Verify(const std::string& path, const std::vector<GgufTensorInfo>& infos, bool load) {
  const auto f = GgufFile::Open(path);
  if (f->tensors().size() != infos.size()) {
    throw Error(fmt::format("convert: '{}' reads back with {} tensors, wrote {}", path,
                            f->tensors().size(), infos.size()));
  }
  for (size_t i = 0; i < infos.size(); ++i) {
    const GgufTensor& t = f->tensors()[i];
    if (t.name != infos[i].name || t.type != infos[i].type || t.ne != infos[i].ne ||
        t.nbytes != infos[i].nbytes()) {
      throw Error(fmt::format("convert: '{}' reads back tensor #{} as '{}' {}, wrote '{}' {}",
                              path, i, t.name, kernels::TypeName(t.type), infos[i].name,
                              kernels::TypeName(infos[i].type)));
    }
  }
  // And a model can be built from it (shapes and types its architecture expects).
  if (load) (void)Model::Load(path);
}

}  // namespace

TensorTarget ParseTensorTarget(const std::string& name) {
  if (name == "keep") return {};
  if (name == "tq2") return {false, TensorType::kTQW2};
  if (name == "tq3") return {false, TensorType::kTQW3};
  if (name == "tq4") return {false, TensorType::kTQW4};
  if (name == "f32") return {false, TensorType::kF32};
  if (name == "f16") return {false, TensorType::kF16};
  if (name == "q8_0") return {false, TensorType::kQ8_0};
  throw Error(fmt::format("convert: unknown type '{}' (tq2, tq3, tq4, f32, f16, q8_0, keep)",
                          name));
}

ConvertReport ConvertModel(const ConvertOptions& o) {
  if (!kernels::IsTqWeight(o.wtype)) throw Error("convert: --wtype must be tq2, tq3 or tq4");
  if (o.output.empty()) throw Error("convert: no output path");
  if (o.output == o.input || SameFile(o.input, o.output)) {
    throw Error(fmt::format("convert: refusing to overwrite the input '{}'", o.input));
  }
  const auto in = GgufFile::Open(o.input);
  ConvertReport report;
  report.input_bytes = in->file_size();

  std::vector<Plan> plan;
  std::vector<GgufTensorInfo> infos;
  size_t total = 0;
  for (const GgufTensor& t : in->tensors()) {
    Plan p{&t, Choose(o, t, &report.notes)};
    if (!p.target.keep && p.target.type == t.type && !kernels::IsTqWeight(t.type)) p.target = {};
    GgufTensorInfo info{t.name, p.target.keep ? t.type : p.target.type, t.n_dims, t.ne};
    if (info.nbytes() == SIZE_MAX) {
      throw Error(fmt::format("convert: tensor '{}' with rows of {} cannot be stored as {}",
                              t.name, t.ne[0], kernels::TypeName(info.type)));
    }
    total += t.nbytes;
    plan.push_back(p);
    infos.push_back(info);
  }

  const std::string tmp = o.output + ".part";
  try {
    GgufWriter w(tmp, in->alignment());
    for (size_t i = 0; i < in->keys().size(); ++i) {
      if (in->keys()[i] != kWeightsKey) w.AddRawMetadata(in->RawMetadata(i));
    }
    w.AddString(kWeightsKey, fmt::format("{} (tqlm convert)", kernels::TypeName(o.wtype)));
    for (const GgufTensorInfo& info : infos) w.AddTensor(info);
    w.WriteHeader();
    kernels::ThreadPool pool(std::max(1, o.threads));
    size_t done = 0;
    for (size_t i = 0; i < plan.size(); ++i) {
      const GgufTensor& t = *plan[i].src;
      if (plan[i].target.keep) {
        w.WriteTensor(t.data, t.nbytes);
        ++report.kept_tensors;
      } else {
        const std::vector<uint8_t> data = Encode(t, plan[i].target.type, pool);
        w.WriteTensor(data.data(), data.size());
        ++report.converted_tensors;
      }
      if (t.n_dims >= 2) {
        report.weights += t.elements();
        report.weight_bytes += infos[i].nbytes();
      }
      done += t.nbytes;
      if (o.progress) o.progress(done, total, t.name);
    }
    w.Finish();
    report.output_bytes = w.bytes_written();
    Verify(tmp, infos, o.load_check);
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), o.output.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw Error(fmt::format("convert: cannot move '{}' to '{}': {}", tmp, o.output,
                            std::strerror(errno)));
  }
  return report;
}

}  // namespace tqlm::model
