# cmake/dnnl.cmake — the bf16 path: oneDNN (Debian 12: libdnnl-dev 2.6.3), the bf16
# sources of library `rbm`, and the bf16 micro-benchmark. Included from the top
# CMakeLists.txt right after add_library(rbm ...); nothing is downloaded.
#
# Debian's dnnl-config.cmake is not used: it was generated with the OpenCL GPU
# runtime and calls find_package(OpenCL REQUIRED), which would make ocl-icd-dev a
# build dependency for a CPU-only program. The library and header are found directly.
find_path(DNNL_INCLUDE_DIR oneapi/dnnl/dnnl.hpp)
find_library(DNNL_LIBRARY NAMES dnnl)
if(NOT DNNL_INCLUDE_DIR OR NOT DNNL_LIBRARY)
  message(FATAL_ERROR "oneDNN not found (needed for --precision bf16): "
                      "apt-get install libdnnl-dev (tools/setup.sh does)")
endif()
# oneDNN's CPU runtime in Debian's build is OpenMP (libgomp): gemm_bf16.cpp calls
# omp_set_num_threads, so link the OpenMP runtime (no -fopenmp for our code).
find_package(OpenMP REQUIRED COMPONENTS CXX)
message(STATUS "oneDNN: ${DNNL_LIBRARY} (OpenMP runtime: ${OpenMP_CXX_LIBRARIES})")

add_library(rbm_dnnl INTERFACE)
target_include_directories(rbm_dnnl SYSTEM INTERFACE ${DNNL_INCLUDE_DIR})
target_link_libraries(rbm_dnnl INTERFACE ${DNNL_LIBRARY} ${OpenMP_CXX_LIBRARIES})

target_sources(rbm PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/../src/gemm_bf16.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../src/rbm_bf16.cpp)
target_link_libraries(rbm PUBLIC rbm_dnnl)

# bench_bf16: GFLOP/s of each CD product and CD-1 samples/s, fp32 vs bf16, one core.
add_executable(bench_bf16 ${CMAKE_CURRENT_LIST_DIR}/../apps/bench_bf16.cpp)
target_link_libraries(bench_bf16 PRIVATE rbm)
target_compile_options(bench_bf16 PRIVATE ${RBM_WARNINGS})

# xcore_bw: read bandwidth of data another core has just written vs this core's own
# (the cost behind two ranks' shared-memory reduction; README "Speed").
find_package(Threads REQUIRED)
add_executable(xcore_bw ${CMAKE_CURRENT_LIST_DIR}/../apps/xcore_bw.cpp)
target_link_libraries(xcore_bw PRIVATE Threads::Threads)
target_compile_options(xcore_bw PRIVATE -O3 -ffast-math -march=native)
