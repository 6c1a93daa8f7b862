// harmamba loadgen: load a running harmamba-server and measure it.
#include <cmath>
#include <fstream>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tools/commands.h"
#include "tools/loadgen.h"

namespace harmamba::cli {
namespace {

constexpr char kCommand[] = "loadgen";

// "1,2,4" -> {1, 2, 4}; every value must be in [min, max].
template <typename T>
absl::StatusOr<std::vector<T>> ParseList(const std::string& flag,
                                         const std::string& text, T min,
                                         T max) {
  std::vector<T> values;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    T value;
    bool parsed;
    if constexpr (std::is_integral_v<T>) {
      parsed = absl::SimpleAtoi(part, &value);
    } else {
      parsed = absl::SimpleAtod(part, &value) && std::isfinite(value);
    }
    if (!parsed || value < min || value > max) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, ": expected comma-separated numbers in [",
                       min, ", ", max, "], got '", text, "'"));
    }
    values.push_back(value);
  }
  return values;
}

absl::Status WriteFile(const std::string& path, const std::string& text) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file << text;
  file.close();
  if (!file)
    return absl::UnavailableError(absl::StrCat(path, ": cannot write"));
  return absl::OkStatus();
}

}  // namespace

int RunLoadgenCommand(const std::vector<std::string>& args, std::ostream& out,
                      std::ostream& err) {
  LoadgenOptions options;
  std::string mode = "batch";
  std::string pace = "realtime";
  std::string concurrency = "1";
  std::string rates;
  int64_t batch_size = options.batch_size;
  int64_t chunk = options.chunk_samples;
  int64_t hop = 0;
  int64_t deadline_ms = 0;
  int64_t connections = options.connections;
  int64_t seed = options.seed;
  int64_t server_pid = 0;
  double duration_s = 10;
  double warmup_s = 2;
  std::string json_out;
  std::string csv_out;
  bool as_json = false;
  FlagParser flags(
      kCommand, "[--target HOST:PORT] [--mode unary|batch|stream] [options]",
      "Loads a running harmamba-server and reports throughput (windows/s), "
      "latency percentiles, errors by status code and its own CPU use, per "
      "load level. --mode unary sends Classify calls, batch ClassifyBatch "
      "calls of --batch-size windows, stream keeps --concurrency "
      "StreamClassify streams open, each sending --chunk samples at a time "
      "at --sample-rate-hz (or unpaced with --pace fast); stream latency is "
      "from sending a window's last sample to its result. Unary and batch "
      "run closed loops of --concurrency calls in flight, or open loops at "
      "--rate calls/s (Poisson arrivals). Lists sweep: --concurrency 1,2,4 "
      "runs three levels, each --warmup-s then --duration-s. Measured "
      "figures count calls completed in the measured interval; the JSON's "
      "'total' counts every call of the run (warm-up included), as the "
      "server's metrics do.");
  AddConnectionFlags(flags, &options.connection);
  flags.AddChoice("mode", {"unary", "batch", "stream"},
                  "Classify, ClassifyBatch or StreamClassify.", &mode);
  flags.AddString("model", "NAME", "Model (default: the server's).",
                  &options.model);
  flags.AddInt("batch-size", "N", "Windows per ClassifyBatch call.",
               &batch_size, 1, 1 << 16);
  flags.AddString("concurrency", "N[,N...]",
                  "Calls in flight (unary, batch) or open streams (stream); "
                  "a list sweeps.",
                  &concurrency);
  flags.AddString("rate", "R[,R...]",
                  "Unary and batch: open loop at R calls/s instead of a "
                  "closed loop; a list sweeps.",
                  &rates);
  flags.AddDouble("sample-rate-hz", "HZ",
                  "Stream: samples per second per stream (0: the model's).",
                  &options.sample_rate_hz, 0, 1e7);
  flags.AddChoice("pace", {"realtime", "fast"},
                  "Stream: paced at the sample rate, or as fast as the server "
                  "reads.",
                  &pace);
  flags.AddInt("chunk", "N", "Stream: samples per message.", &chunk, 1,
               1 << 20);
  flags.AddInt("hop", "N", "Stream: hop (0: the server's default).", &hop, 0,
               1 << 20);
  flags.AddDouble("duration-s", "S", "Measured seconds per level.", &duration_s,
                  0.01, 1e6);
  flags.AddDouble("warmup-s", "S", "Unmeasured seconds before each level.",
                  &warmup_s, 0, 1e6);
  flags.AddInt("deadline-ms", "MS",
               "Deadline of each call (a stream: the whole stream); 0 = none.",
               &deadline_ms, 0, int64_t{1} << 40);
  flags.AddInt("connections", "N", "TCP connections to spread calls over.",
               &connections, 1, 1024);
  flags.AddInt("seed", "N", "Seed of the random windows and arrivals.", &seed,
               0, 0xffffffff);
  flags.AddString("input", "FILE",
                  "Windows to send (.npy, .f32, .csv; default: random).",
                  &options.input);
  flags.AddInt("server-pid", "PID",
               "Also report this local process's CPU use (the server's).",
               &server_pid, 0, 1 << 30);
  flags.AddString("json-out", "FILE", "Write the report as JSON.", &json_out);
  flags.AddString("csv-out", "FILE", "Write one CSV row per level.", &csv_out);
  flags.AddBool("json", "Print the JSON report instead of the table.",
                &as_json);
  if (std::optional<int> exit_code = flags.ParseOrReport(args, out, err)) {
    return *exit_code;
  }
  auto usage_error = [&](const absl::Status& status) {
    err << "harmamba loadgen: error: " << status.message() << "\n\n"
        << flags.Usage();
    return kExitUsageError;
  };
  options.mode = mode == "unary"   ? LoadMode::kUnary
                 : mode == "batch" ? LoadMode::kBatch
                                   : LoadMode::kStream;
  options.batch_size = static_cast<int>(batch_size);
  options.chunk_samples = static_cast<int>(chunk);
  options.hop = static_cast<int>(hop);
  options.stream_unpaced = pace == "fast";
  options.connections = static_cast<int>(connections);
  options.seed = static_cast<uint32_t>(seed);
  options.server_pid = static_cast<int>(server_pid);
  options.duration = absl::Seconds(duration_s);
  options.warmup = absl::Seconds(warmup_s);
  if (deadline_ms > 0) options.deadline = absl::Milliseconds(deadline_ms);
  absl::StatusOr<std::vector<int>> levels =
      ParseList<int>("concurrency", concurrency, 1, 100000);
  if (!levels.ok()) return usage_error(levels.status());
  if (levels->empty()) {
    return usage_error(
        absl::InvalidArgumentError("--concurrency: expected at least one"));
  }
  options.concurrency = *levels;
  if (!rates.empty()) {
    if (options.mode == LoadMode::kStream) {
      return usage_error(absl::InvalidArgumentError(
          "--rate: not for --mode stream (use --concurrency and "
          "--sample-rate-hz)"));
    }
    absl::StatusOr<std::vector<double>> parsed =
        ParseList<double>("rate", rates, 1e-3, 1e7);
    if (!parsed.ok()) return usage_error(parsed.status());
    options.rates = *parsed;
  }

  absl::StatusOr<LoadgenReport> report = RunLoadgen(options, err);
  if (!report.ok()) return ReportRuntimeError(kCommand, report.status(), err);
  if (!json_out.empty()) {
    if (absl::Status s = WriteFile(json_out, ReportJson(*report)); !s.ok()) {
      return ReportRuntimeError(kCommand, s, err);
    }
  }
  if (!csv_out.empty()) {
    if (absl::Status s = WriteFile(csv_out, ReportCsv(*report)); !s.ok()) {
      return ReportRuntimeError(kCommand, s, err);
    }
  }
  out << (as_json ? ReportJson(*report) : ReportTable(*report));
  return kExitOk;
}

}  // namespace harmamba::cli
