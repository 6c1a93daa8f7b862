// The CUDA engine against the float64 whole-model oracle (design.md §1
// written literally, tests/unit/model_oracle.h). Skips without a CUDA
// device; also built against the CPU emulation of the kernels
// (gpu_engine_emulated_test).
#include "model/gpu_engine.h"

#include <cuda_runtime_api.h>

#include <cmath>
#include <string>
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

#define SKIP_WITHOUT_CUDA_DEVICE()                                        \
  do {                                                                    \
    int count_ = 0;                                                       \
    const cudaError_t err_ = cudaGetDeviceCount(&count_);                 \
    if (err_ != cudaSuccess || count_ == 0) {                             \
      GTEST_SKIP() << "no CUDA device ("                                  \
                   << (err_ != cudaSuccess ? cudaGetErrorString(err_)     \
                                           : "0 devices")                 \
                   << "): the CUDA engine was compiled but not run here"; \
    }                                                                     \
  } while (0)

std::vector<float> RunEngine(const ModelWeights& weights,
                             const std::vector<float>& windows, int64_t n,
                             int64_t max_batch) {
  GpuEngineOptions options;
  options.max_batch = max_batch;
  auto engine = CreateGpuEngine(weights, options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  if (!engine.ok()) return {};
  std::vector<float> logits(n * weights.config.num_classes(), NAN);
  const absl::Status s = (*engine)->Run(windows.data(), n, logits.data());
  EXPECT_TRUE(s.ok()) << s;
  return logits;
}

void ExpectMatchesOracle(const ModelConfig& config, int64_t n,
                         int64_t max_batch, uint64_t seed) {
  const ModelWeights weights = RandomWeights(config, seed);
  const auto windows = RandomWindows(config, n, seed + 1);
  const std::vector<float> logits = RunEngine(weights, windows, n, max_batch);
  ASSERT_EQ(logits.size(), static_cast<size_t>(n * config.num_classes()));
  std::vector<double> ref;
  for (int64_t i = 0; i < n; ++i) {
    auto one =
        OracleForward(weights, windows.data() + i * config.window_floats());
    ref.insert(ref.end(), one.begin(), one.end());
  }
  const double err = RelativeError(logits, ref);
  std::printf("gpu engine vs float64 oracle (n=%lld): %.3e\n",
              static_cast<long long>(n), err);
  EXPECT_LE(err, 1e-5) << "n=" << n << " max_batch=" << max_batch;
}

TEST(GpuEngineTest, UciConfigMatchesOracle) {
  SKIP_WITHOUT_CUDA_DEVICE();
  ExpectMatchesOracle(SmallConfig(), 5, 4096, 1);
}

TEST(GpuEngineTest, SplitsLargeBatches) {
  SKIP_WITHOUT_CUDA_DEVICE();
  ExpectMatchesOracle(SmallConfig(), 5, 2, 2);
}

TEST(GpuEngineTest, OddShapesMatchOracle) {
  SKIP_WITHOUT_CUDA_DEVICE();
  // T not a multiple of the patch, stride < patch, dt_rank 2, d_state 7,
  // d_conv 3, depth 4.
  ModelConfig c = SmallConfig(/*window_length=*/53, /*channels=*/3,
                              /*d_model=*/24, /*depth=*/4, /*classes=*/4);
  c.patch = 8;
  c.stride = 5;
  c.d_state = 7;
  c.d_conv = 3;
  ExpectMatchesOracle(c, 6, 4096, 3);
}

// One CTA per window: a window's logits do not depend on its batch.
TEST(GpuEngineTest, ResultIndependentOfBatchPosition) {
  SKIP_WITHOUT_CUDA_DEVICE();
  const ModelConfig config = SmallConfig();
  const ModelWeights weights = RandomWeights(config, 7);
  const int64_t n = 7;
  const int K = config.num_classes();
  const auto windows = RandomWindows(config, n, 8);
  const std::vector<float> batched = RunEngine(weights, windows, n, 4096);
  ASSERT_EQ(batched.size(), static_cast<size_t>(n * K));
  for (int64_t i = 0; i < n; ++i) {
    const std::vector<float> one(
        windows.begin() + i * config.window_floats(),
        windows.begin() + (i + 1) * config.window_floats());
    const std::vector<float> single = RunEngine(weights, one, 1, 4096);
    ASSERT_EQ(single.size(), static_cast<size_t>(K));
    for (int k = 0; k < K; ++k) EXPECT_EQ(single[k], batched[i * K + k]);
  }
}

// A recorded CUDA graph reads the windows of each Run(), not those it was
// recorded with, and gives bitwise the logits of uncaptured launches.
TEST(GpuEngineTest, CudaGraphReplaysMatchUncapturedRuns) {
  SKIP_WITHOUT_CUDA_DEVICE();
  const ModelConfig config = SmallConfig();
  const ModelWeights weights = RandomWeights(config, 11);
  const int K = config.num_classes();
  GpuEngineOptions with_graphs, without_graphs;
  with_graphs.max_batch = without_graphs.max_batch = 4;
  without_graphs.cuda_graphs = false;
  auto graphed = CreateGpuEngine(weights, with_graphs);
  auto plain = CreateGpuEngine(weights, without_graphs);
  ASSERT_TRUE(graphed.ok()) << graphed.status();
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_NE((*graphed)->description().find("CUDA graphs"), std::string::npos);
  // Sizes 3, 3, 6 (= 4 + 2: two graphs) and 3 again, each on new windows.
  uint64_t seed = 20;
  for (int64_t n : {3, 3, 6, 3}) {
    const auto windows = RandomWindows(config, n, ++seed);
    std::vector<float> a(n * K, NAN), b(n * K, NAN);
    ASSERT_TRUE((*graphed)->Run(windows.data(), n, a.data()).ok());
    ASSERT_TRUE((*plain)->Run(windows.data(), n, b.data()).ok());
    for (int64_t i = 0; i < n * K; ++i) {
      ASSERT_EQ(a[i], b[i]) << "n=" << n << " i=" << i;
    }
    const auto oracle = OracleForward(weights, windows.data());
    EXPECT_LE(
        RelativeError(std::vector<float>(a.begin(), a.begin() + K), oracle),
        1e-5);
  }
}

TEST(GpuEngineTest, Pamap2ShapeMatchesOracle) {
  SKIP_WITHOUT_CUDA_DEVICE();
  // 512 x 9 -> 289 tokens: more than one CTA's shared memory, so the pairs
  // run on global scratch.
  ExpectMatchesOracle(SmallConfig(/*window_length=*/512), 2, 4096, 5);
}

TEST(GpuEngineTest, RefusesShapesTheKernelsCannotRun) {
  SKIP_WITHOUT_CUDA_DEVICE();
  ModelConfig config = SmallConfig();
  config.d_state = 32;
  auto engine = CreateGpuEngine(RandomWeights(config, 1));
  ASSERT_FALSE(engine.ok());
  EXPECT_EQ(engine.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(engine.status().message()).find("d_state"),
            std::string::npos)
      << engine.status();
}

}  // namespace
}  // namespace harmamba
