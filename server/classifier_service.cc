#include "server/classifier_service.h"

#include <chrono>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/status_mapping.h"
#include "server/stream_windower.h"
#include "server/window_checks.h"

namespace harmamba {

namespace {

absl::Time DeadlineOf(const grpc::CallbackServerContext& context) {
  const std::chrono::system_clock::time_point deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) {
    return absl::InfiniteFuture();
  }
  return absl::FromChrono(deadline);
}

void FillClassification(const ServedModel& model, const float* logits,
                        MetricsRecorder* metrics, v1::Classification* out) {
  const ModelConfig& config = model.config();
  ClassScores scores =
      ScoreLogits(absl::MakeConstSpan(logits, config.num_classes()));
  metrics->RecordPrediction(model.name, config.classes[scores.class_index]);
  out->set_class_index(scores.class_index);
  out->set_label(config.classes[scores.class_index]);
  out->mutable_probabilities()->Add(scores.probabilities.begin(),
                                    scores.probabilities.end());
  out->set_model(model.name);
  out->set_model_version(config.version);
}

void FillWindowStatus(const absl::Status& status, v1::WindowStatus* out) {
  out->set_code(static_cast<int32_t>(ToGrpcCode(status.code())));
  out->set_message(std::string(status.message()));
}

absl::Status ShuttingDown() {
  return absl::UnavailableError("the server is shutting down");
}

}  // namespace

absl::Status ServiceOptions::Validate() const {
  if (default_stream_hop < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "default_stream_hop: expected >= 0 (0 = half a window), got ",
        default_stream_hop));
  }
  if (stream_backlog < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("stream_backlog: expected >= 1, got ", stream_backlog));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Unary calls: the reactor lives until OnDone; the request and response
// messages (owned by gRPC) live as long, so batcher tasks point into them.

class ActivityClassifierService::UnaryCall final
    : public grpc::ServerUnaryReactor {
 public:
  UnaryCall(ActivityClassifierService* service, absl::string_view method)
      : service_(service),
        method_(method),
        start_(service->clock_->Now()),
        tracked_(service->CallStarted()) {}

  // Finishes the call; exactly once. `model` names the model that served it
  // ("" if none) and must outlive the call.
  void Reply(const absl::Status& status, absl::string_view model) {
    service_->metrics_->RecordRpc(method_, model, status.code(),
                                  service_->clock_->Now() - start_);
    Finish(ToGrpcStatus(status));
  }

  const std::atomic<bool>* cancelled() const { return &cancelled_; }

  void OnCancel() override {
    cancelled_.store(true, std::memory_order_release);
  }
  void OnDone() override {
    ActivityClassifierService* service = service_;
    const bool tracked = tracked_;
    delete this;
    if (tracked) service->CallFinished();
  }

 private:
  ActivityClassifierService* const service_;
  const absl::string_view method_;
  const absl::Time start_;
  const bool tracked_;
  std::atomic<bool> cancelled_{false};
};

// ---------------------------------------------------------------------------
// Streams.
//
// All state is guarded by mu_. Every gRPC operation (StartRead, StartWrite,
// Finish) is decided and issued under mu_; gRPC never runs a reaction inline
// from those calls (reactions are dispatched to its own threads), so this
// cannot deadlock, and it keeps at most one read and one write outstanding
// and nothing issued after Finish. The object is reference-counted: gRPC
// holds one reference until OnDone, and each window in the batcher holds one,
// so a batcher completion never touches a deleted stream.

class ActivityClassifierService::StreamCall final
    : public grpc::ServerBidiReactor<v1::StreamClassifyRequest,
                                     v1::StreamClassifyResponse> {
 public:
  StreamCall(ActivityClassifierService* service,
             grpc::CallbackServerContext* context)
      : service_(service),
        deadline_(DeadlineOf(*context)),
        start_(service->clock_->Now()),
        tracked_(service->CallStarted()) {
    const bool registered = service_->RegisterStream(this);
    absl::MutexLock lock(&mu_);
    if (!registered) {
      StopLocked(0, ShuttingDown());
      shutting_down_ = true;
    }
    AdvanceLocked();
  }

  void OnReadDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    reading_ = false;
    if (ok) {
      HandleMessageLocked();
    } else {
      client_done_ = true;
    }
    AdvanceLocked();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      StopLocked(0, absl::CancelledError("the client stopped receiving"));
    } else if (route_) {
      ++windows_sent_;
      service_->metrics_->RecordStreamResultSent(
          route_->model->name,
          service_->clock_->Now() - write_last_sample_arrival_);
    }
    AdvanceLocked();
  }

  void OnCancel() override {
    cancelled_.store(true, std::memory_order_release);
    absl::MutexLock lock(&mu_);
    StopLocked(0, absl::CancelledError("the call was cancelled"));
    AdvanceLocked();
  }

  void OnDone() override {
    ActivityClassifierService* service = service_;
    {
      absl::MutexLock lock(&mu_);
      service->metrics_->RecordStreamFinished(
          route_ ? route_->model->name : "", final_code_, windows_written_,
          windower_ ? windower_->samples_received() : 0);
      if (route_ && windower_->windows_cut() > windows_sent_) {
        service->metrics_->RecordStreamWindowsSkipped(
            route_->model->name, windower_->windows_cut() - windows_sent_);
      }
      service->metrics_->RecordRpc(
          "StreamClassify", route_ ? route_->model->name : "", final_code_,
          service->clock_->Now() - start_);
    }
    service->UnregisterStream(this);
    const bool tracked = tracked_;
    Unref();
    if (tracked) service->CallFinished();
  }

  // Called by the service (under its lock) when shutdown begins.
  void BeginShutdown() {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    if (!client_done_) {
      StopLocked(
          windower_ ? windower_->windows_cut() : 0,
          absl::UnavailableError(absl::StrCat(
              "the server is shutting down; samples from ",
              windower_ ? windower_->windows_cut() * windower_->hop() : 0,
              " on were not classified")));
    }
    AdvanceLocked();
  }

 private:
  static constexpr int64_t kNotStopped = std::numeric_limits<int64_t>::max();

  ~StreamCall() override = default;

  void Ref() { refs_.fetch_add(1, std::memory_order_relaxed); }
  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  // Ends the stream with `status` once the results of windows before `index`
  // are written; results from `index` on are discarded. The earliest stop
  // wins.
  void StopLocked(int64_t index, absl::Status status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (index >= stop_index_) return;
    stop_index_ = index;
    stop_status_ = std::move(status);
    results_.erase(results_.lower_bound(index), results_.end());
  }
  bool stopped() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stop_index_ != kNotStopped;
  }

  bool ConfigureLocked(const std::string& model_name, int hop)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    absl::StatusOr<Route> route = service_->Resolve(model_name);
    if (!route.ok()) {
      StopLocked(0, route.status());
      return false;
    }
    if (hop < 0) {
      StopLocked(0, absl::InvalidArgumentError(absl::StrCat(
                        "config.hop: expected >= 1 (or 0 for the default of ",
                        service_->DefaultHop(route->model->config()), "), got ",
                        hop)));
      return false;
    }
    const ModelConfig& config = route->model->config();
    absl::StatusOr<StreamWindower> windower =
        StreamWindower::Create(config.window_length, config.num_channels(),
                               hop == 0 ? service_->DefaultHop(config) : hop);
    if (!windower.ok()) {
      StopLocked(0, windower.status());
      return false;
    }
    route_ = *route;
    windower_.emplace(std::move(*windower));
    service_->metrics_->RecordStreamStarted(route_->model->name);
    return true;
  }

  void HandleMessageLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const int64_t message_index = messages_read_++;
    if (stopped()) return;
    const int64_t cut = windower_ ? windower_->windows_cut() : 0;
    switch (read_.payload_case()) {
      case v1::StreamClassifyRequest::kConfig:
        if (message_index != 0) {
          StopLocked(cut, absl::InvalidArgumentError(absl::StrCat(
                              "config: expected only as the first message "
                              "of the stream, got it as message ",
                              message_index)));
          return;
        }
        ConfigureLocked(read_.config().model(), read_.config().hop());
        return;
      case v1::StreamClassifyRequest::kChunk: {
        if (!windower_ && !ConfigureLocked("", 0)) return;
        const v1::SampleChunk& chunk = read_.chunk();
        absl::Status status = CheckChunk(chunk.samples(), chunk.num_channels(),
                                         route_->model->config(), "chunk");
        const int64_t received_before = windower_->samples_received();
        if (status.ok()) status = windower_->Append(chunk.samples());
        if (status.ok() && windower_->samples_received() > received_before) {
          chunk_arrivals_.push_back(
              {windower_->samples_received(), service_->clock_->Now()});
          service_->metrics_->RecordStreamSamples(
              route_->model->name,
              windower_->samples_received() - received_before);
        }
        if (!status.ok()) {
          StopLocked(cut, absl::InvalidArgumentError(
                              absl::StrCat("stream message ", message_index,
                                           ": ", status.message())));
        }
        return;
      }
      default:
        StopLocked(cut, absl::InvalidArgumentError(absl::StrCat(
                            "payload: expected config or chunk in stream "
                            "message ",
                            message_index)));
        return;
    }
  }

  int64_t BacklogLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return in_flight_ + static_cast<int64_t>(results_.size());
  }

  // When the sample before `end_sample` arrived. Windows are cut in order,
  // so chunks that end before it are not needed again.
  absl::Time LastSampleArrivalLocked(int64_t end_sample)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    while (chunk_arrivals_.size() > 1 &&
           chunk_arrivals_.front().samples_after < end_sample) {
      chunk_arrivals_.pop_front();
    }
    return chunk_arrivals_.empty() ? service_->clock_->Now()
                                   : chunk_arrivals_.front().time;
  }

  void OnWindowDone(int64_t index, int64_t start, int64_t end,
                    absl::Time last_sample_arrival, TaskResult result) {
    {
      absl::MutexLock lock(&mu_);
      --in_flight_;
      const absl::Status status = result.FirstError();
      if (!status.ok()) {
        StopLocked(index, status);
      } else if (index < stop_index_) {
        PendingResult pending;
        pending.last_sample_arrival = last_sample_arrival;
        v1::WindowResult* window = pending.response.mutable_window();
        window->set_window_index(index);
        window->set_start_sample(start);
        window->set_end_sample(end);
        FillClassification(*route_->model, result.logits.data(),
                           service_->metrics_, window->mutable_result());
        results_.emplace(index, std::move(pending));
      }
      AdvanceLocked();
    }
    Unref();
  }

  // Issues whatever gRPC operation is due. See the class comment.
  void AdvanceLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    const int backlog_limit = service_->options_.stream_backlog;

    // 1. Cut windows and hand them to the batcher, up to the backlog.
    while (!stopped() && windower_ && windower_->HasWindow() &&
           BacklogLocked() < backlog_limit) {
      StreamWindower::Window window = *windower_->Next();
      BatchTask task;
      task.lane = Lane::kInteractive;
      task.storage = std::move(window.samples);
      task.windows = {task.storage.data()};
      task.deadline = deadline_;
      task.cancelled = &cancelled_;
      task.done = [this, index = window.index, start = window.start_sample,
                   end = window.end_sample,
                   arrival = LastSampleArrivalLocked(window.end_sample)](
                      TaskResult result) {
        OnWindowDone(index, start, end, arrival, std::move(result));
      };
      Ref();
      if (absl::Status s = route_->batcher->Schedule(std::move(task));
          !s.ok()) {
        Unref();  // gRPC's reference is still held: never the last.
        StopLocked(window.index, std::move(s));
        break;
      }
      ++in_flight_;
    }
    if (!stopped() && windower_ && windower_->HasWindow() && !backpressured_) {
      backpressured_ = true;
      service_->metrics_->RecordStreamBackpressure(route_->model->name);
    }

    // 2. Write the next result, in window order.
    if (!writing_ && !results_.empty() &&
        results_.begin()->first == next_to_write_) {
      write_ = std::move(results_.begin()->second.response);
      write_last_sample_arrival_ = results_.begin()->second.last_sample_arrival;
      results_.erase(results_.begin());
      ++next_to_write_;
      ++windows_written_;
      writing_ = true;
      StartWrite(&write_);
    }

    // 3. Read more once every complete window is cut and there is room.
    if (!reading_ && !client_done_ && !stopped() && !shutting_down_ &&
        !(windower_ && windower_->HasWindow()) &&
        BacklogLocked() < backlog_limit) {
      backpressured_ = false;
      reading_ = true;
      StartRead(&read_);
    }

    // 4. Finish once nothing is in flight or left to write.
    if (writing_ || in_flight_ > 0 || !results_.empty()) return;
    if (stopped()) {
      finished_ = true;
      final_code_ = stop_status_.code();
      Finish(ToGrpcStatus(stop_status_));
    } else if (client_done_) {
      v1::StreamSummary* summary = write_.mutable_summary();
      summary->set_samples_received(windower_ ? windower_->samples_received()
                                              : 0);
      summary->set_windows_classified(windows_written_);
      summary->set_leftover_samples(windower_ ? windower_->leftover_samples()
                                              : 0);
      finished_ = true;
      final_code_ = absl::StatusCode::kOk;
      StartWriteAndFinish(&write_, grpc::WriteOptions(), grpc::Status::OK);
    }
  }

  // A result waiting for its turn to be written.
  struct PendingResult {
    v1::StreamClassifyResponse response;
    absl::Time last_sample_arrival;
  };
  // Samples received after a chunk, and when it arrived.
  struct ChunkArrival {
    int64_t samples_after;
    absl::Time time;
  };

  ActivityClassifierService* const service_;
  const absl::Time deadline_;
  const absl::Time start_;
  const bool tracked_;  // counted in the service's open calls
  std::atomic<bool> cancelled_{false};
  std::atomic<int> refs_{1};

  absl::Mutex mu_;
  std::optional<Route> route_ ABSL_GUARDED_BY(mu_);
  std::optional<StreamWindower> windower_ ABSL_GUARDED_BY(mu_);
  v1::StreamClassifyRequest read_ ABSL_GUARDED_BY(mu_);
  v1::StreamClassifyResponse write_ ABSL_GUARDED_BY(mu_);
  // Completed results waiting for their turn, by window index.
  std::map<int64_t, PendingResult> results_ ABSL_GUARDED_BY(mu_);
  // Chunks that may hold the last sample of windows not cut yet.
  std::deque<ChunkArrival> chunk_arrivals_ ABSL_GUARDED_BY(mu_);
  absl::Time write_last_sample_arrival_ ABSL_GUARDED_BY(mu_);
  int64_t messages_read_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t next_to_write_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t windows_written_ ABSL_GUARDED_BY(mu_) = 0;  // writes started
  int64_t windows_sent_ ABSL_GUARDED_BY(mu_) = 0;     // writes completed
  int64_t stop_index_ ABSL_GUARDED_BY(mu_) = kNotStopped;
  absl::Status stop_status_ ABSL_GUARDED_BY(mu_);
  absl::StatusCode final_code_ ABSL_GUARDED_BY(mu_) =
      absl::StatusCode::kUnknown;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool client_done_ ABSL_GUARDED_BY(mu_) = false;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  bool backpressured_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

// ---------------------------------------------------------------------------

ActivityClassifierService::ActivityClassifierService(
    const ModelRegistry* registry, std::map<std::string, Batcher*> batchers,
    const ServiceOptions& options, Clock* clock, MetricsRecorder* metrics)
    : registry_(registry),
      batchers_(std::move(batchers)),
      options_(options),
      clock_(clock != nullptr ? clock : Clock::Real()),
      metrics_(metrics != nullptr ? metrics : NoopMetricsRecorder()) {}

ActivityClassifierService::~ActivityClassifierService() = default;

void ActivityClassifierService::BeginShutdown() {
  accepting_.store(false);
  absl::MutexLock lock(&mu_);
  shutting_down_ = true;
  for (StreamCall* stream : streams_) stream->BeginShutdown();
}

bool ActivityClassifierService::WaitForCallsToFinish(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  while (open_calls_ > 0) {
    if (clock_->WaitWithDeadline(&mu_, &calls_cv_, deadline) &&
        open_calls_ > 0) {
      return false;
    }
  }
  return true;
}

int ActivityClassifierService::DefaultHop(const ModelConfig& config) const {
  if (options_.default_stream_hop > 0) return options_.default_stream_hop;
  return std::max(1, config.window_length / 2);
}

bool ActivityClassifierService::CallStarted() {
  absl::MutexLock lock(&mu_);
  // Calls that start after shutdown began are refused at once; not counting
  // them keeps clients that keep calling from holding up the drain.
  if (shutting_down_) return false;
  ++open_calls_;
  return true;
}

void ActivityClassifierService::CallFinished() {
  absl::MutexLock lock(&mu_);
  --open_calls_;
  calls_cv_.SignalAll();
}

bool ActivityClassifierService::RegisterStream(StreamCall* stream) {
  absl::MutexLock lock(&mu_);
  if (shutting_down_) return false;
  streams_.insert(stream);
  return true;
}

void ActivityClassifierService::UnregisterStream(StreamCall* stream) {
  absl::MutexLock lock(&mu_);
  streams_.erase(stream);
}

absl::StatusOr<ActivityClassifierService::Route>
ActivityClassifierService::Resolve(absl::string_view model_name) const {
  absl::StatusOr<const ServedModel*> model = registry_->Find(model_name);
  if (!model.ok()) return model.status();
  auto it = batchers_.find((*model)->name);
  if (it == batchers_.end()) {
    return absl::InternalError(
        absl::StrCat("model '", (*model)->name, "' has no batcher"));
  }
  return Route{*model, it->second};
}

void ActivityClassifierService::FillModelInfo(const ServedModel& model,
                                              v1::ModelInfo* info) const {
  const ModelConfig& config = model.config();
  info->set_name(model.name);
  info->set_version(config.version);
  info->set_window_length(config.window_length);
  for (const std::string& c : config.channels) info->add_channels(c);
  info->set_sample_rate_hz(config.sample_rate_hz);
  for (const std::string& c : config.classes) info->add_classes(c);
  info->set_backend(model.backend->description());
  info->set_is_default(&model == &registry_->default_model());
  info->set_default_stream_hop(DefaultHop(config));
}

grpc::ServerUnaryReactor* ActivityClassifierService::Classify(
    grpc::CallbackServerContext* context, const v1::ClassifyRequest* request,
    v1::ClassifyResponse* response) {
  auto* call = new UnaryCall(this, "Classify");
  if (!accepting_.load()) {
    call->Reply(ShuttingDown(), "");
    return call;
  }
  absl::StatusOr<Route> route = Resolve(request->model());
  if (!route.ok()) {
    call->Reply(route.status(), "");
    return call;
  }
  const ServedModel* model = route->model;
  metrics_->RecordRequestWindows("Classify", model->name, 1);
  const v1::Window& window = request->window();
  if (absl::Status s = CheckWindow(window.samples(), window.num_channels(),
                                   model->config(), "window");
      !s.ok()) {
    metrics_->RecordRefused(model->name, Lane::kInteractive, s.code(), 1);
    call->Reply(s, model->name);
    return call;
  }
  BatchTask task;
  task.lane = Lane::kInteractive;
  task.windows = {window.samples().data()};
  task.deadline = DeadlineOf(*context);
  task.cancelled = call->cancelled();
  task.done = [call, response, model, metrics = metrics_](TaskResult result) {
    const absl::Status status = result.FirstError();
    if (status.ok()) {
      FillClassification(*model, result.logits.data(), metrics,
                         response->mutable_result());
    }
    call->Reply(status, model->name);
  };
  if (absl::Status s = route->batcher->Schedule(std::move(task)); !s.ok()) {
    call->Reply(s, model->name);
  }
  return call;
}

grpc::ServerUnaryReactor* ActivityClassifierService::ClassifyBatch(
    grpc::CallbackServerContext* context,
    const v1::ClassifyBatchRequest* request,
    v1::ClassifyBatchResponse* response) {
  auto* call = new UnaryCall(this, "ClassifyBatch");
  if (!accepting_.load()) {
    call->Reply(ShuttingDown(), "");
    return call;
  }
  absl::StatusOr<Route> route = Resolve(request->model());
  if (!route.ok()) {
    call->Reply(route.status(), "");
    return call;
  }
  const ServedModel* model = route->model;
  const int n = request->windows_size();
  metrics_->RecordRequestWindows("ClassifyBatch", model->name, n);
  if (n == 0) {
    call->Reply(absl::InvalidArgumentError(
                    "windows: expected at least 1 window, got 0"),
                model->name);
    return call;
  }
  BatchTask task;
  task.lane = Lane::kBulk;
  task.deadline = DeadlineOf(*context);
  task.cancelled = call->cancelled();
  std::vector<int> slots;  // slots[j]: the request index of task window j
  task.windows.reserve(n);
  slots.reserve(n);
  response->mutable_outcomes()->Reserve(n);
  for (int i = 0; i < n; ++i) {
    v1::WindowOutcome* outcome = response->add_outcomes();
    const v1::Window& window = request->windows(i);
    absl::Status s =
        CheckWindow(window.samples(), window.num_channels(), model->config(),
                    absl::StrCat("windows[", i, "]"));
    if (!s.ok()) {
      FillWindowStatus(s, outcome->mutable_error());
      continue;
    }
    task.windows.push_back(window.samples().data());
    slots.push_back(i);
  }
  if (const int invalid = n - static_cast<int>(task.windows.size());
      invalid > 0) {
    metrics_->RecordRefused(model->name, Lane::kBulk,
                            absl::StatusCode::kInvalidArgument, invalid);
  }
  if (task.windows.empty()) {
    call->Reply(absl::OkStatus(), model->name);
    return call;
  }
  task.done = [call, response, model, metrics = metrics_,
               slots = std::move(slots)](TaskResult result) {
    const int k = result.num_classes;
    for (size_t j = 0; j < slots.size(); ++j) {
      v1::WindowOutcome* outcome = response->mutable_outcomes(slots[j]);
      if (result.window_status[j].ok()) {
        FillClassification(*model, &result.logits[j * k], metrics,
                           outcome->mutable_result());
      } else {
        FillWindowStatus(result.window_status[j], outcome->mutable_error());
      }
    }
    call->Reply(absl::OkStatus(), model->name);
  };
  if (absl::Status s = route->batcher->Schedule(std::move(task)); !s.ok()) {
    response->Clear();
    call->Reply(s, model->name);
  }
  return call;
}

grpc::ServerBidiReactor<v1::StreamClassifyRequest, v1::StreamClassifyResponse>*
ActivityClassifierService::StreamClassify(
    grpc::CallbackServerContext* context) {
  return new StreamCall(this, context);
}

grpc::ServerUnaryReactor* ActivityClassifierService::ListModels(
    grpc::CallbackServerContext* context, const v1::ListModelsRequest* request,
    v1::ListModelsResponse* response) {
  auto* call = new UnaryCall(this, "ListModels");
  if (!accepting_.load()) {
    call->Reply(ShuttingDown(), "");
    return call;
  }
  for (const auto& model : registry_->models()) {
    FillModelInfo(*model, response->add_models());
  }
  response->set_default_model(registry_->default_model().name);
  call->Reply(absl::OkStatus(), "");
  return call;
}

grpc::ServerUnaryReactor* ActivityClassifierService::GetModelInfo(
    grpc::CallbackServerContext* context,
    const v1::GetModelInfoRequest* request, v1::ModelInfo* response) {
  auto* call = new UnaryCall(this, "GetModelInfo");
  if (!accepting_.load()) {
    call->Reply(ShuttingDown(), "");
    return call;
  }
  absl::StatusOr<Route> route = Resolve(request->model());
  if (!route.ok()) {
    call->Reply(route.status(), "");
    return call;
  }
  FillModelInfo(*route->model, response);
  call->Reply(absl::OkStatus(), route->model->name);
  return call;
}

}  // namespace harmamba
