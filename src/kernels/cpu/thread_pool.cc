#include "kernels/cpu/thread_pool.h"

#include <algorithm>

namespace tqlm::kernels {

ThreadPool::ThreadPool(int num_threads) : num_threads_(std::max(1, num_threads)) {
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  start_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::RunJob(int index) {
  for (;;) {
    size_t task;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (next_task_ >= n_tasks_) return;
      task = next_task_++;
    }
    (*job_)(task, index);
  }
}

void ThreadPool::WorkerLoop(int index) {
  unsigned seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      start_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
    }
    RunJob(index);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }
}

void ThreadPool::ParallelTasks(size_t n_tasks, const std::function<void(size_t, int)>& fn) {
  if (n_tasks == 0) return;
  if (num_threads_ == 1 || n_tasks == 1) {
    for (size_t t = 0; t < n_tasks; ++t) fn(t, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &fn;
    n_tasks_ = n_tasks;
    next_task_ = 0;
    pending_ = num_threads_ - 1;
    ++generation_;
  }
  start_cv_.notify_all();
  RunJob(0);
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [&] { return pending_ == 0; });
  job_ = nullptr;
}

void ThreadPool::ParallelFor(size_t n, size_t grain,
                             const std::function<void(size_t, size_t, int)>& fn) {
  if (n == 0) return;
  grain = std::max<size_t>(1, grain);
  const size_t units = (n + grain - 1) / grain;
  const size_t chunks = std::min<size_t>(units, size_t(num_threads_));
  const size_t per = (units + chunks - 1) / chunks;
  ParallelTasks(chunks, [&](size_t c, int thread) {
    const size_t begin = std::min(n, c * per * grain);
    const size_t end = std::min(n, (c + 1) * per * grain);
    if (begin < end) fn(begin, end, thread);
  });
}

}  // namespace tqlm::kernels
