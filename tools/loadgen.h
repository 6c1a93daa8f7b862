// The load generator behind `harmamba loadgen` (in the spirit of Triton's
// perf_analyzer): drives a harmamba-server with Classify, ClassifyBatch or
// StreamClassify traffic at one or more load levels and measures
// throughput, latency, errors and its own CPU use.
//
// Each level runs for warm-up + duration. Measured figures cover the calls
// (unary, batch) or stream results that *completed* inside the measured
// interval; "total" figures cover the whole level, warm-up and the final
// drain included, and so match the server's own counters for the run.
#ifndef HARMAMBA_TOOLS_LOADGEN_H_
#define HARMAMBA_TOOLS_LOADGEN_H_

#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "harmamba/v1/harmamba.pb.h"
#include "tools/grpc_client.h"

namespace harmamba::cli {

enum class LoadMode {
  kUnary,   // Classify, one window per call
  kBatch,   // ClassifyBatch, batch_size windows per call
  kStream,  // StreamClassify, `concurrency` streams sending samples
};

const char* LoadModeName(LoadMode mode);

struct LoadgenOptions {
  ConnectionOptions connection;
  std::string model;  // "" = the server's default model
  LoadMode mode = LoadMode::kBatch;
  int batch_size = 64;
  // One level per value. Closed loop: calls kept in flight (unary, batch) or
  // streams kept open (stream).
  std::vector<int> concurrency = {1};
  // Unary and batch: open loop instead, one level per value: calls per
  // second with Poisson arrivals, issued on schedule whatever is in flight.
  std::vector<double> rates;
  // Stream: samples per second per stream (0: the model's sample rate);
  // `stream_unpaced` sends as fast as the server reads instead.
  double sample_rate_hz = 0;
  bool stream_unpaced = false;
  int chunk_samples = 10;
  int hop = 0;  // 0: the server's default
  absl::Duration warmup = absl::Seconds(2);
  absl::Duration duration = absl::Seconds(10);
  // Deadline of each call (a stream: the whole stream).
  absl::Duration deadline = absl::InfiniteDuration();
  int connections = 1;  // TCP connections calls are spread over
  uint32_t seed = 1;
  // Optional windows file (formats as `predict`); random windows otherwise.
  std::string input;
  // If > 0, the server process whose CPU use is reported (same machine).
  int server_pid = 0;
};

struct LatencySummary {
  double p50 = 0, p90 = 0, p95 = 0, p99 = 0, max = 0, mean = 0;  // ms
};

struct LevelResult {
  int concurrency = 0;  // calls in flight or streams (0 in open loop)
  double rate = 0;      // calls/s offered (open loop), else 0

  // --- The measured interval ---
  double seconds = 0;
  int64_t calls = 0;    // calls completed (stream mode: streams finished)
  int64_t windows = 0;  // windows with a result
  double calls_per_s = 0;
  double windows_per_s = 0;
  // Per call (unary, batch) or per stream window: from sending the chunk
  // holding the window's last sample to receiving its result.
  LatencySummary latency_ms;
  std::map<std::string, int64_t> calls_by_code;
  // ClassifyBatch windows answered with an error inside an OK call.
  std::map<std::string, int64_t> window_errors_by_code;
  // CPU cores used during the interval (CPU seconds / seconds); -1 if not
  // measured.
  double loadgen_cpu_cores = -1;
  double server_cpu_cores = -1;

  // --- The whole level (warm-up and drain included) ---
  std::map<std::string, int64_t> total_calls_by_code;
  int64_t total_windows = 0;       // windows with a result
  int64_t total_samples_sent = 0;  // stream mode
};

struct LoadgenReport {
  v1::ModelInfo model;
  LoadgenOptions options;
  std::vector<LevelResult> levels;
};

// Runs every level in turn; one progress line per level goes to `progress`.
// Fails (before any load) when the server cannot be reached or the options
// do not fit the model.
absl::StatusOr<LoadgenReport> RunLoadgen(const LoadgenOptions& options,
                                         std::ostream& progress);

// Nearest-rank percentiles of `values` (sorted in place).
LatencySummary Summarize(std::vector<double>& values);

std::string ReportTable(const LoadgenReport& report);
std::string ReportJson(const LoadgenReport& report);
std::string ReportCsv(const LoadgenReport& report);

}  // namespace harmamba::cli

#endif  // HARMAMBA_TOOLS_LOADGEN_H_
