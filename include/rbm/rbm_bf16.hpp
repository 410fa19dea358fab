// rbm/rbm_bf16.hpp — Contrastive Divergence statistics with bf16 matrix products.
//
// defines: rbm::Precision, parse_precision, precision_name, CdBf16Workspace,
//          cd_gradient_bf16, cd_gradient_prec, update_with_bf16_copy
//
// Mixed precision as in deep learning: the parameters, the statistics, the
// element-wise work (bias, sigmoid, sampling, sums for db and dc) stay fp32; only the
// inputs of the matrix products are rounded to bf16 and the products accumulate in
// fp32 (rbm/gemm_bf16.hpp). Binary unit states are exact in bf16; the weights,
// probabilities and the data x/255 are rounded (relative error <= 2^-8 each).
// The random draws are the ones cd_gradient uses (same (stream, sub, step, id, unit)
// counters), so with the same parameters and data the only difference from
// cd_gradient is that rounding — and the samples it flips when a probability moves
// across a uniform.
#pragma once

#include <algorithm>
#include <string>

#include "rbm/gemm_bf16.hpp"
#include "rbm/rbm.hpp"

namespace rbm {

enum class Precision { fp32, bf16 };

/// "fp32" or "bf16"; anything else throws rbm::UsageError.
Precision parse_precision(const std::string& s);
const char* precision_name(Precision p);
/// Banner line: which products run and whether this CPU has native bf16, e.g.
/// "precision bf16: products in oneDNN 2.6.3 bf16 matmul (CPU bf16: AVX512_BF16; ...), 1 thread"
/// "precision fp32: products in fp32 (CPU bf16: AVX512_BF16, unused; --precision bf16 uses it)"
std::string precision_banner(Precision p);

/// cd_gradient's buffers plus the bf16 copies of the product inputs.
struct CdBf16Workspace {
  CdWorkspace f32;          ///< A, P, Hs, Vr exactly as cd_gradient uses them
  bf16::AlignedBuffer Wb;   ///< bf16(W), row-major [V, H]
  bf16::AlignedBuffer Ab;   ///< bf16 of f32.A  [V, B + N]
  bf16::AlignedBuffer Pb;   ///< bf16 of f32.P  [H, B + N] (already scaled)
  bf16::AlignedBuffer Hb;   ///< bf16 sampled hidden states [H, max(B, N)]
  /// false (default): cd_gradient_bf16 converts p.W into Wb on every call (once per
  /// step). true: the caller promises Wb already holds bf16(p.W) for this call, e.g.
  /// because its update pass wrote the bf16 copy (update_with_bf16_copy does, and
  /// sets the flag). Every cd_gradient_bf16 call resets it to false.
  bool w_is_current = false;
  /// When set, cd_gradient_bf16 reads bf16(p.W) from here instead of Wb and never
  /// converts W itself: the caller keeps it current (rbm_dist: one copy per node in
  /// the shared window, written by the fused update, see fused_update).
  const bf16::bf16_t* w_shared = nullptr;
  bf16::bf16_t* wb(size_t V, size_t H) { return Wb.reserve(V * H); }
};

/// The same statistics, counters and chain updates as cd_gradient (see rbm.hpp),
/// with the five kinds of matrix products in bf16-in / fp32-accumulate:
///   p(h|x) = sig(W'x + c), p(v|h) = sig(W h + b), p(h|v) and dW = [X0 Vneg][P0 Pneg]'.
/// Requires bf16::cpu_has_native_bf16() (throws std::runtime_error otherwise: the
/// emulated path would be slower than fp32).
CdCounters cd_gradient_bf16(const Params& p, const CdConfig& cfg,
                            const Eigen::Ref<const Matrix>& X, const uint64_t* sample_index,
                            Matrix* chains, const uint64_t* chain_index, const CounterRng& rng,
                            CdBf16Workspace& ws, Params grad);

/// cd_gradient (fp32, uses ws.f32) or cd_gradient_bf16, by `prec`.
CdCounters cd_gradient_prec(Precision prec, const Params& p, const CdConfig& cfg,
                            const Eigen::Ref<const Matrix>& X, const uint64_t* sample_index,
                            Matrix* chains, const uint64_t* chain_index, const CounterRng& rng,
                            CdBf16Workspace& ws, Params grad);

/// The update pass that also keeps the bf16 copy of W: calls update(first, count)
/// for consecutive ranges [first, first + count) covering the parameter buffer
/// p.data()[0 .. p.size()) (W first, then b and c), and right after each range of W
/// rounds it into ws.Wb while it is still in cache — no separate pass over W (a
/// separate to_bf16 of W costs a full read of W from memory each step: ~1.5 MB at
/// 784x500). Sets ws.w_is_current, so the next cd_gradient_bf16 skips its own
/// conversion. `block` floats per range (default 16K = 64 KB, fits in L2).
template <class Update>
void update_with_bf16_copy(const Params& p, CdBf16Workspace& ws, Update&& update,
                           size_t block = 16384) {
  const size_t nW = p.V * p.H, n = p.size();
  bf16::bf16_t* Wb = ws.wb(p.V, p.H);
  for (size_t first = 0; first < n; first += block) {
    const size_t count = std::min(block, n - first);
    update(first, count);
    if (first < nW) bf16::to_bf16(p.data() + first, Wb + first, std::min(count, nW - first));
  }
  ws.w_is_current = true;
}

/// The node's fused reduction + SGD update of elements [a, b) of the parameter layout
/// [W | b | c] (sgd_momentum_update's rule, rbm.hpp), from ng gradient buffers g[0..ng)
/// of the same layout (the local ranks' slots, or one already summed buffer):
///   s_i = ((g_0[i] + g_1[i]) + ...) + g_{ng-1}[i]     (this order: bitwise reproducible)
///   m_i <- mu m_i + lr (s_i - lambda theta_i)  (weights; biases without the decay)
///   theta_i <- theta_i + m_i
/// in cache-sized blocks, one pass over memory (no summed buffer is written). When
/// `w16` is given, the new weights of [a, min(b, V*H)) are also rounded into
/// w16[i] (the bf16 copy of W the next step's products read) while in cache.
/// Returns 1 if some new theta_i is NaN or infinite, else 0. Same result, bit for bit,
/// as summing into a buffer and calling sgd_momentum_update.
uint32_t fused_update(float* theta, float* momentum, const float* const* g, int ng,
                      const SgdHyper& h, size_t a, size_t b, bf16::bf16_t* w16 = nullptr);

}  // namespace rbm
