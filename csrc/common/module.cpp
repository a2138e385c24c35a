// The Python module fastops._C. Importing it runs the static TORCH_LIBRARY registrations of every
// op compiled into it; the functions here describe the build, and metrics' readers of Python lists
// are added from their family.
#include <pybind11/pybind11.h>

#include <ATen/Parallel.h>

#include "common/cpu_alloc.h"
#include "common/cpu_dispatch.h"
#include "coco_eval/py_rows.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastops compiled kernels (ops are registered under torch.ops.fastops)";
  m.def("compiled_info", [] {
    py::dict info;
    info["torch_version"] = FASTOPS_TORCH_VERSION;
#ifdef FASTOPS_WITH_CUDA
    info["cuda"] = true;
#else
    info["cuda"] = false;
#endif
    info["cuda_archs"] = FASTOPS_CUDA_ARCHS;
    info["cpu_isa"] = fastops::cpu::isa_name(fastops::cpu::active_isa());
    info["cpu_isa_detected"] = fastops::cpu::isa_name(fastops::cpu::detected_isa());
    info["num_threads"] = at::get_num_threads();
    return info;
  });
  m.def(
      "set_cpu_isa",
      [](const std::string& name) {
        const auto cap = fastops::cpu::parse_isa(name);
        return std::string(fastops::cpu::isa_name(fastops::cpu::set_isa_cap(cap)));
      },
      "Caps the CPU instruction set fastops kernels use (for tests and benchmarks); returns the one now active.");
  m.def(
      "release_output_cache", [] { return fastops::cpu::release_output_cache(); },
      "Frees the memory of freed large CPU outputs kept for reuse; returns the bytes released.");
  m.def(
      "output_cache_bytes", [] { return fastops::cpu::output_cache_bytes(); },
      "Bytes of freed large CPU outputs held for reuse.");
  fastops::coco::register_python_readers(m);
}
