// rbm/blas_backend.hpp — which GEMM runs, and never the slow one by accident.
//
// defines: rbm::blas::ensure_fast_kernel, preferred_core, describe, set_threads
//
// Eigen is built with EIGEN_USE_BLAS, so every large float product is an OpenBLAS
// sgemm call. Debian 12 ships OpenBLAS 0.3.21 built with DYNAMIC_ARCH: it picks a
// kernel at load time from the CPU model. CPUs newer than 0.3.21 (e.g. Intel
// family 6 model 207) are not recognised and silently get the SSE3 "Prescott"
// kernels: ~31 GFLOP/s per core on our GEMM shapes instead of ~130 with the
// AVX-512 ("SkylakeX") kernels. OpenBLAS reads OPENBLAS_CORETYPE only while it is
// loaded, so ensure_fast_kernel() — the first call in every main() — re-executes
// the program once with OPENBLAS_CORETYPE set when the detected kernel lacks AVX2
// but the CPU has it. A kernel the user forces with OPENBLAS_CORETYPE is kept,
// with a warning if it is the slow path.
#pragma once

#include <string>

namespace rbm::blas {

/// The kernel to force for `corename` on a CPU with these features, or "" to keep it.
std::string preferred_core(const std::string& corename, bool cpu_avx2_fma, bool cpu_avx512);

/// True if `corename` is an OpenBLAS kernel using AVX2/FMA or AVX-512.
bool is_vector_core(const std::string& corename);

/// Call first in main(), before MPI_Init. May execv() the program once.
/// Also sets OpenBLAS to 1 thread per process unless OPENBLAS_NUM_THREADS or
/// OMP_NUM_THREADS says otherwise (MPI ranks are the parallelism).
void ensure_fast_kernel(int argc, char** argv);

/// e.g. "OpenBLAS 0.3.21 sgemm, kernel SkylakeX (AVX-512), 1 thread (forced: detected Prescott)"
std::string describe();

/// True if the running kernel is a pre-AVX2 one on a CPU that has AVX2 (slow path).
bool slow_path();

void set_threads(int n);
int threads();

}  // namespace rbm::blas
