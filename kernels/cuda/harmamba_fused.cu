// Fused HARMamba forward kernels; see harmamba_fused.cuh for the contract.
//
// FusedPairKernel, one CTA (256 or 512 threads) per window, phases separated by
// __syncthreads, all buffers in dynamic shared memory (or, when they do not
// fit, in the window's slice of a global workspace) (L tokens):
//   acc  [L][d_model]     2 s, then += y_dir W_out,dir
//   xn   [L][d_model]     (s - mean) * rstd (affine folded into in_proj)
//   xz   [L][2 d_inner]   in_proj output x | z; once the convolution has
//                         read x: delta | SiLU(z), then delta | y
//   u    [L][d_inner]     SiLU(conv(x))
//   xdbl [L][R + 2N]      x_proj output dt_low | B | C
// Per direction: in_proj, conv + SiLU, x_proj, delta and SiLU(z) (parallel
// over tokens), the scan (kLanes lanes per channel, states in registers, B/C
// read from shared memory), out_proj accumulated into acc. The projections
// share BlockGemm (8 rows x 4 columns per item). Each output element has one
// owner thread and a fixed summation order: results do not depend on the batch.
//
// SIMT fp32, no tensor cores: the projections stream their weights from
// L1/L2 into 8 x 4 register tiles.
#include <algorithm>
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/harmamba_fused.cuh"

namespace harmamba::kernels::cuda {
namespace {

using internal::kLog2e;

// The CTA size by default (FusedPairParams::threads): 512 ran 1.25x faster
// than 256 on an H200 (docs/gpu.md, 2026-11-26).
constexpr int kDefaultPairThreads = 512;
constexpr int kMaxState = 16;
constexpr int kMaxRank = 16;
constexpr int kMaxConv = 8;
constexpr int kRowBlock = 8;  // rows per BlockGemm work item
constexpr int kHeadWarps = 4;
constexpr int kMaxHeadDim = 512;

struct Sizes {
  int L, D, E, N, R, X, K;
};

__device__ __forceinline__ Sizes SizesOf(const HarmambaShape& s) {
  return {static_cast<int>(s.tokens()), static_cast<int>(s.d_model),
          static_cast<int>(s.d_inner),  static_cast<int>(s.d_state),
          static_cast<int>(s.dt_rank),  static_cast<int>(s.xdbl_width()),
          static_cast<int>(s.d_conv)};
}

// out[t][j] (+)= bias[j] + sum_k a[t][k] w[k][j] for t < rows, j < n, by
// the CTA. A work item is a tile of kRowBlock rows x kColBlock columns held
// in registers (one float4 weight load and kRowBlock broadcast shared-memory
// reads feed 32 FMAs); consecutive items take consecutive column groups, so
// weight loads are coalesced. The kernel runs one CTA (8 warps) per SM, so
// the weight loads' latency, not arithmetic, bounds these products. Where n is
// not a multiple of kColBlock (or `w` or `bias` is not 16-byte aligned) the
// tile is one column wide. `a` and `out` in shared memory, `w` ([k][n]) and
// `bias` (optional) in global memory. Each output has one owner and a fixed
// summation order (k ascending), whatever the tile shape.
template <int kThreads, int kCols, bool kAccumulate>
__device__ __forceinline__ void BlockGemmTiled(const float* a, int lda,
                                               int rows, int k_dim,
                                               const float* w, int n,
                                               const float* bias, float* out,
                                               int ldo) {
  const int blocks = (rows + kRowBlock - 1) / kRowBlock;
  const int groups = n / kCols;
  for (int item = threadIdx.x; item < groups * blocks; item += kThreads) {
    const int j0 = (item % groups) * kCols, t0 = (item / groups) * kRowBlock;
    const int count = rows - t0 < kRowBlock ? rows - t0 : kRowBlock;
    float acc[kRowBlock][kCols];
#pragma unroll
    for (int c = 0; c < kCols; ++c) {
      const float init = bias != nullptr ? bias[j0 + c] : 0.f;
#pragma unroll
      for (int r = 0; r < kRowBlock; ++r) acc[r][c] = init;
    }
    // Unrolled so that several weight loads (L2 latency: the weights do not
    // fit the L1 left beside ~160 KB of shared memory) are in flight at once.
#pragma unroll 4
    for (int k = 0; k < k_dim; ++k) {
      float wk[kCols];
      if constexpr (kCols == 4) {
        const float4 v = *reinterpret_cast<const float4*>(w + k * n + j0);
        wk[0] = v.x;
        wk[1] = v.y;
        wk[2] = v.z;
        wk[3] = v.w;
      } else {
#pragma unroll
        for (int c = 0; c < kCols; ++c) wk[c] = w[k * n + j0 + c];
      }
#pragma unroll
      for (int r = 0; r < kRowBlock; ++r) {
        if (r < count) {
          const float ar = a[(t0 + r) * lda + k];
#pragma unroll
          for (int c = 0; c < kCols; ++c)
            acc[r][c] = fmaf(ar, wk[c], acc[r][c]);
        }
      }
    }
#pragma unroll
    for (int r = 0; r < kRowBlock; ++r) {
      if (r < count) {
#pragma unroll
        for (int c = 0; c < kCols; ++c) {
          float& dst = out[(t0 + r) * ldo + j0 + c];
          dst = kAccumulate ? dst + acc[r][c] : acc[r][c];
        }
      }
    }
  }
}

template <int kThreads, bool kAccumulate>
__device__ __forceinline__ void BlockGemm(const float* a, int lda, int rows,
                                          int k_dim, const float* w, int n,
                                          const float* bias, float* out,
                                          int ldo) {
  const bool vectorisable =
      n % 4 == 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0 &&
      (bias == nullptr || reinterpret_cast<uintptr_t>(bias) % 16 == 0);
  if (vectorisable) {
    BlockGemmTiled<kThreads, 4, kAccumulate>(a, lda, rows, k_dim, w, n, bias,
                                             out, ldo);
  } else {
    BlockGemmTiled<kThreads, 1, kAccumulate>(a, lda, rows, k_dim, w, n, bias,
                                             out, ldo);
  }
}

// Calls body(e, first_row, step) for each channel e < channels that the
// calling thread owns: with channels <= kThreads, thread t owns channel
// t % channels and its rows t / channels, + step, + 2 step, ... (step =
// kThreads / channels), so a channel's weights are loaded into registers
// once per thread; threads past the last whole group of channels own none.
// (With more channels than threads, each thread owns every kThreads-th
// channel and all its rows.)
template <int kThreads, typename Body>
__device__ __forceinline__ void ForEachOwnedChannel(int channels, Body body) {
  const int tid = threadIdx.x;
  const int step = channels <= kThreads ? kThreads / channels : 1;
  if (tid / channels >= step) return;
  for (int e = tid % channels; e < channels; e += kThreads) {
    body(e, tid / channels, step);
  }
}

template <int kThreads, int kLanes>
__global__ void __launch_bounds__(kThreads)
    FusedPairKernel(const FusedPairParams p) {
  constexpr int kWarps = kThreads / 32;
  constexpr int kStatesPerLane = kMaxState / kLanes;
  HARMAMBA_DYNAMIC_SHARED_FLOATS(smem);
  const Sizes z = SizesOf(p.shape);
  const int L = z.L, D = z.D, E = z.E, N = z.N, R = z.R, X = z.X;
  // __syncthreads orders global as well as shared memory within the CTA, so
  // the same code runs on a per-window slice of the workspace.
  float* const buffers =
      p.workspace != nullptr
          ? p.workspace + int64_t(blockIdx.x) * L * (2 * D + 3 * E + X)
          : smem;
  float* acc = buffers;
  float* xn = acc + L * D;
  float* xz = xn + L * D;
  float* u = xz + L * 2 * E;
  float* xdbl = u + L * E;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  float* s_g = p.s + int64_t(blockIdx.x) * L * D;

  // ---- LayerNorm statistics (shared by both layers) and acc = 2 s --------
  for (int r = warp; r < L; r += kWarps) {
    float sum = 0.f;
    for (int j = lane; j < D; j += 32) {
      const float v = s_g[r * D + j];
      acc[r * D + j] = v;
      sum += v;
    }
    const float mean = internal::GroupSum<32>(sum) / static_cast<float>(D);
    float sq = 0.f;
    for (int j = lane; j < D; j += 32) {
      const float c = acc[r * D + j] - mean;
      sq = fmaf(c, c, sq);
    }
    const float var = internal::GroupSum<32>(sq) / static_cast<float>(D);
    const float rstd = 1.0f / sqrtf(var + p.eps);
    for (int j = lane; j < D; j += 32) {
      const float v = acc[r * D + j];
      xn[r * D + j] = (v - mean) * rstd;
      acc[r * D + j] = 2.f * v;
    }
  }
  __syncthreads();

  for (int dir = 0; dir < 2; ++dir) {
    const FusedDirectionWeights& w = p.dir[dir];
    const bool reverse = dir == 1;
    // The forward direction of the last pair needs token 0 only (causal).
    const int Ld = (p.cls_only && !reverse) ? 1 : L;

    // ---- in_proj: xz[t][j] = bias[j] + sum_k xn[t][k] W[k][j] -------------
    BlockGemm<kThreads, false>(xn, D, Ld, D, w.in_proj, 2 * E, w.in_proj_bias,
                               xz, 2 * E);
    __syncthreads();

    // ---- conv + SiLU: u[t][e] ----------------------------------------------
    {
      const int K = z.K;
      const int sign = reverse ? 1 : -1;
      ForEachOwnedChannel<kThreads>(E, [&](int e, int first_row, int step) {
        float taps[kMaxConv];
#pragma unroll
        for (int k = 0; k < kMaxConv; ++k) {
          taps[k] = k < K ? w.conv_weight[e * K + k] : 0.f;
        }
        const float bias = w.conv_bias[e];
        for (int t = first_row; t < Ld; t += step) {
          float pre = bias;
#pragma unroll
          for (int k = 0; k < kMaxConv; ++k) {
            const int src = t + sign * (K - 1 - k);
            if (k < K && src >= 0 && src < Ld) {
              pre = fmaf(taps[k], xz[src * 2 * E + e], pre);
            }
          }
          u[t * E + e] = internal::Silu(pre);
        }
      });
    }
    __syncthreads();

    // ---- x_proj: xdbl[t][j] = sum_e u[t][e] Wx[e][j] ------------------------
    BlockGemm<kThreads, false>(u, E, Ld, E, w.x_proj, X, nullptr, xdbl, X);
    __syncthreads();

    // ---- delta and gate, in parallel over (t, e) ---------------------------
    // The x half of xz (already read by the convolution) takes
    // delta = softplus(dt_low W_dt + dt_bias), the z half SiLU(z), so that
    // the sequential scan below computes neither.
    ForEachOwnedChannel<kThreads>(E, [&](int e, int first_row, int step) {
      float dt_w[kMaxRank];
#pragma unroll
      for (int r = 0; r < kMaxRank; ++r) {
        dt_w[r] = r < R ? w.dt_weight[e * R + r] : 0.f;
      }
      const float dt_b = w.dt_bias[e];
      for (int t = first_row; t < Ld; t += step) {
        const float* row = xdbl + t * X;
        float raw = dt_b;
#pragma unroll
        for (int r = 0; r < kMaxRank; ++r) {
          if (r < R) raw = fmaf(row[r], dt_w[r], raw);
        }
        float* xt = xz + t * 2 * E;
        xt[e] = internal::Softplus(raw);
        xt[E + e] = internal::Silu(xt[E + e]);
      }
    });
    __syncthreads();

    // ---- scan + D skip + gate; y replaces delta in xz
    // ------------------------
    {
      const int group = tid / kLanes, sub = tid % kLanes;
      const bool active = group < E;
      const int e = active ? group : E - 1;
      float a2[kStatesPerLane], h[kStatesPerLane];
#pragma unroll
      for (int i = 0; i < kStatesPerLane; ++i) {
        const int n = sub + kLanes * i;
        a2[i] = n < N ? w.A[e * N + n] * kLog2e : 0.f;
        h[i] = 0.f;
      }
      const float skip = w.D[e];
      for (int step = 0; step < Ld; ++step) {
        const int t = reverse ? Ld - 1 - step : step;
        const float* row = xdbl + t * X;
        float* xt = xz + t * 2 * E;
        const float dt = xt[e];
        const float ut = u[t * E + e];
        const float dt_u = dt * ut;
        float y = 0.f;
#pragma unroll
        for (int i = 0; i < kStatesPerLane; ++i) {
          const int n = sub + kLanes * i;
          if (n < N) {
            h[i] = fmaf(exp2f(dt * a2[i]), h[i], dt_u * row[R + n]);
            y = fmaf(row[R + N + n], h[i], y);
          }
        }
        // y replaces SiLU(z), which no other lane reads: the lanes' reads of
        // delta and u need no ordering against this write.
        y = internal::GroupSum<kLanes>(y);
        if (active && sub == 0) xt[E + e] = fmaf(skip, ut, y) * xt[E + e];
      }
    }
    __syncthreads();

    // ---- out_proj: acc[t][c] += sum_e y[t][e] Wout[e][c] (y: the z half) ---
    BlockGemm<kThreads, true>(xz + E, 2 * E, p.cls_only ? 1 : L, E, w.out_proj,
                              D, nullptr, acc, D);
    __syncthreads();
  }

  const int rows = p.cls_only ? 1 : L;
  for (int idx = tid; idx < rows * D; idx += kThreads) s_g[idx] = acc[idx];
}

__global__ void __launch_bounds__(256) EmbedKernel(const EmbedParams p) {
  const HarmambaShape& sh = p.shape;
  const int L = static_cast<int>(sh.tokens()), D = static_cast<int>(sh.d_model);
  const int C = static_cast<int>(sh.channels), P = static_cast<int>(sh.patch);
  const int S = static_cast<int>(sh.stride);
  const int64_t b = blockIdx.x;
  const float* x = p.windows + b * sh.window_length * C;
  float* s = p.s + b * L * D;
  for (int idx = threadIdx.x; idx < L * D; idx += blockDim.x) {
    const int row = idx / D, j = idx % D;
    float v = p.token_offset[idx];
    if (row > 0) {
      const int patch = (row - 1) / C, c = (row - 1) % C;
      for (int i = 0; i < P; ++i) {
        const float xs =
            (x[(patch * S + i) * C + c] - p.mean[c]) * p.inv_std[c];
        v = fmaf(p.patch_weight[j * P + i], xs, v);
      }
    }
    s[idx] = v;
  }
}

// One warp per window: LayerNorm_f of token 0, then the head.
__global__ void __launch_bounds__(kHeadWarps * 32)
    HeadKernel(const HeadParams p) {
  __shared__ float cls[kHeadWarps][kMaxHeadDim];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t b = int64_t(blockIdx.x) * kHeadWarps + warp;
  if (b >= p.batch) return;  // whole warps
  const int D = static_cast<int>(p.shape.d_model);
  const int K = static_cast<int>(p.shape.classes);
  const float* row = p.s + b * p.shape.tokens() * D;
  float sum = 0.f;
  for (int j = lane; j < D; j += 32) sum += row[j];
  const float mean = internal::GroupSum<32>(sum) / static_cast<float>(D);
  float sq = 0.f;
  for (int j = lane; j < D; j += 32) {
    const float c = row[j] - mean;
    sq = fmaf(c, c, sq);
  }
  const float rstd =
      1.0f / sqrtf(internal::GroupSum<32>(sq) / static_cast<float>(D) + p.eps);
  for (int j = lane; j < D; j += 32) {
    cls[warp][j] = (row[j] - mean) * rstd * p.norm_weight[j] + p.norm_bias[j];
  }
  __syncwarp();
  for (int k = lane; k < K; k += 32) {
    float a = p.head_bias[k];
    for (int j = 0; j < D; ++j)
      a = fmaf(p.head_weight[k * D + j], cls[warp][j], a);
    p.logits[b * K + k] = a;
  }
}

absl::Status Invalid(const std::string& what) {
  return absl::InvalidArgumentError("fused harmamba (cuda): " + what);
}

absl::Status CheckShape(const HarmambaShape& s) {
  if (s.window_length < 1 || s.channels < 1 || s.patch < 1 || s.stride < 1 ||
      s.patch > s.window_length || s.d_model < 1 || s.d_inner < 1 ||
      s.d_state < 1 || s.dt_rank < 1 || s.d_conv < 1 || s.classes < 1) {
    return Invalid("every size must be >= 1 and patch <= window_length");
  }
  return absl::OkStatus();
}

}  // namespace

size_t FusedPairSharedBytes(const HarmambaShape& s) {
  return sizeof(float) * static_cast<size_t>(s.tokens()) *
         (2 * s.d_model + 3 * s.d_inner + s.xdbl_width());
}

size_t FusedPairWorkspaceBytes(const HarmambaShape& shape, int64_t batch) {
  return FusedPairSharedBytes(shape) * static_cast<size_t>(batch);
}

bool FusedPairFitsSharedMemory(const HarmambaShape& shape) {
  return FusedPairSharedBytes(shape) <= kMaxFusedSharedBytes;
}

absl::Status CanRunFusedPair(const FusedPairParams& p) {
  if (absl::Status st = CheckShape(p.shape); !st.ok()) return st;
  const HarmambaShape& s = p.shape;
  if (s.d_state > kMaxState) {
    return Invalid("d_state must be <= 16, got " + std::to_string(s.d_state));
  }
  if (p.threads != 0 && p.threads != 256 && p.threads != 512) {
    return Invalid("threads must be 0, 256 or 512, got " +
                   std::to_string(p.threads));
  }
  if (s.d_inner > 256) {
    return Invalid("d_inner must be <= 256, got " + std::to_string(s.d_inner));
  }
  if (s.dt_rank > kMaxRank) {
    return Invalid("dt_rank must be <= 16, got " + std::to_string(s.dt_rank));
  }
  if (s.d_conv > kMaxConv) {
    return Invalid("d_conv must be <= 8, got " + std::to_string(s.d_conv));
  }
  if (s.d_model > kMaxHeadDim) {
    return Invalid("d_model must be <= 512, got " + std::to_string(s.d_model));
  }
  if (!FusedPairFitsSharedMemory(s) && p.workspace == nullptr) {
    return Invalid("a window's activations need " +
                   std::to_string(FusedPairSharedBytes(s)) +
                   " bytes, more than the " +
                   std::to_string(kMaxFusedSharedBytes) +
                   " of shared memory (" + std::to_string(s.tokens()) +
                   " tokens): pass a workspace of FusedPairWorkspaceBytes");
  }
  if (p.batch < 0 || p.batch > 0x7fffffff)
    return Invalid("batch must be in [0, 2^31)");
  if (p.s == nullptr) return Invalid("s is required");
  for (const FusedDirectionWeights& w : p.dir) {
    if (!w.in_proj || !w.in_proj_bias || !w.conv_weight || !w.conv_bias ||
        !w.x_proj || !w.dt_weight || !w.dt_bias || !w.A || !w.D ||
        !w.out_proj) {
      return Invalid("every weight of both directions is required");
    }
  }
  return absl::OkStatus();
}

namespace {

template <int kThreads, int kLanes>
void LaunchPair(const FusedPairParams& p, unsigned grid, size_t bytes,
                cudaStream_t stream) {
  FusedPairKernel<kThreads, kLanes><<<grid, kThreads, bytes, stream>>>(p);
}

// One instantiation of FusedPairKernel and its launcher.
struct PairVariant {
  const void* kernel;
  void (*launch)(const FusedPairParams&, unsigned, size_t, cudaStream_t);
};

template <int kThreads, int kLanes>
PairVariant Variant() {
  return {reinterpret_cast<const void*>(&FusedPairKernel<kThreads, kLanes>),
          &LaunchPair<kThreads, kLanes>};
}

// The variant with `lanes` (1, 2 or 4; more counts as 4) scan lanes per
// channel.
template <int kThreads>
PairVariant VariantWithLanes(int lanes) {
  return lanes >= 4   ? Variant<kThreads, 4>()
         : lanes >= 2 ? Variant<kThreads, 2>()
                      : Variant<kThreads, 1>();
}

}  // namespace

absl::Status FusedPairForward(const FusedPairParams& p, cudaStream_t stream) {
  if (absl::Status st = CanRunFusedPair(p); !st.ok()) return st;
  if (p.batch == 0) return absl::OkStatus();
  const size_t bytes =
      p.workspace != nullptr ? 0 : FusedPairSharedBytes(p.shape);
  const int threads = p.threads != 0 ? p.threads : kDefaultPairThreads;
  // As many scan lanes per channel (1, 2 or 4) as the CTA has room for.
  const int lanes = std::min(4, threads / static_cast<int>(p.shape.d_inner));
  const PairVariant v = threads == 512 ? VariantWithLanes<512>(lanes)
                                       : VariantWithLanes<256>(lanes);
  if (bytes > 0) {
    if (absl::Status st = internal::CheckCuda(
            cudaFuncSetAttribute(v.kernel,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(bytes)),
            "fused pair: cudaFuncSetAttribute");
        !st.ok()) {
      return st;
    }
  }
  v.launch(p, static_cast<unsigned>(p.batch), bytes, stream);
  return internal::CheckLaunch("fused pair forward");
}

absl::Status CanRunEmbed(const EmbedParams& p) {
  if (absl::Status st = CheckShape(p.shape); !st.ok()) return st;
  if (p.batch < 0 || p.batch > 0x7fffffff)
    return Invalid("batch must be in [0, 2^31)");
  if (!p.windows || !p.mean || !p.inv_std || !p.patch_weight ||
      !p.token_offset || !p.s) {
    return Invalid("embed: every pointer is required");
  }
  return absl::OkStatus();
}

absl::Status EmbedForward(const EmbedParams& p, cudaStream_t stream) {
  if (absl::Status st = CanRunEmbed(p); !st.ok()) return st;
  if (p.batch == 0) return absl::OkStatus();
  EmbedKernel<<<static_cast<unsigned>(p.batch), 256, 0, stream>>>(p);
  return internal::CheckLaunch("embed forward");
}

absl::Status CanRunHead(const HeadParams& p) {
  if (absl::Status st = CheckShape(p.shape); !st.ok()) return st;
  if (p.shape.d_model > kMaxHeadDim) {
    return Invalid("d_model must be <= 512, got " +
                   std::to_string(p.shape.d_model));
  }
  if (p.batch < 0 || p.batch > 0x7fffffff)
    return Invalid("batch must be in [0, 2^31)");
  if (!p.s || !p.norm_weight || !p.norm_bias || !p.head_weight ||
      !p.head_bias || !p.logits) {
    return Invalid("head: every pointer is required");
  }
  return absl::OkStatus();
}

absl::Status HeadForward(const HeadParams& p, cudaStream_t stream) {
  if (absl::Status st = CanRunHead(p); !st.ok()) return st;
  if (p.batch == 0) return absl::OkStatus();
  const unsigned blocks =
      static_cast<unsigned>((p.batch + kHeadWarps - 1) / kHeadWarps);
  HeadKernel<<<blocks, kHeadWarps * 32, 0, stream>>>(p);
  return internal::CheckLaunch("head forward");
}

}  // namespace harmamba::kernels::cuda
