// Python numbers to numpy columns in C-API loops, for fastops.metrics' loadRes from a list of
// dicts: float_rows is the loop numpy's np.array(list of lists) runs, without its type discovery
// pass; dict_columns reads several keys of every dict in one pass, rle_strings the compressed RLEs
// of segm results. Each converts only the plain cases (floats, ints, bools; str and bytes) and
// answers None for anything else, where the caller takes its general path (numpy's or array's
// conversion, which names the problem or follows its rules).
#include "coco_eval/py_rows.h"

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace py = pybind11;

namespace fastops::coco {
namespace {

// *out = a Python int (or bool) v, when it fits in int64.
bool long_to_int64(PyObject* v, int64_t* out) {
  int overflow = 0;
  const long long i = PyLong_AsLongLongAndOverflow(v, &overflow);
  if (overflow != 0 || (i == -1 && PyErr_Occurred())) {
    PyErr_Clear();
    return false;
  }
  *out = i;
  return true;
}

// *out = the element as numpy converts it to float64; false for a type left to numpy's path.
bool number_to_double(PyObject* v, double* out) {
  if (PyFloat_CheckExact(v)) {
    *out = PyFloat_AS_DOUBLE(v);
    return true;
  }
  if (PyBool_Check(v)) {
    *out = v == Py_True ? 1.0 : 0.0;
    return true;
  }
  if (PyLong_CheckExact(v)) {  // numpy reads a list of ints as int64, then casts: the same rounding
    int64_t i = 0;
    if (!long_to_int64(v, &i)) return false;
    *out = static_cast<double>(i);
    return true;
  }
  return false;
}

// rows: a list of lists (or tuples) whose lengths add up to total -> float64 [total], the rows one
// after the other; None when a row or an element is anything else.
py::object float_rows(const py::list& rows, int64_t total) {
  if (total < 0) throw py::value_error("float_rows: total must be >= 0");
  py::array_t<double> out(static_cast<py::ssize_t>(total));
  double* dst = out.mutable_data();
  int64_t pos = 0;
  const Py_ssize_t n = PyList_GET_SIZE(rows.ptr());
  for (Py_ssize_t r = 0; r < n; ++r) {
    PyObject* row = PyList_GET_ITEM(rows.ptr(), r);
    if (!PyList_CheckExact(row) && !PyTuple_CheckExact(row)) return py::none();
    PyObject** items = PySequence_Fast_ITEMS(row);
    const Py_ssize_t len = PySequence_Fast_GET_SIZE(row);
    if (len > total - pos) return py::none();
    for (Py_ssize_t k = 0; k < len; ++k) {
      if (!number_to_double(items[k], dst + pos + k)) return py::none();
    }
    pos += len;
  }
  if (pos != total) return py::none();
  return std::move(out);
}

// An id as array.array("q") reads it: a Python int (or bool) within int64.
bool id_to_int64(PyObject* v, int64_t* out) { return PyLong_Check(v) && long_to_int64(v, out); }

// A scalar as array.array("d") reads it: a float (or subclass), an exact int or a bool.
bool scalar_to_double(PyObject* v, double* out) {
  if (PyFloat_Check(v)) {
    *out = PyFloat_AS_DOUBLE(v);
    return true;
  }
  if (!PyLong_CheckExact(v) && !PyBool_Check(v)) return false;
  const double d = PyLong_AsDouble(v);
  if (d == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    return false;
  }
  *out = d;
  return true;
}

enum class ColumnKind { Int, Float, Rows };

struct Column {
  py::object key;
  ColumnKind kind;
  bool ok = true;
  std::vector<int64_t> ints;
  std::vector<double> values;    // Float: one per record; Rows: the rows one after the other
  std::vector<int64_t> offsets;  // Rows: [n + 1]
};

bool read_value(Column& c, PyObject* v) {
  switch (c.kind) {
    case ColumnKind::Int: {
      int64_t i = 0;
      if (!id_to_int64(v, &i)) return false;
      c.ints.push_back(i);
      return true;
    }
    case ColumnKind::Float: {
      double d = 0;
      if (!scalar_to_double(v, &d)) return false;
      c.values.push_back(d);
      return true;
    }
    case ColumnKind::Rows: {
      if (!PyList_CheckExact(v) && !PyTuple_CheckExact(v)) return false;
      PyObject** items = PySequence_Fast_ITEMS(v);
      const Py_ssize_t len = PySequence_Fast_GET_SIZE(v);
      const size_t start = c.values.size();
      c.values.resize(start + static_cast<size_t>(len));
      for (Py_ssize_t k = 0; k < len; ++k) {
        if (!number_to_double(items[k], c.values.data() + start + k)) return false;
      }
      c.offsets.push_back(static_cast<int64_t>(c.values.size()));
      return true;
    }
  }
  return false;
}

template <typename T>
py::array_t<T> to_array(const std::vector<T>& v) {
  py::array_t<T> out(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), out.mutable_data());
  return out;
}

// anns: a list of dicts -> {key: column or None}: for each key of `ints` an int64 [n], of `floats`
// a float64 [n], of `rows` (float64 flat, int64 offsets [n + 1]) of lists (or tuples) of numbers;
// None for a key that some dict lacks or whose value is anything else.
py::dict dict_columns(const py::list& anns, const std::vector<std::string>& ints,
                      const std::vector<std::string>& floats, const std::vector<std::string>& rows) {
  const Py_ssize_t n = PyList_GET_SIZE(anns.ptr());
  std::vector<Column> columns;
  const auto add = [&](const std::vector<std::string>& keys, ColumnKind kind) {
    for (const std::string& k : keys) {
      Column c;
      c.key = py::str(k);
      c.kind = kind;
      if (kind == ColumnKind::Rows) {
        c.offsets.reserve(static_cast<size_t>(n) + 1);
        c.offsets.push_back(0);
      } else if (kind == ColumnKind::Int) {
        c.ints.reserve(static_cast<size_t>(n));
      } else {
        c.values.reserve(static_cast<size_t>(n));
      }
      columns.push_back(std::move(c));
    }
  };
  add(ints, ColumnKind::Int);
  add(floats, ColumnKind::Float);
  add(rows, ColumnKind::Rows);
  size_t failed = 0;
  for (Py_ssize_t r = 0; r < n && failed < columns.size(); ++r) {
    PyObject* d = PyList_GET_ITEM(anns.ptr(), r);
    for (Column& c : columns) {
      if (!c.ok) continue;
      PyObject* v = PyDict_Check(d) ? PyDict_GetItemWithError(d, c.key.ptr()) : nullptr;  // borrowed
      if (v == nullptr || !read_value(c, v)) {
        PyErr_Clear();
        c.ok = false;
        ++failed;
      } else if (r == 0 && c.kind == ColumnKind::Rows) {
        c.values.reserve(c.values.size() * static_cast<size_t>(n));  // the usual case: one row length
      }
    }
  }
  py::dict out;
  for (const Column& c : columns) {
    if (!c.ok) {
      out[c.key] = py::none();
    } else if (c.kind == ColumnKind::Int) {
      out[c.key] = to_array(c.ints);
    } else if (c.kind == ColumnKind::Float) {
      out[c.key] = to_array(c.values);
    } else {
      out[c.key] = py::make_tuple(to_array(c.values), to_array(c.offsets));
    }
  }
  return out;
}

// objs: a list of compressed RLE dicts ({"size": [h, w], "counts": str or bytes}), or with `key`
// a list of dicts holding them under that key -> (uint8 chars: the counts one after the other, str
// as UTF-8; int64 offsets [n + 1]; int64 hw [n, 2]), or None when a dict lacks a key or holds
// anything else (a size that is not two Python ints).
py::object rle_strings(const py::list& objs, const std::optional<std::string>& key) {
  const Py_ssize_t n = PyList_GET_SIZE(objs.ptr());
  const py::str counts_key("counts"), size_key("size");
  const py::object outer_key = key ? py::object(py::str(*key)) : py::object(py::none());
  std::vector<const char*> chars_of(static_cast<size_t>(n));
  py::array_t<int64_t> offsets(static_cast<py::ssize_t>(n) + 1);
  py::array_t<int64_t> hw({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(2)});
  int64_t* off = offsets.mutable_data();
  int64_t* sizes = hw.mutable_data();
  off[0] = 0;
  for (Py_ssize_t r = 0; r < n; ++r) {
    PyObject* d = PyList_GET_ITEM(objs.ptr(), r);
    if (key && PyDict_Check(d)) d = PyDict_GetItemWithError(d, outer_key.ptr());  // borrowed
    if (d == nullptr || !PyDict_Check(d)) {
      PyErr_Clear();
      return py::none();
    }
    PyObject* counts = PyDict_GetItemWithError(d, counts_key.ptr());  // borrowed
    PyObject* size = counts == nullptr ? nullptr : PyDict_GetItemWithError(d, size_key.ptr());
    if (size == nullptr || (!PyList_CheckExact(size) && !PyTuple_CheckExact(size)) ||
        PySequence_Fast_GET_SIZE(size) != 2 || !id_to_int64(PySequence_Fast_ITEMS(size)[0], sizes + 2 * r) ||
        !id_to_int64(PySequence_Fast_ITEMS(size)[1], sizes + 2 * r + 1)) {
      PyErr_Clear();
      return py::none();
    }
    Py_ssize_t len = 0;
    if (PyUnicode_CheckExact(counts)) {
      chars_of[r] = PyUnicode_AsUTF8AndSize(counts, &len);
      if (chars_of[r] == nullptr) {
        PyErr_Clear();
        return py::none();
      }
    } else if (PyBytes_CheckExact(counts)) {
      chars_of[r] = PyBytes_AS_STRING(counts);
      len = PyBytes_GET_SIZE(counts);
    } else {
      return py::none();
    }
    off[r + 1] = off[r] + len;
  }
  py::array_t<uint8_t> chars(static_cast<py::ssize_t>(off[n]));
  uint8_t* dst = chars.mutable_data();
  for (Py_ssize_t r = 0; r < n; ++r) std::memcpy(dst + off[r], chars_of[r], static_cast<size_t>(off[r + 1] - off[r]));
  return py::make_tuple(chars, offsets, hw);
}

}  // namespace

void register_python_readers(py::module_& m) {
  m.def("float_rows", &float_rows, py::arg("rows"), py::arg("total"),
        "A list of lists (or tuples) of Python floats, ints and bools -> float64 [total], the rows "
        "concatenated; None when anything else appears (the caller falls back to numpy).");
  m.def("dict_columns", &dict_columns, py::arg("anns"), py::arg("ints"), py::arg("floats"), py::arg("rows"),
        "One pass over a list of dicts: {key: int64 [n] (ints: Python ints), float64 [n] (floats: "
        "floats, ints, bools) or (float64 flat, int64 offsets [n + 1]) (rows: lists of numbers)}, "
        "None for a key some dict lacks or holds anything else in.");
  m.def("rle_strings", &rle_strings, py::arg("objs"), py::arg("key") = py::none(),
        "A list of compressed RLE dicts (with key: of dicts holding them under it) -> (uint8 chars, "
        "int64 offsets [n + 1], int64 hw [n, 2]), "
        "the counts (str as UTF-8) one after the other; None when anything else appears.");
}

}  // namespace fastops::coco
