// Runs CUDA kernels on the CPU, for machines without a GPU: every CTA's
// threads become cooperative fibers on one OS thread, scheduled round-robin
// between barriers. __syncthreads() waits for every live thread of the CTA;
// a warp shuffle waits for all 32 lanes of the warp (and fails the run if
// any lane has exited or the warp diverged, which is undefined behaviour on
// a GPU with a full mask). Threads run one after another between barriers,
// so a missing __syncthreads() between a shared-memory write and another
// thread's read usually shows as a wrong result.
//
// Not emulated: real concurrency and the GPU memory model, warp-synchronous
// execution without *_sync intrinsics, the exact SFU/ulp behaviour of
// exp2f/__expf (the host libm is used). This checks indexing, chunking,
// reductions and barrier discipline; the GPU run (docs/gpu.md) checks the
// rest.
//
// Included (-include) before a .cu file compiled as C++ with
// -DHARMAMBA_CUDA_EMULATION; launches `k<<<grid, block, smem, stream>>>(args)`
// must first be rewritten to `::emu::Launch(grid, block, smem, stream)(k,
// args)` (tests/gpu/CMakeLists.txt does it with perl).
#ifndef HARMAMBA_TESTS_GPU_EMULATION_EMULATION_H_
#define HARMAMBA_TESTS_GPU_EMULATION_EMULATION_H_

#include <cuda_runtime_api.h>

#include <cmath>
#include <functional>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

namespace emu {

extern dim3 threadIdx, blockIdx, blockDim, gridDim;

void SyncThreads();
// Exchanges `value` within the calling thread's warp; returns lane
// `src_lane`'s value.
float ShuffleFloat(float value, int src_lane);

// The calling CTA's dynamic shared memory (NaN-filled at the CTA's start,
// so reading what no thread wrote shows).
float* DynamicSharedFloats();

// Runs `thread_body` for every thread of every CTA of the grid, with
// `shared_bytes` of dynamic shared memory per CTA.
void RunGrid(dim3 grid, dim3 block, size_t shared_bytes,
             const std::function<void()>& thread_body);

// While a stream capture is open, `work` is appended to the graph being
// recorded and true is returned; otherwise false (run it now).
bool RecordIfCapturing(std::function<void()> work);

class Launch {
 public:
  Launch(dim3 grid, dim3 block, size_t shared_bytes = 0,
         cudaStream_t /*stream*/ = nullptr)
      : grid_(grid), block_(block), shared_bytes_(shared_bytes) {}
  template <typename Kernel, typename... Args>
  void operator()(Kernel kernel, const Args&... args) const {
    auto run = [grid = grid_, block = block_, shared_bytes = shared_bytes_,
                kernel, args...] {
      RunGrid(grid, block, shared_bytes, [&] { kernel(args...); });
    };
    if (!RecordIfCapturing(run)) run();
  }

 private:
  dim3 grid_, block_;
  size_t shared_bytes_;
};

}  // namespace emu

using emu::blockDim;
using emu::blockIdx;
using emu::gridDim;
using emu::threadIdx;

inline void __syncthreads() { emu::SyncThreads(); }

inline float __shfl_xor_sync(unsigned /*mask*/, float value, int lane_mask) {
  return emu::ShuffleFloat(value,
                           static_cast<int>(emu::threadIdx.x % 32) ^ lane_mask);
}

inline void __syncwarp(unsigned /*mask*/ = 0xffffffffu) {
  emu::ShuffleFloat(0.f, 0);  // a warp barrier
}

inline float __expf(float x) { return std::exp(x); }

#endif  // HARMAMBA_TESTS_GPU_EMULATION_EMULATION_H_
