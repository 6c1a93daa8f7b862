// Single-precision GEMM for the model's projections, on the CPU.
//
// The right-hand matrix (a weight) is packed once into column panels; every
// product then streams rows of A through a register-blocked micro-kernel
// (8 rows x 32 columns of accumulators). Written here rather than taken from
// BLAS because Debian's OpenBLAS 0.3.21 falls back to SSE3 kernels on CPUs
// it does not recognise (our AVX-512 dev machines among them) and its
// packing overhead dominates at these shapes (K = 64..256, M = 73..292).
//
// Thread-safety: a PackedMatrix is immutable after packing and may be shared
// by any number of threads calling Gemm concurrently.
#ifndef HARMAMBA_KERNELS_CPU_GEMM_H_
#define HARMAMBA_KERNELS_CPU_GEMM_H_

#include <cstdint>
#include <memory>

namespace harmamba::kernels {

class PackedMatrix {
 public:
  PackedMatrix() = default;

  // Packs the K x N matrix B, given either as B[k][n] (ld = row stride) or,
  // with `transposed`, as its transpose Bt[n][k] (PyTorch's Linear weight
  // layout [out][in]).
  static PackedMatrix Pack(const float* b, int64_t k, int64_t n, int64_t ld,
                           bool transposed);

  int64_t k() const { return k_; }
  int64_t n() const { return n_; }

  // Panel layout: panel p covers columns [p * kPanel, ...); element (k, j)
  // of a panel sits at panel_base + k * kPanel + j. Padding columns are zero.
  static constexpr int64_t kPanel = 32;
  const float* panel(int64_t p) const { return data_.get() + p * k_ * kPanel; }
  int64_t num_panels() const { return (n_ + kPanel - 1) / kPanel; }

 private:
  struct Free {
    void operator()(float* p) const;
  };
  int64_t k_ = 0, n_ = 0;
  std::unique_ptr<float, Free> data_;
};

// C[m][n] = A[m][k] * B + (beta != 0 ? beta * C : 0) + (bias ? bias[n] : 0).
// A has row stride lda, C row stride ldc; B.k() must equal the inner size.
// With beta == 0, C is only written (may hold garbage or NaN on entry).
void Gemm(int64_t m, const float* a, int64_t lda, const PackedMatrix& b,
          float beta, const float* bias, float* c, int64_t ldc);

// float64 oracle: C = A * B' + beta * C (+ bias), B' = B [k][n] row-major.
void GemmReference(int64_t m, int64_t n, int64_t k, const double* a,
                   const double* b, double beta, const double* bias, double* c);

}  // namespace harmamba::kernels

#endif  // HARMAMBA_KERNELS_CPU_GEMM_H_
