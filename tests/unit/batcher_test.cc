#include "server/batcher.h"

#include <atomic>
#include <memory>
#include <stdexcept>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/clock.h"
#include "tests/testing/fake_backend.h"
#include "tests/testing/recording_metrics.h"

namespace harmamba {
namespace {

using ::harmamba::testing::FakeBackend;
using ::harmamba::testing::FakeConfig;
using ::harmamba::testing::FakeLogits;
using ::harmamba::testing::FingerprintId;
using ::harmamba::testing::RandomWindows;
using ::harmamba::testing::RecordingMetrics;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

using Windows = std::vector<std::vector<float>>;

// What a task's `done` received; thread-safe.
class Outcome {
 public:
  void Set(TaskResult result) {
    absl::MutexLock lock(&mu_);
    ++calls_;
    result_ = std::move(result);
    if (!done_.HasBeenNotified()) done_.Notify();
  }
  int calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  TaskResult result() const {
    absl::MutexLock lock(&mu_);
    return result_;
  }
  void Wait() { done_.WaitForNotification(); }

 private:
  mutable absl::Mutex mu_;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  TaskResult result_ ABSL_GUARDED_BY(mu_);
  absl::Notification done_;
};

BatchTask MakeTask(const Windows& windows, size_t begin, size_t count,
                   Outcome* outcome, Lane lane = Lane::kInteractive,
                   absl::Time deadline = absl::InfiniteFuture()) {
  BatchTask task;
  task.lane = lane;
  for (size_t i = begin; i < begin + count; ++i) {
    task.windows.push_back(windows[i].data());
  }
  task.deadline = deadline;
  task.done = [outcome](TaskResult result) { outcome->Set(std::move(result)); };
  return task;
}

class BatcherTest : public ::testing::Test {
 protected:
  BatcherTest()
      : config_(FakeConfig()),
        backend_(config_),
        windows_(RandomWindows(config_, 256)) {}

  std::unique_ptr<Batcher> Make(BatcherOptions options) {
    options.model_name = "fake";
    absl::StatusOr<std::unique_ptr<Batcher>> batcher =
        Batcher::Create(options, &backend_, &clock_, &metrics_);
    EXPECT_TRUE(batcher.ok()) << batcher.status();
    return std::move(batcher).value();
  }
  static BatcherOptions Manual(int max_batch_size = 4) {
    BatcherOptions options;
    options.start_executor_thread = false;
    options.max_batch_size = max_batch_size;
    options.max_queue_delay = absl::Milliseconds(5);
    return options;
  }

  // Every window of `outcome` is OK with the logits of windows_[begin + i].
  void ExpectCorrect(const Outcome& outcome, size_t begin, size_t count) {
    ASSERT_EQ(outcome.calls(), 1);
    const TaskResult result = outcome.result();
    ASSERT_EQ(result.window_status.size(), count);
    ASSERT_EQ(result.num_classes, config_.num_classes());
    for (size_t i = 0; i < count; ++i) {
      ASSERT_TRUE(result.window_status[i].ok()) << result.window_status[i];
      const std::vector<float> expected =
          FakeLogits(config_, windows_[begin + i]);
      for (int k = 0; k < config_.num_classes(); ++k) {
        EXPECT_EQ(result.logits[i * config_.num_classes() + k], expected[k])
            << "window " << i << " class " << k;
      }
    }
  }

  std::vector<int> RunIds() const {
    std::vector<int> ids;
    for (float f : backend_.fingerprints()) ids.push_back(FingerprintId(f));
    return ids;
  }

  ModelConfig config_;
  FakeClock clock_;
  FakeBackend backend_;
  RecordingMetrics metrics_;
  Windows windows_;
};

TEST_F(BatcherTest, OptionsAreValidated) {
  auto refuses = [](BatcherOptions options, const std::string& field) {
    const absl::Status s = options.Validate();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_THAT(std::string(s.message()), HasSubstr(field));
  };
  BatcherOptions o;
  EXPECT_TRUE(o.Validate().ok());
  o.max_batch_size = 0;
  refuses(o, "max_batch_size");
  o = BatcherOptions();
  o.batch_buckets = {4, 2};
  refuses(o, "batch_buckets");
  o.batch_buckets = {1, 128};
  refuses(o, "batch_buckets");
  o = BatcherOptions();
  o.max_queue_delay = absl::Milliseconds(-1);
  refuses(o, "max_queue_delay");
  o = BatcherOptions();
  o.queue_capacity = 0;
  refuses(o, "queue_capacity");
  o = BatcherOptions();
  o.min_bulk_fraction = 1.0;
  refuses(o, "min_bulk_fraction");
  EXPECT_EQ(Batcher::Create(BatcherOptions(), nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(BatcherTest, ScheduleRefusesMalformedTasks) {
  auto batcher = Make(Manual());
  Outcome outcome;
  BatchTask empty = MakeTask(windows_, 0, 0, &outcome);
  EXPECT_EQ(batcher->Schedule(std::move(empty)).code(),
            absl::StatusCode::kInvalidArgument);
  BatchTask no_done = MakeTask(windows_, 0, 1, &outcome);
  no_done.done = nullptr;
  EXPECT_EQ(batcher->Schedule(std::move(no_done)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(outcome.calls(), 0);
}

TEST_F(BatcherTest, IdleExecutorRunsAtOnce) {
  auto batcher = Make(Manual());
  Outcome a;
  ASSERT_TRUE(batcher->Schedule(MakeTask(windows_, 0, 1, &a)).ok());
  // No time passes: an idle executor does not wait for more work.
  EXPECT_TRUE(batcher->RunOnce());
  ExpectCorrect(a, 0, 1);
  EXPECT_FALSE(batcher->RunOnce());

  // After the queue drained the executor is idle again.
  Outcome b;
  ASSERT_TRUE(batcher->Schedule(MakeTask(windows_, 1, 2, &b)).ok());
  EXPECT_TRUE(batcher->RunOnce());
  ExpectCorrect(b, 1, 2);
  EXPECT_THAT(backend_.batch_sizes(), ElementsAre(1, 2));
  ASSERT_EQ(metrics_.batches().size(), 2u);
  EXPECT_EQ(metrics_.batches()[0].trigger, BatchRecord::Trigger::kIdleExecutor);
}

TEST_F(BatcherTest, WindowsArrivingDuringARunFormAFullBatchAtOnce) {
  auto batcher = Make(Manual(4));
  Outcome first;
  std::vector<Outcome> later(6);
  bool scheduled = false;
  backend_.set_hook([&](int64_t) {
    if (!scheduled) {
      scheduled = true;
      for (int i = 0; i < 6; ++i) {
        EXPECT_TRUE(
            batcher->Schedule(MakeTask(windows_, 1 + i, 1, &later[i])).ok());
      }
    }
    return absl::OkStatus();
  });
  ASSERT_TRUE(batcher->Schedule(MakeTask(windows_, 0, 1, &first)).ok());
  ASSERT_TRUE(batcher->RunOnce());
  // Six windows queued during the run: a full batch of 4 runs without
  // waiting; the remaining 2 wait for max_queue_delay.
  ASSERT_TRUE(batcher->RunOnce());
  EXPECT_EQ(metrics_.batches().back().trigger, BatchRecord::Trigger::kFull);
  EXPECT_FALSE(batcher->RunOnce());
  EXPECT_EQ(batcher->queued_windows(Lane::kInteractive), 2);
  clock_.Advance(absl::Milliseconds(5));
  ASSERT_TRUE(batcher->RunOnce());
  EXPECT_EQ(metrics_.batches().back().trigger,
            BatchRecord::Trigger::kQueueDelay);
  EXPECT_THAT(backend_.batch_sizes(), ElementsAre(1, 4, 2));
  EXPECT_THAT(RunIds(), ElementsAre(0, 1, 2, 3, 4, 5, 6));
  ExpectCorrect(first, 0, 1);
  for (int i = 0; i < 6; ++i) ExpectCorrect(later[i], 1 + i, 1);
}

TEST_F(BatcherTest, PartialBatchWaitsAtMostMaxQueueDelay) {
  auto batcher = Make(Manual(8));
  Outcome first, second, third;
  bool scheduled = false;
  backend_.set_hook([&](int64_t) {
    if (!scheduled) {
      scheduled = true;
      EXPECT_TRUE(batcher->Schedule(MakeTask(windows_, 1, 1, &second)).ok());
      clock_.Advance(absl::Milliseconds(2));
      EXPECT_TRUE(batcher->Schedule(MakeTask(windows_, 2, 1, &third)).ok());
    }
    return absl::OkStatus();
  });
  ASSERT_TRUE(batcher->Schedule(MakeTask(windows_, 0, 1, &first)).ok());
  ASSERT_TRUE(batcher->RunOnce());
  // The oldest queued window arrived 2 ms ago; it may wait 5 ms in all.
  EXPECT_FALSE(batcher->RunOnce());
  clock_.Advance(absl::Milliseconds(3) - absl::Microseconds(1));
  EXPECT_FALSE(batcher->RunOnce());
  clock_.Advance(absl::Microseconds(1));
  ASSERT_TRUE(batcher->RunOnce());
  EXPECT_THAT(backend_.batch_sizes(), ElementsAre(1, 2));
  ExpectCorrect(second, 1, 1);
  ExpectCorrect(third, 2, 1);
}

TEST_F(BatcherTest, LargeTaskIsSplitAcrossRunsAndCompletedOnce) {
  auto batcher = Make(Manual(4));
  Outcome big;
  ASSERT_TRUE(
      batcher->Schedule(MakeTask(windows_, 0, 10, &big, Lane::kBulk)).ok());
  ASSERT_TRUE(batcher->RunOnce());  // idle: 4 at once
  EXPECT_EQ(big.calls(), 0);
  ASSERT_TRUE(batcher->RunOnce());  // 6 queued >= 4: full
  EXPECT_EQ(big.calls(), 0);
  EXPECT_FALSE(batcher->RunOnce());  // 2 left: partial, waits
  clock_.Advance(absl::Milliseconds(5));
  ASSERT_TRUE(batcher->RunOnce());
  EXPECT_THAT(backend_.batch_sizes(), ElementsAre(4, 4, 2));
  ExpectCorrect(big, 0, 10);
}

TEST_F(BatcherTest, BatchSizesAreRoundedToBuckets) {
  BatcherOptions options = Manual(8);
  options.batch_buckets = {2, 4};  // 8 is added
  auto batcher = Make(options);
  Outcome a, b;
  ASSERT_TRUE(batcher->Schedule(MakeTask(windows_, 0, 3, &a)).ok());
  ASSERT_TRUE(batcher->RunOnce());
  ASSERT_TRUE(batcher->Schedule(MakeTask(windows_, 3, 5, &b)).ok());
  ASSERT_TRUE(batcher->RunOnce());
  // Without padding the backend sees the real sizes; the bucket is reported.
  EXPECT_THAT(backend_.batch_sizes(), ElementsAre(3, 5));
  const auto batches = metrics_.batches();
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[0].bucket, 4);
  EXPECT_EQ(batches[0].padded_rows, 0);
  EXPECT_EQ(batches[1].bucket, 8);
  ExpectCorrect(a, 0, 3);
  ExpectCorrect(b, 3, 5);
}

TEST_F(BatcherTest, PadToBucketPadsWithZeroWindows) {
  BatcherOptions options = Manual(8);
  options.batch_buckets = {2, 4, 8};
  options.pad_to_bucket = true;
  auto batcher = Make(options);
  Outcome a;
  ASSERT_TRUE(batcher->Schedule(MakeTask(windows_, 0, 3, &a)).ok());
  ASSERT_TRUE(batcher->RunOnce());
  EXPECT_THAT(backend_.batch_sizes(), ElementsAre(4));
  EXPECT_THAT(backend_.fingerprints(), ElementsAre(1000, 1001, 1002, 0.0f));
  ASSERT_EQ(metrics_.batches().size(), 1u);
  EXPECT_EQ(metrics_.batches()[0].bucket, 4);
  EXPECT_EQ(metrics_.batches()[0].padded_rows, 1);
  ExpectCorrect(a, 0, 3);
}

TEST_F(BatcherTest, FullQueueIsResourceExhaustedPerLane) {
  BatcherOptions options = Manual(4);
  options.queue_capacity = 4;
  auto batcher = Make(options);
  std::vector<Outcome> accepted(4);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(batcher->Schedule(MakeTask(windows_, i, 1, &accepted[i])).ok());
  }
  Outcome refused;
  const absl::Status full =
      batcher->Schedule(MakeTask(windows_, 4, 1, &refused));
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(full.message()), HasSubstr("full"));
  // The bulk lane has its own capacity.
  Outcome bulk;
  EXPECT_TRUE(
      batcher->Schedule(MakeTask(windows_, 5, 4, &bulk, Lane::kBulk)).ok());
  // A task larger than the whole capacity can never fit.
  Outcome huge;
  const absl::Status too_big =
      batcher->Schedule(MakeTask(windows_, 10, 5, &huge, Lane::kBulk));
  EXPECT_EQ(too_big.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(too_big.message()), HasSubstr("split"));

  while (batcher->RunOnce()) {
  }
  EXPECT_EQ(refused.calls(), 0);
  EXPECT_EQ(huge.calls(), 0);
  for (int i = 0; i < 4; ++i) ExpectCorrect(accepted[i], i, 1);
  ExpectCorrect(bulk, 5, 4);
  EXPECT_EQ(metrics_.refused(absl::StatusCode::kResourceExhausted), 6);
}

TEST_F(BatcherTest, AdmissionRefusesDeadlinesThatCannotBeMet) {
  auto batcher = Make(Manual(4));
  // Each window costs 10 ms of (fake) model time.
  backend_.set_hook([&](int64_t n) {
    clock_.Advance(absl::Milliseconds(10) * n);
    return absl::OkStatus();
  });
  Outcome calibrate;
  ASSERT_TRUE(batcher->Schedule(MakeTask(windows_, 0, 1, &calibrate)).ok());
  ASSERT_TRUE(batcher->RunOnce());

  std::vector<Outcome> queued(3);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(
        batcher->Schedule(MakeTask(windows_, 1 + i, 1, &queued[i])).ok());
  }
  const absl::Time now = clock_.Now();
  Outcome hopeless, feasible, late;
  // 3 windows ahead + 1 = 40 ms of work; 30 ms cannot be met.
  const absl::Status refused =
      batcher->Schedule(MakeTask(windows_, 10, 1, &hopeless, Lane::kInteractive,
                                 now + absl::Milliseconds(30)));
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(refused.message()), HasSubstr("deadline"));
  EXPECT_TRUE(
      batcher
          ->Schedule(MakeTask(windows_, 11, 1, &feasible, Lane::kInteractive,
                              now + absl::Milliseconds(45)))
          .ok());
  EXPECT_EQ(
      batcher
          ->Schedule(MakeTask(windows_, 12, 1, &late, Lane::kInteractive, now))
          .code(),
      absl::StatusCode::kDeadlineExceeded);
  while (batcher->RunOnce()) {
  }
  EXPECT_EQ(hopeless.calls(), 0);
  EXPECT_EQ(late.calls(), 0);
  ExpectCorrect(feasible, 11, 1);
}

TEST_F(BatcherTest, ExpiredWindowsAreDroppedBeforeTheModel) {
  auto batcher = Make(Manual(8));
  Outcome expiring, patient;
  const absl::Time now = clock_.Now();
  ASSERT_TRUE(
      batcher
          ->Schedule(MakeTask(windows_, 0, 2, &expiring, Lane::kInteractive,
                              now + absl::Milliseconds(3)))
          .ok());
  ASSERT_TRUE(batcher->Schedule(MakeTask(windows_, 2, 1, &patient)).ok());
  clock_.Advance(absl::Milliseconds(3));
  ASSERT_TRUE(batcher->RunOnce());
  ASSERT_EQ(expiring.calls(), 1);
  for (const absl::Status& s : expiring.result().window_status) {
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded);
  }
  ExpectCorrect(patient, 2, 1);
  EXPECT_THAT(RunIds(), ElementsAre(2));  // the model never saw 0 and 1
  EXPECT_EQ(metrics_.dropped(absl::StatusCode::kDeadlineExceeded), 2);
}

TEST_F(BatcherTest, SplitTaskExpiringMidwayKeepsItsEarlierResults) {
  auto batcher = Make(Manual(2));
  Outcome task;
  ASSERT_TRUE(batcher
                  ->Schedule(MakeTask(windows_, 0, 5, &task, Lane::kBulk,
                                      clock_.Now() + absl::Milliseconds(1)))
                  .ok());
  ASSERT_TRUE(batcher->RunOnce());  // windows 0, 1
  clock_.Advance(absl::Milliseconds(1));
  ASSERT_TRUE(batcher->RunOnce());  // the rest expired
  ASSERT_EQ(task.calls(), 1);
  const TaskResult result = task.result();
  EXPECT_TRUE(result.window_status[0].ok());
  EXPECT_TRUE(result.window_status[1].ok());
  for (int i = 2; i < 5; ++i) {
    EXPECT_EQ(result.window_status[i].code(),
              absl::StatusCode::kDeadlineExceeded);
  }
  EXPECT_EQ(result.FirstError().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(RunIds(), ElementsAre(0, 1));
}

TEST_F(BatcherTest, CancelledWindowsAreDroppedBeforeTheModel) {
  auto batcher = Make(Manual(8));
  std::atomic<bool> cancelled{false};
  Outcome cancelled_outcome, other;
  BatchTask task = MakeTask(windows_, 0, 3, &cancelled_outcome);
  task.cancelled = &cancelled;
  ASSERT_TRUE(batcher->Schedule(std::move(task)).ok());
  ASSERT_TRUE(batcher->Schedule(MakeTask(windows_, 3, 1, &other)).ok());
  cancelled.store(true);
  ASSERT_TRUE(batcher->RunOnce());
  ASSERT_EQ(cancelled_outcome.calls(), 1);
  for (const absl::Status& s : cancelled_outcome.result().window_status) {
    EXPECT_EQ(s.code(), absl::StatusCode::kCancelled);
  }
  ExpectCorrect(other, 3, 1);
  EXPECT_THAT(RunIds(), ElementsAre(3));
}

TEST_F(BatcherTest, BulkGetsItsShareWhileInteractiveGoesFirst) {
  BatcherOptions options = Manual(4);
  options.min_bulk_fraction = 0.25;
  auto batcher = Make(options);
  Outcome bulk;
  ASSERT_TRUE(
      batcher->Schedule(MakeTask(windows_, 0, 40, &bulk, Lane::kBulk)).ok());
  std::vector<Outcome> interactive(40);
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(
        batcher->Schedule(MakeTask(windows_, 100 + i, 1, &interactive[i]))
            .ok());
  }
  while (batcher->RunOnce()) {
  }
  const auto batches = metrics_.batches();
  // While both lanes wait: 3 interactive + 1 bulk per batch (neither lane
  // starves); then bulk alone.
  ASSERT_GE(batches.size(), 14u);
  for (size_t i = 0; i < 13; ++i) {
    EXPECT_EQ(batches[i].interactive_windows, 3) << "batch " << i;
    EXPECT_EQ(batches[i].bulk_windows, 1) << "batch " << i;
  }
  ExpectCorrect(bulk, 0, 40);
  for (int i = 0; i < 40; ++i) ExpectCorrect(interactive[i], 100 + i, 1);
}

TEST_F(BatcherTest, FractionalBulkShareAccumulatesAcrossBatches) {
  BatcherOptions options = Manual(1);
  options.min_bulk_fraction = 0.25;
  auto batcher = Make(options);
  Outcome bulk;
  ASSERT_TRUE(
      batcher->Schedule(MakeTask(windows_, 0, 2, &bulk, Lane::kBulk)).ok());
  std::vector<Outcome> interactive(8);
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(
        batcher->Schedule(MakeTask(windows_, 100 + i, 1, &interactive[i]))
            .ok());
  }
  while (batcher->RunOnce()) {
  }
  // With batches of one window, every fourth batch is bulk.
  EXPECT_THAT(RunIds(),
              ElementsAre(100, 101, 102, 0, 103, 104, 105, 1, 106, 107));
}

TEST_F(BatcherTest, InteractiveWindowsOvertakeQueuedBulkWork) {
  Outcome bulk, urgent;  // outlive the batcher, which completes `bulk`
  auto batcher = Make(Manual(4));
  ASSERT_TRUE(
      batcher->Schedule(MakeTask(windows_, 0, 20, &bulk, Lane::kBulk)).ok());
  ASSERT_TRUE(batcher->RunOnce());  // bulk 0-3
  ASSERT_TRUE(batcher->Schedule(MakeTask(windows_, 50, 1, &urgent)).ok());
  ASSERT_TRUE(batcher->RunOnce());
  ExpectCorrect(urgent, 50, 1);
  EXPECT_THAT(RunIds(), ElementsAre(0, 1, 2, 3, 50, 4, 5, 6));
}

TEST_F(BatcherTest, BackendFailureGivesEveryWindowExactlyOneOutcome) {
  auto batcher = Make(Manual(4));
  int run = 0;
  backend_.set_hook([&](int64_t) {
    return ++run == 2 ? absl::InternalError("injected failure")
                      : absl::OkStatus();
  });
  Outcome big;  // 10 windows: runs of 4 (ok), 4 (fails), 2 (ok)
  ASSERT_TRUE(
      batcher->Schedule(MakeTask(windows_, 0, 10, &big, Lane::kBulk)).ok());
  ASSERT_TRUE(batcher->RunOnce());
  ASSERT_TRUE(batcher->RunOnce());
  clock_.Advance(absl::Milliseconds(5));
  ASSERT_TRUE(batcher->RunOnce());
  EXPECT_FALSE(batcher->RunOnce());
  ASSERT_EQ(big.calls(), 1);
  const TaskResult result = big.result();
  for (int i = 0; i < 10; ++i) {
    if (i >= 4 && i < 8) {
      EXPECT_EQ(result.window_status[i].code(), absl::StatusCode::kInternal);
      EXPECT_THAT(std::string(result.window_status[i].message()),
                  HasSubstr("injected"));
    } else {
      EXPECT_TRUE(result.window_status[i].ok()) << i;
    }
  }
}

TEST_F(BatcherTest, BackendExceptionBecomesInternal) {
  auto batcher = Make(Manual(4));
  backend_.set_hook(
      [](int64_t) -> absl::Status { throw std::runtime_error("boom"); });
  Outcome a, b;
  ASSERT_TRUE(batcher->Schedule(MakeTask(windows_, 0, 1, &a)).ok());
  ASSERT_TRUE(batcher->Schedule(MakeTask(windows_, 1, 1, &b)).ok());
  ASSERT_TRUE(batcher->RunOnce());
  for (Outcome* o : {&a, &b}) {
    ASSERT_EQ(o->calls(), 1);
    EXPECT_EQ(o->result().window_status[0].code(), absl::StatusCode::kInternal);
    EXPECT_THAT(std::string(o->result().window_status[0].message()),
                HasSubstr("boom"));
  }
}

TEST_F(BatcherTest, ShutdownAnswersQueuedWorkUnavailable) {
  auto batcher = Make(Manual(4));
  Outcome a, b;
  ASSERT_TRUE(batcher->Schedule(MakeTask(windows_, 0, 1, &a)).ok());
  ASSERT_TRUE(
      batcher->Schedule(MakeTask(windows_, 1, 9, &b, Lane::kBulk)).ok());
  ASSERT_TRUE(batcher->RunOnce());  // 4 windows: a and 3 of b
  batcher->Shutdown();
  ExpectCorrect(a, 0, 1);
  ASSERT_EQ(b.calls(), 1);
  const TaskResult result = b.result();
  for (int i = 0; i < 9; ++i) {
    EXPECT_EQ(result.window_status[i].code(),
              i < 3 ? absl::StatusCode::kOk : absl::StatusCode::kUnavailable)
        << i;
  }
  Outcome late;
  EXPECT_EQ(batcher->Schedule(MakeTask(windows_, 20, 1, &late)).code(),
            absl::StatusCode::kUnavailable);
  batcher->Shutdown();  // idempotent
  EXPECT_EQ(late.calls(), 0);
  EXPECT_EQ(b.calls(), 1);
}

TEST_F(BatcherTest, WaitUntilDrainedHonoursItsDeadline) {
  auto batcher = Make(Manual(4));
  EXPECT_TRUE(batcher->WaitUntilDrained(clock_.Now()));
  Outcome a;
  ASSERT_TRUE(batcher->Schedule(MakeTask(windows_, 0, 1, &a)).ok());
  EXPECT_FALSE(batcher->WaitUntilDrained(clock_.Now()));
  ASSERT_TRUE(batcher->RunOnce());
  EXPECT_TRUE(batcher->WaitUntilDrained(clock_.Now()));
}

// --- With the executor thread (fake clock; gates instead of sleeps) ---

TEST_F(BatcherTest, ExecutorThreadWaitsOnTheInjectedClock) {
  BatcherOptions options;
  options.max_batch_size = 8;
  options.max_queue_delay = absl::Milliseconds(5);
  auto batcher = Make(options);
  absl::Notification running, release;
  std::atomic<int> runs{0};
  backend_.set_hook([&](int64_t) {
    if (runs.fetch_add(1) == 0) {
      running.Notify();
      release.WaitForNotification();
    }
    return absl::OkStatus();
  });
  Outcome first, second, third;
  ASSERT_TRUE(batcher->Schedule(MakeTask(windows_, 0, 1, &first)).ok());
  running.WaitForNotification();
  ASSERT_TRUE(batcher->Schedule(MakeTask(windows_, 1, 1, &second)).ok());
  ASSERT_TRUE(batcher->Schedule(MakeTask(windows_, 2, 1, &third)).ok());
  release.Notify();
  first.Wait();
  // The two queued windows wait for max_queue_delay on the fake clock, which
  // has not moved; advancing it wakes the executor.
  EXPECT_EQ(second.calls(), 0);
  clock_.Advance(absl::Milliseconds(5));
  second.Wait();
  third.Wait();
  EXPECT_THAT(backend_.batch_sizes(), ElementsAre(1, 2));
  ExpectCorrect(second, 1, 1);
  ExpectCorrect(third, 2, 1);
}

TEST_F(BatcherTest, StopAcceptingDrainsAcceptedWork) {
  BatcherOptions options;
  options.max_batch_size = 4;
  options.max_queue_delay = absl::Hours(1);  // draining must not wait for it
  auto batcher = Make(options);
  absl::Notification running, release;
  std::atomic<int> runs{0};
  backend_.set_hook([&](int64_t) {
    if (runs.fetch_add(1) == 0) {
      running.Notify();
      release.WaitForNotification();
    }
    return absl::OkStatus();
  });
  std::vector<Outcome> outcomes(7);
  ASSERT_TRUE(batcher->Schedule(MakeTask(windows_, 0, 1, &outcomes[0])).ok());
  running.WaitForNotification();
  for (int i = 1; i < 7; ++i) {
    ASSERT_TRUE(
        batcher->Schedule(MakeTask(windows_, i, 1, &outcomes[i], Lane::kBulk))
            .ok());
  }
  batcher->StopAccepting();
  Outcome refused;
  EXPECT_EQ(batcher->Schedule(MakeTask(windows_, 9, 1, &refused)).code(),
            absl::StatusCode::kUnavailable);
  release.Notify();
  EXPECT_TRUE(batcher->WaitUntilDrained(absl::InfiniteFuture()));
  for (int i = 0; i < 7; ++i) ExpectCorrect(outcomes[i], i, 1);
  EXPECT_THAT(backend_.batch_sizes(), ElementsAre(1, 4, 2));
  batcher->Shutdown();
  EXPECT_EQ(refused.calls(), 0);
}

TEST_F(BatcherTest, ShutdownWithExecutorThreadAnswersEveryAcceptedTask) {
  BatcherOptions options;
  options.max_batch_size = 2;
  options.max_queue_delay = absl::Hours(1);
  auto batcher = Make(options);
  absl::Notification running, release;
  std::atomic<int> runs{0};
  backend_.set_hook([&](int64_t) {
    if (runs.fetch_add(1) == 0) {
      running.Notify();
      release.WaitForNotification();
    }
    return absl::OkStatus();
  });
  std::vector<Outcome> outcomes(5);
  ASSERT_TRUE(batcher->Schedule(MakeTask(windows_, 0, 1, &outcomes[0])).ok());
  running.WaitForNotification();
  for (int i = 1; i < 5; ++i) {
    ASSERT_TRUE(batcher->Schedule(MakeTask(windows_, i, 1, &outcomes[i])).ok());
  }
  // Shutdown lets the running batch finish, then fails the queued windows.
  std::thread releaser([&] { release.Notify(); });
  batcher->Shutdown();
  releaser.join();
  ExpectCorrect(outcomes[0], 0, 1);
  int ok = 1, unavailable = 0;
  for (int i = 1; i < 5; ++i) {
    ASSERT_EQ(outcomes[i].calls(), 1);
    const absl::Status s = outcomes[i].result().window_status[0];
    if (s.ok()) {
      ExpectCorrect(outcomes[i], i, 1);
      ++ok;
    } else {
      EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
      ++unavailable;
    }
  }
  EXPECT_EQ(ok + unavailable, 5);
  EXPECT_EQ(backend_.windows_run(), ok);
}

}  // namespace
}  // namespace harmamba
