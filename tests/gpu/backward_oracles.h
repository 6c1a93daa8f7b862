// float64 oracles for the backward kernels, written straight from the
// forward definitions in kernels/cpu/selective_scan.h and causal_conv1d.h
// (plain loops, every state stored). Same signatures and contract as the
// CPU oracles on the training branch (kernels/cpu, SelectiveScanBackward-
// Reference / CausalConv1dBackwardReference); kept here, in their own
// namespace, until that branch is merged. Checked against central finite
// differences of the forward oracles in backward_oracles_test.cc.
//
// All arrays contiguous: [batch][seqlen][dim] for u, delta, z, dout, du,
// ddelta, dz, x, dx; [batch][seqlen][dstate] for B, C, dB, dC;
// [dim][dstate] for A, dA; [dim][width] for weight, dweight; [dim] for
// delta_bias, D, bias and their gradients. Every output is OVERWRITTEN.
// Optional inputs (delta_bias, D, z, bias) may be null; then their
// gradients (ddelta_bias, dD, dz, dbias) may be null too, and are written
// (as zeros for dD/ddelta_bias) when given.
#ifndef HARMAMBA_TESTS_GPU_BACKWARD_ORACLES_H_
#define HARMAMBA_TESTS_GPU_BACKWARD_ORACLES_H_

#include <cstdint>

namespace harmamba::kernels::oracle {

void SelectiveScanBackwardReference(
    int64_t batch, int64_t seqlen, int64_t dim, int64_t dstate, bool reverse,
    bool delta_softplus, const double* u, const double* delta,
    const double* delta_bias, const double* A, const double* B, const double* C,
    const double* D, const double* z, const double* dout, double* du,
    double* ddelta, double* ddelta_bias, double* dA, double* dB, double* dC,
    double* dD, double* dz);

void CausalConv1dBackwardReference(int64_t batch, int64_t seqlen, int64_t dim,
                                   int64_t width, bool reverse, bool silu,
                                   const double* x, const double* weight,
                                   const double* bias, const double* dout,
                                   double* dx, double* dweight, double* dbias);

}  // namespace harmamba::kernels::oracle

#endif  // HARMAMBA_TESTS_GPU_BACKWARD_ORACLES_H_
