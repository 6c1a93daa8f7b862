// Backward selective scan. One thread per (batch element, channel), 128
// channels of one batch element per CTA. Phase 1 reruns the forward
// recurrence and stores every state in the workspace; phase 2 walks the
// sequence in the opposite order, carrying the adjoint g_n = dL/dh_n in
// registers:
//   g_n    += dy C_n                     dC_n += dy h_n
//   dB_n   += g_n delta u                du   += g_n delta B_n   (+ D dy)
//   ddelta += g_n (A_n a_n h'_n + B_n u) dA_n += g_n a_n h'_n delta
//   g_n    *= a_n,   a_n = exp(delta A_n), h'_n = the previous state.
// dB/dC (shared by all channels) are summed across the CTA: a warp
// reduce-scatter per time step, then a fixed-order sum over the 4 warps per
// chunk of steps; CTAs of other channel groups write partial sums that a
// second kernel adds up. dA, dD and ddelta_bias are per-channel sums over
// batch and time: each thread writes its own, a last kernel adds them over
// the batch in order. Nothing uses floating-point atomics, so results are
// bitwise reproducible.
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/selective_scan.cuh"

namespace harmamba::kernels::cuda {
namespace {

using internal::kLog2e;

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kChunk = 16;
constexpr float kLn2 = 0.6931471805599453f;

struct Workspace {
  float* states = nullptr;         // [b][step][n][dim]
  float* bc_partial = nullptr;     // [b][group][t][2 dstate], groups > 1
  float* param_partial = nullptr;  // [b][dim][dstate + 2]
};

struct WorkspaceLayout {
  size_t states_bytes = 0, bc_bytes = 0, param_bytes = 0;
  size_t total() const { return states_bytes + bc_bytes + param_bytes; }
};

int64_t ChannelGroups(const SelectiveScanParams& p) {
  return (p.dim + kThreads - 1) / kThreads;
}

WorkspaceLayout Layout(const SelectiveScanParams& p) {
  using internal::AlignUp;
  WorkspaceLayout l;
  const int64_t groups = ChannelGroups(p);
  l.states_bytes = AlignUp(sizeof(float) * static_cast<size_t>(p.batch) *
                           p.seqlen * p.dstate * p.dim);
  if (groups > 1) {
    l.bc_bytes = AlignUp(sizeof(float) * static_cast<size_t>(p.batch) * groups *
                         p.seqlen * 2 * p.dstate);
  }
  l.param_bytes = AlignUp(sizeof(float) * static_cast<size_t>(p.batch) * p.dim *
                          (p.dstate + 2));
  return l;
}

// Stages B_t, C_t (and dt_low rows) of steps [step0, step0 + steps) in
// shared memory, indexed by step - step0.
template <int kMaxN>
__device__ __forceinline__ void StageChunk(
    const SelectiveScanParams& p, int64_t b, int64_t step0, int steps,
    float (&s_B)[kChunk][kMaxN], float (&s_C)[kChunk][kMaxN],
    float (&s_dt)[kChunk][kMaxScanDtRank]) {
  const int n_state = static_cast<int>(p.dstate);
  const int rank = p.dt_low != nullptr ? static_cast<int>(p.dt_rank) : 0;
  for (int idx = threadIdx.x; idx < steps * n_state; idx += kThreads) {
    const int i = idx / n_state, n = idx % n_state;
    const int64_t step = step0 + i;
    const int64_t t = p.reverse ? p.seqlen - 1 - step : step;
    s_B[i][n] = p.B[b * p.B_batch_stride + t * p.B_seq_stride + n];
    s_C[i][n] = p.C[b * p.C_batch_stride + t * p.C_seq_stride + n];
  }
  for (int idx = threadIdx.x; idx < steps * rank; idx += kThreads) {
    const int i = idx / rank, r = idx % rank;
    const int64_t step = step0 + i;
    const int64_t t = p.reverse ? p.seqlen - 1 - step : step;
    s_dt[i][r] =
        p.dt_low[b * p.dt_low_batch_stride + t * p.dt_low_seq_stride + r];
  }
}

template <int kMaxN>
__global__ void __launch_bounds__(kThreads)
    SelectiveScanBwdKernel(const SelectiveScanParams p,
                           const SelectiveScanGrads g, const Workspace ws) {
  constexpr int kValues = 2 * kMaxN;  // dB_0..dB_{kMaxN-1} | dC_0..
  static_assert(kValues % 32 == 0, "reduce-scatter works on 32 values");
  __shared__ float s_B[kChunk][kMaxN];
  __shared__ float s_C[kChunk][kMaxN];
  __shared__ float s_dt[kChunk][kMaxScanDtRank];
  __shared__ float s_red[kChunk][kWarps][kValues];

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int64_t b = blockIdx.x;
  const int64_t group = blockIdx.y;
  const int64_t groups = gridDim.y;
  const int64_t d = group * kThreads + tid;
  const bool active = d < p.dim;
  const int64_t dc = active ? d : p.dim - 1;
  const int n_state = static_cast<int>(p.dstate);
  const int rank = p.dt_low != nullptr ? static_cast<int>(p.dt_rank) : 0;
  const int64_t L = p.seqlen;

  float a2[kMaxN];  // A * log2(e)
#pragma unroll
  for (int n = 0; n < kMaxN; ++n) {
    a2[n] = n < n_state
                ? p.A[dc * p.A_dim_stride + n * p.A_state_stride] * kLog2e
                : 0.f;
  }
  float dt_w[kMaxScanDtRank];
#pragma unroll
  for (int r = 0; r < kMaxScanDtRank; ++r) {
    dt_w[r] = r < rank ? p.dt_weight[dc * rank + r] : 0.f;
  }
  const float bias = p.delta_bias != nullptr ? p.delta_bias[dc] : 0.f;
  const float skip = p.D != nullptr ? p.D[dc] : 0.f;
  float* states = ws.states + b * L * n_state * p.dim + dc;
  auto state_at = [&](int64_t step, int n) -> float& {
    return states[(step * n_state + n) * p.dim];
  };
  // delta before the softplus, at step `step` staged at row i.
  auto raw_delta = [&](int i, int64_t t) {
    float raw;
    if (rank > 0) {
      raw = 0.f;
#pragma unroll
      for (int r = 0; r < kMaxScanDtRank; ++r) {
        if (r < rank) raw = fmaf(s_dt[i][r], dt_w[r], raw);
      }
    } else {
      raw = p.delta[b * p.delta_batch_stride + t * p.delta_seq_stride + dc];
    }
    return raw + bias;
  };

  // ---- Phase 1: the forward states -------------------------------------
  {
    float h[kMaxN];
#pragma unroll
    for (int n = 0; n < kMaxN; ++n) h[n] = 0.f;
    for (int64_t step0 = 0; step0 < L; step0 += kChunk) {
      const int steps =
          static_cast<int>(L - step0 < kChunk ? L - step0 : kChunk);
      __syncthreads();
      StageChunk<kMaxN>(p, b, step0, steps, s_B, s_C, s_dt);
      __syncthreads();
      if (!active) continue;
      for (int i = 0; i < steps; ++i) {
        const int64_t step = step0 + i;
        const int64_t t = p.reverse ? L - 1 - step : step;
        const float u = p.u[b * p.u_batch_stride + t * p.u_seq_stride + dc];
        const float raw = raw_delta(i, t);
        const float dt = p.delta_softplus ? internal::Softplus(raw) : raw;
        const float dt_u = dt * u;
#pragma unroll
        for (int n = 0; n < kMaxN; ++n) {
          if (n < n_state) {
            h[n] = fmaf(exp2f(dt * a2[n]), h[n], dt_u * s_B[i][n]);
            state_at(step, n) = h[n];
          }
        }
      }
    }
  }

  // ---- Phase 2: the adjoint, steps in reverse ---------------------------
  float adj[kMaxN], dA[kMaxN], h_cur[kMaxN];
#pragma unroll
  for (int n = 0; n < kMaxN; ++n) {
    adj[n] = 0.f;
    dA[n] = 0.f;
    h_cur[n] = (active && n < n_state) ? state_at(L - 1, n) : 0.f;
  }
  float dD_sum = 0.f, dbias_sum = 0.f;

  for (int64_t step_end = L; step_end > 0; step_end -= kChunk) {
    const int64_t step0 = step_end > kChunk ? step_end - kChunk : 0;
    const int steps = static_cast<int>(step_end - step0);
    __syncthreads();
    StageChunk<kMaxN>(p, b, step0, steps, s_B, s_C, s_dt);
    __syncthreads();
    for (int i = steps - 1; i >= 0; --i) {
      const int64_t step = step0 + i;
      const int64_t t = p.reverse ? L - 1 - step : step;
      float vals[kValues];
#pragma unroll
      for (int v = 0; v < kValues; ++v) vals[v] = 0.f;
      if (active) {
        const int64_t row = b * p.u_batch_stride + t * p.u_seq_stride + dc;
        const float u = p.u[row];
        const float dout =
            g.dout[b * g.dout_batch_stride + t * g.dout_seq_stride + dc];
        const float raw = raw_delta(i, t);
        const float dt = p.delta_softplus ? internal::Softplus(raw) : raw;
        float dy = dout;
        if (p.z != nullptr) {
          const float z = p.z[b * p.z_batch_stride + t * p.z_seq_stride + dc];
          float y = skip * u;
#pragma unroll
          for (int n = 0; n < kMaxN; ++n) {
            if (n < n_state) y = fmaf(s_C[i][n], h_cur[n], y);
          }
          const float sig = internal::Sigmoid(z);
          dy = dout * z * sig;
          g.dz[b * g.dz_batch_stride + t * g.dz_seq_stride + dc] =
              dout * y * sig * (1.f + z * (1.f - sig));
        }
        dD_sum = fmaf(dy, u, dD_sum);
        float du = skip * dy;
        float ddt_decay = 0.f, ddt_input = 0.f;
        const float dt_u = dt * u;
#pragma unroll
        for (int n = 0; n < kMaxN; ++n) {
          if (n < n_state) {
            const float a = exp2f(dt * a2[n]);
            const float h_prev = step > 0 ? state_at(step - 1, n) : 0.f;
            const float gn = fmaf(dy, s_C[i][n], adj[n]);
            const float Bn = s_B[i][n];
            vals[kMaxN + n] = dy * h_cur[n];
            vals[n] = gn * dt_u;
            du = fmaf(gn * dt, Bn, du);
            const float a_h = a * h_prev;
            ddt_decay = fmaf(gn * a2[n], a_h, ddt_decay);
            ddt_input = fmaf(gn, Bn * u, ddt_input);
            dA[n] = fmaf(gn * a_h, dt, dA[n]);
            adj[n] = gn * a;
            h_cur[n] = h_prev;
          }
        }
        const float ddt = fmaf(ddt_decay, kLn2, ddt_input);
        const float draw =
            p.delta_softplus ? ddt * internal::Sigmoid(raw) : ddt;
        dbias_sum += draw;
        g.du[b * g.du_batch_stride + t * g.du_seq_stride + dc] = du;
        g.ddelta[b * g.ddelta_batch_stride + t * g.ddelta_seq_stride + dc] =
            draw;
      }
#pragma unroll
      for (int v0 = 0; v0 < kValues; v0 += 32) {
        float part[32];
#pragma unroll
        for (int j = 0; j < 32; ++j) part[j] = vals[v0 + j];
        s_red[i][warp][v0 + lane] = internal::WarpReduceScatter32(part);
      }
    }
    __syncthreads();
    // Sum the warps in a fixed order; write this chunk's dB/dC rows (or
    // this channel group's partial rows).
    for (int idx = tid; idx < steps * 2 * n_state; idx += kThreads) {
      const int i = idx / (2 * n_state), v = idx % (2 * n_state);
      const bool is_c = v >= n_state;
      const int n = is_c ? v - n_state : v;
      float sum = 0.f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) {
        sum += s_red[i][w][(is_c ? kMaxN : 0) + n];
      }
      const int64_t step = step0 + i;
      const int64_t t = p.reverse ? L - 1 - step : step;
      if (groups == 1) {
        if (is_c) {
          g.dC[b * g.dC_batch_stride + t * g.dC_seq_stride + n] = sum;
        } else {
          g.dB[b * g.dB_batch_stride + t * g.dB_seq_stride + n] = sum;
        }
      } else {
        ws.bc_partial[((b * groups + group) * L + t) * 2 * n_state + v] = sum;
      }
    }
  }

  if (active) {
    float* dst = ws.param_partial + (b * p.dim + d) * (n_state + 2);
#pragma unroll
    for (int n = 0; n < kMaxN; ++n) {
      if (n < n_state) dst[n] = dA[n];
    }
    dst[n_state] = dD_sum;
    dst[n_state + 1] = dbias_sum;
  }
}

// dB/dC[b][t][n] = sum over channel groups of the partials (overwrite).
__global__ void ReduceBCKernel(const SelectiveScanParams p,
                               const SelectiveScanGrads g,
                               const float* __restrict__ partial,
                               int64_t groups) {
  const int64_t n2 = 2 * p.dstate;
  const int64_t total = p.batch * p.seqlen * n2;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
       idx < total; idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t v = idx % n2;
    const int64_t t = (idx / n2) % p.seqlen;
    const int64_t b = idx / (n2 * p.seqlen);
    float sum = 0.f;
    for (int64_t grp = 0; grp < groups; ++grp) {
      sum += partial[((b * groups + grp) * p.seqlen + t) * n2 + v];
    }
    if (v >= p.dstate) {
      g.dC[b * g.dC_batch_stride + t * g.dC_seq_stride + (v - p.dstate)] = sum;
    } else {
      g.dB[b * g.dB_batch_stride + t * g.dB_seq_stride + v] = sum;
    }
  }
}

// dA/dD/ddelta_bias += sum over the batch of the per-thread partials.
__global__ void ReduceParamsKernel(const SelectiveScanParams p,
                                   const SelectiveScanGrads g,
                                   const float* __restrict__ partial) {
  const int64_t cols = p.dstate + 2;
  const int64_t total = p.dim * cols;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
       idx < total; idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = idx % cols, d = idx / cols;
    float* dst;
    if (j < p.dstate) {
      dst = g.dA + d * p.dstate + j;
    } else if (j == p.dstate) {
      dst = g.dD != nullptr ? g.dD + d : nullptr;
    } else {
      dst = g.ddelta_bias != nullptr ? g.ddelta_bias + d : nullptr;
    }
    if (dst == nullptr) continue;
    float sum = 0.f;
    for (int64_t b = 0; b < p.batch; ++b) {
      sum += partial[(b * p.dim + d) * cols + j];
    }
    *dst += sum;
  }
}

unsigned ReduceBlocks(int64_t total, int threads) {
  const int64_t blocks = (total + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 4096 ? (blocks > 0 ? blocks : 1)
                                             : 4096);
}

template <int kMaxN>
absl::Status LaunchBackward(const SelectiveScanParams& p,
                            const SelectiveScanGrads& g, const Workspace& ws,
                            int64_t groups, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(p.batch),
                  static_cast<unsigned>(groups));
  SelectiveScanBwdKernel<kMaxN><<<grid, kThreads, 0, stream>>>(p, g, ws);
  return internal::CheckLaunch("selective scan backward");
}

}  // namespace

absl::Status CanRunSelectiveScanBackward(const SelectiveScanParams& p,
                                         const SelectiveScanGrads& g) {
  // The backward does not use p.out (as on the CPU); give the forward check a
  // stand-in.
  SelectiveScanParams with_out = p;
  if (with_out.out == nullptr) with_out.out = g.du;
  if (absl::Status s = CanRunSelectiveScanForward(with_out); !s.ok()) return s;
  auto invalid = [](const std::string& what) {
    return absl::InvalidArgumentError("selective scan backward (cuda): " +
                                      what);
  };
  if (!g.dout || !g.du || !g.ddelta || !g.dB || !g.dC || !g.dA) {
    return invalid("dout, du, ddelta, dB, dC and dA are required");
  }
  if ((p.z != nullptr) != (g.dz != nullptr)) {
    return invalid("dz must be given exactly when z is");
  }
  if (ChannelGroups(p) > 65535) {
    return invalid("dim must be <= " + std::to_string(65535 * kThreads) +
                   ", got " + std::to_string(p.dim));
  }
  return absl::OkStatus();
}

size_t SelectiveScanBackwardWorkspaceBytes(const SelectiveScanParams& p) {
  return Layout(p).total();
}

absl::Status SelectiveScanBackward(const SelectiveScanParams& p,
                                   const SelectiveScanGrads& g, void* workspace,
                                   size_t workspace_bytes,
                                   cudaStream_t stream) {
  if (absl::Status s = CanRunSelectiveScanBackward(p, g); !s.ok()) return s;
  const WorkspaceLayout layout = Layout(p);
  if (workspace_bytes < layout.total() ||
      (layout.total() > 0 && workspace == nullptr)) {
    return absl::InvalidArgumentError(
        "selective scan backward (cuda): workspace must hold " +
        std::to_string(layout.total()) + " bytes, got " +
        std::to_string(workspace_bytes));
  }
  if (reinterpret_cast<uintptr_t>(workspace) % 256 != 0) {
    return absl::InvalidArgumentError(
        "selective scan backward (cuda): workspace must be 256-byte aligned");
  }
  if (p.batch == 0 || p.seqlen == 0 || p.dim == 0) return absl::OkStatus();
  char* base = static_cast<char*>(workspace);
  Workspace ws;
  ws.states = reinterpret_cast<float*>(base);
  ws.bc_partial = layout.bc_bytes > 0
                      ? reinterpret_cast<float*>(base + layout.states_bytes)
                      : nullptr;
  ws.param_partial =
      reinterpret_cast<float*>(base + layout.states_bytes + layout.bc_bytes);
  const int64_t groups = ChannelGroups(p);
  if (absl::Status s =
          p.dstate <= 16   ? LaunchBackward<16>(p, g, ws, groups, stream)
          : p.dstate <= 32 ? LaunchBackward<32>(p, g, ws, groups, stream)
                           : LaunchBackward<64>(p, g, ws, groups, stream);
      !s.ok()) {
    return s;
  }
  constexpr int kReduceThreads = 256;
  if (groups > 1) {
    const int64_t total = p.batch * p.seqlen * 2 * p.dstate;
    ReduceBCKernel<<<ReduceBlocks(total, kReduceThreads), kReduceThreads, 0,
                     stream>>>(p, g, ws.bc_partial, groups);
    if (absl::Status s = internal::CheckLaunch("selective scan backward dB/dC");
        !s.ok()) {
      return s;
    }
  }
  const int64_t total = p.dim * (p.dstate + 2);
  ReduceParamsKernel<<<ReduceBlocks(total, kReduceThreads), kReduceThreads, 0,
                       stream>>>(p, g, ws.param_partial);
  return internal::CheckLaunch("selective scan backward dA/dD/ddelta_bias");
}

}  // namespace harmamba::kernels::cuda
