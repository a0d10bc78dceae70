// `tqlm convert`: rewrites a GGUF model with its weight matrices in another storage type
// (TurboQuant weights first of all), one tensor at a time: each is decoded to f32 from any
// format tqlm reads, encoded, and written; metadata and the tokenizer are copied byte for
// byte. The output is reopened and checked by the GGUF reader before the call returns.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "kernels/tensor_format.h"

namespace tqlm::model {

// What a tensor becomes: a storage type, or kept as it is.
struct TensorTarget {
  bool keep = true;
  kernels::TensorType type = kernels::TensorType::kF32;
};

// "tq2", "tq3", "tq4", "f32", "f16", "q8_0" or "keep"; throws tqlm::Error otherwise.
TensorTarget ParseTensorTarget(const std::string& name);

struct ConvertRule {
  std::string glob;  // fnmatch(3) pattern on the tensor name
  TensorTarget target;
};

struct ConvertOptions {
  std::string input, output;
  kernels::TensorType wtype = kernels::TensorType::kTQW4;
  // For matrices (2-D and up; vectors such as norms and biases are always kept): the first
  // matching rule wins; else token_embd.weight and output.weight are kept, and other matrices
  // whose rows are a multiple of the group become wtype.
  std::vector<ConvertRule> rules;
  int threads = 1;
  bool load_check = true;  // also build a Model from the output before accepting it
  // Called after each tensor with bytes of input done / total and the tensor's name.
  std::function<void(size_t done, size_t total, const std::string& name)> progress;
};

struct ConvertReport {
  size_t input_bytes = 0, output_bytes = 0;
  int64_t converted_tensors = 0, kept_tensors = 0;
  int64_t weights = 0;             // elements of all 2-D+ tensors
  size_t weight_bytes = 0;         // their bytes in the output
  std::vector<std::string> notes;  // e.g. matrices kept because their rows do not fit a group
};

// Throws tqlm::Error (input unreadable, output is the input, a tensor that cannot be encoded,
// a write error, or an output the reader refuses). The output is written next to its final
// name and renamed into place only once complete and checked.
ConvertReport ConvertModel(const ConvertOptions& options);

}  // namespace tqlm::model
