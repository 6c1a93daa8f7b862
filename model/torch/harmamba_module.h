// HARMamba as a LibTorch module (design.md §1), the differentiable reference
// for every other implementation and the model the trainer optimises.
//
// Parameter names (named_parameters()) are exactly the authors' state_dict
// names of design.md §2 ("patch_embed.proj.weight", "layers.3.mixer.A_log",
// "norm_f.weight", "head.bias", ...). The per-channel input mean/std are
// registered as buffers ("input_mean", "input_std"), not parameters.
//
// Thread-compatibility: like any torch::nn::Module, one forward/backward at a
// time per instance (training mode draws drop-path masks from LibTorch's
// global generator).
//
// Torch-only header: include it only from model/torch and torch tests.
#ifndef HARMAMBA_MODEL_TORCH_HARMAMBA_MODULE_H_
#define HARMAMBA_MODEL_TORCH_HARMAMBA_MODULE_H_

#include <torch/torch.h>

#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "model/config.h"
#include "model/model_file.h"
#include "model/torch/torch_backend.h"

namespace harmamba {

// Stochastic depth (timm's DropPath): in training with rate p > 0, zeroes
// each sample (dim 0) of `x` with probability p and scales the survivors by
// 1/(1-p); identity otherwise.
torch::Tensor DropPath(const torch::Tensor& x, double p, bool training);

// Channel-independent patch embedding: one Conv2d(1 -> D, kernel (P,1),
// stride (S,1)) over (N, 1, T, C); tokens patch-major (index p*C + c).
class PatchEmbedImpl : public torch::nn::Module {
 public:
  PatchEmbedImpl(int64_t patch, int64_t stride, int64_t d_model);

  // x (N, T, C) -> tokens (N, Np*C, D).
  torch::Tensor forward(const torch::Tensor& x, ForwardPath path);

  torch::nn::Conv2d proj{nullptr};

 private:
  int64_t patch_, stride_;
};
TORCH_MODULE(PatchEmbed);

// The Mamba mixer (design.md §1): in_proj, causal depthwise conv + SiLU,
// x_proj, dt_proj + softplus, selective scan with D skip, SiLU(z) gate,
// out_proj.
class MambaMixerImpl : public torch::nn::Module {
 public:
  MambaMixerImpl(int64_t d_model, int64_t d_state, int64_t d_conv,
                 int64_t expand);

  // u (N, L, D) -> (N, L, D). `reverse` (fast path only) runs the mixer on the
  // time-reversed sequence and returns the result in original order, i.e.
  // flip(mixer(flip(u))); the reference path refuses it (callers flip).
  torch::Tensor forward(const torch::Tensor& u, ForwardPath path,
                        bool reverse = false);

  int64_t d_inner() const { return d_inner_; }
  int64_t d_state() const { return d_state_; }
  int64_t dt_rank() const { return dt_rank_; }

  torch::Tensor A_log, D;
  torch::nn::Linear in_proj{nullptr};
  torch::nn::Conv1d conv1d{nullptr};
  torch::nn::Linear x_proj{nullptr}, dt_proj{nullptr}, out_proj{nullptr};

 private:
  torch::Tensor ForwardReference(const torch::Tensor& u);
  torch::Tensor ForwardFast(const torch::Tensor& u, bool reverse);

  int64_t d_inner_, d_state_, d_conv_, dt_rank_;
};
TORCH_MODULE(MambaMixer);

// One Vim-style layer: r_out = (r_in undefined ? h_in : r_in +
// DropPath(h_in)); h_out = mixer(norm(r_out)). Returns (h_out, r_out).
class HarmambaBlockImpl : public torch::nn::Module {
 public:
  HarmambaBlockImpl(int64_t d_model, int64_t d_state, int64_t d_conv,
                    int64_t expand, double drop_path);

  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& h,
                                                  const torch::Tensor& r,
                                                  ForwardPath path,
                                                  bool reverse = false);

  double drop_path() const { return drop_path_; }

  MambaMixer mixer{nullptr};
  torch::nn::LayerNorm norm{nullptr};

 private:
  double drop_path_;
};
TORCH_MODULE(HarmambaBlock);

class HarmambaModule : public torch::nn::Module {
 public:
  // Builds the module for `config`, which must pass ModelConfig::Validate
  // (otherwise throws c10::Error with its message). Parameters get LibTorch's
  // default initialisation; call LoadWeights (e.g. with InitModel's output)
  // before use. Layer i's drop-path rate is [0, linspace(0, drop_path_rate,
  // depth)][i] and the final add uses drop_path_rate (design.md §1); only
  // active in training.
  explicit HarmambaModule(const ModelConfig& config,
                          double drop_path_rate = 0.1);

  // windows: raw (un-standardised) (N, T, C) of the module's dtype (other
  // floating dtypes are converted); standardised inside with the config's
  // mean/std. Returns logits (N, K). kFast requires float32 parameters on the
  // CPU, or on a CUDA device where FastPathRunsOnCuda().
  torch::Tensor forward(const torch::Tensor& windows,
                        ForwardPath path = ForwardPath::kReference);

  // Copies every tensor of `weights` into the parameters (under NoGrad) and
  // takes its config (mean/std, names, classes, metadata). Refuses, changing
  // nothing, weights whose architecture differs from this module's or whose
  // tensors are missing, unexpected (revin_layer.* is accepted and ignored)
  // or mis-shaped.
  absl::Status LoadWeights(const ModelWeights& weights);

  // The current config and parameters as float32 host tensors.
  ModelWeights ExportWeights() const;

  const ModelConfig& config() const { return config_; }
  double drop_path_rate() const { return drop_path_rate_; }

  PatchEmbed patch_embed{nullptr};
  torch::Tensor cls_token, pos_embed;
  torch::nn::ModuleList layers{nullptr};
  torch::nn::LayerNorm norm_f{nullptr};
  torch::nn::Linear head{nullptr};
  torch::Tensor input_mean, input_std;  // buffers, (C)

 private:
  ModelConfig config_;
  double drop_path_rate_;
};

}  // namespace harmamba

#endif  // HARMAMBA_MODEL_TORCH_HARMAMBA_MODULE_H_
