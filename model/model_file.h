// HARMamba weights: an in-memory representation and the safetensors format
// (design.md §2). No LibTorch here: the server and the CPU engine use this.
//
// All functions are thread-safe (no shared state).
#ifndef HARMAMBA_MODEL_MODEL_FILE_H_
#define HARMAMBA_MODEL_MODEL_FILE_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/config.h"

namespace harmamba {

// A dense, row-major float32 tensor on the host.
struct HostTensor {
  std::vector<int64_t> shape;
  std::vector<float> data;

  int64_t numel() const;
};

// A complete model: its config and every tensor, keyed by the authors'
// state_dict names ("layers.3.mixer.A_log", ...).
struct ModelWeights {
  ModelConfig config;
  std::map<std::string, HostTensor> tensors;

  // The tensor called `name`; the name must exist (checked by Validate).
  const HostTensor& at(const std::string& name) const;
  int64_t num_parameters() const;
};

// The tensors a model of `config` must have, with their shapes, in the
// canonical order (the authors' state_dict order). Excludes the optional
// `revin_layer.*` tensors.
std::vector<std::pair<std::string, std::vector<int64_t>>> ExpectedTensors(
    const ModelConfig& config);

// Checks that `weights.tensors` holds exactly ExpectedTensors(config) with the
// right shapes and only finite values. The message names the first problem.
absl::Status ValidateWeights(const ModelWeights& weights);

// Parses a safetensors image. Refuses (with a message naming the problem): a
// buffer shorter than 8 bytes, a header length larger than the buffer, bad
// JSON, an entry with a dtype other than F32, bad offsets, missing or extra
// tensors (`revin_layer.*` are accepted and dropped), wrong shapes, NaN/Inf,
// missing or malformed `harmamba.*` metadata.
absl::StatusOr<ModelWeights> ParseSafetensors(std::string_view bytes);

// Reads and parses a file; the error message starts with the path.
absl::StatusOr<ModelWeights> LoadModelFile(const std::string& path);

// Serialises `weights` (validated first) as safetensors: tensors in canonical
// order, 8-byte aligned header, metadata from ConfigToMetadata.
absl::StatusOr<std::string> SerializeSafetensors(const ModelWeights& weights);

// Writes atomically (temporary file + rename).
absl::Status SaveModelFile(const ModelWeights& weights,
                           const std::string& path);

// A freshly initialised model following design.md §1 "Init" (details and the
// choices made in model/init.cc), deterministic for a given seed on every
// standard library. `config` must pass Validate(); aborts otherwise.
ModelWeights InitModel(const ModelConfig& config, uint64_t seed);

}  // namespace harmamba

#endif  // HARMAMBA_MODEL_MODEL_FILE_H_
