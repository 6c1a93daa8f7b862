#include "server/batcher.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <utility>

#include "absl/base/internal/raw_logging.h"
#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace harmamba {

absl::Status BatcherOptions::Validate() const {
  if (max_batch_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_batch_size: expected >= 1, got ", max_batch_size));
  }
  for (size_t i = 0; i < batch_buckets.size(); ++i) {
    const int b = batch_buckets[i];
    if (b < 1 || b > max_batch_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("batch_buckets: expected sizes in [1, max_batch_size=",
                       max_batch_size, "], got ", b));
    }
    if (i > 0 && b <= batch_buckets[i - 1]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "batch_buckets: expected strictly ascending sizes, got [",
          absl::StrJoin(batch_buckets, ","), "]"));
    }
  }
  if (max_queue_delay < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_queue_delay: expected >= 0, got ",
                     absl::FormatDuration(max_queue_delay)));
  }
  if (queue_capacity < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("queue_capacity: expected >= 1, got ", queue_capacity));
  }
  if (!(min_bulk_fraction >= 0.0 && min_bulk_fraction < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("min_bulk_fraction: expected a value in [0, 1), got ",
                     min_bulk_fraction));
  }
  return absl::OkStatus();
}

absl::Status TaskResult::FirstError() const {
  for (const absl::Status& s : window_status) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

namespace {

std::vector<int> NormalizedBuckets(const BatcherOptions& options) {
  std::vector<int> buckets = options.batch_buckets;
  if (buckets.empty()) {
    for (int b = 1; b < options.max_batch_size; b *= 2) buckets.push_back(b);
  }
  if (buckets.empty() || buckets.back() != options.max_batch_size) {
    buckets.push_back(options.max_batch_size);
  }
  return buckets;
}

}  // namespace

// An accepted task. Its queue entry and the batches running its windows share
// it; only the executor changes `next`, `result`, `resolved` and `completed`.
struct Batcher::PendingTask {
  BatchTask task;
  absl::Time enqueued;
  size_t next = 0;      // windows handed to batches (or dropped) so far
  size_t resolved = 0;  // windows with an outcome
  bool completed = false;
  TaskResult result;

  size_t size() const { return task.windows.size(); }
};

// Windows [begin, end) of one task, in one batch.
struct Batcher::Segment {
  std::shared_ptr<PendingTask> task;
  size_t begin = 0;
  size_t end = 0;
};

struct Batcher::FormedBatch {
  std::vector<Segment> segments;
  // Tasks whose last windows were dropped while forming: complete them.
  std::vector<std::shared_ptr<PendingTask>> finished;
  BatchRecord record;
  struct Drop {
    Lane lane;
    absl::StatusCode code;
    int64_t windows;
  };
  std::vector<Drop> drops;
  struct Wait {
    Lane lane;
    absl::Duration wait;
    int64_t windows;
  };
  std::vector<Wait> waits;
};

absl::StatusOr<std::unique_ptr<Batcher>> Batcher::Create(
    const BatcherOptions& options, ModelBackend* backend, Clock* clock,
    MetricsRecorder* metrics) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  if (backend == nullptr) {
    return absl::InvalidArgumentError("backend: expected a model backend");
  }
  const ModelConfig& config = backend->config();
  if (config.window_floats() < 1 || config.num_classes() < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("backend: model '", config.name,
                     "' must have window_length, channels and classes >= 1"));
  }
  std::unique_ptr<Batcher> batcher(
      new Batcher(options, backend, clock != nullptr ? clock : Clock::Real(),
                  metrics != nullptr ? metrics : NoopMetricsRecorder()));
  if (options.start_executor_thread) {
    batcher->executor_ =
        std::thread([b = batcher.get()] { b->ExecutorLoop(); });
  }
  return batcher;
}

Batcher::Batcher(const BatcherOptions& options, ModelBackend* backend,
                 Clock* clock, MetricsRecorder* metrics)
    : options_(options),
      backend_(backend),
      clock_(clock),
      metrics_(metrics),
      window_floats_(backend->config().window_floats()),
      num_classes_(backend->config().num_classes()),
      buckets_(NormalizedBuckets(options)) {}

Batcher::~Batcher() { Shutdown(); }

absl::Status Batcher::Schedule(BatchTask task) {
  if (task.windows.empty()) {
    return absl::InvalidArgumentError("windows: expected at least 1 window");
  }
  if (!task.done) {
    return absl::InvalidArgumentError("done: expected a completion callback");
  }
  const Lane lane = task.lane;
  const int64_t n = static_cast<int64_t>(task.windows.size());
  auto pending = std::make_shared<PendingTask>();
  pending->task = std::move(task);
  pending->result.window_status.assign(n, absl::OkStatus());
  pending->result.logits.assign(n * num_classes_, 0.0f);
  pending->result.num_classes = num_classes_;
  const absl::Time deadline = pending->task.deadline;

  const absl::Time now = clock_->Now();
  absl::Status refusal;
  int64_t depth = 0;
  {
    absl::MutexLock lock(&mu_);
    const int64_t queued = queued_windows_[static_cast<int>(lane)];
    if (!accepting_) {
      refusal = absl::UnavailableError(
          absl::StrCat("model '", options_.model_name,
                       "' is shutting down and accepts no new work"));
    } else if (deadline <= now) {
      refusal = absl::DeadlineExceededError(
          "the deadline passed before the request could be queued");
    } else if (n > options_.queue_capacity) {
      refusal = absl::ResourceExhaustedError(absl::StrCat(
          "a request of ", n, " windows exceeds the queue capacity of ",
          options_.queue_capacity, " windows of model '", options_.model_name,
          "'; split it into smaller requests"));
    } else if (queued + n > options_.queue_capacity) {
      refusal = absl::ResourceExhaustedError(absl::StrCat(
          "the ", LaneName(lane), " queue of model '", options_.model_name,
          "' is full (", queued, " of ", options_.queue_capacity,
          " windows waiting); retry later"));
    } else if (deadline != absl::InfiniteFuture()) {
      // Optimistic: interactive windows go first, and bulk windows wait
      // behind everything queued; batching overheads are ignored.
      const int64_t ahead =
          queued_windows_[static_cast<int>(Lane::kInteractive)] +
          (lane == Lane::kBulk ? queued : 0);
      const absl::Duration estimate = model_time_per_window_ * (ahead + n);
      if (now + estimate > deadline) {
        refusal = absl::ResourceExhaustedError(absl::StrCat(
            "the deadline cannot be met: it is ",
            absl::FormatDuration(deadline - now), " away and model '",
            options_.model_name, "' needs about ",
            absl::FormatDuration(estimate), " for the ", ahead + n,
            " windows queued up to and including this request"));
      }
    }
    if (refusal.ok()) {
      if (!running_ && queued_windows_[0] + queued_windows_[1] == 0) {
        run_now_ = true;
      }
      pending->enqueued = now;
      queue_[static_cast<int>(lane)].push_back(std::move(pending));
      depth = queued_windows_[static_cast<int>(lane)] += n;
      ++outstanding_tasks_;
      work_cv_.Signal();
    }
  }
  if (refusal.ok()) {
    metrics_->RecordAdmitted(options_.model_name, lane, n, depth);
  } else {
    metrics_->RecordRefused(options_.model_name, lane, refusal.code(), n);
  }
  return refusal;
}

void Batcher::StopAccepting() {
  absl::MutexLock lock(&mu_);
  accepting_ = false;
  // Draining runs partial batches without waiting for max_queue_delay.
  work_cv_.SignalAll();
}

bool Batcher::WaitUntilDrained(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  while (outstanding_tasks_ > 0) {
    if (clock_->WaitWithDeadline(&mu_, &drain_cv_, deadline) &&
        outstanding_tasks_ > 0) {
      return false;
    }
  }
  return true;
}

void Batcher::Shutdown() {
  absl::MutexLock shutdown_lock(&shutdown_mu_);
  {
    absl::MutexLock lock(&mu_);
    accepting_ = false;
    stop_ = true;
    work_cv_.SignalAll();
  }
  // The executor finishes the batch it is running, if any, and exits.
  if (executor_.joinable()) executor_.join();
  FailAllQueued(absl::UnavailableError(absl::StrCat(
      "model '", options_.model_name, "' shut down before this window ran")));
}

bool Batcher::RunOnce() {
  FormedBatch batch;
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return false;
    const absl::Time now = clock_->Now();
    absl::Time wake_at;
    BatchRecord::Trigger trigger;
    if (!BatchDueLocked(now, &wake_at, &trigger)) return false;
    batch = FormBatchLocked(now, trigger);
  }
  ExecuteBatch(std::move(batch));
  return true;
}

int64_t Batcher::queued_windows(Lane lane) const {
  absl::MutexLock lock(&mu_);
  return queued_windows_[static_cast<int>(lane)];
}

void Batcher::ExecutorLoop() {
  for (;;) {
    FormedBatch batch;
    {
      absl::MutexLock lock(&mu_);
      for (;;) {
        // Shutdown() fails what is still queued once this thread has exited.
        if (stop_) return;
        const absl::Time now = clock_->Now();
        absl::Time wake_at;
        BatchRecord::Trigger trigger;
        if (BatchDueLocked(now, &wake_at, &trigger)) {
          batch = FormBatchLocked(now, trigger);
          break;
        }
        clock_->WaitWithDeadline(&mu_, &work_cv_, wake_at);
      }
    }
    ExecuteBatch(std::move(batch));
  }
}

bool Batcher::BatchDueLocked(absl::Time now, absl::Time* wake_at,
                             BatchRecord::Trigger* trigger) const {
  *wake_at = absl::InfiniteFuture();
  const int64_t total = queued_windows_[0] + queued_windows_[1];
  if (total == 0) return false;
  if (total >= options_.max_batch_size) {
    *trigger = BatchRecord::Trigger::kFull;
    return true;
  }
  if (!accepting_) {
    *trigger = BatchRecord::Trigger::kDraining;
    return true;
  }
  if (run_now_) {
    *trigger = BatchRecord::Trigger::kIdleExecutor;
    return true;
  }
  absl::Time oldest = absl::InfiniteFuture();
  for (const auto& queue : queue_) {
    if (!queue.empty()) oldest = std::min(oldest, queue.front()->enqueued);
  }
  const absl::Time due = oldest + options_.max_queue_delay;
  if (now >= due) {
    *trigger = BatchRecord::Trigger::kQueueDelay;
    return true;
  }
  *wake_at = due;
  return false;
}

Batcher::FormedBatch Batcher::FormBatchLocked(absl::Time now,
                                              BatchRecord::Trigger trigger) {
  FormedBatch batch;
  batch.record.trigger = trigger;
  running_ = true;
  run_now_ = false;

  const int64_t target = options_.max_batch_size;
  const int bulk = static_cast<int>(Lane::kBulk);
  int64_t reserve = 0;
  if (queued_windows_[bulk] > 0) {
    bulk_credit_ += options_.min_bulk_fraction * static_cast<double>(target);
    reserve = std::min<int64_t>(
        {queued_windows_[bulk], static_cast<int64_t>(bulk_credit_), target});
  } else {
    bulk_credit_ = 0.0;
  }
  int64_t interactive =
      TakeFromLaneLocked(Lane::kInteractive, target - reserve, now, &batch);
  const int64_t bulk_taken =
      TakeFromLaneLocked(Lane::kBulk, target - interactive, now, &batch);
  if (interactive + bulk_taken < target) {
    interactive += TakeFromLaneLocked(
        Lane::kInteractive, target - interactive - bulk_taken, now, &batch);
  }
  bulk_credit_ = queued_windows_[bulk] > 0
                     ? std::max(0.0, bulk_credit_ - bulk_taken)
                     : 0.0;

  batch.record.interactive_windows = interactive;
  batch.record.bulk_windows = bulk_taken;
  const int64_t rows = interactive + bulk_taken;
  if (rows > 0) {
    batch.record.bucket = BucketFor(rows);
    batch.record.padded_rows =
        options_.pad_to_bucket ? batch.record.bucket - rows : 0;
  }
  return batch;
}

int64_t Batcher::TakeFromLaneLocked(Lane lane, int64_t limit, absl::Time now,
                                    FormedBatch* batch) {
  auto& queue = queue_[static_cast<int>(lane)];
  int64_t& queued = queued_windows_[static_cast<int>(lane)];
  int64_t taken = 0;
  while (taken < limit && !queue.empty()) {
    PendingTask& task = *queue.front();
    const size_t n = task.size();
    const bool cancelled = task.task.cancelled != nullptr &&
                           task.task.cancelled->load(std::memory_order_acquire);
    const bool expired = task.task.deadline <= now;
    if (expired || cancelled) {
      // Dropping the rest gives every window an outcome: those before `next`
      // have one already (batches run one at a time) or get one when this
      // batch runs, and ExecuteBatch() resolves segments before completing
      // `finished` tasks.
      // An expired call is also cancelled by gRPC: report the cause.
      const absl::Status status =
          expired ? absl::DeadlineExceededError(absl::StrCat(
                        "the deadline passed after ",
                        absl::FormatDuration(now - task.enqueued),
                        " in the queue of model '", options_.model_name, "'"))
                  : absl::CancelledError(
                        "the call was cancelled while its windows were queued");
      const int64_t dropped = static_cast<int64_t>(n - task.next);
      for (size_t i = task.next; i < n; ++i) {
        task.result.window_status[i] = status;
      }
      task.resolved += dropped;
      task.next = n;
      queued -= dropped;
      batch->drops.push_back({lane, status.code(), dropped});
      batch->finished.push_back(std::move(queue.front()));
      queue.pop_front();
      continue;
    }
    const int64_t count =
        std::min<int64_t>(limit - taken, static_cast<int64_t>(n - task.next));
    batch->segments.push_back({queue.front(), task.next, task.next + count});
    const absl::Duration wait = now - task.enqueued;
    batch->waits.push_back({lane, wait, count});
    batch->record.oldest_wait = std::max(batch->record.oldest_wait, wait);
    task.next += count;
    queued -= count;
    taken += count;
    if (task.next == n) queue.pop_front();
  }
  return taken;
}

int64_t Batcher::BucketFor(int64_t windows) const {
  for (int b : buckets_) {
    if (b >= windows) return b;
  }
  return buckets_.back();
}

void Batcher::ExecuteBatch(FormedBatch batch) {
  const std::string& model = options_.model_name;
  size_t resolved_segments = 0;
  // The one completion path for this batch: whatever happens below (even an
  // exception), every segment gets an outcome and every task whose windows
  // all have one is completed, exactly once.
  absl::Cleanup complete_all = [&] {
    for (size_t i = resolved_segments; i < batch.segments.size(); ++i) {
      Segment& seg = batch.segments[i];
      for (size_t w = seg.begin; w < seg.end; ++w) {
        seg.task->result.window_status[w] = absl::InternalError(
            absl::StrCat("the batch of model '", model, "' was abandoned"));
      }
      seg.task->resolved += seg.end - seg.begin;
    }
    for (auto& task : batch.finished) Complete(*task);
    for (Segment& seg : batch.segments) {
      // A task split across batches completes in the batch of its last
      // segment.
      if (seg.end == seg.task->size()) Complete(*seg.task);
    }
    absl::MutexLock lock(&mu_);
    running_ = false;
  };

  for (const auto& drop : batch.drops) {
    metrics_->RecordDropped(model, drop.lane, drop.code, drop.windows);
  }
  if (batch.segments.empty()) return;
  metrics_->RecordBatch(model, batch.record);
  for (const auto& wait : batch.waits) {
    metrics_->RecordQueueWait(model, wait.lane, wait.wait, wait.windows);
  }

  const int64_t windows = batch.record.windows();
  const int64_t rows = windows + batch.record.padded_rows;
  input_.resize(static_cast<size_t>(rows) * window_floats_);
  output_.resize(static_cast<size_t>(rows) * num_classes_);
  float* dst = input_.data();
  for (const Segment& seg : batch.segments) {
    for (size_t w = seg.begin; w < seg.end; ++w) {
      std::memcpy(dst, seg.task->task.windows[w],
                  sizeof(float) * window_floats_);
      dst += window_floats_;
    }
  }
  std::fill(dst, input_.data() + input_.size(), 0.0f);

  const absl::Time start = clock_->Now();
  absl::Status status;
  try {
    status = backend_->Run(input_.data(), rows, output_.data());
  } catch (const std::exception& e) {
    status = absl::InternalError(
        absl::StrCat("model '", model, "' threw: ", e.what()));
  } catch (...) {
    status = absl::InternalError(
        absl::StrCat("model '", model, "' threw an unknown exception"));
  }
  const absl::Duration elapsed = clock_->Now() - start;
  metrics_->RecordModelRun(model, rows, elapsed, status.code());
  if (status.ok()) {
    absl::MutexLock lock(&mu_);
    const absl::Duration per_window = elapsed / rows;
    model_time_per_window_ =
        model_time_per_window_ == absl::ZeroDuration()
            ? per_window
            : 0.8 * model_time_per_window_ + 0.2 * per_window;
  }

  const float* logits = output_.data();
  for (; resolved_segments < batch.segments.size(); ++resolved_segments) {
    Segment& seg = batch.segments[resolved_segments];
    TaskResult& result = seg.task->result;
    for (size_t w = seg.begin; w < seg.end; ++w) {
      if (status.ok()) {
        std::memcpy(&result.logits[w * num_classes_], logits,
                    sizeof(float) * num_classes_);
      } else {
        result.window_status[w] = status;
      }
      logits += num_classes_;
    }
    seg.task->resolved += seg.end - seg.begin;
  }
}

void Batcher::FailAllQueued(const absl::Status& status) {
  std::vector<std::shared_ptr<PendingTask>> failed;
  {
    absl::MutexLock lock(&mu_);
    for (int lane = 0; lane < kNumLanes; ++lane) {
      for (auto& task : queue_[lane]) failed.push_back(std::move(task));
      queue_[lane].clear();
      queued_windows_[lane] = 0;
    }
  }
  for (auto& task : failed) {
    const int64_t dropped = static_cast<int64_t>(task->size() - task->next);
    for (size_t i = task->next; i < task->size(); ++i) {
      task->result.window_status[i] = status;
    }
    task->resolved += dropped;
    task->next = task->size();
    metrics_->RecordDropped(options_.model_name, task->task.lane, status.code(),
                            dropped);
    Complete(*task);
  }
}

void Batcher::Complete(PendingTask& task) {
  ABSL_RAW_CHECK(!task.completed, "a batch task was completed twice");
  ABSL_RAW_CHECK(task.resolved == task.size(),
                 "a batch task was completed before all its windows");
  task.completed = true;
  auto done = std::move(task.task.done);
  done(std::move(task.result));
  absl::MutexLock lock(&mu_);
  --outstanding_tasks_;
  drain_cv_.SignalAll();
}

}  // namespace harmamba
