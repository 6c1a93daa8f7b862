#include "server/server.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "grpc/grpc.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace harmamba {
namespace {

// How long calls still open after the drain may take to finish.
constexpr absl::Duration kFinalCallsTail = absl::Seconds(1);

}  // namespace

absl::Status ServerOptions::Validate() const {
  if (address.empty()) {
    return absl::InvalidArgumentError("address: expected host:port");
  }
  if (max_message_bytes < 1024) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_message_bytes: expected >= 1024, got ", max_message_bytes));
  }
  if (absl::Status s = batcher.Validate(); !s.ok()) return s;
  return service.Validate();
}

absl::StatusOr<std::unique_ptr<HarmambaServer>> HarmambaServer::Start(
    std::unique_ptr<ModelRegistry> registry, const ServerOptions& options,
    Clock* clock, MetricsRecorder* metrics) {
  if (registry == nullptr) {
    return absl::InvalidArgumentError("registry: expected a model registry");
  }
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  clock = clock != nullptr ? clock : Clock::Real();
  metrics = metrics != nullptr ? metrics : NoopMetricsRecorder();

  std::unique_ptr<HarmambaServer> server(new HarmambaServer());
  server->registry_ = std::move(registry);
  server->clock_ = clock;
  std::map<std::string, Batcher*> batchers;
  for (const auto& model : server->registry_->models()) {
    BatcherOptions batcher_options = options.batcher;
    batcher_options.model_name = model->name;
    absl::StatusOr<std::unique_ptr<Batcher>> batcher =
        Batcher::Create(batcher_options, model->backend.get(), clock, metrics);
    if (!batcher.ok()) return batcher.status();
    batchers[model->name] = batcher->get();
    server->batchers_[model->name] = std::move(*batcher);
  }
  server->service_ = std::make_unique<ActivityClassifierService>(
      server->registry_.get(), std::move(batchers), options.service, clock,
      metrics);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.address,
                           options.credentials != nullptr
                               ? options.credentials
                               : grpc::InsecureServerCredentials(),
                           &server->port_);
  // Fail on a port another process already serves instead of silently
  // sharing its traffic (gRPC sets SO_REUSEPORT by default).
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.RegisterService(server->service_.get());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    // The batchers shut down with `server` (the destructor needs no gRPC
    // server).
    server->server_.reset();
    return absl::UnavailableError(
        absl::StrCat("address: cannot listen on '", options.address, "'",
                     options.credentials != nullptr
                         ? " (or the TLS certificate and key are not valid)"
                         : ""));
  }
  grpc::HealthCheckServiceInterface* health =
      server->server_->GetHealthCheckService();
  health->SetServingStatus("", true);
  health->SetServingStatus(kServiceName, true);
  return server;
}

HarmambaServer::~HarmambaServer() { Shutdown(absl::ZeroDuration()); }

void HarmambaServer::Shutdown(absl::Duration grace) {
  bool first;
  {
    absl::MutexLock lock(&shutdown_mu_);
    first = !shutdown_started_;
    shutdown_started_ = true;
  }
  if (!first) {
    stopped_.WaitForNotification();
    return;
  }
  const absl::Time deadline = clock_->Now() + grace;

  if (server_ != nullptr) {
    grpc::HealthCheckServiceInterface* health =
        server_->GetHealthCheckService();
    health->SetServingStatus("", false);
    health->SetServingStatus(kServiceName, false);
  }
  // New calls are refused from here on and open streams stop reading; what
  // was accepted (including the rest of streams whose client has finished
  // sending) is still scheduled and answered.
  if (service_ != nullptr) {
    service_->BeginShutdown();
    service_->WaitForCallsToFinish(deadline);
  }
  // Whatever the deadline cut short is answered UNAVAILABLE, so that every
  // call is finished before gRPC waits for them below.
  for (auto& [name, batcher] : batchers_) batcher->Shutdown();
  if (server_ != nullptr) {
    // Everything accepted has been answered (or the deadline has passed).
    // gRPC now refuses new calls; calls that are still open (refusals on
    // their way out, health Watch streams) get a short tail, within the
    // deadline, before gRPC cancels them.
    const absl::Time stop_by =
        std::min(deadline, clock_->Now() + kFinalCallsTail);
    server_->Shutdown(absl::ToChronoTime(stop_by));
    server_->Wait();
  }
  stopped_.Notify();
}

void HarmambaServer::Wait() { stopped_.WaitForNotification(); }

}  // namespace harmamba
