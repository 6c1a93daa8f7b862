// `harmamba client` and `harmamba loadgen` against a real gRPC server on
// loopback (HarmambaServer around FakeBackends, with the Prometheus
// recorder), run in-process through RunHarmamba. The load generator's
// counts are checked against the server's own metrics.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/security/server_credentials.h"
#include "gtest/gtest.h"
#include "model/array_io.h"
#include "nlohmann/json.hpp"
#include "server/model_registry.h"
#include "server/prometheus_metrics.h"
#include "server/server.h"
#include "tests/testing/exposition.h"
#include "tests/testing/fake_backend.h"
#include "tests/unit/test_files.h"
#include "tools/commands.h"

namespace harmamba {
namespace {

namespace fs = std::filesystem;
using ::harmamba::testing::FakeBackend;
using ::harmamba::testing::FakeConfig;
using ::harmamba::testing::FakeLogits;
using ::harmamba::testing::ParseExposition;
using ::harmamba::testing::SampleValue;
using ::testing::HasSubstr;
using json = nlohmann::json;

constexpr int kWindow = 16;
constexpr int kChannels = 3;
constexpr int kClasses = 4;

// Waits (polling) until `done()` or 20 s.
template <typename F>
bool WaitFor(F done) {
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

std::vector<float> RandomSamples(int samples, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> out(static_cast<size_t>(samples) * kChannels);
  for (float& x : out) x = normal(rng);
  return out;
}

struct CommandRun {
  int exit_code;
  std::string out;
  std::string err;
};

CommandRun Harmamba(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  const int code = cli::RunHarmamba(args, out, err);
  return {code, out.str(), err.str()};
}

// Blocks FakeBackend runs while closed.
class Gate {
 public:
  absl::Status Pass() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&open_));
    return absl::OkStatus();
  }
  void Set(bool open) {
    absl::MutexLock lock(&mu_);
    open_ = open;
  }

 private:
  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = true;
};

class ClientLoadgenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           absl::StrCat(
               "client_loadgen_",
               ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    config_ = FakeConfig("fake", kWindow, kChannels, kClasses);
  }
  void TearDown() override {
    gate_.Set(true);
    server_.reset();
    fs::remove_all(dir_);
  }

  void StartServer(
      std::shared_ptr<grpc::ServerCredentials> credentials = nullptr) {
    auto backend = std::make_unique<FakeBackend>(config_);
    backend_ = backend.get();
    backend_->set_hook([this](int64_t) { return gate_.Pass(); });
    std::vector<std::unique_ptr<ModelBackend>> backends;
    backends.push_back(std::move(backend));
    auto registry = ModelRegistry::FromBackends(std::move(backends), "");
    ASSERT_TRUE(registry.ok()) << registry.status();
    ModelDescription description;
    description.name = config_.name;
    description.version = config_.version;
    description.backend = "fake backend";
    description.classes = config_.classes;
    description.queue_capacity = 8192;
    metrics_.AddModel(description);
    ServerOptions options;
    options.address = "127.0.0.1:0";
    options.credentials = std::move(credentials);
    auto server = HarmambaServer::Start(std::move(*registry), options,
                                        /*clock=*/nullptr, &metrics_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    target_ = absl::StrCat("127.0.0.1:", server_->port());
  }

  std::string WriteNpy(const std::string& name, const std::vector<float>& data,
                       std::vector<int64_t> shape) {
    const std::string path = (dir_ / name).string();
    EXPECT_TRUE(WriteNpyFloat32(path, shape, data).ok());
    return path;
  }
  std::string WriteCsv(const std::string& name,
                       const std::vector<float>& data) {
    const std::string path = (dir_ / name).string();
    std::ofstream file(path);
    file << "x,y,z\n";
    for (size_t i = 0; i < data.size(); i += kChannels) {
      file << data[i] << "," << data[i + 1] << "," << data[i + 2] << "\n";
    }
    return path;
  }

  // The label the model gives the window starting at `samples`.
  std::string ExpectedLabel(const float* samples) {
    std::vector<float> logits(kClasses);
    FakeLogits(config_, samples, logits.data());
    return config_.classes[std::max_element(logits.begin(), logits.end()) -
                           logits.begin()];
  }

  double Metric(const std::string& name, const testing::Labels& labels) {
    return SampleValue(ParseExposition(metrics_.Exposition()), name, labels);
  }
  double Requests(const std::string& method, const std::string& code) {
    return Metric("harmamba_requests_total",
                  {{"method", method}, {"model", "fake"}, {"code", code}});
  }
  double Predictions() {
    double sum = 0;
    for (const std::string& label : config_.classes) {
      sum += Metric("harmamba_predictions_total",
                    {{"model", "fake"}, {"label", label}});
    }
    return sum;
  }

  fs::path dir_;
  ModelConfig config_;
  Gate gate_;
  FakeBackend* backend_ = nullptr;
  PrometheusMetrics metrics_;
  std::unique_ptr<HarmambaServer> server_;
  std::string target_;
};

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

TEST_F(ClientLoadgenTest, BatchAndClassifyPrintTheModelsLabels) {
  StartServer();
  const std::vector<float> samples = RandomSamples(10 * kWindow, 1);
  const std::string path = WriteNpy("w.npy", samples, {10, kWindow, kChannels});
  for (const char* rpc : {"batch", "classify"}) {
    SCOPED_TRACE(rpc);
    const CommandRun run = Harmamba({"client", "--target", target_, "--input",
                                     path, "--rpc", rpc, "--batch", "4"});
    ASSERT_EQ(run.exit_code, 0) << run.err;
    const std::vector<std::string> lines = Lines(run.out);
    ASSERT_EQ(lines.size(), 10u) << run.out;
    for (int w = 0; w < 10; ++w) {
      const std::vector<std::string> fields = absl::StrSplit(lines[w], '\t');
      ASSERT_EQ(fields.size(), 3u) << lines[w];
      EXPECT_EQ(fields[0], absl::StrCat(w));
      EXPECT_EQ(fields[1],
                ExpectedLabel(samples.data() + w * kWindow * kChannels));
    }
  }
  // 10 windows in calls of 4: 3 ClassifyBatch calls; 10 Classify calls.
  EXPECT_EQ(Requests("ClassifyBatch", "OK"), 3);
  EXPECT_EQ(Requests("Classify", "OK"), 10);
  EXPECT_EQ(Predictions(), 20);
}

TEST_F(ClientLoadgenTest, JsonOutputAndCsvInput) {
  StartServer();
  const std::vector<float> samples = RandomSamples(2 * kWindow + 5, 2);
  const std::string path = WriteCsv("rec.csv", samples);
  const CommandRun run =
      Harmamba({"client", "--target", target_, "--input", path, "--json"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.err, HasSubstr("5 samples after the last whole window"));
  const json doc = json::parse(run.out);
  EXPECT_EQ(doc["model"]["name"], "fake");
  EXPECT_EQ(doc["rpc"], "ClassifyBatch");
  EXPECT_EQ(doc["num_windows"], 2);
  EXPECT_EQ(doc["leftover_samples"], 5);
  ASSERT_EQ(doc["predictions"].size(), 2u);
  for (int w = 0; w < 2; ++w) {
    const json& p = doc["predictions"][w];
    EXPECT_EQ(p["label"],
              ExpectedLabel(samples.data() + w * kWindow * kChannels));
    double sum = 0;
    for (double x : p["probabilities"]) sum += x;
    EXPECT_NEAR(sum, 1.0, 1e-5);
  }
  EXPECT_TRUE(doc["errors"].empty());
}

TEST_F(ClientLoadgenTest, StreamsARecordingAndPrintsEachWindow) {
  StartServer();
  constexpr int kSamples = 100;  // hop 8: windows at 0, 8, ..., 80; 4 left
  const std::vector<float> samples = RandomSamples(kSamples, 3);
  const std::string path = WriteCsv("rec.csv", samples);
  const CommandRun run =
      Harmamba({"client", "--target", target_, "--input", path, "--rpc",
                "stream", "--pace", "fast", "--chunk", "7"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::vector<std::string> lines = Lines(run.out);
  ASSERT_EQ(lines.size(), 11u) << run.out;
  for (int w = 0; w < 11; ++w) {
    const std::vector<std::string> fields = absl::StrSplit(lines[w], '\t');
    ASSERT_EQ(fields.size(), 5u) << lines[w];
    EXPECT_EQ(fields[0], absl::StrCat(w));
    EXPECT_EQ(fields[1], absl::StrCat(8 * w));
    EXPECT_EQ(fields[2], absl::StrCat(8 * w + kWindow));
    EXPECT_EQ(fields[3], ExpectedLabel(samples.data() + 8 * w * kChannels));
  }
  EXPECT_THAT(run.err, HasSubstr("100 samples, 11 windows, 4 samples left"));
  ASSERT_TRUE(WaitFor([&] { return Requests("StreamClassify", "OK") == 1; }));
  EXPECT_EQ(Metric("harmamba_stream_samples_total", {{"model", "fake"}}),
            kSamples);
  EXPECT_EQ(Metric("harmamba_stream_windows_sent_total", {{"model", "fake"}}),
            11);
  EXPECT_EQ(
      Metric("harmamba_stream_result_lag_seconds_count", {{"model", "fake"}}),
      11);
  EXPECT_EQ(Metric("harmamba_active_streams", {{"model", "fake"}}), 0);
}

TEST_F(ClientLoadgenTest, AStreamEndedByAModelFailureCountsSkippedWindows) {
  StartServer();
  backend_->set_hook(
      [](int64_t) { return absl::InternalError("the model broke"); });
  // One chunk of 100 samples: all 11 windows are cut at once, and all fail.
  const std::string path = WriteCsv("rec.csv", RandomSamples(100, 9));
  const CommandRun run =
      Harmamba({"client", "--target", target_, "--input", path, "--rpc",
                "stream", "--pace", "fast", "--chunk", "100"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("INTERNAL"));
  EXPECT_EQ(run.out, "");
  ASSERT_TRUE(
      WaitFor([&] { return Requests("StreamClassify", "INTERNAL") == 1; }));
  EXPECT_EQ(Metric("harmamba_stream_windows_sent_total", {{"model", "fake"}}),
            0);
  EXPECT_EQ(
      Metric("harmamba_stream_windows_skipped_total", {{"model", "fake"}}), 11);
  EXPECT_GE(Metric("harmamba_model_run_failures_total", {{"model", "fake"}}),
            1);
  EXPECT_EQ(Predictions(), 0);
  EXPECT_EQ(Metric("harmamba_active_streams", {{"model", "fake"}}), 0);
}

TEST_F(ClientLoadgenTest, StreamAtRealTimePaceTakesTheRecordingsDuration) {
  StartServer();
  // 60 samples at 200 Hz: 0.3 s of recording, 6 chunks of 10.
  const std::string path = WriteCsv("rec.csv", RandomSamples(60, 4));
  const absl::Time start = absl::Now();
  const CommandRun run = Harmamba({"client", "--target", target_, "--input",
                                   path, "--rpc", "stream", "--sample-rate-hz",
                                   "200", "--chunk", "10", "--json"});
  const absl::Duration elapsed = absl::Now() - start;
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_GE(elapsed, absl::Milliseconds(290));
  const std::vector<std::string> lines = Lines(run.out);
  // Windows at 0, 8, ..., 40 (6), then the summary line.
  ASSERT_EQ(lines.size(), 7u) << run.out;
  EXPECT_EQ(json::parse(lines[0])["start_sample"], 0);
  EXPECT_EQ(json::parse(lines[6])["summary"]["samples_received"], 60);
}

TEST_F(ClientLoadgenTest, ErrorsAreReportedWithTheirCause) {
  StartServer();
  const std::string good =
      WriteNpy("w.npy", RandomSamples(kWindow, 5), {1, kWindow, kChannels});
  CommandRun run = Harmamba(
      {"client", "--target", target_, "--input", good, "--model", "nope"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("NOT_FOUND"));
  const std::string wrong =
      WriteNpy("bad.npy", RandomSamples(kWindow, 6), {1, kWindow / 2, 6});
  run = Harmamba({"client", "--target", target_, "--input", wrong});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("expects windows of 16 samples x 3 channels"));
  run = Harmamba(
      {"client", "--target", target_, "--input", good, "--tls-ca", "x.pem"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("need --tls"));
  run = Harmamba({"client", "--target", target_});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("--input"));
  // Nothing listens on a port the server just gave back.
  const std::string closed = target_;
  server_->Shutdown(absl::ZeroDuration());
  run = Harmamba(
      {"client", "--target", closed, "--input", good, "--deadline-ms", "3000"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("GetModelInfo"));
}

TEST_F(ClientLoadgenTest, DeadlineEndsACallThatTakesTooLong) {
  StartServer();
  const std::string path =
      WriteNpy("w.npy", RandomSamples(kWindow, 7), {1, kWindow, kChannels});
  gate_.Set(false);
  const CommandRun run = Harmamba(
      {"client", "--target", target_, "--input", path, "--deadline-ms", "200"});
  gate_.Set(true);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("DEADLINE_EXCEEDED"));
}

TEST_F(ClientLoadgenTest, TlsWithAPrivateCertificateAuthority) {
  if (!testing::HaveOpenssl()) GTEST_SKIP() << "openssl is not installed";
  const fs::path key = dir_ / "server.key";
  const fs::path cert = dir_ / "server.pem";
  ASSERT_TRUE(testing::WriteSelfSignedCertificate(key.string(), cert.string(),
                                                  "harmamba.test"));
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back(
      {testing::ReadText(key.string()), testing::ReadText(cert.string())});
  StartServer(grpc::SslServerCredentials(ssl));
  const std::string path =
      WriteNpy("w.npy", RandomSamples(kWindow, 8), {1, kWindow, kChannels});
  CommandRun run = Harmamba({"client", "--target", target_, "--input", path,
                             "--tls", "--tls-ca", cert.string(),
                             "--tls-server-name", "harmamba.test"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(Lines(run.out).size(), 1u);
  // Plaintext to a TLS server fails.
  run = Harmamba({"client", "--target", target_, "--input", path,
                  "--deadline-ms", "3000"});
  EXPECT_EQ(run.exit_code, 1);
  // A name the certificate does not carry fails verification.
  run = Harmamba({"client", "--target", target_, "--input", path, "--tls",
                  "--tls-ca", cert.string(), "--tls-server-name", "other.test",
                  "--deadline-ms", "3000"});
  EXPECT_EQ(run.exit_code, 1);
}

TEST_F(ClientLoadgenTest, HealthIsServingUntilShutdown) {
  StartServer();
  CommandRun run = Harmamba({"health", "--target", target_});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, "SERVING\n");
  run = Harmamba({"health", "--target", target_, "--service",
                  HarmambaServer::kServiceName});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  run =
      Harmamba({"health", "--target", target_, "--service", "no.such.Service"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("NOT_FOUND"));
  server_->Shutdown(absl::ZeroDuration());
  run = Harmamba({"health", "--target", target_, "--timeout-ms", "2000"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_EQ(run.out, "");
}

// --- harmamba loadgen ---

json Loadgen(const std::vector<std::string>& args, const fs::path& dir) {
  const std::string json_path = (dir / "report.json").string();
  const std::string csv_path = (dir / "report.csv").string();
  std::vector<std::string> full = {"loadgen", "--json-out", json_path,
                                   "--csv-out", csv_path};
  full.insert(full.end(), args.begin(), args.end());
  const CommandRun run = Harmamba(full);
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("windows/s"));
  const json report = json::parse(testing::ReadText(json_path));
  // One CSV row per level, after the header.
  EXPECT_EQ(Lines(testing::ReadText(csv_path)).size(),
            1 + report["levels"].size());
  return report;
}

int64_t TotalCalls(const json& report, const std::string& code) {
  const json& codes = report["total"]["calls_by_code"];
  return codes.contains(code) ? codes[code].get<int64_t>() : 0;
}

TEST_F(ClientLoadgenTest, LoadgenBatchCountsMatchTheServersMetrics) {
  StartServer();
  const json report = Loadgen(
      {"--target", target_, "--mode", "batch", "--batch-size", "8",
       "--concurrency", "1,3", "--warmup-s", "0.2", "--duration-s", "0.5"},
      dir_);
  ASSERT_EQ(report["levels"].size(), 2u);
  for (const json& level : report["levels"]) {
    EXPECT_GT(level["windows_per_s"].get<double>(), 0);
    EXPECT_EQ(level["windows"].get<int64_t>(),
              8 * level["calls"].get<int64_t>());
    EXPECT_LE(level["latency_ms"]["p50"].get<double>(),
              level["latency_ms"]["p99"].get<double>());
    EXPECT_GE(level["loadgen_cpu_cores"].get<double>(), 0);
  }
  const int64_t calls = TotalCalls(report, "OK");
  ASSERT_GT(calls, 0);
  EXPECT_EQ(report["total"]["calls_by_code"].size(), 1u);  // only OK
  EXPECT_EQ(report["total"]["windows"].get<int64_t>(), 8 * calls);
  EXPECT_EQ(Requests("ClassifyBatch", "OK"), calls);
  EXPECT_EQ(Metric("harmamba_request_windows_total",
                   {{"method", "ClassifyBatch"}, {"model", "fake"}}),
            8 * calls);
  EXPECT_EQ(Predictions(), report["total"]["windows"].get<int64_t>());
  EXPECT_EQ(Metric("harmamba_request_duration_seconds_count",
                   {{"method", "ClassifyBatch"}, {"model", "fake"}}),
            calls);
  EXPECT_EQ(Metric("harmamba_queue_depth_windows",
                   {{"model", "fake"}, {"lane", "bulk"}}),
            0);
}

TEST_F(ClientLoadgenTest, LoadgenUnaryOpenLoopCountsMatch) {
  StartServer();
  const json report =
      Loadgen({"--target", target_, "--mode", "unary", "--rate", "300",
               "--warmup-s", "0.2", "--duration-s", "0.5"},
              dir_);
  ASSERT_EQ(report["levels"].size(), 1u);
  EXPECT_EQ(report["levels"][0]["rate"], 300.0);
  const int64_t calls = TotalCalls(report, "OK");
  // ~0.7 s at 300/s: Poisson, so only roughly 210.
  EXPECT_GT(calls, 100);
  EXPECT_LT(calls, 400);
  EXPECT_EQ(Requests("Classify", "OK"), calls);
  EXPECT_EQ(Predictions(), calls);
}

TEST_F(ClientLoadgenTest, LoadgenStreamCountsMatch) {
  StartServer();
  const json report =
      Loadgen({"--target", target_, "--mode", "stream", "--concurrency", "3",
               "--sample-rate-hz", "400", "--chunk", "8", "--warmup-s", "0.2",
               "--duration-s", "0.5"},
              dir_);
  const json& level = report["levels"][0];
  EXPECT_EQ(level["concurrency"], 3);
  EXPECT_EQ(TotalCalls(report, "OK"), 3);
  const int64_t windows = report["total"]["windows"].get<int64_t>();
  // 3 streams x 0.7 s x 400 Hz / hop 8: about 105 windows.
  EXPECT_GT(windows, 50);
  EXPECT_GT(level["windows"].get<int64_t>(), 0);
  ASSERT_TRUE(WaitFor([&] { return Requests("StreamClassify", "OK") == 3; }));
  EXPECT_EQ(Metric("harmamba_stream_windows_sent_total", {{"model", "fake"}}),
            windows);
  EXPECT_EQ(Metric("harmamba_stream_samples_total", {{"model", "fake"}}),
            level["total"]["samples_sent"].get<int64_t>());
  EXPECT_EQ(Predictions(), windows);
}

TEST_F(ClientLoadgenTest, LoadgenRefusesBadFlags) {
  CommandRun run = Harmamba({"loadgen", "--mode", "stream", "--rate", "10"});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("--rate"));
  run = Harmamba({"loadgen", "--concurrency", "1,x"});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("--concurrency"));
  run = Harmamba({"loadgen", "--duration-s", "0"});
  EXPECT_EQ(run.exit_code, 2);
}

}  // namespace
}  // namespace harmamba
