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

// 2^x for x <= 0 (decay factors): results below 2^-126 flush to 2^-126 or
// less, which is zero for all practical purposes. A degree-5 polynomial
// (Chebyshev-node interpolation of 2^f on [-1/2, 1/2], relative error
// 1.0e-7) instead of Exp2's degree 6: this sits in the scan's inner loop,
// 16 times per channel and time step. On AVX-512, round and scale are single
// instructions (vrndscaleps, vscalefps).
inline Vec Exp2NonPositive(Vec x) {
  x = Max(x, Splat(-126.0f));
#if defined(__AVX512F__)
  const __m512 xv = reinterpret_cast<__m512>(x);
  const __m512 r =
      _mm512_roundscale_ps(xv, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const Vec f = reinterpret_cast<Vec>(_mm512_sub_ps(xv, r));
#else
  const Vec kRound = Splat(12582912.0f);
  const Vec shifted = x + kRound;
  const Vec rounded = shifted - kRound;
  const Vec f = x - rounded;
#endif
  Vec p = Splat(1.3390863364533504e-3f);
  p = p * f + 9.676031918326564e-3f;
  p = p * f + 5.550357114219461e-2f;
  p = p * f + 2.4022107485308208e-1f;
  p = p * f + 6.931471880262287e-1f;
  p = p * f + 1.0000000754548972f;
#if defined(__AVX512F__)
  return reinterpret_cast<Vec>(
      _mm512_scalef_ps(reinterpret_cast<__m512>(p), r));
#else
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
