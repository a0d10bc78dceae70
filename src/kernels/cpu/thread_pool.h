// One fork-join pool shared by every CPU kernel. ParallelFor splits [0, n) into contiguous
// chunks, one per worker; the calling thread works too, so a pool of T threads starts T-1.
#pragma once

#include <condition_variable>
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

  // fn(task, thread_index) for task in [0, n_tasks), tasks handed out dynamically.
  void ParallelTasks(size_t n_tasks, const std::function<void(size_t, int)>& fn);

 private:
  void WorkerLoop(int index);
  void RunJob(int index);

  int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable start_cv_, done_cv_;
  const std::function<void(size_t, int)>* job_ = nullptr;
  size_t n_tasks_ = 0;
  size_t next_task_ = 0;
  int pending_ = 0;
  unsigned generation_ = 0;
  bool stop_ = false;
};

}  // namespace tqlm::kernels
