// The harmamba.v1.ActivityClassifier gRPC service (callback API).
//
// Handlers only translate: they check the request, turn it into batcher
// tasks and return at once; the batch executor thread that completes a task
// writes the reply and finishes the call. No gRPC thread ever blocks.
#ifndef HARMAMBA_SERVER_CLASSIFIER_SERVICE_H_
#define HARMAMBA_SERVER_CLASSIFIER_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "harmamba/v1/harmamba.grpc.pb.h"
#include "server/batcher.h"
#include "server/clock.h"
#include "server/metrics_recorder.h"
#include "server/model_registry.h"

namespace harmamba {

struct ServiceOptions {
  // Hop of streams whose config sets none; 0 = half the model's window
  // (at least 1).
  int default_stream_hop = 0;
  // Windows per stream that may be queued, running or waiting to be written;
  // while it is full the server stops reading that stream (backpressure).
  int stream_backlog = 64;

  absl::Status Validate() const;
};

class ActivityClassifierService final
    : public harmamba::v1::ActivityClassifier::CallbackService {
 public:
  // `registry`, the batchers (one per served model, keyed by model name),
  // `clock` and `metrics` must outlive the service, and the service must
  // outlive the grpc::Server it is registered with. `clock` must be the clock
  // the batchers use; call deadlines are read from gRPC in real time, so in
  // a server it is the real clock.
  ActivityClassifierService(const ModelRegistry* registry,
                            std::map<std::string, Batcher*> batchers,
                            const ServiceOptions& options, Clock* clock,
                            MetricsRecorder* metrics);
  ~ActivityClassifierService() override;

  // Starts the shutdown: new calls are refused with UNAVAILABLE; open streams
  // stop reading and end with UNAVAILABLE once the windows they already cut
  // are answered (a stream whose client has half-closed ends normally).
  // Idempotent; thread-safe.
  void BeginShutdown();

  // Blocks until every call that started before BeginShutdown() has finished
  // or `deadline` (on the service's clock) passes; returns whether all have.
  bool WaitForCallsToFinish(absl::Time deadline);

  // The hop streams of `config` use when they set none.
  int DefaultHop(const ModelConfig& config) const;

  // --- harmamba.v1.ActivityClassifier ---
  grpc::ServerUnaryReactor* Classify(
      grpc::CallbackServerContext* context,
      const harmamba::v1::ClassifyRequest* request,
      harmamba::v1::ClassifyResponse* response) override;
  grpc::ServerUnaryReactor* ClassifyBatch(
      grpc::CallbackServerContext* context,
      const harmamba::v1::ClassifyBatchRequest* request,
      harmamba::v1::ClassifyBatchResponse* response) override;
  grpc::ServerBidiReactor<harmamba::v1::StreamClassifyRequest,
                          harmamba::v1::StreamClassifyResponse>*
  StreamClassify(grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* ListModels(
      grpc::CallbackServerContext* context,
      const harmamba::v1::ListModelsRequest* request,
      harmamba::v1::ListModelsResponse* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(
      grpc::CallbackServerContext* context,
      const harmamba::v1::GetModelInfoRequest* request,
      harmamba::v1::ModelInfo* response) override;

 private:
  class UnaryCall;
  class StreamCall;

  struct Route {
    const ServedModel* model;
    Batcher* batcher;
  };
  // The model a call names ("" = default) and its batcher; NOT_FOUND.
  absl::StatusOr<Route> Resolve(absl::string_view model_name) const;
  void FillModelInfo(const ServedModel& model,
                     harmamba::v1::ModelInfo* info) const;

  // Open-call bookkeeping (unary and stream calls). CallStarted() returns
  // whether the call is counted (it is not once shutdown has begun); only a
  // counted call may call CallFinished().
  bool CallStarted();
  void CallFinished();
  // Streams are also registered so that BeginShutdown() can end them.
  // Returns false (and registers nothing) once shutdown has begun.
  bool RegisterStream(StreamCall* stream);
  void UnregisterStream(StreamCall* stream);

  const ModelRegistry* const registry_;
  const std::map<std::string, Batcher*> batchers_;
  const ServiceOptions options_;
  Clock* const clock_;
  MetricsRecorder* const metrics_;

  std::atomic<bool> accepting_{true};
  absl::Mutex mu_;
  absl::CondVar calls_cv_;
  int64_t open_calls_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_set<StreamCall*> streams_ ABSL_GUARDED_BY(mu_);
};

}  // namespace harmamba

#endif  // HARMAMBA_SERVER_CLASSIFIER_SERVICE_H_
