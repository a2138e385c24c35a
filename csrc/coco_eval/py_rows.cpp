// The C-API loop numpy's np.array(list of lists) runs, without its type discovery pass: each
// element is an exact Python float, int or bool (anything else gives None and the caller takes
// numpy's path, which names the problem or follows its rules).
#include "coco_eval/py_rows.h"

#include <pybind11/numpy.h>

#include <cstdint>

namespace py = pybind11;

namespace fastops::coco {
namespace {

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
    int overflow = 0;
    const long long i = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow != 0 || (i == -1 && PyErr_Occurred())) {
      PyErr_Clear();
      return false;
    }
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

}  // namespace

void register_python_readers(py::module_& m) {
  m.def("float_rows", &float_rows, py::arg("rows"), py::arg("total"),
        "A list of lists (or tuples) of Python floats, ints and bools -> float64 [total], the rows "
        "concatenated; None when anything else appears (the caller falls back to numpy).");
}

}  // namespace fastops::coco
