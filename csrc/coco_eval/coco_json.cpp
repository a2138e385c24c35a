// fastops::coco_json_read: a COCO annotation file or result file (JSON bytes) read straight into
// columns, without building Python objects: what the evaluation needs of every annotation (ids,
// box, area, crowd flag, score, segmentation, keypoints), image and category. fastops/metrics/
// cocojson.py turns the columns into arrays and builds the Python dicts only if they are asked for.
//
// Scalars are reported with their kind (absent, integer literal, other number, bool), so Python
// applies pycocotools' rules to them. Anything unusual (a top level that is neither an object nor
// an array, "annotations" that is not a list of objects, a repeated key, a field of an unexpected
// type, an integer past int64) sets the `fallback` flag: Python then reads the file with its json
// module and evaluates the dicts, as pycocotools does, errors included.
#include <optional>
#include <string_view>
#include <vector>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <torch/library.h>

#include "coco_eval/json_reader.h"
#include "common/work_sharing.h"

namespace fastops::coco_eval {
namespace {

using json::Kind;

// Scalar fields of an annotation, an image and a category (column order of the outputs).
enum AnnField { kId, kImageId, kCategoryId, kArea, kIscrowd, kScore, kNumKeypoints, kAnnFields };
enum ImgField { kImgId, kHeight, kWidth, kImgFields };

// Kinds of the structured fields beyond json::Kind.
constexpr uint8_t kPolygons = 10;   // segmentation: a list of lists of numbers
constexpr uint8_t kRleString = 11;  // segmentation: {"counts": string, "size": [h, w]}
constexpr uint8_t kRleList = 12;    // segmentation: {"counts": [numbers], "size": [h, w]}
enum Shape { kBbox, kSegmentation, kKeypoints, kCaption, kShapes };
constexpr int kShapeBits = kAnnFields;  // bits of `seen` for the shapes follow the scalar fields'

struct Columns {
  // per record: values, exact integers and kinds of the scalar fields
  std::vector<double> val;
  std::vector<int64_t> ival;
  std::vector<uint8_t> kind;
  int64_t n = 0;
  void add(int fields) {
    val.resize(val.size() + fields, std::numeric_limits<double>::quiet_NaN());
    ival.resize(ival.size() + fields, 0);
    kind.resize(kind.size() + fields, json::kAbsent);
    ++n;
  }
  void set(int fields, int f, const json::Number& x) {
    const size_t i = (n - 1) * fields + f;
    val[i] = x.value;
    ival[i] = x.integer;
    kind[i] = x.kind;
  }
};

struct Annotations {
  Columns scalars;
  std::vector<uint8_t> shape;  // [n, kShapes]
  std::vector<double> bbox;    // [n, 4], NaN past the box's length
  std::vector<int64_t> bbox_len;
  std::vector<double> poly_xy;
  std::vector<int64_t> poly_offsets{0};  // per polygon, into poly_xy
  std::vector<int64_t> ann_polys{0};     // per annotation, into the polygons
  std::vector<double> rle_size;          // [n, 2]
  std::vector<uint8_t> rle_chars;
  std::vector<int64_t> rle_char_offsets{0};
  std::vector<double> rle_counts;  // uncompressed counts
  std::vector<int64_t> rle_count_offsets{0};
  std::vector<double> keypoints;
  std::vector<int64_t> keypoint_offsets{0};
};

struct File {
  Annotations anns;
  Columns images, categories;
  int64_t top_kind = json::kAbsent;
  bool has_images = false, has_annotations = false, has_categories = false, fallback = false;
};

// Reads an array of numbers, appending them to `out`; false (the rest skipped) if an element is
// not a number or an integer past int64.
bool numbers(json::Reader& r, std::vector<double>& out) {
  bool ok = true;
  json::Number x;
  r.array([&] {
    if (ok && r.next_kind() == json::kFloat) {
      r.number(x);
      out.push_back(x.value);
      ok = x.kind != json::kBigInt;  // Python computes with the exact integer: its reading decides
    } else {
      ok = false;
      r.skip();
    }
  });
  return ok;
}

// Reads an array of numbers, the first `cap` into out[]; returns their count, or -1 if an element
// is not a number or an integer past int64.
int64_t small_numbers(json::Reader& r, double* out, int64_t cap) {
  int64_t count = 0;
  json::Number x;
  r.array([&] {
    if (count >= 0 && r.next_kind() == json::kFloat) {
      r.number(x);
      if (count < cap) out[count] = x.value;
      count = x.kind == json::kBigInt ? -1 : count + 1;  // Python computes with the exact integer
    } else {
      count = -1;
      r.skip();
    }
  });
  return count;
}

// segmentation: polygons or an RLE object ({"counts": string or numbers, "size": [h, w]}), its
// kind returned; anything else sets the fallback flag (Python's reading decides).
uint8_t read_segmentation(json::Reader& r, Annotations& a, bool& fallback) {
  const Kind k = r.next_kind();
  double* size = a.rle_size.data() + a.rle_size.size() - 2;
  if (k == json::kArray) {
    bool ok = true;
    r.array([&] {
      if (!ok || r.next_kind() != json::kArray) {
        ok = false;
        r.skip();
      } else if (!numbers(r, a.poly_xy)) {
        ok = false;
      } else {
        a.poly_offsets.push_back(static_cast<int64_t>(a.poly_xy.size()));
      }
    });
    fallback |= !ok;
    return kPolygons;
  }
  if (k != json::kObject) {
    fallback = true;
    r.skip();
    return k;
  }
  uint8_t counts = json::kAbsent;
  bool size_ok = false;
  std::string scratch;
  r.object([&](std::string_view key) {
    if (key == "counts") {
      fallback |= counts != json::kAbsent;
      const Kind ck = r.next_kind();
      if (ck == json::kString) {
        const std::string_view s = r.string(scratch);
        a.rle_chars.insert(a.rle_chars.end(), s.begin(), s.end());
        counts = kRleString;
      } else if (ck == json::kArray) {
        fallback |= !numbers(r, a.rle_counts);
        counts = kRleList;
      } else {
        fallback = true;
        r.skip();
      }
    } else if (key == "size") {
      fallback |= size_ok;
      if (r.next_kind() != json::kArray) {
        fallback = true;
        r.skip();
      } else {
        size_ok = small_numbers(r, size, 2) == 2;
        fallback |= !size_ok;
      }
    } else {
      r.skip();
    }
  });
  fallback |= counts == json::kAbsent || !size_ok;
  return counts;
}

int ann_field(std::string_view key) {
  switch (key.size()) {
    case 2: return key == "id" ? kId : -1;
    case 4: return key == "area" ? kArea : -1;
    case 5: return key == "score" ? kScore : -1;
    case 7: return key == "iscrowd" ? kIscrowd : -1;
    case 8: return key == "image_id" ? kImageId : -1;
    case 11: return key == "category_id" ? kCategoryId : -1;
    case 13: return key == "num_keypoints" ? kNumKeypoints : -1;
    default: return -1;
  }
}

void read_annotation(json::Reader& r, File& f) {
  Annotations& a = f.anns;
  a.scalars.add(kAnnFields);
  a.shape.resize(a.shape.size() + kShapes, json::kAbsent);
  uint8_t* shape = a.shape.data() + (a.scalars.n - 1) * kShapes;
  a.bbox.resize(a.bbox.size() + 4, std::numeric_limits<double>::quiet_NaN());
  a.bbox_len.push_back(0);
  a.rle_size.resize(a.rle_size.size() + 2, std::numeric_limits<double>::quiet_NaN());
  uint32_t seen = 0;
  auto once = [&](int bit) {
    if (seen & (1u << bit)) f.fallback = true;  // a repeated key: Python keeps the last value
    seen |= 1u << bit;
  };
  json::Number x;
  r.object([&](std::string_view key) {
    const int field = ann_field(key);
    if (field >= 0) {
      once(field);
      f.fallback |= !r.scalar(x);  // null, a string, a list...: Python's reading decides
      f.fallback |= x.kind == json::kBigInt;
      a.scalars.set(kAnnFields, field, x);
    } else if (key == "bbox") {
      once(kShapeBits + kBbox);
      const Kind k = r.next_kind();
      shape[kBbox] = k;
      if (k == json::kArray) {
        a.bbox_len.back() = small_numbers(r, a.bbox.data() + a.bbox.size() - 4, 4);
        f.fallback |= a.bbox_len.back() < 0;
      } else {
        f.fallback = true;
        r.skip();
      }
    } else if (key == "segmentation") {
      once(kShapeBits + kSegmentation);
      shape[kSegmentation] = read_segmentation(r, a, f.fallback);
    } else if (key == "keypoints") {
      once(kShapeBits + kKeypoints);
      const Kind k = r.next_kind();
      shape[kKeypoints] = k;
      if (k == json::kArray) {
        f.fallback |= !numbers(r, a.keypoints);
      } else {
        f.fallback = true;
        r.skip();
      }
    } else if (key == "caption") {
      once(kShapeBits + kCaption);
      shape[kCaption] = r.next_kind();
      r.skip();
    } else {
      r.skip();
    }
  });
  a.ann_polys.push_back(static_cast<int64_t>(a.poly_offsets.size()) - 1);
  a.rle_char_offsets.push_back(static_cast<int64_t>(a.rle_chars.size()));
  a.rle_count_offsets.push_back(static_cast<int64_t>(a.rle_counts.size()));
  a.keypoint_offsets.push_back(static_cast<int64_t>(a.keypoints.size()));
}

// A list of objects, each read by `one`; anything else sets the fallback flag.
template <typename F>
void records(json::Reader& r, File& f, F&& one) {
  if (r.next_kind() != json::kArray) {
    f.fallback = true;
    r.skip();
    return;
  }
  r.array([&] {
    if (r.next_kind() != json::kObject) {
      f.fallback = true;
      r.skip();
    } else {
      one();
    }
  });
}

// An image ({"id", "height", "width"}) or a category ({"id"}).
void read_record(json::Reader& r, File& f, Columns& c, int fields) {
  c.add(fields);
  uint32_t seen = 0;
  json::Number x;
  r.object([&](std::string_view key) {
    const int field =
        key == "id" ? kImgId : (fields > 1 && key == "height" ? kHeight : (fields > 1 && key == "width" ? kWidth : -1));
    if (field < 0) {
      r.skip();
      return;
    }
    if (seen & (1u << field)) f.fallback = true;
    seen |= 1u << field;
    f.fallback |= !r.scalar(x) || x.kind == json::kBigInt;
    c.set(fields, field, x);
  });
}

void read_file(json::Reader& r, File& f) {
  f.top_kind = r.next_kind();
  if (f.top_kind == json::kArray) {  // a result file: the list of annotations
    f.has_annotations = true;
    records(r, f, [&] { read_annotation(r, f); });
  } else if (f.top_kind == json::kObject) {
    r.object([&](std::string_view key) {
      if (key == "annotations") {
        if (f.has_annotations) f.fallback = true;
        f.has_annotations = true;
        records(r, f, [&] { read_annotation(r, f); });
      } else if (key == "images") {
        if (f.has_images) f.fallback = true;
        f.has_images = true;
        records(r, f, [&] { read_record(r, f, f.images, kImgFields); });
      } else if (key == "categories") {
        if (f.has_categories) f.fallback = true;
        f.has_categories = true;
        records(r, f, [&] { read_record(r, f, f.categories, 1); });
      } else {
        r.skip();
      }
    });
  } else {
    f.fallback = true;
    r.skip();
  }
  if (!r.at_end()) r.fail("extra data after the JSON value");
}

// A tensor that takes over a vector's buffer (no copy).
template <typename T>
at::Tensor to_tensor(std::vector<T>& v, at::ScalarType dtype, std::initializer_list<int64_t> shape = {}) {
  std::vector<int64_t> sizes(shape);
  if (sizes.empty()) sizes.push_back(static_cast<int64_t>(v.size()));
  if (v.empty()) return at::empty(sizes, at::TensorOptions().dtype(dtype));
  auto* owner = new std::vector<T>(std::move(v));
  return at::from_blob(owner->data(), sizes, [owner](void*) { delete owner; }, at::TensorOptions().dtype(dtype));
}

// Room for the records a file of `size` bytes can hold (a record takes 40 bytes or more), reserved
// up front: untouched pages cost nothing, and the vectors never move their contents.
void reserve(File& f, int64_t size) {
  const size_t n = static_cast<size_t>(size / 40 + 16);
  Annotations& a = f.anns;
  a.scalars.val.reserve(n * kAnnFields);
  a.scalars.ival.reserve(n * kAnnFields);
  a.scalars.kind.reserve(n * kAnnFields);
  a.shape.reserve(n * kShapes);
  a.bbox.reserve(n * 4);
  a.bbox_len.reserve(n);
  a.rle_size.reserve(n * 2);
  a.ann_polys.reserve(n + 1);
  a.rle_char_offsets.reserve(n + 1);
  a.rle_count_offsets.reserve(n + 1);
  a.keypoint_offsets.reserve(n + 1);
}

// ---- a result file's array read in parts, in parallel ---------------------------------------------
//
// A result file is one array of small objects. It is cut at byte offsets where a '{' follows
// "}," (whitespace allowed) and the parts are read at once, each into its own columns. A cut found
// this way could lie inside a string or a nested value; it is a true element boundary exactly when
// the part before it, read from its own start, ends there right after a top-level ','. Each part is
// checked so, and the first part starts at the file's start, so by induction every cut is a true
// boundary when all parts read cleanly. Any failure (a bad cut, or invalid JSON) falls back to the
// sequential read, which reports errors with their byte offsets.

constexpr int64_t kMinPartBytes = int64_t(1) << 20;
constexpr int64_t kCutSearchBytes = int64_t(1) << 20;

bool is_space(uint8_t c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

// The offset of a '{' after "}," at or after `from` (within kCutSearchBytes), or -1.
int64_t find_cut(const uint8_t* d, int64_t size, int64_t from) {
  const int64_t stop = std::min(size, from + kCutSearchBytes);
  for (int64_t i = from; i < stop; ++i) {
    if (d[i] != '}') continue;
    int64_t j = i + 1;
    while (j < size && is_space(d[j])) ++j;
    if (j == size || d[j] != ',') continue;
    ++j;
    while (j < size && is_space(d[j])) ++j;
    if (j < size && d[j] == '{') return j;
  }
  return -1;
}

// Reads the elements in [begin, end): the first part opens the array, every part but the last ends
// after a ',' and the last closes the array at the end of the file.
void read_part(const uint8_t* d, int64_t begin, int64_t end, bool first, bool last, File& f) {
  json::Reader r(d + begin, end - begin);
  if (first) r.expect('[', "expected an array");
  for (;;) {
    if (r.next_kind() != json::kObject) {
      f.fallback = true;
      r.skip();
    } else {
      read_annotation(r, f);
    }
    if (r.consume(',')) {
      if (!last && r.at_end()) return;
      continue;
    }
    if (last && r.consume(']') && r.at_end()) return;
    r.fail("not an element boundary");
  }
}

template <typename T>
void append(std::vector<T>& a, const std::vector<T>& b) {
  a.insert(a.end(), b.begin(), b.end());
}

// b's offsets (after its leading 0) shifted by `base`, the size of what they index in a.
void append_offsets(std::vector<int64_t>& a, const std::vector<int64_t>& b, int64_t base) {
  for (size_t i = 1; i < b.size(); ++i) a.push_back(b[i] + base);
}

void append(Annotations& a, const Annotations& b) {
  append_offsets(a.ann_polys, b.ann_polys, static_cast<int64_t>(a.poly_offsets.size()) - 1);
  append_offsets(a.poly_offsets, b.poly_offsets, static_cast<int64_t>(a.poly_xy.size()));
  append_offsets(a.rle_char_offsets, b.rle_char_offsets, static_cast<int64_t>(a.rle_chars.size()));
  append_offsets(a.rle_count_offsets, b.rle_count_offsets, static_cast<int64_t>(a.rle_counts.size()));
  append_offsets(a.keypoint_offsets, b.keypoint_offsets, static_cast<int64_t>(a.keypoints.size()));
  append(a.scalars.val, b.scalars.val);
  append(a.scalars.ival, b.scalars.ival);
  append(a.scalars.kind, b.scalars.kind);
  a.scalars.n += b.scalars.n;
  append(a.shape, b.shape);
  append(a.bbox, b.bbox);
  append(a.bbox_len, b.bbox_len);
  append(a.poly_xy, b.poly_xy);
  append(a.rle_size, b.rle_size);
  append(a.rle_chars, b.rle_chars);
  append(a.rle_counts, b.rle_counts);
  append(a.keypoints, b.keypoints);
}

// A result file (top-level array) of at least two parts' size, read in parallel; nullopt when it is
// not one, is too small, or any part fails (the caller then reads it sequentially).
std::optional<File> read_results_in_parts(const uint8_t* d, int64_t size) {
  const int64_t parts = std::min<int64_t>(at::get_num_threads(), size / kMinPartBytes);
  if (parts < 2) return std::nullopt;
  int64_t start = 0;
  if (size >= 3 && d[0] == 0xEF && d[1] == 0xBB && d[2] == 0xBF) start = 3;
  while (start < size && is_space(d[start])) ++start;
  if (start == size || d[start] != '[') return std::nullopt;
  std::vector<int64_t> cuts{0};
  for (int64_t p = 1; p < parts; ++p) {
    const int64_t cut = find_cut(d, size, std::max(cuts.back() + 1, size * p / parts));
    if (cut < 0) return std::nullopt;
    cuts.push_back(cut);
  }
  cuts.push_back(size);
  std::vector<File> files(parts);
  std::vector<char> ok(parts, 0);
  share_work(parts, 1, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      // the first part's columns receive the others': room for the whole file, so they never move
      reserve(files[p], p == 0 ? size : cuts[p + 1] - cuts[p]);
      try {
        read_part(d, cuts[p], cuts[p + 1], p == 0, p == parts - 1, files[p]);
        ok[p] = 1;
      } catch (const c10::Error&) {
      }
    }
  });
  for (char k : ok)
    if (!k) return std::nullopt;
  File f = std::move(files[0]);
  for (int64_t p = 1; p < parts; ++p) {
    append(f.anns, files[p].anns);
    f.fallback |= files[p].fallback;
  }
  f.top_kind = json::kArray;
  f.has_annotations = true;
  return f;
}

std::vector<at::Tensor> coco_json_read_cpu(const at::Tensor& data) {
  TORCH_CHECK_TYPE(data.scalar_type() == at::kByte, "coco_json_read: data must be uint8, got ", data.scalar_type());
  TORCH_CHECK_VALUE(data.dim() == 1, "coco_json_read: data must be 1-D, got shape ", data.sizes());
  TORCH_CHECK(data.device().is_cpu(), "coco_json_read: data must be a CPU tensor, got ", data.device());
  const at::Tensor bytes = data.contiguous();
  const uint8_t* d = bytes.const_data_ptr<uint8_t>();
  std::optional<File> parts = read_results_in_parts(d, bytes.size(0));
  File f;
  if (parts) {
    f = std::move(*parts);
  } else {
    reserve(f, bytes.size(0));
    json::Reader r(d, bytes.size(0));
    read_file(r, f);
  }
  Annotations& a = f.anns;
  const int64_t n = a.scalars.n, m = f.images.n, k = f.categories.n;
  std::vector<int64_t> info{f.top_kind, f.has_images, f.has_annotations, f.has_categories, f.fallback};
  return {
      to_tensor(info, at::kLong),
      to_tensor(a.scalars.val, at::kDouble, {n, kAnnFields}),
      to_tensor(a.scalars.ival, at::kLong, {n, kAnnFields}),
      to_tensor(a.scalars.kind, at::kByte, {n, kAnnFields}),
      to_tensor(a.shape, at::kByte, {n, kShapes}),
      to_tensor(a.bbox, at::kDouble, {n, 4}),
      to_tensor(a.bbox_len, at::kLong),
      to_tensor(a.poly_xy, at::kDouble),
      to_tensor(a.poly_offsets, at::kLong),
      to_tensor(a.ann_polys, at::kLong),
      to_tensor(a.rle_size, at::kDouble, {n, 2}),
      to_tensor(a.rle_chars, at::kByte),
      to_tensor(a.rle_char_offsets, at::kLong),
      to_tensor(a.rle_counts, at::kDouble),
      to_tensor(a.rle_count_offsets, at::kLong),
      to_tensor(a.keypoints, at::kDouble),
      to_tensor(a.keypoint_offsets, at::kLong),
      to_tensor(f.images.val, at::kDouble, {m, kImgFields}),
      to_tensor(f.images.ival, at::kLong, {m, kImgFields}),
      to_tensor(f.images.kind, at::kByte, {m, kImgFields}),
      to_tensor(f.categories.val, at::kDouble, {k, 1}),
      to_tensor(f.categories.ival, at::kLong, {k, 1}),
      to_tensor(f.categories.kind, at::kByte, {k, 1}),
  };
}

}  // namespace

TORCH_LIBRARY_IMPL(fastops, CPU, m) { m.impl("coco_json_read", &coco_json_read_cpu); }

}  // namespace fastops::coco_eval
