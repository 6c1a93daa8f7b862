#include "server/prometheus_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <sstream>
#include <type_traits>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"

namespace harmamba {
namespace {

using prometheus::Counter;
using prometheus::Gauge;
using prometheus::Histogram;

// RPC latencies, queue waits, model runs and stream lags (seconds): 0.1 ms to
// 30 s, about 2.5x apart.
const Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* const kBuckets = new Histogram::BucketBoundaries{
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
      0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30};
  return *kBuckets;
}

// Stream durations (seconds): streams are sessions, seconds to hours.
const Histogram::BucketBoundaries& StreamDurationBuckets() {
  static const auto* const kBuckets = new Histogram::BucketBoundaries{
      0.1, 1, 10, 30, 60, 300, 900, 1800, 3600, 14400};
  return *kBuckets;
}

// Windows per batch: powers of two up to 8192.
const Histogram::BucketBoundaries& BatchSizeBuckets() {
  static const auto* const kBuckets = [] {
    auto* buckets = new Histogram::BucketBoundaries;
    for (double b = 1; b <= 8192; b *= 2) buckets->push_back(b);
    return buckets;
  }();
  return *kBuckets;
}

// The series of one family, by label values, created on first use. Lookups
// take a reader lock; creation (once per label combination) a writer lock.
template <typename T>
class Series {
 public:
  Series(prometheus::Family<T>& family, std::vector<std::string> label_names,
         Histogram::BucketBoundaries buckets = {})
      : family_(family),
        label_names_(std::move(label_names)),
        buckets_(std::move(buckets)) {}

  // `values` are in the order of the label names.
  T& At(std::initializer_list<absl::string_view> values) {
    const std::string key = absl::StrJoin(values, "\x1f");
    {
      absl::ReaderMutexLock lock(&mu_);
      auto it = series_.find(key);
      if (it != series_.end()) return *it->second;
    }
    absl::MutexLock lock(&mu_);
    auto it = series_.find(key);
    if (it != series_.end()) return *it->second;
    prometheus::Labels labels;
    size_t i = 0;
    for (absl::string_view value : values) {
      labels.emplace(label_names_[i++], std::string(value));
    }
    T* metric;
    if constexpr (std::is_same_v<T, Histogram>) {
      metric = &family_.Add(labels, buckets_);
    } else {
      metric = &family_.Add(labels);
    }
    series_.emplace(key, metric);
    return *metric;
  }

  const Histogram::BucketBoundaries& buckets() const { return buckets_; }

 private:
  prometheus::Family<T>& family_;
  const std::vector<std::string> label_names_;
  const Histogram::BucketBoundaries buckets_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, T*> series_ ABSL_GUARDED_BY(mu_);
};

// Observes `value` `count` times in one step.
void ObserveWeighted(Histogram& histogram,
                     const Histogram::BucketBoundaries& buckets, double value,
                     int64_t count) {
  if (count <= 0) return;
  std::vector<double> increments(buckets.size() + 1, 0.0);
  // Same rule as Histogram::Observe: the first bucket whose bound >= value.
  const size_t bucket = static_cast<size_t>(
      std::lower_bound(buckets.begin(), buckets.end(), value) -
      buckets.begin());
  increments[bucket] = static_cast<double>(count);
  histogram.ObserveMultiple(increments, value * static_cast<double>(count));
}

// --- Process metrics, read from /proc at scrape time ---

prometheus::MetricFamily ProcessFamily(const std::string& name,
                                       const std::string& help,
                                       prometheus::MetricType type,
                                       double value) {
  prometheus::MetricFamily family;
  family.name = name;
  family.help = help;
  family.type = type;
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(metric);
  return family;
}

// The system's boot time (seconds since the epoch), from /proc/stat.
double BootTimeSeconds() {
  std::ifstream stat("/proc/stat");
  std::string line;
  while (std::getline(stat, line)) {
    if (line.rfind("btime ", 0) == 0) {
      double seconds = 0;
      if (absl::SimpleAtod(line.substr(6), &seconds)) return seconds;
    }
  }
  return 0;
}

std::vector<prometheus::MetricFamily> CollectProcessMetrics() {
  std::vector<prometheus::MetricFamily> families;
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)),
                   std::istreambuf_iterator<char>());
  // Fields after the command name (which may contain spaces) start at
  // field 3 (state).
  const size_t paren = stat.rfind(')');
  if (paren != std::string::npos) {
    std::vector<std::string> fields =
        absl::StrSplit(stat.substr(paren + 2), ' ', absl::SkipEmpty());
    auto field = [&fields](int number) -> double {  // 1-based, as in proc(5)
      double value = 0;
      const size_t index = static_cast<size_t>(number - 3);
      if (index >= fields.size() || !absl::SimpleAtod(fields[index], &value)) {
        return 0.0;
      }
      return value;
    };
    const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
    const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
    families.push_back(ProcessFamily(
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        prometheus::MetricType::Counter, (field(14) + field(15)) / ticks));
    families.push_back(ProcessFamily(
        "process_resident_memory_bytes", "Resident memory size in bytes.",
        prometheus::MetricType::Gauge, field(24) * page));
    families.push_back(ProcessFamily("process_virtual_memory_bytes",
                                     "Virtual memory size in bytes.",
                                     prometheus::MetricType::Gauge, field(23)));
    families.push_back(ProcessFamily(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        prometheus::MetricType::Gauge, BootTimeSeconds() + field(22) / ticks));
    families.push_back(ProcessFamily("process_threads",
                                     "Number of OS threads in the process.",
                                     prometheus::MetricType::Gauge, field(20)));
  }
  int open_fds = 0;
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (dirent* entry = readdir(dir)) {
      if (entry->d_name[0] != '.') ++open_fds;
    }
    closedir(dir);
    --open_fds;  // the directory stream itself
  }
  families.push_back(ProcessFamily("process_open_fds",
                                   "Number of open file descriptors.",
                                   prometheus::MetricType::Gauge, open_fds));
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    families.push_back(ProcessFamily(
        "process_max_fds", "Maximum number of open file descriptors.",
        prometheus::MetricType::Gauge, static_cast<double>(limit.rlim_cur)));
  }
  return families;
}

absl::string_view TriggerName(BatchRecord::Trigger trigger) {
  switch (trigger) {
    case BatchRecord::Trigger::kFull:
      return "full";
    case BatchRecord::Trigger::kIdleExecutor:
      return "idle";
    case BatchRecord::Trigger::kQueueDelay:
      return "queue_delay";
    case BatchRecord::Trigger::kDraining:
      return "draining";
  }
  return "other";
}

constexpr absl::string_view kLanes[] = {"interactive", "bulk"};
constexpr absl::string_view kReasons[] = {"queue_full", "deadline", "cancelled",
                                          "invalid", "shutting_down"};
constexpr absl::string_view kModelMethods[] = {"Classify", "ClassifyBatch",
                                               "StreamClassify"};

}  // namespace

struct PrometheusMetrics::Impl {
  explicit Impl(std::shared_ptr<prometheus::Registry> r)
      : registry(std::move(r)),
        requests(prometheus::BuildCounter()
                     .Name("harmamba_requests_total")
                     .Help("RPCs finished, by method, model and gRPC status "
                           "code.")
                     .Register(*registry),
                 {"method", "model", "code"}),
        request_duration(
            prometheus::BuildHistogram()
                .Name("harmamba_request_duration_seconds")
                .Help("Latency of unary RPCs, from the handler's start to "
                      "Finish (StreamClassify: see "
                      "harmamba_stream_duration_seconds).")
                .Register(*registry),
            {"method", "model"}, LatencyBuckets()),
        request_windows(prometheus::BuildCounter()
                            .Name("harmamba_request_windows_total")
                            .Help("Windows received in requests (valid or "
                                  "not), by method and model.")
                            .Register(*registry),
                        {"method", "model"}),
        admitted(prometheus::BuildCounter()
                     .Name("harmamba_admitted_windows_total")
                     .Help("Windows accepted into a model's queue.")
                     .Register(*registry),
                 {"model", "lane"}),
        rejected(prometheus::BuildCounter()
                     .Name("harmamba_rejected_windows_total")
                     .Help("Windows refused or dropped before the model ran "
                           "them, by reason: queue_full (queue full or "
                           "deadline unmeetable at admission), deadline, "
                           "cancelled, invalid, shutting_down, other.")
                     .Register(*registry),
                 {"model", "lane", "reason"}),
        queue_depth(prometheus::BuildGauge()
                        .Name("harmamba_queue_depth_windows")
                        .Help("Windows waiting in a model's queue.")
                        .Register(*registry),
                    {"model", "lane"}),
        queue_capacity(prometheus::BuildGauge()
                           .Name("harmamba_queue_capacity_windows")
                           .Help("Most windows a model's queue holds per "
                                 "lane.")
                           .Register(*registry),
                       {"model", "lane"}),
        queue_wait(prometheus::BuildHistogram()
                       .Name("harmamba_queue_wait_seconds")
                       .Help("Time from admission until the window's batch "
                             "started, one observation per window.")
                       .Register(*registry),
                   {"model", "lane"}, LatencyBuckets()),
        batches(prometheus::BuildCounter()
                    .Name("harmamba_batches_total")
                    .Help("Batches run, by what closed them: full, idle "
                          "(an idle executor ran at once), queue_delay, "
                          "draining.")
                    .Register(*registry),
                {"model", "trigger"}),
        batch_size(prometheus::BuildHistogram()
                       .Name("harmamba_batch_size_windows")
                       .Help("Windows per batch (without padding).")
                       .Register(*registry),
                   {"model"}, BatchSizeBuckets()),
        batch_padding(prometheus::BuildCounter()
                          .Name("harmamba_batch_padding_rows_total")
                          .Help("Padding rows added to reach a batch "
                                "bucket.")
                          .Register(*registry),
                      {"model"}),
        model_run(prometheus::BuildHistogram()
                      .Name("harmamba_model_run_duration_seconds")
                      .Help("Time of one model execution (one batch).")
                      .Register(*registry),
                  {"model"}, LatencyBuckets()),
        model_rows(prometheus::BuildCounter()
                       .Name("harmamba_model_run_rows_total")
                       .Help("Rows (windows plus padding) the model ran.")
                       .Register(*registry),
                   {"model"}),
        model_failures(prometheus::BuildCounter()
                           .Name("harmamba_model_run_failures_total")
                           .Help("Model executions that failed.")
                           .Register(*registry),
                       {"model"}),
        predictions(prometheus::BuildCounter()
                        .Name("harmamba_predictions_total")
                        .Help("Window results produced, by predicted "
                              "activity label.")
                        .Register(*registry),
                    {"model", "label"}),
        active_streams(prometheus::BuildGauge()
                           .Name("harmamba_active_streams")
                           .Help("StreamClassify calls open.")
                           .Register(*registry),
                       {"model"}),
        stream_duration(prometheus::BuildHistogram()
                            .Name("harmamba_stream_duration_seconds")
                            .Help("Duration of StreamClassify calls.")
                            .Register(*registry),
                        {"model"}, StreamDurationBuckets()),
        stream_samples(prometheus::BuildCounter()
                           .Name("harmamba_stream_samples_total")
                           .Help("Samples received on streams.")
                           .Register(*registry),
                       {"model"}),
        stream_windows_sent(prometheus::BuildCounter()
                                .Name("harmamba_stream_windows_sent_total")
                                .Help("Window results written to streams.")
                                .Register(*registry),
                            {"model"}),
        stream_windows_skipped(
            prometheus::BuildCounter()
                .Name("harmamba_stream_windows_skipped_total")
                .Help("Windows cut from streams whose results were never "
                      "written (the stream ended first).")
                .Register(*registry),
            {"model"}),
        stream_lag(prometheus::BuildHistogram()
                       .Name("harmamba_stream_result_lag_seconds")
                       .Help("From the arrival of a window's last sample to "
                             "its result being written.")
                       .Register(*registry),
                   {"model"}, LatencyBuckets()),
        stream_backpressure(prometheus::BuildCounter()
                                .Name("harmamba_stream_backpressure_total")
                                .Help("Times the server stopped reading a "
                                      "stream because its backlog was "
                                      "full.")
                                .Register(*registry),
                            {"model"}),
        model_info(prometheus::BuildGauge()
                       .Name("harmamba_model_info")
                       .Help("Served models (value 1), with version and "
                             "backend.")
                       .Register(*registry),
                   {"model", "version", "backend"}),
        model_load(prometheus::BuildGauge()
                       .Name("harmamba_model_load_duration_seconds")
                       .Help("Time to load a model file and build its "
                             "backend.")
                       .Register(*registry),
                   {"model"}) {}

  std::shared_ptr<prometheus::Registry> registry;
  Series<Counter> requests;
  Series<Histogram> request_duration;
  Series<Counter> request_windows;
  Series<Counter> admitted;
  Series<Counter> rejected;
  Series<Gauge> queue_depth;
  Series<Gauge> queue_capacity;
  Series<Histogram> queue_wait;
  Series<Counter> batches;
  Series<Histogram> batch_size;
  Series<Counter> batch_padding;
  Series<Histogram> model_run;
  Series<Counter> model_rows;
  Series<Counter> model_failures;
  Series<Counter> predictions;
  Series<Gauge> active_streams;
  Series<Histogram> stream_duration;
  Series<Counter> stream_samples;
  Series<Counter> stream_windows_sent;
  Series<Counter> stream_windows_skipped;
  Series<Histogram> stream_lag;
  Series<Counter> stream_backpressure;
  Series<Gauge> model_info;
  Series<Gauge> model_load;
};

PrometheusMetrics::PrometheusMetrics()
    : impl_(std::make_unique<Impl>(std::make_shared<prometheus::Registry>())) {}

PrometheusMetrics::~PrometheusMetrics() = default;

void PrometheusMetrics::AddModel(const ModelDescription& model) {
  Impl& m = *impl_;
  const absl::string_view name = model.name;
  m.model_info.At({name, model.version, model.backend}).Set(1);
  m.model_load.At({name}).Set(absl::ToDoubleSeconds(model.load_time));
  for (absl::string_view lane : kLanes) {
    if (model.queue_capacity > 0) {
      m.queue_capacity.At({name, lane})
          .Set(static_cast<double>(model.queue_capacity));
    }
    m.queue_depth.At({name, lane});
    m.admitted.At({name, lane});
    m.queue_wait.At({name, lane});
    for (absl::string_view reason : kReasons)
      m.rejected.At({name, lane, reason});
  }
  for (absl::string_view method : kModelMethods) {
    m.requests.At({method, name, "OK"});
    m.request_windows.At({method, name});
    if (method != "StreamClassify") m.request_duration.At({method, name});
  }
  m.batches.At({name, "idle"});
  m.batch_size.At({name});
  m.batch_padding.At({name});
  m.model_run.At({name});
  m.model_rows.At({name});
  m.model_failures.At({name});
  for (const std::string& label : model.classes)
    m.predictions.At({name, label});
  m.active_streams.At({name});
  m.stream_duration.At({name});
  m.stream_samples.At({name});
  m.stream_windows_sent.At({name});
  m.stream_windows_skipped.At({name});
  m.stream_lag.At({name});
  m.stream_backpressure.At({name});
}

std::string PrometheusMetrics::Exposition() const {
  std::vector<prometheus::MetricFamily> families = impl_->registry->Collect();
  std::vector<prometheus::MetricFamily> process = CollectProcessMetrics();
  families.insert(families.end(), std::make_move_iterator(process.begin()),
                  std::make_move_iterator(process.end()));
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

absl::string_view PrometheusMetrics::RejectionReason(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kResourceExhausted:
      return "queue_full";
    case absl::StatusCode::kDeadlineExceeded:
      return "deadline";
    case absl::StatusCode::kCancelled:
      return "cancelled";
    case absl::StatusCode::kInvalidArgument:
      return "invalid";
    case absl::StatusCode::kUnavailable:
      return "shutting_down";
    default:
      return "other";
  }
}

std::string PrometheusMetrics::CodeName(absl::StatusCode code) {
  return absl::StatusCodeToString(code);
}

void PrometheusMetrics::RecordRpc(absl::string_view method,
                                  absl::string_view model,
                                  absl::StatusCode code,
                                  absl::Duration latency) {
  impl_->requests.At({method, model, CodeName(code)}).Increment();
  if (method == "StreamClassify") {
    impl_->stream_duration.At({model}).Observe(absl::ToDoubleSeconds(latency));
  } else {
    impl_->request_duration.At({method, model})
        .Observe(absl::ToDoubleSeconds(latency));
  }
}

void PrometheusMetrics::RecordRequestWindows(absl::string_view method,
                                             absl::string_view model,
                                             int64_t windows) {
  impl_->request_windows.At({method, model})
      .Increment(static_cast<double>(windows));
}

// The queue depth gauge moves with every window that enters (admitted) or
// leaves (into a batch, or dropped) the queue. The updates come from
// different threads outside the batcher's lock, so the gauge may lag by the
// updates in flight, but it never drifts: it is exact whenever the server
// is quiet.
void PrometheusMetrics::RecordAdmitted(absl::string_view model, Lane lane,
                                       int64_t windows,
                                       int64_t queued_windows) {
  const double n = static_cast<double>(windows);
  impl_->admitted.At({model, LaneName(lane)}).Increment(n);
  impl_->queue_depth.At({model, LaneName(lane)}).Increment(n);
}

void PrometheusMetrics::RecordRefused(absl::string_view model, Lane lane,
                                      absl::StatusCode code, int64_t windows) {
  impl_->rejected.At({model, LaneName(lane), RejectionReason(code)})
      .Increment(static_cast<double>(windows));
}

void PrometheusMetrics::RecordBatch(absl::string_view model,
                                    const BatchRecord& batch) {
  impl_->batches.At({model, TriggerName(batch.trigger)}).Increment();
  impl_->batch_size.At({model}).Observe(static_cast<double>(batch.windows()));
  impl_->batch_padding.At({model}).Increment(
      static_cast<double>(batch.padded_rows));
}

void PrometheusMetrics::RecordDropped(absl::string_view model, Lane lane,
                                      absl::StatusCode code, int64_t windows) {
  const double n = static_cast<double>(windows);
  impl_->rejected.At({model, LaneName(lane), RejectionReason(code)})
      .Increment(n);
  impl_->queue_depth.At({model, LaneName(lane)}).Decrement(n);
}

void PrometheusMetrics::RecordQueueWait(absl::string_view model, Lane lane,
                                        absl::Duration wait, int64_t windows) {
  Series<Histogram>& series = impl_->queue_wait;
  ObserveWeighted(series.At({model, LaneName(lane)}), series.buckets(),
                  absl::ToDoubleSeconds(wait), windows);
  impl_->queue_depth.At({model, LaneName(lane)})
      .Decrement(static_cast<double>(windows));
}

void PrometheusMetrics::RecordModelRun(absl::string_view model, int64_t rows,
                                       absl::Duration duration,
                                       absl::StatusCode code) {
  impl_->model_run.At({model}).Observe(absl::ToDoubleSeconds(duration));
  impl_->model_rows.At({model}).Increment(static_cast<double>(rows));
  if (code != absl::StatusCode::kOk)
    impl_->model_failures.At({model}).Increment();
}

void PrometheusMetrics::RecordPrediction(absl::string_view model,
                                         absl::string_view label) {
  impl_->predictions.At({model, label}).Increment();
}

void PrometheusMetrics::RecordStreamStarted(absl::string_view model) {
  impl_->active_streams.At({model}).Increment();
}

void PrometheusMetrics::RecordStreamFinished(absl::string_view model,
                                             absl::StatusCode code,
                                             int64_t windows, int64_t samples) {
  // Streams that never resolved a model were never counted as active.
  if (!model.empty()) impl_->active_streams.At({model}).Decrement();
}

void PrometheusMetrics::RecordStreamSamples(absl::string_view model,
                                            int64_t samples) {
  impl_->stream_samples.At({model}).Increment(static_cast<double>(samples));
}

void PrometheusMetrics::RecordStreamResultSent(absl::string_view model,
                                               absl::Duration lag) {
  impl_->stream_windows_sent.At({model}).Increment();
  impl_->stream_lag.At({model}).Observe(absl::ToDoubleSeconds(lag));
}

void PrometheusMetrics::RecordStreamWindowsSkipped(absl::string_view model,
                                                   int64_t windows) {
  impl_->stream_windows_skipped.At({model}).Increment(
      static_cast<double>(windows));
}

void PrometheusMetrics::RecordStreamBackpressure(absl::string_view model) {
  impl_->stream_backpressure.At({model}).Increment();
}

}  // namespace harmamba
