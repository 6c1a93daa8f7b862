// kernel_ops_cuda.h for builds without the CUDA kernels (HARMAMBA_CUDA OFF).
#include "model/torch/kernel_ops_cuda.h"

namespace harmamba::internal {
namespace {

[[noreturn]] void Refuse() {
  TORCH_CHECK(false,
              "this build has no CUDA kernels (configure with nvcc available "
              "and -DHARMAMBA_CUDA=ON); use the reference path on CUDA");
  __builtin_unreachable();
}

}  // namespace

bool CudaKernelsBuilt() { return false; }

bool RoutesToCudaKernels(const at::Tensor& t) { return t.is_cuda(); }

void RouteCpuTensorsToCudaKernelsForTesting(bool) { Refuse(); }

void SelectiveScanForwardCuda(const kernels::SelectiveScanParams&,
                              const at::Tensor&) {
  Refuse();
}
void SelectiveScanBackwardCuda(const kernels::SelectiveScanParams&,
                               const kernels::SelectiveScanGrads&,
                               const at::Tensor&) {
  Refuse();
}
void CausalConv1dForwardCuda(const kernels::CausalConv1dParams&,
                             const at::Tensor&) {
  Refuse();
}
void CausalConv1dBackwardCuda(const kernels::CausalConv1dParams&,
                              const kernels::CausalConv1dGrads&,
                              const at::Tensor&) {
  Refuse();
}

}  // namespace harmamba::internal
