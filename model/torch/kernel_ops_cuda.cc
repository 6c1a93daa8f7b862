#include "model/torch/kernel_ops_cuda.h"

#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>
#ifdef HARMAMBA_TORCH_CUDA
#include <c10/cuda/CUDAStream.h>
#endif

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/causal_conv1d.cuh"
#include "kernels/cuda/selective_scan.cuh"

namespace harmamba::internal {
namespace {

bool route_cpu_tensors = false;

void ThrowIfError(const absl::Status& status) {
  TORCH_CHECK(status.ok(), status.ToString());
}

// The current LibTorch stream of `like`'s device, so that the kernels are
// ordered with LibTorch's own work. A LibTorch without CUDA has no CUDA
// tensors: only the emulated kernels (the testing hook) get here, and they
// ignore the stream.
cudaStream_t StreamFor(const at::Tensor& like) {
#ifdef HARMAMBA_TORCH_CUDA
  if (like.is_cuda()) {
    return c10::cuda::getCurrentCUDAStream(like.device().index()).stream();
  }
#endif
  TORCH_CHECK(!like.is_cuda(),
              "this build's LibTorch has no CUDA support, yet got a tensor on ",
              like.device());
  return nullptr;
}

// Scratch on `like`'s device, aligned to the 256 bytes the kernels require
// (LibTorch's CUDA allocator returns 512-byte aligned blocks, its CPU one
// 64-byte aligned ones, hence the slack).
struct Workspace {
  at::Tensor storage;
  void* data = nullptr;
};
Workspace AllocateWorkspace(size_t bytes, const at::Tensor& like) {
  constexpr size_t kAlign = 256;
  Workspace w;
  w.storage = at::empty({static_cast<int64_t>(bytes + kAlign)},
                        like.options().dtype(at::kByte));
  const uintptr_t base = reinterpret_cast<uintptr_t>(w.storage.data_ptr());
  w.data = reinterpret_cast<void*>((base + kAlign - 1) / kAlign * kAlign);
  return w;
}

class DeviceScope {
 public:
  explicit DeviceScope(const at::Tensor& like)
      : guard_(like.is_cuda() ? like.device() : c10::Device(c10::kCPU)) {}

 private:
  c10::OptionalDeviceGuard guard_;
};

}  // namespace

bool CudaKernelsBuilt() { return true; }

bool RoutesToCudaKernels(const at::Tensor& t) {
  return t.is_cuda() || (route_cpu_tensors && t.device().is_cpu());
}

void RouteCpuTensorsToCudaKernelsForTesting(bool on) { route_cpu_tensors = on; }

void SelectiveScanForwardCuda(const kernels::SelectiveScanParams& p,
                              const at::Tensor& like) {
  DeviceScope scope(like);
  ThrowIfError(kernels::cuda::SelectiveScanForward(p, StreamFor(like)));
}

void SelectiveScanBackwardCuda(const kernels::SelectiveScanParams& p,
                               const kernels::SelectiveScanGrads& g,
                               const at::Tensor& like) {
  DeviceScope scope(like);
  const size_t bytes = kernels::cuda::SelectiveScanBackwardWorkspaceBytes(p);
  const Workspace workspace = AllocateWorkspace(bytes, like);
  ThrowIfError(kernels::cuda::SelectiveScanBackward(p, g, workspace.data, bytes,
                                                    StreamFor(like)));
}

void CausalConv1dForwardCuda(const kernels::CausalConv1dParams& p,
                             const at::Tensor& like) {
  DeviceScope scope(like);
  ThrowIfError(kernels::cuda::CausalConv1dForward(p, StreamFor(like)));
}

void CausalConv1dBackwardCuda(const kernels::CausalConv1dParams& p,
                              const kernels::CausalConv1dGrads& g,
                              const at::Tensor& like) {
  DeviceScope scope(like);
  const size_t bytes = kernels::cuda::CausalConv1dBackwardWorkspaceBytes(p);
  const Workspace workspace = AllocateWorkspace(bytes, like);
  ThrowIfError(kernels::cuda::CausalConv1dBackward(p, g, workspace.data, bytes,
                                                   StreamFor(like)));
}

}  // namespace harmamba::internal
