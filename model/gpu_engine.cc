#include "model/gpu_engine.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda/harmamba_fused.cuh"
#include "model/status_macros.h"

namespace harmamba {
namespace {

namespace kc = kernels::cuda;

absl::Status Cuda(cudaError_t err, const std::string& what) {
  if (err == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat("gpu engine: ", what, ": ", cudaGetErrorString(err)));
}

// One cudaMalloc'd float array.
class DeviceFloats {
 public:
  DeviceFloats() = default;
  DeviceFloats(const DeviceFloats&) = delete;
  DeviceFloats& operator=(const DeviceFloats&) = delete;
  DeviceFloats(DeviceFloats&& o) noexcept { std::swap(ptr_, o.ptr_); }
  DeviceFloats& operator=(DeviceFloats&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    return *this;
  }
  ~DeviceFloats() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }

  absl::Status Allocate(size_t n) {
    return Cuda(cudaMalloc(reinterpret_cast<void**>(&ptr_),
                           std::max<size_t>(n, 1) * sizeof(float)),
                absl::StrCat("cudaMalloc of ", n, " floats"));
  }
  absl::Status Upload(const std::vector<float>& host) {
    RETURN_IF_ERROR(Allocate(host.size()));
    return Cuda(cudaMemcpy(ptr_, host.data(), host.size() * sizeof(float),
                           cudaMemcpyHostToDevice),
                "cudaMemcpy of weights");
  }
  float* get() const { return ptr_; }

 private:
  float* ptr_ = nullptr;
};

// One cudaHostAlloc'd (pinned) float array: copies from it can be
// asynchronous and recorded in a CUDA graph.
class PinnedFloats {
 public:
  PinnedFloats() = default;
  PinnedFloats(const PinnedFloats&) = delete;
  PinnedFloats& operator=(const PinnedFloats&) = delete;
  ~PinnedFloats() {
    if (ptr_ != nullptr) cudaFreeHost(ptr_);
  }
  absl::Status Allocate(size_t n) {
    return Cuda(cudaHostAlloc(reinterpret_cast<void**>(&ptr_),
                              std::max<size_t>(n, 1) * sizeof(float),
                              cudaHostAllocDefault),
                absl::StrCat("cudaHostAlloc of ", n, " floats"));
  }
  float* get() const { return ptr_; }

 private:
  float* ptr_ = nullptr;
};

class GpuEngine final : public ModelBackend {
 public:
  GpuEngine(const ModelConfig& config, const GpuEngineOptions& options)
      : config_(config), options_(options) {}

  ~GpuEngine() override {
    for (const auto& [count, exec] : graphs_) cudaGraphExecDestroy(exec);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  absl::Status Init(const ModelWeights& w) {
    RETURN_IF_ERROR(Cuda(cudaSetDevice(options_.device),
                         absl::StrCat("cudaSetDevice(", options_.device, ")")));
    shape_.window_length = config_.window_length;
    shape_.channels = config_.num_channels();
    shape_.patch = config_.patch;
    shape_.stride = config_.stride;
    shape_.d_model = config_.d_model;
    shape_.d_inner = config_.d_inner();
    shape_.d_state = config_.d_state;
    shape_.dt_rank = config_.dt_rank();
    shape_.d_conv = config_.d_conv;
    shape_.classes = config_.num_classes();
    const int64_t L = shape_.tokens(), D = shape_.d_model;
    // Windows whose activations do not fit one CTA's shared memory run on
    // global scratch, in chunks small enough to keep it moderate.
    const bool fits = kc::FusedPairFitsSharedMemory(shape_);
    chunk_ = fits ? options_.max_batch
                  : std::min<int64_t>(options_.max_batch, kWorkspaceWindows);
    RETURN_IF_ERROR(windows_.Allocate(chunk_ * config_.window_floats()));
    RETURN_IF_ERROR(s_.Allocate(chunk_ * L * D));
    RETURN_IF_ERROR(logits_.Allocate(chunk_ * shape_.classes));
    RETURN_IF_ERROR(host_windows_.Allocate(chunk_ * config_.window_floats()));
    RETURN_IF_ERROR(host_logits_.Allocate(chunk_ * shape_.classes));
    if (!fits) {
      RETURN_IF_ERROR(workspace_.Allocate(
          kc::FusedPairWorkspaceBytes(shape_, chunk_) / sizeof(float)));
    }
    RETURN_IF_ERROR(UploadWeights(w));
    RETURN_IF_ERROR(
        Cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
             "cudaStreamCreate"));
    for (const kc::FusedPairParams& p : pairs_) {
      RETURN_IF_ERROR(kc::CanRunFusedPair(p));
    }
    return absl::OkStatus();
  }

  const ModelConfig& config() const override { return config_; }

  std::string description() const override {
    cudaDeviceProp prop;
    std::string name = "?";
    if (cudaGetDeviceProperties(&prop, options_.device) == cudaSuccess) {
      name = prop.name;
    }
    return absl::StrCat(
        "cuda-fused (device ", options_.device, ": ", name,
        options_.cuda_graphs ? ", CUDA graphs" : "",
        options_.pair_threads != 0
            ? absl::StrCat(", ", options_.pair_threads, " threads per window")
            : "",
        ")");
  }

  absl::Status Run(const float* windows, int64_t n, float* logits) override {
    if (n < 1) return absl::InvalidArgumentError("batch must hold >= 1 window");
    // Run() may be called from another thread than the creator.
    RETURN_IF_ERROR(Cuda(cudaSetDevice(options_.device), "cudaSetDevice"));
    const int64_t window_floats = config_.window_floats();
    const int64_t K = shape_.classes;
    for (int64_t first = 0; first < n; first += chunk_) {
      const int64_t count = std::min(chunk_, n - first);
      std::memcpy(host_windows_.get(), windows + first * window_floats,
                  count * window_floats * sizeof(float));
      RETURN_IF_ERROR(Launch(count));
      RETURN_IF_ERROR(
          Cuda(cudaStreamSynchronize(stream_), "running the forward pass"));
      std::memcpy(logits + first * K, host_logits_.get(),
                  count * K * sizeof(float));
    }
    return absl::OkStatus();
  }

 private:
  // Enqueues the forward pass of the `count` windows in host_windows_,
  // leaving their logits in host_logits_ once the stream is done: the
  // graph recorded for `count`, recording it first if there is none.
  absl::Status Launch(int64_t count) {
    if (!options_.cuda_graphs) return Enqueue(count);
    auto it = graphs_.find(count);
    if (it == graphs_.end()) {
      if (graphs_.size() >= GpuEngineOptions::kMaxCudaGraphs) {
        return Enqueue(count);
      }
      ASSIGN_OR_RETURN(cudaGraphExec_t exec, Record(count));
      it = graphs_.emplace(count, exec).first;
    }
    return Cuda(cudaGraphLaunch(it->second, stream_), "cudaGraphLaunch");
  }

  absl::StatusOr<cudaGraphExec_t> Record(int64_t count) {
    RETURN_IF_ERROR(
        Cuda(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal),
             "cudaStreamBeginCapture"));
    const absl::Status enqueued = Enqueue(count);
    cudaGraph_t graph = nullptr;
    const cudaError_t ended = cudaStreamEndCapture(stream_, &graph);
    if (!enqueued.ok() || ended != cudaSuccess) {
      if (graph != nullptr) cudaGraphDestroy(graph);
      RETURN_IF_ERROR(enqueued);
      return Cuda(ended, "recording a CUDA graph");
    }
    cudaGraphExec_t exec = nullptr;
    const cudaError_t instantiated = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    RETURN_IF_ERROR(Cuda(instantiated, "cudaGraphInstantiate"));
    return exec;
  }

  // Enqueues the copy of `count` windows in, the forward pass and the copy
  // of their logits out.
  absl::Status Enqueue(int64_t count) {
    RETURN_IF_ERROR(
        Cuda(cudaMemcpyAsync(windows_.get(), host_windows_.get(),
                             count * config_.window_floats() * sizeof(float),
                             cudaMemcpyHostToDevice, stream_),
             "copying windows to the device"));
    RETURN_IF_ERROR(Forward(count));
    return Cuda(cudaMemcpyAsync(host_logits_.get(), logits_.get(),
                                count * shape_.classes * sizeof(float),
                                cudaMemcpyDeviceToHost, stream_),
                "copying logits to the host");
  }

  // Enqueues embed, every pair and the head for `count` windows already in
  // windows_.
  absl::Status Forward(int64_t count) {
    kc::EmbedParams e = embed_;
    e.batch = count;
    RETURN_IF_ERROR(kc::EmbedForward(e, stream_));
    for (const kc::FusedPairParams& pair : pairs_) {
      kc::FusedPairParams p = pair;
      p.batch = count;
      RETURN_IF_ERROR(kc::FusedPairForward(p, stream_));
    }
    kc::HeadParams h = head_;
    h.batch = count;
    return kc::HeadForward(h, stream_);
  }

  // Keeps `host` on the device for the engine's lifetime. Needs the
  // activation buffers allocated (the params point at them).
  absl::StatusOr<const float*> Keep(const std::vector<float>& host) {
    DeviceFloats d;
    RETURN_IF_ERROR(d.Upload(host));
    const float* ptr = d.get();
    weights_.push_back(std::move(d));
    return ptr;
  }

  absl::Status UploadWeights(const ModelWeights& w) {
    auto t = [&](const std::string& name) -> const std::vector<float>& {
      return w.at(name).data;
    };
    const int64_t D = shape_.d_model, E = shape_.d_inner, L = shape_.tokens(),
                  X = shape_.xdbl_width(), C = shape_.channels;

    std::vector<float> inv_std(C);
    for (int64_t c = 0; c < C; ++c) inv_std[c] = 1.0f / config_.std[c];
    const auto& pos = t("pos_embed");
    const auto& cls = t("cls_token");
    const auto& patch_bias = t("patch_embed.proj.bias");
    std::vector<float> offset(L * D);
    for (int64_t j = 0; j < D; ++j) offset[j] = cls[j] + pos[j];
    for (int64_t r = 1; r < L; ++r) {
      for (int64_t j = 0; j < D; ++j) {
        offset[r * D + j] = pos[r * D + j] + patch_bias[j];
      }
    }
    embed_.shape = shape_;
    ASSIGN_OR_RETURN(embed_.mean, Keep(config_.mean));
    ASSIGN_OR_RETURN(embed_.inv_std, Keep(inv_std));
    ASSIGN_OR_RETURN(embed_.patch_weight, Keep(t("patch_embed.proj.weight")));
    ASSIGN_OR_RETURN(embed_.token_offset, Keep(offset));
    embed_.windows = windows_.get();
    embed_.s = s_.get();

    pairs_.resize(config_.num_pairs());
    for (int k = 0; k < config_.num_pairs(); ++k) {
      kc::FusedPairParams& pair = pairs_[k];
      pair.shape = shape_;
      pair.cls_only = k + 1 == config_.num_pairs();
      pair.threads = options_.pair_threads;
      pair.s = s_.get();
      pair.workspace = workspace_.get();  // null when shared memory suffices
      for (int dir = 0; dir < 2; ++dir) {
        const std::string p = absl::StrCat("layers.", 2 * k + dir, ".");
        const auto& gamma = t(p + "norm.weight");
        const auto& beta = t(p + "norm.bias");
        const auto& w_in = t(p + "mixer.in_proj.weight");  // [2E][D]
        std::vector<float> in_proj(D * 2 * E), in_bias(2 * E);
        for (int64_t o = 0; o < 2 * E; ++o) {
          double bias = 0;
          for (int64_t j = 0; j < D; ++j) {
            in_proj[j * 2 * E + o] = w_in[o * D + j] * gamma[j];
            bias += double(w_in[o * D + j]) * beta[j];
          }
          in_bias[o] = static_cast<float>(bias);
        }
        const auto& w_x = t(p + "mixer.x_proj.weight");  // [X][E]
        std::vector<float> x_proj(E * X);
        for (int64_t j = 0; j < X; ++j) {
          for (int64_t e = 0; e < E; ++e) x_proj[e * X + j] = w_x[j * E + e];
        }
        const auto& w_out = t(p + "mixer.out_proj.weight");  // [D][E]
        std::vector<float> out_proj(E * D);
        for (int64_t c = 0; c < D; ++c) {
          for (int64_t e = 0; e < E; ++e)
            out_proj[e * D + c] = w_out[c * E + e];
        }
        std::vector<float> A = t(p + "mixer.A_log");
        for (float& v : A) v = -std::exp(v);
        kc::FusedDirectionWeights& dw = pair.dir[dir];
        ASSIGN_OR_RETURN(dw.in_proj, Keep(in_proj));
        ASSIGN_OR_RETURN(dw.in_proj_bias, Keep(in_bias));
        ASSIGN_OR_RETURN(dw.conv_weight, Keep(t(p + "mixer.conv1d.weight")));
        ASSIGN_OR_RETURN(dw.conv_bias, Keep(t(p + "mixer.conv1d.bias")));
        ASSIGN_OR_RETURN(dw.x_proj, Keep(x_proj));
        ASSIGN_OR_RETURN(dw.dt_weight, Keep(t(p + "mixer.dt_proj.weight")));
        ASSIGN_OR_RETURN(dw.dt_bias, Keep(t(p + "mixer.dt_proj.bias")));
        ASSIGN_OR_RETURN(dw.A, Keep(A));
        ASSIGN_OR_RETURN(dw.D, Keep(t(p + "mixer.D")));
        ASSIGN_OR_RETURN(dw.out_proj, Keep(out_proj));
      }
    }

    head_.shape = shape_;
    ASSIGN_OR_RETURN(head_.norm_weight, Keep(t("norm_f.weight")));
    ASSIGN_OR_RETURN(head_.norm_bias, Keep(t("norm_f.bias")));
    ASSIGN_OR_RETURN(head_.head_weight, Keep(t("head.weight")));
    ASSIGN_OR_RETURN(head_.head_bias, Keep(t("head.bias")));
    head_.s = s_.get();
    head_.logits = logits_.get();
    return absl::OkStatus();
  }

  const ModelConfig config_;
  const GpuEngineOptions options_;
  kc::HarmambaShape shape_;
  std::vector<DeviceFloats> weights_;
  // Windows per launch when the activations need global scratch (~650 MB
  // of scratch at PAMAP2's 289 tokens).
  static constexpr int64_t kWorkspaceWindows = 1024;
  int64_t chunk_ = 0;  // windows per launch
  DeviceFloats windows_, s_, logits_, workspace_;
  PinnedFloats host_windows_, host_logits_;  // staging, chunk_ windows
  absl::flat_hash_map<int64_t, cudaGraphExec_t> graphs_;  // by window count
  cudaStream_t stream_ = nullptr;
  kc::EmbedParams embed_;
  std::vector<kc::FusedPairParams> pairs_;
  kc::HeadParams head_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ModelBackend>> CreateGpuEngine(
    const ModelWeights& weights, const GpuEngineOptions& options) {
  RETURN_IF_ERROR(ValidateWeights(weights));
  if (options.max_batch < 1) {
    return absl::InvalidArgumentError("gpu engine: max_batch must be >= 1");
  }
  auto engine = std::make_unique<GpuEngine>(weights.config, options);
  RETURN_IF_ERROR(engine->Init(weights));
  return std::unique_ptr<ModelBackend>(std::move(engine));
}

}  // namespace harmamba
