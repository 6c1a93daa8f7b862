// Backward CPU kernels: the float64 oracles against central finite
// differences of the float64 forward oracles, and the vectorised float32
// kernels against the float64 oracles on fresh random inputs.
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/causal_conv1d.h"
#include "kernels/cpu/selective_scan.h"

namespace harmamba::kernels {
namespace {

constexpr double kFloat32Tolerance = 1e-5;  // norm-wise relative
constexpr double kFiniteDifferenceTolerance = 1e-7;

std::vector<double> RandomDoubles(std::mt19937& rng, size_t n,
                                  double mean = 0.0, double stddev = 1.0) {
  std::normal_distribution<double> dist(mean, stddev);
  std::vector<double> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// Rounds to float32 (the fast kernels' inputs); the oracle then sees exactly
// the same values.
std::vector<double> RoundToFloat(std::vector<double> v) {
  for (auto& x : v) x = static_cast<float>(x);
  return v;
}

std::vector<float> ToFloat(const std::vector<double>& v) {
  return std::vector<float>(v.begin(), v.end());
}

double Norm(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

template <typename T>
double RelativeError(const std::vector<T>& out,
                     const std::vector<double>& ref) {
  EXPECT_EQ(out.size(), ref.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num += (out[i] - ref[i]) * (out[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

// Central differences of `loss` with respect to every element of `x`.
std::vector<double> FiniteDifferences(std::vector<double>& x,
                                      const std::function<double()>& loss) {
  std::vector<double> grad(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    const double eps = 1e-6 * std::max(1.0, std::fabs(saved));
    x[i] = saved + eps;
    const double plus = loss();
    x[i] = saved - eps;
    const double minus = loss();
    x[i] = saved;
    grad[i] = (plus - minus) / (2 * eps);
  }
  return grad;
}

double Dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// ---- Selective scan ---------------------------------------------------------

struct ScanCase {
  int64_t batch, seqlen, dim, dstate;
  bool reverse, softplus, with_bias, with_d, with_z;

  std::string Name() const {
    return "b" + std::to_string(batch) + "_L" + std::to_string(seqlen) + "_E" +
           std::to_string(dim) + "_N" + std::to_string(dstate) +
           (reverse ? "_rev" : "_fwd") + (softplus ? "_sp" : "") +
           (with_bias ? "_bias" : "") + (with_d ? "_D" : "") +
           (with_z ? "_z" : "");
  }
};

// Inputs at the magnitudes HARMamba sees (delta ~ 0.05 after softplus,
// A = -(1..N) jittered).
struct ScanInputs {
  ScanInputs(const ScanCase& c, uint32_t seed) : c(c) {
    std::mt19937 rng(seed);
    const int64_t bl = c.batch * c.seqlen;
    u = RoundToFloat(RandomDoubles(rng, bl * c.dim));
    delta =
        RoundToFloat(c.softplus ? RandomDoubles(rng, bl * c.dim)
                                : RandomDoubles(rng, bl * c.dim, 0.0, 0.02));
    if (!c.softplus) {
      for (auto& x : delta) x = std::fabs(x) + 0.01;
    }
    delta_bias = RoundToFloat(RandomDoubles(rng, c.dim, c.softplus ? -3.0 : 0.0,
                                            c.softplus ? 1.0 : 0.01));
    if (!c.softplus) {
      for (auto& x : delta_bias) x = std::fabs(x);
    }
    std::uniform_real_distribution<double> jitter(0.8, 1.2);
    A.resize(c.dim * c.dstate);
    for (int64_t d = 0; d < c.dim; ++d) {
      for (int64_t n = 0; n < c.dstate; ++n) {
        A[d * c.dstate + n] = static_cast<float>(-(n + 1) * jitter(rng));
      }
    }
    B = RoundToFloat(RandomDoubles(rng, bl * c.dstate));
    C = RoundToFloat(RandomDoubles(rng, bl * c.dstate));
    D = RoundToFloat(RandomDoubles(rng, c.dim));
    z = RoundToFloat(RandomDoubles(rng, bl * c.dim));
    dout = RoundToFloat(RandomDoubles(rng, bl * c.dim));
  }

  const double* bias_ptr() const {
    return c.with_bias ? delta_bias.data() : nullptr;
  }
  const double* d_ptr() const { return c.with_d ? D.data() : nullptr; }
  const double* z_ptr() const { return c.with_z ? z.data() : nullptr; }

  ScanCase c;
  std::vector<double> u, delta, delta_bias, A, B, C, D, z, dout;
};

struct ScanGradsRef {
  explicit ScanGradsRef(const ScanCase& c)
      : du(c.batch * c.seqlen * c.dim),
        ddelta(du.size()),
        ddelta_bias(c.dim),
        dA(c.dim * c.dstate),
        dB(c.batch * c.seqlen * c.dstate),
        dC(dB.size()),
        dD(c.dim),
        dz(du.size()) {}
  std::vector<double> du, ddelta, ddelta_bias, dA, dB, dC, dD, dz;
};

ScanGradsRef RunScanBackwardReference(const ScanInputs& in) {
  const ScanCase& c = in.c;
  ScanGradsRef g(c);
  SelectiveScanBackwardReference(
      c.batch, c.seqlen, c.dim, c.dstate, c.reverse, c.softplus, in.u.data(),
      in.delta.data(), in.bias_ptr(), in.A.data(), in.B.data(), in.C.data(),
      in.d_ptr(), in.z_ptr(), in.dout.data(), g.du.data(), g.ddelta.data(),
      c.with_bias ? g.ddelta_bias.data() : nullptr, g.dA.data(), g.dB.data(),
      g.dC.data(), c.with_d ? g.dD.data() : nullptr,
      c.with_z ? g.dz.data() : nullptr);
  return g;
}

double ScanLoss(const ScanInputs& in) {
  const ScanCase& c = in.c;
  std::vector<double> out(in.u.size());
  SelectiveScanReference(c.batch, c.seqlen, c.dim, c.dstate, c.reverse,
                         c.softplus, in.u.data(), in.delta.data(),
                         in.bias_ptr(), in.A.data(), in.B.data(), in.C.data(),
                         in.d_ptr(), in.z_ptr(), out.data());
  return Dot(out, in.dout);
}

class ScanBackwardReferenceTest : public ::testing::TestWithParam<ScanCase> {};

TEST_P(ScanBackwardReferenceTest, MatchesFiniteDifferences) {
  ScanInputs in(GetParam(), 17);
  const ScanGradsRef g = RunScanBackwardReference(in);
  auto loss = [&] { return ScanLoss(in); };
  struct Check {
    const char* name;
    std::vector<double>* input;
    const std::vector<double>* grad;
    bool active;
  };
  const ScanCase& c = in.c;
  const Check checks[] = {
      {"u", &in.u, &g.du, true},
      {"delta", &in.delta, &g.ddelta, true},
      {"delta_bias", &in.delta_bias, &g.ddelta_bias, c.with_bias},
      {"A", &in.A, &g.dA, true},
      {"B", &in.B, &g.dB, true},
      {"C", &in.C, &g.dC, true},
      {"D", &in.D, &g.dD, c.with_d},
      {"z", &in.z, &g.dz, c.with_z},
  };
  for (const Check& check : checks) {
    if (!check.active) continue;
    const std::vector<double> fd = FiniteDifferences(*check.input, loss);
    if (Norm(fd) == 0.0) {  // e.g. dA with seqlen 1 (the state starts at 0)
      EXPECT_EQ(Norm(*check.grad), 0.0) << check.name;
      continue;
    }
    EXPECT_LE(RelativeError(*check.grad, fd), kFiniteDifferenceTolerance)
        << check.name;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ScanBackwardReferenceTest,
    ::testing::Values(ScanCase{2, 5, 3, 2, false, true, true, true, true},
                      ScanCase{2, 5, 3, 2, true, true, true, true, true},
                      ScanCase{1, 4, 2, 3, false, false, false, false, false},
                      ScanCase{1, 4, 2, 3, true, false, true, false, true},
                      ScanCase{2, 1, 3, 1, true, true, false, true, false},
                      ScanCase{2, 5, 3, 4, true, false, true, true, false},
                      ScanCase{2, 5, 3, 4, true, true, false, false, true}),
    [](const auto& info) { return info.param.Name(); });

// The fast kernel on strided inputs: u and z interleaved in one buffer (as
// in_proj's output), B and C inside one x_proj-like row, dout and the
// per-element gradients with padded rows.
struct FastScanRun {
  std::vector<float> du, ddelta, dB, dC, dz, dA, dD, ddelta_bias;
};

FastScanRun RunScanBackwardFast(const ScanInputs& in, int splits) {
  const ScanCase& c = in.c;
  const int64_t L = c.seqlen, E = c.dim, N = c.dstate;
  const int64_t bl = c.batch * L;
  std::vector<float> uz(bl * 2 * E), bc(bl * (2 * N + 3));
  for (int64_t i = 0; i < bl; ++i) {
    for (int64_t d = 0; d < E; ++d) {
      uz[i * 2 * E + d] = in.u[i * E + d];
      uz[i * 2 * E + E + d] = in.z[i * E + d];
    }
    for (int64_t n = 0; n < N; ++n) {
      bc[i * (2 * N + 3) + 3 + n] = in.B[i * N + n];
      bc[i * (2 * N + 3) + 3 + N + n] = in.C[i * N + n];
    }
  }
  const std::vector<float> delta = ToFloat(in.delta),
                           bias = ToFloat(in.delta_bias), A = ToFloat(in.A),
                           D = ToFloat(in.D);
  const int64_t pad = E + 3;  // padded row of dout and of the gradients
  std::vector<float> dout(bl * pad);
  for (int64_t i = 0; i < bl; ++i) {
    for (int64_t d = 0; d < E; ++d) dout[i * pad + d] = in.dout[i * E + d];
  }
  SelectiveScanParams p;
  p.batch = c.batch;
  p.seqlen = L;
  p.dim = E;
  p.dstate = N;
  p.reverse = c.reverse;
  p.delta_softplus = c.softplus;
  p.u = uz.data();
  p.u_batch_stride = L * 2 * E;
  p.u_seq_stride = 2 * E;
  p.delta = delta.data();
  p.delta_batch_stride = L * E;
  p.delta_seq_stride = E;
  p.delta_bias = c.with_bias ? bias.data() : nullptr;
  p.A = A.data();
  p.A_dim_stride = N;
  p.A_state_stride = 1;
  p.B = bc.data() + 3;
  p.C = bc.data() + 3 + N;
  p.B_batch_stride = p.C_batch_stride = L * (2 * N + 3);
  p.B_seq_stride = p.C_seq_stride = 2 * N + 3;
  p.D = c.with_d ? D.data() : nullptr;
  if (c.with_z) {
    p.z = uz.data() + E;
    p.z_batch_stride = L * 2 * E;
    p.z_seq_stride = 2 * E;
  }

  std::vector<float> du(bl * pad, NAN), ddelta(bl * pad, NAN),
      dz(bl * pad, NAN), dB(bl * N, NAN), dC(bl * N, NAN), dA(E * N, 0.f),
      dD(E, 0.f), dbias(E, 0.f);
  SelectiveScanGrads g;
  g.dout = dout.data();
  g.dout_batch_stride = L * pad;
  g.dout_seq_stride = pad;
  g.du = du.data();
  g.ddelta = ddelta.data();
  g.du_batch_stride = g.ddelta_batch_stride = g.dz_batch_stride = L * pad;
  g.du_seq_stride = g.ddelta_seq_stride = g.dz_seq_stride = pad;
  g.dz = c.with_z ? dz.data() : nullptr;
  g.dB = dB.data();
  g.dC = dC.data();
  g.dB_batch_stride = g.dC_batch_stride = L * N;
  g.dB_seq_stride = g.dC_seq_stride = N;
  g.dA = dA.data();
  g.dD = c.with_d ? dD.data() : nullptr;
  g.ddelta_bias = c.with_bias ? dbias.data() : nullptr;
  EXPECT_TRUE(CheckSelectiveScanBackward(p, g).ok());

  // Split the batch as the adapter does; the parameter gradients accumulate.
  for (int s = 0; s < splits; ++s) {
    const int64_t b0 = s * c.batch / splits, b1 = (s + 1) * c.batch / splits;
    SelectiveScanParams ps = p;
    ps.batch = b1 - b0;
    ps.u += b0 * p.u_batch_stride;
    ps.delta += b0 * p.delta_batch_stride;
    ps.B += b0 * p.B_batch_stride;
    ps.C += b0 * p.C_batch_stride;
    if (ps.z) ps.z += b0 * p.z_batch_stride;
    SelectiveScanGrads gs = g;
    gs.dout += b0 * g.dout_batch_stride;
    gs.du += b0 * g.du_batch_stride;
    gs.ddelta += b0 * g.ddelta_batch_stride;
    if (gs.dz) gs.dz += b0 * g.dz_batch_stride;
    gs.dB += b0 * g.dB_batch_stride;
    gs.dC += b0 * g.dC_batch_stride;
    SelectiveScanBackward(ps, gs);
  }

  auto unpad = [&](const std::vector<float>& v) {
    std::vector<float> out(bl * E);
    for (int64_t i = 0; i < bl; ++i) {
      for (int64_t d = 0; d < E; ++d) out[i * E + d] = v[i * pad + d];
    }
    return out;
  };
  return {unpad(du), unpad(ddelta), dB, dC, unpad(dz), dA, dD, dbias};
}

class ScanBackwardFastTest : public ::testing::TestWithParam<ScanCase> {};

TEST_P(ScanBackwardFastTest, MatchesFloat64Reference) {
  const ScanCase c = GetParam();
  const ScanInputs in(c, 1000 + c.seqlen * 7 + c.dim * 13 + c.dstate);
  const ScanGradsRef ref = RunScanBackwardReference(in);
  const FastScanRun fast =
      RunScanBackwardFast(in, /*splits=*/c.batch > 1 ? 2 : 1);
  EXPECT_LE(RelativeError(fast.du, ref.du), kFloat32Tolerance) << "du";
  EXPECT_LE(RelativeError(fast.ddelta, ref.ddelta), kFloat32Tolerance)
      << "ddelta";
  EXPECT_LE(RelativeError(fast.dA, ref.dA), kFloat32Tolerance) << "dA";
  EXPECT_LE(RelativeError(fast.dB, ref.dB), kFloat32Tolerance) << "dB";
  EXPECT_LE(RelativeError(fast.dC, ref.dC), kFloat32Tolerance) << "dC";
  if (c.with_z) {
    EXPECT_LE(RelativeError(fast.dz, ref.dz), kFloat32Tolerance) << "dz";
  }
  if (c.with_d) {
    EXPECT_LE(RelativeError(fast.dD, ref.dD), kFloat32Tolerance) << "dD";
  }
  if (c.with_bias) {
    EXPECT_LE(RelativeError(fast.ddelta_bias, ref.ddelta_bias),
              kFloat32Tolerance)
        << "ddelta_bias";
  }
}

std::vector<ScanCase> FastScanCases() {
  std::vector<ScanCase> cases;
  for (int64_t L : {1, 7, 73}) {
    for (int64_t E : {5, 16, 33, 128}) {
      for (int64_t N : {1, 16}) {
        for (bool reverse : {false, true}) {
          cases.push_back({3, L, E, N, reverse, true, true, true, true});
          cases.push_back({3, L, E, N, reverse, true, false, false, false});
        }
      }
    }
  }
  cases.push_back({2, 73, 128, 16, false, false, true, true, false});
  cases.push_back({2, 73, 128, 16, true, false, false, false, true});
  cases.push_back({2, 50, 40, 7, true, true, true, true, true});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Shapes, ScanBackwardFastTest,
                         ::testing::ValuesIn(FastScanCases()),
                         [](const auto& info) { return info.param.Name(); });

TEST(ScanBackwardCheckTest, RejectsLowRankDeltaAndMissingGradients) {
  std::vector<float> buf(64, 1.f);
  SelectiveScanParams p;
  p.batch = p.seqlen = p.dim = 1;
  p.dstate = 4;
  p.u = p.A = p.B = p.C = p.delta = buf.data();
  SelectiveScanGrads g;
  g.dout = buf.data();
  g.du = g.ddelta = g.dB = g.dC = g.dA = buf.data() + 8;
  EXPECT_TRUE(CheckSelectiveScanBackward(p, g).ok());
  p.z = buf.data();
  EXPECT_FALSE(CheckSelectiveScanBackward(p, g).ok());  // z without dz
  p.z = nullptr;
  g.dA = nullptr;
  EXPECT_FALSE(CheckSelectiveScanBackward(p, g).ok());
  g.dA = buf.data() + 8;
  p.delta = nullptr;
  p.dt_low = p.dt_weight = buf.data();
  p.dt_rank = 1;
  EXPECT_FALSE(CheckSelectiveScanBackward(p, g).ok());
}

// ---- Causal conv1d ----------------------------------------------------------

struct ConvCase {
  int64_t batch, seqlen, dim, width;
  bool reverse, silu, with_bias;
};

struct ConvInputs {
  ConvInputs(const ConvCase& c, uint32_t seed) : c(c) {
    std::mt19937 rng(seed);
    x = RoundToFloat(RandomDoubles(rng, c.batch * c.seqlen * c.dim));
    weight = RoundToFloat(RandomDoubles(rng, c.dim * c.width, 0.0, 0.5));
    bias = RoundToFloat(RandomDoubles(rng, c.dim));
    dout = RoundToFloat(RandomDoubles(rng, x.size()));
  }
  ConvCase c;
  std::vector<double> x, weight, bias, dout;
};

struct ConvGradsRef {
  std::vector<double> dx, dweight, dbias;
};

ConvGradsRef RunConvBackwardReference(const ConvInputs& in) {
  const ConvCase& c = in.c;
  ConvGradsRef g{std::vector<double>(in.x.size()),
                 std::vector<double>(in.weight.size()),
                 std::vector<double>(c.dim)};
  CausalConv1dBackwardReference(
      c.batch, c.seqlen, c.dim, c.width, c.reverse, c.silu, in.x.data(),
      in.weight.data(), c.with_bias ? in.bias.data() : nullptr, in.dout.data(),
      g.dx.data(), g.dweight.data(), c.with_bias ? g.dbias.data() : nullptr);
  return g;
}

class ConvBackwardTest
    : public ::testing::TestWithParam<
          std::tuple<int64_t, int64_t, int64_t, bool, bool, bool>> {
 protected:
  ConvCase Case() const {
    const auto [L, E, W, reverse, silu, with_bias] = GetParam();
    return {3, L, E, W, reverse, silu, with_bias};
  }
};

TEST_P(ConvBackwardTest, FastMatchesFloat64Reference) {
  const ConvCase c = Case();
  const ConvInputs in(c, 77 + c.seqlen + 3 * c.dim + c.width);
  const ConvGradsRef ref = RunConvBackwardReference(in);
  const int64_t L = c.seqlen, E = c.dim, pad = E + 5;
  // x and dout with padded rows (strides), dx with another padding.
  std::vector<float> x(c.batch * L * pad), dout(c.batch * L * pad);
  for (int64_t i = 0; i < c.batch * L; ++i) {
    for (int64_t d = 0; d < E; ++d) {
      x[i * pad + d] = in.x[i * E + d];
      dout[i * pad + d] = in.dout[i * E + d];
    }
  }
  const std::vector<float> w = ToFloat(in.weight), bias = ToFloat(in.bias);
  std::vector<float> dx(c.batch * L * (E + 1), NAN), dw(E * c.width, 0.f),
      db(E, 0.f);
  CausalConv1dParams p;
  p.batch = c.batch;
  p.seqlen = L;
  p.dim = E;
  p.width = c.width;
  p.reverse = c.reverse;
  p.silu = c.silu;
  p.x = x.data();
  p.x_batch_stride = L * pad;
  p.x_seq_stride = pad;
  p.weight = w.data();
  p.bias = c.with_bias ? bias.data() : nullptr;
  CausalConv1dGrads g;
  g.dout = dout.data();
  g.dout_batch_stride = L * pad;
  g.dout_seq_stride = pad;
  g.dx = dx.data();
  g.dx_batch_stride = L * (E + 1);
  g.dx_seq_stride = E + 1;
  g.dweight = dw.data();
  g.dbias = c.with_bias ? db.data() : nullptr;
  ASSERT_TRUE(CheckCausalConv1dBackward(p, g).ok());
  // Two calls over halves of the batch accumulate dweight/dbias.
  CausalConv1dParams p1 = p, p2 = p;
  CausalConv1dGrads g1 = g, g2 = g;
  p1.batch = 1;
  p2.batch = c.batch - 1;
  p2.x += p.x_batch_stride;
  g2.dout += g.dout_batch_stride;
  g2.dx += g.dx_batch_stride;
  CausalConv1dBackward(p1, g1);
  CausalConv1dBackward(p2, g2);

  std::vector<float> dx_dense(c.batch * L * E);
  for (int64_t i = 0; i < c.batch * L; ++i) {
    for (int64_t d = 0; d < E; ++d) dx_dense[i * E + d] = dx[i * (E + 1) + d];
  }
  EXPECT_LE(RelativeError(dx_dense, ref.dx), kFloat32Tolerance) << "dx";
  EXPECT_LE(RelativeError(dw, ref.dweight), kFloat32Tolerance) << "dweight";
  if (c.with_bias) {
    EXPECT_LE(RelativeError(db, ref.dbias), kFloat32Tolerance) << "dbias";
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, ConvBackwardTest,
                         ::testing::Combine(::testing::Values(1, 3, 7, 73),
                                            ::testing::Values(5, 16, 33, 128),
                                            ::testing::Values(1, 4),
                                            ::testing::Bool(),
                                            ::testing::Bool(),
                                            ::testing::Bool()));

// Finite differences on small sizes.
class ConvBackwardReferenceTest
    : public ::testing::TestWithParam<
          std::tuple<int64_t, int64_t, bool, bool, bool>> {
 protected:
  ConvCase Case() const {
    const auto [L, W, reverse, silu, with_bias] = GetParam();
    return {2, L, 5, W, reverse, silu, with_bias};
  }
};

TEST_P(ConvBackwardReferenceTest, MatchesFiniteDifferences) {
  const ConvCase c = Case();
  ConvInputs in(c, 31);
  const ConvGradsRef g = RunConvBackwardReference(in);
  auto loss = [&] {
    std::vector<double> out(in.x.size());
    CausalConv1dReference(c.batch, c.seqlen, c.dim, c.width, c.reverse, c.silu,
                          in.x.data(), in.weight.data(),
                          c.with_bias ? in.bias.data() : nullptr, out.data());
    return Dot(out, in.dout);
  };
  EXPECT_LE(RelativeError(g.dx, FiniteDifferences(in.x, loss)),
            kFiniteDifferenceTolerance);
  EXPECT_LE(RelativeError(g.dweight, FiniteDifferences(in.weight, loss)),
            kFiniteDifferenceTolerance);
  if (c.with_bias) {
    EXPECT_LE(RelativeError(g.dbias, FiniteDifferences(in.bias, loss)),
              kFiniteDifferenceTolerance);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, ConvBackwardReferenceTest,
                         ::testing::Combine(::testing::Values(1, 3, 7),
                                            ::testing::Values(1, 3, 4, 8),
                                            ::testing::Bool(),
                                            ::testing::Bool(),
                                            ::testing::Bool()));

TEST(ConvBackwardCheckTest, RejectsAliasingAndMissingGradients) {
  std::vector<float> buf(64, 1.f);
  CausalConv1dParams p;
  p.batch = p.seqlen = p.dim = 1;
  p.width = 4;
  p.x = p.weight = buf.data();
  CausalConv1dGrads g;
  g.dout = buf.data() + 8;
  g.dx = buf.data() + 16;
  g.dweight = buf.data() + 24;
  EXPECT_TRUE(CheckCausalConv1dBackward(p, g).ok());
  g.dx = buf.data();  // aliases x
  EXPECT_FALSE(CheckCausalConv1dBackward(p, g).ok());
  g.dx = buf.data() + 16;
  g.dweight = nullptr;
  EXPECT_FALSE(CheckCausalConv1dBackward(p, g).ok());
}

}  // namespace
}  // namespace harmamba::kernels
