#include "server/window_checks.h"

#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_backend.h"

namespace harmamba {
namespace {

using ::harmamba::testing::FakeConfig;
using ::harmamba::testing::RandomWindows;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::string Message(const absl::Status& s) { return std::string(s.message()); }

TEST(CheckWindowTest, AcceptsAWellFormedWindow) {
  const ModelConfig config = FakeConfig("m", 16, 3, 4);
  const auto windows = RandomWindows(config, 1);
  EXPECT_TRUE(CheckWindow(windows[0], 0, config, "window").ok());
  EXPECT_TRUE(CheckWindow(windows[0], 3, config, "window").ok());
}

TEST(CheckWindowTest, WrongSampleCountNamesFieldAndExpectedValue) {
  const ModelConfig config = FakeConfig("m", 16, 3, 4);
  std::vector<float> window = RandomWindows(config, 1)[0];
  window.pop_back();
  const absl::Status s = CheckWindow(window, 0, config, "windows[2]");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(
      Message(s),
      AllOf(HasSubstr("windows[2].samples"), HasSubstr("expected 48 floats"),
            HasSubstr("16 samples x 3 channels"), HasSubstr("got 47")));
  const absl::Status empty = CheckWindow({}, 0, config, "window");
  EXPECT_EQ(empty.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(empty), HasSubstr("got 0"));
}

TEST(CheckWindowTest, WrongStatedChannelCount) {
  const ModelConfig config = FakeConfig("m", 16, 3, 4);
  const auto windows = RandomWindows(config, 1);
  const absl::Status s = CheckWindow(windows[0], 6, config, "window");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), AllOf(HasSubstr("window.num_channels"),
                                HasSubstr("expected 3"), HasSubstr("got 6")));
}

TEST(CheckWindowTest, NonFiniteValuesNameTheSampleAndChannel) {
  const ModelConfig config = FakeConfig("m", 16, 3, 4);
  std::vector<float> window = RandomWindows(config, 1)[0];
  window[3 * 5 + 2] = std::numeric_limits<float>::quiet_NaN();
  absl::Status s = CheckWindow(window, 0, config, "window");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s),
              AllOf(HasSubstr("window.samples[17]"), HasSubstr("sample 5"),
                    HasSubstr("'ch2'"), HasSubstr("finite")));
  window[17] = 1.0f;
  window[0] = -std::numeric_limits<float>::infinity();
  s = CheckWindow(window, 0, config, "window");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("window.samples[0]"));
}

TEST(CheckChunkTest, WholeSamplesOfAnyLength) {
  const ModelConfig config = FakeConfig("m", 16, 3, 4);
  const std::vector<float> one_sample = {0.5f, -1.0f, 2.0f};
  EXPECT_TRUE(CheckChunk(one_sample, 0, config, "chunk").ok());
  std::vector<float> long_chunk(3 * 1000, 0.25f);
  EXPECT_TRUE(CheckChunk(long_chunk, 3, config, "chunk").ok());
  const std::vector<float> partial = {0.5f, -1.0f};
  EXPECT_THAT(Message(CheckChunk(partial, 0, config, "chunk")),
              AllOf(HasSubstr("chunk.samples"), HasSubstr("multiple of 3"),
                    HasSubstr("got 2")));
  EXPECT_EQ(CheckChunk({}, 0, config, "chunk").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(CheckChunk(one_sample, 2, config, "chunk")),
              HasSubstr("chunk.num_channels"));
}

TEST(ScoreLogitsTest, SoftmaxAndArgmax) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> logits(6);
  for (float& x : logits) x = normal(rng);
  const ClassScores scores = ScoreLogits(logits);
  const int argmax = static_cast<int>(
      std::max_element(logits.begin(), logits.end()) - logits.begin());
  EXPECT_EQ(scores.class_index, argmax);
  double sum = 0;
  double denom = 0;
  for (float x : logits) denom += std::exp(static_cast<double>(x));
  for (size_t k = 0; k < logits.size(); ++k) {
    EXPECT_NEAR(scores.probabilities[k], std::exp(logits[k]) / denom, 1e-6);
    sum += scores.probabilities[k];
  }
  EXPECT_NEAR(sum, 1.0, 1e-6);
}

TEST(ScoreLogitsTest, StableForLargeLogitsAndFirstOnTies) {
  const ClassScores large = ScoreLogits(std::vector<float>{1000.f, 999.f});
  EXPECT_EQ(large.class_index, 0);
  EXPECT_NEAR(large.probabilities[0], 1.0 / (1.0 + std::exp(-1.0)), 1e-6);
  const ClassScores tie = ScoreLogits(std::vector<float>{-2.f, 3.f, 3.f});
  EXPECT_EQ(tie.class_index, 1);
}

}  // namespace
}  // namespace harmamba
