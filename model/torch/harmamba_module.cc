#include "model/torch/harmamba_module.h"

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "model/torch/kernel_ops.h"

namespace harmamba {
namespace {

// Layer i's drop-path rate: [0, linspace(0, rate, depth)][i] (the authors'
// inter_dpr; the last linspace entry is unused).
double LayerDropPath(int i, int depth, double rate) {
  if (i == 0 || depth <= 1) return 0.0;
  return rate * static_cast<double>(i - 1) / static_cast<double>(depth - 1);
}

// The (C) float32 tensor of a validated config's per-channel values.
torch::Tensor ChannelTensor(const std::vector<float>& values) {
  return torch::tensor(values, torch::kFloat32);
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

}  // namespace

torch::Tensor DropPath(const torch::Tensor& x, double p, bool training) {
  if (!training || p <= 0.0) return x;
  const double keep = 1.0 - p;
  std::vector<int64_t> mask_shape(x.dim(), 1);
  mask_shape[0] = x.size(0);
  torch::Tensor mask = torch::empty(mask_shape, x.options()).bernoulli_(keep);
  return x.div(keep) * mask;
}

// ---- PatchEmbed -------------------------------------------------------------

PatchEmbedImpl::PatchEmbedImpl(int64_t patch, int64_t stride, int64_t d_model)
    : patch_(patch), stride_(stride) {
  proj = register_module(
      "proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, d_model, {patch, 1})
                                    .stride({stride, 1})
                                    .bias(true)));
}

torch::Tensor PatchEmbedImpl::forward(const torch::Tensor& x,
                                      ForwardPath path) {
  const int64_t n = x.size(0);
  const int64_t d_model = proj->weight.size(0);
  if (path == ForwardPath::kReference) {
    // (N,1,T,C) -> (N,D,Np,C) -> (N,Np*C,D): token index p*C + c.
    return proj->forward(x.unsqueeze(1)).flatten(2).transpose(1, 2);
  }
  // The same as a Linear(P -> D) over every channel's patches: (N,Np,C,P).
  const torch::Tensor patches = x.unfold(1, patch_, stride_);
  const torch::Tensor w = proj->weight.view({d_model, patch_});
  return torch::addmm(proj->bias, patches.reshape({-1, patch_}), w.t())
      .view({n, -1, d_model});
}

// ---- MambaMixer -------------------------------------------------------------

MambaMixerImpl::MambaMixerImpl(int64_t d_model, int64_t d_state, int64_t d_conv,
                               int64_t expand)
    : d_inner_(expand * d_model),
      d_state_(d_state),
      d_conv_(d_conv),
      dt_rank_((d_model + 15) / 16) {
  const int64_t e = d_inner_;
  // Parameters before submodules: named_parameters() then lists A_log, D,
  // in_proj, ... like the authors' state_dict.
  A_log = register_parameter(
      "A_log", torch::log(torch::arange(1, d_state + 1, torch::kFloat32))
                   .repeat({e, 1}));
  D = register_parameter("D", torch::ones({e}));
  in_proj = register_module(
      "in_proj",
      torch::nn::Linear(torch::nn::LinearOptions(d_model, 2 * e).bias(false)));
  conv1d = register_module(
      "conv1d", torch::nn::Conv1d(torch::nn::Conv1dOptions(e, e, d_conv)
                                      .groups(e)
                                      .padding(d_conv - 1)
                                      .bias(true)));
  x_proj = register_module(
      "x_proj",
      torch::nn::Linear(
          torch::nn::LinearOptions(e, dt_rank_ + 2 * d_state).bias(false)));
  dt_proj = register_module(
      "dt_proj",
      torch::nn::Linear(torch::nn::LinearOptions(dt_rank_, e).bias(true)));
  out_proj = register_module(
      "out_proj",
      torch::nn::Linear(torch::nn::LinearOptions(e, d_model).bias(false)));
}

torch::Tensor MambaMixerImpl::forward(const torch::Tensor& u, ForwardPath path,
                                      bool reverse) {
  if (path == ForwardPath::kFast) return ForwardFast(u, reverse);
  TORCH_CHECK(!reverse,
              "MambaMixer: the reference path does not run in reverse; flip "
              "the sequence instead");
  return ForwardReference(u);
}

torch::Tensor MambaMixerImpl::ForwardReference(const torch::Tensor& u) {
  const int64_t seqlen = u.size(1), e = d_inner_;
  const torch::Tensor xz = in_proj->forward(u);  // (N, L, 2E)
  const torch::Tensor z = xz.narrow(-1, e, e);
  // Conv1d over (N, E, L) with d_conv-1 zeros of padding on both sides; the
  // first L outputs are the causal ones.
  torch::Tensor x = conv1d->forward(xz.narrow(-1, 0, e).transpose(1, 2))
                        .narrow(-1, 0, seqlen);
  x = torch::silu(x).transpose(1, 2);  // (N, L, E)
  const torch::Tensor x_dbl = x_proj->forward(x);
  const torch::Tensor dt_low = x_dbl.narrow(-1, 0, dt_rank_);
  const torch::Tensor B = x_dbl.narrow(-1, dt_rank_, d_state_);
  const torch::Tensor C = x_dbl.narrow(-1, dt_rank_ + d_state_, d_state_);
  const torch::Tensor delta = torch::matmul(dt_low, dt_proj->weight.t());
  const torch::Tensor A = -torch::exp(A_log);
  const torch::Tensor y = SelectiveScanReferenceTorch(
      x, delta, dt_proj->bias, A, B, C, D, z, /*reverse=*/false,
      /*delta_softplus=*/true);
  return out_proj->forward(y);
}

torch::Tensor MambaMixerImpl::ForwardFast(const torch::Tensor& u,
                                          bool reverse) {
  const int64_t e = d_inner_;
  // x and z by two GEMMs on row blocks of in_proj.weight rather than slices
  // of one (N, L, 2E) product: the backward of a slice would allocate and
  // zero-fill a full (N, L, 2E) gradient per slice.
  const torch::Tensor x_in =
      torch::matmul(u, in_proj->weight.narrow(0, 0, e).t());
  const torch::Tensor z = torch::matmul(u, in_proj->weight.narrow(0, e, e).t());
  const torch::Tensor x =
      CausalConv1d(x_in, conv1d->weight, conv1d->bias, reverse, /*silu=*/true);
  const torch::Tensor x_dbl = torch::matmul(x, x_proj->weight.t());
  const torch::Tensor dt_low = x_dbl.narrow(-1, 0, dt_rank_);
  const torch::Tensor B = x_dbl.narrow(-1, dt_rank_, d_state_);
  const torch::Tensor C = x_dbl.narrow(-1, dt_rank_ + d_state_, d_state_);
  const torch::Tensor delta = torch::matmul(dt_low, dt_proj->weight.t());
  const torch::Tensor A = -torch::exp(A_log);
  const torch::Tensor y =
      SelectiveScan(x, delta, dt_proj->bias, A, B, C, D, z, reverse,
                    /*delta_softplus=*/true);
  return torch::matmul(y, out_proj->weight.t());
}

// ---- HarmambaBlock ----------------------------------------------------------

HarmambaBlockImpl::HarmambaBlockImpl(int64_t d_model, int64_t d_state,
                                     int64_t d_conv, int64_t expand,
                                     double drop_path)
    : drop_path_(drop_path) {
  mixer =
      register_module("mixer", MambaMixer(d_model, d_state, d_conv, expand));
  norm = register_module(
      "norm",
      torch::nn::LayerNorm(torch::nn::LayerNormOptions({d_model}).eps(1e-5)));
}

std::pair<torch::Tensor, torch::Tensor> HarmambaBlockImpl::forward(
    const torch::Tensor& h, const torch::Tensor& r, ForwardPath path,
    bool reverse) {
  const torch::Tensor r_out =
      r.defined() ? r + DropPath(h, drop_path_, is_training()) : h;
  torch::Tensor h_out = mixer->forward(norm->forward(r_out), path, reverse);
  return {std::move(h_out), r_out};
}

// ---- HarmambaModule ---------------------------------------------------------

HarmambaModule::HarmambaModule(const ModelConfig& config, double drop_path_rate)
    : config_(config), drop_path_rate_(drop_path_rate) {
  if (const absl::Status status = config.Validate(); !status.ok()) {
    TORCH_CHECK(false, "HarmambaModule: invalid config: ", status.message());
  }
  TORCH_CHECK(drop_path_rate >= 0.0 && drop_path_rate < 1.0,
              "drop_path_rate must be in [0, 1), got ", drop_path_rate);
  const int64_t d = config.d_model;
  // Own parameters first (as in the authors' state_dict).
  cls_token =
      register_parameter("cls_token", torch::randn({1, 1, d}).mul_(0.02));
  pos_embed = register_parameter(
      "pos_embed", torch::randn({1, config.num_tokens(), d}).mul_(0.02));
  patch_embed = register_module("patch_embed",
                                PatchEmbed(config.patch, config.stride, d));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int i = 0; i < config.depth; ++i) {
    layers->push_back(
        HarmambaBlock(d, config.d_state, config.d_conv, config.expand,
                      LayerDropPath(i, config.depth, drop_path_rate)));
  }
  norm_f = register_module(
      "norm_f",
      torch::nn::LayerNorm(torch::nn::LayerNormOptions({d}).eps(1e-5)));
  head = register_module("head", torch::nn::Linear(torch::nn::LinearOptions(
                                     d, config.num_classes())));
  input_mean = register_buffer("input_mean", ChannelTensor(config.mean));
  input_std = register_buffer("input_std", ChannelTensor(config.std));
}

torch::Tensor HarmambaModule::forward(const torch::Tensor& windows,
                                      ForwardPath path) {
  const int64_t t = config_.window_length, c = config_.num_channels();
  TORCH_CHECK(
      windows.dim() == 3 && windows.size(1) == t && windows.size(2) == c,
      "HarmambaModule: windows must have shape (N, ", t, ", ", c, "), got ",
      windows.sizes());
  TORCH_CHECK(windows.size(0) >= 1, "HarmambaModule: empty batch");
  const torch::Dtype dtype = pos_embed.scalar_type();
  if (path == ForwardPath::kFast) {
    TORCH_CHECK(dtype == torch::kFloat32 &&
                    (pos_embed.device().is_cpu() ||
                     (pos_embed.device().is_cuda() && FastPathRunsOnCuda())),
                "HarmambaModule: the fast path needs float32 parameters on "
                "the CPU",
                FastPathRunsOnCuda() ? " or a CUDA device" : "", ", got ",
                dtype, " on ", pos_embed.device());
  }
  const int64_t n = windows.size(0), d = config_.d_model;
  const torch::Tensor x =
      (windows.to(pos_embed.device(), dtype) - input_mean) / input_std;
  const torch::Tensor tokens = patch_embed->forward(x, path);
  torch::Tensor h =
      torch::cat({cls_token.expand({n, 1, d}), tokens}, 1) + pos_embed;
  torch::Tensor r;  // undefined before the first layer
  for (int k = 0; k < config_.num_pairs(); ++k) {
    HarmambaBlockImpl& fwd = *layers->ptr<HarmambaBlockImpl>(2 * k);
    HarmambaBlockImpl& bwd = *layers->ptr<HarmambaBlockImpl>(2 * k + 1);
    auto [h_f, r_f] = fwd.forward(h, r, path);
    if (path == ForwardPath::kReference) {
      auto [h_b, r_b] = bwd.forward(
          h.flip({1}), r.defined() ? r.flip({1}) : torch::Tensor(), path);
      h = h_f + h_b.flip({1});
      r = r_f + r_b.flip({1});
    } else {
      // The kernels run the backward layer in reverse time order, so its
      // outputs come back unflipped.
      auto [h_b, r_b] = bwd.forward(h, r, path, /*reverse=*/true);
      h = h_f + h_b;
      r = r_f + r_b;
    }
  }
  // Only the cls token's row is needed (LayerNorm is per token).
  const torch::Tensor cls =
      (r + DropPath(h, drop_path_rate_, is_training())).select(1, 0);
  return head->forward(norm_f->forward(cls));
}

absl::Status HarmambaModule::LoadWeights(const ModelWeights& weights) {
  const ModelConfig& w = weights.config;
  const ModelConfig& c = config_;
  const std::pair<const char*, std::pair<int, int>> fields[] = {
      {"window_length", {w.window_length, c.window_length}},
      {"channels (count)", {w.num_channels(), c.num_channels()}},
      {"classes (count)", {w.num_classes(), c.num_classes()}},
      {"patch", {w.patch, c.patch}},
      {"stride", {w.stride, c.stride}},
      {"d_model", {w.d_model, c.d_model}},
      {"depth", {w.depth, c.depth}},
      {"d_state", {w.d_state, c.d_state}},
      {"d_conv", {w.d_conv, c.d_conv}},
      {"expand", {w.expand, c.expand}},
  };
  for (const auto& [name, values] : fields) {
    if (values.first != values.second) {
      return absl::InvalidArgumentError(
          absl::StrCat("weights config ", name, " is ", values.first,
                       ", this module expects ", values.second));
    }
  }
  if (const absl::Status status = w.Validate(); !status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("weights config: ", status.message()));
  }
  auto params = named_parameters(/*recurse=*/true);
  for (const auto& item : params) {
    auto it = weights.tensors.find(item.key());
    if (it == weights.tensors.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("weights lack tensor '", item.key(), "'"));
    }
    const std::vector<int64_t> expected = item.value().sizes().vec();
    if (it->second.shape != expected) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", item.key(), "' has shape ", ShapeString(it->second.shape),
          ", expected ", ShapeString(expected)));
    }
    if (static_cast<int64_t>(it->second.data.size()) != item.value().numel()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", item.key(), "' holds ", it->second.data.size(),
          " values, its shape needs ", item.value().numel()));
    }
  }
  for (const auto& [name, tensor] : weights.tensors) {
    if (params.find(name) == nullptr &&
        !absl::StartsWith(name, "revin_layer.")) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected tensor '", name, "'"));
    }
  }
  torch::NoGradGuard no_grad;
  for (auto& item : params) {
    const HostTensor& src = weights.tensors.find(item.key())->second;
    item.value().copy_(torch::from_blob(const_cast<float*>(src.data.data()),
                                        src.shape, torch::kFloat32));
  }
  config_ = w;
  input_mean.copy_(ChannelTensor(w.mean));
  input_std.copy_(ChannelTensor(w.std));
  return absl::OkStatus();
}

ModelWeights HarmambaModule::ExportWeights() const {
  ModelWeights out;
  out.config = config_;
  for (const auto& item : named_parameters(/*recurse=*/true)) {
    const torch::Tensor t =
        item.value().detach().to(torch::kCPU, torch::kFloat32).contiguous();
    HostTensor host;
    host.shape = t.sizes().vec();
    host.data.resize(t.numel());
    std::memcpy(host.data.data(), t.data_ptr<float>(),
                sizeof(float) * host.data.size());
    out.tensors.emplace(item.key(), std::move(host));
  }
  return out;
}

}  // namespace harmamba
