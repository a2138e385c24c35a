// Checks the library-free float math of csrc/ against libm in double, over float32 bit patterns
// 0, stride, 2 stride, ... (stride 1: all of them, a few minutes). Prints the largest error of
// each function in ulp; exits 1 if any exceeds its documented bound.
//   c++ -std=c++20 -O2 -ffp-contract=off -I csrc tests/native/fast_math_check.cpp -o check && ./check 257
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "box_iou/box_iou_math.h"
#include "common/fast_math.h"

namespace {

int64_t ulp_distance(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b) ? 0 : INT64_MAX;
  if (a == b) return 0;
  if (std::isinf(a) || std::isinf(b)) return INT64_MAX;
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  const int64_t ka = ia < 0 ? int64_t(INT32_MIN) - ia : ia, kb = ib < 0 ? int64_t(INT32_MIN) - ib : ib;
  return std::llabs(ka - kb);
}

struct Check {
  const char* name;
  float (*mine)(float);
  double (*reference)(double);
  int64_t bound;
  float lo = -INFINITY, hi = INFINITY;  // the domain checked (NaN is always checked)
  int64_t worst = 0;
  float worst_at = 0;
};

}  // namespace

int main(int argc, char** argv) {
  const uint64_t stride = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1;
  Check checks[] = {
      {"exp", [](float x) { return fastops::exp_(x); }, [](double x) { return std::exp(x); }, 1},
      {"log", [](float x) { return fastops::log_(x); }, [](double x) { return std::log(x); }, 1},
      {"log1p", [](float x) { return fastops::log1p_(x); }, [](double x) { return std::log1p(x); }, 2},
      {"atan", [](float x) { return fastops::box_iou::atan_(x); }, [](double x) { return std::atan(x); }, 3},
      // restricted domains: exp_neg_ down to the smallest normal result, log1p_unit_ on [0, 1]
      {"exp_neg", [](float x) { return fastops::exp_neg_(x); }, [](double x) { return std::exp(-x); }, 1, 0.0f, 87.3f},
      {"log1p_unit", [](float x) { return fastops::log1p_unit_(x); }, [](double x) { return std::log1p(x); }, 1, 0.0f,
       1.0f},
  };
  for (uint64_t bits = 0; bits < 0x100000000ull; bits += stride) {
    const uint32_t b = static_cast<uint32_t>(bits);
    float x;
    std::memcpy(&x, &b, 4);
    for (Check& c : checks) {
      if (!(x >= c.lo && x <= c.hi) && !std::isnan(x)) continue;
      const int64_t d = ulp_distance(c.mine(x), static_cast<float>(c.reference(x)));
      if (d > c.worst) c.worst = d, c.worst_at = x;
    }
  }
  int status = 0;
  for (const Check& c : checks) {
    std::printf("%s: max %lld ulp (at %a), bound %lld\n", c.name, static_cast<long long>(c.worst), c.worst_at,
                static_cast<long long>(c.bound));
    if (c.worst > c.bound) status = 1;
  }
  return status;
}
