// Training HARMamba: the authors' recipe (design.md §1) on our datasets, with
// a validation split held out by subject, model selection on validation only,
// checkpoints that resume bit-for-bit, and a servable safetensors file whose
// metadata records how it was made and how well it does.
//
// This header is torch-free (the implementation is in trainer.cc), so tools
// and tests can use it without compiling LibTorch headers.
//
// Determinism: for a fixed seed, dataset, thread count, build and machine
// (OpenBLAS picks its kernels by CPU), a run produces bitwise the same
// weights, whether uninterrupted or resumed from any checkpoint. Every
// epoch's randomness (the shuffle, the drop-path masks and any augmentation)
// is derived from (seed, epoch) alone, so the checkpoint needs no generator
// state beyond the epoch number. Different thread counts change the order of
// floating-point reductions and therefore the last bits.
//
// Thread-safety: Train() uses LibTorch's process-wide intra-op thread count
// and global generator; run one training per process at a time.
#ifndef HARMAMBA_MODEL_TORCH_TRAINER_H_
#define HARMAMBA_MODEL_TORCH_TRAINER_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/augment.h"
#include "model/config.h"
#include "model/dataset.h"
#include "model/metrics.h"
#include "model/model_file.h"
#include "model/torch/torch_backend.h"

namespace harmamba {

// The recipe and how to run it. Defaults are the authors' recipe (design.md
// §1) on one CPU thread.
struct TrainOptions {
  // ---- Recipe
  int epochs = 150;
  int batch_size = 64;
  // AdamW.
  double lr = 5e-4;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.05;  // on the tensors IsWeightDecayed() selects
  // Cosine schedule stepped per epoch (see LearningRate()).
  int warmup_epochs = 5;
  double warmup_lr = 1e-6;
  double min_lr = 1e-5;
  // Stochastic depth: layer i uses [0, linspace(0, rate, depth)][i], the
  // final add uses rate.
  double drop_path = 0.1;
  // Seeds the shuffling, the drop-path masks and (via InitModel) the initial
  // weights.
  uint64_t seed = 0;

  // ---- Regularisation beyond the recipe: all off by default. Every epoch's
  // draws come from its own stream derived from (seed, epoch), so runs stay
  // reproducible and resumable; the training loss and accuracy in the log
  // are those of the augmented batches.
  // Applied to each training window before the forward pass (on the CPU, in
  // the data's units). See model/augment.h.
  WindowAugmentation augmentation;
  // > 0: mixup; each batch is mixed with a shuffled copy of itself,
  // lambda ~ Beta(mixup_alpha, mixup_alpha), and the loss is lambda * CE(y) +
  // (1 - lambda) * CE(y of the partner).
  double mixup_alpha = 0.0;
  // Label smoothing of the cross-entropy, in [0, 1).
  double label_smoothing = 0.0;
  // Whether any of the three above is on.
  bool regularised() const {
    return augmentation.enabled() || mixup_alpha > 0.0 || label_smoothing > 0.0;
  }
  // In [0, 1); > 0: keep an exponential moving average of the weights,
  // updated after optimiser step s (counted from 0 over the whole run) as
  //   average = d * average + (1 - d) * weights,  d = min(ema_decay,
  //   (1 + s) / (10 + s)),
  // starting from the initial weights. Validation then scores the average,
  // selection picks among averages and the output is the selected average;
  // the optimiser still steps the raw weights. The warm-up of d keeps the
  // first epochs' averages from being dominated by the random init.
  double ema_decay = 0.0;

  // ---- Execution
  // kFast (our kernels with hand-written backward) runs on the CPU, and on
  // CUDA in builds with the CUDA kernels (FastPathRunsOnCuda()); kReference
  // (plain LibTorch ops, autograd) runs on any device.
  ForwardPath path = ForwardPath::kFast;
  // "cpu" or "cuda" (needs a LibTorch built with CUDA and a visible GPU).
  std::string device = "cpu";
  // LibTorch intra-op threads (and threads of the fused engine that scores
  // validation and test windows on the CPU). >= 1.
  int num_threads = 1;
  // Windows per forward pass when scoring validation/test windows.
  int eval_batch_size = 256;

  // ---- Checkpoints
  // Folder for `checkpoint.pt` (written atomically after every
  // `checkpoint_every` epochs and after the last one). Empty: none.
  std::string checkpoint_dir;
  int checkpoint_every = 1;
  // Continue from `checkpoint_dir`/checkpoint.pt (which must exist and come
  // from a run with the same recipe and data) instead of starting afresh.
  bool resume = false;
  // > 0: stop after this many epochs in this call (a checkpoint is written;
  // resume later). For runs longer than a session. 0: run to `epochs`.
  int stop_after_epochs = 0;

  // ---- Provenance, written into the output's metadata
  std::string command_line;      // how the run was started
  std::string data_description;  // e.g. the dataset path

  // Checks ranges (epochs >= 1, 0 < lr, ...) and consistency (kFast needs the
  // CPU). The message names the field.
  absl::Status Validate() const;
};

// The learning rate of 0-based `epoch` (timm's CosineLRScheduler stepped per
// epoch, as the authors use it): warmup_lr + epoch * (lr - warmup_lr) /
// warmup_epochs during the first warmup_epochs epochs, then min_lr + (lr -
// min_lr) * (1 + cos(pi * epoch / epochs)) / 2.
double LearningRate(const TrainOptions& options, int epoch);

// Whether the parameter `name` of shape `shape` gets weight decay: tensors
// with >= 2 dimensions except cls_token and pos_embed (so A_log, conv and
// linear weights are decayed; biases, LayerNorm parameters and D are not).
bool IsWeightDecayed(std::string_view name, const std::vector<int64_t>& shape);

// The windows a run learns from, selects on and reports on.
struct TrainingData {
  Dataset train;       // what the optimiser sees (normalisation stats too)
  Dataset validation;  // selection only; may be empty (n == 0)
  std::optional<Dataset> test;           // scored once, after training
  std::vector<int> validation_subjects;  // sorted
  std::vector<int> training_subjects;    // sorted; empty without subject ids
};

// `count` subjects of `dataset`, chosen by a seeded shuffle of its sorted
// subject ids, returned sorted. InvalidArgument when the dataset has no
// subject ids or fewer than count + 1 subjects.
absl::StatusOr<std::vector<int>> ChooseValidationSubjects(
    const Dataset& dataset, int count, uint64_t seed);

// Holds `validation_subjects` out of `train_split` (empty list: no
// validation set) and attaches `test`. InvalidArgument as SplitBySubjects.
absl::StatusOr<TrainingData> MakeTrainingData(
    const Dataset& train_split, const std::vector<int>& validation_subjects,
    std::optional<Dataset> test);

// One epoch's figures. Validation fields are 0 without a validation set.
struct EpochStats {
  int epoch = 0;  // 0-based
  double lr = 0.0;
  double train_loss = 0.0;      // mean cross-entropy over the epoch's windows
  double train_accuracy = 0.0;  // of the training-mode predictions
  double val_loss = 0.0;
  double val_accuracy = 0.0;
  double val_macro_f1 = 0.0;
  double val_weighted_f1 = 0.0;
  double train_seconds = 0.0;       // forward + backward + optimiser
  double windows_per_second = 0.0;  // training windows / train_seconds
  double seconds = 0.0;             // the whole epoch, validation included
};

struct TrainResult {
  // The selected model (best validation macro-F1, ties to the earlier epoch;
  // the last epoch without a validation set), its config holding the
  // normalisation statistics of the training data and `harmamba.train.*`
  // metadata (see Train()). Empty tensors when `finished` is false.
  ModelWeights model;
  bool finished = false;            // false when stopped by stop_after_epochs
  int epochs_run = 0;               // epochs completed so far, across resumes
  int selected_epoch = -1;          // 0-based
  std::vector<EpochStats> history;  // every completed epoch, across resumes
  std::optional<ClassificationReport> validation;  // of the selected model
  std::optional<ClassificationReport> test;        // of the selected model
  double wall_seconds = 0.0;  // training and evaluation, across resumes
};

// Trains a model with `architecture`'s name, version and hyper-parameters
// (patch, stride, d_model, depth, d_state, d_conv, expand; its window,
// channels, classes and mean/std are replaced by the data's) on `data`.
//
// Writes progress to `log`: first a line naming the forward/backward path,
// device and threads, then the data, then one line per epoch (loss,
// validation accuracy/macro-F1, windows/s, ETA), and the final figures.
//
// After the last epoch, scores the selected model once on the validation and
// test sets (with the fused CPU engine on the CPU, i.e. the code that serves
// it) and records in its metadata (all values JSON text):
//   harmamba.train.epochs, .epochs_planned, .selected_epoch (1-based),
//   .selection_rule, .validation_subjects, .training_subjects, .seed,
//   .recipe (object), .path, .device, .threads, .hardware, .wall_seconds,
//   .command, .data, .train_windows, .validation_windows,
//   (.recipe.augmentation: "none" or the regularisation used beyond the
//   recipe, e.g. {"rotate_max_degrees": 10, "mixup_alpha": 0.2}),
//   .validation {accuracy, macro_f1, weighted_f1, windows},
//   .test {accuracy, macro_f1, weighted_f1, windows} (with a test set).
// `on_epoch`, when set, is called after every epoch (e.g. by tests).
absl::StatusOr<TrainResult> Train(
    const ModelConfig& architecture, const TrainingData& data,
    const TrainOptions& options, std::ostream& log,
    const std::function<void(const EpochStats&)>& on_epoch = nullptr);

// Scores `weights` on `dataset` (whose channels and classes must be the
// model's, in order) with the fused CPU engine on `num_threads` threads.
absl::StatusOr<ClassificationReport> EvaluateOnDataset(
    const ModelWeights& weights, const Dataset& dataset, int num_threads,
    int batch_size = 256);

// "<CPU model name>, <N> hardware threads" from /proc/cpuinfo (or "unknown
// CPU").
std::string HardwareDescription();

}  // namespace harmamba

#endif  // HARMAMBA_MODEL_TORCH_TRAINER_H_
