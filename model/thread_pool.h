// A fixed pool of worker threads for data-parallel loops.
//
// Thread-safety: ParallelFor may be called by one thread at a time (the
// owner); it blocks until every task has run. The calling thread takes part,
// so a pool of size 1 has no extra threads.
#ifndef HARMAMBA_MODEL_THREAD_POOL_H_
#define HARMAMBA_MODEL_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"

namespace harmamba {

class ThreadPool {
 public:
  // `num_threads` >= 1 counts the caller; num_threads - 1 workers start.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();  // joins the workers

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs fn(task, thread_index) for task in [0, num_tasks), spread over the
  // threads; thread_index in [0, num_threads()) identifies a per-thread
  // workspace. Returns when all tasks are done.
  void ParallelFor(int64_t num_tasks,
                   const std::function<void(int64_t, int)>& fn);

 private:
  void WorkerLoop(int thread_index);
  void RunTasks(int thread_index);

  std::mutex mu_;
  std::condition_variable start_cv_;
  std::condition_variable done_cv_;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  int busy_workers_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // The current job; written by the owner before a generation starts, read
  // by workers during it.
  const std::function<void(int64_t, int)>* job_ = nullptr;
  int64_t num_tasks_ = 0;
  std::atomic<int64_t> next_task_{0};
  std::vector<std::thread> workers_;
};

}  // namespace harmamba

#endif  // HARMAMBA_MODEL_THREAD_POOL_H_
