// The gRPC server on loopback with real gRPC clients. Models are FakeBackends
// injected through the library API, so these tests do not depend on the model
// implementation (tests/integration/server_model_test.cc uses real models).
#include "server/server.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/message.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/byte_buffer.h"
#include "gtest/gtest.h"
#include "harmamba/v1/harmamba.grpc.pb.h"
#include "tests/testing/fake_backend.h"
#include "tests/testing/recording_metrics.h"

namespace harmamba {
namespace {

using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using ::harmamba::testing::FakeBackend;
using ::harmamba::testing::FakeConfig;
using ::harmamba::testing::FakeLogits;
using ::harmamba::testing::FingerprintId;
using ::harmamba::testing::RandomWindows;
using ::harmamba::testing::RecordingMetrics;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

using Windows = std::vector<std::vector<float>>;

// Waits (polling) until `done()` or 20 s; integration tests only.
template <typename F>
bool WaitFor(F done) {
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

// Blocks FakeBackend runs while closed.
class Gate {
 public:
  absl::Status Pass() {
    absl::MutexLock lock(&mu_);
    ++waiting_;
    mu_.Await(absl::Condition(&open_));
    --waiting_;
    return absl::OkStatus();
  }
  void Open() {
    absl::MutexLock lock(&mu_);
    open_ = true;
  }
  void Close() {
    absl::MutexLock lock(&mu_);
    open_ = false;
  }
  void WaitUntilBlocked() {
    absl::MutexLock lock(&mu_);
    auto blocked = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return waiting_ > 0;
    };
    mu_.Await(absl::Condition(&blocked));
  }

 private:
  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = true;
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;
};

v1::Window ToWindow(const std::vector<float>& samples) {
  v1::Window window;
  window.mutable_samples()->Add(samples.begin(), samples.end());
  return window;
}

// Checks `c` against an independent computation of the expected answer.
void ExpectClassification(const v1::Classification& c,
                          const ModelConfig& config,
                          const std::vector<float>& window) {
  const std::vector<float> logits = FakeLogits(config, window);
  const int argmax = static_cast<int>(
      std::max_element(logits.begin(), logits.end()) - logits.begin());
  double denom = 0;
  for (float x : logits)
    denom += std::exp(static_cast<double>(x - logits[argmax]));
  EXPECT_EQ(c.class_index(), argmax);
  EXPECT_EQ(c.label(), config.classes[argmax]);
  ASSERT_EQ(c.probabilities_size(), config.num_classes());
  for (int k = 0; k < config.num_classes(); ++k) {
    EXPECT_NEAR(
        c.probabilities(k),
        std::exp(static_cast<double>(logits[k] - logits[argmax])) / denom,
        1e-6);
  }
  EXPECT_EQ(c.model(), config.name);
  EXPECT_EQ(c.model_version(), config.version);
}

class ServerTest : public ::testing::Test {
 protected:
  ServerTest()
      : alpha_config_(FakeConfig("alpha", 16, 3, 4)),
        beta_config_(FakeConfig("beta", 20, 2, 3)) {}

  static ServerOptions Options() {
    ServerOptions options;
    options.address = "127.0.0.1:0";
    options.batcher.max_batch_size = 16;
    options.batcher.max_queue_delay = absl::Milliseconds(1);
    return options;
  }

  void StartServer(ServerOptions options = Options()) {
    auto alpha = std::make_unique<FakeBackend>(alpha_config_);
    auto beta = std::make_unique<FakeBackend>(beta_config_);
    alpha_ = alpha.get();
    beta_ = beta.get();
    alpha_->set_hook([this](int64_t) { return gate_.Pass(); });
    std::vector<std::unique_ptr<ModelBackend>> backends;
    backends.push_back(std::move(beta));
    backends.push_back(std::move(alpha));
    auto registry = ModelRegistry::FromBackends(std::move(backends), "alpha");
    ASSERT_TRUE(registry.ok()) << registry.status();
    auto server = HarmambaServer::Start(std::move(*registry), options, nullptr,
                                        &metrics_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_GT(server_->port(), 0);
    channel_ = NewChannel();
    stub_ = v1::ActivityClassifier::NewStub(channel_);
  }

  std::shared_ptr<grpc::Channel> NewChannel() {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    args.SetMaxSendMessageSize(-1);
    // Each channel its own connection, as separate clients would have.
    args.SetInt("grpc.channel_id", next_channel_id_++);
    return grpc::CreateCustomChannel(
        absl::StrCat("127.0.0.1:", server_->port()),
        grpc::InsecureChannelCredentials(), args);
  }

  grpc::Status Classify(const std::vector<float>& window,
                        v1::ClassifyResponse* response,
                        const std::string& model = "",
                        absl::Duration timeout = absl::Seconds(30)) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    v1::ClassifyRequest request;
    request.set_model(model);
    *request.mutable_window() = ToWindow(window);
    return stub_->Classify(&context, request, response);
  }

  struct StreamOutcome {
    std::vector<v1::StreamClassifyResponse> responses;
    grpc::Status status;
  };
  // Writes `chunks` (after an optional config) and half-closes, while
  // another thread reads every response.
  StreamOutcome Stream(const std::vector<std::vector<float>>& chunks,
                       const v1::StreamConfig* config = nullptr,
                       v1::ActivityClassifier::Stub* stub = nullptr) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    auto stream = (stub ? stub : stub_.get())->StreamClassify(&context);
    StreamOutcome outcome;
    std::thread reader([&] {
      v1::StreamClassifyResponse response;
      while (stream->Read(&response)) outcome.responses.push_back(response);
    });
    if (config != nullptr) {
      v1::StreamClassifyRequest request;
      *request.mutable_config() = *config;
      stream->Write(request);
    }
    for (const auto& chunk : chunks) {
      v1::StreamClassifyRequest request;
      request.mutable_chunk()->mutable_samples()->Add(chunk.begin(),
                                                      chunk.end());
      if (!stream->Write(request)) break;
    }
    stream->WritesDone();
    reader.join();
    outcome.status = stream->Finish();
    return outcome;
  }

  // Splits `stream` (whole samples of `channels`) into chunks of `samples`.
  static std::vector<std::vector<float>> Chunks(
      const std::vector<float>& stream, int channels, int samples) {
    std::vector<std::vector<float>> chunks;
    const size_t step = static_cast<size_t>(samples) * channels;
    for (size_t i = 0; i < stream.size(); i += step) {
      chunks.emplace_back(stream.begin() + i,
                          stream.begin() + std::min(stream.size(), i + step));
    }
    return chunks;
  }

  static std::vector<float> RandomStream(int samples, int channels,
                                         uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> stream(static_cast<size_t>(samples) * channels);
    for (float& x : stream) x = normal(rng);
    return stream;
  }

  // Checks a finished stream's results against windows cut from `stream`.
  static void ExpectStreamResults(const StreamOutcome& outcome,
                                  const ModelConfig& config,
                                  const std::vector<float>& stream, int hop,
                                  int64_t expected_windows,
                                  bool expect_summary) {
    const int c = config.num_channels();
    const int64_t samples = static_cast<int64_t>(stream.size()) / c;
    ASSERT_EQ(static_cast<int64_t>(outcome.responses.size()),
              expected_windows + (expect_summary ? 1 : 0));
    for (int64_t i = 0; i < expected_windows; ++i) {
      const v1::StreamClassifyResponse& r = outcome.responses[i];
      ASSERT_TRUE(r.has_window()) << i;
      EXPECT_EQ(r.window().window_index(), i);
      EXPECT_EQ(r.window().start_sample(), i * hop);
      EXPECT_EQ(r.window().end_sample(), i * hop + config.window_length);
      const std::vector<float> window(
          stream.begin() + r.window().start_sample() * c,
          stream.begin() + r.window().end_sample() * c);
      ExpectClassification(r.window().result(), config, window);
    }
    if (expect_summary) {
      const v1::StreamClassifyResponse& last = outcome.responses.back();
      ASSERT_TRUE(last.has_summary());
      EXPECT_EQ(last.summary().samples_received(), samples);
      EXPECT_EQ(last.summary().windows_classified(), expected_windows);
      const int64_t end = expected_windows == 0 ? 0
                                                : (expected_windows - 1) * hop +
                                                      config.window_length;
      EXPECT_EQ(last.summary().leftover_samples(), samples - end);
    }
  }

  bool AlphaRan(int id) {
    for (float f : alpha_->fingerprints()) {
      if (FingerprintId(f) == id) return true;
    }
    return false;
  }

  ModelConfig alpha_config_;
  ModelConfig beta_config_;
  Gate gate_;
  RecordingMetrics metrics_;
  FakeBackend* alpha_ = nullptr;
  FakeBackend* beta_ = nullptr;
  std::unique_ptr<HarmambaServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ActivityClassifier::Stub> stub_;
  int next_channel_id_ = 0;
};

TEST_F(ServerTest, ClassifyAnswersWithLabelProbabilitiesAndModel) {
  StartServer();
  const Windows windows = RandomWindows(alpha_config_, 5, 11);
  for (const auto& w : windows) {
    v1::ClassifyResponse response;
    const grpc::Status status = Classify(w, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ExpectClassification(response.result(), alpha_config_, w);
  }
  const Windows beta_windows = RandomWindows(beta_config_, 2, 12);
  v1::ClassifyResponse response;
  ASSERT_TRUE(Classify(beta_windows[0], &response, "beta").ok());
  ExpectClassification(response.result(), beta_config_, beta_windows[0]);
}

TEST_F(ServerTest, ClassifyRefusesMalformedInputNamingTheField) {
  StartServer();
  std::vector<float> window = RandomWindows(alpha_config_, 1, 13)[0];
  v1::ClassifyResponse response;

  std::vector<float> short_window(window.begin(), window.end() - 3);
  grpc::Status s = Classify(short_window, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(),
              HasSubstr("window.samples: expected 48 floats"));

  s = Classify({}, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  std::vector<float> nan_window = window;
  nan_window[7] = std::nanf("");
  s = Classify(nan_window, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("window.samples[7]"));

  grpc::ClientContext context;
  v1::ClassifyRequest request;
  *request.mutable_window() = ToWindow(window);
  request.mutable_window()->set_num_channels(9);
  s = stub_->Classify(&context, request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("num_channels: expected 3"));

  s = Classify(window, &response, "no-such-model");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("alpha, beta"));
  EXPECT_EQ(alpha_->windows_run(), 0);
}

TEST_F(ServerTest, ClassifyBatchAnswersEveryWindowInOrder) {
  StartServer();
  const Windows windows = RandomWindows(alpha_config_, 300, 14);
  v1::ClassifyBatchRequest request;
  for (const auto& w : windows) *request.add_windows() = ToWindow(w);
  request.mutable_windows(5)->mutable_samples()->RemoveLast();
  request.mutable_windows(77)->set_samples(3, INFINITY);
  grpc::ClientContext context;
  v1::ClassifyBatchResponse response;
  const grpc::Status status =
      stub_->ClassifyBatch(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.outcomes_size(), 300);
  for (int i = 0; i < 300; ++i) {
    const v1::WindowOutcome& outcome = response.outcomes(i);
    if (i == 5 || i == 77) {
      ASSERT_TRUE(outcome.has_error()) << i;
      EXPECT_EQ(outcome.error().code(),
                static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
      EXPECT_THAT(outcome.error().message(),
                  HasSubstr(absl::StrCat("windows[", i, "]")));
    } else {
      ASSERT_TRUE(outcome.has_result()) << i;
      ExpectClassification(outcome.result(), alpha_config_, windows[i]);
    }
  }
  // Split across executions of at most max_batch_size windows.
  EXPECT_EQ(alpha_->windows_run(), 298);
  for (int64_t n : alpha_->batch_sizes()) EXPECT_LE(n, 16);

  grpc::ClientContext empty_context;
  v1::ClassifyBatchRequest empty;
  EXPECT_EQ(stub_->ClassifyBatch(&empty_context, empty, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ServerTest, MessageOverTheSizeLimitIsRefusedByGrpc) {
  ServerOptions options = Options();
  options.max_message_bytes = 64 << 10;
  StartServer(options);
  const Windows windows = RandomWindows(alpha_config_, 400, 15);  // ~77 KB
  v1::ClassifyBatchRequest request;
  for (const auto& w : windows) *request.add_windows() = ToWindow(w);
  grpc::ClientContext context;
  v1::ClassifyBatchResponse response;
  EXPECT_EQ(stub_->ClassifyBatch(&context, request, &response).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(alpha_->windows_run(), 0);
}

TEST(ServerStartTest, DefaultMessageLimitHolds4096UciWindows) {
  const ModelConfig uci = FakeConfig("uci", 128, 9, 6);
  std::vector<std::unique_ptr<ModelBackend>> backends;
  backends.push_back(std::make_unique<FakeBackend>(uci));
  auto registry = ModelRegistry::FromBackends(std::move(backends), "");
  ASSERT_TRUE(registry.ok());
  ServerOptions options;  // default max_message_bytes and queue capacity
  options.address = "127.0.0.1:0";
  auto server = HarmambaServer::Start(std::move(*registry), options);
  ASSERT_TRUE(server.ok()) << server.status();
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  auto stub = v1::ActivityClassifier::NewStub(
      grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", (*server)->port()),
                                grpc::InsecureChannelCredentials(), args));
  const Windows windows = RandomWindows(uci, 4096, 30);
  v1::ClassifyBatchRequest request;
  for (const auto& w : windows) *request.add_windows() = ToWindow(w);
  ASSERT_GT(request.ByteSizeLong(), 18u << 20);
  grpc::ClientContext context;
  v1::ClassifyBatchResponse response;
  const grpc::Status status = stub->ClassifyBatch(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.outcomes_size(), 4096);
  for (int i : {0, 1234, 4095}) {
    ExpectClassification(response.outcomes(i).result(), uci, windows[i]);
  }
}

TEST(ServerStartTest, PortInUseIsAnError) {
  std::vector<std::unique_ptr<ModelBackend>> backends;
  backends.push_back(std::make_unique<FakeBackend>(FakeConfig("a")));
  auto first = HarmambaServer::Start(
      *ModelRegistry::FromBackends(std::move(backends), ""), [] {
        ServerOptions o;
        o.address = "127.0.0.1:0";
        return o;
      }());
  ASSERT_TRUE(first.ok()) << first.status();
  std::vector<std::unique_ptr<ModelBackend>> more;
  more.push_back(std::make_unique<FakeBackend>(FakeConfig("b")));
  ServerOptions options;
  options.address = absl::StrCat("127.0.0.1:", (*first)->port());
  auto second = HarmambaServer::Start(
      *ModelRegistry::FromBackends(std::move(more), ""), options);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(second.status().message()),
              HasSubstr("cannot listen"));
}

TEST_F(ServerTest, StreamResultsArriveInOrderWhateverTheChunkSize) {
  StartServer();
  const std::vector<float> stream = RandomStream(203, 3, 16);
  // Default hop: half of 16; windows at 0, 8, ..., 184 (ends at 200).
  for (int chunk : {1, 5, 16, 100, 203}) {
    SCOPED_TRACE(absl::StrCat("chunk=", chunk));
    const StreamOutcome outcome = Stream(Chunks(stream, 3, chunk));
    ASSERT_TRUE(outcome.status.ok()) << outcome.status.error_message();
    ExpectStreamResults(outcome, alpha_config_, stream, 8, 24, true);
  }
}

TEST_F(ServerTest, StreamConfigSelectsModelAndHop) {
  StartServer();
  const std::vector<float> stream = RandomStream(101, 2, 17);
  v1::StreamConfig config;
  config.set_model("beta");
  config.set_hop(7);
  const StreamOutcome outcome = Stream(Chunks(stream, 2, 9), &config);
  ASSERT_TRUE(outcome.status.ok()) << outcome.status.error_message();
  ExpectStreamResults(outcome, beta_config_, stream, 7, (101 - 20) / 7 + 1,
                      true);
}

TEST_F(ServerTest, StreamEndsWithInvalidArgumentAfterEarlierResults) {
  StartServer();
  const std::vector<float> stream = RandomStream(40, 3, 18);
  std::vector<std::vector<float>> chunks = Chunks(stream, 3, 40);
  std::vector<float> bad(30, 0.5f);
  bad[4] = NAN;
  chunks.push_back(bad);
  const StreamOutcome outcome = Stream(chunks);
  EXPECT_EQ(outcome.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(outcome.status.error_message(), HasSubstr("chunk.samples[4]"));
  // Windows at 0, 8, 16, 24 were complete before the bad chunk.
  ExpectStreamResults(outcome, alpha_config_, stream, 8, 4, false);

  std::vector<std::vector<float>> partial = Chunks(stream, 3, 40);
  partial.push_back(std::vector<float>(7, 0.5f));  // not whole samples
  const StreamOutcome partial_outcome = Stream(partial);
  EXPECT_EQ(partial_outcome.status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(partial_outcome.status.error_message(),
              HasSubstr("multiple of 3"));
  ExpectStreamResults(partial_outcome, alpha_config_, stream, 8, 4, false);
}

TEST_F(ServerTest, StreamConfigErrors) {
  StartServer();
  v1::StreamConfig unknown;
  unknown.set_model("gamma");
  StreamOutcome outcome = Stream({}, &unknown);
  EXPECT_EQ(outcome.status.error_code(), grpc::StatusCode::NOT_FOUND);

  v1::StreamConfig negative;
  negative.set_hop(-2);
  outcome = Stream({}, &negative);
  EXPECT_EQ(outcome.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(outcome.status.error_message(), HasSubstr("config.hop"));

  // A config after samples.
  grpc::ClientContext context;
  auto stream = stub_->StreamClassify(&context);
  v1::StreamClassifyRequest request;
  for (int i = 0; i < 6; ++i) request.mutable_chunk()->add_samples(0.5f);
  ASSERT_TRUE(stream->Write(request));
  request.mutable_config()->set_hop(3);
  stream->Write(request);
  stream->WritesDone();
  v1::StreamClassifyResponse response;
  while (stream->Read(&response)) {
  }
  const grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("first message"));

  // An empty stream still gets its summary.
  outcome = Stream({});
  ASSERT_TRUE(outcome.status.ok());
  ASSERT_EQ(outcome.responses.size(), 1u);
  EXPECT_EQ(outcome.responses[0].summary().samples_received(), 0);
}

TEST_F(ServerTest, FullStreamBacklogAppliesBackpressure) {
  ServerOptions options = Options();
  options.service.stream_backlog = 3;
  StartServer(options);
  gate_.Close();
  const std::vector<float> stream =
      RandomStream(16 + 8 * 29, 3, 19);  // 30 windows
  StreamOutcome outcome;
  std::thread client([&] { outcome = Stream(Chunks(stream, 3, 1000)); });
  gate_.WaitUntilBlocked();
  ASSERT_TRUE(WaitFor([&] { return metrics_.backpressure() > 0; }));
  // At most the backlog has been handed to the batcher.
  EXPECT_LE(metrics_.admitted(), 3);
  gate_.Open();
  client.join();
  ASSERT_TRUE(outcome.status.ok()) << outcome.status.error_message();
  ExpectStreamResults(outcome, alpha_config_, stream, 8, 30, true);
}

TEST_F(ServerTest, ListModelsAndGetModelInfo) {
  ServerOptions options = Options();
  options.service.default_stream_hop = 5;
  StartServer(options);
  grpc::ClientContext context;
  v1::ListModelsResponse list;
  ASSERT_TRUE(stub_->ListModels(&context, {}, &list).ok());
  EXPECT_EQ(list.default_model(), "alpha");
  ASSERT_EQ(list.models_size(), 2);
  const v1::ModelInfo& alpha = list.models(0);
  EXPECT_EQ(alpha.name(), "alpha");
  EXPECT_EQ(alpha.version(), "7");
  EXPECT_EQ(alpha.window_length(), 16);
  EXPECT_THAT(alpha.channels(), ::testing::ElementsAre("ch0", "ch1", "ch2"));
  EXPECT_EQ(alpha.classes_size(), 4);
  EXPECT_EQ(alpha.sample_rate_hz(), 50.0);
  EXPECT_TRUE(alpha.is_default());
  EXPECT_EQ(alpha.default_stream_hop(), 5);
  EXPECT_EQ(alpha.backend(), "fake backend");
  EXPECT_EQ(list.models(1).name(), "beta");
  EXPECT_FALSE(list.models(1).is_default());

  grpc::ClientContext info_context;
  v1::GetModelInfoRequest request;
  request.set_model("beta");
  v1::ModelInfo info;
  ASSERT_TRUE(stub_->GetModelInfo(&info_context, request, &info).ok());
  EXPECT_EQ(info.window_length(), 20);
  EXPECT_EQ(info.channels_size(), 2);

  grpc::ClientContext missing_context;
  request.set_model("gamma");
  EXPECT_EQ(stub_->GetModelInfo(&missing_context, request, &info).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServerTest, DeadlineExceededWhileQueuedNeverReachesTheModel) {
  StartServer();
  const Windows windows = RandomWindows(alpha_config_, 2, 20);
  gate_.Close();
  v1::ClassifyResponse first_response;
  grpc::Status first_status;
  std::thread first(
      [&] { first_status = Classify(windows[0], &first_response); });
  gate_.WaitUntilBlocked();
  v1::ClassifyResponse response;
  const grpc::Status late =
      Classify(windows[1], &response, "", absl::Milliseconds(200));
  EXPECT_EQ(late.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  // The server's deadline for the call is the client's plus the transit
  // time: open the gate only once it has surely passed there too.
  absl::SleepFor(absl::Milliseconds(50));
  gate_.Open();
  first.join();
  ASSERT_TRUE(first_status.ok());
  ASSERT_TRUE(WaitFor([&] {
    return metrics_.dropped(absl::StatusCode::kDeadlineExceeded) == 1;
  }));
  EXPECT_FALSE(AlphaRan(1));
}

TEST_F(ServerTest, CancelledCallIsDroppedBeforeTheModel) {
  StartServer();
  const Windows windows = RandomWindows(alpha_config_, 2, 21);
  gate_.Close();
  v1::ClassifyResponse first_response;
  grpc::Status first_status;
  std::thread first(
      [&] { first_status = Classify(windows[0], &first_response); });
  gate_.WaitUntilBlocked();

  grpc::ClientContext context;
  v1::ClassifyRequest request;
  *request.mutable_window() = ToWindow(windows[1]);
  v1::ClassifyResponse response;
  grpc::Status cancelled_status;
  std::thread second([&] {
    cancelled_status = stub_->Classify(&context, request, &response);
  });
  ASSERT_TRUE(WaitFor([&] { return metrics_.admitted() == 2; }));
  context.TryCancel();
  second.join();
  EXPECT_EQ(cancelled_status.error_code(), grpc::StatusCode::CANCELLED);
  // The client returns at once; give the cancellation time to reach the
  // server before the executor looks at the queue again.
  absl::SleepFor(absl::Milliseconds(50));
  gate_.Open();
  first.join();
  ASSERT_TRUE(first_status.ok());
  ASSERT_TRUE(WaitFor(
      [&] { return metrics_.dropped(absl::StatusCode::kCancelled) == 1; }));
  EXPECT_FALSE(AlphaRan(1));
}

TEST_F(ServerTest, FullQueueIsResourceExhausted) {
  ServerOptions options = Options();
  options.batcher.queue_capacity = 2;
  options.batcher.max_batch_size = 1;
  StartServer(options);
  const Windows windows = RandomWindows(alpha_config_, 4, 22);
  gate_.Close();
  std::vector<grpc::Status> statuses(3);
  std::vector<v1::ClassifyResponse> responses(3);
  std::vector<std::thread> threads;
  threads.emplace_back(
      [&] { statuses[0] = Classify(windows[0], &responses[0]); });
  gate_.WaitUntilBlocked();  // window 0 runs; 1 and 2 fill the queue
  for (int i = 1; i < 3; ++i) {
    threads.emplace_back(
        [&, i] { statuses[i] = Classify(windows[i], &responses[i]); });
  }
  ASSERT_TRUE(WaitFor([&] { return metrics_.admitted() == 3; }));
  v1::ClassifyResponse response;
  const grpc::Status refused = Classify(windows[3], &response);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("full"));
  gate_.Open();
  for (auto& t : threads) t.join();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(statuses[i].ok()) << statuses[i].error_message();
    ExpectClassification(responses[i].result(), alpha_config_, windows[i]);
  }
  EXPECT_FALSE(AlphaRan(3));
}

TEST_F(ServerTest, ManyConcurrentClientsMixingAllRpcsGetCorrectAnswers) {
  StartServer();
  constexpr int kClients = 8;
  std::vector<std::thread> clients;
  std::atomic<int> failures{0};
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      auto channel = NewChannel();
      auto stub = v1::ActivityClassifier::NewStub(channel);
      std::mt19937 rng(100 + c);
      for (int round = 0; round < 6; ++round) {
        const int kind = (c + round) % 4;
        if (kind == 0) {
          const Windows w = RandomWindows(alpha_config_, 1, rng());
          grpc::ClientContext context;
          v1::ClassifyRequest request;
          *request.mutable_window() = ToWindow(w[0]);
          v1::ClassifyResponse response;
          if (!stub->Classify(&context, request, &response).ok()) {
            ++failures;
            continue;
          }
          ExpectClassification(response.result(), alpha_config_, w[0]);
        } else if (kind == 1) {
          const int n = 1 + rng() % 60;
          const Windows w = RandomWindows(beta_config_, n, rng());
          grpc::ClientContext context;
          v1::ClassifyBatchRequest request;
          request.set_model("beta");
          for (const auto& x : w) *request.add_windows() = ToWindow(x);
          v1::ClassifyBatchResponse response;
          if (!stub->ClassifyBatch(&context, request, &response).ok() ||
              response.outcomes_size() != n) {
            ++failures;
            continue;
          }
          for (int i = 0; i < n; ++i) {
            ExpectClassification(response.outcomes(i).result(), beta_config_,
                                 w[i]);
          }
        } else if (kind == 2) {
          const int samples = 16 + static_cast<int>(rng() % 200);
          const std::vector<float> stream = RandomStream(samples, 3, rng());
          const int chunk = 1 + static_cast<int>(rng() % 40);
          const StreamOutcome outcome =
              Stream(Chunks(stream, 3, chunk), nullptr, stub.get());
          if (!outcome.status.ok()) {
            ++failures;
            continue;
          }
          ExpectStreamResults(outcome, alpha_config_, stream, 8,
                              (samples - 16) / 8 + 1, true);
        } else {
          grpc::ClientContext context;
          v1::ListModelsResponse list;
          if (!stub->ListModels(&context, {}, &list).ok() ||
              list.models_size() != 2) {
            ++failures;
          }
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST_F(ServerTest, NewWorkIsRefusedWhileAcceptedWorkDrains) {
  StartServer();
  const Windows windows = RandomWindows(alpha_config_, 100, 23);
  gate_.Close();
  v1::ClassifyResponse accepted_response;
  grpc::Status accepted_status;
  std::thread accepted(
      [&] { accepted_status = Classify(windows[0], &accepted_response); });
  gate_.WaitUntilBlocked();
  std::thread shutdown([&] { server_->Shutdown(absl::Seconds(30)); });
  // Health flips first.
  auto health = Health::NewStub(channel_);
  ASSERT_TRUE(WaitFor([&] {
    grpc::ClientContext context;
    HealthCheckRequest request;
    HealthCheckResponse response;
    return health->Check(&context, request, &response).ok() &&
           response.status() == HealthCheckResponse::NOT_SERVING;
  }));
  // Then new calls are refused. A probe that raced ahead of the refusal is
  // queued behind the closed gate and runs out of time instead.
  int refused_id = -1;
  grpc::Status refused;
  for (int i = 1; i < 100 && refused_id < 0; ++i) {
    v1::ClassifyResponse response;
    refused = Classify(windows[i], &response, "", absl::Milliseconds(100));
    if (refused.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
      refused_id = i;
    }
  }
  ASSERT_GT(refused_id, 0);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(refused.error_message(), HasSubstr("shutting down"));
  gate_.Open();
  accepted.join();
  shutdown.join();
  ASSERT_TRUE(accepted_status.ok()) << accepted_status.error_message();
  ExpectClassification(accepted_response.result(), alpha_config_, windows[0]);
  EXPECT_FALSE(AlphaRan(refused_id));
}

TEST_F(ServerTest, ShutdownUnderLoadLosesNoAcceptedRequest) {
  StartServer();
  // Slow the model down so that work queues up.
  alpha_->set_hook([](int64_t n) {
    absl::SleepFor(absl::Microseconds(200) * n);
    return absl::OkStatus();
  });
  constexpr int kClients = 6;
  std::atomic<int64_t> ok_windows{0}, refused_calls{0}, completed_calls{0},
      cancelled_calls{0};
  std::atomic<int> bad{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      auto stub = v1::ActivityClassifier::NewStub(NewChannel());
      std::mt19937 rng(200 + c);
      for (;;) {
        const bool batch = (rng() % 3) == 0;
        const int n = batch ? 1 + static_cast<int>(rng() % 30) : 1;
        const Windows w = RandomWindows(alpha_config_, n, rng());
        grpc::ClientContext context;
        context.set_deadline(
            absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
        grpc::Status status;
        if (batch) {
          v1::ClassifyBatchRequest request;
          for (const auto& x : w) *request.add_windows() = ToWindow(x);
          v1::ClassifyBatchResponse response;
          status = stub->ClassifyBatch(&context, request, &response);
          if (status.ok()) {
            for (int i = 0; i < n; ++i) {
              if (!response.outcomes(i).has_result()) {
                ++bad;
                ADD_FAILURE() << "window without result: "
                              << response.outcomes(i).error().message();
                continue;
              }
              ExpectClassification(response.outcomes(i).result(), alpha_config_,
                                   w[i]);
            }
          }
        } else {
          v1::ClassifyRequest request;
          *request.mutable_window() = ToWindow(w[0]);
          v1::ClassifyResponse response;
          status = stub->Classify(&context, request, &response);
          if (status.ok()) {
            ExpectClassification(response.result(), alpha_config_, w[0]);
          }
        }
        if (status.ok()) {
          ok_windows += n;
          ++completed_calls;
        } else if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
          // Refused by the handler while draining, or by a closed port.
          ++refused_calls;
          return;
        } else if (status.error_code() == grpc::StatusCode::CANCELLED) {
          // gRPC cancels calls still in transit when it stops; checked
          // below against what the server handled.
          ++cancelled_calls;
          return;
        } else {
          ++bad;
          ADD_FAILURE() << "lost request: " << status.error_code() << " "
                        << status.error_message();
          return;
        }
      }
    });
  }
  ASSERT_TRUE(WaitFor([&] { return completed_calls.load() >= 200; }));
  server_->Shutdown(absl::Seconds(30));
  for (auto& t : clients) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(refused_calls.load() + cancelled_calls.load(), kClients);
  // The server's handlers saw exactly the calls answered OK or UNAVAILABLE:
  // every call that ended CANCELLED never reached them, i.e. was never
  // accepted.
  int64_t handled_ok = 0, handled_refused = 0, handled_other = 0;
  for (const auto& rpc : metrics_.rpcs()) {
    if (rpc.code == absl::StatusCode::kOk) {
      ++handled_ok;
    } else if (rpc.code == absl::StatusCode::kUnavailable) {
      ++handled_refused;
    } else {
      ++handled_other;
    }
  }
  // Accepted calls are those the handlers answered OK (nothing else was
  // answered but refusals), and each reached its client as OK.
  EXPECT_EQ(handled_other, 0);
  EXPECT_EQ(handled_ok, completed_calls.load());
  EXPECT_LE(handled_refused, refused_calls.load());
  // Every window the model ran was answered, exactly once.
  EXPECT_EQ(alpha_->windows_run(), ok_windows.load());
}

TEST_F(ServerTest, ShutdownEndsOpenStreamsAfterTheirResults) {
  StartServer();
  gate_.Close();
  // Stream A: 40 samples = windows at 0, 8, 16, 24; the client keeps the
  // stream open.
  const std::vector<float> a_samples = RandomStream(40, 3, 31);
  grpc::ClientContext a_context;
  auto a = stub_->StreamClassify(&a_context);
  std::vector<v1::StreamClassifyResponse> a_responses;
  std::thread a_reader([&] {
    v1::StreamClassifyResponse r;
    while (a->Read(&r)) a_responses.push_back(r);
  });
  v1::StreamClassifyRequest request;
  request.mutable_chunk()->mutable_samples()->Add(a_samples.begin(),
                                                  a_samples.end());
  ASSERT_TRUE(a->Write(request));
  // Stream B: 10 windows, then the client half-closes.
  const std::vector<float> b_samples = RandomStream(16 + 8 * 9, 3, 32);
  StreamOutcome b_outcome;
  std::thread b_client([&] { b_outcome = Stream(Chunks(b_samples, 3, 1000)); });
  ASSERT_TRUE(WaitFor([&] { return metrics_.admitted() == 14; }));
  // Let the server read B's half-close.
  absl::SleepFor(absl::Milliseconds(50));

  std::thread shutdown([&] { server_->Shutdown(absl::Seconds(30)); });
  auto health = Health::NewStub(channel_);
  ASSERT_TRUE(WaitFor([&] {
    grpc::ClientContext context;
    HealthCheckResponse response;
    return health->Check(&context, {}, &response).ok() &&
           response.status() == HealthCheckResponse::NOT_SERVING;
  }));
  gate_.Open();
  a_reader.join();
  const grpc::Status a_status = a->Finish();
  b_client.join();
  shutdown.join();

  // A: the results of its 4 windows, then UNAVAILABLE.
  EXPECT_EQ(a_status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(a_status.error_message(), HasSubstr("shutting down"));
  StreamOutcome a_outcome{a_responses, a_status};
  ExpectStreamResults(a_outcome, alpha_config_, a_samples, 8, 4, false);
  // B: everything, then its summary.
  ASSERT_TRUE(b_outcome.status.ok()) << b_outcome.status.error_message();
  ExpectStreamResults(b_outcome, alpha_config_, b_samples, 8, 10, true);
}

TEST_F(ServerTest, ClientsThatKeepCallingDoNotHoldUpShutdown) {
  StartServer();
  std::atomic<bool> stop{false};
  std::atomic<int64_t> ok{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&, c] {
      auto stub = v1::ActivityClassifier::NewStub(NewChannel());
      const Windows w = RandomWindows(alpha_config_, 1, 40 + c);
      while (!stop.load()) {
        grpc::ClientContext context;
        context.set_deadline(
            absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
        v1::ClassifyRequest request;
        *request.mutable_window() = ToWindow(w[0]);
        v1::ClassifyResponse response;
        if (stub->Classify(&context, request, &response).ok()) ++ok;
      }
    });
  }
  ASSERT_TRUE(WaitFor([&] { return ok.load() >= 100; }));
  const absl::Time start = absl::Now();
  server_->Shutdown(absl::Seconds(20));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  stop.store(true);
  for (auto& t : clients) t.join();
}

TEST_F(ServerTest, HealthCheckAndWatchSeeTheShutdownFlip) {
  StartServer();
  auto health = Health::NewStub(channel_);
  auto check = [&](const std::string& service, HealthCheckResponse* r) {
    grpc::ClientContext context;
    HealthCheckRequest request;
    request.set_service(service);
    return health->Check(&context, request, r);
  };
  HealthCheckResponse response;
  ASSERT_TRUE(check("", &response).ok());
  EXPECT_EQ(response.status(), HealthCheckResponse::SERVING);
  ASSERT_TRUE(check(HarmambaServer::kServiceName, &response).ok());
  EXPECT_EQ(response.status(), HealthCheckResponse::SERVING);
  EXPECT_EQ(check("no.such.Service", &response).error_code(),
            grpc::StatusCode::NOT_FOUND);

  grpc::ClientContext watch_context;
  HealthCheckRequest watch_request;
  watch_request.set_service(HarmambaServer::kServiceName);
  auto watch = health->Watch(&watch_context, watch_request);
  ASSERT_TRUE(watch->Read(&response));
  EXPECT_EQ(response.status(), HealthCheckResponse::SERVING);
  std::thread shutdown([&] { server_->Shutdown(absl::Seconds(10)); });
  ASSERT_TRUE(watch->Read(&response));
  EXPECT_EQ(response.status(), HealthCheckResponse::NOT_SERVING);
  while (watch->Read(&response)) {
  }
  watch->Finish();
  shutdown.join();
}

// Server reflection, spoken with a generic stub and the reflection messages
// from the protobuf pool (grpc++_reflection registers them).
TEST_F(ServerTest, ReflectionListsAndDescribesTheService) {
  StartServer();
  namespace pb = ::google::protobuf;
  const pb::Descriptor* request_type =
      pb::DescriptorPool::generated_pool()->FindMessageTypeByName(
          "grpc.reflection.v1alpha.ServerReflectionRequest");
  const pb::Descriptor* response_type =
      pb::DescriptorPool::generated_pool()->FindMessageTypeByName(
          "grpc.reflection.v1alpha.ServerReflectionResponse");
  ASSERT_NE(request_type, nullptr);
  ASSERT_NE(response_type, nullptr);
  pb::MessageFactory* factory = pb::MessageFactory::generated_factory();

  auto ask = [&](const std::string& field, const std::string& value) {
    std::unique_ptr<pb::Message> request(
        factory->GetPrototype(request_type)->New());
    request->GetReflection()->SetString(
        request.get(), request_type->FindFieldByName(field), value);
    std::string bytes;
    request->SerializeToString(&bytes);

    grpc::GenericStub stub(channel_);
    grpc::CompletionQueue cq;
    grpc::ClientContext context;
    auto call = stub.PrepareCall(
        &context,
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
    void* tag;
    bool ok;
    call->StartCall(reinterpret_cast<void*>(1));
    EXPECT_TRUE(cq.Next(&tag, &ok) && ok);
    grpc::Slice slice(bytes);
    grpc::ByteBuffer buffer(&slice, 1);
    call->Write(buffer, reinterpret_cast<void*>(2));
    EXPECT_TRUE(cq.Next(&tag, &ok) && ok);
    grpc::ByteBuffer reply;
    call->Read(&reply, reinterpret_cast<void*>(3));
    EXPECT_TRUE(cq.Next(&tag, &ok) && ok);
    call->WritesDone(reinterpret_cast<void*>(4));
    EXPECT_TRUE(cq.Next(&tag, &ok));
    grpc::Status status;
    call->Finish(&status, reinterpret_cast<void*>(5));
    EXPECT_TRUE(cq.Next(&tag, &ok));
    EXPECT_TRUE(status.ok()) << status.error_message();
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
    std::vector<grpc::Slice> slices;
    EXPECT_TRUE(reply.Dump(&slices).ok());
    std::string reply_bytes;
    for (const auto& s : slices) {
      reply_bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
    std::unique_ptr<pb::Message> response(
        factory->GetPrototype(response_type)->New());
    EXPECT_TRUE(response->ParseFromString(reply_bytes));
    return response->DebugString();
  };

  const std::string services = ask("list_services", "");
  EXPECT_THAT(services, HasSubstr("harmamba.v1.ActivityClassifier"));
  EXPECT_THAT(services, HasSubstr("grpc.health.v1.Health"));
  const std::string file =
      ask("file_containing_symbol", "harmamba.v1.ActivityClassifier");
  EXPECT_THAT(file, HasSubstr("file_descriptor_response"));
  EXPECT_THAT(file, HasSubstr("harmamba/v1/harmamba.proto"));
}

}  // namespace
}  // namespace harmamba
