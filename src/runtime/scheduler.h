// Continuous batching: several requests generated together by one inference thread.
//
// The thread owns the model's forward passes and one thread pool; `parallel` slots each hold one
// sequence with its own KV cache (built from the same KvPolicy as `tqlm run`). Each step:
//   1. cancelled requests free their slots; queued requests are admitted into free slots,
//      starting from the longest prefix found in the prompt cache;
//   2. one prefill chunk (at most `batch` tokens) of one admitted prompt, so a long prompt
//      delays the others' decoding by one chunk per step, not by its whole length;
//   3. every slot with fresh logits samples its next token (its own sampler, seed, stop strings);
//   4. one batched decode step (Model::ForwardBatch) for all slots still generating; or, when
//      one sequence decodes alone and its request asks for speculation (prompt lookup), one
//      step that verifies its proposed tokens (SpecStep).
// Text reaches the caller through a RequestStream (a thread-safe channel); callers (HTTP
// threads) never run inference. This layer knows nothing of HTTP or JSON.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cpu/thread_pool.h"
#include "model/model.h"
#include "runtime/generate.h"
#include "runtime/kv_policy.h"
#include "runtime/ngram_pool.h"
#include "runtime/prompt_cache.h"
#include "tokenizer/tokenizer.h"
#include "tqlm/error.h"

namespace tqlm::runtime {

struct SchedulerOptions {
  int parallel = 4;         // concurrent sequences (slots)
  int n_ctx = 4096;         // context per sequence; 0: the model's training context
  int n_threads = 0;        // 0: all cores
  int batch = 256;          // prefill chunk per step, tokens
  KvPolicy kv;
  size_t prompt_cache_bytes = size_t(256) << 20;  // 0: no prompt cache
  int max_queue = 64;       // requests waiting for a slot; more are refused (Overloaded)
  // Finished requests' tokens kept for prompt lookup across requests (runtime/ngram_pool.h),
  // used by a speculating request when its own text proposes nothing; 0: off.
  size_t spec_pool_bytes = size_t(16) << 20;
  // For requests with spec.mode kDraft: the draft model's session (a vocabulary checked by
  // CheckDraftVocabulary), used only by the inference thread and only by a request that decodes
  // alone; it must outlive the scheduler. Without it such requests are refused.
  Session* draft_session = nullptr;
  // When the last request ends (nothing running or queued), give the C heap's free pages
  // back to the system (glibc malloc_trim). Without it RSS creeps up under a steady load:
  // KV blocks freed by finished sequences and evicted prompt-cache entries leave free holes
  // in malloc's arenas that it keeps (docs/RESULTS.md, Server).
  bool trim_when_idle = true;
};

struct GenerationRequest {
  std::vector<int> prompt;
  GenerateParams params;    // max_tokens < 0: until the context is full
  int tools_head_tokens = 0;  // the prompt's tool-defining head (tokenizer/prompt_head.h)
};

struct StreamEvent {
  enum class Kind { kText, kDone, kError };
  Kind kind = Kind::kText;
  std::string text;           // kText: the next piece of output; kError: the message
  std::vector<TokenLogprob> logprobs;  // kText: the tokens sampled since the last event
  std::string finish_reason;  // kDone: "stop" (end token or stop string) or "length"
  int prompt_tokens = 0;      // kDone
  int cached_tokens = 0;      // kDone: prompt tokens reused from the prompt cache
  int completion_tokens = 0;  // kDone
  size_t kv_bytes = 0, kv_bytes_f16 = 0;  // kDone: the sequence's KV cache, and as plain f16
  double decode_seconds = 0;  // kDone: from the first sampled token to the last
  SpecStats spec;             // kDone: speculation (params.spec)
  bool unavailable = false;   // kError: refused by a shutdown, not a failure of the request
};

// One request's output channel: the inference thread pushes, the caller pops. The last event
// is always kDone or kError.
class RequestStream {
 public:
  // The next event, waiting up to `timeout`; nullopt when none came in time.
  std::optional<StreamEvent> Next(std::chrono::milliseconds timeout);
  // The client went away: the scheduler frees the sequence at its next step.
  void Cancel();
  bool cancelled() const;

 private:
  friend class Scheduler;
  void Push(StreamEvent event);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<StreamEvent> events_;
  bool cancelled_ = false;
};

// Refused for lack of room (queue full) or because the server is stopping.
class Overloaded : public Error {
 public:
  Overloaded(const std::string& what, bool shutting_down)
      : Error(what), shutting_down_(shutting_down) {}
  bool shutting_down() const { return shutting_down_; }

 private:
  bool shutting_down_;
};

struct SchedulerStats {
  int slots = 0;
  int active = 0;                  // slots holding a sequence
  int queued = 0;                  // requests waiting for a slot
  uint64_t requests_finished = 0;  // ended with kDone
  uint64_t requests_cancelled = 0;
  uint64_t requests_failed = 0;    // ended with kError
  uint64_t prompt_tokens = 0;      // prompt tokens of admitted requests
  uint64_t prefill_tokens = 0;     // prompt tokens actually computed (not from the cache)
  uint64_t generated_tokens = 0;
  uint64_t decode_steps = 0;       // batched decode steps
  uint64_t decode_batch_sum = 0;   // sequences over all decode steps (mean batch = sum / steps)
  uint64_t heap_trims = 0;         // times the idle scheduler gave free heap pages back
  SpecStats spec;                  // speculation of requests that decoded alone
  uint64_t spec_pool_proposals = 0;  // verification steps whose proposal came from the pool
  size_t spec_pool_bytes = 0;        // the pool's size now
  double prefill_seconds = 0;
  double decode_seconds = 0;
  kv::KvMemoryStats kv;            // caches of the active sequences
  PromptCacheStats prompt_cache;
};

class Scheduler {
 public:
  // Throws tqlm::Error for a bad KV policy. `model` and `tokenizer` must outlive it.
  Scheduler(model::Model& model, const tokenizer::Tokenizer& tokenizer, SchedulerOptions options);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a request. Throws tqlm::Error for an empty prompt or one that leaves no room in the
  // context (saying by how many tokens it is over), Overloaded when the queue is full or the
  // scheduler is shutting down.
  std::shared_ptr<RequestStream> Submit(GenerationRequest request);

  int n_ctx() const { return n_ctx_; }
  SchedulerStats Stats() const;

  // Stops taking requests; running and queued ones may finish for up to `grace`, then get a
  // kError event. Returns when the inference thread has ended. Idempotent.
  void Shutdown(std::chrono::milliseconds grace);

 private:
  struct Slot;
  struct Pending {
    GenerationRequest request;
    std::shared_ptr<RequestStream> stream;
  };

  void Loop();
  void Step();
  void Release(Slot& slot);
  void Admit(Pending pending);
  void PrefillChunk();
  void SampleAll(std::vector<Slot*>& continuing);
  void DecodeBatch(const std::vector<Slot*>& continuing);
  bool SpecStep(Slot& slot);
  void Finish(Slot& slot, const std::string& reason);
  void Fail(Slot& slot, const std::string& message);
  void End(Slot& slot, StreamEvent last);
  void PublishStats();
  void TrimHeap();

  model::Model& model_;
  const tokenizer::Tokenizer& tok_;
  SchedulerOptions options_;
  int n_ctx_;
  kernels::ThreadPool pool_;
  PromptCache prompt_cache_;
  // Inference thread only:
  NgramPool spec_pool_;
  std::vector<std::unique_ptr<Slot>> slots_;
  uint64_t admit_counter_ = 0;
  SchedulerStats work_;  // counters, copied into stats_ after each step

  mutable std::mutex mu_;  // guards the fields below
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  int free_slots_ = 0;
  bool stopping_ = false;
  std::chrono::steady_clock::time_point deadline_;
  SchedulerStats stats_;

  std::thread thread_;  // last: starts after everything above exists
};

}  // namespace tqlm::runtime
