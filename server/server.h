// A running harmamba-serve gRPC server: the model registry, one batcher per
// model, the ActivityClassifier service, gRPC health checking and server
// reflection, and graceful shutdown.
#ifndef HARMAMBA_SERVER_SERVER_H_
#define HARMAMBA_SERVER_SERVER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "server/batcher.h"
#include "server/classifier_service.h"
#include "server/clock.h"
#include "server/metrics_recorder.h"
#include "server/model_registry.h"

namespace harmamba {

struct ServerOptions {
  // host:port to listen on; port 0 picks a free port (see port()).
  std::string address = "0.0.0.0:50051";
  // Applied to every model's batcher (model_name is set per model).
  BatcherOptions batcher;
  ServiceOptions service;
  // Largest request or response message; gRPC refuses larger ones with
  // RESOURCE_EXHAUSTED. The default holds a ClassifyBatch of 4096 UCI-HAR
  // windows (4096 x 128 x 9 floats = 18.9 MB) with room to spare.
  int max_message_bytes = 32 << 20;
  // How clients authenticate the server (e.g. grpc::SslServerCredentials for
  // TLS). nullptr: plaintext (grpc::InsecureServerCredentials()).
  std::shared_ptr<grpc::ServerCredentials> credentials;

  absl::Status Validate() const;
};

// Thread-safe.
class HarmambaServer {
 public:
  // The gRPC service name, also the health-check service name.
  static constexpr char kServiceName[] = "harmamba.v1.ActivityClassifier";

  // Builds the batchers and the service, registers health checking (overall
  // "" and kServiceName, both SERVING once started) and reflection, and
  // starts listening. `clock` (default real) and `metrics` (default no-op)
  // must outlive the server.
  static absl::StatusOr<std::unique_ptr<HarmambaServer>> Start(
      std::unique_ptr<ModelRegistry> registry, const ServerOptions& options,
      Clock* clock = nullptr, MetricsRecorder* metrics = nullptr);

  // Shutdown(absl::ZeroDuration()) unless already shut down.
  ~HarmambaServer();

  HarmambaServer(const HarmambaServer&) = delete;
  HarmambaServer& operator=(const HarmambaServer&) = delete;

  // The port the server listens on.
  int port() const { return port_; }
  const ModelRegistry& registry() const { return *registry_; }

  // Graceful shutdown, within `grace`:
  // 1. health checks report NOT_SERVING;
  // 2. new calls are refused with UNAVAILABLE; open streams stop reading and
  //    end with UNAVAILABLE after the results of the windows they already
  //    cut (a stream whose client has half-closed is answered in full);
  // 3. every accepted window is answered and every call finishes;
  // 4. at the deadline, windows still queued are answered UNAVAILABLE;
  // 5. gRPC stops accepting calls; calls still open (e.g. health Watch
  //    streams) get up to 1 s more, within the deadline, before gRPC cancels
  //    them and the server stops.
  // Returns once stopped. Later calls (from any thread) wait for the first.
  void Shutdown(absl::Duration grace);

  // Blocks until a Shutdown() has completed.
  void Wait();

 private:
  HarmambaServer() = default;

  std::unique_ptr<ModelRegistry> registry_;
  Clock* clock_ = nullptr;
  std::map<std::string, std::unique_ptr<Batcher>> batchers_;
  std::unique_ptr<ActivityClassifierService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;

  absl::Mutex shutdown_mu_;
  bool shutdown_started_ ABSL_GUARDED_BY(shutdown_mu_) = false;
  absl::Notification stopped_;
};

}  // namespace harmamba

#endif  // HARMAMBA_SERVER_SERVER_H_
