#include "model/array_io.h"

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/test_files.h"

namespace harmamba {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using testing::NpyImage;
using testing::RawBytes;
using testing::WriteFile;

std::string TestPath(const std::string& name) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return ::testing::TempDir() + "array_io_" + info->name() + "_" + name;
}

// Values of mixed sign and magnitude (stddev 2).
std::vector<float> RandomFloats(size_t count, uint32_t seed) {
  return testing::RandomFloats(count, seed, 2.0f);
}

TEST(NpyTest, ParsesVersion1Float32) {
  const std::vector<float> values = RandomFloats(2 * 3 * 4, 1);
  const std::string image = NpyImage(
      1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }",
      RawBytes(values));
  ASSERT_EQ(image.size() % 64, values.size() * 4 % 64);
  absl::StatusOr<NpyArray> array = ParseNpy(image);
  ASSERT_TRUE(array.ok()) << array.status();
  EXPECT_THAT(array->shape, ElementsAre(2, 3, 4));
  EXPECT_EQ(array->descr, "<f4");
  EXPECT_FALSE(array->is_integer);
  EXPECT_THAT(array->float_data, ElementsAreArray(values));
  EXPECT_TRUE(array->int_data.empty());
}

TEST(NpyTest, ParsesVersion2And3Float64AsFloat) {
  const std::vector<double> values = {0.1, -2.5e-3, 3.0e10, 1.0 / 3.0, -7.0};
  for (int major : {2, 3}) {
    const std::string image = NpyImage(
        major, "{'descr': '<f8', 'fortran_order': False, 'shape': (5,), }",
        RawBytes(values));
    absl::StatusOr<NpyArray> array = ParseNpy(image);
    ASSERT_TRUE(array.ok()) << array.status();
    EXPECT_THAT(array->shape, ElementsAre(5));
    ASSERT_EQ(array->float_data.size(), values.size());
    for (size_t i = 0; i < values.size(); ++i) {
      EXPECT_EQ(array->float_data[i], static_cast<float>(values[i]));
    }
  }
}

TEST(NpyTest, ParsesFloat16) {
  // 1.0, -2.0, 0.5, 65504 (largest half), 2^-24 (smallest subnormal).
  const std::vector<uint16_t> halves = {0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001};
  const std::string image =
      NpyImage(1, "{'descr': '<f2', 'fortran_order': False, 'shape': (5,), }",
               RawBytes(halves));
  absl::StatusOr<NpyArray> array = ParseNpy(image);
  ASSERT_TRUE(array.ok()) << array.status();
  EXPECT_THAT(array->float_data,
              ElementsAre(1.0f, -2.0f, 0.5f, 65504.0f, std::ldexp(1.0f, -24)));
}

TEST(NpyTest, ParsesIntegerDtypes) {
  const std::vector<int64_t> i8 = {-5, 0, 7, int64_t{1} << 40};
  const std::vector<int32_t> i4 = {-100000, 3, 0, 42};
  const std::vector<int16_t> i2 = {-300, 2, 1, 0};
  const std::vector<uint8_t> u1 = {255, 0, 1, 6};
  const std::vector<int8_t> i1 = {-128, 127, 0, 1};
  const std::vector<uint16_t> u2 = {65535, 1, 2, 3};
  const std::vector<uint8_t> b1 = {1, 0, 0, 1};
  struct Case {
    std::string descr;
    std::string data;
    std::vector<int64_t> expected;
  };
  const std::vector<Case> cases = {
      {"<i8", RawBytes(i8), {-5, 0, 7, int64_t{1} << 40}},
      {"<i4", RawBytes(i4), {-100000, 3, 0, 42}},
      {"<i2", RawBytes(i2), {-300, 2, 1, 0}},
      {"|u1", RawBytes(u1), {255, 0, 1, 6}},
      {"|i1", RawBytes(i1), {-128, 127, 0, 1}},
      {"<u2", RawBytes(u2), {65535, 1, 2, 3}},
      {"|b1", RawBytes(b1), {1, 0, 0, 1}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.descr);
    const std::string image =
        NpyImage(1,
                 "{'descr': '" + c.descr +
                     "', 'fortran_order': False, 'shape': (2, 2), }",
                 c.data);
    absl::StatusOr<NpyArray> array = ParseNpy(image);
    ASSERT_TRUE(array.ok()) << array.status();
    EXPECT_TRUE(array->is_integer);
    EXPECT_THAT(array->shape, ElementsAre(2, 2));
    EXPECT_THAT(array->int_data, ElementsAreArray(c.expected));
    EXPECT_TRUE(array->float_data.empty());
  }
}

TEST(NpyTest, RefusesMalformedFiles) {
  const std::string floats = RawBytes(RandomFloats(6, 2));
  struct Case {
    std::string image;
    std::string message;
  };
  const std::vector<Case> cases = {
      {NpyImage(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }",
                floats),
       "Fortran order"},
      {NpyImage(1,
                "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }",
                floats),
       "big-endian"},
      {NpyImage(1, "{'descr': '<c8', 'fortran_order': False, 'shape': (3,), }",
                floats),
       "'<c8' is not supported"},
      {NpyImage(1,
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), }",
                floats),
       "npy data is 24 bytes, but shape (2, 4) of '<f4' needs 32 (truncated"},
      {NpyImage(1, "{'descr': '<f4', 'fortran_order': False, }", floats),
       "no 'shape'"},
      {NpyImage(4, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }",
                floats),
       "version 4.0 is not supported"},
      {"PK\x03\x04 not an npy file", "missing the \\x93NUMPY magic"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.message);
    absl::StatusOr<NpyArray> array = ParseNpy(c.image);
    ASSERT_FALSE(array.ok());
    EXPECT_EQ(array.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(array.status().message(), HasSubstr(c.message));
  }
}

TEST(NpyTest, WriterProducesVersion1AlignedFloat32) {
  const std::vector<float> logits = RandomFloats(7 * 6, 3);
  const std::string path = TestPath("logits.npy");
  ASSERT_TRUE(WriteNpyFloat32(path, {7, 6}, logits).ok());

  absl::StatusOr<std::string> bytes = ReadWholeFile(path);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  ASSERT_GT(bytes->size(), 10u);
  EXPECT_EQ(bytes->substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const size_t header_len = static_cast<uint8_t>((*bytes)[8]) |
                            (static_cast<uint8_t>((*bytes)[9]) << 8);
  EXPECT_EQ((10 + header_len) % 64, 0u);
  const std::string header = bytes->substr(10, header_len);
  EXPECT_THAT(header, HasSubstr("'descr': '<f4'"));
  EXPECT_THAT(header, HasSubstr("'fortran_order': False"));
  EXPECT_THAT(header, HasSubstr("'shape': (7, 6)"));
  EXPECT_EQ(header.back(), '\n');
  EXPECT_EQ(bytes->substr(10 + header_len), RawBytes(logits));

  absl::StatusOr<NpyArray> array = ReadNpy(path);
  ASSERT_TRUE(array.ok()) << array.status();
  EXPECT_THAT(array->shape, ElementsAre(7, 6));
  EXPECT_THAT(array->float_data, ElementsAreArray(logits));
}

TEST(NpyTest, WriterFormatsOneDimensionalShapeAsPythonTuple) {
  absl::StatusOr<std::string> image = SerializeNpyFloat32({3}, {1, 2, 3});
  ASSERT_TRUE(image.ok());
  EXPECT_THAT(*image, HasSubstr("'shape': (3,)"));
}

TEST(NpyTest, WriterRefusesShapeDataMismatch) {
  absl::StatusOr<std::string> image =
      SerializeNpyFloat32({2, 3}, RandomFloats(5, 4));
  ASSERT_FALSE(image.ok());
  EXPECT_THAT(image.status().message(),
              HasSubstr("shape (2, 3) holds 6 values, but the data has 5"));
}

TEST(ReadWindowsTest, ReadsNpyOfShapeNTC) {
  const std::vector<float> values = RandomFloats(3 * 16 * 2, 5);
  const std::string path = TestPath("x.npy");
  ASSERT_TRUE(WriteNpyFloat32(path, {3, 16, 2}, values).ok());
  absl::StatusOr<WindowArray> windows = ReadWindows(path, 16, 2);
  ASSERT_TRUE(windows.ok()) << windows.status();
  EXPECT_EQ(windows->n, 3);
  EXPECT_EQ(windows->t, 16);
  EXPECT_EQ(windows->c, 2);
  EXPECT_EQ(windows->leftover_samples, 0);
  EXPECT_THAT(windows->data, ElementsAreArray(values));
}

TEST(ReadWindowsTest, ReadsNpyOfShapeTCAsOneWindow) {
  const std::vector<float> values = RandomFloats(16 * 3, 6);
  const std::string path = TestPath("x.NPY");
  ASSERT_TRUE(WriteNpyFloat32(path, {16, 3}, values).ok());
  absl::StatusOr<WindowArray> windows = ReadWindows(path, 16, 3);
  ASSERT_TRUE(windows.ok()) << windows.status();
  EXPECT_EQ(windows->n, 1);
  EXPECT_THAT(windows->data, ElementsAreArray(values));
}

TEST(ReadWindowsTest, ReadsIntegerNpyAsFloat) {
  const std::vector<int16_t> counts = {-3, 100, 7, 0, 12, -512};
  const std::string path = TestPath("counts.npy");
  WriteFile(path,
            NpyImage(1,
                     "{'descr': '<i2', 'fortran_order': False, 'shape': (1, "
                     "3, 2), }",
                     RawBytes(counts)));
  absl::StatusOr<WindowArray> windows = ReadWindows(path, 3, 2);
  ASSERT_TRUE(windows.ok()) << windows.status();
  EXPECT_THAT(windows->data, ElementsAre(-3, 100, 7, 0, 12, -512));
}

TEST(ReadWindowsTest, NpyWithWrongShapeNamesExpectedShape) {
  const std::string path = TestPath("x.npy");
  ASSERT_TRUE(
      WriteNpyFloat32(path, {4, 16, 6}, RandomFloats(4 * 16 * 6, 7)).ok());
  absl::StatusOr<WindowArray> windows = ReadWindows(path, 16, 3);
  ASSERT_FALSE(windows.ok());
  EXPECT_THAT(windows.status().message(),
              HasSubstr("shape (4, 16, 6) has 6 channels, expected 3 "
                        "(shape (N, 16, 3))"));

  windows = ReadWindows(path, 20, 6);
  ASSERT_FALSE(windows.ok());
  EXPECT_THAT(windows.status().message(),
              HasSubstr("has windows of 16 samples, expected 20"));

  ASSERT_TRUE(WriteNpyFloat32(path, {96}, RandomFloats(96, 8)).ok());
  windows = ReadWindows(path, 16, 6);
  ASSERT_FALSE(windows.ok());
  EXPECT_THAT(windows.status().message(),
              HasSubstr("shape (96,), expected (N, 16, 6) or (16, 6)"));
}

TEST(ReadWindowsTest, RefusesNonFiniteValues) {
  std::vector<float> values = RandomFloats(2 * 4 * 3, 9);
  values[(1 * 4 + 2) * 3 + 1] = std::nanf("");
  const std::string path = TestPath("x.f32");
  WriteFile(path, RawBytes(values));
  absl::StatusOr<WindowArray> windows = ReadWindows(path, 4, 3);
  ASSERT_FALSE(windows.ok());
  EXPECT_THAT(windows.status().message(),
              HasSubstr("window 1, sample 2, channel 1 is not finite"));
}

TEST(ReadWindowsTest, ReadsRawFloat32) {
  const std::vector<float> values = RandomFloats(5 * 8 * 3, 10);
  const std::string path = TestPath("x.f32");
  WriteFile(path, RawBytes(values));
  absl::StatusOr<WindowArray> windows = ReadWindows(path, 8, 3);
  ASSERT_TRUE(windows.ok()) << windows.status();
  EXPECT_EQ(windows->n, 5);
  EXPECT_EQ(windows->t, 8);
  EXPECT_EQ(windows->c, 3);
  EXPECT_THAT(windows->data, ElementsAreArray(values));
}

TEST(ReadWindowsTest, RawFloat32OfWrongSizeNamesSizeAndMultiple) {
  const std::string path = TestPath("x.f32");
  WriteFile(path, RawBytes(RandomFloats(2 * 8 * 3 + 1, 11)));
  absl::StatusOr<WindowArray> windows = ReadWindows(path, 8, 3);
  ASSERT_FALSE(windows.ok());
  EXPECT_EQ(windows.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(windows.status().message(),
              HasSubstr("size 196 bytes is not a positive multiple of 96 "
                        "(window_length 8 x channels 3 x 4 bytes"));
}

TEST(ReadWindowsTest, MissingFileIsNotFound) {
  const std::string path = TestPath("absent.csv");
  absl::StatusOr<WindowArray> windows = ReadWindows(path, 8, 3);
  ASSERT_FALSE(windows.ok());
  EXPECT_EQ(windows.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(windows.status().message(), HasSubstr(path));
}

TEST(ReadWindowsTest, UnknownExtensionIsRefused) {
  const std::string path = TestPath("x.txt");
  WriteFile(path, "1,2,3\n");
  absl::StatusOr<WindowArray> windows = ReadWindows(path, 1, 3);
  ASSERT_FALSE(windows.ok());
  EXPECT_THAT(windows.status().message(),
              HasSubstr("expected a .npy, .f32 or .csv file"));
}

TEST(CsvTest, ReadsWindowsWithHeaderAndReportsLeftover) {
  std::mt19937 rng(12);
  std::uniform_real_distribution<float> dist(-3.0f, 3.0f);
  std::string text = "acc_x, acc_y ,\"acc_z\"\r\n";
  std::vector<float> expected;
  for (int row = 0; row < 2 * 4 + 3; ++row) {
    for (int c = 0; c < 3; ++c) {
      // Round-trips through text exactly: a float printed with 9 digits.
      const float v = dist(rng);
      char buffer[32];
      std::snprintf(buffer, sizeof(buffer), c == 1 ? " %.9g  " : "%.9g", v);
      text += buffer;
      text += c < 2 ? "," : "\r\n";
      if (row < 8) expected.push_back(v);
    }
    if (row == 4) text += "\n  \n";  // blank lines are skipped
  }
  const std::string path = TestPath("x.csv");
  WriteFile(path, text);
  absl::StatusOr<WindowArray> windows = ReadWindows(path, 4, 3);
  ASSERT_TRUE(windows.ok()) << windows.status();
  EXPECT_EQ(windows->n, 2);
  EXPECT_EQ(windows->t, 4);
  EXPECT_EQ(windows->c, 3);
  EXPECT_EQ(windows->leftover_samples, 3);
  EXPECT_THAT(windows->column_names, ElementsAre("acc_x", "acc_y", "acc_z"));
  EXPECT_THAT(windows->data, ElementsAreArray(expected));
}

TEST(CsvTest, ReadsWindowsWithoutHeader) {
  absl::StatusOr<WindowArray> windows =
      ParseCsvWindows("1.5,-2\n+3e-2, 4\n5,6\n7,8.25\n", 2, 2);
  ASSERT_TRUE(windows.ok()) << windows.status();
  EXPECT_EQ(windows->n, 2);
  EXPECT_EQ(windows->leftover_samples, 0);
  EXPECT_TRUE(windows->column_names.empty());
  EXPECT_THAT(windows->data,
              ElementsAre(1.5f, -2.0f, 3e-2f, 4.0f, 5.0f, 6.0f, 7.0f, 8.25f));
}

TEST(CsvTest, ErrorsNameLineAndColumn) {
  struct Case {
    std::string text;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"a,b,c\n1,2,3\n4,5\n", "line 3: 2 columns, expected 3"},
      {"1,2,3\n4,5,6,7\n", "line 2: 4 columns, expected 3"},
      {"x,y\n", "line 1: header has 2 columns, expected 3"},
      {"1,2,3\n4,abc,6\n", "line 2, column 2: 'abc' is not a number"},
      {"1,2,3\n4,5,\n", "line 2, column 3: '' is not a number"},
      {"1,2,3\n\n4,NaN,6\n", "line 3, column 2: 'NaN' is not a finite"},
      {"1,2,-inf\n", "line 1, column 3: '-inf' is not a finite"},
      {"1e39,2,3\n", "line 1, column 1: '1e39' is not a finite"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    absl::StatusOr<WindowArray> windows = ParseCsvWindows(c.text, 1, 3);
    ASSERT_FALSE(windows.ok());
    EXPECT_EQ(windows.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(windows.status().message(), HasSubstr(c.message));
  }
}

TEST(CsvTest, FewerRowsThanOneWindowIsAnErrorForReadWindows) {
  const std::string path = TestPath("short.csv");
  WriteFile(path, "1,2\n3,4\n5,6\n");
  absl::StatusOr<WindowArray> windows = ReadWindows(path, 4, 2);
  ASSERT_FALSE(windows.ok());
  EXPECT_THAT(windows.status().message(),
              HasSubstr("no whole window of 4 samples (3 samples read)"));
}

TEST(ParseFiniteFloatTest, AcceptsDecimalNumbersOnly) {
  float v = -1.0f;
  EXPECT_EQ(ParseFiniteFloat("+1.5", &v), NumberParse::kOk);
  EXPECT_EQ(v, 1.5f);
  EXPECT_EQ(ParseFiniteFloat("-2.5e-003", &v), NumberParse::kOk);
  EXPECT_EQ(v, -2.5e-3f);
  EXPECT_EQ(ParseFiniteFloat("1e-50", &v), NumberParse::kOk);
  EXPECT_EQ(v, 0.0f);
  EXPECT_EQ(ParseFiniteFloat("1e40", &v), NumberParse::kNotFinite);
  EXPECT_EQ(ParseFiniteFloat("inf", &v), NumberParse::kNotFinite);
  EXPECT_EQ(ParseFiniteFloat("nan", &v), NumberParse::kNotFinite);
  EXPECT_EQ(ParseFiniteFloat("", &v), NumberParse::kNotANumber);
  EXPECT_EQ(ParseFiniteFloat("1.5x", &v), NumberParse::kNotANumber);
  EXPECT_EQ(ParseFiniteFloat(" 1", &v), NumberParse::kNotANumber);
  EXPECT_EQ(ParseFiniteFloat("+-1", &v), NumberParse::kNotANumber);
  EXPECT_EQ(ParseFiniteFloat("0x10", &v), NumberParse::kNotANumber);
}

}  // namespace
}  // namespace harmamba
