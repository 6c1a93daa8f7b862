// The models shipped in models/ (docs/models.md): each loads, is small, and
// evaluated with the fused CPU engine on the official UCI HAR test subjects
// reproduces the test figures recorded in its metadata and model card to
// within 0.5 points. Skips the evaluation when ../shared/datasets is absent.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_format.h"
#include "model/dataset.h"
#include "model/model_file.h"
#include "model/torch/trainer.h"
#include "nlohmann/json.hpp"

namespace harmamba {
namespace {

using json = nlohmann::json;

constexpr double kTolerance = 0.005;  // 0.5 points

const std::string kModelsDir = HARMAMBA_MODELS_DIR;
const std::string kDocsDir = HARMAMBA_DOCS_DIR;
const std::string kUciHarDir =
    std::string(HARMAMBA_SHARED_DIR) + "/datasets/uci-har";

class ShippedModelTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ShippedModelTest, LoadsAndReproducesItsDocumentedTestFigures) {
  const std::string name = GetParam();
  const std::string path = kModelsDir + "/" + name + ".safetensors";
  ASSERT_TRUE(std::filesystem::exists(path)) << path << " is not shipped";
  EXPECT_LT(std::filesystem::file_size(path), 2u << 20) << "keep it small";
  absl::StatusOr<ModelWeights> weights = LoadModelFile(path);
  ASSERT_TRUE(weights.ok()) << weights.status();
  const ModelConfig& config = weights->config;
  EXPECT_EQ(config.name, name);
  ASSERT_EQ(config.extra.count("harmamba.train.test"), 1u)
      << path << " has no recorded test figures";
  const json recorded = json::parse(config.extra.at("harmamba.train.test"));
  const double accuracy = recorded.at("accuracy").get<double>();
  const double macro_f1 = recorded.at("macro_f1").get<double>();

  // The model card quotes the same figures (as percentages, 2 decimals).
  std::ifstream card_file(kDocsDir + "/models.md");
  ASSERT_TRUE(card_file.good()) << kDocsDir << "/models.md is missing";
  std::stringstream card;
  card << card_file.rdbuf();
  EXPECT_THAT(card.str(),
              ::testing::HasSubstr(absl::StrFormat("%.2f", 100 * accuracy)))
      << "docs/models.md does not quote " << name << "'s test accuracy";
  EXPECT_THAT(card.str(),
              ::testing::HasSubstr(absl::StrFormat("%.2f", 100 * macro_f1)))
      << "docs/models.md does not quote " << name << "'s test macro-F1";

  absl::StatusOr<Dataset> test = LoadDataset(kUciHarDir, "test");
  if (!test.ok() && absl::IsNotFound(test.status())) {
    GTEST_SKIP() << "UCI HAR test split not found at " << kUciHarDir
                 << " (configure with -DHARMAMBA_SHARED_DIR=...): "
                 << test.status();
  }
  ASSERT_TRUE(test.ok()) << test.status();
  absl::StatusOr<Dataset> selected = SelectChannels(*test, config.channels);
  ASSERT_TRUE(selected.ok()) << selected.status();
  absl::StatusOr<ClassificationReport> report =
      EvaluateOnDataset(*weights, *selected, /*num_threads=*/2);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->total, 2947);
  EXPECT_NEAR(report->accuracy, accuracy, kTolerance);
  EXPECT_NEAR(report->macro_f1, macro_f1, kTolerance);
  std::printf(
      "%s: test accuracy %.4f (recorded %.4f), macro-F1 %.4f "
      "(recorded %.4f)\n",
      name.c_str(), report->accuracy, accuracy, report->macro_f1, macro_f1);
}

INSTANTIATE_TEST_SUITE_P(Models, ShippedModelTest,
                         ::testing::Values("uci-har", "uci-har-acc"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) {
                             if (c == '-') c = '_';
                           }
                           return n;
                         });

}  // namespace
}  // namespace harmamba
