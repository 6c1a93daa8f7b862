// Tests of the training-time window augmentation (model/augment.h): each
// transformation does what it says on random windows, the random draws are
// reproducible for a seed, and nothing happens when it is off.
#include "model/augment.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace harmamba {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kT = 40;

const std::vector<std::string> kNineChannels = {
    "body_acc_x",  "body_acc_y",  "body_acc_z",  "body_gyro_x", "body_gyro_y",
    "body_gyro_z", "total_acc_x", "total_acc_y", "total_acc_z"};

std::vector<float> RandomWindows(int64_t n, int64_t c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> value(0.3f, 1.0f);
  std::vector<float> x(n * kT * c);
  for (float& v : x) v = value(rng);
  return x;
}

double Norm3(const float* row, const std::array<int, 3>& triad) {
  double sum = 0.0;
  for (int k : triad) sum += double{row[k]} * row[k];
  return std::sqrt(sum);
}

TEST(FindTriadsTest, GroupsXyzChannelsByPrefix) {
  const auto triads = FindTriads(kNineChannels);
  ASSERT_EQ(triads.size(), 3u);
  EXPECT_EQ(triads[0], (std::array<int, 3>{0, 1, 2}));
  EXPECT_EQ(triads[1], (std::array<int, 3>{3, 4, 5}));
  EXPECT_EQ(triads[2], (std::array<int, 3>{6, 7, 8}));
  // Any order, upper-case axes, extra channels beside the triad.
  const auto shuffled = FindTriads({"acc_Z", "heart_rate", "acc_X", "acc_Y"});
  ASSERT_EQ(shuffled.size(), 1u);
  EXPECT_EQ(shuffled[0], (std::array<int, 3>{2, 3, 0}));
  // Incomplete triads are not triads.
  EXPECT_TRUE(FindTriads({"acc_x", "acc_y", "gyro_z"}).empty());
  EXPECT_TRUE(FindTriads({"x", "y", "z"}).empty());
}

TEST(WindowAugmentationTest, ValidatesAndDescribes) {
  WindowAugmentation a;
  EXPECT_TRUE(a.Validate().ok());
  EXPECT_FALSE(a.enabled());
  EXPECT_EQ(a.Describe(), "none");
  a.jitter_sigma = 1.5;
  EXPECT_THAT(a.Validate().message(), HasSubstr("jitter_sigma"));
  a = WindowAugmentation();
  a.rotate_max_degrees = -1;
  EXPECT_THAT(a.Validate().message(), HasSubstr("rotate_max_degrees"));
  a = WindowAugmentation();
  a.shift_max = -2;
  EXPECT_THAT(a.Validate().message(), HasSubstr("shift_max"));
  a = WindowAugmentation();
  a.speed_max = 0.6;
  EXPECT_THAT(a.Validate().message(), HasSubstr("speed_max"));
  a = WindowAugmentation();
  a.speed_max = 0.1;
  EXPECT_TRUE(a.enabled());
  EXPECT_EQ(a.Describe(), "speed 0.1");
  a = WindowAugmentation();
  a.scale_sigma = std::nan("");
  EXPECT_THAT(a.Validate().message(), HasSubstr("scale_sigma"));
  a = WindowAugmentation();
  a.rotate_max_degrees = 10;
  a.scale_sigma = 0.1;
  a.jitter_sigma = 0.05;
  a.shift_max = 16;
  EXPECT_TRUE(a.enabled());
  EXPECT_EQ(a.Describe(),
            "rotate 10 deg, scale 0.1 per triad, jitter 0.05 std, shift 16");
}

TEST(AugmentWindowsTest, OffChangesNothingAndDrawsNothing) {
  std::vector<float> x = RandomWindows(5, 9, 1);
  const std::vector<float> before = x;
  std::mt19937_64 engine(3), untouched(3);
  AugmentWindows(WindowAugmentation(), FindTriads(kNineChannels),
                 std::vector<float>(9, 1.0f), 5, kT, 9, x.data(), engine);
  EXPECT_EQ(x, before);
  EXPECT_EQ(engine(), untouched());
}

TEST(AugmentWindowsTest, SameSeedSameWindowsOtherSeedOthers) {
  WindowAugmentation a;
  a.rotate_max_degrees = 20;
  a.scale_sigma = 0.2;
  a.jitter_sigma = 0.1;
  a.speed_max = 0.1;
  a.shift_max = 8;
  const auto triads = FindTriads(kNineChannels);
  const std::vector<float> stds(9, 0.5f);
  auto run = [&](uint64_t seed) {
    std::vector<float> x = RandomWindows(6, 9, 2);
    std::mt19937_64 engine(seed);
    AugmentWindows(a, triads, stds, 6, kT, 9, x.data(), engine);
    return x;
  };
  const std::vector<float> first = run(11), again = run(11), other = run(12);
  EXPECT_EQ(std::memcmp(first.data(), again.data(), first.size() * 4), 0);
  EXPECT_NE(first, other);
  EXPECT_NE(first, RandomWindows(6, 9, 2));
}

TEST(AxisAngleRotationTest, IsARotationOfTheGivenAngle) {
  const double z_axis[3] = {0, 0, 1};
  double r[9];
  AxisAngleRotation(z_axis, std::acos(-1.0) / 2, r);
  // (1, 0, 0) -> (0, 1, 0) about z by +90 degrees.
  EXPECT_NEAR(r[0], 0.0, 1e-15);
  EXPECT_NEAR(r[3], 1.0, 1e-15);
  EXPECT_NEAR(r[6], 0.0, 1e-15);
  const double axis[3] = {0.48, -0.6, 0.64};  // unit length
  AxisAngleRotation(axis, 0.3, r);
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      double dot = 0.0;
      for (int k = 0; k < 3; ++k) dot += r[3 * i + k] * r[3 * j + k];
      EXPECT_NEAR(dot, i == j ? 1.0 : 0.0, 1e-14);
    }
  }
  // The axis is fixed; the trace is 1 + 2 cos(angle).
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(
        r[3 * i] * axis[0] + r[3 * i + 1] * axis[1] + r[3 * i + 2] * axis[2],
        axis[i], 1e-14);
  }
  EXPECT_NEAR(r[0] + r[4] + r[8], 1.0 + 2.0 * std::cos(0.3), 1e-14);
}

TEST(AugmentWindowsTest, RotationTurnsEveryTriadAlikeByAtMostTheAngle) {
  constexpr int64_t kN = 200;
  constexpr double kMaxDegrees = 12.0;
  // Channels 0-2 and 3-5 are triads; 6-8 repeat 0-2 (so both triads must get
  // the same rotation to stay equal); channel 9 stands alone.
  const std::vector<std::string> names = {"a_x", "a_y", "a_z", "b_x", "b_y",
                                          "b_z", "c_x", "c_y", "c_z", "alone"};
  std::vector<float> x = RandomWindows(kN, 10, 5);
  for (int64_t r = 0; r < kN * kT; ++r) {
    for (int k = 0; k < 3; ++k) x[r * 10 + 6 + k] = x[r * 10 + k];
  }
  const std::vector<float> before = x;
  WindowAugmentation a;
  a.rotate_max_degrees = kMaxDegrees;
  std::mt19937_64 engine(21);
  const auto triads = FindTriads(names);
  AugmentWindows(a, triads, std::vector<float>(10, 1.0f), kN, kT, 10, x.data(),
                 engine);
  double largest_degrees = 0.0;
  for (int64_t r = 0; r < kN * kT; ++r) {
    const float* in = before.data() + r * 10;
    const float* out = x.data() + r * 10;
    EXPECT_EQ(out[9], in[9]) << "a channel outside the triads changed";
    for (int k = 0; k < 3; ++k) EXPECT_EQ(out[6 + k], out[k]);
    // Inner products within and across triads are kept.
    double cross_in = 0.0, cross_out = 0.0;
    for (int k = 0; k < 3; ++k) {
      cross_in += double{in[k]} * in[3 + k];
      cross_out += double{out[k]} * out[3 + k];
    }
    EXPECT_NEAR(cross_out, cross_in, 1e-5);
    for (const auto& triad : triads) {
      const double norm = Norm3(in, triad);
      EXPECT_NEAR(Norm3(out, triad), norm, 1e-5 * (1.0 + norm));
      double dot = 0.0;
      for (int k : triad) dot += double{in[k]} * out[k];
      if (norm > 0.1) {
        const double cosine = std::min(1.0, dot / (norm * Norm3(out, triad)));
        largest_degrees = std::max(largest_degrees,
                                   std::acos(cosine) * 180.0 / std::acos(-1.0));
      }
    }
  }
  EXPECT_LE(largest_degrees, kMaxDegrees + 1e-3);
  EXPECT_GT(largest_degrees, 0.8 * kMaxDegrees) << "rotations too small";
}

TEST(AugmentWindowsTest, ScalingMultipliesATriadOrAChannelByOneFactor) {
  constexpr int64_t kN = 400;
  const auto triads = FindTriads(kNineChannels);
  for (const bool per_channel : {false, true}) {
    SCOPED_TRACE(per_channel ? "per channel" : "per triad");
    std::vector<float> x = RandomWindows(kN, 9, 7);
    const std::vector<float> before = x;
    WindowAugmentation a;
    a.scale_sigma = 0.2;
    a.scale_per_channel = per_channel;
    std::mt19937_64 engine(8);
    AugmentWindows(a, triads, std::vector<float>(9, 1.0f), kN, kT, 9, x.data(),
                   engine);
    double sum = 0.0, sum_sq = 0.0;
    int64_t factors = 0, differing_in_triad = 0;
    for (int64_t w = 0; w < kN; ++w) {
      double factor[9];
      for (int j = 0; j < 9; ++j) {
        const int64_t first = w * kT * 9 + j;
        int64_t largest = first;  // the factor from the largest sample
        for (int64_t i = 1; i < kT; ++i) {
          const int64_t at = first + i * 9;
          if (std::abs(before[at]) > std::abs(before[largest])) largest = at;
        }
        factor[j] = double{x[largest]} / before[largest];
        for (int64_t i = 0; i < kT; ++i) {
          const int64_t at = first + i * 9;
          EXPECT_NEAR(x[at], factor[j] * before[at], 1e-5)
              << "window " << w << " channel " << j;
        }
      }
      for (const auto& triad : triads) {
        if (std::abs(factor[triad[1]] - factor[triad[0]]) > 1e-4) {
          ++differing_in_triad;
        }
        // The independent draws: every channel's, or one per triad.
        for (int k = 0; k < (per_channel ? 3 : 1); ++k) {
          sum += factor[triad[k]];
          sum_sq += factor[triad[k]] * factor[triad[k]];
          ++factors;
        }
      }
    }
    if (per_channel) {
      EXPECT_GT(differing_in_triad, 0.9 * kN * 3);  // kN windows x 3 triads
    } else {
      EXPECT_EQ(differing_in_triad, 0);
    }
    const double mean = sum / factors;
    EXPECT_NEAR(mean, 1.0, 0.03);
    EXPECT_NEAR(std::sqrt(sum_sq / factors - mean * mean), 0.2, 0.03);
  }
}

TEST(AugmentWindowsTest, JitterAddsNoiseScaledByEachChannelsStd) {
  constexpr int64_t kN = 100;
  std::vector<float> x = RandomWindows(kN, 3, 9);
  const std::vector<float> before = x;
  const std::vector<float> stds = {0.1f, 1.0f, 20.0f};
  WindowAugmentation a;
  a.jitter_sigma = 0.05;
  std::mt19937_64 engine(10);
  AugmentWindows(a, {}, stds, kN, kT, 3, x.data(), engine);
  for (int j = 0; j < 3; ++j) {
    double sum = 0.0, sum_sq = 0.0;
    for (int64_t r = 0; r < kN * kT; ++r) {
      const double noise =
          (double{x[r * 3 + j]} - before[r * 3 + j]) / (0.05 * stds[j]);
      sum += noise;
      sum_sq += noise * noise;
    }
    const double count = kN * kT;
    EXPECT_NEAR(sum / count, 0.0, 0.05) << "channel " << j;
    EXPECT_NEAR(std::sqrt(sum_sq / count), 1.0, 0.05) << "channel " << j;
  }
}

TEST(AugmentWindowsTest, ShiftRotatesTimeWithinTheBound) {
  constexpr int64_t kN = 120;
  constexpr int kMax = 5;
  std::vector<float> x = RandomWindows(kN, 2, 13);
  const std::vector<float> before = x;
  WindowAugmentation a;
  a.shift_max = kMax;
  std::mt19937_64 engine(14);
  AugmentWindows(a, {}, {1.0f, 1.0f}, kN, kT, 2, x.data(), engine);
  std::vector<int> seen(2 * kMax + 1, 0);
  for (int64_t w = 0; w < kN; ++w) {
    const float* in = before.data() + w * kT * 2;
    const float* out = x.data() + w * kT * 2;
    int found = 0, shift_found = 0;
    for (int s = -kMax; s <= kMax; ++s) {
      bool match = true;
      for (int64_t i = 0; i < kT && match; ++i) {
        const int64_t to = ((i + s) % kT + kT) % kT;
        match = out[to * 2] == in[i * 2] && out[to * 2 + 1] == in[i * 2 + 1];
      }
      if (match) {
        ++found;
        shift_found = s;
      }
    }
    ASSERT_EQ(found, 1) << "window " << w << " is no shift within the bound";
    ++seen[shift_found + kMax];
  }
  for (int s = -kMax; s <= kMax; ++s) {
    EXPECT_GT(seen[s + kMax], 0) << "shift " << s << " never drawn";
  }
}

TEST(ResampleWindowTest, ShowsASineAtTheNewFrequency) {
  // Two cycles per window, slowed to 0.8x (no time leaves the window): the
  // result is the sine at 0.8x the frequency, within linear interpolation's
  // error bound h^2/8 * max|x''| = (2 pi k / t)^2 / 8.
  constexpr int64_t kLong = 128, kC = 2;
  constexpr double kCycles = 2.0, kSpeed = 0.8, kPi = 3.14159265358979323846;
  const double middle = 0.5 * (kLong - 1);
  std::mt19937_64 phases(21);
  const double phase[kC] = {6.0 * UniformUnit(phases),
                            6.0 * UniformUnit(phases)};
  auto sine = [&](double time, int j, double speed) {
    return std::sin(2.0 * kPi * kCycles * speed * (time - middle) / kLong +
                    phase[j]);
  };
  std::vector<float> x(kLong * kC);
  for (int64_t i = 0; i < kLong; ++i) {
    for (int j = 0; j < kC; ++j) x[i * kC + j] = sine(i, j, 1.0);
  }
  std::vector<float> scratch;
  ResampleWindow(kSpeed, kLong, kC, x.data(), scratch);
  const double omega = 2.0 * kPi * kCycles / kLong;
  const double bound = omega * omega / 8.0 + 1e-6;
  for (int64_t i = 0; i < kLong; ++i) {
    for (int j = 0; j < kC; ++j) {
      EXPECT_NEAR(x[i * kC + j], sine(i, j, kSpeed), bound)
          << "sample " << i << " channel " << j;
    }
  }
}

TEST(ResampleWindowTest, OneIsIdentityAndTimesOutsideTheWindowWrap) {
  const std::vector<float> before = RandomWindows(1, 3, 22);
  std::vector<float> x = before, scratch;
  ResampleWindow(1.0, kT, 3, x.data(), scratch);
  EXPECT_EQ(x, before);
  // 1.5x: out[0] reads time 19.5 - 19.5 * 1.5 = -9.75, i.e. 30.25 after
  // wrapping; out[39] reads 19.5 + 29.25 = 48.75, i.e. 8.75.
  ResampleWindow(1.5, kT, 3, x.data(), scratch);
  for (int j = 0; j < 3; ++j) {
    EXPECT_NEAR(x[j], 0.75 * before[30 * 3 + j] + 0.25 * before[31 * 3 + j],
                1e-6);
    EXPECT_NEAR(x[39 * 3 + j],
                0.25 * before[8 * 3 + j] + 0.75 * before[9 * 3 + j], 1e-6);
  }
}

TEST(AugmentWindowsTest, SpeedStaysWithinTheBoundAndSpreadsOverIt) {
  // Ramps through the middle of the window: linear interpolation keeps a
  // ramp exact, so each window's speed can be read off its slope.
  constexpr int64_t kN = 300;
  constexpr double kMax = 0.2;
  const double middle = 0.5 * (kT - 1);
  std::vector<float> x(kN * kT * 2);
  for (int64_t w = 0; w < kN; ++w) {
    for (int64_t i = 0; i < kT; ++i) {
      x[(w * kT + i) * 2] = static_cast<float>(i - middle);
      x[(w * kT + i) * 2 + 1] = static_cast<float>(-2.0 * (i - middle));
    }
  }
  WindowAugmentation a;
  a.speed_max = kMax;
  std::mt19937_64 engine(23);
  AugmentWindows(a, {}, {1.0f, 1.0f}, kN, kT, 2, x.data(), engine);
  double lowest = 2.0, highest = 0.0;
  for (int64_t w = 0; w < kN; ++w) {
    const float* out = x.data() + w * kT * 2;
    const double speed = (out[25 * 2] - out[14 * 2]) / 11.0;
    ASSERT_GE(speed, 1.0 - kMax - 1e-5) << "window " << w;
    ASSERT_LE(speed, 1.0 + kMax + 1e-5) << "window " << w;
    lowest = std::min(lowest, speed);
    highest = std::max(highest, speed);
    // Samples whose time stays inside the window lie on the ramp, in both
    // channels alike.
    for (int64_t i = 0; i < kT; ++i) {
      if (std::abs(i - middle) * (1.0 + kMax) > middle) continue;
      EXPECT_NEAR(out[i * 2], (i - middle) * speed, 1e-4) << w << "," << i;
      EXPECT_NEAR(out[i * 2 + 1], -2.0 * (i - middle) * speed, 2e-4);
    }
  }
  EXPECT_LT(lowest, 1.0 - 0.9 * kMax);
  EXPECT_GT(highest, 1.0 + 0.9 * kMax);
}

TEST(MixWindowsTest, BlendsEachWindowWithItsPartner) {
  std::vector<float> x = RandomWindows(4, 3, 15);
  const std::vector<float> before = x;
  const std::vector<int64_t> partner = {2, 0, 3, 1};
  MixWindows(0.7, partner, 4, kT * 3, x.data());
  for (int64_t w = 0; w < 4; ++w) {
    for (int64_t k = 0; k < kT * 3; ++k) {
      EXPECT_EQ(
          x[w * kT * 3 + k],
          static_cast<float>(0.7 * before[w * kT * 3 + k] +
                             (1.0 - 0.7) * before[partner[w] * kT * 3 + k]));
    }
  }
  std::vector<float> same = before;
  MixWindows(1.0, partner, 4, kT * 3, same.data());
  EXPECT_EQ(same, before);
}

TEST(RandomDrawsTest, MomentsOfNormalGammaAndBeta) {
  std::mt19937_64 engine(17);
  constexpr int kDraws = 20000;
  double sum = 0.0, sum_sq = 0.0;
  for (int i = 0; i < kDraws; ++i) {
    const double z = StandardNormal(engine);
    sum += z;
    sum_sq += z * z;
  }
  EXPECT_NEAR(sum / kDraws, 0.0, 0.03);
  EXPECT_NEAR(sum_sq / kDraws, 1.0, 0.04);
  for (const double shape : {0.3, 1.0, 4.0}) {
    double gamma_sum = 0.0;
    for (int i = 0; i < kDraws; ++i) {
      const double g = SampleGamma(engine, shape);
      ASSERT_GE(g, 0.0);
      gamma_sum += g;
    }
    EXPECT_NEAR(gamma_sum / kDraws, shape, 0.05 * shape + 0.01)
        << "shape " << shape;
  }
  // Beta(0.2, 0.2): mean 1/2, variance 1/(4 (2 a + 1)) = 0.1786, U-shaped.
  double beta_sum = 0.0, beta_sq = 0.0;
  int extremes = 0;
  for (int i = 0; i < kDraws; ++i) {
    const double b = SampleBeta(engine, 0.2, 0.2);
    ASSERT_GE(b, 0.0);
    ASSERT_LE(b, 1.0);
    beta_sum += b;
    beta_sq += b * b;
    if (b < 0.1 || b > 0.9) ++extremes;
  }
  const double mean = beta_sum / kDraws;
  EXPECT_NEAR(mean, 0.5, 0.01);
  EXPECT_NEAR(beta_sq / kDraws - mean * mean, 1.0 / (4.0 * 1.4), 0.01);
  EXPECT_GT(extremes, kDraws / 2);
}

}  // namespace
}  // namespace harmamba
