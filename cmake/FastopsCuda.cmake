# Decide whether the CUDA kernels are built, and set the toolkit up when they are.
#   FASTOPS_CUDA=0: never; 1: required (fails clearly without nvcc or a CUDA build of torch);
#   unset: whenever nvcc is found and torch is a CUDA build. Whether a GPU is present never matters.
# Sets FASTOPS_WITH_CUDA, FASTOPS_CUDA_ARCHS, FASTOPS_CUDA_EXTRA_INCLUDE_DIRS, TORCH_CUDA_LIBRARIES.
set(FASTOPS_WITH_CUDA OFF)
set(FASTOPS_CUDA_ARCHS "")
set(_want "$ENV{FASTOPS_CUDA}")
if(NOT _want STREQUAL "" AND NOT _want MATCHES "^[01]$")
  message(FATAL_ERROR "fastops: FASTOPS_CUDA must be 0, 1 or unset, got '${_want}'")
endif()

function(_fastops_cuda_unavailable why)
  if(_want STREQUAL "1")
    message(FATAL_ERROR "fastops: FASTOPS_CUDA=1 but ${why}")
  endif()
  message(STATUS "fastops: building without CUDA kernels: ${why}")
endfunction()

if(_want STREQUAL "0")
  message(STATUS "fastops: FASTOPS_CUDA=0, building without CUDA kernels")
  return()
endif()
if(TORCH_CUDA_VERSION STREQUAL "")
  _fastops_cuda_unavailable("the installed torch ${TORCH_VERSION} is a CPU-only build")
  return()
endif()

# Find nvcc: $CUDACXX, $CUDA_HOME/bin, $CUDA_PATH/bin, PATH, /usr/local/cuda/bin.
set(_nvcc "$ENV{CUDACXX}")
if(_nvcc STREQUAL "")
  find_program(FASTOPS_NVCC NAMES nvcc HINTS "$ENV{CUDA_HOME}/bin" "$ENV{CUDA_PATH}/bin" PATHS /usr/local/cuda/bin)
  set(_nvcc "${FASTOPS_NVCC}")
endif()
if(NOT _nvcc OR NOT EXISTS "${_nvcc}")
  _fastops_cuda_unavailable("no nvcc found (set CUDACXX or CUDA_HOME)")
  return()
endif()
# The nvcc on PATH may be a wrapper script; nvcc's dry run names the directory it really runs from,
# which gives the true toolkit root.
execute_process(COMMAND "${_nvcc}" --dryrun -c -x cu /dev/null -o /dev/null
                ERROR_VARIABLE _dry OUTPUT_VARIABLE _dry_out RESULT_VARIABLE _rc)
string(REGEX MATCH "_HERE_=([^\n]*)" _ "${_dry}${_dry_out}")
if(NOT CMAKE_MATCH_1)
  _fastops_cuda_unavailable("cannot run ${_nvcc}")
  return()
endif()
get_filename_component(_cuda_root "${CMAKE_MATCH_1}/.." ABSOLUTE)
set(CMAKE_CUDA_COMPILER "${_cuda_root}/bin/nvcc")
set(CUDAToolkit_ROOT "${_cuda_root}")

# Architectures: FASTOPS_CUDA_ARCHS in CMake's form ("80-real;90"), or TORCH_CUDA_ARCH_LIST in
# torch's ("8.0;9.0+PTX"). Default: machine code for sm_80 and sm_90, plus compute_90 PTX so newer
# GPUs can JIT-compile it.
set(_archs "$ENV{FASTOPS_CUDA_ARCHS}")
if(_archs STREQUAL "" AND NOT "$ENV{TORCH_CUDA_ARCH_LIST}" STREQUAL "")
  string(REPLACE " " ";" _list "$ENV{TORCH_CUDA_ARCH_LIST}")
  foreach(_a ${_list})
    string(REGEX MATCH "^([0-9]+)\\.([0-9]+)([a-z]?)(\\+PTX)?$" _m "${_a}")
    if(NOT _m)
      message(FATAL_ERROR "fastops: cannot read TORCH_CUDA_ARCH_LIST entry '${_a}'")
    endif()
    if(CMAKE_MATCH_4)
      list(APPEND _archs "${CMAKE_MATCH_1}${CMAKE_MATCH_2}${CMAKE_MATCH_3}")
    else()
      list(APPEND _archs "${CMAKE_MATCH_1}${CMAKE_MATCH_2}${CMAKE_MATCH_3}-real")
    endif()
  endforeach()
endif()
if(_archs STREQUAL "")
  set(_archs "80-real;90")
endif()
set(CMAKE_CUDA_ARCHITECTURES "${_archs}")
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)

# torch's CUDA headers reach for library headers (cuBLAS, cuSPARSE, ...) that a bare toolkit may
# lack; the nvidia-* wheels installed with torch ship them.
set(FASTOPS_CUDA_EXTRA_INCLUDE_DIRS "")
file(GLOB _wheel_includes "${TORCH_SITE_PACKAGES}/nvidia/cu[0-9]*/include")
if(_wheel_includes)
  list(APPEND FASTOPS_CUDA_EXTRA_INCLUDE_DIRS ${_wheel_includes})
endif()
set(TORCH_CUDA_LIBRARIES "")
foreach(_lib c10_cuda torch_cuda)
  find_library(_fastops_lib_${_lib} NAMES ${_lib} PATHS "${TORCH_LIBRARY_DIR}" NO_DEFAULT_PATH)
  if(NOT _fastops_lib_${_lib})
    _fastops_cuda_unavailable("torch has no lib${_lib}.so in ${TORCH_LIBRARY_DIR}")
    return()
  endif()
  list(APPEND TORCH_CUDA_LIBRARIES "${_fastops_lib_${_lib}}")
endforeach()

set(FASTOPS_WITH_CUDA ON)
set(FASTOPS_CUDA_ARCHS "${_archs}")
message(STATUS "fastops: CUDA kernels ON (nvcc ${CMAKE_CUDA_COMPILER_VERSION} at ${_cuda_root}, "
               "architectures ${FASTOPS_CUDA_ARCHS})")
