#include "model/dataset.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "model/array_io.h"
#include "model/status_macros.h"

namespace harmamba {
namespace {

namespace fs = std::filesystem;

constexpr int kUciWindowLength = 128;
constexpr int kUciChannels = 9;

std::string JoinPath(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / name).string();
}

// A shape as Python prints a tuple: (4,), (2, 3).
std::string ShapeString(const std::vector<int64_t>& shape) {
  if (shape.size() == 1) return absl::StrCat("(", shape[0], ",)");
  return absl::StrCat("(", absl::StrJoin(shape, ", "), ")");
}

bool IsFile(const std::string& path) {
  std::error_code error;
  return fs::is_regular_file(path, error);
}

bool IsDirectory(const std::string& path) {
  std::error_code error;
  return fs::is_directory(path, error);
}

// Non-blank lines of `text` with their 1-based line numbers; '\r' stripped.
std::vector<std::pair<int64_t, absl::string_view>> NonBlankLines(
    absl::string_view text) {
  std::vector<std::pair<int64_t, absl::string_view>> lines;
  int64_t number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    line = absl::StripAsciiWhitespace(line);
    if (!line.empty()) lines.emplace_back(number, line);
  }
  return lines;
}

// "<id> <NAME>" per line with ids 1..K (any order) -> names by id - 1.
absl::StatusOr<std::vector<std::string>> ReadActivityLabels(
    const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadWholeFile(path));
  std::map<int, std::string> by_id;
  for (const auto& [number, line] : NonBlankLines(text)) {
    // The name is the rest of the line, so names with spaces survive.
    const size_t space = line.find_first_of(" \t");
    int id = 0;
    const absl::string_view name =
        space == absl::string_view::npos
            ? absl::string_view()
            : absl::StripAsciiWhitespace(line.substr(space));
    if (name.empty() || !absl::SimpleAtoi(line.substr(0, space), &id)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": line ", number,
                       ": expected '<id> <NAME>', got '", line, "'"));
    }
    if (!by_id.emplace(id, std::string(name)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": line ", number, ": id ", id, " repeated"));
    }
  }
  std::vector<std::string> names;
  for (const auto& [id, name] : by_id) {
    if (id != static_cast<int>(names.size()) + 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": ids must be 1..", by_id.size(),
                       " without gaps; found ", id));
    }
    names.push_back(name);
  }
  if (names.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": no class names"));
  }
  return names;
}

// One integer per non-blank line.
absl::StatusOr<std::vector<int64_t>> ReadIntegerLines(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadWholeFile(path));
  std::vector<int64_t> values;
  for (const auto& [number, line] : NonBlankLines(text)) {
    int64_t value = 0;
    if (!absl::SimpleAtoi(line, &value)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": line ", number, ": '", line, "' is not an integer"));
    }
    values.push_back(value);
  }
  return values;
}

// A text matrix: one row per non-blank line, values separated by spaces or
// tabs, every row the same length. Hand-written scanning: the official UCI HAR
// train split is 9 files of 7352 x 128 values.
struct TextMatrix {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<float> values;  // row-major
};

absl::StatusOr<TextMatrix> ReadTextMatrix(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadWholeFile(path));
  TextMatrix matrix;
  matrix.values.reserve(text.size() / 16 + 1);
  const char* p = text.data();
  const char* const end = p + text.size();
  int64_t line = 0;
  int64_t first_line = 0;
  auto is_blank = [](char ch) { return ch == ' ' || ch == '\t' || ch == '\r'; };
  while (p < end) {
    ++line;
    const char* eol = static_cast<const char*>(std::memchr(p, '\n', end - p));
    if (eol == nullptr) eol = end;
    int64_t count = 0;
    const char* q = p;
    while (true) {
      while (q < eol && is_blank(*q)) ++q;
      if (q == eol) break;
      const char* token = q;
      while (q < eol && !is_blank(*q)) ++q;
      float value = 0.0f;
      const absl::string_view token_text(token, q - token);
      const NumberParse parsed =
          ParseFiniteFloat(std::string_view(token, q - token), &value);
      if (parsed != NumberParse::kOk) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": line ", line, ", value ", count + 1, ": '", token_text,
            parsed == NumberParse::kNotFinite ? "' is not finite"
                                              : "' is not a number"));
      }
      matrix.values.push_back(value);
      ++count;
    }
    p = eol + 1;
    if (count == 0) continue;
    if (matrix.rows == 0) {
      matrix.cols = count;
      first_line = line;
    } else if (count != matrix.cols) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": line ", line, ": ", count, " values, expected ",
                       matrix.cols, " (as on line ", first_line, ")"));
    }
    ++matrix.rows;
  }
  return matrix;
}

// Labels read as 1..K (official text) or 0..K-1 (binary), checked against K.
absl::StatusOr<std::vector<int32_t>> ToClassIndices(
    const std::string& path, const std::vector<int64_t>& raw, int64_t first_id,
    int num_classes) {
  std::vector<int32_t> labels(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    const int64_t index = raw[i] - first_id;
    if (index < 0 || index >= num_classes) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": label ", raw[i], " of window ", i, " is outside ", first_id,
          "..", first_id + num_classes - 1, " (", num_classes,
          " classes in activity_labels.txt)"));
    }
    labels[i] = static_cast<int32_t>(index);
  }
  return labels;
}

absl::StatusOr<std::vector<int32_t>> ToSubjects(const std::string& path,
                                                const std::vector<int64_t>& raw,
                                                int64_t n) {
  if (static_cast<int64_t>(raw.size()) != n) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", raw.size(),
                     " subject ids, expected one per window (", n, ")"));
  }
  std::vector<int32_t> subjects(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] < 0 || raw[i] > INT32_MAX) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": subject id ", raw[i], " out of range"));
    }
    subjects[i] = static_cast<int32_t>(raw[i]);
  }
  return subjects;
}

std::vector<int64_t> BytesToIntegers(const std::string& bytes) {
  std::vector<int64_t> values(bytes.size());
  for (size_t i = 0; i < bytes.size(); ++i) {
    values[i] = static_cast<uint8_t>(bytes[i]);
  }
  return values;
}

// The first of `names` that exists in `dir`, or "" when none does.
std::string FirstExisting(const std::string& dir,
                          const std::vector<std::string>& names) {
  for (const std::string& name : names) {
    const std::string path = JoinPath(dir, name);
    if (IsFile(path)) return path;
  }
  return "";
}

// Labels from a (N,) integer/integral-float array or the argmax of (N, K).
absl::StatusOr<std::vector<int64_t>> NpyLabels(const std::string& path,
                                               const NpyArray& array, int64_t n,
                                               int64_t* width) {
  *width = 0;
  if (array.shape.empty() || array.shape[0] != n ||
      (array.shape.size() != 1 && array.shape.size() != 2) ||
      (array.shape.size() == 2 && array.shape[1] == 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": shape ", ShapeString(array.shape), ", expected (",
                     n, ",) class indices or (", n, ", K) one-hot"));
  }
  auto at = [&array](int64_t i) -> double {
    return array.is_integer ? static_cast<double>(array.int_data[i])
                            : static_cast<double>(array.float_data[i]);
  };
  std::vector<int64_t> labels(n);
  if (array.shape.size() == 2) {
    const int64_t k = array.shape[1];
    *width = k;
    for (int64_t i = 0; i < n; ++i) {
      int64_t best = 0;
      for (int64_t j = 1; j < k; ++j) {
        if (at(i * k + j) > at(i * k + best)) best = j;
      }
      labels[i] = best;
    }
    return labels;
  }
  for (int64_t i = 0; i < n; ++i) {
    const double value = at(i);
    if (!(value >= 0) || value != std::floor(value) || value > INT32_MAX) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": label of window ", i, " is ", value,
                       ", expected a non-negative integer class index"));
    }
    labels[i] = static_cast<int64_t>(value);
  }
  return labels;
}

}  // namespace

const std::vector<std::string>& UciHarChannelNames() {
  static const std::vector<std::string>* const kNames =
      new std::vector<std::string>{"body_acc_x",  "body_acc_y",  "body_acc_z",
                                   "body_gyro_x", "body_gyro_y", "body_gyro_z",
                                   "total_acc_x", "total_acc_y", "total_acc_z"};
  return *kNames;
}

absl::Status ValidateDataset(const Dataset& dataset) {
  if (dataset.n < 0 || dataset.t <= 0 || dataset.c <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("dataset dims n=", dataset.n, " t=", dataset.t,
                     " c=", dataset.c, ": t and c must be positive"));
  }
  if (static_cast<int64_t>(dataset.x.size()) !=
      dataset.n * dataset.t * dataset.c) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dataset x has ", dataset.x.size(),
        " floats, expected n*t*c = ", dataset.n * dataset.t * dataset.c));
  }
  if (static_cast<int64_t>(dataset.y.size()) != dataset.n) {
    return absl::InvalidArgumentError(
        absl::StrCat("dataset y has ", dataset.y.size(),
                     " labels, expected n = ", dataset.n));
  }
  if (!dataset.subject.empty() &&
      static_cast<int64_t>(dataset.subject.size()) != dataset.n) {
    return absl::InvalidArgumentError(
        absl::StrCat("dataset subject has ", dataset.subject.size(),
                     " ids, expected 0 or n = ", dataset.n));
  }
  if (static_cast<int64_t>(dataset.channel_names.size()) != dataset.c) {
    return absl::InvalidArgumentError(
        absl::StrCat("dataset channel_names has ", dataset.channel_names.size(),
                     " names, expected c = ", dataset.c));
  }
  if (dataset.class_names.empty()) {
    return absl::InvalidArgumentError("dataset class_names is empty");
  }
  for (int64_t i = 0; i < dataset.n; ++i) {
    if (dataset.y[i] < 0 || dataset.y[i] >= dataset.num_classes()) {
      return absl::InvalidArgumentError(
          absl::StrCat("dataset y[", i, "] = ", dataset.y[i], " is outside 0..",
                       dataset.num_classes() - 1));
    }
  }
  for (size_t i = 0; i < dataset.x.size(); ++i) {
    if (!std::isfinite(dataset.x[i])) {
      const int64_t window = static_cast<int64_t>(i) / (dataset.t * dataset.c);
      return absl::InvalidArgumentError(
          absl::StrCat("dataset x of window ", window,
                       " has a non-finite value (", dataset.x[i], ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Dataset> LoadBinaryDataset(const std::string& dir,
                                          const std::string& split) {
  Dataset dataset;
  dataset.t = kUciWindowLength;
  dataset.c = kUciChannels;
  dataset.channel_names = UciHarChannelNames();
  ASSIGN_OR_RETURN(WindowArray windows,
                   ReadF32Windows(JoinPath(dir, "X_" + split + ".f32"),
                                  kUciWindowLength, kUciChannels));
  dataset.n = windows.n;
  dataset.x = std::move(windows.data);

  ASSIGN_OR_RETURN(dataset.class_names,
                   ReadActivityLabels(JoinPath(dir, "activity_labels.txt")));

  const std::string y_path = JoinPath(dir, "y_" + split + ".u8");
  ASSIGN_OR_RETURN(std::string y_bytes, ReadWholeFile(y_path));
  if (static_cast<int64_t>(y_bytes.size()) != dataset.n) {
    return absl::InvalidArgumentError(
        absl::StrCat(y_path, ": ", y_bytes.size(),
                     " labels, expected one byte per window of X_", split,
                     ".f32 (", dataset.n, ")"));
  }
  ASSIGN_OR_RETURN(dataset.y, ToClassIndices(y_path, BytesToIntegers(y_bytes),
                                             0, dataset.num_classes()));

  const std::string subject_path = JoinPath(dir, "subject_" + split + ".u8");
  if (IsFile(subject_path)) {
    ASSIGN_OR_RETURN(std::string subject_bytes, ReadWholeFile(subject_path));
    ASSIGN_OR_RETURN(
        dataset.subject,
        ToSubjects(subject_path, BytesToIntegers(subject_bytes), dataset.n));
  }
  RETURN_IF_ERROR(ValidateDataset(dataset));
  return dataset;
}

absl::StatusOr<Dataset> LoadUciHarDataset(const std::string& root,
                                          const std::string& split) {
  const std::string split_dir = JoinPath(root, split);
  const std::string signals_dir = JoinPath(split_dir, "Inertial Signals");
  if (!IsDirectory(signals_dir)) {
    return absl::NotFoundError(absl::StrCat(
        signals_dir, ": no such directory (UCI HAR Dataset layout)"));
  }
  Dataset dataset;
  dataset.c = kUciChannels;
  dataset.channel_names = UciHarChannelNames();
  for (int channel = 0; channel < kUciChannels; ++channel) {
    const std::string path = JoinPath(
        signals_dir, dataset.channel_names[channel] + "_" + split + ".txt");
    ASSIGN_OR_RETURN(TextMatrix matrix, ReadTextMatrix(path));
    if (channel == 0) {
      if (matrix.rows == 0) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": no windows"));
      }
      dataset.n = matrix.rows;
      dataset.t = matrix.cols;
      dataset.x.resize(dataset.n * dataset.t * dataset.c);
    } else if (matrix.rows != dataset.n || matrix.cols != dataset.t) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": ", matrix.rows, " windows of ", matrix.cols,
          " samples, expected ", dataset.n, " of ", dataset.t, " (as in ",
          dataset.channel_names[0], "_", split, ".txt)"));
    }
    const int64_t samples = dataset.n * dataset.t;
    for (int64_t s = 0; s < samples; ++s) {
      dataset.x[s * kUciChannels + channel] = matrix.values[s];
    }
  }

  ASSIGN_OR_RETURN(dataset.class_names,
                   ReadActivityLabels(JoinPath(root, "activity_labels.txt")));
  const std::string y_path = JoinPath(split_dir, "y_" + split + ".txt");
  ASSIGN_OR_RETURN(std::vector<int64_t> raw_labels, ReadIntegerLines(y_path));
  if (static_cast<int64_t>(raw_labels.size()) != dataset.n) {
    return absl::InvalidArgumentError(
        absl::StrCat(y_path, ": ", raw_labels.size(),
                     " labels, expected one per window (", dataset.n, ")"));
  }
  ASSIGN_OR_RETURN(
      dataset.y, ToClassIndices(y_path, raw_labels, 1, dataset.num_classes()));

  const std::string subject_path =
      JoinPath(split_dir, "subject_" + split + ".txt");
  if (IsFile(subject_path)) {
    ASSIGN_OR_RETURN(std::vector<int64_t> raw_subjects,
                     ReadIntegerLines(subject_path));
    ASSIGN_OR_RETURN(dataset.subject,
                     ToSubjects(subject_path, raw_subjects, dataset.n));
  }
  RETURN_IF_ERROR(ValidateDataset(dataset));
  return dataset;
}

absl::StatusOr<Dataset> LoadNpyDataset(const std::string& dir,
                                       const std::string& split) {
  const std::string x_path =
      FirstExisting(dir, {"x_" + split + ".npy", "X_" + split + ".npy"});
  if (x_path.empty()) {
    return absl::NotFoundError(absl::StrCat(dir, ": no x_", split, ".npy or X_",
                                            split, ".npy (npy layout)"));
  }
  const std::string y_path =
      FirstExisting(dir, {"y_" + split + ".npy", "Y_" + split + ".npy"});
  if (y_path.empty()) {
    return absl::NotFoundError(absl::StrCat(dir, ": no y_", split, ".npy or Y_",
                                            split, ".npy (npy layout)"));
  }
  Dataset dataset;
  {
    ASSIGN_OR_RETURN(NpyArray x, ReadNpy(x_path));
    if (x.shape.size() != 3 || x.shape[1] == 0 || x.shape[2] == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(x_path, ": shape ", ShapeString(x.shape),
                       ", expected (N, T, C) with T, C > 0"));
    }
    dataset.n = x.shape[0];
    dataset.t = x.shape[1];
    dataset.c = x.shape[2];
    if (x.is_integer) {
      dataset.x.assign(x.int_data.begin(), x.int_data.end());
    } else {
      dataset.x = std::move(x.float_data);
    }
  }
  ASSIGN_OR_RETURN(NpyArray y, ReadNpy(y_path));
  int64_t one_hot_width = 0;
  ASSIGN_OR_RETURN(std::vector<int64_t> labels,
                   NpyLabels(y_path, y, dataset.n, &one_hot_width));

  const std::string labels_path = JoinPath(dir, "activity_labels.txt");
  if (IsFile(labels_path)) {
    ASSIGN_OR_RETURN(dataset.class_names, ReadActivityLabels(labels_path));
  } else {
    int64_t num_classes = one_hot_width;
    for (int64_t label : labels) num_classes = std::max(num_classes, label + 1);
    for (int64_t k = 0; k < num_classes; ++k) {
      dataset.class_names.push_back(absl::StrCat("class_", k));
    }
  }
  ASSIGN_OR_RETURN(dataset.y,
                   ToClassIndices(y_path, labels, 0, dataset.num_classes()));

  const std::string channels_path = JoinPath(dir, "channels.txt");
  if (IsFile(channels_path)) {
    ASSIGN_OR_RETURN(std::string text, ReadWholeFile(channels_path));
    for (const auto& [number, line] : NonBlankLines(text)) {
      dataset.channel_names.emplace_back(line);
    }
    if (static_cast<int64_t>(dataset.channel_names.size()) != dataset.c) {
      return absl::InvalidArgumentError(
          absl::StrCat(channels_path, ": ", dataset.channel_names.size(),
                       " names, expected one per channel of ", x_path, " (",
                       dataset.c, ")"));
    }
  } else {
    for (int64_t k = 0; k < dataset.c; ++k) {
      dataset.channel_names.push_back(absl::StrCat("channel_", k));
    }
  }

  const std::string subject_path = JoinPath(dir, "subject_" + split + ".npy");
  if (IsFile(subject_path)) {
    ASSIGN_OR_RETURN(NpyArray subjects, ReadNpy(subject_path));
    if (!subjects.is_integer || subjects.shape.size() != 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          subject_path, ": expected a 1-D integer array, got '", subjects.descr,
          "' of shape ", ShapeString(subjects.shape)));
    }
    ASSIGN_OR_RETURN(dataset.subject,
                     ToSubjects(subject_path, subjects.int_data, dataset.n));
  }
  RETURN_IF_ERROR(ValidateDataset(dataset));
  return dataset;
}

absl::StatusOr<Dataset> LoadDataset(const std::string& path,
                                    const std::string& split) {
  if (!IsDirectory(path)) {
    std::error_code error;
    if (fs::exists(path, error)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": not a directory (expected a dataset folder)"));
    }
    return absl::NotFoundError(
        absl::StrCat(path, ": no such directory (expected a dataset folder)"));
  }
  if (IsFile(JoinPath(path, "X_" + split + ".f32")) ||
      IsFile(JoinPath(path, "X_train.f32"))) {
    return LoadBinaryDataset(path, split);
  }
  for (const std::string& root : {path, JoinPath(path, "UCI HAR Dataset")}) {
    if (IsDirectory(JoinPath(JoinPath(root, split), "Inertial Signals")) ||
        IsDirectory(JoinPath(JoinPath(root, "train"), "Inertial Signals"))) {
      return LoadUciHarDataset(root, split);
    }
  }
  for (const std::string& name :
       {"x_" + split + ".npy", "X_" + split + ".npy",
        std::string("x_train.npy"), std::string("X_train.npy")}) {
    if (IsFile(JoinPath(path, name))) return LoadNpyDataset(path, split);
  }
  // Each layout is recognised by its files for `split` or for "train".
  auto split_or_train = [&split](const std::string& prefix,
                                 const std::string& suffix) {
    if (split == "train") return absl::StrCat(prefix, split, suffix);
    return absl::StrCat(prefix, split, suffix, " or ", prefix, "train", suffix);
  };
  return absl::NotFoundError(absl::StrCat(
      path, ": no dataset found for split '", split, "'; looked for ",
      split_or_train("X_", ".f32"), " (binary layout), ",
      split_or_train("", "/Inertial Signals/"),
      " here or under 'UCI HAR Dataset/' (official UCI HAR layout), ",
      split_or_train("x_", ".npy"), " (npy layout)"));
}

absl::StatusOr<Dataset> SelectChannels(const Dataset& dataset,
                                       const std::vector<std::string>& names) {
  if (names.empty()) {
    return absl::InvalidArgumentError("no channels selected");
  }
  std::vector<int64_t> indices;
  std::set<std::string> seen;
  for (const std::string& name : names) {
    const auto it = std::find(dataset.channel_names.begin(),
                              dataset.channel_names.end(), name);
    if (it == dataset.channel_names.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown channel '", name,
          "'; available: ", absl::StrJoin(dataset.channel_names, ", ")));
    }
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("channel '", name, "' selected twice"));
    }
    indices.push_back(it - dataset.channel_names.begin());
  }
  Dataset out;
  out.n = dataset.n;
  out.t = dataset.t;
  out.c = static_cast<int64_t>(indices.size());
  out.y = dataset.y;
  out.subject = dataset.subject;
  out.channel_names = names;
  out.class_names = dataset.class_names;
  const int64_t samples = dataset.n * dataset.t;
  out.x.resize(samples * out.c);
  for (int64_t s = 0; s < samples; ++s) {
    for (int64_t k = 0; k < out.c; ++k) {
      out.x[s * out.c + k] = dataset.x[s * dataset.c + indices[k]];
    }
  }
  return out;
}

absl::StatusOr<std::pair<Dataset, Dataset>> SplitBySubjects(
    const Dataset& dataset, const std::vector<int>& holdout_subjects) {
  if (dataset.subject.empty()) {
    return absl::InvalidArgumentError(
        "the dataset has no subject ids; cannot split by subject");
  }
  const std::set<int32_t> present(dataset.subject.begin(),
                                  dataset.subject.end());
  const std::set<int32_t> holdout(holdout_subjects.begin(),
                                  holdout_subjects.end());
  for (int32_t id : holdout) {
    if (present.count(id) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "holdout subject ", id,
          " has no window; subjects: ", absl::StrJoin(present, " ")));
    }
  }
  std::pair<Dataset, Dataset> parts;
  for (Dataset* part : {&parts.first, &parts.second}) {
    part->t = dataset.t;
    part->c = dataset.c;
    part->channel_names = dataset.channel_names;
    part->class_names = dataset.class_names;
  }
  const int64_t window_floats = dataset.t * dataset.c;
  for (int64_t i = 0; i < dataset.n; ++i) {
    Dataset& part =
        holdout.count(dataset.subject[i]) ? parts.second : parts.first;
    part.x.insert(part.x.end(), dataset.window(i),
                  dataset.window(i) + window_floats);
    part.y.push_back(dataset.y[i]);
    part.subject.push_back(dataset.subject[i]);
    ++part.n;
  }
  return parts;
}

ChannelStatistics ChannelStats(const Dataset& dataset) {
  const int64_t c = dataset.c;
  const int64_t samples = dataset.n * dataset.t;
  std::vector<double> sum(c, 0.0);
  for (int64_t s = 0; s < samples; ++s) {
    const float* row = dataset.x.data() + s * c;
    for (int64_t k = 0; k < c; ++k) sum[k] += row[k];
  }
  std::vector<double> mean(c, 0.0);
  if (samples > 0) {
    for (int64_t k = 0; k < c; ++k) mean[k] = sum[k] / samples;
  }
  std::vector<double> squares(c, 0.0);
  for (int64_t s = 0; s < samples; ++s) {
    const float* row = dataset.x.data() + s * c;
    for (int64_t k = 0; k < c; ++k) {
      const double d = row[k] - mean[k];
      squares[k] += d * d;
    }
  }
  ChannelStatistics stats;
  stats.mean.resize(c);
  stats.std.resize(c);
  for (int64_t k = 0; k < c; ++k) {
    stats.mean[k] = static_cast<float>(mean[k]);
    stats.std[k] = samples > 0
                       ? static_cast<float>(std::sqrt(squares[k] / samples))
                       : 0.0f;
  }
  return stats;
}

}  // namespace harmamba
