// The CPU's measured arithmetic peak (peak_cpu_kernel.cpp, the op fastops::cpu_peak_gflops in
// peak.cpp): the compute floor the benchmarks divide useful FLOPs by.
#pragma once

#include <cstdint>

#include "common/cpu_dispatch.h"

namespace fastops::cpu {

// Runs `iterations` rounds of independent float32 FMA chains on registers; returns the FLOPs done
// (the arithmetic result goes to *sink).
using PeakFmaFn = double(int64_t iterations, float* sink);
extern KernelTable<PeakFmaFn> peak_fma_cpu;

}  // namespace fastops::cpu
