// The CUDA engine end to end (host windows in, host logits out, including
// the copies and the synchronisation), UCI-HAR and PAMAP2 shapes, freshly
// initialised weights: median latency of Run() (10 runs after 3 warm-ups)
// and windows/s at batch 1 to 8192 (1024 for PAMAP2).
//
//   build/bench/gpu_engine_bench      (exits 0 with a note without a device)
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "model/gpu_engine.h"
#include "model/model_file.h"

namespace harmamba {
namespace {

int Main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("gpu_engine_bench: no CUDA device, nothing measured\n");
    return 0;
  }
  // UCI-HAR (73 tokens, activations in shared memory) and PAMAP2 (289
  // tokens, activations in global scratch).
  for (int window_length : {128, 512}) {
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
    for (int64_t batch : {1, 8, 64, 256, 1024, 4096, 8192}) {
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

int main() { return harmamba::Main(); }
