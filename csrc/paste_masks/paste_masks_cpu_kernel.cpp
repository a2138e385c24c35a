// Raw CPU loop of paste_masks. This file is compiled once per instruction set (see
// csrc/common/cpu_dispatch.h); everything in it has internal linkage so the copies never mix.
//
// Threads split the N * H output rows. A thread takes its rows mask by mask: rows outside the
// box's image rectangle (and the columns left and right of it) are filled with memset; for the
// rows inside, each source row of the padded mask that those rows read is first resampled to the
// rectangle's columns (once per mask and thread), so the loop over an output row reads contiguous
// arrays and vectorizes. The arithmetic is torch's, operation for operation (paste_masks_math.h),
// so the result is the same for any thread count and on every ISA copy.
#include <algorithm>
#include <cstring>
#include <vector>

#include <ATen/Parallel.h>

#include "common/cpu_lanes.h"
#include "common/cpu_stream.h"
#include "common/dtype_dispatch.h"
#include "paste_masks/paste_masks.h"

namespace fastops::paste_masks {
namespace {

// Output pixels per parallel task, at least.
constexpr int64_t kPixelsPerTask = int64_t(1) << 16;
// Scratch a thread keeps between calls.
constexpr size_t kKeptScratchBytes = size_t(4) << 20;

template <typename B>
std::vector<PasteBox> expand_all(const void* boxes, int64_t n, double scale) {
  const B* b = static_cast<const B*>(boxes);
  std::vector<PasteBox> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[i] = expand_box(b + 4 * i, scale);
  return out;
}

// Value written for a resized pixel, and for the background.
template <typename S, typename O, typename T>
FASTOPS_FORCEINLINE O store(T v, T threshold) {
  if constexpr (std::is_same_v<O, bool>) {
    return static_cast<T>(static_cast<S>(v)) > threshold;
  } else {
    return static_cast<S>(v);
  }
}

// Background runs shorter than this are memset even in a streamed output (a streaming store to a
// line that plain stores also write costs more than it saves).
constexpr size_t kMinStreamBytes = 2048;

// The rows [row_begin, row_end) of one mask's output plane.
template <typename S, typename T, typename O>
class MaskRows {
 public:
  MaskRows(const PasteProblem& p, const S* mask, const PasteBox& box, O* plane, T threshold, unsigned char background,
           bool stream)
      : p_(p),
        mask_(mask),
        rect_(paste_rect(box, p.image_h, p.image_w)),
        plane_(plane),
        threshold_(threshold),
        background_(background),
        stream_(stream) {}

  void run(int64_t row_begin, int64_t row_end, cpu::AlignedScratch<T>& scratch) {
    const int64_t w = p_.image_w;
    const int64_t vis_begin = std::max(row_begin, rect_.row_begin), vis_end = std::min(row_end, rect_.row_end);
    if (vis_begin >= vis_end) {
      fill(plane_ + row_begin * w, (row_end - row_begin) * w);
      return;
    }
    fill(plane_ + row_begin * w, (vis_begin - row_begin) * w);
    fill(plane_ + vis_end * w, (row_end - vis_end) * w);
    const bool small = cpu_uses_small_form(rect_.out_h, rect_.out_w);
    const T scale_h = static_cast<T>(p_.ph) / static_cast<T>(rect_.out_h);
    const T scale_w = static_cast<T>(p_.pw) / static_cast<T>(rect_.out_w);
    const int64_t cols = rect_.col_end - rect_.col_begin;
    const AxisTap<T> first = cpu_axis_tap(p_.ph, rect_.out_h, scale_h, vis_begin - rect_.row_origin);
    const AxisTap<T> last = cpu_axis_tap(p_.ph, rect_.out_h, scale_h, vis_end - 1 - rect_.row_origin);
    const int64_t src_begin = first.i0, src_rows = last.i1 - first.i0 + 1;
    // Scratch: column weights (2 x cols), a padded source row (pw), and the resampled source rows
    // (small form: the left and right neighbours, 2 x cols per row; large form: the row
    // interpolated along the width, cols per row).
    const int64_t per_row = small ? 2 * cols : cols;
    T* buf = scratch.get(2 * cols + p_.pw + src_rows * per_row, "paste_masks scratch");
    T* col_l0 = buf;
    T* col_l1 = col_l0 + cols;
    T* padded_row = col_l1 + cols;
    T* rows = padded_row + p_.pw;
    resample_source_rows(small, scale_w, src_begin, src_rows, cols, col_l0, col_l1, padded_row, rows);
    for (int64_t y = vis_begin; y < vis_end; ++y) {
      O* out_row = plane_ + y * w;
      fill(out_row, rect_.col_begin);
      fill(out_row + rect_.col_end, w - rect_.col_end);
      AxisTap<T> tap = cpu_axis_tap(p_.ph, rect_.out_h, scale_h, y - rect_.row_origin);
      O* dst = out_row + rect_.col_begin;
      if (small) {
        const T* r0 = rows + (tap.i0 - src_begin) * per_row;
        const T* r1 = rows + (tap.i1 - src_begin) * per_row;
        small_row(r0, r0 + cols, r1, r1 + cols, tap.l0, tap.l1, col_l0, col_l1, cols, dst);
      } else {
        tap = round_tap<S>(tap);
        large_row(rows + (tap.i0 - src_begin) * per_row, rows + (tap.i1 - src_begin) * per_row, tap.l0, tap.l1, cols,
                  dst);
      }
    }
  }

 private:
  // Source rows src_begin .. src_begin + src_rows - 1 of the padded mask, resampled at the
  // rectangle's columns; also leaves the columns' weights in col_l0 / col_l1.
  void resample_source_rows(bool small, T scale_w, int64_t src_begin, int64_t src_rows, int64_t cols, T* col_l0,
                            T* col_l1, T* padded_row, T* rows) {
    std::vector<int64_t> idx(static_cast<size_t>(2 * cols));
    int64_t* col_i0 = idx.data();
    int64_t* col_i1 = col_i0 + cols;
    for (int64_t c = 0; c < cols; ++c) {
      AxisTap<T> tap = cpu_axis_tap(p_.pw, rect_.out_w, scale_w, rect_.col_begin + c - rect_.col_origin);
      if (!small) tap = round_tap<S>(tap);
      col_i0[c] = tap.i0, col_i1[c] = tap.i1, col_l0[c] = tap.l0, col_l1[c] = tap.l1;
    }
    for (int64_t r = 0; r < src_rows; ++r) {
      const int64_t mask_row = src_begin + r - p_.padding;
      if (mask_row < 0 || mask_row >= p_.mh) {
        std::fill(padded_row, padded_row + p_.pw, T(0));
      } else {
        const S* src = mask_ + mask_row * p_.mw;
        for (int64_t j = 0; j < p_.pw; ++j) {
          const int64_t mj = j - p_.padding;
          padded_row[j] = (mj >= 0 && mj < p_.mw) ? static_cast<T>(src[mj]) : T(0);
        }
      }
      if (small) {
        T* left = rows + r * 2 * cols;
        T* right = left + cols;
        for (int64_t c = 0; c < cols; ++c) left[c] = padded_row[col_i0[c]], right[c] = padded_row[col_i1[c]];
      } else {
        T* out = rows + r * cols;
        for (int64_t c = 0; c < cols; ++c) {
          out[c] = cpu_row_value(padded_row[col_i0[c]], padded_row[col_i1[c]], col_l0[c], col_l1[c]);
        }
      }
    }
  }

  void small_row(const T* __restrict a, const T* __restrict b, const T* __restrict c, const T* __restrict d, T h0, T h1,
                 const T* __restrict w0, const T* __restrict w1, int64_t cols, O* __restrict dst) const {
    for (int64_t j = 0; j < cols; ++j) {
      const T v = cpu_small_value<S>(a[j], b[j], c[j], d[j], h0 * w0[j], h0 * w1[j], h1 * w0[j], h1 * w1[j]);
      dst[j] = store<S, O>(v, threshold_);
    }
  }

  void large_row(const T* __restrict t0, const T* __restrict t1, T h0, T h1, int64_t cols, O* __restrict dst) const {
    for (int64_t j = 0; j < cols; ++j) dst[j] = store<S, O>(cpu_large_value(t0[j], t1[j], h0, h1), threshold_);
  }

  // Writes the background over count pixels at dst.
  void fill(O* dst, int64_t count) const {
    if (count <= 0) return;
    const size_t bytes = static_cast<size_t>(count) * sizeof(O);
    if (stream_ && bytes >= kMinStreamBytes) {
      cpu::stream_fill(dst, background_, bytes);
    } else {
      std::memset(dst, background_, bytes);
    }
  }

  const PasteProblem& p_;
  const S* mask_;
  const PasteRect rect_;
  O* plane_;
  const T threshold_;
  const unsigned char background_;
  const bool stream_;
};

template <typename S, typename T, typename O>
void paste_rows(const PasteKernelArgs& args, const std::vector<PasteBox>& boxes, O* out) {
  const PasteProblem& p = args.p;
  const S* masks = static_cast<const S*>(args.masks);
  // Thresholded: compare with the threshold rounded to the masks' dtype, as `pasted > threshold`.
  T threshold = T(0);
  unsigned char background = 0;
  if constexpr (std::is_same_v<O, bool>) {
    threshold = static_cast<T>(static_cast<S>(static_cast<T>(*p.threshold)));
    background = T(0) > threshold ? 1 : 0;
  }
  const int64_t h = p.image_h, w = p.image_w;
  const bool stream = static_cast<size_t>(p.n * h * w) * sizeof(O) >= cpu::kStreamOutputBytes;
  const int64_t grain = std::max<int64_t>(1, kPixelsPerTask / std::max<int64_t>(w, 1));
  at::parallel_for(0, p.n * h, grain, [&](int64_t begin, int64_t end) {
    thread_local cpu::AlignedScratch<T> scratch;
    for (int64_t r = begin; r < end;) {
      const int64_t n = r / h, row = r - n * h;
      const int64_t rows = std::min(h - row, end - r);
      MaskRows<S, T, O> mask_rows(p, masks + n * p.mh * p.mw, boxes[n], out + n * h * w, threshold, background, stream);
      mask_rows.run(row, row + rows, scratch);
      r += rows;
    }
    if (stream) cpu::stream_fence();
    scratch.trim(kKeptScratchBytes);
  });
}

void paste_forward(const PasteKernelArgs& args, void* out) {
  std::vector<PasteBox> boxes;
  with_float_dtype(args.p.box_dtype, "paste_masks",
                   [&](auto b, auto) { boxes = expand_all<decltype(b)>(args.boxes, args.p.n, args.p.scale); });
  with_float_dtype(args.p.mask_dtype, "paste_masks", [&](auto s, auto t) {
    using S = decltype(s);
    using T = decltype(t);
    with_threshold(args.p.threshold.has_value(), [&](auto thresholded) {
      using O = std::conditional_t<decltype(thresholded)::value, bool, S>;
      paste_rows<S, T, O>(args, boxes, static_cast<O*>(out));
    });
  });
}

}  // namespace

FASTOPS_REGISTER_CPU_KERNEL(paste_forward_cpu, &paste_forward);

}  // namespace fastops::paste_masks
