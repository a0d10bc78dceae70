// The (installed model file, default KV?) parameter grid shared by the model-level tests that
// run every installed model with an f16 and with the default compressed KV cache.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <tuple>

namespace tqlm::test {

inline auto ModelsTimesKv() {
  return ::testing::Combine(::testing::Values("SmolLM2-135M-Instruct.Q4_1.gguf",
                                              "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
                                              "gemma-3-270m-q4_k_m.gguf"),
                            ::testing::Bool());
}

// "SmolLM2_default_kv", "qwen2_f16_kv", ...
struct ModelKvName {
  template <class Info>
  std::string operator()(const Info& info) const {
    const std::string s = std::get<0>(info.param);
    return s.substr(0, s.find_first_of("-.")) +
           (std::get<1>(info.param) ? "_default_kv" : "_f16_kv");
  }
};

}  // namespace tqlm::test
