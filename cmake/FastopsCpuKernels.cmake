# fastops_add_cpu_kernels(target sources): compile each raw CPU kernel source once per instruction
# set (-fno-trapping-math lets the compiler evaluate both sides of a select, as vector code must;
# it changes no result; -Wno-psabi: the 16-float lanes of cpu_lanes.h are inlined, never passed
# across an ABI boundary). Every copy defines FASTOPS_CPU_ISA (0 default, 1 AVX2, 2 AVX-512) and registers its functions
# under that level; csrc/common/cpu_dispatch.h picks the best level the running CPU supports.
# FASTOPS_CPU_ISA_LEVELS: the copies to build (a sanitizer build on a CPU without AVX-512 leaves out
# level 2: the instrumented static initializers of that copy may use AVX-512 instructions).
set(FASTOPS_CPU_ISA_LEVELS "0;1;2" CACHE STRING "CPU instruction-set copies of the kernels to build (0;1;2)")
set(FASTOPS_CPU_ISA_FLAGS_0 "")
set(FASTOPS_CPU_ISA_FLAGS_1 "-mavx2;-mfma;-mf16c;-mbmi2")
set(FASTOPS_CPU_ISA_FLAGS_2 "-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mavx2;-mfma;-mf16c;-mbmi2;-mprefer-vector-width=512")
function(fastops_add_cpu_kernels target sources)
  if(NOT sources)
    return()
  endif()
  foreach(_level ${FASTOPS_CPU_ISA_LEVELS})
    set(_lib ${target}_cpu_isa${_level})
    add_library(${_lib} OBJECT ${sources})
    set_target_properties(${_lib} PROPERTIES POSITION_INDEPENDENT_CODE ON CXX_VISIBILITY_PRESET hidden)
    target_include_directories(${_lib} PRIVATE "${CMAKE_CURRENT_SOURCE_DIR}/csrc")
    target_include_directories(${_lib} SYSTEM PRIVATE ${TORCH_INCLUDE_DIRS})
    target_compile_definitions(${_lib} PRIVATE ${TORCH_COMPILE_DEFINITIONS} FASTOPS_CPU_ISA=${_level})
    target_compile_options(${_lib} PRIVATE -O3 -ffp-contract=off -fno-math-errno -fno-trapping-math -Wall -Wextra
                           -Wno-unused-parameter -Wno-psabi ${FASTOPS_CPU_ISA_FLAGS_${_level}})
    target_link_libraries(${_lib} PRIVATE OpenMP::OpenMP_CXX)
    target_sources(${target} PRIVATE $<TARGET_OBJECTS:${_lib}>)
  endforeach()
endfunction()
