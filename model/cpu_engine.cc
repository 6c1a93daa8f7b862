#include "model/cpu_engine.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include "absl/strings/str_cat.h"
#include "kernels/cpu/causal_conv1d.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/layer_norm.h"
#include "kernels/cpu/selective_scan.h"
#include "model/status_macros.h"
#include "model/thread_pool.h"

namespace harmamba {
namespace {

// Windows pushed together through all layers by one thread: large enough for
// efficient GEMMs, small enough that the activations stay in L2.
constexpr int64_t kMaxTileWindows = 4;
constexpr int64_t kMaxDModel = 4096;

// Flushes denormals to zero on the current thread while in scope (restores
// the previous mode after). Decays exp(delta * A) and the states they scale
// can fall below 2^-126; denormal arithmetic is many times slower on x86 and
// such values are zero for all practical purposes.
class ScopedFlushDenormals {
 public:
#if defined(__SSE__)
  ScopedFlushDenormals() : saved_(_mm_getcsr()) {
    _mm_setcsr(saved_ | 0x8040);  // FTZ (bit 15) | DAZ (bit 6)
  }
  ~ScopedFlushDenormals() { _mm_setcsr(saved_); }

 private:
  const unsigned int saved_;
#endif
};

// A reusable barrier for a fixed number of threads that spins (a batch-1
// forward crosses it ~13 times in ~0.5 ms; sleeping would dominate), yielding
// after a while in case the other thread was descheduled.
class SpinBarrier {
 public:
  explicit SpinBarrier(int parties) : parties_(parties) {}
  void Wait() {
    const int generation = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == parties_) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_acq_rel);
      return;
    }
    for (int spins = 0;
         generation_.load(std::memory_order_acquire) == generation; ++spins) {
      if (spins > 4096) std::this_thread::yield();
    }
  }

 private:
  const int parties_;
  std::atomic<int> arrived_{0};
  std::atomic<int> generation_{0};
};

// 64-byte aligned float storage.
class FloatBuffer {
 public:
  FloatBuffer() = default;
  explicit FloatBuffer(size_t n) : size_(n) {
    const size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
    data_.reset(
        static_cast<float*>(std::aligned_alloc(64, bytes ? bytes : 64)));
  }
  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  size_t size() const { return size_; }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> data_;
  size_t size_ = 0;
};

FloatBuffer Copy(const std::vector<float>& v) {
  FloatBuffer b(v.size());
  std::copy(v.begin(), v.end(), b.data());
  return b;
}

// One direction (one Mamba layer) of a pair, in engine layout.
struct DirectionWeights {
  FloatBuffer conv_weight;       // [E][d_conv]
  FloatBuffer conv_bias;         // [E]
  kernels::PackedMatrix x_proj;  // E -> R + 2N
  FloatBuffer dt_weight;         // [E][R]
  FloatBuffer dt_bias;           // [E]
  FloatBuffer A;                 // [E][N], = -exp(A_log)
  FloatBuffer D;                 // [E]
};

// Both layers of a bidirectional pair normalise the same residual stream:
// the statistics are computed once and each layer's affine terms folded into
// its in_proj; the two out_projs are stacked into one GEMM (design.md §7).
struct PairWeights {
  // Per direction: D -> 2E (columns x | z), LayerNorm gamma folded in.
  kernels::PackedMatrix in_proj[2];
  FloatBuffer in_proj_bias[2];     // [2E]: W_in * beta of that layer's norm
  kernels::PackedMatrix out_proj;  // 2E -> D: rows y_f | y_b
  DirectionWeights dir[2];
};

struct Workspace {
  FloatBuffer s, xn, xz, xc, xdbl, y, standardized;
};

class CpuEngine final : public ModelBackend {
 public:
  CpuEngine(const ModelWeights& w, int num_threads)
      : config_(w.config),
        T_(config_.window_length),
        C_(config_.num_channels()),
        L_(config_.num_tokens()),
        D_(config_.d_model),
        E_(config_.d_inner()),
        N_(config_.d_state),
        R_(config_.dt_rank()),
        K_(config_.num_classes()),
        xdbl_width_(R_ + 2 * N_),
        pool_(num_threads) {
    PrepareWeights(w);
    const int64_t rows = kMaxTileWindows * L_;
    workspaces_.resize(pool_.num_threads());
    for (Workspace& ws : workspaces_) {
      ws.s = FloatBuffer(rows * D_);
      ws.xn = FloatBuffer(rows * D_);
      ws.xz = FloatBuffer(rows * 4 * E_);
      ws.xc = FloatBuffer(rows * 2 * E_);
      ws.xdbl = FloatBuffer(rows * 2 * xdbl_width_);
      ws.y = FloatBuffer(rows * 2 * E_);
      ws.standardized = FloatBuffer(T_ * C_);
    }
  }

  const ModelConfig& config() const override { return config_; }

  std::string description() const override {
    return absl::StrCat("cpu-fused (", pool_.num_threads(), " threads)");
  }

  absl::Status Run(const float* windows, int64_t n, float* logits) override {
    if (n < 1) return absl::InvalidArgumentError("batch must hold >= 1 window");
    const int64_t threads = pool_.num_threads();
    if (n == 1 && threads >= 2) {
      RunOneWindowOnTwoThreads(windows, logits);
      return absl::OkStatus();
    }
    const int64_t tile =
        std::clamp<int64_t>((n + threads - 1) / threads, 1, kMaxTileWindows);
    const int64_t num_tiles = (n + tile - 1) / tile;
    pool_.ParallelFor(num_tiles, [&](int64_t task, int thread) {
      ScopedFlushDenormals flush_denormals;
      const int64_t first = task * tile;
      const int64_t count = std::min(tile, n - first);
      RunTile(windows + first * T_ * C_, count, logits + first * K_,
              workspaces_[thread]);
    });
    return absl::OkStatus();
  }

 private:
  void PrepareWeights(const ModelWeights& w) {
    const auto& t = [&](const std::string& name) -> const std::vector<float>& {
      return w.at(name).data;
    };
    inv_std_.resize(C_);
    mean_ = config_.mean;
    for (int c = 0; c < C_; ++c) inv_std_[c] = 1.0f / config_.std[c];
    // [D][P] in the file; stored [P][D] so the embedding loop runs over D.
    const auto& patch_weight = t("patch_embed.proj.weight");
    const int64_t P = config_.patch;
    patch_weight_.resize(P * D_);
    for (int64_t j = 0; j < D_; ++j) {
      for (int64_t i = 0; i < P; ++i) {
        patch_weight_[i * D_ + j] = patch_weight[j * P + i];
      }
    }
    patch_bias_ = t("patch_embed.proj.bias");
    // Token embedding offsets: cls + pos[0] for row 0, bias + pos for others.
    const auto& pos = t("pos_embed");
    const auto& cls = t("cls_token");
    token_offset_.assign(L_ * D_, 0.f);
    for (int64_t j = 0; j < D_; ++j) token_offset_[j] = cls[j] + pos[j];
    for (int64_t r = 1; r < L_; ++r) {
      for (int64_t j = 0; j < D_; ++j) {
        token_offset_[r * D_ + j] = pos[r * D_ + j] + patch_bias_[j];
      }
    }
    norm_f_weight_ = t("norm_f.weight");
    norm_f_bias_ = t("norm_f.bias");
    head_weight_ = t("head.weight");
    head_bias_ = t("head.bias");

    pairs_.resize(config_.num_pairs());
    for (int k = 0; k < config_.num_pairs(); ++k) {
      PairWeights& pw = pairs_[k];
      std::vector<float> out_proj(2 * E_ * D_);
      for (int dir = 0; dir < 2; ++dir) {
        const std::string p = absl::StrCat("layers.", 2 * k + dir, ".");
        const auto& gamma = t(p + "norm.weight");
        const auto& beta = t(p + "norm.bias");
        const auto& w_in = t(p + "mixer.in_proj.weight");  // [2E][D]
        std::vector<float> in_proj(2 * E_ * D_), in_bias(2 * E_);
        for (int64_t o = 0; o < 2 * E_; ++o) {
          double bias = 0;
          for (int64_t j = 0; j < D_; ++j) {
            in_proj[o * D_ + j] = w_in[o * D_ + j] * gamma[j];
            bias += double(w_in[o * D_ + j]) * beta[j];
          }
          in_bias[o] = static_cast<float>(bias);
        }
        pw.in_proj[dir] =
            kernels::PackedMatrix::Pack(in_proj.data(), D_, 2 * E_, D_, true);
        pw.in_proj_bias[dir] = Copy(in_bias);
        const auto& w_out = t(p + "mixer.out_proj.weight");  // [D][E]
        for (int64_t e = 0; e < E_; ++e) {
          for (int64_t j = 0; j < D_; ++j) {
            out_proj[(dir * E_ + e) * D_ + j] = w_out[j * E_ + e];
          }
        }
        DirectionWeights& dw = pw.dir[dir];
        dw.conv_weight = Copy(t(p + "mixer.conv1d.weight"));
        dw.conv_bias = Copy(t(p + "mixer.conv1d.bias"));
        dw.x_proj = kernels::PackedMatrix::Pack(
            t(p + "mixer.x_proj.weight").data(), E_, xdbl_width_, E_, true);
        dw.dt_weight = Copy(t(p + "mixer.dt_proj.weight"));
        dw.dt_bias = Copy(t(p + "mixer.dt_proj.bias"));
        std::vector<float> a = t(p + "mixer.A_log");
        for (float& v : a) v = -std::exp(v);
        dw.A = Copy(a);
        dw.D = Copy(t(p + "mixer.D"));
      }
      pw.out_proj =
          kernels::PackedMatrix::Pack(out_proj.data(), 2 * E_, D_, D_, false);
    }
  }

  // Standardises one window and writes its L token embeddings to `s`.
  void Embed(const float* window, float* s, Workspace& ws) const {
    float* x = ws.standardized.data();
    for (int64_t t = 0; t < T_; ++t) {
      for (int64_t c = 0; c < C_; ++c) {
        x[t * C_ + c] = (window[t * C_ + c] - mean_[c]) * inv_std_[c];
      }
    }
    std::copy(token_offset_.begin(), token_offset_.begin() + D_, s);
    const int64_t P = config_.patch, S = config_.stride;
    for (int64_t p = 0; p < config_.num_patches(); ++p) {
      for (int64_t c = 0; c < C_; ++c) {
        const int64_t row = 1 + p * C_ + c;
        float* dst = s + row * D_;
        const float* offset = token_offset_.data() + row * D_;
        for (int64_t j = 0; j < D_; ++j) dst[j] = offset[j];
        for (int64_t i = 0; i < P; ++i) {
          const float v = x[(p * S + i) * C_ + c];
          const float* w = patch_weight_.data() + i * D_;
          for (int64_t j = 0; j < D_; ++j) dst[j] += w[j] * v;
        }
      }
    }
  }

  // Pushes `count` windows through every layer on the calling thread.
  void RunTile(const float* windows, int64_t count, float* logits,
               Workspace& ws) const {
    const int64_t rows = count * L_;
    for (int64_t w = 0; w < count; ++w) {
      Embed(windows + w * T_ * C_, ws.s.data() + w * L_ * D_, ws);
    }
    for (size_t k = 0; k < pairs_.size(); ++k) {
      const PairWeights& pw = pairs_[k];
      // After the last pair only the cls token (row 0) reaches the head, and
      // row 0 of the forward direction depends on row 0 of its input only.
      const bool last = k + 1 == pairs_.size();
      NormRows(0, rows, ws);
      InProj(pw, kForward, count, /*cls_only=*/last, ws);
      InProj(pw, kBackward, count, /*cls_only=*/false, ws);
      MixDirection(pw, kForward, count, /*cls_only=*/last, ws);
      MixDirection(pw, kBackward, count, /*cls_only=*/false, ws);
      if (last) {
        OutProjClsRows(pw, count, ws);
      } else {
        OutProjRows(pw, 0, rows, ws);
      }
    }
    Head(count, logits, ws);
  }

  // Batch-1 latency: two threads share one window, one direction of each
  // pair each; LayerNorm and out_proj are split by rows. Two barriers per
  // pair. Uses workspace 0.
  void RunOneWindowOnTwoThreads(const float* window, float* logits) const {
    Workspace& ws = workspaces_[0];
    SpinBarrier barrier(2);
    pool_.ParallelFor(2, [&](int64_t role, int /*thread*/) {
      ScopedFlushDenormals flush_denormals;
      const int64_t row_begin = role == 0 ? 0 : L_ / 2;
      const int64_t row_end = role == 0 ? L_ / 2 : L_;
      const Direction dir = role == 0 ? kForward : kBackward;
      if (role == 0) Embed(window, ws.s.data(), ws);
      barrier.Wait();
      for (size_t k = 0; k < pairs_.size(); ++k) {
        const PairWeights& pw = pairs_[k];
        const bool last = k + 1 == pairs_.size();
        NormRows(row_begin, row_end, ws);
        barrier.Wait();
        const bool cls_only = last && dir == kForward;
        InProj(pw, dir, 1, cls_only, ws);
        MixDirection(pw, dir, 1, cls_only, ws);
        barrier.Wait();
        // Each thread then owns its rows of s until the next barrier.
        if (!last) {
          OutProjRows(pw, row_begin, row_end, ws);
        } else if (role == 0) {
          OutProjClsRows(pw, 1, ws);
        }
      }
      if (role == 0) Head(1, logits, ws);
    });
  }

  enum Direction { kForward = 0, kBackward = 1 };

  // xn[r] = (s[r] - mean) / std for rows [row_begin, row_end) of the tile;
  // each layer's affine terms are folded into its in_proj.
  void NormRows(int64_t row_begin, int64_t row_end, Workspace& ws) const {
    kernels::LayerNormParams ln;
    ln.rows = row_end - row_begin;
    ln.dim = D_;
    ln.x = ws.s.data() + row_begin * D_;
    ln.x_row_stride = D_;
    ln.out = ws.xn.data() + row_begin * D_;
    ln.out_row_stride = D_;
    kernels::LayerNormForward(ln);
  }

  // xz[:, dir half] = LN_dir(s) W_in_dir^T, for every row or only row 0 of
  // each window.
  void InProj(const PairWeights& pw, Direction dir, int64_t count,
              bool cls_only, Workspace& ws) const {
    const int64_t xz_width = 4 * E_;
    float* xz = ws.xz.data() + dir * 2 * E_;
    if (!cls_only) {
      kernels::Gemm(count * L_, ws.xn.data(), D_, pw.in_proj[dir], 0.f,
                    pw.in_proj_bias[dir].data(), xz, xz_width);
      return;
    }
    for (int64_t w = 0; w < count; ++w) {
      kernels::Gemm(1, ws.xn.data() + w * L_ * D_, D_, pw.in_proj[dir], 0.f,
                    pw.in_proj_bias[dir].data(), xz + w * L_ * xz_width,
                    xz_width);
    }
  }

  // One Mamba mixer (conv + SiLU, x_proj, selective scan with its gate)
  // from xz's half for `dir` into y's half. The backward direction runs in
  // reverse time over the same rows instead of flipped copies. cls_only
  // (forward direction only): just time step 0 of each window.
  void MixDirection(const PairWeights& pw, Direction dir, int64_t count,
                    bool cls_only, Workspace& ws) const {
    const DirectionWeights& dw = pw.dir[dir];
    const int64_t xz_width = 4 * E_;
    const int64_t seqlen = cls_only ? 1 : L_;
    const float* x_in = ws.xz.data() + dir * 2 * E_;
    const float* z = x_in + E_;
    float* xc = ws.xc.data() + dir * E_;
    float* xdbl = ws.xdbl.data() + dir * xdbl_width_;
    float* y = ws.y.data() + dir * E_;

    kernels::CausalConv1dParams conv;
    conv.batch = count;
    conv.seqlen = seqlen;
    conv.dim = E_;
    conv.width = config_.d_conv;
    conv.reverse = dir == kBackward;
    conv.silu = true;
    conv.x = x_in;
    conv.x_batch_stride = L_ * xz_width;
    conv.x_seq_stride = xz_width;
    conv.weight = dw.conv_weight.data();
    conv.bias = dw.conv_bias.data();
    conv.out = xc;
    conv.out_batch_stride = L_ * 2 * E_;
    conv.out_seq_stride = 2 * E_;
    kernels::CausalConv1dForward(conv);

    if (cls_only) {
      for (int64_t w = 0; w < count; ++w) {
        kernels::Gemm(1, xc + w * L_ * 2 * E_, 2 * E_, dw.x_proj, 0.f, nullptr,
                      xdbl + w * L_ * 2 * xdbl_width_, 2 * xdbl_width_);
      }
    } else {
      kernels::Gemm(count * L_, xc, 2 * E_, dw.x_proj, 0.f, nullptr, xdbl,
                    2 * xdbl_width_);
    }

    kernels::SelectiveScanParams scan;
    scan.batch = count;
    scan.seqlen = seqlen;
    scan.dim = E_;
    scan.dstate = N_;
    scan.reverse = dir == kBackward;
    scan.delta_softplus = true;
    scan.u = xc;
    scan.u_batch_stride = L_ * 2 * E_;
    scan.u_seq_stride = 2 * E_;
    scan.dt_low = xdbl;
    scan.dt_low_batch_stride = L_ * 2 * xdbl_width_;
    scan.dt_low_seq_stride = 2 * xdbl_width_;
    scan.dt_rank = R_;
    scan.dt_weight = dw.dt_weight.data();
    scan.delta_bias = dw.dt_bias.data();
    scan.A = dw.A.data();
    scan.A_dim_stride = N_;
    scan.A_state_stride = 1;
    scan.B = xdbl + R_;
    scan.B_batch_stride = scan.dt_low_batch_stride;
    scan.B_seq_stride = scan.dt_low_seq_stride;
    scan.C = xdbl + R_ + N_;
    scan.C_batch_stride = scan.dt_low_batch_stride;
    scan.C_seq_stride = scan.dt_low_seq_stride;
    scan.D = dw.D.data();
    scan.z = z;
    scan.z_batch_stride = L_ * xz_width;
    scan.z_seq_stride = xz_width;
    scan.out = y;
    scan.out_batch_stride = L_ * 2 * E_;
    scan.out_seq_stride = 2 * E_;
    kernels::SelectiveScanForward(scan);
  }

  // s <- 2 s + [y_f | y_b] W_out for rows [row_begin, row_end): the next
  // pair's residual stream (the pair's residual r_f + flip(r_b) is 2 s, its
  // hidden state the mixers' output).
  void OutProjRows(const PairWeights& pw, int64_t row_begin, int64_t row_end,
                   Workspace& ws) const {
    kernels::Gemm(row_end - row_begin, ws.y.data() + row_begin * 2 * E_, 2 * E_,
                  pw.out_proj, 2.f, nullptr, ws.s.data() + row_begin * D_, D_);
  }

  void OutProjClsRows(const PairWeights& pw, int64_t count,
                      Workspace& ws) const {
    for (int64_t w = 0; w < count; ++w) {
      OutProjRows(pw, w * L_, w * L_ + 1, ws);
    }
  }

  // Final LayerNorm and head on the cls token (row 0) of each window.
  void Head(int64_t count, float* logits, Workspace& ws) const {
    float cls[kMaxDModel];
    for (int64_t w = 0; w < count; ++w) {
      kernels::LayerNormParams ln;
      ln.rows = 1;
      ln.dim = D_;
      ln.x = ws.s.data() + w * L_ * D_;
      ln.x_row_stride = D_;
      ln.gamma = norm_f_weight_.data();
      ln.beta = norm_f_bias_.data();
      ln.out = cls;
      ln.out_row_stride = D_;
      kernels::LayerNormForward(ln);
      for (int64_t k = 0; k < K_; ++k) {
        float acc = head_bias_[k];
        for (int64_t j = 0; j < D_; ++j)
          acc += head_weight_[k * D_ + j] * cls[j];
        logits[w * K_ + k] = acc;
      }
    }
  }

  const ModelConfig config_;
  const int64_t T_, C_, L_, D_, E_, N_, R_, K_, xdbl_width_;
  std::vector<float> mean_, inv_std_;
  std::vector<float> patch_weight_;  // [P][D]
  std::vector<float> patch_bias_, token_offset_;
  std::vector<float> norm_f_weight_, norm_f_bias_, head_weight_, head_bias_;
  std::vector<PairWeights> pairs_;
  mutable ThreadPool pool_;
  // One per pool thread; only Run() (one at a time) touches them.
  mutable std::vector<Workspace> workspaces_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ModelBackend>> CreateCpuEngine(
    const ModelWeights& weights, const CpuEngineOptions& options) {
  RETURN_IF_ERROR(ValidateWeights(weights));
  if (weights.config.d_conv > 8) {
    return absl::InvalidArgumentError("cpu engine: d_conv must be <= 8");
  }
  if (weights.config.dt_rank() > 16) {
    return absl::InvalidArgumentError("cpu engine: dt_rank must be <= 16");
  }
  if (options.num_threads < 0) {
    return absl::InvalidArgumentError("cpu engine: num_threads must be >= 0");
  }
  int threads = options.num_threads;
  if (threads == 0) {
    threads = std::max(1u, std::thread::hardware_concurrency());
  }
  return std::unique_ptr<ModelBackend>(new CpuEngine(weights, threads));
}

}  // namespace harmamba
