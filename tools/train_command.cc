// harmamba train: trains a model on a labelled dataset (model/torch/trainer.h)
// and writes it as a servable safetensors file.
#include <cstdint>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "model/config.h"
#include "model/dataset.h"
#include "model/model_file.h"
#include "model/torch/trainer.h"
#include "tools/commands.h"

namespace harmamba::cli {
namespace {

constexpr char kCommand[] = "train";

// Splits "a,b,c" into its non-empty, whitespace-trimmed items.
std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> items;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    item = absl::StripAsciiWhitespace(item);
    if (!item.empty()) items.emplace_back(item);
  }
  return items;
}

absl::StatusOr<std::vector<int>> ParseSubjects(const std::string& text) {
  std::vector<int> subjects;
  for (const std::string& item : SplitList(text)) {
    int id = 0;
    if (!absl::SimpleAtoi(item, &id)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--val-subjects: expected comma-separated subject ids, got '", item,
          "'"));
    }
    subjects.push_back(id);
  }
  return subjects;
}

// The command as a shell would take it back (single quotes where needed).
std::string CommandLine(const std::vector<std::string>& args) {
  std::string line = "harmamba train";
  for (const std::string& arg : args) {
    const bool plain =
        !arg.empty() && arg.find_first_not_of(
                            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU"
                            "VWXYZ0123456789-_=./,:+@%") == std::string::npos;
    if (plain) {
      absl::StrAppend(&line, " ", arg);
    } else {
      std::string quoted = "'";
      for (char c : arg) {
        if (c == '\'') {
          quoted += "'\\''";
        } else {
          quoted += c;
        }
      }
      absl::StrAppend(&line, " ", quoted, "'");
    }
  }
  return line;
}

std::string DefaultName(const std::string& data_path) {
  std::filesystem::path path(data_path);
  std::string name = path.filename().string();
  if (name.empty()) name = path.parent_path().filename().string();
  return name.empty() ? "harmamba" : name;
}

}  // namespace

int RunTrain(const std::vector<std::string>& args, std::ostream& out,
             std::ostream& err) {
  const TrainOptions defaults;
  std::string data_path, out_path, split = "train", test_split = "test";
  std::string name, version = "1", channels_text, val_subjects_text;
  std::string device = "cpu", path_name = "auto", checkpoint_dir;
  int64_t val_count = 4, epochs = defaults.epochs, batch = defaults.batch_size,
          warmup_epochs = defaults.warmup_epochs;
  int64_t seed = 0, threads = defaults.num_threads, stop_after = 0,
          checkpoint_every = defaults.checkpoint_every;
  double lr = defaults.lr, min_lr = defaults.min_lr,
         warmup_lr = defaults.warmup_lr, weight_decay = defaults.weight_decay,
         drop_path = defaults.drop_path;
  double rotate_degrees = 0.0, scale_sigma = 0.0, jitter_sigma = 0.0,
         speed_max = 0.0, mixup_alpha = 0.0, label_smoothing = 0.0,
         ema_decay = 0.0;
  int64_t shift_max = 0;
  bool scale_per_channel = false;
  const ModelConfig architecture_defaults;
  int64_t d_model = architecture_defaults.d_model,
          depth = architecture_defaults.depth,
          d_state = architecture_defaults.d_state,
          patch = architecture_defaults.patch,
          stride = architecture_defaults.stride;
  double sample_rate = architecture_defaults.sample_rate_hz;
  bool resume = false, force = false;

  FlagParser flags(
      kCommand, "--data PATH --out FILE [options]",
      "Trains HARMamba with the authors' recipe (AdamW, cosine schedule with "
      "warm-up, drop-path, shuffled batches, fixed seed) on split --split of "
      "PATH (the layouts 'harmamba eval' reads). A validation set is held "
      "out by subject from the training subjects and is the only basis of "
      "model selection (best validation macro-F1); the test split is scored "
      "once, after training. The output holds the normalisation statistics "
      "of the training windows and the run's figures in its metadata "
      "(harmamba.train.*). For a fixed seed and thread count the weights are "
      "reproducible, also across --resume. Progress goes to stderr.");
  flags.AddString("data", "PATH", "Dataset folder.", &data_path,
                  /*required=*/true);
  flags.AddString("out", "FILE", "Where to write the model (.safetensors).",
                  &out_path, /*required=*/true);
  flags.AddBool("force", "Overwrite FILE if it exists.", &force);
  flags.AddString("split", "NAME", "Split to train on.", &split);
  flags.AddString("test-split", "NAME",
                  "Split scored once after training; 'none' for no test "
                  "(skipped when the default split is absent).",
                  &test_split);
  flags.AddString("channels", "A,B,C",
                  "Train on these channels only, in this order (e.g. "
                  "total_acc_x,total_acc_y,total_acc_z). Default: all.",
                  &channels_text);
  flags.AddString("val-subjects", "ID,ID,...",
                  "Hold out these subjects for validation (overrides "
                  "--val-count).",
                  &val_subjects_text);
  flags.AddInt("val-count", "K",
               "Hold out K subjects, chosen by --seed, for validation; 0 = no "
               "validation (the last epoch is kept).",
               &val_count, 0, 1 << 20);
  flags.AddString("name", "NAME",
                  "Model name (metadata). Default: the data folder's name.",
                  &name);
  flags.AddString("version", "V", "Model version (metadata).", &version);
  flags.AddInt("epochs", "N", "Epochs (the recipe's 150 is the default).",
               &epochs, 1, 100000);
  flags.AddInt("batch", "N", "Training batch size.", &batch, 1, 1 << 16);
  flags.AddDouble("lr", "X", "Peak learning rate (AdamW).", &lr, 1e-12, 10.0);
  flags.AddDouble("min-lr", "X", "Final learning rate of the cosine.", &min_lr,
                  1e-12, 10.0);
  flags.AddInt("warmup-epochs", "N", "Linear warm-up epochs.", &warmup_epochs,
               0, 100000);
  flags.AddDouble("warmup-lr", "X", "Learning rate of the first epoch.",
                  &warmup_lr, 1e-12, 10.0);
  flags.AddDouble("weight-decay", "X",
                  "AdamW weight decay (tensors with >= 2 dims except "
                  "cls_token and pos_embed).",
                  &weight_decay, 0.0, 10.0);
  flags.AddDouble("drop-path", "X", "Stochastic depth rate.", &drop_path, 0.0,
                  0.99);
  flags.AddDouble("rotate", "DEG",
                  "Augmentation (off by default, like the others below): "
                  "rotate every xyz channel triad of a training window by "
                  "one random rotation of up to DEG degrees about a random "
                  "axis. Large angles blur the gravity direction that "
                  "separates sitting from standing.",
                  &rotate_degrees, 0.0, 180.0);
  flags.AddDouble("scale", "SIGMA",
                  "Augmentation: multiply each xyz triad of a training "
                  "window (or each channel, with --scale-per-channel) by "
                  "1 + SIGMA * N(0, 1).",
                  &scale_sigma, 0.0, 1.0);
  flags.AddBool("scale-per-channel",
                "--scale draws one factor per channel instead of per triad.",
                &scale_per_channel);
  flags.AddDouble("jitter", "SIGMA",
                  "Augmentation: add Gaussian noise of SIGMA times each "
                  "channel's training standard deviation to every sample.",
                  &jitter_sigma, 0.0, 1.0);
  flags.AddDouble("speed", "S",
                  "Augmentation: resample each training window as if the "
                  "movement ran f times as fast, f uniform in [1 - S, 1 + S] "
                  "(S <= 0.5).",
                  &speed_max, 0.0, 0.5);
  flags.AddInt("shift", "N",
               "Augmentation: shift each training window circularly in time "
               "by a random number of samples in [-N, N].",
               &shift_max, 0, 1 << 20);
  flags.AddDouble("mixup", "ALPHA",
                  "Mixup: blend each batch with a shuffled copy of itself, "
                  "weight ~ Beta(ALPHA, ALPHA), and the losses likewise.",
                  &mixup_alpha, 0.0, 100.0);
  flags.AddDouble("label-smoothing", "X",
                  "Label smoothing of the cross-entropy, in [0, 1).",
                  &label_smoothing, 0.0, 0.999);
  flags.AddDouble("ema", "DECAY",
                  "Keep an exponential moving average of the weights "
                  "(decay per optimiser step, e.g. 0.999, warmed up as "
                  "min(DECAY, (1 + step) / (10 + step))); validation scores "
                  "the average and the output is the selected average. 0: off.",
                  &ema_decay, 0.0, 0.999999);
  flags.AddInt("seed", "N",
               "Seed of the init, shuffling, drop-path and augmentation.",
               &seed, 0, std::numeric_limits<int64_t>::max());
  flags.AddInt("threads", "N",
               "CPU threads (LibTorch intra-op and evaluation). Results are "
               "reproducible for a fixed thread count.",
               &threads, 1, 4096);
  flags.AddChoice("device", {"cpu", "cuda"},
                  "cuda needs a LibTorch built with CUDA and a GPU.", &device);
  flags.AddChoice("path", {"auto", "fast", "reference"},
                  "Forward/backward path: fast = our kernels with "
                  "hand-written backward (on cuda only in builds with the "
                  "CUDA kernels); reference = plain LibTorch autograd; auto "
                  "= fast where it runs, else reference.",
                  &path_name);
  flags.AddString("checkpoint-dir", "DIR",
                  "Write DIR/checkpoint.pt (weights, AdamW state, epoch, "
                  "best-so-far) atomically during training.",
                  &checkpoint_dir);
  flags.AddInt("checkpoint-every", "N", "Epochs between checkpoints.",
               &checkpoint_every, 1, 100000);
  flags.AddBool("resume", "Continue from DIR/checkpoint.pt.", &resume);
  flags.AddInt("stop-after", "N",
               "Stop after N epochs in this call (checkpoint written; continue "
               "with --resume). 0 = run to the end.",
               &stop_after, 0, 100000);
  flags.AddInt("d-model", "N", "Model width.", &d_model, 1, 4096);
  flags.AddInt("depth", "N", "Mamba layers (even).", &depth, 2, 1024);
  flags.AddInt("d-state", "N", "SSM state size.", &d_state, 1, 1024);
  flags.AddInt("patch", "N", "Patch length (samples).", &patch, 1, 1 << 16);
  flags.AddInt("stride", "N", "Patch stride (samples).", &stride, 1, 1 << 16);
  flags.AddDouble("sample-rate", "HZ", "Sample rate recorded in the metadata.",
                  &sample_rate, 1e-6, 1e9);
  if (std::optional<int> exit_code = flags.ParseOrReport(args, out, err)) {
    return *exit_code;
  }

  std::error_code error;
  if (!force && std::filesystem::exists(out_path, error)) {
    return ReportRuntimeError(
        kCommand,
        absl::AlreadyExistsError(absl::StrCat(
            out_path, ": file exists; pass --force to overwrite it")),
        err);
  }
  const std::filesystem::path out_parent =
      std::filesystem::path(out_path).parent_path();
  if (!out_parent.empty() && !std::filesystem::is_directory(out_parent)) {
    return ReportRuntimeError(
        kCommand,
        absl::NotFoundError(absl::StrCat(
            out_path, ": folder ", out_parent.string(), " does not exist")),
        err);
  }

  TrainOptions options;
  options.epochs = static_cast<int>(epochs);
  options.batch_size = static_cast<int>(batch);
  options.lr = lr;
  options.min_lr = min_lr;
  options.warmup_epochs = static_cast<int>(warmup_epochs);
  options.warmup_lr = warmup_lr;
  options.weight_decay = weight_decay;
  options.drop_path = drop_path;
  options.seed = static_cast<uint64_t>(seed);
  options.augmentation.rotate_max_degrees = rotate_degrees;
  options.augmentation.scale_sigma = scale_sigma;
  options.augmentation.scale_per_channel = scale_per_channel;
  options.augmentation.jitter_sigma = jitter_sigma;
  options.augmentation.speed_max = speed_max;
  options.augmentation.shift_max = static_cast<int>(shift_max);
  options.mixup_alpha = mixup_alpha;
  options.label_smoothing = label_smoothing;
  options.ema_decay = ema_decay;
  options.device = device;
  options.path =
      path_name == "reference" ||
              (path_name == "auto" && device != "cpu" && !FastPathRunsOnCuda())
          ? ForwardPath::kReference
          : ForwardPath::kFast;
  options.num_threads = static_cast<int>(threads);
  options.checkpoint_dir = checkpoint_dir;
  options.checkpoint_every = static_cast<int>(checkpoint_every);
  options.resume = resume;
  options.stop_after_epochs = static_cast<int>(stop_after);
  options.command_line = CommandLine(args);
  options.data_description = absl::StrCat(data_path, " (split ", split, ")");
  if (absl::Status status = options.Validate(); !status.ok()) {
    return ReportRuntimeError(kCommand, status, err);
  }

  ModelConfig architecture;
  architecture.name = name.empty() ? DefaultName(data_path) : name;
  architecture.version = version;
  architecture.d_model = static_cast<int>(d_model);
  architecture.depth = static_cast<int>(depth);
  architecture.d_state = static_cast<int>(d_state);
  architecture.patch = static_cast<int>(patch);
  architecture.stride = static_cast<int>(stride);
  architecture.sample_rate_hz = sample_rate;

  absl::StatusOr<Dataset> train_split = LoadDataset(data_path, split);
  if (!train_split.ok()) {
    return ReportRuntimeError(kCommand, train_split.status(), err);
  }
  std::optional<Dataset> test;
  if (test_split != "none") {
    absl::StatusOr<Dataset> loaded = LoadDataset(data_path, test_split);
    if (loaded.ok()) {
      test = *std::move(loaded);
    } else if (absl::IsNotFound(loaded.status()) && test_split == "test") {
      err << "harmamba train: note: no split 'test' in " << data_path
          << "; no test figures will be recorded\n";
    } else {
      return ReportRuntimeError(kCommand, loaded.status(), err);
    }
  }
  const std::vector<std::string> channels = SplitList(channels_text);
  if (!channels.empty()) {
    absl::StatusOr<Dataset> selected = SelectChannels(*train_split, channels);
    if (!selected.ok()) {
      return ReportRuntimeError(
          kCommand,
          absl::InvalidArgumentError(
              absl::StrCat("--channels: ", selected.status().message())),
          err);
    }
    *train_split = *std::move(selected);
    if (test.has_value()) {
      absl::StatusOr<Dataset> test_selected = SelectChannels(*test, channels);
      if (!test_selected.ok()) {
        return ReportRuntimeError(
            kCommand,
            absl::InvalidArgumentError(absl::StrCat(
                "--channels (test split): ", test_selected.status().message())),
            err);
      }
      test = *std::move(test_selected);
    }
  }

  std::vector<int> validation_subjects;
  if (!val_subjects_text.empty()) {
    absl::StatusOr<std::vector<int>> parsed = ParseSubjects(val_subjects_text);
    if (!parsed.ok()) return ReportRuntimeError(kCommand, parsed.status(), err);
    validation_subjects = *std::move(parsed);
  } else if (val_count > 0) {
    absl::StatusOr<std::vector<int>> chosen = ChooseValidationSubjects(
        *train_split, static_cast<int>(val_count), options.seed);
    if (!chosen.ok()) return ReportRuntimeError(kCommand, chosen.status(), err);
    validation_subjects = *std::move(chosen);
  }
  absl::StatusOr<TrainingData> data =
      MakeTrainingData(*train_split, validation_subjects, std::move(test));
  if (!data.ok()) return ReportRuntimeError(kCommand, data.status(), err);

  absl::StatusOr<TrainResult> result = Train(architecture, *data, options, err);
  if (!result.ok()) return ReportRuntimeError(kCommand, result.status(), err);
  if (!result->finished) {
    out << absl::StrFormat(
        "stopped after epoch %d of %d; continue with the same command plus "
        "--resume\n",
        result->epochs_run, options.epochs);
    return kExitOk;
  }
  if (absl::Status status = SaveModelFile(result->model, out_path);
      !status.ok()) {
    return ReportRuntimeError(kCommand, status, err);
  }
  out << absl::StrFormat(
      "wrote %s: model '%s', %d epochs (selected epoch %d), %s\n", out_path,
      result->model.config.name, result->epochs_run, result->selected_epoch + 1,
      result->test.has_value()
          ? absl::StrFormat("test accuracy %.4f, macro-F1 %.4f",
                            result->test->accuracy, result->test->macro_f1)
          : (result->validation.has_value()
                 ? absl::StrFormat("validation accuracy %.4f, macro-F1 %.4f",
                                   result->validation->accuracy,
                                   result->validation->macro_f1)
                 : std::string("no evaluation")));
  return kExitOk;
}

}  // namespace harmamba::cli
