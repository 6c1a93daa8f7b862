// Forward selective scan. Mapping (gpu/kernel-plan.md): sequential over time
// inside a thread, one thread (or a group of 2-8 lanes) per (batch element,
// channel), the states and A * log2(e) in registers, B_t, C_t and the
// low-rank dt_low rows of a chunk of time steps staged in shared memory
// (they are shared by every channel of a batch element). No flipped copies:
// the reverse direction walks t downwards over the same buffers.
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/selective_scan.cuh"

namespace harmamba::kernels::cuda {
namespace {

using internal::kFullMask;
using internal::kLog2e;

constexpr int kThreads = 128;
constexpr int kChunk = 32;  // time steps staged in shared memory at once
constexpr int64_t kTargetThreads = 32768;  // ~ 2 waves of 128 x 132 SMs

// One CTA: kThreads / kSplit channels of batch element blockIdx.x. Lane j of
// a channel's group holds states n = j, j + kSplit, j + 2 kSplit, ...
template <int kMaxN, int kSplit>
__global__ void __launch_bounds__(kThreads)
    SelectiveScanFwdKernel(const SelectiveScanParams p) {
  constexpr int kStatesPerLane = kMaxN / kSplit;
  constexpr int kChannelsPerBlock = kThreads / kSplit;
  __shared__ float s_B[kChunk][kMaxN];
  __shared__ float s_C[kChunk][kMaxN];
  __shared__ float s_dt[kChunk][kMaxScanDtRank];

  const int tid = threadIdx.x;
  const int lane_in_group = tid % kSplit;
  const int64_t b = blockIdx.x;
  const int64_t d = int64_t(blockIdx.y) * kChannelsPerBlock + tid / kSplit;
  const bool active = d < p.dim;
  // Idle lanes compute on a valid channel so that every lane reaches the
  // shuffles; they never store.
  const int64_t dc = active ? d : p.dim - 1;
  const int n_state = static_cast<int>(p.dstate);
  const int rank = p.dt_low != nullptr ? static_cast<int>(p.dt_rank) : 0;

  float a2[kStatesPerLane];
  float h[kStatesPerLane];
#pragma unroll
  for (int i = 0; i < kStatesPerLane; ++i) {
    const int n = lane_in_group + kSplit * i;
    a2[i] = n < n_state
                ? p.A[dc * p.A_dim_stride + n * p.A_state_stride] * kLog2e
                : 0.f;
    h[i] = 0.f;
  }
  float dt_w[kMaxScanDtRank];
#pragma unroll
  for (int r = 0; r < kMaxScanDtRank; ++r) {
    dt_w[r] = r < rank ? p.dt_weight[dc * rank + r] : 0.f;
  }
  const float bias = p.delta_bias != nullptr ? p.delta_bias[dc] : 0.f;
  const float skip = p.D != nullptr ? p.D[dc] : 0.f;

  const float* u_b = p.u + b * p.u_batch_stride + dc;
  const float* B_b = p.B + b * p.B_batch_stride;
  const float* C_b = p.C + b * p.C_batch_stride;

  for (int64_t step0 = 0; step0 < p.seqlen; step0 += kChunk) {
    const int steps =
        static_cast<int>(p.seqlen - step0 < kChunk ? p.seqlen - step0 : kChunk);
    __syncthreads();  // the previous chunk is consumed
    for (int idx = tid; idx < steps * n_state; idx += kThreads) {
      const int i = idx / n_state, n = idx % n_state;
      const int64_t step = step0 + i;
      const int64_t t = p.reverse ? p.seqlen - 1 - step : step;
      s_B[i][n] = B_b[t * p.B_seq_stride + n];
      s_C[i][n] = C_b[t * p.C_seq_stride + n];
    }
    for (int idx = tid; idx < steps * rank; idx += kThreads) {
      const int i = idx / rank, r = idx % rank;
      const int64_t step = step0 + i;
      const int64_t t = p.reverse ? p.seqlen - 1 - step : step;
      s_dt[i][r] =
          p.dt_low[b * p.dt_low_batch_stride + t * p.dt_low_seq_stride + r];
    }
    __syncthreads();

    for (int i = 0; i < steps; ++i) {
      const int64_t step = step0 + i;
      const int64_t t = p.reverse ? p.seqlen - 1 - step : step;
      const float u = u_b[t * p.u_seq_stride];
      float delta;
      if (rank > 0) {
        delta = 0.f;
#pragma unroll
        for (int r = 0; r < kMaxScanDtRank; ++r) {
          if (r < rank) delta = fmaf(s_dt[i][r], dt_w[r], delta);
        }
      } else {
        delta = p.delta[b * p.delta_batch_stride + t * p.delta_seq_stride + dc];
      }
      delta += bias;
      if (p.delta_softplus) delta = internal::Softplus(delta);
      const float delta_u = delta * u;
      float y = 0.f;
#pragma unroll
      for (int j = 0; j < kStatesPerLane; ++j) {
        const int n = lane_in_group + kSplit * j;
        if (n < n_state) {
          h[j] = fmaf(exp2f(delta * a2[j]), h[j], delta_u * s_B[i][n]);
          y = fmaf(s_C[i][n], h[j], y);
        }
      }
      y = internal::GroupSum<kSplit>(y);
      if (active && lane_in_group == 0) {
        y = fmaf(skip, u, y);
        if (p.z != nullptr) {
          y *= internal::Silu(
              p.z[b * p.z_batch_stride + t * p.z_seq_stride + dc]);
        }
        p.out[b * p.out_batch_stride + t * p.out_seq_stride + dc] = y;
      }
    }
  }
}

template <int kMaxN>
absl::Status LaunchForward(const SelectiveScanParams& p, int split,
                           cudaStream_t stream) {
  const int channels_per_block = kThreads / split;
  const dim3 grid(static_cast<unsigned>(p.batch),
                  static_cast<unsigned>((p.dim + channels_per_block - 1) /
                                        channels_per_block));
  switch (split) {
    case 1:
      SelectiveScanFwdKernel<kMaxN, 1><<<grid, kThreads, 0, stream>>>(p);
      break;
    case 2:
      SelectiveScanFwdKernel<kMaxN, 2><<<grid, kThreads, 0, stream>>>(p);
      break;
    case 4:
      SelectiveScanFwdKernel<kMaxN, 4><<<grid, kThreads, 0, stream>>>(p);
      break;
    default:
      SelectiveScanFwdKernel<kMaxN, 8><<<grid, kThreads, 0, stream>>>(p);
      break;
  }
  return internal::CheckLaunch("selective scan forward");
}

}  // namespace

absl::Status CanRunSelectiveScanForward(const SelectiveScanParams& p) {
  if (absl::Status s = CheckSelectiveScanParams(p); !s.ok()) return s;
  if (p.dstate > kMaxScanState) {
    return absl::InvalidArgumentError(
        "selective scan (cuda): dstate must be <= " +
        std::to_string(kMaxScanState) + ", got " + std::to_string(p.dstate));
  }
  if (p.dt_low != nullptr && p.dt_rank > kMaxScanDtRank) {
    return absl::InvalidArgumentError(
        "selective scan (cuda): dt_rank must be <= " +
        std::to_string(kMaxScanDtRank) + ", got " + std::to_string(p.dt_rank));
  }
  if (p.batch > 0x7fffffff) {
    return absl::InvalidArgumentError(
        "selective scan (cuda): batch must be < 2^31, got " +
        std::to_string(p.batch));
  }
  if (p.dim > 65535LL * 16) {
    return absl::InvalidArgumentError(
        "selective scan (cuda): dim must be <= 1048560, got " +
        std::to_string(p.dim));
  }
  return absl::OkStatus();
}

absl::Status SelectiveScanForward(const SelectiveScanParams& p,
                                  cudaStream_t stream,
                                  int threads_per_channel) {
  if (absl::Status s = CanRunSelectiveScanForward(p); !s.ok()) return s;
  int split = threads_per_channel;
  if (split == 0) {
    split = 1;
    while (split < 8 && p.batch * p.dim * split < kTargetThreads) split *= 2;
  }
  if (split != 1 && split != 2 && split != 4 && split != 8) {
    return absl::InvalidArgumentError(
        "selective scan (cuda): threads_per_channel must be 0, 1, 2, 4 or 8, "
        "got " +
        std::to_string(threads_per_channel));
  }
  if (p.batch == 0 || p.seqlen == 0 || p.dim == 0) return absl::OkStatus();
  if (p.dstate <= 16) return LaunchForward<16>(p, split, stream);
  if (p.dstate <= 32) return LaunchForward<32>(p, split, stream);
  return LaunchForward<64>(p, split, stream);
}

}  // namespace harmamba::kernels::cuda
