#include "tools/loadgen.h"

#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "harmamba/v1/harmamba.grpc.pb.h"
#include "model/array_io.h"
#include "nlohmann/json.hpp"

namespace harmamba::cli {
namespace {

using json = nlohmann::ordered_json;
using Stub = v1::ActivityClassifier::Stub;

// How long after the end of a level calls may take to finish.
constexpr absl::Duration kDrainLimit = absl::Seconds(60);

double OwnCpuSeconds() {
  rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         1e-6 * (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

// utime + stime of another process, from /proc/<pid>/stat; -1 if unreadable.
double ProcessCpuSeconds(int pid) {
  std::ifstream file(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(file)),
                   std::istreambuf_iterator<char>());
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream fields(stat.substr(paren + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int number = 3; number <= 15 && (fields >> field); ++number) {
    if (number == 14) utime = std::stod(field);
    if (number == 15) stime = std::stod(field);
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Samples CPU use over [from, to] on its own thread.
class CpuMeter {
 public:
  CpuMeter(absl::Time from, absl::Time to, int server_pid)
      : thread_([this, from, to, server_pid] {
          absl::SleepFor(from - absl::Now());
          const double own = OwnCpuSeconds();
          const double server =
              server_pid > 0 ? ProcessCpuSeconds(server_pid) : -1;
          absl::SleepFor(to - absl::Now());
          const double seconds = absl::ToDoubleSeconds(to - from);
          own_cores_ = (OwnCpuSeconds() - own) / seconds;
          if (server >= 0) {
            const double end = ProcessCpuSeconds(server_pid);
            if (end >= 0) server_cores_ = (end - server) / seconds;
          }
        }) {}
  // Joins; then the figures are final.
  void Wait() {
    if (thread_.joinable()) thread_.join();
  }
  double own_cores() const { return own_cores_; }
  double server_cores() const { return server_cores_; }

 private:
  double own_cores_ = -1;
  double server_cores_ = -1;
  std::thread thread_;
};

// The windows requests carry: from --input, or random (fixed seed).
struct Workload {
  std::vector<v1::ClassifyRequest> singles;
  std::vector<v1::ClassifyBatchRequest> batches;
  std::vector<float> recording;  // stream mode, sample-major
};

absl::StatusOr<Workload> BuildWorkload(const LoadgenOptions& options,
                                       const v1::ModelInfo& info) {
  const int channels = info.channels_size();
  const int floats = info.window_length() * channels;
  std::vector<float> windows;
  int64_t count = 0;
  if (!options.input.empty()) {
    absl::StatusOr<WindowArray> read =
        ReadWindows(options.input, info.window_length(), channels);
    if (!read.ok()) return read.status();
    windows = std::move(read->data);
    count = read->n;
  } else {
    // Enough distinct windows that a batch is not one window repeated.
    count = std::max(64, options.batch_size);
    std::mt19937 rng(options.seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    windows.resize(static_cast<size_t>(count) * floats);
    for (float& x : windows) x = normal(rng);
  }
  Workload workload;
  auto window_at = [&](int64_t i) {
    const int64_t w = i % count;
    return windows.begin() + w * floats;
  };
  constexpr int kDistinctRequests = 8;
  if (options.mode == LoadMode::kUnary) {
    for (int r = 0; r < std::min<int64_t>(kDistinctRequests, count); ++r) {
      v1::ClassifyRequest request;
      request.set_model(options.model);
      request.mutable_window()->set_num_channels(channels);
      request.mutable_window()->mutable_samples()->Add(window_at(r),
                                                       window_at(r) + floats);
      workload.singles.push_back(std::move(request));
    }
  } else if (options.mode == LoadMode::kBatch) {
    for (int r = 0; r < kDistinctRequests; ++r) {
      v1::ClassifyBatchRequest request;
      request.set_model(options.model);
      for (int w = 0; w < options.batch_size; ++w) {
        v1::Window* window = request.add_windows();
        window->set_num_channels(channels);
        const auto begin = window_at(int64_t{r} * options.batch_size + w);
        window->mutable_samples()->Add(begin, begin + floats);
      }
      workload.batches.push_back(std::move(request));
    }
  } else {
    workload.recording = std::move(windows);
  }
  return workload;
}

void SetDeadline(grpc::ClientContext& context, absl::Duration deadline) {
  if (deadline != absl::InfiniteDuration()) {
    context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  }
}

// Bookkeeping shared by every kind of level.
class Tally {
 public:
  Tally(absl::Time measure_from, absl::Time stop_at)
      : measure_from_(measure_from), stop_at_(stop_at) {}

  bool Measured(absl::Time t) const {
    return t >= measure_from_ && t < stop_at_;
  }

  // A call finished at `end`. `windows`: windows with a result;
  // `window_errors`: per-window error codes inside an OK response.
  void CallDone(absl::Time end, absl::Duration latency, grpc::StatusCode code,
                int64_t windows, const std::vector<std::string>& window_errors,
                bool record_latency) {
    absl::MutexLock lock(&mu_);
    const std::string name = GrpcCodeName(code);
    ++total_calls_[name];
    total_windows_ += windows;
    if (!Measured(end)) return;
    ++calls_;
    ++calls_by_code_[name];
    windows_ += windows;
    for (const std::string& e : window_errors) ++window_errors_[e];
    if (record_latency) {
      latencies_ms_.push_back(absl::ToDoubleMilliseconds(latency));
    }
  }

  // A stream window result arrived at `end`, `lag` after its last sample
  // was sent.
  void StreamWindow(absl::Time end, absl::Duration lag) {
    absl::MutexLock lock(&mu_);
    ++total_windows_;
    if (!Measured(end)) return;
    ++windows_;
    latencies_ms_.push_back(absl::ToDoubleMilliseconds(lag));
  }

  void StreamDone(grpc::StatusCode code, int64_t samples_sent) {
    absl::MutexLock lock(&mu_);
    const std::string name = GrpcCodeName(code);
    ++total_calls_[name];
    ++calls_by_code_[name];
    ++calls_;
    samples_sent_ += samples_sent;
  }

  void Fill(LevelResult* result) {
    absl::MutexLock lock(&mu_);
    result->seconds = absl::ToDoubleSeconds(stop_at_ - measure_from_);
    result->calls = calls_;
    result->windows = windows_;
    result->calls_per_s = calls_ / result->seconds;
    result->windows_per_s = windows_ / result->seconds;
    result->latency_ms = Summarize(latencies_ms_);
    result->calls_by_code = calls_by_code_;
    result->window_errors_by_code = window_errors_;
    result->total_calls_by_code = total_calls_;
    result->total_windows = total_windows_;
    result->total_samples_sent = samples_sent_;
  }

 private:
  const absl::Time measure_from_;
  const absl::Time stop_at_;
  absl::Mutex mu_;
  int64_t calls_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t windows_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<double> latencies_ms_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> calls_by_code_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> window_errors_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> total_calls_ ABSL_GUARDED_BY(mu_);
  int64_t total_windows_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t samples_sent_ ABSL_GUARDED_BY(mu_) = 0;
};

// Classify / ClassifyBatch calls through the callback API: closed loop
// (`concurrency` calls in flight, each completion issues the next) or open
// loop (`rate` calls per second, Poisson arrivals).
class UnaryLevel {
 public:
  UnaryLevel(const std::vector<std::unique_ptr<Stub>>& stubs,
             const Workload& workload, const LoadgenOptions& options,
             absl::Time measure_from, absl::Time stop_at)
      : stubs_(stubs),
        workload_(workload),
        options_(options),
        stop_at_(stop_at),
        tally_(measure_from, stop_at) {}

  // Returns once every call has finished (or the drain limit passed).
  void Run(int concurrency, double rate) {
    closed_loop_ = rate <= 0;
    if (closed_loop_) {
      for (int i = 0; i < concurrency; ++i) Issue();
    } else {
      std::mt19937 rng(options_.seed + 1);
      std::exponential_distribution<double> gap(rate);
      absl::Time next = absl::Now();
      while (next < stop_at_) {
        absl::SleepFor(next - absl::Now());
        Issue();
        next += absl::Seconds(gap(rng));
      }
    }
    absl::MutexLock lock(&mu_);
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return in_flight_ == 0 && absl::Now() >= stop_at_;
    };
    // Closed loop: in_flight_ stays > 0 until the calls after stop_at end.
    while (!idle() && absl::Now() < stop_at_ + kDrainLimit) {
      mu_.AwaitWithTimeout(absl::Condition(&idle), absl::Milliseconds(100));
    }
  }

  Tally& tally() { return tally_; }

 private:
  struct Call {
    grpc::ClientContext context;
    v1::ClassifyResponse single;
    v1::ClassifyBatchResponse batch;
    absl::Time start;
  };

  void Issue() {
    auto* call = new Call();
    call->start = absl::Now();
    SetDeadline(call->context, options_.deadline);
    uint64_t n;
    {
      absl::MutexLock lock(&mu_);
      ++in_flight_;
      n = issued_++;
    }
    Stub* stub = stubs_[n % stubs_.size()].get();
    if (options_.mode == LoadMode::kBatch) {
      stub->async()->ClassifyBatch(
          &call->context, &workload_.batches[n % workload_.batches.size()],
          &call->batch, [this, call](grpc::Status s) { Done(call, s); });
    } else {
      stub->async()->Classify(
          &call->context, &workload_.singles[n % workload_.singles.size()],
          &call->single, [this, call](grpc::Status s) { Done(call, s); });
    }
  }

  void Done(Call* call, const grpc::Status& status) {
    const absl::Time end = absl::Now();
    int64_t windows = 0;
    std::vector<std::string> window_errors;
    if (status.ok()) {
      if (options_.mode == LoadMode::kBatch) {
        for (const v1::WindowOutcome& o : call->batch.outcomes()) {
          if (o.has_result()) {
            ++windows;
          } else {
            window_errors.push_back(
                GrpcCodeName(static_cast<grpc::StatusCode>(o.error().code())));
          }
        }
      } else {
        windows = 1;
      }
    }
    tally_.CallDone(end, end - call->start, status.error_code(), windows,
                    window_errors, /*record_latency=*/true);
    delete call;
    const bool again = closed_loop_ && end < stop_at_;
    if (again) Issue();
    absl::MutexLock lock(&mu_);
    --in_flight_;
  }

  const std::vector<std::unique_ptr<Stub>>& stubs_;
  const Workload& workload_;
  const LoadgenOptions& options_;
  const absl::Time stop_at_;
  bool closed_loop_ = true;
  Tally tally_;
  absl::Mutex mu_;
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t issued_ ABSL_GUARDED_BY(mu_) = 0;
};

// One StreamClassify call: the calling thread writes paced chunks until
// `stop_at`, a reader thread takes the results.
void RunStream(Stub& stub, const LoadgenOptions& options,
               const std::vector<float>& recording, int channels,
               double sample_rate, absl::Duration offset, size_t first_sample,
               absl::Time stop_at, Tally& tally) {
  grpc::ClientContext context;
  SetDeadline(context, options.deadline);
  auto stream = stub.StreamClassify(&context);

  struct Sent {
    int64_t samples_after;
    absl::Time time;
  };
  absl::Mutex mu;
  std::deque<Sent> sent_chunks;  // guarded by mu

  std::thread reader([&] {
    v1::StreamClassifyResponse response;
    while (stream->Read(&response)) {
      if (!response.has_window()) continue;
      const absl::Time now = absl::Now();
      const int64_t end_sample = response.window().end_sample();
      absl::Time sent_at = now;
      {
        absl::MutexLock lock(&mu);
        while (sent_chunks.size() > 1 &&
               sent_chunks.front().samples_after < end_sample) {
          sent_chunks.pop_front();
        }
        if (!sent_chunks.empty()) sent_at = sent_chunks.front().time;
      }
      tally.StreamWindow(now, now - sent_at);
    }
  });

  v1::StreamClassifyRequest config;
  config.mutable_config()->set_model(options.model);
  config.mutable_config()->set_hop(options.hop);
  bool ok = stream->Write(config);
  const int64_t recording_samples =
      static_cast<int64_t>(recording.size()) / channels;
  const absl::Time start = absl::Now() + offset;
  int64_t sent = 0;
  size_t cursor = first_sample % recording_samples;
  v1::StreamClassifyRequest request;
  v1::SampleChunk* chunk = request.mutable_chunk();
  chunk->set_num_channels(channels);
  while (ok) {
    const int64_t count = options.chunk_samples;
    if (!options.stream_unpaced) {
      const absl::Time due =
          start + absl::Seconds((sent + count) / sample_rate);
      if (due >= stop_at) break;
      absl::SleepFor(due - absl::Now());
    } else if (absl::Now() >= stop_at) {
      break;
    }
    chunk->clear_samples();
    for (int64_t s = 0; s < count; ++s) {
      chunk->mutable_samples()->Add(
          recording.begin() + cursor * channels,
          recording.begin() + (cursor + 1) * channels);
      cursor = (cursor + 1) % recording_samples;
    }
    sent += count;
    {
      absl::MutexLock lock(&mu);
      sent_chunks.push_back({sent, absl::Now()});
    }
    ok = stream->Write(request);
  }
  if (ok) stream->WritesDone();
  reader.join();
  const grpc::Status status = stream->Finish();
  tally.StreamDone(status.error_code(), sent);
}

}  // namespace

const char* LoadModeName(LoadMode mode) {
  switch (mode) {
    case LoadMode::kUnary:
      return "unary";
    case LoadMode::kBatch:
      return "batch";
    case LoadMode::kStream:
      return "stream";
  }
  return "?";
}

LatencySummary Summarize(std::vector<double>& values) {
  LatencySummary summary;
  if (values.empty()) return summary;
  std::sort(values.begin(), values.end());
  auto rank = [&values](double p) {
    const size_t n = values.size();
    const size_t index = static_cast<size_t>(std::ceil(p * n));
    return values[std::min(n, std::max<size_t>(index, 1)) - 1];
  };
  summary.p50 = rank(0.50);
  summary.p90 = rank(0.90);
  summary.p95 = rank(0.95);
  summary.p99 = rank(0.99);
  summary.max = values.back();
  double sum = 0;
  for (double v : values) sum += v;
  summary.mean = sum / values.size();
  return summary;
}

absl::StatusOr<LoadgenReport> RunLoadgen(const LoadgenOptions& options,
                                         std::ostream& progress) {
  if (options.connections < 1 || options.batch_size < 1 ||
      options.chunk_samples < 1) {
    return absl::InvalidArgumentError(
        "connections, batch size and chunk must be >= 1");
  }
  if (options.mode == LoadMode::kStream && !options.rates.empty()) {
    return absl::InvalidArgumentError(
        "stream mode takes --concurrency (streams), not --rate");
  }
  std::vector<std::unique_ptr<Stub>> stubs;
  for (int i = 0; i < options.connections; ++i) {
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
        CreateChannel(options.connection, i);
    if (!channel.ok()) return channel.status();
    stubs.push_back(v1::ActivityClassifier::NewStub(*channel));
  }
  LoadgenReport report;
  report.options = options;
  absl::StatusOr<v1::ModelInfo> info = FetchModelInfo(
      *stubs[0], options.connection.target, options.model, absl::Seconds(30));
  if (!info.ok()) return info.status();
  report.model = *info;
  absl::StatusOr<Workload> workload = BuildWorkload(options, *info);
  if (!workload.ok()) return workload.status();
  const double sample_rate = options.sample_rate_hz > 0
                                 ? options.sample_rate_hz
                                 : info->sample_rate_hz();
  if (options.mode == LoadMode::kStream && !options.stream_unpaced &&
      sample_rate <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model '", info->name(),
        "' has no sample rate: pass --sample-rate-hz, or --pace fast"));
  }

  struct Level {
    int concurrency;
    double rate;
  };
  std::vector<Level> levels;
  if (options.mode != LoadMode::kStream && !options.rates.empty()) {
    for (double rate : options.rates) levels.push_back({0, rate});
  } else {
    for (int c : options.concurrency) levels.push_back({c, 0.0});
  }
  for (const Level& level : levels) {
    const absl::Time measure_from = absl::Now() + options.warmup;
    const absl::Time stop_at = measure_from + options.duration;
    CpuMeter cpu(measure_from, stop_at, options.server_pid);
    LevelResult result;
    result.concurrency = level.concurrency;
    result.rate = level.rate;
    if (options.mode == LoadMode::kStream) {
      Tally tally(measure_from, stop_at);
      std::vector<std::thread> streams;
      const int64_t recording_samples =
          static_cast<int64_t>(workload->recording.size()) /
          info->channels_size();
      for (int s = 0; s < level.concurrency; ++s) {
        // Streams start spread over one chunk period and at different
        // points of the recording.
        const absl::Duration offset =
            options.stream_unpaced
                ? absl::ZeroDuration()
                : absl::Seconds(options.chunk_samples / sample_rate) * s /
                      level.concurrency;
        const size_t first_sample =
            static_cast<size_t>(recording_samples * s / level.concurrency);
        streams.emplace_back([&, s, offset, first_sample] {
          RunStream(*stubs[s % stubs.size()], options, workload->recording,
                    info->channels_size(), sample_rate, offset, first_sample,
                    stop_at, tally);
        });
      }
      for (std::thread& t : streams) t.join();
      tally.Fill(&result);
    } else {
      UnaryLevel run(stubs, *workload, options, measure_from, stop_at);
      run.Run(level.concurrency, level.rate);
      run.tally().Fill(&result);
    }
    cpu.Wait();
    result.loadgen_cpu_cores = cpu.own_cores();
    result.server_cpu_cores = cpu.server_cores();
    progress << absl::StrFormat(
        "harmamba loadgen: %s %s: %.1f windows/s, p50 %.3f ms, p99 %.3f ms, "
        "%d calls\n",
        LoadModeName(options.mode),
        level.rate > 0 ? absl::StrFormat("rate %g/s", level.rate)
                       : absl::StrFormat("concurrency %d", level.concurrency),
        result.windows_per_s, result.latency_ms.p50, result.latency_ms.p99,
        result.calls);
    report.levels.push_back(std::move(result));
  }
  return report;
}

namespace {

std::string Codes(const std::map<std::string, int64_t>& codes, bool skip_ok) {
  std::vector<std::string> parts;
  for (const auto& [code, count] : codes) {
    if (skip_ok && code == "OK") continue;
    parts.push_back(absl::StrCat(code, ":", count));
  }
  return parts.empty() ? "-" : absl::StrJoin(parts, " ");
}

std::string Cores(double cores) {
  return cores < 0 ? "-" : absl::StrFormat("%.2f", cores);
}

}  // namespace

std::string ReportTable(const LoadgenReport& report) {
  const LoadgenOptions& o = report.options;
  std::string text = absl::StrFormat(
      "model %s (version %s, %s) at %s\nmode %s", report.model.name(),
      report.model.version(), report.model.backend(), o.connection.target,
      LoadModeName(o.mode));
  if (o.mode == LoadMode::kBatch) {
    absl::StrAppend(&text, ", batch size ", o.batch_size);
  }
  if (o.mode == LoadMode::kStream) {
    absl::StrAppend(&text, ", chunk ", o.chunk_samples, " samples, ",
                    o.stream_unpaced
                        ? "unpaced"
                        : absl::StrFormat("%g Hz per stream",
                                          o.sample_rate_hz > 0
                                              ? o.sample_rate_hz
                                              : report.model.sample_rate_hz()));
  }
  absl::StrAppend(&text,
                  absl::StrFormat(", warm-up %s, measured %s per level\n",
                                  absl::FormatDuration(o.warmup),
                                  absl::FormatDuration(o.duration)));
  const bool open_loop = o.mode != LoadMode::kStream && !o.rates.empty();
  // Stream mode: the number of streams, not a rate (each lasts the level).
  const bool streams = o.mode == LoadMode::kStream;
  absl::StrAppend(
      &text, absl::StrFormat("%-12s %11s %9s %9s %9s %9s %9s %9s %6s %6s  %s\n",
                             open_loop ? "rate/s" : "concurrency", "windows/s",
                             streams ? "streams" : "calls/s", "p50 ms",
                             "p90 ms", "p95 ms", "p99 ms", "max ms", "lg cpu",
                             "sv cpu", "errors"));
  for (const LevelResult& r : report.levels) {
    std::string errors = Codes(r.calls_by_code, /*skip_ok=*/true);
    if (!r.window_errors_by_code.empty()) {
      absl::StrAppend(&errors, " windows ",
                      Codes(r.window_errors_by_code, false));
    }
    absl::StrAppend(
        &text,
        absl::StrFormat(
            "%-12s %11.1f %9.1f %9.3f %9.3f %9.3f %9.3f %9.3f %6s %6s  %s\n",
            open_loop ? absl::StrFormat("%g", r.rate)
                      : absl::StrCat(r.concurrency),
            r.windows_per_s,
            streams ? static_cast<double>(r.calls) : r.calls_per_s,
            r.latency_ms.p50, r.latency_ms.p90, r.latency_ms.p95,
            r.latency_ms.p99, r.latency_ms.max, Cores(r.loadgen_cpu_cores),
            Cores(r.server_cpu_cores), errors));
  }
  return text;
}

std::string ReportJson(const LoadgenReport& report) {
  const LoadgenOptions& o = report.options;
  json levels = json::array();
  std::map<std::string, int64_t> total_calls;
  int64_t total_windows = 0;
  for (const LevelResult& r : report.levels) {
    levels.push_back({
        {"concurrency", r.concurrency},
        {"rate", r.rate},
        {"seconds", r.seconds},
        {"calls", r.calls},
        {"windows", r.windows},
        {"calls_per_s", r.calls_per_s},
        {"windows_per_s", r.windows_per_s},
        {"latency_ms",
         {{"p50", r.latency_ms.p50},
          {"p90", r.latency_ms.p90},
          {"p95", r.latency_ms.p95},
          {"p99", r.latency_ms.p99},
          {"max", r.latency_ms.max},
          {"mean", r.latency_ms.mean}}},
        {"calls_by_code", r.calls_by_code},
        {"window_errors_by_code", r.window_errors_by_code},
        {"loadgen_cpu_cores", r.loadgen_cpu_cores},
        {"server_cpu_cores", r.server_cpu_cores},
        {"total",
         {{"calls_by_code", r.total_calls_by_code},
          {"windows", r.total_windows},
          {"samples_sent", r.total_samples_sent}}},
    });
    for (const auto& [code, n] : r.total_calls_by_code) total_calls[code] += n;
    total_windows += r.total_windows;
  }
  json document = {
      {"target", o.connection.target},
      {"model",
       {{"name", report.model.name()},
        {"version", report.model.version()},
        {"backend", report.model.backend()}}},
      {"mode", LoadModeName(o.mode)},
      {"rpc", o.mode == LoadMode::kUnary   ? "Classify"
              : o.mode == LoadMode::kBatch ? "ClassifyBatch"
                                           : "StreamClassify"},
      {"batch_size", o.mode == LoadMode::kBatch ? o.batch_size : 1},
      {"warmup_s", absl::ToDoubleSeconds(o.warmup)},
      {"duration_s", absl::ToDoubleSeconds(o.duration)},
      {"connections", o.connections},
      {"levels", std::move(levels)},
      {"total", {{"calls_by_code", total_calls}, {"windows", total_windows}}},
  };
  if (o.mode == LoadMode::kStream) {
    document["chunk_samples"] = o.chunk_samples;
    document["sample_rate_hz"] =
        o.stream_unpaced
            ? 0.0
            : (o.sample_rate_hz > 0 ? o.sample_rate_hz
                                    : report.model.sample_rate_hz());
  }
  return document.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string ReportCsv(const LoadgenReport& report) {
  std::string csv =
      "mode,batch_size,concurrency,rate,seconds,calls,windows,calls_per_s,"
      "windows_per_s,p50_ms,p90_ms,p95_ms,p99_ms,max_ms,mean_ms,errors,"
      "loadgen_cpu_cores,server_cpu_cores\n";
  for (const LevelResult& r : report.levels) {
    absl::StrAppend(
        &csv,
        absl::StrFormat(
            "%s,%d,%d,%g,%.3f,%d,%d,%.3f,%.3f,%.4f,%.4f,%.4f,%.4f,"
            "%.4f,%.4f,%s,%.3f,%.3f\n",
            LoadModeName(report.options.mode),
            report.options.mode == LoadMode::kBatch ? report.options.batch_size
                                                    : 1,
            r.concurrency, r.rate, r.seconds, r.calls, r.windows, r.calls_per_s,
            r.windows_per_s, r.latency_ms.p50, r.latency_ms.p90,
            r.latency_ms.p95, r.latency_ms.p99, r.latency_ms.max,
            r.latency_ms.mean, Codes(r.calls_by_code, /*skip_ok=*/true),
            r.loadgen_cpu_cores, r.server_cpu_cores));
  }
  return csv;
}

}  // namespace harmamba::cli
