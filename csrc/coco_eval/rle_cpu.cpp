// CPU ops of the RLE mask API (schemas in coco_eval.cpp): tensors in, tensors out. A batch of RLEs
// is counts (int32 holding uint32 values), offsets [n + 1] (int64) and sizes hw [n, 2] (int64).
#include <algorithm>
#include <cmath>
#include <cstring>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <torch/library.h>

#include "coco_eval/rle.h"

namespace fastops::coco_eval::rle {

constinit cpu::KernelTable<Kernels> kernels_cpu{};

namespace {

const Kernels& K() { return *kernels_cpu.get(); }

void check_t(const char* op, const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t dim) {
  TORCH_CHECK_TYPE(t.scalar_type() == dtype, op, ": ", name, " must be ", dtype, ", got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() == dim, op, ": ", name, " must be ", dim, "-D, got shape ", t.sizes());
  TORCH_CHECK(t.device().is_cpu(), op, ": ", name, " must be a CPU tensor, got ", t.device());
}

// A batch view of (counts, offsets, hw); the tensors must outlive it (contiguous copies are kept).
struct BatchArg {
  at::Tensor counts, offsets, hw;
  Batch b;
  BatchArg(const char* op, const at::Tensor& c, const at::Tensor& o, const at::Tensor& h)
      : counts(c.contiguous()), offsets(o.contiguous()), hw(h.contiguous()) {
    check_t(op, counts, "counts", at::kInt, 1);
    check_t(op, offsets, "offsets", at::kLong, 1);
    check_t(op, hw, "hw", at::kLong, 2);
    const int64_t n = offsets.size(0) - 1;
    TORCH_CHECK_VALUE(n >= 0 && hw.size(0) == n && hw.size(1) == 2, op, ": hw must have shape [n, 2] = [", n,
                      ", 2], got ", hw.sizes());
    const int64_t* off = offsets.const_data_ptr<int64_t>();
    bool ok = off[0] == 0 && off[n] == counts.size(0);
    for (int64_t i = 0; ok && i < n; ++i) ok = off[i] <= off[i + 1];
    TORCH_CHECK_VALUE(ok, op, ": offsets must be nondecreasing from 0 to len(counts)");
    const int64_t* s = hw.const_data_ptr<int64_t>();
    for (int64_t i = 0; i < 2 * n; ++i) TORCH_CHECK_VALUE(s[i] >= 0, op, ": RLE sizes must be >= 0");
    b = {reinterpret_cast<const uint32_t*>(counts.const_data_ptr<int32_t>()), off, s, n};
  }
};

// Every RLE's runs add up to its h * w (merge and IoU walk two RLEs' runs together and never end
// when their totals differ; decode rejects such an RLE too).
void check_runs(const char* op, const Batch& b, const char* which = "") {
  for (int64_t i = 0; i < b.n; ++i) {
    uint64_t total = 0;
    for (int64_t j = b.offsets[i]; j < b.offsets[i + 1]; ++j) total += b.counts[j];
    const uint64_t need = static_cast<uint64_t>(b.hw[2 * i]) * static_cast<uint64_t>(b.hw[2 * i + 1]);
    TORCH_CHECK_VALUE(total == need, op, ": Invalid RLE mask representation: ", which, "RLE ", i, "'s runs add up to ",
                      total, " pixels, but its size ", b.hw[2 * i], " x ", b.hw[2 * i + 1], " has ", need);
  }
}

// A 1-D tensor that takes over a vector's buffer (no copy).
template <typename T>
at::Tensor to_tensor(std::vector<T>& v, at::ScalarType dtype) {
  const int64_t n = static_cast<int64_t>(v.size());
  if (n == 0) return at::empty({0}, at::TensorOptions().dtype(dtype));
  auto* owner = new std::vector<T>(std::move(v));
  return at::from_blob(owner->data(), {n}, [owner](void*) { delete owner; }, at::TensorOptions().dtype(dtype));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> out_tensors(Out& out) {
  return {to_tensor(out.counts, at::kInt), to_tensor(out.offsets, at::kLong),
          to_tensor(out.hw, at::kLong).view({-1, 2})};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> rle_encode_cpu(const at::Tensor& masks) {
  check_t("rle_encode", masks, "masks", at::kByte, 3);
  const at::Tensor m = masks.contiguous();
  Out out;
  K().encode(m.const_data_ptr<uint8_t>(), m.size(0), m.size(2), m.size(1), out);
  return out_tensors(out);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> rle_from_string_cpu(const at::Tensor& chars,
                                                                   const at::Tensor& char_offsets,
                                                                   const at::Tensor& hw) {
  const char* op = "rle_from_string";
  check_t(op, chars, "chars", at::kByte, 1);
  check_t(op, char_offsets, "char_offsets", at::kLong, 1);
  check_t(op, hw, "hw", at::kLong, 2);
  const int64_t n = char_offsets.size(0) - 1;
  TORCH_CHECK_VALUE(n >= 0 && hw.size(0) == n && hw.size(1) == 2, op, ": hw must have shape [n, 2]");
  const at::Tensor c = chars.contiguous(), o = char_offsets.contiguous(), h = hw.contiguous();
  const int64_t* off = o.const_data_ptr<int64_t>();
  bool ok = off[0] == 0 && off[n] == c.size(0);
  for (int64_t i = 0; ok && i < n; ++i) ok = off[i] <= off[i + 1];
  TORCH_CHECK_VALUE(ok, op, ": char_offsets must be nondecreasing from 0 to len(chars)");
  at::Tensor offsets = at::empty({n + 1}, o.options());
  int64_t* offs = offsets.mutable_data_ptr<int64_t>();
  offs[0] = 0;
  K().string_counts(c.const_data_ptr<uint8_t>(), off, n, offs + 1);
  for (int64_t i = 0; i < n; ++i) offs[i + 1] += offs[i];
  at::Tensor counts = at::empty({offs[n]}, at::TensorOptions().dtype(at::kInt));
  K().from_string(c.const_data_ptr<uint8_t>(), off, n, offs,
                  reinterpret_cast<uint32_t*>(counts.mutable_data_ptr<int32_t>()));
  return {counts, offsets, h.clone()};
}

std::tuple<at::Tensor, at::Tensor> rle_to_string_cpu(const at::Tensor& counts, const at::Tensor& offsets,
                                                     const at::Tensor& hw) {
  BatchArg a("rle_to_string", counts, offsets, hw);
  std::vector<uint8_t> chars;
  std::vector<int64_t> char_offsets;
  K().to_string(a.b, chars, char_offsets);
  return {to_tensor(chars, at::kByte), to_tensor(char_offsets, at::kLong)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> rle_from_polygons_cpu(const at::Tensor& xy,
                                                                     const at::Tensor& poly_offsets,
                                                                     const at::Tensor& ann_offsets,
                                                                     const at::Tensor& hw) {
  const char* op = "rle_from_polygons";
  check_t(op, xy, "xy", at::kDouble, 1);
  check_t(op, poly_offsets, "poly_offsets", at::kLong, 1);
  check_t(op, ann_offsets, "ann_offsets", at::kLong, 1);
  check_t(op, hw, "hw", at::kLong, 2);
  const at::Tensor x = xy.contiguous(), po = poly_offsets.contiguous(), ao = ann_offsets.contiguous(),
                   h = hw.contiguous();
  const int64_t n_ann = ao.size(0) - 1, n_poly = po.size(0) - 1;
  TORCH_CHECK_VALUE(n_ann >= 0 && n_poly >= 0 && h.size(0) == n_ann && h.size(1) == 2, op,
                    ": hw must have shape [n_annotations, 2]");
  const int64_t* pof = po.const_data_ptr<int64_t>();
  const int64_t* aof = ao.const_data_ptr<int64_t>();
  bool ok = pof[0] == 0 && pof[n_poly] == x.size(0) && aof[0] == 0 && aof[n_ann] == n_poly;
  for (int64_t i = 0; ok && i < n_poly; ++i) ok = pof[i] <= pof[i + 1];
  for (int64_t i = 0; ok && i < n_ann; ++i) ok = aof[i] <= aof[i + 1];
  TORCH_CHECK_VALUE(ok, op, ": poly_offsets / ann_offsets must be nondecreasing offsets into xy / the polygons");
  const int64_t* s = h.const_data_ptr<int64_t>();
  for (int64_t i = 0; i < 2 * n_ann; ++i) TORCH_CHECK_VALUE(s[i] >= 0, op, ": image sizes must be >= 0");
  const double* v = x.const_data_ptr<double>();
  for (int64_t i = 0; i < x.size(0); ++i) {
    if (!(std::abs(v[i]) <= kMaxPolygonCoordinate)) {  // NaN fails too
      const int64_t poly = std::upper_bound(pof, pof + n_poly + 1, i) - pof - 1;
      TORCH_CHECK_VALUE(false, op, ": polygon ", poly, " has coordinate ", v[i],
                        "; polygon coordinates must be finite and at most ", kMaxPolygonCoordinate, " in magnitude");
    }
  }
  Out out;
  K().from_polygons(x.const_data_ptr<double>(), pof, aof, s, n_ann, out);
  return out_tensors(out);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> rle_merge_cpu(const at::Tensor& counts, const at::Tensor& offsets,
                                                             const at::Tensor& hw, bool intersect) {
  BatchArg a("rle_merge", counts, offsets, hw);
  check_runs("rle_merge", a.b);
  Out out;
  K().merge(a.b, intersect, out);
  return out_tensors(out);
}

at::Tensor rle_area_cpu(const at::Tensor& counts, const at::Tensor& offsets, const at::Tensor& hw) {
  BatchArg a("rle_area", counts, offsets, hw);
  at::Tensor out = at::empty({a.b.n}, at::TensorOptions().dtype(at::kInt));
  K().area(a.b, reinterpret_cast<uint32_t*>(out.mutable_data_ptr<int32_t>()));
  return out;
}

at::Tensor rle_to_bbox_cpu(const at::Tensor& counts, const at::Tensor& offsets, const at::Tensor& hw) {
  BatchArg a("rle_to_bbox", counts, offsets, hw);
  at::Tensor out = at::empty({a.b.n, 4}, at::TensorOptions().dtype(at::kDouble));
  K().to_bbox(a.b, out.mutable_data_ptr<double>());
  return out;
}

at::Tensor rle_iou_cpu(const at::Tensor& dt_counts, const at::Tensor& dt_offsets, const at::Tensor& dt_hw,
                       const at::Tensor& gt_counts, const at::Tensor& gt_offsets, const at::Tensor& gt_hw,
                       const at::Tensor& crowd) {
  BatchArg d("rle_iou", dt_counts, dt_offsets, dt_hw), g("rle_iou", gt_counts, gt_offsets, gt_hw);
  check_runs("rle_iou", d.b, "dt ");
  check_runs("rle_iou", g.b, "gt ");
  check_t("rle_iou", crowd, "crowd", at::kBool, 1);
  TORCH_CHECK_VALUE(crowd.size(0) == g.b.n, "rle_iou: crowd must have one flag per ground truth (", g.b.n, "), got ",
                    crowd.size(0));
  const at::Tensor c = crowd.contiguous();
  at::Tensor out = at::empty({d.b.n, g.b.n}, at::TensorOptions().dtype(at::kDouble));
  if (d.b.n > 0 && g.b.n > 0) {
    K().iou(d.b, g.b, reinterpret_cast<const uint8_t*>(c.const_data_ptr<bool>()), out.mutable_data_ptr<double>());
  }
  return out;
}

at::Tensor rle_decode_cpu(const at::Tensor& counts, const at::Tensor& offsets, const at::Tensor& hw) {
  BatchArg a("rle_decode", counts, offsets, hw);
  const int64_t h = a.b.n ? a.b.hw[0] : 0, w = a.b.n ? a.b.hw[1] : 0;
  at::Tensor out = at::empty({a.b.n, w, h}, at::TensorOptions().dtype(at::kByte));
  std::memset(out.mutable_data_ptr<uint8_t>(), 0, out.numel());  // on this thread (see coco_eval_cpu.cpp)
  TORCH_CHECK_VALUE(K().decode(a.b, out.mutable_data_ptr<uint8_t>()), "rle_decode: Invalid RLE mask representation");
  return out;
}

std::tuple<at::Tensor, at::Tensor> rle_grouped_iou_cpu(const at::Tensor& dt_counts, const at::Tensor& dt_offsets,
                                                       const at::Tensor& dt_hw, const at::Tensor& dt_rows,
                                                       const at::Tensor& dt_groups, const at::Tensor& gt_counts,
                                                       const at::Tensor& gt_offsets, const at::Tensor& gt_hw,
                                                       const at::Tensor& gt_rows, const at::Tensor& gt_groups,
                                                       const at::Tensor& crowd) {
  const char* op = "rle_grouped_iou";
  BatchArg d(op, dt_counts, dt_offsets, dt_hw), g(op, gt_counts, gt_offsets, gt_hw);
  check_runs(op, d.b, "dt ");
  check_runs(op, g.b, "gt ");
  check_t(op, dt_groups, "dt_groups", at::kLong, 1);
  check_t(op, gt_groups, "gt_groups", at::kLong, 1);
  check_t(op, crowd, "crowd", at::kBool, 1);
  check_t(op, dt_rows, "dt_rows", at::kLong, 1);
  check_t(op, gt_rows, "gt_rows", at::kLong, 1);
  const int64_t P = dt_groups.size(0) - 1;
  TORCH_CHECK_VALUE(P >= 0 && gt_groups.size(0) == P + 1, op, ": dt_groups and gt_groups must both have P + 1 entries");
  TORCH_CHECK_VALUE(crowd.size(0) == gt_rows.size(0), op, ": crowd must have one flag per gt_rows entry");
  const at::Tensor dg = dt_groups.contiguous(), gg = gt_groups.contiguous(), c = crowd.contiguous();
  const at::Tensor dr = dt_rows.contiguous(), gr = gt_rows.contiguous();
  auto rows_ok = [](const at::Tensor& r, int64_t n) {
    const int64_t* v = r.const_data_ptr<int64_t>();
    return std::all_of(v, v + r.size(0), [n](int64_t x) { return x >= 0 && x < n; });
  };
  TORCH_CHECK_INDEX(rows_ok(dr, d.b.n) && rows_ok(gr, g.b.n), op, ": dt_rows / gt_rows must index the RLE batches");
  const int64_t* dgo = dg.const_data_ptr<int64_t>();
  const int64_t* ggo = gg.const_data_ptr<int64_t>();
  bool ok = dgo[0] == 0 && ggo[0] == 0 && dgo[P] == dr.size(0) && ggo[P] == gr.size(0);
  for (int64_t p = 0; ok && p < P; ++p) ok = dgo[p] <= dgo[p + 1] && ggo[p] <= ggo[p + 1];
  TORCH_CHECK_VALUE(ok, op, ": dt_groups / gt_groups must be nondecreasing offsets over the RLEs");
  at::Tensor iou_offsets = at::empty({P + 1}, dg.options());
  int64_t* io = iou_offsets.mutable_data_ptr<int64_t>();
  io[0] = 0;
  for (int64_t p = 0; p < P; ++p) io[p + 1] = io[p] + (dgo[p + 1] - dgo[p]) * (ggo[p + 1] - ggo[p]);
  at::Tensor ious = at::empty({io[P]}, at::TensorOptions().dtype(at::kDouble));
  K().grouped_iou(d.b, dr.const_data_ptr<int64_t>(), dgo, g.b, gr.const_data_ptr<int64_t>(), ggo,
                  reinterpret_cast<const uint8_t*>(c.const_data_ptr<bool>()), P, io, ious.mutable_data_ptr<double>());
  return {ious, iou_offsets};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastops, m) {
  m.def("rle_encode(Tensor masks) -> (Tensor counts, Tensor offsets, Tensor hw)");
  m.def("rle_from_string(Tensor chars, Tensor char_offsets, Tensor hw) -> (Tensor counts, Tensor offsets, Tensor hw)");
  m.def("rle_to_string(Tensor counts, Tensor offsets, Tensor hw) -> (Tensor chars, Tensor char_offsets)");
  m.def(
      "rle_from_polygons(Tensor xy, Tensor poly_offsets, Tensor ann_offsets, Tensor hw) "
      "-> (Tensor counts, Tensor offsets, Tensor hw)");
  m.def(
      "rle_merge(Tensor counts, Tensor offsets, Tensor hw, bool intersect) -> (Tensor counts, Tensor offsets, Tensor "
      "hw)");
  m.def("rle_area(Tensor counts, Tensor offsets, Tensor hw) -> Tensor");
  m.def("rle_to_bbox(Tensor counts, Tensor offsets, Tensor hw) -> Tensor");
  m.def(
      "rle_iou(Tensor dt_counts, Tensor dt_offsets, Tensor dt_hw, Tensor gt_counts, Tensor gt_offsets, "
      "Tensor gt_hw, Tensor crowd) -> Tensor");
  m.def("rle_decode(Tensor counts, Tensor offsets, Tensor hw) -> Tensor");
  m.def(
      "rle_grouped_iou(Tensor dt_counts, Tensor dt_offsets, Tensor dt_hw, Tensor dt_rows, Tensor dt_groups, "
      "Tensor gt_counts, Tensor gt_offsets, Tensor gt_hw, Tensor gt_rows, Tensor gt_groups, Tensor crowd) "
      "-> (Tensor ious, Tensor iou_offsets)");
}

TORCH_LIBRARY_IMPL(fastops, CPU, m) {
  m.impl("rle_encode", &rle_encode_cpu);
  m.impl("rle_from_string", &rle_from_string_cpu);
  m.impl("rle_to_string", &rle_to_string_cpu);
  m.impl("rle_from_polygons", &rle_from_polygons_cpu);
  m.impl("rle_merge", &rle_merge_cpu);
  m.impl("rle_area", &rle_area_cpu);
  m.impl("rle_to_bbox", &rle_to_bbox_cpu);
  m.impl("rle_iou", &rle_iou_cpu);
  m.impl("rle_decode", &rle_decode_cpu);
  m.impl("rle_grouped_iou", &rle_grouped_iou_cpu);
}

}  // namespace fastops::coco_eval::rle
