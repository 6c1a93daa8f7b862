#include "kernels/cpu/gemm.h"

#include <cblas.h>
#include <dlfcn.h>

namespace harmamba::kernels {

void Sgemm(int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, bool b_transposed,
           float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans,
              b_transposed ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c,
              static_cast<int>(ldc));
}

bool SetBlasThreadsForCallerParallelism() {
  // OpenBLAS exports openblas_set_num_threads; other BLAS builds may not, so
  // look it up instead of linking against it.
  using SetThreadsFn = void (*)(int);
  static const bool done = [] {
    auto fn = reinterpret_cast<SetThreadsFn>(
        dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
    if (fn == nullptr) return false;
    fn(1);
    return true;
  }();
  return done;
}

}  // namespace harmamba::kernels
