// Shared pieces of `harmamba client` and `harmamba loadgen`: connection flags
// (target, TLS), channels, status conversion, and reading a recording.
//
// Thread-compatible functions; channels and stubs are thread-safe (gRPC).
#ifndef HARMAMBA_TOOLS_GRPC_CLIENT_H_
#define HARMAMBA_TOOLS_GRPC_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/support/status.h"
#include "harmamba/v1/harmamba.grpc.pb.h"
#include "tools/flag_parser.h"

namespace harmamba::cli {

struct ConnectionOptions {
  std::string target = "localhost:50051";
  // TLS instead of plaintext. Root certificates come from `tls_ca` (a PEM
  // file) or, when empty, gRPC's default roots.
  bool tls = false;
  std::string tls_ca;
  // The name the server's certificate must carry, when it differs from the
  // target's host (e.g. connecting by IP address).
  std::string tls_server_name;
  // Largest message received (ClassifyBatch responses grow with the batch).
  int64_t max_message_bytes = 64 << 20;
};

// Registers --target, --tls, --tls-ca, --tls-server-name on `flags`.
void AddConnectionFlags(FlagParser& flags, ConnectionOptions* options);

// A channel to options.target. `connection_index` > 0 gives a channel with
// its own TCP connection (gRPC shares one per target otherwise). Fails when
// the CA file cannot be read or --tls-ca/--tls-server-name is set without
// --tls.
absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateChannel(
    const ConnectionOptions& options, int connection_index = 0);

// The gRPC status as an absl::Status (same code and message).
absl::Status FromGrpcStatus(const grpc::Status& status);

// "OK", "INVALID_ARGUMENT", ... for a gRPC status code.
std::string GrpcCodeName(grpc::StatusCode code);

// GetModelInfo for `model` ("" = the server's default), within `deadline`
// (absl::InfiniteDuration() = none). The error names the target.
absl::StatusOr<v1::ModelInfo> FetchModelInfo(v1::ActivityClassifier::Stub& stub,
                                             const std::string& target,
                                             const std::string& model,
                                             absl::Duration deadline);

// A recording as one continuous stream of samples (sample-major, `channels`
// values per sample), chosen by extension like ReadWindows:
//   .csv  every row, in order (no window cutting, nothing left over);
//   .npy  float or integer array whose last dimension is `channels`
//         ((T, C) or (N, T, C): windows are concatenated);
//   .f32  headerless float32, a multiple of `channels` values.
absl::StatusOr<std::vector<float>> ReadRecording(const std::string& path,
                                                 int channels);

}  // namespace harmamba::cli

#endif  // HARMAMBA_TOOLS_GRPC_CLIENT_H_
