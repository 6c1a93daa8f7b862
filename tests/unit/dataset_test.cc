#include "model/dataset.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/array_io.h"
#include "tests/unit/test_files.h"

#ifndef HARMAMBA_SHARED_DIR
#error "HARMAMBA_SHARED_DIR must be defined by CMake"
#endif

namespace harmamba {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::NpyImage;
using testing::RandomFloats;
using testing::RawBytes;
using testing::WriteFile;

const std::vector<std::string> kUciClasses = {
    "WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS",
    "SITTING", "STANDING",         "LAYING"};

constexpr char kActivityLabels[] =
    "1 WALKING\n2 WALKING_UPSTAIRS\n3 WALKING_DOWNSTAIRS\n4 SITTING\n"
    "5 STANDING\n6 LAYING\n";

// A fresh, empty folder for the current test.
std::string TestDir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const fs::path dir =
      fs::path(::testing::TempDir()) /
      (std::string("dataset_") + info->test_suite_name() + "_" + info->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

// ---- binary layout ---------------------------------------------------------

struct BinaryFixture {
  std::vector<float> x;
  std::vector<uint8_t> y;
  std::vector<uint8_t> subject;
};

BinaryFixture WriteBinaryLayout(const std::string& dir,
                                const std::string& split, int n,
                                uint32_t seed) {
  BinaryFixture f;
  f.x = RandomFloats(static_cast<size_t>(n) * 128 * 9, seed);
  for (int i = 0; i < n; ++i) {
    f.y.push_back(static_cast<uint8_t>((i * 5 + 1) % 6));
    f.subject.push_back(static_cast<uint8_t>(1 + i % 3));
  }
  WriteFile(dir + "/X_" + split + ".f32", RawBytes(f.x));
  WriteFile(dir + "/y_" + split + ".u8", RawBytes(f.y));
  WriteFile(dir + "/subject_" + split + ".u8", RawBytes(f.subject));
  WriteFile(dir + "/activity_labels.txt", kActivityLabels);
  return f;
}

TEST(BinaryLayoutTest, LoadsWindowsLabelsSubjectsAndNames) {
  const std::string dir = TestDir();
  const BinaryFixture f = WriteBinaryLayout(dir, "test", 4, 21);
  absl::StatusOr<Dataset> dataset = LoadDataset(dir, "test");
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_EQ(dataset->n, 4);
  EXPECT_EQ(dataset->t, 128);
  EXPECT_EQ(dataset->c, 9);
  EXPECT_THAT(dataset->x, ElementsAreArray(f.x));
  EXPECT_THAT(dataset->y, ElementsAre(1, 0, 5, 4));
  EXPECT_THAT(dataset->subject, ElementsAre(1, 2, 3, 1));
  EXPECT_THAT(dataset->class_names, ElementsAreArray(kUciClasses));
  EXPECT_THAT(dataset->channel_names,
              ElementsAre("body_acc_x", "body_acc_y", "body_acc_z",
                          "body_gyro_x", "body_gyro_y", "body_gyro_z",
                          "total_acc_x", "total_acc_y", "total_acc_z"));
  EXPECT_TRUE(ValidateDataset(*dataset).ok());
}

TEST(BinaryLayoutTest, LabelCountMismatchIsNamed) {
  const std::string dir = TestDir();
  WriteBinaryLayout(dir, "test", 3, 22);
  WriteFile(dir + "/y_test.u8", std::string("\x01\x02", 2));
  absl::StatusOr<Dataset> dataset = LoadDataset(dir, "test");
  ASSERT_FALSE(dataset.ok());
  EXPECT_THAT(dataset.status().message(),
              HasSubstr("y_test.u8: 2 labels, expected one byte per window of "
                        "X_test.f32 (3)"));
}

TEST(BinaryLayoutTest, LabelOutsideClassesIsNamed) {
  const std::string dir = TestDir();
  WriteBinaryLayout(dir, "test", 3, 23);
  WriteFile(dir + "/y_test.u8", std::string("\x01\x06\x00", 3));
  absl::StatusOr<Dataset> dataset = LoadDataset(dir, "test");
  ASSERT_FALSE(dataset.ok());
  EXPECT_THAT(dataset.status().message(),
              HasSubstr("label 6 of window 1 is outside 0..5"));
}

TEST(BinaryLayoutTest, MissingSplitNamesFile) {
  const std::string dir = TestDir();
  WriteBinaryLayout(dir, "train", 2, 24);
  absl::StatusOr<Dataset> dataset = LoadDataset(dir, "test");
  ASSERT_FALSE(dataset.ok());
  EXPECT_EQ(dataset.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(dataset.status().message(),
              HasSubstr("X_test.f32: no such file"));
}

// ---- official UCI HAR Dataset folder ---------------------------------------

// "%16.7e" with a 3-digit exponent, as in the original files.
std::string UciNumber(float value) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.7e", static_cast<double>(value));
  std::string text = buffer;
  const size_t e = text.find('e');
  if (text.size() - e == 4) text.insert(e + 2, "0");  // e-04 -> e-004
  return std::string(16 - text.size(), ' ') + text;
}

struct UciFixture {
  int n = 0;
  int t = 0;
  // Expected x[(i * t + j) * 9 + c]: the float nearest to the written text.
  std::vector<float> x;
};

// Writes `root`/{split}/... with `n` windows of `t` samples. Channel c holds
// values around 10 * c, so a channel-order mix-up cannot go unnoticed.
UciFixture WriteUciLayout(const std::string& root, const std::string& split,
                          int n, int t, uint32_t seed, bool crlf) {
  UciFixture f;
  f.n = n;
  f.t = t;
  f.x.assign(static_cast<size_t>(n) * t * 9, 0.0f);
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const std::string eol = crlf ? "\r\n" : "\n";
  const std::vector<std::string>& channels = UciHarChannelNames();
  for (int c = 0; c < 9; ++c) {
    std::string text;
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < t; ++j) {
        const std::string number = UciNumber(10.0f * c + dist(rng) * 1e-3f);
        f.x[(static_cast<size_t>(i) * t + j) * 9 + c] =
            std::strtof(number.c_str(), nullptr);
        text += number;
      }
      text += eol;
    }
    WriteFile(root + "/" + split + "/Inertial Signals/" + channels[c] + "_" +
                  split + ".txt",
              text);
  }
  std::string labels;
  std::string subjects;
  for (int i = 0; i < n; ++i) {
    labels += std::to_string(1 + (i * 2 + 3) % 6) + eol;
    subjects += std::to_string(7 + i % 2) + eol;
  }
  WriteFile(root + "/" + split + "/y_" + split + ".txt", labels);
  WriteFile(root + "/" + split + "/subject_" + split + ".txt", subjects);
  WriteFile(root + "/activity_labels.txt", kActivityLabels);
  return f;
}

TEST(UciHarLayoutTest, LoadsFromParentFolderAndFromDatasetFolder) {
  const std::string dir = TestDir();
  const std::string root = dir + "/UCI HAR Dataset";
  const UciFixture f = WriteUciLayout(root, "test", 3, 128, 31, false);
  for (const std::string& path : {dir, root}) {
    SCOPED_TRACE(path);
    absl::StatusOr<Dataset> dataset = LoadDataset(path, "test");
    ASSERT_TRUE(dataset.ok()) << dataset.status();
    EXPECT_EQ(dataset->n, 3);
    EXPECT_EQ(dataset->t, 128);
    EXPECT_EQ(dataset->c, 9);
    EXPECT_THAT(dataset->x, ElementsAreArray(f.x));
    EXPECT_THAT(dataset->y, ElementsAre(3, 5, 1));  // labels 4, 6, 2
    EXPECT_THAT(dataset->subject, ElementsAre(7, 8, 7));
    EXPECT_THAT(dataset->class_names, ElementsAreArray(kUciClasses));
    EXPECT_EQ(dataset->channel_names, UciHarChannelNames());
  }
}

TEST(UciHarLayoutTest, AcceptsCrlfLineEndings) {
  const std::string root = TestDir() + "/UCI HAR Dataset";
  const UciFixture f = WriteUciLayout(root, "train", 2, 128, 32, true);
  absl::StatusOr<Dataset> dataset = LoadDataset(root, "train");
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_EQ(dataset->n, 2);
  EXPECT_THAT(dataset->x, ElementsAreArray(f.x));
}

TEST(UciHarLayoutTest, ShortLineIsNamed) {
  const std::string root = TestDir();
  WriteUciLayout(root, "test", 3, 128, 33, false);
  const std::string path = root + "/test/Inertial Signals/body_gyro_y_test.txt";
  std::string text;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < (i == 1 ? 127 : 128); ++j) text += UciNumber(0.5f);
    text += "\n";
  }
  WriteFile(path, text);
  absl::StatusOr<Dataset> dataset = LoadDataset(root, "test");
  ASSERT_FALSE(dataset.ok());
  EXPECT_THAT(dataset.status().message(),
              HasSubstr("body_gyro_y_test.txt: line 2: 127 values, expected "
                        "128 (as on line 1)"));
}

TEST(UciHarLayoutTest, NonNumericValueIsNamed) {
  const std::string root = TestDir();
  WriteUciLayout(root, "test", 2, 128, 34, false);
  std::string text;
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 128; ++j) {
      text += (i == 1 && j == 4) ? "  1.0000000e-0x1" : UciNumber(0.25f);
    }
    text += "\n";
  }
  WriteFile(root + "/test/Inertial Signals/total_acc_z_test.txt", text);
  absl::StatusOr<Dataset> dataset = LoadDataset(root, "test");
  ASSERT_FALSE(dataset.ok());
  EXPECT_THAT(dataset.status().message(),
              HasSubstr("total_acc_z_test.txt: line 2, value 5: "
                        "'1.0000000e-0x1' is not a number"));
}

TEST(UciHarLayoutTest, LabelOutsideActivityLabelsIsNamed) {
  const std::string root = TestDir();
  WriteUciLayout(root, "test", 2, 128, 35, false);
  WriteFile(root + "/test/y_test.txt", "3\n7\n");
  absl::StatusOr<Dataset> dataset = LoadDataset(root, "test");
  ASSERT_FALSE(dataset.ok());
  EXPECT_THAT(dataset.status().message(),
              HasSubstr("label 7 of window 1 is outside 1..6"));
}

// ---- authors' .npy layout ---------------------------------------------------

TEST(NpyLayoutTest, LoadsIntegerLabels) {
  const std::string dir = TestDir();
  const std::vector<float> x = RandomFloats(4 * 20 * 3, 41);
  ASSERT_TRUE(WriteNpyFloat32(dir + "/x_train.npy", {4, 20, 3}, x).ok());
  const std::vector<int64_t> y = {2, 0, 3, 2};
  WriteFile(
      dir + "/y_train.npy",
      NpyImage(1, "{'descr': '<i8', 'fortran_order': False, 'shape': (4,), }",
               RawBytes(y)));
  absl::StatusOr<Dataset> dataset = LoadDataset(dir, "train");
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_EQ(dataset->n, 4);
  EXPECT_EQ(dataset->t, 20);
  EXPECT_EQ(dataset->c, 3);
  EXPECT_THAT(dataset->x, ElementsAreArray(x));
  EXPECT_THAT(dataset->y, ElementsAre(2, 0, 3, 2));
  EXPECT_TRUE(dataset->subject.empty());
  EXPECT_THAT(dataset->class_names,
              ElementsAre("class_0", "class_1", "class_2", "class_3"));
  EXPECT_THAT(dataset->channel_names,
              ElementsAre("channel_0", "channel_1", "channel_2"));
}

TEST(NpyLayoutTest, LoadsOneHotLabelsWithNamesAndSubjects) {
  const std::string dir = TestDir();
  ASSERT_TRUE(WriteNpyFloat32(dir + "/X_test.npy", {3, 8, 2},
                              RandomFloats(3 * 8 * 2, 42))
                  .ok());
  // Rows: class 5, class 0, class 2, of 6.
  std::vector<float> one_hot(3 * 6, 0.0f);
  one_hot[0 * 6 + 5] = 1.0f;
  one_hot[1 * 6 + 0] = 1.0f;
  one_hot[2 * 6 + 2] = 1.0f;
  ASSERT_TRUE(WriteNpyFloat32(dir + "/y_test.npy", {3, 6}, one_hot).ok());
  const std::vector<int32_t> subjects = {4, 9, 4};
  WriteFile(
      dir + "/subject_test.npy",
      NpyImage(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }",
               RawBytes(subjects)));
  WriteFile(dir + "/activity_labels.txt", kActivityLabels);
  WriteFile(dir + "/channels.txt", "acc_x\nacc_y\n");
  absl::StatusOr<Dataset> dataset = LoadDataset(dir, "test");
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_THAT(dataset->y, ElementsAre(5, 0, 2));
  EXPECT_THAT(dataset->subject, ElementsAre(4, 9, 4));
  EXPECT_THAT(dataset->class_names, ElementsAreArray(kUciClasses));
  EXPECT_THAT(dataset->channel_names, ElementsAre("acc_x", "acc_y"));
}

TEST(NpyLayoutTest, LabelCountMismatchIsNamed) {
  const std::string dir = TestDir();
  ASSERT_TRUE(WriteNpyFloat32(dir + "/x_test.npy", {3, 8, 2},
                              RandomFloats(3 * 8 * 2, 43))
                  .ok());
  ASSERT_TRUE(WriteNpyFloat32(dir + "/y_test.npy", {4}, {0, 1, 1, 0}).ok());
  absl::StatusOr<Dataset> dataset = LoadDataset(dir, "test");
  ASSERT_FALSE(dataset.ok());
  EXPECT_THAT(dataset.status().message(),
              HasSubstr("y_test.npy: shape (4,), expected (3,) class indices "
                        "or (3, K) one-hot"));
}

TEST(NpyLayoutTest, FractionalLabelIsRefused) {
  const std::string dir = TestDir();
  ASSERT_TRUE(WriteNpyFloat32(dir + "/x_test.npy", {2, 8, 2},
                              RandomFloats(2 * 8 * 2, 44))
                  .ok());
  ASSERT_TRUE(WriteNpyFloat32(dir + "/y_test.npy", {2}, {1.0f, 0.5f}).ok());
  absl::StatusOr<Dataset> dataset = LoadDataset(dir, "test");
  ASSERT_FALSE(dataset.ok());
  EXPECT_THAT(dataset.status().message(),
              HasSubstr("label of window 1 is 0.5, expected a non-negative "
                        "integer class index"));
}

// ---- detection --------------------------------------------------------------

TEST(LoadDatasetTest, UnknownFolderListsWhatWasLookedFor) {
  const std::string dir = TestDir();
  WriteFile(dir + "/README.txt", "nothing here");
  absl::StatusOr<Dataset> dataset = LoadDataset(dir, "test");
  ASSERT_FALSE(dataset.ok());
  EXPECT_EQ(dataset.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(dataset.status().message(), HasSubstr("X_test.f32"));
  EXPECT_THAT(dataset.status().message(),
              HasSubstr("X_test.f32 or X_train.f32"));
  EXPECT_THAT(dataset.status().message(), HasSubstr("test/Inertial Signals/"));
  EXPECT_THAT(dataset.status().message(), HasSubstr("UCI HAR Dataset/"));
  EXPECT_THAT(dataset.status().message(), HasSubstr("x_test.npy"));
}

TEST(LoadDatasetTest, TrainSplitListsEachCandidateOnce) {
  const std::string dir = TestDir();
  WriteFile(dir + "/README.txt", "nothing here");
  absl::StatusOr<Dataset> dataset = LoadDataset(dir, "train");
  ASSERT_FALSE(dataset.ok());
  EXPECT_EQ(dataset.status().code(), absl::StatusCode::kNotFound);
  const std::string message(dataset.status().message());
  EXPECT_THAT(message, HasSubstr("looked for X_train.f32 (binary layout), "
                                 "train/Inertial Signals/ here or under"));
  EXPECT_THAT(message, HasSubstr("x_train.npy (npy layout)"));
  EXPECT_THAT(message, Not(HasSubstr(" or X_train.f32")));
  EXPECT_THAT(message, Not(HasSubstr(" or train/Inertial Signals/")));
  EXPECT_THAT(message, Not(HasSubstr(" or x_train.npy")));
}

TEST(LoadDatasetTest, ActivityLabelsMayContainSpacesButNeedAnId) {
  const std::string dir = TestDir();
  WriteBinaryLayout(dir, "test", 2, 25);
  WriteFile(dir + "/activity_labels.txt",
            "2 Walking upstairs\r\n1 Walking\r\n3 a\n4 b\n5 c\n6 d\n");
  absl::StatusOr<Dataset> dataset = LoadDataset(dir, "test");
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_THAT(dataset->class_names,
              ElementsAre("Walking", "Walking upstairs", "a", "b", "c", "d"));

  WriteFile(dir + "/activity_labels.txt", "1 WALKING\nSITTING\n");
  dataset = LoadDataset(dir, "test");
  ASSERT_FALSE(dataset.ok());
  EXPECT_THAT(dataset.status().message(),
              HasSubstr("activity_labels.txt: line 2: expected '<id> <NAME>', "
                        "got 'SITTING'"));
}

TEST(LoadDatasetTest, MissingFolderIsNotFound) {
  const std::string dir = TestDir() + "/absent";
  absl::StatusOr<Dataset> dataset = LoadDataset(dir, "train");
  ASSERT_FALSE(dataset.ok());
  EXPECT_EQ(dataset.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(dataset.status().message(), HasSubstr("no such directory"));
}

// ---- transformations --------------------------------------------------------

Dataset SmallDataset() {
  Dataset d;
  d.n = 5;
  d.t = 4;
  d.c = 3;
  d.x = RandomFloats(5 * 4 * 3, 51);
  d.y = {0, 1, 2, 1, 0};
  d.subject = {3, 5, 3, 8, 5};
  d.channel_names = {"a", "b", "c"};
  d.class_names = {"p", "q", "r"};
  return d;
}

TEST(SelectChannelsTest, KeepsRequestedChannelsInRequestedOrder) {
  const Dataset d = SmallDataset();
  absl::StatusOr<Dataset> selected = SelectChannels(d, {"c", "a"});
  ASSERT_TRUE(selected.ok()) << selected.status();
  EXPECT_EQ(selected->c, 2);
  EXPECT_THAT(selected->channel_names, ElementsAre("c", "a"));
  ASSERT_EQ(selected->x.size(), 5u * 4 * 2);
  for (int64_t s = 0; s < d.n * d.t; ++s) {
    EXPECT_EQ(selected->x[s * 2 + 0], d.x[s * 3 + 2]);
    EXPECT_EQ(selected->x[s * 2 + 1], d.x[s * 3 + 0]);
  }
  EXPECT_EQ(selected->y, d.y);
  EXPECT_EQ(selected->subject, d.subject);
  EXPECT_TRUE(ValidateDataset(*selected).ok());
}

TEST(SelectChannelsTest, UnknownOrRepeatedChannelIsRefused) {
  const Dataset d = SmallDataset();
  absl::StatusOr<Dataset> selected = SelectChannels(d, {"a", "total_acc_x"});
  ASSERT_FALSE(selected.ok());
  EXPECT_THAT(selected.status().message(),
              HasSubstr("unknown channel 'total_acc_x'; available: a, b, c"));
  selected = SelectChannels(d, {"b", "b"});
  ASSERT_FALSE(selected.ok());
  EXPECT_THAT(selected.status().message(), HasSubstr("'b' selected twice"));
}

TEST(SplitBySubjectsTest, PartitionsWindowsKeepingOrder) {
  const Dataset d = SmallDataset();
  absl::StatusOr<std::pair<Dataset, Dataset>> parts =
      SplitBySubjects(d, {5, 8});
  ASSERT_TRUE(parts.ok()) << parts.status();
  const Dataset& rest = parts->first;
  const Dataset& holdout = parts->second;
  EXPECT_EQ(rest.n, 2);
  EXPECT_EQ(holdout.n, 3);
  EXPECT_THAT(rest.subject, ElementsAre(3, 3));
  EXPECT_THAT(holdout.subject, ElementsAre(5, 8, 5));
  EXPECT_THAT(rest.y, ElementsAre(0, 2));
  EXPECT_THAT(holdout.y, ElementsAre(1, 1, 0));
  const int64_t w = d.t * d.c;
  EXPECT_TRUE(std::equal(rest.x.begin(), rest.x.begin() + w, d.window(0)));
  EXPECT_TRUE(std::equal(rest.x.begin() + w, rest.x.end(), d.window(2)));
  EXPECT_TRUE(std::equal(holdout.x.begin() + w, holdout.x.begin() + 2 * w,
                         d.window(3)));
  EXPECT_TRUE(ValidateDataset(rest).ok());
  EXPECT_TRUE(ValidateDataset(holdout).ok());
}

TEST(SplitBySubjectsTest, AbsentSubjectOrNoSubjectsIsRefused) {
  Dataset d = SmallDataset();
  absl::StatusOr<std::pair<Dataset, Dataset>> parts = SplitBySubjects(d, {4});
  ASSERT_FALSE(parts.ok());
  EXPECT_THAT(parts.status().message(),
              HasSubstr("holdout subject 4 has no window; subjects: 3 5 8"));
  d.subject.clear();
  parts = SplitBySubjects(d, {3});
  ASSERT_FALSE(parts.ok());
  EXPECT_THAT(parts.status().message(), HasSubstr("no subject ids"));
}

TEST(ChannelStatsTest, PopulationMeanAndStdPerChannel) {
  Dataset d;
  d.n = 2;
  d.t = 2;
  d.c = 2;
  // Channel 0: 1, 2, 3, 6 -> mean 3, variance (4+1+0+9)/4 = 3.5.
  // Channel 1: constant 7 -> std 0.
  d.x = {1, 7, 2, 7, 3, 7, 6, 7};
  const ChannelStatistics stats = ChannelStats(d);
  ASSERT_EQ(stats.mean.size(), 2u);
  EXPECT_FLOAT_EQ(stats.mean[0], 3.0f);
  EXPECT_FLOAT_EQ(stats.std[0], std::sqrt(3.5f));
  EXPECT_FLOAT_EQ(stats.mean[1], 7.0f);
  EXPECT_EQ(stats.std[1], 0.0f);
}

TEST(ChannelStatsTest, MatchesDirectFloat64Computation) {
  Dataset d = SmallDataset();
  for (float& v : d.x) v = 100.0f + v;  // large offset: catches 1-pass error
  const ChannelStatistics stats = ChannelStats(d);
  for (int64_t k = 0; k < d.c; ++k) {
    double sum = 0.0;
    for (int64_t s = 0; s < d.n * d.t; ++s) sum += d.x[s * d.c + k];
    const double mean = sum / (d.n * d.t);
    double sq = 0.0;
    for (int64_t s = 0; s < d.n * d.t; ++s) {
      sq += (d.x[s * d.c + k] - mean) * (d.x[s * d.c + k] - mean);
    }
    EXPECT_FLOAT_EQ(stats.mean[k], static_cast<float>(mean));
    EXPECT_FLOAT_EQ(stats.std[k],
                    static_cast<float>(std::sqrt(sq / (d.n * d.t))));
  }
}

TEST(ValidateDatasetTest, NamesTheInconsistentField) {
  Dataset d = SmallDataset();
  d.y.pop_back();
  EXPECT_THAT(ValidateDataset(d).message(),
              HasSubstr("y has 4 labels, expected n = 5"));
  d = SmallDataset();
  d.y[2] = 3;
  EXPECT_THAT(ValidateDataset(d).message(),
              HasSubstr("y[2] = 3 is outside 0..2"));
  d = SmallDataset();
  d.x[7] = INFINITY;
  EXPECT_THAT(ValidateDataset(d).message(),
              HasSubstr("window 0 has a non-finite value"));
}

// ---- the real UCI HAR data (shared/datasets/uci-har) ------------------------

std::string RealUciHarDir() {
  return std::string(HARMAMBA_SHARED_DIR) + "/datasets/uci-har";
}

TEST(RealUciHarTest, TestSplitHasPublishedCountsAndSubjects) {
  if (!fs::is_regular_file(RealUciHarDir() + "/X_test.f32")) {
    GTEST_SKIP() << "UCI HAR not found at " << RealUciHarDir()
                 << " (configure with -DHARMAMBA_SHARED_DIR=<dir holding "
                    "datasets/>)";
  }
  absl::StatusOr<Dataset> dataset = LoadDataset(RealUciHarDir(), "test");
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_EQ(dataset->n, 2947);
  EXPECT_EQ(dataset->t, 128);
  EXPECT_EQ(dataset->c, 9);
  std::vector<int> counts(6, 0);
  for (int32_t label : dataset->y) ++counts[label];
  EXPECT_THAT(counts, ElementsAre(496, 471, 420, 491, 532, 537));
  const std::set<int32_t> subjects(dataset->subject.begin(),
                                   dataset->subject.end());
  EXPECT_THAT(subjects, ElementsAre(2, 4, 9, 10, 12, 13, 18, 20, 24));
  EXPECT_THAT(dataset->class_names, ElementsAreArray(kUciClasses));
  // Neighbouring windows of one recording overlap by 64 samples.
  EXPECT_TRUE(std::equal(dataset->window(0) + 64 * 9,
                         dataset->window(0) + 128 * 9, dataset->window(1)));
}

TEST(RealUciHarTest, OfficialTextLayoutReadsLikeBinary) {
  if (!fs::is_regular_file(RealUciHarDir() + "/X_test.f32")) {
    GTEST_SKIP() << "UCI HAR not found at " << RealUciHarDir();
  }
  absl::StatusOr<Dataset> binary = LoadDataset(RealUciHarDir(), "test");
  ASSERT_TRUE(binary.ok()) << binary.status();
  // The first 50 windows, written back in the official text format.
  const int n = 50;
  const std::string root = TestDir() + "/UCI HAR Dataset";
  for (int c = 0; c < 9; ++c) {
    std::string text;
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < 128; ++j)
        text += UciNumber(binary->window(i)[j * 9 + c]);
      text += "\n";
    }
    WriteFile(root + "/test/Inertial Signals/" + UciHarChannelNames()[c] +
                  "_test.txt",
              text);
  }
  std::string labels, subjects;
  for (int i = 0; i < n; ++i) {
    labels += std::to_string(binary->y[i] + 1) + "\n";
    subjects += std::to_string(binary->subject[i]) + "\n";
  }
  WriteFile(root + "/test/y_test.txt", labels);
  WriteFile(root + "/test/subject_test.txt", subjects);
  WriteFile(root + "/activity_labels.txt", kActivityLabels);

  absl::StatusOr<Dataset> text = LoadDataset(root, "test");
  ASSERT_TRUE(text.ok()) << text.status();
  ASSERT_EQ(text->n, n);
  for (int64_t i = 0; i < n * 128 * 9; ++i) {
    // 8 significant digits: within 1e-7 relative (README precision note).
    ASSERT_NEAR(text->x[i], binary->x[i], 1e-7 * std::abs(binary->x[i]) + 1e-12)
        << "float " << i;
  }
  EXPECT_TRUE(std::equal(text->y.begin(), text->y.end(), binary->y.begin()));
  EXPECT_TRUE(std::equal(text->subject.begin(), text->subject.end(),
                         binary->subject.begin()));
}

}  // namespace
}  // namespace harmamba
