// Selective scan (Mamba S6 recurrence) on the CPU.
//
// For each batch element b and channel d, with h_{-1} = 0:
//   delta_t = softplus(delta_raw[t][d] + delta_bias[d])   (softplus optional)
//   h_t[n]  = exp(delta_t * A[d][n]) * h_{t-1}[n] + delta_t * B_t[n] * u_t[d]
//   y_t[d]  = sum_n C_t[n] * h_t[n] + D[d] * u_t[d]
//   out_t[d] = y_t[d] * silu(z_t[d])                      (gate optional)
// With `reverse`, t runs from seqlen-1 down to 0 (the backward layer of a
// bidirectional pair, without materialising a flipped copy).
//
// delta_raw is either given densely (`delta`) or as a low-rank product
// delta_raw[t][d] = sum_r dt_low[t][r] * dt_weight[d][r] (Mamba's dt_proj,
// fused here so the (L x dim) product never exists).
//
// Layouts: every [b][t][*] tensor has unit stride along its last axis and
// explicit batch / sequence strides (in elements). A is [dim][dstate] with
// explicit strides. Pointers marked optional may be null.
//
// Thread-safety: the functions are re-entrant; callers parallelise over the
// batch by splitting it.
#ifndef HARMAMBA_KERNELS_CPU_SELECTIVE_SCAN_H_
#define HARMAMBA_KERNELS_CPU_SELECTIVE_SCAN_H_

#include <cstdint>

#include "absl/status/status.h"

namespace harmamba::kernels {

struct SelectiveScanParams {
  int64_t batch = 0;
  int64_t seqlen = 0;
  int64_t dim = 0;
  int64_t dstate = 0;
  bool reverse = false;
  bool delta_softplus = true;

  const float* u = nullptr;  // [b][t][dim]
  int64_t u_batch_stride = 0, u_seq_stride = 0;

  // Dense delta (pre-bias) [b][t][dim], or null when dt_low is given.
  const float* delta = nullptr;
  int64_t delta_batch_stride = 0, delta_seq_stride = 0;
  // Low-rank delta: dt_low [b][t][dt_rank], dt_weight [dim][dt_rank].
  const float* dt_low = nullptr;
  int64_t dt_low_batch_stride = 0, dt_low_seq_stride = 0;
  int64_t dt_rank = 0;
  const float* dt_weight = nullptr;

  const float* delta_bias = nullptr;  // [dim], optional

  const float* A = nullptr;  // [dim][dstate], the actual A (= -exp(A_log))
  int64_t A_dim_stride = 0, A_state_stride = 1;

  const float* B = nullptr;  // [b][t][dstate]
  int64_t B_batch_stride = 0, B_seq_stride = 0;
  const float* C = nullptr;  // [b][t][dstate]
  int64_t C_batch_stride = 0, C_seq_stride = 0;

  const float* D = nullptr;  // [dim], optional skip
  const float* z = nullptr;  // [b][t][dim], optional gate
  int64_t z_batch_stride = 0, z_seq_stride = 0;

  float* out = nullptr;  // [b][t][dim]
  int64_t out_batch_stride = 0, out_seq_stride = 0;
};

// Checks shapes and pointers; returns InvalidArgument naming the problem.
absl::Status CheckSelectiveScanParams(const SelectiveScanParams& p);

// Vectorised across channels (16 at a time), states kept in registers,
// single-threaded. Requires CheckSelectiveScanParams(p).ok().
void SelectiveScanForward(const SelectiveScanParams& p);

// The float64 oracle with the same semantics, on contiguous arrays:
// u, delta, z, out: [batch][seqlen][dim]; B, C: [batch][seqlen][dstate];
// A: [dim][dstate]; delta_bias, D: [dim] (optional); dense delta only.
void SelectiveScanReference(int64_t batch, int64_t seqlen, int64_t dim,
                            int64_t dstate, bool reverse, bool delta_softplus,
                            const double* u, const double* delta,
                            const double* delta_bias, const double* A,
                            const double* B, const double* C, const double* D,
                            const double* z, double* out);

// ---- Backward ---------------------------------------------------------
//
// Gradients of a scalar loss given dout = dLoss/dout, for a forward with a
// dense delta (`p.delta`; the low-rank dt_low form is not supported here:
// compute delta densely and let autograd differentiate the product). The
// forward states are recomputed internally (nothing is stored by the
// forward). Layouts as the forward: [b][t][*] tensors have unit stride along
// their last axis and explicit batch/sequence strides.
//
// Per-element gradients (du, ddelta, dB, dC, dz) are OVERWRITTEN for the
// batch elements of `p`; parameter gradients (dA, dD, ddelta_bias) are
// ACCUMULATED (+=) over batch and time, so that callers may split the batch
// across threads, each accumulating into its own zeroed partial buffer, and
// reduce afterwards.
struct SelectiveScanGrads {
  const float* dout = nullptr;  // [b][t][dim]
  int64_t dout_batch_stride = 0, dout_seq_stride = 0;

  float* du = nullptr;  // [b][t][dim]
  int64_t du_batch_stride = 0, du_seq_stride = 0;
  // d loss / d delta (pre-bias, i.e. w.r.t. p.delta).
  float* ddelta = nullptr;  // [b][t][dim]
  int64_t ddelta_batch_stride = 0, ddelta_seq_stride = 0;
  float* dB = nullptr;  // [b][t][dstate]
  int64_t dB_batch_stride = 0, dB_seq_stride = 0;
  float* dC = nullptr;  // [b][t][dstate]
  int64_t dC_batch_stride = 0, dC_seq_stride = 0;
  float* dz = nullptr;  // [b][t][dim]; required iff p.z is given
  int64_t dz_batch_stride = 0, dz_seq_stride = 0;

  float* dA = nullptr;           // [dim][dstate] contiguous; accumulated
  float* dD = nullptr;           // [dim]; accumulated; optional (may be null)
  float* ddelta_bias = nullptr;  // [dim]; accumulated; optional
};

// Checks CheckSelectiveScanParams(p), a dense delta, and the gradient
// pointers/strides; InvalidArgument naming the problem.
absl::Status CheckSelectiveScanBackward(const SelectiveScanParams& p,
                                        const SelectiveScanGrads& g);

// Vectorised across channels, single-threaded. Requires
// CheckSelectiveScanBackward(p, g).ok().
void SelectiveScanBackward(const SelectiveScanParams& p,
                           const SelectiveScanGrads& g);

// The float64 oracle on contiguous arrays (shapes as SelectiveScanReference;
// dA [dim][dstate], dD and ddelta_bias [dim]). Plain scalar loops that store
// every state. OVERWRITES all outputs (including dA, dD, ddelta_bias). The
// optional outputs dD, ddelta_bias, dz may be null (dz must be given iff z).
void SelectiveScanBackwardReference(
    int64_t batch, int64_t seqlen, int64_t dim, int64_t dstate, bool reverse,
    bool delta_softplus, const double* u, const double* delta,
    const double* delta_bias, const double* A, const double* B, const double* C,
    const double* D, const double* z, const double* dout, double* du,
    double* ddelta, double* ddelta_bias, double* dA, double* dB, double* dC,
    double* dD, double* dz);

}  // namespace harmamba::kernels

#endif  // HARMAMBA_KERNELS_CPU_SELECTIVE_SCAN_H_
