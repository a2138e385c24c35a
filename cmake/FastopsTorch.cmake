# Locate the installed torch through the Python that runs the build, without torch's own CMake
# config: that config insists on a CUDA toolkit whenever torch is a CUDA build, and FASTOPS_CUDA=0
# must build without one.
#
# Sets TORCH_VERSION, TORCH_CUDA_VERSION ("" for a CPU build), TORCH_INCLUDE_DIRS, TORCH_LIBRARY_DIR,
# TORCH_SITE_PACKAGES, TORCH_COMPILE_DEFINITIONS, TORCH_CPU_LIBRARIES.
find_package(Python REQUIRED COMPONENTS Interpreter)
execute_process(
  COMMAND "${Python_EXECUTABLE}" -c "
import os, torch
root = os.path.dirname(torch.__file__)
print('version', torch.__version__, sep='=')
print('cuda', torch.version.cuda or '', sep='=')
print('root', root, sep='=')
print('abi', int(torch._C._GLIBCXX_USE_CXX11_ABI), sep='=')
"
  OUTPUT_VARIABLE _info
  RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "fastops: cannot import torch with ${Python_EXECUTABLE}. Install torch first, "
                      "then build with `pip install --no-build-isolation .`")
endif()
foreach(_key version cuda root abi)
  string(REGEX MATCH "${_key}=([^\n]*)" _ "${_info}")
  set(_torch_${_key} "${CMAKE_MATCH_1}")
endforeach()

set(TORCH_VERSION "${_torch_version}")
set(TORCH_CUDA_VERSION "${_torch_cuda}")
set(TORCH_INCLUDE_DIRS "${_torch_root}/include" "${_torch_root}/include/torch/csrc/api/include")
set(TORCH_LIBRARY_DIR "${_torch_root}/lib")
get_filename_component(TORCH_SITE_PACKAGES "${_torch_root}" DIRECTORY)
set(TORCH_COMPILE_DEFINITIONS _GLIBCXX_USE_CXX11_ABI=${_torch_abi})
set(TORCH_CPU_LIBRARIES "")
foreach(_lib c10 torch_cpu torch)
  find_library(_fastops_lib_${_lib} NAMES ${_lib} PATHS "${TORCH_LIBRARY_DIR}" NO_DEFAULT_PATH REQUIRED)
  list(APPEND TORCH_CPU_LIBRARIES "${_fastops_lib_${_lib}}")
endforeach()
message(STATUS "fastops: torch ${TORCH_VERSION} (CUDA '${TORCH_CUDA_VERSION}') at ${_torch_root}")
