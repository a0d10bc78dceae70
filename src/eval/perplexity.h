// Perplexity over a token stream with llama.cpp's protocol: consecutive windows of `ctx`
// tokens, each evaluated from an empty cache, scoring only the second half of every window
// (so each scored token sees at least ctx/2 tokens of context).
#pragma once

#include <functional>
#include <span>
#include <vector>

#include "model/model.h"
#include "runtime/session.h"

namespace tqlm::eval {

struct TokenScore {
  int position = 0;     // index in the token stream of the predicted token
  int token = 0;        // the actual next token
  int argmax = 0;       // the model's top-1 prediction
  float logprob = 0;    // log p(token)
};

struct PerplexityResult {
  double perplexity = 0;
  double mean_nll = 0;
  int windows = 0;
  std::vector<TokenScore> scores;
};

PerplexityResult Perplexity(model::Model& model, std::span<const int> tokens, int ctx,
                            int max_windows, const runtime::SessionOptions& session_options,
                            const std::function<void(int done, int total)>& progress = {});

// --- One window against a reference run (KL divergence, top-1 agreement) -----------------
// The reference (the f16-KV run of the same model and window) is kept as the log-softmax of
// its scored positions only: [scored][n_vocab] floats for one window at a time.
struct WindowReference {
  int window = -1;
  int n_vocab = 0;
  std::vector<float> logprobs;  // [scored][n_vocab]
  std::vector<int> argmax;      // [scored]
};

struct WindowScore {
  int window = 0;
  int scored = 0;           // positions scored (the second half of the window)
  double nll_sum = 0;       // -sum log p(actual next token)
  int top1_text = 0;        // argmax == actual next token
  double kl_sum = 0;        // sum over positions of KL(reference || this run), nats
  // sum over positions of d^2, d = this run's NLL of the actual next token minus the
  // reference's (sum d = nll_sum - the reference's): the spread that makes ΔPPL on a few
  // hundred tokens a noisy estimate (its standard error, CalibRow::dppl_se)
  double dnll_sq_sum = 0;
  double kl_max = 0;
  int top1_ref = 0;         // argmax == reference argmax
  kv::KvMemoryStats kv;     // the cache after the window
};

// Evaluates window w (tokens [w*ctx, (w+1)*ctx)) from an empty cache in `session`. With `ref`
// the KL and top-1 agreement against it are filled in; with `make_ref` this run's scored
// log-softmax rows are stored there (to serve as the reference of other runs).
WindowScore ScoreWindow(runtime::Session& session, std::span<const int> tokens, int ctx, int w,
                        const WindowReference* ref, WindowReference* make_ref);

}  // namespace tqlm::eval
