// Training-time augmentation of sensor windows (torch-free, so it is tested
// without LibTorch): per-window amplitude scaling, additive Gaussian jitter,
// small random 3-D rotations applied to every xyz triad of a window alike,
// speed changes (time warping), circular time shifts, and mixup of windows.
//
// Everything works on raw windows in the dataset's units (row-major (T, C),
// before the model's input standardisation) and draws its randomness from a
// caller-owned std::mt19937_64 through the helpers below, which are the same
// on every platform (std's distributions are implementation-defined). A
// caller that seeds the engine from (seed, epoch) gets the same augmented
// windows on every run.
//
// Thread-safety: the functions touch only their arguments.
#ifndef HARMAMBA_MODEL_AUGMENT_H_
#define HARMAMBA_MODEL_AUGMENT_H_

#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace harmamba {

// What to do to each training window. All off by default (the authors'
// recipe has no augmentation). Applied in the order: rotation, scaling,
// speed change, jitter, time shift.
struct WindowAugmentation {
  // Amplitude scaling: multiply a window's channels by 1 + scale_sigma * z,
  // z ~ N(0, 1) (clamped to >= 0.05), one z per xyz triad (and per channel
  // outside triads), or one per channel with scale_per_channel.
  double scale_sigma = 0.0;
  bool scale_per_channel = false;
  // Additive jitter: x += jitter_sigma * channel_std * z, z ~ N(0, 1) per
  // sample, where channel_std is the channel's training standard deviation.
  double jitter_sigma = 0.0;
  // Rotation: one rotation per window, about a uniformly random axis by an
  // angle uniform in [-rotate_max_degrees, rotate_max_degrees], applied to
  // every xyz triad (e.g. body_acc, body_gyro and total_acc together, as if
  // the phone sat at a slightly different angle). Needs >= 1 triad. Large
  // angles blur the orientation of gravity, which separates sitting from
  // standing; keep them small.
  double rotate_max_degrees = 0.0;
  // Speed change: resample the window as if the movement ran f times as
  // fast, f uniform in [1 - speed_max, 1 + speed_max] (see ResampleWindow),
  // because people walk and climb at different cadences. In [0, 0.5].
  double speed_max = 0.0;
  // Circular time shift by an integer uniform in [-shift_max, shift_max]
  // samples (0: none).
  int shift_max = 0;

  bool enabled() const {
    return scale_sigma > 0.0 || jitter_sigma > 0.0 ||
           rotate_max_degrees > 0.0 || speed_max > 0.0 || shift_max > 0;
  }
  // Ranges: sigmas in [0, 1], angle in [0, 180], speed_max in [0, 0.5],
  // 0 <= shift_max. The message names the field.
  absl::Status Validate() const;
  // E.g. "rotate 10 deg, scale 0.1 per triad, speed 0.1, jitter 0.05 std,
  // shift 16", or "none".
  std::string Describe() const;
};

// The xyz triads among `channel_names`: channels named P_x, P_y, P_z (or
// P_X, ...) for the same prefix P, as {index of x, index of y, index of z},
// in the order of their x channel.
std::vector<std::array<int, 3>> FindTriads(
    const std::vector<std::string>& channel_names);

// Augments `n` windows of `t` x `c` floats at `x` in place, window by window,
// drawing from `engine`. `channel_std` (size c) scales the jitter; `triads`
// (from FindTriads) are rotated and share a scale factor. Does nothing (and
// draws nothing) when !augmentation.enabled().
void AugmentWindows(const WindowAugmentation& augmentation,
                    const std::vector<std::array<int, 3>>& triads,
                    const std::vector<float>& channel_std, int64_t n, int64_t t,
                    int64_t c, float* x, std::mt19937_64& engine);

// Rotates every sample of each triad of the window at `x` ((t, c)) by the
// row-major 3x3 matrix `rotation`.
void RotateTriads(const double rotation[9],
                  const std::vector<std::array<int, 3>>& triads, int64_t t,
                  int64_t c, float* x);

// Resamples the window at `x` ((t, c)) so that it shows the movement
// `speed` times as fast: out[i] = x at time m + (i - m) * speed, m = (t - 1)
// / 2 (the middle stays put), by linear interpolation between samples.
// Times outside [0, t - 1] wrap around, as the circular shift does. speed 1
// leaves the window as it is. `scratch` is working memory.
void ResampleWindow(double speed, int64_t t, int64_t c, float* x,
                    std::vector<float>& scratch);

// The rotation by `radians` about the unit vector `axis` (Rodrigues),
// row-major.
void AxisAngleRotation(const double axis[3], double radians,
                       double rotation[9]);

// Mixup: window i becomes lambda * x[i] + (1 - lambda) * x[partner[i]]
// (computed from the unmixed windows). partner has n entries in [0, n).
void MixWindows(double lambda, const std::vector<int64_t>& partner, int64_t n,
                int64_t window_floats, float* x);

// Portable draws from `engine`.
double UniformUnit(std::mt19937_64& engine);                // [0, 1), 53 bits
double StandardNormal(std::mt19937_64& engine);             // Box-Muller
double SampleGamma(std::mt19937_64& engine, double shape);  // shape > 0
double SampleBeta(std::mt19937_64& engine, double alpha, double beta);

}  // namespace harmamba

#endif  // HARMAMBA_MODEL_AUGMENT_H_
