// The CUDA engine end to end (host windows in, host logits out, including
// the copies and the synchronisation), UCI-HAR and PAMAP2 shapes, freshly
// initialised weights: median latency of Run() (10 runs after 3 warm-ups)
// and windows/s at batch 1 to 8192 (1024 for PAMAP2).
//
//   build/bench/gpu_engine_bench      (exits 0 with a note without a device)
//   build/bench/gpu_engine_bench 8192 (only these UCI-HAR batch sizes; for
//                                      profiling one shape with ncu)
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "model/gpu_engine.h"
#include "model/model_file.h"

namespace harmamba {
namespace {

int Main(const std::vector<int64_t>& only_batches) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("gpu_engine_bench: no CUDA device, nothing measured\n");
    return 0;
  }
  // UCI-HAR (73 tokens, activations in shared memory) and PAMAP2 (289
  // tokens, activations in global scratch).
  // UCI-HAR with and without CUDA graphs and with 256 threads per window
  // (the default is 512), PAMAP2 with graphs.
  struct Variant {
    int window_length;
    bool graphs;
    int pair_threads;
  };
  for (const Variant& v : {Variant{128, true, 0}, Variant{128, false, 0},
                           Variant{128, true, 256}, Variant{512, true, 0}}) {
    const int window_length = v.window_length;
    if (!only_batches.empty() && (window_length != 128 || !v.graphs)) continue;
    ModelConfig config;
    config.name = "bench";
    config.window_length = window_length;
    for (int c = 0; c < 9; ++c) {
      config.channels.push_back("c" + std::to_string(c));
      config.mean.push_back(0.f);
      config.std.push_back(1.f);
    }
    config.classes = {"a", "b", "c", "d", "e", "f"};
    GpuEngineOptions options;
    options.max_batch = 8192;
    options.cuda_graphs = v.graphs;
    options.pair_threads = v.pair_threads;
    for (int64_t batch : only_batches) {
      options.max_batch = std::max(options.max_batch, batch);
    }
    auto engine = CreateGpuEngine(InitModel(config, 1), options);
    if (!engine.ok()) {
      std::fprintf(stderr, "%s\n", engine.status().ToString().c_str());
      return 1;
    }
    std::printf("%s, T %d x C 9 (%d tokens), fp32\n",
                (*engine)->description().c_str(), window_length,
                config.num_tokens());
    std::printf("%6s %12s %12s\n", "batch", "ms/batch", "windows/s");
    std::mt19937 rng(3);
    std::normal_distribution<float> dist;
    std::vector<int64_t> batches = {1, 8, 64, 256, 1024, 4096, 8192};
    if (!only_batches.empty()) batches = only_batches;
    for (int64_t batch : batches) {
      if (window_length > 128 && batch > 1024) continue;
      std::vector<float> windows(batch * config.window_floats());
      for (float& v : windows) v = dist(rng);
      std::vector<float> logits(batch * config.num_classes());
      std::vector<double> ms;
      for (int i = 0; i < 13; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        const absl::Status s =
            (*engine)->Run(windows.data(), batch, logits.data());
        const auto t1 = std::chrono::steady_clock::now();
        if (!s.ok()) {
          std::fprintf(stderr, "%s\n", s.ToString().c_str());
          return 1;
        }
        if (i >= 3) {
          ms.push_back(
              std::chrono::duration<double, std::milli>(t1 - t0).count());
        }
      }
      std::sort(ms.begin(), ms.end());
      const double median = ms[ms.size() / 2];
      std::printf("%6lld %12.3f %12.0f\n", static_cast<long long>(batch),
                  median, batch / (median * 1e-3));
    }
  }
  return 0;
}

}  // namespace
}  // namespace harmamba

int main(int argc, char** argv) {
  std::vector<int64_t> only_batches;
  for (int i = 1; i < argc; ++i) {
    const long long batch = std::atoll(argv[i]);
    if (batch < 1) {
      std::fprintf(stderr, "usage: gpu_engine_bench [BATCH ...]\n");
      return 2;
    }
    only_batches.push_back(batch);
  }
  return harmamba::Main(only_batches);
}
