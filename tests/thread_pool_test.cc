// ThreadPool: every task of every call runs exactly once, through both hand-over paths
// (back-to-back calls, where the workers are still spinning, and calls after a pause long
// enough that they have gone to sleep on the condition variable).
#include "kernels/cpu/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace tqlm::kernels {
namespace {

void CheckCalls(ThreadPool& pool, int calls, std::chrono::microseconds pause) {
  for (int c = 0; c < calls; ++c) {
    const size_t n = 1 + size_t(c % 37);
    std::vector<std::atomic<int>> hits(n);
    std::atomic<int> bad_thread{0};
    pool.ParallelTasks(n, [&](size_t task, int thread) {
      hits[task].fetch_add(1, std::memory_order_relaxed);
      if (thread < 0 || thread >= pool.num_threads()) bad_thread.fetch_add(1);
    });
    for (size_t t = 0; t < n; ++t) ASSERT_EQ(hits[t].load(), 1) << "call " << c << " task " << t;
    ASSERT_EQ(bad_thread.load(), 0);
    if (pause.count() > 0) std::this_thread::sleep_for(pause);
  }
}

TEST(ThreadPool, BackToBackCallsRunEveryTaskOnce) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    CheckCalls(pool, 3000, std::chrono::microseconds(0));
  }
}

TEST(ThreadPool, CallsAfterWorkersSleptRunEveryTaskOnce) {
  ThreadPool pool(3);
  CheckCalls(pool, 20, std::chrono::microseconds(3000));  // well past the spin time
}

TEST(ThreadPool, ParallelForCoversTheRangeOnce) {
  ThreadPool pool(2);
  for (size_t n : {size_t(1), size_t(7), size_t(1000)}) {
    std::vector<std::atomic<int>> hits(n);
    pool.ParallelFor(n, 3, [&](size_t b, size_t e, int) {
      for (size_t i = b; i < e; ++i) hits[i].fetch_add(1);
    });
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n " << n << " i " << i;
  }
}

// An exception thrown by a task on any thread (the caller's or a worker) reaches the caller of
// ParallelTasks, and the pool keeps working afterwards.
TEST(ThreadPool, TaskExceptionsReachTheCaller) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    for (size_t bad : {size_t(0), size_t(5), size_t(63)}) {
      std::atomic<int> ran{0};
      try {
        pool.ParallelTasks(64, [&](size_t t, int) {
          ran.fetch_add(1);
          if (t == bad) throw std::runtime_error("task " + std::to_string(t));
        });
        ADD_FAILURE() << "no exception, " << threads << " threads";
      } catch (const std::runtime_error& e) {
        EXPECT_EQ(std::string(e.what()), "task " + std::to_string(bad));
      }
      EXPECT_GE(ran.load(), 1);
      CheckCalls(pool, 3, std::chrono::microseconds(0));  // still usable
    }
  }
}

}  // namespace
}  // namespace tqlm::kernels
