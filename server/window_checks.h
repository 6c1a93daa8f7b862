// Checks on client-supplied samples and the translation of logits into an
// answer: the domain side of the handlers, free of gRPC.
#ifndef HARMAMBA_SERVER_WINDOW_CHECKS_H_
#define HARMAMBA_SERVER_WINDOW_CHECKS_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "model/config.h"

namespace harmamba {

// Checks one window for `config`: `stated_channels` (0 = not stated) must
// equal the model's channel count, `samples` must hold window_length x
// channels floats, all finite. INVALID_ARGUMENT naming `field` (e.g.
// "windows[3]") and the expected value otherwise.
absl::Status CheckWindow(absl::Span<const float> samples,
                         int32_t stated_channels, const ModelConfig& config,
                         absl::string_view field);

// Checks one stream chunk: at least one sample, a whole number of samples of
// the model's channel count, `stated_channels` as above, all finite.
absl::Status CheckChunk(absl::Span<const float> samples,
                        int32_t stated_channels, const ModelConfig& config,
                        absl::string_view field);

// The answer for one window's logits: the most probable class (the first on
// ties) and the softmax probabilities.
struct ClassScores {
  int class_index = 0;
  std::vector<float> probabilities;
};
ClassScores ScoreLogits(absl::Span<const float> logits);

}  // namespace harmamba

#endif  // HARMAMBA_SERVER_WINDOW_CHECKS_H_
