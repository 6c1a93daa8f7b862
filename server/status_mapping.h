// The one place where internal absl::Status codes become gRPC status codes.
#ifndef HARMAMBA_SERVER_STATUS_MAPPING_H_
#define HARMAMBA_SERVER_STATUS_MAPPING_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace harmamba {

// Both follow the canonical codes (google.rpc.Code); the mapping is an
// explicit switch so that a new or out-of-range code becomes UNKNOWN instead
// of an arbitrary integer on the wire.
grpc::StatusCode ToGrpcCode(absl::StatusCode code);

// Same code (via ToGrpcCode) and message. OK maps to grpc::Status::OK.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace harmamba

#endif  // HARMAMBA_SERVER_STATUS_MAPPING_H_
