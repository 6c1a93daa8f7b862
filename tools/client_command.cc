// harmamba client: classify a file with a running harmamba-server.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/client_context.h"
#include "harmamba/v1/harmamba.grpc.pb.h"
#include "model/array_io.h"
#include "nlohmann/json.hpp"
#include "tools/commands.h"
#include "tools/grpc_client.h"

namespace harmamba::cli {
namespace {

using json = nlohmann::ordered_json;

constexpr char kCommand[] = "client";

struct ClientFlags {
  ConnectionOptions connection;
  std::string input;
  std::string model;
  std::string rpc = "batch";
  int64_t batch = 256;
  std::string pace = "realtime";
  double sample_rate_hz = 0;
  int64_t chunk = 10;
  int64_t hop = 0;
  int64_t deadline_ms = 0;
  bool as_json = false;
};

absl::Duration Deadline(const ClientFlags& flags) {
  return flags.deadline_ms > 0 ? absl::Milliseconds(flags.deadline_ms)
                               : absl::InfiniteDuration();
}

void SetDeadline(grpc::ClientContext& context, absl::Duration deadline) {
  if (deadline != absl::InfiniteDuration()) {
    context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  }
}

json ClassificationJson(const v1::Classification& c) {
  return {{"label", c.label()},
          {"class_index", c.class_index()},
          {"probability", c.probabilities_size() > c.class_index()
                              ? c.probabilities(c.class_index())
                              : 0.0f},
          {"probabilities", std::vector<float>(c.probabilities().begin(),
                                               c.probabilities().end())}};
}

double TopProbability(const v1::Classification& c) {
  return c.class_index() < c.probabilities_size()
             ? c.probabilities(c.class_index())
             : 0.0;
}

// Classify (one call per window) or ClassifyBatch (calls of --batch windows).
int ClassifyWindows(v1::ActivityClassifier::Stub& stub,
                    const ClientFlags& flags, const v1::ModelInfo& info,
                    std::ostream& out, std::ostream& err) {
  absl::StatusOr<WindowArray> windows =
      ReadWindows(flags.input, info.window_length(), info.channels_size());
  if (!windows.ok()) {
    return ReportRuntimeError(
        kCommand,
        absl::Status(
            windows.status().code(),
            absl::StrCat(windows.status().message(), " [model '", info.name(),
                         "' expects windows of ", info.window_length(),
                         " samples x ", info.channels_size(), " channels]")),
        err);
  }
  if (windows->leftover_samples > 0) {
    err << "harmamba client: note: " << flags.input << ": "
        << windows->leftover_samples
        << " samples after the last whole window were not classified\n";
  }
  const int64_t n = windows->n;
  const int64_t floats = windows->t * windows->c;
  std::vector<std::optional<v1::Classification>> results(n);
  std::vector<absl::Status> errors(n);
  const bool batch = flags.rpc == "batch";
  const int64_t step = batch ? flags.batch : 1;
  for (int64_t begin = 0; begin < n; begin += step) {
    const int64_t count = std::min(step, n - begin);
    grpc::ClientContext context;
    SetDeadline(context, Deadline(flags));
    grpc::Status status;
    if (batch) {
      v1::ClassifyBatchRequest request;
      request.set_model(flags.model);
      for (int64_t w = begin; w < begin + count; ++w) {
        v1::Window* window = request.add_windows();
        window->set_num_channels(info.channels_size());
        window->mutable_samples()->Add(
            windows->data.begin() + w * floats,
            windows->data.begin() + (w + 1) * floats);
      }
      v1::ClassifyBatchResponse response;
      status = stub.ClassifyBatch(&context, request, &response);
      if (status.ok() && response.outcomes_size() != count) {
        status =
            grpc::Status(grpc::StatusCode::INTERNAL,
                         absl::StrCat("expected ", count, " outcomes, got ",
                                      response.outcomes_size()));
      }
      for (int64_t j = 0; status.ok() && j < count; ++j) {
        const v1::WindowOutcome& outcome = response.outcomes(j);
        if (outcome.has_result()) {
          results[begin + j] = outcome.result();
        } else {
          errors[begin + j] = absl::Status(
              static_cast<absl::StatusCode>(outcome.error().code()),
              outcome.error().message());
        }
      }
    } else {
      v1::ClassifyRequest request;
      request.set_model(flags.model);
      request.mutable_window()->set_num_channels(info.channels_size());
      request.mutable_window()->mutable_samples()->Add(
          windows->data.begin() + begin * floats,
          windows->data.begin() + (begin + 1) * floats);
      v1::ClassifyResponse response;
      status = stub.Classify(&context, request, &response);
      if (status.ok()) results[begin] = response.result();
    }
    if (!status.ok()) {
      for (int64_t w = begin; w < begin + count; ++w) {
        errors[w] = FromGrpcStatus(status);
      }
    }
  }

  int64_t failed = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!errors[i].ok()) {
      ++failed;
      err << absl::StrFormat("harmamba client: window %d: %s: %s\n", i,
                             absl::StatusCodeToString(errors[i].code()),
                             errors[i].message());
    }
  }
  if (flags.as_json) {
    json predictions = json::array();
    json failures = json::array();
    for (int64_t i = 0; i < n; ++i) {
      if (results[i]) {
        json p = {{"index", i}};
        p.update(ClassificationJson(*results[i]));
        predictions.push_back(std::move(p));
      } else {
        failures.push_back(
            {{"index", i},
             {"code", absl::StatusCodeToString(errors[i].code())},
             {"message", std::string(errors[i].message())}});
      }
    }
    json document = {
        {"model", {{"name", info.name()}, {"version", info.version()}}},
        {"target", flags.connection.target},
        {"rpc", batch ? "ClassifyBatch" : "Classify"},
        {"input", flags.input},
        {"num_windows", n},
        {"leftover_samples", windows->leftover_samples},
        {"predictions", std::move(predictions)},
        {"errors", std::move(failures)}};
    out << document.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
  } else {
    for (int64_t i = 0; i < n; ++i) {
      if (!results[i]) continue;
      out << absl::StrFormat("%d\t%s\t%.6f\n", i, results[i]->label(),
                             TopProbability(*results[i]));
    }
  }
  if (failed > 0) {
    err << "harmamba client: error: " << failed << " of " << n
        << " windows failed\n";
    return kExitRuntimeError;
  }
  return kExitOk;
}

// StreamClassify: sends the recording in chunks (paced or not) while a
// reader prints each result as it arrives.
int StreamRecording(v1::ActivityClassifier::Stub& stub,
                    const ClientFlags& flags, const v1::ModelInfo& info,
                    std::ostream& out, std::ostream& err) {
  const int channels = info.channels_size();
  absl::StatusOr<std::vector<float>> samples =
      ReadRecording(flags.input, channels);
  if (!samples.ok()) return ReportRuntimeError(kCommand, samples.status(), err);
  const int64_t total = static_cast<int64_t>(samples->size()) / channels;
  const bool realtime = flags.pace == "realtime";
  const double rate =
      flags.sample_rate_hz > 0 ? flags.sample_rate_hz : info.sample_rate_hz();
  if (realtime && rate <= 0) {
    return ReportRuntimeError(
        kCommand,
        absl::InvalidArgumentError(absl::StrCat(
            "model '", info.name(),
            "' has no sample rate; pass --sample-rate-hz or --pace fast")),
        err);
  }

  grpc::ClientContext context;
  SetDeadline(context, Deadline(flags));
  auto stream = stub.StreamClassify(&context);
  std::optional<v1::StreamSummary> summary;
  int64_t results = 0;
  std::thread reader([&] {
    v1::StreamClassifyResponse response;
    while (stream->Read(&response)) {
      if (response.has_summary()) {
        summary = response.summary();
        continue;
      }
      const v1::WindowResult& w = response.window();
      ++results;
      if (flags.as_json) {
        json line = {{"window", w.window_index()},
                     {"start_sample", w.start_sample()},
                     {"end_sample", w.end_sample()}};
        line.update(ClassificationJson(w.result()));
        out << line.dump(-1, ' ', false, json::error_handler_t::replace)
            << "\n";
      } else {
        out << absl::StrFormat("%d\t%d\t%d\t%s\t%.6f\n", w.window_index(),
                               w.start_sample(), w.end_sample(),
                               w.result().label(), TopProbability(w.result()));
      }
      out.flush();
    }
  });

  v1::StreamClassifyRequest config;
  config.mutable_config()->set_model(flags.model);
  config.mutable_config()->set_hop(static_cast<int32_t>(flags.hop));
  bool writing = stream->Write(config);
  const absl::Time start = absl::Now();
  for (int64_t sent = 0; writing && sent < total; sent += flags.chunk) {
    const int64_t count = std::min<int64_t>(flags.chunk, total - sent);
    if (realtime) {
      // A chunk leaves when its last sample would have been recorded.
      absl::SleepFor(start + absl::Seconds((sent + count) / rate) -
                     absl::Now());
    }
    v1::StreamClassifyRequest request;
    v1::SampleChunk* chunk = request.mutable_chunk();
    chunk->set_num_channels(channels);
    chunk->mutable_samples()->Add(samples->begin() + sent * channels,
                                  samples->begin() + (sent + count) * channels);
    writing = stream->Write(request);
  }
  if (writing) stream->WritesDone();
  reader.join();
  const grpc::Status status = stream->Finish();
  if (!status.ok()) {
    return ReportRuntimeError(
        kCommand,
        absl::Status(
            static_cast<absl::StatusCode>(status.error_code()),
            absl::StrCat("StreamClassify: ", GrpcCodeName(status.error_code()),
                         ": ", status.error_message(), " (after ", results,
                         " results)")),
        err);
  }
  if (summary) {
    if (flags.as_json) {
      json line = {{"summary",
                    {{"samples_received", summary->samples_received()},
                     {"windows_classified", summary->windows_classified()},
                     {"leftover_samples", summary->leftover_samples()}}}};
      out << line.dump() << "\n";
    }
    err << absl::StrFormat(
        "harmamba client: stream done: %d samples, %d windows, %d samples "
        "left over\n",
        summary->samples_received(), summary->windows_classified(),
        summary->leftover_samples());
  }
  return kExitOk;
}

}  // namespace

int RunClient(const std::vector<std::string>& args, std::ostream& out,
              std::ostream& err) {
  ClientFlags f;
  FlagParser flags(
      kCommand, "--input FILE [--target HOST:PORT] [options]",
      "Classifies a file with a running harmamba-server. --rpc batch sends "
      "its windows in ClassifyBatch calls of --batch windows, --rpc classify "
      "one Classify call per window (input formats as for 'harmamba "
      "predict'; window length and channels come from the server's model "
      "info); output as for predict. --rpc stream sends the file as one "
      "recording through StreamClassify (.csv rows, .npy (..., C), .f32) in "
      "chunks of --chunk samples, at the recording's pace (--pace realtime, "
      "at the model's sample rate) or as fast as the server takes them "
      "(--pace fast), printing each window's result as it arrives: index, "
      "start and end sample, label, probability (--json: one JSON object "
      "per line, then the summary).");
  AddConnectionFlags(flags, &f.connection);
  flags.AddString("input", "FILE", "Windows or recording (.npy, .f32, .csv).",
                  &f.input, /*required=*/true);
  flags.AddString("model", "NAME", "Model to use (default: the server's).",
                  &f.model);
  flags.AddChoice("rpc", {"batch", "classify", "stream"},
                  "ClassifyBatch, Classify or StreamClassify.", &f.rpc);
  flags.AddInt("batch", "N", "Windows per ClassifyBatch call.", &f.batch, 1,
               1 << 16);
  flags.AddChoice("pace", {"realtime", "fast"},
                  "Stream: send samples at the sample rate or as fast as "
                  "possible.",
                  &f.pace);
  flags.AddDouble("sample-rate-hz", "HZ",
                  "Stream: samples per second for --pace realtime (0: the "
                  "model's).",
                  &f.sample_rate_hz, 0, 1e6);
  flags.AddInt("chunk", "N", "Stream: samples per message.", &f.chunk, 1,
               1 << 20);
  flags.AddInt("hop", "N",
               "Stream: samples between window starts (0: the server's "
               "default).",
               &f.hop, 0, 1 << 20);
  flags.AddInt("deadline-ms", "MS",
               "Deadline of each call (a stream: the whole stream); 0 = none.",
               &f.deadline_ms, 0, int64_t{1} << 40);
  flags.AddBool("json", "Print JSON instead of text lines.", &f.as_json);
  if (std::optional<int> exit_code = flags.ParseOrReport(args, out, err)) {
    return *exit_code;
  }
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      CreateChannel(f.connection);
  if (!channel.ok()) return ReportRuntimeError(kCommand, channel.status(), err);
  std::unique_ptr<v1::ActivityClassifier::Stub> stub =
      v1::ActivityClassifier::NewStub(*channel);
  absl::StatusOr<v1::ModelInfo> info =
      FetchModelInfo(*stub, f.connection.target, f.model, Deadline(f));
  if (!info.ok()) return ReportRuntimeError(kCommand, info.status(), err);
  if (f.rpc == "stream") return StreamRecording(*stub, f, *info, out, err);
  return ClassifyWindows(*stub, f, *info, out, err);
}

}  // namespace harmamba::cli
