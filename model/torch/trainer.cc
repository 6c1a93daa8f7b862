#include "model/torch/trainer.h"

#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "model/augment.h"
#include "model/cpu_engine.h"
#include "model/openblas_tuning.h"
#include "model/status_macros.h"
#include "model/torch/harmamba_module.h"
#include "nlohmann/json.hpp"

namespace harmamba {
namespace {

using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

constexpr int64_t kCheckpointFormat = 1;
constexpr char kCheckpointFile[] = "checkpoint.pt";
constexpr char kTrainPrefix[] = "harmamba.train.";
constexpr char kSelectionRule[] =
    "highest validation macro-F1 (ties: earlier epoch); test never used";
constexpr char kSelectionRuleNoValidation[] = "last epoch (no validation set)";

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// SplitMix64's finaliser: a well-mixed 64-bit value from a 64-bit input.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// The seed of one random stream of one epoch: depends only on its arguments.
enum class Stream : uint64_t {
  kShuffle = 1,
  kTorch = 2,
  kValidation = 3,
  kAugment = 4,
};
uint64_t StreamSeed(uint64_t seed, int epoch, Stream stream) {
  return Mix(Mix(Mix(seed) ^ static_cast<uint64_t>(epoch)) ^
             static_cast<uint64_t>(stream));
}

// A uniform integer in [0, bound) from `engine` without modulo bias (std's
// distributions are implementation-defined; this is the same everywhere).
uint64_t UniformBelow(std::mt19937_64& engine, uint64_t bound) {
  const uint64_t limit = std::numeric_limits<uint64_t>::max() -
                         std::numeric_limits<uint64_t>::max() % bound;
  uint64_t value;
  do {
    value = engine();
  } while (value >= limit);
  return value % bound;
}

// Fisher-Yates shuffle of 0..n-1.
std::vector<int64_t> Permutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> order(n);
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  std::mt19937_64 engine(seed);
  for (int64_t i = n - 1; i > 0; --i) {
    std::swap(order[i], order[UniformBelow(engine, i + 1)]);
  }
  return order;
}

std::vector<int> SortedSubjects(const Dataset& dataset) {
  const std::set<int> ids(dataset.subject.begin(), dataset.subject.end());
  return std::vector<int>(ids.begin(), ids.end());
}

// Checks that `other` has the windows, channels and classes of `train`.
absl::Status CheckCompatible(const Dataset& train, const Dataset& other,
                             const char* what) {
  if (other.t != train.t) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " windows have ", other.t,
                     " samples, the training windows ", train.t));
  }
  if (other.channel_names != train.channel_names) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " channels (", absl::StrJoin(other.channel_names, ", "),
        ") differ from the training channels (",
        absl::StrJoin(train.channel_names, ", "), ")"));
  }
  if (other.class_names != train.class_names) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " classes (", absl::StrJoin(other.class_names, ", "),
                     ") differ from the training classes (",
                     absl::StrJoin(train.class_names, ", "), ")"));
  }
  return absl::OkStatus();
}

// The regularisation beyond the recipe: "none", or an object of what is on.
json RegularisationJson(const TrainOptions& o) {
  if (!o.regularised()) return "none";
  json j = json::object();
  const WindowAugmentation& a = o.augmentation;
  if (a.rotate_max_degrees > 0.0) {
    j["rotate_max_degrees"] = a.rotate_max_degrees;
  }
  if (a.scale_sigma > 0.0) {
    j["scale_sigma"] = a.scale_sigma;
    j["scale_per"] = a.scale_per_channel ? "channel" : "triad";
  }
  if (a.speed_max > 0.0) j["speed_max"] = a.speed_max;
  if (a.jitter_sigma > 0.0) j["jitter_sigma_of_std"] = a.jitter_sigma;
  if (a.shift_max > 0) j["circular_shift_max"] = a.shift_max;
  if (o.mixup_alpha > 0.0) j["mixup_alpha"] = o.mixup_alpha;
  if (o.label_smoothing > 0.0) j["label_smoothing"] = o.label_smoothing;
  return j;
}

// Everything that must agree between a checkpoint and the run resuming it
// (the thread count is not included: it only changes the last bits). The
// regularisation appears only when some is on, so checkpoints of runs
// without it (written before it existed) still resume.
json RunFingerprint(const ModelConfig& config, const TrainingData& data,
                    const TrainOptions& o) {
  json fingerprint{
      {"epochs", o.epochs},
      {"batch_size", o.batch_size},
      {"lr", o.lr},
      {"betas", {o.beta1, o.beta2}},
      {"eps", o.eps},
      {"weight_decay", o.weight_decay},
      {"warmup_epochs", o.warmup_epochs},
      {"warmup_lr", o.warmup_lr},
      {"min_lr", o.min_lr},
      {"drop_path", o.drop_path},
      {"seed", o.seed},
      {"path", ForwardPathName(o.path)},
      {"architecture",
       {config.window_length, config.patch, config.stride, config.d_model,
        config.depth, config.d_state, config.d_conv, config.expand}},
      {"channels", config.channels},
      {"classes", config.classes},
      {"train_windows", data.train.n},
      {"validation_windows", data.validation.n},
      {"validation_subjects", data.validation_subjects},
  };
  if (o.regularised()) fingerprint["regularisation"] = RegularisationJson(o);
  if (o.ema_decay > 0.0) fingerprint["ema_decay"] = o.ema_decay;
  return fingerprint;
}

json RecipeJson(const TrainOptions& o) {
  return json{
      {"optimizer", "AdamW"},
      {"lr", o.lr},
      {"betas", {o.beta1, o.beta2}},
      {"eps", o.eps},
      {"weight_decay", o.weight_decay},
      {"weight_decay_on", "tensors with >= 2 dims except cls_token, pos_embed"},
      {"schedule", "cosine per epoch"},
      {"warmup_epochs", o.warmup_epochs},
      {"warmup_lr", o.warmup_lr},
      {"min_lr", o.min_lr},
      {"batch_size", o.batch_size},
      {"drop_path", o.drop_path},
      {"loss", o.label_smoothing > 0.0
                   ? absl::StrFormat("cross-entropy, label smoothing %g",
                                     o.label_smoothing)
                   : std::string("cross-entropy")},
      {"augmentation", RegularisationJson(o)},
      {"weight_average",
       o.ema_decay > 0.0
           ? json{{"ema_decay", o.ema_decay},
                  {"decay_at_step_s", "min(ema_decay, (1 + s) / (10 + s))"}}
           : json("none")},
      {"shuffle", true},
      {"precision", "float32"},
  };
}

json ReportSummary(const ClassificationReport& report, bool with_confusion) {
  json summary{{"accuracy", report.accuracy},
               {"macro_f1", report.macro_f1},
               {"weighted_f1", report.weighted_f1},
               {"windows", report.total}};
  if (with_confusion) summary["confusion"] = report.confusion;
  return summary;
}

json EpochToJson(const EpochStats& s) {
  return json{{"epoch", s.epoch},
              {"lr", s.lr},
              {"train_loss", s.train_loss},
              {"train_accuracy", s.train_accuracy},
              {"val_loss", s.val_loss},
              {"val_accuracy", s.val_accuracy},
              {"val_macro_f1", s.val_macro_f1},
              {"val_weighted_f1", s.val_weighted_f1},
              {"train_seconds", s.train_seconds},
              {"windows_per_second", s.windows_per_second},
              {"seconds", s.seconds}};
}

EpochStats EpochFromJson(const json& j) {
  EpochStats s;
  s.epoch = j.at("epoch").get<int>();
  s.lr = j.at("lr").get<double>();
  s.train_loss = j.at("train_loss").get<double>();
  s.train_accuracy = j.at("train_accuracy").get<double>();
  s.val_loss = j.at("val_loss").get<double>();
  s.val_accuracy = j.at("val_accuracy").get<double>();
  s.val_macro_f1 = j.at("val_macro_f1").get<double>();
  s.val_weighted_f1 = j.at("val_weighted_f1").get<double>();
  s.train_seconds = j.at("train_seconds").get<double>();
  s.windows_per_second = j.at("windows_per_second").get<double>();
  s.seconds = j.at("seconds").get<double>();
  return s;
}

std::string FormatDuration(double seconds) {
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s / 60) % 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

// Logits of every window of `dataset` through `backend`, in batches.
absl::StatusOr<std::vector<float>> BackendLogits(ModelBackend& backend,
                                                 const Dataset& dataset,
                                                 int batch_size) {
  const int k = backend.config().num_classes();
  std::vector<float> logits(dataset.n * k);
  for (int64_t start = 0; start < dataset.n; start += batch_size) {
    const int64_t count = std::min<int64_t>(batch_size, dataset.n - start);
    RETURN_IF_ERROR(
        backend.Run(dataset.window(start), count, logits.data() + start * k));
  }
  return logits;
}

// Mean cross-entropy (in double) and the report of `logits` against labels.
struct Scores {
  double loss = 0.0;
  ClassificationReport report;
};
absl::StatusOr<Scores> ScoreLogits(const std::vector<float>& logits,
                                   const Dataset& dataset, int k) {
  Scores scores;
  std::vector<int> y_true(dataset.y.begin(), dataset.y.end());
  std::vector<int> y_pred(dataset.n);
  double loss_sum = 0.0;
  for (int64_t i = 0; i < dataset.n; ++i) {
    const float* row = logits.data() + i * k;
    const int best = static_cast<int>(std::max_element(row, row + k) - row);
    y_pred[i] = best;
    double sum = 0.0;
    for (int j = 0; j < k; ++j) sum += std::exp(double{row[j]} - row[best]);
    loss_sum += std::log(sum) - (double{row[dataset.y[i]]} - row[best]);
  }
  scores.loss = dataset.n > 0 ? loss_sum / dataset.n : 0.0;
  ASSIGN_OR_RETURN(scores.report, Evaluate(y_true, y_pred, k));
  return scores;
}

ModelWeights WeightsFromArchive(torch::serialize::InputArchive& archive,
                                const ModelWeights& like) {
  ModelWeights out = like;
  for (auto& [name, host] : out.tensors) {
    torch::Tensor t;
    archive.read(name, t);
    t = t.to(torch::kCPU, torch::kFloat32).contiguous();
    TORCH_CHECK(t.numel() == host.numel(), "checkpoint tensor ", name, " has ",
                t.numel(), " values, expected ", host.numel());
    std::memcpy(host.data.data(), t.data_ptr<float>(),
                sizeof(float) * host.data.size());
  }
  return out;
}

class Trainer {
 public:
  Trainer(const ModelConfig& config, const TrainingData& data,
          const TrainOptions& options, std::ostream& log,
          const std::function<void(const EpochStats&)>& on_epoch)
      : config_(config),
        data_(data),
        options_(options),
        log_(log),
        on_epoch_(on_epoch),
        device_(options.device) {}

  absl::StatusOr<TrainResult> Run();

 private:
  absl::Status Setup();
  absl::StatusOr<EpochStats> TrainEpoch(int epoch);
  absl::StatusOr<Scores> ScoreValidation(HarmambaModule& module);
  // The module that validation scores and selection exports: the average
  // when ema_decay > 0, else the trained one.
  HarmambaModule& Scored() { return average_ ? *average_ : *module_; }
  void UpdateAverage(int64_t step);
  absl::Status SaveCheckpoint(int next_epoch);
  absl::Status LoadCheckpoint();
  absl::StatusOr<TrainResult> Finish();
  std::string CheckpointPath() const {
    return (std::filesystem::path(options_.checkpoint_dir) / kCheckpointFile)
        .string();
  }

  ModelConfig config_;
  const TrainingData& data_;
  const TrainOptions& options_;
  std::ostream& log_;
  const std::function<void(const EpochStats&)>& on_epoch_;
  torch::Device device_;

  std::shared_ptr<HarmambaModule> module_;
  std::shared_ptr<HarmambaModule> average_;  // null unless ema_decay > 0
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  torch::Tensor train_x_, train_y_;         // whole training set on device_
  std::vector<std::array<int, 3>> triads_;  // xyz channel triads (rotation)

  int next_epoch_ = 0;
  std::vector<EpochStats> history_;
  int best_epoch_ = -1;
  double best_score_ = -1.0;
  ModelWeights best_;
  double wall_seconds_ = 0.0;  // of earlier calls (resumed runs)
};

absl::Status Trainer::Setup() {
  const Dataset& train = data_.train;
  if (train.n < 1) {
    return absl::InvalidArgumentError("the training set has no window");
  }
  RETURN_IF_ERROR(ValidateDataset(train));
  if (data_.validation.n > 0) {
    RETURN_IF_ERROR(CheckCompatible(train, data_.validation, "validation"));
  }
  if (data_.test.has_value()) {
    RETURN_IF_ERROR(CheckCompatible(train, *data_.test, "test"));
  }
  config_.window_length = static_cast<int>(train.t);
  config_.channels = train.channel_names;
  config_.classes = train.class_names;
  const ChannelStatistics stats = ChannelStats(train);
  config_.mean = stats.mean;
  config_.std = stats.std;
  for (float& s : config_.std) {
    if (!(s > 1e-12f)) s = 1.0f;  // a constant channel: leave it unscaled
  }
  for (auto it = config_.extra.begin(); it != config_.extra.end();) {
    it = absl::StartsWith(it->first, kTrainPrefix) ? config_.extra.erase(it)
                                                   : std::next(it);
  }
  if (absl::Status status = config_.Validate(); !status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("model config: ", status.message()));
  }
  if (config_.num_patches() < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("windows of ", train.t, " samples are shorter than patch ",
                     config_.patch));
  }

  triads_ = FindTriads(config_.channels);
  if (options_.augmentation.rotate_max_degrees > 0.0 && triads_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rotation needs xyz channel triads (P_x, P_y, P_z); the channels are ",
        absl::StrJoin(config_.channels, ", ")));
  }

  if (device_.is_cuda() && !torch::cuda::is_available()) {
    return absl::UnavailableError(
        "device cuda: this LibTorch has no CUDA support or no GPU is visible");
  }
  at::set_num_threads(options_.num_threads);
  SetOpenBlasNumThreads(options_.num_threads);
  module_ = std::make_shared<HarmambaModule>(config_, options_.drop_path);
  RETURN_IF_ERROR(module_->LoadWeights(InitModel(config_, options_.seed)));
  module_->to(device_);
  if (options_.ema_decay > 0.0) {
    average_ = std::make_shared<HarmambaModule>(config_, 0.0);
    RETURN_IF_ERROR(average_->LoadWeights(InitModel(config_, options_.seed)));
    average_->to(device_);
    average_->eval();
    for (torch::Tensor& p : average_->parameters()) p.requires_grad_(false);
  }

  std::vector<torch::Tensor> decayed, not_decayed;
  for (const auto& item : module_->named_parameters(/*recurse=*/true)) {
    (IsWeightDecayed(item.key(), item.value().sizes().vec()) ? decayed
                                                             : not_decayed)
        .push_back(item.value());
  }
  auto adamw = [&](double weight_decay) {
    return std::make_unique<torch::optim::AdamWOptions>(
        torch::optim::AdamWOptions(options_.lr)
            .betas({options_.beta1, options_.beta2})
            .eps(options_.eps)
            .weight_decay(weight_decay));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decayed, adamw(options_.weight_decay));
  groups.emplace_back(not_decayed, adamw(0.0));
  optimizer_ = std::make_unique<torch::optim::AdamW>(
      std::move(groups), torch::optim::AdamWOptions(options_.lr));

  train_x_ = torch::from_blob(const_cast<float*>(train.x.data()),
                              {train.n, train.t, train.c}, torch::kFloat32)
                 .to(device_);
  train_y_ = torch::tensor(std::vector<int64_t>(train.y.begin(), train.y.end()),
                           torch::kLong)
                 .to(device_);
  return absl::OkStatus();
}

absl::StatusOr<EpochStats> Trainer::TrainEpoch(int epoch) {
  const auto epoch_start = Clock::now();
  EpochStats stats;
  stats.epoch = epoch;
  stats.lr = LearningRate(options_, epoch);
  for (auto& group : optimizer_->param_groups()) {
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(stats.lr);
  }
  torch::manual_seed(StreamSeed(options_.seed, epoch, Stream::kTorch));
  const std::vector<int64_t> order = Permutation(
      data_.train.n, StreamSeed(options_.seed, epoch, Stream::kShuffle));
  const torch::Tensor order_tensor =
      torch::tensor(order, torch::kLong).to(device_);
  std::mt19937_64 augment_engine(
      StreamSeed(options_.seed, epoch, Stream::kAugment));
  auto cross_entropy = [&](const torch::Tensor& logits,
                           const torch::Tensor& target) {
    namespace F = torch::nn::functional;
    if (options_.label_smoothing > 0.0) {
      return F::cross_entropy(logits, target,
                              F::CrossEntropyFuncOptions().label_smoothing(
                                  options_.label_smoothing));
    }
    return F::cross_entropy(logits, target);
  };

  module_->train();
  double loss_sum = 0.0;
  int64_t correct = 0;
  const int64_t n = data_.train.n;
  const int64_t steps_per_epoch =
      (n + options_.batch_size - 1) / options_.batch_size;
  int64_t step = epoch * steps_per_epoch;
  for (int64_t start = 0; start < n; start += options_.batch_size, ++step) {
    const int64_t count = std::min<int64_t>(options_.batch_size, n - start);
    const torch::Tensor index = order_tensor.narrow(0, start, count);
    torch::Tensor x = train_x_.index_select(0, index);
    const torch::Tensor y = train_y_.index_select(0, index);
    double lambda = 1.0;  // mixup's weight of y
    torch::Tensor y_partner;
    if (options_.augmentation.enabled() || options_.mixup_alpha > 0.0) {
      // index_select made a fresh contiguous copy; augment it in place.
      x = x.to(torch::kCPU).contiguous();
      float* windows = x.data_ptr<float>();
      AugmentWindows(options_.augmentation, triads_, config_.std, count,
                     data_.train.t, data_.train.c, windows, augment_engine);
      if (options_.mixup_alpha > 0.0) {
        lambda = SampleBeta(augment_engine, options_.mixup_alpha,
                            options_.mixup_alpha);
        const std::vector<int64_t> partner =
            Permutation(count, augment_engine());
        MixWindows(lambda, partner, count, data_.train.t * data_.train.c,
                   windows);
        y_partner =
            y.index_select(0, torch::tensor(partner, torch::kLong).to(device_));
      }
      x = x.to(device_);
    }
    optimizer_->zero_grad();
    const torch::Tensor logits = module_->forward(x, options_.path);
    const torch::Tensor loss =
        y_partner.defined()
            ? lambda * cross_entropy(logits, y) +
                  (1.0 - lambda) * cross_entropy(logits, y_partner)
            : cross_entropy(logits, y);
    const double loss_value = loss.item<double>();
    if (!std::isfinite(loss_value)) {
      return absl::InternalError(absl::StrCat(
          "training loss is ", loss_value, " at epoch ", epoch + 1,
          ", windows ", start, "..", start + count - 1, " of the shuffle"));
    }
    loss.backward();
    optimizer_->step();
    if (average_) UpdateAverage(step);
    loss_sum += loss_value * count;
    correct += logits.argmax(1).eq(y).sum().item<int64_t>();
  }
  stats.train_seconds = Seconds(epoch_start);
  stats.train_loss = loss_sum / n;
  stats.train_accuracy = static_cast<double>(correct) / n;
  stats.windows_per_second =
      stats.train_seconds > 0 ? n / stats.train_seconds : 0.0;

  if (data_.validation.n > 0) {
    ASSIGN_OR_RETURN(const Scores scores, ScoreValidation(Scored()));
    stats.val_loss = scores.loss;
    stats.val_accuracy = scores.report.accuracy;
    stats.val_macro_f1 = scores.report.macro_f1;
    stats.val_weighted_f1 = scores.report.weighted_f1;
  }
  stats.seconds = Seconds(epoch_start);
  return stats;
}

void Trainer::UpdateAverage(int64_t step) {
  torch::NoGradGuard no_grad;
  const double decay =
      std::min(options_.ema_decay, (1.0 + step) / (10.0 + step));
  const std::vector<torch::Tensor> average = average_->parameters();
  const std::vector<torch::Tensor> current = module_->parameters();
  for (size_t i = 0; i < average.size(); ++i) {
    average[i].mul_(decay).add_(current[i], 1.0 - decay);
  }
}

absl::StatusOr<Scores> Trainer::ScoreValidation(HarmambaModule& module) {
  const Dataset& val = data_.validation;
  const int k = config_.num_classes();
  std::vector<float> logits;
  if (device_.is_cpu()) {
    // The fused engine: the code that will serve the model, and ~5x faster
    // than LibTorch's forward.
    CpuEngineOptions engine_options;
    engine_options.num_threads = options_.num_threads;
    ASSIGN_OR_RETURN(std::unique_ptr<ModelBackend> engine,
                     CreateCpuEngine(module.ExportWeights(), engine_options));
    ASSIGN_OR_RETURN(logits,
                     BackendLogits(*engine, val, options_.eval_batch_size));
  } else {
    torch::NoGradGuard no_grad;
    const bool was_training = module.is_training();
    module.eval();
    const torch::Tensor all =
        torch::from_blob(const_cast<float*>(val.x.data()),
                         {val.n, val.t, val.c}, torch::kFloat32);
    logits.resize(val.n * k);
    for (int64_t start = 0; start < val.n; start += options_.eval_batch_size) {
      const int64_t count =
          std::min<int64_t>(options_.eval_batch_size, val.n - start);
      const torch::Tensor out =
          module.forward(all.narrow(0, start, count).to(device_), options_.path)
              .to(torch::kCPU, torch::kFloat32)
              .contiguous();
      std::memcpy(logits.data() + start * k, out.data_ptr<float>(),
                  sizeof(float) * count * k);
    }
    module.train(was_training);
  }
  return ScoreLogits(logits, val, k);
}

absl::Status Trainer::SaveCheckpoint(int next_epoch) {
  std::error_code error;
  std::filesystem::create_directories(options_.checkpoint_dir, error);
  if (error) {
    return absl::UnavailableError(absl::StrCat(
        options_.checkpoint_dir, ": cannot create folder: ", error.message()));
  }
  json state{
      {"next_epoch", next_epoch},
      {"best_epoch", best_epoch_},
      {"best_score", best_score_},
      {"wall_seconds", wall_seconds_},
      {"fingerprint", RunFingerprint(config_, data_, options_)},
      {"history", json::array()},
  };
  for (const EpochStats& s : history_)
    state["history"].push_back(EpochToJson(s));
  const std::string path = CheckpointPath();
  const std::string temporary = path + ".tmp";
  try {
    torch::serialize::OutputArchive archive;
    archive.write("format", c10::IValue(kCheckpointFormat));
    archive.write("state", c10::IValue(state.dump()));
    torch::serialize::OutputArchive model_archive;
    module_->save(model_archive);
    archive.write("model", model_archive);
    torch::serialize::OutputArchive optimizer_archive;
    optimizer_->save(optimizer_archive);
    archive.write("optimizer", optimizer_archive);
    if (average_) {
      torch::serialize::OutputArchive average_archive;
      average_->save(average_archive);
      archive.write("average", average_archive);
    }
    if (best_epoch_ >= 0) {
      torch::serialize::OutputArchive best_archive;
      for (const auto& [name, host] : best_.tensors) {
        best_archive.write(
            name, torch::from_blob(const_cast<float*>(host.data.data()),
                                   host.shape, torch::kFloat32));
      }
      archive.write("best", best_archive);
    }
    archive.save_to(temporary);
  } catch (const c10::Error& e) {
    return absl::UnavailableError(absl::StrCat(
        temporary, ": cannot write checkpoint: ", e.what_without_backtrace()));
  }
  std::filesystem::rename(temporary, path, error);
  if (error) {
    return absl::UnavailableError(
        absl::StrCat(path, ": cannot replace checkpoint: ", error.message()));
  }
  return absl::OkStatus();
}

absl::Status Trainer::LoadCheckpoint() {
  const std::string path = CheckpointPath();
  std::error_code error;
  if (!std::filesystem::exists(path, error)) {
    return absl::NotFoundError(
        absl::StrCat(path, ": no checkpoint to resume from"));
  }
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path, device_);
    c10::IValue format, state_text;
    archive.read("format", format);
    if (!format.isInt() || format.toInt() != kCheckpointFormat) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": checkpoint format is not ", kCheckpointFormat));
    }
    archive.read("state", state_text);
    const json state = json::parse(state_text.toStringRef());
    const json expected = RunFingerprint(config_, data_, options_);
    const json& saved = state.at("fingerprint");
    for (const auto& [key, value] : expected.items()) {
      if (!saved.contains(key) || saved.at(key) != value) {
        return absl::FailedPreconditionError(
            absl::StrCat(path, ": the checkpoint's ", key, " is ",
                         saved.contains(key) ? saved.at(key).dump() : "absent",
                         ", this run's is ", value.dump(),
                         "; resume with the same recipe and data"));
      }
    }
    for (const auto& [key, value] : saved.items()) {
      if (!expected.contains(key)) {
        return absl::FailedPreconditionError(absl::StrCat(
            path, ": the checkpoint's ", key, " is ", value.dump(),
            ", this run has none; resume with the same recipe and data"));
      }
    }
    torch::serialize::InputArchive model_archive;
    archive.read("model", model_archive);
    module_->load(model_archive);
    torch::serialize::InputArchive optimizer_archive;
    archive.read("optimizer", optimizer_archive);
    optimizer_->load(optimizer_archive);
    if (average_) {
      torch::serialize::InputArchive average_archive;
      archive.read("average", average_archive);
      average_->load(average_archive);
    }
    next_epoch_ = state.at("next_epoch").get<int>();
    best_epoch_ = state.at("best_epoch").get<int>();
    best_score_ = state.at("best_score").get<double>();
    wall_seconds_ = state.at("wall_seconds").get<double>();
    history_.clear();
    for (const json& epoch : state.at("history")) {
      history_.push_back(EpochFromJson(epoch));
    }
    if (best_epoch_ >= 0) {
      torch::serialize::InputArchive best_archive;
      archive.read("best", best_archive);
      best_ = WeightsFromArchive(best_archive, module_->ExportWeights());
    }
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": cannot read checkpoint: ", e.what_without_backtrace()));
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": bad checkpoint state: ", e.what()));
  }
  return absl::OkStatus();
}

absl::StatusOr<TrainResult> Trainer::Run() {
  const auto start = Clock::now();
  RETURN_IF_ERROR(Setup());
  const Dataset& train = data_.train;
  log_ << absl::StrFormat(
      "harmamba train: forward/backward path: %s (%s), device %s, %d "
      "thread%s, OpenBLAS core %s\n",
      ForwardPathName(options_.path),
      options_.path == ForwardPath::kReference ? "plain LibTorch ops, autograd"
      : device_.is_cuda() ? "our CUDA kernels with hand-written backward"
                          : "our CPU kernels with hand-written backward",
      device_.str(), options_.num_threads, options_.num_threads == 1 ? "" : "s",
      OpenBlasCoreName().empty() ? "none" : OpenBlasCoreName());
  log_ << absl::StrFormat(
      "data: %d training windows (subjects %s), %d validation windows "
      "(subjects %s), %s; %d x %d channels (%s), %d classes\n",
      train.n,
      data_.training_subjects.empty()
          ? "n/a"
          : absl::StrJoin(data_.training_subjects, ","),
      data_.validation.n,
      data_.validation_subjects.empty()
          ? "none"
          : absl::StrJoin(data_.validation_subjects, ","),
      data_.test.has_value() ? absl::StrCat(data_.test->n,
                                            " test windows (scored once, after "
                                            "training)")
                             : "no test set",
      train.t, train.c, absl::StrJoin(train.channel_names, ","),
      train.num_classes());
  log_ << absl::StrFormat(
      "recipe: %d epochs, batch %d, AdamW lr %g (warm-up %d epochs from %g, "
      "cosine to %g), weight decay %g, drop-path %g, seed %d\n",
      options_.epochs, options_.batch_size, options_.lr, options_.warmup_epochs,
      options_.warmup_lr, options_.min_lr, options_.weight_decay,
      options_.drop_path, options_.seed);
  if (options_.regularised()) {
    std::vector<std::string> parts;
    if (options_.augmentation.enabled()) {
      parts.push_back(options_.augmentation.Describe());
    }
    if (options_.mixup_alpha > 0.0) {
      parts.push_back(absl::StrFormat("mixup alpha %g", options_.mixup_alpha));
    }
    if (options_.label_smoothing > 0.0) {
      parts.push_back(
          absl::StrFormat("label smoothing %g", options_.label_smoothing));
    }
    log_ << "regularisation: " << absl::StrJoin(parts, ", ") << "\n";
  }
  if (average_) {
    log_ << absl::StrFormat(
        "weight average: EMA, decay min(%g, (1 + step) / (10 + step)) per "
        "step; validation scores the average and selection exports it\n",
        options_.ema_decay);
  }
  if (options_.resume) {
    RETURN_IF_ERROR(LoadCheckpoint());
    log_ << absl::StrFormat("resumed from %s at epoch %d/%d\n",
                            CheckpointPath(), next_epoch_ + 1, options_.epochs);
  }
  log_.flush();

  int run_here = 0;
  double epoch_seconds_here = 0.0;
  while (next_epoch_ < options_.epochs) {
    if (options_.stop_after_epochs > 0 &&
        run_here >= options_.stop_after_epochs) {
      break;
    }
    const int epoch = next_epoch_;
    ASSIGN_OR_RETURN(const EpochStats stats, TrainEpoch(epoch));
    history_.push_back(stats);
    ++run_here;
    epoch_seconds_here += stats.seconds;
    const bool has_validation = data_.validation.n > 0;
    const double score = has_validation ? stats.val_macro_f1 : epoch;
    const bool improved = score > best_score_;
    if (improved) {
      best_score_ = score;
      best_epoch_ = epoch;
      best_ = Scored().ExportWeights();
    }
    next_epoch_ = epoch + 1;
    const double eta =
        epoch_seconds_here / run_here * (options_.epochs - next_epoch_);
    std::string line = absl::StrFormat(
        "epoch %3d/%d  lr %.2e  loss %.4f  acc %.4f", epoch + 1,
        options_.epochs, stats.lr, stats.train_loss, stats.train_accuracy);
    if (has_validation) {
      absl::StrAppendFormat(
          &line, "  | %s loss %.4f  acc %.4f  macro-F1 %.4f%s",
          average_ ? "EMA val" : "val", stats.val_loss, stats.val_accuracy,
          stats.val_macro_f1, improved ? " *" : "  ");
    }
    absl::StrAppendFormat(&line, "  | %.1f windows/s  %.1f s  ETA %s\n",
                          stats.windows_per_second, stats.seconds,
                          FormatDuration(eta));
    log_ << line;
    log_.flush();
    if (on_epoch_) on_epoch_(stats);
    const bool last = next_epoch_ == options_.epochs;
    const bool stopping = options_.stop_after_epochs > 0 &&
                          run_here >= options_.stop_after_epochs;
    if (!options_.checkpoint_dir.empty() &&
        (last || stopping || next_epoch_ % options_.checkpoint_every == 0)) {
      const double saved_wall = wall_seconds_;
      wall_seconds_ += Seconds(start);
      const absl::Status status = SaveCheckpoint(next_epoch_);
      wall_seconds_ = saved_wall;
      RETURN_IF_ERROR(status);
    }
  }
  wall_seconds_ += Seconds(start);
  if (next_epoch_ < options_.epochs) {
    TrainResult result;
    result.finished = false;
    result.epochs_run = next_epoch_;
    result.selected_epoch = best_epoch_;
    result.history = history_;
    result.wall_seconds = wall_seconds_;
    log_ << absl::StrFormat(
        "stopped after epoch %d/%d (%d this call)%s\n", next_epoch_,
        options_.epochs, run_here,
        options_.checkpoint_dir.empty()
            ? ""
            : absl::StrCat("; resume with --resume from ", CheckpointPath()));
    return result;
  }
  const auto finish_start = Clock::now();
  ASSIGN_OR_RETURN(TrainResult result, Finish());
  result.wall_seconds = wall_seconds_ + Seconds(finish_start);
  result.model.config.extra[absl::StrCat(kTrainPrefix, "wall_seconds")] =
      json(std::round(result.wall_seconds * 1000.0) / 1000.0).dump();
  log_ << absl::StrFormat("wall time %s (%.0f s)\n",
                          FormatDuration(result.wall_seconds),
                          result.wall_seconds);
  return result;
}

absl::StatusOr<TrainResult> Trainer::Finish() {
  TrainResult result;
  result.finished = true;
  result.epochs_run = next_epoch_;
  result.selected_epoch = best_epoch_;
  result.history = history_;
  result.model = best_;
  ModelConfig& config = result.model.config;
  const bool has_validation = data_.validation.n > 0;
  const int threads = options_.num_threads;
  if (has_validation) {
    ASSIGN_OR_RETURN(result.validation,
                     EvaluateOnDataset(result.model, data_.validation, threads,
                                       options_.eval_batch_size));
  }
  if (data_.test.has_value()) {
    ASSIGN_OR_RETURN(result.test,
                     EvaluateOnDataset(result.model, *data_.test, threads,
                                       options_.eval_batch_size));
  }
  auto set = [&](const std::string& key, const json& value) {
    config.extra[absl::StrCat(kTrainPrefix, key)] = value.dump();
  };
  set("epochs", next_epoch_);
  set("epochs_planned", options_.epochs);
  set("selected_epoch", best_epoch_ + 1);
  set("selection_rule",
      has_validation ? kSelectionRule : kSelectionRuleNoValidation);
  set("validation_subjects", data_.validation_subjects);
  set("training_subjects", data_.training_subjects);
  set("seed", options_.seed);
  set("recipe", RecipeJson(options_));
  set("path", ForwardPathName(options_.path));
  set("device", device_.str());
  set("threads", options_.num_threads);
  set("hardware", HardwareDescription());
  set("train_windows", data_.train.n);
  set("validation_windows", data_.validation.n);
  if (!options_.command_line.empty()) set("command", options_.command_line);
  if (!options_.data_description.empty()) {
    set("data", options_.data_description);
  }
  if (result.validation.has_value()) {
    set("validation", ReportSummary(*result.validation, false));
  }
  if (result.test.has_value()) {
    set("test", ReportSummary(*result.test, true));
  }
  RETURN_IF_ERROR(ValidateWeights(result.model));

  log_ << absl::StrFormat(
      "selected epoch %d (%s)\n", best_epoch_ + 1,
      has_validation ? kSelectionRule : kSelectionRuleNoValidation);
  if (result.validation.has_value()) {
    log_ << absl::StrFormat(
        "validation (subjects %s): accuracy %.4f  macro-F1 %.4f  weighted-F1 "
        "%.4f  (%d windows)\n",
        absl::StrJoin(data_.validation_subjects, ","),
        result.validation->accuracy, result.validation->macro_f1,
        result.validation->weighted_f1, result.validation->total);
  }
  if (result.test.has_value()) {
    log_ << absl::StrFormat(
        "test: accuracy %.4f  macro-F1 %.4f  weighted-F1 %.4f  (%d windows)\n",
        result.test->accuracy, result.test->macro_f1, result.test->weighted_f1,
        result.test->total);
  }
  return result;
}

}  // namespace

absl::Status TrainOptions::Validate() const {
  auto positive = [](const char* name, double value) -> absl::Status {
    if (!(value > 0.0) || !std::isfinite(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, " must be > 0, got ", value));
    }
    return absl::OkStatus();
  };
  if (epochs < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("epochs must be >= 1, got ", epochs));
  }
  if (batch_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch_size must be >= 1, got ", batch_size));
  }
  RETURN_IF_ERROR(positive("lr", lr));
  RETURN_IF_ERROR(positive("eps", eps));
  RETURN_IF_ERROR(positive("warmup_lr", warmup_lr));
  RETURN_IF_ERROR(positive("min_lr", min_lr));
  if (!(beta1 >= 0.0 && beta1 < 1.0) || !(beta2 >= 0.0 && beta2 < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("betas must be in [0, 1), got ", beta1, ", ", beta2));
  }
  if (!(weight_decay >= 0.0) || !std::isfinite(weight_decay)) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight_decay must be >= 0, got ", weight_decay));
  }
  if (warmup_epochs < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("warmup_epochs must be >= 0, got ", warmup_epochs));
  }
  if (!(drop_path >= 0.0 && drop_path < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("drop_path must be in [0, 1), got ", drop_path));
  }
  if (absl::Status status = augmentation.Validate(); !status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("augmentation.", status.message()));
  }
  if (!(mixup_alpha >= 0.0 && mixup_alpha <= 100.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("mixup_alpha must be in [0, 100], got ", mixup_alpha));
  }
  if (!(ema_decay >= 0.0 && ema_decay < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("ema_decay must be in [0, 1), got ", ema_decay));
  }
  if (!(label_smoothing >= 0.0 && label_smoothing < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "label_smoothing must be in [0, 1), got ", label_smoothing));
  }
  if (device != "cpu" && device != "cuda" &&
      !absl::StartsWith(device, "cuda:")) {
    return absl::InvalidArgumentError(
        absl::StrCat("device must be cpu or cuda, got \"", device, "\""));
  }
  if (path == ForwardPath::kFast && device != "cpu" && !FastPathRunsOnCuda()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "this build has no CUDA kernels: the fast path runs on the CPU only; "
        "device \"",
        device, "\" needs the reference path"));
  }
  if (num_threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_threads must be >= 1, got ", num_threads));
  }
  if (eval_batch_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("eval_batch_size must be >= 1, got ", eval_batch_size));
  }
  if (checkpoint_every < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint_every must be >= 1, got ", checkpoint_every));
  }
  if (stop_after_epochs < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "stop_after_epochs must be >= 0, got ", stop_after_epochs));
  }
  if ((resume || stop_after_epochs > 0) && checkpoint_dir.empty()) {
    return absl::InvalidArgumentError(
        "resume and stop_after_epochs need a checkpoint_dir");
  }
  return absl::OkStatus();
}

double LearningRate(const TrainOptions& o, int epoch) {
  if (epoch < o.warmup_epochs) {
    return o.warmup_lr + epoch * (o.lr - o.warmup_lr) / o.warmup_epochs;
  }
  if (epoch >= o.epochs) return o.min_lr;
  constexpr double kPi = 3.14159265358979323846;
  return o.min_lr +
         0.5 * (o.lr - o.min_lr) * (1.0 + std::cos(kPi * epoch / o.epochs));
}

bool IsWeightDecayed(std::string_view name, const std::vector<int64_t>& shape) {
  if (name == "cls_token" || name == "pos_embed") return false;
  return shape.size() >= 2;
}

absl::StatusOr<std::vector<int>> ChooseValidationSubjects(
    const Dataset& dataset, int count, uint64_t seed) {
  if (dataset.subject.empty()) {
    return absl::InvalidArgumentError(
        "the dataset has no subject ids; cannot hold out validation "
        "subjects");
  }
  std::vector<int> subjects = SortedSubjects(dataset);
  if (count < 0 || count >= static_cast<int>(subjects.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot hold out ", count, " of the ", subjects.size(),
                     " subjects (", absl::StrJoin(subjects, " "),
                     "); at least one must remain for training"));
  }
  std::mt19937_64 engine(Mix(seed ^ 0x76616c6964ULL));  // "valid"
  for (int64_t i = static_cast<int64_t>(subjects.size()) - 1; i > 0; --i) {
    std::swap(subjects[i], subjects[UniformBelow(engine, i + 1)]);
  }
  subjects.resize(count);
  std::sort(subjects.begin(), subjects.end());
  return subjects;
}

absl::StatusOr<TrainingData> MakeTrainingData(
    const Dataset& train_split, const std::vector<int>& validation_subjects,
    std::optional<Dataset> test) {
  TrainingData data;
  if (validation_subjects.empty()) {
    data.train = train_split;
    data.validation.t = train_split.t;
    data.validation.c = train_split.c;
    data.validation.channel_names = train_split.channel_names;
    data.validation.class_names = train_split.class_names;
  } else {
    ASSIGN_OR_RETURN(auto parts,
                     SplitBySubjects(train_split, validation_subjects));
    data.train = std::move(parts.first);
    data.validation = std::move(parts.second);
    if (data.train.n == 0) {
      return absl::InvalidArgumentError(
          "holding out the validation subjects leaves no training window");
    }
  }
  data.validation_subjects = SortedSubjects(data.validation);
  data.training_subjects = SortedSubjects(data.train);
  data.test = std::move(test);
  return data;
}

absl::StatusOr<TrainResult> Train(
    const ModelConfig& architecture, const TrainingData& data,
    const TrainOptions& options, std::ostream& log,
    const std::function<void(const EpochStats&)>& on_epoch) {
  RETURN_IF_ERROR(options.Validate());
  try {
    Trainer trainer(architecture, data, options, log, on_epoch);
    return trainer.Run();
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("training failed: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("training failed: ", e.what()));
  }
}

absl::StatusOr<ClassificationReport> EvaluateOnDataset(
    const ModelWeights& weights, const Dataset& dataset, int num_threads,
    int batch_size) {
  const ModelConfig& config = weights.config;
  if (dataset.t != config.window_length ||
      dataset.channel_names != config.channels ||
      dataset.class_names != config.classes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the dataset's window (", dataset.t, " x ",
        absl::StrJoin(dataset.channel_names, ","), "; classes ",
        absl::StrJoin(dataset.class_names, ","), ") is not the model's (",
        config.window_length, " x ", absl::StrJoin(config.channels, ","),
        "; classes ", absl::StrJoin(config.classes, ","), ")"));
  }
  if (batch_size < 1) {
    return absl::InvalidArgumentError("batch_size must be >= 1");
  }
  CpuEngineOptions engine_options;
  engine_options.num_threads = num_threads;
  ASSIGN_OR_RETURN(std::unique_ptr<ModelBackend> engine,
                   CreateCpuEngine(weights, engine_options));
  ASSIGN_OR_RETURN(const std::vector<float> logits,
                   BackendLogits(*engine, dataset, batch_size));
  ASSIGN_OR_RETURN(const Scores scores,
                   ScoreLogits(logits, dataset, config.num_classes()));
  return scores.report;
}

std::string HardwareDescription() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line, model;
  while (std::getline(cpuinfo, line)) {
    if (absl::StartsWith(line, "model name")) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        model = line.substr(colon + 1);
        model.erase(0, model.find_first_not_of(" \t"));
      }
      break;
    }
  }
  if (model.empty()) model = "unknown CPU";
  return absl::StrCat(model, ", ", std::thread::hardware_concurrency(),
                      " hardware threads");
}

}  // namespace harmamba
