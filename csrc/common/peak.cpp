// fastops::cpu_peak_gflops(seconds): the float32 arithmetic peak of this CPU with every thread of
// the kernels busy at once, measured by the FMA micro-kernel of the active instruction set
// (peak_cpu_kernel.cpp). A query, not a computation: no tensors, one kernel for every backend.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <vector>

#include "common/peak.h"

namespace fastops::cpu {

constinit KernelTable<PeakFmaFn> peak_fma_cpu{};

namespace {

double cpu_peak_gflops(double seconds) {
  TORCH_CHECK_VALUE(seconds > 0 && seconds <= 10, "cpu_peak_gflops: seconds must be in (0, 10], got ", seconds);
  PeakFmaFn* fn = peak_fma_cpu.get();
  const int threads = at::get_num_threads();
  float sink = 0.0f;
  // calibrate: iterations that take about a tenth of the time on one thread
  int64_t iterations = 1 << 16;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    fn(iterations, &sink);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (dt > seconds / 10 || iterations > (int64_t{1} << 40)) break;
    iterations *= 2;
  }
  // the best of several rounds with every thread running the chains at once
  double best = 0.0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  do {
    std::vector<double> flops(threads, 0.0);
    std::vector<float> sinks(threads, 0.0f);
    const auto t0 = std::chrono::steady_clock::now();
    at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) flops[t] = fn(iterations, &sinks[t]);
    });
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double total = 0.0;
    for (double f : flops) total += f;
    best = std::max(best, total / dt / 1e9);
  } while (std::chrono::steady_clock::now() < deadline);
  return best;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastops, m) { m.def("cpu_peak_gflops(float seconds) -> float", &cpu_peak_gflops); }

}  // namespace fastops::cpu
