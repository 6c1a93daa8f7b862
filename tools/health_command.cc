// harmamba health: the gRPC health check of a running server (for container
// health checks and scripts).
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "tools/commands.h"
#include "tools/grpc_client.h"

namespace harmamba::cli {
namespace {

using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;

constexpr char kCommand[] = "health";

}  // namespace

int RunHealth(const std::vector<std::string>& args, std::ostream& out,
              std::ostream& err) {
  ConnectionOptions connection;
  std::string service;
  int64_t timeout_ms = 3000;
  FlagParser flags(
      kCommand, "[--target HOST:PORT] [--service NAME] [options]",
      "Asks a server's grpc.health.v1.Health service whether it serves and "
      "prints its status (SERVING, NOT_SERVING, ...). Exit code 0 only when "
      "SERVING, 1 otherwise (also when the server cannot be reached within "
      "--timeout-ms).");
  AddConnectionFlags(flags, &connection);
  flags.AddString("service", "NAME",
                  "Service to check: empty = the whole server, or "
                  "harmamba.v1.ActivityClassifier.",
                  &service);
  flags.AddInt("timeout-ms", "MS", "Deadline of the check.", &timeout_ms, 1,
               int64_t{1} << 31);
  if (std::optional<int> exit_code = flags.ParseOrReport(args, out, err)) {
    return *exit_code;
  }
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      CreateChannel(connection);
  if (!channel.ok()) return ReportRuntimeError(kCommand, channel.status(), err);
  std::unique_ptr<Health::Stub> stub = Health::NewStub(*channel);
  grpc::ClientContext context;
  context.set_deadline(
      absl::ToChronoTime(absl::Now() + absl::Milliseconds(timeout_ms)));
  HealthCheckRequest request;
  request.set_service(service);
  HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) {
    return ReportRuntimeError(
        kCommand,
        absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                     absl::StrCat(connection.target, ": ",
                                  GrpcCodeName(status.error_code()), ": ",
                                  status.error_message())),
        err);
  }
  out << HealthCheckResponse::ServingStatus_Name(response.status()) << "\n";
  return response.status() == HealthCheckResponse::SERVING ? kExitOk
                                                           : kExitRuntimeError;
}

}  // namespace harmamba::cli
