// The CUDA kernels against the float64 CPU oracles, on fresh random inputs,
// odd sizes, both directions, every lane split, padded strides. Skips (and
// passes) on machines without a CUDA device; see docs/gpu.md for the GPU
// run.
//
// Conventions: norm-wise relative error ||got - want|| / ||want|| <= 1e-5
// (fp32, design.md §4). Inputs live in NaN-padded strided buffers, so a
// kernel that reads outside its rows produces NaN and fails; outputs that
// must be overwritten start as NaN; accumulated outputs start at random
// values that are subtracted again. The largest error per quantity is
// printed at the end, so a run shows its margin.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/causal_conv1d.h"
#include "kernels/cpu/layer_norm.h"
#include "kernels/cpu/selective_scan.h"
#include "kernels/cuda/causal_conv1d.cuh"
#include "kernels/cuda/harmamba_fused.cuh"
#include "kernels/cuda/layer_norm.cuh"
#include "kernels/cuda/selective_scan.cuh"

namespace harmamba::kernels {
namespace {

constexpr double kTolerance = 1e-5;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// ---- Error bookkeeping ------------------------------------------------------

std::map<std::string, double>& MaxErrors() {
  static auto* errors = new std::map<std::string, double>;
  return *errors;
}

class ErrorReport : public ::testing::Environment {
 public:
  void TearDown() override {
    if (MaxErrors().empty()) return;
    std::printf("\nLargest norm-wise relative error per quantity (limit %g):\n",
                kTolerance);
    for (const auto& [name, err] : MaxErrors()) {
      std::printf("  %-28s %.3e\n", name.c_str(), err);
    }
  }
};
::testing::Environment* const kErrorReport =
    ::testing::AddGlobalTestEnvironment(new ErrorReport);

double RelativeError(const std::vector<double>& got,
                     const std::vector<double>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double diff = got[i] - want[i];
    num += diff * diff;  // NaN propagates and fails the comparison
    den += want[i] * want[i];
  }
  if (den == 0) return std::sqrt(num);
  return std::sqrt(num / den);
}

void ExpectClose(const std::string& quantity, const std::vector<double>& got,
                 const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size()) << quantity;
  const double err = RelativeError(got, want);
  double& worst = MaxErrors()[quantity];
  if (!std::isnan(worst) && (std::isnan(err) || err > worst)) worst = err;
  EXPECT_LE(err, kTolerance) << quantity;
}

// ---- Host data --------------------------------------------------------------

std::vector<float> Random(std::mt19937& rng, size_t n, float mean = 0.f,
                          float stddev = 1.f) {
  std::normal_distribution<float> dist(mean, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

std::vector<double> ToDouble(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// A [batch][rows][width] tensor inside a larger buffer: each row padded by
// `pad` floats and each batch element by 2 * pad more.
struct Layout {
  int64_t batch = 0, rows = 0, width = 0;
  int64_t seq_stride = 0, batch_stride = 0;
  size_t size() const { return static_cast<size_t>(batch * batch_stride); }
  int64_t offset(int64_t b, int64_t r) const {
    return b * batch_stride + r * seq_stride;
  }
};

Layout MakeLayout(int64_t batch, int64_t rows, int64_t width, int64_t pad) {
  Layout l;
  l.batch = batch;
  l.rows = rows;
  l.width = width;
  l.seq_stride = width + pad;
  l.batch_stride = rows * l.seq_stride + 2 * pad;
  if (l.batch_stride == 0) l.batch_stride = 1;
  return l;
}

std::vector<float> Scatter(const std::vector<float>& dense, const Layout& l,
                           float fill = kNaN) {
  std::vector<float> out(l.size(), fill);
  for (int64_t b = 0; b < l.batch; ++b) {
    for (int64_t r = 0; r < l.rows; ++r) {
      for (int64_t j = 0; j < l.width; ++j) {
        out[l.offset(b, r) + j] = dense[(b * l.rows + r) * l.width + j];
      }
    }
  }
  return out;
}

std::vector<double> Gather(const std::vector<float>& strided, const Layout& l) {
  std::vector<double> out(l.batch * l.rows * l.width);
  for (int64_t b = 0; b < l.batch; ++b) {
    for (int64_t r = 0; r < l.rows; ++r) {
      for (int64_t j = 0; j < l.width; ++j) {
        out[(b * l.rows + r) * l.width + j] = strided[l.offset(b, r) + j];
      }
    }
  }
  return out;
}

// True when every float outside the tensor's rows is still NaN.
bool PaddingUntouched(const std::vector<float>& strided, const Layout& l) {
  std::vector<bool> inside(strided.size(), false);
  for (int64_t b = 0; b < l.batch; ++b) {
    for (int64_t r = 0; r < l.rows; ++r) {
      for (int64_t j = 0; j < l.width; ++j) inside[l.offset(b, r) + j] = true;
    }
  }
  for (size_t i = 0; i < strided.size(); ++i) {
    if (!inside[i] && !std::isnan(strided[i])) return false;
  }
  return true;
}

// ---- Device memory ----------------------------------------------------------

// Owns one cudaMalloc'd float array. Failures are recorded as test failures
// (the test then fails at its first comparison).
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(const std::vector<float>& host) : size_(host.size()) {
    const size_t bytes = std::max<size_t>(1, size_) * sizeof(float);
    if (cudaMalloc(reinterpret_cast<void**>(&ptr_), bytes) != cudaSuccess) {
      ADD_FAILURE() << "cudaMalloc of " << bytes << " bytes failed";
      ptr_ = nullptr;
      return;
    }
    if (size_ > 0 && cudaMemcpy(ptr_, host.data(), size_ * sizeof(float),
                                cudaMemcpyHostToDevice) != cudaSuccess) {
      ADD_FAILURE() << "cudaMemcpy to the device failed";
    }
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  DeviceArray(DeviceArray&& o) noexcept { *this = std::move(o); }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(size_, o.size_);
    return *this;
  }
  ~DeviceArray() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }

  float* get() const { return ptr_; }

  std::vector<float> Download() const {
    std::vector<float> host(size_, kNaN);
    if (ptr_ != nullptr && size_ > 0 &&
        cudaMemcpy(host.data(), ptr_, size_ * sizeof(float),
                   cudaMemcpyDeviceToHost) != cudaSuccess) {
      ADD_FAILURE() << "cudaMemcpy to the host failed";
    }
    return host;
  }

 private:
  float* ptr_ = nullptr;
  size_t size_ = 0;
};

// Scratch memory, filled with NaN bytes so that a kernel relying on zeroed
// scratch fails.
class DeviceScratch {
 public:
  explicit DeviceScratch(size_t bytes) : bytes_(bytes) {
    if (cudaMalloc(&ptr_, std::max<size_t>(bytes, 1)) != cudaSuccess) {
      ADD_FAILURE() << "cudaMalloc of " << bytes << " scratch bytes failed";
      ptr_ = nullptr;
      return;
    }
    cudaMemset(ptr_, 0xff, std::max<size_t>(bytes, 1));
  }
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;
  ~DeviceScratch() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

::testing::AssertionResult Synchronized() {
  const cudaError_t err = cudaDeviceSynchronize();
  if (err == cudaSuccess) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "kernel failed: " << cudaGetErrorString(err);
}

// Every test needs a device; without one it is skipped (and passes).
class CudaTest {
 public:
  static bool HaveDevice(std::string* why) {
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
      *why = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(err);
      cudaGetLastError();
      return false;
    }
    if (count == 0) {
      *why = "cudaGetDeviceCount reports 0 devices";
      return false;
    }
    return true;
  }
};

#define SKIP_WITHOUT_CUDA_DEVICE()                                          \
  do {                                                                      \
    std::string why;                                                        \
    if (!CudaTest::HaveDevice(&why)) {                                      \
      GTEST_SKIP() << "no CUDA device (" << why                             \
                   << "): the CUDA kernels were compiled but not run here"; \
    }                                                                       \
  } while (0)

// ---- Selective scan inputs
// ----------------------------------------------------

struct ScanCase {
  int64_t batch, seqlen, dim, dstate;
  bool reverse;
  int split;  // threads per channel, 0 = automatic
  // 0: softplus, D, z, bias, low-rank delta; 1: the same with a dense
  // delta; 2: nothing optional, dense delta, no softplus; 3: softplus,
  // bias and D, no gate, dense delta.
  int variant;
  bool padded;

  bool softplus() const { return variant != 2; }
  bool with_d() const { return variant != 2; }
  bool with_z() const { return variant < 2; }
  bool with_bias() const { return variant != 2; }
  bool low_rank() const { return variant == 0; }
  std::string Name() const {
    return "b" + std::to_string(batch) + "_L" + std::to_string(seqlen) + "_E" +
           std::to_string(dim) + "_N" + std::to_string(dstate) +
           (reverse ? "_rev" : "_fwd") + "_s" + std::to_string(split) + "_v" +
           std::to_string(variant) + (padded ? "_pad" : "");
  }
};

constexpr int64_t kRank = 4;

// Inputs at the magnitudes HARMamba sees (as the CPU kernel test):
// A = -(n + 1) jittered, delta before softplus around 0 with bias ~ -3.
struct ScanInputs {
  std::vector<float> u, delta, z, B, C, D, bias, dt_low, dt_w, A, dout;
  std::vector<double> delta_dense;  // what the oracle sees

  ScanInputs(const ScanCase& c, uint32_t seed) {
    std::mt19937 rng(seed);
    const int64_t bl = c.batch * c.seqlen, E = c.dim, N = c.dstate;
    u = Random(rng, bl * E);
    B = Random(rng, bl * N);
    C = Random(rng, bl * N);
    z = Random(rng, bl * E);
    D = Random(rng, E);
    bias = Random(rng, E, -3.f, 1.f);
    dt_low = Random(rng, bl * kRank, 0.f, 0.5f);
    dt_w = Random(rng, E * kRank, 0.f, 0.5f);
    delta = Random(rng, bl * E, c.softplus() ? 0.f : 0.1f,
                   c.softplus() ? 1.f : 0.02f);
    if (!c.softplus()) {
      for (float& x : delta) x = std::fabs(x);
    }
    dout = Random(rng, bl * E);
    A.resize(E * N);
    std::uniform_real_distribution<float> jitter(0.8f, 1.2f);
    for (int64_t d = 0; d < E; ++d) {
      for (int64_t n = 0; n < N; ++n) A[d * N + n] = -(n + 1) * jitter(rng);
    }
    delta_dense = ToDouble(delta);
    if (c.low_rank()) {
      for (int64_t i = 0; i < bl; ++i) {
        for (int64_t d = 0; d < E; ++d) {
          double s = 0;
          for (int64_t r = 0; r < kRank; ++r) {
            s += double(dt_low[i * kRank + r]) * dt_w[d * kRank + r];
          }
          delta_dense[i * E + d] = s;
        }
      }
    }
  }
};

// The scan's inputs on the device, in (optionally padded) strided layouts,
// and the params pointing at them.
struct DeviceScan {
  Layout act, state, low;
  DeviceArray u, delta, z, B, C, D, bias, dt_low, dt_w, A, out;
  SelectiveScanParams p;

  DeviceScan(const ScanCase& c, const ScanInputs& in) {
    const int64_t pad = c.padded ? 3 : 0;
    act = MakeLayout(c.batch, c.seqlen, c.dim, pad);
    state = MakeLayout(c.batch, c.seqlen, c.dstate, pad);
    low = MakeLayout(c.batch, c.seqlen, kRank, pad);
    u = DeviceArray(Scatter(in.u, act));
    z = DeviceArray(Scatter(in.z, act));
    delta = DeviceArray(Scatter(in.delta, act));
    B = DeviceArray(Scatter(in.B, state));
    C = DeviceArray(Scatter(in.C, state));
    dt_low = DeviceArray(Scatter(in.dt_low, low));
    D = DeviceArray(in.D);
    bias = DeviceArray(in.bias);
    dt_w = DeviceArray(in.dt_w);
    A = DeviceArray(in.A);
    out = DeviceArray(std::vector<float>(act.size(), kNaN));

    p.batch = c.batch;
    p.seqlen = c.seqlen;
    p.dim = c.dim;
    p.dstate = c.dstate;
    p.reverse = c.reverse;
    p.delta_softplus = c.softplus();
    p.u = u.get();
    p.u_batch_stride = act.batch_stride;
    p.u_seq_stride = act.seq_stride;
    if (c.low_rank()) {
      p.dt_low = dt_low.get();
      p.dt_low_batch_stride = low.batch_stride;
      p.dt_low_seq_stride = low.seq_stride;
      p.dt_rank = kRank;
      p.dt_weight = dt_w.get();
    } else {
      p.delta = delta.get();
      p.delta_batch_stride = act.batch_stride;
      p.delta_seq_stride = act.seq_stride;
    }
    p.delta_bias = c.with_bias() ? bias.get() : nullptr;
    p.A = A.get();
    p.A_dim_stride = c.dstate;
    p.A_state_stride = 1;
    p.B = B.get();
    p.B_batch_stride = state.batch_stride;
    p.B_seq_stride = state.seq_stride;
    p.C = C.get();
    p.C_batch_stride = state.batch_stride;
    p.C_seq_stride = state.seq_stride;
    p.D = c.with_d() ? D.get() : nullptr;
    if (c.with_z()) {
      p.z = z.get();
      p.z_batch_stride = act.batch_stride;
      p.z_seq_stride = act.seq_stride;
    }
    p.out = out.get();
    p.out_batch_stride = act.batch_stride;
    p.out_seq_stride = act.seq_stride;
  }
};

std::vector<double> ScanOracle(const ScanCase& c, const ScanInputs& in) {
  std::vector<double> out(c.batch * c.seqlen * c.dim);
  const auto u = ToDouble(in.u), z = ToDouble(in.z), B = ToDouble(in.B),
             C = ToDouble(in.C), D = ToDouble(in.D), bias = ToDouble(in.bias),
             A = ToDouble(in.A);
  SelectiveScanReference(c.batch, c.seqlen, c.dim, c.dstate, c.reverse,
                         c.softplus(), u.data(), in.delta_dense.data(),
                         c.with_bias() ? bias.data() : nullptr, A.data(),
                         B.data(), C.data(), c.with_d() ? D.data() : nullptr,
                         c.with_z() ? z.data() : nullptr, out.data());
  return out;
}

uint32_t SeedOf(const ScanCase& c) {
  return static_cast<uint32_t>(1234 + c.seqlen * 7 + c.dim * 13 + c.dstate +
                               c.batch * 101 + c.variant * 1009 +
                               c.reverse * 7919);
}

// ---- Selective scan forward -------------------------------------------------

class ScanForwardTest : public ::testing::TestWithParam<ScanCase> {};

void CheckScanForward(const ScanCase& c) {
  const ScanInputs in(c, SeedOf(c));
  DeviceScan dev(c, in);
  const absl::Status s = cuda::SelectiveScanForward(dev.p, nullptr, c.split);
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE(Synchronized());
  const std::vector<float> out = dev.out.Download();
  ExpectClose("scan fwd out", Gather(out, dev.act), ScanOracle(c, in));
  EXPECT_TRUE(PaddingUntouched(out, dev.act)) << "wrote outside out's rows";
}

TEST_P(ScanForwardTest, MatchesFloat64Reference) {
  SKIP_WITHOUT_CUDA_DEVICE();
  CheckScanForward(GetParam());
}

std::vector<ScanCase> ScanForwardCases() {
  const std::vector<std::vector<int64_t>> shapes = {
      {3, 1, 5, 16},   {3, 7, 37, 16},    {2, 73, 128, 16}, {3, 33, 130, 5},
      {2, 40, 64, 33}, {1, 289, 128, 16}, {2, 65, 129, 64}};
  std::vector<ScanCase> cases;
  for (const auto& s : shapes) {
    for (bool reverse : {false, true}) {
      for (int split : {0, 1, 2, 4, 8}) {
        for (int variant : {0, 1, 2, 3}) {
          cases.push_back({s[0], s[1], s[2], s[3], reverse, split, variant,
                           (split + variant) % 2 == 1});
        }
      }
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Cases, ScanForwardTest,
                         ::testing::ValuesIn(ScanForwardCases()),
                         [](const auto& info) { return info.param.Name(); });

// Large batches take the one-thread-per-channel path with many CTAs; batch
// 1 the widest split. The model's shapes (UCI-HAR: 73 tokens, d_inner 128).
TEST(ScanForwardModelShapes, LargeAndSingleBatch) {
  SKIP_WITHOUT_CUDA_DEVICE();
  for (int64_t batch : {int64_t{1}, int64_t{700}}) {
    for (bool reverse : {false, true}) {
      SCOPED_TRACE("batch " + std::to_string(batch) +
                   (reverse ? " reverse" : " forward"));
      CheckScanForward({batch, 73, 128, 16, reverse, 0, 0, false});
    }
  }
}

// The engine's layout: u and z interleaved in one in_proj output row (x|z),
// dt_low, B and C side by side in one x_proj output row.
TEST(ScanForwardModelShapes, EngineInterleavedLayout) {
  SKIP_WITHOUT_CUDA_DEVICE();
  const ScanCase c{5, 73, 128, 16, true, 0, 0, false};
  const ScanInputs in(c, 4242);
  const int64_t L = c.seqlen, E = c.dim, N = c.dstate, bl = c.batch * L;
  const int64_t xdbl = kRank + 2 * N;
  std::vector<float> xz(bl * 2 * E), row(bl * xdbl);
  for (int64_t i = 0; i < bl; ++i) {
    for (int64_t d = 0; d < E; ++d) {
      xz[i * 2 * E + d] = in.u[i * E + d];
      xz[i * 2 * E + E + d] = in.z[i * E + d];
    }
    for (int64_t r = 0; r < kRank; ++r) {
      row[i * xdbl + r] = in.dt_low[i * kRank + r];
    }
    for (int64_t n = 0; n < N; ++n) {
      row[i * xdbl + kRank + n] = in.B[i * N + n];
      row[i * xdbl + kRank + N + n] = in.C[i * N + n];
    }
  }
  DeviceArray d_xz(xz), d_row(row), d_D(in.D), d_bias(in.bias), d_w(in.dt_w),
      d_A(in.A), d_out(std::vector<float>(bl * E, kNaN));
  SelectiveScanParams p;
  p.batch = c.batch;
  p.seqlen = L;
  p.dim = E;
  p.dstate = N;
  p.reverse = c.reverse;
  p.u = d_xz.get();
  p.u_batch_stride = L * 2 * E;
  p.u_seq_stride = 2 * E;
  p.z = d_xz.get() + E;
  p.z_batch_stride = L * 2 * E;
  p.z_seq_stride = 2 * E;
  p.dt_low = d_row.get();
  p.dt_low_batch_stride = L * xdbl;
  p.dt_low_seq_stride = xdbl;
  p.dt_rank = kRank;
  p.dt_weight = d_w.get();
  p.B = d_row.get() + kRank;
  p.C = d_row.get() + kRank + N;
  p.B_batch_stride = p.C_batch_stride = L * xdbl;
  p.B_seq_stride = p.C_seq_stride = xdbl;
  p.delta_bias = d_bias.get();
  p.A = d_A.get();
  p.A_dim_stride = N;
  p.D = d_D.get();
  p.out = d_out.get();
  p.out_batch_stride = L * E;
  p.out_seq_stride = E;
  for (int split : {0, 1, 8}) {
    const absl::Status s = cuda::SelectiveScanForward(p, nullptr, split);
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_TRUE(Synchronized());
    const auto out = ToDouble(d_out.Download());
    ExpectClose("scan fwd out (engine layout)", out, ScanOracle(c, in));
  }
}

// Every split computes the same sums in a different order; a kernel that
// ignored `split` would still pass the oracle test, so check the launcher
// refuses nonsense instead.
TEST(ScanForwardModelShapes, RejectsBadSplit) {
  SKIP_WITHOUT_CUDA_DEVICE();
  const ScanCase c{1, 3, 4, 16, false, 0, 1, false};
  const ScanInputs in(c, 5);
  DeviceScan dev(c, in);
  EXPECT_EQ(cuda::SelectiveScanForward(dev.p, nullptr, 3).code(),
            absl::StatusCode::kInvalidArgument);
}

// ---- Selective scan backward ------------------------------------------------

class ScanBackwardTest : public ::testing::TestWithParam<ScanCase> {};

void CheckScanBackward(const ScanCase& c) {
  const ScanInputs in(c, SeedOf(c) + 17);
  DeviceScan dev(c, in);
  const int64_t E = c.dim, N = c.dstate;
  const int64_t pad = c.padded ? 5 : 0;
  const Layout act = MakeLayout(c.batch, c.seqlen, E, pad);
  const Layout state = MakeLayout(c.batch, c.seqlen, N, pad);

  // Accumulated outputs start at random values (subtracted afterwards).
  std::mt19937 rng(SeedOf(c) + 3);
  const std::vector<float> dA0 = Random(rng, E * N, 0.f, 0.1f),
                           dD0 = Random(rng, E, 0.f, 0.1f),
                           dbias0 = Random(rng, E, 0.f, 0.1f);
  DeviceArray dout(Scatter(in.dout, act));
  DeviceArray du(std::vector<float>(act.size(), kNaN)),
      ddelta(std::vector<float>(act.size(), kNaN)),
      dz(std::vector<float>(act.size(), kNaN)),
      dB(std::vector<float>(state.size(), kNaN)),
      dC(std::vector<float>(state.size(), kNaN)), dA(dA0), dD(dD0),
      dbias(dbias0);
  cuda::SelectiveScanGrads g;
  g.dout = dout.get();
  g.dout_batch_stride = act.batch_stride;
  g.dout_seq_stride = act.seq_stride;
  g.du = du.get();
  g.ddelta = ddelta.get();
  g.du_batch_stride = g.ddelta_batch_stride = g.dz_batch_stride =
      act.batch_stride;
  g.du_seq_stride = g.ddelta_seq_stride = g.dz_seq_stride = act.seq_stride;
  g.dz = c.with_z() ? dz.get() : nullptr;
  g.dB = dB.get();
  g.dC = dC.get();
  g.dB_batch_stride = g.dC_batch_stride = state.batch_stride;
  g.dB_seq_stride = g.dC_seq_stride = state.seq_stride;
  g.dA = dA.get();
  g.dD = c.with_d() ? dD.get() : nullptr;
  g.ddelta_bias = c.with_bias() ? dbias.get() : nullptr;

  DeviceScratch scratch(cuda::SelectiveScanBackwardWorkspaceBytes(dev.p));
  const absl::Status s = cuda::SelectiveScanBackward(dev.p, g, scratch.get(),
                                                     scratch.bytes(), nullptr);
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE(Synchronized());

  // The oracle.
  const int64_t n_el = c.batch * c.seqlen * E, n_st = c.batch * c.seqlen * N;
  std::vector<double> r_du(n_el), r_ddelta(n_el), r_dz(n_el), r_dB(n_st),
      r_dC(n_st), r_dA(E * N), r_dD(E), r_dbias(E);
  {
    const auto u = ToDouble(in.u), z = ToDouble(in.z), B = ToDouble(in.B),
               C = ToDouble(in.C), D = ToDouble(in.D), bias = ToDouble(in.bias),
               A = ToDouble(in.A), dout_d = ToDouble(in.dout);
    SelectiveScanBackwardReference(
        c.batch, c.seqlen, E, N, c.reverse, c.softplus(), u.data(),
        in.delta_dense.data(), c.with_bias() ? bias.data() : nullptr, A.data(),
        B.data(), C.data(), c.with_d() ? D.data() : nullptr,
        c.with_z() ? z.data() : nullptr, dout_d.data(), r_du.data(),
        r_ddelta.data(), r_dbias.data(), r_dA.data(), r_dB.data(), r_dC.data(),
        r_dD.data(), c.with_z() ? r_dz.data() : nullptr);
  }
  auto minus = [](const std::vector<float>& after,
                  const std::vector<float>& before) {
    std::vector<double> d(after.size());
    for (size_t i = 0; i < d.size(); ++i) d[i] = double(after[i]) - before[i];
    return d;
  };
  const auto h_du = du.Download(), h_ddelta = ddelta.Download(),
             h_dB = dB.Download(), h_dC = dC.Download();
  ExpectClose("scan bwd du", Gather(h_du, act), r_du);
  ExpectClose("scan bwd ddelta", Gather(h_ddelta, act), r_ddelta);
  ExpectClose("scan bwd dB", Gather(h_dB, state), r_dB);
  ExpectClose("scan bwd dC", Gather(h_dC, state), r_dC);
  ExpectClose("scan bwd dA", minus(dA.Download(), dA0), r_dA);
  EXPECT_TRUE(PaddingUntouched(h_du, act)) << "du";
  EXPECT_TRUE(PaddingUntouched(h_ddelta, act)) << "ddelta";
  EXPECT_TRUE(PaddingUntouched(h_dB, state)) << "dB";
  EXPECT_TRUE(PaddingUntouched(h_dC, state)) << "dC";
  if (c.with_z()) {
    const auto h_dz = dz.Download();
    ExpectClose("scan bwd dz", Gather(h_dz, act), r_dz);
    EXPECT_TRUE(PaddingUntouched(h_dz, act)) << "dz";
  }
  if (c.with_d()) ExpectClose("scan bwd dD", minus(dD.Download(), dD0), r_dD);
  if (c.with_bias()) {
    ExpectClose("scan bwd ddelta_bias", minus(dbias.Download(), dbias0),
                r_dbias);
  }
}

TEST_P(ScanBackwardTest, MatchesFloat64Reference) {
  SKIP_WITHOUT_CUDA_DEVICE();
  CheckScanBackward(GetParam());
}

std::vector<ScanCase> ScanBackwardCases() {
  // dim > 128 spans several CTAs per batch element (partial dB/dC sums).
  const std::vector<std::vector<int64_t>> shapes = {
      {2, 1, 3, 16},   {3, 7, 37, 16},  {2, 73, 128, 16}, {3, 20, 200, 16},
      {2, 33, 130, 5}, {2, 17, 40, 33}, {1, 19, 259, 64}, {9, 16, 64, 16}};
  std::vector<ScanCase> cases;
  for (const auto& s : shapes) {
    for (bool reverse : {false, true}) {
      for (int variant : {0, 1, 2, 3}) {
        cases.push_back({s[0], s[1], s[2], s[3], reverse, 0, variant,
                         (variant + reverse) % 2 == 0});
      }
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Cases, ScanBackwardTest,
                         ::testing::ValuesIn(ScanBackwardCases()),
                         [](const auto& info) { return info.param.Name(); });

TEST(ScanBackwardModelShapes, TrainingBatch) {
  SKIP_WITHOUT_CUDA_DEVICE();
  for (bool reverse : {false, true}) {
    SCOPED_TRACE(reverse ? "reverse" : "forward");
    CheckScanBackward({64, 73, 128, 16, reverse, 0, 0, false});
  }
}

TEST(ScanBackwardModelShapes, RefusesSmallWorkspace) {
  SKIP_WITHOUT_CUDA_DEVICE();
  const ScanCase c{2, 5, 8, 16, false, 0, 1, false};
  const ScanInputs in(c, 9);
  DeviceScan dev(c, in);
  cuda::SelectiveScanGrads g;
  g.dout = g.du = g.ddelta = g.dB = g.dC = g.dA = g.dz = dev.out.get();
  const size_t need = cuda::SelectiveScanBackwardWorkspaceBytes(dev.p);
  DeviceScratch scratch(need);
  EXPECT_EQ(
      cuda::SelectiveScanBackward(dev.p, g, scratch.get(), need - 4, nullptr)
          .code(),
      absl::StatusCode::kInvalidArgument);
}

// ---- Causal conv1d ----------------------------------------------------------

struct ConvCase {
  int64_t batch, seqlen, dim, width;
  bool reverse;
  bool silu_and_bias;
  bool padded;
  std::string Name() const {
    return "b" + std::to_string(batch) + "_L" + std::to_string(seqlen) + "_E" +
           std::to_string(dim) + "_W" + std::to_string(width) +
           (reverse ? "_rev" : "_fwd") + (silu_and_bias ? "_silu" : "_plain") +
           (padded ? "_pad" : "");
  }
};

struct ConvSetup {
  Layout act;
  std::vector<float> x, w, bias, dout;
  DeviceArray d_x, d_w, d_bias, d_out;
  CausalConv1dParams p;

  explicit ConvSetup(const ConvCase& c) {
    std::mt19937 rng(static_cast<uint32_t>(31 + c.seqlen * 7 + c.dim * 13 +
                                           c.width * 3 + c.batch + c.reverse));
    act = MakeLayout(c.batch, c.seqlen, c.dim, c.padded ? 3 : 0);
    x = Random(rng, c.batch * c.seqlen * c.dim);
    w = Random(rng, c.dim * c.width, 0.f, 0.5f);
    bias = Random(rng, c.dim);
    dout = Random(rng, c.batch * c.seqlen * c.dim);
    d_x = DeviceArray(Scatter(x, act));
    d_w = DeviceArray(w);
    d_bias = DeviceArray(bias);
    d_out = DeviceArray(std::vector<float>(act.size(), kNaN));
    p.batch = c.batch;
    p.seqlen = c.seqlen;
    p.dim = c.dim;
    p.width = c.width;
    p.reverse = c.reverse;
    p.silu = c.silu_and_bias;
    p.x = d_x.get();
    p.x_batch_stride = act.batch_stride;
    p.x_seq_stride = act.seq_stride;
    p.weight = d_w.get();
    p.bias = c.silu_and_bias ? d_bias.get() : nullptr;
    p.out = d_out.get();
    p.out_batch_stride = act.batch_stride;
    p.out_seq_stride = act.seq_stride;
  }
};

std::vector<ConvCase> ConvCases() {
  const std::vector<std::vector<int64_t>> shapes = {{3, 1, 5},    {2, 3, 37},
                                                    {3, 33, 128}, {2, 73, 130},
                                                    {9, 20, 40},  {1, 130, 64}};
  std::vector<ConvCase> cases;
  for (const auto& s : shapes) {
    for (int64_t width : {1, 2, 4, 5, 8}) {
      for (bool reverse : {false, true}) {
        for (bool silu : {true, false}) {
          cases.push_back({s[0], s[1], s[2], width, reverse, silu,
                           (width + silu) % 2 == 1});
        }
      }
    }
  }
  return cases;
}

class ConvForwardTest : public ::testing::TestWithParam<ConvCase> {};

TEST_P(ConvForwardTest, MatchesFloat64Reference) {
  SKIP_WITHOUT_CUDA_DEVICE();
  const ConvCase c = GetParam();
  ConvSetup setup(c);
  const absl::Status s = cuda::CausalConv1dForward(setup.p, nullptr);
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE(Synchronized());
  std::vector<double> ref(c.batch * c.seqlen * c.dim);
  const auto x = ToDouble(setup.x), w = ToDouble(setup.w),
             bias = ToDouble(setup.bias);
  CausalConv1dReference(c.batch, c.seqlen, c.dim, c.width, c.reverse,
                        c.silu_and_bias, x.data(), w.data(),
                        c.silu_and_bias ? bias.data() : nullptr, ref.data());
  const auto out = setup.d_out.Download();
  ExpectClose("conv fwd out", Gather(out, setup.act), ref);
  EXPECT_TRUE(PaddingUntouched(out, setup.act));
}

INSTANTIATE_TEST_SUITE_P(Cases, ConvForwardTest,
                         ::testing::ValuesIn(ConvCases()),
                         [](const auto& info) { return info.param.Name(); });

class ConvBackwardTest : public ::testing::TestWithParam<ConvCase> {};

TEST_P(ConvBackwardTest, MatchesFloat64Reference) {
  SKIP_WITHOUT_CUDA_DEVICE();
  const ConvCase c = GetParam();
  ConvSetup setup(c);
  std::mt19937 rng(static_cast<uint32_t>(c.dim + 5));
  const auto dw0 = Random(rng, c.dim * c.width, 0.f, 0.1f),
             db0 = Random(rng, c.dim, 0.f, 0.1f);
  DeviceArray d_dout(Scatter(setup.dout, setup.act)),
      d_dx(std::vector<float>(setup.act.size(), kNaN)), d_dw(dw0), d_db(db0);
  cuda::CausalConv1dGrads g;
  g.dout = d_dout.get();
  g.dout_batch_stride = setup.act.batch_stride;
  g.dout_seq_stride = setup.act.seq_stride;
  g.dx = d_dx.get();
  g.dx_batch_stride = setup.act.batch_stride;
  g.dx_seq_stride = setup.act.seq_stride;
  g.dweight = d_dw.get();
  g.dbias = c.silu_and_bias ? d_db.get() : nullptr;
  DeviceScratch scratch(cuda::CausalConv1dBackwardWorkspaceBytes(setup.p));
  const absl::Status s = cuda::CausalConv1dBackward(setup.p, g, scratch.get(),
                                                    scratch.bytes(), nullptr);
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE(Synchronized());

  const int64_t n = c.batch * c.seqlen * c.dim;
  std::vector<double> r_dx(n), r_dw(c.dim * c.width), r_db(c.dim);
  const auto x = ToDouble(setup.x), w = ToDouble(setup.w),
             bias = ToDouble(setup.bias), dout = ToDouble(setup.dout);
  CausalConv1dBackwardReference(
      c.batch, c.seqlen, c.dim, c.width, c.reverse, c.silu_and_bias, x.data(),
      w.data(), c.silu_and_bias ? bias.data() : nullptr, dout.data(),
      r_dx.data(), r_dw.data(), r_db.data());
  const auto dx = d_dx.Download();
  ExpectClose("conv bwd dx", Gather(dx, setup.act), r_dx);
  EXPECT_TRUE(PaddingUntouched(dx, setup.act));
  const auto dw = d_dw.Download();
  std::vector<double> dw_delta(dw.size());
  for (size_t i = 0; i < dw.size(); ++i) dw_delta[i] = double(dw[i]) - dw0[i];
  ExpectClose("conv bwd dweight", dw_delta, r_dw);
  if (c.silu_and_bias) {
    const auto db = d_db.Download();
    std::vector<double> db_delta(db.size());
    for (size_t i = 0; i < db.size(); ++i) db_delta[i] = double(db[i]) - db0[i];
    ExpectClose("conv bwd dbias", db_delta, r_db);
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, ConvBackwardTest,
                         ::testing::ValuesIn(ConvCases()),
                         [](const auto& info) { return info.param.Name(); });

// ---- Add + LayerNorm --------------------------------------------------------

struct NormCase {
  int64_t rows, dim;
  // 0: residual, sum_out, gamma, beta, mean/rstd; 1: plain; 2: in place
  // (out == x, sum_out == residual) with gamma and beta.
  int variant;
  std::string Name() const {
    return "r" + std::to_string(rows) + "_D" + std::to_string(dim) + "_v" +
           std::to_string(variant);
  }
};

class LayerNormTest : public ::testing::TestWithParam<NormCase> {};

TEST_P(LayerNormTest, MatchesFloat64Reference) {
  SKIP_WITHOUT_CUDA_DEVICE();
  const NormCase c = GetParam();
  std::mt19937 rng(static_cast<uint32_t>(c.rows * 31 + c.dim + c.variant));
  const int64_t stride = c.dim + 5;  // padded rows
  const Layout rows = MakeLayout(1, c.rows, c.dim, 5);
  const auto x = Random(rng, c.rows * c.dim, 0.5f, 2.f);
  const auto res = Random(rng, c.rows * c.dim, -0.2f, 1.f);
  const auto gamma = Random(rng, c.dim, 1.f, 0.3f);
  const auto beta = Random(rng, c.dim, 0.f, 0.3f);
  const bool with_res = c.variant != 1, affine = c.variant != 1;
  DeviceArray d_x(Scatter(x, rows)), d_res(Scatter(res, rows)), d_g(gamma),
      d_b(beta), d_out(std::vector<float>(rows.size(), kNaN)),
      d_sum(std::vector<float>(rows.size(), kNaN)),
      d_mean(std::vector<float>(c.rows, kNaN)),
      d_rstd(std::vector<float>(c.rows, kNaN));
  LayerNormParams p;
  p.rows = c.rows;
  p.dim = c.dim;
  p.x = d_x.get();
  p.x_row_stride = stride;
  if (with_res) {
    p.residual = d_res.get();
    p.residual_row_stride = stride;
  }
  if (affine) {
    p.gamma = d_g.get();
    p.beta = d_b.get();
  }
  const bool in_place = c.variant == 2;
  p.out = in_place ? d_x.get() : d_out.get();
  p.out_row_stride = stride;
  if (c.variant == 0 || in_place) {
    p.sum_out = in_place ? d_res.get() : d_sum.get();
    p.sum_out_row_stride = stride;
  }
  if (c.variant == 0) {
    p.mean_out = d_mean.get();
    p.rstd_out = d_rstd.get();
  }
  const absl::Status s = cuda::LayerNormForward(p, nullptr);
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE(Synchronized());

  const auto xd = ToDouble(x), resd = ToDouble(res), gd = ToDouble(gamma),
             bd = ToDouble(beta);
  std::vector<double> ref(c.rows * c.dim);
  LayerNormReference(
      c.rows, c.dim, 1e-5, xd.data(), with_res ? resd.data() : nullptr,
      affine ? gd.data() : nullptr, affine ? bd.data() : nullptr, ref.data());
  const auto out = (in_place ? d_x : d_out).Download();
  ExpectClose("layer norm out", Gather(out, rows), ref);
  if (p.sum_out != nullptr) {
    std::vector<double> sum_ref(c.rows * c.dim);
    for (size_t i = 0; i < sum_ref.size(); ++i) sum_ref[i] = xd[i] + resd[i];
    const auto sum = (in_place ? d_res : d_sum).Download();
    ExpectClose("layer norm sum_out", Gather(sum, rows), sum_ref);
  }
  if (c.variant == 0) {
    std::vector<double> mean_ref(c.rows), rstd_ref(c.rows);
    for (int64_t r = 0; r < c.rows; ++r) {
      double m = 0, v = 0;
      for (int64_t j = 0; j < c.dim; ++j)
        m += xd[r * c.dim + j] + resd[r * c.dim + j];
      m /= c.dim;
      for (int64_t j = 0; j < c.dim; ++j) {
        const double e = xd[r * c.dim + j] + resd[r * c.dim + j] - m;
        v += e * e;
      }
      mean_ref[r] = m;
      rstd_ref[r] = 1 / std::sqrt(v / c.dim + 1e-5);
    }
    ExpectClose("layer norm mean", ToDouble(d_mean.Download()), mean_ref);
    ExpectClose("layer norm rstd", ToDouble(d_rstd.Download()), rstd_ref);
  }
  if (!in_place) {
    EXPECT_TRUE(PaddingUntouched(out, rows));
  }
}

std::vector<NormCase> NormCases() {
  std::vector<NormCase> cases;
  for (int64_t dim : {1, 7, 32, 64, 100, 128, 200, 256, 257, 1000, 1024}) {
    for (int64_t rows : {1, 5, 37, 1001}) {
      for (int variant : {0, 1, 2}) cases.push_back({rows, dim, variant});
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Cases, LayerNormTest, ::testing::ValuesIn(NormCases()),
                         [](const auto& info) { return info.param.Name(); });

// ---- Fused model kernels (embed, pair, head) --------------------------------

struct FusedCase {
  int64_t window_length, channels, d_model, d_state, dt_rank, d_conv;
  bool cls_only;
  bool workspace = false;  // activations in global scratch
  int threads = 0;         // FusedPairParams::threads
  std::string Name() const {
    return "T" + std::to_string(window_length) + "_C" +
           std::to_string(channels) + "_D" + std::to_string(d_model) + "_N" +
           std::to_string(d_state) + "_R" + std::to_string(dt_rank) + "_K" +
           std::to_string(d_conv) + (cls_only ? "_cls" : "_all") +
           (workspace ? "_ws" : "") +
           (threads != 0 ? "_t" + std::to_string(threads) : "");
  }
  cuda::HarmambaShape Shape() const {
    cuda::HarmambaShape s;
    s.window_length = window_length;
    s.channels = channels;
    s.patch = 16;
    s.stride = 16;
    s.d_model = d_model;
    s.d_inner = 2 * d_model;
    s.d_state = d_state;
    s.dt_rank = dt_rank;
    s.d_conv = d_conv;
    s.classes = 6;
    return s;
  }
};

// Random engine-layout weights of one direction, on the host and device.
struct DirectionHost {
  std::vector<float> in_proj, in_bias, conv_w, conv_b, x_proj, dt_w, dt_b, A, D,
      out_proj;
  DeviceArray d_in_proj, d_in_bias, d_conv_w, d_conv_b, d_x_proj, d_dt_w,
      d_dt_b, d_A, d_D, d_out_proj;

  DirectionHost(const cuda::HarmambaShape& s, std::mt19937& rng) {
    const int64_t D_ = s.d_model, E = s.d_inner, N = s.d_state, R = s.dt_rank,
                  X = s.xdbl_width();
    in_proj = Random(rng, D_ * 2 * E, 0.f, 1.f / std::sqrt(float(D_)));
    in_bias = Random(rng, 2 * E, 0.f, 0.2f);
    conv_w = Random(rng, E * s.d_conv, 0.f, 0.5f);
    conv_b = Random(rng, E, 0.f, 0.2f);
    x_proj = Random(rng, E * X, 0.f, 1.f / std::sqrt(float(E)));
    dt_w = Random(rng, E * R, 0.f, 0.5f);
    dt_b = Random(rng, E, -3.f, 1.f);
    A.resize(E * N);
    std::uniform_real_distribution<float> jitter(0.8f, 1.2f);
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t n = 0; n < N; ++n) A[e * N + n] = -(n + 1) * jitter(rng);
    }
    D = Random(rng, E, 1.f, 0.3f);
    out_proj = Random(rng, E * D_, 0.f, 1.f / std::sqrt(float(E)));
    d_in_proj = DeviceArray(in_proj);
    d_in_bias = DeviceArray(in_bias);
    d_conv_w = DeviceArray(conv_w);
    d_conv_b = DeviceArray(conv_b);
    d_x_proj = DeviceArray(x_proj);
    d_dt_w = DeviceArray(dt_w);
    d_dt_b = DeviceArray(dt_b);
    d_A = DeviceArray(A);
    d_D = DeviceArray(D);
    d_out_proj = DeviceArray(out_proj);
  }

  cuda::FusedDirectionWeights Device() const {
    cuda::FusedDirectionWeights w;
    w.in_proj = d_in_proj.get();
    w.in_proj_bias = d_in_bias.get();
    w.conv_weight = d_conv_w.get();
    w.conv_bias = d_conv_b.get();
    w.x_proj = d_x_proj.get();
    w.dt_weight = d_dt_w.get();
    w.dt_bias = d_dt_b.get();
    w.A = d_A.get();
    w.D = d_D.get();
    w.out_proj = d_out_proj.get();
    return w;
  }
};

// float64 pair from the CPU oracles (LayerNorm statistics, folded in_proj,
// CausalConv1dReference, x_proj, SelectiveScanReference, out_proj): the
// algebra of model/cpu_engine.cc, one window.
std::vector<double> PairOracle(const cuda::HarmambaShape& sh,
                               const DirectionHost* const dirs[2],
                               const std::vector<double>& s, bool cls_only) {
  const int64_t L = sh.tokens(), D_ = sh.d_model, E = sh.d_inner,
                N = sh.d_state, R = sh.dt_rank, X = sh.xdbl_width();
  std::vector<double> xn(L * D_), acc(L * D_);
  LayerNormReference(L, D_, 1e-5, s.data(), nullptr, nullptr, nullptr,
                     xn.data());
  for (int64_t i = 0; i < L * D_; ++i) acc[i] = 2 * s[i];
  for (int dir = 0; dir < 2; ++dir) {
    const DirectionHost& w = *dirs[dir];
    const int64_t Ld = (cls_only && dir == 0) ? 1 : L;
    std::vector<double> x(Ld * E), z(Ld * E);
    for (int64_t t = 0; t < Ld; ++t) {
      for (int64_t j = 0; j < 2 * E; ++j) {
        double a = w.in_bias[j];
        for (int64_t k = 0; k < D_; ++k) {
          a += xn[t * D_ + k] * double(w.in_proj[k * 2 * E + j]);
        }
        (j < E ? x[t * E + j] : z[t * E + j - E]) = a;
      }
    }
    std::vector<double> u(Ld * E);
    const auto conv_w = ToDouble(w.conv_w), conv_b = ToDouble(w.conv_b);
    CausalConv1dReference(1, Ld, E, sh.d_conv, dir == 1, true, x.data(),
                          conv_w.data(), conv_b.data(), u.data());
    std::vector<double> delta(Ld * E), B(Ld * N), C(Ld * N);
    for (int64_t t = 0; t < Ld; ++t) {
      std::vector<double> row(X, 0.0);
      for (int64_t j = 0; j < X; ++j) {
        for (int64_t e = 0; e < E; ++e) {
          row[j] += u[t * E + e] * double(w.x_proj[e * X + j]);
        }
      }
      for (int64_t e = 0; e < E; ++e) {
        double d = 0;
        for (int64_t r = 0; r < R; ++r) d += row[r] * double(w.dt_w[e * R + r]);
        delta[t * E + e] = d;
      }
      for (int64_t n = 0; n < N; ++n) {
        B[t * N + n] = row[R + n];
        C[t * N + n] = row[R + N + n];
      }
    }
    std::vector<double> y(Ld * E);
    const auto dt_b = ToDouble(w.dt_b), A = ToDouble(w.A), Dv = ToDouble(w.D);
    SelectiveScanReference(1, Ld, E, N, dir == 1, true, u.data(), delta.data(),
                           dt_b.data(), A.data(), B.data(), C.data(), Dv.data(),
                           z.data(), y.data());
    const int64_t rows = cls_only ? 1 : L;
    for (int64_t t = 0; t < rows; ++t) {
      for (int64_t c = 0; c < D_; ++c) {
        double a = 0;
        for (int64_t e = 0; e < E; ++e) {
          a += y[t * E + e] * double(w.out_proj[e * D_ + c]);
        }
        acc[t * D_ + c] += a;
      }
    }
  }
  return acc;
}

class FusedPairTest : public ::testing::TestWithParam<FusedCase> {};

TEST_P(FusedPairTest, MatchesFloat64Pair) {
  SKIP_WITHOUT_CUDA_DEVICE();
  const FusedCase c = GetParam();
  const cuda::HarmambaShape sh = c.Shape();
  const int64_t batch = 3, L = sh.tokens(), D_ = sh.d_model;
  std::mt19937 rng(static_cast<uint32_t>(L * 7 + D_ + c.cls_only));
  const DirectionHost fwd(sh, rng), bwd(sh, rng);
  const std::vector<float> s = Random(rng, batch * L * D_, 0.3f, 2.f);
  DeviceArray d_s(s);
  cuda::FusedPairParams p;
  p.shape = sh;
  p.batch = batch;
  p.cls_only = c.cls_only;
  p.threads = c.threads;
  p.s = d_s.get();
  p.dir[0] = fwd.Device();
  p.dir[1] = bwd.Device();
  DeviceScratch scratch(c.workspace ? cuda::FusedPairWorkspaceBytes(sh, batch)
                                    : 0);
  if (c.workspace) p.workspace = static_cast<float*>(scratch.get());
  const absl::Status st = cuda::FusedPairForward(p, nullptr);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_TRUE(Synchronized());
  const std::vector<float> got = d_s.Download();
  const DirectionHost* const dirs[2] = {&fwd, &bwd};
  const int64_t rows = c.cls_only ? 1 : L;
  std::vector<double> got_rows, want_rows;
  for (int64_t b = 0; b < batch; ++b) {
    const std::vector<double> window(s.begin() + b * L * D_,
                                     s.begin() + (b + 1) * L * D_);
    const std::vector<double> want = PairOracle(sh, dirs, window, c.cls_only);
    for (int64_t i = 0; i < rows * D_; ++i) {
      got_rows.push_back(got[b * L * D_ + i]);
      want_rows.push_back(want[i]);
    }
    // Rows the last pair does not need stay as they were.
    for (int64_t i = rows * D_; i < L * D_; ++i) {
      ASSERT_EQ(got[b * L * D_ + i], s[b * L * D_ + i]) << "row " << i / D_;
    }
  }
  ExpectClose("fused pair s", got_rows, want_rows);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, FusedPairTest,
    ::testing::Values(FusedCase{128, 9, 64, 16, 4, 4, false},  // UCI-HAR
                      FusedCase{128, 9, 64, 16, 4, 4, true},
                      FusedCase{200, 3, 64, 16, 4, 4, false},  // WISDM
                      FusedCase{40, 3, 32, 5, 2, 3, false},    // odd sizes
                      FusedCase{40, 3, 32, 5, 2, 3, true},
                      FusedCase{64, 2, 96, 16, 6, 8, false},  // 1 lane
                      FusedCase{128, 9, 64, 16, 4, 4, false, true},
                      FusedCase{40, 3, 32, 5, 2, 3, true, true},
                      // PAMAP2: 289 tokens, only with a workspace.
                      FusedCase{512, 9, 64, 16, 4, 4, false, true},
                      FusedCase{512, 9, 64, 16, 4, 4, true, true},
                      // 256 threads (the default is 512): 2 scan lanes per
                      // channel at d_inner 128, 4 at 64, 1 at 192.
                      FusedCase{128, 9, 64, 16, 4, 4, false, false, 256},
                      FusedCase{128, 9, 64, 16, 4, 4, true, false, 256},
                      FusedCase{40, 3, 32, 5, 2, 3, false, false, 256},
                      FusedCase{64, 2, 96, 16, 6, 8, false, false, 256},
                      FusedCase{128, 9, 64, 16, 4, 4, false, true, 256}),
    [](const auto& info) { return info.param.Name(); });

TEST(FusedModelKernels, EmbedAndHeadMatchFloat64) {
  SKIP_WITHOUT_CUDA_DEVICE();
  const cuda::HarmambaShape sh = FusedCase{128, 9, 64, 16, 4, 4, false}.Shape();
  const int64_t batch = 5, T = sh.window_length, C = sh.channels,
                L = sh.tokens(), D_ = sh.d_model, P = sh.patch, K = sh.classes;
  std::mt19937 rng(99);
  const auto windows = Random(rng, batch * T * C, 0.5f, 2.f);
  const auto mean = Random(rng, C, 0.5f, 0.1f);
  std::vector<float> inv_std(C);
  for (float& v : inv_std)
    v = 0.5f + std::uniform_real_distribution<float>(0, 1)(rng);
  const auto patch_w = Random(rng, D_ * P, 0.f, 0.25f);
  const auto offset = Random(rng, L * D_, 0.f, 0.1f);
  DeviceArray d_windows(windows), d_mean(mean), d_inv(inv_std), d_pw(patch_w),
      d_off(offset), d_s(std::vector<float>(batch * L * D_, kNaN));
  cuda::EmbedParams e;
  e.shape = sh;
  e.batch = batch;
  e.windows = d_windows.get();
  e.mean = d_mean.get();
  e.inv_std = d_inv.get();
  e.patch_weight = d_pw.get();
  e.token_offset = d_off.get();
  e.s = d_s.get();
  absl::Status st = cuda::EmbedForward(e, nullptr);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_TRUE(Synchronized());
  std::vector<double> want(batch * L * D_);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t row = 0; row < L; ++row) {
      for (int64_t j = 0; j < D_; ++j) {
        double v = offset[row * D_ + j];
        if (row > 0) {
          const int64_t patch = (row - 1) / C, ch = (row - 1) % C;
          for (int64_t i = 0; i < P; ++i) {
            const double x = windows[(b * T + patch * sh.stride + i) * C + ch];
            v += double(patch_w[j * P + i]) * (x - mean[ch]) * inv_std[ch];
          }
        }
        want[(b * L + row) * D_ + j] = v;
      }
    }
  }
  const std::vector<float> s = d_s.Download();
  ExpectClose("embed s", ToDouble(s), want);

  const auto gamma = Random(rng, D_, 1.f, 0.2f),
             beta = Random(rng, D_, 0.f, 0.2f);
  const auto head_w = Random(rng, K * D_, 0.f, 0.3f), head_b = Random(rng, K);
  DeviceArray d_g(gamma), d_b(beta), d_hw(head_w), d_hb(head_b),
      d_logits(std::vector<float>(batch * K, kNaN));
  cuda::HeadParams h;
  h.shape = sh;
  h.batch = batch;
  h.s = d_s.get();
  h.norm_weight = d_g.get();
  h.norm_bias = d_b.get();
  h.head_weight = d_hw.get();
  h.head_bias = d_hb.get();
  h.logits = d_logits.get();
  st = cuda::HeadForward(h, nullptr);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_TRUE(Synchronized());
  std::vector<double> want_logits(batch * K);
  for (int64_t b = 0; b < batch; ++b) {
    const std::vector<double> row(s.begin() + b * L * D_,
                                  s.begin() + b * L * D_ + D_);
    std::vector<double> cls(D_);
    const auto g = ToDouble(gamma), bb = ToDouble(beta);
    LayerNormReference(1, D_, 1e-5, row.data(), nullptr, g.data(), bb.data(),
                       cls.data());
    for (int64_t k = 0; k < K; ++k) {
      double a = head_b[k];
      for (int64_t j = 0; j < D_; ++j) a += double(head_w[k * D_ + j]) * cls[j];
      want_logits[b * K + k] = a;
    }
  }
  ExpectClose("head logits", ToDouble(d_logits.Download()), want_logits);
}

TEST(FusedModelKernels, ManyTokensNeedAWorkspace) {
  // PAMAP2 (512 x 9 -> 289 tokens) does not fit one CTA's shared memory.
  cuda::FusedPairParams p;
  p.shape = FusedCase{512, 9, 64, 16, 4, 4, false}.Shape();
  EXPECT_FALSE(cuda::FusedPairFitsSharedMemory(p.shape));
  EXPECT_TRUE(cuda::FusedPairFitsSharedMemory(
      FusedCase{128, 9, 64, 16, 4, 4, false}.Shape()));
  const absl::Status st = cuda::CanRunFusedPair(p);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(st.message()).find("289 tokens"), std::string::npos)
      << st;
}

}  // namespace
}  // namespace harmamba::kernels
