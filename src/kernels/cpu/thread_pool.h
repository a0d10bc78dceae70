// One fork-join pool shared by every CPU kernel. ParallelFor splits [0, n) into contiguous
// chunks, one per worker; the calling thread works too, so a pool of T threads starts T-1.
//
// A decode step is a few hundred short parallel calls (one per matrix, 20-200 µs each), so
// handing a job over must cost far less than a futex wake-up: workers spin on the job counter
// for a while (about 100 µs) before they sleep on the condition variable, tasks are taken with
// an atomic counter, and the caller spins the same way for the workers to finish.
#pragma once

#include <atomic>
#include <condition_variable>
#include <exception>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tqlm::kernels {

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // fn(begin, end, thread_index) over disjoint chunks covering [0, n); returns when all are
  // done. Chunks are multiples of `grain` (except the last). Not reentrant.
  void ParallelFor(size_t n, size_t grain,
                   const std::function<void(size_t, size_t, int)>& fn);

  // fn(task, thread_index) for task in [0, n_tasks), tasks handed out dynamically. If a task
  // throws, the tasks not yet started are skipped and the first exception is rethrown here.
  void ParallelTasks(size_t n_tasks, const std::function<void(size_t, int)>& fn);

 private:
  void WorkerLoop(int index);
  void RunJob(int index);

  int num_threads_;
  std::vector<std::thread> workers_;
  // generation_ changes (and stop_ is set) only under mu_, so a worker that checks them under
  // mu_ before it sleeps cannot miss the notification; spinning readers need no lock.
  std::mutex mu_;
  std::condition_variable start_cv_, done_cv_;
  const std::function<void(size_t, int)>* job_ = nullptr;  // published by generation_
  size_t n_tasks_ = 0;                                      // published by generation_
  std::atomic<size_t> next_task_{0};
  std::atomic<int> pending_{0};  // workers still inside the current job
  std::atomic<unsigned> generation_{0};
  std::atomic<bool> stop_{false};
  std::mutex error_mu_;
  std::exception_ptr error_;  // the job's first exception, rethrown by ParallelTasks
};

}  // namespace tqlm::kernels
