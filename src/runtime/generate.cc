#include "runtime/generate.h"

#include <algorithm>
#include <chrono>

#include "runtime/proposer.h"
#include "runtime/spec_controller.h"

namespace tqlm::runtime {
namespace {
using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

GenerateResult Generate(Session& session, const tokenizer::Tokenizer& tok,
                        std::span<const int> prompt, const GenerateParams& params,
                        const GenerateCallbacks& callbacks, Session* draft) {
  GenerateResult result;
  result.prompt_tokens = int(prompt.size());
  std::unique_ptr<Proposer> proposer = MakeProposer(params.spec, params.sampler, draft);
  SpecController control(params.spec);
  ShadowScore shadow;

  auto t0 = Clock::now();
  std::span<const float> logits = session.Feed(prompt, false, callbacks.on_prefill);
  result.prefill_seconds = Since(t0);
  const size_t after_prompt = session.history().size();
  const size_t n_vocab = size_t(session.n_vocab());

  TokenStream stream(tok, params, session.n_ctx() - int(session.history().size()));
  auto emit = [&](const std::string& piece) {
    if (!piece.empty() && callbacks.on_text) callbacks.on_text(piece);
  };
  std::vector<int> batch;
  auto t1 = Clock::now();
  if (stream.Started()) {
    TokenStream::Step step = stream.Next(logits, session.history());
    emit(step.text);
    while (!step.done) {
      if (callbacks.should_stop && callbacks.should_stop()) {
        emit(stream.Cancel());
        break;
      }
      const auto ts = Clock::now();
      const std::vector<int>& history = session.history();
      const size_t base = history.size();
      batch.assign(1, step.token);
      // Proposed tokens beyond the token limit or the context are never used.
      const int cap = std::min(stream.remaining() - 1, session.n_ctx() - int(base) - 1);
      std::vector<int> proposal;
      int k = 0;
      if (proposer && cap > 0) {
        std::vector<int> context(history.begin(), history.end());
        context.push_back(step.token);
        if (proposer->free()) {
          proposal = proposer->Propose(context, cap);
          k = control.Length(int(proposal.size()));
          if (k == 0 && !shadow.active() && !proposal.empty()) shadow.Start(proposal);
        } else {
          k = control.Length(cap);
          if (k > 0) proposal = proposer->Propose(context, k);
          k = int(proposal.size());
        }
        if (k > 0) shadow.Clear();
        batch.insert(batch.end(), proposal.begin(), proposal.begin() + k);
      }
      std::span<const float> rows = session.Feed(batch, k > 0);
      ++result.decode_forwards;
      // Row j holds the logits after batch[0..j]: the stream samples each position in turn, as
      // one token at a time would, and stops at the first proposal it does not draw itself.
      int j = 0;
      for (;; ++j) {
        const std::vector<SparseDistribution>* draws = proposer ? proposer->draws() : nullptr;
        step = stream.Next(rows.subspan(k > 0 ? size_t(j) * n_vocab : 0, n_vocab),
                           std::span<const int>(session.history()).first(base + 1 + size_t(j)),
                           draws && j < k ? &(*draws)[size_t(j)] : nullptr,
                           j < k ? proposal[size_t(j)] : -1);
        emit(step.text);
        if (!step.done) shadow.Produced(step.token, control);
        if (step.done || j == k || step.token != proposal[size_t(j)]) break;
      }
      if (k > 0) {
        control.Scored(k, j);
        ++result.spec.steps;
        result.spec.proposed += k;
        result.spec.accepted += j;
      }
      // Rejected tokens (and accepted ones past the end) leave the cache.
      if (session.history().size() > base + 1 + size_t(j)) session.Rewind(int(base) + 1 + j);
      control.Timed(int(batch.size()), Since(ts));
    }
  }
  result.decode_seconds = Since(t1);
  result.decode_tokens = int(session.history().size() - after_prompt);
  result.generated_tokens = stream.generated();
  result.finish_reason = stream.finish_reason();
  result.text = stream.text();
  return result;
}

}  // namespace tqlm::runtime
