#include "server/stream_windower.h"

#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace harmamba {
namespace {

using ::testing::HasSubstr;

std::vector<float> RandomStream(int samples, int channels, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-4.0f, 4.0f);
  std::vector<float> stream(static_cast<size_t>(samples) * channels);
  for (float& x : stream) x = uniform(rng);
  return stream;
}

// Feeds `stream` in chunks of `chunk` samples (the last one shorter) and
// checks every window against the stream itself.
void CheckWindows(int length, int channels, int hop, int samples, int chunk) {
  SCOPED_TRACE(testing::Message()
               << "T=" << length << " C=" << channels << " hop=" << hop
               << " samples=" << samples << " chunk=" << chunk);
  const std::vector<float> stream = RandomStream(samples, channels, 7);
  absl::StatusOr<StreamWindower> windower =
      StreamWindower::Create(length, channels, hop);
  ASSERT_TRUE(windower.ok()) << windower.status();
  int64_t expected_index = 0;
  for (int start = 0; start < samples; start += chunk) {
    const int n = std::min(chunk, samples - start);
    ASSERT_TRUE(windower
                    ->Append(absl::MakeConstSpan(
                        stream.data() + static_cast<size_t>(start) * channels,
                        static_cast<size_t>(n) * channels))
                    .ok());
    while (std::optional<StreamWindower::Window> w = windower->Next()) {
      ASSERT_EQ(w->index, expected_index);
      ASSERT_EQ(w->start_sample, expected_index * hop);
      ASSERT_EQ(w->end_sample, w->start_sample + length);
      ASSERT_LE(w->end_sample, start + n);  // yielded once complete
      const std::vector<float> want(stream.begin() + w->start_sample * channels,
                                    stream.begin() + w->end_sample * channels);
      ASSERT_EQ(w->samples, want);
      ++expected_index;
    }
    EXPECT_FALSE(windower->HasWindow());
    // Only what future windows need is kept.
    EXPECT_LE(windower->buffered_samples(), length + n);
  }
  const int64_t expected_windows =
      samples < length ? 0 : (samples - length) / hop + 1;
  EXPECT_EQ(windower->windows_cut(), expected_windows);
  EXPECT_EQ(windower->samples_received(), samples);
  const int64_t last_end =
      expected_windows == 0 ? 0 : (expected_windows - 1) * hop + length;
  EXPECT_EQ(windower->leftover_samples(), samples - last_end);
}

TEST(StreamWindowerTest, WindowsMatchTheStreamWhateverTheChunkSize) {
  for (int chunk : {1, 3, 16, 17, 100, 1000}) {
    CheckWindows(/*length=*/16, /*channels=*/3, /*hop=*/8, /*samples=*/203,
                 chunk);
  }
}

TEST(StreamWindowerTest, HopsShorterEqualAndLongerThanTheWindow) {
  for (int hop : {1, 5, 16, 23}) {
    CheckWindows(16, 2, hop, 150, 7);
    CheckWindows(16, 2, hop, 150, 1);
  }
}

TEST(StreamWindowerTest, UciShapedStream) {
  CheckWindows(128, 9, 64, 1000, 50);
}

TEST(StreamWindowerTest, TooFewSamplesYieldNoWindowAndAreAllLeftOver) {
  absl::StatusOr<StreamWindower> windower = StreamWindower::Create(8, 2, 4);
  ASSERT_TRUE(windower.ok());
  const std::vector<float> samples = RandomStream(7, 2, 1);
  ASSERT_TRUE(windower->Append(samples).ok());
  EXPECT_FALSE(windower->HasWindow());
  EXPECT_FALSE(windower->Next().has_value());
  EXPECT_EQ(windower->leftover_samples(), 7);
}

TEST(StreamWindowerTest, LeftoverCountsSamplesAfterTheLastWindow) {
  // T=8, hop=4, 21 samples: windows [0,8) [4,12) [8,16) [12,20); 1 left.
  absl::StatusOr<StreamWindower> windower = StreamWindower::Create(8, 1, 4);
  ASSERT_TRUE(windower.ok());
  ASSERT_TRUE(windower->Append(RandomStream(21, 1, 2)).ok());
  int windows = 0;
  while (windower->Next()) ++windows;
  EXPECT_EQ(windows, 4);
  EXPECT_EQ(windower->leftover_samples(), 1);
}

TEST(StreamWindowerTest, PartialSamplesAreRefusedAndNothingIsAppended) {
  absl::StatusOr<StreamWindower> windower = StreamWindower::Create(4, 3, 2);
  ASSERT_TRUE(windower.ok());
  const std::vector<float> bad = RandomStream(1, 3, 3);
  const absl::Status s =
      windower->Append(absl::MakeConstSpan(bad.data(), 2));  // 2 of 3 floats
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("multiple of 3"));
  EXPECT_EQ(windower->samples_received(), 0);
}

TEST(StreamWindowerTest, CreateValidatesItsParameters) {
  EXPECT_THAT(std::string(StreamWindower::Create(0, 3, 1).status().message()),
              HasSubstr("window_length"));
  EXPECT_THAT(std::string(StreamWindower::Create(4, 0, 1).status().message()),
              HasSubstr("channels"));
  EXPECT_THAT(std::string(StreamWindower::Create(4, 3, 0).status().message()),
              HasSubstr("hop"));
}

}  // namespace
}  // namespace harmamba
