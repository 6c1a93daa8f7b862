// CUDA kernel timings at HARMamba's UCI-HAR shapes (73 tokens, d_model 64,
// d_inner 128, d_state 16, dt_rank 4), batch 1 to 8192.
//
//   build/bench/kernels_cuda_bench            (prints one table; exits 0
//                                              with a note when no device)
//
// Each row: one launch of the kernel over the whole batch (one direction of
// one layer), the median of 20 timed launches after 3 warm-ups, measured
// with CUDA events on one stream, in microseconds, and per window. A
// forward pass runs 12 scans, 12 convolutions and ~7 LayerNorms.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "kernels/cuda/causal_conv1d.cuh"
#include "kernels/cuda/layer_norm.cuh"
#include "kernels/cuda/selective_scan.cuh"

namespace harmamba::kernels {
namespace {

constexpr int64_t kL = 73, kD = 64, kE = 128, kN = 16, kR = 4;

#define CHECK_CUDA(expr)                                                 \
  do {                                                                   \
    const cudaError_t err_ = (expr);                                     \
    if (err_ != cudaSuccess) {                                           \
      std::fprintf(stderr, "%s: %s\n", #expr, cudaGetErrorString(err_)); \
      std::exit(1);                                                      \
    }                                                                    \
  } while (0)

float* Upload(size_t n, float mean, float stddev, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(mean, stddev);
  std::vector<float> host(n);
  for (float& x : host) x = dist(rng);
  float* dev = nullptr;
  CHECK_CUDA(cudaMalloc(reinterpret_cast<void**>(&dev), n * sizeof(float)));
  CHECK_CUDA(
      cudaMemcpy(dev, host.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  return dev;
}

// Median time of one launch in microseconds.
double TimeUs(cudaStream_t stream, const std::function<absl::Status()>& run) {
  for (int i = 0; i < 3; ++i) {
    const absl::Status s = run();
    if (!s.ok()) {
      std::fprintf(stderr, "launch failed: %s\n", s.ToString().c_str());
      std::exit(1);
    }
  }
  CHECK_CUDA(cudaStreamSynchronize(stream));
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  std::vector<double> times;
  for (int i = 0; i < 20; ++i) {
    CHECK_CUDA(cudaEventRecord(start, stream));
    (void)run();
    CHECK_CUDA(cudaEventRecord(stop, stream));
    CHECK_CUDA(cudaEventSynchronize(stop));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
    times.push_back(ms * 1e3);
  }
  CHECK_CUDA(cudaEventDestroy(start));
  CHECK_CUDA(cudaEventDestroy(stop));
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

void Row(const std::string& kernel, int64_t batch, double us) {
  std::printf("%-34s %6lld %12.1f %12.4f\n", kernel.c_str(),
              static_cast<long long>(batch), us, us / batch);
}

int Main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("kernels_cuda_bench: no CUDA device, nothing measured\n");
    return 0;
  }
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
  std::printf("%-34s %6s %12s %12s\n", "kernel (one layer, one direction)",
              "batch", "us/launch", "us/window");
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

  const int64_t max_batch = 8192;
  const size_t act = max_batch * kL * kE;
  // x | z interleaved as the in_proj output; dt_low | B | C as x_proj's.
  float* xz = Upload(2 * act, 0.f, 1.f, 1);
  float* xdbl = Upload(max_batch * kL * (kR + 2 * kN), 0.f, 0.5f, 2);
  float* conv_out = Upload(act, 0.f, 1.f, 3);
  float* y = Upload(act, 0.f, 1.f, 4);
  float* dout = Upload(act, 0.f, 1.f, 5);
  float* grads = Upload(4 * act, 0.f, 1.f, 6);
  float* dBC = Upload(2 * max_batch * kL * kN, 0.f, 1.f, 7);
  float* A = Upload(kE * kN, -4.f, 1.f, 8);
  float* dt_w = Upload(kE * kR, 0.f, 0.5f, 9);
  float* bias = Upload(kE, -3.f, 1.f, 10);
  float* D = Upload(kE, 1.f, 0.1f, 11);
  float* conv_w = Upload(kE * 4, 0.f, 0.5f, 12);
  float* small = Upload(kE * kN + 2 * kE + kE * 4, 0.f, 0.1f, 13);
  float* s = Upload(max_batch * kL * kD, 0.f, 1.f, 14);
  float* ln_out = Upload(max_batch * kL * kD, 0.f, 1.f, 15);

  for (int64_t batch : {1, 64, 1024, 8192}) {
    const int64_t xdbl_w = kR + 2 * kN;
    SelectiveScanParams p;
    p.batch = batch;
    p.seqlen = kL;
    p.dim = kE;
    p.dstate = kN;
    p.u = conv_out;
    p.u_batch_stride = kL * kE;
    p.u_seq_stride = kE;
    p.dt_low = xdbl;
    p.dt_low_batch_stride = kL * xdbl_w;
    p.dt_low_seq_stride = xdbl_w;
    p.dt_rank = kR;
    p.dt_weight = dt_w;
    p.delta_bias = bias;
    p.A = A;
    p.A_dim_stride = kN;
    p.B = xdbl + kR;
    p.C = xdbl + kR + kN;
    p.B_batch_stride = p.C_batch_stride = kL * xdbl_w;
    p.B_seq_stride = p.C_seq_stride = xdbl_w;
    p.D = D;
    p.z = xz + kE;
    p.z_batch_stride = kL * 2 * kE;
    p.z_seq_stride = 2 * kE;
    p.out = y;
    p.out_batch_stride = kL * kE;
    p.out_seq_stride = kE;
    for (bool reverse : {false, true}) {
      p.reverse = reverse;
      for (int split : {0, 1, 2, 4, 8}) {
        if (split != 0 && batch >= 1024 && split > 2) continue;
        const std::string name =
            std::string("scan fwd ") + (reverse ? "rev" : "fwd") +
            (split == 0 ? " auto" : " x" + std::to_string(split));
        Row(name, batch, TimeUs(stream, [&] {
              return cuda::SelectiveScanForward(p, stream, split);
            }));
      }
    }
    p.reverse = false;

    CausalConv1dParams c;
    c.batch = batch;
    c.seqlen = kL;
    c.dim = kE;
    c.width = 4;
    c.x = xz;
    c.x_batch_stride = kL * 2 * kE;
    c.x_seq_stride = 2 * kE;
    c.weight = conv_w;
    c.bias = bias;
    c.out = conv_out;
    c.out_batch_stride = kL * kE;
    c.out_seq_stride = kE;
    for (bool reverse : {false, true}) {
      c.reverse = reverse;
      Row(std::string("conv1d+silu fwd ") + (reverse ? "rev" : "fwd"), batch,
          TimeUs(stream, [&] { return cuda::CausalConv1dForward(c, stream); }));
    }

    LayerNormParams ln;
    ln.rows = batch * kL;
    ln.dim = kD;
    ln.x = s;
    ln.x_row_stride = kD;
    ln.residual = ln_out;
    ln.residual_row_stride = kD;
    ln.out = y;  // scratch
    ln.out_row_stride = kD;
    Row("add+layernorm (d_model 64)", batch,
        TimeUs(stream, [&] { return cuda::LayerNormForward(ln, stream); }));

    if (batch <= 1024) {
      cuda::SelectiveScanGrads g;
      g.dout = dout;
      g.dout_batch_stride = kL * kE;
      g.dout_seq_stride = kE;
      g.du = grads;
      g.ddelta = grads + act;
      g.dz = grads + 2 * act;
      g.du_batch_stride = g.ddelta_batch_stride = g.dz_batch_stride = kL * kE;
      g.du_seq_stride = g.ddelta_seq_stride = g.dz_seq_stride = kE;
      g.dB = dBC;
      g.dC = dBC + max_batch * kL * kN;
      g.dB_batch_stride = g.dC_batch_stride = kL * kN;
      g.dB_seq_stride = g.dC_seq_stride = kN;
      g.dA = small;
      g.dD = small + kE * kN;
      g.ddelta_bias = small + kE * kN + kE;
      const size_t bytes = cuda::SelectiveScanBackwardWorkspaceBytes(p);
      void* ws = nullptr;
      CHECK_CUDA(cudaMalloc(&ws, bytes));
      Row("scan bwd fwd", batch, TimeUs(stream, [&] {
            return cuda::SelectiveScanBackward(p, g, ws, bytes, stream);
          }));
      CHECK_CUDA(cudaFree(ws));

      cuda::CausalConv1dGrads cg;
      cg.dout = dout;
      cg.dout_batch_stride = kL * kE;
      cg.dout_seq_stride = kE;
      cg.dx = grads + 3 * act;
      cg.dx_batch_stride = kL * kE;
      cg.dx_seq_stride = kE;
      cg.dweight = small + kE * kN + 2 * kE;
      cg.dbias = small + kE * kN;
      const size_t cbytes = cuda::CausalConv1dBackwardWorkspaceBytes(c);
      CHECK_CUDA(cudaMalloc(&ws, cbytes));
      Row("conv1d+silu bwd rev", batch, TimeUs(stream, [&] {
            return cuda::CausalConv1dBackward(c, cg, ws, cbytes, stream);
          }));
      CHECK_CUDA(cudaFree(ws));
    }
  }
  CHECK_CUDA(cudaStreamDestroy(stream));
  return 0;
}

}  // namespace
}  // namespace harmamba::kernels

int main() { return harmamba::kernels::Main(); }
