// Autograd adapters around our kernels: the only code that touches both
// LibTorch tensors and the kernels. Each adapter validates dtype, device,
// layout and shapes (c10::Error naming the tensor and the expected value) and
// fills the kernel's params struct. CPU tensors run the kernels of
// kernels/cpu, parallelised over the batch with at::parallel_for (LibTorch's
// intra-op threads; parameter gradients are summed per thread chunk and then
// reduced in a fixed order). CUDA tensors run the kernels of kernels/cuda on
// the device's default stream (kernel_ops_cuda.h), whose parameter gradients
// are reduced in a fixed order too; builds without the CUDA kernels refuse
// them. Either way results do not depend on scheduling.
//
// Also the plain-LibTorch reference versions of the same ops (the oracles).
//
// Torch-only header.
#ifndef HARMAMBA_MODEL_TORCH_KERNEL_OPS_H_
#define HARMAMBA_MODEL_TORCH_KERNEL_OPS_H_

#include <torch/torch.h>

namespace harmamba {

// out = SelectiveScan(u, delta, ...) as kernels/cpu/selective_scan.h, with
// a dense pre-bias delta:
//   u, delta, z: (N, L, E); delta_bias, D: (E); A: (E, Nstate);
//   B, C: (N, L, Nstate). delta_bias, D, z are optional: pass 0-element
//   tensors for absent ones to apply() (LibTorch 1.13's custom functions
//   refuse undefined inputs); the SelectiveScan() wrapper also takes
//   undefined tensors.
// float32, all on one device (the CPU or a CUDA device); last dimension of
// u/delta/B/C/z contiguous (batch and time
// strides are free, so slices of a projection's output need no copy).
// Returns (N, L, E) contiguous. Differentiable in every tensor input.
class SelectiveScanFn : public torch::autograd::Function<SelectiveScanFn> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx,
                               torch::Tensor u, torch::Tensor delta,
                               torch::Tensor delta_bias, torch::Tensor A,
                               torch::Tensor B, torch::Tensor C,
                               torch::Tensor D, torch::Tensor z, bool reverse,
                               bool delta_softplus);
  static torch::autograd::variable_list backward(
      torch::autograd::AutogradContext* ctx,
      torch::autograd::variable_list grad_outputs);
};

// out = act(causal depthwise conv1d(x) + bias) as kernels/cpu/causal_conv1d.h:
//   x: (N, L, E) with contiguous last dimension; weight: (E, 1, W) or (E, W)
//   (PyTorch's conv1d.weight); bias: (E), or a 0-element tensor when absent
//   (the CausalConv1d() wrapper also takes an undefined tensor).
// Returns (N, L, E) contiguous. Differentiable in x, weight and bias.
class CausalConv1dFn : public torch::autograd::Function<CausalConv1dFn> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx,
                               torch::Tensor x, torch::Tensor weight,
                               torch::Tensor bias, bool reverse, bool silu);
  static torch::autograd::variable_list backward(
      torch::autograd::AutogradContext* ctx,
      torch::autograd::variable_list grad_outputs);
};

// Convenience wrappers (undefined tensors for absent optional inputs).
torch::Tensor SelectiveScan(const torch::Tensor& u, const torch::Tensor& delta,
                            const torch::Tensor& delta_bias,
                            const torch::Tensor& A, const torch::Tensor& B,
                            const torch::Tensor& C, const torch::Tensor& D,
                            const torch::Tensor& z, bool reverse,
                            bool delta_softplus);
torch::Tensor CausalConv1d(const torch::Tensor& x, const torch::Tensor& weight,
                           const torch::Tensor& bias, bool reverse, bool silu);

// The same semantics in plain LibTorch ops (sequential loop over time), any
// floating dtype/device, differentiable by autograd. `reverse` is realised
// by flipping the time axis.
torch::Tensor SelectiveScanReferenceTorch(
    const torch::Tensor& u, const torch::Tensor& delta,
    const torch::Tensor& delta_bias, const torch::Tensor& A,
    const torch::Tensor& B, const torch::Tensor& C, const torch::Tensor& D,
    const torch::Tensor& z, bool reverse, bool delta_softplus);
torch::Tensor CausalConv1dReferenceTorch(const torch::Tensor& x,
                                         const torch::Tensor& weight,
                                         const torch::Tensor& bias,
                                         bool reverse, bool silu);

}  // namespace harmamba

#endif  // HARMAMBA_MODEL_TORCH_KERNEL_OPS_H_
