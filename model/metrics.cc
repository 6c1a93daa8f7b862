#include "model/metrics.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace harmamba {
namespace {

double SafeRatio(double numerator, double denominator) {
  return denominator == 0.0 ? 0.0 : numerator / denominator;
}

std::string ClassName(const std::vector<std::string>& names, int k) {
  return k < static_cast<int>(names.size()) ? names[k] : absl::StrCat(k);
}

}  // namespace

absl::StatusOr<ClassificationReport> Evaluate(const std::vector<int>& y_true,
                                              const std::vector<int>& y_pred,
                                              int num_classes) {
  if (num_classes < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_classes is ", num_classes, ", expected >= 1"));
  }
  if (y_true.size() != y_pred.size()) {
    return absl::InvalidArgumentError(absl::StrCat("y_true has ", y_true.size(),
                                                   " labels but y_pred has ",
                                                   y_pred.size()));
  }
  ClassificationReport report;
  report.num_classes = num_classes;
  report.total = static_cast<int64_t>(y_true.size());
  report.confusion.assign(num_classes, std::vector<int64_t>(num_classes, 0));
  for (size_t i = 0; i < y_true.size(); ++i) {
    for (const auto& [name, labels] :
         {std::pair<const char*, const std::vector<int>*>{"y_true", &y_true},
          {"y_pred", &y_pred}}) {
      const int label = (*labels)[i];
      if (label < 0 || label >= num_classes) {
        return absl::InvalidArgumentError(absl::StrCat(
            name, "[", i, "] = ", label, " is outside 0..", num_classes - 1));
      }
    }
    ++report.confusion[y_true[i]][y_pred[i]];
  }

  int64_t correct = 0;
  double f1_sum = 0.0;
  double weighted_f1_sum = 0.0;
  report.per_class.resize(num_classes);
  for (int k = 0; k < num_classes; ++k) {
    const int64_t tp = report.confusion[k][k];
    int64_t predicted = 0;  // column sum: tp + fp
    int64_t actual = 0;     // row sum: tp + fn
    for (int j = 0; j < num_classes; ++j) {
      predicted += report.confusion[j][k];
      actual += report.confusion[k][j];
    }
    ClassMetrics& metrics = report.per_class[k];
    metrics.support = actual;
    metrics.precision = SafeRatio(tp, predicted);
    metrics.recall = SafeRatio(tp, actual);
    metrics.f1 = SafeRatio(2.0 * tp, predicted + actual);
    correct += tp;
    f1_sum += metrics.f1;
    weighted_f1_sum += metrics.f1 * actual;
  }
  report.accuracy = SafeRatio(correct, report.total);
  report.macro_f1 = f1_sum / num_classes;
  report.weighted_f1 = SafeRatio(weighted_f1_sum, report.total);
  return report;
}

std::string FormatReport(const ClassificationReport& report,
                         const std::vector<std::string>& class_names) {
  size_t name_width = std::string("weighted avg").size();
  for (int k = 0; k < report.num_classes; ++k) {
    name_width = std::max(name_width, ClassName(class_names, k).size());
  }
  const int w = static_cast<int>(name_width);
  std::string out =
      absl::StrFormat("%*s %10s %10s %10s %10s\n", w, "", "precision", "recall",
                      "f1-score", "support");
  double macro_precision = 0.0;
  double macro_recall = 0.0;
  double weighted_precision = 0.0;
  double weighted_recall = 0.0;
  for (int k = 0; k < report.num_classes; ++k) {
    const ClassMetrics& m = report.per_class[k];
    absl::StrAppendFormat(&out, "%*s %10.4f %10.4f %10.4f %10d\n", w,
                          ClassName(class_names, k), m.precision, m.recall,
                          m.f1, m.support);
    macro_precision += m.precision / report.num_classes;
    macro_recall += m.recall / report.num_classes;
    weighted_precision += SafeRatio(m.precision * m.support, report.total);
    weighted_recall += SafeRatio(m.recall * m.support, report.total);
  }
  absl::StrAppendFormat(&out, "\n%*s %10s %10s %10.4f %10d\n", w, "accuracy",
                        "", "", report.accuracy, report.total);
  absl::StrAppendFormat(&out, "%*s %10.4f %10.4f %10.4f %10d\n", w, "macro avg",
                        macro_precision, macro_recall, report.macro_f1,
                        report.total);
  absl::StrAppendFormat(&out, "%*s %10.4f %10.4f %10.4f %10d\n", w,
                        "weighted avg", weighted_precision, weighted_recall,
                        report.weighted_f1, report.total);

  // Confusion matrix. Rows are "index name"; columns are numbered by class
  // index to stay narrow.
  std::vector<std::string> row_labels;
  size_t label_width = 0;
  for (int k = 0; k < report.num_classes; ++k) {
    row_labels.push_back(absl::StrCat(k, " ", ClassName(class_names, k)));
    label_width = std::max(label_width, row_labels.back().size());
  }
  int64_t largest = 0;
  for (const auto& row : report.confusion) {
    for (int64_t count : row) largest = std::max(largest, count);
  }
  const int cw = std::max<int>(
      {static_cast<int>(absl::StrCat(largest).size()),
       static_cast<int>(absl::StrCat(report.num_classes - 1).size()), 3});
  const int lw = static_cast<int>(label_width);
  absl::StrAppendFormat(
      &out, "\nConfusion matrix (rows = true, columns = predicted):\n%-*s", lw,
      "");
  for (int k = 0; k < report.num_classes; ++k) {
    absl::StrAppendFormat(&out, " %*d", cw, k);
  }
  out += "\n";
  for (int k = 0; k < report.num_classes; ++k) {
    absl::StrAppendFormat(&out, "%-*s", lw, row_labels[k]);
    for (int64_t count : report.confusion[k]) {
      absl::StrAppendFormat(&out, " %*d", cw, count);
    }
    out += "\n";
  }
  return out;
}

std::string ReportToJson(const ClassificationReport& report,
                         const std::vector<std::string>& class_names,
                         int indent) {
  nlohmann::json json;
  json["accuracy"] = report.accuracy;
  json["macro_f1"] = report.macro_f1;
  json["weighted_f1"] = report.weighted_f1;
  json["total"] = report.total;
  nlohmann::json per_class = nlohmann::json::array();
  for (int k = 0; k < report.num_classes; ++k) {
    const ClassMetrics& m = report.per_class[k];
    per_class.push_back({{"name", ClassName(class_names, k)},
                         {"precision", m.precision},
                         {"recall", m.recall},
                         {"f1", m.f1},
                         {"support", m.support}});
  }
  json["per_class"] = std::move(per_class);
  json["confusion"] = report.confusion;
  // Replace invalid UTF-8 in class names rather than throw.
  return json.dump(indent, ' ', false,
                   nlohmann::json::error_handler_t::replace);
}

}  // namespace harmamba
