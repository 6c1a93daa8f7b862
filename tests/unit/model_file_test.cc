#include "model/model_file.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace harmamba {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

ModelConfig SmallConfig() {
  ModelConfig c;
  c.name = "small";
  c.version = "3";
  c.window_length = 40;
  c.channels = {"acc_x", "acc_y", "acc_z"};
  c.sample_rate_hz = 20.0;
  c.patch = 8;
  c.stride = 8;
  c.d_model = 16;
  c.depth = 2;
  c.d_state = 4;
  c.d_conv = 4;
  c.expand = 2;
  c.classes = {"walk", "sit", "stand"};
  c.mean = {0.8f, -0.03f, 9.81f};
  c.std = {0.5f, 0.25f, 1.5f};
  return c;
}

// Every tensor filled with random values of mixed sign and magnitude.
ModelWeights RandomWeights(const ModelConfig& config, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-3.0f, 3.0f);
  ModelWeights weights;
  weights.config = config;
  for (const auto& [name, shape] : ExpectedTensors(config)) {
    HostTensor& t = weights.tensors[name];
    t.shape = shape;
    t.data.resize(t.numel());
    for (float& v : t.data) v = uniform(rng);
  }
  return weights;
}

void ExpectBitIdentical(const ModelWeights& a, const ModelWeights& b) {
  EXPECT_EQ(ConfigToMetadata(a.config), ConfigToMetadata(b.config));
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [name, tensor] : a.tensors) {
    SCOPED_TRACE(name);
    const HostTensor& other = b.at(name);
    EXPECT_EQ(tensor.shape, other.shape);
    ASSERT_EQ(tensor.data.size(), other.data.size());
    EXPECT_EQ(std::memcmp(tensor.data.data(), other.data.data(),
                          tensor.data.size() * sizeof(float)),
              0);
  }
}

void ExpectInvalid(const absl::Status& status,
                   const std::vector<std::string>& parts) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  for (const std::string& part : parts) {
    EXPECT_THAT(std::string(status.message()), HasSubstr(part));
  }
}

// A safetensors file spelled out, so tests can corrupt any part of it. This
// writer is independent of SerializeSafetensors on purpose.
struct RawTensor {
  std::string name;
  std::string dtype = "F32";
  nlohmann::json shape;
  std::string bytes;
};

struct RawFile {
  nlohmann::ordered_json metadata;
  std::vector<RawTensor> tensors;

  RawTensor& tensor(const std::string& name) {
    for (RawTensor& t : tensors) {
      if (t.name == name) return t;
    }
    ADD_FAILURE() << "no tensor " << name;
    return tensors.front();
  }

  // Header with the tensors laid out contiguously in vector order.
  nlohmann::ordered_json Header() const {
    nlohmann::ordered_json header;
    header["__metadata__"] = metadata;
    uint64_t offset = 0;
    for (const RawTensor& t : tensors) {
      header[t.name] = {{"dtype", t.dtype},
                        {"shape", t.shape},
                        {"data_offsets", {offset, offset + t.bytes.size()}}};
      offset += t.bytes.size();
    }
    return header;
  }

  std::string Data() const {
    std::string data;
    for (const RawTensor& t : tensors) data += t.bytes;
    return data;
  }
};

std::string FloatBytes(const std::vector<float>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()),
                     values.size() * sizeof(float));
}

std::string LengthField(uint64_t n) {
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(n >> (8 * i)));
  return out;
}

std::string Assemble(const std::string& header_text, const std::string& data,
                     bool pad = true) {
  std::string header = header_text;
  if (pad) header.append((8 - header.size() % 8) % 8, ' ');
  return LengthField(header.size()) + header + data;
}

std::string Assemble(const nlohmann::ordered_json& header,
                     const std::string& data) {
  return Assemble(header.dump(), data);
}

RawFile ToRaw(const ModelWeights& weights) {
  RawFile raw;
  for (const auto& [key, value] : ConfigToMetadata(weights.config)) {
    raw.metadata[key] = value;
  }
  for (const auto& [name, shape] : ExpectedTensors(weights.config)) {
    raw.tensors.push_back(
        {name, "F32", shape, FloatBytes(weights.at(name).data)});
  }
  return raw;
}

std::string Bytes(const RawFile& raw) {
  return Assemble(raw.Header(), raw.Data());
}

absl::Status ParseStatus(const std::string& bytes) {
  return ParseSafetensors(bytes).status();
}

class ModelFileTest : public ::testing::Test {
 protected:
  ModelFileTest() : weights_(RandomWeights(SmallConfig(), 42)) {}
  ModelWeights weights_;
};

TEST_F(ModelFileTest, RoundTripIsBitExact) {
  weights_.config.extra["harmamba.eval.weighted_f1"] = "0.93";
  weights_.tensors["layers.1.mixer.D"].data[5] =
      std::numeric_limits<float>::denorm_min();
  weights_.tensors["layers.1.mixer.D"].data[6] = -0.0f;
  absl::StatusOr<std::string> bytes = SerializeSafetensors(weights_);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  absl::StatusOr<ModelWeights> parsed = ParseSafetensors(*bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ExpectBitIdentical(*parsed, weights_);
  EXPECT_EQ(parsed->config.extra, weights_.config.extra);
  // Serialisation is deterministic.
  EXPECT_EQ(*SerializeSafetensors(*parsed), *bytes);
}

TEST_F(ModelFileTest, SerializedLayoutIsAlignedAndCanonical) {
  const std::string bytes = *SerializeSafetensors(weights_);
  uint64_t header_length = 0;
  std::memcpy(&header_length, bytes.data(), 8);
  EXPECT_EQ(header_length % 8, 0u);
  EXPECT_EQ(bytes.size(),
            8 + header_length + 4 * uint64_t(weights_.num_parameters()));
  const auto header =
      nlohmann::ordered_json::parse(bytes.substr(8, header_length));
  auto it = header.begin();
  EXPECT_EQ(it.key(), "__metadata__");
  // Tensors follow in ExpectedTensors order, laid out back to back.
  uint64_t offset = 0;
  for (const auto& [name, shape] : ExpectedTensors(weights_.config)) {
    ++it;
    ASSERT_NE(it, header.end());
    EXPECT_EQ(it.key(), name);
    EXPECT_EQ((*it)["dtype"], "F32");
    EXPECT_EQ((*it)["shape"].get<std::vector<int64_t>>(), shape);
    EXPECT_EQ((*it)["data_offsets"][0].get<uint64_t>(), offset);
    offset = (*it)["data_offsets"][1].get<uint64_t>();
  }
}

TEST_F(ModelFileTest, SaveAndLoadFile) {
  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) / "model_file_test_save";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "model.safetensors").string();
  ASSERT_TRUE(SaveModelFile(weights_, path).ok());
  // Overwrite in place: the rename replaces the old file.
  ModelWeights other = RandomWeights(SmallConfig(), 43);
  ASSERT_TRUE(SaveModelFile(other, path).ok());
  absl::StatusOr<ModelWeights> loaded = LoadModelFile(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ExpectBitIdentical(*loaded, other);
  // No temporary file is left behind.
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    (void)entry;
    ++files;
  }
  EXPECT_EQ(files, 1);
}

TEST_F(ModelFileTest, LoadErrorsStartWithThePath) {
  const std::string missing = ::testing::TempDir() + "/no_such_model.st";
  absl::Status status = LoadModelFile(missing).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_THAT(std::string(status.message()), StartsWith(missing));

  const std::string garbage = ::testing::TempDir() + "/garbage_model.st";
  std::ofstream(garbage, std::ios::binary) << "not a model";
  status = LoadModelFile(garbage).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), StartsWith(garbage + ": "));
  EXPECT_THAT(std::string(status.message()), HasSubstr("header length"));
}

TEST_F(ModelFileTest, SaveRefusesInvalidWeights) {
  weights_.tensors["head.bias"].data[0] = std::nanf("");
  const std::string path = ::testing::TempDir() + "/invalid_model.st";
  std::filesystem::remove(path);
  ExpectInvalid(SaveModelFile(weights_, path), {"head.bias"});
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST_F(ModelFileTest, ParsesUnpaddedHeader) {
  // safetensors < 0.3 did not pad the header.
  const RawFile raw = ToRaw(weights_);
  std::string header = raw.Header().dump();
  if (header.size() % 8 == 0) header += ' ';  // make it unaligned
  if (header.size() % 8 == 0) header += ' ';
  absl::StatusOr<ModelWeights> parsed =
      ParseSafetensors(Assemble(header, raw.Data(), /*pad=*/false));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ExpectBitIdentical(*parsed, weights_);
}

// The bytes the Python `safetensors` library (>= 0.3) writes for
// save_file(state_dict, path, metadata): a compact serde_json header with
// "__metadata__" first, tensors sorted by dtype then name and laid out in that
// order, each entry as {"dtype","shape","data_offsets"}, padded with spaces
// to a multiple of 8. Built by hand (string concatenation, not a JSON
// library) so it does not share assumptions with our reader or writer.
TEST_F(ModelFileTest, ParsesFileWrittenLikePythonSafetensors) {
  ModelWeights expected = weights_;
  expected.config.mean = {0.0f, 0.0f, 0.0f};
  expected.config.std = {1.0f, 1.0f, 1.0f};
  std::map<std::string, const HostTensor*> sorted;  // state_dict, by name
  for (const auto& [name, tensor] : expected.tensors) sorted[name] = &tensor;
  const HostTensor revin_weight{{3}, {1.0f, 1.0f, 1.0f}};
  const HostTensor revin_bias{{3}, {0.0f, 0.0f, 0.0f}};
  sorted["revin_layer.affine_weight"] = &revin_weight;
  sorted["revin_layer.affine_bias"] = &revin_bias;

  std::string header =
      R"({"__metadata__":{"harmamba.std":"[1.0, 1.0, 1.0]",)"
      R"("harmamba.name":"small","harmamba.version":"3","format":"pt",)"
      R"("harmamba.window_length":"40",)"
      R"("harmamba.channels":"[\"acc_x\", \"acc_y\", \"acc_z\"]",)"
      R"("harmamba.patch":"8","harmamba.stride":"8","harmamba.d_model":"16",)"
      R"("harmamba.depth":"2","harmamba.d_state":"4","harmamba.d_conv":"4",)"
      R"("harmamba.expand":"2",)"
      R"("harmamba.classes":"[\"walk\", \"sit\", \"stand\"]",)"
      R"("harmamba.sample_rate_hz":"20","harmamba.mean":"[0.0, 0.0, 0.0]"})";
  std::string data;
  for (const auto& [name, tensor] : sorted) {
    std::string shape;
    for (int64_t d : tensor->shape) {
      shape += (shape.empty() ? "" : ",") + std::to_string(d);
    }
    const size_t begin = data.size();
    data += FloatBytes(tensor->data);
    header +=
        absl::StrCat(",\"", name, "\":{\"dtype\":\"F32\",\"shape\":[", shape,
                     "],\"data_offsets\":[", begin, ",", data.size(), "]}");
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');
  const std::string bytes = LengthField(header.size()) + header + data;

  absl::StatusOr<ModelWeights> parsed = ParseSafetensors(bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->config.extra.at("format"), "pt");
  EXPECT_EQ(parsed->config.sample_rate_hz, 20.0);
  EXPECT_EQ(parsed->tensors.count("revin_layer.affine_weight"), 0u);
  expected.config.extra["format"] = "pt";
  ExpectBitIdentical(*parsed, expected);
}

TEST_F(ModelFileTest, AcceptsAndDropsRevinTensors) {
  RawFile raw = ToRaw(weights_);
  raw.tensors.insert(raw.tensors.begin(), {"revin_layer.affine_weight",
                                           "F32",
                                           {3},
                                           FloatBytes({1.5f, 2.5f, 3.5f})});
  raw.tensors.push_back(
      {"revin_layer.affine_bias", "F32", {3}, FloatBytes({0.1f, 0.2f, 0.3f})});
  absl::StatusOr<ModelWeights> parsed = ParseSafetensors(Bytes(raw));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->tensors.count("revin_layer.affine_weight"), 0u);
  EXPECT_EQ(parsed->tensors.count("revin_layer.affine_bias"), 0u);
  ExpectBitIdentical(*parsed, weights_);
}

TEST_F(ModelFileTest, RefusesFileShorterThanLengthField) {
  ExpectInvalid(ParseStatus(""), {"truncated", "0 bytes"});
  ExpectInvalid(ParseStatus("abcdefg"), {"truncated", "7 bytes"});
}

TEST_F(ModelFileTest, RefusesHeaderLengthBeyondFile) {
  std::string bytes = Bytes(ToRaw(weights_));
  const std::string too_long = LengthField(bytes.size());
  bytes.replace(0, 8, too_long);
  ExpectInvalid(ParseStatus(bytes), {"header length"});
  bytes.replace(0, 8, LengthField(~uint64_t{0}));
  ExpectInvalid(ParseStatus(bytes), {"header length"});
}

TEST_F(ModelFileTest, RefusesBadJson) {
  const RawFile raw = ToRaw(weights_);
  std::string header = raw.Header().dump();
  header.back() = ',';  // drop the closing brace
  ExpectInvalid(ParseStatus(Assemble(header, raw.Data())), {"bad JSON"});
  ExpectInvalid(ParseStatus(Assemble(std::string("[1, 2]"), "")),
                {"JSON object"});
}

TEST_F(ModelFileTest, RefusesDtypeOtherThanF32) {
  RawFile raw = ToRaw(weights_);
  raw.tensor("layers.0.mixer.x_proj.weight").dtype = "F16";
  ExpectInvalid(ParseStatus(Bytes(raw)),
                {"layers.0.mixer.x_proj.weight", "F16", "F32"});
}

TEST_F(ModelFileTest, RefusesReversedOffsets) {
  nlohmann::ordered_json header = ToRaw(weights_).Header();
  header["norm_f.bias"]["data_offsets"] = {64, 0};
  ExpectInvalid(ParseStatus(Assemble(header, ToRaw(weights_).Data())),
                {"norm_f.bias", "data_offsets"});
}

TEST_F(ModelFileTest, RefusesNegativeOffsets) {
  nlohmann::ordered_json header = ToRaw(weights_).Header();
  header["cls_token"]["data_offsets"][0] = -64;
  ExpectInvalid(ParseStatus(Assemble(header, ToRaw(weights_).Data())),
                {"cls_token", "data_offsets"});
}

TEST_F(ModelFileTest, RefusesOffsetsBeyondTheData) {
  const RawFile raw = ToRaw(weights_);
  nlohmann::ordered_json header = raw.Header();
  const uint64_t end = raw.Data().size();
  header["head.bias"]["data_offsets"] = {end + 4, end + 16};
  ExpectInvalid(ParseStatus(Assemble(header, raw.Data())),
                {"head.bias", "data_offsets", "exceed"});
}

TEST_F(ModelFileTest, RefusesOffsetsInconsistentWithShape) {
  RawFile raw = ToRaw(weights_);
  raw.tensor("layers.1.norm.bias").shape = {17};  // bytes hold 16 floats
  ExpectInvalid(ParseStatus(Bytes(raw)),
                {"layers.1.norm.bias", "[17]", "64 bytes", "68"});
}

TEST_F(ModelFileTest, RefusesOverlappingTensors) {
  const RawFile raw = ToRaw(weights_);
  nlohmann::ordered_json header = raw.Header();
  // Two tensors of 16 floats sharing one range.
  header["layers.0.norm.bias"]["data_offsets"] =
      header["layers.0.norm.weight"]["data_offsets"];
  ExpectInvalid(ParseStatus(Assemble(header, raw.Data())),
                {"overlap", "layers.0.norm.bias", "layers.0.norm.weight"});
}

TEST_F(ModelFileTest, RefusesBytesThatBelongToNoTensor) {
  const RawFile raw = ToRaw(weights_);
  ExpectInvalid(ParseStatus(Assemble(raw.Header(), raw.Data() + "junk")),
                {"4 bytes after the last tensor"});
  nlohmann::ordered_json header = raw.Header();
  header.erase("layers.1.mixer.D");  // leaves a hole in the data
  ExpectInvalid(ParseStatus(Assemble(header, raw.Data())),
                {"belong to no tensor"});
}

TEST_F(ModelFileTest, RefusesMissingTensor) {
  RawFile raw = ToRaw(weights_);
  raw.tensors.erase(raw.tensors.begin() + 10);
  const std::string name = ExpectedTensors(weights_.config)[10].first;
  ExpectInvalid(ParseStatus(Bytes(raw)), {"missing tensor", name});
}

TEST_F(ModelFileTest, RefusesUnexpectedTensor) {
  RawFile raw = ToRaw(weights_);
  raw.tensors.push_back(
      {"layers.0.mixer.in_proj.bias", "F32", {4}, FloatBytes({1, 2, 3, 4})});
  ExpectInvalid(ParseStatus(Bytes(raw)),
                {"unexpected tensor", "layers.0.mixer.in_proj.bias"});
  // A layer beyond depth is unexpected too.
  raw = ToRaw(weights_);
  raw.tensors.push_back(
      {"layers.2.mixer.D", "F32", {32}, FloatBytes(std::vector<float>(32, 1))});
  ExpectInvalid(ParseStatus(Bytes(raw)), {"layers.2.mixer.D"});
}

TEST_F(ModelFileTest, RefusesWrongShape) {
  RawFile raw = ToRaw(weights_);
  RawTensor& head = raw.tensor("head.weight");
  head.shape = {3, 17};
  head.bytes = FloatBytes(std::vector<float>(3 * 17, 0.5f));
  ExpectInvalid(ParseStatus(Bytes(raw)),
                {"head.weight", "expected shape [3, 16]", "got [3, 17]"});
  // Same element count, different shape.
  raw = ToRaw(weights_);
  raw.tensor("layers.1.mixer.A_log").shape = {4, 32};
  ExpectInvalid(ParseStatus(Bytes(raw)),
                {"layers.1.mixer.A_log", "[32, 4]", "[4, 32]"});
}

TEST_F(ModelFileTest, RefusesNonFiniteValues) {
  const float bad_values[] = {std::numeric_limits<float>::quiet_NaN(),
                              std::numeric_limits<float>::infinity(),
                              -std::numeric_limits<float>::infinity()};
  for (float bad : bad_values) {
    SCOPED_TRACE(bad);
    ModelWeights weights = weights_;
    weights.tensors["layers.1.mixer.dt_proj.bias"].data[7] = bad;
    RawFile raw = ToRaw(weights);
    ExpectInvalid(ParseStatus(Bytes(raw)),
                  {"layers.1.mixer.dt_proj.bias", "non-finite", "index 7"});
  }
}

TEST_F(ModelFileTest, RefusesMissingMetadataKey) {
  RawFile raw = ToRaw(weights_);
  raw.metadata.erase("harmamba.d_state");
  ExpectInvalid(ParseStatus(Bytes(raw)), {"missing", "harmamba.d_state"});
  raw.metadata = nlohmann::ordered_json::object();
  ExpectInvalid(ParseStatus(Bytes(raw)), {"missing", "harmamba."});
}

TEST_F(ModelFileTest, RefusesMalformedMetadata) {
  RawFile raw = ToRaw(weights_);
  raw.metadata["harmamba.depth"] = "twelve";
  ExpectInvalid(ParseStatus(Bytes(raw)), {"harmamba.depth", "JSON"});
  raw.metadata["harmamba.depth"] = "3";
  ExpectInvalid(ParseStatus(Bytes(raw)), {"harmamba.depth", "even"});
  raw = ToRaw(weights_);
  raw.metadata["harmamba.mean"] = "[0.5, 0.5]";
  ExpectInvalid(ParseStatus(Bytes(raw)), {"harmamba.mean"});
  raw = ToRaw(weights_);
  raw.metadata["harmamba.window_length"] = 40;  // a number, not a string
  ExpectInvalid(ParseStatus(Bytes(raw)),
                {"__metadata__", "harmamba.window_length", "string"});
}

TEST_F(ModelFileTest, MetadataChangingShapesIsCheckedAgainstTensors) {
  // A consistent-looking file whose metadata disagrees with its tensors.
  RawFile raw = ToRaw(weights_);
  raw.metadata["harmamba.d_state"] = "8";
  ExpectInvalid(ParseStatus(Bytes(raw)), {"layers.0.mixer.A_log", "[32, 8]"});
}

TEST_F(ModelFileTest, RefusesTruncatedData) {
  const std::string bytes = Bytes(ToRaw(weights_));
  ExpectInvalid(ParseStatus(bytes.substr(0, bytes.size() - 4)),
                {"truncated", "head.bias"});
}

TEST_F(ModelFileTest, RefusesEveryTruncation) {
  absl::StatusOr<std::string> serialized = SerializeSafetensors(weights_);
  ASSERT_TRUE(serialized.ok()) << serialized.status();
  const std::string& bytes = *serialized;
  uint64_t header_length = 0;
  std::memcpy(&header_length, bytes.data(), 8);
  for (size_t size = 0; size < bytes.size(); ++size) {
    // Every cut inside the header, a sample of cuts inside the data.
    if (size > 8 + header_length && size % 61 != 0) continue;
    const absl::Status status = ParseStatus(bytes.substr(0, size));
    ASSERT_EQ(status.code(), absl::StatusCode::kInvalidArgument)
        << "size " << size << ": " << status;
  }
}

// Random corruption of the header never crashes or throws: the result is
// either a complete model or InvalidArgument.
TEST_F(ModelFileTest, SurvivesRandomHeaderCorruption) {
  const std::string bytes = Bytes(ToRaw(weights_));
  uint64_t header_length = 0;
  std::memcpy(&header_length, bytes.data(), 8);
  std::mt19937 rng(5);
  std::uniform_int_distribution<size_t> position(8, 8 + header_length - 1);
  std::uniform_int_distribution<int> byte(0, 255);
  int accepted = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::string corrupt = bytes;
    for (int flips = 1 + trial % 3; flips > 0; --flips) {
      corrupt[position(rng)] = static_cast<char>(byte(rng));
    }
    absl::StatusOr<ModelWeights> parsed = ParseSafetensors(corrupt);
    if (parsed.ok()) {
      ++accepted;
      EXPECT_TRUE(ValidateWeights(*parsed).ok());
    } else {
      ASSERT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument)
          << parsed.status();
    }
  }
  EXPECT_LT(accepted, 3000);
}

TEST_F(ModelFileTest, InvalidUtf8InNamesDoesNotThrow) {
  weights_.config.classes[0] = "caf\xe9";  // Latin-1, not UTF-8
  absl::StatusOr<std::string> bytes = SerializeSafetensors(weights_);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  absl::StatusOr<ModelWeights> parsed = ParseSafetensors(*bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->config.classes[0], "caf\xef\xbf\xbd");  // U+FFFD
}

TEST_F(ModelFileTest, ValidateWeightsNamesTheProblem) {
  EXPECT_TRUE(ValidateWeights(weights_).ok());

  ModelWeights w = weights_;
  w.tensors.erase("layers.0.mixer.conv1d.bias");
  ExpectInvalid(ValidateWeights(w),
                {"missing tensor", "layers.0.mixer.conv1d.bias"});

  w = weights_;
  w.tensors["revin_layer.affine_weight"] = {{3}, {1, 1, 1}};
  ExpectInvalid(ValidateWeights(w),
                {"unexpected tensor", "revin_layer.affine_weight"});

  w = weights_;
  w.tensors["pos_embed"].shape = {1, 41, 16};
  ExpectInvalid(ValidateWeights(w),
                {"pos_embed", "[1, 16, 16]", "[1, 41, 16]"});

  w = weights_;
  w.tensors["norm_f.weight"].data.pop_back();
  ExpectInvalid(ValidateWeights(w), {"norm_f.weight", "16 values", "has 15"});

  w = weights_;
  w.tensors["cls_token"].data[3] = std::numeric_limits<float>::infinity();
  ExpectInvalid(ValidateWeights(w), {"cls_token", "non-finite"});

  w = weights_;
  w.config.depth = 3;
  ExpectInvalid(ValidateWeights(w), {"harmamba.depth"});
}

TEST(ModelFileShapesTest, UciHarModelHasTheDocumentedSize) {
  ModelConfig config;
  config.window_length = 128;
  for (int i = 0; i < 9; ++i) config.channels.push_back(absl::StrCat("c", i));
  config.mean.assign(9, 0.0f);
  config.std.assign(9, 1.0f);
  config.classes = {"a", "b", "c", "d", "e", "f"};
  ASSERT_TRUE(config.Validate().ok());
  EXPECT_EQ(config.num_tokens(), 73);
  ModelWeights weights = RandomWeights(config, 7);
  EXPECT_EQ(weights.tensors.size(), 4u + 11u * 12u + 4u);
  EXPECT_EQ(weights.num_parameters(), 399558);  // "about 0.40 M"
  EXPECT_EQ(weights.at("layers.11.mixer.x_proj.weight").shape,
            std::vector<int64_t>({36, 128}));
  absl::StatusOr<std::string> bytes = SerializeSafetensors(weights);
  ASSERT_TRUE(bytes.ok());
  absl::StatusOr<ModelWeights> parsed = ParseSafetensors(*bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ExpectBitIdentical(*parsed, weights);
}

TEST(HostTensorTest, Numel) {
  EXPECT_EQ((HostTensor{{}, {1.0f}}).numel(), 1);
  EXPECT_EQ((HostTensor{{2, 0, 3}, {}}).numel(), 0);
  EXPECT_EQ((HostTensor{{2, 3, 4}, {}}).numel(), 24);
}

}  // namespace
}  // namespace harmamba
