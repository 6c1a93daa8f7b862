// PrometheusMetrics (the MetricsRecorder behind /metrics) and
// MetricsHttpServer.
#include "server/prometheus_metrics.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "server/metrics_http.h"
#include "tests/testing/exposition.h"

namespace harmamba {
namespace {

using ::harmamba::testing::ParseExposition;
using ::harmamba::testing::SampleValue;
using ::testing::HasSubstr;

ModelDescription Model(const std::string& name = "har") {
  ModelDescription model;
  model.name = name;
  model.version = "3";
  model.backend = "cpu-fused (2 threads)";
  model.classes = {"WALKING", "SITTING", "LAYING"};
  model.load_time = absl::Milliseconds(250);
  model.queue_capacity = 8192;
  return model;
}

std::map<std::string, double> Samples(const PrometheusMetrics& metrics) {
  return ParseExposition(metrics.Exposition());
}

TEST(PrometheusMetricsTest, AddModelExportsInfoAndCreatesSeriesAtZero) {
  PrometheusMetrics metrics;
  metrics.AddModel(Model());
  const auto s = Samples(metrics);
  EXPECT_EQ(SampleValue(s, "harmamba_model_info",
                        {{"model", "har"},
                         {"version", "3"},
                         {"backend", "cpu-fused (2 threads)"}}),
            1);
  EXPECT_DOUBLE_EQ(SampleValue(s, "harmamba_model_load_duration_seconds",
                               {{"model", "har"}}),
                   0.25);
  EXPECT_EQ(SampleValue(s, "harmamba_queue_capacity_windows",
                        {{"model", "har"}, {"lane", "bulk"}}),
            8192);
  for (const char* label : {"WALKING", "SITTING", "LAYING"}) {
    EXPECT_EQ(SampleValue(s, "harmamba_predictions_total",
                          {{"model", "har"}, {"label", label}}),
              0)
        << label;
  }
  for (const char* reason :
       {"queue_full", "deadline", "cancelled", "invalid", "shutting_down"}) {
    EXPECT_EQ(
        SampleValue(
            s, "harmamba_rejected_windows_total",
            {{"model", "har"}, {"lane", "interactive"}, {"reason", reason}}),
        0)
        << reason;
  }
  EXPECT_EQ(
      SampleValue(
          s, "harmamba_requests_total",
          {{"method", "ClassifyBatch"}, {"model", "har"}, {"code", "OK"}}),
      0);
  EXPECT_EQ(SampleValue(s, "harmamba_active_streams", {{"model", "har"}}), 0);
}

TEST(PrometheusMetricsTest, RpcsCountByMethodModelAndCode) {
  PrometheusMetrics metrics;
  metrics.RecordRpc("Classify", "har", absl::StatusCode::kOk,
                    absl::Milliseconds(3));
  metrics.RecordRpc("Classify", "har", absl::StatusCode::kOk,
                    absl::Milliseconds(40));
  metrics.RecordRpc("Classify", "", absl::StatusCode::kNotFound,
                    absl::Microseconds(50));
  metrics.RecordRpc("StreamClassify", "har", absl::StatusCode::kCancelled,
                    absl::Seconds(20));
  metrics.RecordRequestWindows("ClassifyBatch", "har", 64);
  const auto s = Samples(metrics);
  EXPECT_EQ(
      SampleValue(s, "harmamba_requests_total",
                  {{"method", "Classify"}, {"model", "har"}, {"code", "OK"}}),
      2);
  EXPECT_EQ(SampleValue(
                s, "harmamba_requests_total",
                {{"method", "Classify"}, {"model", ""}, {"code", "NOT_FOUND"}}),
            1);
  EXPECT_EQ(SampleValue(s, "harmamba_requests_total",
                        {{"method", "StreamClassify"},
                         {"model", "har"},
                         {"code", "CANCELLED"}}),
            1);
  // Unary latencies: seconds, in le-buckets.
  const testing::Labels classify = {{"method", "Classify"}, {"model", "har"}};
  EXPECT_EQ(SampleValue(s, "harmamba_request_duration_seconds_count", classify),
            2);
  EXPECT_NEAR(SampleValue(s, "harmamba_request_duration_seconds_sum", classify),
              0.043, 1e-9);
  testing::Labels le = classify;
  le["le"] = "0.005";
  EXPECT_EQ(SampleValue(s, "harmamba_request_duration_seconds_bucket", le), 1);
  le["le"] = "0.05";
  EXPECT_EQ(SampleValue(s, "harmamba_request_duration_seconds_bucket", le), 2);
  // Streams are sessions: their durations go to their own histogram.
  EXPECT_EQ(SampleValue(s, "harmamba_request_duration_seconds_count",
                        {{"method", "StreamClassify"}, {"model", "har"}}),
            -1);
  EXPECT_EQ(SampleValue(s, "harmamba_stream_duration_seconds_count",
                        {{"model", "har"}}),
            1);
  EXPECT_EQ(SampleValue(s, "harmamba_request_windows_total",
                        {{"method", "ClassifyBatch"}, {"model", "har"}}),
            64);
}

TEST(PrometheusMetricsTest, QueueDepthFollowsAdmissionsBatchesAndDrops) {
  PrometheusMetrics metrics;
  metrics.RecordAdmitted("har", Lane::kBulk, 100, 100);
  metrics.RecordAdmitted("har", Lane::kInteractive, 3, 3);
  auto depth = [&](const char* lane) {
    return SampleValue(Samples(metrics), "harmamba_queue_depth_windows",
                       {{"model", "har"}, {"lane", lane}});
  };
  EXPECT_EQ(depth("bulk"), 100);
  EXPECT_EQ(depth("interactive"), 3);
  metrics.RecordQueueWait("har", Lane::kBulk, absl::Milliseconds(2), 64);
  metrics.RecordQueueWait("har", Lane::kInteractive, absl::Microseconds(300),
                          3);
  EXPECT_EQ(depth("bulk"), 36);
  EXPECT_EQ(depth("interactive"), 0);
  metrics.RecordDropped("har", Lane::kBulk, absl::StatusCode::kDeadlineExceeded,
                        30);
  metrics.RecordQueueWait("har", Lane::kBulk, absl::Milliseconds(7), 6);
  EXPECT_EQ(depth("bulk"), 0);
  const auto s = Samples(metrics);
  EXPECT_EQ(SampleValue(s, "harmamba_admitted_windows_total",
                        {{"model", "har"}, {"lane", "bulk"}}),
            100);
  EXPECT_EQ(
      SampleValue(s, "harmamba_rejected_windows_total",
                  {{"model", "har"}, {"lane", "bulk"}, {"reason", "deadline"}}),
      30);
}

TEST(PrometheusMetricsTest, QueueWaitIsWeightedByWindows) {
  PrometheusMetrics metrics;
  metrics.RecordQueueWait("har", Lane::kBulk, absl::Milliseconds(2), 64);
  metrics.RecordQueueWait("har", Lane::kBulk, absl::Milliseconds(30), 1);
  const auto s = Samples(metrics);
  const testing::Labels bulk = {{"model", "har"}, {"lane", "bulk"}};
  EXPECT_EQ(SampleValue(s, "harmamba_queue_wait_seconds_count", bulk), 65);
  EXPECT_NEAR(SampleValue(s, "harmamba_queue_wait_seconds_sum", bulk),
              64 * 0.002 + 0.030, 1e-9);
  testing::Labels le = bulk;
  le["le"] = "0.001";
  EXPECT_EQ(SampleValue(s, "harmamba_queue_wait_seconds_bucket", le), 0);
  le["le"] = "0.0025";
  EXPECT_EQ(SampleValue(s, "harmamba_queue_wait_seconds_bucket", le), 64);
  le["le"] = "0.05";
  EXPECT_EQ(SampleValue(s, "harmamba_queue_wait_seconds_bucket", le), 65);
  le["le"] = "+Inf";
  EXPECT_EQ(SampleValue(s, "harmamba_queue_wait_seconds_bucket", le), 65);
}

TEST(PrometheusMetricsTest, RejectionReasonsFromStatusCodes) {
  EXPECT_EQ(
      PrometheusMetrics::RejectionReason(absl::StatusCode::kResourceExhausted),
      "queue_full");
  EXPECT_EQ(
      PrometheusMetrics::RejectionReason(absl::StatusCode::kDeadlineExceeded),
      "deadline");
  EXPECT_EQ(PrometheusMetrics::RejectionReason(absl::StatusCode::kCancelled),
            "cancelled");
  EXPECT_EQ(
      PrometheusMetrics::RejectionReason(absl::StatusCode::kInvalidArgument),
      "invalid");
  EXPECT_EQ(PrometheusMetrics::RejectionReason(absl::StatusCode::kUnavailable),
            "shutting_down");
  EXPECT_EQ(PrometheusMetrics::RejectionReason(absl::StatusCode::kInternal),
            "other");
  PrometheusMetrics metrics;
  metrics.RecordRefused("har", Lane::kInteractive,
                        absl::StatusCode::kInvalidArgument, 1);
  metrics.RecordRefused("har", Lane::kBulk,
                        absl::StatusCode::kResourceExhausted, 500);
  metrics.RecordDropped("har", Lane::kInteractive, absl::StatusCode::kCancelled,
                        2);
  const auto s = Samples(metrics);
  EXPECT_EQ(
      SampleValue(
          s, "harmamba_rejected_windows_total",
          {{"model", "har"}, {"lane", "interactive"}, {"reason", "invalid"}}),
      1);
  EXPECT_EQ(SampleValue(
                s, "harmamba_rejected_windows_total",
                {{"model", "har"}, {"lane", "bulk"}, {"reason", "queue_full"}}),
            500);
  EXPECT_EQ(
      SampleValue(
          s, "harmamba_rejected_windows_total",
          {{"model", "har"}, {"lane", "interactive"}, {"reason", "cancelled"}}),
      2);
}

TEST(PrometheusMetricsTest, BatchesModelRunsAndPredictions) {
  PrometheusMetrics metrics;
  BatchRecord batch;
  batch.interactive_windows = 3;
  batch.bulk_windows = 2;
  batch.bucket = 8;
  batch.padded_rows = 3;
  batch.trigger = BatchRecord::Trigger::kFull;
  metrics.RecordBatch("har", batch);
  batch.bulk_windows = 61;
  batch.padded_rows = 0;
  batch.trigger = BatchRecord::Trigger::kIdleExecutor;
  metrics.RecordBatch("har", batch);
  metrics.RecordModelRun("har", 8, absl::Milliseconds(4),
                         absl::StatusCode::kOk);
  metrics.RecordModelRun("har", 64, absl::Milliseconds(30),
                         absl::StatusCode::kInternal);
  metrics.RecordPrediction("har", "WALKING");
  metrics.RecordPrediction("har", "WALKING");
  metrics.RecordPrediction("har", "LAYING");
  const auto s = Samples(metrics);
  EXPECT_EQ(SampleValue(s, "harmamba_batches_total",
                        {{"model", "har"}, {"trigger", "full"}}),
            1);
  EXPECT_EQ(SampleValue(s, "harmamba_batches_total",
                        {{"model", "har"}, {"trigger", "idle"}}),
            1);
  EXPECT_EQ(SampleValue(s, "harmamba_batch_size_windows_bucket",
                        {{"model", "har"}, {"le", "8"}}),
            1);
  EXPECT_EQ(SampleValue(s, "harmamba_batch_size_windows_bucket",
                        {{"model", "har"}, {"le", "64"}}),
            2);
  EXPECT_EQ(
      SampleValue(s, "harmamba_batch_size_windows_sum", {{"model", "har"}}),
      69);
  EXPECT_EQ(
      SampleValue(s, "harmamba_batch_padding_rows_total", {{"model", "har"}}),
      3);
  EXPECT_EQ(SampleValue(s, "harmamba_model_run_duration_seconds_count",
                        {{"model", "har"}}),
            2);
  EXPECT_EQ(SampleValue(s, "harmamba_model_run_rows_total", {{"model", "har"}}),
            72);
  EXPECT_EQ(
      SampleValue(s, "harmamba_model_run_failures_total", {{"model", "har"}}),
      1);
  EXPECT_EQ(SampleValue(s, "harmamba_predictions_total",
                        {{"model", "har"}, {"label", "WALKING"}}),
            2);
  EXPECT_EQ(SampleValue(s, "harmamba_predictions_total",
                        {{"model", "har"}, {"label", "LAYING"}}),
            1);
}

TEST(PrometheusMetricsTest, Streams) {
  PrometheusMetrics metrics;
  metrics.RecordStreamStarted("har");
  metrics.RecordStreamStarted("har");
  metrics.RecordStreamSamples("har", 128);
  metrics.RecordStreamSamples("har", 37);
  metrics.RecordStreamResultSent("har", absl::Milliseconds(3));
  metrics.RecordStreamResultSent("har", absl::Milliseconds(800));
  metrics.RecordStreamWindowsSkipped("har", 4);
  metrics.RecordStreamBackpressure("har");
  auto active = [&] {
    return SampleValue(Samples(metrics), "harmamba_active_streams",
                       {{"model", "har"}});
  };
  EXPECT_EQ(active(), 2);
  metrics.RecordStreamFinished("har", absl::StatusCode::kOk, 2, 165);
  // A stream that never resolved a model was never active.
  metrics.RecordStreamFinished("", absl::StatusCode::kNotFound, 0, 0);
  EXPECT_EQ(active(), 1);
  const auto s = Samples(metrics);
  EXPECT_EQ(SampleValue(s, "harmamba_stream_samples_total", {{"model", "har"}}),
            165);
  EXPECT_EQ(
      SampleValue(s, "harmamba_stream_windows_sent_total", {{"model", "har"}}),
      2);
  EXPECT_EQ(SampleValue(s, "harmamba_stream_windows_skipped_total",
                        {{"model", "har"}}),
            4);
  EXPECT_EQ(
      SampleValue(s, "harmamba_stream_backpressure_total", {{"model", "har"}}),
      1);
  EXPECT_EQ(SampleValue(s, "harmamba_stream_result_lag_seconds_bucket",
                        {{"model", "har"}, {"le", "0.005"}}),
            1);
  EXPECT_EQ(SampleValue(s, "harmamba_stream_result_lag_seconds_count",
                        {{"model", "har"}}),
            2);
}

double CpuSecondsOfThisProcess() {
  rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         1e-6 * (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

TEST(PrometheusMetricsTest, ProcessMetricsComeFromProc) {
  // Use enough CPU to show in /proc's clock ticks (10 ms).
  volatile double sink = 0;
  while (CpuSecondsOfThisProcess() < 0.05) sink = sink + 1;
  PrometheusMetrics metrics;
  const auto s = Samples(metrics);
  const double cpu = CpuSecondsOfThisProcess();
  EXPECT_GT(SampleValue(s, "process_cpu_seconds_total"), 0.03);
  EXPECT_LE(SampleValue(s, "process_cpu_seconds_total"), cpu + 0.011);
  EXPECT_GT(SampleValue(s, "process_resident_memory_bytes"), 1 << 20);
  EXPECT_GT(SampleValue(s, "process_virtual_memory_bytes"),
            SampleValue(s, "process_resident_memory_bytes"));
  EXPECT_GE(SampleValue(s, "process_open_fds"), 3);
  EXPECT_GT(SampleValue(s, "process_max_fds"),
            SampleValue(s, "process_open_fds"));
  EXPECT_GE(SampleValue(s, "process_threads"), 1);
  // Started within the last day, not in the future.
  const double start = SampleValue(s, "process_start_time_seconds");
  const double now = absl::ToUnixSeconds(absl::Now());
  EXPECT_LE(start, now + 1);
  EXPECT_GT(start, now - 86400);
}

TEST(PrometheusMetricsTest, ConcurrentRecordingLosesNothing) {
  PrometheusMetrics metrics;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 5000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&metrics, t] {
      const std::string label = t % 2 == 0 ? "WALKING" : "LAYING";
      for (int i = 0; i < kPerThread; ++i) {
        metrics.RecordPrediction("har", label);
        metrics.RecordAdmitted("har", Lane::kBulk, 2, 0);
        metrics.RecordQueueWait("har", Lane::kBulk, absl::Microseconds(i), 2);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  const auto s = Samples(metrics);
  EXPECT_EQ(SampleValue(s, "harmamba_predictions_total",
                        {{"model", "har"}, {"label", "WALKING"}}),
            2 * kPerThread);
  EXPECT_EQ(SampleValue(s, "harmamba_queue_wait_seconds_count",
                        {{"model", "har"}, {"lane", "bulk"}}),
            2 * kThreads * kPerThread);
  EXPECT_EQ(SampleValue(s, "harmamba_queue_depth_windows",
                        {{"model", "har"}, {"lane", "bulk"}}),
            0);
}

// Runs `command`, returning its exit status and output.
int RunCommand(const std::string& command, std::string* output) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) {
    output->append(buffer, n);
  }
  return pclose(pipe);
}

TEST(PrometheusMetricsTest, PromtoolAcceptsTheExposition) {
  std::string ignored;
  if (RunCommand("command -v promtool", &ignored) != 0) {
    GTEST_SKIP() << "promtool is not installed (Debian package 'prometheus'; "
                    "scripts/setup.sh installs it)";
  }
  PrometheusMetrics metrics;
  metrics.AddModel(Model("har"));
  metrics.AddModel(Model("other"));
  metrics.RecordRpc("Classify", "har", absl::StatusCode::kOk,
                    absl::Milliseconds(1));
  metrics.RecordQueueWait("har", Lane::kBulk, absl::Milliseconds(2), 64);
  metrics.RecordStreamStarted("har");
  const std::string path =
      (std::filesystem::path(::testing::TempDir()) / "exposition.prom")
          .string();
  std::ofstream(path) << metrics.Exposition();
  std::string output;
  const int status =
      RunCommand(absl::StrCat("promtool check metrics < ", path), &output);
  EXPECT_EQ(status, 0) << output;
  EXPECT_EQ(output, "") << "promtool lint findings";
}

// --- MetricsHttpServer ---

TEST(MetricsHttpServerTest, ServesTheRenderedTextAtMetrics) {
  int renders = 0;
  auto server = MetricsHttpServer::Start(
      "127.0.0.1:0",
      [&renders] { return absl::StrCat("test_metric ", ++renders, "\n"); },
      PrometheusMetrics::kContentType);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);
  httplib::Client client("127.0.0.1", (*server)->port());
  auto response = client.Get("/metrics");
  ASSERT_TRUE(response) << httplib::to_string(response.error());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "test_metric 1\n");
  EXPECT_THAT(response->get_header_value("Content-Type"),
              HasSubstr("version=0.0.4"));
  response = client.Get("/metrics");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->body, "test_metric 2\n");
  response = client.Get("/nothing-here");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 404);
  (*server)->Stop();
  (*server)->Stop();  // idempotent
  EXPECT_FALSE(client.Get("/metrics"));
}

TEST(MetricsHttpServerTest, APortInUseIsAnErrorNotACrash) {
  auto first = MetricsHttpServer::Start(
      "127.0.0.1:0", [] { return std::string(); }, "text/plain");
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = MetricsHttpServer::Start(
      absl::StrCat("127.0.0.1:", (*first)->port()),
      [] { return std::string(); }, "text/plain");
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr("cannot bind"));
}

TEST(MetricsHttpServerTest, MalformedAddressesAreRefused) {
  for (const char* address : {"", "9464", ":9464", "localhost:",
                              "localhost:http", "host:70000", "host:-1"}) {
    auto server = MetricsHttpServer::Start(
        address, [] { return std::string(); }, "text/plain");
    ASSERT_FALSE(server.ok()) << address;
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument)
        << address;
    EXPECT_THAT(server.status().message(), HasSubstr("host:port"));
  }
  std::string host;
  int port = 0;
  ASSERT_TRUE(SplitHostPort("[::1]:9464", &host, &port).ok());
  EXPECT_EQ(host, "::1");
  EXPECT_EQ(port, 9464);
}

TEST(MetricsHttpServerTest, StopRightAfterStartReturns) {
  for (int i = 0; i < 20; ++i) {
    auto server = MetricsHttpServer::Start(
        "127.0.0.1:0", [] { return std::string(); }, "text/plain");
    ASSERT_TRUE(server.ok()) << server.status();
    (*server)->Stop();
  }
}

}  // namespace
}  // namespace harmamba
