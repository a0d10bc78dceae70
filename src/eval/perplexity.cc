#include "eval/perplexity.h"

#include <algorithm>
#include <cmath>

#include "tqlm/error.h"

namespace tqlm::eval {

PerplexityResult Perplexity(model::Model& model, std::span<const int> tokens, int ctx,
                            int max_windows, const runtime::SessionOptions& session_options,
                            const std::function<void(int, int)>& progress) {
  if (ctx < 4) throw Error("perplexity: context must be at least 4 tokens");
  int windows = int(tokens.size() / size_t(ctx));
  if (max_windows > 0) windows = std::min(windows, max_windows);
  if (windows == 0)
    throw Error("perplexity: text has fewer tokens than one window of " + std::to_string(ctx));
  runtime::SessionOptions opts = session_options;
  opts.n_ctx = ctx;
  runtime::Session session(model, opts);
  const int n_vocab = session.n_vocab();
  PerplexityResult result;
  double nll = 0;
  for (int w = 0; w < windows; ++w) {
    session.Rewind(0);
    const std::span<const int> window = tokens.subspan(size_t(w) * ctx, ctx);
    std::span<const float> logits = session.Feed(window, /*all_logits=*/true);
    for (int i = ctx / 2; i + 1 < ctx; ++i) {
      const float* row = logits.data() + size_t(i) * n_vocab;
      const int next = window[i + 1];
      float max_logit = row[0];
      int argmax = 0;
      for (int v = 1; v < n_vocab; ++v)
        if (row[v] > max_logit) max_logit = row[v], argmax = v;
      double sum = 0;
      for (int v = 0; v < n_vocab; ++v) sum += std::exp(double(row[v] - max_logit));
      const double logprob = double(row[next] - max_logit) - std::log(sum);
      nll -= logprob;
      result.scores.push_back({w * ctx + i + 1, next, argmax, float(logprob)});
    }
    if (progress) progress(w + 1, windows);
  }
  result.windows = windows;
  result.mean_nll = nll / double(result.scores.size());
  result.perplexity = std::exp(result.mean_nll);
  return result;
}

}  // namespace tqlm::eval
