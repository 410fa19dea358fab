// gemm_bf16.cpp — see rbm/gemm_bf16.hpp.
//
// Mapping a column-major product onto oneDNN's matmul (row-major semantics,
// dst[m, n] = sum_k src[m, k] * weights[k, n], any strides): a column-major C[M, N]
// is the row-major C'[N, M], and C' = op(B)' op(A)'. So
//   src     = op(B)'  dims {N, K}:  B  (no transpose) -> strides {ldb, 1}
//                                   B' (transpose)    -> strides {1, ldb}
//   weights = op(A)'  dims {K, M}:  A                 -> strides {lda, 1}
//                                   A'                -> strides {1, lda}
//   dst     = C'      dims {N, M}:  strides {ldc, 1}
// The CD products come out as: W'X -> src, weights and dst all plain row-major;
// W Hs -> transposed weights; A P' -> transposed src. oneDNN 2.6.3's brgemm kernel
// takes all three directly (measured: ~200 GFLOP/s on one EPYC core, the same as
// with weights pre-packed in its blocked layout, so no packing is done here).
#include "rbm/gemm_bf16.hpp"

#include <cpuid.h>
#include <immintrin.h>
#include <omp.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <stdexcept>
#include <unordered_map>

#include "rbm/prof.hpp"

namespace rbm::bf16 {

// ---------------------------------------------------------------------------
// CPU features
// ---------------------------------------------------------------------------
namespace {
uint64_t xcr0() {
  uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

struct Bf16Features {
  bool avx512_bf16 = false;  // usable: CPU bit + AVX512F/BW/VL + OS saves ZMM state
  bool amx_bf16 = false;     // usable: CPU bit + OS saves tile state
};

Bf16Features detect() {
  Bf16Features f;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = (c >> 27) & 1u;
  if (!osxsave) return f;
  const uint64_t x = xcr0();
  const bool os_zmm = (x & 0xe6u) == 0xe6u;                    // XMM|YMM|opmask|ZMM_Hi256|Hi16_ZMM
  const bool os_tile = ((x >> 17) & 3u) == 3u;                 // XTILECFG|XTILEDATA
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  const unsigned max_sub = a;
  const bool avx512f = (b >> 16) & 1u, avx512bw = (b >> 30) & 1u, avx512vl = (b >> 31) & 1u;
  f.amx_bf16 = ((d >> 22) & 1u) && os_tile;
  if (max_sub >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d))
    f.avx512_bf16 = ((a >> 5) & 1u) && avx512f && avx512bw && avx512vl && os_zmm;
  return f;
}

const Bf16Features& features() {
  static const Bf16Features f = detect();
  return f;
}
}  // namespace

namespace {
// Test hook: RBM_FAKE_NO_BF16=1 makes cpu_has_native_bf16() answer false, so the tests
// can check what a CPU without native bf16 does (rbm_dist --precision bf16: exit 2).
bool faked_no_bf16() {
  static const bool fake = [] {
    const char* e = std::getenv("RBM_FAKE_NO_BF16");
    return e && e[0] == '1';
  }();
  return fake;
}
}  // namespace

bool cpu_has_native_bf16() {
  return !faked_no_bf16() && (features().avx512_bf16 || features().amx_bf16);
}

const char* native_bf16_name() {
  if (faked_no_bf16()) return "none (RBM_FAKE_NO_BF16=1)";
  if (features().amx_bf16) return "AMX-BF16";
  if (features().avx512_bf16) return "AVX512_BF16";
  return "none";
}

// ---------------------------------------------------------------------------
// threads
// ---------------------------------------------------------------------------
namespace {
// Threads for oneDNN's OpenMP regions: 0 = not chosen (then 1, unless OMP_NUM_THREADS
// is set). omp_set_num_threads acts on the calling thread's ICV only, so every thread
// that runs products applies it when its context is created (and set_threads on itself).
std::atomic<int> g_threads{0};

void apply_threads() {
  int n = g_threads.load();
  if (n == 0) {
    const char* e = std::getenv("OMP_NUM_THREADS");
    if (e && *e) return;  // the user's choice, already in the ICV
    n = 1;
  }
  omp_set_num_threads(n);
}
}  // namespace

void set_threads(int n) {
  g_threads = n < 1 ? 1 : n;
  apply_threads();
}
int threads() {
  apply_threads();
  return omp_get_max_threads();
}

// ---------------------------------------------------------------------------
// conversion
// ---------------------------------------------------------------------------
void to_bf16_scalar(const float* in, bf16_t* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = round(in[i]);
}

namespace {
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void to_bf16_avx512(
    const float* in, bf16_t* out, size_t n) {
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 lo = _mm512_loadu_ps(in + i), hi = _mm512_loadu_ps(in + i + 16);
    const __m512bh r = _mm512_cvtne2ps_pbh(hi, lo);  // lanes 0..15 from lo, 16..31 from hi
    _mm512_storeu_si512(reinterpret_cast<void*>(out + i), reinterpret_cast<__m512i>(r));
  }
  while (i < n) {  // 1..31 left: masked 16-wide steps
    const size_t m = n - i < 16 ? n - i : 16;
    const __mmask16 k = static_cast<__mmask16>((1u << m) - 1u);
    const __m256bh r = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(k, in + i));
    _mm256_mask_storeu_epi16(reinterpret_cast<void*>(out + i), k, reinterpret_cast<__m256i>(r));
    i += m;
  }
}
}  // namespace

void to_bf16(const float* in, bf16_t* out, size_t n) {
  if (features().avx512_bf16)
    to_bf16_avx512(in, out, n);
  else
    to_bf16_scalar(in, out, n);
}

void to_float(const bf16_t* in, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = to_float(in[i]);
}

AlignedBuffer::~AlignedBuffer() { std::free(p_); }

bf16_t* AlignedBuffer::reserve(size_t n) {
  if (n <= n_) return p_;
  std::free(p_);
  const size_t bytes = ((n * sizeof(bf16_t) + 63) / 64) * 64;
  p_ = static_cast<bf16_t*>(std::aligned_alloc(64, bytes));
  if (!p_) {
    n_ = 0;
    throw std::bad_alloc();
  }
  n_ = n;
  return p_;
}

// ---------------------------------------------------------------------------
// matmul cache
// ---------------------------------------------------------------------------
namespace {
using dnnl::memory;
using dt = memory::data_type;

struct Key {
  int64_t M, N, K, lda, ldb, ldc;
  bool ta, tb;
  bool operator==(const Key&) const = default;
};
struct KeyHash {
  size_t operator()(const Key& k) const {
    size_t h = 0xcbf29ce484222325ull;
    for (int64_t v : {k.M, k.N, k.K, k.lda, k.ldb, k.ldc, int64_t(k.ta), int64_t(k.tb)})
      h = (h ^ static_cast<size_t>(v)) * 0x100000001b3ull;
    return h;
  }
};

struct Entry {
  dnnl::matmul prim;
  memory src, wei, dst;
  std::unordered_map<int, memory> args;
  std::string impl;
};

class Context {
 public:
  Context() : eng_(dnnl::engine::kind::cpu, 0), strm_(eng_) {}

  Entry& get(const Key& k) {
    auto it = cache_.find(k);
    if (it != cache_.end()) return it->second;
    const memory::dims src_strides =
        k.tb ? memory::dims{1, k.ldb} : memory::dims{k.ldb, 1};
    const memory::dims wei_strides =
        k.ta ? memory::dims{1, k.lda} : memory::dims{k.lda, 1};
    memory::desc src_md({k.N, k.K}, dt::bf16, src_strides);
    memory::desc wei_md({k.K, k.M}, dt::bf16, wei_strides);
    memory::desc dst_md({k.N, k.M}, dt::f32, memory::dims{k.ldc, 1});
    Entry e;
    try {
      auto pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(src_md, wei_md, dst_md), eng_);
      e.prim = dnnl::matmul(pd);
      e.impl = pd.impl_info_str();
    } catch (const dnnl::error& err) {
      throw std::runtime_error(std::string("oneDNN bf16 matmul (M=") + std::to_string(k.M) +
                               " N=" + std::to_string(k.N) + " K=" + std::to_string(k.K) +
                               "): " + err.what());
    }
    // Memory objects without a buffer of their own; pointed at the caller's arrays.
    e.src = memory(src_md, eng_, DNNL_MEMORY_NONE);
    e.wei = memory(wei_md, eng_, DNNL_MEMORY_NONE);
    e.dst = memory(dst_md, eng_, DNNL_MEMORY_NONE);
    e.args = {{DNNL_ARG_SRC, e.src}, {DNNL_ARG_WEIGHTS, e.wei}, {DNNL_ARG_DST, e.dst}};
    return cache_.emplace(k, std::move(e)).first->second;
  }

  void run(Entry& e, const void* src, const void* wei, void* dst) {
    e.src.set_data_handle(const_cast<void*>(src));
    e.wei.set_data_handle(const_cast<void*>(wei));
    e.dst.set_data_handle(dst);
    e.prim.execute(strm_, e.args);
    strm_.wait();
  }
  size_t size() const { return cache_.size(); }

 private:
  dnnl::engine eng_;
  dnnl::stream strm_;
  std::unordered_map<Key, Entry, KeyHash> cache_;
};

Context& context() {
  thread_local Context ctx;
  thread_local int applied = -1;
  if (applied != g_threads.load()) {  // first use on this thread, or set_threads since
    apply_threads();
    applied = g_threads.load();
  }
  return ctx;
}

Key make_key(Op ta, Op tb, int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb,
             int64_t ldc) {
  if (M < 1 || N < 1 || K < 1) throw std::invalid_argument("bf16::gemm: sizes must be >= 1");
  if (lda < (ta == Op::N ? M : K) || ldb < (tb == Op::N ? K : N) || ldc < M)
    throw std::invalid_argument("bf16::gemm: leading dimension too small");
  return Key{M, N, K, lda, ldb, ldc, ta == Op::T, tb == Op::T};
}
}  // namespace

void gemm(Op ta, Op tb, int64_t M, int64_t N, int64_t K, const bf16_t* A, int64_t lda,
          const bf16_t* B, int64_t ldb, float* C, int64_t ldc) {
  prof::Scope timed(prof::gemm);
  Context& ctx = context();
  Entry& e = ctx.get(make_key(ta, tb, M, N, K, lda, ldb, ldc));
  // src = op(B)', weights = op(A)' (see the top of this file)
  ctx.run(e, B, A, C);
}

std::string gemm_impl(Op ta, Op tb, int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb,
                      int64_t ldc) {
  return context().get(make_key(ta, tb, M, N, K, lda, ldb, ldc)).impl;
}

size_t cache_size() { return context().size(); }

std::string describe() {
  const dnnl_version_t* v = dnnl::version();
  const char* isa = "?";
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::avx512_core_amx: isa = "avx512_core_amx"; break;
    case dnnl::cpu_isa::avx512_core_bf16: isa = "avx512_core_bf16"; break;
    case dnnl::cpu_isa::avx512_core_vnni: isa = "avx512_core_vnni"; break;
    case dnnl::cpu_isa::avx512_core: isa = "avx512_core"; break;
    case dnnl::cpu_isa::avx2: isa = "avx2"; break;
    default: isa = "other"; break;
  }
  const int t = threads();
  return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
         std::to_string(v->patch) + " bf16 matmul (CPU bf16: " + native_bf16_name() +
         "; oneDNN ISA " + isa + "), " + std::to_string(t) + (t == 1 ? " thread" : " threads");
}

}  // namespace rbm::bf16
