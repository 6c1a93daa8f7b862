// Test helpers: a float64 HARMamba forward written literally from design.md
// §1 (materialised flips, Block residual semantics, no folding), and random
// weights with every tensor non-trivial. The oracle the fused engine and the
// LibTorch paths are checked against.
#ifndef HARMAMBA_TESTS_UNIT_MODEL_ORACLE_H_
#define HARMAMBA_TESTS_UNIT_MODEL_ORACLE_H_

#include <cstdint>
#include <vector>

#include "model/model_file.h"

namespace harmamba::testing {

// A config with `channels` channels named c0.., `classes` classes, UCI sizes
// by default.
ModelConfig SmallConfig(int window_length = 128, int channels = 9,
                        int d_model = 64, int depth = 12, int classes = 6);

// Random weights: every tensor drawn fresh (not the training init, which has
// zero biases and unit norms that would hide mistakes).
ModelWeights RandomWeights(const ModelConfig& config, uint64_t seed);

// Random raw windows (n * T * C floats) around the config's mean/std.
std::vector<float> RandomWindows(const ModelConfig& config, int64_t n,
                                 uint64_t seed);

// Logits (K) of one raw window, in float64.
std::vector<double> OracleForward(const ModelWeights& weights,
                                  const float* window);

// ||a - b||_2 / ||b||_2
double RelativeError(const std::vector<float>& a, const std::vector<double>& b);

}  // namespace harmamba::testing

#endif  // HARMAMBA_TESTS_UNIT_MODEL_ORACLE_H_
