// Schema, input checks and strategy lists of the selective search op. Kernels:
// selective_search_cpu.cpp (CPU, and CUDA inputs computed on the host), graph_segmentation.cpp,
// region_features.cpp, grouping.cpp. Python API and fake kernel: fastops/ops/selective_search.py.
#include <cmath>
#include <limits>

#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "selective_search/selective_search.h"

namespace fastops::selective_search {

void check_args(const at::Tensor& image, const std::string& mode, at::ArrayRef<double> ks, double sigma,
                int64_t min_size, int64_t max_proposals) {
  const char* op = "selective_search";
  const auto t = image.scalar_type();
  TORCH_CHECK_TYPE(t == at::kByte || t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16, op,
                   ": image must be uint8 or float16, bfloat16, float32, float64 (values in [0, 1]), got ", t);
  TORCH_CHECK_VALUE(image.dim() == 3 && image.size(0) == 3, op, ": image must have shape [3, H, W] (RGB), got ",
                    image.sizes());
  TORCH_CHECK_VALUE(image.size(1) * image.size(2) < (int64_t{1} << 31), op,
                    ": image must have fewer than 2^31 pixels, got ", image.size(1), " x ", image.size(2));
  TORCH_CHECK_VALUE(mode == "fast" || mode == "quality", op, ": mode must be \"fast\" or \"quality\", got \"", mode,
                    "\"");
  for (size_t i = 0; i < ks.size(); ++i) {
    TORCH_CHECK_VALUE(std::isfinite(ks[i]) && ks[i] > 0, op, ": ks[", i, "] must be a positive finite threshold, got ",
                      ks[i]);
  }
  TORCH_CHECK_VALUE(std::isfinite(sigma) && sigma >= 0 && sigma <= 100, op, ": sigma must be in [0, 100], got ", sigma);
  TORCH_CHECK_VALUE(min_size >= -1, op, ": min_size must be >= 0 (or -1: each k), got ", min_size);
  TORCH_CHECK_VALUE(max_proposals >= -1, op, ": max_proposals must be >= 0 (or -1: all), got ", max_proposals);
}

Plan make_plan(const std::string& mode, const std::vector<double>& ks, double sigma, int64_t min_size) {
  constexpr SimilaritySet kCTSF{true, true, true, true}, kTSF{false, true, true, true};
  constexpr SimilaritySet kFill{false, false, false, true}, kSize{false, false, true, false};
  Plan plan;
  if (mode == "fast") {
    plan.colour_spaces = {ColourSpace::Hsv, ColourSpace::Lab};
    plan.ks = {50, 100};
    plan.similarities = {kCTSF, kTSF};
  } else {
    plan.colour_spaces = {ColourSpace::Hsv, ColourSpace::Lab, ColourSpace::RgI, ColourSpace::Hue,
                          ColourSpace::Intensity};
    plan.ks = {50, 100, 150, 300};
    plan.similarities = {kCTSF, kTSF, kFill, kSize};
  }
  if (!ks.empty()) plan.ks = ks;
  plan.sigma = sigma;
  plan.min_size = min_size;
  return plan;
}

TORCH_LIBRARY_FRAGMENT(fastops, m) {
  // Object proposals of one RGB image [3, H, W] (uint8, or float in [0, 1]) -> float32 [N, 4] xyxy
  // pixel-edge boxes, best ranked first, distinct. ks empty: the mode's thresholds; min_size -1:
  // each k; max_proposals -1: all.
  m.def(
      "selective_search(Tensor image, str mode, float[] ks, float sigma, int min_size, int max_proposals, int seed) "
      "-> Tensor",
      {at::Tag::pt2_compliant_tag});
}

}  // namespace fastops::selective_search
