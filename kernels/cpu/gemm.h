// Single-precision GEMM on the CPU through CBLAS (OpenBLAS on our machines).
//
// Row-major: C[m][n] = alpha * sum_k A[m][k] * B'[k][n] + beta * C[m][n],
// where B' = B (b_transposed = false, B is [k][n]) or B^T (B is [n][k]).
//
// Thread-safety: safe to call concurrently from several threads once
// SetBlasThreadsForCallerParallelism() has run (each call then runs on the
// calling thread only; we parallelise over windows instead).
#ifndef HARMAMBA_KERNELS_CPU_GEMM_H_
#define HARMAMBA_KERNELS_CPU_GEMM_H_

#include <cstdint>

namespace harmamba::kernels {

void Sgemm(int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, bool b_transposed,
           float beta, float* c, int64_t ldc);

// Makes BLAS single-threaded inside each call (OpenBLAS's own threads are
// slower than ours at these shapes). Idempotent; returns false when the BLAS
// in use offers no such control (calls are then still correct).
bool SetBlasThreadsForCallerParallelism();

}  // namespace harmamba::kernels

#endif  // HARMAMBA_KERNELS_CPU_GEMM_H_
