// A MetricsRecorder that keeps what it is told, for assertions.
#ifndef HARMAMBA_TESTS_TESTING_RECORDING_METRICS_H_
#define HARMAMBA_TESTS_TESTING_RECORDING_METRICS_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "server/metrics_recorder.h"

namespace harmamba::testing {

class RecordingMetrics : public MetricsRecorder {
 public:
  struct Rpc {
    std::string method;
    std::string model;
    absl::StatusCode code;
  };

  void RecordRpc(absl::string_view method, absl::string_view model,
                 absl::StatusCode code, absl::Duration latency) override {
    absl::MutexLock lock(&mu_);
    rpcs_.push_back({std::string(method), std::string(model), code});
  }
  void RecordAdmitted(absl::string_view model, Lane lane, int64_t windows,
                      int64_t queued_windows) override {
    absl::MutexLock lock(&mu_);
    admitted_ += windows;
  }
  void RecordRefused(absl::string_view model, Lane lane, absl::StatusCode code,
                     int64_t windows) override {
    absl::MutexLock lock(&mu_);
    refused_[code] += windows;
  }
  void RecordBatch(absl::string_view model, const BatchRecord& batch) override {
    absl::MutexLock lock(&mu_);
    batches_.push_back(batch);
  }
  void RecordDropped(absl::string_view model, Lane lane, absl::StatusCode code,
                     int64_t windows) override {
    absl::MutexLock lock(&mu_);
    dropped_[code] += windows;
  }
  void RecordModelRun(absl::string_view model, int64_t rows,
                      absl::Duration duration, absl::StatusCode code) override {
    absl::MutexLock lock(&mu_);
    model_runs_.push_back({rows, code});
  }
  void RecordStreamStarted(absl::string_view model) override {
    absl::MutexLock lock(&mu_);
    ++streams_started_;
  }
  void RecordStreamFinished(absl::string_view model, absl::StatusCode code,
                            int64_t windows, int64_t samples) override {
    absl::MutexLock lock(&mu_);
    streams_finished_.push_back(code);
  }
  void RecordStreamBackpressure(absl::string_view model) override {
    absl::MutexLock lock(&mu_);
    ++backpressure_;
  }

  std::vector<Rpc> rpcs() const {
    absl::MutexLock lock(&mu_);
    return rpcs_;
  }
  std::vector<BatchRecord> batches() const {
    absl::MutexLock lock(&mu_);
    return batches_;
  }
  int64_t dropped(absl::StatusCode code) const {
    absl::MutexLock lock(&mu_);
    auto it = dropped_.find(code);
    return it == dropped_.end() ? 0 : it->second;
  }
  int64_t admitted() const {
    absl::MutexLock lock(&mu_);
    return admitted_;
  }
  int64_t refused(absl::StatusCode code) const {
    absl::MutexLock lock(&mu_);
    auto it = refused_.find(code);
    return it == refused_.end() ? 0 : it->second;
  }
  std::vector<std::pair<int64_t, absl::StatusCode>> model_runs() const {
    absl::MutexLock lock(&mu_);
    return model_runs_;
  }
  int64_t streams_started() const {
    absl::MutexLock lock(&mu_);
    return streams_started_;
  }
  std::vector<absl::StatusCode> streams_finished() const {
    absl::MutexLock lock(&mu_);
    return streams_finished_;
  }
  int64_t backpressure() const {
    absl::MutexLock lock(&mu_);
    return backpressure_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<Rpc> rpcs_ ABSL_GUARDED_BY(mu_);
  std::vector<BatchRecord> batches_ ABSL_GUARDED_BY(mu_);
  std::map<absl::StatusCode, int64_t> dropped_ ABSL_GUARDED_BY(mu_);
  std::map<absl::StatusCode, int64_t> refused_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<int64_t, absl::StatusCode>> model_runs_
      ABSL_GUARDED_BY(mu_);
  int64_t admitted_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t streams_started_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<absl::StatusCode> streams_finished_ ABSL_GUARDED_BY(mu_);
  int64_t backpressure_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace harmamba::testing

#endif  // HARMAMBA_TESTS_TESTING_RECORDING_METRICS_H_
