#include "model/augment.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace harmamba {
namespace {

constexpr double kPi = 3.14159265358979323846;

// A uniform integer in [lo, hi] (hi - lo small), without modulo bias.
int64_t UniformInt(std::mt19937_64& engine, int64_t lo, int64_t hi) {
  const uint64_t bound = static_cast<uint64_t>(hi - lo) + 1;
  const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
  uint64_t value;
  do {
    value = engine();
  } while (value >= limit);
  return lo + static_cast<int64_t>(value % bound);
}

// i modulo t in [0, t), for any sign of i (t > 0): windows wrap at their
// ends for --shift and --speed.
int64_t WrapIndex(int64_t i, int64_t t) {
  const int64_t r = i % t;
  return r < 0 ? r + t : r;
}

void ShiftWindow(int64_t shift, int64_t t, int64_t c, float* x,
                 std::vector<float>& scratch) {
  shift = WrapIndex(shift, t);
  if (shift == 0) return;
  scratch.assign(x, x + t * c);
  for (int64_t i = 0; i < t; ++i) {
    std::copy_n(scratch.data() + i * c, c, x + WrapIndex(i + shift, t) * c);
  }
}

}  // namespace

void ResampleWindow(double speed, int64_t t, int64_t c, float* x,
                    std::vector<float>& scratch) {
  if (speed == 1.0) return;
  scratch.assign(x, x + t * c);
  const double middle = 0.5 * static_cast<double>(t - 1);
  for (int64_t i = 0; i < t; ++i) {
    const double time = middle + (static_cast<double>(i) - middle) * speed;
    const double floor = std::floor(time);
    const double weight = time - floor;
    const int64_t before = WrapIndex(static_cast<int64_t>(floor), t);
    const int64_t after = WrapIndex(before + 1, t);
    for (int64_t j = 0; j < c; ++j) {
      x[i * c + j] =
          static_cast<float>((1.0 - weight) * scratch[before * c + j] +
                             weight * scratch[after * c + j]);
    }
  }
}

absl::Status WindowAugmentation::Validate() const {
  auto sigma = [](const char* name, double value) -> absl::Status {
    if (!(value >= 0.0 && value <= 1.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, " must be in [0, 1], got ", value));
    }
    return absl::OkStatus();
  };
  if (absl::Status s = sigma("scale_sigma", scale_sigma); !s.ok()) return s;
  if (absl::Status s = sigma("jitter_sigma", jitter_sigma); !s.ok()) return s;
  if (!(rotate_max_degrees >= 0.0 && rotate_max_degrees <= 180.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rotate_max_degrees must be in [0, 180], got ", rotate_max_degrees));
  }
  if (!(speed_max >= 0.0 && speed_max <= 0.5)) {
    return absl::InvalidArgumentError(
        absl::StrCat("speed_max must be in [0, 0.5], got ", speed_max));
  }
  if (shift_max < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("shift_max must be >= 0, got ", shift_max));
  }
  return absl::OkStatus();
}

std::string WindowAugmentation::Describe() const {
  std::vector<std::string> parts;
  if (rotate_max_degrees > 0.0) {
    parts.push_back(absl::StrFormat("rotate %g deg", rotate_max_degrees));
  }
  if (scale_sigma > 0.0) {
    parts.push_back(absl::StrFormat("scale %g per %s", scale_sigma,
                                    scale_per_channel ? "channel" : "triad"));
  }
  if (speed_max > 0.0) parts.push_back(absl::StrFormat("speed %g", speed_max));
  if (jitter_sigma > 0.0) {
    parts.push_back(absl::StrFormat("jitter %g std", jitter_sigma));
  }
  if (shift_max > 0) parts.push_back(absl::StrFormat("shift %d", shift_max));
  return parts.empty() ? "none" : absl::StrJoin(parts, ", ");
}

std::vector<std::array<int, 3>> FindTriads(
    const std::vector<std::string>& channel_names) {
  // prefix -> indices of its x, y, z channels (-1: absent).
  std::map<std::string, std::array<int, 3>> by_prefix;
  for (int i = 0; i < static_cast<int>(channel_names.size()); ++i) {
    const std::string& name = channel_names[i];
    if (name.size() < 3 || name[name.size() - 2] != '_') continue;
    const char axis = static_cast<char>(name.back() | 0x20);  // lower case
    if (axis < 'x' || axis > 'z') continue;
    auto [it, inserted] = by_prefix.try_emplace(name.substr(0, name.size() - 2),
                                                std::array<int, 3>{-1, -1, -1});
    it->second[axis - 'x'] = i;
  }
  std::vector<std::array<int, 3>> triads;
  for (const auto& [prefix, axes] : by_prefix) {
    if (axes[0] >= 0 && axes[1] >= 0 && axes[2] >= 0) triads.push_back(axes);
  }
  std::sort(triads.begin(), triads.end());
  return triads;
}

void AxisAngleRotation(const double axis[3], double radians,
                       double rotation[9]) {
  const double x = axis[0], y = axis[1], z = axis[2];
  const double cos_a = std::cos(radians), sin_a = std::sin(radians);
  const double k = 1.0 - cos_a;
  const double r[9] = {
      cos_a + x * x * k,     x * y * k - z * sin_a, x * z * k + y * sin_a,
      y * x * k + z * sin_a, cos_a + y * y * k,     y * z * k - x * sin_a,
      z * x * k - y * sin_a, z * y * k + x * sin_a, cos_a + z * z * k,
  };
  std::copy_n(r, 9, rotation);
}

void RotateTriads(const double rotation[9],
                  const std::vector<std::array<int, 3>>& triads, int64_t t,
                  int64_t c, float* x) {
  for (int64_t i = 0; i < t; ++i) {
    float* row = x + i * c;
    for (const std::array<int, 3>& triad : triads) {
      const double v[3] = {row[triad[0]], row[triad[1]], row[triad[2]]};
      for (int k = 0; k < 3; ++k) {
        row[triad[k]] = static_cast<float>(rotation[3 * k] * v[0] +
                                           rotation[3 * k + 1] * v[1] +
                                           rotation[3 * k + 2] * v[2]);
      }
    }
  }
}

void AugmentWindows(const WindowAugmentation& augmentation,
                    const std::vector<std::array<int, 3>>& triads,
                    const std::vector<float>& channel_std, int64_t n, int64_t t,
                    int64_t c, float* x, std::mt19937_64& engine) {
  if (!augmentation.enabled()) return;
  // Which scale factor each channel uses: its triad's, or its own.
  std::vector<int> scale_group(c);
  int groups = 0;
  if (augmentation.scale_per_channel) {
    for (int64_t j = 0; j < c; ++j) scale_group[j] = groups++;
  } else {
    std::fill(scale_group.begin(), scale_group.end(), -1);
    for (const std::array<int, 3>& triad : triads) {
      for (int j : triad) scale_group[j] = groups;
      ++groups;
    }
    for (int64_t j = 0; j < c; ++j) {
      if (scale_group[j] < 0) scale_group[j] = groups++;
    }
  }
  std::vector<double> factors(groups);
  std::vector<float> scratch;
  for (int64_t w = 0; w < n; ++w) {
    float* window = x + w * t * c;
    if (augmentation.rotate_max_degrees > 0.0 && !triads.empty()) {
      double axis[3];
      double norm = 0.0;
      do {
        for (double& a : axis) a = StandardNormal(engine);
        norm = std::sqrt(axis[0] * axis[0] + axis[1] * axis[1] +
                         axis[2] * axis[2]);
      } while (norm < 1e-9);
      for (double& a : axis) a /= norm;
      const double max_radians = augmentation.rotate_max_degrees * kPi / 180.0;
      const double angle = (2.0 * UniformUnit(engine) - 1.0) * max_radians;
      double rotation[9];
      AxisAngleRotation(axis, angle, rotation);
      RotateTriads(rotation, triads, t, c, window);
    }
    if (augmentation.scale_sigma > 0.0) {
      for (double& f : factors) {
        f = std::max(0.05,
                     1.0 + augmentation.scale_sigma * StandardNormal(engine));
      }
      for (int64_t i = 0; i < t; ++i) {
        for (int64_t j = 0; j < c; ++j) {
          window[i * c + j] =
              static_cast<float>(window[i * c + j] * factors[scale_group[j]]);
        }
      }
    }
    if (augmentation.speed_max > 0.0) {
      const double speed =
          1.0 + (2.0 * UniformUnit(engine) - 1.0) * augmentation.speed_max;
      ResampleWindow(speed, t, c, window, scratch);
    }
    if (augmentation.jitter_sigma > 0.0) {
      for (int64_t i = 0; i < t; ++i) {
        for (int64_t j = 0; j < c; ++j) {
          window[i * c + j] +=
              static_cast<float>(augmentation.jitter_sigma * channel_std[j] *
                                 StandardNormal(engine));
        }
      }
    }
    if (augmentation.shift_max > 0) {
      const int64_t shift =
          UniformInt(engine, -augmentation.shift_max, augmentation.shift_max);
      ShiftWindow(shift, t, c, window, scratch);
    }
  }
}

void MixWindows(double lambda, const std::vector<int64_t>& partner, int64_t n,
                int64_t window_floats, float* x) {
  const std::vector<float> original(x, x + n * window_floats);
  for (int64_t w = 0; w < n; ++w) {
    const float* a = original.data() + w * window_floats;
    const float* b = original.data() + partner[w] * window_floats;
    float* out = x + w * window_floats;
    for (int64_t k = 0; k < window_floats; ++k) {
      out[k] = static_cast<float>(lambda * a[k] + (1.0 - lambda) * b[k]);
    }
  }
}

double UniformUnit(std::mt19937_64& engine) {
  return static_cast<double>(engine() >> 11) * 0x1.0p-53;
}

double StandardNormal(std::mt19937_64& engine) {
  const double u1 = 1.0 - UniformUnit(engine);  // (0, 1]
  const double u2 = UniformUnit(engine);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * kPi * u2);
}

double SampleGamma(std::mt19937_64& engine, double shape) {
  if (shape < 1.0) {
    // Gamma(a) = Gamma(a + 1) * U^(1/a).
    const double u = 1.0 - UniformUnit(engine);
    return SampleGamma(engine, shape + 1.0) * std::pow(u, 1.0 / shape);
  }
  // Marsaglia and Tsang (2000).
  const double d = shape - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  while (true) {
    double z, v;
    do {
      z = StandardNormal(engine);
      v = 1.0 + c * z;
    } while (v <= 0.0);
    v = v * v * v;
    const double u = 1.0 - UniformUnit(engine);
    if (std::log(u) < 0.5 * z * z + d - d * v + d * std::log(v)) return d * v;
  }
}

double SampleBeta(std::mt19937_64& engine, double alpha, double beta) {
  const double a = SampleGamma(engine, alpha);
  const double b = SampleGamma(engine, beta);
  return a + b > 0.0 ? a / (a + b) : 0.5;
}

}  // namespace harmamba
