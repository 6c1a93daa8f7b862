#include "model/config.h"

#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace harmamba {
namespace {

using ::testing::HasSubstr;

ModelConfig SmallConfig() {
  ModelConfig c;
  c.name = "small";
  c.version = "7";
  c.window_length = 40;
  c.channels = {"acc_x", "acc_y", "acc_z"};
  c.sample_rate_hz = 20.0;
  c.patch = 8;
  c.stride = 4;
  c.d_model = 16;
  c.depth = 2;
  c.d_state = 4;
  c.d_conv = 3;
  c.expand = 3;
  c.classes = {"walk", "sit", "stand"};
  c.mean = {0.8f, -0.03f, 9.81f};
  c.std = {0.5f, 0.25f, 1.5f};
  return c;
}

void ExpectSameConfig(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.version, b.version);
  EXPECT_EQ(a.window_length, b.window_length);
  EXPECT_EQ(a.channels, b.channels);
  EXPECT_EQ(a.sample_rate_hz, b.sample_rate_hz);
  EXPECT_EQ(a.patch, b.patch);
  EXPECT_EQ(a.stride, b.stride);
  EXPECT_EQ(a.d_model, b.d_model);
  EXPECT_EQ(a.depth, b.depth);
  EXPECT_EQ(a.d_state, b.d_state);
  EXPECT_EQ(a.d_conv, b.d_conv);
  EXPECT_EQ(a.expand, b.expand);
  EXPECT_EQ(a.classes, b.classes);
  EXPECT_EQ(a.mean, b.mean);  // exact: float == float
  EXPECT_EQ(a.std, b.std);
  EXPECT_EQ(a.extra, b.extra);
}

// Expects InvalidArgument with a message containing every one of `parts`.
void ExpectInvalid(const absl::Status& status,
                   const std::vector<std::string>& parts) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  for (const std::string& part : parts) {
    EXPECT_THAT(std::string(status.message()), HasSubstr(part));
  }
}

TEST(ConfigTest, SmallConfigIsValid) {
  EXPECT_TRUE(SmallConfig().Validate().ok()) << SmallConfig().Validate();
  EXPECT_EQ(SmallConfig().num_patches(), 9);
  EXPECT_EQ(SmallConfig().num_tokens(), 28);
}

TEST(ConfigTest, MetadataRoundTripKeepsEverythingIncludingExtraKeys) {
  ModelConfig config = SmallConfig();
  config.extra["harmamba.eval.weighted_f1"] = "0.9701";
  config.extra["format"] = "pt";
  const std::map<std::string, std::string> metadata = ConfigToMetadata(config);
  EXPECT_EQ(metadata.at("format"), "pt");
  EXPECT_EQ(metadata.at("harmamba.eval.weighted_f1"), "0.9701");
  absl::StatusOr<ModelConfig> parsed = ConfigFromMetadata(metadata);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ExpectSameConfig(*parsed, config);
  EXPECT_EQ(ConfigToMetadata(*parsed), metadata);
}

TEST(ConfigTest, MetadataValuesAreJsonTextExceptNameAndVersion) {
  const auto metadata = ConfigToMetadata(SmallConfig());
  EXPECT_EQ(metadata.at("harmamba.name"), "small");
  EXPECT_EQ(metadata.at("harmamba.version"), "7");
  EXPECT_EQ(metadata.at("harmamba.window_length"), "40");
  EXPECT_EQ(metadata.at("harmamba.channels"), R"(["acc_x","acc_y","acc_z"])");
  EXPECT_EQ(metadata.at("harmamba.sample_rate_hz"), "20.0");
  // Floats are written with the fewest digits that read back exactly.
  EXPECT_EQ(metadata.at("harmamba.mean"), "[0.8,-0.03,9.81]");
  EXPECT_EQ(metadata.at("harmamba.std"), "[0.5,0.25,1.5]");
  EXPECT_EQ(metadata.size(), 15u);
}

TEST(ConfigTest, RandomFloatsRoundTripExactly) {
  std::mt19937 rng(12345);
  std::uniform_real_distribution<float> mantissa(0.5f, 1.0f);
  std::uniform_int_distribution<int> exponent(-40, 40);
  ModelConfig config = SmallConfig();
  config.channels.clear();
  config.mean.clear();
  config.std.clear();
  for (int i = 0; i < 5000; ++i) {
    config.channels.push_back(absl::StrCat("c", i));
    const float m = std::ldexp(mantissa(rng), exponent(rng));
    config.mean.push_back(i % 2 == 0 ? m : -m);
    config.std.push_back(std::ldexp(mantissa(rng), exponent(rng)));
  }
  config.std[0] = std::numeric_limits<float>::denorm_min();
  config.std[1] = std::numeric_limits<float>::max();
  config.mean[2] = std::numeric_limits<float>::lowest();
  absl::StatusOr<ModelConfig> parsed =
      ConfigFromMetadata(ConfigToMetadata(config));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->mean, config.mean);
  EXPECT_EQ(parsed->std, config.std);
}

TEST(ConfigTest, ParsesMetadataWrittenByPython) {
  // What json.dumps writes: spaces after separators, ints for whole numbers.
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"},
      {"harmamba.name", "uci-har"},
      {"harmamba.version", "1"},
      {"harmamba.window_length", "128"},
      {"harmamba.channels", R"(["body_acc_x", "body_acc_y", "body_acc_z"])"},
      {"harmamba.patch", "16"},
      {"harmamba.stride", "16"},
      {"harmamba.d_model", "64"},
      {"harmamba.depth", "12"},
      {"harmamba.d_state", "16"},
      {"harmamba.d_conv", "4"},
      {"harmamba.expand", "2"},
      {"harmamba.classes", R"(["WALKING", "SITTING"])"},
      {"harmamba.sample_rate_hz", "50"},
      {"harmamba.mean", "[0.0, 0.0, 0.0]"},
      {"harmamba.std", "[1.0, 1.0, 1.0]"},
      {"harmamba.test_f1", "0.9701"},
  };
  absl::StatusOr<ModelConfig> config = ConfigFromMetadata(metadata);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->name, "uci-har");
  EXPECT_EQ(config->window_length, 128);
  EXPECT_EQ(config->sample_rate_hz, 50.0);
  EXPECT_EQ(config->channels[2], "body_acc_z");
  EXPECT_EQ(config->std, std::vector<float>({1.0f, 1.0f, 1.0f}));
  EXPECT_EQ(config->num_tokens(), 25);
  EXPECT_EQ(config->extra.size(), 2u);
  EXPECT_EQ(config->extra.at("harmamba.test_f1"), "0.9701");
}

TEST(ConfigTest, MissingRequiredKeyIsNamed) {
  const auto full = ConfigToMetadata(SmallConfig());
  for (const char* key :
       {"harmamba.name", "harmamba.version", "harmamba.window_length",
        "harmamba.channels", "harmamba.patch", "harmamba.stride",
        "harmamba.d_model", "harmamba.depth", "harmamba.d_state",
        "harmamba.d_conv", "harmamba.expand", "harmamba.classes",
        "harmamba.sample_rate_hz", "harmamba.mean", "harmamba.std"}) {
    SCOPED_TRACE(key);
    auto metadata = full;
    ASSERT_EQ(metadata.erase(key), 1u);
    ExpectInvalid(ConfigFromMetadata(metadata).status(), {"missing", key});
  }
}

TEST(ConfigTest, BadJsonTextIsNamed) {
  for (const char* key : {"harmamba.window_length", "harmamba.channels",
                          "harmamba.mean", "harmamba.sample_rate_hz"}) {
    SCOPED_TRACE(key);
    auto metadata = ConfigToMetadata(SmallConfig());
    metadata[key] = "[1, 2";
    ExpectInvalid(ConfigFromMetadata(metadata).status(), {key, "JSON"});
  }
}

TEST(ConfigTest, WrongTypeIsNamed) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"harmamba.window_length", "40.5"},
      {"harmamba.window_length", "\"40\""},
      {"harmamba.depth", "4294967298"},
      {"harmamba.patch", "[8]"},
      {"harmamba.channels", "[1, 2, 3]"},
      {"harmamba.channels", "\"acc_x\""},
      {"harmamba.classes", "{\"walk\": 0}"},
      {"harmamba.mean", "[\"0\", 0, 0]"},
      {"harmamba.std", "1.0"},
      {"harmamba.sample_rate_hz", "\"50\""},
      {"harmamba.sample_rate_hz", "null"},
  };
  for (const auto& [key, text] : cases) {
    SCOPED_TRACE(key + " = " + text);
    auto metadata = ConfigToMetadata(SmallConfig());
    metadata[key] = text;
    ExpectInvalid(ConfigFromMetadata(metadata).status(), {key, "expected"});
  }
}

TEST(ConfigTest, OutOfRangeValuesAreNamed) {
  struct Case {
    const char* what;
    void (*mutate)(ModelConfig&);
    std::vector<std::string> message_parts;
  };
  const std::vector<Case> cases = {
      {"patch > window",
       [](ModelConfig& c) { c.patch = 41; },
       {"harmamba.patch", "[1, 40]", "41"}},
      {"patch 0", [](ModelConfig& c) { c.patch = 0; }, {"harmamba.patch"}},
      {"stride 0", [](ModelConfig& c) { c.stride = 0; }, {"harmamba.stride"}},
      {"depth odd",
       [](ModelConfig& c) { c.depth = 3; },
       {"harmamba.depth", "even", "3"}},
      {"depth 0", [](ModelConfig& c) { c.depth = 0; }, {"harmamba.depth"}},
      {"window 0",
       [](ModelConfig& c) { c.window_length = 0; },
       {"harmamba.window_length"}},
      {"d_model 0",
       [](ModelConfig& c) { c.d_model = 0; },
       {"harmamba.d_model"}},
      {"d_state -1",
       [](ModelConfig& c) { c.d_state = -1; },
       {"harmamba.d_state"}},
      {"d_conv 0", [](ModelConfig& c) { c.d_conv = 0; }, {"harmamba.d_conv"}},
      {"expand 0", [](ModelConfig& c) { c.expand = 0; }, {"harmamba.expand"}},
      {"no classes",
       [](ModelConfig& c) { c.classes.clear(); },
       {"harmamba.classes"}},
      {"duplicate class",
       [](ModelConfig& c) { c.classes[2] = "walk"; },
       {"harmamba.classes", "walk"}},
      {"no channels",
       [](ModelConfig& c) {
         c.channels.clear();
         c.mean.clear();
         c.std.clear();
       },
       {"harmamba.channels"}},
      {"mean length",
       [](ModelConfig& c) { c.mean.pop_back(); },
       {"harmamba.mean", "3", "2"}},
      {"std length",
       [](ModelConfig& c) { c.std.push_back(1); },
       {"harmamba.std", "3", "4"}},
      {"std zero",
       [](ModelConfig& c) { c.std[1] = 0; },
       {"harmamba.std[1]", "positive"}},
      {"std negative",
       [](ModelConfig& c) { c.std[2] = -1; },
       {"harmamba.std[2]"}},
      {"std nan",
       [](ModelConfig& c) {
         c.std[0] = std::numeric_limits<float>::quiet_NaN();
       },
       {"harmamba.std[0]", "finite"}},
      {"std inf",
       [](ModelConfig& c) {
         c.std[0] = std::numeric_limits<float>::infinity();
       },
       {"harmamba.std[0]", "finite"}},
      {"mean inf",
       [](ModelConfig& c) {
         c.mean[1] = -std::numeric_limits<float>::infinity();
       },
       {"harmamba.mean[1]", "finite"}},
      {"sample rate",
       [](ModelConfig& c) { c.sample_rate_hz = 0; },
       {"harmamba.sample_rate_hz"}},
      {"empty name", [](ModelConfig& c) { c.name.clear(); }, {"harmamba.name"}},
      {"too many tokens",
       [](ModelConfig& c) {
         c.window_length = 1 << 20;
         c.patch = c.stride = 1;
       },
       {"tokens"}},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.what);
    ModelConfig config = SmallConfig();
    test_case.mutate(config);
    ExpectInvalid(config.Validate(), test_case.message_parts);
  }
}

TEST(ConfigTest, ConfigFromMetadataValidates) {
  auto metadata = ConfigToMetadata(SmallConfig());
  metadata["harmamba.depth"] = "3";
  ExpectInvalid(ConfigFromMetadata(metadata).status(), {"harmamba.depth"});
  metadata = ConfigToMetadata(SmallConfig());
  metadata["harmamba.std"] = "[1, 0, 1]";
  ExpectInvalid(ConfigFromMetadata(metadata).status(), {"harmamba.std[1]"});
  metadata["harmamba.std"] = "[1, 1e300, 1]";  // overflows float
  ExpectInvalid(ConfigFromMetadata(metadata).status(), {"harmamba.std[1]"});
}

TEST(ConfigTest, FromJsonTakesDefaults) {
  absl::StatusOr<ModelConfig> config = ConfigFromJson(
      R"({"channels": ["x", "y", "z", "w"], "classes": ["a", "b"]})");
  ASSERT_TRUE(config.ok()) << config.status();
  const ModelConfig defaults;
  EXPECT_EQ(config->window_length, defaults.window_length);
  EXPECT_EQ(config->d_model, 64);
  EXPECT_EQ(config->depth, 12);
  EXPECT_EQ(config->patch, 16);
  EXPECT_EQ(config->name, "harmamba");
  EXPECT_EQ(config->mean, std::vector<float>(4, 0.0f));
  EXPECT_EQ(config->std, std::vector<float>(4, 1.0f));
  EXPECT_TRUE(config->extra.empty());
}

TEST(ConfigTest, FromJsonAcceptsPrefixedAndPlainKeys) {
  absl::StatusOr<ModelConfig> config = ConfigFromJson(R"({
      "harmamba.name": "wisdm", "window_length": 200,
      "harmamba.channels": ["x", "y", "z"], "classes": ["a", "b"],
      "harmamba.mean": [1, 2, 3], "std": [0.5, 0.5, 0.5], "depth": 4,
      "sample_rate_hz": 20})");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->name, "wisdm");
  EXPECT_EQ(config->window_length, 200);
  EXPECT_EQ(config->depth, 4);
  EXPECT_EQ(config->mean, std::vector<float>({1, 2, 3}));
  EXPECT_EQ(config->num_tokens(), 37);
}

TEST(ConfigTest, FromJsonErrorsAreNamed) {
  ExpectInvalid(ConfigFromJson(R"({"classes": ["a"]})").status(), {"channels"});
  ExpectInvalid(ConfigFromJson(R"({"channels": ["x"]})").status(), {"classes"});
  ExpectInvalid(
      ConfigFromJson(R"({"channels": ["x"], "classes": ["a"], "dmodel": 8})")
          .status(),
      {"dmodel", "unknown"});
  ExpectInvalid(
      ConfigFromJson(R"({"channels": ["x"], "classes": ["a"], "depth": "4"})")
          .status(),
      {"depth", "integer"});
  ExpectInvalid(
      ConfigFromJson(R"({"channels": ["x"], "classes": ["a"], "depth": 5})")
          .status(),
      {"harmamba.depth", "even"});
  ExpectInvalid(ConfigFromJson(R"({"channels": ["x"], "mean": [0, 1], )"
                               R"("classes": ["a"]})")
                    .status(),
                {"harmamba.mean"});
  ExpectInvalid(ConfigFromJson(R"({"channels": ["x"], "depth": 2, )"
                               R"("harmamba.depth": 4, "classes": ["a"]})")
                    .status(),
                {"depth", "twice"});
  ExpectInvalid(ConfigFromJson("{\"channels\": ").status(), {"JSON"});
  ExpectInvalid(ConfigFromJson("[1, 2]").status(), {"object"});
}

}  // namespace
}  // namespace harmamba
