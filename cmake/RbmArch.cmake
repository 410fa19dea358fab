# cmake/RbmArch.cmake — which CPU the build targets.
#
# Default: a portable baseline (RBM_MARCH, x86-64-v3 = Haswell/Zen 1 and newer: AVX2,
# FMA, BMI2), so a binary built on a login node runs on every compute node of the
# cluster and computes the same element-wise results on all of them. The GEMMs do
# not depend on this: OpenBLAS picks its kernel at run time from the CPU.
# -DRBM_NATIVE=ON: -march=native instead (the build machine's CPU, e.g. AVX-512).
#
# Sets RBM_ARCH_FLAGS (compile options) and RBM_ARCH_DESCRIPTION (text shown by
# every program's --version).
include(CheckCXXCompilerFlag)

option(RBM_NATIVE "Compile for the build machine's CPU (-march=native) instead of RBM_MARCH" OFF)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  set(_rbm_default_march x86-64-v3)
else()
  set(_rbm_default_march "")  # other CPUs: the compiler's default target
endif()
set(RBM_MARCH "${_rbm_default_march}" CACHE STRING
    "-march value of the portable build (x86-64-v3 default; x86-64-v2 for pre-2013 nodes without AVX2; empty = compiler default)")

set(RBM_ARCH_FLAGS "")
if(RBM_NATIVE)
  set(RBM_ARCH_FLAGS -march=native)
  # What "native" means here, for --version: GCC prints the resolved -march value.
  execute_process(COMMAND ${CMAKE_CXX_COMPILER} -march=native -Q --help=target
                  OUTPUT_VARIABLE _rbm_q ERROR_QUIET RESULT_VARIABLE _rbm_rc)
  set(RBM_ARCH_DESCRIPTION "native")
  if(_rbm_rc EQUAL 0 AND _rbm_q MATCHES "\n[ \t]*-march=[ \t]*([A-Za-z0-9_.-]+)")
    set(_rbm_march "${CMAKE_MATCH_1}")
    set(_rbm_isa "")
    foreach(_f avx512f avx2 fma)
      if(_rbm_q MATCHES "\n[ \t]*-m${_f}[ \t]+\\[enabled\\]")
        list(APPEND _rbm_isa ${_f})
      endif()
    endforeach()
    string(REPLACE ";" " " _rbm_isa "${_rbm_isa}")
    if(_rbm_isa)
      set(RBM_ARCH_DESCRIPTION "native (-march=${_rbm_march}, ${_rbm_isa})")
    else()
      set(RBM_ARCH_DESCRIPTION "native (-march=${_rbm_march})")
    endif()
  endif()
elseif(RBM_MARCH)
  string(MAKE_C_IDENTIFIER "RBM_MARCH_OK_${RBM_MARCH}" _rbm_ok)
  check_cxx_compiler_flag(-march=${RBM_MARCH} ${_rbm_ok})
  if(NOT ${_rbm_ok})
    message(FATAL_ERROR "RBM_MARCH=${RBM_MARCH}: the compiler does not accept -march=${RBM_MARCH} "
                        "(x86-64-v2/v3 need GCC >= 11 or Clang >= 12; set -DRBM_MARCH= for the "
                        "compiler default, or -DRBM_NATIVE=ON)")
  endif()
  set(RBM_ARCH_FLAGS -march=${RBM_MARCH})
  set(RBM_ARCH_DESCRIPTION "${RBM_MARCH} (portable, -DRBM_NATIVE=ON for this CPU)")
else()
  set(RBM_ARCH_DESCRIPTION "compiler default for ${CMAKE_SYSTEM_PROCESSOR}")
endif()
message(STATUS "rbm_dist target architecture: ${RBM_ARCH_DESCRIPTION}")
