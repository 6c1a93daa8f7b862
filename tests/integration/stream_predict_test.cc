// StreamClassify results equal `harmamba predict` on the same windows, in
// order, whatever the chunk sizes: a real server (LoadModelFile +
// CreateCpuEngine, as harmamba-server wires it) on loopback, driven by
// `harmamba client --rpc stream`, compared with `harmamba predict` on the
// windows cut from the recording at the hop offsets.
#include <filesystem>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "model/array_io.h"
#include "model/cpu_engine.h"
#include "model/model_file.h"
#include "nlohmann/json.hpp"
#include "server/model_registry.h"
#include "server/server.h"
#include "tests/unit/model_oracle.h"
#include "tools/commands.h"

namespace harmamba {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr int kWindow = 32;
constexpr int kChannels = 3;
constexpr int kHop = 12;  // not a divisor of the window: offsets 0, 12, 24, ..
constexpr int kSamples = 211;

struct CommandRun {
  int exit_code;
  std::string out;
  std::string err;
};

CommandRun Harmamba(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  const int code = cli::RunHarmamba(args, out, err);
  return {code, out.str(), err.str()};
}

class StreamPredictTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / "stream_predict_test";
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "models");
    // Random weights (not the training init, whose near-uniform outputs
    // would make every label the same).
    ModelConfig config = testing::SmallConfig(kWindow, kChannels,
                                              /*d_model=*/16, /*depth=*/2,
                                              /*classes=*/5);
    config.name = "stream-test";
    config.patch = config.stride = 8;
    const ModelWeights weights = testing::RandomWeights(config, 5);
    model_path_ = (dir_ / "models" / "stream-test.safetensors").string();
    ASSERT_TRUE(SaveModelFile(weights, model_path_).ok());

    const std::vector<float> base =
        testing::RandomWindows(config, (kSamples + kWindow - 1) / kWindow, 9);
    recording_.assign(base.begin(), base.begin() + kSamples * kChannels);
    recording_path_ = (dir_ / "recording.npy").string();
    ASSERT_TRUE(
        WriteNpyFloat32(recording_path_, {kSamples, kChannels}, recording_)
            .ok());

    auto registry = ModelRegistry::LoadDirectory(
        (dir_ / "models").string(),
        [](const std::string& path)
            -> absl::StatusOr<std::unique_ptr<ModelBackend>> {
          absl::StatusOr<ModelWeights> w = LoadModelFile(path);
          if (!w.ok()) return w.status();
          return CreateCpuEngine(*w, CpuEngineOptions{2});
        },
        "");
    ASSERT_TRUE(registry.ok()) << registry.status();
    ServerOptions options;
    options.address = "127.0.0.1:0";
    auto server = HarmambaServer::Start(std::move(*registry), options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }
  void TearDown() override {
    server_.reset();
    fs::remove_all(dir_);
  }

  // `harmamba predict --json` on the windows at offsets 0, hop, 2 hop, ...
  json PredictCutWindows() {
    std::vector<float> windows;
    int64_t n = 0;
    for (int start = 0; start + kWindow <= kSamples; start += kHop, ++n) {
      windows.insert(windows.end(), recording_.begin() + start * kChannels,
                     recording_.begin() + (start + kWindow) * kChannels);
    }
    const std::string path = (dir_ / "cut.npy").string();
    EXPECT_TRUE(WriteNpyFloat32(path, {n, kWindow, kChannels}, windows).ok());
    const CommandRun run = Harmamba(
        {"predict", "--model", model_path_, "--input", path, "--json"});
    EXPECT_EQ(run.exit_code, 0) << run.err;
    return json::parse(run.out)["predictions"];
  }

  std::string target() const {
    return absl::StrCat("127.0.0.1:", server_->port());
  }

  fs::path dir_;
  std::string model_path_, recording_path_;
  std::vector<float> recording_;
  std::unique_ptr<HarmambaServer> server_;
};

TEST_F(StreamPredictTest, StreamResultsEqualPredictWhateverTheChunkSize) {
  const json expected = PredictCutWindows();
  const size_t windows = (kSamples - kWindow) / kHop + 1;
  ASSERT_EQ(expected.size(), windows);
  // Some variety in the labels, or the comparison would prove little.
  std::set<int> labels;
  for (const json& p : expected) labels.insert(p["class_index"].get<int>());
  ASSERT_GE(labels.size(), 2u);

  for (int chunk : {1, 5, kWindow, 100, 1000}) {
    SCOPED_TRACE(absl::StrCat("chunk ", chunk));
    const CommandRun run =
        Harmamba({"client", "--target", target(), "--input", recording_path_,
                  "--rpc", "stream", "--pace", "fast", "--json", "--chunk",
                  absl::StrCat(chunk), "--hop", absl::StrCat(kHop)});
    ASSERT_EQ(run.exit_code, 0) << run.err;
    std::vector<json> lines;
    for (absl::string_view line : absl::StrSplit(run.out, '\n')) {
      if (!line.empty()) lines.push_back(json::parse(line));
    }
    ASSERT_EQ(lines.size(), windows + 1) << run.out;  // + the summary
    for (size_t w = 0; w < windows; ++w) {
      const json& got = lines[w];
      const json& want = expected[w];
      EXPECT_EQ(got["window"].get<int64_t>(), static_cast<int64_t>(w));
      EXPECT_EQ(got["start_sample"].get<int64_t>(), int64_t(w) * kHop);
      EXPECT_EQ(got["end_sample"].get<int64_t>(), int64_t(w) * kHop + kWindow);
      EXPECT_EQ(got["class_index"], want["class_index"]) << "window " << w;
      EXPECT_EQ(got["label"], want["label"]) << "window " << w;
      const auto& p = got["probabilities"];
      const auto& q = want["probabilities"];
      ASSERT_EQ(p.size(), q.size());
      for (size_t k = 0; k < p.size(); ++k) {
        EXPECT_NEAR(p[k].get<double>(), q[k].get<double>(), 1e-5)
            << "window " << w << " class " << k;
      }
    }
    const json& summary = lines.back()["summary"];
    EXPECT_EQ(summary["samples_received"].get<int64_t>(), kSamples);
    EXPECT_EQ(summary["windows_classified"].get<int64_t>(),
              static_cast<int64_t>(windows));
    EXPECT_EQ(summary["leftover_samples"].get<int64_t>(),
              kSamples - (int64_t(windows - 1) * kHop + kWindow));
  }
}

}  // namespace
}  // namespace harmamba
