// CPU kernel of panoptic_quality_stats: per image, the (ground-truth segment, predicted segment)
// pixel histogram, then the COCO panoptic API's matching (pq_compute): a pair of one category
// matches when IoU > 0.5, the predicted segment's void pixels taken out of the union; crowd
// ground truth is never matched; an unmatched predicted segment whose pixels are more than half
// void or crowd of its category is no false positive. Images run in parallel (coco_eval's
// share_work), their counts are summed in image order, so results do not depend on the threads.
#include <algorithm>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include <ATen/core/Tensor.h>
#include <ATen/ops/zeros.h>
#include <c10/util/StringUtil.h>
#include <torch/library.h>

#include "common/work_sharing.h"

namespace fastops::panoptic_quality {
namespace {

constexpr const char* kOp = "panoptic_quality_stats";

void check_1d_long(const at::Tensor& t, const char* name) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kLong, kOp, ": ", name, " must be int64, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() == 1, kOp, ": ", name, " must be 1-D, got shape ", t.sizes());
  TORCH_CHECK(t.device().is_cpu(), kOp, ": ", name, " must be a CPU tensor, got ", t.device());
}

// [N + 1] nondecreasing offsets from 0 to n.
void check_offsets(const at::Tensor& t, const char* name, int64_t images, int64_t n) {
  check_1d_long(t, name);
  TORCH_CHECK_VALUE(t.size(0) == images + 1, kOp, ": ", name, " must have shape [", images + 1, "], got ", t.sizes());
  const at::Tensor c = t.contiguous();
  const int64_t* o = c.const_data_ptr<int64_t>();
  bool ok = o[0] == 0 && o[images] == n;
  for (int64_t i = 0; ok && i < images; ++i) ok = o[i] <= o[i + 1];
  TORCH_CHECK_VALUE(ok, kOp, ": ", name, " must be nondecreasing offsets from 0 to ", n);
}

// Segment rows [S, width] of int64: column 1 a category index below k, column 2 (when present) 0 or 1.
void check_segments(const at::Tensor& t, const char* name, int64_t width, int64_t k) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kLong, kOp, ": ", name, " must be int64, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() == 2 && t.size(1) == width, kOp, ": ", name, " must have shape [S, ", width, "], got ",
                    t.sizes());
  TORCH_CHECK(t.device().is_cpu(), kOp, ": ", name, " must be a CPU tensor, got ", t.device());
  const at::Tensor c = t.contiguous();
  const int64_t* s = c.const_data_ptr<int64_t>();
  for (int64_t r = 0; r < t.size(0); ++r) {
    TORCH_CHECK_VALUE(s[r * width + 1] >= 0 && s[r * width + 1] < k, kOp, ": ", name, "[", r, "] has category index ",
                      s[r * width + 1], ", outside [0, ", k, ")");
    TORCH_CHECK_VALUE(width < 3 || s[r * width + 2] == 0 || s[r * width + 2] == 1, kOp, ": ", name, "[", r,
                      "] has iscrowd ", s[r * width + 2], ", not 0 or 1");
  }
}

struct Stats {
  std::vector<double> tp, fp, fn, iou;
  explicit Stats(int64_t k) : tp(k), fp(k), fn(k), iou(k) {}
};

// One side's segments in one image: local index 0 is void, 1.. the segments; the ground truth
// has one more, for pixels whose id is listed nowhere (neither matched nor void, as the API has it).
struct Segments {
  std::vector<int64_t> category;  // per local index; -1 for void and unlisted
  std::vector<char> crowd;
  std::unordered_map<int64_t, int32_t> index_of;  // id -> local index
};

class ImageEval {
 public:
  ImageEval(int64_t k, const int64_t* category_of, int64_t table_size, int64_t label_divisor)
      : k_(k), category_of_(category_of), table_size_(table_size), label_divisor_(label_divisor) {}

  // Counts of one image into `out` (its own Stats); returns an error message, empty when fine.
  std::string run(const int64_t* gt, const int64_t* pred, int64_t pixels, const int64_t* gt_seg, int64_t gt_count,
                  const int64_t* pred_seg, int64_t pred_count, bool listed, Stats& out) {
    gt_ = reset();
    pred_ = reset();
    if (listed) {
      if (auto e = read_list(gt_, gt_seg, gt_count, 3, "ground-truth"); !e.empty()) return e;
      if (auto e = read_list(pred_, pred_seg, pred_count, 2, "predicted"); !e.empty()) return e;
    }
    const int32_t unlisted_gt = listed ? static_cast<int32_t>(gt_.category.size()) : -1;
    // One pass over the pixels as runs of equal (gt id, pred id) pairs: ids are looked up only where
    // a run ends, and each run adds its length to its pair's count.
    // Consecutive runs mostly share one side's id, so each side keeps its last lookup.
    runs_.clear();
    int64_t p = 0, last_g_id = 0, last_p_id = 0;
    int32_t gi = -2, pi = -2;
    while (p < pixels) {
      const int64_t g_id = gt[p], p_id = pred[p];
      int64_t end = p + 1;
      while (end < pixels && gt[end] == g_id && pred[end] == p_id) ++end;
      if (gi == -2 || g_id != last_g_id) {
        gi = lookup(gt_, g_id, listed, unlisted_gt);
        last_g_id = g_id;
      }
      if (pi == -2 || p_id != last_p_id) {
        pi = lookup(pred_, p_id, listed, -1);
        last_p_id = p_id;
      }
      if (pi < 0) return c10::str("predicted map has segment id ", p_id, ", which its segment list lacks");
      runs_.push_back({gi, pi, end - p});
      p = end;
    }
    const int64_t ng = static_cast<int64_t>(gt_.category.size()) + (listed ? 1 : 0);
    const int64_t np = static_cast<int64_t>(pred_.category.size());
    pair_counts(ng, np);
    return match(ng, np, out);
  }

 private:
  static Segments reset() {
    Segments s;
    s.category.push_back(-1);  // void
    s.crowd.push_back(0);
    return s;
  }

  std::string read_list(Segments& s, const int64_t* rows, int64_t count, int64_t width, const char* side) {
    for (int64_t r = 0; r < count; ++r) {
      const int64_t id = rows[r * width];
      if (id == 0) return c10::str(side, " segment list has id 0, the void label");
      const auto [it, fresh] = s.index_of.emplace(id, static_cast<int32_t>(s.category.size()));
      if (!fresh) return c10::str(side, " segment list has id ", id, " twice");
      s.category.push_back(rows[r * width + 1]);
      s.crowd.push_back(width > 2 ? static_cast<char>(rows[r * width + 2]) : 0);
    }
    return {};
  }

  // Local index of `id`: listed segments from the list (`missing` when absent, id 0 void); else a
  // new segment per category-table hit, void otherwise.
  int32_t lookup(Segments& s, int64_t id, bool listed, int32_t missing) {
    if (listed) {
      if (id == 0) return 0;
      const auto it = s.index_of.find(id);
      return it == s.index_of.end() ? missing : it->second;
    }
    const auto it = s.index_of.find(id);
    if (it != s.index_of.end()) return it->second;
    const int64_t raw = id >= 0 ? id / label_divisor_ : -1;
    const int64_t category = raw >= 0 && raw < table_size_ ? category_of_[raw] : -1;
    const int32_t index = category < 0 ? 0 : static_cast<int32_t>(s.category.size());
    if (category >= 0) {
      s.category.push_back(category);
      s.crowd.push_back(0);
    }
    s.index_of.emplace(id, index);
    return index;
  }

  // The nonzero (gt, pred) pixel counts as pairs_, in (gt, pred) order: from a dense histogram
  // when ng x np is small, else by sorting the runs (an image of thousands of segments on each
  // side must not allocate ng x np counts).
  void pair_counts(int64_t ng, int64_t np) {
    pairs_.clear();
    if (ng * np <= (int64_t{1} << 20)) {
      hist_.assign(ng * np, 0);
      for (const Run& r : runs_) hist_[r.gt * np + r.pred] += r.length;
      for (int64_t g = 0; g < ng; ++g) {
        for (int64_t p = 0; p < np; ++p) {
          if (hist_[g * np + p] != 0)
            pairs_.push_back({static_cast<int32_t>(g), static_cast<int32_t>(p), hist_[g * np + p]});
        }
      }
      return;
    }
    std::sort(runs_.begin(), runs_.end(),
              [](const Run& a, const Run& b) { return a.gt != b.gt ? a.gt < b.gt : a.pred < b.pred; });
    for (const Run& r : runs_) {
      if (!pairs_.empty() && pairs_.back().gt == r.gt && pairs_.back().pred == r.pred) {
        pairs_.back().length += r.length;
      } else {
        pairs_.push_back(r);
      }
    }
  }

  std::string match(int64_t ng, int64_t np, Stats& out) {
    const int64_t gt_segments = static_cast<int64_t>(gt_.category.size());
    std::vector<int64_t> area_g(ng, 0), area_p(np, 0), void_p(np, 0);
    for (const Run& c : pairs_) {
      area_g[c.gt] += c.length;
      area_p[c.pred] += c.length;
      if (c.gt == 0) void_p[c.pred] = c.length;
    }
    for (int64_t p = 1; p < np; ++p) {
      if (area_p[p] == 0) {
        for (const auto& [id, index] : pred_.index_of) {
          if (index == p) return c10::str("predicted segment id ", id, " is listed but absent from its map");
        }
      }
    }
    std::vector<char> gt_matched(ng, 0), pred_matched(np, 0);
    for (const Run& c : pairs_) {
      const int64_t g = c.gt, p = c.pred;
      if (g == 0 || g >= gt_segments || p == 0 || gt_.crowd[g]) continue;
      const int64_t cat = gt_.category[g];
      if (pred_.category[p] != cat) continue;
      const int64_t uni = area_p[p] + area_g[g] - c.length - void_p[p];
      const double iou = static_cast<double>(c.length) / static_cast<double>(uni);
      if (iou > 0.5) {
        out.tp[cat] += 1;
        out.iou[cat] += iou;
        gt_matched[g] = 1;
        pred_matched[p] = 1;
      }
    }
    std::vector<int64_t> crowd_of(k_, -1);  // the last crowd segment of each category, as the API keeps
    for (int64_t g = 1; g < gt_segments; ++g) {
      if (gt_matched[g]) continue;
      if (gt_.crowd[g]) {
        crowd_of[gt_.category[g]] = g;
        continue;
      }
      out.fn[gt_.category[g]] += 1;
    }
    // pixels of each predicted segment on void or on the crowd region of its category
    std::vector<int64_t> ignored = void_p;
    for (const Run& c : pairs_) {
      if (c.gt > 0 && c.gt < gt_segments && c.pred > 0 && gt_.crowd[c.gt] && crowd_of[gt_.category[c.gt]] == c.gt &&
          pred_.category[c.pred] == gt_.category[c.gt]) {
        ignored[c.pred] += c.length;
      }
    }
    for (int64_t p = 1; p < np; ++p) {
      if (pred_matched[p]) continue;
      if (static_cast<double>(ignored[p]) / static_cast<double>(area_p[p]) > 0.5) continue;
      out.fp[pred_.category[p]] += 1;
    }
    return {};
  }

  int64_t k_;
  const int64_t* category_of_;
  int64_t table_size_, label_divisor_;
  Segments gt_, pred_;
  struct Run {
    int32_t gt, pred;
    int64_t length;
  };
  std::vector<Run> runs_, pairs_;  // pairs_: (gt, pred, pixel count)
  std::vector<int64_t> hist_;
};

at::Tensor panoptic_quality_stats_cpu(const at::Tensor& gt_maps, const at::Tensor& pred_maps,
                                      const at::Tensor& pixel_offsets, const std::optional<at::Tensor>& gt_segments,
                                      const std::optional<at::Tensor>& gt_segment_offsets,
                                      const std::optional<at::Tensor>& pred_segments,
                                      const std::optional<at::Tensor>& pred_segment_offsets,
                                      const at::Tensor& category_of, int64_t num_categories, int64_t label_divisor) {
  check_1d_long(gt_maps, "gt_maps");
  check_1d_long(pred_maps, "pred_maps");
  TORCH_CHECK_VALUE(gt_maps.size(0) == pred_maps.size(0), kOp,
                    ": gt_maps and pred_maps must have the same length, got ", gt_maps.size(0), " and ",
                    pred_maps.size(0));
  check_1d_long(pixel_offsets, "pixel_offsets");
  TORCH_CHECK_VALUE(pixel_offsets.size(0) >= 1, kOp, ": pixel_offsets must have shape [N + 1], got ",
                    pixel_offsets.sizes());
  const int64_t images = pixel_offsets.size(0) - 1;
  check_offsets(pixel_offsets, "pixel_offsets", images, gt_maps.size(0));
  TORCH_CHECK_VALUE(num_categories >= 0, kOp, ": num_categories must be >= 0, got ", num_categories);
  TORCH_CHECK_VALUE(label_divisor >= 1, kOp, ": label_divisor must be >= 1, got ", label_divisor);
  check_1d_long(category_of, "category_of");
  const at::Tensor table = category_of.contiguous();
  for (int64_t i = 0; i < table.size(0); ++i) {
    const int64_t c = table.const_data_ptr<int64_t>()[i];
    TORCH_CHECK_VALUE(c >= -1 && c < num_categories, kOp, ": category_of[", i, "] = ", c, " must lie in [-1, ",
                      num_categories, ")");
  }
  const bool listed = gt_segments.has_value();
  TORCH_CHECK_VALUE(listed == gt_segment_offsets.has_value() && listed == pred_segments.has_value() &&
                        listed == pred_segment_offsets.has_value(),
                    kOp, ": gt_segments, gt_segment_offsets, pred_segments and pred_segment_offsets go together");
  at::Tensor gs, ps, go, po;
  if (listed) {
    check_segments(*gt_segments, "gt_segments", 3, num_categories);
    check_segments(*pred_segments, "pred_segments", 2, num_categories);
    check_offsets(*gt_segment_offsets, "gt_segment_offsets", images, gt_segments->size(0));
    check_offsets(*pred_segment_offsets, "pred_segment_offsets", images, pred_segments->size(0));
    gs = gt_segments->contiguous();
    ps = pred_segments->contiguous();
    go = gt_segment_offsets->contiguous();
    po = pred_segment_offsets->contiguous();
  }
  const at::Tensor gt = gt_maps.contiguous(), pred = pred_maps.contiguous(), px = pixel_offsets.contiguous();
  const int64_t* pxo = px.const_data_ptr<int64_t>();
  std::vector<Stats> per_image(images, Stats(0));
  std::vector<std::string> errors(images);
  const int64_t mean_pixels = images > 0 ? std::max<int64_t>(1, gt.size(0) / images) : 1;
  const int64_t grain = std::max<int64_t>(1, (1 << 18) / mean_pixels);  // chunks of about 2^18 pixels
  coco_eval::share_work(images, grain, [&](int64_t begin, int64_t end) {
    ImageEval eval(num_categories, table.const_data_ptr<int64_t>(), table.size(0), label_divisor);
    for (int64_t i = begin; i < end; ++i) {
      per_image[i] = Stats(num_categories);
      const int64_t* gseg = listed ? gs.const_data_ptr<int64_t>() + 3 * go.const_data_ptr<int64_t>()[i] : nullptr;
      const int64_t* pseg = listed ? ps.const_data_ptr<int64_t>() + 2 * po.const_data_ptr<int64_t>()[i] : nullptr;
      const int64_t gcount = listed ? go.const_data_ptr<int64_t>()[i + 1] - go.const_data_ptr<int64_t>()[i] : 0;
      const int64_t pcount = listed ? po.const_data_ptr<int64_t>()[i + 1] - po.const_data_ptr<int64_t>()[i] : 0;
      errors[i] = eval.run(gt.const_data_ptr<int64_t>() + pxo[i], pred.const_data_ptr<int64_t>() + pxo[i],
                           pxo[i + 1] - pxo[i], gseg, gcount, pseg, pcount, listed, per_image[i]);
    }
  });
  for (int64_t i = 0; i < images; ++i) {
    TORCH_CHECK_VALUE(errors[i].empty(), kOp, ": image ", i, ": ", errors[i]);
  }
  at::Tensor out = at::zeros({num_categories, 4}, gt_maps.options().dtype(at::kDouble));
  double* o = out.mutable_data_ptr<double>();
  for (int64_t i = 0; i < images; ++i) {
    const Stats& s = per_image[i];
    for (int64_t c = 0; c < num_categories; ++c) {
      o[4 * c] += s.tp[c];
      o[4 * c + 1] += s.fp[c];
      o[4 * c + 2] += s.fn[c];
      o[4 * c + 3] += s.iou[c];
    }
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastops, CPU, m) { m.impl("panoptic_quality_stats", &panoptic_quality_stats_cpu); }

}  // namespace fastops::panoptic_quality
