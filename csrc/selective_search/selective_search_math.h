// Per-pixel and per-region math of selective search: colour space conversions (RGB on the
// 0..255 scale in, each channel on the 0..255 scale out), histogram bins, similarity terms and the
// ranking's random numbers.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace fastops::selective_search {

// HSV with hue in [0, 1) of the circle; each channel scaled to 0..255.
inline void rgb_to_hsv(float r, float g, float b, float* out) {
  const float hi = std::max(r, std::max(g, b)), lo = std::min(r, std::min(g, b)), range = hi - lo;
  float hue = 0;
  if (range > 0) {
    if (hi == r) {
      hue = (g - b) / range;
    } else if (hi == g) {
      hue = 2 + (b - r) / range;
    } else {
      hue = 4 + (r - g) / range;
    }
    hue /= 6;
    if (hue < 0) hue += 1;
  }
  out[0] = std::min(hue * 255.0f, 255.0f);
  out[1] = hi > 0 ? range / hi * 255.0f : 0.0f;
  out[2] = hi;
}

inline float srgb_to_linear(float c) {
  c *= 1.0f / 255.0f;
  return c <= 0.04045f ? c / 12.92f : std::pow((c + 0.055f) / 1.055f, 2.4f);
}

inline float lab_f(float t) { return t > 0.008856f ? std::cbrt(t) : 7.787f * t + 16.0f / 116.0f; }

// CIE L*a*b* of sRGB (D65), scaled as OpenCV's 8-bit Lab: L * 255 / 100, a + 128, b + 128.
inline void rgb_to_lab(float r, float g, float b, float* out) {
  const float lr = srgb_to_linear(r), lg = srgb_to_linear(g), lb = srgb_to_linear(b);
  const float x = (0.412453f * lr + 0.357580f * lg + 0.180423f * lb) / 0.950456f;
  const float y = 0.212671f * lr + 0.715160f * lg + 0.072169f * lb;
  const float z = (0.019334f * lr + 0.119193f * lg + 0.950227f * lb) / 1.088754f;
  const float fx = lab_f(x), fy = lab_f(y), fz = lab_f(z);
  out[0] = std::clamp((116.0f * fy - 16.0f) * (255.0f / 100.0f), 0.0f, 255.0f);
  out[1] = std::clamp(500.0f * (fx - fy) + 128.0f, 0.0f, 255.0f);
  out[2] = std::clamp(200.0f * (fy - fz) + 128.0f, 0.0f, 255.0f);
}

// Normalised r and g (r / (r + g + b), scaled to 0..255; a black pixel is grey) and the intensity.
inline void rgb_to_rgi(float r, float g, float b, float* out) {
  const float sum = r + g + b;
  out[0] = sum > 0 ? r / sum * 255.0f : 255.0f / 3;
  out[1] = sum > 0 ? g / sum * 255.0f : 255.0f / 3;
  out[2] = sum * (1.0f / 3);
}

// The histogram bin of a value on the 0..255 scale, `bins` equal bins.
inline int value_bin(float v, int bins) {
  const int bin = static_cast<int>(v * (static_cast<float>(bins) / 255.0f));
  return std::clamp(bin, 0, bins - 1);
}

// Histogram intersection of two L1-normalised histograms.
inline float intersection(const float* a, const float* b, int64_t length) {
  float sum = 0;
  for (int64_t i = 0; i < length; ++i) sum += std::min(a[i], b[i]);
  return sum;
}

// Size similarity: 1 - (|r_i| + |r_j|) / |image| (small regions merge early).
inline double size_similarity(int64_t size_i, int64_t size_j, int64_t image_size) {
  return 1.0 - static_cast<double>(size_i + size_j) / static_cast<double>(image_size);
}

// Fill similarity: 1 - (|BB_ij| - |r_i| - |r_j|) / |image| (regions that fill each other's gaps).
inline double fill_similarity(int64_t box_area, int64_t size_i, int64_t size_j, int64_t image_size) {
  return 1.0 - static_cast<double>(box_area - size_i - size_j) / static_cast<double>(image_size);
}

// A uniform number in [0, 1) from (seed, strategy, region): splitmix64 over the three, so each
// strategy's draws are fixed whichever thread computes it.
inline double uniform_hash(int64_t seed, int64_t strategy, int64_t region) {
  uint64_t x = static_cast<uint64_t>(seed);
  for (uint64_t v : {static_cast<uint64_t>(strategy), static_cast<uint64_t>(region)}) {
    x ^= v + 0x9e3779b97f4a7c15ULL + (x << 6) + (x >> 2);
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    x ^= x >> 31;
  }
  return static_cast<double>(x >> 11) * 0x1.0p-53;
}

}  // namespace fastops::selective_search
