#include "rbm/blas_backend.hpp"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <string>

extern "C" {
char* openblas_get_corename(void);
char* openblas_get_config(void);
void openblas_set_num_threads(int);
int openblas_get_num_threads(void);
}

namespace rbm::blas {

namespace {
std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}
bool cpu_avx2_fma() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
bool cpu_avx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
}
bool is_avx512_core(const std::string& c) {
  const std::string l = lower(c);
  return l == "skylakex" || l == "cooperlake" || l == "sapphirerapids";
}
const char* kEnvGuard = "RBM_BLAS_REEXECED";
std::string g_forced_from;  // corename detected before we re-executed, if we did
}  // namespace

bool is_vector_core(const std::string& c) {
  const std::string l = lower(c);
  return is_avx512_core(c) || l == "haswell" || l == "zen" || l == "excavator";
}

std::string preferred_core(const std::string& corename, bool avx2_fma, bool avx512) {
  if (is_vector_core(corename)) return "";
  if (avx512) return "SkylakeX";
  if (avx2_fma) return "Haswell";
  return "";
}

void ensure_fast_kernel(int argc, char** argv) {
  (void)argc;
  if (const char* from = std::getenv(kEnvGuard)) g_forced_from = from;
  if (!std::getenv("OPENBLAS_NUM_THREADS") && !std::getenv("OMP_NUM_THREADS"))
    openblas_set_num_threads(1);
  if (std::getenv("OPENBLAS_CORETYPE") || std::getenv(kEnvGuard)) return;  // user's choice / done
  const std::string core = openblas_get_corename();
  const std::string want = preferred_core(core, cpu_avx2_fma(), cpu_avx512());
  if (want.empty()) return;
  setenv("OPENBLAS_CORETYPE", want.c_str(), 1);
  setenv(kEnvGuard, core.c_str(), 1);
  execv("/proc/self/exe", argv);
  // execv failed: carry on with the slow kernel; describe() will say so.
  unsetenv("OPENBLAS_CORETYPE");
}

bool slow_path() {
  return !is_vector_core(openblas_get_corename()) && cpu_avx2_fma();
}

std::string describe() {
  std::string config = openblas_get_config();
  std::string version = config.substr(0, config.find(' ', config.find(' ') + 1));
  std::string core = openblas_get_corename();
  std::string isa = is_avx512_core(core) ? "AVX-512" : is_vector_core(core) ? "AVX2" : "no AVX2";
  std::string s = version + " sgemm via Eigen (EIGEN_USE_BLAS), kernel " + core + " (" + isa +
                  "), " + std::to_string(threads()) + " thread(s)";
  if (!g_forced_from.empty())
    s += "; forced with OPENBLAS_CORETYPE=" + core + " because OpenBLAS detected " +
         g_forced_from + " on this CPU";
  else if (const char* env = std::getenv("OPENBLAS_CORETYPE"))
    s += std::string("; OPENBLAS_CORETYPE=") + env + " set by the user";
  if (slow_path())
    s += "; WARNING: slow pre-AVX2 kernel on a CPU with AVX2 (about 4x slower GEMM); unset "
         "OPENBLAS_CORETYPE to let rbm_dist pick a fast one";
  return s;
}

void set_threads(int n) { openblas_set_num_threads(std::max(1, n)); }
int threads() { return openblas_get_num_threads(); }

}  // namespace rbm::blas
