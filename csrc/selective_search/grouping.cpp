// Hierarchical grouping of selective search (Uijlings et al. 2013, Algorithm 1): the most similar
// pair of adjacent regions is merged, the merged region's histograms are the size-weighted average
// of its parts', and its similarities to its neighbours replace theirs, until one region is left.
// Pairs wait in a max-heap; entries of merged regions are dropped when they reach the top.
#include <algorithm>
#include <vector>

#include "selective_search/selective_search.h"
#include "selective_search/selective_search_math.h"

namespace fastops::selective_search {
namespace {

struct Pair {
  double similarity;
  int32_t a, b;
};

// Heap order: higher similarity first; ties by the lower (a, b), so the result is fixed.
bool lower_priority(const Pair& x, const Pair& y) {
  if (x.similarity != y.similarity) return x.similarity < y.similarity;
  if (x.a != y.a) return x.a > y.a;
  return x.b > y.b;
}

int64_t area(const Box& b) { return static_cast<int64_t>(b.x2 - b.x1) * (b.y2 - b.y1); }

Box enclosing(const Box& p, const Box& q) {
  return {std::min(p.x1, q.x1), std::min(p.y1, q.y1), std::max(p.x2, q.x2), std::max(p.y2, q.y2)};
}

}  // namespace

std::vector<Box> hierarchical_grouping(const Regions& regions, SimilaritySet similarity, int64_t image_size) {
  const int32_t n = regions.count;
  const int64_t total = n > 0 ? 2 * static_cast<int64_t>(n) - 1 : 0;
  const int64_t length = regions.colour_length + regions.texture_length;
  std::vector<Box> boxes(regions.boxes);
  boxes.reserve(total);
  std::vector<int64_t> sizes(regions.sizes);
  sizes.reserve(total);
  // a region's histograms live in the slot of its first initial region
  std::vector<int32_t> slot(n);
  for (int32_t i = 0; i < n; ++i) slot[i] = i;
  slot.reserve(total);
  const bool needs_histograms = similarity.colour || similarity.texture;
  std::vector<float> histograms;
  if (needs_histograms) histograms = regions.histograms;
  std::vector<std::vector<int32_t>> neighbours(n);
  for (const auto& [a, b] : regions.pairs) {
    neighbours[a].push_back(b);
    neighbours[b].push_back(a);
  }
  neighbours.reserve(total);
  std::vector<char> alive(n, 1);
  alive.reserve(total);

  auto similarity_of = [&](int32_t i, int32_t j) {
    double s = 0;
    if (needs_histograms) {
      const float* hi = histograms.data() + static_cast<int64_t>(slot[i]) * length;
      const float* hj = histograms.data() + static_cast<int64_t>(slot[j]) * length;
      if (similarity.colour) s += intersection(hi, hj, regions.colour_length);
      if (similarity.texture) {
        s += intersection(hi + regions.colour_length, hj + regions.colour_length, regions.texture_length);
      }
    }
    if (similarity.size) s += size_similarity(sizes[i], sizes[j], image_size);
    if (similarity.fill) s += fill_similarity(area(enclosing(boxes[i], boxes[j])), sizes[i], sizes[j], image_size);
    return s;
  };

  std::vector<Pair> heap;
  heap.reserve(regions.pairs.size() * 2);
  for (const auto& [a, b] : regions.pairs) heap.push_back({similarity_of(a, b), a, b});
  std::make_heap(heap.begin(), heap.end(), lower_priority);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), lower_priority);
    const Pair top = heap.back();
    heap.pop_back();
    if (!alive[top.a] || !alive[top.b]) continue;
    const int32_t a = top.a, b = top.b, t = static_cast<int32_t>(boxes.size());
    const int64_t merged_size = sizes[a] + sizes[b];
    if (needs_histograms) {
      float* ha = histograms.data() + static_cast<int64_t>(slot[a]) * length;
      const float* hb = histograms.data() + static_cast<int64_t>(slot[b]) * length;
      const float wa = static_cast<float>(static_cast<double>(sizes[a]) / merged_size);
      const float wb = static_cast<float>(static_cast<double>(sizes[b]) / merged_size);
      for (int64_t i = 0; i < length; ++i) ha[i] = wa * ha[i] + wb * hb[i];
    }
    slot.push_back(slot[a]);
    boxes.push_back(enclosing(boxes[a], boxes[b]));
    sizes.push_back(merged_size);
    alive[a] = alive[b] = 0;
    alive.push_back(1);
    std::vector<int32_t> merged;
    merged.reserve(neighbours[a].size() + neighbours[b].size());
    for (int32_t m : neighbours[a]) {
      if (m != b) merged.push_back(m);
    }
    for (int32_t m : neighbours[b]) {
      if (m != a) merged.push_back(m);
    }
    std::sort(merged.begin(), merged.end());
    merged.erase(std::unique(merged.begin(), merged.end()), merged.end());
    std::vector<int32_t>().swap(neighbours[a]);
    std::vector<int32_t>().swap(neighbours[b]);
    for (int32_t m : merged) {
      auto& list = neighbours[m];
      list.erase(std::remove_if(list.begin(), list.end(), [&](int32_t v) { return v == a || v == b; }), list.end());
      list.push_back(t);
      heap.push_back({similarity_of(m, t), std::min(m, t), std::max(m, t)});
      std::push_heap(heap.begin(), heap.end(), lower_priority);
    }
    neighbours.push_back(std::move(merged));
  }
  return boxes;
}

}  // namespace fastops::selective_search
