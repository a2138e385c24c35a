// Colour space conversion and Felzenszwalb-Huttenlocher graph segmentation (IJCV 2004, the
// authors' segment-image code): Gaussian smoothing, the 8-neighbour graph, union-find with the
// k / |C| threshold, then the minimum-size merge.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <numeric>

#include "selective_search/selective_search.h"
#include "selective_search/selective_search_math.h"

namespace fastops::selective_search {
namespace {

// Gaussian smoothing along rows (step 1) or columns (step = width) with edges clamped, as
// segment-image's convolve_even. Taps past the image's extent all clamp to its first and last
// pixel, so they are folded into the last tap, which reaches both: the work stays bounded by the image.
void smooth_axis(const float* in, float* out, int64_t lines, int64_t length, int64_t line_step, int64_t step,
                 const std::vector<float>& mask) {
  const int64_t taps = std::min<int64_t>(static_cast<int64_t>(mask.size()), length);
  std::vector<float> folded(mask.begin(), mask.begin() + taps);
  // tap 0 reads one pixel, the others two (left and right): a one-pixel line takes both sides
  for (size_t i = taps; i < mask.size(); ++i) folded[taps - 1] += taps == 1 ? 2 * mask[i] : mask[i];
  for (int64_t line = 0; line < lines; ++line) {
    const float* src = in + line * line_step;
    float* dst = out + line * line_step;
    for (int64_t x = 0; x < length; ++x) {
      float sum = folded[0] * src[x * step];
      for (int64_t i = 1; i < taps; ++i) {
        const int64_t left = std::max<int64_t>(x - i, 0), right = std::min<int64_t>(x + i, length - 1);
        sum += folded[i] * (src[left * step] + src[right * step]);
      }
      dst[x * step] = sum;
    }
  }
}

Planes smooth(const Planes& image, double sigma) {
  Planes out = image;
  if (sigma <= 0 || image.pixels() == 0) return out;
  sigma = std::max(sigma, 0.01);
  const int64_t length = static_cast<int64_t>(std::ceil(sigma * 4)) + 1;
  std::vector<float> mask(length);
  double sum = 0;
  for (int64_t i = 0; i < length; ++i) {
    const double v = std::exp(-0.5 * (i / sigma) * (i / sigma));
    mask[i] = static_cast<float>(v);
    sum += i == 0 ? v : 2 * v;
  }
  for (float& m : mask) m = static_cast<float>(m / sum);
  std::vector<float> tmp(image.pixels());
  for (int64_t c = 0; c < image.channels; ++c) {
    smooth_axis(image.plane(c), tmp.data(), image.height, image.width, image.width, 1, mask);
    smooth_axis(tmp.data(), out.plane(c), image.width, image.height, 1, image.width, mask);
  }
  return out;
}

// Stable LSD radix sort of the edges by weight (non-negative floats order as their bits).
void sort_by_weight(std::vector<Edge>& edges) {
  std::vector<Edge> buffer(edges.size());
  constexpr int kBits = 11;
  constexpr uint32_t kBuckets = 1u << kBits;
  for (int shift = 0; shift < 32; shift += kBits) {
    std::array<int64_t, kBuckets + 1> start{};
    auto key = [shift](const Edge& e) {
      uint32_t bits;
      std::memcpy(&bits, &e.weight, sizeof(bits));
      return (bits >> shift) & (kBuckets - 1);
    };
    for (const Edge& e : edges) ++start[key(e) + 1];
    if (start[1] == static_cast<int64_t>(edges.size())) continue;  // every key 0 in this digit
    std::partial_sum(start.begin(), start.end(), start.begin());
    for (const Edge& e : edges) buffer[start[key(e)]++] = e;
    edges.swap(buffer);
  }
}

// Disjoint sets with union by rank and path halving; each root keeps its size and threshold.
struct Forest {
  std::vector<int32_t> parent, size;
  std::vector<uint8_t> rank;
  explicit Forest(int64_t n) : parent(n), size(n, 1), rank(n, 0) { std::iota(parent.begin(), parent.end(), 0); }
  int32_t find(int32_t x) {
    while (parent[x] != x) {
      parent[x] = parent[parent[x]];
      x = parent[x];
    }
    return x;
  }
  int32_t join(int32_t a, int32_t b) {
    if (rank[a] < rank[b]) std::swap(a, b);
    if (rank[a] == rank[b]) ++rank[a];
    parent[b] = a;
    size[a] += size[b];
    return a;
  }
};

}  // namespace

Planes convert(const Planes& rgb, ColourSpace space) {
  Planes out;
  out.height = rgb.height;
  out.width = rgb.width;
  out.channels = (space == ColourSpace::Hue || space == ColourSpace::Intensity) ? 1 : 3;
  const int64_t n = rgb.pixels();
  out.values.resize(out.channels * n);
  const float *r = rgb.plane(0), *g = rgb.plane(1), *b = rgb.plane(2);
  float* dst = out.values.data();
  for (int64_t p = 0; p < n; ++p) {
    float v[3];
    switch (space) {
      case ColourSpace::Hsv:
      case ColourSpace::Hue:  // the hue plane of HSV
        rgb_to_hsv(r[p], g[p], b[p], v);
        break;
      case ColourSpace::Lab: rgb_to_lab(r[p], g[p], b[p], v); break;
      case ColourSpace::RgI: rgb_to_rgi(r[p], g[p], b[p], v); break;
      case ColourSpace::Intensity:
        rgb_to_rgi(r[p], g[p], b[p], v);
        v[0] = v[2];
        break;
    }
    for (int64_t c = 0; c < out.channels; ++c) dst[c * n + p] = v[c];
  }
  return out;
}

std::vector<Edge> sorted_edges(const Planes& image, double sigma) {
  const Planes smoothed = smooth(image, sigma);
  const int64_t h = image.height, w = image.width, channels = image.channels;
  std::vector<Edge> edges;
  edges.reserve(4 * image.pixels());
  auto distance = [&](int64_t p, int64_t q) {
    float sum = 0;
    for (int64_t c = 0; c < channels; ++c) {
      const float d = smoothed.plane(c)[p] - smoothed.plane(c)[q];
      sum += d * d;
    }
    return std::sqrt(sum);
  };
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const int64_t p = y * w + x;
      auto add = [&](int64_t q) {
        edges.push_back({distance(p, q), static_cast<int32_t>(p), static_cast<int32_t>(q)});
      };
      if (x + 1 < w) add(p + 1);
      if (y + 1 < h) add(p + w);
      if (x + 1 < w && y + 1 < h) add(p + w + 1);
      if (x + 1 < w && y > 0) add(p - w + 1);
    }
  }
  sort_by_weight(edges);
  return edges;
}

int32_t segment_graph(const std::vector<Edge>& edges, int64_t num_pixels, double k, int64_t min_size,
                      std::vector<int32_t>& labels) {
  Forest forest(num_pixels);
  std::vector<float> threshold(num_pixels, static_cast<float>(k));
  for (const Edge& e : edges) {
    int32_t a = forest.find(e.a), b = forest.find(e.b);
    if (a != b && e.weight <= threshold[a] && e.weight <= threshold[b]) {
      a = forest.join(a, b);
      threshold[a] = e.weight + static_cast<float>(k / forest.size[a]);
    }
  }
  for (const Edge& e : edges) {
    const int32_t a = forest.find(e.a), b = forest.find(e.b);
    if (a != b && (forest.size[a] < min_size || forest.size[b] < min_size)) forest.join(a, b);
  }
  labels.assign(num_pixels, -1);
  std::vector<int32_t> label_of_root(num_pixels, -1);
  int32_t count = 0;
  for (int64_t p = 0; p < num_pixels; ++p) {
    const int32_t root = forest.find(static_cast<int32_t>(p));
    if (label_of_root[root] < 0) label_of_root[root] = count++;
    labels[p] = label_of_root[root];
  }
  return count;
}

}  // namespace fastops::selective_search
