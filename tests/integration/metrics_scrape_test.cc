// The real scrape: the harmamba-server binary with a model loaded and a real
// Prometheus (Debian's `prometheus`) on loopback. Traffic with known counts
// goes to the server; the values are read back through Prometheus' HTTP API;
// `promtool check metrics` checks the exposition; every alerting rule of
// deploy/prometheus/alerts.yml (loaded into that Prometheus) evaluates
// without error and its query returns data, and so does every query of the
// Grafana dashboard in deploy/grafana/.
//
// Skips when prometheus or promtool is not installed.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "harmamba/v1/harmamba.grpc.pb.h"
#include "httplib.h"
#include "model/model_file.h"
#include "nlohmann/json.hpp"

extern char** environ;

namespace harmamba {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// How long conditions are polled for (Prometheus starts, scrapes every
// second and evaluates rules every second).
constexpr absl::Duration kPatience = absl::Seconds(60);

template <typename F>
bool WaitFor(F done, absl::Duration patience = kPatience) {
  const absl::Time deadline = absl::Now() + patience;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return true;
}

bool Installed(const std::string& program) {
  return std::system(absl::StrCat("command -v ", program, " >/dev/null 2>&1")
                         .c_str()) == 0;
}

// A free TCP port on loopback (it could be taken again before use; the
// tests fail clearly if so).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  const int port = ntohs(address.sin_port);
  close(fd);
  return port;
}

// A child process whose stderr (and stdout) go to a pipe we read.
class Child {
 public:
  bool Spawn(const std::vector<std::string>& args) {
    int fds[2];
    if (pipe(fds) != 0) return false;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    std::vector<std::string> copy = args;
    std::vector<char*> argv;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc =
        posix_spawnp(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    if (rc != 0) {
      close(fds[0]);
      return false;
    }
    output_ = fdopen(fds[0], "r");
    return true;
  }
  // Reads output lines until one contains `text`; false at EOF.
  bool ReadUntil(const std::string& text, std::string* line_out) {
    char line[4096];
    while (fgets(line, sizeof(line), output_) != nullptr) {
      log_ += line;
      if (std::string(line).find(text) != std::string::npos) {
        *line_out = line;
        return true;
      }
    }
    return false;
  }
  // Keeps draining output in the background (so the child never blocks).
  void Drain() {
    drainer_ = std::thread([this] {
      char line[4096];
      while (fgets(line, sizeof(line), output_) != nullptr) {
      }
    });
  }
  int Stop(int signal = SIGTERM) {
    if (pid_ <= 0) return -1;
    kill(pid_, signal);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    if (drainer_.joinable()) drainer_.join();
    if (output_ != nullptr) fclose(output_);
    output_ = nullptr;
    return status;
  }
  ~Child() { Stop(SIGKILL); }
  pid_t pid() const { return pid_; }
  const std::string& log() const { return log_; }

 private:
  pid_t pid_ = -1;
  FILE* output_ = nullptr;
  std::thread drainer_;
  std::string log_;
};

// The number after `marker` in `line` ("... (port 1234)").
int NumberAfter(const std::string& line, const std::string& marker) {
  const size_t at = line.find(marker);
  if (at == std::string::npos) return 0;
  int value = 0;
  const size_t start = at + marker.size();
  const size_t end = line.find_first_not_of("0123456789", start);
  if (!absl::SimpleAtoi(line.substr(start, end - start), &value)) return 0;
  return value;
}

ModelConfig TestConfig() {
  ModelConfig config;
  config.name = "scrape-test";
  config.version = "5";
  config.window_length = 128;
  config.channels = {"body_acc_x",  "body_acc_y",  "body_acc_z",
                     "body_gyro_x", "body_gyro_y", "body_gyro_z",
                     "total_acc_x", "total_acc_y", "total_acc_z"};
  config.classes = {"WALKING", "UPSTAIRS", "DOWNSTAIRS",
                    "SITTING", "STANDING", "LAYING"};
  config.sample_rate_hz = 50.0;
  config.depth = 2;
  config.mean.assign(9, 0.0f);
  config.std.assign(9, 1.0f);
  return config;
}

bool HasModelFiles(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return false;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".safetensors") return true;
  }
  return false;
}

// Everything the tests share: started once.
struct Environment {
  fs::path dir;
  Child server;
  Child prometheus;
  int grpc_port = 0;
  int metrics_port = 0;
  int prometheus_port = 0;
  v1::ModelInfo model;
  std::string skip_reason;
  std::string setup_error;
};

Environment* env = nullptr;

// Instant query; the "result" array (empty on error, with `error` set).
json Query(const std::string& promql, std::string* error = nullptr) {
  httplib::Client client("127.0.0.1", env->prometheus_port);
  client.set_read_timeout(10, 0);
  httplib::Params params{{"query", promql}};
  auto response = client.Post("/api/v1/query", params);
  if (!response) {
    if (error) *error = "no response from Prometheus";
    return json::array();
  }
  const json body = json::parse(response->body, nullptr, false);
  if (body.is_discarded() || body.value("status", "") != "success") {
    if (error) *error = response->body;
    return json::array();
  }
  if (error) error->clear();
  return body["data"]["result"];
}

// The value of a query that returns one sample; NaN if none.
double Scalar(const std::string& promql) {
  const json result = Query(promql);
  if (result.size() != 1) return std::nan("");
  double value = std::nan("");
  if (!absl::SimpleAtod(result[0]["value"][1].get<std::string>(), &value)) {
    return std::nan("");
  }
  return value;
}

std::vector<float> RandomSamples(int floats, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> out(floats);
  for (float& x : out) x = normal(rng);
  return out;
}

// Sends traffic with known outcomes (see the expectations in
// ValuesReadBackThroughPrometheus).
void DriveTraffic(v1::ActivityClassifier::Stub& stub, const v1::ModelInfo& m) {
  const int floats = m.window_length() * m.channels_size();
  auto window = [&](uint32_t seed) {
    v1::Window w;
    const std::vector<float> samples = RandomSamples(floats, seed);
    w.mutable_samples()->Add(samples.begin(), samples.end());
    return w;
  };
  for (int i = 0; i < 5; ++i) {  // 5 Classify OK
    grpc::ClientContext context;
    v1::ClassifyRequest request;
    *request.mutable_window() = window(i);
    v1::ClassifyResponse response;
    EXPECT_TRUE(stub.Classify(&context, request, &response).ok());
  }
  {  // Classify INVALID_ARGUMENT (one sample short)
    grpc::ClientContext context;
    v1::ClassifyRequest request;
    *request.mutable_window() = window(10);
    request.mutable_window()->mutable_samples()->RemoveLast();
    v1::ClassifyResponse response;
    EXPECT_EQ(stub.Classify(&context, request, &response).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  {  // Classify NOT_FOUND
    grpc::ClientContext context;
    v1::ClassifyRequest request;
    request.set_model("no-such-model");
    *request.mutable_window() = window(11);
    v1::ClassifyResponse response;
    EXPECT_EQ(stub.Classify(&context, request, &response).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  {  // ClassifyBatch OK, 20 windows
    grpc::ClientContext context;
    v1::ClassifyBatchRequest request;
    for (int i = 0; i < 20; ++i) *request.add_windows() = window(100 + i);
    v1::ClassifyBatchResponse response;
    EXPECT_TRUE(stub.ClassifyBatch(&context, request, &response).ok());
  }
  {  // ClassifyBatch OK, 3 windows of which 1 invalid
    grpc::ClientContext context;
    v1::ClassifyBatchRequest request;
    for (int i = 0; i < 3; ++i) *request.add_windows() = window(200 + i);
    request.mutable_windows(1)->mutable_samples()->RemoveLast();
    v1::ClassifyBatchResponse response;
    EXPECT_TRUE(stub.ClassifyBatch(&context, request, &response).ok());
    EXPECT_TRUE(response.outcomes(1).has_error());
  }
  {  // ClassifyBatch RESOURCE_EXHAUSTED: 300 windows > --queue_capacity=256
    grpc::ClientContext context;
    v1::ClassifyBatchRequest request;
    const v1::Window w = window(300);
    for (int i = 0; i < 300; ++i) *request.add_windows() = w;
    v1::ClassifyBatchResponse response;
    EXPECT_EQ(stub.ClassifyBatch(&context, request, &response).error_code(),
              grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  {  // StreamClassify: 300 samples in 3 chunks; hop 64 -> 3 windows
    grpc::ClientContext context;
    auto stream = stub.StreamClassify(&context);
    const std::vector<float> samples =
        RandomSamples(300 * m.channels_size(), 400);
    for (int c = 0; c < 3; ++c) {
      v1::StreamClassifyRequest request;
      request.mutable_chunk()->mutable_samples()->Add(
          samples.begin() + c * 100 * m.channels_size(),
          samples.begin() + (c + 1) * 100 * m.channels_size());
      EXPECT_TRUE(stream->Write(request));
    }
    stream->WritesDone();
    v1::StreamClassifyResponse response;
    int windows = 0;
    while (stream->Read(&response)) windows += response.has_window();
    EXPECT_TRUE(stream->Finish().ok());
    EXPECT_EQ(windows, 3);
  }
}

class MetricsScrapeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    env = new Environment();
    if (!Installed("prometheus") || !Installed("promtool")) {
      env->skip_reason =
          "prometheus/promtool are not installed (Debian package "
          "'prometheus'; scripts/setup.sh installs it)";
      return;
    }
    env->dir = fs::path(::testing::TempDir()) / "metrics_scrape_test";
    fs::remove_all(env->dir);
    fs::create_directories(env->dir);

    // A shipped model if there is one, else a freshly initialised one.
    fs::path model_dir = HARMAMBA_MODELS_DIR;
    if (!HasModelFiles(model_dir)) {
      model_dir = env->dir / "models";
      fs::create_directories(model_dir);
      const absl::Status saved =
          SaveModelFile(InitModel(TestConfig(), /*seed=*/3),
                        (model_dir / "scrape-test.safetensors").string());
      if (!saved.ok()) {
        env->setup_error = saved.ToString();
        return;
      }
    }
    if (!env->server.Spawn(
            {HARMAMBA_SERVER_BINARY, "--model_dir=" + model_dir.string(),
             "--address=127.0.0.1:0", "--metrics_address=127.0.0.1:0",
             "--threads=2", "--queue_capacity=256"})) {
      env->setup_error = "cannot start harmamba-server";
      return;
    }
    std::string line;
    if (!env->server.ReadUntil("metrics port", &line)) {
      env->setup_error = "no metrics port: " + env->server.log();
      return;
    }
    env->metrics_port = NumberAfter(line, "metrics port ");
    if (!env->server.ReadUntil("listening on", &line)) {
      env->setup_error = "server did not start: " + env->server.log();
      return;
    }
    env->grpc_port = NumberAfter(line, "(port ");
    env->server.Drain();

    env->prometheus_port = FreePort();
    const fs::path config = env->dir / "prometheus.yml";
    std::ofstream(config) << "global:\n"
                             "  scrape_interval: 1s\n"
                             "  evaluation_interval: 1s\n"
                             "rule_files:\n"
                             "  - "
                          << HARMAMBA_DEPLOY_DIR
                          << "/prometheus/alerts.yml\n"
                             "scrape_configs:\n"
                             "  - job_name: harmamba\n"
                             "    static_configs:\n"
                             "      - targets: ['127.0.0.1:"
                          << env->metrics_port << "']\n";
    if (!env->prometheus.Spawn(
            {"prometheus", "--config.file=" + config.string(),
             "--storage.tsdb.path=" + (env->dir / "tsdb").string(),
             absl::StrCat("--web.listen-address=127.0.0.1:",
                          env->prometheus_port),
             "--log.level=warn"})) {
      env->setup_error = "cannot start prometheus";
      return;
    }
    env->prometheus.Drain();
    if (!WaitFor([] { return Scalar("up{job=\"harmamba\"}") == 1; })) {
      env->setup_error = "Prometheus never scraped the server (up != 1)";
      return;
    }

    auto stub = v1::ActivityClassifier::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", env->grpc_port),
                            grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    v1::GetModelInfoRequest request;
    if (!stub->GetModelInfo(&context, request, &env->model).ok()) {
      env->setup_error = "GetModelInfo failed";
      return;
    }
    DriveTraffic(*stub, env->model);
    // Scraped once the last of it (the stream) shows.
    const std::string model = env->model.name();
    if (!WaitFor([&model] {
          return Scalar(absl::StrCat(
                     "sum(harmamba_stream_windows_sent_total{model=\"", model,
                     "\"})")) == 3 &&
                 Scalar(absl::StrCat(
                     "sum(harmamba_requests_total{method=\"StreamClassify\","
                     "code=\"OK\"})")) == 1;
        })) {
      env->setup_error = "the traffic never showed in Prometheus";
    }
  }

  static void TearDownTestSuite() {
    env->prometheus.Stop();
    env->server.Stop();
    if (!env->dir.empty()) fs::remove_all(env->dir);
    delete env;
    env = nullptr;
  }

  void SetUp() override {
    if (!env->skip_reason.empty()) GTEST_SKIP() << env->skip_reason;
    ASSERT_EQ(env->setup_error, "");
  }

  static std::string M() { return env->model.name(); }
};

TEST_F(MetricsScrapeTest, ValuesReadBackThroughPrometheus) {
  const std::string m = absl::StrCat("model=\"", M(), "\"");
  auto requests = [&](const std::string& method, const std::string& code) {
    return Scalar(absl::StrCat("sum(harmamba_requests_total{method=\"", method,
                               "\",code=\"", code, "\"})"));
  };
  EXPECT_EQ(requests("Classify", "OK"), 5);
  EXPECT_EQ(requests("Classify", "INVALID_ARGUMENT"), 1);
  EXPECT_EQ(requests("Classify", "NOT_FOUND"), 1);
  EXPECT_EQ(requests("ClassifyBatch", "OK"), 2);
  EXPECT_EQ(requests("ClassifyBatch", "RESOURCE_EXHAUSTED"), 1);
  EXPECT_EQ(requests("StreamClassify", "OK"), 1);
  // Results: 5 Classify + 20 + 2 ClassifyBatch + 3 stream windows.
  EXPECT_EQ(Scalar(absl::StrCat("sum(harmamba_predictions_total{", m, "})")),
            30);
  EXPECT_EQ(
      Scalar(absl::StrCat("sum(harmamba_batch_size_windows_sum{", m, "})")),
      30);
  EXPECT_EQ(Scalar(absl::StrCat("sum(harmamba_request_windows_total{", m,
                                ",method=\"ClassifyBatch\"})")),
            323);
  EXPECT_EQ(Scalar(absl::StrCat("sum(harmamba_rejected_windows_total{", m,
                                ",reason=\"invalid\"})")),
            2);
  EXPECT_EQ(Scalar(absl::StrCat("harmamba_rejected_windows_total{", m,
                                ",lane=\"bulk\",reason=\"queue_full\"}")),
            300);
  EXPECT_EQ(Scalar(absl::StrCat("sum(harmamba_queue_depth_windows{", m, "})")),
            0);
  EXPECT_EQ(Scalar(absl::StrCat("harmamba_queue_capacity_windows{", m,
                                ",lane=\"bulk\"}")),
            256);
  EXPECT_EQ(Scalar(absl::StrCat("harmamba_stream_samples_total{", m, "}")),
            300);
  EXPECT_EQ(
      Scalar(absl::StrCat("harmamba_stream_result_lag_seconds_count{", m, "}")),
      3);
  EXPECT_EQ(Scalar(absl::StrCat("harmamba_active_streams{", m, "}")), 0);
  // Classify: 5 OK + 1 invalid for this model (NOT_FOUND has no model).
  EXPECT_EQ(Scalar(absl::StrCat("harmamba_request_duration_seconds_count{", m,
                                ",method=\"Classify\"}")),
            6);
  EXPECT_EQ(Scalar(absl::StrCat("harmamba_model_info{", m, ",version=\"",
                                env->model.version(), "\"}")),
            1);
  EXPECT_GT(
      Scalar(absl::StrCat("harmamba_model_load_duration_seconds{", m, "}")), 0);
  EXPECT_GT(Scalar("harmamba_model_run_duration_seconds_count{" + m + "}"), 0);
  EXPECT_GT(Scalar("process_cpu_seconds_total{job=\"harmamba\"}"), 0);
  EXPECT_GT(Scalar("process_resident_memory_bytes{job=\"harmamba\"}"),
            10 << 20);
  EXPECT_GT(Scalar("process_open_fds{job=\"harmamba\"}"), 3);
}

TEST_F(MetricsScrapeTest, PromtoolAcceptsTheExposition) {
  httplib::Client client("127.0.0.1", env->metrics_port);
  auto response = client.Get("/metrics");
  ASSERT_TRUE(response);
  ASSERT_EQ(response->status, 200);
  EXPECT_THAT(response->get_header_value("Content-Type"),
              ::testing::HasSubstr("text/plain; version=0.0.4"));
  const fs::path path = env->dir / "exposition.prom";
  std::ofstream(path) << response->body;
  const std::string command =
      absl::StrCat("promtool check metrics < ", path.string(), " 2>&1");
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) {
    output.append(buffer, n);
  }
  EXPECT_EQ(pclose(pipe), 0) << output;
  EXPECT_EQ(output, "") << "promtool lint findings";
}

// "<query> > 0.05" -> "<query>".
std::string WithoutThreshold(const std::string& expr) {
  static const std::regex kComparison(
      R"(\s*(>|<|==|!=|>=|<=)\s*[-+0-9.eE]+\s*$)");
  return std::regex_replace(expr, kComparison, "");
}

TEST_F(MetricsScrapeTest, EveryAlertRuleEvaluatesAndItsQueryReturnsData) {
  httplib::Client client("127.0.0.1", env->prometheus_port);
  json rules;
  // Rules report health "unknown" until their first evaluation.
  ASSERT_TRUE(WaitFor([&] {
    auto response = client.Get("/api/v1/rules");
    if (!response) return false;
    rules = json::array();
    const json body = json::parse(response->body, nullptr, false);
    if (body.is_discarded()) return false;
    for (const json& group : body["data"]["groups"]) {
      for (const json& rule : group["rules"]) rules.push_back(rule);
    }
    for (const json& rule : rules) {
      if (rule["health"] != "ok") return false;
    }
    return !rules.empty();
  })) << rules.dump(2);
  EXPECT_EQ(rules.size(), 7u);
  for (const json& rule : rules) {
    const std::string name = rule["name"];
    const std::string query = WithoutThreshold(rule["query"]);
    SCOPED_TRACE(absl::StrCat(name, ": ", query));
    ASSERT_NE(query, rule["query"].get<std::string>()) << "no threshold";
    std::string error;
    // Series that first appeared with the traffic need two scrapes for a
    // rate.
    EXPECT_TRUE(WaitFor([&] { return !Query(query, &error).empty(); },
                        absl::Seconds(20)))
        << error;
  }
}

TEST_F(MetricsScrapeTest, EveryDashboardQueryReturnsData) {
  std::ifstream file(std::string(HARMAMBA_DEPLOY_DIR) +
                     "/grafana/harmamba-dashboard.json");
  const json dashboard = json::parse(file, nullptr, false);
  ASSERT_FALSE(dashboard.is_discarded());
  std::vector<std::pair<std::string, std::string>> queries;
  for (const json& panel : dashboard["panels"]) {
    if (!panel.contains("targets")) continue;
    for (const json& target : panel["targets"]) {
      queries.emplace_back(panel["title"], target["expr"]);
    }
  }
  ASSERT_GT(queries.size(), 20u);
  for (const auto& [title, expr] : queries) {
    // What Grafana substitutes: the model variable (All = .*), the job, the
    // rate interval.
    const std::string query = absl::StrReplaceAll(
        expr,
        {{"$model", ".*"}, {"$job", "harmamba"}, {"$__rate_interval", "1m"}});
    SCOPED_TRACE(absl::StrCat(title, ": ", query));
    EXPECT_EQ(query.find('$'), std::string::npos) << "unknown variable";
    std::string error;
    EXPECT_TRUE(WaitFor([&] { return !Query(query, &error).empty(); },
                        absl::Seconds(20)))
        << error;
  }
  // The model variable's query: label_values(harmamba_model_info, model).
  EXPECT_FALSE(Query("harmamba_model_info").empty());
}

// --- The metrics port, without Prometheus ---

class MetricsPortTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / "metrics_port_test";
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    ASSERT_TRUE(SaveModelFile(InitModel(TestConfig(), /*seed=*/4),
                              (dir_ / "m.safetensors").string())
                    .ok());
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(MetricsPortTest, APortInUseIsLoggedAndTheServerStillServes) {
  // Hold a listening socket on a loopback port.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)),
            0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  const int taken = ntohs(address.sin_port);

  Child server;
  ASSERT_TRUE(server.Spawn(
      {HARMAMBA_SERVER_BINARY, "--model_dir=" + dir_.string(),
       "--address=127.0.0.1:0",
       absl::StrCat("--metrics_address=127.0.0.1:", taken), "--threads=1"}));
  std::string line;
  ASSERT_TRUE(server.ReadUntil("listening on", &line)) << server.log();
  EXPECT_THAT(server.log(), ::testing::HasSubstr("not serving metrics"));
  EXPECT_THAT(server.log(),
              ::testing::HasSubstr(absl::StrCat("127.0.0.1:", taken)));
  auto stub = v1::ActivityClassifier::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", NumberAfter(line, "(port ")),
      grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  v1::ListModelsResponse models;
  EXPECT_TRUE(stub->ListModels(&context, {}, &models).ok());
  const int status = server.Stop(SIGTERM);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  close(fd);
}

TEST_F(MetricsPortTest, AnEmptyAddressServesNoMetrics) {
  Child server;
  ASSERT_TRUE(server.Spawn(
      {HARMAMBA_SERVER_BINARY, "--model_dir=" + dir_.string(),
       "--address=127.0.0.1:0", "--metrics_address=", "--threads=1"}));
  std::string line;
  ASSERT_TRUE(server.ReadUntil("listening on", &line)) << server.log();
  EXPECT_THAT(server.log(),
              ::testing::Not(::testing::HasSubstr("metrics at http")));
  EXPECT_THAT(server.log(),
              ::testing::Not(::testing::HasSubstr("not serving metrics")));
  EXPECT_EQ(server.Stop(SIGTERM), 0);
}

}  // namespace
}  // namespace harmamba
