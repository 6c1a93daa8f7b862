// The narrow interface through which the serving layer reports what it does.
// A Prometheus implementation lives elsewhere; the serving code only calls
// these methods, at its edges: the RPC handlers, batch formation, around each
// model run, and streams.
#ifndef HARMAMBA_SERVER_METRICS_RECORDER_H_
#define HARMAMBA_SERVER_METRICS_RECORDER_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/lane.h"

namespace harmamba {

// One batch as it was formed (before the model runs).
struct BatchRecord {
  // Windows that will run, per lane.
  int64_t interactive_windows = 0;
  int64_t bulk_windows = 0;
  // The bucket the batch size fell into (the smallest bucket >= windows).
  int64_t bucket = 0;
  // Rows of padding added to reach `bucket` (0 unless pad_to_bucket).
  int64_t padded_rows = 0;
  // How long the oldest window of the batch waited in the queue.
  absl::Duration oldest_wait;
  // What closed the batch.
  enum class Trigger { kFull, kIdleExecutor, kQueueDelay, kDraining };
  Trigger trigger = Trigger::kFull;

  int64_t windows() const { return interactive_windows + bulk_windows; }
};

// Implementations must be thread-safe and must not block: methods are called
// from gRPC threads and from batch executor threads (never while the batcher
// holds its lock). `model` is the model's name; `method` the RPC's name
// ("Classify", "ClassifyBatch", "StreamClassify", "ListModels",
// "GetModelInfo"). Every method has an empty default so that implementations
// override only what they export.
class MetricsRecorder {
 public:
  virtual ~MetricsRecorder() = default;

  // --- RPC handlers ---
  // An RPC finished with `code` after `latency` (from the handler's start to
  // Finish). `model` is empty when the call named an unknown model.
  virtual void RecordRpc(absl::string_view method, absl::string_view model,
                         absl::StatusCode code, absl::Duration latency) {}
  // Windows a request carried (ClassifyBatch: all, valid or not).
  virtual void RecordRequestWindows(absl::string_view method,
                                    absl::string_view model, int64_t windows) {}

  // --- Batcher admission ---
  // A task of `windows` windows was admitted; `queued_windows` is the lane's
  // queue depth after admission.
  virtual void RecordAdmitted(absl::string_view model, Lane lane,
                              int64_t windows, int64_t queued_windows) {}
  // A task was refused at admission with `code` (RESOURCE_EXHAUSTED: queue
  // full or deadline unmeetable; DEADLINE_EXCEEDED; UNAVAILABLE: shutdown).
  // The handlers also report here, with INVALID_ARGUMENT, the windows they
  // refuse as malformed before they reach a batcher.
  virtual void RecordRefused(absl::string_view model, Lane lane,
                             absl::StatusCode code, int64_t windows) {}

  // --- Batch formation ---
  virtual void RecordBatch(absl::string_view model, const BatchRecord& batch) {}
  // Windows dropped before reaching the model (DEADLINE_EXCEEDED, CANCELLED,
  // or UNAVAILABLE when shutdown cut the drain short).
  virtual void RecordDropped(absl::string_view model, Lane lane,
                             absl::StatusCode code, int64_t windows) {}
  // Time from admission until the window's batch started running, per task
  // segment (`windows` windows that waited the same time).
  virtual void RecordQueueWait(absl::string_view model, Lane lane,
                               absl::Duration wait, int64_t windows) {}

  // --- Around the model run ---
  // One ModelBackend::Run of `rows` rows (padding included).
  virtual void RecordModelRun(absl::string_view model, int64_t rows,
                              absl::Duration duration, absl::StatusCode code) {}

  // --- Results ---
  // One window's result was produced (for any RPC); `label` is the predicted
  // class, one of the model's classes.
  virtual void RecordPrediction(absl::string_view model,
                                absl::string_view label) {}

  // --- Streams ---
  // A stream was configured for `model` (its first message resolved a model).
  virtual void RecordStreamStarted(absl::string_view model) {}
  // A stream ended with `code` after `windows` results and `samples` samples.
  // Called for every stream; `model` is empty exactly when
  // RecordStreamStarted() was not called for it.
  virtual void RecordStreamFinished(absl::string_view model,
                                    absl::StatusCode code, int64_t windows,
                                    int64_t samples) {}
  // A chunk of `samples` samples passed its checks and was appended.
  virtual void RecordStreamSamples(absl::string_view model, int64_t samples) {}
  // A window's result was written to the client, `lag` after the last sample
  // of that window was received.
  virtual void RecordStreamResultSent(absl::string_view model,
                                      absl::Duration lag) {}
  // At the end of a stream: windows it cut whose results were never written
  // (the stream ended first: an error, a cancellation, shutdown). Not called
  // when there are none.
  virtual void RecordStreamWindowsSkipped(absl::string_view model,
                                          int64_t windows) {}
  // The server stopped reading a stream because its backlog was full.
  virtual void RecordStreamBackpressure(absl::string_view model) {}
};

// A recorder that records nothing. Never destroyed.
MetricsRecorder* NoopMetricsRecorder();

}  // namespace harmamba

#endif  // HARMAMBA_SERVER_METRICS_RECORDER_H_
