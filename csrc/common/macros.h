// Macros shared by every fastops source: CPU (.cpp) and CUDA (.cu) alike.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define FASTOPS_HOST_DEVICE __host__ __device__
#define FASTOPS_FORCEINLINE __forceinline__
#else
#define FASTOPS_HOST_DEVICE
#define FASTOPS_FORCEINLINE inline __attribute__((always_inline))
#endif

// The *_cpu_kernel.cpp sources are compiled once per instruction set (FASTOPS_CPU_ISA = 0, 1, 2).
// Math headers put their inline functions in this namespace so each copy keeps its own symbols:
// otherwise the linker could pick an AVX-512 copy of an inline function for the baseline code.
#define FASTOPS_CONCAT_(a, b) a##b
#define FASTOPS_CONCAT(a, b) FASTOPS_CONCAT_(a, b)
#if defined(FASTOPS_CPU_ISA)
#define FASTOPS_ISA_NAMESPACE FASTOPS_CONCAT(isa, FASTOPS_CPU_ISA)
#else
#define FASTOPS_ISA_NAMESPACE generic
#endif
