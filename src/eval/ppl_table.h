// The Pareto table of `tqlm eval ppl`: per engine and KV configuration, the window rows of a
// results file summed into perplexity, ΔPPL and mean KL divergence against the same engine's
// f16-KV run, top-1 agreement, and bits per value; plus which rows are Pareto-optimal in
// (bits per value, mean KLD).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace tqlm::eval {

struct PplSummary {
  std::string engine;   // "tqlm", "llama.cpp", …
  std::string kv_name;  // e.g. "tq4/tq3+s=4+b=128"
  int windows = 0;
  int scored = 0;
  double bits_per_value = 0;    // layout of the compressed part
  double effective_bits = 0;    // bytes the cache held at the end of a window, sinks and buffer included
  double perplexity = 0;
  double ref_perplexity = 0;    // the engine's f16/f16 run over the same windows (0: none)
  double delta_ppl = 0;         // perplexity / ref_perplexity - 1
  double mean_kl = 0;           // nats per scored token
  double max_kl = 0;
  double top1_ref = 0;          // top-1 agreement with the f16 run
  double top1_text = 0;         // top-1 accuracy on the text
  double seconds = 0;           // wall time of its cells
  bool pareto = false;          // no other row has <= bits and <= KLD with one strictly less
};

// Summarizes the "ppl" rows whose config matches `model_sha256`, `text_sha256` and `ctx`,
// sorted by engine then bits per value (descending). A configuration missing some windows
// that f16 has is summarized over the windows it has (and its f16 reference over the same).
std::vector<PplSummary> SummarizePpl(const std::vector<nlohmann::json>& rows,
                                     const std::string& model_sha256,
                                     const std::string& text_sha256, int ctx);

std::string PplMarkdownTable(const std::vector<PplSummary>& rows);
nlohmann::json PplSummaryJson(const PplSummary& s);

}  // namespace tqlm::eval
