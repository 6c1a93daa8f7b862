// Model forward benchmarks on the CPU (UCI config: T 128, C 9, 73 tokens).
//
//   build/bench/model_bench --benchmark_counters_tabular=true
//
// Reports windows/s (the `windows_per_s` counter) for the fused engine at
// batch 1, 64 and 1024 with 2 threads, and the time of each kernel on one
// window tile, and the LibTorch reference path (eager ops) on the same
// weights with the same thread count as the baseline.
#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include "kernels/cpu/causal_conv1d.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/selective_scan.h"
#include "model/cpu_engine.h"
#include "model/model_file.h"
#include "model/torch/torch_backend.h"

namespace harmamba {
namespace {

ModelConfig UciConfig() {
  ModelConfig c;
  c.name = "bench";
  for (int i = 0; i < 9; ++i) {
    c.channels.push_back("c" + std::to_string(i));
    c.mean.push_back(0.f);
    c.std.push_back(1.f);
  }
  c.classes = {"a", "b", "c", "d", "e", "f"};
  return c;
}

std::vector<float> Windows(const ModelConfig& c, int64_t n) {
  std::vector<float> x(n * c.window_floats());
  uint32_t s = 12345;
  for (float& v : x) {
    s = s * 1664525u + 1013904223u;
    v = static_cast<float>(s >> 8) / 16777216.0f * 2.f - 1.f;
  }
  return x;
}

void BM_CpuEngine(benchmark::State& state) {
  const int64_t batch = state.range(0);
  const int threads = static_cast<int>(state.range(1));
  const ModelConfig config = UciConfig();
  auto engine = CreateCpuEngine(InitModel(config, 1), {threads});
  if (!engine.ok()) {
    state.SkipWithError(std::string(engine.status().message()).c_str());
    return;
  }
  const auto x = Windows(config, batch);
  std::vector<float> logits(batch * config.num_classes());
  for (auto _ : state) {
    benchmark::DoNotOptimize((*engine)->Run(x.data(), batch, logits.data()));
  }
  state.counters["windows_per_s"] =
      benchmark::Counter(static_cast<double>(batch),
                         benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_CpuEngine)
    ->ArgNames({"batch", "threads"})
    ->Args({1, 1})
    ->Args({1, 2})
    ->Args({64, 2})
    ->Args({1024, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The same forward through LibTorch ops (the differentiable reference path,
// eager mode), same weights and thread count: the baseline.
void BM_TorchReference(benchmark::State& state) {
  const int64_t batch = state.range(0);
  const int threads = static_cast<int>(state.range(1));
  const ModelConfig config = UciConfig();
  TorchBackendOptions options;
  options.path = ForwardPath::kReference;
  options.num_threads = threads;
  auto backend = CreateTorchBackend(InitModel(config, 1), options);
  if (!backend.ok()) {
    state.SkipWithError(std::string(backend.status().message()).c_str());
    return;
  }
  const auto x = Windows(config, batch);
  std::vector<float> logits(batch * config.num_classes());
  for (auto _ : state) {
    benchmark::DoNotOptimize((*backend)->Run(x.data(), batch, logits.data()));
  }
  state.counters["windows_per_s"] =
      benchmark::Counter(static_cast<double>(batch),
                         benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_TorchReference)
    ->ArgNames({"batch", "threads"})
    ->Args({1, 2})
    ->Args({64, 2})
    ->Args({1024, 2})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// ---- Kernels, on one window's worth of UCI-sized data (L 73, E 128) --------

constexpr int64_t kL = 73, kE = 128, kN = 16, kR = 4, kD = 64;

void BM_SelectiveScan(benchmark::State& state) {
  std::vector<float> u(kL * kE, 0.5f), z(kL * kE, 0.3f), dt_low(kL * kR, 0.1f),
      dt_w(kE * kR, 0.2f), bias(kE, -3.f), A(kE * kN, -1.f), BC(kL * kN, 0.7f),
      D(kE, 1.f), out(kL * kE);
  kernels::SelectiveScanParams p;
  p.batch = 1;
  p.seqlen = kL;
  p.dim = kE;
  p.dstate = kN;
  p.u = u.data();
  p.u_seq_stride = kE;
  p.dt_low = dt_low.data();
  p.dt_low_seq_stride = kR;
  p.dt_rank = kR;
  p.dt_weight = dt_w.data();
  p.delta_bias = bias.data();
  p.A = A.data();
  p.A_dim_stride = kN;
  p.B = p.C = BC.data();
  p.B_seq_stride = p.C_seq_stride = kN;
  p.D = D.data();
  p.z = z.data();
  p.z_seq_stride = kE;
  p.out = out.data();
  p.out_seq_stride = kE;
  for (auto _ : state) {
    kernels::SelectiveScanForward(p);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetLabel("one direction of one layer, one window");
}
BENCHMARK(BM_SelectiveScan)->Unit(benchmark::kMicrosecond);

void BM_CausalConv1d(benchmark::State& state) {
  std::vector<float> x(kL * kE, 0.5f), w(kE * 4, 0.25f), b(kE, 0.1f),
      out(kL * kE);
  kernels::CausalConv1dParams p;
  p.batch = 1;
  p.seqlen = kL;
  p.dim = kE;
  p.width = 4;
  p.x = x.data();
  p.x_seq_stride = kE;
  p.weight = w.data();
  p.bias = b.data();
  p.out = out.data();
  p.out_seq_stride = kE;
  for (auto _ : state) {
    kernels::CausalConv1dForward(p);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetLabel("one direction of one layer, one window");
}
BENCHMARK(BM_CausalConv1d)->Unit(benchmark::kMicrosecond);

// The three projections of one pair on a tile of windows (rows = 73 per
// window): merged in_proj 64 -> 512, x_proj 128 -> 36, merged out_proj
// 256 -> 64.
void BM_Gemm(benchmark::State& state) {
  const int64_t rows = state.range(0) * kL, k = state.range(1),
                n = state.range(2);
  std::vector<float> a(rows * k, 0.5f), b(k * n, 0.1f), c(rows * n);
  const auto packed = kernels::PackedMatrix::Pack(b.data(), k, n, n, false);
  for (auto _ : state) {
    kernels::Gemm(rows, a.data(), k, packed, 0.f, nullptr, c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * rows * k * n, benchmark::Counter::kIsIterationInvariantRate,
      benchmark::Counter::kIs1000);
}
BENCHMARK(BM_Gemm)
    ->ArgNames({"windows", "k", "n"})
    ->Args({4, kD, 4 * kE})
    ->Args({4, kE, kR + 2 * kN})
    ->Args({4, 2 * kE, kD})
    ->Args({1, kD, 4 * kE})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace harmamba

BENCHMARK_MAIN();
