// A micro-kernel that measures this CPU's arithmetic peak: chains of independent float32 fused
// multiply-adds on registers (no memory traffic), enough chains to hide the FMA latency on every
// port. Compiled once per instruction set like every *_cpu_kernel.cpp: the AVX-512 copy issues
// 16-lane FMAs, the AVX2 copy 8-lane FMAs, the baseline copy 4-lane multiplies and adds. Its rate
// is the compute floor of the benchmarks (benchmarks/common.py): no float32 kernel of this build
// can beat it on this CPU.
#include <immintrin.h>

#include <cstdint>

#include "common/cpu_dispatch.h"
#include "common/macros.h"
#include "common/peak.h"

namespace fastops::cpu {
namespace {

// Independent accumulators: at least latency (4 cycles) x FMA ports (2) of them.
constexpr int kChains = 12;

#if FASTOPS_CPU_ISA == 2
using Vec = __m512;
constexpr int kLanes = 16;
inline Vec splat(float v) { return _mm512_set1_ps(v); }
inline Vec step(Vec acc, Vec a, Vec b) { return _mm512_fmadd_ps(acc, a, b); }
constexpr int kFlopsPerStep = 2 * kLanes;
inline float lane0(Vec v) { return _mm512_cvtss_f32(v); }
#elif FASTOPS_CPU_ISA == 1
using Vec = __m256;
constexpr int kLanes = 8;
inline Vec splat(float v) { return _mm256_set1_ps(v); }
inline Vec step(Vec acc, Vec a, Vec b) { return _mm256_fmadd_ps(acc, a, b); }
constexpr int kFlopsPerStep = 2 * kLanes;
inline float lane0(Vec v) { return _mm256_cvtss_f32(v); }
#else
using Vec = __m128;
constexpr int kLanes = 4;
inline Vec splat(float v) { return _mm_set1_ps(v); }
inline Vec step(Vec acc, Vec a, Vec b) { return _mm_add_ps(_mm_mul_ps(acc, a), b); }
constexpr int kFlopsPerStep = 2 * kLanes;
inline float lane0(Vec v) { return _mm_cvtss_f32(v); }
#endif

// Runs `iterations` rounds of kChains dependent-free FMAs; returns the FLOPs done. The result is
// folded into `sink` so the compiler keeps the work.
double fma_chains(int64_t iterations, float* sink) {
  Vec acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = splat(1.0f + 1e-7f * static_cast<float>(i));
  // a * acc + b with a slightly below 1 and b small: the values stay finite and normal forever
  const Vec a = splat(0.999999f), b = splat(1e-6f);
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = step(acc[i], a, b);
  }
  float s = 0.0f;
  for (int i = 0; i < kChains; ++i) s += lane0(acc[i]);
  *sink = s;
  return static_cast<double>(iterations) * kChains * kFlopsPerStep;
}

}  // namespace

FASTOPS_REGISTER_CPU_KERNEL(peak_fma_cpu, &fma_chains);

}  // namespace fastops::cpu
