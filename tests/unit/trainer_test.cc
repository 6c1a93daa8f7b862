// Tests of the trainer (model/torch/trainer.h) and `harmamba train` on small
// synthetic datasets the tests write themselves: the recipe's pieces (LR
// schedule, weight-decay rule, validation hold-out), that training learns,
// that checkpoint -> resume equals an uninterrupted run bit for bit, and the
// metadata of the written model.
#include "model/torch/trainer.h"

#include <ftw.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "model/array_io.h"
#include "model/dataset.h"
#include "model/model_file.h"
#include "nlohmann/json.hpp"
#include "tools/commands.h"

namespace harmamba {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using json = nlohmann::json;

constexpr int kT = 32;
constexpr int kC = 3;
constexpr int kClasses = 3;

// `per_subject` windows for each of `subjects`; class i = an offset plus a
// sinusoid of frequency (i + 1) on channel i, over noise: easy to learn.
Dataset SyntheticDataset(const std::vector<int>& subjects, int per_subject,
                         uint32_t seed) {
  Dataset d;
  d.t = kT;
  d.c = kC;
  d.channel_names = {"acc_x", "acc_y", "acc_z"};
  d.class_names = {"SIT", "WALK", "RUN"};
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.0f, 0.3f);
  std::uniform_real_distribution<float> phase(0.0f, 6.28f);
  for (int subject : subjects) {
    for (int w = 0; w < per_subject; ++w) {
      const int label = (w + subject) % kClasses;
      const float p = phase(rng);
      for (int t = 0; t < kT; ++t) {
        for (int c = 0; c < kC; ++c) {
          float v = noise(rng) + 0.5f * static_cast<float>(c);
          if (c == label) {
            v += 1.0f + 1.5f * std::sin(p + 6.28f * (label + 1) * t / kT);
          }
          d.x.push_back(v);
        }
      }
      d.y.push_back(label);
      d.subject.push_back(subject);
      ++d.n;
    }
  }
  return d;
}

ModelConfig TinyArchitecture() {
  ModelConfig config;
  config.name = "tiny";
  config.d_model = 16;
  config.depth = 2;
  config.d_state = 4;
  config.patch = 8;
  config.stride = 8;
  return config;
}

TrainOptions FastOptions(int epochs) {
  TrainOptions options;
  options.epochs = epochs;
  options.batch_size = 16;
  options.lr = 3e-3;
  options.min_lr = 1e-4;
  options.warmup_epochs = 1;
  options.seed = 7;
  options.num_threads = 1;
  return options;
}

TrainingData TinyData(bool with_test = true) {
  const Dataset train = SyntheticDataset({1, 2, 3, 4, 5, 6}, 16, 1);
  std::optional<Dataset> test;
  if (with_test) test = SyntheticDataset({7, 8}, 12, 2);
  absl::StatusOr<TrainingData> data =
      MakeTrainingData(train, {2, 5}, std::move(test));
  EXPECT_TRUE(data.ok()) << data.status();
  return *std::move(data);
}

int RemoveEntry(const char* path, const struct stat*, int, struct FTW*) {
  return ::remove(path);
}

// An empty directory under the test's temporary folder. POSIX calls, not
// std::filesystem::remove_all: the pip builds of LibTorch 2.5+ export a
// statically linked copy of libstdc++'s filesystem symbols, and its
// remove_all crashes (jumps to address 0) when it interposes
// (pytorch/pytorch#133437; seen with LibTorch 2.11 on the GPU machine).
std::string FreshDir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/trainer_test_" + name;
  ::nftw(dir.c_str(), RemoveEntry, 16, FTW_DEPTH | FTW_PHYS);
  EXPECT_EQ(::mkdir(dir.c_str(), 0755), 0) << dir << ": " << errno;
  return dir;
}

// ---- Recipe pieces ----------------------------------------------------------

TEST(LearningRateTest, WarmupThenCosineAtKeyEpochs) {
  const TrainOptions o;  // the recipe: 150 epochs, 5 warm-up, 5e-4 -> 1e-5
  EXPECT_DOUBLE_EQ(LearningRate(o, 0), 1e-6);
  EXPECT_DOUBLE_EQ(LearningRate(o, 1), 1e-6 + (5e-4 - 1e-6) / 5);
  EXPECT_DOUBLE_EQ(LearningRate(o, 4), 1e-6 + 4 * (5e-4 - 1e-6) / 5);
  const double pi = std::acos(-1.0);
  EXPECT_DOUBLE_EQ(LearningRate(o, 5),
                   1e-5 + 0.5 * (5e-4 - 1e-5) * (1 + std::cos(pi * 5 / 150)));
  EXPECT_NEAR(LearningRate(o, 75), (5e-4 + 1e-5) / 2, 1e-15);
  EXPECT_NEAR(LearningRate(o, 149), 1e-5, 1e-7);
  EXPECT_GT(LearningRate(o, 149), 1e-5);
  EXPECT_DOUBLE_EQ(LearningRate(o, 150), 1e-5);
  for (int e = 5; e < 149; ++e) {
    EXPECT_GT(LearningRate(o, e), LearningRate(o, e + 1)) << "epoch " << e;
  }
  TrainOptions no_warmup;
  no_warmup.warmup_epochs = 0;
  no_warmup.epochs = 10;
  EXPECT_DOUBLE_EQ(LearningRate(no_warmup, 0), 5e-4);
}

TEST(WeightDecayTest, DecaysMatricesExceptClsAndPos) {
  ModelConfig config = TinyArchitecture();
  config.channels = {"a", "b", "c"};
  config.classes = {"x", "y"};
  config.mean = {0, 0, 0};
  config.std = {1, 1, 1};
  std::set<std::string> decayed;
  for (const auto& [name, shape] : ExpectedTensors(config)) {
    if (IsWeightDecayed(name, shape)) decayed.insert(name);
  }
  const std::set<std::string> expected = {
      "patch_embed.proj.weight",        "layers.0.mixer.A_log",
      "layers.0.mixer.in_proj.weight",  "layers.0.mixer.conv1d.weight",
      "layers.0.mixer.x_proj.weight",   "layers.0.mixer.dt_proj.weight",
      "layers.0.mixer.out_proj.weight", "layers.1.mixer.A_log",
      "layers.1.mixer.in_proj.weight",  "layers.1.mixer.conv1d.weight",
      "layers.1.mixer.x_proj.weight",   "layers.1.mixer.dt_proj.weight",
      "layers.1.mixer.out_proj.weight", "head.weight",
  };
  EXPECT_EQ(decayed, expected);
  EXPECT_FALSE(IsWeightDecayed("cls_token", {1, 1, 16}));
  EXPECT_FALSE(IsWeightDecayed("pos_embed", {1, 13, 16}));
  EXPECT_FALSE(IsWeightDecayed("layers.0.mixer.D", {32}));
  EXPECT_FALSE(IsWeightDecayed("norm_f.weight", {16}));
}

TEST(ValidationSplitTest, ChoosesDeterministicSortedSubjects) {
  const Dataset d = SyntheticDataset({1, 3, 5, 6, 7, 8, 11}, 2, 3);
  absl::StatusOr<std::vector<int>> a = ChooseValidationSubjects(d, 3, 42);
  absl::StatusOr<std::vector<int>> b = ChooseValidationSubjects(d, 3, 42);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(*a, *b);
  ASSERT_EQ(a->size(), 3u);
  EXPECT_TRUE(std::is_sorted(a->begin(), a->end()));
  for (int id : *a)
    EXPECT_TRUE(std::set<int>({1, 3, 5, 6, 7, 8, 11}).count(id));
  std::set<std::vector<int>> distinct;
  for (uint64_t seed = 0; seed < 8; ++seed) {
    distinct.insert(*ChooseValidationSubjects(d, 3, seed));
  }
  EXPECT_GT(distinct.size(), 1u) << "the seed must matter";

  EXPECT_THAT(ChooseValidationSubjects(d, 7, 0).status().message(),
              HasSubstr("at least one must remain"));
  Dataset anonymous = d;
  anonymous.subject.clear();
  EXPECT_THAT(ChooseValidationSubjects(anonymous, 1, 0).status().message(),
              HasSubstr("no subject ids"));
}

TEST(ValidationSplitTest, HoldsSubjectsOutOfTraining) {
  const TrainingData data = TinyData();
  EXPECT_EQ(data.validation_subjects, std::vector<int>({2, 5}));
  EXPECT_EQ(data.training_subjects, std::vector<int>({1, 3, 4, 6}));
  EXPECT_EQ(data.train.n, 64);
  EXPECT_EQ(data.validation.n, 32);
  for (int s : data.train.subject) EXPECT_TRUE(s != 2 && s != 5);
  for (int s : data.validation.subject) EXPECT_TRUE(s == 2 || s == 5);
}

TEST(TrainOptionsTest, RefusesBadValues) {
  TrainOptions o;
  o.epochs = 0;
  EXPECT_THAT(o.Validate().message(), HasSubstr("epochs"));
  o = TrainOptions();
  o.device = "cuda";  // with the fast path: refused only without CUDA kernels
  if (FastPathRunsOnCuda()) {
    EXPECT_TRUE(o.Validate().ok()) << o.Validate();
  } else {
    EXPECT_THAT(o.Validate().message(), HasSubstr("fast path"));
  }
  o.device = "tpu";
  EXPECT_THAT(o.Validate().message(), HasSubstr("device must be cpu or cuda"));
  o = TrainOptions();
  o.resume = true;
  EXPECT_THAT(o.Validate().message(), HasSubstr("checkpoint_dir"));
  o = TrainOptions();
  o.lr = -1;
  EXPECT_THAT(o.Validate().message(), HasSubstr("lr"));
  o = TrainOptions();
  o.label_smoothing = 1.0;
  EXPECT_THAT(o.Validate().message(), HasSubstr("label_smoothing"));
  o = TrainOptions();
  o.ema_decay = 1.0;
  EXPECT_THAT(o.Validate().message(), HasSubstr("ema_decay"));
  o = TrainOptions();
  o.mixup_alpha = -0.5;
  EXPECT_THAT(o.Validate().message(), HasSubstr("mixup_alpha"));
  o = TrainOptions();
  o.augmentation.jitter_sigma = 2.0;
  EXPECT_THAT(o.Validate().message(), HasSubstr("augmentation.jitter_sigma"));
  EXPECT_FALSE(TrainOptions().regularised()) << "the recipe has none";
  EXPECT_TRUE(TrainOptions().Validate().ok());
}

// ---- Training
// -----------------------------------------------------------------

TEST(TrainTest, ShortRunLowersTheLossAndLogsProgress) {
  const TrainingData data = TinyData();
  std::ostringstream log;
  int callbacks = 0;
  TrainOptions options = FastOptions(8);
  options.lr = 1e-2;
  absl::StatusOr<TrainResult> result =
      Train(TinyArchitecture(), data, options, log,
            [&](const EpochStats&) { ++callbacks; });
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_TRUE(result->finished);
  EXPECT_EQ(callbacks, 8);
  ASSERT_EQ(result->history.size(), 8u);
  const double first = result->history.front().train_loss;
  const double last = result->history.back().train_loss;
  EXPECT_NEAR(first, std::log(3.0), 0.3);  // about chance at the start
  EXPECT_LT(last, 0.5 * first) << log.str();
  EXPECT_GT(result->history.back().val_accuracy, 0.8) << log.str();
  for (const EpochStats& s : result->history) {
    EXPECT_GT(s.windows_per_second, 0.0);
    EXPECT_DOUBLE_EQ(s.lr, LearningRate(options, s.epoch));
  }
  const std::string text = log.str();
  EXPECT_EQ(text.rfind("harmamba train: forward/backward path: fast", 0), 0u)
      << text;
  EXPECT_THAT(text, HasSubstr("epoch   8/8"));
  EXPECT_THAT(text, HasSubstr("windows/s"));
  EXPECT_THAT(text, HasSubstr("ETA"));
  EXPECT_THAT(text, HasSubstr("val loss"));
}

TEST(TrainTest, SelectsTheBestValidationEpochAndRecordsMetadata) {
  const TrainingData data = TinyData();
  std::ostringstream log;
  const TrainOptions options = FastOptions(5);
  absl::StatusOr<TrainResult> result =
      Train(TinyArchitecture(), data, options, log);
  ASSERT_TRUE(result.ok()) << result.status();

  // Selection: the first epoch with the highest validation macro-F1.
  int best = 0;
  for (const EpochStats& s : result->history) {
    if (s.val_macro_f1 > result->history[best].val_macro_f1) best = s.epoch;
  }
  EXPECT_EQ(result->selected_epoch, best);

  // Normalisation statistics of the training portion only.
  const ModelConfig& config = result->model.config;
  const ChannelStatistics stats = ChannelStats(data.train);
  EXPECT_EQ(config.mean, stats.mean);
  EXPECT_EQ(config.std, stats.std);
  EXPECT_NE(config.mean,
            ChannelStats(SyntheticDataset({1, 2, 3, 4, 5, 6}, 16, 1)).mean);
  EXPECT_EQ(config.name, "tiny");
  EXPECT_EQ(config.channels, data.train.channel_names);
  EXPECT_EQ(config.classes, data.train.class_names);

  // The figures are those of the written model.
  absl::StatusOr<std::string> bytes = SerializeSafetensors(result->model);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  absl::StatusOr<ModelWeights> loaded = ParseSafetensors(*bytes);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const auto& extra = loaded->config.extra;
  auto meta = [&](const std::string& key) {
    auto it = extra.find("harmamba.train." + key);
    EXPECT_NE(it, extra.end()) << key;
    return it == extra.end() ? json() : json::parse(it->second);
  };
  EXPECT_EQ(meta("epochs"), 5);
  EXPECT_EQ(meta("epochs_planned"), 5);
  EXPECT_EQ(meta("selected_epoch"), best + 1);
  EXPECT_EQ(meta("validation_subjects"), json({2, 5}));
  EXPECT_EQ(meta("training_subjects"), json({1, 3, 4, 6}));
  EXPECT_THAT(meta("selection_rule").get<std::string>(),
              HasSubstr("validation macro-F1"));
  EXPECT_EQ(meta("seed"), 7);
  EXPECT_EQ(meta("recipe")["batch_size"], 16);
  EXPECT_EQ(meta("path"), "fast");
  EXPECT_GT(meta("wall_seconds").get<double>(), 0.0);
  EXPECT_FALSE(meta("hardware").get<std::string>().empty());
  absl::StatusOr<ClassificationReport> test =
      EvaluateOnDataset(*loaded, *data.test, 1);
  ASSERT_TRUE(test.ok()) << test.status();
  EXPECT_DOUBLE_EQ(meta("test")["accuracy"].get<double>(), test->accuracy);
  EXPECT_DOUBLE_EQ(meta("test")["macro_f1"].get<double>(), test->macro_f1);
  EXPECT_DOUBLE_EQ(meta("test")["weighted_f1"].get<double>(),
                   test->weighted_f1);
  EXPECT_EQ(meta("test")["windows"], 24);
  absl::StatusOr<ClassificationReport> val =
      EvaluateOnDataset(*loaded, data.validation, 1);
  ASSERT_TRUE(val.ok()) << val.status();
  EXPECT_DOUBLE_EQ(meta("validation")["macro_f1"].get<double>(), val->macro_f1);
  // The selected epoch's validation figure came from the same weights.
  EXPECT_NEAR(val->macro_f1, result->history[best].val_macro_f1, 1e-12);
}

bool SameTensors(const ModelWeights& a, const ModelWeights& b) {
  if (a.tensors.size() != b.tensors.size()) return false;
  for (const auto& [name, tensor] : a.tensors) {
    auto it = b.tensors.find(name);
    if (it == b.tensors.end() || it->second.shape != tensor.shape ||
        std::memcmp(it->second.data.data(), tensor.data.data(),
                    tensor.data.size() * sizeof(float)) != 0) {
      return false;
    }
  }
  return true;
}

// A resumed run is bitwise the uninterrupted one: every epoch's figures, the
// selection and the selected weights.
void ExpectSameRun(const TrainResult& resumed, const TrainResult& whole) {
  ASSERT_EQ(resumed.history.size(), whole.history.size());
  for (size_t e = 0; e < whole.history.size(); ++e) {
    EXPECT_EQ(resumed.history[e].train_loss, whole.history[e].train_loss)
        << "epoch " << e;
    EXPECT_EQ(resumed.history[e].val_loss, whole.history[e].val_loss)
        << "epoch " << e;
    EXPECT_EQ(resumed.history[e].val_macro_f1, whole.history[e].val_macro_f1)
        << "epoch " << e;
  }
  EXPECT_EQ(resumed.selected_epoch, whole.selected_epoch);
  EXPECT_TRUE(SameTensors(resumed.model, whole.model))
      << "resumed run's selected weights differ from the uninterrupted run's";
}

TEST(TrainTest, ResumeFromCheckpointEqualsUninterruptedRun) {
  const TrainingData data = TinyData(/*with_test=*/false);
  TrainOptions options = FastOptions(4);
  options.checkpoint_dir = FreshDir("uninterrupted");
  std::ostringstream log;
  absl::StatusOr<TrainResult> whole =
      Train(TinyArchitecture(), data, options, log);
  ASSERT_TRUE(whole.ok()) << whole.status();

  options.checkpoint_dir = FreshDir("interrupted");
  options.stop_after_epochs = 2;
  absl::StatusOr<TrainResult> first =
      Train(TinyArchitecture(), data, options, log);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(first->finished);
  EXPECT_EQ(first->epochs_run, 2);
  EXPECT_TRUE(
      std::filesystem::exists(options.checkpoint_dir + "/checkpoint.pt"));
  // Something else runs in between and moves LibTorch's global generator.
  {
    const TrainingData other = TinyData(false);
    TrainOptions other_options = FastOptions(1);
    other_options.seed = 99;
    ASSERT_TRUE(Train(TinyArchitecture(), other, other_options, log).ok());
  }
  options.stop_after_epochs = 0;
  options.resume = true;
  std::ostringstream resume_log;
  absl::StatusOr<TrainResult> rest =
      Train(TinyArchitecture(), data, options, resume_log);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_THAT(resume_log.str(), HasSubstr("resumed from"));
  EXPECT_THAT(resume_log.str(), HasSubstr("at epoch 3/4"));
  ASSERT_TRUE(rest->finished);
  EXPECT_EQ(rest->epochs_run, 4);
  ASSERT_EQ(rest->history.size(), 4u);
  ExpectSameRun(*rest, *whole);
}

TEST(TrainTest, ResumeRefusesADifferentRecipeOrMissingCheckpoint) {
  const TrainingData data = TinyData(false);
  TrainOptions options = FastOptions(3);
  options.checkpoint_dir = FreshDir("mismatch");
  options.stop_after_epochs = 1;
  std::ostringstream log;
  ASSERT_TRUE(Train(TinyArchitecture(), data, options, log).ok());
  options.stop_after_epochs = 0;
  options.resume = true;
  options.lr = 1e-3;
  absl::StatusOr<TrainResult> result =
      Train(TinyArchitecture(), data, options, log);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(result.status().message(), HasSubstr("lr"));

  options.checkpoint_dir = FreshDir("missing");
  result = Train(TinyArchitecture(), data, options, log);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(result.status().message(), HasSubstr("checkpoint.pt"));
}

TEST(TrainTest, WithoutValidationKeepsTheLastEpoch) {
  const Dataset train = SyntheticDataset({1, 2}, 8, 5);
  absl::StatusOr<TrainingData> data = MakeTrainingData(train, {}, std::nullopt);
  ASSERT_TRUE(data.ok()) << data.status();
  std::ostringstream log;
  absl::StatusOr<TrainResult> result =
      Train(TinyArchitecture(), *data, FastOptions(2), log);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->selected_epoch, 1);
  EXPECT_FALSE(result->validation.has_value());
  EXPECT_FALSE(result->test.has_value());
  EXPECT_THAT(result->model.config.extra.at("harmamba.train.selection_rule"),
              HasSubstr("last epoch"));
}

// Trains `options` (which must name a checkpoint_dir) in two calls: the first
// `first_epochs` epochs, then a resume to the end.
absl::StatusOr<TrainResult> TrainInTwoCalls(const TrainingData& data,
                                            TrainOptions options,
                                            int first_epochs,
                                            std::ostream& log) {
  options.stop_after_epochs = first_epochs;
  absl::StatusOr<TrainResult> first =
      Train(TinyArchitecture(), data, options, log);
  if (!first.ok()) return first.status();
  options.stop_after_epochs = 0;
  options.resume = true;
  return Train(TinyArchitecture(), data, options, log);
}

// ---- Weight averaging -------------------------------------------------------

json RecipeOf(const TrainResult& result) {
  return json::parse(result.model.config.extra.at("harmamba.train.recipe"));
}

TEST(WeightAverageTest, OneStepAverageBlendsInitAndTrainedWeights) {
  // Without validation the last epoch is kept, so one epoch of one step
  // exports the average after step 0: d * init + (1 - d) * trained with
  // d = min(0.5, (1 + 0) / (10 + 0)) = 0.1.
  const Dataset train = SyntheticDataset({1, 2}, 8, 5);
  absl::StatusOr<TrainingData> data = MakeTrainingData(train, {}, std::nullopt);
  ASSERT_TRUE(data.ok()) << data.status();
  TrainOptions options = FastOptions(1);
  options.warmup_epochs = 0;  // step 0 at the full learning rate
  options.batch_size = static_cast<int>(train.n);
  std::ostringstream log;
  absl::StatusOr<TrainResult> trained =
      Train(TinyArchitecture(), *data, options, log);
  ASSERT_TRUE(trained.ok()) << trained.status();
  options.ema_decay = 0.5;
  absl::StatusOr<TrainResult> averaged =
      Train(TinyArchitecture(), *data, options, log);
  ASSERT_TRUE(averaged.ok()) << averaged.status();
  const ModelWeights init = InitModel(trained->model.config, options.seed);

  double largest_step = 0.0;
  for (const auto& [name, average] : averaged->model.tensors) {
    const HostTensor& start = init.tensors.at(name);
    const HostTensor& end = trained->model.tensors.at(name);
    ASSERT_EQ(average.data.size(), end.data.size()) << name;
    for (size_t i = 0; i < average.data.size(); ++i) {
      const double expected = 0.1 * start.data[i] + 0.9 * end.data[i];
      ASSERT_NEAR(average.data[i], expected, 1e-6 * (1.0 + std::abs(expected)))
          << name << "[" << i << "]";
      largest_step =
          std::max(largest_step, std::abs(double{end.data[i]} - start.data[i]));
    }
  }
  EXPECT_GT(largest_step, 1e-3) << "the step did not move the weights";
}

TEST(WeightAverageTest, ValidationScoresTheAverageAndResumeEqualsWholeRun) {
  const TrainingData data = TinyData(/*with_test=*/false);
  TrainOptions options = FastOptions(4);
  options.ema_decay = 0.9;
  options.checkpoint_dir = FreshDir("average_whole");
  std::ostringstream log;
  absl::StatusOr<TrainResult> whole =
      Train(TinyArchitecture(), data, options, log);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_THAT(log.str(), HasSubstr("weight average: EMA, decay min(0.9, "));
  EXPECT_THAT(log.str(), HasSubstr("| EMA val loss"));
  EXPECT_EQ(RecipeOf(*whole)["weight_average"]["ema_decay"], 0.9);

  // The average leaves training alone (same losses) but is what validation
  // scores (other validation losses).
  absl::StatusOr<TrainResult> plain =
      Train(TinyArchitecture(), data, FastOptions(4), log);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(RecipeOf(*plain)["weight_average"], "none");
  for (int e = 0; e < 4; ++e) {
    EXPECT_EQ(plain->history[e].train_loss, whole->history[e].train_loss)
        << "epoch " << e;
    EXPECT_NE(plain->history[e].val_loss, whole->history[e].val_loss)
        << "epoch " << e;
  }

  // The checkpoint carries the average: resuming gives bitwise the same.
  options.checkpoint_dir = FreshDir("average_interrupted");
  absl::StatusOr<TrainResult> rest = TrainInTwoCalls(data, options, 2, log);
  ASSERT_TRUE(rest.ok()) << rest.status();
  ExpectSameRun(*rest, *whole);

  // ... and the checkpoint's decay must match.
  options.resume = true;
  options.ema_decay = 0.8;
  absl::StatusOr<TrainResult> refused =
      Train(TinyArchitecture(), data, options, log);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("ema_decay"));
}

// ---- Regularisation beyond the recipe ---------------------------------------

// Every augmentation, mixup and label smoothing at once.
TrainOptions RegularisedOptions(int epochs) {
  TrainOptions options = FastOptions(epochs);
  options.augmentation.rotate_max_degrees = 10.0;
  options.augmentation.scale_sigma = 0.1;
  options.augmentation.speed_max = 0.1;
  options.augmentation.jitter_sigma = 0.05;
  options.augmentation.shift_max = 4;
  options.mixup_alpha = 0.2;
  options.label_smoothing = 0.1;
  return options;
}

TEST(RegularisationTest, ResumeEqualsUninterruptedRunAndTheSeedDecides) {
  const TrainingData data = TinyData(/*with_test=*/false);
  TrainOptions options = RegularisedOptions(4);
  std::ostringstream log;
  options.checkpoint_dir = FreshDir("regularised_whole");
  absl::StatusOr<TrainResult> whole =
      Train(TinyArchitecture(), data, options, log);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_THAT(
      log.str(),
      HasSubstr("regularisation: rotate 10 deg, scale 0.1 per triad, "
                "speed 0.1, jitter 0.05 std, shift 4, mixup alpha 0.2, label "
                "smoothing 0.1\n"));

  options.checkpoint_dir = FreshDir("regularised_interrupted");
  absl::StatusOr<TrainResult> rest = TrainInTwoCalls(data, options, 3, log);
  ASSERT_TRUE(rest.ok()) << rest.status();
  ExpectSameRun(*rest, *whole);

  // The augmentation really changes what is learnt, and its draws follow the
  // seed.
  const TrainOptions plain = FastOptions(4);
  absl::StatusOr<TrainResult> unaugmented =
      Train(TinyArchitecture(), data, plain, log);
  ASSERT_TRUE(unaugmented.ok()) << unaugmented.status();
  EXPECT_NE(unaugmented->history[1].train_loss, whole->history[1].train_loss);
  TrainOptions augment_only = plain;
  augment_only.augmentation = options.augmentation;
  absl::StatusOr<TrainResult> a =
      Train(TinyArchitecture(), data, augment_only, log);
  absl::StatusOr<TrainResult> b =
      Train(TinyArchitecture(), data, augment_only, log);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(SameTensors(a->model, b->model));
  EXPECT_NE(a->history[1].train_loss, unaugmented->history[1].train_loss);
}

TEST(RegularisationTest, EachOptionAloneTrainsAndIsRecorded) {
  const TrainingData data = TinyData();
  std::ostringstream log;
  absl::StatusOr<TrainResult> plain =
      Train(TinyArchitecture(), data, FastOptions(2), log);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(RecipeOf(*plain)["augmentation"], "none");
  EXPECT_EQ(RecipeOf(*plain)["loss"], "cross-entropy");
  EXPECT_THAT(log.str(), Not(HasSubstr("regularisation:")));

  struct Case {
    std::function<void(TrainOptions&)> set;
    json recorded;
  };
  const std::vector<Case> cases = {
      {[](TrainOptions& o) { o.augmentation.rotate_max_degrees = 5; },
       {{"rotate_max_degrees", 5.0}}},
      {[](TrainOptions& o) { o.augmentation.scale_sigma = 0.1; },
       {{"scale_sigma", 0.1}, {"scale_per", "triad"}}},
      {[](TrainOptions& o) {
         o.augmentation.scale_sigma = 0.1;
         o.augmentation.scale_per_channel = true;
       },
       {{"scale_sigma", 0.1}, {"scale_per", "channel"}}},
      {[](TrainOptions& o) { o.augmentation.jitter_sigma = 0.05; },
       {{"jitter_sigma_of_std", 0.05}}},
      {[](TrainOptions& o) { o.augmentation.speed_max = 0.1; },
       {{"speed_max", 0.1}}},
      {[](TrainOptions& o) { o.augmentation.shift_max = 8; },
       {{"circular_shift_max", 8}}},
      {[](TrainOptions& o) { o.mixup_alpha = 0.4; }, {{"mixup_alpha", 0.4}}},
      {[](TrainOptions& o) { o.label_smoothing = 0.1; },
       {{"label_smoothing", 0.1}}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.recorded.dump());
    TrainOptions options = FastOptions(2);
    c.set(options);
    absl::StatusOr<TrainResult> result =
        Train(TinyArchitecture(), data, options, log);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(RecipeOf(*result)["augmentation"], c.recorded);
    EXPECT_TRUE(std::isfinite(result->history.back().train_loss));
    EXPECT_NE(result->history.back().train_loss,
              plain->history.back().train_loss);
    if (options.label_smoothing > 0) {
      EXPECT_EQ(RecipeOf(*result)["loss"],
                "cross-entropy, label smoothing 0.1");
    }
  }
}

TEST(RegularisationTest, ResumeRefusesOtherRegularisationAndRotationNeedsXyz) {
  const TrainingData data = TinyData(false);
  TrainOptions options = RegularisedOptions(3);
  options.checkpoint_dir = FreshDir("regularised_mismatch");
  options.stop_after_epochs = 1;
  std::ostringstream log;
  ASSERT_TRUE(Train(TinyArchitecture(), data, options, log).ok());
  options.stop_after_epochs = 0;
  options.resume = true;
  options.augmentation.shift_max = 0;
  absl::StatusOr<TrainResult> result =
      Train(TinyArchitecture(), data, options, log);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(result.status().message(), HasSubstr("regularisation"));
  options = FastOptions(3);  // none at all: refused too
  options.checkpoint_dir = FreshDir("regularised_mismatch");
  options.resume = true;
  // (FreshDir emptied the folder: write a regularised checkpoint again.)
  TrainOptions first = RegularisedOptions(3);
  first.checkpoint_dir = options.checkpoint_dir;
  first.stop_after_epochs = 1;
  ASSERT_TRUE(Train(TinyArchitecture(), data, first, log).ok());
  result = Train(TinyArchitecture(), data, options, log);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);

  // Rotation of data without an xyz triad.
  absl::StatusOr<Dataset> two_axes =
      SelectChannels(data.train, {"acc_x", "acc_y"});
  ASSERT_TRUE(two_axes.ok()) << two_axes.status();
  absl::StatusOr<TrainingData> planar =
      MakeTrainingData(*two_axes, {}, std::nullopt);
  ASSERT_TRUE(planar.ok()) << planar.status();
  TrainOptions rotate = FastOptions(1);
  rotate.augmentation.rotate_max_degrees = 10;
  result = Train(TinyArchitecture(), *planar, rotate, log);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(result.status().message(), HasSubstr("triads"));
}

// ---- harmamba train
// -----------------------------------------------------------

// The npy layout with subject ids (written as the authors' code would).
std::string NpyInt32(const std::vector<int32_t>& values) {
  std::string header = "{'descr': '<i4', 'fortran_order': False, 'shape': (" +
                       std::to_string(values.size()) + ",), }";
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::string out = "\x93NUMPY\x01";
  out.push_back('\0');
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  std::string data(values.size() * 4, '\0');
  std::memcpy(data.data(), values.data(), data.size());
  return out + header + data;
}

void WriteNpySplit(const std::string& dir, const std::string& split,
                   const Dataset& d) {
  ASSERT_TRUE(
      WriteNpyFloat32(dir + "/x_" + split + ".npy", {d.n, d.t, d.c}, d.x).ok());
  std::vector<float> y(d.y.begin(), d.y.end());
  ASSERT_TRUE(WriteNpyFloat32(dir + "/y_" + split + ".npy", {d.n}, y).ok());
  std::ofstream(dir + "/subject_" + split + ".npy", std::ios::binary)
      << NpyInt32(std::vector<int32_t>(d.subject.begin(), d.subject.end()));
}

TEST(TrainCommandTest, TrainsWritesAServableModelAndEvalReproducesIt) {
  const std::string dir = FreshDir("cli_data");
  Dataset train = SyntheticDataset({1, 2, 3, 4, 5}, 12, 11);
  Dataset test = SyntheticDataset({6, 7}, 9, 12);
  WriteNpySplit(dir, "train", train);
  WriteNpySplit(dir, "test", test);
  std::ofstream(dir + "/channels.txt") << "acc_x\nacc_y\nacc_z\n";
  std::ofstream(dir + "/activity_labels.txt") << "1 SIT\n2 WALK\n3 RUN\n";
  const std::string model = FreshDir("cli_out") + "/m.safetensors";
  const std::vector<std::string> args = {"train",
                                         "--data",
                                         dir,
                                         "--out",
                                         model,
                                         "--epochs",
                                         "3",
                                         "--batch",
                                         "8",
                                         "--lr",
                                         "0.003",
                                         "--warmup-epochs",
                                         "1",
                                         "--channels",
                                         "acc_z,acc_x",
                                         "--val-subjects",
                                         "2",
                                         "--d-model",
                                         "16",
                                         "--depth",
                                         "2",
                                         "--d-state",
                                         "4",
                                         "--patch",
                                         "8",
                                         "--stride",
                                         "8",
                                         "--name",
                                         "tiny-cli",
                                         "--seed",
                                         "3"};
  std::ostringstream out, err;
  ASSERT_EQ(cli::RunHarmamba(args, out, err), 0) << err.str();
  EXPECT_THAT(out.str(), HasSubstr("wrote " + model));
  EXPECT_THAT(err.str(), HasSubstr("forward/backward path: fast"));
  absl::StatusOr<ModelWeights> weights = LoadModelFile(model);
  ASSERT_TRUE(weights.ok()) << weights.status();
  const ModelConfig& config = weights->config;
  EXPECT_EQ(config.name, "tiny-cli");
  EXPECT_EQ(config.channels, std::vector<std::string>({"acc_z", "acc_x"}));
  EXPECT_EQ(config.extra.at("harmamba.train.validation_subjects"), "[2]");
  EXPECT_THAT(config.extra.at("harmamba.train.command"),
              HasSubstr("--channels acc_z,acc_x"));
  const json test_figures = json::parse(config.extra.at("harmamba.train.test"));

  std::ostringstream eval_out, eval_err;
  ASSERT_EQ(cli::RunHarmamba({"eval", "--model", model, "--data", dir, "--json",
                              "--threads", "1"},
                             eval_out, eval_err),
            0)
      << eval_err.str();
  const json report = json::parse(eval_out.str());
  EXPECT_DOUBLE_EQ(report["accuracy"].get<double>(),
                   test_figures["accuracy"].get<double>());
  EXPECT_DOUBLE_EQ(report["macro_f1"].get<double>(),
                   test_figures["macro_f1"].get<double>());
  EXPECT_EQ(report["confusion"], test_figures["confusion"]);

  // The output exists now: refused without --force, before any training.
  std::ostringstream again_out, again_err;
  EXPECT_EQ(cli::RunHarmamba(args, again_out, again_err), 1);
  EXPECT_THAT(again_err.str(), HasSubstr("--force"));
}

TEST(TrainCommandTest, RegularisationFlagsReachTheRecipe) {
  const std::string dir = FreshDir("cli_regularised");
  WriteNpySplit(dir, "train", SyntheticDataset({1, 2, 3, 4}, 8, 21));
  std::ofstream(dir + "/channels.txt") << "acc_x\nacc_y\nacc_z\n";
  const std::string model = dir + "/m.safetensors";
  std::ostringstream out, err;
  ASSERT_EQ(cli::RunHarmamba({"train",
                              "--data",
                              dir,
                              "--out",
                              model,
                              "--epochs",
                              "1",
                              "--batch",
                              "8",
                              "--val-subjects",
                              "2",
                              "--d-model",
                              "16",
                              "--depth",
                              "2",
                              "--d-state",
                              "4",
                              "--patch",
                              "8",
                              "--stride",
                              "8",
                              "--rotate",
                              "7.5",
                              "--scale",
                              "0.15",
                              "--scale-per-channel",
                              "--jitter",
                              "0.02",
                              "--speed",
                              "0.25",
                              "--shift",
                              "3",
                              "--mixup",
                              "0.3",
                              "--label-smoothing",
                              "0.05",
                              "--ema",
                              "0.99"},
                             out, err),
            0)
      << err.str();
  absl::StatusOr<ModelWeights> weights = LoadModelFile(model);
  ASSERT_TRUE(weights.ok()) << weights.status();
  const json recipe =
      json::parse(weights->config.extra.at("harmamba.train.recipe"));
  EXPECT_EQ(recipe["augmentation"], json({{"rotate_max_degrees", 7.5},
                                          {"scale_sigma", 0.15},
                                          {"scale_per", "channel"},
                                          {"jitter_sigma_of_std", 0.02},
                                          {"speed_max", 0.25},
                                          {"circular_shift_max", 3},
                                          {"mixup_alpha", 0.3},
                                          {"label_smoothing", 0.05}}));
  EXPECT_THAT(err.str(), HasSubstr("regularisation: rotate 7.5 deg"));
  EXPECT_EQ(recipe["weight_average"]["ema_decay"], 0.99);
  EXPECT_THAT(err.str(), HasSubstr("EMA val loss"));

  // Rotation needs an xyz triad among the channels trained on.
  err.str("");
  EXPECT_EQ(
      cli::RunHarmamba({"train", "--data", dir, "--out", dir + "/n.safetensors",
                        "--epochs", "1", "--val-subjects", "2", "--channels",
                        "acc_x,acc_y", "--rotate", "5"},
                       out, err),
      1);
  EXPECT_THAT(err.str(), HasSubstr("triads"));
  err.str("");
  EXPECT_EQ(cli::RunHarmamba({"train", "--data", dir, "--out",
                              dir + "/n.safetensors", "--label-smoothing", "1"},
                             out, err),
            2);
  EXPECT_THAT(err.str(), HasSubstr("--label-smoothing"));
}

TEST(TrainCommandTest, UsageAndDataErrorsAreNamed) {
  std::ostringstream out, err;
  EXPECT_EQ(cli::RunHarmamba({"train", "--data", "x"}, out, err), 2);
  EXPECT_THAT(err.str(), HasSubstr("--out"));
  err.str("");
  EXPECT_EQ(
      cli::RunHarmamba({"train", "--data", "x", "--out", "y", "--lr", "fast"},
                       out, err),
      2);
  EXPECT_THAT(err.str(), HasSubstr("--lr: expected a number"));

  const std::string dir = FreshDir("cli_bad");
  WriteNpySplit(dir, "train", SyntheticDataset({1, 2, 3}, 4, 1));
  err.str("");
  EXPECT_EQ(cli::RunHarmamba({"train", "--data", dir, "--out",
                              dir + "/m.safetensors", "--channels", "gyro_x"},
                             out, err),
            1);
  EXPECT_THAT(err.str(), HasSubstr("--channels"));
  err.str("");
  EXPECT_EQ(cli::RunHarmamba({"train", "--data", dir, "--out",
                              dir + "/m.safetensors", "--val-subjects", "9"},
                             out, err),
            1);
  EXPECT_THAT(err.str(), HasSubstr("holdout subject 9"));
}

}  // namespace
}  // namespace harmamba
