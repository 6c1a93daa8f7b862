// Classification metrics over a whole evaluation set (not averaged over
// batches), with scikit-learn's definitions and zero_division=0: a ratio whose
// denominator is 0 is 0.
//
// All functions are thread-safe (no shared state).
#ifndef HARMAMBA_MODEL_METRICS_H_
#define HARMAMBA_MODEL_METRICS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace harmamba {

struct ClassMetrics {
  double precision = 0.0;  // tp / (tp + fp)
  double recall = 0.0;     // tp / (tp + fn)
  double f1 = 0.0;         // 2 tp / (2 tp + fp + fn)
  int64_t support = 0;     // windows whose true class is this one
};

struct ClassificationReport {
  int num_classes = 0;
  int64_t total = 0;  // number of samples
  // Fractions in [0, 1].
  double accuracy = 0.0;
  // Unweighted mean of per-class F1 over all num_classes classes, including
  // classes absent from both y_true and y_pred (which count as 0), as
  // sklearn's f1_score(labels=range(K), average="macro", zero_division=0).
  double macro_f1 = 0.0;
  // Mean of per-class F1 weighted by support (average="weighted").
  double weighted_f1 = 0.0;
  std::vector<ClassMetrics> per_class;  // num_classes entries
  // confusion[true][predicted] = count; num_classes x num_classes.
  std::vector<std::vector<int64_t>> confusion;
};

// Computes the report. InvalidArgument when the vectors differ in length,
// num_classes < 1, or a label is outside [0, num_classes) (the message names
// the vector and the position). Empty inputs give all-zero metrics.
absl::StatusOr<ClassificationReport> Evaluate(const std::vector<int>& y_true,
                                              const std::vector<int>& y_pred,
                                              int num_classes);

// A fixed-width table like sklearn's classification_report (precision, recall,
// F1 and support per class, then accuracy, macro and weighted averages),
// followed by the confusion matrix (rows = true, columns = predicted).
// `class_names[k]` labels class k; a missing name prints as its index.
std::string FormatReport(const ClassificationReport& report,
                         const std::vector<std::string>& class_names);

// The report as a JSON object: {"accuracy", "macro_f1", "weighted_f1",
// "total", "per_class": [{"name", "precision", "recall", "f1", "support"}],
// "confusion": [[counts]]}. `indent` < 0 gives one line.
std::string ReportToJson(const ClassificationReport& report,
                         const std::vector<std::string>& class_names,
                         int indent = 2);

}  // namespace harmamba

#endif  // HARMAMBA_MODEL_METRICS_H_
