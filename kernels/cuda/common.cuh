// Internal helpers shared by the CUDA kernels (not part of the public API):
// launch checking, warp reductions and the fp32 activation functions.
//
// Math precision: no global --use_fast_math. Each kernel names its
// approximation explicitly: exp2f for the scan decays (2 ulp, SFU), __expf
// for sigmoid/softplus arguments (fine at the magnitudes the model sees),
// IEEE division and sqrt everywhere else.
#ifndef HARMAMBA_KERNELS_CUDA_COMMON_CUH_
#define HARMAMBA_KERNELS_CUDA_COMMON_CUH_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace harmamba::kernels::cuda::internal {

inline constexpr unsigned kFullMask = 0xffffffffu;
inline constexpr float kLog2e = 1.4426950408889634f;

// Turns the error state after a launch into a Status naming the kernel.
// cudaGetLastError also clears a sticky launch-configuration error, so one
// bad launch does not poison the next call.
inline absl::Status CheckLaunch(const char* kernel) {
  const cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(std::string(kernel) +
                             ": launch failed: " + cudaGetErrorString(err));
}

inline absl::Status CheckCuda(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(std::string(what) + ": " +
                             cudaGetErrorString(err));
}

inline constexpr size_t AlignUp(size_t bytes, size_t alignment = 256) {
  return (bytes + alignment - 1) / alignment * alignment;
}

#if defined(__CUDACC__) || defined(HARMAMBA_CUDA_EMULATION)

__device__ __forceinline__ float Sigmoid(float x) {
  return 1.0f / (1.0f + __expf(-x));
}

__device__ __forceinline__ float Silu(float x) { return x * Sigmoid(x); }

// d/dx SiLU(x) = s (1 + x (1 - s)), s = sigmoid(x).
__device__ __forceinline__ float SiluGrad(float x) {
  const float s = Sigmoid(x);
  return s * (1.0f + x * (1.0f - s));
}

// log(1 + e^x), exact to fp32 above 20 where log1p(e^x) == x.
__device__ __forceinline__ float Softplus(float x) {
  return x > 20.0f ? x : log1pf(__expf(x));
}

// Sum over the `kWidth` consecutive lanes of an aligned lane group; every
// lane of the group receives the total. All 32 lanes must call it.
template <int kWidth>
__device__ __forceinline__ float GroupSum(float v) {
#pragma unroll
  for (int offset = kWidth / 2; offset > 0; offset >>= 1) {
    v += __shfl_xor_sync(kFullMask, v, offset);
  }
  return v;
}

// Reduce-scatter of 32 values across a warp: on entry every lane holds
// v[0..32); on exit lane l's v[0] holds the warp-wide sum of v[l]. 31
// shuffles instead of 32 x 5 for separate reductions; the summation order
// is fixed, so results are deterministic. All 32 lanes must call it.
__device__ __forceinline__ float WarpReduceScatter32(float (&v)[32]) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int half = 16; half >= 1; half >>= 1) {
    const bool upper = (lane & half) != 0;
#pragma unroll
    for (int i = 0; i < half; ++i) {
      const float send = upper ? v[i] : v[i + half];
      const float keep = upper ? v[i + half] : v[i];
      v[i] = keep + __shfl_xor_sync(kFullMask, send, half);
    }
  }
  return v[0];
}

// Declares `name` as the CTA's dynamic shared memory, as floats.
#if defined(HARMAMBA_CUDA_EMULATION)
#define HARMAMBA_DYNAMIC_SHARED_FLOATS(name) \
  float* name = ::emu::DynamicSharedFloats()
#else
#define HARMAMBA_DYNAMIC_SHARED_FLOATS(name) extern __shared__ float name[]
#endif

#endif  // __CUDACC__ || HARMAMBA_CUDA_EMULATION

}  // namespace harmamba::kernels::cuda::internal

#endif  // HARMAMBA_KERNELS_CUDA_COMMON_CUH_
