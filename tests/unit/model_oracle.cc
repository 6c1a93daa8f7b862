#include "tests/unit/model_oracle.h"

#include <cmath>
#include <optional>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"

namespace harmamba::testing {
namespace {

using Matrix = std::vector<std::vector<double>>;  // [rows][cols]

std::vector<double> Get(const ModelWeights& w, const std::string& name) {
  const auto& t = w.at(name).data;
  return std::vector<double>(t.begin(), t.end());
}

Matrix Flip(const Matrix& m) { return Matrix(m.rbegin(), m.rend()); }

Matrix Add(const Matrix& a, const Matrix& b) {
  Matrix out = a;
  for (size_t i = 0; i < a.size(); ++i) {
    for (size_t j = 0; j < a[i].size(); ++j) out[i][j] += b[i][j];
  }
  return out;
}

// x [L][in] times W^T where W is [out][in] row-major.
Matrix Linear(const Matrix& x, const std::vector<double>& w, size_t out) {
  Matrix y(x.size(), std::vector<double>(out, 0.0));
  const size_t in = x.empty() ? 0 : x[0].size();
  for (size_t t = 0; t < x.size(); ++t) {
    for (size_t o = 0; o < out; ++o) {
      double s = 0;
      for (size_t i = 0; i < in; ++i) s += w[o * in + i] * x[t][i];
      y[t][o] = s;
    }
  }
  return y;
}

Matrix LayerNorm(const Matrix& x, const std::vector<double>& g,
                 const std::vector<double>& b) {
  Matrix y = x;
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

double Silu(double v) { return v / (1.0 + std::exp(-v)); }

Matrix Mamba(const ModelWeights& w, int layer, const Matrix& u) {
  const ModelConfig& c = w.config;
  const size_t L = u.size(), E = c.d_inner(), N = c.d_state, R = c.dt_rank(),
               W = c.d_conv;
  const std::string p = absl::StrCat("layers.", layer, ".mixer.");
  const Matrix xz = Linear(u, Get(w, p + "in_proj.weight"), 2 * E);
  const auto conv_w = Get(w, p + "conv1d.weight");
  const auto conv_b = Get(w, p + "conv1d.bias");
  Matrix x(L, std::vector<double>(E));
  for (size_t t = 0; t < L; ++t) {
    for (size_t e = 0; e < E; ++e) {
      double acc = conv_b[e];
      for (size_t k = 0; k < W; ++k) {
        const long src = long(t) - long(W - 1) + long(k);
        if (src >= 0) acc += conv_w[e * W + k] * xz[src][e];
      }
      x[t][e] = Silu(acc);
    }
  }
  const Matrix dbc = Linear(x, Get(w, p + "x_proj.weight"), R + 2 * N);
  const auto dt_w = Get(w, p + "dt_proj.weight");
  const auto dt_b = Get(w, p + "dt_proj.bias");
  const auto a_log = Get(w, p + "A_log");
  const auto D = Get(w, p + "D");
  Matrix y(L, std::vector<double>(E));
  for (size_t e = 0; e < E; ++e) {
    std::vector<double> h(N, 0.0);
    for (size_t t = 0; t < L; ++t) {
      double dt = dt_b[e];
      for (size_t r = 0; r < R; ++r) dt += dt_w[e * R + r] * dbc[t][r];
      dt = std::log1p(std::exp(dt));
      double acc = D[e] * x[t][e];
      for (size_t n = 0; n < N; ++n) {
        const double A = -std::exp(a_log[e * N + n]);
        h[n] = std::exp(dt * A) * h[n] + dt * dbc[t][R + n] * x[t][e];
        acc += dbc[t][R + N + n] * h[n];
      }
      y[t][e] = acc * Silu(xz[t][E + e]);
    }
  }
  return Linear(y, Get(w, p + "out_proj.weight"), c.d_model);
}

// One Block: returns (h_out, r_out).
std::pair<Matrix, Matrix> Block(const ModelWeights& w, int layer,
                                const Matrix& h,
                                const std::optional<Matrix>& r) {
  const Matrix r_out = r ? Add(*r, h) : h;
  const std::string p = absl::StrCat("layers.", layer, ".norm.");
  const Matrix normed =
      LayerNorm(r_out, Get(w, p + "weight"), Get(w, p + "bias"));
  return {Mamba(w, layer, normed), r_out};
}

}  // namespace

ModelConfig SmallConfig(int window_length, int channels, int d_model, int depth,
                        int classes) {
  ModelConfig c;
  c.name = "test";
  c.window_length = window_length;
  c.d_model = d_model;
  c.depth = depth;
  for (int i = 0; i < channels; ++i) {
    c.channels.push_back(absl::StrCat("c", i));
    c.mean.push_back(0.1f * i);
    c.std.push_back(0.5f + 0.25f * i);
  }
  for (int k = 0; k < classes; ++k) c.classes.push_back(absl::StrCat("k", k));
  return c;
}

ModelWeights RandomWeights(const ModelConfig& config, uint64_t seed) {
  ModelWeights w;
  w.config = config;
  std::mt19937_64 rng(seed);
  for (const auto& [name, shape] : ExpectedTensors(config)) {
    HostTensor t;
    t.shape = shape;
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    t.data.resize(n);
    const int64_t fan_in = shape.size() > 1 ? n / shape[0] : 1;
    std::normal_distribution<float> normal(0.f, 1.f);
    std::uniform_real_distribution<float> uniform(0.f, 1.f);
    for (int64_t i = 0; i < n; ++i) {
      float v = normal(rng);
      if (name.find("A_log") != std::string::npos) {
        v = std::log(float(i % config.d_state + 1)) + 0.1f * v;
      } else if (name.find("norm") != std::string::npos &&
                 name.find("weight") != std::string::npos) {
        v = 1.f + 0.2f * v;
      } else if (name.find("dt_proj.bias") != std::string::npos) {
        v = -3.f + 0.5f * v;  // softplus -> dt around 0.05
      } else if (name.find("mixer.D") != std::string::npos) {
        v = 1.f + 0.2f * v;
      } else if (shape.size() > 1 && name.find("embed") == std::string::npos &&
                 name != "cls_token") {
        v /= std::sqrt(float(fan_in));
      } else {
        v *= 0.1f;
      }
      t.data[i] = v;
    }
    w.tensors[name] = std::move(t);
  }
  return w;
}

std::vector<float> RandomWindows(const ModelConfig& config, int64_t n,
                                 uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  const int C = config.num_channels();
  std::vector<float> x(n * config.window_length * C);
  for (size_t i = 0; i < x.size(); ++i) {
    const int c = i % C;
    x[i] = config.mean[c] + config.std[c] * normal(rng);
  }
  return x;
}

std::vector<double> OracleForward(const ModelWeights& w, const float* window) {
  const ModelConfig& c = w.config;
  const int T = c.window_length, C = c.num_channels(), D = c.d_model,
            P = c.patch, S = c.stride;
  std::vector<std::vector<double>> x(T, std::vector<double>(C));
  for (int t = 0; t < T; ++t) {
    for (int ch = 0; ch < C; ++ch) {
      x[t][ch] = (double(window[t * C + ch]) - c.mean[ch]) / c.std[ch];
    }
  }
  const auto pe_w = Get(w, "patch_embed.proj.weight");  // [D][1][P][1]
  const auto pe_b = Get(w, "patch_embed.proj.bias");
  const auto cls = Get(w, "cls_token");
  const auto pos = Get(w, "pos_embed");
  Matrix h;
  h.push_back(cls);
  for (int p = 0; p < c.num_patches(); ++p) {
    for (int ch = 0; ch < C; ++ch) {
      std::vector<double> tok(D);
      for (int j = 0; j < D; ++j) {
        double s = pe_b[j];
        for (int i = 0; i < P; ++i) s += pe_w[j * P + i] * x[p * S + i][ch];
        tok[j] = s;
      }
      h.push_back(tok);
    }
  }
  for (size_t t = 0; t < h.size(); ++t) {
    for (int j = 0; j < D; ++j) h[t][j] += pos[t * D + j];
  }
  std::optional<Matrix> r;
  for (int k = 0; k < c.num_pairs(); ++k) {
    auto [h_f, r_f] = Block(w, 2 * k, h, r);
    std::optional<Matrix> r_flipped;
    if (r) r_flipped = Flip(*r);
    auto [h_b, r_b] = Block(w, 2 * k + 1, Flip(h), r_flipped);
    h = Add(h_f, Flip(h_b));
    r = Add(r_f, Flip(r_b));
  }
  const Matrix out =
      LayerNorm(Add(*r, h), Get(w, "norm_f.weight"), Get(w, "norm_f.bias"));
  const auto head_w = Get(w, "head.weight");
  const auto head_b = Get(w, "head.bias");
  std::vector<double> logits(c.num_classes());
  for (int k = 0; k < c.num_classes(); ++k) {
    double s = head_b[k];
    for (int j = 0; j < D; ++j) s += head_w[k * D + j] * out[0][j];
    logits[k] = s;
  }
  return logits;
}

double RelativeError(const std::vector<float>& a,
                     const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / den);
}

}  // namespace harmamba::testing
