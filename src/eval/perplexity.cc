#include "eval/perplexity.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

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

namespace {

// log-softmax of one row into out (may be null); returns the row's argmax.
int LogSoftmax(const float* row, int n, float* out, double* log_z_out) {
  float max_logit = row[0];
  int argmax = 0;
  for (int v = 1; v < n; ++v)
    if (row[v] > max_logit) max_logit = row[v], argmax = v;
  double sum = 0;
  for (int v = 0; v < n; ++v) sum += std::exp(double(row[v] - max_logit));
  const double log_z = double(max_logit) + std::log(sum);
  if (out)
    for (int v = 0; v < n; ++v) out[v] = float(double(row[v]) - log_z);
  *log_z_out = log_z;
  return argmax;
}

}  // namespace

WindowScore ScoreWindow(runtime::Session& session, std::span<const int> tokens, int ctx, int w,
                        const WindowReference* ref, WindowReference* make_ref) {
  if (ctx < 4) throw Error("perplexity: context must be at least 4 tokens");
  if (w < 0 || size_t(w + 1) * size_t(ctx) > tokens.size())
    throw Error(fmt::format("perplexity: window {} of {} tokens is past the text's {} tokens", w,
                            ctx, tokens.size()));
  const int n_vocab = session.n_vocab();
  const int first = ctx / 2, scored = ctx - 1 - first;
  if (ref && (ref->window != w || ref->n_vocab != n_vocab ||
              ref->logprobs.size() != size_t(scored) * n_vocab))
    throw Error("perplexity: the reference run is for another window or model");
  session.Rewind(0);
  const std::span<const int> window = tokens.subspan(size_t(w) * ctx, size_t(ctx));
  const std::span<const float> logits = session.Feed(window, /*all_logits=*/true);
  WindowScore s;
  s.window = w;
  s.scored = scored;
  if (make_ref) {
    make_ref->window = w;
    make_ref->n_vocab = n_vocab;
    make_ref->logprobs.resize(size_t(scored) * n_vocab);
    make_ref->argmax.resize(size_t(scored));
  }
  std::vector<float> lp(static_cast<size_t>(n_vocab));
  for (int j = 0; j < scored; ++j) {
    const int i = first + j;
    const float* row = logits.data() + size_t(i) * n_vocab;
    float* out = make_ref ? make_ref->logprobs.data() + size_t(j) * n_vocab : lp.data();
    double log_z = 0;
    const int argmax = LogSoftmax(row, n_vocab, out, &log_z);
    s.nll_sum -= double(out[window[size_t(i) + 1]]);
    s.top1_text += argmax == window[size_t(i) + 1];
    if (make_ref) make_ref->argmax[size_t(j)] = argmax;
    if (ref) {
      const float* p = ref->logprobs.data() + size_t(j) * n_vocab;
      double kl = 0;
      for (int v = 0; v < n_vocab; ++v) kl += std::exp(double(p[v])) * (double(p[v]) - out[v]);
      s.kl_sum += kl;
      s.kl_max = std::max(s.kl_max, kl);
      s.top1_ref += argmax == ref->argmax[size_t(j)];
      const size_t next = size_t(window[size_t(i) + 1]);
      const double d = double(p[next]) - double(out[next]);
      s.dnll_sq_sum += d * d;
    }
  }
  s.kv = session.cache().MemoryStats();
  return s;
}

}  // namespace tqlm::eval
