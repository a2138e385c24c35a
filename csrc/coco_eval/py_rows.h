// Reading Python numbers and strings (the fields of a result list: ids, scores, boxes, keypoint
// lists, RLE strings) straight into numpy columns, for fastops.metrics' loadRes from a list of
// dicts. Exposed on the pybind11 module fastops._C.
#pragma once

#include <pybind11/pybind11.h>

namespace fastops::coco {

// Adds float_rows, dict_columns and rle_strings to the module (called by the module's definition in
// common/module.cpp).
void register_python_readers(pybind11::module_& m);

}  // namespace fastops::coco
