// Autocast kernels of the RoI ops: as torchvision's, the ops run in float32 and return the
// features' dtype, so boxes in float32 (the usual case) work with float16 / bfloat16 features under
// torch.autocast (the ops themselves require boxes in the features' dtype).
#include <ATen/autocast_mode.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

namespace fastops::roi_align {

namespace {

template <c10::DeviceType kDevice>
struct Autocast {
  static at::Tensor cast(const at::Tensor& t) { return at::autocast::cached_cast(at::kFloat, t, kDevice); }

  static at::Tensor roi_align(const at::Tensor& input, const at::Tensor& rois, double spatial_scale, int64_t pooled_h,
                              int64_t pooled_w, int64_t sampling_ratio, bool aligned) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(at::autocast::get_autocast_dispatch_key_from_device_type(kDevice));
    static const auto op =
        c10::Dispatcher::singleton()
            .findSchemaOrThrow("fastops::roi_align", "")
            .typed<at::Tensor(const at::Tensor&, const at::Tensor&, double, int64_t, int64_t, int64_t, bool)>();
    return op.call(cast(input), cast(rois), spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned)
        .to(input.scalar_type());
  }

  static at::Tensor multi_scale(at::TensorList features, const at::Tensor& rois, at::ArrayRef<double> scales,
                                int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio, bool aligned,
                                double canonical_scale, int64_t canonical_level) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(at::autocast::get_autocast_dispatch_key_from_device_type(kDevice));
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("fastops::multi_scale_roi_align", "")
                               .typed<at::Tensor(at::TensorList, const at::Tensor&, at::ArrayRef<double>, int64_t,
                                                 int64_t, int64_t, bool, double, int64_t)>();
    TORCH_CHECK_VALUE(!features.empty(), "multi_scale_roi_align: expected at least one feature map");
    const std::vector<at::Tensor> cast_features = at::autocast::cached_cast(at::kFloat, features, kDevice);
    return op
        .call(cast_features, cast(rois), scales, pooled_h, pooled_w, sampling_ratio, aligned, canonical_scale,
              canonical_level)
        .to(features[0].scalar_type());
  }

  static std::tuple<at::Tensor, at::Tensor> roi_pool(const at::Tensor& input, const at::Tensor& rois,
                                                     double spatial_scale, int64_t pooled_h, int64_t pooled_w) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(at::autocast::get_autocast_dispatch_key_from_device_type(kDevice));
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("fastops::roi_pool", "")
                               .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, double,
                                                                         int64_t, int64_t)>();
    auto [out, argmax] = op.call(cast(input), cast(rois), spatial_scale, pooled_h, pooled_w);
    return {out.to(input.scalar_type()), argmax};
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fastops, AutocastCPU, m) {
  m.impl("roi_align", &Autocast<c10::DeviceType::CPU>::roi_align);
  m.impl("multi_scale_roi_align", &Autocast<c10::DeviceType::CPU>::multi_scale);
  m.impl("roi_pool", &Autocast<c10::DeviceType::CPU>::roi_pool);
}

TORCH_LIBRARY_IMPL(fastops, AutocastCUDA, m) {
  m.impl("roi_align", &Autocast<c10::DeviceType::CUDA>::roi_align);
  m.impl("multi_scale_roi_align", &Autocast<c10::DeviceType::CUDA>::multi_scale);
  m.impl("roi_pool", &Autocast<c10::DeviceType::CUDA>::roi_pool);
}

}  // namespace fastops::roi_align
