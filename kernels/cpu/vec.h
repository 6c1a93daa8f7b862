// Portable SIMD helpers for the CPU kernels, on GCC/Clang vector extensions.
//
// A Vec holds kLanes floats (64 bytes: one AVX-512 register; the compiler
// splits it into two AVX2 or four SSE registers on narrower machines).
// Internal to kernels/: no ABI guarantees.
#ifndef HARMAMBA_KERNELS_CPU_VEC_H_
#define HARMAMBA_KERNELS_CPU_VEC_H_

#include <cstdint>
#include <cstring>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace harmamba::kernels::vec {

inline constexpr int kLanes = 16;
typedef float Vec __attribute__((vector_size(64)));
typedef int32_t IVec __attribute__((vector_size(64)));

inline Vec Splat(float x) { return Vec{} + x; }

inline Vec Load(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline void Store(float* p, Vec v) { std::memcpy(p, &v, sizeof(v)); }

// Loads `count` (< kLanes) floats; the other lanes are zero.
inline Vec LoadPartial(const float* p, int count) {
  float tmp[kLanes] = {};
  std::memcpy(tmp, p, sizeof(float) * count);
  return Load(tmp);
}

inline void StorePartial(float* p, Vec v, int count) {
  float tmp[kLanes];
  Store(tmp, v);
  std::memcpy(p, tmp, sizeof(float) * count);
}

#if defined(__AVX512F__)
inline Vec Max(Vec a, Vec b) {
  return reinterpret_cast<Vec>(
      _mm512_max_ps(reinterpret_cast<__m512>(a), reinterpret_cast<__m512>(b)));
}
inline Vec Min(Vec a, Vec b) {
  return reinterpret_cast<Vec>(
      _mm512_min_ps(reinterpret_cast<__m512>(a), reinterpret_cast<__m512>(b)));
}
#else
inline Vec Max(Vec a, Vec b) { return a > b ? a : b; }
inline Vec Min(Vec a, Vec b) { return a < b ? a : b; }
#endif

inline Vec Abs(Vec x) {
  IVec bits;
  std::memcpy(&bits, &x, sizeof(x));
  bits &= 0x7fffffff;
  std::memcpy(&x, &bits, sizeof(x));
  return x;
}

inline float ReduceSum(Vec v) {
  float s = 0.f;
  for (int i = 0; i < kLanes; ++i) s += v[i];
  return s;
}

// 2^x for x in any range; inputs below -125 give 2^-125 (callers only use
// the result as a decay factor, where anything that small is zero for all
// practical purposes), above 127 saturate. Relative error <= 2e-7:
// round-to-nearest splits x = i + f with |f| <= 1/2, 2^f by Cephes' exp2f
// minimax polynomial, 2^i by exponent arithmetic.
inline Vec Exp2(Vec x) {
  x = Min(Max(x, Splat(-125.0f)), Splat(127.0f));
  const Vec kRound = Splat(12582912.0f);  // 1.5 * 2^23: rounds to integer
  const Vec shifted = x + kRound;
  const Vec rounded = shifted - kRound;
  const Vec f = x - rounded;
  Vec p = Splat(1.535336188319500e-4f);
  p = p * f + 1.339887440266574e-3f;
  p = p * f + 9.618437357674640e-3f;
  p = p * f + 5.550332471162809e-2f;
  p = p * f + 2.402264791363012e-1f;
  p = p * f + 6.931472028550421e-1f;
  p = p * f + 1.0f;
  IVec shifted_bits, p_bits;
  std::memcpy(&shifted_bits, &shifted, sizeof(x));
  std::memcpy(&p_bits, &p, sizeof(x));
  // The low mantissa bits of `shifted` hold the integer part (two's
  // complement, offset by 0x400000 from 1.5 * 2^23).
  const IVec exponent = (shifted_bits - 0x4B400000) << 23;
  p_bits += exponent;
  std::memcpy(&p, &p_bits, sizeof(x));
  return p;
}

// 2^x for x <= 0 (decay factors), relative error ~1.0e-7: a degree-5
// polynomial (Chebyshev-node interpolation of 2^f) instead of Exp2's degree
// 6, because this sits in the scan's inner loop, 16 times per channel and
// time step. On AVX-512 the split x = floor(x) + f, f in [0, 1), is one
// vreduceps and the scaling by 2^floor(x) one vscalefps, which also handles
// any negative x (results below 2^-126 become denormal or zero), so no clamp
// is needed. Elsewhere x is clamped at -126 and split by rounding.
inline Vec Exp2NonPositive(Vec x) {
#if defined(__AVX512F__) && defined(__AVX512DQ__)
  const __m512 xv = reinterpret_cast<__m512>(x);
  // imm 0x01: no fraction bits kept, round down: f = x - floor(x).
  const Vec f = reinterpret_cast<Vec>(_mm512_reduce_ps(xv, 0x01));
  Vec p = Splat(1.8937540581920975e-3f);
  p = p * f + 8.94959042337237e-3f;
  p = p * f + 5.586033707720827e-2f;
  p = p * f + 2.4014181820146044e-1f;
  p = p * f + 6.931544896632286e-1f;
  p = p * f + 9.999998983500245e-1f;
  return reinterpret_cast<Vec>(
      _mm512_scalef_ps(reinterpret_cast<__m512>(p), xv));
#else
  x = Max(x, Splat(-126.0f));
  const Vec kRound = Splat(12582912.0f);
  const Vec shifted = x + kRound;
  const Vec rounded = shifted - kRound;
  const Vec f = x - rounded;  // in [-1/2, 1/2]
  Vec p = Splat(1.3390863364533504e-3f);
  p = p * f + 9.676031918326564e-3f;
  p = p * f + 5.550357114219461e-2f;
  p = p * f + 2.4022107485308208e-1f;
  p = p * f + 6.931471880262287e-1f;
  p = p * f + 1.0000000754548972f;
  IVec shifted_bits, p_bits;
  std::memcpy(&shifted_bits, &shifted, sizeof(x));
  std::memcpy(&p_bits, &p, sizeof(x));
  p_bits += (shifted_bits - 0x4B400000) << 23;
  std::memcpy(&p, &p_bits, sizeof(x));
  return p;
#endif
}

inline constexpr float kLog2e = 1.4426950408889634f;

inline Vec Exp(Vec x) { return Exp2(x * kLog2e); }

// log(1 + u) for u in [0, 1]: 2 atanh(s), s = u / (2 + u) <= 1/3, by its
// odd series to s^15 (truncation error < 5e-9 relative). Accurate for tiny
// u, unlike log(1 + u) computed naively.
inline Vec Log1pUnit(Vec u) {
  const Vec s = u / (u + 2.0f);
  const Vec s2 = s * s;
  Vec p = Splat(1.0f / 15);
  p = p * s2 + 1.0f / 13;
  p = p * s2 + 1.0f / 11;
  p = p * s2 + 1.0f / 9;
  p = p * s2 + 1.0f / 7;
  p = p * s2 + 1.0f / 5;
  p = p * s2 + 1.0f / 3;
  p = p * s2 + 1.0f;
  return 2.0f * s * p;
}

// softplus(x) = log(1 + e^x) = max(x, 0) + log1p(e^-|x|).
inline Vec Softplus(Vec x) {
  return Max(x, Splat(0.0f)) + Log1pUnit(Exp(-Abs(x)));
}

// sigmoid(x) = 1 / (1 + e^-x), evaluated without overflow.
inline Vec Sigmoid(Vec x) { return 1.0f / (1.0f + Exp(-x)); }

inline Vec Silu(Vec x) { return x * Sigmoid(x); }

}  // namespace harmamba::kernels::vec

#endif  // HARMAMBA_KERNELS_CPU_VEC_H_
