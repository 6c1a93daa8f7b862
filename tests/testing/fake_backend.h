// A ModelBackend for serving tests: logits are a fixed function of the window
// values (so any test can compute the expected answer), and a hook lets a
// test block a run, advance a fake clock, schedule more work, or fail.
#ifndef HARMAMBA_TESTS_TESTING_FAKE_BACKEND_H_
#define HARMAMBA_TESTS_TESTING_FAKE_BACKEND_H_

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "model/backend.h"
#include "model/config.h"

namespace harmamba::testing {

// A small model shape (window_length x channels -> classes).
inline ModelConfig FakeConfig(const std::string& name = "fake",
                              int window_length = 16, int channels = 3,
                              int classes = 4) {
  ModelConfig config;
  config.name = name;
  config.version = "7";
  config.window_length = window_length;
  config.sample_rate_hz = 50.0;
  for (int c = 0; c < channels; ++c) {
    config.channels.push_back(absl::StrCat("ch", c));
  }
  for (int k = 0; k < classes; ++k) {
    config.classes.push_back(absl::StrCat(name, "_class", k));
  }
  config.mean.assign(channels, 0.0f);
  config.std.assign(channels, 1.0f);
  return config;
}

// logits[k] = sum_i x[i] * sin(0.37 (i + 1) (k + 1)) + 0.1 k.
inline void FakeLogits(const ModelConfig& config, const float* window,
                       float* logits) {
  const int floats = config.window_floats();
  for (int k = 0; k < config.num_classes(); ++k) {
    double sum = 0.1 * k;
    for (int i = 0; i < floats; ++i) {
      sum += window[i] * std::sin(0.37 * (i + 1) * (k + 1));
    }
    logits[k] = static_cast<float>(sum);
  }
}

inline std::vector<float> FakeLogits(const ModelConfig& config,
                                     const std::vector<float>& window) {
  std::vector<float> logits(config.num_classes());
  FakeLogits(config, window.data(), logits.data());
  return logits;
}

// Random windows (fixed seed); window w's first value is exactly w + 1000, a
// fingerprint that FakeBackend records for each window it runs.
inline std::vector<std::vector<float>> RandomWindows(const ModelConfig& config,
                                                     int count,
                                                     uint32_t seed = 1,
                                                     int first_id = 0) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<std::vector<float>> windows(count);
  for (int w = 0; w < count; ++w) {
    windows[w].resize(config.window_floats());
    for (float& x : windows[w]) x = normal(rng);
    windows[w][0] = static_cast<float>(first_id + w + 1000);
  }
  return windows;
}

inline int FingerprintId(float first_value) {
  return static_cast<int>(first_value) - 1000;
}

// Thread-safe.
class FakeBackend : public ModelBackend {
 public:
  // Called at the start of every Run() with the batch size, on the executor
  // thread; a non-OK status fails the run. May block, throw, or call into the
  // batcher (no batcher lock is held).
  using Hook = std::function<absl::Status(int64_t n)>;

  explicit FakeBackend(ModelConfig config) : config_(std::move(config)) {}

  const ModelConfig& config() const override { return config_; }
  std::string description() const override { return "fake backend"; }

  absl::Status Run(const float* windows, int64_t n, float* logits) override {
    Hook hook;
    {
      absl::MutexLock lock(&mu_);
      batch_sizes_.push_back(n);
      for (int64_t w = 0; w < n; ++w) {
        fingerprints_.push_back(windows[w * config_.window_floats()]);
      }
      hook = hook_;
    }
    if (hook) {
      if (absl::Status s = hook(n); !s.ok()) return s;
    }
    for (int64_t w = 0; w < n; ++w) {
      FakeLogits(config_, windows + w * config_.window_floats(),
                 logits + w * config_.num_classes());
    }
    return absl::OkStatus();
  }

  void set_hook(Hook hook) {
    absl::MutexLock lock(&mu_);
    hook_ = std::move(hook);
  }
  std::vector<int64_t> batch_sizes() const {
    absl::MutexLock lock(&mu_);
    return batch_sizes_;
  }
  // The first value of every window run, in run order (padding included).
  std::vector<float> fingerprints() const {
    absl::MutexLock lock(&mu_);
    return fingerprints_;
  }
  int64_t windows_run() const {
    absl::MutexLock lock(&mu_);
    return static_cast<int64_t>(fingerprints_.size());
  }

 private:
  const ModelConfig config_;
  mutable absl::Mutex mu_;
  Hook hook_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> batch_sizes_ ABSL_GUARDED_BY(mu_);
  std::vector<float> fingerprints_ ABSL_GUARDED_BY(mu_);
};

}  // namespace harmamba::testing

#endif  // HARMAMBA_TESTS_TESTING_FAKE_BACKEND_H_
