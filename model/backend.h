// The interface between the serving layer and a model implementation.
#ifndef HARMAMBA_MODEL_BACKEND_H_
#define HARMAMBA_MODEL_BACKEND_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/config.h"

namespace harmamba {

// Runs a HARMamba forward pass on a batch of raw (un-standardised) windows.
//
// Thread-compatibility: Run() may be called by one thread at a time (the
// executor that owns the backend); config() and device() from any thread.
class ModelBackend {
 public:
  virtual ~ModelBackend() = default;

  virtual const ModelConfig& config() const = 0;

  // A short human-readable name of where and how the model runs, e.g.
  // "cpu-fused (2 threads)".
  virtual std::string description() const = 0;

  // `windows` holds n * T * C floats (sample-major: window, time, channel);
  // writes n * K logits. n may be any value >= 1.
  virtual absl::Status Run(const float* windows, int64_t n, float* logits) = 0;
};

}  // namespace harmamba

#endif  // HARMAMBA_MODEL_BACKEND_H_
