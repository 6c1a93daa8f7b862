#include "model/metrics.h"

#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace harmamba {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Confusion (rows true, columns predicted):
//   true 0: [2 1 1]   true 1: [1 2 0]   true 2: [0 0 3]
// class 0: tp 2, predicted 3, support 4 -> P 2/3, R 1/2, F1 4/7
// class 1: tp 2, predicted 3, support 3 -> P 2/3, R 2/3, F1 2/3
// class 2: tp 3, predicted 4, support 3 -> P 3/4, R 1,   F1 6/7
// accuracy 7/10; macro F1 (4/7 + 2/3 + 6/7) / 3 = 44/63;
// weighted F1 (4 * 4/7 + 3 * 2/3 + 3 * 6/7) / 10 = 24/35.
const std::vector<int> kTrue = {0, 0, 0, 0, 1, 1, 1, 2, 2, 2};
const std::vector<int> kPred = {0, 0, 1, 2, 1, 1, 0, 2, 2, 2};

TEST(EvaluateTest, MatchesHandComputedExample) {
  absl::StatusOr<ClassificationReport> report = Evaluate(kTrue, kPred, 3);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->num_classes, 3);
  EXPECT_EQ(report->total, 10);
  EXPECT_THAT(report->confusion,
              ElementsAre(ElementsAre(2, 1, 1), ElementsAre(1, 2, 0),
                          ElementsAre(0, 0, 3)));
  EXPECT_DOUBLE_EQ(report->accuracy, 0.7);
  EXPECT_DOUBLE_EQ(report->macro_f1, 44.0 / 63.0);
  EXPECT_DOUBLE_EQ(report->weighted_f1, 24.0 / 35.0);
  ASSERT_EQ(report->per_class.size(), 3u);
  const double precision[] = {2.0 / 3, 2.0 / 3, 3.0 / 4};
  const double recall[] = {1.0 / 2, 2.0 / 3, 1.0};
  const double f1[] = {4.0 / 7, 2.0 / 3, 6.0 / 7};
  const int64_t support[] = {4, 3, 3};
  for (int k = 0; k < 3; ++k) {
    SCOPED_TRACE(k);
    EXPECT_DOUBLE_EQ(report->per_class[k].precision, precision[k]);
    EXPECT_DOUBLE_EQ(report->per_class[k].recall, recall[k]);
    EXPECT_DOUBLE_EQ(report->per_class[k].f1, f1[k]);
    EXPECT_EQ(report->per_class[k].support, support[k]);
  }
}

TEST(EvaluateTest, IdentityPredictionScoresOne) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> label(0, 5);
  std::vector<int> y(200);
  for (int& v : y) v = label(rng);
  absl::StatusOr<ClassificationReport> report = Evaluate(y, y, 6);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->accuracy, 1.0);
  EXPECT_EQ(report->macro_f1, 1.0);
  EXPECT_EQ(report->weighted_f1, 1.0);
  int64_t total = 0;
  for (int k = 0; k < 6; ++k) {
    EXPECT_EQ(report->per_class[k].precision, 1.0);
    EXPECT_EQ(report->per_class[k].recall, 1.0);
    EXPECT_EQ(report->per_class[k].f1, 1.0);
    EXPECT_EQ(report->confusion[k][k], report->per_class[k].support);
    total += report->per_class[k].support;
  }
  EXPECT_EQ(total, 200);
}

TEST(EvaluateTest, ZeroDivisionCountsAsZero) {
  // Class 2 is predicted but never true; class 3 is neither.
  absl::StatusOr<ClassificationReport> report =
      Evaluate({0, 0, 1, 1}, {0, 2, 1, 1}, 4);
  ASSERT_TRUE(report.ok()) << report.status();
  const ClassMetrics& c2 = report->per_class[2];
  EXPECT_EQ(c2.precision, 0.0);  // 0 / 1
  EXPECT_EQ(c2.recall, 0.0);     // 0 / 0
  EXPECT_EQ(c2.f1, 0.0);
  EXPECT_EQ(c2.support, 0);
  const ClassMetrics& c3 = report->per_class[3];
  EXPECT_EQ(c3.precision, 0.0);
  EXPECT_EQ(c3.recall, 0.0);
  EXPECT_EQ(c3.f1, 0.0);
  // F1: class 0 = 2/3, class 1 = 1; macro over all 4 classes.
  EXPECT_DOUBLE_EQ(report->macro_f1, (2.0 / 3 + 1.0) / 4);
  EXPECT_DOUBLE_EQ(report->weighted_f1, (2 * 2.0 / 3 + 2 * 1.0) / 4);
  EXPECT_DOUBLE_EQ(report->accuracy, 0.75);
}

TEST(EvaluateTest, EmptyInputGivesZeros) {
  absl::StatusOr<ClassificationReport> report = Evaluate({}, {}, 2);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->total, 0);
  EXPECT_EQ(report->accuracy, 0.0);
  EXPECT_EQ(report->macro_f1, 0.0);
  EXPECT_EQ(report->weighted_f1, 0.0);
}

TEST(EvaluateTest, RefusesBadInput) {
  absl::StatusOr<ClassificationReport> report = Evaluate({0, 1}, {0}, 2);
  ASSERT_FALSE(report.ok());
  EXPECT_THAT(report.status().message(),
              HasSubstr("y_true has 2 labels but y_pred has 1"));
  report = Evaluate({0, 1, 1}, {0, 1, 5}, 3);
  ASSERT_FALSE(report.ok());
  EXPECT_THAT(report.status().message(),
              HasSubstr("y_pred[2] = 5 is outside 0..2"));
  report = Evaluate({0, -1}, {0, 1}, 3);
  ASSERT_FALSE(report.ok());
  EXPECT_THAT(report.status().message(),
              HasSubstr("y_true[1] = -1 is outside 0..2"));
  report = Evaluate({}, {}, 0);
  ASSERT_FALSE(report.ok());
  EXPECT_THAT(report.status().message(), HasSubstr("num_classes is 0"));
}

TEST(FormatReportTest, ShowsClassNamesMetricsAndConfusion) {
  absl::StatusOr<ClassificationReport> report = Evaluate(kTrue, kPred, 3);
  ASSERT_TRUE(report.ok());
  const std::string text =
      FormatReport(*report, {"WALKING", "SITTING", "LAYING"});
  EXPECT_THAT(text, HasSubstr("precision"));
  EXPECT_THAT(text, HasSubstr("WALKING     0.6667     0.5000     0.5714"));
  EXPECT_THAT(text, HasSubstr("LAYING     0.7500     1.0000     0.8571"));
  EXPECT_THAT(text, HasSubstr("accuracy"));
  EXPECT_THAT(text, HasSubstr("0.7000"));
  EXPECT_THAT(text, HasSubstr("macro avg"));
  EXPECT_THAT(text, HasSubstr("0.6984"));  // 44/63
  EXPECT_THAT(text, HasSubstr("weighted avg"));
  EXPECT_THAT(text, HasSubstr("0.6857"));  // 24/35
  EXPECT_THAT(text, HasSubstr("rows = true, columns = predicted"));
  EXPECT_THAT(text, HasSubstr("0 WALKING   2   1   1\n"));
  EXPECT_THAT(text, HasSubstr("2 LAYING    0   0   3\n"));
}

TEST(FormatReportTest, MissingNamesPrintAsIndices) {
  absl::StatusOr<ClassificationReport> report = Evaluate({0, 1}, {0, 1}, 2);
  ASSERT_TRUE(report.ok());
  const std::string text = FormatReport(*report, {});
  EXPECT_THAT(text, HasSubstr("           1     1.0000     1.0000     1.0000"));
}

TEST(ReportToJsonTest, HasRequiredKeysAndValues) {
  absl::StatusOr<ClassificationReport> report = Evaluate(kTrue, kPred, 3);
  ASSERT_TRUE(report.ok());
  const nlohmann::json json =
      nlohmann::json::parse(ReportToJson(*report, {"a", "b", "c"}));
  EXPECT_DOUBLE_EQ(json.at("accuracy").get<double>(), 0.7);
  EXPECT_DOUBLE_EQ(json.at("macro_f1").get<double>(), 44.0 / 63.0);
  EXPECT_DOUBLE_EQ(json.at("weighted_f1").get<double>(), 24.0 / 35.0);
  EXPECT_EQ(json.at("total").get<int64_t>(), 10);
  const nlohmann::json& per_class = json.at("per_class");
  ASSERT_EQ(per_class.size(), 3u);
  EXPECT_EQ(per_class[2].at("name"), "c");
  EXPECT_DOUBLE_EQ(per_class[2].at("precision").get<double>(), 0.75);
  EXPECT_DOUBLE_EQ(per_class[2].at("recall").get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(per_class[2].at("f1").get<double>(), 6.0 / 7.0);
  EXPECT_EQ(per_class[2].at("support").get<int64_t>(), 3);
  EXPECT_EQ(json.at("confusion"),
            nlohmann::json::parse("[[2, 1, 1], [1, 2, 0], [0, 0, 3]]"));
  // One line when indent < 0.
  EXPECT_EQ(ReportToJson(*report, {}, -1).find('\n'), std::string::npos);
}

}  // namespace
}  // namespace harmamba
