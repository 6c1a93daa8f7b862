// harmamba-loadgen: drives a harmamba-serve server and reports throughput,
// latency and its own CPU use (it usually shares the machine's cores with the
// server, so its share must be reported next to the server's numbers).
//
//   Saturation through ClassifyBatch (closed loop):
//     harmamba-loadgen --rpc=batch --batch_size=64 --concurrency=4
//   Classify latency at a fixed offered load (open loop, Poisson arrivals):
//     harmamba-loadgen --rpc=classify --rate=1000
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "harmamba/v1/harmamba.grpc.pb.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "Server host:port.");
ABSL_FLAG(std::string, model, "", "Model name (empty: the default model).");
ABSL_FLAG(std::string, rpc, "batch", "batch (ClassifyBatch) or classify.");
ABSL_FLAG(int, batch_size, 64, "Windows per ClassifyBatch call.");
ABSL_FLAG(int, concurrency, 4,
          "Calls in flight (closed loop; used when --rate is 0).");
ABSL_FLAG(double, rate, 0,
          "Calls per second, Poisson arrivals (open loop). 0: closed loop.");
ABSL_FLAG(double, duration_s, 10, "Measured seconds.");
ABSL_FLAG(double, warmup_s, 2, "Unmeasured seconds before measuring.");
ABSL_FLAG(int, channels, 1, "gRPC channels (connections) to spread calls on.");
ABSL_FLAG(uint32_t, seed, 1, "Seed for windows and arrivals.");

namespace {

namespace v1 = ::harmamba::v1;

double CpuSeconds() {
  rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         1e-6 * (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

class LoadGenerator {
 public:
  LoadGenerator(
      std::vector<std::unique_ptr<v1::ActivityClassifier::Stub>> stubs,
      const v1::ModelInfo& info)
      : stubs_(std::move(stubs)) {
    std::mt19937 rng(absl::GetFlag(FLAGS_seed));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const int floats = info.window_length() * info.channels_size();
    constexpr int kDistinctRequests = 8;
    for (int r = 0; r < kDistinctRequests; ++r) {
      v1::ClassifyRequest single;
      single.set_model(absl::GetFlag(FLAGS_model));
      for (int i = 0; i < floats; ++i) {
        single.mutable_window()->add_samples(normal(rng));
      }
      singles_.push_back(single);
      v1::ClassifyBatchRequest batch;
      batch.set_model(absl::GetFlag(FLAGS_model));
      for (int w = 0; w < absl::GetFlag(FLAGS_batch_size); ++w) {
        v1::Window* window = batch.add_windows();
        for (int i = 0; i < floats; ++i) window->add_samples(normal(rng));
      }
      batches_.push_back(batch);
    }
  }

  void Run() {
    const bool batch = absl::GetFlag(FLAGS_rpc) == "batch";
    const double rate = absl::GetFlag(FLAGS_rate);
    const absl::Time start = absl::Now();
    measure_from_ = start + absl::Seconds(absl::GetFlag(FLAGS_warmup_s));
    stop_at_ = measure_from_ + absl::Seconds(absl::GetFlag(FLAGS_duration_s));
    std::thread cpu_marker([this] {
      absl::SleepFor(measure_from_ - absl::Now());
      cpu_at_start_ = CpuSeconds();
    });
    if (rate <= 0) {
      for (int i = 0; i < absl::GetFlag(FLAGS_concurrency); ++i) Issue(batch);
    } else {
      std::mt19937 rng(absl::GetFlag(FLAGS_seed) + 1);
      std::exponential_distribution<double> gap(rate);
      absl::Time next = absl::Now();
      while (next < stop_at_) {
        absl::SleepFor(next - absl::Now());
        Issue(batch);
        next += absl::Seconds(gap(rng));
      }
    }
    double cpu;
    {
      absl::MutexLock lock(&mu_);
      auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return in_flight_ == 0 && absl::Now() >= stop_at_;
      };
      mu_.AwaitWithTimeout(absl::Condition(&idle),
                           stop_at_ - absl::Now() + absl::Seconds(60));
      cpu = CpuSeconds() - cpu_at_start_;
    }
    cpu_marker.join();
    Report(cpu);
  }

 private:
  struct Call {
    grpc::ClientContext context;
    v1::ClassifyResponse single;
    v1::ClassifyBatchResponse batch;
    absl::Time start;
  };

  void Issue(bool batch) {
    auto* call = new Call();
    call->start = absl::Now();
    call->context.set_deadline(
        absl::ToChronoTime(call->start + absl::Seconds(30)));
    uint64_t n;
    {
      absl::MutexLock lock(&mu_);
      ++in_flight_;
      n = issued_++;
    }
    auto* stub = stubs_[n % stubs_.size()].get();
    if (batch) {
      stub->async()->ClassifyBatch(
          &call->context, &batches_[n % batches_.size()], &call->batch,
          [this, call, batch](grpc::Status s) { Done(call, batch, s); });
    } else {
      stub->async()->Classify(
          &call->context, &singles_[n % singles_.size()], &call->single,
          [this, call, batch](grpc::Status s) { Done(call, batch, s); });
    }
  }

  void Done(Call* call, bool batch, const grpc::Status& status) {
    const absl::Time end = absl::Now();
    int64_t windows = 0;
    if (status.ok()) {
      if (batch) {
        for (const auto& o : call->batch.outcomes()) windows += o.has_result();
      } else {
        windows = 1;
      }
    }
    const bool measured = call->start >= measure_from_ && end <= stop_at_;
    bool again = false;
    {
      absl::MutexLock lock(&mu_);
      --in_flight_;
      if (measured) {
        latencies_.push_back(absl::ToDoubleMilliseconds(end - call->start));
        windows_ += windows;
        ++codes_[status.error_code()];
      }
      again = absl::GetFlag(FLAGS_rate) <= 0 && end < stop_at_;
    }
    delete call;
    if (again) Issue(batch);
  }

  void Report(double cpu_seconds) {
    absl::MutexLock lock(&mu_);
    std::sort(latencies_.begin(), latencies_.end());
    auto pct = [&](double p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (latencies_.empty()) return 0.0;
      return latencies_[std::min(latencies_.size() - 1,
                                 static_cast<size_t>(p * latencies_.size()))];
    };
    const double seconds = absl::GetFlag(FLAGS_duration_s);
    std::printf(
        "rpc=%s batch_size=%d concurrency=%d rate=%.1f duration_s=%.1f\n"
        "calls=%zu calls_per_s=%.1f windows_per_s=%.1f\n"
        "latency_ms p50=%.3f p90=%.3f p99=%.3f max=%.3f\n"
        "loadgen_cpu_cores=%.3f\n",
        absl::GetFlag(FLAGS_rpc).c_str(), absl::GetFlag(FLAGS_batch_size),
        absl::GetFlag(FLAGS_concurrency), absl::GetFlag(FLAGS_rate), seconds,
        latencies_.size(), latencies_.size() / seconds, windows_ / seconds,
        pct(0.50), pct(0.90), pct(0.99),
        latencies_.empty() ? 0.0 : latencies_.back(), cpu_seconds / seconds);
    for (const auto& [code, count] : codes_) {
      std::printf("status %d: %" PRId64 "\n", static_cast<int>(code), count);
    }
  }

  std::vector<std::unique_ptr<v1::ActivityClassifier::Stub>> stubs_;
  std::vector<v1::ClassifyRequest> singles_;
  std::vector<v1::ClassifyBatchRequest> batches_;
  absl::Time measure_from_;
  absl::Time stop_at_;
  std::atomic<double> cpu_at_start_{0};

  absl::Mutex mu_;
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t issued_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<double> latencies_ ABSL_GUARDED_BY(mu_);
  int64_t windows_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<grpc::StatusCode, int64_t> codes_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Load generator for harmamba-serve (see docs/performance.md).");
  absl::ParseCommandLine(argc, argv);
  std::vector<std::unique_ptr<v1::ActivityClassifier::Stub>> stubs;
  for (int i = 0; i < std::max(1, absl::GetFlag(FLAGS_channels)); ++i) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    args.SetInt("grpc.channel_id", i);  // one connection per channel
    stubs.push_back(v1::ActivityClassifier::NewStub(
        grpc::CreateCustomChannel(absl::GetFlag(FLAGS_target),
                                  grpc::InsecureChannelCredentials(), args)));
  }
  grpc::ClientContext context;
  v1::GetModelInfoRequest request;
  request.set_model(absl::GetFlag(FLAGS_model));
  v1::ModelInfo info;
  const grpc::Status status = stubs[0]->GetModelInfo(&context, request, &info);
  if (!status.ok()) {
    std::fprintf(stderr, "harmamba-loadgen: GetModelInfo: %s\n",
                 status.error_message().c_str());
    return 1;
  }
  std::printf("model=%s version=%s window=%dx%d backend=%s\n",
              info.name().c_str(), info.version().c_str(), info.window_length(),
              info.channels_size(), info.backend().c_str());
  LoadGenerator generator(std::move(stubs), info);
  generator.Run();
  return 0;
}
