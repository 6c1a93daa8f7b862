#include "model/openblas_tuning.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace harmamba {

std::string OpenBlasCoreName() {
  using CoreNameFn = char* (*)();
  auto fn = reinterpret_cast<CoreNameFn>(
      dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  if (fn == nullptr) return "";
  const char* name = fn();
  return name ? name : "";
}

bool SetOpenBlasNumThreads(int num_threads) {
  using SetThreadsFn = void (*)(int);
  auto fn = reinterpret_cast<SetThreadsFn>(
      dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (fn == nullptr) return false;
  fn(num_threads);
  return true;
}

void ReexecWithTunedOpenBlasIfNeeded(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr ||
      std::getenv("HARMAMBA_NO_BLAS_TUNING") != nullptr) {
    return;
  }
  const std::string core = OpenBlasCoreName();
  // Generic fallbacks of OpenBLAS's dynamic dispatch.
  const bool generic = core == "Prescott" || core == "Core2" ||
                       core == "Nehalem" || core == "Penryn" ||
                       core == "Dunnington";
  if (!generic) return;
  const char* better = nullptr;
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl")) {
    better = "SkylakeX";
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    better = "Haswell";
  }
#endif
  if (better == nullptr) return;
  setenv("OPENBLAS_CORETYPE", better, 1);
  execv("/proc/self/exe", argv);
  // exec failed: carry on with the slow kernels.
  std::fprintf(stderr,
               "note: could not re-execute with OPENBLAS_CORETYPE=%s: %s\n",
               better, std::strerror(errno));
}

}  // namespace harmamba
