#include "runtime/scheduler.h"

#include <fmt/format.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <thread>

#include "runtime/ngram_proposer.h"
#include "runtime/proposer.h"
#include "runtime/spec_controller.h"
#include "runtime/stop_strings.h"
#include "tokenizer/stream_decoder.h"

namespace tqlm::runtime {
namespace {
using Clock = std::chrono::steady_clock;

int DefaultThreads() { return int(std::max(1u, std::thread::hardware_concurrency())); }

StreamEvent TextEvent(StreamEvent::Kind kind, std::string text) {
  StreamEvent e;
  e.kind = kind;
  e.text = std::move(text);
  return e;
}

StreamEvent ShutdownEvent() {
  StreamEvent e;
  e.kind = StreamEvent::Kind::kError;
  e.text = "the server is shutting down";
  e.unavailable = true;
  return e;
}

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}
}  // namespace

// ---- RequestStream ----

std::optional<StreamEvent> RequestStream::Next(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return !events_.empty(); })) return std::nullopt;
  StreamEvent e = std::move(events_.front());
  events_.pop_front();
  return e;
}

void RequestStream::Cancel() {
  std::lock_guard lock(mu_);
  cancelled_ = true;
}

bool RequestStream::cancelled() const {
  std::lock_guard lock(mu_);
  return cancelled_;
}

void RequestStream::Push(StreamEvent event) {
  {
    std::lock_guard lock(mu_);
    events_.push_back(std::move(event));
  }
  cv_.notify_all();
}

// ---- Scheduler ----

struct Scheduler::Slot {
  bool in_use = false;
  uint64_t order = 0;  // admission order: prefill goes oldest first
  std::shared_ptr<RequestStream> stream;
  GenerationRequest req;
  std::unique_ptr<kv::KvCache> cache;
  std::vector<int> fed;     // the tokens in `cache`, in order
  size_t prompt_done = 0;   // prompt tokens in `cache`
  int cached_tokens = 0;    // of which came from the prompt cache
  std::vector<float> logits;
  bool has_logits = false;  // logits hold the distribution of the next token
  int next_token = -1;      // sampled, to be run in the next decode step
  std::unique_ptr<TokenStream> out;  // sampling, stop strings, limit (shared with Generate)
  Clock::time_point first_token{};   // when the first token was sampled (decode timing)
  // Speculation (req.params.spec, prompt lookup): next_token was sampled by a verification
  // step and waits for the next decode step without new logits.
  bool has_next = false;
  std::unique_ptr<SpecController> spec;
  std::unique_ptr<Proposer> draft;  // spec.mode kDraft: proposes from options.draft_session
  ShadowScore shadow;
  SpecStats spec_stats;
  std::vector<float> spec_logits;  // [1 + proposed][n_vocab]
};

Scheduler::Scheduler(model::Model& model, const tokenizer::Tokenizer& tokenizer,
                     SchedulerOptions options)
    : model_(model),
      tok_(tokenizer),
      options_(std::move(options)),
      n_ctx_(options_.n_ctx > 0 ? options_.n_ctx : model.info().n_ctx_train),
      pool_(options_.n_threads > 0 ? options_.n_threads : DefaultThreads()),
      prompt_cache_(options_.prompt_cache_bytes),
      spec_pool_(options_.spec_pool_bytes) {
  if (options_.parallel < 1) throw Error("--parallel must be at least 1");
  if (options_.batch < 1) throw Error("the prefill batch must be at least 1 token");
  if (options_.max_queue < 0) throw Error("the queue limit must not be negative");
  if (n_ctx_ < 2) throw Error(fmt::format("context size {} is too small", n_ctx_));
  ResolveKvPolicy(options_.kv, model.info().layers, 0);  // reject a bad policy up front
  for (int i = 0; i < options_.parallel; ++i) {
    slots_.push_back(std::make_unique<Slot>());
    slots_.back()->logits.resize(model.info().n_vocab);
  }
  free_slots_ = options_.parallel;
  stats_.slots = work_.slots = options_.parallel;
  thread_ = std::thread([this] { Loop(); });
}

Scheduler::~Scheduler() { Shutdown(std::chrono::milliseconds(0)); }

std::shared_ptr<RequestStream> Scheduler::Submit(GenerationRequest request) {
  const int n = int(request.prompt.size());
  if (n == 0) throw Error("the prompt is empty");
  if (n >= n_ctx_)
    throw Error(fmt::format(
        "the prompt is {} tokens but the context holds {} (including at least one generated "
        "token): {} tokens over",
        n, n_ctx_, n - n_ctx_ + 1));
  auto stream = std::make_shared<RequestStream>();
  {
    std::lock_guard lock(mu_);
    if (stopping_) throw Overloaded("the server is shutting down", true);
    if (queue_.size() >= size_t(options_.max_queue) + size_t(free_slots_))
      throw Overloaded(fmt::format("all {} slots are busy and {} requests are queued; retry later",
                                   options_.parallel, queue_.size()),
                       false);
    queue_.push_back({std::move(request), stream});
    stats_.queued = int(queue_.size());
  }
  cv_.notify_all();
  return stream;
}

SchedulerStats Scheduler::Stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void Scheduler::Shutdown(std::chrono::milliseconds grace) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      stopping_ = true;
      deadline_ = Clock::now() + grace;
    } else {
      deadline_ = std::min(deadline_, Clock::now() + grace);
    }
  }
  cv_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void Scheduler::Loop() {
  std::vector<Pending> admitted;
  for (;;) {
    admitted.clear();
    int active = 0;
    for (const auto& s : slots_) active += s->in_use ? 1 : 0;
    bool expired = false;
    {
      std::unique_lock lock(mu_);
      auto ready = [&] { return active > 0 || (!queue_.empty() && free_slots_ > 0) || stopping_; };
      cv_.wait(lock, ready);
      expired = stopping_ && Clock::now() >= deadline_;
      if (expired) {
        for (Pending& p : queue_) p.stream->Push(ShutdownEvent());
        work_.requests_failed += queue_.size();
        queue_.clear();
      }
      // A request cancelled while it waited (its client hung up) leaves the queue now rather
      // than when a slot frees up, so the queue depth shows only requests someone awaits.
      const size_t waiting = queue_.size();
      std::erase_if(queue_, [](const Pending& p) { return p.stream->cancelled(); });
      work_.requests_cancelled += waiting - queue_.size();
      if (stopping_ && active == 0 && queue_.empty()) break;
      while (free_slots_ > 0 && !queue_.empty()) {
        admitted.push_back(std::move(queue_.front()));
        queue_.pop_front();
        --free_slots_;
      }
    }
    if (expired)
      for (auto& s : slots_)
        if (s->in_use) {
          ++work_.requests_failed;
          End(*s, ShutdownEvent());
        }
    for (Pending& p : admitted) Admit(std::move(p));
    Step();
    bool idle = false;
    if (options_.trim_when_idle && active + int(admitted.size()) > 0) {
      idle = true;  // something ran in this step; is anything left?
      for (const auto& s : slots_) idle = idle && !s->in_use;
      std::lock_guard lock(mu_);
      idle = idle && queue_.empty();
    }
    if (idle) TrimHeap();
    PublishStats();
    // With requests still running, a stopping scheduler wakes up often enough to meet its
    // deadline; the steps themselves are short.
  }
  PublishStats();
}

void Scheduler::TrimHeap() {
#if defined(__GLIBC__)
  // Trims every arena, the HTTP threads' too, and (since glibc 2.8) frees whole free pages in
  // the middle of the heaps, not just at their tops. Takes a few milliseconds, only when idle.
  malloc_trim(0);
  ++work_.heap_trims;
#endif
}

void Scheduler::Admit(Pending pending) {
  Slot* slot = nullptr;
  for (auto& s : slots_)
    if (!s->in_use) slot = s.get();
  Slot& s = *slot;  // free_slots_ counted one for this request
  s.in_use = true;
  s.order = admit_counter_++;
  s.stream = std::move(pending.stream);
  s.req = std::move(pending.request);
  if (s.stream->cancelled()) {
    ++work_.requests_cancelled;
    Release(s);
    return;
  }
  try {
    const std::vector<int>& prompt = s.req.prompt;
    PromptCache::Hit hit = prompt_cache_.Lookup(prompt);
    if (hit.cache) {
      s.cache = std::move(hit.cache);
    } else {
      const ResolvedKv kv = ResolveKvPolicy(options_.kv, model_.info().layers, int(prompt.size()),
                                            s.req.tools_head_tokens);
      s.cache = model_.CreateCache(MakeKvCacheConfig(model_.info(), kv, n_ctx_));
    }
    s.fed.assign(prompt.begin(), prompt.begin() + hit.tokens);
    s.prompt_done = size_t(hit.tokens);
    s.cached_tokens = hit.tokens;
    s.out = std::make_unique<TokenStream>(tok_, s.req.params, n_ctx_ - int(prompt.size()));
    const SpecParams& spec = s.req.params.spec;
    if (spec.mode == SpecMode::kDraft) {
      if (options_.draft_session == nullptr)
        throw Error("draft-model speculation needs the server started with -md DRAFT.gguf");
      s.draft = MakeProposer(spec, s.req.params.sampler, options_.draft_session);
      s.spec = std::make_unique<SpecController>(spec);
    }
    if (spec.mode == SpecMode::kNgram) {
      NgramPropose({}, spec.ngram_min, spec.ngram_max, 0);  // rejects bad lengths
      s.spec = std::make_unique<SpecController>(spec);
    }
    work_.prompt_tokens += prompt.size();
  } catch (const std::exception& e) {
    Fail(s, e.what());
  }
}

void Scheduler::Step() {
  for (auto& s : slots_)
    if (s->in_use && s->stream->cancelled()) {
      ++work_.requests_cancelled;
      Release(*s);
    }
  PrefillChunk();
  std::vector<Slot*> continuing;
  SampleAll(continuing);
  // Speculation pays where the weights are read for one token only: a sequence decoding alone.
  // With several, the batched step already shares the weights among them (continuous batching
  // goes on as without speculation).
  if (continuing.size() == 1 && continuing[0]->spec && SpecStep(*continuing[0])) return;
  DecodeBatch(continuing);
}

// One verification step (as Generate's, runtime/generate.h): the sampled token and the
// proposed ones in one forward pass, each position sampled in turn from its own logits, the
// rejected tokens rolled back. False when nothing is worth proposing (a plain step follows).
bool Scheduler::SpecStep(Slot& s) {
  const SpecParams& sp = s.req.params.spec;
  const size_t base = s.fed.size();
  const int cap = std::min(s.out->remaining() - 1, n_ctx_ - int(base) - 1);
  if (cap <= 0) return false;
  std::vector<int> batch = s.fed;
  batch.push_back(s.next_token);
  std::vector<int> proposal;
  bool from_pool = false;
  int k = 0;
  if (s.draft) {  // each proposed token costs a draft step: decide the length first
    k = s.spec->Length(cap);
    if (k > 0) proposal = s.draft->Propose(batch, k);
    k = int(proposal.size());
    if (k == 0) return false;
  } else {
    proposal = NgramPropose(batch, sp.ngram_min, sp.ngram_max, cap);
    if (proposal.empty()) {
      proposal = spec_pool_.Propose(batch, sp.ngram_min, sp.ngram_max, cap);
      from_pool = !proposal.empty();
    }
    k = s.spec->Length(int(proposal.size()));
    if (k == 0) {
      if (!s.shadow.active() && !proposal.empty()) s.shadow.Start(proposal);
      return false;
    }
  }
  s.shadow.Clear();
  work_.spec_pool_proposals += from_pool;
  batch.insert(batch.end(), proposal.begin(), proposal.begin() + k);
  const size_t n_vocab = size_t(model_.info().n_vocab);
  s.spec_logits.resize(size_t(k + 1) * n_vocab);
  const auto t0 = Clock::now();
  try {
    model_.Forward(batch.data() + base, k + 1, *s.cache, true, s.spec_logits.data(), pool_);
  } catch (const std::exception& e) {
    Fail(s, e.what());
    return true;
  }
  ++work_.decode_steps;
  ++work_.decode_batch_sum;
  int j = 0;
  bool done = false;
  for (;; ++j) {
    // A sampling draft's proposals are verified by speculative sampling against its draws.
    const std::vector<SparseDistribution>* draws = s.draft ? s.draft->draws() : nullptr;
    const TokenStream::Step step =
        s.out->Next(std::span<const float>(s.spec_logits).subspan(size_t(j) * n_vocab, n_vocab),
                    std::span<const int>(batch).first(base + 1 + size_t(j)),
                    draws && j < k ? &(*draws)[size_t(j)] : nullptr,
                    j < k ? proposal[size_t(j)] : -1);
    ++work_.generated_tokens;
    if (!step.text.empty() || step.logprob) {
      StreamEvent ev = TextEvent(StreamEvent::Kind::kText, step.text);
      if (step.logprob) ev.logprobs.push_back(std::move(*step.logprob));
      s.stream->Push(std::move(ev));
    }
    done = step.done;
    if (!done) s.next_token = step.token;
    if (done || j == k || step.token != proposal[size_t(j)]) break;
  }
  s.spec->Scored(k, j);
  ++s.spec_stats.steps;
  s.spec_stats.proposed += k;
  s.spec_stats.accepted += j;
  ++work_.spec.steps;
  work_.spec.proposed += k;
  work_.spec.accepted += j;
  // Rejected tokens (and accepted ones past the end) leave the cache.
  s.cache->Truncate(int(base) + 1 + j);
  batch.resize(base + 1 + size_t(j));
  s.fed = std::move(batch);
  const double sec = Seconds(t0);
  work_.decode_seconds += sec;
  s.spec->Timed(k + 1, sec);
  if (done) {
    Finish(s, s.out->finish_reason());
  } else {
    s.has_next = true;
  }
  return true;
}

void Scheduler::PrefillChunk() {
  Slot* slot = nullptr;
  for (auto& s : slots_)
    if (s->in_use && s->prompt_done < s->req.prompt.size() && (!slot || s->order < slot->order))
      slot = s.get();
  if (!slot) return;
  Slot& s = *slot;
  const std::vector<int>& prompt = s.req.prompt;
  const int n = int(std::min(prompt.size() - s.prompt_done, size_t(options_.batch)));
  const auto t0 = Clock::now();
  try {
    model_.Forward(prompt.data() + s.prompt_done, n, *s.cache, false, s.logits.data(), pool_);
  } catch (const std::exception& e) {
    Fail(s, e.what());
    return;
  }
  work_.prefill_seconds += Seconds(t0);
  work_.prefill_tokens += n;
  s.fed.insert(s.fed.end(), prompt.begin() + s.prompt_done, prompt.begin() + s.prompt_done + n);
  s.prompt_done += n;
  if (s.prompt_done == prompt.size()) {
    s.has_logits = true;
    prompt_cache_.Insert(s.fed, *s.cache);  // shared prefixes (system prompt, tools) reuse it
  }
}

void Scheduler::SampleAll(std::vector<Slot*>& continuing) {
  const auto t0 = Clock::now();
  for (auto& sp : slots_) {
    Slot& s = *sp;
    if (s.in_use && s.has_next) {  // sampled by a verification step
      s.has_next = false;
      continuing.push_back(&s);
      continue;
    }
    if (!s.in_use || !s.has_logits) continue;
    s.has_logits = false;
    if (!s.out->Started()) {  // max_tokens 0, or no room left after the prompt
      Finish(s, s.out->finish_reason());
      continue;
    }
    const TokenStream::Step step = s.out->Next(s.logits, s.fed);
    ++work_.generated_tokens;
    if (s.out->generated() == 1) s.first_token = Clock::now();
    if (!step.text.empty() || step.logprob) {
      StreamEvent ev = TextEvent(StreamEvent::Kind::kText, step.text);
      if (step.logprob) ev.logprobs.push_back(std::move(*step.logprob));
      s.stream->Push(std::move(ev));
    }
    if (step.done) {
      Finish(s, s.out->finish_reason());
      continue;
    }
    if (s.spec) s.shadow.Produced(step.token, *s.spec);
    s.next_token = step.token;
    continuing.push_back(&s);
  }
  work_.decode_seconds += Seconds(t0);
}

void Scheduler::DecodeBatch(const std::vector<Slot*>& continuing) {
  if (continuing.empty()) return;
  std::vector<model::BatchItem> items;
  items.reserve(continuing.size());
  for (Slot* s : continuing) items.push_back({s->next_token, *s->cache, s->logits.data()});
  const auto t0 = Clock::now();
  try {
    model_.ForwardBatch(items, pool_);
  } catch (const std::exception& e) {
    for (Slot* s : continuing) Fail(*s, e.what());
    return;
  }
  const double sec = Seconds(t0);
  work_.decode_seconds += sec;
  ++work_.decode_steps;
  work_.decode_batch_sum += continuing.size();
  if (continuing.size() == 1 && continuing[0]->spec) continuing[0]->spec->Timed(1, sec);
  for (Slot* s : continuing) {
    s->fed.push_back(s->next_token);
    s->has_logits = true;
  }
}

void Scheduler::Finish(Slot& s, const std::string& reason) {
  // The whole exchange is a prefix of the next turn of the same conversation.
  if (s.cache && !s.fed.empty()) prompt_cache_.Insert(s.fed, *s.cache);
  spec_pool_.Add(s.fed);
  StreamEvent done;
  done.kind = StreamEvent::Kind::kDone;
  done.finish_reason = reason;
  done.prompt_tokens = int(s.req.prompt.size());
  done.cached_tokens = s.cached_tokens;
  done.completion_tokens = s.out->generated();
  if (s.cache) {
    const kv::KvMemoryStats m = s.cache->MemoryStats();
    done.kv_bytes = m.bytes_used;
    done.kv_bytes_f16 = m.bytes_f16;
  }
  if (s.out->generated() > 1) done.decode_seconds = Seconds(s.first_token);
  done.spec = s.spec_stats;
  ++work_.requests_finished;
  End(s, std::move(done));
}

void Scheduler::Fail(Slot& s, const std::string& message) {
  ++work_.requests_failed;
  End(s, TextEvent(StreamEvent::Kind::kError, message));
}

// The slot is freed and the statistics published before the final event is delivered, so a
// caller that has its answer also sees it counted.
void Scheduler::End(Slot& s, StreamEvent last) {
  std::shared_ptr<RequestStream> stream = s.stream;
  Release(s);
  PublishStats();
  stream->Push(std::move(last));
}

void Scheduler::Release(Slot& s) {
  std::vector<float> logits = std::move(s.logits);
  s = Slot();
  s.logits = std::move(logits);
  {
    std::lock_guard lock(mu_);
    ++free_slots_;
  }
}

void Scheduler::PublishStats() {
  SchedulerStats st = work_;
  st.active = 0;
  st.kv = {};
  for (const auto& s : slots_) {
    if (!s->in_use) continue;
    ++st.active;
    if (!s->cache) continue;
    const kv::KvMemoryStats m = s->cache->MemoryStats();
    st.kv.bytes_allocated += m.bytes_allocated;
    st.kv.bytes_used += m.bytes_used;
    st.kv.bytes_f16 += m.bytes_f16;
  }
  st.prompt_cache = prompt_cache_.stats();
  st.spec_pool_bytes = spec_pool_.bytes();
  std::lock_guard lock(mu_);
  st.queued = int(queue_.size());
  stats_ = st;
}

}  // namespace tqlm::runtime
