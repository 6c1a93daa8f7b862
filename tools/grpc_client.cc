#include "tools/grpc_client.h"

#include <cmath>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "model/array_io.h"

namespace harmamba::cli {

void AddConnectionFlags(FlagParser& flags, ConnectionOptions* options) {
  flags.AddString("target", "HOST:PORT", "Server address.", &options->target);
  flags.AddBool("tls", "Connect with TLS (default: plaintext).", &options->tls);
  flags.AddString("tls-ca", "FILE",
                  "PEM root certificates to verify the server with (default: "
                  "gRPC's roots). Needs --tls.",
                  &options->tls_ca);
  flags.AddString("tls-server-name", "NAME",
                  "Name the server's certificate must carry, if not the "
                  "target's host. Needs --tls.",
                  &options->tls_server_name);
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateChannel(
    const ConnectionOptions& options, int connection_index) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  args.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  // Distinct arguments give distinct subchannels, hence connections.
  if (connection_index > 0)
    args.SetInt("harmamba.connection", connection_index);
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.tls) {
    grpc::SslCredentialsOptions ssl;
    if (!options.tls_ca.empty()) {
      absl::StatusOr<std::string> pem = ReadWholeFile(options.tls_ca);
      if (!pem.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--tls-ca: ", pem.status().message()));
      }
      ssl.pem_root_certs = std::move(*pem);
    }
    if (!options.tls_server_name.empty()) {
      args.SetSslTargetNameOverride(options.tls_server_name);
    }
    credentials = grpc::SslCredentials(ssl);
  } else {
    if (!options.tls_ca.empty() || !options.tls_server_name.empty()) {
      return absl::InvalidArgumentError(
          "--tls-ca and --tls-server-name need --tls");
    }
    credentials = grpc::InsecureChannelCredentials();
  }
  return grpc::CreateCustomChannel(options.target, credentials, args);
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

std::string GrpcCodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

absl::StatusOr<v1::ModelInfo> FetchModelInfo(v1::ActivityClassifier::Stub& stub,
                                             const std::string& target,
                                             const std::string& model,
                                             absl::Duration deadline) {
  grpc::ClientContext context;
  if (deadline != absl::InfiniteDuration()) {
    context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  }
  v1::GetModelInfoRequest request;
  request.set_model(model);
  v1::ModelInfo info;
  const grpc::Status status = stub.GetModelInfo(&context, request, &info);
  if (!status.ok()) {
    return absl::Status(
        static_cast<absl::StatusCode>(status.error_code()),
        absl::StrCat("GetModelInfo(", model.empty() ? "default model" : model,
                     ") at ", target, ": ", GrpcCodeName(status.error_code()),
                     ": ", status.error_message()));
  }
  return info;
}

absl::StatusOr<std::vector<float>> ReadRecording(const std::string& path,
                                                 int channels) {
  const std::string lower = absl::AsciiStrToLower(path);
  if (absl::EndsWith(lower, ".csv")) {
    absl::StatusOr<WindowArray> rows = ReadCsvWindows(path, 1, channels);
    if (!rows.ok()) return rows.status();
    return std::move(rows->data);
  }
  if (absl::EndsWith(lower, ".f32")) {
    absl::StatusOr<WindowArray> rows = ReadF32Windows(path, 1, channels);
    if (!rows.ok()) return rows.status();
    return std::move(rows->data);
  }
  if (absl::EndsWith(lower, ".npy")) {
    absl::StatusOr<NpyArray> array = ReadNpy(path);
    if (!array.ok()) return array.status();
    if (array->shape.empty() || array->shape.back() != channels ||
        array->numel() == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": expected an array whose last dimension is ", channels,
          " channels, got shape (", absl::StrJoin(array->shape, ", "), ")"));
    }
    std::vector<float> samples;
    if (array->is_integer) {
      samples.assign(array->int_data.begin(), array->int_data.end());
    } else {
      samples = std::move(array->float_data);
    }
    for (size_t i = 0; i < samples.size(); ++i) {
      if (!std::isfinite(samples[i])) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": value ", i, " is not finite (", samples[i], ")"));
      }
    }
    return samples;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": unknown extension, expected .npy, .f32 or .csv"));
}

}  // namespace harmamba::cli
