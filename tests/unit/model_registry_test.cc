#include "server/model_registry.h"

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_backend.h"

namespace harmamba {
namespace {

namespace fs = std::filesystem;
using ::harmamba::testing::FakeBackend;
using ::harmamba::testing::FakeConfig;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A file whose content is the model name the fake factory serves, or
// "broken" (the factory fails), or "noclasses" (an unusable model).
void WriteModel(const fs::path& path, const std::string& content) {
  std::ofstream(path) << content;
}

absl::StatusOr<std::unique_ptr<ModelBackend>> FakeFactory(
    const std::string& path) {
  std::ifstream in(path);
  std::string content;
  std::getline(in, content);
  if (content == "broken") {
    return absl::DataLossError(absl::StrCat(path, ": truncated header"));
  }
  ModelConfig config = FakeConfig(content);
  if (content == "noclasses") config.classes.clear();
  return std::make_unique<FakeBackend>(config);
}

class ModelRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           absl::StrCat(
               "registry_",
               ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::vector<std::string> Names(const ModelRegistry& registry) {
    std::vector<std::string> names;
    for (const auto& m : registry.models()) names.push_back(m->name);
    return names;
  }

  fs::path dir_;
};

TEST_F(ModelRegistryTest, ServesEveryLoadableModelAndReportsTheRest) {
  WriteModel(dir_ / "b.safetensors", "wisdm");
  WriteModel(dir_ / "a.safetensors", "uci-har");
  WriteModel(dir_ / "c.safetensors", "broken");
  WriteModel(dir_ / "d.safetensors", "noclasses");
  WriteModel(dir_ / "e.safetensors", "wisdm");  // duplicate name
  WriteModel(dir_ / "README.txt", "not a model");
  fs::create_directories(dir_ / "sub.safetensors");  // not a regular file

  auto registry = ModelRegistry::LoadDirectory(dir_.string(), FakeFactory, "");
  ASSERT_TRUE(registry.ok()) << registry.status();
  EXPECT_THAT(Names(**registry), ElementsAre("uci-har", "wisdm"));
  EXPECT_EQ((*registry)->default_model().name, "uci-har");
  EXPECT_EQ((*registry)->models()[1]->path, (dir_ / "b.safetensors").string());

  const auto& failures = (*registry)->failures();
  ASSERT_EQ(failures.size(), 3u);
  EXPECT_THAT(failures[0].path, HasSubstr("c.safetensors"));
  EXPECT_EQ(failures[0].status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(failures[1].path, HasSubstr("d.safetensors"));
  EXPECT_THAT(std::string(failures[1].status.message()),
              HasSubstr("harmamba.classes"));
  EXPECT_THAT(failures[2].path, HasSubstr("e.safetensors"));
  EXPECT_EQ(failures[2].status.code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(ModelRegistryTest, FindResolvesNamesAndTheDefault) {
  WriteModel(dir_ / "a.safetensors", "uci-har");
  WriteModel(dir_ / "b.safetensors", "wisdm");
  auto registry =
      ModelRegistry::LoadDirectory(dir_.string(), FakeFactory, "wisdm");
  ASSERT_TRUE(registry.ok()) << registry.status();
  EXPECT_EQ((*registry)->default_model().name, "wisdm");
  EXPECT_EQ((*(*registry)->Find(""))->name, "wisdm");
  EXPECT_EQ((*(*registry)->Find("uci-har"))->name, "uci-har");
  const absl::Status missing = (*registry)->Find("pamap2").status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.message()),
              HasSubstr("no model named 'pamap2'"));
  EXPECT_THAT(std::string(missing.message()), HasSubstr("uci-har, wisdm"));
}

TEST_F(ModelRegistryTest, UnknownDefaultModelIsNotFound) {
  WriteModel(dir_ / "a.safetensors", "uci-har");
  auto registry =
      ModelRegistry::LoadDirectory(dir_.string(), FakeFactory, "pamap2");
  EXPECT_EQ(registry.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(registry.status().message()),
              HasSubstr("default_model"));
}

TEST_F(ModelRegistryTest, NothingServableIsAnError) {
  WriteModel(dir_ / "a.safetensors", "broken");
  auto registry = ModelRegistry::LoadDirectory(dir_.string(), FakeFactory, "");
  EXPECT_EQ(registry.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(registry.status().message()),
              HasSubstr("truncated header"));
  auto empty =
      ModelRegistry::LoadDirectory((dir_ / "none").string(), FakeFactory, "");
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ModelRegistryTest, FromBackends) {
  std::vector<std::unique_ptr<ModelBackend>> backends;
  backends.push_back(std::make_unique<FakeBackend>(FakeConfig("z")));
  backends.push_back(std::make_unique<FakeBackend>(FakeConfig("y")));
  auto registry = ModelRegistry::FromBackends(std::move(backends), "");
  ASSERT_TRUE(registry.ok()) << registry.status();
  EXPECT_THAT(Names(**registry), ElementsAre("y", "z"));
  EXPECT_EQ((*registry)->default_model().name, "y");

  std::vector<std::unique_ptr<ModelBackend>> twins;
  twins.push_back(std::make_unique<FakeBackend>(FakeConfig("x")));
  twins.push_back(std::make_unique<FakeBackend>(FakeConfig("x")));
  EXPECT_EQ(ModelRegistry::FromBackends(std::move(twins), "").status().code(),
            absl::StatusCode::kAlreadyExists);
}

}  // namespace
}  // namespace harmamba
