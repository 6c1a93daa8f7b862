// InitModel: the initialisation of design.md §1 "Init", i.e. what the
// authors' PyTorch code (Vim / mamba_simple + timm) does, re-implemented
// without LibTorch.
//
// Choices where "what PyTorch does" is ambiguous:
// - trunc-normal std 0.02 (pos_embed, cls_token, head.weight) follows timm's
//   trunc_normal_: Normal(0, 0.02) cut at the *absolute* bounds ±2, i.e. in
//   effect untruncated (±100 std).
// - lecun-normal (patch_embed.proj.weight) follows current timm
//   (variance_scaling_ -> trunc_normal_tf_): a standard normal cut at ±2 std,
//   scaled by sqrt(1 / fan_in) / 0.87962566103423978 (the std of that cut
//   normal), so the variance is exactly 1 / fan_in and |w| <= 2.27 / sqrt(P).
//   timm <= 0.5 cut at ±2 absolute instead, which left the std 1/0.88 too
//   large.
// - Values differ from PyTorch's for the same seed (different generator);
//   only the distributions match.
//
// Random numbers: one std::mt19937_64 stream (its output is fixed by the
// standard), consumed tensor by tensor in ExpectedTensors order, through our
// own transforms (std's distributions are implementation-defined).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "absl/strings/match.h"
#include "model/model_file.h"

namespace harmamba {
namespace {

class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}

  // Uniform in [0, 1), 53 random bits.
  double Uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

  double Uniform(double low, double high) {
    return low + (high - low) * Uniform();
  }

  // Standard normal, Marsaglia's polar method (needs only log and sqrt).
  double Normal() {
    double u, v, s;
    do {
      u = 2.0 * Uniform() - 1.0;
      v = 2.0 * Uniform() - 1.0;
      s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    return u * std::sqrt(-2.0 * std::log(s) / s);
  }

  // Normal(0, std) conditioned on [low, high], by rejection (the bounds used
  // here keep >= 95% of the mass, so this terminates quickly).
  double TruncatedNormal(double std, double low, double high) {
    for (;;) {
      const double x = std * Normal();
      if (x >= low && x <= high) return x;
    }
  }

 private:
  std::mt19937_64 engine_;
};

template <typename Draw>
void Fill(HostTensor& t, Draw draw) {
  for (float& v : t.data) v = static_cast<float>(draw());
}

void FillConstant(HostTensor& t, float value) {
  std::fill(t.data.begin(), t.data.end(), value);
}

// fan_in of a Linear (out, in) or Conv (out, in/groups, k...) weight.
double FanIn(const HostTensor& weight) {
  return static_cast<double>(weight.numel() / weight.shape[0]);
}

// PyTorch's default Linear/Conv weight init, kaiming_uniform_(a=sqrt(5)):
// U(±1/sqrt(fan_in)), scaled by `scale`.
void FillKaimingUniformA5(HostTensor& t, Rng& rng, double scale = 1.0) {
  const double bound = 1.0 / std::sqrt(FanIn(t));
  Fill(t, [&] { return scale * rng.Uniform(-bound, bound); });
}

void FillTruncNormal002(HostTensor& t, Rng& rng) {
  Fill(t, [&] { return rng.TruncatedNormal(0.02, -2.0, 2.0); });
}

void FillLecunNormal(HostTensor& t, Rng& rng) {
  constexpr double kStdOfNormalCutAt2 = 0.87962566103423978;
  const double scale = std::sqrt(1.0 / FanIn(t)) / kStdOfNormalCutAt2;
  Fill(t, [&] { return scale * rng.TruncatedNormal(1.0, -2.0, 2.0); });
}

// Mamba's dt_proj.bias: softplus(bias) = dt ~ logU(1e-3, 1e-1), >= 1e-4.
void FillDtBias(HostTensor& t, Rng& rng) {
  constexpr double kDtMin = 1e-3, kDtMax = 1e-1, kDtFloor = 1e-4;
  Fill(t, [&] {
    const double dt = std::max(
        kDtFloor, std::exp(rng.Uniform(std::log(kDtMin), std::log(kDtMax))));
    return dt + std::log(-std::expm1(-dt));  // inverse softplus
  });
}

// S4D-real: A = -(1..N) in every row, stored as log.
void FillALog(HostTensor& t) {
  const int64_t n = t.shape[1];
  for (int64_t i = 0; i < t.numel(); ++i) {
    t.data[i] = static_cast<float>(std::log(static_cast<double>(i % n + 1)));
  }
}

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "InitModel: %s\n", message.c_str());
  std::abort();
}

void InitTensor(const std::string& name, const ModelConfig& c, Rng& rng,
                HostTensor& t) {
  if (name == "cls_token" || name == "pos_embed" || name == "head.weight") {
    return FillTruncNormal002(t, rng);
  }
  if (name == "patch_embed.proj.weight") return FillLecunNormal(t, rng);
  if (name == "patch_embed.proj.bias" || name == "head.bias" ||
      name == "norm_f.bias") {
    return FillConstant(t, 0.0f);
  }
  if (name == "norm_f.weight") return FillConstant(t, 1.0f);

  // Per-layer tensors: "layers.<i>.<local>".
  if (!absl::StartsWith(name, "layers.")) Die("unknown tensor " + name);
  const size_t dot = name.find('.', sizeof("layers.") - 1);
  const std::string local = name.substr(dot + 1);
  if (local == "norm.weight" || local == "mixer.D") return FillConstant(t, 1);
  if (local == "norm.bias") return FillConstant(t, 0.0f);
  if (local == "mixer.A_log") return FillALog(t);
  if (local == "mixer.in_proj.weight" || local == "mixer.x_proj.weight" ||
      local == "mixer.conv1d.weight") {
    return FillKaimingUniformA5(t, rng);
  }
  if (local == "mixer.conv1d.bias") {
    // PyTorch's Conv bias: U(±1/sqrt(fan_in)), fan_in = d_conv (depthwise).
    const double bound = 1.0 / std::sqrt(static_cast<double>(c.d_conv));
    return Fill(t, [&] { return rng.Uniform(-bound, bound); });
  }
  if (local == "mixer.out_proj.weight") {
    // Vim's prenorm-residual rescaling: / sqrt(n_residuals_per_layer * depth).
    return FillKaimingUniformA5(t, rng, 1.0 / std::sqrt(c.depth));
  }
  if (local == "mixer.dt_proj.weight") {
    const double bound = 1.0 / std::sqrt(static_cast<double>(c.dt_rank()));
    return Fill(t, [&] { return rng.Uniform(-bound, bound); });
  }
  if (local == "mixer.dt_proj.bias") return FillDtBias(t, rng);
  Die("unknown tensor " + name);
}

}  // namespace

ModelWeights InitModel(const ModelConfig& config, uint64_t seed) {
  const absl::Status valid = config.Validate();
  if (!valid.ok()) Die(std::string(valid.message()));
  Rng rng(seed);
  ModelWeights weights;
  weights.config = config;
  for (const auto& [name, shape] : ExpectedTensors(config)) {
    HostTensor tensor;
    tensor.shape = shape;
    tensor.data.resize(tensor.numel());
    InitTensor(name, config, rng, tensor);
    weights.tensors.emplace(name, std::move(tensor));
  }
  return weights;
}

}  // namespace harmamba
