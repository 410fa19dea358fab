// The build really routes Eigen's products to OpenBLAS, and never keeps the slow
// pre-AVX2 kernels on a CPU that has AVX2 without saying so.
//
// The test executable is linked with -Wl,--wrap=sgemm_: every sgemm_ call made by
// Eigen (EIGEN_USE_BLAS) goes through __wrap_sgemm_ below, which counts it and
// forwards to the real one.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <atomic>
#include <string>

#include "rbm/blas_backend.hpp"
#include "test_util.hpp"

extern "C" {
void __real_sgemm_(const char*, const char*, const int*, const int*, const int*, const float*,
                   const float*, const int*, const float*, const int*, const float*, float*,
                   const int*);
static std::atomic<int> g_sgemm_calls{0};
void __wrap_sgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k,
                   const float* alpha, const float* a, const int* lda, const float* b,
                   const int* ldb, const float* beta, float* c, const int* ldc) {
  ++g_sgemm_calls;
  __real_sgemm_(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
char* openblas_get_config(void);
}

TEST(Blas, EigenProductCallsOpenBlasSgemm) {
  const int M = 70, K = 90, N = 50;
  Eigen::MatrixXf A = Eigen::MatrixXf::Random(M, K), B = Eigen::MatrixXf::Random(K, N);
  int before = g_sgemm_calls.load();
  Eigen::MatrixXf C = A * B;
  EXPECT_GT(g_sgemm_calls.load(), before) << "Eigen did not call sgemm_: EIGEN_USE_BLAS is off";
  // ... and the answer is the product (naive loop in double as the reference).
  // Tolerance: K terms of |a*b| <= 1, float rounding ~ K * 2^-24 * max|partial sum| < 1e-4.
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double s = 0;
      for (int k = 0; k < K; ++k) s += double(A(i, k)) * B(k, j);
      ASSERT_NEAR(C(i, j), s, 1e-4);
    }
}

TEST(Blas, SgemmComesFromOpenBlas) {
  Dl_info info{};
  ASSERT_NE(dladdr(reinterpret_cast<void*>(&__real_sgemm_), &info), 0);
  std::string lib = info.dli_fname ? info.dli_fname : "";
  EXPECT_NE(lib.find("openblas"), std::string::npos) << "sgemm_ resolved to " << lib;
  EXPECT_EQ(std::string(openblas_get_config()).rfind("OpenBLAS", 0), 0u);
}

TEST(Blas, SlowKernelIsReplaced) {
  // Pre-AVX2 kernels on AVX-512 / AVX2 CPUs are replaced; vector kernels are kept.
  EXPECT_EQ(rbm::blas::preferred_core("Prescott", true, true), "SkylakeX");
  EXPECT_EQ(rbm::blas::preferred_core("Prescott", true, false), "Haswell");
  EXPECT_EQ(rbm::blas::preferred_core("Nehalem", true, false), "Haswell");
  EXPECT_EQ(rbm::blas::preferred_core("Sandybridge", true, true), "SkylakeX");
  EXPECT_EQ(rbm::blas::preferred_core("Prescott", false, false), "");  // nothing better
  EXPECT_EQ(rbm::blas::preferred_core("SkylakeX", true, true), "");
  EXPECT_EQ(rbm::blas::preferred_core("Cooperlake", true, true), "");
  EXPECT_EQ(rbm::blas::preferred_core("Haswell", true, true), "");
  EXPECT_EQ(rbm::blas::preferred_core("Zen", true, true), "");
}

TEST(Blas, RunningKernelIsNotTheSlowPath) {
  // ensure_fast_kernel() is what every program calls first; this test binary
  // did not, so check the decision on what OpenBLAS picked here.
  std::string d = rbm::blas::describe();
  EXPECT_NE(d.find("kernel"), std::string::npos) << d;
  if (rbm::blas::slow_path()) {
    EXPECT_NE(d.find("WARNING"), std::string::npos) << "slow kernel not reported: " << d;
  }
}

TEST(Blas, ForcedSlowKernelIsKeptButReported) {
  // A kernel the user forces is respected, and the slow path is said out loud in
  // the first line every program prints.
  rbm::test::TempDir tmp;
  rbm::test::RunResult r = rbm::test::run(
      "OPENBLAS_CORETYPE=Prescott " + rbm::test::bin("rbm_dist") + " --data " + (tmp / "none.h5") +
          " --checkpoint " + (tmp / "m.h5"),
      60);
  EXPECT_NE(r.code, 0);  // the dataset does not exist
  EXPECT_NE(r.out.find("kernel Prescott"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("OPENBLAS_CORETYPE=Prescott set by the user"), std::string::npos) << r.out;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    EXPECT_NE(r.out.find("WARNING: slow pre-AVX2 kernel"), std::string::npos) << r.out;
  }
}
