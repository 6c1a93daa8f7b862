// The hyper-parameters and serving metadata of one HARMamba model.
//
// A ModelConfig is a plain value: copyable, no internal synchronisation.
#ifndef HARMAMBA_MODEL_CONFIG_H_
#define HARMAMBA_MODEL_CONFIG_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace harmamba {

struct ModelConfig {
  // Identification (plain strings in the metadata).
  std::string name = "harmamba";
  std::string version = "1";

  // Input window: `window_length` samples of `channels.size()` channels.
  int window_length = 128;
  std::vector<std::string> channels;
  double sample_rate_hz = 50.0;

  // Architecture (design.md §1).
  int patch = 16;
  int stride = 16;
  int d_model = 64;
  int depth = 12;  // number of Mamba layers; must be even (bidirectional pairs)
  int d_state = 16;
  int d_conv = 4;
  int expand = 2;

  std::vector<std::string> classes;

  // Per-channel input standardisation: network input = (x - mean) / std.
  std::vector<float> mean;
  std::vector<float> std;

  // Every other `__metadata__` entry of the file (e.g. evaluation figures),
  // kept verbatim so that load -> save round-trips.
  std::map<std::string, std::string> extra;

  int num_channels() const { return static_cast<int>(channels.size()); }
  int num_classes() const { return static_cast<int>(classes.size()); }
  int num_patches() const { return (window_length - patch) / stride + 1; }
  // Tokens per window including the cls token: num_patches * C + 1.
  int num_tokens() const { return num_patches() * num_channels() + 1; }
  int d_inner() const { return expand * d_model; }
  int dt_rank() const { return (d_model + 15) / 16; }
  int num_pairs() const { return depth / 2; }
  // Floats in one input window (T * C).
  int window_floats() const { return window_length * num_channels(); }

  // Checks ranges and consistency; the message names the offending key.
  absl::Status Validate() const;
};

// Metadata keys (all prefixed "harmamba.").
inline constexpr char kMetadataPrefix[] = "harmamba.";

// Parses the `harmamba.*` entries of a safetensors `__metadata__` map.
// `harmamba.name` and `harmamba.version` are plain strings; every other value
// is JSON text. Missing required keys or bad JSON are errors naming the key.
// Unknown keys are kept in `extra`. Calls Validate().
absl::StatusOr<ModelConfig> ConfigFromMetadata(
    const std::map<std::string, std::string>& metadata);

// The inverse of ConfigFromMetadata (includes `extra`).
std::map<std::string, std::string> ConfigToMetadata(const ModelConfig& config);

// Parses a JSON object whose keys are the metadata key names, with or without
// the "harmamba." prefix, and whose values are JSON values (not JSON text),
// e.g. {"window_length": 128, "channels": ["x","y","z"], ...}. Keys that are
// absent take the defaults above, except channels and classes which are
// required; mean/std default to 0/1 per channel. Unknown keys are an error
// (in a hand-written config they are usually typos). Calls Validate(). Used by
// `harmamba init`.
absl::StatusOr<ModelConfig> ConfigFromJson(const std::string& json_text);

}  // namespace harmamba

#endif  // HARMAMBA_MODEL_CONFIG_H_
