// Region features of selective search (Uijlings et al. 2013, section 3.2): per-pixel colour and
// texture bins of a colour space, and the initial regions' sizes, boxes, histograms and adjacency.
//
// Texture: the paper's Gaussian derivatives (sigma = 1) in 8 orientations per channel. The first
// Gaussian derivative is steerable, so the response at angle t is cos(t) Gx + sin(t) Gy exactly;
// the 8 orientations are t = 0, 45, ..., 315 degrees, each half-wave rectified (t and t + 180
// are the two signs of one derivative), binned in 10 bins between 0 and the map's maximum.
#include <algorithm>
#include <climits>
#include <cmath>

#include "selective_search/selective_search.h"
#include "selective_search/selective_search_math.h"

namespace fastops::selective_search {
namespace {

constexpr int kRadius = 3;  // taps of the sigma = 1 Gaussian and its derivative: 3 sigma

// out[y][x] = sum_i a[i] * in[y][x + i] then sum_j b[j] * (that)[y + j], edges clamped.
void separable(const float* in, float* out, int64_t h, int64_t w, const float* along_x, const float* along_y) {
  std::vector<float> tmp(h * w);
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      float sum = 0;
      for (int i = -kRadius; i <= kRadius; ++i)
        sum += along_x[i + kRadius] * in[y * w + std::clamp<int64_t>(x + i, 0, w - 1)];
      tmp[y * w + x] = sum;
    }
  }
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      float sum = 0;
      for (int j = -kRadius; j <= kRadius; ++j)
        sum += along_y[j + kRadius] * tmp[std::clamp<int64_t>(y + j, 0, h - 1) * w + x];
      out[y * w + x] = sum;
    }
  }
}

}  // namespace

PixelBins pixel_bins(const Planes& image) {
  const int64_t n = image.pixels(), channels = image.channels, h = image.height, w = image.width;
  PixelBins bins;
  bins.channels = channels;
  bins.colour.resize(n * channels);
  bins.texture.resize(n * channels * kOrientations);
  for (int64_t c = 0; c < channels; ++c) {
    const float* plane = image.plane(c);
    for (int64_t p = 0; p < n; ++p)
      bins.colour[p * channels + c] = static_cast<uint8_t>(value_bin(plane[p], kColourBins));
  }
  float gauss[2 * kRadius + 1], deriv[2 * kRadius + 1];
  float total = 0;
  for (int i = -kRadius; i <= kRadius; ++i) total += gauss[i + kRadius] = std::exp(-0.5f * i * i);
  for (int i = -kRadius; i <= kRadius; ++i) {
    gauss[i + kRadius] /= total;
    deriv[i + kRadius] = static_cast<float>(i) * gauss[i + kRadius];
  }
  const float s = std::sqrt(0.5f);
  const float cosines[kOrientations] = {1, s, 0, -s, -1, -s, 0, s};
  const float sines[kOrientations] = {0, s, 1, s, 0, -s, -1, -s};
  std::vector<float> gx(n), gy(n);
  for (int64_t c = 0; c < channels; ++c) {
    separable(image.plane(c), gx.data(), h, w, deriv, gauss);
    separable(image.plane(c), gy.data(), h, w, gauss, deriv);
    float peak[kOrientations] = {};
    for (int64_t p = 0; p < n; ++p) {
      for (int d = 0; d < kOrientations; ++d) peak[d] = std::max(peak[d], cosines[d] * gx[p] + sines[d] * gy[p]);
    }
    float scale[kOrientations];
    for (int d = 0; d < kOrientations; ++d) scale[d] = peak[d] > 0 ? kTextureBins / peak[d] : 0.0f;
    for (int64_t p = 0; p < n; ++p) {
      uint8_t* out = bins.texture.data() + (p * channels + c) * kOrientations;
      for (int d = 0; d < kOrientations; ++d) {
        const float response = std::max(cosines[d] * gx[p] + sines[d] * gy[p], 0.0f);
        out[d] = static_cast<uint8_t>(std::min(static_cast<int>(response * scale[d]), kTextureBins - 1));
      }
    }
  }
  return bins;
}

Regions initial_regions(const std::vector<int32_t>& labels, int32_t count, int64_t height, int64_t width,
                        const PixelBins& bins) {
  Regions r;
  const int64_t channels = bins.channels;
  r.count = count;
  r.colour_length = channels * kColourBins;
  r.texture_length = channels * kOrientations * kTextureBins;
  const int64_t length = r.colour_length + r.texture_length;
  r.sizes.assign(count, 0);
  r.boxes.assign(count, Box{INT32_MAX, INT32_MAX, -1, -1});
  r.histograms.assign(static_cast<size_t>(count) * length, 0.0f);
  std::vector<uint64_t> keys;
  for (int64_t y = 0; y < height; ++y) {
    for (int64_t x = 0; x < width; ++x) {
      const int64_t p = y * width + x;
      const int32_t l = labels[p];
      ++r.sizes[l];
      Box& box = r.boxes[l];
      box.x1 = std::min(box.x1, static_cast<int32_t>(x));
      box.y1 = std::min(box.y1, static_cast<int32_t>(y));
      box.x2 = std::max(box.x2, static_cast<int32_t>(x + 1));
      box.y2 = std::max(box.y2, static_cast<int32_t>(y + 1));
      float* hist = r.histograms.data() + static_cast<int64_t>(l) * length;
      for (int64_t c = 0; c < channels; ++c) hist[c * kColourBins + bins.colour[p * channels + c]] += 1;
      const uint8_t* texture = bins.texture.data() + p * channels * kOrientations;
      for (int64_t t = 0; t < channels * kOrientations; ++t) hist[r.colour_length + t * kTextureBins + texture[t]] += 1;
      auto neighbour = [&](int64_t q) {
        const int32_t m = labels[q];
        if (m == l) return;
        const uint64_t key = (static_cast<uint64_t>(std::min(l, m)) << 32) | static_cast<uint32_t>(std::max(l, m));
        if (keys.empty() || keys.back() != key) keys.push_back(key);
      };
      if (x + 1 < width) neighbour(p + 1);
      if (y + 1 < height) neighbour(p + width);
      if (x + 1 < width && y + 1 < height) neighbour(p + width + 1);
      if (x + 1 < width && y > 0) neighbour(p - width + 1);
    }
  }
  for (int32_t l = 0; l < count; ++l) {
    float* hist = r.histograms.data() + static_cast<int64_t>(l) * length;
    const float colour_norm = 1.0f / static_cast<float>(r.sizes[l] * channels);
    const float texture_norm = colour_norm / kOrientations;
    for (int64_t i = 0; i < r.colour_length; ++i) hist[i] *= colour_norm;
    for (int64_t i = r.colour_length; i < length; ++i) hist[i] *= texture_norm;
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  r.pairs.reserve(keys.size());
  for (uint64_t key : keys)
    r.pairs.emplace_back(static_cast<int32_t>(key >> 32), static_cast<int32_t>(key & 0xffffffffu));
  return r;
}

}  // namespace fastops::selective_search
