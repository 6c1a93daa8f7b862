// The server with real models: model files written by InitModel +
// SaveModelFile, served through LoadModelFile + CreateCpuEngine (the same
// wiring as harmamba-server), and the harmamba-server binary itself.
//
// Needs the model implementation (model/model_file.cc, model/cpu_engine.cc).
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "harmamba/v1/harmamba.grpc.pb.h"
#include "model/cpu_engine.h"
#include "model/model_file.h"
#include "server/model_registry.h"
#include "server/server.h"
#include "tests/unit/test_files.h"

extern char** environ;

namespace harmamba {
namespace {

namespace fs = std::filesystem;
using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using ::testing::HasSubstr;

constexpr double kProbabilityTolerance = 1e-5;

ModelConfig TestConfig() {
  ModelConfig config;
  config.name = "test-har";
  config.version = "3";
  config.window_length = 128;
  config.channels = {"body_acc_x",  "body_acc_y",  "body_acc_z",
                     "body_gyro_x", "body_gyro_y", "body_gyro_z",
                     "total_acc_x", "total_acc_y", "total_acc_z"};
  config.classes = {"WALKING", "UPSTAIRS", "DOWNSTAIRS",
                    "SITTING", "STANDING", "LAYING"};
  config.sample_rate_hz = 50.0;
  config.depth = 4;
  for (int c = 0; c < 9; ++c) {
    config.mean.push_back(0.1f * c);
    config.std.push_back(0.5f + 0.1f * c);
  }
  return config;
}

std::vector<float> RandomSamples(int samples, int channels, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> out(static_cast<size_t>(samples) * channels);
  for (float& x : out) x = normal(rng);
  return out;
}

std::vector<double> Softmax(const float* logits, int k) {
  const float max = *std::max_element(logits, logits + k);
  std::vector<double> p(k);
  double sum = 0;
  for (int i = 0; i < k; ++i) sum += p[i] = std::exp(double(logits[i]) - max);
  for (double& x : p) x /= sum;
  return p;
}

BackendFactory CpuEngineFactory() {
  return [](const std::string& path)
             -> absl::StatusOr<std::unique_ptr<ModelBackend>> {
    absl::StatusOr<ModelWeights> weights = LoadModelFile(path);
    if (!weights.ok()) return weights.status();
    CpuEngineOptions options;
    options.num_threads = 2;
    return CreateCpuEngine(*weights, options);
  };
}

class ServerModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           absl::StrCat(
               "server_model_",
               ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    config_ = TestConfig();
    weights_ = InitModel(config_, /*seed=*/42);
    ASSERT_TRUE(
        SaveModelFile(weights_, (dir_ / "test-har.safetensors").string()).ok());
    // A model that fails to load is reported and not served.
    std::ofstream(dir_ / "broken.safetensors") << "not a safetensors file";
    auto reference = CreateCpuEngine(weights_, CpuEngineOptions{});
    ASSERT_TRUE(reference.ok()) << reference.status();
    reference_ = std::move(*reference);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // What the model says about one window, run alone (batch 1).
  std::vector<float> ReferenceLogits(const float* window) {
    std::vector<float> logits(config_.num_classes());
    EXPECT_TRUE(reference_->Run(window, 1, logits.data()).ok());
    return logits;
  }

  void ExpectMatchesReference(const v1::Classification& c,
                              const float* window) {
    const std::vector<float> logits = ReferenceLogits(window);
    const std::vector<double> p = Softmax(logits.data(), logits.size());
    const int argmax =
        static_cast<int>(std::max_element(p.begin(), p.end()) - p.begin());
    EXPECT_EQ(c.class_index(), argmax);
    EXPECT_EQ(c.label(), config_.classes[argmax]);
    ASSERT_EQ(c.probabilities_size(), config_.num_classes());
    for (int k = 0; k < config_.num_classes(); ++k) {
      EXPECT_NEAR(c.probabilities(k), p[k], kProbabilityTolerance);
    }
    EXPECT_EQ(c.model(), "test-har");
    EXPECT_EQ(c.model_version(), "3");
  }

  void StartInProcessServer() {
    auto registry =
        ModelRegistry::LoadDirectory(dir_.string(), CpuEngineFactory(), "");
    ASSERT_TRUE(registry.ok()) << registry.status();
    ASSERT_EQ((*registry)->failures().size(), 1u);
    ServerOptions options;
    options.address = "127.0.0.1:0";
    auto server = HarmambaServer::Start(std::move(*registry), options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    stub_ = v1::ActivityClassifier::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                            grpc::InsecureChannelCredentials()));
  }

  fs::path dir_;
  ModelConfig config_;
  ModelWeights weights_;
  std::unique_ptr<ModelBackend> reference_;
  std::unique_ptr<HarmambaServer> server_;
  std::unique_ptr<v1::ActivityClassifier::Stub> stub_;
};

TEST_F(ServerModelTest, ClassifyAndClassifyBatchMatchTheModel) {
  StartInProcessServer();
  const std::vector<float> samples = RandomSamples(128 * 40, 9, 5);
  const size_t wf = config_.window_floats();
  for (int w = 0; w < 3; ++w) {
    grpc::ClientContext context;
    v1::ClassifyRequest request;
    request.mutable_window()->mutable_samples()->Add(
        samples.begin() + w * wf, samples.begin() + (w + 1) * wf);
    v1::ClassifyResponse response;
    ASSERT_TRUE(stub_->Classify(&context, request, &response).ok());
    ExpectMatchesReference(response.result(), samples.data() + w * wf);
  }
  grpc::ClientContext context;
  v1::ClassifyBatchRequest request;
  for (int w = 0; w < 40; ++w) {
    request.add_windows()->mutable_samples()->Add(
        samples.begin() + w * wf, samples.begin() + (w + 1) * wf);
  }
  v1::ClassifyBatchResponse response;
  ASSERT_TRUE(stub_->ClassifyBatch(&context, request, &response).ok());
  ASSERT_EQ(response.outcomes_size(), 40);
  for (int w = 0; w < 40; ++w) {
    ASSERT_TRUE(response.outcomes(w).has_result());
    ExpectMatchesReference(response.outcomes(w).result(),
                           samples.data() + w * wf);
  }
}

TEST_F(ServerModelTest, StreamResultsMatchTheModelWhateverTheChunkSize) {
  StartInProcessServer();
  constexpr int kSamples = 700;  // windows at 0, 64, ..., 512; 60 left over
  const std::vector<float> stream = RandomSamples(kSamples, 9, 6);
  for (int chunk : {1, 37, 128, 1000}) {
    SCOPED_TRACE(absl::StrCat("chunk=", chunk));
    grpc::ClientContext context;
    auto call = stub_->StreamClassify(&context);
    std::vector<v1::StreamClassifyResponse> responses;
    std::thread reader([&] {
      v1::StreamClassifyResponse r;
      while (call->Read(&r)) responses.push_back(r);
    });
    for (int s = 0; s < kSamples; s += chunk) {
      const int n = std::min(chunk, kSamples - s);
      v1::StreamClassifyRequest request;
      request.mutable_chunk()->mutable_samples()->Add(
          stream.begin() + s * 9, stream.begin() + (s + n) * 9);
      ASSERT_TRUE(call->Write(request));
    }
    call->WritesDone();
    reader.join();
    ASSERT_TRUE(call->Finish().ok());
    ASSERT_EQ(responses.size(), 10u);  // 9 windows + summary
    for (int w = 0; w < 9; ++w) {
      const v1::WindowResult& r = responses[w].window();
      EXPECT_EQ(r.window_index(), w);
      EXPECT_EQ(r.start_sample(), 64 * w);
      EXPECT_EQ(r.end_sample(), 64 * w + 128);
      ExpectMatchesReference(r.result(), stream.data() + r.start_sample() * 9);
    }
    EXPECT_EQ(responses[9].summary().leftover_samples(), 700 - 640);
  }
}

// --- The harmamba-server binary ---

class ServerProcess {
 public:
  // Starts harmamba-server with `args`; returns once it listens.
  bool Start(const std::vector<std::string>& args) {
    int pipe_fds[2];
    if (pipe(pipe_fds) != 0) return false;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDERR_FILENO);
    posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
    std::vector<std::string> argv_strings = {HARMAMBA_SERVER_BINARY};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_strings) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = posix_spawn(&pid_, HARMAMBA_SERVER_BINARY, &actions, nullptr,
                               argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(pipe_fds[1]);
    if (rc != 0) return false;
    stderr_ = fdopen(pipe_fds[0], "r");
    // Read until "listening on ... (port N)".
    char line[4096];
    while (fgets(line, sizeof(line), stderr_) != nullptr) {
      log_ += line;
      const std::string s(line);
      const size_t at = s.find("(port ");
      if (s.find("listening on") != std::string::npos &&
          at != std::string::npos) {
        return absl::SimpleAtoi(s.substr(at + 6, s.find(')', at) - at - 6),
                                &port_);
      }
    }
    return false;
  }
  // Sends `signal` and returns the exit status; collects the rest of stderr.
  int Stop(int signal) {
    kill(pid_, signal);
    char line[4096];
    while (fgets(line, sizeof(line), stderr_) != nullptr) log_ += line;
    int status = 0;
    waitpid(pid_, &status, 0);
    fclose(stderr_);
    pid_ = -1;
    return status;
  }
  ~ServerProcess() {
    if (pid_ > 0) Stop(SIGKILL);
  }
  int port() const { return port_; }
  const std::string& log() const { return log_; }

 private:
  pid_t pid_ = -1;
  FILE* stderr_ = nullptr;
  int port_ = 0;
  std::string log_;
};

TEST_F(ServerModelTest, BinaryServesTheDirectoryAndStopsGracefullyOnSigterm) {
  ServerProcess process;
  ASSERT_TRUE(
      process.Start({"--model_dir=" + dir_.string(), "--address=127.0.0.1:0",
                     "--threads=2", "--shutdown_grace_s=5"}))
      << process.log();
  EXPECT_THAT(process.log(), HasSubstr("not serving"));
  EXPECT_THAT(process.log(), HasSubstr("broken.safetensors"));
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", process.port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::ActivityClassifier::NewStub(channel);
  {
    grpc::ClientContext context;
    v1::ListModelsResponse list;
    ASSERT_TRUE(stub->ListModels(&context, {}, &list).ok());
    ASSERT_EQ(list.models_size(), 1);
    EXPECT_EQ(list.models(0).name(), "test-har");
    EXPECT_EQ(list.default_model(), "test-har");
    EXPECT_EQ(list.models(0).window_length(), 128);
    EXPECT_EQ(list.models(0).channels_size(), 9);
  }
  const std::vector<float> window = RandomSamples(128, 9, 8);
  {
    grpc::ClientContext context;
    v1::ClassifyRequest request;
    request.mutable_window()->mutable_samples()->Add(window.begin(),
                                                     window.end());
    v1::ClassifyResponse response;
    ASSERT_TRUE(stub->Classify(&context, request, &response).ok());
    ExpectMatchesReference(response.result(), window.data());
  }
  auto health = Health::NewStub(channel);
  grpc::ClientContext watch_context;
  HealthCheckRequest watch_request;
  watch_request.set_service(HarmambaServer::kServiceName);
  auto watch = health->Watch(&watch_context, watch_request);
  HealthCheckResponse status;
  ASSERT_TRUE(watch->Read(&status));
  EXPECT_EQ(status.status(), HealthCheckResponse::SERVING);

  int exit_status = -1;
  std::thread stopper([&] { exit_status = process.Stop(SIGTERM); });
  ASSERT_TRUE(watch->Read(&status));
  EXPECT_EQ(status.status(), HealthCheckResponse::NOT_SERVING);
  stopper.join();
  EXPECT_TRUE(WIFEXITED(exit_status));
  EXPECT_EQ(WEXITSTATUS(exit_status), 0);
  EXPECT_THAT(process.log(), HasSubstr("SIGTERM received"));
  EXPECT_THAT(process.log(), HasSubstr("stopped"));
}

TEST_F(ServerModelTest, BinaryServesTlsWithTheCertificateFlags) {
  if (!testing::HaveOpenssl()) GTEST_SKIP() << "openssl is not installed";
  const fs::path key = dir_ / "server.key";
  const fs::path cert = dir_ / "server.pem";
  ASSERT_TRUE(testing::WriteSelfSignedCertificate(key.string(), cert.string(),
                                                  "harmamba.test"));
  ServerProcess process;
  ASSERT_TRUE(process.Start(
      {"--model_dir=" + dir_.string(), "--address=127.0.0.1:0", "--threads=1",
       "--metrics_address=", "--tls_cert_file=" + cert.string(),
       "--tls_key_file=" + key.string()}))
      << process.log();
  EXPECT_THAT(process.log(), HasSubstr(", TLS"));
  const std::string target = absl::StrCat("127.0.0.1:", process.port());

  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = testing::ReadText(cert.string());
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("harmamba.test");
  auto tls_stub = v1::ActivityClassifier::NewStub(
      grpc::CreateCustomChannel(target, grpc::SslCredentials(ssl), args));
  const std::vector<float> window = RandomSamples(128, 9, 21);
  {
    grpc::ClientContext context;
    v1::ClassifyRequest request;
    request.mutable_window()->mutable_samples()->Add(window.begin(),
                                                     window.end());
    v1::ClassifyResponse response;
    const grpc::Status status =
        tls_stub->Classify(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ExpectMatchesReference(response.result(), window.data());
  }
  // A plaintext client cannot talk to it.
  auto plain_stub = v1::ActivityClassifier::NewStub(
      grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(3));
  v1::ListModelsResponse list;
  EXPECT_FALSE(plain_stub->ListModels(&context, {}, &list).ok());
  const int exit_status = process.Stop(SIGTERM);
  EXPECT_TRUE(WIFEXITED(exit_status));
  EXPECT_EQ(WEXITSTATUS(exit_status), 0);
}

// Runs harmamba-server with `flags`, which it must refuse; returns its output.
std::string RefusedFlagsOutput(const std::string& flags) {
  const std::string command =
      absl::StrCat(HARMAMBA_SERVER_BINARY, " ", flags, " 2>&1");
  FILE* out = popen(command.c_str(), "r");
  if (out == nullptr) return "popen failed";
  std::string text;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), out))
    text.append(buffer, n);
  const int status = pclose(out);
  EXPECT_EQ(WEXITSTATUS(status), 2) << flags;
  return text;
}

TEST(ServerBinaryTest, TlsFlagsAreCheckedBeforeServing) {
  EXPECT_THAT(RefusedFlagsOutput("--tls_cert_file=server.pem"),
              HasSubstr("--tls_cert_file and --tls_key_file go together"));
  EXPECT_THAT(RefusedFlagsOutput("--tls_cert_file=/no/such.pem "
                                 "--tls_key_file=/no/such.key"),
              HasSubstr("--tls_cert_file: cannot read '/no/such.pem'"));
  // Any readable file that is not PEM: the server binary itself.
  EXPECT_THAT(RefusedFlagsOutput(
                  absl::StrCat("--tls_cert_file=", HARMAMBA_SERVER_BINARY,
                               " --tls_key_file=", HARMAMBA_SERVER_BINARY)),
              HasSubstr("not a PEM file"));
}

TEST(ServerBinaryTest, DeviceFlagIsCheckedBeforeServing) {
  EXPECT_THAT(RefusedFlagsOutput("--device=gpu --metrics_address="),
              HasSubstr("--device: expected cpu, cuda or cuda:N, got \"gpu\""));
  EXPECT_THAT(RefusedFlagsOutput("--device=cuda:x --metrics_address="),
              HasSubstr("--device: expected cpu, cuda or cuda:N"));
}

TEST(ServerBinaryTest, HelpListsEveryFlag) {
  const std::string command =
      absl::StrCat(HARMAMBA_SERVER_BINARY, " --help 2>&1");
  FILE* out = popen(command.c_str(), "r");
  ASSERT_NE(out, nullptr);
  std::string help;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), out))
    help.append(buffer, n);
  pclose(out);
  for (const char* flag :
       {"address", "model_dir", "default_model", "max_batch_size",
        "batch_buckets", "pad_to_bucket", "max_queue_delay_ms",
        "queue_capacity", "min_bulk_fraction", "threads", "max_message_bytes",
        "stream_hop", "stream_backlog", "shutdown_grace_s", "metrics_address",
        "tls_cert_file", "tls_key_file", "device"}) {
    EXPECT_THAT(help, HasSubstr(absl::StrCat("--", flag))) << flag;
  }
}

TEST(ServerBinaryTest, BadFlagsAreRefused) {
  const std::string command =
      absl::StrCat(HARMAMBA_SERVER_BINARY, " --max_batch_size=0 2>&1");
  FILE* out = popen(command.c_str(), "r");
  ASSERT_NE(out, nullptr);
  std::string text;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), out))
    text.append(buffer, n);
  const int status = pclose(out);
  EXPECT_EQ(WEXITSTATUS(status), 2);
  EXPECT_THAT(text, HasSubstr("max_batch_size"));
}

}  // namespace
}  // namespace harmamba
