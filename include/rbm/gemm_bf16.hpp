// rbm/gemm_bf16.hpp — bf16-input / fp32-output matrix products (oneDNN matmul),
// fp32 <-> bf16 conversion, and the CPU check for native bf16.
//
// defines: rbm::bf16::bf16_t, cpu_has_native_bf16, native_bf16_name, describe,
//          set_threads, threads, round, to_bf16, to_float, Op, gemm, gemm_impl,
//          cache_size, hidden_pre, visible_pre, stats, AlignedBuffer
//
// bf16 ("brain float") keeps float's sign and 8-bit exponent and the top 7 bits of
// its 23-bit mantissa (8 significant bits with the implicit one). Converting with
// round-to-nearest-even has a relative error <= u = 2^-8 (half the spacing 2^-7 at 1;
// NOT 2^-9: that would need 8 STORED bits) for normal numbers; 0 and 1
// (binary unit states) and every integer up to 256 are exact.
//
// The products run as oneDNN matmul primitives (bf16 src/weights, f32 dst, f32
// accumulation; oneDNN's brgemm kernel `brg:avx512_core_bf16` on AVX512-BF16 CPUs,
// AMX tiles on CPUs with AMX-BF16). Each distinct (shape, transposes, leading
// dimensions) gets ONE primitive, created on first use and kept in a per-thread
// cache together with its memory objects, so a training step creates nothing: it
// only points the cached memory objects at the step's buffers and executes.
//
// Conventions: matrices are column-major like BLAS and like rbm::Matrix; an
// `ld` is the distance between columns. rbm::Params::W, row-major [V, H], is the
// column-major [H, V] matrix W' with ld H: the CD products below take it like that.
//
// Threads: Debian's oneDNN 2.6.3 is built with the OpenMP runtime (libgomp), so it
// uses omp_get_max_threads() threads. Like OpenBLAS in this project (MPI ranks are
// the parallelism), each thread's first product sets ONE thread unless
// OMP_NUM_THREADS is set; set_threads(n) chooses n (omp_set_num_threads, applied on
// every thread that runs products).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace rbm::bf16 {

/// One bf16 number as its raw bits (the upper half of the float's bits).
using bf16_t = uint16_t;

/// True if the CPU multiplies bf16 natively: AVX512_BF16 (CPUID.(7,1):EAX[5], with
/// AVX-512 state enabled by the OS) or AMX-BF16 (CPUID.(7,0):EDX[22], tile state
/// enabled). Without it oneDNN would emulate bf16 (slower than fp32) or refuse.
/// TEST HOOK: with RBM_FAKE_NO_BF16=1 in the environment it answers false (and
/// native_bf16_name() says so), to test what happens on a CPU without native bf16.
bool cpu_has_native_bf16();

/// "AMX-BF16", "AVX512_BF16" or "none" (the best native bf16 unit of this CPU).
const char* native_bf16_name();

/// Banner line, e.g. "oneDNN 2.6.3 bf16 matmul (CPU: AVX512_BF16; oneDNN ISA avx512_core_bf16), 1 thread".
std::string describe();

/// Threads of oneDNN's OpenMP runtime for this process (omp_set_num_threads).
void set_threads(int n);
int threads();

/// fp32 -> bf16, round to nearest even (NaN stays NaN, quiet). Portable scalar code;
/// bit-identical to the AVX512-BF16 instruction for every non-denormal input (the
/// instruction flushes denormal inputs to signed zero; so does this function).
inline bf16_t round(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0x7f800000u) {                   // Inf or NaN
    return static_cast<bf16_t>((u >> 16) | ((u & 0x007fffffu) ? 0x0040u : 0u));
  }
  if ((u & 0x7f800000u) == 0) return static_cast<bf16_t>((u >> 16) & 0x8000u);  // 0, denormal
  u += 0x7fffu + ((u >> 16) & 1u);  // round half to even on bit 16
  return static_cast<bf16_t>(u >> 16);
}
inline float to_float(bf16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/// out[i] = round(in[i]) for i < n. Uses VCVTNE2PS2BF16 (32 floats per instruction)
/// when the CPU has AVX512_BF16, the scalar round() otherwise; same results.
void to_bf16(const float* in, bf16_t* out, size_t n);
/// The scalar path only (tests compare the two).
void to_bf16_scalar(const float* in, bf16_t* out, size_t n);
void to_float(const bf16_t* in, float* out, size_t n);

enum class Op { N, T };

/// C[M, N] = op(A)[M, K] * op(B)[K, N]  (alpha = 1, beta = 0), all column-major:
/// op(A) = A (stored [M, K], lda >= M) or A' (stored [K, M], lda >= K), likewise B;
/// C is fp32 with ldc >= M. bf16 inputs, fp32 accumulation. Throws std::runtime_error
/// if oneDNN cannot create the primitive. Sizes must be >= 1.
void gemm(Op ta, Op tb, int64_t M, int64_t N, int64_t K, const bf16_t* A, int64_t lda,
          const bf16_t* B, int64_t ldb, float* C, int64_t ldc);

/// The oneDNN implementation gemm() uses for this case (e.g. "brg:avx512_core_bf16").
std::string gemm_impl(Op ta, Op tb, int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb,
                      int64_t ldc);

/// Primitives cached by the calling thread.
size_t cache_size();

// ---- the products of a CD step (Wb = bf16 copy of the row-major [V, H] weights) ----

/// out[H, n] (ld H) = W' X,   X bf16 [V, n] (ld V).  (hidden pre-activation)
inline void hidden_pre(const bf16_t* Wb, int64_t V, int64_t H, const bf16_t* X, int64_t n,
                       float* out) {
  gemm(Op::N, Op::N, H, n, V, Wb, H, X, V, out, H);
}
/// out[V, n] (ld V) = W Hs,   Hs bf16 [H, n] (ld H).  (visible pre-activation)
inline void visible_pre(const bf16_t* Wb, int64_t V, int64_t H, const bf16_t* Hs, int64_t n,
                        float* out) {
  gemm(Op::T, Op::N, V, n, H, Wb, H, Hs, H, out, V);
}
/// dW row-major [V, H] = A P',  A bf16 [V, K] (ld V), P bf16 [H, K] (ld H).  (statistics)
inline void stats(const bf16_t* A, int64_t V, const bf16_t* P, int64_t H, int64_t K, float* dW) {
  gemm(Op::N, Op::T, H, V, K, P, H, A, V, dW, H);
}

/// A 64-byte aligned, uninitialised array of bf16 that only grows.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer();
  /// Capacity for at least n elements (contents are lost when it grows).
  bf16_t* reserve(size_t n);
  bf16_t* data() const { return p_; }
  size_t capacity() const { return n_; }

 private:
  bf16_t* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace rbm::bf16
