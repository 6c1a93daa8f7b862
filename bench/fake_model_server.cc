// harmamba-fake-server: the real serving stack (HarmambaServer, batcher,
// service) around a stand-in model that costs a configurable time per window
// (spinning one core), for measuring the serving layer's own overhead with
// `harmamba loadgen`. Not for production.
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "model/backend.h"
#include "server/metrics_http.h"
#include "server/model_registry.h"
#include "server/prometheus_metrics.h"
#include "server/server.h"

ABSL_FLAG(std::string, address, "127.0.0.1:50051", "host:port to listen on.");
ABSL_FLAG(int, window_length, 128, "Samples per window.");
ABSL_FLAG(int, channels, 9, "Channels per sample.");
ABSL_FLAG(int, classes, 6, "Classes.");
ABSL_FLAG(double, cost_us_per_window, 0,
          "Simulated model time per window (busy loop on the executor).");
ABSL_FLAG(int, max_batch_size, 64, "As harmamba-server.");
ABSL_FLAG(double, max_queue_delay_ms, 0.0, "As harmamba-server.");
ABSL_FLAG(int64_t, queue_capacity, 8192, "As harmamba-server.");
ABSL_FLAG(std::string, metrics_address, "",
          "As harmamba-server, but off by default: with it, the server records "
          "Prometheus metrics (to measure their cost).");

namespace {

class SpinBackend : public harmamba::ModelBackend {
 public:
  SpinBackend(harmamba::ModelConfig config, absl::Duration cost)
      : config_(std::move(config)), cost_(cost) {}
  const harmamba::ModelConfig& config() const override { return config_; }
  std::string description() const override {
    return absl::StrCat("spin (", absl::FormatDuration(cost_), "/window)");
  }
  absl::Status Run(const float* windows, int64_t n, float* logits) override {
    const absl::Time until = absl::Now() + cost_ * n;
    const int floats = config_.window_floats();
    const int k = config_.num_classes();
    for (int64_t w = 0; w < n; ++w) {
      // Read the whole window, as a model would.
      float sum = 0;
      for (int i = 0; i < floats; ++i) sum += windows[w * floats + i];
      for (int c = 0; c < k; ++c) logits[w * k + c] = sum * (c + 1);
    }
    while (absl::Now() < until) {
    }
    return absl::OkStatus();
  }

 private:
  const harmamba::ModelConfig config_;
  const absl::Duration cost_;
};

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  harmamba::ModelConfig config;
  config.name = "fake";
  config.window_length = absl::GetFlag(FLAGS_window_length);
  for (int c = 0; c < absl::GetFlag(FLAGS_channels); ++c) {
    config.channels.push_back(absl::StrCat("ch", c));
  }
  for (int c = 0; c < absl::GetFlag(FLAGS_classes); ++c) {
    config.classes.push_back(absl::StrCat("class", c));
  }
  std::vector<std::unique_ptr<harmamba::ModelBackend>> backends;
  backends.push_back(std::make_unique<SpinBackend>(
      config, absl::Microseconds(absl::GetFlag(FLAGS_cost_us_per_window))));
  auto registry =
      harmamba::ModelRegistry::FromBackends(std::move(backends), "");
  if (!registry.ok()) {
    std::fprintf(stderr, "%s\n", registry.status().ToString().c_str());
    return 1;
  }
  harmamba::ServerOptions options;
  options.address = absl::GetFlag(FLAGS_address);
  options.batcher.max_batch_size = absl::GetFlag(FLAGS_max_batch_size);
  options.batcher.max_queue_delay =
      absl::Microseconds(1000 * absl::GetFlag(FLAGS_max_queue_delay_ms));
  options.batcher.queue_capacity = absl::GetFlag(FLAGS_queue_capacity);
  harmamba::PrometheusMetrics metrics;
  std::unique_ptr<harmamba::MetricsHttpServer> metrics_http;
  const std::string metrics_address = absl::GetFlag(FLAGS_metrics_address);
  if (!metrics_address.empty()) {
    harmamba::ModelDescription description;
    description.name = config.name;
    description.classes = config.classes;
    metrics.AddModel(description);
    auto started = harmamba::MetricsHttpServer::Start(
        metrics_address, [&metrics] { return metrics.Exposition(); },
        harmamba::PrometheusMetrics::kContentType);
    if (!started.ok()) {
      std::fprintf(stderr, "%s\n", started.status().ToString().c_str());
      return 1;
    }
    metrics_http = std::move(*started);
  }
  auto server = harmamba::HarmambaServer::Start(
      std::move(*registry), options, /*clock=*/nullptr,
      metrics_address.empty() ? nullptr : &metrics);
  if (!server.ok()) {
    std::fprintf(stderr, "%s\n", server.status().ToString().c_str());
    return 1;
  }
  std::fprintf(stderr, "harmamba-fake-server: listening on port %d\n",
               (*server)->port());
  int signal_number;
  sigwait(&signals, &signal_number);
  (*server)->Shutdown(absl::Seconds(5));
  return 0;
}
