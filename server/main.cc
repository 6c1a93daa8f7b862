// harmamba-server: serves every model file of a directory over gRPC.
//
// Thin: parses flags, loads the models (LoadModelFile + CreateCpuEngine, or
// CreateGpuEngine with --device cuda),
// serves Prometheus metrics, starts the server, and shuts it down gracefully
// on SIGTERM or SIGINT.
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "grpcpp/security/server_credentials.h"
#include "model/cpu_engine.h"
#ifdef HARMAMBA_SERVER_HAS_CUDA
#include "model/gpu_engine.h"
#endif
#include "model/model_file.h"
#include "model/status_macros.h"
#include "server/metrics_http.h"
#include "server/model_registry.h"
#include "server/prometheus_metrics.h"
#include "server/server.h"

#ifndef HARMAMBA_DEFAULT_MODEL_DIR
#define HARMAMBA_DEFAULT_MODEL_DIR "models"
#endif

ABSL_FLAG(std::string, address, "0.0.0.0:50051",
          "host:port to listen on (port 0 picks a free port).");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate chain: serve gRPC over TLS (needs --tls_key_file). "
          "Empty: plaintext.");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file.");
ABSL_FLAG(
    std::string, model_dir, "",
    "Directory whose *.safetensors model files are served, each under "
    "its harmamba.name. Empty: the shipped models, " HARMAMBA_DEFAULT_MODEL_DIR
    ", or ./models if that directory does not exist.");
ABSL_FLAG(std::string, default_model, "",
          "Model that requests naming no model go to. Empty: the first served "
          "model by name.");
ABSL_FLAG(int, max_batch_size, 64,
          "Most windows per model execution; larger requests are split.");
ABSL_FLAG(std::vector<std::string>, batch_buckets, {},
          "Comma-separated ascending batch sizes a batch is rounded up to "
          "(max_batch_size is always one). Empty: powers of two.");
ABSL_FLAG(bool, pad_to_bucket, false,
          "Pad each batch with zero windows up to its bucket (costs compute "
          "on CPU; for fixed-shape backends).");
ABSL_FLAG(double, max_queue_delay_ms, 0.0,
          "How long a partial batch that formed while the model was busy may "
          "wait for more windows once the model is free (a window arriving at "
          "an idle model runs at once). 0 suits the CPU engine; ~1 batch-1 "
          "run time suits backends that batch well (GPUs).");
ABSL_FLAG(int64_t, queue_capacity, 8192,
          "Most windows waiting per model and lane (interactive: Classify and "
          "StreamClassify; bulk: ClassifyBatch); beyond it requests get "
          "RESOURCE_EXHAUSTED.");
ABSL_FLAG(double, min_bulk_fraction, 0.25,
          "Share of each batch reserved for waiting ClassifyBatch windows, in "
          "[0, 1); interactive windows fill the rest first.");
ABSL_FLAG(int, threads, 0,
          "Threads each model's CPU engine uses for one batch (0 = all "
          "hardware threads).");
ABSL_FLAG(std::string, device, "cpu",
          "Where the models run: cpu (the fused CPU engine) or cuda[:N] (the "
          "fused CUDA engine; only in builds with nvcc, needs a GPU).");
ABSL_FLAG(int, max_message_bytes, 32 << 20,
          "Largest request or response message in bytes; larger ones are "
          "refused by gRPC with RESOURCE_EXHAUSTED. The default holds a "
          "ClassifyBatch of 4096 UCI-HAR windows (18.9 MB).");
ABSL_FLAG(int, stream_hop, 0,
          "Samples between window starts in StreamClassify when the stream "
          "sets no hop. 0: half the model's window.");
ABSL_FLAG(int, stream_backlog, 64,
          "Windows per stream that may be pending (queued, running or "
          "unwritten); when full the server stops reading the stream.");
ABSL_FLAG(double, shutdown_grace_s, 10.0,
          "On SIGTERM/SIGINT: seconds to finish accepted work before the "
          "server stops.");
ABSL_FLAG(std::string, metrics_address, "0.0.0.0:9464",
          "host:port serving Prometheus metrics at /metrics over HTTP (port 0 "
          "picks a free port). Empty: no metrics. If the port cannot be "
          "opened the server logs it and serves without metrics.");

namespace {

using harmamba::ModelBackend;

constexpr int kCpuDevice = -1;

// "cpu" -> kCpuDevice; "cuda" -> 0; "cuda:N" -> N.
absl::StatusOr<int> ParseDevice(const std::string& device) {
  if (device == "cpu") return kCpuDevice;
  int ordinal = 0;
  if (device == "cuda" ||
      (absl::StartsWith(device, "cuda:") &&
       absl::SimpleAtoi(device.substr(5), &ordinal) && ordinal >= 0)) {
#ifdef HARMAMBA_SERVER_HAS_CUDA
    return ordinal;
#else
    return absl::InvalidArgumentError(
        "this build has no CUDA engine (it was built without nvcc)");
#endif
  }
  return absl::InvalidArgumentError(
      absl::StrCat("expected cpu, cuda or cuda:N, got \"", device, "\""));
}

absl::StatusOr<std::unique_ptr<ModelBackend>> CreateBackend(
    const harmamba::ModelWeights& weights, int device, int threads,
    int max_batch_size) {
  if (device == kCpuDevice) {
    harmamba::CpuEngineOptions options;
    options.num_threads = threads;
    return harmamba::CreateCpuEngine(weights, options);
  }
#ifdef HARMAMBA_SERVER_HAS_CUDA
  harmamba::GpuEngineOptions options;
  options.device = device;
  options.max_batch = max_batch_size;
  return harmamba::CreateGpuEngine(weights, options);
#else
  (void)max_batch_size;
  return absl::InternalError("no CUDA engine in this build");
#endif
}

absl::StatusOr<std::string> ReadPemFile(const char* flag,
                                        const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(file)),
                   std::istreambuf_iterator<char>());
  if (!file.good() && !file.eof()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": cannot read '", path, "'"));
  }
  if (text.find('\0') != std::string::npos ||
      text.find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", flag, ": '", path, "' is not a PEM file (no -----BEGIN line)"));
  }
  return text;
}

// TLS credentials from --tls_cert_file/--tls_key_file; nullptr (plaintext)
// when neither is set.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>>
CredentialsFromFlags() {
  const std::string cert_path = absl::GetFlag(FLAGS_tls_cert_file);
  const std::string key_path = absl::GetFlag(FLAGS_tls_key_file);
  if (cert_path.empty() && key_path.empty()) return nullptr;
  if (cert_path.empty() || key_path.empty()) {
    return absl::InvalidArgumentError(
        "--tls_cert_file and --tls_key_file go together");
  }
  ASSIGN_OR_RETURN(std::string cert, ReadPemFile("tls_cert_file", cert_path));
  ASSIGN_OR_RETURN(std::string key, ReadPemFile("tls_key_file", key_path));
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back({std::move(key), std::move(cert)});
  return grpc::SslServerCredentials(ssl);
}

absl::StatusOr<harmamba::ServerOptions> OptionsFromFlags() {
  harmamba::ServerOptions options;
  options.address = absl::GetFlag(FLAGS_address);
  options.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  harmamba::BatcherOptions& batcher = options.batcher;
  batcher.max_batch_size = absl::GetFlag(FLAGS_max_batch_size);
  for (const std::string& text : absl::GetFlag(FLAGS_batch_buckets)) {
    int bucket;
    if (!absl::SimpleAtoi(text, &bucket)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--batch_buckets: expected comma-separated integers, got '", text,
          "'"));
    }
    batcher.batch_buckets.push_back(bucket);
  }
  batcher.pad_to_bucket = absl::GetFlag(FLAGS_pad_to_bucket);
  batcher.max_queue_delay =
      absl::Microseconds(1000.0 * absl::GetFlag(FLAGS_max_queue_delay_ms));
  batcher.queue_capacity = absl::GetFlag(FLAGS_queue_capacity);
  batcher.min_bulk_fraction = absl::GetFlag(FLAGS_min_bulk_fraction);
  options.service.default_stream_hop = absl::GetFlag(FLAGS_stream_hop);
  options.service.stream_backlog = absl::GetFlag(FLAGS_stream_backlog);
  ASSIGN_OR_RETURN(options.credentials, CredentialsFromFlags());
  if (absl::Status s = options.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--", s.message()));
  }
  return options;
}

std::string ModelDir() {
  std::string dir = absl::GetFlag(FLAGS_model_dir);
  if (!dir.empty()) return dir;
  std::error_code ec;
  if (std::filesystem::is_directory(HARMAMBA_DEFAULT_MODEL_DIR, ec)) {
    return HARMAMBA_DEFAULT_MODEL_DIR;
  }
  return "models";
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Serves HARMamba activity-recognition models over gRPC "
      "(harmamba.v1.ActivityClassifier, grpc.health.v1.Health, reflection).\n"
      "Usage: harmamba-server [--flags]");
  // --help lists the flags of this file (absl's default looks for a file
  // named after the binary).
  absl::FlagsUsageConfig usage_config;
  usage_config.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "server/main.cc");
  };
  usage_config.contains_helpshort_flags = usage_config.contains_help_flags;
  absl::SetFlagsUsageConfig(usage_config);
  absl::ParseCommandLine(argc, argv);

  absl::StatusOr<harmamba::ServerOptions> options = OptionsFromFlags();
  if (!options.ok()) {
    std::fprintf(stderr, "harmamba-server: %s\n",
                 std::string(options.status().message()).c_str());
    return 2;
  }
  if (const double grace = absl::GetFlag(FLAGS_shutdown_grace_s); grace < 0) {
    std::fprintf(stderr,
                 "harmamba-server: --shutdown_grace_s: expected >= 0, got "
                 "%g\n",
                 grace);
    return 2;
  }

  // Every thread started from here on inherits the blocked signals, so that
  // only sigwait() below receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const int threads = absl::GetFlag(FLAGS_threads);
  absl::StatusOr<int> parsed_device = ParseDevice(absl::GetFlag(FLAGS_device));
  if (!parsed_device.ok()) {
    std::fprintf(stderr, "harmamba-server: --device: %s\n",
                 std::string(parsed_device.status().message()).c_str());
    return 2;
  }
  const int max_batch_size = absl::GetFlag(FLAGS_max_batch_size);
  std::map<std::string, absl::Duration> load_times;  // by file path
  harmamba::BackendFactory factory = [threads, device = *parsed_device,
                                      max_batch_size,
                                      &load_times](const std::string& path)
      -> absl::StatusOr<std::unique_ptr<ModelBackend>> {
    const absl::Time start = absl::Now();
    ASSIGN_OR_RETURN(harmamba::ModelWeights weights,
                     harmamba::LoadModelFile(path));
    absl::StatusOr<std::unique_ptr<ModelBackend>> backend =
        CreateBackend(weights, device, threads, max_batch_size);
    load_times[path] = absl::Now() - start;
    return backend;
  };
  const std::string model_dir = ModelDir();
  absl::StatusOr<std::unique_ptr<harmamba::ModelRegistry>> registry =
      harmamba::ModelRegistry::LoadDirectory(
          model_dir, factory, absl::GetFlag(FLAGS_default_model));
  if (!registry.ok()) {
    std::fprintf(stderr, "harmamba-server: %s\n",
                 registry.status().ToString().c_str());
    return 1;
  }
  for (const auto& failure : (*registry)->failures()) {
    std::fprintf(stderr, "harmamba-server: not serving %s: %s\n",
                 failure.path.c_str(), failure.status.ToString().c_str());
  }
  for (const auto& model : (*registry)->models()) {
    const harmamba::ModelConfig& config = model->config();
    std::fprintf(
        stderr,
        "harmamba-server: serving '%s' version %s (%d x %d -> %d "
        "classes) from %s on %s%s\n",
        model->name.c_str(), config.version.c_str(), config.window_length,
        config.num_channels(), config.num_classes(), model->path.c_str(),
        model->backend->description().c_str(),
        model.get() == &(*registry)->default_model() ? " [default]" : "");
  }

  // Metrics: must outlive the server, which records into them.
  harmamba::PrometheusMetrics metrics;
  for (const auto& model : (*registry)->models()) {
    harmamba::ModelDescription description;
    description.name = model->name;
    description.version = model->config().version;
    description.backend = model->backend->description();
    description.classes = model->config().classes;
    description.load_time = load_times[model->path];
    description.queue_capacity = options->batcher.queue_capacity;
    metrics.AddModel(description);
  }
  std::unique_ptr<harmamba::MetricsHttpServer> metrics_http;
  if (const std::string address = absl::GetFlag(FLAGS_metrics_address);
      !address.empty()) {
    absl::StatusOr<std::unique_ptr<harmamba::MetricsHttpServer>> started =
        harmamba::MetricsHttpServer::Start(
            address, [&metrics] { return metrics.Exposition(); },
            harmamba::PrometheusMetrics::kContentType);
    if (started.ok()) {
      metrics_http = std::move(*started);
      std::fprintf(stderr,
                   "harmamba-server: metrics at http://%s/metrics (metrics "
                   "port %d)\n",
                   address.c_str(), metrics_http->port());
    } else {
      std::fprintf(stderr,
                   "harmamba-server: WARNING: not serving metrics: "
                   "--metrics_address: %s; serving without /metrics\n",
                   started.status().ToString().c_str());
    }
  }

  absl::StatusOr<std::unique_ptr<harmamba::HarmambaServer>> server =
      harmamba::HarmambaServer::Start(std::move(*registry), *options,
                                      /*clock=*/nullptr, &metrics);
  if (!server.ok()) {
    std::fprintf(stderr, "harmamba-server: %s\n",
                 server.status().ToString().c_str());
    return 1;
  }
  std::fprintf(stderr, "harmamba-server: listening on %s (port %d), %s\n",
               options->address.c_str(), (*server)->port(),
               options->credentials != nullptr ? "TLS" : "plaintext");

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  std::fprintf(stderr,
               "harmamba-server: %s received; shutting down (grace %gs)\n",
               signal_number == SIGTERM ? "SIGTERM" : "SIGINT",
               absl::GetFlag(FLAGS_shutdown_grace_s));
  (*server)->Shutdown(absl::Seconds(absl::GetFlag(FLAGS_shutdown_grace_s)));
  if (metrics_http != nullptr) metrics_http->Stop();
  std::fprintf(stderr, "harmamba-server: stopped\n");
  return 0;
}
