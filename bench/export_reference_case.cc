// Writes a cross-check case for bench/reference.py (the plain PyTorch
// model): a freshly initialised UCI-HAR-shaped model (random weights,
// non-trivial mean/std), random windows and the fused CPU engine's logits.
//
//   export_reference_case DIR [N]   -> DIR/model.safetensors,
//                                      DIR/windows.f32 (N x 128 x 9),
//                                      DIR/logits.f32  (N x 6)
// Raw little-endian float32 files, no header.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "model/cpu_engine.h"
#include "model/model_file.h"

namespace harmamba {
namespace {

bool WriteFloats(const std::string& path, const std::vector<float>& v) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()),
          static_cast<std::streamsize>(v.size() * sizeof(float)));
  return static_cast<bool>(f);
}

int Main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR [N]\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const int64_t n = argc > 2 ? std::atoll(argv[2]) : 16;
  ModelConfig config;
  config.name = "reference-check";
  for (int c = 0; c < 9; ++c) {
    config.channels.push_back("c" + std::to_string(c));
    config.mean.push_back(0.1f * c);
    config.std.push_back(0.5f + 0.1f * c);
  }
  config.classes = {"a", "b", "c", "d", "e", "f"};
  const ModelWeights weights = InitModel(config, 2024);
  if (absl::Status s = SaveModelFile(weights, dir + "/model.safetensors");
      !s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  std::vector<float> windows(n * config.window_floats());
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.f, 1.f);
  for (int64_t w = 0; w < n; ++w) {
    for (int t = 0; t < config.window_length; ++t) {
      for (int c = 0; c < 9; ++c) {
        windows[(w * config.window_length + t) * 9 + c] =
            config.mean[c] + config.std[c] * dist(rng);
      }
    }
  }
  auto engine = CreateCpuEngine(weights, {1});
  if (!engine.ok()) {
    std::fprintf(stderr, "%s\n", engine.status().ToString().c_str());
    return 1;
  }
  std::vector<float> logits(n * config.num_classes());
  if (absl::Status s = (*engine)->Run(windows.data(), n, logits.data());
      !s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  if (!WriteFloats(dir + "/windows.f32", windows) ||
      !WriteFloats(dir + "/logits.f32", logits)) {
    std::fprintf(stderr, "cannot write to %s\n", dir.c_str());
    return 1;
  }
  std::printf("wrote %lld windows and logits to %s\n",
              static_cast<long long>(n), dir.c_str());
  return 0;
}

}  // namespace
}  // namespace harmamba

int main(int argc, char** argv) { return harmamba::Main(argc, argv); }
