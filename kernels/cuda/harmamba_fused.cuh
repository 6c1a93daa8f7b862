// Fused HARMamba forward kernels (gpu/kernel-plan.md, structure A): one
// kernel per bidirectional pair, one CTA per window, every activation of the
// pair in shared memory; only the residual stream crosses pair boundaries.
// With the prologue (patch embedding) and the epilogue (final LayerNorm and
// head on the cls token), a forward pass is 2 + depth/2 launches.
//
// The algebra is the CPU engine's (model/cpu_engine.cc): both layers of a
// pair normalise the same stream `s`, so the statistics are shared and each
// layer's LayerNorm gamma/beta is folded into its in_proj; the backward
// layer runs over the same rows in reverse time (anti-causal conv taps, scan
// from the last token); the pair's output is s <- 2 s + y_f W_f + y_b W_b
// (the residual doubles each pair); after the last pair only the cls row
// is needed, so that pair computes just token 0 of the forward direction
// and writes back row 0 only.
//
// Weights are in "engine layout" (prepared once at load time; see
// model/gpu_engine.cc): projections k-major (transposed from PyTorch's
// [out][in]) so that a CTA's threads read consecutive output columns.
// Every pointer is device memory. Plain host C++ header.
//
// Thread-safety: re-entrant; asynchronous on `stream`; capturable in a CUDA
// graph.
#ifndef HARMAMBA_KERNELS_CUDA_HARMAMBA_FUSED_CUH_
#define HARMAMBA_KERNELS_CUDA_HARMAMBA_FUSED_CUH_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"

// HarmambaShape's helpers are used on both sides.
#if defined(__CUDACC__)
#define HARMAMBA_HOST_DEVICE __host__ __device__
#else
#define HARMAMBA_HOST_DEVICE
#endif

namespace harmamba::kernels::cuda {

// The sizes of a model (design.md §1).
struct HarmambaShape {
  int64_t window_length = 0, channels = 0, patch = 0, stride = 0;
  int64_t d_model = 0, d_inner = 0, d_state = 0, dt_rank = 0, d_conv = 0;
  int64_t classes = 0;

  HARMAMBA_HOST_DEVICE int64_t num_patches() const {
    return (window_length - patch) / stride + 1;
  }
  // Tokens per window including the cls token.
  HARMAMBA_HOST_DEVICE int64_t tokens() const {
    return num_patches() * channels + 1;
  }
  // Width of x_proj's output: dt_low | B | C.
  HARMAMBA_HOST_DEVICE int64_t xdbl_width() const {
    return dt_rank + 2 * d_state;
  }
};

// One direction (one Mamba layer) of a pair, engine layout.
struct FusedDirectionWeights {
  // [d_model][2 d_inner]: in_proj.weight^T with the layer's LayerNorm gamma
  // folded in (row k scaled by gamma[k]); columns x | z.
  const float* in_proj = nullptr;
  const float* in_proj_bias = nullptr;  // [2 d_inner] = in_proj.weight . beta
  const float* conv_weight = nullptr;   // [d_inner][d_conv]
  const float* conv_bias = nullptr;     // [d_inner]
  const float* x_proj = nullptr;        // [d_inner][dt_rank + 2 d_state]
  const float* dt_weight = nullptr;     // [d_inner][dt_rank]
  const float* dt_bias = nullptr;       // [d_inner]
  const float* A = nullptr;             // [d_inner][d_state] = -exp(A_log)
  const float* D = nullptr;             // [d_inner]
  const float* out_proj = nullptr;  // [d_inner][d_model] = out_proj.weight^T
};

struct FusedPairParams {
  HarmambaShape shape;
  int64_t batch = 0;
  float eps = 1e-5f;
  // After the last pair only token 0 reaches the head.
  bool cls_only = false;
  // [batch][tokens][d_model], contiguous; updated in place. With cls_only,
  // only row 0 of each window is written.
  float* s = nullptr;
  FusedDirectionWeights dir[2];  // forward, backward layer
  // Optional device scratch of FusedPairWorkspaceBytes(shape, batch) bytes.
  // When given, each window's activations live there (L1/L2-cached global
  // memory) instead of in shared memory: required when they do not fit
  // (PAMAP2's 289 tokens), slower otherwise. Private to this call until the
  // stream passes it.
  float* workspace = nullptr;
  // Threads per CTA (one CTA per window): 256 or 512; 0 = 512. More threads
  // hide more of the weight loads' latency and give the scan up to 4 lanes
  // per channel; the results are the same up to rounding (the scan's
  // reduction order depends on the lanes).
  int threads = 0;
};

// A window's activations: tokens * (2 d_model + 3 d_inner + xdbl_width)
// floats (160 KB for UCI-HAR's 73 tokens, 633 KB for PAMAP2's 289).
size_t FusedPairSharedBytes(const HarmambaShape& shape);

// Scratch for running a batch with FusedPairParams::workspace.
size_t FusedPairWorkspaceBytes(const HarmambaShape& shape, int64_t batch);

// The largest dynamic shared memory per CTA the kernels request (sm_90's
// opt-in limit, 227 KB).
inline constexpr size_t kMaxFusedSharedBytes = 227 * 1024;

// True when a window's activations fit in shared memory (no workspace
// needed).
bool FusedPairFitsSharedMemory(const HarmambaShape& shape);

// d_state <= 16, d_inner <= 256, dt_rank <= 16, d_conv <= 8, d_model <= 512,
// pointers given, batch < 2^31, and a workspace when the activations do not
// fit in shared memory. InvalidArgument naming the limit otherwise.
absl::Status CanRunFusedPair(const FusedPairParams& p);

// One pair for every window: s <- 2 s + out (see above). In shared-memory
// mode it sets the kernel's dynamic shared memory limit (a host-side
// attribute; call once before capturing a CUDA graph).
absl::Status FusedPairForward(const FusedPairParams& p, cudaStream_t stream);

// Prologue: standardisation, patch embedding, cls token and position
// embedding into s.
struct EmbedParams {
  HarmambaShape shape;
  int64_t batch = 0;
  const float* windows = nullptr;       // [batch][window_length][channels], raw
  const float* mean = nullptr;          // [channels]
  const float* inv_std = nullptr;       // [channels]
  const float* patch_weight = nullptr;  // [d_model][patch]
  // [tokens][d_model]: row 0 = cls_token + pos_embed[0]; row r > 0 =
  // pos_embed[r] + patch bias.
  const float* token_offset = nullptr;
  float* s = nullptr;  // [batch][tokens][d_model]
};

absl::Status CanRunEmbed(const EmbedParams& p);
absl::Status EmbedForward(const EmbedParams& p, cudaStream_t stream);

// Epilogue: logits = head(LayerNorm_f(s[b][0])) for every window.
struct HeadParams {
  HarmambaShape shape;
  int64_t batch = 0;
  float eps = 1e-5f;
  const float* s = nullptr;            // [batch][tokens][d_model]
  const float* norm_weight = nullptr;  // [d_model]
  const float* norm_bias = nullptr;    // [d_model]
  const float* head_weight = nullptr;  // [classes][d_model]
  const float* head_bias = nullptr;    // [classes]
  float* logits = nullptr;             // [batch][classes]
};

// d_model <= 512.
absl::Status CanRunHead(const HeadParams& p);
absl::Status HeadForward(const HeadParams& p, cudaStream_t stream);

}  // namespace harmamba::kernels::cuda

#endif  // HARMAMBA_KERNELS_CUDA_HARMAMBA_FUSED_CUH_
