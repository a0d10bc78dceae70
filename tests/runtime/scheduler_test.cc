// Continuous batching (src/runtime/scheduler.h) on the real default model: greedy outputs of
// requests decoded together equal runtime::Generate one at a time; the prompt cache reuses a
// prompt; cancellation frees the slot; too-long prompts, a full queue and shutdown are reported.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "runtime/scheduler.h"
#include "runtime/session.h"

namespace tqlm::runtime {
namespace {

using namespace std::chrono_literals;

struct Outcome {
  std::string text;
  StreamEvent last;
};

// No test here bounds how long anything takes (a loaded CI machine may be slow); waits poll
// for the state the test expects, and their deadline only turns a hang into a failure.
constexpr auto kHangDeadline = 300s;

// Polls cond() until it holds or kHangDeadline passes; returns whether it held.
template <typename Cond>
bool WaitFor(Cond cond) {
  const auto end = std::chrono::steady_clock::now() + kHangDeadline;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

// Everything a stream delivers, up to its final event.
Outcome Drain(RequestStream& s) {
  Outcome o;
  for (int waited = 0; waited < kHangDeadline / 100ms; ++waited) {  // waits without an event
    auto ev = s.Next(100ms);
    if (!ev) continue;
    if (ev->kind == StreamEvent::Kind::kText) {
      o.text += ev->text;
      continue;
    }
    o.last = *ev;
    return o;
  }
  ADD_FAILURE() << "stream did not finish";
  return o;
}

class SchedulerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* c = std::getenv("TQLM_CACHE");
    const char* home = std::getenv("HOME");
    const std::string path = (c ? std::string(c) : std::string(home ? home : ".") + "/.cache/tqlm") +
                             "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
    if (!std::filesystem::exists(path)) return;
    model_ = model::Model::Load(path).release();
    tok_ = tokenizer::Tokenizer::FromGguf(model_->file()).release();
  }
  static void TearDownTestSuite() {
    delete tok_;
    delete model_;
    tok_ = nullptr;
    model_ = nullptr;
  }
  void SetUp() override {
    if (!model_) GTEST_SKIP() << "default model not installed";
  }

  static SchedulerOptions Options(int parallel) {
    SchedulerOptions o;
    o.parallel = parallel;
    o.n_ctx = 256;
    o.n_threads = 2;
    o.batch = 16;  // several prefill chunks per prompt: chunks interleave with decoding
    return o;
  }
  // What a request gives alone, through Generate on a fresh session (no scheduler).
  static std::string Plain(const GenerationRequest& r) {
    SessionOptions so;
    so.n_ctx = 256;
    so.n_threads = 2;
    Session session(*model_, so);
    return Generate(session, *tok_, r.prompt, r.params).text;
  }
  static GenerationRequest Greedy(const std::string& text, int max_tokens) {
    GenerationRequest r;
    r.prompt = tok_->Encode(text, true, false);
    r.params.max_tokens = max_tokens;
    r.params.sampler.temperature = 0;
    return r;
  }

  static model::Model* model_;
  static tokenizer::Tokenizer* tok_;
};
model::Model* SchedulerTest::model_ = nullptr;
tokenizer::Tokenizer* SchedulerTest::tok_ = nullptr;

TEST_F(SchedulerTest, BatchedGreedyEqualsOneAtATime) {
  const std::vector<std::string> prompts = {
      "The capital of France is", "Once upon a time, in a small village by the sea, there lived",
      "1, 2, 3, 4,"};
  std::vector<std::string> want;
  for (const auto& p : prompts) want.push_back(Plain(Greedy(p, 8)));
  Scheduler sched(*model_, *tok_, Options(2));  // 3 requests on 2 slots: one waits its turn
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const auto& p : prompts) streams.push_back(sched.Submit(Greedy(p, 8)));
  for (size_t i = 0; i < prompts.size(); ++i) {
    const Outcome o = Drain(*streams[i]);
    ASSERT_EQ(o.last.kind, StreamEvent::Kind::kDone) << o.last.text;
    EXPECT_EQ(o.text, want[i]) << prompts[i];
    EXPECT_EQ(o.last.prompt_tokens, int(Greedy(prompts[i], 1).prompt.size()));
    EXPECT_GE(o.last.completion_tokens, 1);
  }
  const SchedulerStats st = sched.Stats();
  EXPECT_EQ(st.requests_finished, prompts.size());
  EXPECT_GT(st.decode_batch_sum, st.decode_steps);  // some steps decoded several sequences
}

// Issue 28: requests that ask for speculation (prompt lookup) verify proposals when they decode
// alone and join batched steps otherwise; the text is the same as without it.
TEST_F(SchedulerTest, SpeculationKeepsTheText) {
  const std::vector<std::string> prompts = {
      "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,", "Once upon a time, in a small village by the sea,",
      "a b c d e f g a b c d e f g a b c"};
  std::vector<std::string> want;
  for (const auto& p : prompts) want.push_back(Plain(Greedy(p, 24)));
  for (int parallel : {1, 2}) {
    Scheduler sched(*model_, *tok_, Options(parallel));
    std::vector<std::shared_ptr<RequestStream>> streams;
    for (const auto& p : prompts) {
      GenerationRequest r = Greedy(p, 24);
      r.params.spec.mode = SpecMode::kNgram;
      r.params.spec.adaptive = false;  // verify whatever is proposed: rollbacks happen
      r.params.spec.ngram_min = 1;
      streams.push_back(sched.Submit(std::move(r)));
    }
    int64_t proposed = 0;
    for (size_t i = 0; i < prompts.size(); ++i) {
      const Outcome o = Drain(*streams[i]);
      ASSERT_EQ(o.last.kind, StreamEvent::Kind::kDone) << o.last.text;
      EXPECT_EQ(o.text, want[i]) << prompts[i] << ", parallel " << parallel;
      proposed += o.last.spec.proposed;
    }
    const SchedulerStats st = sched.Stats();
    EXPECT_EQ(st.spec.proposed, proposed);
    EXPECT_GT(st.spec.proposed, 0) << "parallel " << parallel;
    EXPECT_LE(st.spec.accepted, st.spec.proposed);
  }
}

// The shared n-gram pool: a request whose own text proposes nothing continues what a finished
// request produced after the same tokens; the text stays the text without speculation.
TEST_F(SchedulerTest, SpeculationPoolSharesFinishedRequests) {
  const std::string prompt = "Once upon a time, in a small village by the sea,";
  const std::string want = Plain(Greedy(prompt, 24));
  for (size_t pool_bytes : {size_t(0), size_t(1) << 20}) {
    SchedulerOptions opt = Options(1);
    opt.spec_pool_bytes = pool_bytes;
    Scheduler sched(*model_, *tok_, opt);
    const Outcome first = Drain(*sched.Submit(Greedy(prompt, 24)));  // no speculation
    GenerationRequest r = Greedy(prompt, 24);
    r.params.spec.mode = SpecMode::kNgram;
    r.params.spec.adaptive = false;
    const Outcome second = Drain(*sched.Submit(std::move(r)));
    ASSERT_EQ(second.last.kind, StreamEvent::Kind::kDone) << second.last.text;
    EXPECT_EQ(first.text, want);
    EXPECT_EQ(second.text, want) << "pool " << pool_bytes;
    const SchedulerStats st = sched.Stats();
    if (pool_bytes == 0) {
      EXPECT_EQ(st.spec_pool_proposals, 0u);
      EXPECT_EQ(st.spec_pool_bytes, 0u);
    } else {
      EXPECT_GT(st.spec_pool_proposals, 0u);
      EXPECT_GT(st.spec.accepted, 0);  // the first request's continuation is this one's
      EXPECT_GT(st.spec_pool_bytes, 0u);
      EXPECT_LE(st.spec_pool_bytes, pool_bytes);
    }
  }
}

// Draft-model speculation in the server: the target as its own draft (the same vocabulary;
// every greedy proposal is accepted), one draft session for the scheduler; greedy text is the
// text without speculation, and a seed gives the same text on every request whatever the draft
// session held before. Without a draft session the request fails.
TEST_F(SchedulerTest, DraftSpeculationKeepsTheText) {
  const std::string prompt = "Once upon a time, in a small village by the sea,";
  SessionOptions so;
  so.n_ctx = 256;
  so.n_threads = 2;
  for (float temperature : {0.0f, 0.8f}) {
    GenerationRequest plain = Greedy(prompt, 20);
    plain.params.sampler.temperature = temperature;
    plain.params.sampler.seed = 7;
    const std::string want = Plain(plain);
    Session draft(*model_, so);
    SchedulerOptions opt = Options(1);
    opt.draft_session = &draft;
    Scheduler sched(*model_, *tok_, opt);
    std::string first;
    for (int round = 0; round < 2; ++round) {  // the draft session is reused across requests
      GenerationRequest r = plain;
      r.params.spec.mode = SpecMode::kDraft;
      r.params.spec.adaptive = false;
      r.params.spec.max_draft = 4;
      const Outcome o = Drain(*sched.Submit(std::move(r)));
      ASSERT_EQ(o.last.kind, StreamEvent::Kind::kDone) << o.last.text;
      // Greedy: the text without speculation. Sampled: speculative sampling keeps the
      // distribution, not the draws, so the same seed gives the same text on every request.
      if (temperature == 0) {
        EXPECT_EQ(o.text, want) << "round " << round;
      }
      if (round == 0) first = o.text;
      EXPECT_EQ(o.text, first) << "temperature " << temperature;
      EXPECT_GT(o.last.spec.proposed, 0);
      if (temperature == 0) {
        EXPECT_EQ(o.last.spec.accepted, o.last.spec.proposed);
      }
    }
  }
  Scheduler no_draft(*model_, *tok_, Options(1));
  GenerationRequest r = Greedy(prompt, 4);
  r.params.spec.mode = SpecMode::kDraft;
  const Outcome o = Drain(*no_draft.Submit(std::move(r)));
  EXPECT_EQ(o.last.kind, StreamEvent::Kind::kError);
  EXPECT_NE(o.last.text.find("-md"), std::string::npos) << o.last.text;
}

TEST_F(SchedulerTest, PromptCacheReusesAPrefix) {
  Scheduler sched(*model_, *tok_, Options(1));
  const Outcome a = Drain(*sched.Submit(Greedy("The history of Rome begins with", 6)));
  const Outcome b = Drain(*sched.Submit(Greedy("The history of Rome begins with", 6)));
  ASSERT_EQ(b.last.kind, StreamEvent::Kind::kDone);
  EXPECT_EQ(a.text, b.text);
  EXPECT_EQ(a.last.cached_tokens, 0);
  EXPECT_EQ(b.last.cached_tokens, b.last.prompt_tokens - 1);  // all but the last prompt token
  const SchedulerStats st = sched.Stats();
  EXPECT_EQ(st.prompt_cache.hits, 1u);
  EXPECT_EQ(st.prompt_cache.tokens_reused, uint64_t(b.last.cached_tokens));
}

TEST_F(SchedulerTest, StopStringEndsAndIsNotEmitted) {
  Scheduler sched(*model_, *tok_, Options(1));
  const Outcome full = Drain(*sched.Submit(Greedy("The capital of France is", 8)));
  ASSERT_NE(full.text.find("Paris"), std::string::npos) << full.text;
  GenerationRequest r = Greedy("The capital of France is", 8);
  r.params.stop = {"Paris"};
  const Outcome cut = Drain(*sched.Submit(r));
  EXPECT_EQ(cut.last.finish_reason, "stop");
  EXPECT_EQ(cut.text, full.text.substr(0, full.text.find("Paris")));
}

TEST_F(SchedulerTest, CancelFreesTheSlot) {
  Scheduler sched(*model_, *tok_, Options(1));
  GenerationRequest r = Greedy("Tell me a very long story about dragons.", 200);
  r.params.min_tokens = 200;  // no early end: only the cancel can stop it
  auto s = sched.Submit(r);
  while (!s->Next(100ms)) {
  }
  s->Cancel();
  ASSERT_TRUE(WaitFor([&] { return sched.Stats().requests_cancelled > 0; })) << "never cancelled";
  EXPECT_EQ(sched.Stats().requests_cancelled, 1u);
  // The only slot is free again: the next request runs.
  EXPECT_EQ(Drain(*sched.Submit(Greedy("Hello", 2))).last.kind, StreamEvent::Kind::kDone);
  EXPECT_EQ(sched.Stats().active, 0);
}

TEST_F(SchedulerTest, CancelWhileQueuedLeavesTheQueue) {
  Scheduler sched(*model_, *tok_, Options(1));
  GenerationRequest r = Greedy("Tell me a very long story about dragons.", 200);
  r.params.min_tokens = 200;
  auto running = sched.Submit(r);
  auto queued = sched.Submit(Greedy("Hello", 2));
  while (!running->Next(100ms)) {
  }
  ASSERT_TRUE(WaitFor([&] { return sched.Stats().active > 0; }));
  ASSERT_EQ(sched.Stats().queued, 1);
  queued->Cancel();  // its client left while it waited for the only slot
  ASSERT_TRUE(WaitFor([&] { return sched.Stats().queued == 0; })) << "still queued";
  EXPECT_EQ(sched.Stats().queued, 0);
  EXPECT_EQ(sched.Stats().requests_cancelled, 1u);
  EXPECT_EQ(sched.Stats().active, 1);  // the running request goes on
  running->Cancel();
}

#if defined(__GLIBC__)
TEST_F(SchedulerTest, GivesHeapBackWhenIdle) {
  for (bool trim : {true, false}) {
    SchedulerOptions o = Options(2);
    o.trim_when_idle = trim;
    Scheduler sched(*model_, *tok_, o);
    auto a = sched.Submit(Greedy("The capital of France is", 4));
    auto b = sched.Submit(Greedy("1, 2, 3,", 6));
    Drain(*a);
    Drain(*b);
    // The trim follows the last answer, in the scheduler's idle step (after the answer's stats
    // are published): with trimming, wait for it; without, there is no event to wait for, but
    // any trim of this idle period happens before the next request is admitted, so the count
    // after that request has answered includes it.
    if (trim) {
      ASSERT_TRUE(WaitFor([&] { return sched.Stats().heap_trims >= 1; }));
    }
    Drain(*sched.Submit(Greedy("Hello", 2)));
    // Once per idle period (here two), not once per request or step.
    if (trim) {
      ASSERT_TRUE(WaitFor([&] { return sched.Stats().heap_trims >= 2; }));
    }
    EXPECT_EQ(sched.Stats().heap_trims, trim ? 2u : 0u);
  }
}
#endif

TEST_F(SchedulerTest, RefusesWhatCannotRun) {
  SchedulerOptions o = Options(1);
  o.max_queue = 0;
  Scheduler sched(*model_, *tok_, o);
  GenerationRequest too_long;
  too_long.prompt.assign(300, 42);
  try {
    sched.Submit(too_long);
    ADD_FAILURE() << "accepted a prompt longer than the context";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("45 tokens over"), std::string::npos) << e.what();
  }
  EXPECT_THROW(sched.Submit(GenerationRequest{}), Error);
  auto busy = sched.Submit(Greedy("Count from one to a hundred:", 100));
  EXPECT_THROW(sched.Submit(Greedy("Hi", 2)), Overloaded);  // one slot, no queue
  busy->Cancel();
}

TEST_F(SchedulerTest, ShutdownEndsEveryStream) {
  auto sched = std::make_unique<Scheduler>(*model_, *tok_, Options(1));
  auto running = sched->Submit(Greedy("Write a long poem about the sea.", 200));
  auto queued = sched->Submit(Greedy("Write a long poem about the sky.", 200));
  sched->Shutdown(0ms);
  EXPECT_THROW(sched->Submit(Greedy("Hi", 2)), Overloaded);
  for (auto* s : {running.get(), queued.get()}) {
    const Outcome o = Drain(*s);
    if (o.last.kind == StreamEvent::Kind::kError) EXPECT_TRUE(o.last.unavailable);
    else EXPECT_EQ(o.last.kind, StreamEvent::Kind::kDone);
  }
  EXPECT_FALSE(queued->Next(0ms).has_value());  // nothing after the final event
}

}  // namespace
}  // namespace tqlm::runtime
