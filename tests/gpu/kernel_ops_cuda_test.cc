// The autograd adapters of model/torch/kernel_ops.h on their CUDA route
// (kernels/cuda behind SelectiveScanFn / CausalConv1dFn): outputs and the
// gradient of every input, in float32 on the device, against autograd of the
// plain-LibTorch reference ops in float64 on the CPU, on fresh random inputs;
// then the whole model's fast path on the device against its reference path
// in float64, logits and every parameter gradient.
//
// Built twice from this source: kernel_ops_cuda_test (label gpu) runs on a
// CUDA device and skips without one; kernel_ops_cuda_emulated_test (label
// unit) links the CPU emulation of the CUDA kernels (tests/gpu/emulation) and
// routes CPU tensors through the same adapter code, so the tensor-to-params
// translation, workspaces and gradient accumulation are checked on machines
// without a GPU.
#include "model/torch/kernel_ops_cuda.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "model/config.h"
#include "model/model_file.h"
#include "model/torch/harmamba_module.h"
#include "model/torch/kernel_ops.h"
#include "model/torch/torch_backend.h"

namespace harmamba {
namespace {

using torch::Tensor;

double RelativeError(const Tensor& out, const Tensor& ref) {
  const Tensor r = ref.to(torch::kCPU, torch::kFloat64);
  return ((out.to(torch::kCPU, torch::kFloat64) - r).norm() / r.norm())
      .item<double>();
}

// Where the CUDA route runs: the first CUDA device, or, in the emulated
// build, the CPU with the route hook on.
class CudaRouteTest : public ::testing::Test {
 protected:
  void SetUp() override {
#ifdef HARMAMBA_CUDA_EMULATION
    internal::RouteCpuTensorsToCudaKernelsForTesting(true);
#else
    if (!torch::cuda::is_available()) {
      GTEST_SKIP() << "no CUDA device visible to LibTorch: the CUDA route of "
                      "the autograd adapters was compiled but not run here";
    }
    device_ = torch::Device(torch::kCUDA, 0);
#endif
  }
  void TearDown() override {
#ifdef HARMAMBA_CUDA_EMULATION
    internal::RouteCpuTensorsToCudaKernelsForTesting(false);
#endif
  }

  torch::Device device_{torch::kCPU};
};

struct ScanShape {
  int64_t n, L, E, S;
};

TEST_F(CudaRouteTest, SelectiveScanMatchesFloat64ReferenceWithGradients) {
  ASSERT_TRUE(internal::CudaKernelsBuilt());
  torch::manual_seed(41);
  // Odd sizes, and the model's (73 tokens, d_inner 128, d_state 16).
  for (const ScanShape& s : {ScanShape{5, 7, 33, 16}, ScanShape{2, 19, 70, 5},
                             ScanShape{3, 73, 128, 16}}) {
    for (bool reverse : {false, true}) {
      for (bool optional : {false, true}) {
        const std::string where =
            absl::StrCat("n ", s.n, " L ", s.L, " E ", s.E, " S ", s.S,
                         " reverse ", reverse, " optional ", optional);
        // u and z as slices of one projection, B and C of another (strided,
        // as the model's x_proj output).
        const Tensor uz = torch::randn({s.n, s.L, 2 * s.E}, torch::kFloat64);
        const Tensor dbc =
            torch::randn({s.n, s.L, 3 + 2 * s.S}, torch::kFloat64);
        const Tensor delta = torch::randn({s.n, s.L, s.E}, torch::kFloat64);
        const Tensor bias = torch::randn({s.E}, torch::kFloat64) - 3;
        const Tensor A = -torch::rand({s.E, s.S}, torch::kFloat64) * s.S - 0.5;
        const Tensor D = torch::randn({s.E}, torch::kFloat64);
        const Tensor probe = torch::randn({s.n, s.L, s.E}, torch::kFloat64);
        auto run = [&](torch::Device device, torch::Dtype dtype, bool kernel) {
          std::vector<Tensor> leaves = {uz, dbc, delta, bias, A, D};
          for (Tensor& t : leaves) t = t.to(device, dtype).requires_grad_(true);
          const Tensor u = leaves[0].narrow(-1, 0, s.E);
          const Tensor z = optional ? leaves[0].narrow(-1, s.E, s.E) : Tensor();
          const Tensor B = leaves[1].narrow(-1, 3, s.S);
          const Tensor C = leaves[1].narrow(-1, 3 + s.S, s.S);
          const Tensor db = optional ? leaves[3] : Tensor();
          const Tensor d = optional ? leaves[5] : Tensor();
          const Tensor out =
              kernel ? SelectiveScan(u, leaves[2], db, leaves[4], B, C, d, z,
                                     reverse, true)
                     : SelectiveScanReferenceTorch(u, leaves[2], db, leaves[4],
                                                   B, C, d, z, reverse, true);
          (out * probe.to(device, dtype)).sum().backward();
          std::vector<Tensor> result = {out.detach()};
          for (const Tensor& t : leaves) {
            result.push_back(t.grad().defined() ? t.grad()
                                                : torch::zeros_like(t));
          }
          return result;
        };
        const auto fast = run(device_, torch::kFloat32, true);
        const auto ref = run(torch::kCPU, torch::kFloat64, false);
        EXPECT_EQ(fast[0].device(), device_);
        const char* names[] = {"out",   "duz", "dBC", "ddelta",
                               "dbias", "dA",  "dD"};
        for (size_t i = 0; i < fast.size(); ++i) {
          if (ref[i].norm().item<double>() == 0) {  // absent optional input
            EXPECT_EQ(fast[i].norm().item<double>(), 0.0) << names[i];
            continue;
          }
          EXPECT_LE(RelativeError(fast[i], ref[i]), 1e-5)
              << names[i] << ", " << where;
        }
      }
    }
  }
}

TEST_F(CudaRouteTest, CausalConv1dMatchesFloat64ReferenceWithGradients) {
  torch::manual_seed(42);
  for (int64_t width : {2, 4}) {
    for (bool reverse : {false, true}) {
      for (bool with_bias : {false, true}) {
        const int64_t n = 3, L = 73, E = 130;
        const std::string where = absl::StrCat("width ", width, " reverse ",
                                               reverse, " bias ", with_bias);
        const Tensor xz = torch::randn({n, L, 2 * E}, torch::kFloat64);
        const Tensor w = torch::randn({E, 1, width}, torch::kFloat64);
        const Tensor b = torch::randn({E}, torch::kFloat64);
        const Tensor probe = torch::randn({n, L, E}, torch::kFloat64);
        auto run = [&](torch::Device device, torch::Dtype dtype, bool kernel) {
          std::vector<Tensor> leaves = {xz, w, b};
          for (Tensor& t : leaves) t = t.to(device, dtype).requires_grad_(true);
          const Tensor x = leaves[0].narrow(-1, 0, E);
          const Tensor bias = with_bias ? leaves[2] : Tensor();
          const Tensor out = kernel ? CausalConv1d(x, leaves[1], bias, reverse,
                                                   /*silu=*/true)
                                    : CausalConv1dReferenceTorch(
                                          x, leaves[1], bias, reverse, true);
          (out * probe.to(device, dtype)).sum().backward();
          std::vector<Tensor> result = {out.detach()};
          for (const Tensor& t : leaves) {
            result.push_back(t.grad().defined() ? t.grad()
                                                : torch::zeros_like(t));
          }
          return result;
        };
        const auto fast = run(device_, torch::kFloat32, true);
        const auto ref = run(torch::kCPU, torch::kFloat64, false);
        ASSERT_EQ(fast[2].sizes(), w.sizes());
        EXPECT_EQ(fast[0].device(), device_);
        for (size_t i = 0; i < fast.size(); ++i) {
          if (!with_bias && i == 3) {
            EXPECT_EQ(fast[i].norm().item<double>(), 0.0);
            continue;
          }
          EXPECT_LE(RelativeError(fast[i], ref[i]), 1e-5) << i << ", " << where;
        }
      }
    }
  }
}

// The parameter gradients are accumulated by the kernels into zeroed
// buffers: a second backward through the same graph must give the same
// gradients again (no stale accumulation), bitwise (fixed-order reductions).
TEST_F(CudaRouteTest, RepeatedBackwardIsBitwiseReproducible) {
  torch::manual_seed(43);
  const int64_t n = 4, L = 21, E = 40, S = 16;
  auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(device_);
  const Tensor u = torch::randn({n, L, E}, opts).requires_grad_(true);
  const Tensor delta = torch::randn({n, L, E}, opts).requires_grad_(true);
  const Tensor bias = (torch::randn({E}, opts) - 3).requires_grad_(true);
  const Tensor A = (-torch::rand({E, S}, opts) * S - 0.5).requires_grad_(true);
  const Tensor B = torch::randn({n, L, S}, opts).requires_grad_(true);
  const Tensor C = torch::randn({n, L, S}, opts).requires_grad_(true);
  const Tensor D = torch::randn({E}, opts).requires_grad_(true);
  const Tensor probe = torch::randn({n, L, E}, opts);
  const Tensor out =
      SelectiveScan(u, delta, bias, A, B, C, D, Tensor(), false, true);
  const Tensor loss = (out * probe).sum();
  const std::vector<Tensor> inputs = {u, delta, bias, A, B, C, D};
  const auto first = torch::autograd::grad({loss}, inputs, {}, true);
  const auto second = torch::autograd::grad({loss}, inputs);
  for (size_t i = 0; i < inputs.size(); ++i) {
    EXPECT_TRUE(torch::equal(first[i], second[i])) << "input " << i;
  }
}

TEST_F(CudaRouteTest, AdaptersRefuseInputsOnAnotherDevice) {
#ifdef HARMAMBA_CUDA_EMULATION
  GTEST_SKIP() << "needs a second device";
#endif
  const Tensor x = torch::randn({2, 5, 8}, torch::Device(device_));
  const Tensor w_cpu = torch::randn({8, 1, 4});
  try {
    CausalConv1d(x, w_cpu, Tensor(), false, true);
    ADD_FAILURE() << "a CPU weight for a CUDA input was accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("causal conv1d weight must be on"),
              std::string::npos)
        << e.what();
  }
}

// The whole model: the fast path (our CUDA kernels with hand-written
// backward, LibTorch's GEMMs) on the device in float32 against the reference
// path (plain LibTorch ops, autograd) in float64 on the CPU.
TEST_F(CudaRouteTest, ModelFastPathOnDeviceMatchesFloat64Reference) {
  ModelConfig config;
  config.name = "test";
  config.window_length = 128;
  for (int i = 0; i < 9; ++i) {
    config.channels.push_back(absl::StrCat("ch", i));
    config.mean.push_back(0.1f * i);
    config.std.push_back(0.5f + 0.1f * i);
  }
  for (int i = 0; i < 6; ++i) config.classes.push_back(absl::StrCat("c", i));
  config.depth = 4;  // two bidirectional pairs keep the float64 run short
  const ModelWeights init = InitModel(config, /*seed=*/7);

  torch::manual_seed(44);
  const Tensor windows =
      torch::randn({6, config.window_length, config.num_channels()}) * 0.7 +
      0.2;
  const Tensor probe = torch::randn({6, config.num_classes()});
  auto run = [&](torch::Device device, torch::Dtype dtype, ForwardPath path) {
    auto module = std::make_shared<HarmambaModule>(config, /*drop_path=*/0.0);
    EXPECT_TRUE(module->LoadWeights(init).ok());
    {
      // Every parameter perturbed (seeded) so that no symmetry of the
      // initialisation hides a bug.
      torch::NoGradGuard no_grad;
      torch::manual_seed(45);
      for (auto& p : module->parameters()) p.add_(torch::randn_like(p) * 0.05);
    }
    module->to(device, dtype);
    const Tensor logits = module->forward(windows.to(device, dtype), path);
    (logits * probe.to(device, dtype)).sum().backward();
    std::vector<std::pair<std::string, Tensor>> result = {
        {"logits", logits.detach()}};
    for (const auto& item : module->named_parameters()) {
      result.emplace_back(item.key(), item.value().grad());
    }
    return result;
  };
  const auto fast = run(device_, torch::kFloat32, ForwardPath::kFast);
  const auto ref = run(torch::kCPU, torch::kFloat64, ForwardPath::kReference);
  ASSERT_EQ(fast.size(), ref.size());
  double worst = 0;
  for (size_t i = 0; i < fast.size(); ++i) {
    ASSERT_EQ(fast[i].first, ref[i].first);
    ASSERT_TRUE(fast[i].second.defined()) << fast[i].first;
    if (ref[i].second.norm().item<double>() == 0) {
      // The last forward-direction layer's A: only token 0 reaches the head,
      // and its state h_0 = dt B u has no decay term.
      EXPECT_EQ(fast[i].second.norm().item<double>(), 0.0) << fast[i].first;
      continue;
    }
    const double error = RelativeError(fast[i].second, ref[i].second);
    EXPECT_LE(error, 1e-4) << fast[i].first;
    worst = std::max(worst, error);
  }
  std::printf(
      "model fast path on %s vs float64 reference: largest relative "
      "error %.3g over logits and %zu parameter gradients\n",
      device_.str().c_str(), worst, fast.size() - 1);
}

}  // namespace
}  // namespace harmamba
