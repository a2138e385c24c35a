// Schema and input checks of paste_masks. Kernels: paste_masks_cpu.cpp, paste_masks_cuda.cu.
// Python API and fake kernel: fastops/ops/paste_masks.py.
#include <cmath>

#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "common/cpu_alloc.h"
#include "paste_masks/paste_masks.h"

namespace fastops::paste_masks {
namespace {

bool is_float(c10::ScalarType dt) {
  return dt == at::kFloat || dt == at::kDouble || dt == at::kHalf || dt == at::kBFloat16;
}

// Bounds |padding| so that every padded size and index stays far inside int64.
constexpr int64_t kMaxPadding = int64_t(1) << 30;

}  // namespace

PasteProblem prepare(const at::Tensor& masks, const at::Tensor& boxes, int64_t image_h, int64_t image_w,
                     int64_t padding, std::optional<double> threshold, at::Tensor& masks_c, at::Tensor& boxes_c,
                     at::Tensor& out) {
  TORCH_CHECK_TYPE(is_float(masks.scalar_type()),
                   "paste_masks: masks must be float16, bfloat16, float32 or float64, got ", masks.scalar_type());
  TORCH_CHECK_TYPE(is_float(boxes.scalar_type()),
                   "paste_masks: boxes must be float16, bfloat16, float32 or float64, got ", boxes.scalar_type());
  TORCH_CHECK_VALUE((masks.dim() == 4 && masks.size(1) == 1) || masks.dim() == 3,
                    "paste_masks: masks must have shape [N, 1, M, M] or [N, M, M], got ", masks.sizes());
  TORCH_CHECK_VALUE(masks.size(-1) >= 1 && masks.size(-2) >= 1,
                    "paste_masks: masks must have at least one row and one column, got shape ", masks.sizes());
  TORCH_CHECK_VALUE(boxes.dim() == 2 && boxes.size(1) == 4 && boxes.size(0) == masks.size(0),
                    "paste_masks: boxes must have shape [N, 4] with N = ", masks.size(0), " (one box per mask), got ",
                    boxes.sizes());
  TORCH_CHECK(masks.device() == boxes.device(), "paste_masks: masks and boxes must be on the same device, got ",
              masks.device(), " and ", boxes.device());
  TORCH_CHECK_VALUE(image_h >= 0 && image_w >= 0, "paste_masks: image_shape must be non-negative, got (", image_h, ", ",
                    image_w, ")");
  TORCH_CHECK_VALUE(!threshold.has_value() || !std::isnan(*threshold), "paste_masks: threshold must not be NaN");
  PasteProblem p;
  p.n = masks.size(0);
  p.mh = masks.size(-2);
  p.mw = masks.size(-1);
  p.image_h = image_h;
  p.image_w = image_w;
  p.padding = padding;
  TORCH_CHECK_VALUE(padding >= -kMaxPadding && padding <= kMaxPadding, "paste_masks: padding must be within +-",
                    kMaxPadding, ", got ", padding);
  p.ph = p.mh + 2 * padding;
  p.pw = p.mw + 2 * padding;
  TORCH_CHECK_VALUE(p.ph >= 1 && p.pw >= 1, "paste_masks: padding ", padding, " leaves no pixel of the ", p.mh, " x ",
                    p.mw, " masks");
  p.scale = static_cast<double>(p.pw) / static_cast<double>(p.mw);
  p.threshold = threshold;
  p.mask_dtype = masks.scalar_type();
  p.box_dtype = boxes.scalar_type();
  masks_c = masks.contiguous();
  boxes_c = boxes.contiguous();
  const auto out_dtype = threshold.has_value() ? at::kBool : p.mask_dtype;
  out = cpu::cached_output({p.n, 1, image_h, image_w}, masks.options().dtype(out_dtype));
  return p;
}

TORCH_LIBRARY_FRAGMENT(fastops, m) {
  m.def(
      "paste_masks(Tensor masks, Tensor boxes, SymInt image_height, SymInt image_width, int padding=1, "
      "float? threshold=None) -> Tensor",
      {at::Tag::pt2_compliant_tag});
}

}  // namespace fastops::paste_masks
