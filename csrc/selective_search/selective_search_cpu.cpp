// CPU implementation of selective_search. The strategies are independent: the colour spaces are
// converted, binned and their graph edges sorted in parallel, then each (colour space, k)
// segmentation and its groupings run in parallel (coco_eval's share_work, which never waits for a
// thread the scheduler has not started). The proposals are ranked and deduplicated afterwards in
// one fixed order, so the result does not depend on the thread count. CUDA inputs are copied to
// the host, computed there and the boxes copied back (the grouping is sequential per strategy).
#include <algorithm>
#include <numeric>
#include <tuple>
#include <type_traits>
#include <vector>

#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "common/work_sharing.h"
#include "selective_search/selective_search.h"
#include "selective_search/selective_search_math.h"

namespace fastops::selective_search {
namespace {

// The image as RGB planes on the 0..255 scale (float inputs scaled by 255); any strides.
template <typename T>
Planes read_rgb(const at::Tensor& image) {
  Planes rgb;
  rgb.channels = 3;
  rgb.height = image.size(1);
  rgb.width = image.size(2);
  rgb.values.resize(3 * rgb.pixels());
  const T* data = image.const_data_ptr<T>();
  const int64_t sc = image.stride(0), sy = image.stride(1), sx = image.stride(2);
  constexpr bool is_byte = std::is_same_v<T, uint8_t>;
  bool in_range = true;
  for (int64_t c = 0; c < 3; ++c) {
    float* out = rgb.plane(c);
    for (int64_t y = 0; y < rgb.height; ++y) {
      for (int64_t x = 0; x < rgb.width; ++x) {
        const float v = static_cast<float>(data[c * sc + y * sy + x * sx]);
        if constexpr (is_byte) {
          out[y * rgb.width + x] = v;
        } else {
          in_range &= v >= 0.0f && v <= 1.0f;  // false for NaN
          out[y * rgb.width + x] = v * 255.0f;
        }
      }
    }
  }
  TORCH_CHECK_VALUE(in_range, "selective_search: a float image must hold values in [0, 1] (no NaN)");
  return rgb;
}

// A proposal before ranking: its rank value, where it comes from and its box.
struct Candidate {
  double rank;
  int32_t strategy, position;
  Box box;
};

bool same_box(const Box& p, const Box& q) { return p.x1 == q.x1 && p.y1 == q.y1 && p.x2 == q.x2 && p.y2 == q.y2; }

bool box_less(const Box& p, const Box& q) {
  return std::tie(p.x1, p.y1, p.x2, p.y2) < std::tie(q.x1, q.y1, q.x2, q.y2);
}

at::Tensor selective_search_cpu(const at::Tensor& image, c10::string_view mode_view, at::ArrayRef<double> ks,
                                double sigma, int64_t min_size, int64_t max_proposals, int64_t seed) {
  const std::string mode(mode_view);
  check_args(image, mode, ks, sigma, min_size, max_proposals);
  const int64_t height = image.size(1), width = image.size(2), pixels = height * width;
  auto options = image.options().dtype(at::kFloat);
  if (pixels == 0 || max_proposals == 0) return at::empty({0, 4}, options);
  Planes rgb;
  AT_DISPATCH_FLOATING_TYPES_AND3(at::kByte, at::kHalf, at::kBFloat16, image.scalar_type(), "selective_search",
                                  [&] { rgb = read_rgb<scalar_t>(image); });
  const Plan plan = make_plan(mode, std::vector<double>(ks.begin(), ks.end()), sigma, min_size);
  const int64_t num_spaces = static_cast<int64_t>(plan.colour_spaces.size());
  const int64_t num_ks = static_cast<int64_t>(plan.ks.size());
  const int64_t num_sims = static_cast<int64_t>(plan.similarities.size());

  // colour spaces: conversion, per-pixel bins, the sorted edges (shared by every k)
  std::vector<PixelBins> bins(num_spaces);
  std::vector<std::vector<Edge>> edges(num_spaces);
  coco_eval::share_work(num_spaces, 1, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) {
      const Planes planes = convert(rgb, plan.colour_spaces[s]);
      bins[s] = pixel_bins(planes);
      edges[s] = sorted_edges(planes, plan.sigma);
    }
  });

  // (colour space, k): segmentation, initial regions, then each similarity set's grouping
  std::vector<std::vector<Box>> hierarchies(num_spaces * num_ks * num_sims);
  coco_eval::share_work(num_spaces * num_ks, 1, [&](int64_t begin, int64_t end) {
    std::vector<int32_t> labels;
    for (int64_t u = begin; u < end; ++u) {
      const int64_t s = u / num_ks;
      const double k = plan.ks[u % num_ks];
      // the paper's minSize = k; a k past the pixel count merges everything, as the pixel count does
      const int64_t min_size =
          plan.min_size >= 0 ? plan.min_size : static_cast<int64_t>(std::min(k, static_cast<double>(pixels)));
      const int32_t count = segment_graph(edges[s], pixels, k, min_size, labels);
      const Regions regions = initial_regions(labels, count, height, width, bins[s]);
      for (int64_t m = 0; m < num_sims; ++m) {
        hierarchies[u * num_sims + m] = hierarchical_grouping(regions, plan.similarities[m], pixels);
      }
    }
  });

  // The paper's ranking: within a hierarchy the region created last (the whole image) has position
  // 1, the one before it 2, and so on; a region's rank value is its position times a uniform random
  // number. All strategies' regions sorted by that value, duplicates dropped after ranking.
  std::vector<Candidate> candidates;
  for (int64_t h = 0; h < static_cast<int64_t>(hierarchies.size()); ++h) {
    const auto& boxes = hierarchies[h];
    const int64_t count = static_cast<int64_t>(boxes.size());
    for (int64_t j = 0; j < count; ++j) {
      const int64_t position = count - j;
      const double rank = uniform_hash(seed, h, position) * static_cast<double>(position);
      candidates.push_back({rank, static_cast<int32_t>(h), static_cast<int32_t>(position), boxes[j]});
    }
  }
  std::sort(candidates.begin(), candidates.end(), [](const Candidate& p, const Candidate& q) {
    return std::tie(p.rank, p.strategy, p.position) < std::tie(q.rank, q.strategy, q.position);
  });
  // first occurrence of each box in rank order: sort indices by (box, rank index), keep each group's first
  std::vector<int64_t> order(candidates.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int64_t i, int64_t j) {
    const Box &p = candidates[i].box, &q = candidates[j].box;
    if (!same_box(p, q)) return box_less(p, q);
    return i < j;
  });
  std::vector<char> keep(candidates.size(), 0);
  for (size_t i = 0; i < order.size(); ++i) {
    if (i == 0 || !same_box(candidates[order[i]].box, candidates[order[i - 1]].box)) keep[order[i]] = 1;
  }
  int64_t kept = std::accumulate(keep.begin(), keep.end(), int64_t{0});
  if (max_proposals >= 0) kept = std::min(kept, max_proposals);
  at::Tensor out = at::empty({kept, 4}, options);
  float* dst = out.mutable_data_ptr<float>();
  int64_t row = 0;
  for (size_t i = 0; i < candidates.size() && row < kept; ++i) {
    if (!keep[i]) continue;
    const Box& b = candidates[i].box;
    dst[row * 4 + 0] = static_cast<float>(b.x1);
    dst[row * 4 + 1] = static_cast<float>(b.y1);
    dst[row * 4 + 2] = static_cast<float>(b.x2);
    dst[row * 4 + 3] = static_cast<float>(b.y2);
    ++row;
  }
  return out;
}

// CUDA (or other device) inputs: computed on the host, the boxes returned on the input's device.
at::Tensor selective_search_host(const at::Tensor& image, c10::string_view mode, at::ArrayRef<double> ks, double sigma,
                                 int64_t min_size, int64_t max_proposals, int64_t seed) {
  check_args(image, std::string(mode), ks, sigma, min_size, max_proposals);
  return selective_search_cpu(image.cpu(), mode, ks, sigma, min_size, max_proposals, seed).to(image.device());
}

}  // namespace

TORCH_LIBRARY_IMPL(fastops, CPU, m) { m.impl("selective_search", &selective_search_cpu); }

TORCH_LIBRARY_IMPL(fastops, CUDA, m) { m.impl("selective_search", &selective_search_host); }

}  // namespace fastops::selective_search
