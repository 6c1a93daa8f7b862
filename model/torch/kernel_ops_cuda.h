// The CUDA side of the autograd adapters of kernel_ops.h: runs the kernels of
// kernels/cuda on the params structs that kernel_ops.cc fills from tensors.
// Only kernel_ops.cc (and its tests) include this header.
//
// Builds without the CUDA kernels link kernel_ops_nocuda.cc instead, whose
// functions refuse with a message saying so.
//
// Thread-safety: the functions are re-entrant; work is enqueued,
// asynchronously, on LibTorch's current CUDA stream of `like`'s device.
//
// Torch-only header (ATen).
#ifndef HARMAMBA_MODEL_TORCH_KERNEL_OPS_CUDA_H_
#define HARMAMBA_MODEL_TORCH_KERNEL_OPS_CUDA_H_

#include <ATen/core/Tensor.h>

#include "kernels/cpu/causal_conv1d.h"
#include "kernels/cpu/selective_scan.h"

namespace harmamba::internal {

// True when this build has the CUDA kernels.
bool CudaKernelsBuilt();

// True when the adapters route `t`'s op to the CUDA kernels: `t` is a CUDA
// tensor, or the testing hook below is on.
bool RoutesToCudaKernels(const at::Tensor& t);

// Testing hook for builds whose CUDA kernels are the CPU emulation
// (tests/gpu/emulation): with `on`, CPU tensors take the CUDA route too, so
// the adapters' CUDA code runs on machines without a GPU. Not thread-safe;
// set it before running ops.
void RouteCpuTensorsToCudaKernelsForTesting(bool on);

// The launches. Pointers in the params are `like`'s device memory; the
// backward workspaces are allocated on that device with LibTorch's
// allocator. Gradient contracts as kernels/cuda: dA, dD, ddelta_bias,
// dweight and dbias are accumulated (+=). Throw c10::Error on refusal or a
// launch error.
void SelectiveScanForwardCuda(const kernels::SelectiveScanParams& p,
                              const at::Tensor& like);
void SelectiveScanBackwardCuda(const kernels::SelectiveScanParams& p,
                               const kernels::SelectiveScanGrads& g,
                               const at::Tensor& like);
void CausalConv1dForwardCuda(const kernels::CausalConv1dParams& p,
                             const at::Tensor& like);
void CausalConv1dBackwardCuda(const kernels::CausalConv1dParams& p,
                              const kernels::CausalConv1dGrads& g,
                              const at::Tensor& like);

}  // namespace harmamba::internal

#endif  // HARMAMBA_MODEL_TORCH_KERNEL_OPS_CUDA_H_
