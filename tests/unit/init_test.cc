// InitModel (model/init.cc): determinism and the distributions of
// design.md §1 "Init".
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/model_file.h"

namespace harmamba {
namespace {

// The UCI-HAR shape (128 x 9, 6 classes) with the default architecture.
ModelConfig UciConfig() {
  ModelConfig c;
  c.window_length = 128;
  for (int i = 0; i < 9; ++i) c.channels.push_back(absl::StrCat("c", i));
  c.mean.assign(9, 0.0f);
  c.std.assign(9, 1.0f);
  c.classes = {"a", "b", "c", "d", "e", "f"};
  return c;
}

struct Stats {
  double mean = 0, stddev = 0, min = 0, max = 0;
};

Stats StatsOf(const std::vector<float>& values) {
  Stats s;
  s.min = *std::min_element(values.begin(), values.end());
  s.max = *std::max_element(values.begin(), values.end());
  for (float v : values) s.mean += v;
  s.mean /= values.size();
  for (float v : values) s.stddev += (v - s.mean) * (v - s.mean);
  s.stddev = std::sqrt(s.stddev / values.size());
  return s;
}

// The values of one per-layer tensor across all layers.
std::vector<float> AllLayers(const ModelWeights& w, const std::string& local) {
  std::vector<float> out;
  for (int i = 0; i < w.config.depth; ++i) {
    const auto& data = w.at(absl::StrCat("layers.", i, ".", local)).data;
    out.insert(out.end(), data.begin(), data.end());
  }
  return out;
}

bool BitIdentical(const ModelWeights& a, const ModelWeights& b) {
  if (a.tensors.size() != b.tensors.size()) return false;
  for (const auto& [name, t] : a.tensors) {
    const auto& other = b.at(name).data;
    if (t.data.size() != other.size() ||
        std::memcmp(t.data.data(), other.data(), 4 * other.size()) != 0) {
      return false;
    }
  }
  return true;
}

class InitModelTest : public ::testing::Test {
 protected:
  InitModelTest() : weights_(InitModel(UciConfig(), 2024)) {}
  ModelWeights weights_;
};

TEST_F(InitModelTest, IsValidAndSerialisable) {
  EXPECT_TRUE(ValidateWeights(weights_).ok()) << ValidateWeights(weights_);
  EXPECT_EQ(weights_.num_parameters(), 399558);
  absl::StatusOr<std::string> bytes = SerializeSafetensors(weights_);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  absl::StatusOr<ModelWeights> parsed = ParseSafetensors(*bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(BitIdentical(*parsed, weights_));
}

TEST_F(InitModelTest, IsDeterministicPerSeed) {
  EXPECT_TRUE(BitIdentical(InitModel(UciConfig(), 2024), weights_));
  const ModelWeights other = InitModel(UciConfig(), 2025);
  EXPECT_FALSE(BitIdentical(other, weights_));
  // Every random tensor changes with the seed.
  for (const char* name :
       {"pos_embed", "cls_token", "patch_embed.proj.weight", "head.weight",
        "layers.0.mixer.in_proj.weight", "layers.11.mixer.dt_proj.bias"}) {
    EXPECT_NE(other.at(name).data, weights_.at(name).data) << name;
  }
}

TEST_F(InitModelTest, ConstantTensors) {
  const int n = weights_.config.d_state;
  for (int i = 0; i < weights_.config.depth; ++i) {
    const std::string p = absl::StrCat("layers.", i, ".");
    const HostTensor& a_log = weights_.at(p + "mixer.A_log");
    for (int64_t j = 0; j < a_log.numel(); ++j) {
      ASSERT_EQ(a_log.data[j], static_cast<float>(std::log(j % n + 1.0)))
          << p << " " << j;
    }
    for (float v : weights_.at(p + "mixer.D").data) ASSERT_EQ(v, 1.0f);
    for (float v : weights_.at(p + "norm.weight").data) ASSERT_EQ(v, 1.0f);
    for (float v : weights_.at(p + "norm.bias").data) ASSERT_EQ(v, 0.0f);
  }
  for (const char* zero :
       {"patch_embed.proj.bias", "head.bias", "norm_f.bias"}) {
    for (float v : weights_.at(zero).data) ASSERT_EQ(v, 0.0f) << zero;
  }
  for (float v : weights_.at("norm_f.weight").data) ASSERT_EQ(v, 1.0f);
}

TEST_F(InitModelTest, DtBiasIsInverseSoftplusOfLogUniformDt) {
  const std::vector<float> bias = AllLayers(weights_, "mixer.dt_proj.bias");
  std::vector<double> log_dt;
  for (float b : bias) {
    const double dt = std::log1p(std::exp(static_cast<double>(b)));
    ASSERT_GE(dt, 1e-3 * (1 - 1e-5));
    ASSERT_LE(dt, 1e-1 * (1 + 1e-5));
    log_dt.push_back(std::log10(dt));
  }
  // log10(dt) ~ U(-3, -1): mean -2, std 2/sqrt(12).
  double mean = 0, var = 0;
  for (double v : log_dt) mean += v;
  mean /= log_dt.size();
  for (double v : log_dt) var += (v - mean) * (v - mean);
  EXPECT_NEAR(mean, -2.0, 0.05);
  EXPECT_NEAR(std::sqrt(var / log_dt.size()), 2 / std::sqrt(12.0), 0.03);
}

// PyTorch's default kaiming_uniform_(a=sqrt(5)) and Mamba's dt_proj init:
// U(±bound), whose std is bound / sqrt(3).
TEST_F(InitModelTest, UniformTensorsHaveTheirBounds) {
  const double depth = weights_.config.depth;
  struct Case {
    const char* local;
    double bound;
  };
  const Case cases[] = {
      {"mixer.in_proj.weight", 1 / std::sqrt(64.0)},
      {"mixer.x_proj.weight", 1 / std::sqrt(128.0)},
      {"mixer.conv1d.weight", 1 / std::sqrt(4.0)},
      {"mixer.conv1d.bias", 1 / std::sqrt(4.0)},
      {"mixer.out_proj.weight", 1 / std::sqrt(128.0) / std::sqrt(depth)},
      {"mixer.dt_proj.weight", 1 / std::sqrt(4.0)},  // dt_rank 4
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.local);
    const Stats s = StatsOf(AllLayers(weights_, c.local));
    EXPECT_GE(s.min, -c.bound);
    EXPECT_LE(s.max, c.bound);
    // Near the bounds at both ends (>= 1536 values per tensor kind).
    EXPECT_LT(s.min, -0.99 * c.bound);
    EXPECT_GT(s.max, 0.99 * c.bound);
    EXPECT_NEAR(s.stddev, c.bound / std::sqrt(3.0), 0.03 * c.bound);
    EXPECT_NEAR(s.mean, 0.0, 0.05 * c.bound);
  }
}

// timm's trunc_normal_(std=0.02) cuts at ±2 *absolute*: in effect an
// untruncated normal, so about 4.6% of values lie beyond ±2 std.
TEST_F(InitModelTest, TruncNormal002Tensors) {
  std::vector<float> values = weights_.at("pos_embed").data;  // 73 x 64
  for (const char* name : {"cls_token", "head.weight"}) {
    const auto& data = weights_.at(name).data;
    values.insert(values.end(), data.begin(), data.end());
  }
  const Stats s = StatsOf(values);
  EXPECT_NEAR(s.stddev, 0.02, 0.02 * 0.04);
  EXPECT_NEAR(s.mean, 0.0, 0.002);
  EXPECT_LT(std::max(-s.min, s.max), 0.02 * 5.5);
  const double beyond_2_std =
      std::count_if(values.begin(), values.end(),
                    [](float v) { return std::abs(v) > 0.04f; }) /
      static_cast<double>(values.size());
  EXPECT_NEAR(beyond_2_std, 0.0455, 0.012);
}

// Lecun normal as current timm does it: a standard normal cut at ±2 std,
// scaled so that the variance is exactly 1 / fan_in (fan_in = patch = 16).
TEST_F(InitModelTest, PatchEmbeddingIsLecunNormal) {
  const HostTensor& w = weights_.at("patch_embed.proj.weight");
  const Stats s = StatsOf(w.data);
  const double target_std = std::sqrt(1.0 / 16);
  const double cut = 2 * target_std / 0.87962566103423978;
  EXPECT_GE(s.min, -cut);
  EXPECT_LE(s.max, cut);
  EXPECT_LT(s.min, -0.95 * cut);  // 1024 values: the cut is reached
  EXPECT_GT(s.max, 0.95 * cut);
  EXPECT_NEAR(s.stddev, target_std, 0.05 * target_std);
  EXPECT_NEAR(s.mean, 0.0, 0.03);
}

TEST(InitModelSmallTest, WorksForOtherShapes) {
  ModelConfig c;
  c.window_length = 30;
  c.channels = {"x", "y"};
  c.mean = {0, 0};
  c.std = {1, 1};
  c.classes = {"a"};
  c.patch = 7;
  c.stride = 3;
  c.d_model = 40;  // dt_rank 3
  c.depth = 4;
  c.d_state = 5;
  c.d_conv = 2;
  c.expand = 1;
  const ModelWeights w = InitModel(c, 1);
  EXPECT_TRUE(ValidateWeights(w).ok()) << ValidateWeights(w);
  const double bound = 1 / std::sqrt(3.0);
  for (float v : w.at("layers.3.mixer.dt_proj.weight").data) {
    ASSERT_LE(std::abs(v), bound);
  }
  EXPECT_EQ(w.at("layers.2.mixer.A_log").data[4], std::log(5.0f));
}

}  // namespace
}  // namespace harmamba
