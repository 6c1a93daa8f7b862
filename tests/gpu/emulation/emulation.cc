#include "tests/gpu/emulation/emulation.h"

#include <ucontext.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

namespace emu {

dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace {

enum class State { kRunnable, kAtCtaBarrier, kAtWarpBarrier, kDone };

constexpr size_t kStackBytes = 128 * 1024;

struct Fiber {
  ucontext_t context;
  char* stack = nullptr;
  State state = State::kRunnable;
};

// Fiber stacks are reused across launches (allocating them per launch
// dominated the run time).
char* Stack(size_t index) {
  static std::vector<std::unique_ptr<char[]>> pool;
  while (pool.size() <= index) pool.emplace_back(new char[kStackBytes]);
  return pool[index].get();
}

struct Cta {
  ucontext_t scheduler;
  std::vector<Fiber> fibers;
  std::vector<float> exchange;  // one slot per thread, for shuffles
  std::vector<float> dynamic_shared;
  int current = -1;
  const std::function<void()>* body = nullptr;
};

Cta* g_cta = nullptr;
cudaError_t g_last_error = cudaSuccess;

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "CUDA emulation: %s (block %u,%u thread %u)\n", what,
               blockIdx.x, blockIdx.y, threadIdx.x);
  std::abort();
}

void Yield(State state) {
  Fiber& self = g_cta->fibers[g_cta->current];
  self.state = state;
  swapcontext(&self.context, &g_cta->scheduler);
}

void FiberMain() {
  (*g_cta->body)();
  g_cta->fibers[g_cta->current].state = State::kDone;
  // uc_link returns to the scheduler.
}

unsigned Threads(dim3 d) { return d.x * d.y * d.z; }

}  // namespace

void SyncThreads() { Yield(State::kAtCtaBarrier); }

float* DynamicSharedFloats() { return g_cta->dynamic_shared.data(); }

float ShuffleFloat(float value, int src_lane) {
  const int tid = static_cast<int>(threadIdx.x);
  const int warp_base = tid - tid % 32;
  g_cta->exchange[tid] = value;
  Yield(State::kAtWarpBarrier);  // every lane has published its value
  const float result = g_cta->exchange[warp_base + (src_lane & 31)];
  Yield(State::kAtWarpBarrier);  // every lane has read before any rewrites
  return result;
}

void RunGrid(dim3 grid, dim3 block, size_t shared_bytes,
             const std::function<void()>& body) {
  if (shared_bytes > 227 * 1024 || Threads(block) == 0 ||
      Threads(block) > 1024 || grid.y > 65535 || grid.z > 65535 ||
      Threads(grid) == 0 || block.y != 1 || block.z != 1) {
    g_last_error = cudaErrorInvalidConfiguration;
    return;
  }
  const int n = static_cast<int>(block.x);
  Cta cta;
  cta.body = &body;
  cta.fibers.resize(n);
  cta.exchange.assign(n, 0.f);
  Cta* const outer = g_cta;
  if (outer != nullptr) Fail("nested kernel launch");
  for (int t = 0; t < n; ++t) cta.fibers[t].stack = Stack(t);
  g_cta = &cta;
  blockDim = block;
  gridDim = grid;
  for (unsigned by = 0; by < grid.y; ++by) {
    for (unsigned bx = 0; bx < grid.x; ++bx) {
      blockIdx = dim3(bx, by, 0);
      cta.dynamic_shared.assign((shared_bytes + 3) / 4,
                                std::numeric_limits<float>::quiet_NaN());
      for (int t = 0; t < n; ++t) {
        Fiber& f = cta.fibers[t];
        f.state = State::kRunnable;
        getcontext(&f.context);
        f.context.uc_stack.ss_sp = f.stack;
        f.context.uc_stack.ss_size = kStackBytes;
        f.context.uc_link = &cta.scheduler;
        makecontext(&f.context, FiberMain, 0);
      }
      for (;;) {
        bool ran = false;
        for (int t = 0; t < n; ++t) {
          if (cta.fibers[t].state != State::kRunnable) continue;
          cta.current = t;
          threadIdx = dim3(t, 0, 0);
          swapcontext(&cta.scheduler, &cta.fibers[t].context);
          ran = true;
        }
        // Release barriers whose participants have all arrived.
        bool released = false;
        int live = 0, at_cta = 0;
        for (int w = 0; w < n; w += 32) {
          int lanes = 0, waiting = 0, done = 0;
          for (int t = w; t < w + 32 && t < n; ++t, ++lanes) {
            waiting += cta.fibers[t].state == State::kAtWarpBarrier;
            done += cta.fibers[t].state == State::kDone;
          }
          if (waiting > 0 && waiting + done == lanes) {
            if (done > 0 || lanes < 32) {
              threadIdx = dim3(w, 0, 0);
              Fail("warp shuffle with exited or missing lanes");
            }
            for (int t = w; t < w + 32; ++t) {
              cta.fibers[t].state = State::kRunnable;
            }
            released = true;
          }
        }
        for (const Fiber& f : cta.fibers) {
          live += f.state != State::kDone;
          at_cta += f.state == State::kAtCtaBarrier;
        }
        if (live == 0) break;
        if (at_cta == live) {
          for (Fiber& f : cta.fibers) {
            if (f.state == State::kAtCtaBarrier) f.state = State::kRunnable;
          }
          released = true;
        }
        if (!ran && !released)
          Fail("deadlock: threads wait at different barriers");
      }
    }
  }
  g_cta = outer;
}

}  // namespace emu

// ---- The runtime API stand-in ----------------------------------------------

cudaError_t cudaGetLastError() {
  const cudaError_t e = emu::g_last_error;
  emu::g_last_error = cudaSuccess;
  return e;
}

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "no error (emulated)";
    case cudaErrorInvalidValue:
      return "invalid argument (emulated)";
    case cudaErrorMemoryAllocation:
      return "out of memory (emulated)";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument (emulated)";
  }
  return "unknown error (emulated)";
}

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  // 256-byte aligned, as cudaMalloc guarantees.
  *ptr = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  return *ptr != nullptr ? cudaSuccess : cudaErrorMemoryAllocation;
}

cudaError_t cudaFree(void* ptr) {
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes,
                       cudaMemcpyKind) {
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemset(void* ptr, int value, size_t bytes) {
  std::memset(ptr, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }

cudaError_t cudaFuncSetAttribute(const void*, cudaFuncAttribute, int value) {
  return value >= 0 && value <= 227 * 1024 ? cudaSuccess
                                           : cudaErrorInvalidValue;
}

cudaError_t cudaSetDevice(int device) {
  return device == 0 ? cudaSuccess : cudaErrorInvalidValue;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device != 0) return cudaErrorInvalidValue;
  std::snprintf(prop->name, sizeof(prop->name), "CUDA emulation on the CPU");
  prop->multiProcessorCount = 1;
  return cudaSuccess;
}

// Streams are tokens: every emulated launch and copy completes before the
// call returns.
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned) {
  static char token;
  *stream = reinterpret_cast<cudaStream_t>(&token);
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }

cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes,
                            cudaMemcpyKind kind, cudaStream_t) {
  if (emu::RecordIfCapturing([=] { std::memmove(dst, src, bytes); })) {
    return cudaSuccess;
  }
  return cudaMemcpy(dst, src, bytes, kind);
}

cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned) {
  return cudaMalloc(ptr, bytes);
}

cudaError_t cudaFreeHost(void* ptr) { return cudaFree(ptr); }

struct EmulatedGraph {
  std::vector<std::function<void()>> work;
};

namespace emu {
namespace {
// The recording of the open capture; null when none is open.
EmulatedGraph* capturing = nullptr;
}  // namespace

bool RecordIfCapturing(std::function<void()> work) {
  if (capturing == nullptr) return false;
  capturing->work.push_back(std::move(work));
  return true;
}
}  // namespace emu

cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode) {
  if (emu::capturing != nullptr) return cudaErrorInvalidValue;
  emu::capturing = new EmulatedGraph;
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t* graph) {
  if (emu::capturing == nullptr) return cudaErrorInvalidValue;
  *graph = emu::capturing;
  emu::capturing = nullptr;
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph,
                                 unsigned long long) {
  *exec = new EmulatedGraph(*graph);
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t) {
  for (const auto& work : exec->work) work();
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}
