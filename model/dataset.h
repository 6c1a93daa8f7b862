// Labelled datasets of sensor windows for training and evaluation, read from
// the layouts users have: our compact binary layout (shared/datasets), the
// official `UCI HAR Dataset/` folder, and the authors' .npy folders.
//
// A Dataset is a plain value. All functions are thread-safe (no shared state).
#ifndef HARMAMBA_MODEL_DATASET_H_
#define HARMAMBA_MODEL_DATASET_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace harmamba {

// `n` windows of `t` samples of `c` channels with one class label each.
struct Dataset {
  int64_t n = 0;
  int64_t t = 0;
  int64_t c = 0;
  // C order: window i, time step j, channel k is x[(i * t + j) * c + k].
  std::vector<float> x;
  // Class index per window, 0 <= y[i] < class_names.size().
  std::vector<int32_t> y;
  // Subject (volunteer) id per window; empty when the layout has none.
  std::vector<int32_t> subject;
  std::vector<std::string> channel_names;  // c names
  std::vector<std::string> class_names;    // index -> name

  int num_classes() const { return static_cast<int>(class_names.size()); }
  // The first float of window `i` (t * c floats follow).
  const float* window(int64_t i) const { return x.data() + i * t * c; }
};

// The channels of UCI HAR in the order of every layout we read:
// body_acc_{x,y,z}, body_gyro_{x,y,z}, total_acc_{x,y,z}.
const std::vector<std::string>& UciHarChannelNames();

// Checks that the sizes agree (x has n*t*c floats, y has n labels, subject is
// empty or has n ids, c channel names), that labels are in
// [0, class_names.size()) and that x is finite. The message names the field.
absl::Status ValidateDataset(const Dataset& dataset);

// The compact binary layout of shared/datasets/uci-har (see its README):
// `dir`/X_{split}.f32 (float32 [N][128][9]), y_{split}.u8 (classes 0..K-1),
// subject_{split}.u8 (optional), activity_labels.txt ("<id> <NAME>" lines,
// ids 1..K). Channels are UciHarChannelNames().
absl::StatusOr<Dataset> LoadBinaryDataset(const std::string& dir,
                                          const std::string& split);

// The official "UCI HAR Dataset" folder (`root` is that folder):
// {split}/Inertial Signals/{body_acc,body_gyro,total_acc}_{x,y,z}_{split}.txt
// (one window per line, T whitespace-separated values), {split}/y_{split}.txt
// (labels 1..K, stored as 0..K-1), {split}/subject_{split}.txt and
// activity_labels.txt. T is read from the files; all nine must agree.
absl::StatusOr<Dataset> LoadUciHarDataset(const std::string& root,
                                          const std::string& split);

// The authors' .npy layout: `dir`/x_{split}.npy of shape (N, T, C) (float or
// integer) and y_{split}.npy of shape (N,) with class indices or (N, K)
// one-hot / scores (argmax is taken). Upper-case X_/Y_ names are accepted.
// Optional: subject_{split}.npy (N,) integer; activity_labels.txt for class
// names, in id order (else "class_0".."class_{K-1}", K = max label + 1 or the
// one-hot width); channels.txt with one channel name per line (else
// "channel_0".."channel_{C-1}").
absl::StatusOr<Dataset> LoadNpyDataset(const std::string& dir,
                                       const std::string& split);

// Loads `split` ("train", "test", ...) from `path`, detecting the layout:
//   - binary: `path`/X_{split}.f32 or X_train.f32 exists;
//   - official UCI HAR: `path`/{split or train}/Inertial Signals/ exists, or
//     `path`/UCI HAR Dataset/ is such a folder;
//   - npy: `path`/x_{split}.npy or x_train.npy (or X_...) exists.
// NotFound, listing what was looked for, when none matches. The result passes
// ValidateDataset.
absl::StatusOr<Dataset> LoadDataset(const std::string& path,
                                    const std::string& split);

// The windows of `dataset` restricted to the channels `names`, in that order
// (e.g. {"total_acc_x", "total_acc_y", "total_acc_z"}). InvalidArgument for an
// empty list, a repeated name, or an unknown name (the message lists the
// available channels).
absl::StatusOr<Dataset> SelectChannels(const Dataset& dataset,
                                       const std::vector<std::string>& names);

// Splits by subject: `first` has the windows of every other subject, `second`
// those of `holdout_subjects`; window order is kept. InvalidArgument when the
// dataset has no subject ids or a holdout subject has no window (the message
// lists the subjects present).
absl::StatusOr<std::pair<Dataset, Dataset>> SplitBySubjects(
    const Dataset& dataset, const std::vector<int>& holdout_subjects);

// Per-channel mean and population standard deviation over all windows and
// time steps, accumulated in float64 (two passes). Both are 0 for an empty
// dataset; a constant channel has std 0, which callers must guard before
// dividing.
struct ChannelStatistics {
  std::vector<float> mean;
  std::vector<float> std;
};
ChannelStatistics ChannelStats(const Dataset& dataset);

}  // namespace harmamba

#endif  // HARMAMBA_MODEL_DATASET_H_
