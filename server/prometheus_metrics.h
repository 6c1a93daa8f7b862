// A MetricsRecorder that exports Prometheus metrics (prometheus-cpp core:
// registry, metric families, text serializer). The serving core only sees
// MetricsRecorder; this file and its library are the only ones that know
// prometheus-cpp. Serve Exposition() over HTTP with MetricsHttpServer
// (server/metrics_http.h).
//
// Metric names and labels (all label values come from a fixed set: method
// names, gRPC code names, lanes, served model names, their class labels):
//
//   harmamba_requests_total{method,model,code}            counter
//   harmamba_request_duration_seconds{method,model}       histogram (unary)
//   harmamba_request_windows_total{method,model}          counter
//   harmamba_admitted_windows_total{model,lane}           counter
//   harmamba_rejected_windows_total{model,lane,reason}    counter
//       reason: queue_full, deadline, cancelled, invalid, shutting_down,
//               other
//   harmamba_queue_depth_windows{model,lane}              gauge
//   harmamba_queue_capacity_windows{model,lane}           gauge
//   harmamba_queue_wait_seconds{model,lane}               histogram (windows)
//   harmamba_batches_total{model,trigger}                 counter
//   harmamba_batch_size_windows{model}                    histogram
//   harmamba_batch_padding_rows_total{model}              counter
//   harmamba_model_run_duration_seconds{model}            histogram
//   harmamba_model_run_rows_total{model}                  counter
//   harmamba_model_run_failures_total{model}              counter
//   harmamba_predictions_total{model,label}               counter
//   harmamba_active_streams{model}                        gauge
//   harmamba_stream_duration_seconds{model}               histogram
//   harmamba_stream_samples_total{model}                  counter
//   harmamba_stream_windows_sent_total{model}             counter
//   harmamba_stream_windows_skipped_total{model}          counter
//   harmamba_stream_result_lag_seconds{model}             histogram
//   harmamba_stream_backpressure_total{model}             counter
//   harmamba_model_info{model,version,backend}            gauge (always 1)
//   harmamba_model_load_duration_seconds{model}           gauge
//   process_cpu_seconds_total, process_resident_memory_bytes,
//   process_virtual_memory_bytes, process_open_fds, process_max_fds,
//   process_start_time_seconds, process_threads           (from /proc/self)
//
// Histograms are in seconds except the batch size (windows). Queue waits are
// weighted by windows (a request of 64 windows that waited 2 ms counts 64
// observations of 2 ms).
#ifndef HARMAMBA_SERVER_PROMETHEUS_METRICS_H_
#define HARMAMBA_SERVER_PROMETHEUS_METRICS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "server/metrics_recorder.h"

namespace harmamba {

// What the metrics say about a served model (set once, at start-up).
struct ModelDescription {
  std::string name;
  std::string version;
  std::string backend;  // ModelBackend::description()
  std::vector<std::string> classes;
  absl::Duration load_time;    // reading the file and building the backend
  int64_t queue_capacity = 0;  // per lane, windows (0: not exported)
};

// Thread-safe; no method blocks beyond short internal locks, as
// MetricsRecorder requires.
class PrometheusMetrics final : public MetricsRecorder {
 public:
  PrometheusMetrics();
  ~PrometheusMetrics() override;

  PrometheusMetrics(const PrometheusMetrics&) = delete;
  PrometheusMetrics& operator=(const PrometheusMetrics&) = delete;

  // Exports harmamba_model_info, the load time and the queue capacity of a
  // served model, and creates its per-model series at zero (every label
  // combination the model can produce), so that rates, ratios and alerts
  // have data before the first event. Call once per model, before serving.
  void AddModel(const ModelDescription& model);

  // Every metric in Prometheus' text exposition format (version 0.0.4), the
  // body of GET /metrics.
  std::string Exposition() const;

  // The content type that goes with Exposition().
  static constexpr char kContentType[] =
      "text/plain; version=0.0.4; charset=utf-8";

  // --- MetricsRecorder ---
  void RecordRpc(absl::string_view method, absl::string_view model,
                 absl::StatusCode code, absl::Duration latency) override;
  void RecordRequestWindows(absl::string_view method, absl::string_view model,
                            int64_t windows) override;
  void RecordAdmitted(absl::string_view model, Lane lane, int64_t windows,
                      int64_t queued_windows) override;
  void RecordRefused(absl::string_view model, Lane lane, absl::StatusCode code,
                     int64_t windows) override;
  void RecordBatch(absl::string_view model, const BatchRecord& batch) override;
  void RecordDropped(absl::string_view model, Lane lane, absl::StatusCode code,
                     int64_t windows) override;
  void RecordQueueWait(absl::string_view model, Lane lane, absl::Duration wait,
                       int64_t windows) override;
  void RecordModelRun(absl::string_view model, int64_t rows,
                      absl::Duration duration, absl::StatusCode code) override;
  void RecordPrediction(absl::string_view model,
                        absl::string_view label) override;
  void RecordStreamStarted(absl::string_view model) override;
  void RecordStreamFinished(absl::string_view model, absl::StatusCode code,
                            int64_t windows, int64_t samples) override;
  void RecordStreamSamples(absl::string_view model, int64_t samples) override;
  void RecordStreamResultSent(absl::string_view model,
                              absl::Duration lag) override;
  void RecordStreamWindowsSkipped(absl::string_view model,
                                  int64_t windows) override;
  void RecordStreamBackpressure(absl::string_view model) override;

  // The rejection reason label for a refusal or drop with `code`.
  static absl::string_view RejectionReason(absl::StatusCode code);
  // The label of a gRPC status code: "OK", "INVALID_ARGUMENT", ...
  static std::string CodeName(absl::StatusCode code);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace harmamba

#endif  // HARMAMBA_SERVER_PROMETHEUS_METRICS_H_
