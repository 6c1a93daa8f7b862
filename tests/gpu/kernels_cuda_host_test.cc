// Host-only checks for the CUDA kernel library (run on every machine, no
// GPU needed): the CanRun capability checks. (The float64 backward oracles
// the GPU tests use are checked against finite differences in
// tests/unit/kernels_backward_test.cc.)
#include <cstddef>
#include <cstdint>
#include <string>

#include "gtest/gtest.h"
#include "kernels/cpu/causal_conv1d.h"
#include "kernels/cpu/selective_scan.h"
#include "kernels/cuda/causal_conv1d.cuh"
#include "kernels/cuda/harmamba_fused.cuh"
#include "kernels/cuda/layer_norm.cuh"
#include "kernels/cuda/selective_scan.cuh"

namespace harmamba::kernels {
namespace {

// ---- Capability checks (no device touched) --------------------------------

SelectiveScanParams ValidScan() {
  static float dummy[1];
  SelectiveScanParams p;
  p.batch = 2;
  p.seqlen = 3;
  p.dim = 4;
  p.dstate = 16;
  p.u = p.delta = p.A = p.B = p.C = dummy;
  p.out = dummy;
  return p;
}

TEST(CanRunTest, SelectiveScanLimits) {
  EXPECT_TRUE(cuda::CanRunSelectiveScanForward(ValidScan()).ok());
  SelectiveScanParams p = ValidScan();
  p.dstate = 65;
  const absl::Status s = cuda::CanRunSelectiveScanForward(p);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("dstate"), std::string::npos) << s;
  p = ValidScan();
  p.delta = nullptr;
  p.dt_low = p.dt_weight = ValidScan().u;
  p.dt_rank = 17;
  EXPECT_FALSE(cuda::CanRunSelectiveScanForward(p).ok());
  p = ValidScan();
  p.B = nullptr;
  EXPECT_FALSE(cuda::CanRunSelectiveScanForward(p).ok());
  p = ValidScan();
  p.batch = int64_t{1} << 31;
  EXPECT_FALSE(cuda::CanRunSelectiveScanForward(p).ok());
}

TEST(CanRunTest, SelectiveScanBackwardNeedsGradients) {
  static float dummy[1];
  SelectiveScanParams p = ValidScan();
  cuda::SelectiveScanGrads g;
  EXPECT_FALSE(cuda::CanRunSelectiveScanBackward(p, g).ok());
  g.dout = g.du = g.ddelta = g.dB = g.dC = g.dA = dummy;
  EXPECT_TRUE(cuda::CanRunSelectiveScanBackward(p, g).ok());
  p.z = dummy;  // a gate needs dz
  EXPECT_FALSE(cuda::CanRunSelectiveScanBackward(p, g).ok());
  g.dz = dummy;
  EXPECT_TRUE(cuda::CanRunSelectiveScanBackward(p, g).ok());
  p.out = nullptr;  // the backward has no use for the forward's output
  EXPECT_TRUE(cuda::CanRunSelectiveScanBackward(p, g).ok());
  g.du = nullptr;
  EXPECT_FALSE(cuda::CanRunSelectiveScanBackward(p, g).ok());
}

TEST(CanRunTest, SelectiveScanWorkspaceCoversStates) {
  SelectiveScanParams p = ValidScan();
  p.batch = 64;
  p.seqlen = 73;
  p.dim = 128;
  const size_t states = sizeof(float) * 64 * 73 * 16 * 128;
  EXPECT_GE(cuda::SelectiveScanBackwardWorkspaceBytes(p), states);
  EXPECT_LT(cuda::SelectiveScanBackwardWorkspaceBytes(p), states * 11 / 10);
}

TEST(CanRunTest, ConvAndLayerNormLimits) {
  static float x[1], w[1], out[1];
  CausalConv1dParams c;
  c.batch = 1;
  c.seqlen = 2;
  c.dim = 3;
  c.width = 4;
  c.x = x;
  c.weight = w;
  c.out = out;
  EXPECT_TRUE(cuda::CanRunCausalConv1dForward(c).ok());
  c.width = 9;
  EXPECT_FALSE(cuda::CanRunCausalConv1dForward(c).ok());
  c.width = 4;
  cuda::CausalConv1dGrads g;
  g.dout = x;
  g.dx = x;  // aliases x
  g.dweight = w;
  EXPECT_FALSE(cuda::CanRunCausalConv1dBackward(c, g).ok());
  static float dx[1];
  g.dx = dx;
  EXPECT_TRUE(cuda::CanRunCausalConv1dBackward(c, g).ok());
  c.out = nullptr;  // the backward has no use for the forward's output
  EXPECT_TRUE(cuda::CanRunCausalConv1dBackward(c, g).ok());
  c.out = out;

  LayerNormParams ln;
  ln.rows = 3;
  ln.dim = 64;
  ln.x = x;
  ln.out = out;
  EXPECT_TRUE(cuda::CanRunLayerNorm(ln).ok());
  ln.dim = 1025;
  EXPECT_FALSE(cuda::CanRunLayerNorm(ln).ok());
  ln.dim = 64;
  ln.out = nullptr;
  EXPECT_FALSE(cuda::CanRunLayerNorm(ln).ok());
}

TEST(CanRunTest, FusedPairThreads) {
  static float dummy[1];
  cuda::FusedPairParams p;
  p.shape.window_length = 128;
  p.shape.channels = 9;
  p.shape.patch = p.shape.stride = 16;
  p.shape.d_model = 64;
  p.shape.d_inner = 128;
  p.shape.d_state = 16;
  p.shape.dt_rank = 4;
  p.shape.d_conv = 4;
  p.shape.classes = 6;
  p.batch = 1;
  p.s = dummy;
  for (cuda::FusedDirectionWeights& w : p.dir) {
    w.in_proj = w.in_proj_bias = w.conv_weight = w.conv_bias = w.x_proj =
        w.dt_weight = w.dt_bias = w.A = w.D = w.out_proj = dummy;
  }
  for (int threads : {0, 256, 512}) {
    p.threads = threads;
    EXPECT_TRUE(cuda::CanRunFusedPair(p).ok()) << threads;
  }
  p.threads = 384;
  const absl::Status s = cuda::CanRunFusedPair(p);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("threads"), std::string::npos) << s;
}

}  // namespace
}  // namespace harmamba::kernels
