// rbm_bf16.cpp — cd_gradient with bf16 products; see rbm/rbm_bf16.hpp.
//
// The control flow is cd_gradient's (src/rbm.cpp) line for line; each product
// `out = W'X` / `out = W Hs` / `dW = A P'` becomes: round its inputs to bf16 (once per
// buffer: the data X0 and the negative visibles are rounded into Ab, which the
// hidden products and the statistics product both read), call rbm::bf16, and do
// the bias and the sigmoid in fp32 as before.
#include "rbm/rbm_bf16.hpp"

#include <stdexcept>

#include "rbm/errors.hpp"
#include "rbm/prof.hpp"

namespace rbm {

namespace {
// Same sub-stream convention as src/rbm.cpp (data Gibbs steps t, chains 128 + t).
constexpr uint32_t kChainSub = 128;

using bf16::bf16_t;

inline void sigmoid_inplace(Eigen::Ref<Matrix> M) { M = M.array().logistic(); }

// out [H, n] = sigmoid(W' x + c), x given in bf16 [V, n]
void hidden_probs_b(const Params& p, const bf16_t* Wb, const bf16_t* xb, Eigen::Ref<Matrix> out) {
  const Eigen::Index n = out.cols();
  if (n == 0) return;
  bf16::gemm(bf16::Op::N, bf16::Op::N, p.H, n, p.V, Wb, p.H, xb, p.V, out.data(),
             out.outerStride());
  out.colwise() += p.c;
  sigmoid_inplace(out);
}

// out [V, n] = sigmoid(W h + b), h given in bf16 [H, n]; if `round_to` is given, also
// writes bf16(out) there ([V, n], ld V) column by column while each column is in L1.
void visible_probs_b(const Params& p, const bf16_t* Wb, const bf16_t* hb, Eigen::Ref<Matrix> out,
                     bf16_t* round_to = nullptr) {
  const Eigen::Index n = out.cols();
  if (n == 0) return;
  bf16::gemm(bf16::Op::T, bf16::Op::N, p.V, n, p.H, Wb, p.H, hb, p.H, out.data(),
             out.outerStride());
  if (!round_to) {
    out.colwise() += p.b;
    sigmoid_inplace(out);
    return;
  }
  for (Eigen::Index j = 0; j < n; ++j) {
    auto col = out.col(j);
    col = (col + p.b).array().logistic();
    bf16::to_bf16(col.data(), round_to + j * p.V, p.V);
  }
}

// bf16 copy of a contiguous column block
inline void round_block(const Eigen::Ref<const Matrix>& M, bf16_t* out) {
  // Every block passed here is a run of whole columns of a plain Matrix: contiguous.
  bf16::to_bf16(M.data(), out, static_cast<size_t>(M.size()));
}
}  // namespace

Precision parse_precision(const std::string& s) {
  if (s == "fp32") return Precision::fp32;
  if (s == "bf16") return Precision::bf16;
  throw UsageError("--precision " + s + ": use fp32 or bf16");
}

const char* precision_name(Precision p) { return p == Precision::bf16 ? "bf16" : "fp32"; }

std::string precision_banner(Precision p) {
  if (p == Precision::bf16) return "precision bf16: products in " + bf16::describe();
  return std::string("precision fp32: products in fp32 (CPU bf16: ") + bf16::native_bf16_name() +
         (bf16::cpu_has_native_bf16() ? ", unused; --precision bf16 uses it)" : ")");
}

CdCounters cd_gradient_bf16(const Params& p, const CdConfig& cfg,
                            const Eigen::Ref<const Matrix>& X, const uint64_t* sample_index,
                            Matrix* chains, const uint64_t* chain_index, const CounterRng& rng,
                            CdBf16Workspace& wsb, Params grad) {
  prof::Scope timed(prof::cd);
  if (!bf16::cpu_has_native_bf16())
    throw std::runtime_error("cd_gradient_bf16: this CPU has no native bf16 (AVX512_BF16 or AMX-BF16)");
  CdWorkspace& ws = wsb.f32;
  const Eigen::Index V = p.V, H = p.H, B = X.cols();
  const Eigen::Index N = cfg.pcd ? chains->cols() : B;  // negative particles on this rank
  const double Ng = cfg.pcd ? static_cast<double>(cfg.Cg) : static_cast<double>(cfg.Bg);
  ws.A.resize(V, B + N);
  ws.P.resize(H, B + N);
  ws.Hs.resize(H, std::max(B, N));
  bf16_t* Wb = wsb.w_shared ? const_cast<bf16_t*>(wsb.w_shared)
                            : wsb.Wb.reserve(static_cast<size_t>(V * H));
  bf16_t* Ab = wsb.Ab.reserve(static_cast<size_t>(V * (B + N)));
  bf16_t* Pb = wsb.Pb.reserve(static_cast<size_t>(H * (B + N)));
  bf16_t* Hb = wsb.Hb.reserve(static_cast<size_t>(H * std::max(B, N)));
  bf16_t* X0b = Ab;               // [V, B]
  bf16_t* Vnegb = Ab + V * B;     // [V, N]
  if (!wsb.w_shared && !wsb.w_is_current) bf16::to_bf16(p.W.data(), Wb, static_cast<size_t>(V * H));
  wsb.w_is_current = false;  // valid for this call only: p.W may change before the next

  auto X0 = ws.A.leftCols(B), Vneg = ws.A.rightCols(N);  // [V, B], [V, N]
  auto H0 = ws.P.leftCols(B), Hneg = ws.P.rightCols(N);  // [H, B], [H, N]
  CdCounters out;

  // Positive phase: p(h | x) for the data.
  for (Eigen::Index j = 0; j < B; ++j) {  // X0 = X, and its bf16 copy, column by column
    X0.col(j) = X.col(j);
    bf16::to_bf16(X0.col(j).data(), X0b + j * V, static_cast<size_t>(V));
  }
  hidden_probs_b(p, Wb, X0b, H0);
  // h0 ~ p(h | x)
  auto Hs = ws.Hs.leftCols(B);
  Hs = H0;
  sample_bernoulli(rng, Stream::hidden, 0, cfg.step, sample_index, Hs);

  if (!cfg.pcd) {
    for (int t = 1; t <= cfg.k; ++t) {
      round_block(Hs, Hb);                  // binary: exact
      // v_t = p(v | h_{t-1}); the last one (probabilities) is rounded as it is made
      visible_probs_b(p, Wb, Hb, Vneg, t == cfg.k ? Vnegb : nullptr);
      if (t == 1) out.recon_sq = (X0 - Vneg).squaredNorm();
      if (t < cfg.k) {
        sample_bernoulli(rng, Stream::visible, t, cfg.step, sample_index, Vneg);
        round_block(Vneg, Vnegb);  // binary: exact
      }
      hidden_probs_b(p, Wb, Vnegb, Hneg);   // p(h | v_t)
      if (t < cfg.k) {
        Hs = Hneg;
        sample_bernoulli(rng, Stream::hidden, t, cfg.step, sample_index, Hs);
      }
    }
  } else {
    // Reconstruction error of the data (a monitor only; costs one extra product).
    if (cfg.recon) {
      ws.Vr.resize(V, B);
      round_block(Hs, Hb);
      visible_probs_b(p, Wb, Hb, ws.Vr);
      out.recon_sq = (X0 - ws.Vr).squaredNorm();
    }
    // k full Gibbs sweeps of the persistent chains; the chain states stay binary,
    // so their bf16 copies (built in the right block of Ab) are exact.
    auto Hc = ws.Hs.leftCols(N);
    for (int t = 1; cfg.sweep_chains && t <= cfg.k; ++t) {
      round_block(*chains, Vnegb);
      hidden_probs_b(p, Wb, Vnegb, Hc);
      sample_bernoulli(rng, Stream::hidden, kChainSub + t, cfg.step, chain_index, Hc);
      round_block(Hc, Hb);
      visible_probs_b(p, Wb, Hb, *chains);
      sample_bernoulli(rng, Stream::visible, kChainSub + t, cfg.step, chain_index, *chains);
    }
    Vneg = *chains;
    round_block(Vneg, Vnegb);
    hidden_probs_b(p, Wb, Vnegb, Hneg);
  }

  // dW = [X0 Vneg] [H0/Bg  -Hneg/Ng]'   (one product, inner dimension B + N)
  const float sp = static_cast<float>(1.0 / static_cast<double>(cfg.Bg));
  const float sn = static_cast<float>(1.0 / Ng);
  for (Eigen::Index j = 0; j < B + N; ++j) {  // scale, and round while in L1
    auto col = ws.P.col(j);
    col *= j < B ? sp : -sn;
    bf16::to_bf16(col.data(), Pb + j * H, static_cast<size_t>(H));
  }
  bf16::gemm(bf16::Op::N, bf16::Op::T, H, V, B + N, Pb, H, Ab, V, grad.W.data(), H);
  grad.b = X0.rowwise().sum() * sp - Vneg.rowwise().sum() * sn;
  grad.c = ws.P.rowwise().sum();
  return out;
}

uint32_t fused_update(float* theta, float* momentum, const float* const* g, int ng,
                      const SgdHyper& h, size_t a, size_t b, bf16_t* w16) {
  constexpr size_t kBlock = 2048;  // 8 KB per array: slots + theta + momentum stay in L1/L2
  alignas(64) float sum[kBlock];
  uint32_t nonfinite = 0;
  for (size_t first = a; first < b; first += kBlock) {
    const size_t last = std::min(b, first + kBlock), n = last - first;
    // sgd_momentum_update on the block, re-based to index 0 (weights below n_weights)
    SgdHyper hb = h;
    hb.n_weights = h.n_weights > first ? h.n_weights - first : 0;
    if (ng == 1) {
      nonfinite |= sgd_momentum_update(theta + first, momentum + first, g[0] + first, hb, 0, n);
    } else {
      {
        const float* __restrict s0 = g[0] + first;
        const float* __restrict s1 = g[1] + first;
        for (size_t i = 0; i < n; ++i) sum[i] = s0[i] + s1[i];
      }
      for (int k = 2; k < ng; ++k) {
        const float* __restrict sk = g[k] + first;
        for (size_t i = 0; i < n; ++i) sum[i] += sk[i];
      }
      nonfinite |= sgd_momentum_update(theta + first, momentum + first, sum, hb, 0, n);
    }
    if (w16 && first < h.n_weights)
      bf16::to_bf16(theta + first, w16 + first, std::min(last, h.n_weights) - first);
  }
  return nonfinite;
}

CdCounters cd_gradient_prec(Precision prec, const Params& p, const CdConfig& cfg,
                            const Eigen::Ref<const Matrix>& X, const uint64_t* sample_index,
                            Matrix* chains, const uint64_t* chain_index, const CounterRng& rng,
                            CdBf16Workspace& ws, Params grad) {
  if (prec == Precision::bf16)
    return cd_gradient_bf16(p, cfg, X, sample_index, chains, chain_index, rng, ws, grad);
  return cd_gradient(p, cfg, X, sample_index, chains, chain_index, rng, ws.f32, grad);
}

}  // namespace rbm
