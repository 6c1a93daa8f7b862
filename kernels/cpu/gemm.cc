#include "kernels/cpu/gemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "kernels/cpu/vec.h"

namespace harmamba::kernels {
namespace {

using vec::Vec;
constexpr int kMr = 8;                                   // rows per micro-tile
constexpr int kNv = PackedMatrix::kPanel / vec::kLanes;  // vectors per row

// Accumulates rows [0, kRows) of A (row stride lda) times one panel over
// the whole inner dimension, then stores `cols` valid columns into C.
template <int kRows>
void MicroKernel(int64_t k, const float* a, int64_t lda, const float* panel,
                 float beta, const float* bias, float* c, int64_t ldc,
                 int64_t cols) {
  Vec acc[kRows][kNv];
  for (int i = 0; i < kRows; ++i) {
    for (int v = 0; v < kNv; ++v) acc[i][v] = vec::Splat(0.f);
  }
  for (int64_t kk = 0; kk < k; ++kk) {
    Vec b[kNv];
    for (int v = 0; v < kNv; ++v)
      b[v] = vec::Load(panel + kk * PackedMatrix::kPanel + v * vec::kLanes);
#pragma GCC unroll 8
    for (int i = 0; i < kRows; ++i) {
      const float ai = a[i * lda + kk];
      for (int v = 0; v < kNv; ++v) acc[i][v] += b[v] * ai;
    }
  }
  for (int i = 0; i < kRows; ++i) {
    float* ci = c + i * ldc;
    for (int v = 0; v < kNv; ++v) {
      const int64_t col0 = v * vec::kLanes;
      if (col0 >= cols) break;
      const int lanes =
          static_cast<int>(std::min<int64_t>(vec::kLanes, cols - col0));
      Vec r = acc[i][v];
      if (lanes == vec::kLanes) {
        if (bias) r += vec::Load(bias + col0);
        if (beta != 0.f) r += vec::Load(ci + col0) * beta;
        vec::Store(ci + col0, r);
      } else {
        if (bias) r += vec::LoadPartial(bias + col0, lanes);
        if (beta != 0.f) r += vec::LoadPartial(ci + col0, lanes) * beta;
        vec::StorePartial(ci + col0, r, lanes);
      }
    }
  }
}

using MicroKernelFn = void (*)(int64_t, const float*, int64_t, const float*,
                               float, const float*, float*, int64_t, int64_t);
constexpr MicroKernelFn kKernels[kMr + 1] = {
    nullptr,        MicroKernel<1>, MicroKernel<2>,
    MicroKernel<3>, MicroKernel<4>, MicroKernel<5>,
    MicroKernel<6>, MicroKernel<7>, MicroKernel<8>};

}  // namespace

void PackedMatrix::Free::operator()(float* p) const { std::free(p); }

PackedMatrix PackedMatrix::Pack(const float* b, int64_t k, int64_t n,
                                int64_t ld, bool transposed) {
  PackedMatrix m;
  m.k_ = k;
  m.n_ = n;
  const size_t floats = static_cast<size_t>(m.num_panels() * k * kPanel);
  const size_t bytes = std::max<size_t>(64, ((floats * 4 + 63) / 64) * 64);
  m.data_.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
  std::memset(m.data_.get(), 0, bytes);
  for (int64_t p = 0; p < m.num_panels(); ++p) {
    float* dst = m.data_.get() + p * k * kPanel;
    for (int64_t kk = 0; kk < k; ++kk) {
      for (int64_t j = 0; j < kPanel && p * kPanel + j < n; ++j) {
        const int64_t col = p * kPanel + j;
        dst[kk * kPanel + j] = transposed ? b[col * ld + kk] : b[kk * ld + col];
      }
    }
  }
  return m;
}

void Gemm(int64_t m, const float* a, int64_t lda, const PackedMatrix& b,
          float beta, const float* bias, float* c, int64_t ldc) {
  for (int64_t p = 0; p < b.num_panels(); ++p) {
    const int64_t col0 = p * PackedMatrix::kPanel;
    const int64_t cols = std::min(PackedMatrix::kPanel, b.n() - col0);
    const float* panel = b.panel(p);
    const float* panel_bias = bias ? bias + col0 : nullptr;
    for (int64_t i0 = 0; i0 < m; i0 += kMr) {
      const int rows = static_cast<int>(std::min<int64_t>(kMr, m - i0));
      kKernels[rows](b.k(), a + i0 * lda, lda, panel, beta, panel_bias,
                     c + i0 * ldc + col0, ldc, cols);
    }
  }
}

void GemmReference(int64_t m, int64_t n, int64_t k, const double* a,
                   const double* b, double beta, const double* bias,
                   double* c) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t l = 0; l < k; ++l) s += a[i * k + l] * b[l * n + j];
      const double prior = beta != 0.0 ? beta * c[i * n + j] : 0.0;
      c[i * n + j] = s + prior + (bias ? bias[j] : 0.0);
    }
  }
}

}  // namespace harmamba::kernels
