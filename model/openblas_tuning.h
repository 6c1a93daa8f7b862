// Works around Debian 12's OpenBLAS 0.3.21 not recognising recent CPUs.
//
// That OpenBLAS picks its kernels once, when the library loads. On CPUs it
// does not know (our Xeon dev machines, model 207, among them) it falls back
// to "Prescott" SSE3 kernels, ~4-5x slower than its AVX-512 ones. The choice
// can only be overridden through the environment variable OPENBLAS_CORETYPE
// before the library loads, so a program that uses LibTorch (whose GEMMs go
// to OpenBLAS) calls this first thing in main().
#ifndef HARMAMBA_MODEL_OPENBLAS_TUNING_H_
#define HARMAMBA_MODEL_OPENBLAS_TUNING_H_

#include <string>

namespace harmamba {

// If OpenBLAS is loaded, OPENBLAS_CORETYPE is unset, OpenBLAS chose a
// generic core and the CPU supports AVX-512 (or AVX2), sets
// OPENBLAS_CORETYPE=SkylakeX (or Haswell) and re-executes the program with
// the same arguments; does not return then. Otherwise returns, having done
// nothing. Set HARMAMBA_NO_BLAS_TUNING=1 to disable.
void ReexecWithTunedOpenBlasIfNeeded(char** argv);

// The core OpenBLAS uses ("SkylakeX", "Prescott", ...), or "" if OpenBLAS is
// not loaded.
std::string OpenBlasCoreName();

// Sets the number of threads OpenBLAS's own thread pool uses for one BLAS
// call (openblas_set_num_threads) and returns true; returns false, doing
// nothing, if OpenBLAS is not loaded. LibTorch's at::set_num_threads does not
// reach OpenBLAS, whose pool otherwise uses every core: on a shared, loaded
// machine its spinning threads slow a 1-thread training run ~1.6x.
bool SetOpenBlasNumThreads(int num_threads);

}  // namespace harmamba

#endif  // HARMAMBA_MODEL_OPENBLAS_TUNING_H_
