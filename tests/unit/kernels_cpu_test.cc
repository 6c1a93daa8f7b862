// CPU kernels against their float64 oracles on fresh random inputs.
#include <cmath>
#include <random>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/causal_conv1d.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/layer_norm.h"
#include "kernels/cpu/selective_scan.h"

namespace harmamba::kernels {
namespace {

constexpr double kTolerance = 1e-5;  // norm-wise relative, fp32 (design §4)

std::vector<float> Random(std::mt19937& rng, size_t n, float mean = 0.f,
                          float stddev = 1.f) {
  std::normal_distribution<float> dist(mean, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

std::vector<double> ToDouble(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// ||out - ref||_2 / ||ref||_2
double RelativeError(const std::vector<float>& out,
                     const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num += (out[i] - ref[i]) * (out[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}

// ---- Selective scan ---------------------------------------------------------

struct ScanCase {
  int64_t seqlen, dim, dstate;
  bool reverse, softplus, with_d, with_z, with_bias, low_rank;
};

class SelectiveScanTest : public ::testing::TestWithParam<ScanCase> {};

TEST_P(SelectiveScanTest, MatchesFloat64Reference) {
  const ScanCase c = GetParam();
  const int64_t batch = 3, L = c.seqlen, E = c.dim, N = c.dstate, R = 4;
  std::mt19937 rng(1234 + L * 7 + E * 13 + N);
  // Inputs at the magnitudes HARMamba sees: A = -exp(A_log), A_log = log(1..N)
  // jittered; delta before softplus around -3 (dt ~ 0.05).
  auto u = Random(rng, batch * L * E);
  auto B = Random(rng, batch * L * N);
  auto C = Random(rng, batch * L * N);
  auto z = Random(rng, batch * L * E);
  auto D = Random(rng, E);
  auto bias = Random(rng, E, -3.f, 1.f);
  auto dt_low = Random(rng, batch * L * R, 0.f, 0.5f);
  auto dt_w = Random(rng, E * R, 0.f, 0.5f);
  auto delta = Random(rng, batch * L * E, c.softplus ? 0.f : 0.1f,
                      c.softplus ? 1.f : 0.02f);
  if (!c.softplus) {
    for (auto& x : delta) x = std::fabs(x);  // a valid step size without it
  }
  std::vector<float> A(E * N);
  std::uniform_real_distribution<float> jitter(0.8f, 1.2f);
  for (int64_t d = 0; d < E; ++d) {
    for (int64_t n = 0; n < N; ++n) A[d * N + n] = -(n + 1) * jitter(rng);
  }
  // The dense delta the reference sees in the low-rank case.
  std::vector<double> delta_ref = ToDouble(delta);
  if (c.low_rank) {
    for (int64_t i = 0; i < batch * L; ++i) {
      for (int64_t d = 0; d < E; ++d) {
        double s = 0;
        for (int64_t r = 0; r < R; ++r) {
          s += double(dt_low[i * R + r]) * dt_w[d * R + r];
        }
        delta_ref[i * E + d] = s;
      }
    }
  }

  // The fast kernel reads u and z from one interleaved buffer (as the model
  // lays out in_proj's output) to exercise the strides.
  std::vector<float> uz(batch * L * 2 * E);
  for (int64_t i = 0; i < batch * L; ++i) {
    for (int64_t d = 0; d < E; ++d) {
      uz[i * 2 * E + d] = u[i * E + d];
      uz[i * 2 * E + E + d] = z[i * E + d];
    }
  }
  std::vector<float> out(batch * L * E, NAN);
  SelectiveScanParams p;
  p.batch = batch;
  p.seqlen = L;
  p.dim = E;
  p.dstate = N;
  p.reverse = c.reverse;
  p.delta_softplus = c.softplus;
  p.u = uz.data();
  p.u_batch_stride = L * 2 * E;
  p.u_seq_stride = 2 * E;
  if (c.low_rank) {
    p.dt_low = dt_low.data();
    p.dt_low_batch_stride = L * R;
    p.dt_low_seq_stride = R;
    p.dt_rank = R;
    p.dt_weight = dt_w.data();
  } else {
    p.delta = delta.data();
    p.delta_batch_stride = L * E;
    p.delta_seq_stride = E;
  }
  p.delta_bias = c.with_bias ? bias.data() : nullptr;
  p.A = A.data();
  p.A_dim_stride = N;
  p.A_state_stride = 1;
  p.B = B.data();
  p.B_batch_stride = L * N;
  p.B_seq_stride = N;
  p.C = C.data();
  p.C_batch_stride = L * N;
  p.C_seq_stride = N;
  p.D = c.with_d ? D.data() : nullptr;
  if (c.with_z) {
    p.z = uz.data() + E;
    p.z_batch_stride = L * 2 * E;
    p.z_seq_stride = 2 * E;
  }
  p.out = out.data();
  p.out_batch_stride = L * E;
  p.out_seq_stride = E;
  ASSERT_TRUE(CheckSelectiveScanParams(p).ok());
  SelectiveScanForward(p);

  std::vector<double> ref(out.size());
  auto bias_d = ToDouble(bias), A_d = ToDouble(A), B_d = ToDouble(B),
       C_d = ToDouble(C), D_d = ToDouble(D), z_d = ToDouble(z),
       u_d = ToDouble(u);
  SelectiveScanReference(
      batch, L, E, N, c.reverse, c.softplus, u_d.data(), delta_ref.data(),
      c.with_bias ? bias_d.data() : nullptr, A_d.data(), B_d.data(), C_d.data(),
      c.with_d ? D_d.data() : nullptr, c.with_z ? z_d.data() : nullptr,
      ref.data());
  EXPECT_LE(RelativeError(out, ref), kTolerance);
}

std::vector<ScanCase> ScanCases() {
  std::vector<ScanCase> cases;
  for (int64_t L : {1, 7, 73}) {
    for (int64_t E : {5, 16, 33, 128}) {
      for (int64_t N : {1, 16}) {
        for (bool reverse : {false, true}) {
          cases.push_back({L, E, N, reverse, true, true, true, true, true});
          cases.push_back({L, E, N, reverse, true, false, false, true, false});
        }
      }
    }
  }
  cases.push_back({73, 128, 16, false, false, true, true, false, false});
  cases.push_back({73, 128, 16, true, false, true, false, false, false});
  cases.push_back({50, 40, 7, true, true, true, true, true, true});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Shapes, SelectiveScanTest,
                         ::testing::ValuesIn(ScanCases()));

TEST(SelectiveScanParamsTest, RejectsMissingDeltaAndBadState) {
  std::vector<float> buf(64, 1.f);
  SelectiveScanParams p;
  p.batch = p.seqlen = p.dim = 1;
  p.dstate = 4;
  p.u = p.A = p.B = p.C = buf.data();
  p.out = buf.data();
  EXPECT_FALSE(CheckSelectiveScanParams(p).ok());  // no delta
  p.delta = buf.data();
  EXPECT_TRUE(CheckSelectiveScanParams(p).ok());
  p.dstate = 0;
  EXPECT_FALSE(CheckSelectiveScanParams(p).ok());
}

// ---- Causal conv1d
// ------------------------------------------------------------

class CausalConv1dTest
    : public ::testing::TestWithParam<
          std::tuple<int64_t, int64_t, int64_t, bool, bool, bool>> {};

TEST_P(CausalConv1dTest, MatchesFloat64Reference) {
  const auto [L, E, W, reverse, silu, with_bias] = GetParam();
  const int64_t batch = 2;
  std::mt19937 rng(99 + L + E * 3 + W);
  auto x = Random(rng, batch * L * E);
  auto w = Random(rng, E * W, 0.f, 0.5f);
  auto bias = Random(rng, E);
  std::vector<float> out(x.size(), NAN);
  CausalConv1dParams p;
  p.batch = batch;
  p.seqlen = L;
  p.dim = E;
  p.width = W;
  p.reverse = reverse;
  p.silu = silu;
  p.x = x.data();
  p.x_batch_stride = L * E;
  p.x_seq_stride = E;
  p.weight = w.data();
  p.bias = with_bias ? bias.data() : nullptr;
  p.out = out.data();
  p.out_batch_stride = L * E;
  p.out_seq_stride = E;
  ASSERT_TRUE(CheckCausalConv1dParams(p).ok());
  CausalConv1dForward(p);
  std::vector<double> ref(out.size());
  auto xd = ToDouble(x), wd = ToDouble(w), bd = ToDouble(bias);
  CausalConv1dReference(batch, L, E, W, reverse, silu, xd.data(), wd.data(),
                        with_bias ? bd.data() : nullptr, ref.data());
  EXPECT_LE(RelativeError(out, ref), kTolerance);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CausalConv1dTest,
    ::testing::Combine(::testing::Values(1, 3, 73), ::testing::Values(5, 128),
                       ::testing::Values(1, 4), ::testing::Bool(),
                       ::testing::Bool(), ::testing::Bool()));

TEST(CausalConv1dTest, ReverseEqualsConvOfFlippedSequence) {
  const int64_t L = 9, E = 17, W = 4;
  std::mt19937 rng(5);
  auto x = Random(rng, L * E);
  auto w = Random(rng, E * W);
  std::vector<float> flipped(L * E), out_rev(L * E), out_flip(L * E);
  for (int64_t t = 0; t < L; ++t) {
    for (int64_t d = 0; d < E; ++d) flipped[t * E + d] = x[(L - 1 - t) * E + d];
  }
  CausalConv1dParams p;
  p.batch = 1;
  p.seqlen = L;
  p.dim = E;
  p.width = W;
  p.x_seq_stride = p.out_seq_stride = E;
  p.weight = w.data();
  p.reverse = true;
  p.x = x.data();
  p.out = out_rev.data();
  CausalConv1dForward(p);
  p.reverse = false;
  p.x = flipped.data();
  p.out = out_flip.data();
  CausalConv1dForward(p);
  for (int64_t t = 0; t < L; ++t) {
    for (int64_t d = 0; d < E; ++d) {
      EXPECT_FLOAT_EQ(out_rev[t * E + d], out_flip[(L - 1 - t) * E + d]);
    }
  }
}

// ---- LayerNorm and GEMM
// ---------------------------------------------------------

TEST(LayerNormTest, FusedAddMatchesFloat64Reference) {
  for (int64_t dim : {1, 7, 64}) {
    const int64_t rows = 37;
    std::mt19937 rng(dim);
    auto x = Random(rng, rows * dim, 0.5f, 2.f);
    auto res = Random(rng, rows * dim);
    auto gamma = Random(rng, dim), beta = Random(rng, dim);
    std::vector<float> out(rows * dim), sum(rows * dim);
    LayerNormParams p;
    p.rows = rows;
    p.dim = dim;
    p.x = x.data();
    p.x_row_stride = dim;
    p.residual = res.data();
    p.residual_row_stride = dim;
    p.sum_out = sum.data();
    p.sum_out_row_stride = dim;
    p.gamma = gamma.data();
    p.beta = beta.data();
    p.out = out.data();
    p.out_row_stride = dim;
    LayerNormForward(p);
    std::vector<double> ref(out.size());
    auto xd = ToDouble(x), rd = ToDouble(res), gd = ToDouble(gamma),
         bd = ToDouble(beta);
    LayerNormReference(rows, dim, 1e-5, xd.data(), rd.data(), gd.data(),
                       bd.data(), ref.data());
    EXPECT_LE(RelativeError(out, ref), kTolerance) << "dim " << dim;
    for (int64_t i = 0; i < rows * dim; ++i) {
      EXPECT_FLOAT_EQ(sum[i], x[i] + res[i]);
    }
  }
}

TEST(GemmTest, MatchesFloat64ReferenceAllShapesAndLayouts) {
  // Row counts around the 8-row micro-tile, columns around the 32-wide and
  // 16-lane edges, inner sizes of the model (and odd ones).
  for (int64_t m : {1, 7, 8, 9, 73, 292}) {
    for (int64_t n : {1, 16, 36, 64, 100, 512}) {
      for (int64_t k : {1, 4, 64, 129}) {
        for (bool transposed : {false, true}) {
          for (bool with_bias : {false, true}) {
            const float beta = (m + n) % 2 ? 0.f : 2.f;
            std::mt19937 rng(m * 1000 + n * 10 + k);
            auto a = Random(rng, m * k), b = Random(rng, k * n),
                 c0 = Random(rng, m * n), bias = Random(rng, n);
            std::vector<float> bt(n * k);  // [n][k]
            for (int64_t i = 0; i < k; ++i) {
              for (int64_t j = 0; j < n; ++j) bt[j * k + i] = b[i * n + j];
            }
            const PackedMatrix packed =
                transposed ? PackedMatrix::Pack(bt.data(), k, n, k, true)
                           : PackedMatrix::Pack(b.data(), k, n, n, false);
            std::vector<float> c = c0;
            Gemm(m, a.data(), k, packed, beta,
                 with_bias ? bias.data() : nullptr, c.data(), n);
            std::vector<double> ref = ToDouble(c0);
            auto ad = ToDouble(a), bd = ToDouble(b), biasd = ToDouble(bias);
            GemmReference(m, n, k, ad.data(), bd.data(), beta,
                          with_bias ? biasd.data() : nullptr, ref.data());
            EXPECT_LE(RelativeError(c, ref), kTolerance)
                << m << "x" << n << "x" << k << " t=" << transposed;
          }
        }
      }
    }
  }
}

TEST(GemmTest, BetaZeroIgnoresGarbageInOutput) {
  std::vector<float> a = {1, 2}, b = {3, 4}, c = {NAN, NAN, NAN, NAN};
  const PackedMatrix packed = PackedMatrix::Pack(b.data(), 1, 2, 2, false);
  Gemm(2, a.data(), 1, packed, 0.f, nullptr, c.data(), 2);
  EXPECT_EQ(c, (std::vector<float>{3, 4, 6, 8}));
}

}  // namespace
}  // namespace harmamba::kernels
