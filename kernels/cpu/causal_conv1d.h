// Depthwise causal 1-D convolution with optional bias and SiLU, on the CPU.
//
//   forward:  out[t][d] = act(bias[d] + sum_k w[d][k] * x[t - (W-1) + k][d])
//   reverse:  out[t][d] = act(bias[d] + sum_k w[d][k] * x[t + (W-1) - k][d])
// with x = 0 outside [0, seqlen). `reverse` is the causal convolution of the
// time-reversed sequence, read back in original order (the backward layer of
// a bidirectional pair). act = SiLU when `silu`, else identity.
//
// Layouts: x and out are [b][t][dim] with unit channel stride; weight is
// [dim][width] (PyTorch's conv1d.weight (dim, 1, width) squeezed).
// Re-entrant; single-threaded.
#ifndef HARMAMBA_KERNELS_CPU_CAUSAL_CONV1D_H_
#define HARMAMBA_KERNELS_CPU_CAUSAL_CONV1D_H_

#include <cstdint>

#include "absl/status/status.h"

namespace harmamba::kernels {

struct CausalConv1dParams {
  int64_t batch = 0;
  int64_t seqlen = 0;
  int64_t dim = 0;
  int64_t width = 0;
  bool reverse = false;
  bool silu = true;

  const float* x = nullptr;
  int64_t x_batch_stride = 0, x_seq_stride = 0;
  const float* weight = nullptr;  // [dim][width]
  const float* bias = nullptr;    // [dim], optional
  float* out = nullptr;           // must not alias x
  int64_t out_batch_stride = 0, out_seq_stride = 0;
};

absl::Status CheckCausalConv1dParams(const CausalConv1dParams& p);

void CausalConv1dForward(const CausalConv1dParams& p);

// float64 oracle on contiguous [batch][seqlen][dim] arrays.
void CausalConv1dReference(int64_t batch, int64_t seqlen, int64_t dim,
                           int64_t width, bool reverse, bool silu,
                           const double* x, const double* weight,
                           const double* bias, double* out);

// ---- Backward ---------------------------------------------------------
//
// Gradients given dout; the pre-activation is recomputed. dx is OVERWRITTEN
// for the batch elements of `p`; dweight and dbias are ACCUMULATED (+=) over
// batch and time (callers split the batch across threads into zeroed partial
// buffers and reduce afterwards).
struct CausalConv1dGrads {
  const float* dout = nullptr;  // [b][t][dim], unit channel stride
  int64_t dout_batch_stride = 0, dout_seq_stride = 0;
  float* dx = nullptr;  // [b][t][dim]; must not alias x or dout
  int64_t dx_batch_stride = 0, dx_seq_stride = 0;
  float* dweight = nullptr;  // [dim][width]; accumulated
  float* dbias = nullptr;    // [dim]; accumulated; optional (may be null)
};

absl::Status CheckCausalConv1dBackward(const CausalConv1dParams& p,
                                       const CausalConv1dGrads& g);

// Vectorised across channels, single-threaded. Requires
// CheckCausalConv1dBackward(p, g).ok().
void CausalConv1dBackward(const CausalConv1dParams& p,
                          const CausalConv1dGrads& g);

// float64 oracle on contiguous arrays; OVERWRITES dx, dweight and dbias
// (dbias may be null).
void CausalConv1dBackwardReference(int64_t batch, int64_t seqlen, int64_t dim,
                                   int64_t width, bool reverse, bool silu,
                                   const double* x, const double* weight,
                                   const double* bias, const double* dout,
                                   double* dx, double* dweight, double* dbias);

}  // namespace harmamba::kernels

#endif  // HARMAMBA_KERNELS_CPU_CAUSAL_CONV1D_H_
