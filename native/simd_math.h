// Vectorised math for the fused activations of torchbert::linear_packed (linear_packed.cc): GELU (erf
// or tanh form) on the GEMM's accumulators, with a scalar twin for the portable loop and the edges.
#pragma once
#include <cmath>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace torchbert {

enum class Act { kNone, kGelu, kGeluTanh };

inline float GeluScalar(float x, Act act) {
  if (act == Act::kGelu) return 0.5f * x * (1.f + std::erf(x * 0.70710678118654752f));
  if (act == Act::kGeluTanh) return 0.5f * x * (1.f + std::tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
  return x;
}

#if defined(__x86_64__)
#define TB_AVX2 __attribute__((target("avx2,fma")))

// exp for x in [-88, 88] (Cephes' expf: 2^n * polynomial of the remainder, ~1 ulp).
TB_AVX2 inline __m256 Exp(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// GELU on 8 lanes. erf by Abramowitz and Stegun 7.1.26 (absolute error under 1.5e-7), as ATen's
// vectorised erf; tanh(y) as 1 - 2 / (exp(2y) + 1).
TB_AVX2 inline __m256 Gelu(__m256 x, Act act) {
  const __m256 half_x = _mm256_mul_ps(x, _mm256_set1_ps(0.5f));
  const __m256 one = _mm256_set1_ps(1.f);
  if (act == Act::kGelu) {
    const __m256 z = _mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f));
    const __m256 sign = _mm256_and_ps(z, _mm256_set1_ps(-0.f));
    const __m256 az = _mm256_andnot_ps(_mm256_set1_ps(-0.f), z);
    const __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), az, one));
    __m256 p = _mm256_set1_ps(1.061405429f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
    p = _mm256_mul_ps(p, t);
    const __m256 e = Exp(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(az, az)));
    const __m256 erf = _mm256_or_ps(_mm256_fnmadd_ps(p, e, one), sign);
    return _mm256_mul_ps(half_x, _mm256_add_ps(one, erf));
  }
  const __m256 inner = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f), _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(0.044715f), x), _mm256_mul_ps(x, x), x));
  const __m256 y2 = _mm256_mul_ps(_mm256_set1_ps(2.f), _mm256_min_ps(_mm256_max_ps(inner, _mm256_set1_ps(-9.f)), _mm256_set1_ps(9.f)));
  const __m256 tanh = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.f), _mm256_add_ps(Exp(y2), one)));
  return _mm256_mul_ps(half_x, _mm256_add_ps(one, tanh));
}
#endif

}  // namespace torchbert
