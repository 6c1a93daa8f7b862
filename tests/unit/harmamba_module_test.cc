// HarmambaModule: parameter names, weights IO, the reference path against a
// plain float64 computation, the fast path (our kernels + autograd adapters)
// against the reference path in outputs and gradients, drop-path, and the
// torch backend.
#include "model/torch/harmamba_module.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "model/config.h"
#include "model/cpu_engine.h"
#include "model/model_file.h"
#include "model/torch/kernel_ops.h"
#include "model/torch/torch_backend.h"

namespace harmamba {
namespace {

using torch::Tensor;

// ---- Helpers
// ------------------------------------------------------------------

ModelConfig MakeConfig(int window_length, int channels, int classes) {
  ModelConfig c;
  c.name = "test";
  c.window_length = window_length;
  for (int i = 0; i < channels; ++i)
    c.channels.push_back(absl::StrCat("ch", i));
  for (int i = 0; i < classes; ++i) c.classes.push_back(absl::StrCat("cls", i));
  for (int i = 0; i < channels; ++i) {
    c.mean.push_back(0.3f * (i - 1));
    c.std.push_back(0.5f + 0.25f * i);
  }
  return c;
}

// The UCI-HAR shape: 128 x 9 windows, 6 classes, default architecture.
ModelConfig UciConfig() { return MakeConfig(128, 9, 6); }

// A tiny config with patch != stride so that patching is exercised: 10 x 2
// windows, P 4, S 3 -> 3 patches per channel, 7 tokens.
ModelConfig TinyConfig() {
  ModelConfig c = MakeConfig(10, 2, 3);
  c.patch = 4;
  c.stride = 3;
  c.d_model = 8;
  c.depth = 4;
  c.d_state = 4;
  return c;
}

// Random weights at the magnitudes a trained model has (A = -(1..N) with
// jitter, dt = softplus(bias) in [1e-3, 0.1], LayerNorm gains near 1), but
// every tensor random so that no symmetry hides a bug.
ModelWeights RandomWeights(const ModelConfig& config, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_real_distribution<float> log_dt(std::log(1e-3f), std::log(0.1f));
  ModelWeights w;
  w.config = config;
  for (const auto& [name, shape] : ExpectedTensors(config)) {
    HostTensor t;
    t.shape = shape;
    int64_t numel = 1;
    for (int64_t s : shape) numel *= s;
    t.data.resize(numel);
    const int64_t fan_in = shape.size() >= 2 ? numel / shape[0] : 1;
    const int64_t last = shape.back();
    for (int64_t i = 0; i < numel; ++i) {
      float v;
      if (absl::EndsWith(name, "A_log")) {
        v = std::log(static_cast<float>(i % last + 1)) + 0.1f * normal(rng);
      } else if (absl::EndsWith(name, "mixer.D")) {
        v = 1.f + 0.2f * normal(rng);
      } else if (absl::EndsWith(name, "dt_proj.bias")) {
        const float dt = std::exp(log_dt(rng));
        v = dt + std::log(-std::expm1(-dt));  // inverse softplus
      } else if (absl::EndsWith(name, "norm.weight") ||
                 absl::EndsWith(name, "norm_f.weight")) {
        v = 1.f + 0.2f * normal(rng);
      } else if (absl::EndsWith(name, "bias")) {
        v = 0.2f * normal(rng);
      } else if (name == "cls_token" || name == "pos_embed") {
        v = 0.5f * normal(rng);
      } else {
        v = normal(rng) / std::sqrt(static_cast<float>(fan_in));
      }
      t.data[i] = v;
    }
    w.tensors.emplace(name, std::move(t));
  }
  return w;
}

std::shared_ptr<HarmambaModule> MakeModule(const ModelWeights& weights,
                                           double drop_path_rate = 0.1) {
  auto module =
      std::make_shared<HarmambaModule>(weights.config, drop_path_rate);
  const absl::Status status = module->LoadWeights(weights);
  EXPECT_TRUE(status.ok()) << status;
  module->eval();
  return module;
}

// Raw windows: per-channel offsets and scales so that standardisation
// matters.
Tensor RandomWindows(const ModelConfig& c, int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  const Tensor mean = torch::tensor(c.mean).view({1, 1, -1});
  const Tensor std = torch::tensor(c.std).view({1, 1, -1});
  return torch::randn({n, c.window_length, c.num_channels()}) * std + mean;
}

double RelativeError(const Tensor& out, const Tensor& ref) {
  const Tensor r = ref.to(torch::kFloat64);
  return ((out.to(torch::kFloat64) - r).norm() / r.norm()).item<double>();
}

// ---- Names, shapes, weights IO
// ---------------------------------------------------

TEST(HarmambaModuleTest, ParameterNamesAndShapesAreTheStateDictOnes) {
  for (const ModelConfig& config : {UciConfig(), TinyConfig()}) {
    HarmambaModule module(config);
    std::map<std::string, std::vector<int64_t>> actual, expected;
    for (const auto& item : module.named_parameters()) {
      actual[item.key()] = item.value().sizes().vec();
    }
    for (const auto& [name, shape] : ExpectedTensors(config)) {
      expected[name] = shape;
    }
    EXPECT_EQ(actual, expected);
    EXPECT_EQ(module.named_parameters().size(), ExpectedTensors(config).size());
  }
  // Spot checks of the naming scheme itself.
  HarmambaModule module(UciConfig());
  const auto params = module.named_parameters();
  EXPECT_NE(params.find("patch_embed.proj.weight"), nullptr);
  EXPECT_NE(params.find("layers.3.mixer.A_log"), nullptr);
  EXPECT_NE(params.find("layers.11.mixer.conv1d.weight"), nullptr);
  EXPECT_NE(params.find("norm_f.weight"), nullptr);
  EXPECT_NE(params.find("head.bias"), nullptr);
  EXPECT_EQ(params.find("input_mean"), nullptr);  // a buffer
}

TEST(HarmambaModuleTest, RejectsInvalidConfig) {
  ModelConfig odd_depth = TinyConfig();
  odd_depth.depth = 3;
  EXPECT_THROW(HarmambaModule{odd_depth}, c10::Error);
  ModelConfig no_classes = TinyConfig();
  no_classes.classes.clear();
  EXPECT_THROW(HarmambaModule{no_classes}, c10::Error);
  ModelConfig short_window = TinyConfig();
  short_window.window_length = 3;
  EXPECT_THROW(HarmambaModule{short_window}, c10::Error);
}

TEST(HarmambaModuleTest, LoadExportRoundTrip) {
  const ModelWeights weights = RandomWeights(TinyConfig(), 1);
  HarmambaModule module(weights.config);
  ASSERT_TRUE(module.LoadWeights(weights).ok());
  const ModelWeights exported = module.ExportWeights();
  ASSERT_EQ(exported.tensors.size(), weights.tensors.size());
  for (const auto& [name, tensor] : weights.tensors) {
    auto it = exported.tensors.find(name);
    ASSERT_NE(it, exported.tensors.end()) << name;
    EXPECT_EQ(it->second.shape, tensor.shape) << name;
    EXPECT_EQ(it->second.data, tensor.data) << name;
  }
  EXPECT_EQ(exported.config.mean, weights.config.mean);
  EXPECT_EQ(exported.config.std, weights.config.std);
  EXPECT_EQ(exported.config.classes, weights.config.classes);
  // The buffers follow the config.
  EXPECT_TRUE(
      torch::equal(module.input_std, torch::tensor(weights.config.std)));
}

TEST(HarmambaModuleTest, LoadWeightsRefusesBadWeightsAndChangesNothing) {
  const ModelWeights good = RandomWeights(TinyConfig(), 2);
  HarmambaModule module(good.config);
  ASSERT_TRUE(module.LoadWeights(good).ok());
  const Tensor before = module.head->weight.clone();

  ModelWeights other = RandomWeights(TinyConfig(), 3);
  other.tensors["layers.1.mixer.D"].shape = {3, 7};
  absl::Status s = module.LoadWeights(other);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "layers.1.mixer.D")) << s;

  other = RandomWeights(TinyConfig(), 3);
  other.tensors.erase("norm_f.bias");
  s = module.LoadWeights(other);
  EXPECT_TRUE(absl::StrContains(s.message(), "norm_f.bias")) << s;

  other = RandomWeights(TinyConfig(), 3);
  other.tensors["layers.9.mixer.D"] = other.tensors["layers.1.mixer.D"];
  s = module.LoadWeights(other);
  EXPECT_TRUE(absl::StrContains(s.message(), "unexpected tensor 'layers.9"))
      << s;

  other = RandomWeights(TinyConfig(), 3);
  other.config.d_state = 8;
  s = module.LoadWeights(other);
  EXPECT_TRUE(absl::StrContains(s.message(), "d_state")) << s;

  EXPECT_TRUE(torch::equal(module.head->weight, before));

  // The authors' RevIN parameters are accepted and ignored.
  other = RandomWeights(TinyConfig(), 3);
  other.tensors["revin_layer.affine_weight"] = {{2}, {1.f, 1.f}};
  EXPECT_TRUE(module.LoadWeights(other).ok());
}

// ---- Reference path against a plain float64 computation
// ----------------------

// HARMamba written out with loops over std::vector<double>, flips
// materialised explicitly, straight from design.md §1.
class PlainHarmamba {
 public:
  using Mat = std::vector<std::vector<double>>;  // [token][feature]

  explicit PlainHarmamba(const ModelWeights& w) : c_(w.config) {
    for (const auto& [name, t] : w.tensors) {
      p_[name] = std::vector<double>(t.data.begin(), t.data.end());
    }
  }

  // window: [T][C] raw values -> logits [K].
  std::vector<double> Forward(const Mat& window) const {
    const int C = c_.num_channels(), D = c_.d_model, P = c_.patch,
              S = c_.stride, Np = c_.num_patches();
    Mat x = window;
    for (auto& row : x) {
      for (int ch = 0; ch < C; ++ch)
        row[ch] = (row[ch] - c_.mean[ch]) / c_.std[ch];
    }
    const auto& pw = p_.at("patch_embed.proj.weight");  // (D,1,P,1)
    const auto& pb = p_.at("patch_embed.proj.bias");
    Mat h(1 + Np * C, std::vector<double>(D));
    for (int d = 0; d < D; ++d) h[0][d] = p_.at("cls_token")[d];
    for (int p = 0; p < Np; ++p) {
      for (int ch = 0; ch < C; ++ch) {
        for (int d = 0; d < D; ++d) {
          double s = pb[d];
          for (int k = 0; k < P; ++k) s += pw[d * P + k] * x[p * S + k][ch];
          h[1 + p * C + ch][d] = s;
        }
      }
    }
    const auto& pos = p_.at("pos_embed");
    for (size_t t = 0; t < h.size(); ++t) {
      for (int d = 0; d < D; ++d) h[t][d] += pos[t * D + d];
    }
    Mat r;  // empty = none
    for (int k = 0; k < c_.depth / 2; ++k) {
      auto [h_f, r_f] = Block(2 * k, h, r);
      auto [h_b, r_b] = Block(2 * k + 1, Flip(h), r.empty() ? r : Flip(r));
      h = Add(h_f, Flip(h_b));
      r = Add(r_f, Flip(r_b));
    }
    const Mat out = LayerNorm(Add(r, h), "norm_f.");
    return Linear({out[0]}, "head.weight", "head.bias")[0];
  }

 private:
  static Mat Flip(const Mat& m) { return Mat(m.rbegin(), m.rend()); }
  static Mat Add(const Mat& a, const Mat& b) {
    Mat out = a;
    for (size_t i = 0; i < a.size(); ++i) {
      for (size_t j = 0; j < a[i].size(); ++j) out[i][j] += b[i][j];
    }
    return out;
  }
  static double Silu(double v) { return v / (1 + std::exp(-v)); }
  static double Softplus(double v) { return std::log1p(std::exp(v)); }

  Mat Linear(const Mat& x, const std::string& weight,
             const std::string& bias = "") const {
    const auto& w = p_.at(weight);
    const size_t in = x[0].size(), out = w.size() / in;
    Mat y(x.size(), std::vector<double>(out));
    for (size_t t = 0; t < x.size(); ++t) {
      for (size_t o = 0; o < out; ++o) {
        double s = bias.empty() ? 0.0 : p_.at(bias)[o];
        for (size_t i = 0; i < in; ++i) s += w[o * in + i] * x[t][i];
        y[t][o] = s;
      }
    }
    return y;
  }

  Mat LayerNorm(const Mat& x, const std::string& prefix) const {
    const auto& g = p_.at(prefix + "weight");
    const auto& b = p_.at(prefix + "bias");
    Mat y = x;
    for (auto& row : y) {
      double mean = 0, var = 0;
      for (double v : row) mean += v;
      mean /= row.size();
      for (double v : row) var += (v - mean) * (v - mean);
      var /= row.size();
      for (size_t j = 0; j < row.size(); ++j) {
        row[j] = (row[j] - mean) / std::sqrt(var + 1e-5) * g[j] + b[j];
      }
    }
    return y;
  }

  std::pair<Mat, Mat> Block(int i, const Mat& h, const Mat& r) const {
    const std::string pre = absl::StrCat("layers.", i, ".");
    const Mat r_out = r.empty() ? h : Add(r, h);
    return {Mixer(LayerNorm(r_out, pre + "norm."), pre + "mixer."), r_out};
  }

  Mat Mixer(const Mat& u, const std::string& pre) const {
    const int L = static_cast<int>(u.size()), E = c_.d_inner(), N = c_.d_state,
              R = c_.dt_rank(), W = c_.d_conv;
    const Mat xz = Linear(u, pre + "in_proj.weight");
    const auto& cw = p_.at(pre + "conv1d.weight");
    const auto& cb = p_.at(pre + "conv1d.bias");
    Mat x(L, std::vector<double>(E)), z(L, std::vector<double>(E));
    for (int t = 0; t < L; ++t) {
      for (int e = 0; e < E; ++e) {
        double s = cb[e];
        for (int k = 0; k < W; ++k) {
          const int src = t - (W - 1) + k;
          if (src >= 0) s += cw[e * W + k] * xz[src][e];
        }
        x[t][e] = Silu(s);
        z[t][e] = xz[t][E + e];
      }
    }
    const Mat x_dbl = Linear(x, pre + "x_proj.weight");
    const auto& dtw = p_.at(pre + "dt_proj.weight");
    const auto& dtb = p_.at(pre + "dt_proj.bias");
    const auto& a_log = p_.at(pre + "A_log");
    const auto& skip = p_.at(pre + "D");
    Mat y(L, std::vector<double>(E));
    for (int e = 0; e < E; ++e) {
      std::vector<double> state(N, 0.0);
      for (int t = 0; t < L; ++t) {
        double raw = dtb[e];
        for (int q = 0; q < R; ++q) raw += dtw[e * R + q] * x_dbl[t][q];
        const double delta = Softplus(raw);
        double out = skip[e] * x[t][e];
        for (int n = 0; n < N; ++n) {
          const double A = -std::exp(a_log[e * N + n]);
          state[n] = std::exp(delta * A) * state[n] +
                     delta * x_dbl[t][R + n] * x[t][e];
          out += x_dbl[t][R + N + n] * state[n];
        }
        y[t][e] = out * Silu(z[t][e]);
      }
    }
    return Linear(y, pre + "out_proj.weight");
  }

  ModelConfig c_;
  std::map<std::string, std::vector<double>> p_;
};

TEST(HarmambaModuleTest, ReferencePathMatchesPlainFloat64Computation) {
  const ModelWeights weights = RandomWeights(TinyConfig(), 4);
  auto module = MakeModule(weights);
  module->to(torch::kFloat64);
  const Tensor windows =
      RandomWindows(weights.config, 3, 5).to(torch::kFloat64);
  const Tensor logits = module->forward(windows, ForwardPath::kReference);
  ASSERT_EQ(logits.sizes(), torch::IntArrayRef({3, 3}));
  ASSERT_EQ(logits.scalar_type(), torch::kFloat64);

  const PlainHarmamba plain(weights);
  const ModelConfig& c = weights.config;
  for (int64_t b = 0; b < 3; ++b) {
    PlainHarmamba::Mat window(c.window_length,
                              std::vector<double>(c.num_channels()));
    for (int t = 0; t < c.window_length; ++t) {
      for (int ch = 0; ch < c.num_channels(); ++ch) {
        window[t][ch] = windows[b][t][ch].item<double>();
      }
    }
    const std::vector<double> expected = plain.Forward(window);
    const Tensor ref = torch::tensor(expected, torch::kFloat64);
    EXPECT_LE(RelativeError(logits[b], ref), 1e-12) << "window " << b;
  }
}

// ---- Fast path against the reference path
// ------------------------------------

TEST(HarmambaModuleTest, FastPathMatchesReferenceUciConfig) {
  // InitModel's weights (design.md §1 "Init") and fully random ones.
  for (const ModelWeights& weights :
       {InitModel(UciConfig(), 6), RandomWeights(UciConfig(), 6)}) {
    auto module = MakeModule(weights);
    const Tensor windows = RandomWindows(weights.config, 4, 7);
    torch::NoGradGuard no_grad;
    const Tensor ref = module->forward(windows, ForwardPath::kReference);
    const Tensor fast = module->forward(windows, ForwardPath::kFast);
    ASSERT_EQ(fast.sizes(), torch::IntArrayRef({4, 6}));
    EXPECT_LE(RelativeError(fast, ref), 1e-4);
    // And both against the float64 reference.
    module->to(torch::kFloat64);
    const Tensor ref64 = module->forward(windows, ForwardPath::kReference);
    EXPECT_LE(RelativeError(fast, ref64), 1e-4);
    EXPECT_LE(RelativeError(ref, ref64), 1e-4);
  }
}

TEST(HarmambaModuleTest, FastPathGradientsMatchFloat64Reference) {
  const ModelWeights weights = RandomWeights(UciConfig(), 8);
  auto fast = MakeModule(weights);
  auto ref = MakeModule(weights);
  ref->to(torch::kFloat64);
  const Tensor windows = RandomWindows(weights.config, 3, 9);
  torch::manual_seed(10);
  const Tensor probe = torch::randn({3, 6}, torch::kFloat64);

  const Tensor x_fast = windows.clone().requires_grad_(true);
  (fast->forward(x_fast, ForwardPath::kFast) * probe.to(torch::kFloat32))
      .sum()
      .backward();
  const Tensor x_ref = windows.to(torch::kFloat64).requires_grad_(true);
  (ref->forward(x_ref, ForwardPath::kReference) * probe).sum().backward();

  EXPECT_LE(RelativeError(x_fast.grad(), x_ref.grad()), 1e-4) << "input";
  const auto ref_params = ref->named_parameters();
  int checked = 0;
  for (const auto& item : fast->named_parameters()) {
    const Tensor& g_fast = item.value().grad();
    const Tensor& g_ref = ref_params[item.key()].grad();
    ASSERT_TRUE(g_fast.defined()) << item.key();
    ASSERT_TRUE(g_ref.defined()) << item.key();
    if (g_ref.norm().item<double>() == 0.0) {
      // Only the cls token's output row matters after the last pair, and the
      // last forward layer's row 0 has seen no history: its A_log has no
      // influence.
      EXPECT_EQ(item.key(), "layers.10.mixer.A_log");
      EXPECT_EQ(g_fast.norm().item<double>(), 0.0) << item.key();
    } else {
      EXPECT_LE(RelativeError(g_fast, g_ref), 1e-4) << item.key();
    }
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(ExpectedTensors(weights.config).size()));
}

// ---- Drop-path
// ------------------------------------------------------------------

TEST(HarmambaModuleTest, LayerDropPathRatesFollowTheAuthors) {
  HarmambaModule module(UciConfig(), 0.1);
  const int depth = 12;
  for (int i = 0; i < depth; ++i) {
    const double expected = i == 0 ? 0.0 : 0.1 * (i - 1) / (depth - 1);
    EXPECT_NEAR(module.layers->ptr<HarmambaBlockImpl>(i)->drop_path(), expected,
                1e-12)
        << "layer " << i;
  }
  EXPECT_EQ(module.drop_path_rate(), 0.1);
}

TEST(HarmambaModuleTest, EvalModeHasNoDropPath) {
  const ModelWeights weights = RandomWeights(TinyConfig(), 11);
  auto with_drop = MakeModule(weights, 0.5);
  auto without = MakeModule(weights, 0.0);
  const Tensor windows = RandomWindows(weights.config, 8, 12);
  torch::NoGradGuard no_grad;
  for (ForwardPath path : {ForwardPath::kReference, ForwardPath::kFast}) {
    torch::manual_seed(1);
    const Tensor a = with_drop->forward(windows, path);
    torch::manual_seed(2);
    const Tensor b = with_drop->forward(windows, path);
    EXPECT_TRUE(torch::equal(a, b));
    EXPECT_TRUE(torch::equal(a, without->forward(windows, path)));
  }
}

TEST(HarmambaModuleTest, TrainingModeDropPathChangesOutputs) {
  const ModelWeights weights = RandomWeights(TinyConfig(), 13);
  auto module = MakeModule(weights, 0.5);
  auto no_drop = MakeModule(weights, 0.0);
  const Tensor windows = RandomWindows(weights.config, 16, 14);
  torch::NoGradGuard no_grad;
  const Tensor eval_out = module->forward(windows);
  module->train();
  no_drop->train();
  torch::manual_seed(3);
  const Tensor train_ref = module->forward(windows, ForwardPath::kReference);
  EXPECT_GT(RelativeError(train_ref, eval_out), 1e-3);
  // Same seed, same masks: the fast path agrees with the reference path in
  // training mode too.
  torch::manual_seed(3);
  const Tensor train_fast = module->forward(windows, ForwardPath::kFast);
  EXPECT_LE(RelativeError(train_fast, train_ref), 1e-4);
  torch::manual_seed(4);
  EXPECT_FALSE(torch::equal(module->forward(windows), train_ref));
  // Without drop-path, training mode computes the eval function.
  EXPECT_TRUE(torch::allclose(no_drop->forward(windows), eval_out, 0, 0));
}

TEST(DropPathTest, ZeroesWholeSamplesAndKeepsTheMean) {
  torch::manual_seed(15);
  const Tensor x = torch::ones({4000, 3, 2});
  const Tensor y = DropPath(x, 0.25, /*training=*/true);
  const Tensor per_sample = y.view({4000, -1});
  // Each sample is either all 0 or all 1/(1-p).
  EXPECT_TRUE(torch::equal(per_sample.amin(1), per_sample.amax(1)));
  const double kept =
      (per_sample.select(1, 0) > 0).to(torch::kFloat64).mean().item<double>();
  EXPECT_NEAR(kept, 0.75, 0.03);
  EXPECT_NEAR(y.mean().item<double>(), 1.0, 0.05);
  EXPECT_TRUE(torch::equal(DropPath(x, 0.25, /*training=*/false), x));
}

// ---- Kernel ops
// ---------------------------------------------------------------

// Runs `fn` with LibTorch's intra-op thread count set to `threads` (the
// adapters then split the batch into that many chunks), then restores 1.
// Only the adapters run threaded: on a loaded 2-core machine many small
// OpenMP regions can stall on a descheduled thread.
template <typename Fn>
auto RunWithThreads(int threads, Fn fn) {
  at::set_num_threads(threads);
  auto result = fn();
  at::set_num_threads(1);
  return result;
}
// ------------------------------------------------------------------

TEST(KernelOpsTest, SelectiveScanFnMatchesTorchReferenceWithGradients) {
  torch::manual_seed(16);
  for (bool reverse : {false, true}) {
    for (bool optional : {false, true}) {
      const int64_t n = 5, L = 7, E = 33, S = 16;
      // u and z as slices of one projection, B and C of another (strided).
      const Tensor uz = torch::randn({n, L, 2 * E}, torch::kFloat64);
      const Tensor dbc = torch::randn({n, L, 3 + 2 * S}, torch::kFloat64);
      const Tensor delta = torch::randn({n, L, E}, torch::kFloat64);
      const Tensor bias = torch::randn({E}, torch::kFloat64) - 3;
      const Tensor A = -torch::rand({E, S}, torch::kFloat64) * S - 0.5;
      const Tensor D = torch::randn({E}, torch::kFloat64);
      const Tensor probe = torch::randn({n, L, E}, torch::kFloat64);
      auto run = [&](torch::Dtype dtype, bool kernel) {
        std::vector<Tensor> leaves = {uz, dbc, delta, bias, A, D};
        for (Tensor& t : leaves) t = t.to(dtype).requires_grad_(true);
        const Tensor u = leaves[0].narrow(-1, 0, E);
        const Tensor z = optional ? leaves[0].narrow(-1, E, E) : Tensor();
        const Tensor B = leaves[1].narrow(-1, 3, S);
        const Tensor C = leaves[1].narrow(-1, 3 + S, S);
        const Tensor db = optional ? leaves[3] : Tensor();
        const Tensor d = optional ? leaves[5] : Tensor();
        const Tensor out =
            kernel ? SelectiveScan(u, leaves[2], db, leaves[4], B, C, d, z,
                                   reverse, true)
                   : SelectiveScanReferenceTorch(u, leaves[2], db, leaves[4], B,
                                                 C, d, z, reverse, true);
        (out * probe.to(dtype)).sum().backward();
        std::vector<Tensor> result = {out.detach()};
        for (const Tensor& t : leaves) {
          result.push_back(t.grad().defined() ? t.grad()
                                              : torch::zeros_like(t));
        }
        return result;
      };
      const auto fast =
          RunWithThreads(2, [&] { return run(torch::kFloat32, true); });
      const auto ref = run(torch::kFloat64, false);
      const char* names[] = {"out",   "duz", "dBC", "ddelta",
                             "dbias", "dA",  "dD"};
      for (size_t i = 0; i < fast.size(); ++i) {
        if (ref[i].norm().item<double>() == 0) {
          EXPECT_EQ(fast[i].norm().item<double>(), 0.0) << names[i];
          continue;
        }
        EXPECT_LE(RelativeError(fast[i], ref[i]), 1e-5)
            << names[i] << " reverse " << reverse << " optional " << optional;
      }
    }
  }
}

TEST(KernelOpsTest, CausalConv1dFnMatchesTorchReferenceWithGradients) {
  torch::manual_seed(17);
  for (bool reverse : {false, true}) {
    for (bool with_bias : {false, true}) {
      const int64_t n = 5, L = 9, E = 37, W = 4;
      const Tensor xz = torch::randn({n, L, 2 * E}, torch::kFloat64);
      const Tensor w = torch::randn({E, 1, W}, torch::kFloat64);
      const Tensor b = torch::randn({E}, torch::kFloat64);
      const Tensor probe = torch::randn({n, L, E}, torch::kFloat64);
      auto run = [&](torch::Dtype dtype, bool kernel) {
        std::vector<Tensor> leaves = {xz, w, b};
        for (Tensor& t : leaves) t = t.to(dtype).requires_grad_(true);
        const Tensor x = leaves[0].narrow(-1, 0, E);
        const Tensor bias = with_bias ? leaves[2] : Tensor();
        const Tensor out =
            kernel
                ? CausalConv1d(x, leaves[1], bias, reverse, true)
                : CausalConv1dReferenceTorch(x, leaves[1], bias, reverse, true);
        (out * probe.to(dtype)).sum().backward();
        std::vector<Tensor> result = {out.detach()};
        for (const Tensor& t : leaves) {
          result.push_back(t.grad().defined() ? t.grad()
                                              : torch::zeros_like(t));
        }
        return result;
      };
      const auto fast =
          RunWithThreads(2, [&] { return run(torch::kFloat32, true); });
      const auto ref = run(torch::kFloat64, false);
      ASSERT_EQ(fast[2].sizes(), w.sizes());
      for (size_t i = 0; i < fast.size(); ++i) {
        if (!with_bias && i == 3) {
          EXPECT_EQ(fast[i].norm().item<double>(), 0.0);
          continue;
        }
        EXPECT_LE(RelativeError(fast[i], ref[i]), 1e-5)
            << i << " reverse " << reverse << " bias " << with_bias;
      }
    }
  }
}

TEST(KernelOpsTest, AdaptersRefuseWrongDtypeAndShapes) {
  const Tensor x = torch::randn({2, 5, 8});
  const Tensor w = torch::randn({8, 1, 4});
  try {
    CausalConv1d(x.to(torch::kFloat64), w, Tensor(), false, true);
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_TRUE(absl::StrContains(e.what_without_backtrace(), "float32"))
        << e.what_without_backtrace();
  }
  try {
    CausalConv1d(x, torch::randn({7, 1, 4}), Tensor(), false, true);
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_TRUE(absl::StrContains(e.what_without_backtrace(), "weight"))
        << e.what_without_backtrace();
  }
  const Tensor A = -torch::rand({8, 4});
  const Tensor B = torch::randn({2, 5, 4});
  try {
    SelectiveScan(x, x, Tensor(), A, B, torch::randn({2, 5, 3}), Tensor(),
                  Tensor(), false, true);
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_TRUE(
        absl::StrContains(e.what_without_backtrace(), "selective scan C"))
        << e.what_without_backtrace();
  }
}

// ---- Torch backend
// ----------------------------------------------------------------

TEST(TorchBackendTest, RunsBothPathsOnRawWindows) {
  const ModelWeights weights = RandomWeights(UciConfig(), 18);
  auto module = MakeModule(weights);
  const Tensor windows = RandomWindows(weights.config, 5, 19).contiguous();
  torch::NoGradGuard no_grad;
  const Tensor expected = module->forward(windows, ForwardPath::kReference);
  for (ForwardPath path : {ForwardPath::kReference, ForwardPath::kFast}) {
    TorchBackendOptions options;
    options.path = path;
    auto backend = CreateTorchBackend(weights, options);
    ASSERT_TRUE(backend.ok()) << backend.status();
    EXPECT_EQ((*backend)->config().num_classes(), 6);
    EXPECT_TRUE(
        absl::StrContains((*backend)->description(), ForwardPathName(path)));
    std::vector<float> logits(5 * 6, NAN);
    ASSERT_TRUE(
        (*backend)->Run(windows.data_ptr<float>(), 5, logits.data()).ok());
    const Tensor got = torch::tensor(logits).view({5, 6});
    EXPECT_LE(RelativeError(got, expected), 1e-4) << ForwardPathName(path);
    EXPECT_EQ(
        (*backend)->Run(windows.data_ptr<float>(), 0, logits.data()).code(),
        absl::StatusCode::kInvalidArgument);
  }
}

// The LibTorch reference is the oracle of the fused CPU engine too.
TEST(TorchBackendTest, ReferenceAgreesWithFusedCpuEngine) {
  const ModelWeights weights = RandomWeights(UciConfig(), 23);
  const Tensor windows = RandomWindows(weights.config, 7, 24).contiguous();
  auto reference = CreateTorchBackend(weights);
  ASSERT_TRUE(reference.ok()) << reference.status();
  auto engine = CreateCpuEngine(weights);
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::vector<float> expected(7 * 6), got(7 * 6);
  ASSERT_TRUE(
      (*reference)->Run(windows.data_ptr<float>(), 7, expected.data()).ok());
  ASSERT_TRUE((*engine)->Run(windows.data_ptr<float>(), 7, got.data()).ok());
  EXPECT_LE(RelativeError(torch::tensor(got), torch::tensor(expected)), 1e-5);
}

TEST(TorchBackendTest, RefusesBadOptionsAndWeights) {
  const ModelWeights weights = RandomWeights(TinyConfig(), 20);
  TorchBackendOptions options;
  options.device = "toaster";
  EXPECT_EQ(CreateTorchBackend(weights, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.device = "cuda";
  options.path = ForwardPath::kFast;  // needs a GPU and the CUDA kernels
  EXPECT_EQ(CreateTorchBackend(weights, options).ok(),
            torch::cuda::is_available() && FastPathRunsOnCuda());
  ModelWeights broken = weights;
  broken.tensors.erase("head.weight");
  EXPECT_EQ(CreateTorchBackend(broken).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseForwardPath("fast").value(), ForwardPath::kFast);
  EXPECT_EQ(ParseForwardPath("reference").value(), ForwardPath::kReference);
  EXPECT_FALSE(ParseForwardPath("quick").ok());
}

// ---- Throughput (manual)
// ----------------------------------------------------------

// Run with --gtest_also_run_disabled_tests to print training-step
// (forward + backward + AdamW) windows/s of both paths at batch 64 (UCI
// config) with 1 and 2 LibTorch threads.
TEST(HarmambaModuleTest, DISABLED_TrainingStepThroughput) {
  const ModelWeights weights = RandomWeights(UciConfig(), 21);
  auto module = MakeModule(weights);
  module->train();
  torch::optim::AdamW optimizer(module->parameters(),
                                torch::optim::AdamWOptions(5e-4));
  const Tensor windows = RandomWindows(weights.config, 64, 22);
  const Tensor labels = torch::randint(0, 6, {64}, torch::kLong);
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    for (ForwardPath path : {ForwardPath::kFast, ForwardPath::kReference}) {
      const int steps = path == ForwardPath::kFast ? 10 : 2;
      auto step = [&] {
        optimizer.zero_grad();
        torch::nn::functional::cross_entropy(module->forward(windows, path),
                                             labels)
            .backward();
        optimizer.step();
      };
      step();  // warm-up
      const auto start = std::chrono::steady_clock::now();
      for (int i = 0; i < steps; ++i) step();
      const double seconds = std::chrono::duration<double>(
                                 std::chrono::steady_clock::now() - start)
                                 .count();
      std::printf("%s path, %d threads: %.1f windows/s (training step)\n",
                  ForwardPathName(path), threads, 64.0 * steps / seconds);
    }
  }
  at::set_num_threads(1);
}

}  // namespace
}  // namespace harmamba
