// Streaming (non-temporal) fills for the *_cpu_kernel.cpp loops that write outputs much larger
// than the last-level cache: the stores bypass the caches, so no line is read before it is
// written (a plain store first fetches the line: twice the memory traffic) and the output does not
// evict the data the loop reads. Only worth it when the output cannot stay in cache anyway.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "common/macros.h"

namespace fastops::cpu {
inline namespace FASTOPS_ISA_NAMESPACE {

// Outputs of at least this many bytes are written with streaming stores where a loop supports it.
constexpr size_t kStreamOutputBytes = size_t(64) << 20;

// Fills [p, p + bytes) with `byte`: the unaligned head and tail with memset, the aligned middle
// with non-temporal vector stores. Call stream_fence() before the data is handed to another thread.
FASTOPS_FORCEINLINE void stream_fill(void* p, unsigned char byte, size_t bytes) {
#if defined(__x86_64__)
#if defined(__AVX512F__)
  constexpr size_t kAlign = 64;
  const __m512i v = _mm512_set1_epi8(static_cast<char>(byte));
#elif defined(__AVX__)
  constexpr size_t kAlign = 32;
  const __m256i v = _mm256_set1_epi8(static_cast<char>(byte));
#else
  constexpr size_t kAlign = 16;
  const __m128i v = _mm_set1_epi8(static_cast<char>(byte));
#endif
  char* c = static_cast<char*>(p);
  const size_t head = (kAlign - reinterpret_cast<uintptr_t>(c) % kAlign) % kAlign;
  if (bytes < head + kAlign) {
    std::memset(c, byte, bytes);
    return;
  }
  std::memset(c, byte, head);
  c += head;
  bytes -= head;
  char* const end = c + (bytes & ~(kAlign - 1));
  for (; c < end; c += kAlign) {
#if defined(__AVX512F__)
    _mm512_stream_si512(reinterpret_cast<__m512i*>(c), v);
#elif defined(__AVX__)
    _mm256_stream_si256(reinterpret_cast<__m256i*>(c), v);
#else
    _mm_stream_si128(reinterpret_cast<__m128i*>(c), v);
#endif
  }
  std::memset(c, byte, bytes & (kAlign - 1));
#else
  std::memset(p, byte, bytes);
#endif
}

// Orders this thread's streaming stores before its later stores (and so before it signals that
// its part of the output is done).
FASTOPS_FORCEINLINE void stream_fence() {
#if defined(__x86_64__)
  _mm_sfence();
#endif
}

}  // namespace FASTOPS_ISA_NAMESPACE
}  // namespace fastops::cpu
