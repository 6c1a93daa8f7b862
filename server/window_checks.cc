#include "server/window_checks.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace harmamba {
namespace {

absl::Status CheckStatedChannels(int32_t stated_channels,
                                 const ModelConfig& config,
                                 absl::string_view field) {
  if (stated_channels != 0 && stated_channels != config.num_channels()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".num_channels: expected ", config.num_channels(),
                     " (the channels of model '", config.name, "') or 0, got ",
                     stated_channels));
  }
  return absl::OkStatus();
}

absl::Status CheckFinite(absl::Span<const float> samples,
                         const ModelConfig& config, absl::string_view field) {
  for (size_t i = 0; i < samples.size(); ++i) {
    if (!std::isfinite(samples[i])) {
      const int c = config.num_channels();
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".samples[", i, "] (sample ", i / c,
                       ", channel '", config.channels[i % c],
                       "'): expected a finite value, got ", samples[i]));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckWindow(absl::Span<const float> samples,
                         int32_t stated_channels, const ModelConfig& config,
                         absl::string_view field) {
  if (absl::Status s = CheckStatedChannels(stated_channels, config, field);
      !s.ok()) {
    return s;
  }
  const size_t expected = static_cast<size_t>(config.window_floats());
  if (samples.size() != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".samples: expected ", expected, " floats (",
                     config.window_length, " samples x ", config.num_channels(),
                     " channels, sample-major) for model '", config.name,
                     "', got ", samples.size()));
  }
  return CheckFinite(samples, config, field);
}

absl::Status CheckChunk(absl::Span<const float> samples,
                        int32_t stated_channels, const ModelConfig& config,
                        absl::string_view field) {
  if (absl::Status s = CheckStatedChannels(stated_channels, config, field);
      !s.ok()) {
    return s;
  }
  const size_t channels = static_cast<size_t>(config.num_channels());
  if (samples.empty() || samples.size() % channels != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".samples: expected a positive multiple of ", channels,
        " floats (whole samples of ", channels, " channels) for model '",
        config.name, "', got ", samples.size()));
  }
  return CheckFinite(samples, config, field);
}

ClassScores ScoreLogits(absl::Span<const float> logits) {
  ClassScores scores;
  if (logits.empty()) return scores;
  const auto max_it = std::max_element(logits.begin(), logits.end());
  scores.class_index = static_cast<int>(max_it - logits.begin());
  const double max = *max_it;
  scores.probabilities.resize(logits.size());
  double sum = 0.0;
  for (size_t k = 0; k < logits.size(); ++k) {
    const double e = std::exp(static_cast<double>(logits[k]) - max);
    scores.probabilities[k] = static_cast<float>(e);
    sum += e;
  }
  for (float& p : scores.probabilities) p = static_cast<float>(p / sum);
  return scores;
}

}  // namespace harmamba
