#include "model/torch/kernel_ops.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "kernels/cpu/causal_conv1d.h"
#include "kernels/cpu/selective_scan.h"
#include "model/torch/kernel_ops_cuda.h"

namespace harmamba {
namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The first tensor of an op fixes its device: the CPU (our CPU kernels) or a
// CUDA device (the kernels of kernels/cuda, kernel_ops_cuda.h).
void CheckFloatOnDevice(const Tensor& t, const char* name) {
  TORCH_CHECK(t.scalar_type() == torch::kFloat32, name,
              " must be float32, got ", t.scalar_type());
  TORCH_CHECK(t.device().is_cpu() || t.device().is_cuda(), name,
              " must be on the CPU or a CUDA device, got ", t.device());
}

void CheckFloatOn(const Tensor& t, const char* name,
                  const torch::Device& device) {
  TORCH_CHECK(t.scalar_type() == torch::kFloat32, name,
              " must be float32, got ", t.scalar_type());
  TORCH_CHECK(t.device() == device, name, " must be on ", device,
              " (as the op's first input), got ", t.device());
}

void CheckShape(const Tensor& t, const char* name,
                std::vector<int64_t> expected) {
  TORCH_CHECK(t.sizes() == torch::IntArrayRef(expected), name,
              " must have shape ", torch::IntArrayRef(expected), ", got ",
              t.sizes());
}

// The kernels index the last axis with unit stride; batch/time strides are
// free.
Tensor UnitLastStride(const Tensor& t) {
  return t.size(-1) <= 1 || t.stride(-1) == 1 ? t : t.contiguous();
}

// LibTorch 1.13's custom functions refuse undefined inputs, so absent
// optional inputs travel as 0-element tensors; internally they are undefined.
bool Present(const Tensor& t) { return t.defined() && t.numel() > 0; }
Tensor AbsentAsEmpty(const Tensor& t, const Tensor& like) {
  return t.defined() ? t : torch::empty({0}, like.options());
}

Tensor Optional(const Tensor& t, const char* name, const torch::Device& device,
                std::vector<int64_t> shape) {
  if (!Present(t)) return Tensor();
  CheckFloatOn(t, name, device);
  CheckShape(t, name, std::move(shape));
  return t.contiguous();
}

const float* DataOrNull(const Tensor& t) {
  return t.defined() ? t.data_ptr<float>() : nullptr;
}
float* MutableDataOrNull(const Tensor& t) {
  return t.defined() ? t.data_ptr<float>() : nullptr;
}

// Batch strides of tensors whose batch size is 1 may be arbitrary (e.g. 0
// for expanded tensors); the kernels never step them when batch == 1.
int64_t BatchStride(const Tensor& t) { return t.stride(0); }
int64_t SeqStride(const Tensor& t) { return t.stride(1); }

// Splits [0, n) into `chunks` contiguous ranges; range c is
// [c*n/chunks, (c+1)*n/chunks).
int64_t ChunkBegin(int64_t c, int64_t n, int64_t chunks) {
  return c * n / chunks;
}

int64_t NumChunks(int64_t n) {
  return std::max<int64_t>(1, std::min<int64_t>(n, at::get_num_threads()));
}

void ThrowIfError(const absl::Status& status) {
  TORCH_CHECK(status.ok(), status.ToString());
}

// ---- Selective scan params ----------------------------------------------

kernels::SelectiveScanParams ScanParams(const Tensor& u, const Tensor& delta,
                                        const Tensor& delta_bias,
                                        const Tensor& A, const Tensor& B,
                                        const Tensor& C, const Tensor& D,
                                        const Tensor& z, bool reverse,
                                        bool delta_softplus) {
  kernels::SelectiveScanParams p;
  p.batch = u.size(0);
  p.seqlen = u.size(1);
  p.dim = u.size(2);
  p.dstate = A.size(1);
  p.reverse = reverse;
  p.delta_softplus = delta_softplus;
  p.u = u.data_ptr<float>();
  p.u_batch_stride = BatchStride(u);
  p.u_seq_stride = SeqStride(u);
  p.delta = delta.data_ptr<float>();
  p.delta_batch_stride = BatchStride(delta);
  p.delta_seq_stride = SeqStride(delta);
  p.delta_bias = DataOrNull(delta_bias);
  p.A = A.data_ptr<float>();
  p.A_dim_stride = A.stride(0);
  p.A_state_stride = A.stride(1);
  p.B = B.data_ptr<float>();
  p.B_batch_stride = BatchStride(B);
  p.B_seq_stride = SeqStride(B);
  p.C = C.data_ptr<float>();
  p.C_batch_stride = BatchStride(C);
  p.C_seq_stride = SeqStride(C);
  p.D = DataOrNull(D);
  if (z.defined()) {
    p.z = z.data_ptr<float>();
    p.z_batch_stride = BatchStride(z);
    p.z_seq_stride = SeqStride(z);
  }
  return p;
}

// `p` restricted to batch elements [b0, b1).
kernels::SelectiveScanParams ScanBatchRange(kernels::SelectiveScanParams p,
                                            int64_t b0, int64_t b1) {
  p.batch = b1 - b0;
  p.u += b0 * p.u_batch_stride;
  p.delta += b0 * p.delta_batch_stride;
  p.B += b0 * p.B_batch_stride;
  p.C += b0 * p.C_batch_stride;
  if (p.z != nullptr) p.z += b0 * p.z_batch_stride;
  if (p.out != nullptr) p.out += b0 * p.out_batch_stride;
  return p;
}

// ---- Causal conv params -------------------------------------------------

kernels::CausalConv1dParams ConvParams(const Tensor& x, const Tensor& weight,
                                       const Tensor& bias, bool reverse,
                                       bool silu) {
  kernels::CausalConv1dParams p;
  p.batch = x.size(0);
  p.seqlen = x.size(1);
  p.dim = x.size(2);
  p.width = weight.size(1);
  p.reverse = reverse;
  p.silu = silu;
  p.x = x.data_ptr<float>();
  p.x_batch_stride = BatchStride(x);
  p.x_seq_stride = SeqStride(x);
  p.weight = weight.data_ptr<float>();
  p.bias = DataOrNull(bias);
  return p;
}

kernels::CausalConv1dParams ConvBatchRange(kernels::CausalConv1dParams p,
                                           int64_t b0, int64_t b1) {
  p.batch = b1 - b0;
  p.x += b0 * p.x_batch_stride;
  if (p.out != nullptr) p.out += b0 * p.out_batch_stride;
  return p;
}

}  // namespace

// ---- SelectiveScanFn --------------------------------------------------------

Tensor SelectiveScanFn::forward(AutogradContext* ctx, Tensor u, Tensor delta,
                                Tensor delta_bias, Tensor A, Tensor B, Tensor C,
                                Tensor D, Tensor z, bool reverse,
                                bool delta_softplus) {
  CheckFloatOnDevice(u, "selective scan u");
  TORCH_CHECK(u.dim() == 3, "selective scan u must be (N, L, E), got ",
              u.sizes());
  const torch::Device device = u.device();
  const int64_t n = u.size(0), seqlen = u.size(1), dim = u.size(2);
  CheckFloatOn(A, "selective scan A", device);
  TORCH_CHECK(A.dim() == 2 && A.size(0) == dim, "selective scan A must be (",
              dim, ", N_state), got ", A.sizes());
  const int64_t dstate = A.size(1);
  CheckFloatOn(delta, "selective scan delta", device);
  CheckShape(delta, "selective scan delta", {n, seqlen, dim});
  CheckFloatOn(B, "selective scan B", device);
  CheckShape(B, "selective scan B", {n, seqlen, dstate});
  CheckFloatOn(C, "selective scan C", device);
  CheckShape(C, "selective scan C", {n, seqlen, dstate});
  u = UnitLastStride(u);
  delta = UnitLastStride(delta);
  B = UnitLastStride(B);
  C = UnitLastStride(C);
  delta_bias = Optional(delta_bias, "selective scan delta_bias", device, {dim});
  D = Optional(D, "selective scan D", device, {dim});
  if (!Present(z)) {
    z = Tensor();
  } else {
    CheckFloatOn(z, "selective scan z", device);
    CheckShape(z, "selective scan z", {n, seqlen, dim});
    z = UnitLastStride(z);
  }

  Tensor out = torch::empty({n, seqlen, dim}, u.options());
  kernels::SelectiveScanParams p =
      ScanParams(u, delta, delta_bias, A, B, C, D, z, reverse, delta_softplus);
  p.out = out.data_ptr<float>();
  p.out_batch_stride = out.stride(0);
  p.out_seq_stride = out.stride(1);
  ThrowIfError(kernels::CheckSelectiveScanParams(p));
  if (internal::RoutesToCudaKernels(u)) {
    internal::SelectiveScanForwardCuda(p, u);
  } else {
    at::parallel_for(0, n, 1, [&](int64_t b0, int64_t b1) {
      kernels::SelectiveScanForward(ScanBatchRange(p, b0, b1));
    });
  }

  ctx->save_for_backward({u, delta, delta_bias, A, B, C, D, z});
  ctx->saved_data["reverse"] = reverse;
  ctx->saved_data["delta_softplus"] = delta_softplus;
  return out;
}

variable_list SelectiveScanFn::backward(AutogradContext* ctx,
                                        variable_list grad_outputs) {
  const variable_list saved = ctx->get_saved_variables();
  const Tensor &u = saved[0], &delta = saved[1], &delta_bias = saved[2],
               &A = saved[3], &B = saved[4], &C = saved[5], &D = saved[6],
               &z = saved[7];
  const bool reverse = ctx->saved_data["reverse"].toBool();
  const bool delta_softplus = ctx->saved_data["delta_softplus"].toBool();
  Tensor dout = grad_outputs[0];
  if (!dout.defined()) {
    return variable_list(10);
  }
  dout = UnitLastStride(dout.to(torch::kFloat32));
  const int64_t n = u.size(0), seqlen = u.size(1), dim = u.size(2),
                dstate = A.size(1);
  const torch::TensorOptions opts = u.options();
  Tensor du = torch::empty({n, seqlen, dim}, opts);
  Tensor ddelta = torch::empty({n, seqlen, dim}, opts);
  Tensor dB = torch::empty({n, seqlen, dstate}, opts);
  Tensor dC = torch::empty({n, seqlen, dstate}, opts);
  Tensor dz = z.defined() ? torch::empty({n, seqlen, dim}, opts) : Tensor();
  // Parameter gradients: one zeroed partial sum per chunk of the batch,
  // reduced in chunk order afterwards (the CUDA kernels reduce over the batch
  // themselves, in a fixed order: one chunk).
  const bool cuda = internal::RoutesToCudaKernels(u);
  const int64_t chunks = cuda ? 1 : NumChunks(n);
  Tensor dA_part = torch::zeros({chunks, dim, dstate}, opts);
  Tensor dD_part = D.defined() ? torch::zeros({chunks, dim}, opts) : Tensor();
  Tensor dbias_part =
      delta_bias.defined() ? torch::zeros({chunks, dim}, opts) : Tensor();

  const kernels::SelectiveScanParams p =
      ScanParams(u, delta, delta_bias, A, B, C, D, z, reverse, delta_softplus);
  kernels::SelectiveScanGrads g;
  g.dout = dout.data_ptr<float>();
  g.dout_batch_stride = BatchStride(dout);
  g.dout_seq_stride = SeqStride(dout);
  g.du = du.data_ptr<float>();
  g.du_batch_stride = du.stride(0);
  g.du_seq_stride = du.stride(1);
  g.ddelta = ddelta.data_ptr<float>();
  g.ddelta_batch_stride = ddelta.stride(0);
  g.ddelta_seq_stride = ddelta.stride(1);
  g.dB = dB.data_ptr<float>();
  g.dB_batch_stride = dB.stride(0);
  g.dB_seq_stride = dB.stride(1);
  g.dC = dC.data_ptr<float>();
  g.dC_batch_stride = dC.stride(0);
  g.dC_seq_stride = dC.stride(1);
  if (dz.defined()) {
    g.dz = dz.data_ptr<float>();
    g.dz_batch_stride = dz.stride(0);
    g.dz_seq_stride = dz.stride(1);
  }
  g.dA = dA_part.data_ptr<float>();
  g.dD = MutableDataOrNull(dD_part);
  g.ddelta_bias = MutableDataOrNull(dbias_part);
  ThrowIfError(kernels::CheckSelectiveScanBackward(p, g));

  if (cuda) {
    internal::SelectiveScanBackwardCuda(p, g, u);
  } else {
    at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t b0 = ChunkBegin(c, n, chunks);
        const int64_t b1 = ChunkBegin(c + 1, n, chunks);
        if (b0 == b1) continue;
        kernels::SelectiveScanGrads gc = g;
        gc.dout += b0 * g.dout_batch_stride;
        gc.du += b0 * g.du_batch_stride;
        gc.ddelta += b0 * g.ddelta_batch_stride;
        gc.dB += b0 * g.dB_batch_stride;
        gc.dC += b0 * g.dC_batch_stride;
        if (gc.dz != nullptr) gc.dz += b0 * g.dz_batch_stride;
        gc.dA += c * dim * dstate;
        if (gc.dD != nullptr) gc.dD += c * dim;
        if (gc.ddelta_bias != nullptr) gc.ddelta_bias += c * dim;
        kernels::SelectiveScanBackward(ScanBatchRange(p, b0, b1), gc);
      }
    });
  }
  return {du,
          ddelta,
          dbias_part.defined() ? dbias_part.sum(0) : Tensor(),
          dA_part.sum(0),
          dB,
          dC,
          dD_part.defined() ? dD_part.sum(0) : Tensor(),
          dz,
          Tensor(),
          Tensor()};
}

// ---- CausalConv1dFn ---------------------------------------------------------

Tensor CausalConv1dFn::forward(AutogradContext* ctx, Tensor x, Tensor weight,
                               Tensor bias, bool reverse, bool silu) {
  CheckFloatOnDevice(x, "causal conv1d x");
  TORCH_CHECK(x.dim() == 3, "causal conv1d x must be (N, L, E), got ",
              x.sizes());
  const int64_t n = x.size(0), seqlen = x.size(1), dim = x.size(2);
  const torch::Device device = x.device();
  CheckFloatOn(weight, "causal conv1d weight", device);
  const std::vector<int64_t> weight_shape = weight.sizes().vec();
  TORCH_CHECK(
      (weight.dim() == 3 && weight.size(0) == dim && weight.size(1) == 1) ||
          (weight.dim() == 2 && weight.size(0) == dim),
      "causal conv1d weight must be (", dim, ", 1, W) or (", dim, ", W), got ",
      weight.sizes());
  const int64_t width = weight.size(-1);
  TORCH_CHECK(width >= 1, "causal conv1d weight width must be >= 1");
  x = UnitLastStride(x);
  weight = weight.reshape({dim, width}).contiguous();
  bias = Optional(bias, "causal conv1d bias", device, {dim});

  Tensor out = torch::empty({n, seqlen, dim}, x.options());
  kernels::CausalConv1dParams p = ConvParams(x, weight, bias, reverse, silu);
  p.out = out.data_ptr<float>();
  p.out_batch_stride = out.stride(0);
  p.out_seq_stride = out.stride(1);
  ThrowIfError(kernels::CheckCausalConv1dParams(p));
  if (internal::RoutesToCudaKernels(x)) {
    internal::CausalConv1dForwardCuda(p, x);
  } else {
    at::parallel_for(0, n, 1, [&](int64_t b0, int64_t b1) {
      kernels::CausalConv1dForward(ConvBatchRange(p, b0, b1));
    });
  }

  ctx->save_for_backward({x, weight, bias});
  ctx->saved_data["reverse"] = reverse;
  ctx->saved_data["silu"] = silu;
  ctx->saved_data["weight_shape"] = weight_shape;
  return out;
}

variable_list CausalConv1dFn::backward(AutogradContext* ctx,
                                       variable_list grad_outputs) {
  const variable_list saved = ctx->get_saved_variables();
  const Tensor &x = saved[0], &weight = saved[1], &bias = saved[2];
  const bool reverse = ctx->saved_data["reverse"].toBool();
  const bool silu = ctx->saved_data["silu"].toBool();
  const std::vector<int64_t> weight_shape =
      ctx->saved_data["weight_shape"].toIntVector();
  Tensor dout = grad_outputs[0];
  if (!dout.defined()) return variable_list(5);
  dout = UnitLastStride(dout.to(torch::kFloat32));
  const int64_t n = x.size(0), seqlen = x.size(1), dim = x.size(2),
                width = weight.size(1);
  Tensor dx = torch::empty({n, seqlen, dim}, x.options());
  const bool cuda = internal::RoutesToCudaKernels(x);
  const int64_t chunks = cuda ? 1 : NumChunks(n);
  Tensor dw_part = torch::zeros({chunks, dim, width}, x.options());
  Tensor db_part =
      bias.defined() ? torch::zeros({chunks, dim}, x.options()) : Tensor();

  const kernels::CausalConv1dParams p =
      ConvParams(x, weight, bias, reverse, silu);
  kernels::CausalConv1dGrads g;
  g.dout = dout.data_ptr<float>();
  g.dout_batch_stride = BatchStride(dout);
  g.dout_seq_stride = SeqStride(dout);
  g.dx = dx.data_ptr<float>();
  g.dx_batch_stride = dx.stride(0);
  g.dx_seq_stride = dx.stride(1);
  g.dweight = dw_part.data_ptr<float>();
  g.dbias = MutableDataOrNull(db_part);
  ThrowIfError(kernels::CheckCausalConv1dBackward(p, g));

  if (cuda) {
    internal::CausalConv1dBackwardCuda(p, g, x);
  } else {
    at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t b0 = ChunkBegin(c, n, chunks);
        const int64_t b1 = ChunkBegin(c + 1, n, chunks);
        if (b0 == b1) continue;
        kernels::CausalConv1dGrads gc = g;
        gc.dout += b0 * g.dout_batch_stride;
        gc.dx += b0 * g.dx_batch_stride;
        gc.dweight += c * dim * width;
        if (gc.dbias != nullptr) gc.dbias += c * dim;
        kernels::CausalConv1dBackward(ConvBatchRange(p, b0, b1), gc);
      }
    });
  }
  return {dx, dw_part.sum(0).view(weight_shape),
          db_part.defined() ? db_part.sum(0) : Tensor(), Tensor(), Tensor()};
}

// ---- Wrappers and torch references
// -------------------------------------------

Tensor SelectiveScan(const Tensor& u, const Tensor& delta,
                     const Tensor& delta_bias, const Tensor& A, const Tensor& B,
                     const Tensor& C, const Tensor& D, const Tensor& z,
                     bool reverse, bool delta_softplus) {
  return SelectiveScanFn::apply(u, delta, AbsentAsEmpty(delta_bias, u), A, B, C,
                                AbsentAsEmpty(D, u), AbsentAsEmpty(z, u),
                                reverse, delta_softplus);
}

Tensor CausalConv1d(const Tensor& x, const Tensor& weight, const Tensor& bias,
                    bool reverse, bool silu) {
  return CausalConv1dFn::apply(x, weight, AbsentAsEmpty(bias, x), reverse,
                               silu);
}

Tensor SelectiveScanReferenceTorch(const Tensor& u, const Tensor& delta,
                                   const Tensor& delta_bias, const Tensor& A,
                                   const Tensor& B, const Tensor& C,
                                   const Tensor& D, const Tensor& z,
                                   bool reverse, bool delta_softplus) {
  if (reverse) {
    auto flip = [](const Tensor& t) {
      return t.defined() ? t.flip({1}) : Tensor();
    };
    return SelectiveScanReferenceTorch(flip(u), flip(delta), delta_bias, A,
                                       flip(B), flip(C), D, flip(z),
                                       /*reverse=*/false, delta_softplus)
        .flip({1});
  }
  Tensor dt = delta_bias.defined() ? delta + delta_bias : delta;
  if (delta_softplus) dt = torch::softplus(dt);
  // unbind (not select) per step: its backward is one stack, where select's
  // would materialise a full-size zero tensor per step.
  const std::vector<Tensor> decay =
      torch::exp(dt.unsqueeze(-1) * A).unbind(1);  // L x (N, E, S)
  const std::vector<Tensor> drive =
      ((dt * u).unsqueeze(-1) * B.unsqueeze(2)).unbind(1);
  const std::vector<Tensor> readout = C.unsqueeze(2).unbind(1);  // (N, 1, S)
  Tensor h = torch::zeros({u.size(0), u.size(2), A.size(1)}, u.options());
  std::vector<Tensor> ys;
  ys.reserve(u.size(1));
  for (int64_t t = 0; t < u.size(1); ++t) {
    h = decay[t] * h + drive[t];
    ys.push_back((h * readout[t]).sum(-1));
  }
  Tensor y = torch::stack(ys, 1);
  if (D.defined()) y = y + u * D;
  if (z.defined()) y = y * torch::silu(z);
  return y;
}

Tensor CausalConv1dReferenceTorch(const Tensor& x, const Tensor& weight,
                                  const Tensor& bias, bool reverse, bool silu) {
  const int64_t seqlen = x.size(1), dim = x.size(2);
  const int64_t width = weight.size(-1);
  const Tensor xt = (reverse ? x.flip({1}) : x).transpose(1, 2);
  Tensor out = torch::conv1d(xt, weight.reshape({dim, 1, width}), bias,
                             /*stride=*/1, /*padding=*/width - 1,
                             /*dilation=*/1, /*groups=*/dim)
                   .narrow(-1, 0, seqlen)
                   .transpose(1, 2);
  if (silu) out = torch::silu(out);
  return reverse ? out.flip({1}) : out;
}

}  // namespace harmamba
