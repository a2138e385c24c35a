// Raw CPU loops of the convolution ops (conv.h):
// - the weight's reorder between its own layout [C_out * C_in / groups, KH * KW] and the
//   tap-major layout of the per-tap GEMMs, and the same transpose of a channels_last sample
//   [H * W, C] to [C, H * W]. ATen's strided copy of the permuted weight reads each row's taps
//   with a stride and runs at a third of the speed of a plain copy here (a channels_last map: a
//   twentieth); this loop reads and writes tiles of 64 x 64 that stay in L1;
// - the direct float32 convolution (AVX-512 copy only), below.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include <ATen/Parallel.h>

#if FASTOPS_CPU_ISA == 2
#include <immintrin.h>
#endif

#include "common/cpu_lanes.h"
#include "common/macros.h"
#include "conv/conv.h"

namespace fastops::conv {
namespace {

constexpr int64_t kRowsPerBlock = 64;
constexpr int64_t kTapsPerBlock = 64;

// Tiles of 64 rows x 64 taps, so both the strided reads and the strided writes of a tile stay in
// L1 whether taps is 9 (a weight) or 2048 (a channels_last map's channels).
template <typename T>
void reorder(const T* src, T* dst, int64_t rows, int64_t taps, bool to_tap_major) {
  const int64_t blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  at::parallel_for(0, blocks, 16, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t r0 = b * kRowsPerBlock, r1 = std::min(rows, r0 + kRowsPerBlock);
      for (int64_t t0 = 0; t0 < taps; t0 += kTapsPerBlock) {
        const int64_t t1 = std::min(taps, t0 + kTapsPerBlock);
        for (int64_t t = t0; t < t1; ++t) {
          if (to_tap_major) {
            for (int64_t r = r0; r < r1; ++r) dst[t * rows + r] = src[r * taps + t];
          } else {
            for (int64_t r = r0; r < r1; ++r) dst[r * taps + t] = src[t * rows + r];
          }
        }
      }
    }
  });
}

void tap_reorder(const void* src, void* dst, int64_t rows, int64_t taps, int64_t elem_size, bool to_tap_major) {
  switch (elem_size) {
    case 2: return reorder(static_cast<const uint16_t*>(src), static_cast<uint16_t*>(dst), rows, taps, to_tap_major);
    case 4: return reorder(static_cast<const uint32_t*>(src), static_cast<uint32_t*>(dst), rows, taps, to_tap_major);
    case 8: return reorder(static_cast<const uint64_t*>(src), static_cast<uint64_t*>(dst), rows, taps, to_tap_major);
    default: TORCH_CHECK(false, "conv: no tap reorder for ", elem_size, "-byte elements");
  }
}

FASTOPS_REGISTER_CPU_KERNEL(tap_reorder_cpu, &tap_reorder);

#if FASTOPS_CPU_ISA == 2
// ---- The direct convolution ----------------------------------------------------------------
//
// Why: the per-tap GEMMs run at BLAS's rate, but each call packs its operands again, each pass
// reorders the whole weight, and narrow taps need buffers and adds: about a third of the GEMM time
// again at rate 12 on 33x33. Here every tap reads the input in place, through one channel-blocked
// copy of it, and the register tile accumulates all taps before it goes back to memory.
//
// Layouts: the input is copied once to [K / 16][H_in][W_in][16] (a pixel's 16 channels are one
// cache line); the weights of a block of 32 output channels and a chunk of kChunk input channels
// are packed to [tap][k][32] (per tap 16 KB: they stay in L1 while the tap sweeps its pixels);
// the accumulators of a block are [2][H_out][W_out][16], added to the NCHW output at the end.
// The register tile: 32 output channels (two zmm) x up to kMaxPixels consecutive pixels of a row
// of the tap's rectangle (output pixels, or a stride apart for a strided input gradient); per
// input channel, two weight vectors times one broadcast input value per pixel.
// From L1 it runs at a little below the rate of a loop of nothing but broadcast-and-FMA, the
// practical ceiling of this instruction mix (benchmarks/bench_conv.py reports the fraction of peak).
namespace direct {

using cpu::Float16Lanes;
using cpu::transpose16;

constexpr int kLanes = 16;
constexpr int64_t kTileM = 32;

// Rounds a / b up (b > 0; a of any sign).
constexpr int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }
constexpr int kMaxPixels = 14;
constexpr int64_t kChunk = 128;
// A thread's accumulators cover as many 32-channel blocks as fit here (they stay in L2 while the
// chunks of input channels go by, and the input chunk is reused by each block of the group).
constexpr int64_t kGroupBytes = int64_t(512) << 10;
// Scratch a thread keeps between calls.
constexpr size_t kKeptScratchBytes = size_t(8) << 20;

// The first n <= 16 floats at p (zeros past them), and their store: masked, never touching memory
// past them.
FASTOPS_FORCEINLINE __mmask16 first_lanes(int64_t n) { return static_cast<__mmask16>((1u << n) - 1u); }
FASTOPS_FORCEINLINE Float16Lanes load_n(const float* p, int64_t n) {
  return n == kLanes ? Float16Lanes(_mm512_loadu_ps(p)) : Float16Lanes(_mm512_maskz_loadu_ps(first_lanes(n), p));
}
FASTOPS_FORCEINLINE void store_n(float* p, const Float16Lanes& v, int64_t n) {
  _mm512_mask_storeu_ps(p, first_lanes(n), __m512(v));
}
FASTOPS_FORCEINLINE void store16(float* p, const Float16Lanes& v) { _mm512_storeu_ps(p, __m512(v)); }

// c[v][j] += sum over k < kc of w[k][16 v : 16 v + 16] * x(k, j), x(k, j) = x[(k / 16) *
// block_stride + 16 kStep j + k % 16]: channel k of input pixel kStep j in the blocked input
// (kStep: the stride along the row). c[v][j] is at c + v * half_stride + j * c_step, 16 floats.
template <int NR, int kStep>
void tile(const float* __restrict w, const float* __restrict x, int64_t block_stride, int64_t kc, float* __restrict c,
          int64_t half_stride, int64_t c_step) {
  constexpr int kPixel = kStep * kLanes;
  __m512 a0[NR], a1[NR];
#pragma GCC unroll 16
  for (int j = 0; j < NR; ++j) {
    a0[j] = _mm512_loadu_ps(c + j * c_step);
    a1[j] = _mm512_loadu_ps(c + half_stride + j * c_step);
  }
  for (int64_t kb = 0; kb < kc; kb += kLanes) {
    const float* xb = x + (kb / kLanes) * block_stride;
    // The next block of channels is 4 KB or more away: a new page for the hardware prefetcher.
    if (kb + kLanes < kc) {
#pragma GCC unroll 16
      for (int j = 0; j < NR; ++j)
        _mm_prefetch(reinterpret_cast<const char*>(xb + block_stride + j * kPixel), _MM_HINT_T0);
    }
#pragma GCC unroll 2
    for (int kk = 0; kk < kLanes; ++kk) {
      const float* wk = w + (kb + kk) * kTileM;
      const __m512 w0 = _mm512_loadu_ps(wk), w1 = _mm512_loadu_ps(wk + kLanes);
#pragma GCC unroll 16
      for (int j = 0; j < NR; ++j) {
        const __m512 b = _mm512_set1_ps(xb[j * kPixel + kk]);
        a0[j] = _mm512_fmadd_ps(w0, b, a0[j]);
        a1[j] = _mm512_fmadd_ps(w1, b, a1[j]);
      }
    }
  }
#pragma GCC unroll 16
  for (int j = 0; j < NR; ++j) {
    _mm512_storeu_ps(c + j * c_step, a0[j]);
    _mm512_storeu_ps(c + half_stride + j * c_step, a1[j]);
  }
}

using TileFn = void (*)(const float*, const float*, int64_t, int64_t, float*, int64_t, int64_t);
template <int kStep, size_t... I>
constexpr std::array<TileFn, sizeof...(I)> tile_table(std::index_sequence<I...>) {
  return {&tile<static_cast<int>(I) + 1, kStep>...};
}
// kTiles[step - 1][pixels - 1]: steps 1 and 2 (stride 1 and 2 along the input row).
constexpr std::array<std::array<TileFn, kMaxPixels>, 2> kTiles = {
    tile_table<1>(std::make_index_sequence<kMaxPixels>{}), tile_table<2>(std::make_index_sequence<kMaxPixels>{})};

// 16 channel planes [16][pixels] -> one channel block [pixels][16].
void block_channels(const float* in, int64_t pixels, float* blocked) {
  Float16Lanes r[kLanes];
  for (int64_t p = 0; p < pixels; p += kLanes) {
    const int64_t n = std::min<int64_t>(kLanes, pixels - p);
    for (int l = 0; l < kLanes; ++l) r[l] = load_n(in + l * pixels + p, n);
    transpose16(r);
    for (int64_t q = 0; q < n; ++q) store16(blocked + (p + q) * kLanes, r[q]);
  }
}

// in [K][pixels] -> blocked [K / 16][pixels][16], channel blocks in parallel.
void block_input(const float* in, int64_t channels, int64_t pixels, float* blocked) {
  at::parallel_for(0, channels / kLanes, 1, [&](int64_t begin, int64_t end) {
    for (int64_t cb = begin; cb < end; ++cb)
      block_channels(in + cb * kLanes * pixels, pixels, blocked + cb * pixels * kLanes);
  });
}

// Packs w(m0 + i, k0 + k, tap s) to packed[(s * kc + k) * 32 + i] (i < 32, k < kc) for the taps
// with slot_of[offset] = s >= 0, reading 16 weight rows at a time and transposing them.
void pack_weights(const DirectConv& a, int64_t m0, int64_t k0, int64_t kc, const std::vector<int>& slot_of,
                  float* packed) {
  const int64_t taps = a.weight_taps, ms = a.weight_m_stride, ks = a.weight_k_stride;
  Float16Lanes r[kLanes];
  // Transposed chunk of 16 rows (one output channel each) x n flat positions from j0; position
  // j of the row run is (k, tap offset) = (j / per_k, j % per_k) plus k_base.
  auto scatter = [&](int64_t half, int64_t j0, int64_t n, int64_t per_k, int64_t k_base) {
    transpose16(r);
    int64_t k = k_base + j0 / per_k, t = j0 % per_k;  // one division per 16 values
    for (int64_t q = 0; q < n; ++q) {
      const int s = slot_of[static_cast<size_t>(t)];
      if (s >= 0) store16(packed + (s * kc + k) * kTileM + half * kLanes, r[q]);
      if (++t == per_k) t = 0, ++k;
    }
  };
  if (ks == taps) {
    // Forward: each output channel's row holds its k chunk's taps contiguously.
    const int64_t run = kc * taps;
    for (int64_t half = 0; half < 2; ++half) {
      for (int64_t j = 0; j < run; j += kLanes) {
        const int64_t n = std::min<int64_t>(kLanes, run - j);
        for (int i = 0; i < kLanes; ++i) r[i] = load_n(a.weight + (m0 + half * kLanes + i) * ms + k0 * ks + j, n);
        scatter(half, j, n, taps, 0);
      }
    }
    return;
  }
  // Input gradient (ms == taps): for each k, the 32 channels' rows of taps are one contiguous run,
  // a weight row away from the next k's: prefetched a few k ahead, into L2 (more misses can be in
  // flight there than L1's fill buffers allow; the hardware prefetcher does not follow). The weights
  // are transposed in registers rather than gathered: gathers are slow on CPUs with the GDS
  // (Downfall) mitigation.
  constexpr int64_t kAhead = 8;
  const int64_t run_bytes = kTileM * ms * static_cast<int64_t>(sizeof(float));
  for (int64_t k = 0; k < kc; ++k) {
    if (k + kAhead < kc) {
      const char* next = reinterpret_cast<const char*>(a.weight + (k0 + k + kAhead) * ks + m0 * ms);
      for (int64_t b = 0; b < run_bytes; b += 64) _mm_prefetch(next + b, _MM_HINT_T1);
    }
    for (int64_t half = 0; half < 2; ++half) {
      for (int64_t j = 0; j < taps; j += kLanes) {
        const int64_t n = std::min<int64_t>(kLanes, taps - j);
        for (int i = 0; i < kLanes; ++i) r[i] = load_n(a.weight + (k0 + k) * ks + (m0 + half * kLanes + i) * ms + j, n);
        scatter(half, j, n, taps, k);
      }
    }
  }
}

// out[i * plane + p] (+)= acc[i / 16][p][i % 16] for the block's 32 channels and pixels p in
// [p0, p1) (+= unless overwrite); acc's halves are plane * 16 floats apart.
void add_block(const float* acc, int64_t plane, int64_t p0, int64_t p1, bool overwrite, float* out) {
  Float16Lanes r[kLanes];
  for (int64_t half = 0; half < 2; ++half) {
    const float* src = acc + half * plane * kLanes;
    float* dst = out + half * kLanes * plane;
    for (int64_t p = p0; p < p1; p += kLanes) {
      const int64_t n = std::min<int64_t>(kLanes, p1 - p);
      for (int64_t q = 0; q < kLanes; ++q) r[q] = q < n ? load_n(src + (p + q) * kLanes, kLanes) : Float16Lanes{};
      transpose16(r);
      for (int l = 0; l < kLanes; ++l) {
        float* o = dst + l * plane + p;
        store_n(o, overwrite ? r[l] : load_n(o, n) + r[l], n);
      }
    }
  }
}

// Below this many output rows per part, a block's rows are not split between threads.
constexpr int64_t kMinPartRows = 4;

void direct_conv(const DirectConv& a) {
  const int64_t K = a.channels, in_pixels = a.in_h * a.in_w, out_pixels = a.out_h * a.out_w;
  TORCH_CHECK(K % kLanes == 0 && a.out_channels % kTileM == 0 && (a.in_step_x == 1 || a.in_step_x == 2) &&
                  (a.weight_k_stride == a.weight_taps || a.weight_m_stride == a.weight_taps),
              "direct conv: unsupported shape (a dispatch bug)");
  if (a.batch == 0 || a.out_channels == 0 || out_pixels == 0) return;
  if (K == 0 || a.n_taps == 0) {
    if (a.overwrite) {
      for (int64_t n = 0; n < a.batch; ++n) {
        std::memset(a.out + n * a.out_sample_stride, 0,
                    static_cast<size_t>(a.out_channels * out_pixels) * sizeof(float));
      }
    }
    return;
  }
  for (int64_t n = 0; n < a.batch; ++n)
    block_input(a.in + n * a.in_sample_stride, K, in_pixels, a.blocked_in + n * K * in_pixels);
  std::vector<int> slot_of(static_cast<size_t>(a.weight_taps), -1);
  for (int64_t s = 0; s < a.n_taps; ++s) slot_of[static_cast<size_t>(a.taps[s].weight_offset)] = static_cast<int>(s);
  const std::array<TileFn, kMaxPixels>& tiles = kTiles[static_cast<size_t>(a.in_step_x - 1)];
  const int64_t m_blocks = a.out_channels / kTileM, block_floats = kTileM * out_pixels;
  // A thread's accumulators: (samples x blocks) of them fit in kGroupBytes, samples first, so that
  // each packing of a block's weights serves as many samples as possible.
  const int64_t fits = std::max<int64_t>(1, kGroupBytes / (block_floats * static_cast<int64_t>(sizeof(float))));
  const int64_t samples = std::min(a.batch, fits), group = std::max<int64_t>(1, fits / samples);

  // Blocks [g0, g1), output rows [y0, y1) (all rows but those of other threads' parts).
  auto run_blocks = [&](int64_t g0, int64_t g1, int64_t y0, int64_t y1, float* acc, float* packed) {
    const int64_t p0 = y0 * a.out_w, p1 = y1 * a.out_w;
    for (int64_t n0 = 0; n0 < a.batch; n0 += samples) {
      const int64_t n1 = std::min(a.batch, n0 + samples);
      // acc[(n - n0) * blocks + (mb - g0)]: one [2][out_pixels][16] block per sample and block.
      auto acc_of = [&](int64_t n, int64_t mb) { return acc + ((n - n0) * (g1 - g0) + (mb - g0)) * block_floats; };
      for (int64_t n = n0; n < n1; ++n) {
        for (int64_t mb = g0; mb < g1; ++mb) {
          for (int64_t half = 0; half < 2; ++half) {
            std::memset(acc_of(n, mb) + (half * out_pixels + p0) * kLanes, 0,
                        static_cast<size_t>((p1 - p0) * kLanes) * sizeof(float));
          }
        }
      }
      for (int64_t k0 = 0; k0 < K; k0 += kChunk) {
        const int64_t kc = std::min(kChunk, K - k0);
        for (int64_t mb = g0; mb < g1; ++mb) {
          pack_weights(a, mb * kTileM, k0, kc, slot_of, packed);
          for (int64_t n = n0; n < n1; ++n) {
            const float* x_chunk = a.blocked_in + (n * K + k0) * in_pixels;
            float* c = acc_of(n, mb);
            for (int64_t s = 0; s < a.n_taps; ++s) {
              const DirectTap& t = a.taps[s];
              const int64_t width = t.col1 - t.col0;
              // The tap's rows u whose output row u * out_step_y + out_dy lies in [y0, y1).
              const int64_t u0 = std::max(t.row0, ceil_div(y0 - t.out_dy, a.out_step_y));
              const int64_t u1 = std::min(t.row1, ceil_div(y1 - t.out_dy, a.out_step_y));
              if (u1 <= u0 || width <= 0) continue;
              const int64_t segments = (width + kMaxPixels - 1) / kMaxPixels;
              const float* w = packed + s * kc * kTileM;
              for (int64_t u = u0; u < u1; ++u) {
                const float* x_row = x_chunk + (u * a.in_step_y + t.dy) * a.in_w * kLanes;
                float* c_row = c + (u * a.out_step_y + t.out_dy) * a.out_w * kLanes;
                for (int64_t seg = 0; seg < segments; ++seg) {
                  const int64_t v0 = t.col0 + seg * width / segments, v1 = t.col0 + (seg + 1) * width / segments;
                  tiles[static_cast<size_t>(v1 - v0 - 1)](
                      w, x_row + (v0 * a.in_step_x + t.dx) * kLanes, in_pixels * kLanes, kc,
                      c_row + (v0 * a.out_step_x + t.out_dx) * kLanes, out_pixels * kLanes, a.out_step_x * kLanes);
                }
              }
            }
          }
        }
      }
      for (int64_t n = n0; n < n1; ++n) {
        for (int64_t mb = g0; mb < g1; ++mb) {
          add_block(acc_of(n, mb), out_pixels, p0, p1, a.overwrite,
                    a.out + n * a.out_sample_stride + mb * kTileM * out_pixels);
        }
      }
    }
  };

  // Threads take blocks of 32 output channels; with fewer blocks than threads, each block's output
  // rows are split into parts too (each output element is still summed by one thread, in the
  // same order).
  const int64_t threads = at::get_num_threads();
  const int64_t parts =
      m_blocks >= threads ? 1 : std::max<int64_t>(1, std::min(ceil_div(threads, m_blocks), a.out_h / kMinPartRows));
  at::parallel_for(0, m_blocks * parts, 1, [&](int64_t begin, int64_t end) {
    thread_local cpu::AlignedScratch<float> acc_scratch, pack_scratch;
    float* packed = pack_scratch.get(a.n_taps * kChunk * kTileM, "conv2d");
    if (parts == 1) {
      for (int64_t g0 = begin; g0 < end; g0 += group) {
        const int64_t g1 = std::min(end, g0 + group);
        run_blocks(g0, g1, 0, a.out_h, acc_scratch.get(samples * (g1 - g0) * block_floats, "conv2d"), packed);
      }
    } else {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t mb = task / parts, part = task % parts;
        run_blocks(mb, mb + 1, part * a.out_h / parts, (part + 1) * a.out_h / parts,
                   acc_scratch.get(samples * block_floats, "conv2d"), packed);
      }
    }
    acc_scratch.trim(kKeptScratchBytes);
    pack_scratch.trim(kKeptScratchBytes);
  });
}

// ---- The weight gradient ----
// The register tile: 32 input channels (two zmm of the blocked input) x up to kMaxWeightRows
// output channels, broadcast from grad_out copied to one cache line per pixel and row tile (the
// tiles are balanced, 13-14 channels for 256); the K loop runs over the tap's output pixels, in
// chunks of output rows whose input rows stay in L2 for every row tile and tap.
constexpr int kMaxWeightRows = static_cast<int>(kDirectWeightGradRows);
// Input bytes (two channel blocks) of a chunk of the weight gradient's K loop.
constexpr int64_t kWeightChunkBytes = int64_t(256) << 10;

// c[j][0:32] += sum over rows, cols of x(k = 0..31) * g(j), where at a pixel g holds NJ
// consecutive output channels and x the two blocks of 16 input channels.
template <int NJ>
void weight_tile(const float* __restrict g, int64_t g_row, const float* __restrict x, int64_t x_row, int64_t x_pixel,
                 int64_t x_block, int64_t rows, int64_t cols, float* __restrict c) {
  __m512 a0[NJ], a1[NJ];
#pragma GCC unroll 16
  for (int j = 0; j < NJ; ++j) {
    a0[j] = _mm512_loadu_ps(c + j * kTileM);
    a1[j] = _mm512_loadu_ps(c + j * kTileM + kLanes);
  }
  for (int64_t y = 0; y < rows; ++y) {
    const float* gy = g + y * g_row;
    const float* xy = x + y * x_row;
    for (int64_t col = 0; col < cols; ++col) {
      const __m512 x0 = _mm512_loadu_ps(xy + col * x_pixel), x1 = _mm512_loadu_ps(xy + col * x_pixel + x_block);
      const float* gp = gy + col * kLanes;
#pragma GCC unroll 16
      for (int j = 0; j < NJ; ++j) {
        const __m512 b = _mm512_set1_ps(gp[j]);
        a0[j] = _mm512_fmadd_ps(x0, b, a0[j]);
        a1[j] = _mm512_fmadd_ps(x1, b, a1[j]);
      }
    }
  }
#pragma GCC unroll 16
  for (int j = 0; j < NJ; ++j) {
    _mm512_storeu_ps(c + j * kTileM, a0[j]);
    _mm512_storeu_ps(c + j * kTileM + kLanes, a1[j]);
  }
}

using WeightTileFn = void (*)(const float*, int64_t, const float*, int64_t, int64_t, int64_t, int64_t, int64_t, float*);
template <size_t... I>
constexpr std::array<WeightTileFn, sizeof...(I)> weight_tile_table(std::index_sequence<I...>) {
  return {&weight_tile<static_cast<int>(I) + 1>...};
}
constexpr std::array<WeightTileFn, kMaxWeightRows> kWeightTiles =
    weight_tile_table(std::make_index_sequence<kMaxWeightRows>{});

// The row tiles of the weight gradient: tile i has the output channels [first(i), first(i + 1)),
// 13-14 of them for 256 (balanced, so that no tile is a short remainder).
struct RowTiles {
  int64_t channels, count;
  explicit RowTiles(int64_t c) : channels(c), count((c + kMaxWeightRows - 1) / kMaxWeightRows) {}
  int64_t first(int64_t i) const { return i * channels / count; }
};

// grad_out [M][pixels] -> [tile][pixels][16]: each pixel's channels of a row tile in one cache line
// (a pixel-major [pixels][M] copy made most tiles straddle two lines per pixel), tiles in parallel.
void tile_rows(const float* in, const RowTiles& tiles, int64_t pixels, float* out) {
  at::parallel_for(0, tiles.count, 1, [&](int64_t begin, int64_t end) {
    Float16Lanes r[kLanes];
    for (int64_t i = begin; i < end; ++i) {
      const int64_t c0 = tiles.first(i), nc = tiles.first(i + 1) - c0;
      float* dst = out + i * pixels * kLanes;
      for (int64_t p = 0; p < pixels; p += kLanes) {
        const int64_t n = std::min<int64_t>(kLanes, pixels - p);
        for (int l = 0; l < kLanes; ++l) r[l] = l < nc ? load_n(in + (c0 + l) * pixels + p, n) : Float16Lanes{};
        transpose16(r);
        for (int64_t q = 0; q < n; ++q) store16(dst + (p + q) * kLanes, r[q]);
      }
    }
  });
}

// grad_weight rows (m0 + j) x input channels [k0, k0 + 32) x all taps from the tile buffer
// [weight_taps][rows][32] (taps in weight order). Each (row, 32 channels) run is 32 * taps
// floats, 64-byte aligned (K % 32 == 0): assembled in `run`, then written with streaming stores
// (the 19 MB gradient of the ASPP branch is written once; no read for ownership).
void store_weight_block(const float* buf, int64_t rows, int64_t taps, int64_t channels, int64_t k0, float* run,
                        float* gw) {
  Float16Lanes r[kLanes];
  for (int64_t j = 0; j < rows; ++j) {
    for (int64_t half = 0; half < 2; ++half) {
      for (int64_t t0 = 0; t0 < taps; t0 += kLanes) {
        const int64_t nt = std::min<int64_t>(kLanes, taps - t0);
        for (int64_t t = 0; t < kLanes; ++t) {
          r[t] = t < nt ? load_n(buf + ((t0 + t) * rows + j) * kTileM + half * kLanes, kLanes) : Float16Lanes{};
        }
        transpose16(r);
        for (int i = 0; i < kLanes; ++i) store_n(run + (half * kLanes + i) * taps + t0, r[i], nt);
      }
    }
    float* dst = gw + (j * channels + k0) * taps;
    for (int64_t f = 0; f < kTileM * taps; f += kLanes) _mm512_stream_ps(dst + f, _mm512_load_ps(run + f));
  }
}

void direct_weight_grad(const DirectWeightGrad& a) {
  const int64_t K = a.channels, M = a.out_channels, T = a.weight_taps;
  const int64_t in_pixels = a.in_h * a.in_w, out_pixels = a.out_h * a.out_w;
  TORCH_CHECK(K % kTileM == 0, "direct conv weight gradient: unsupported shape (a dispatch bug)");
  if (M == 0 || K == 0) return;
  const RowTiles row_tiles(M);
  for (int64_t n = 0; n < a.batch; ++n) {
    tile_rows(a.grad_out + n * M * out_pixels, row_tiles, out_pixels,
              a.tiled_grad + n * row_tiles.count * out_pixels * kLanes);
  }
  // Tasks: 32 input channels x a group of row tiles (all of them, unless there are fewer blocks
  // of input channels than threads). A task's accumulators, [row tile][tap][rows][32], live in a
  // buffer across the chunks of its K loop.
  const int64_t k_blocks = K / kTileM;
  const int64_t row_groups = std::min(row_tiles.count, std::max<int64_t>(1, at::get_num_threads() / k_blocks));
  const int64_t chunk_rows = std::max<int64_t>(
      1, kWeightChunkBytes / (a.in_step_y * a.in_w * 2 * kLanes * static_cast<int64_t>(sizeof(float))));
  const int64_t tile_floats = T * kMaxWeightRows * kTileM;
  at::parallel_for(0, k_blocks * row_groups, 1, [&](int64_t begin, int64_t end) {
    thread_local cpu::AlignedScratch<float> buf_scratch, run_scratch, x_scratch;
    float* run = run_scratch.get(T * kTileM, "conv2d weight gradient");
    // The task's 32 input channels of every sample, blocked here (hot in L2 for the K loop; no
    // blocked copy of the whole input): [sample][2][in_pixels][16].
    float* x_blocks = x_scratch.get(a.batch * kTileM * in_pixels, "conv2d weight gradient");
    int64_t blocked_k0 = -1;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t k0 = task / row_groups * kTileM, group = task % row_groups;
      if (k0 != blocked_k0) {
        for (int64_t n = 0; n < a.batch; ++n) {
          for (int64_t half = 0; half < 2; ++half) {
            block_channels(a.in + (n * K + k0 + half * kLanes) * in_pixels, in_pixels,
                           x_blocks + (n * 2 + half) * in_pixels * kLanes);
          }
        }
        blocked_k0 = k0;
      }
      const int64_t rt0 = group * row_tiles.count / row_groups, rt1 = (group + 1) * row_tiles.count / row_groups;
      float* buf = buf_scratch.get((rt1 - rt0) * tile_floats, "conv2d weight gradient");
      std::memset(buf, 0, static_cast<size_t>((rt1 - rt0) * tile_floats) * sizeof(float));
      for (int64_t n = 0; n < a.batch; ++n) {
        const float* x_block = x_blocks + n * kTileM * in_pixels;
        const float* g_sample = a.tiled_grad + n * row_tiles.count * out_pixels * kLanes;
        for (int64_t y0 = 0; y0 < a.out_h; y0 += chunk_rows) {
          const int64_t y1 = std::min(a.out_h, y0 + chunk_rows);
          for (int64_t rt = rt0; rt < rt1; ++rt) {
            const int64_t rows = row_tiles.first(rt + 1) - row_tiles.first(rt);
            for (int64_t s = 0; s < a.n_taps; ++s) {
              const DirectTap& t = a.taps[s];
              const int64_t r0 = std::max(t.row0, y0), r1 = std::min(t.row1, y1);
              if (r1 <= r0 || t.col1 <= t.col0) continue;
              kWeightTiles[static_cast<size_t>(rows - 1)](
                  g_sample + (rt * out_pixels + r0 * a.out_w + t.col0) * kLanes, a.out_w * kLanes,
                  x_block + ((r0 * a.in_step_y + t.dy) * a.in_w + t.col0 * a.in_step_x + t.dx) * kLanes,
                  a.in_step_y * a.in_w * kLanes, a.in_step_x * kLanes, in_pixels * kLanes, r1 - r0, t.col1 - t.col0,
                  buf + (rt - rt0) * tile_floats + t.weight_offset * rows * kTileM);
            }
          }
        }
      }
      for (int64_t rt = rt0; rt < rt1; ++rt) {
        const int64_t m0 = row_tiles.first(rt), rows = row_tiles.first(rt + 1) - m0;
        store_weight_block(buf + (rt - rt0) * tile_floats, rows, T, K, k0, run, a.grad_weight + m0 * K * T);
      }
    }
    buf_scratch.trim(kKeptScratchBytes);
    x_scratch.trim(kKeptScratchBytes);
    _mm_sfence();  // the streaming stores are visible before the parallel region ends
  });
}

}  // namespace direct

FASTOPS_REGISTER_CPU_KERNEL(direct_conv_cpu, &direct::direct_conv);
FASTOPS_REGISTER_CPU_KERNEL(direct_weight_grad_cpu, &direct::direct_weight_grad);
#endif

}  // namespace
}  // namespace fastops::conv
