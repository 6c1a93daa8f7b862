#include "model/cpu_engine.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "tests/unit/model_oracle.h"

namespace harmamba {
namespace {

using testing::OracleForward;
using testing::RandomWeights;
using testing::RandomWindows;
using testing::RelativeError;
using testing::SmallConfig;

// Logits of every window against the float64 oracle, norm-wise over the
// batch's logits.
void ExpectMatchesOracle(const ModelConfig& config, int64_t n, int threads,
                         uint64_t seed) {
  const ModelWeights weights = RandomWeights(config, seed);
  auto engine = CreateCpuEngine(weights, {threads});
  ASSERT_TRUE(engine.ok()) << engine.status();
  const auto windows = RandomWindows(config, n, seed + 1);
  const int K = config.num_classes();
  std::vector<float> logits(n * K, NAN);
  ASSERT_TRUE((*engine)->Run(windows.data(), n, logits.data()).ok());
  std::vector<double> ref;
  for (int64_t i = 0; i < n; ++i) {
    auto one =
        OracleForward(weights, windows.data() + i * config.window_floats());
    ref.insert(ref.end(), one.begin(), one.end());
  }
  EXPECT_LE(RelativeError(logits, ref), 1e-5)
      << "n=" << n << " threads=" << threads;
}

TEST(CpuEngineTest, UciConfigMatchesOracle) {
  ExpectMatchesOracle(SmallConfig(), 5, 2, 1);
}

TEST(CpuEngineTest, SingleWindowOnTwoThreadsMatchesOracle) {
  ExpectMatchesOracle(SmallConfig(), 1, 2, 11);
}

TEST(CpuEngineTest, FewerWindowsThanThreadsMatchOracle) {
  ExpectMatchesOracle(SmallConfig(), 2, 3, 12);
}

TEST(CpuEngineTest, OddShapesMatchOracle) {
  // T not a multiple of the patch (tail dropped), stride < patch, d_model not
  // a multiple of 16 (dt_rank 2), E not a multiple of 16, depth 4.
  ModelConfig c = SmallConfig(/*window_length=*/53, /*channels=*/3,
                              /*d_model=*/24, /*depth=*/4, /*classes=*/4);
  c.patch = 8;
  c.stride = 5;
  c.d_state = 7;
  c.d_conv = 3;
  ExpectMatchesOracle(c, 6, 1, 2);
  ExpectMatchesOracle(c, 9, 2, 3);
  ExpectMatchesOracle(c, 1, 2, 4);
}

TEST(CpuEngineTest, ResultIndependentOfBatchPositionAndThreads) {
  const ModelConfig config = SmallConfig();
  const ModelWeights weights = RandomWeights(config, 7);
  const int64_t n = 11;
  const auto windows = RandomWindows(config, n, 8);
  const int K = config.num_classes();
  std::vector<float> batched(n * K);
  auto engine2 = CreateCpuEngine(weights, {2});
  ASSERT_TRUE(engine2.ok());
  ASSERT_TRUE((*engine2)->Run(windows.data(), n, batched.data()).ok());
  auto engine1 = CreateCpuEngine(weights, {1});
  ASSERT_TRUE(engine1.ok());
  for (int64_t i = 0; i < n; ++i) {
    std::vector<float> single(K);
    ASSERT_TRUE(
        (*engine1)
            ->Run(windows.data() + i * config.window_floats(), 1, single.data())
            .ok());
    for (int k = 0; k < K; ++k) {
      EXPECT_NEAR(single[k], batched[i * K + k],
                  1e-5 * (1 + std::fabs(single[k])));
    }
  }
}

TEST(CpuEngineTest, RejectsInvalidWeights) {
  ModelWeights weights = RandomWeights(SmallConfig(), 1);
  weights.tensors.erase("head.bias");
  auto engine = CreateCpuEngine(weights);
  EXPECT_FALSE(engine.ok());
  EXPECT_NE(engine.status().message().find("head.bias"), std::string::npos)
      << engine.status();
}

}  // namespace
}  // namespace harmamba
