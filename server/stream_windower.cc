#include "server/stream_windower.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace harmamba {

absl::StatusOr<StreamWindower> StreamWindower::Create(int window_length,
                                                      int channels, int hop) {
  if (window_length < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("window_length: expected >= 1, got ", window_length));
  }
  if (channels < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("channels: expected >= 1, got ", channels));
  }
  if (hop < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("hop: expected >= 1, got ", hop));
  }
  return StreamWindower(window_length, channels, hop);
}

StreamWindower::StreamWindower(int window_length, int channels, int hop)
    : window_length_(window_length), channels_(channels), hop_(hop) {}

absl::Status StreamWindower::Append(absl::Span<const float> floats) {
  if (floats.size() % channels_ != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("samples: expected a multiple of ", channels_,
                     " floats (whole samples of ", channels_,
                     " channels), got ", floats.size()));
  }
  const int64_t num_samples = floats.size() / channels_;
  // Samples before the next window's start are never needed (hop > length).
  const int64_t next_start = windows_cut_ * hop_;
  const int64_t skip =
      std::clamp<int64_t>(next_start - samples_received_, 0, num_samples);
  if (buffer_offset_ == buffer_.size()) {
    buffer_.clear();
    buffer_offset_ = 0;
    buffer_first_sample_ = samples_received_ + skip;
  }
  buffer_.insert(buffer_.end(), floats.begin() + skip * channels_,
                 floats.end());
  samples_received_ += num_samples;
  return absl::OkStatus();
}

bool StreamWindower::HasWindow() const {
  return windows_cut_ * hop_ + window_length_ <= samples_received_;
}

std::optional<StreamWindower::Window> StreamWindower::Next() {
  if (!HasWindow()) return std::nullopt;
  Window window;
  window.index = windows_cut_;
  window.start_sample = windows_cut_ * hop_;
  window.end_sample = window.start_sample + window_length_;
  const size_t begin =
      buffer_offset_ + (window.start_sample - buffer_first_sample_) * channels_;
  window.samples.assign(buffer_.begin() + begin,
                        buffer_.begin() + begin +
                            static_cast<size_t>(window_length_) * channels_);
  ++windows_cut_;
  DiscardBefore(windows_cut_ * hop_);
  return window;
}

int64_t StreamWindower::leftover_samples() const {
  if (windows_cut_ == 0) return samples_received_;
  return samples_received_ - ((windows_cut_ - 1) * hop_ + window_length_);
}

void StreamWindower::DiscardBefore(int64_t sample) {
  const int64_t buffered = samples_received_ - buffer_first_sample_;
  const int64_t drop =
      std::clamp<int64_t>(sample - buffer_first_sample_, 0, buffered);
  buffer_offset_ += drop * channels_;
  buffer_first_sample_ += drop;
  if (buffer_offset_ == buffer_.size()) {
    buffer_.clear();
    buffer_offset_ = 0;
  } else if (buffer_offset_ > buffer_.size() / 2) {
    buffer_.erase(buffer_.begin(), buffer_.begin() + buffer_offset_);
    buffer_offset_ = 0;
  }
}

}  // namespace harmamba
