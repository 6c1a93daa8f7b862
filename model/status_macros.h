// Helpers for absl::Status propagation, used across model/ and server/.
#ifndef HARMAMBA_MODEL_STATUS_MACROS_H_
#define HARMAMBA_MODEL_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define HARMAMBA_CONCAT_INNER_(a, b) a##b
#define HARMAMBA_CONCAT_(a, b) HARMAMBA_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                            \
  do {                                                   \
    ::absl::Status harmamba_status_ = (expr);            \
    if (!harmamba_status_.ok()) return harmamba_status_; \
  } while (0)

// `lhs = value-of(rexpr)` where rexpr is an absl::StatusOr<T>; returns the
// status from the enclosing function on error.
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  ASSIGN_OR_RETURN_IMPL_(HARMAMBA_CONCAT_(statusor_, __LINE__), lhs, rexpr)
#define ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                           \
  if (!statusor.ok()) return statusor.status();      \
  lhs = std::move(statusor).value()

#endif  // HARMAMBA_MODEL_STATUS_MACROS_H_
