// Cuts a stream of sensor samples into overlapping windows (design.md §4).
#ifndef HARMAMBA_SERVER_STREAM_WINDOWER_H_
#define HARMAMBA_SERVER_STREAM_WINDOWER_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace harmamba {

// Windows of `window_length` samples start at sample offsets 0, hop, 2*hop,
// ... of the stream (sample = `channels` floats, sample-major). Append()
// samples in chunks of any size; Next() yields each window once it is
// complete, in order. A trailing partial window is never yielded:
// leftover_samples() says how many samples follow the last window.
//
// Memory: holds only the samples a future window still needs (at most one
// window plus the last appended chunk).
//
// Thread-compatible (a plain value; no gRPC, no locks).
class StreamWindower {
 public:
  struct Window {
    int64_t index = 0;           // 0, 1, 2, ...
    int64_t start_sample = 0;    // index * hop
    int64_t end_sample = 0;      // start_sample + window_length (exclusive)
    std::vector<float> samples;  // window_length * channels floats
  };

  // window_length, channels and hop must be >= 1 (INVALID_ARGUMENT naming the
  // parameter otherwise). hop > window_length skips the samples in between.
  static absl::StatusOr<StreamWindower> Create(int window_length, int channels,
                                               int hop);

  // Appends whole samples; `floats.size()` must be a multiple of channels()
  // (INVALID_ARGUMENT otherwise, and nothing is appended).
  absl::Status Append(absl::Span<const float> floats);

  // Whether Next() would yield a window.
  bool HasWindow() const;
  // The next complete window, or nullopt.
  std::optional<Window> Next();

  int window_length() const { return window_length_; }
  int channels() const { return channels_; }
  int hop() const { return hop_; }
  int64_t samples_received() const { return samples_received_; }
  int64_t windows_cut() const { return windows_cut_; }
  // Samples after the end of the last window yielded (all samples if none).
  int64_t leftover_samples() const;
  // Samples held for future windows.
  int64_t buffered_samples() const {
    return samples_received_ - buffer_first_sample_;
  }

 private:
  StreamWindower(int window_length, int channels, int hop);
  // Drops buffered samples before `sample` (absolute index).
  void DiscardBefore(int64_t sample);

  int window_length_;
  int channels_;
  int hop_;
  int64_t samples_received_ = 0;
  int64_t windows_cut_ = 0;
  // Samples [buffer_first_sample_, samples_received_) are in
  // buffer_[buffer_offset_ ...]; earlier floats of buffer_ are dead and are
  // compacted away when they make up more than half of it.
  std::vector<float> buffer_;
  size_t buffer_offset_ = 0;
  int64_t buffer_first_sample_ = 0;
};

}  // namespace harmamba

#endif  // HARMAMBA_SERVER_STREAM_WINDOWER_H_
