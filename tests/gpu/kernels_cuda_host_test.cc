// Host-only checks for the CUDA kernel library (run on every machine, no
// GPU needed): the float64 backward oracles against central finite
// differences of the forward oracles, and the CanRun capability checks.
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/causal_conv1d.h"
#include "kernels/cpu/selective_scan.h"
#include "kernels/cuda/causal_conv1d.cuh"
#include "kernels/cuda/layer_norm.cuh"
#include "kernels/cuda/selective_scan.cuh"
#include "tests/gpu/backward_oracles.h"

namespace harmamba::kernels {
namespace {

constexpr double kFiniteDifferenceTolerance = 1e-7;  // norm-wise relative

std::vector<double> Random(std::mt19937& rng, size_t n, double mean = 0,
                           double stddev = 1) {
  std::normal_distribution<double> dist(mean, stddev);
  std::vector<double> v(n);
  for (double& x : v) x = dist(rng);
  return v;
}

double RelativeError(const std::vector<double>& got,
                     const std::vector<double>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return std::sqrt(num / den);
}

// d loss / d v by central differences, loss() reading v.
std::vector<double> FiniteDifference(std::vector<double>& v,
                                     const std::function<double()>& loss) {
  std::vector<double> grad(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const double saved = v[i];
    const double h = 1e-6 * std::max(1.0, std::fabs(saved));
    v[i] = saved + h;
    const double up = loss();
    v[i] = saved - h;
    const double down = loss();
    v[i] = saved;
    grad[i] = (up - down) / (2 * h);
  }
  return grad;
}

double Dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

struct ScanOracleCase {
  bool reverse, softplus, with_d, with_z, with_bias;
};

class ScanOracleTest : public ::testing::TestWithParam<ScanOracleCase> {};

TEST_P(ScanOracleTest, MatchesFiniteDifferences) {
  const ScanOracleCase c = GetParam();
  const int64_t batch = 2, L = 5, E = 3, N = 4;
  std::mt19937 rng(77 + c.reverse + 2 * c.softplus + 4 * c.with_z);
  auto u = Random(rng, batch * L * E);
  auto delta = Random(rng, batch * L * E, c.softplus ? 0.0 : 0.3, 0.5);
  auto bias = Random(rng, E, c.softplus ? -1.0 : 0.1, 0.3);
  auto B = Random(rng, batch * L * N), C = Random(rng, batch * L * N);
  auto z = Random(rng, batch * L * E), D = Random(rng, E);
  auto dout = Random(rng, batch * L * E);
  std::vector<double> A(E * N);
  for (int64_t i = 0; i < E * N; ++i) A[i] = -(1.0 + i % N) * (0.5 + 0.1 * i);
  const double* bias_p = c.with_bias ? bias.data() : nullptr;
  const double* D_p = c.with_d ? D.data() : nullptr;
  const double* z_p = c.with_z ? z.data() : nullptr;

  std::vector<double> out(batch * L * E);
  auto loss = [&] {
    SelectiveScanReference(batch, L, E, N, c.reverse, c.softplus, u.data(),
                           delta.data(), bias_p, A.data(), B.data(), C.data(),
                           D_p, z_p, out.data());
    return Dot(out, dout);
  };
  std::vector<double> du(u.size()), ddelta(delta.size()), dbias(E), dA(E * N),
      dB(B.size()), dC(C.size()), dD(E), dz(z.size());
  oracle::SelectiveScanBackwardReference(
      batch, L, E, N, c.reverse, c.softplus, u.data(), delta.data(), bias_p,
      A.data(), B.data(), C.data(), D_p, z_p, dout.data(), du.data(),
      ddelta.data(), c.with_bias ? dbias.data() : nullptr, dA.data(), dB.data(),
      dC.data(), c.with_d ? dD.data() : nullptr,
      c.with_z ? dz.data() : nullptr);

  EXPECT_LE(RelativeError(du, FiniteDifference(u, loss)),
            kFiniteDifferenceTolerance)
      << "du";
  EXPECT_LE(RelativeError(ddelta, FiniteDifference(delta, loss)),
            kFiniteDifferenceTolerance)
      << "ddelta";
  EXPECT_LE(RelativeError(dA, FiniteDifference(A, loss)),
            kFiniteDifferenceTolerance)
      << "dA";
  EXPECT_LE(RelativeError(dB, FiniteDifference(B, loss)),
            kFiniteDifferenceTolerance)
      << "dB";
  EXPECT_LE(RelativeError(dC, FiniteDifference(C, loss)),
            kFiniteDifferenceTolerance)
      << "dC";
  if (c.with_bias) {
    EXPECT_LE(RelativeError(dbias, FiniteDifference(bias, loss)),
              kFiniteDifferenceTolerance)
        << "ddelta_bias";
  }
  if (c.with_d) {
    EXPECT_LE(RelativeError(dD, FiniteDifference(D, loss)),
              kFiniteDifferenceTolerance)
        << "dD";
  }
  if (c.with_z) {
    EXPECT_LE(RelativeError(dz, FiniteDifference(z, loss)),
              kFiniteDifferenceTolerance)
        << "dz";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ScanOracleTest,
    ::testing::Values(ScanOracleCase{false, true, true, true, true},
                      ScanOracleCase{true, true, true, true, true},
                      ScanOracleCase{false, false, false, false, false},
                      ScanOracleCase{true, false, true, false, true},
                      ScanOracleCase{true, true, false, true, false}));

struct ConvOracleCase {
  int64_t width;
  bool reverse, silu, with_bias;
};

class ConvOracleTest : public ::testing::TestWithParam<ConvOracleCase> {};

TEST_P(ConvOracleTest, MatchesFiniteDifferences) {
  const ConvOracleCase c = GetParam();
  const int64_t batch = 2, L = 6, E = 3, W = c.width;
  std::mt19937 rng(99 + W + 8 * c.reverse);
  auto x = Random(rng, batch * L * E), w = Random(rng, E * W);
  auto bias = Random(rng, E), dout = Random(rng, batch * L * E);
  const double* bias_p = c.with_bias ? bias.data() : nullptr;
  std::vector<double> out(x.size());
  auto loss = [&] {
    CausalConv1dReference(batch, L, E, W, c.reverse, c.silu, x.data(), w.data(),
                          bias_p, out.data());
    return Dot(out, dout);
  };
  std::vector<double> dx(x.size()), dw(w.size()), db(E);
  oracle::CausalConv1dBackwardReference(
      batch, L, E, W, c.reverse, c.silu, x.data(), w.data(), bias_p,
      dout.data(), dx.data(), dw.data(), c.with_bias ? db.data() : nullptr);
  EXPECT_LE(RelativeError(dx, FiniteDifference(x, loss)),
            kFiniteDifferenceTolerance)
      << "dx";
  EXPECT_LE(RelativeError(dw, FiniteDifference(w, loss)),
            kFiniteDifferenceTolerance)
      << "dweight";
  if (c.with_bias) {
    EXPECT_LE(RelativeError(db, FiniteDifference(bias, loss)),
              kFiniteDifferenceTolerance)
        << "dbias";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ConvOracleTest,
    ::testing::Values(ConvOracleCase{4, false, true, true},
                      ConvOracleCase{4, true, true, true},
                      ConvOracleCase{1, false, false, false},
                      ConvOracleCase{3, true, false, true},
                      ConvOracleCase{8, true, true, false}));

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

}  // namespace
}  // namespace harmamba::kernels
