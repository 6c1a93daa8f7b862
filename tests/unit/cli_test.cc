// The `harmamba` command-line tool (tools/commands.h), end to end in-process
// on fixtures written here, plus a few runs of the real binary for the exit
// codes of main().
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/array_io.h"
#include "model/config.h"
#include "model/cpu_engine.h"
#include "model/metrics.h"
#include "model/model_file.h"
#include "nlohmann/json.hpp"
#include "tests/unit/model_oracle.h"
#include "tools/commands.h"
#include "tools/flag_parser.h"

#ifndef HARMAMBA_CLI_BINARY
#error "HARMAMBA_CLI_BINARY must be defined by CMake"
#endif

namespace harmamba::cli {
namespace {

using ::nlohmann::json;
using ::testing::ContainsRegex;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr int kT = 32;
constexpr int kC = 3;
constexpr int kK = 3;
constexpr int64_t kWindows = 10;

struct Result {
  int code = -1;
  std::string out;
  std::string err;
};

using Command = int (*)(const std::vector<std::string>&, std::ostream&,
                        std::ostream&);

Result Invoke(Command command, const std::vector<std::string>& args) {
  std::ostringstream out, err;
  Result result;
  result.code = command(args, out, err);
  result.out = out.str();
  result.err = err.str();
  return result;
}

// The whole result, for assertion messages.
std::string Describe(const Result& r) {
  return absl::StrCat("exit ", r.code, "\nstdout:\n", r.out, "\nstderr:\n",
                      r.err);
}

ModelConfig TinyConfig() {
  ModelConfig c;
  c.name = "tiny-har";
  c.version = "7";
  c.window_length = kT;
  c.sample_rate_hz = 50;
  c.channels = {"acc_x", "acc_y", "acc_z"};
  c.classes = {"walking", "sitting", "lying down"};
  c.d_model = 16;
  c.depth = 2;
  c.mean = {0.25f, -0.5f, 9.75f};
  c.std = {1.5f, 0.5f, 2.0f};
  return c;
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream file(path, std::ios::binary);
  file << text;
  ASSERT_TRUE(file.good()) << path;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = absl::StrCat(::testing::TempDir(), "/cli_test/",
                        info->test_suite_name(), ".", info->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);

    // Every tensor random (not the training init, whose tiny head puts every
    // probability near 1/K and one class first for most windows).
    weights_ = testing::RandomWeights(TinyConfig(), 42);
    weights_.config.extra["harmamba.train.test_accuracy"] = "0.9375";
    weights_.config.extra["source"] = "cli_test fixture";
    model_path_ = Path("model.safetensors");
    ASSERT_TRUE(SaveModelFile(weights_, model_path_).ok());

    std::mt19937 rng(7);
    windows_.resize(kWindows * kT * kC);
    for (size_t i = 0; i < windows_.size(); ++i) {
      const int channel = i % kC;
      std::normal_distribution<float> normal(TinyConfig().mean[channel],
                                             TinyConfig().std[channel]);
      windows_[i] = normal(rng);
    }
    ASSERT_TRUE(
        WriteNpyFloat32(Path("windows.npy"), {kWindows, kT, kC}, windows_)
            .ok());
    expected_logits_ = DirectLogits(windows_, kWindows);
    // A fixture whose windows all get one label would not test the labels.
    std::set<int> labels;
    for (int64_t i = 0; i < kWindows; ++i) {
      labels.insert(ArgMax(expected_logits_.data() + i * kK, kK));
    }
    ASSERT_GE(labels.size(), 2u) << "fixture predictions are all one class";
  }

  std::string Path(const std::string& name) const {
    return absl::StrCat(dir_, "/", name);
  }

  // Logits from CreateCpuEngine on the in-memory weights, all windows in one
  // call.
  std::vector<float> DirectLogits(const std::vector<float>& windows,
                                  int64_t n) const {
    auto engine = CreateCpuEngine(weights_, {1});
    EXPECT_TRUE(engine.ok()) << engine.status();
    std::vector<float> logits(n * weights_.config.num_classes(), NAN);
    EXPECT_TRUE((*engine)->Run(windows.data(), n, logits.data()).ok());
    return logits;
  }

  static std::vector<double> Softmax(const float* logits, int k) {
    double max = logits[0];
    for (int j = 1; j < k; ++j) max = std::max<double>(max, logits[j]);
    std::vector<double> p(k);
    double sum = 0;
    for (int j = 0; j < k; ++j) sum += p[j] = std::exp(logits[j] - max);
    for (double& v : p) v /= sum;
    return p;
  }

  static int ArgMax(const float* logits, int k) {
    return static_cast<int>(std::max_element(logits, logits + k) - logits);
  }

  // Checks predict's text output (index \t label \t probability per line)
  // against the direct engine run.
  void ExpectTextMatchesDirect(const std::string& text,
                               const std::vector<float>& logits, int64_t n) {
    const std::vector<std::string> lines =
        absl::StrSplit(text, '\n', absl::SkipEmpty());
    ASSERT_EQ(static_cast<int64_t>(lines.size()), n) << text;
    for (int64_t i = 0; i < n; ++i) {
      const std::vector<std::string> fields = absl::StrSplit(lines[i], '\t');
      ASSERT_EQ(fields.size(), 3u) << lines[i];
      const float* row = logits.data() + i * kK;
      const int label = ArgMax(row, kK);
      EXPECT_EQ(fields[0], absl::StrCat(i));
      EXPECT_EQ(fields[1], weights_.config.classes[label]) << "window " << i;
      EXPECT_NEAR(std::stod(fields[2]), Softmax(row, kK)[label], 1e-5)
          << "window " << i;
    }
  }

  std::string dir_;
  ModelWeights weights_;
  std::string model_path_;
  std::vector<float> windows_;
  std::vector<float> expected_logits_;
};

// ---- help and dispatch ------------------------------------------------------

TEST_F(CliTest, HelpListsEveryCommand) {
  const Result r = Invoke(&RunHarmamba, {"help"});
  EXPECT_EQ(r.code, kExitOk) << Describe(r);
  for (const char* command : {"info", "predict", "eval", "init", "help"}) {
    EXPECT_THAT(r.out, HasSubstr(absl::StrCat("  ", command, " "))) << command;
  }
  EXPECT_EQ(r.out, MainUsage());
  EXPECT_EQ(Invoke(&RunHarmamba, {"--help"}).out, MainUsage());
  EXPECT_TRUE(r.err.empty());
}

TEST_F(CliTest, CommandHelpDocumentsEveryFlag) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> flags = {
      {"info", {"--model FILE", "--json"}},
      {"predict",
       {"--model FILE", "--input FILE", "--logits-out FILE.npy", "--json",
        "--threads N", "--batch N", "--backend fast|reference", "--progress"}},
      {"eval",
       {"--model FILE", "--data PATH", "--split NAME", "--json", "--threads N",
        "--batch N", "--backend fast|reference", "--progress"}},
      {"init", {"--config FILE.json", "--out FILE", "--seed N", "--force"}},
  };
  for (const auto& [command, expected] : flags) {
    const Result r = Invoke(&RunHarmamba, {command, "--help"});
    EXPECT_EQ(r.code, kExitOk) << Describe(r);
    EXPECT_THAT(r.out, StartsWith("Usage: harmamba " + command + " "));
    for (const std::string& flag : expected) {
      EXPECT_THAT(r.out, HasSubstr("  " + flag)) << command;
    }
    // `help CMD` prints the same text.
    EXPECT_EQ(Invoke(&RunHarmamba, {"help", command}).out, r.out);
  }
}

TEST_F(CliTest, MissingOrUnknownCommandIsUsageError) {
  Result r = Invoke(&RunHarmamba, {});
  EXPECT_EQ(r.code, kExitUsageError);
  EXPECT_THAT(r.err, HasSubstr("missing command"));
  r = Invoke(&RunHarmamba, {"frobnicate", "--model", "x"});
  EXPECT_EQ(r.code, kExitUsageError);
  EXPECT_THAT(r.err, HasSubstr("unknown command 'frobnicate'"));
  EXPECT_THAT(r.err, HasSubstr("Usage: harmamba COMMAND"));
  EXPECT_TRUE(r.out.empty());
  r = Invoke(&RunHarmamba, {"help", "frobnicate"});
  EXPECT_EQ(r.code, kExitUsageError);
  EXPECT_THAT(r.err, HasSubstr("unknown command 'frobnicate'"));
}

// ---- flag parsing
// -------------------------------------------------------------

TEST_F(CliTest, FlagsAcceptSpaceAndEqualsForms) {
  const Result spaced = Invoke(&RunInfo, {"--model", model_path_, "--json"});
  const Result equals =
      Invoke(&RunInfo, {"--model=" + model_path_, "--json=true"});
  ASSERT_EQ(spaced.code, kExitOk) << Describe(spaced);
  ASSERT_EQ(equals.code, kExitOk) << Describe(equals);
  EXPECT_EQ(spaced.out, equals.out);
  EXPECT_TRUE(json::accept(spaced.out));
  const Result off = Invoke(&RunInfo, {"--json=false", "--model", model_path_});
  ASSERT_EQ(off.code, kExitOk) << Describe(off);
  EXPECT_FALSE(json::accept(off.out));
}

TEST_F(CliTest, UsageErrorsNameTheFlagAndPrintUsage) {
  struct Case {
    Command command;
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {&RunInfo, {"--model", model_path_, "--colour"}, "unknown flag --colour"},
      {&RunInfo, {"--model"}, "flag --model needs a value (--model FILE)"},
      {&RunInfo, {"--model", "--json"}, "flag --model needs a value"},
      {&RunInfo, {"--model="}, "flag --model needs a non-empty value"},
      {&RunInfo, {"--json"}, "missing required flag --model FILE"},
      {&RunInfo, {"--model", "a", "--model", "b"}, "--model given more than"},
      {&RunInfo, {model_path_}, "unexpected argument '" + model_path_ + "'"},
      {&RunInfo, {"-m", model_path_}, "unknown flag -m"},
      {&RunInfo,
       {"--model", model_path_, "--json=maybe"},
       "--json: expected true or false, got 'maybe'"},
      {&RunPredict, {"--model", model_path_}, "missing required flag --input"},
      {&RunPredict,
       {"--model", model_path_, "--input", "x.npy", "--threads", "two"},
       "--threads: expected an integer, got 'two'"},
      {&RunPredict,
       {"--model", model_path_, "--input", "x.npy", "--batch", "0"},
       "--batch: must be between 1 and"},
      {&RunPredict,
       {"--model", model_path_, "--input", "x.npy", "--backend", "gpu"},
       // ", cuda" follows in builds with nvcc.
       "--backend: expected one of fast, reference"},
      {&RunEval, {"--model", model_path_}, "missing required flag --data PATH"},
      {&RunInit, {"--config", "c.json"}, "missing required flag --out FILE"},
      {&RunInit,
       {"--config", "c.json", "--out", "m", "--seed", "-1"},
       "--seed: must be >= 0, got -1"},
  };
  for (const Case& c : cases) {
    const Result r = Invoke(c.command, c.args);
    EXPECT_EQ(r.code, kExitUsageError) << c.message << "\n" << Describe(r);
    EXPECT_THAT(r.err, HasSubstr(c.message));
    EXPECT_THAT(r.err, HasSubstr("\n\nUsage: harmamba "));
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

// ---- info -------------------------------------------------------------------

TEST_F(CliTest, InfoPrintsEverythingInTheFile) {
  const Result r = Invoke(&RunInfo, {"--model", model_path_});
  ASSERT_EQ(r.code, kExitOk) << Describe(r);
  const std::string size =
      absl::StrCat(std::filesystem::file_size(model_path_), " bytes");
  for (const std::string& expected :
       {std::string("name:         tiny-har"), std::string("version:      7"),
        size, std::string("32 samples at 50 Hz = 0.64 s"),
        std::string("3: acc_x, acc_y, acc_z"),
        std::string("3: walking, sitting, lying down"),
        std::string("patch 16, stride 16, d_model 16, depth 2 (1 bidirectional "
                    "pair), d_state 16, d_conv 4, expand 2"),
        std::string("7 per window (2 patches x 3 channels + cls)"),
        absl::StrCat("parameters:   ", weights_.num_parameters()),
        std::string("harmamba.train.test_accuracy = 0.9375"),
        std::string("source = cli_test fixture")}) {
    EXPECT_THAT(r.out, HasSubstr(expected));
  }
  EXPECT_THAT(r.out, ContainsRegex("acc_z +9.75 +2\n"));
}

TEST_F(CliTest, InfoJsonHasEveryKey) {
  const Result r = Invoke(&RunInfo, {"--model", model_path_, "--json"});
  ASSERT_EQ(r.code, kExitOk) << Describe(r);
  const json info = json::parse(r.out);
  EXPECT_EQ(info["name"], "tiny-har");
  EXPECT_EQ(info["version"], "7");
  EXPECT_EQ(info["window_length"], kT);
  EXPECT_EQ(info["sample_rate_hz"], 50.0);
  EXPECT_DOUBLE_EQ(info["window_seconds"].get<double>(), 0.64);
  EXPECT_EQ(info["channels"], json({"acc_x", "acc_y", "acc_z"}));
  EXPECT_EQ(info["classes"], json({"walking", "sitting", "lying down"}));
  EXPECT_EQ(info["parameters"], weights_.num_parameters());
  EXPECT_EQ(info["file_size_bytes"], std::filesystem::file_size(model_path_));
  EXPECT_EQ(info["mean"], json({0.25, -0.5, 9.75}));
  EXPECT_EQ(info["std"], json({1.5, 0.5, 2.0}));
  const json& arch = info["architecture"];
  EXPECT_EQ(arch["patch"], 16);
  EXPECT_EQ(arch["stride"], 16);
  EXPECT_EQ(arch["d_model"], 16);
  EXPECT_EQ(arch["depth"], 2);
  EXPECT_EQ(arch["d_state"], 16);
  EXPECT_EQ(arch["d_conv"], 4);
  EXPECT_EQ(arch["expand"], 2);
  EXPECT_EQ(arch["tokens_per_window"], 7);
  // JSON-text metadata is parsed; a plain string stays a string.
  EXPECT_EQ(info["metadata"]["harmamba.train.test_accuracy"], 0.9375);
  EXPECT_EQ(info["metadata"]["source"], "cli_test fixture");
}

TEST_F(CliTest, InfoRuntimeErrorsNameTheFile) {
  Result r = Invoke(&RunInfo, {"--model", Path("absent.safetensors")});
  EXPECT_EQ(r.code, kExitRuntimeError);
  EXPECT_THAT(r.err, HasSubstr(Path("absent.safetensors")));
  EXPECT_THAT(r.err, Not(HasSubstr("Usage:")));

  WriteText(Path("garbage.safetensors"), "not a safetensors file at all");
  r = Invoke(&RunInfo, {"--model", Path("garbage.safetensors")});
  EXPECT_EQ(r.code, kExitRuntimeError);
  EXPECT_THAT(r.err, HasSubstr(Path("garbage.safetensors")));
}

// ---- init
// ---------------------------------------------------------------------

TEST_F(CliTest, InitWritesTheSameModelAsInitModel) {
  const std::string config_json = R"({
    "name": "from-json", "window_length": 32,
    "channels": ["x", "y", "z"], "classes": ["a", "b"],
    "d_model": 16, "depth": 2, "mean": [1, 2, 3], "std": [4, 5, 6]
  })";
  WriteText(Path("config.json"), config_json);
  const Result r = Invoke(&RunInit, {"--config", Path("config.json"), "--out",
                                     Path("init.safetensors"), "--seed", "11"});
  ASSERT_EQ(r.code, kExitOk) << Describe(r);
  absl::StatusOr<ModelWeights> written =
      LoadModelFile(Path("init.safetensors"));
  ASSERT_TRUE(written.ok()) << written.status();
  const ModelWeights expected = InitModel(*ConfigFromJson(config_json), 11);
  EXPECT_EQ(written->config.name, "from-json");
  EXPECT_EQ(written->config.mean, std::vector<float>({1, 2, 3}));
  ASSERT_EQ(written->tensors.size(), expected.tensors.size());
  for (const auto& [name, tensor] : expected.tensors) {
    EXPECT_EQ(written->at(name).shape, tensor.shape) << name;
    EXPECT_EQ(written->at(name).data, tensor.data) << name;
  }
  EXPECT_THAT(r.out, HasSubstr(Path("init.safetensors")));
  EXPECT_THAT(
      r.out, HasSubstr(absl::StrCat(expected.num_parameters(), " parameters")));
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat(
                         std::filesystem::file_size(Path("init.safetensors")),
                         " bytes")));

  // A second run does not clobber the file unless asked to.
  const Result again =
      Invoke(&RunInit, {"--config", Path("config.json"), "--out",
                        Path("init.safetensors"), "--seed", "12"});
  EXPECT_EQ(again.code, kExitRuntimeError);
  EXPECT_THAT(again.err, HasSubstr("file exists; pass --force"));
  const Result forced =
      Invoke(&RunInit, {"--config", Path("config.json"), "--out",
                        Path("init.safetensors"), "--seed", "12", "--force"});
  EXPECT_EQ(forced.code, kExitOk) << Describe(forced);
  EXPECT_NE(LoadModelFile(Path("init.safetensors"))->at("head.weight").data,
            expected.at("head.weight").data);
}

TEST_F(CliTest, InitRuntimeErrorsNameTheFileAndKey) {
  Result r = Invoke(&RunInit, {"--config", Path("absent.json"), "--out",
                               Path("m.safetensors")});
  EXPECT_EQ(r.code, kExitRuntimeError);
  EXPECT_THAT(r.err, HasSubstr(Path("absent.json")));

  WriteText(Path("typo.json"), R"({"channels": ["x"], "classes": ["a"],
                                   "detph": 4})");
  r = Invoke(&RunInit,
             {"--config", Path("typo.json"), "--out", Path("m.safetensors")});
  EXPECT_EQ(r.code, kExitRuntimeError);
  EXPECT_THAT(r.err, HasSubstr(Path("typo.json")));
  EXPECT_THAT(r.err, HasSubstr("detph"));
  EXPECT_FALSE(std::filesystem::exists(Path("m.safetensors")));
}

// ---- predict ----------------------------------------------------------------

TEST_F(CliTest, PredictNpyMatchesDirectEngineRun) {
  const Result r = Invoke(
      &RunPredict, {"--model", model_path_, "--input", Path("windows.npy"),
                    "--batch", "4", "--threads", "2"});
  ASSERT_EQ(r.code, kExitOk) << Describe(r);
  ExpectTextMatchesDirect(r.out, expected_logits_, kWindows);
  EXPECT_TRUE(r.err.empty()) << r.err;
}

TEST_F(CliTest, PredictF32AndSingleWindowNpy) {
  {
    std::ofstream file(Path("windows.f32"), std::ios::binary);
    file.write(reinterpret_cast<const char*>(windows_.data()),
               windows_.size() * sizeof(float));
  }
  Result r = Invoke(&RunPredict,
                    {"--model", model_path_, "--input", Path("windows.f32")});
  ASSERT_EQ(r.code, kExitOk) << Describe(r);
  ExpectTextMatchesDirect(r.out, expected_logits_, kWindows);

  // (T, C) is one window.
  const std::vector<float> first(windows_.begin(), windows_.begin() + kT * kC);
  ASSERT_TRUE(WriteNpyFloat32(Path("one.npy"), {kT, kC}, first).ok());
  r = Invoke(&RunPredict, {"--model", model_path_, "--input", Path("one.npy")});
  ASSERT_EQ(r.code, kExitOk) << Describe(r);
  ExpectTextMatchesDirect(r.out, expected_logits_, 1);
}

TEST_F(CliTest, PredictCsvReportsLeftoverSamplesOnStderr) {
  std::string csv = "acc_x,acc_y,acc_z\n";
  for (int64_t row = 0; row < kWindows * kT; ++row) {
    absl::StrAppend(
        &csv, absl::StrFormat("%.9g,%.9g,%.9g\n", windows_[row * kC],
                              windows_[row * kC + 1], windows_[row * kC + 2]));
  }
  for (int extra = 0; extra < 5; ++extra) csv += "0.5,0.25,9.5\n";
  WriteText(Path("windows.csv"), csv);
  const Result r = Invoke(&RunPredict, {"--model", model_path_, "--input",
                                        Path("windows.csv"), "--json"});
  ASSERT_EQ(r.code, kExitOk) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("5 samples after the last whole window"));
  EXPECT_THAT(r.err, HasSubstr(Path("windows.csv")));
  const json doc = json::parse(r.out);
  EXPECT_EQ(doc["num_windows"], kWindows);
  EXPECT_EQ(doc["leftover_samples"], 5);
  ASSERT_EQ(doc["predictions"].size(), static_cast<size_t>(kWindows));
  for (int64_t i = 0; i < kWindows; ++i) {
    EXPECT_EQ(doc["predictions"][i]["class_index"],
              ArgMax(expected_logits_.data() + i * kK, kK));
  }
}

TEST_F(CliTest, PredictJsonHasEveryKeyAndSoftmaxOfDirectLogits) {
  const Result r = Invoke(&RunPredict, {"--model", model_path_, "--input",
                                        Path("windows.npy"), "--json"});
  ASSERT_EQ(r.code, kExitOk) << Describe(r);
  const json doc = json::parse(r.out);
  EXPECT_EQ(doc["model"]["name"], "tiny-har");
  EXPECT_EQ(doc["model"]["version"], "7");
  EXPECT_EQ(doc["classes"], json({"walking", "sitting", "lying down"}));
  ASSERT_EQ(doc["predictions"].size(), static_cast<size_t>(kWindows));
  bool any_confident = false;
  for (int64_t i = 0; i < kWindows; ++i) {
    const json& p = doc["predictions"][i];
    const float* row = expected_logits_.data() + i * kK;
    const std::vector<double> expected = Softmax(row, kK);
    const int label = ArgMax(row, kK);
    EXPECT_EQ(p["index"], i);
    EXPECT_EQ(p["class_index"], label);
    EXPECT_EQ(p["label"], weights_.config.classes[label]);
    EXPECT_NEAR(p["probability"].get<double>(), expected[label], 1e-5);
    const auto probabilities = p["probabilities"].get<std::vector<double>>();
    ASSERT_EQ(probabilities.size(), static_cast<size_t>(kK));
    double sum = 0;
    for (int j = 0; j < kK; ++j) {
      EXPECT_NEAR(probabilities[j], expected[j], 1e-5) << i << "," << j;
      sum += probabilities[j];
    }
    EXPECT_NEAR(sum, 1.0, 1e-12);
    EXPECT_EQ(p["probability"], probabilities[label]);
    any_confident |= expected[label] > 0.75;
  }
  EXPECT_TRUE(any_confident) << "fixture logits too flat to test softmax";
}

TEST_F(CliTest, PredictLogitsOutRoundTripsThroughReadNpy) {
  const Result r = Invoke(
      &RunPredict, {"--model", model_path_, "--input", Path("windows.npy"),
                    "--logits-out", Path("logits.npy"), "--batch", "3"});
  ASSERT_EQ(r.code, kExitOk) << Describe(r);
  absl::StatusOr<NpyArray> logits = ReadNpy(Path("logits.npy"));
  ASSERT_TRUE(logits.ok()) << logits.status();
  EXPECT_EQ(logits->descr, "<f4");
  EXPECT_THAT(logits->shape, ElementsAre(kWindows, kK));
  ASSERT_EQ(logits->float_data.size(), expected_logits_.size());
  for (size_t i = 0; i < expected_logits_.size(); ++i) {
    EXPECT_NEAR(logits->float_data[i], expected_logits_[i],
                1e-5 * (1 + std::abs(expected_logits_[i])))
        << i;
  }
}

TEST_F(CliTest, PredictProgressGoesToStderrOnly) {
  const Result quiet = Invoke(
      &RunPredict,
      {"--model", model_path_, "--input", Path("windows.npy"), "--batch", "4"});
  const Result progress =
      Invoke(&RunPredict, {"--model", model_path_, "--input",
                           Path("windows.npy"), "--batch", "4", "--progress"});
  ASSERT_EQ(progress.code, kExitOk) << Describe(progress);
  EXPECT_EQ(progress.out, quiet.out);
  EXPECT_TRUE(quiet.err.empty()) << quiet.err;
  EXPECT_THAT(progress.err, HasSubstr("predict: 10/10 windows (100%)"));
}

TEST_F(CliTest, PredictRuntimeErrorsNameTheProblem) {
  struct Case {
    std::string input;
    std::string message;
  };
  std::vector<float> four_channels(kWindows * kT * 4, 0.5f);
  ASSERT_TRUE(
      WriteNpyFloat32(Path("four.npy"), {kWindows, kT, 4}, four_channels).ok());
  std::vector<float> short_windows(kWindows * 31 * kC, 0.5f);
  ASSERT_TRUE(
      WriteNpyFloat32(Path("short.npy"), {kWindows, 31, kC}, short_windows)
          .ok());
  WriteText(Path("two_columns.csv"), "1,2\n3,4\n");
  WriteText(Path("ragged.f32"), std::string(kT * kC * 4 + 4, '\0'));
  WriteText(Path("windows.txt"), "1 2 3\n");
  const std::vector<Case> cases = {
      {Path("absent.npy"), Path("absent.npy")},
      {Path("four.npy"), "has 4 channels, expected 3"},
      {Path("short.npy"), "windows of 31 samples, expected 32"},
      {Path("two_columns.csv"), "line 1"},
      {Path("ragged.f32"), Path("ragged.f32")},
      {Path("windows.txt"), Path("windows.txt")},
  };
  for (const Case& c : cases) {
    const Result r =
        Invoke(&RunPredict, {"--model", model_path_, "--input", c.input});
    EXPECT_EQ(r.code, kExitRuntimeError) << c.input << "\n" << Describe(r);
    EXPECT_THAT(r.err, HasSubstr(c.message));
    EXPECT_THAT(r.err, StartsWith("harmamba predict: error: "));
    EXPECT_TRUE(r.out.empty());
  }
  // Shape errors also say what the model expects.
  const Result r = Invoke(
      &RunPredict, {"--model", model_path_, "--input", Path("four.npy")});
  EXPECT_THAT(r.err, HasSubstr("32 samples x 3 channels: acc_x, acc_y, acc_z"));

  const Result no_model = Invoke(&RunPredict, {"--model", Path("absent.st"),
                                               "--input", Path("windows.npy")});
  EXPECT_EQ(no_model.code, kExitRuntimeError);
  EXPECT_THAT(no_model.err, HasSubstr(Path("absent.st")));
}

TEST_F(CliTest, ReferenceBackendAgreesWithFastBackend) {
  const Result r =
      Invoke(&RunPredict, {"--model", model_path_, "--input",
                           Path("windows.npy"), "--backend", "reference",
                           "--logits-out", Path("reference_logits.npy")});
  ASSERT_EQ(r.code, kExitOk) << Describe(r);
  absl::StatusOr<NpyArray> logits = ReadNpy(Path("reference_logits.npy"));
  ASSERT_TRUE(logits.ok()) << logits.status();
  ASSERT_EQ(logits->float_data.size(), expected_logits_.size());
  for (size_t i = 0; i < expected_logits_.size(); ++i) {
    EXPECT_NEAR(logits->float_data[i], expected_logits_[i],
                1e-4 * (1 + std::abs(expected_logits_[i])))
        << i;
  }
}

// ---- eval
// ---------------------------------------------------------------------

class CliEvalTest : public CliTest {
 protected:
  // An npy dataset folder of `n` windows with the channels `channels` (a
  // permutation/superset of the model's; unknown names get random data) and
  // the class names `classes` (written to activity_labels.txt when non-empty).
  void WriteNpyDataset(const std::string& dir,
                       const std::vector<std::string>& channels,
                       const std::vector<std::string>& classes, int64_t n,
                       int t = kT) {
    std::filesystem::create_directories(dir);
    std::mt19937 rng(99);
    std::normal_distribution<float> normal(0.0f, 2.0f);
    const int c = channels.size();
    std::vector<float> x(n * t * c);
    for (float& v : x) v = normal(rng);
    std::vector<float> y(n);
    std::uniform_int_distribution<int> label(
        0, (classes.empty() ? kK : classes.size()) - 1);
    for (float& v : y) v = label(rng);
    ASSERT_TRUE(WriteNpyFloat32(dir + "/x_test.npy", {n, t, c}, x).ok());
    ASSERT_TRUE(WriteNpyFloat32(dir + "/y_test.npy", {n}, y).ok());
    std::string names;
    for (const std::string& name : channels) names += name + "\n";
    WriteText(dir + "/channels.txt", names);
    if (!classes.empty()) {
      std::string labels;
      for (size_t k = 0; k < classes.size(); ++k) {
        absl::StrAppend(&labels, k + 1, " ", classes[k], "\n");
      }
      WriteText(dir + "/activity_labels.txt", labels);
    }
    dataset_x_ = std::move(x);
    dataset_y_ = std::move(y);
  }

  std::vector<float> dataset_x_;
  std::vector<float> dataset_y_;
};

TEST_F(CliEvalTest, SelectsChannelsByNameAndMatchesDirectEvaluation) {
  // Channels shuffled with an extra one; classes in another order.
  const std::vector<std::string> channels = {"acc_z", "gyro_x", "acc_x",
                                             "acc_y"};
  const std::vector<std::string> classes = {"lying down", "walking", "sitting"};
  constexpr int64_t kN = 37;
  WriteNpyDataset(Path("data"), channels, classes, kN);

  // Expected: the model's channel order (acc_x, acc_y, acc_z) = columns 2, 3,
  // 0; dataset class k -> model class {2, 0, 1}[k].
  std::vector<float> selected(kN * kT * kC);
  for (int64_t s = 0; s < kN * kT; ++s) {
    selected[s * kC + 0] = dataset_x_[s * 4 + 2];
    selected[s * kC + 1] = dataset_x_[s * 4 + 3];
    selected[s * kC + 2] = dataset_x_[s * 4 + 0];
  }
  const std::vector<float> logits = DirectLogits(selected, kN);
  std::vector<int> y_true(kN), y_pred(kN);
  const int to_model[] = {2, 0, 1};
  for (int64_t i = 0; i < kN; ++i) {
    y_true[i] = to_model[static_cast<int>(dataset_y_[i])];
    y_pred[i] = ArgMax(logits.data() + i * kK, kK);
  }
  absl::StatusOr<ClassificationReport> expected = Evaluate(y_true, y_pred, kK);
  ASSERT_TRUE(expected.ok());

  const Result r = Invoke(&RunEval, {"--model", model_path_, "--data",
                                     Path("data"), "--json", "--batch", "8"});
  ASSERT_EQ(r.code, kExitOk) << Describe(r);
  const json report = json::parse(r.out);
  for (const char* key : {"accuracy", "macro_f1", "weighted_f1", "per_class",
                          "confusion", "model", "split", "num_windows"}) {
    EXPECT_TRUE(report.contains(key)) << key;
  }
  EXPECT_EQ(report["num_windows"], kN);
  EXPECT_EQ(report["split"], "test");
  EXPECT_DOUBLE_EQ(report["accuracy"].get<double>(), expected->accuracy);
  EXPECT_DOUBLE_EQ(report["macro_f1"].get<double>(), expected->macro_f1);
  EXPECT_DOUBLE_EQ(report["weighted_f1"].get<double>(), expected->weighted_f1);
  EXPECT_EQ(report["confusion"], json(expected->confusion));
  ASSERT_EQ(report["per_class"].size(), 3u);
  EXPECT_EQ(report["per_class"][2]["name"], "lying down");
  EXPECT_THAT(r.err, HasSubstr("windows/s"));
  EXPECT_THAT(r.err, HasSubstr("selected the model's channels"));

  const Result text =
      Invoke(&RunEval, {"--model", model_path_, "--data", Path("data")});
  ASSERT_EQ(text.code, kExitOk) << Describe(text);
  EXPECT_THAT(text.out,
              HasSubstr(FormatReport(*expected, weights_.config.classes)));
  EXPECT_THAT(text.out, HasSubstr("37 windows"));
}

TEST_F(CliEvalTest, UnnamedChannelsAndClassesArePositional) {
  constexpr int64_t kN = 12;
  WriteNpyDataset(Path("data"), {"a", "b", "c"}, {}, kN);
  std::filesystem::remove(Path("data/channels.txt"));
  const std::vector<float> logits = DirectLogits(dataset_x_, kN);
  int correct = 0;
  for (int64_t i = 0; i < kN; ++i) {
    correct += ArgMax(logits.data() + i * kK, kK) == dataset_y_[i];
  }
  const Result r = Invoke(
      &RunEval, {"--model", model_path_, "--data", Path("data"), "--json"});
  ASSERT_EQ(r.code, kExitOk) << Describe(r);
  EXPECT_DOUBLE_EQ(json::parse(r.out)["accuracy"].get<double>(),
                   static_cast<double>(correct) / kN);
  EXPECT_THAT(r.err, HasSubstr("has no channel names"));
  EXPECT_THAT(r.err, HasSubstr("has no class names"));
}

TEST_F(CliEvalTest, RuntimeErrorsNameTheProblem) {
  WriteNpyDataset(Path("no_z"), {"acc_x", "acc_y", "gyro_z"},
                  {"walking", "sitting", "lying down"}, 4);
  Result r = Invoke(&RunEval, {"--model", model_path_, "--data", Path("no_z")});
  EXPECT_EQ(r.code, kExitRuntimeError) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("acc_z"));
  EXPECT_THAT(r.err, HasSubstr(Path("no_z")));

  WriteNpyDataset(Path("long"), {"acc_x", "acc_y", "acc_z"},
                  {"walking", "sitting", "lying down"}, 4, /*t=*/40);
  r = Invoke(&RunEval, {"--model", model_path_, "--data", Path("long")});
  EXPECT_EQ(r.code, kExitRuntimeError) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("windows have 40 samples"));
  EXPECT_THAT(r.err, HasSubstr("expects 32"));

  WriteNpyDataset(Path("cycling"), {"acc_x", "acc_y", "acc_z"},
                  {"walking", "cycling", "sitting"}, 30);
  r = Invoke(&RunEval, {"--model", model_path_, "--data", Path("cycling")});
  EXPECT_EQ(r.code, kExitRuntimeError) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("class 'cycling'"));

  r = Invoke(&RunEval, {"--model", model_path_, "--data", Path("absent")});
  EXPECT_EQ(r.code, kExitRuntimeError) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr(Path("absent")));

  r = Invoke(&RunEval, {"--model", model_path_, "--data", Path("cycling"),
                        "--split", "validation"});
  EXPECT_EQ(r.code, kExitRuntimeError) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("validation"));
}

// ---- the binary
// ---------------------------------------------------------------

// Runs the built `harmamba` with `args` (shell-quoted by the caller); returns
// its exit code and stdout.
std::pair<int, std::string> RunBinary(const std::string& args) {
  const std::string command =
      absl::StrCat(HARMAMBA_CLI_BINARY, " ", args, " 2>/dev/null");
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return {-1, ""};
  std::string out;
  char buffer[4096];
  size_t read;
  while ((read = fread(buffer, 1, sizeof(buffer), pipe)) > 0) {
    out.append(buffer, read);
  }
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST_F(CliTest, BinaryExitCodes) {
  auto [code, out] = RunBinary("help");
  EXPECT_EQ(code, 0);
  EXPECT_EQ(out, MainUsage());
  EXPECT_EQ(RunBinary("frobnicate").first, 2);
  EXPECT_EQ(RunBinary("info --model").first, 2);
  EXPECT_EQ(RunBinary("info --model '" + Path("absent") + "'").first, 1);
  std::tie(code, out) = RunBinary("predict --model '" + model_path_ +
                                  "' --input '" + Path("windows.npy") + "'");
  EXPECT_EQ(code, 0);
  ExpectTextMatchesDirect(out, expected_logits_, kWindows);
}

}  // namespace
}  // namespace harmamba::cli
