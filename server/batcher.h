// The dynamic batcher: many callers, one executor thread that owns a model
// backend (design.md §3, "Requests flow").
//
// Contract (after TensorFlow Serving's BatchScheduler):
// - Schedule() either accepts a task (returns OK and takes ownership; the
//   task's `done` will run exactly once) or refuses it (returns the reason;
//   `done` is never called and the task is destroyed). A full queue is an
//   error, never a wait: Schedule() never blocks on the model.
// - Every window of an accepted task gets exactly one outcome: logits, or a
//   status saying why not (DEADLINE_EXCEEDED, CANCELLED, UNAVAILABLE, or the
//   backend's error). `done` runs once, after the last window's outcome, on
//   the executor thread (on the thread calling RunOnce() in manual mode; on
//   the thread calling Shutdown() for tasks that shutdown fails), never while
//   the batcher's lock is held. `done` must not throw.
// - Expired or cancelled tasks are dropped before their windows reach the
//   model.
#ifndef HARMAMBA_SERVER_BATCHER_H_
#define HARMAMBA_SERVER_BATCHER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "model/backend.h"
#include "server/clock.h"
#include "server/lane.h"
#include "server/metrics_recorder.h"

namespace harmamba {

struct BatcherOptions {
  // Names the model in error messages and metrics.
  std::string model_name;

  // Most windows one ModelBackend::Run() receives. Tasks larger than this are
  // split across several runs.
  int max_batch_size = 64;

  // Batch sizes the executor rounds up to (e.g. one CUDA graph per bucket).
  // Sorted ascending, unique, all in [1, max_batch_size]; max_batch_size is
  // added if missing. Empty: powers of two below max_batch_size, plus
  // max_batch_size.
  std::vector<int> batch_buckets;

  // Whether a batch is padded to its bucket (padding rows are zeros and their
  // logits are discarded). On CPU padding costs compute, so off by default;
  // either way the bucket and the padding are reported to the metrics.
  bool pad_to_bucket = false;

  // How long a partial batch may wait for more windows. A window that arrives
  // while the executor is idle (nothing running, nothing queued) runs at once;
  // windows that arrive while a batch runs are collected, and when the
  // executor is free it runs them as soon as they make a full batch or the
  // oldest has waited max_queue_delay (or the batcher is draining).
  // 0 (the default) runs whatever is queued as soon as the executor is free:
  // right for the CPU engine, whose time per window hardly depends on the
  // batch size. Backends that batch much better than they run single windows
  // (GPUs) gain from a delay of about one batch-1 run time.
  absl::Duration max_queue_delay = absl::ZeroDuration();

  // Most windows waiting per lane; a task that does not fit is refused with
  // RESOURCE_EXHAUSTED.
  int64_t queue_capacity = 8192;

  // While bulk windows wait, they receive at least this share of the windows
  // of each batch (accumulated across batches, so a fraction of a window
  // carries over); interactive windows fill the rest first. In [0, 1):
  // interactive work is never starved, and bulk work is not starved when > 0.
  double min_bulk_fraction = 0.25;

  // true: the batcher runs its own executor thread. false: "manual" mode for
  // deterministic tests: nothing runs until the owner calls RunOnce().
  bool start_executor_thread = true;

  // Checks every field; the message names the field and the expected value.
  absl::Status Validate() const;
};

// The outcome of one task, handed to its `done` callback.
struct TaskResult {
  // One per window: OK if the window has logits, else why not.
  std::vector<absl::Status> window_status;
  // num_windows * num_classes logits, row-major; rows of windows whose status
  // is not OK are zero.
  std::vector<float> logits;
  int num_classes = 0;

  // OK if every window is OK, else the first non-OK status.
  absl::Status FirstError() const;
};

struct BatchTask {
  Lane lane = Lane::kInteractive;

  // The task's windows, >= 1: each points to window_floats() raw floats of
  // the backend's model (sample-major). The memory must stay valid and
  // unchanged until `done` runs: the caller keeps it alive (e.g. in the
  // request message) or moves it into `storage`.
  std::vector<const float*> windows;
  // Optional: memory the window pointers may point into; kept alive by the
  // batcher until `done` has run.
  std::vector<float> storage;

  // Windows still queued at the deadline are dropped with DEADLINE_EXCEEDED.
  absl::Time deadline = absl::InfiniteFuture();
  // Optional: set by another thread when the caller gives up; windows still
  // queued are then dropped with CANCELLED. Must outlive `done`'s call.
  const std::atomic<bool>* cancelled = nullptr;

  // Required. Called exactly once (see the contract above).
  absl::AnyInvocable<void(TaskResult)> done;
};

// Thread-safe: Schedule(), StopAccepting(), WaitUntilDrained(), Shutdown()
// and queued_windows() may be called from any thread. In manual mode,
// RunOnce() must be called by one thread at a time.
class Batcher {
 public:
  // Validates `options`. `backend`, `clock` and `metrics` must outlive the
  // batcher; `clock` defaults to Clock::Real(), `metrics` to the no-op one.
  // Only the batcher's executor calls backend->Run().
  static absl::StatusOr<std::unique_ptr<Batcher>> Create(
      const BatcherOptions& options, ModelBackend* backend,
      Clock* clock = nullptr, MetricsRecorder* metrics = nullptr);

  // Shutdown().
  ~Batcher();

  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // Admission. Returns OK and takes the task, or refuses it:
  // - INVALID_ARGUMENT: no windows or no `done` (a caller bug);
  // - UNAVAILABLE: after StopAccepting()/Shutdown();
  // - DEADLINE_EXCEEDED: the deadline has already passed;
  // - RESOURCE_EXHAUSTED: the lane's queue cannot hold the task, or the
  //   deadline cannot be met by an optimistic estimate (the windows ahead
  //   times the measured model time per window).
  absl::Status Schedule(BatchTask task);

  // Later Schedule() calls return UNAVAILABLE; accepted tasks still run.
  void StopAccepting();

  // Blocks until every accepted task has completed or `deadline` (on the
  // batcher's clock) passes. Returns whether everything completed. In manual
  // mode nothing runs while blocked: call RunOnce() instead.
  bool WaitUntilDrained(absl::Time deadline);

  // StopAccepting(), lets the batch now running (if any) finish, joins the
  // executor thread, then completes every task still queued with UNAVAILABLE
  // on the calling thread. Idempotent. Must not be called from a `done`
  // callback.
  void Shutdown();

  // Manual mode only: if a batch is due now (per the rules above and the
  // clock), forms it, runs it on the calling thread and completes its tasks;
  // completes tasks dropped while forming it. Returns whether it did anything.
  bool RunOnce();

  // Windows waiting (not yet handed to a batch) in `lane`.
  int64_t queued_windows(Lane lane) const;

  const BatcherOptions& options() const { return options_; }

 private:
  struct PendingTask;
  struct Segment;
  struct FormedBatch;

  Batcher(const BatcherOptions& options, ModelBackend* backend, Clock* clock,
          MetricsRecorder* metrics);

  void ExecutorLoop();
  // When the next batch is due: now (returns true) or at *wake_at.
  bool BatchDueLocked(absl::Time now, absl::Time* wake_at,
                      BatchRecord::Trigger* trigger) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  FormedBatch FormBatchLocked(absl::Time now, BatchRecord::Trigger trigger)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes up to `limit` windows from `lane` into `batch`, dropping expired
  // and cancelled tasks met on the way. Returns the windows taken.
  int64_t TakeFromLaneLocked(Lane lane, int64_t limit, absl::Time now,
                             FormedBatch* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs the model on the batch, records outcomes, completes tasks. Called
  // without the lock, by the (single) executor.
  void ExecuteBatch(FormedBatch batch) ABSL_LOCKS_EXCLUDED(mu_);
  // Fails every queued task with `status` (shutdown).
  void FailAllQueued(const absl::Status& status) ABSL_LOCKS_EXCLUDED(mu_);
  // The single completion path: hands the result to `done` exactly once.
  void Complete(PendingTask& task) ABSL_LOCKS_EXCLUDED(mu_);
  int64_t BucketFor(int64_t windows) const;

  const BatcherOptions options_;
  ModelBackend* const backend_;
  Clock* const clock_;
  MetricsRecorder* const metrics_;
  const int window_floats_;
  const int num_classes_;
  const std::vector<int> buckets_;  // sorted, last == max_batch_size

  // Serialises Shutdown() calls (joining the executor).
  absl::Mutex shutdown_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  absl::CondVar work_cv_;   // work arrived, or stop requested
  absl::CondVar drain_cv_;  // a task completed
  std::deque<std::shared_ptr<PendingTask>> queue_[kNumLanes] ABSL_GUARDED_BY(
      mu_);
  int64_t queued_windows_[kNumLanes] ABSL_GUARDED_BY(mu_) = {0, 0};
  // Accepted tasks not yet completed.
  int64_t outstanding_tasks_ ABSL_GUARDED_BY(mu_) = 0;
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // A batch is running (between formation and its completions).
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  // Work arrived at an idle executor: run it without waiting.
  bool run_now_ ABSL_GUARDED_BY(mu_) = false;
  // Bulk windows owed by the min_bulk_fraction policy.
  double bulk_credit_ ABSL_GUARDED_BY(mu_) = 0.0;
  // Measured model time per window (exponential moving average); zero until
  // the first run.
  absl::Duration model_time_per_window_ ABSL_GUARDED_BY(mu_);

  // Executor-only scratch buffers, reused across batches.
  std::vector<float> input_;
  std::vector<float> output_;

  std::thread executor_;
};

}  // namespace harmamba

#endif  // HARMAMBA_SERVER_BATCHER_H_
