#include "rbm/rbm.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "rbm/prof.hpp"

namespace rbm {

namespace {
// Sub-stream ids: data-driven Gibbs steps use sub = t, PCD chains use 128 + t, so a
// chain and a sample with the same global id never share random numbers.
constexpr uint32_t kChainSub = 128;

inline void sigmoid_inplace(Eigen::Ref<Matrix> M) { M = M.array().logistic(); }
}  // namespace

Vector free_energy(const Params& p, const Eigen::Ref<const Matrix>& X) {
  Matrix pre = p.W.transpose() * X;  // [H, B]
  pre.colwise() += p.c;
  Eigen::ArrayXXf a = pre.array();
  // softplus(x) = max(x, 0) + log1p(exp(-|x|)), stable for any x
  Eigen::ArrayXXf sp = a.max(0.0f) + (-a.abs()).exp().log1p();
  Vector F = -(X.transpose() * p.b);  // [B]
  F -= sp.colwise().sum().matrix().transpose();
  return F;
}

void hidden_probs(const Params& p, const Eigen::Ref<const Matrix>& X, Eigen::Ref<Matrix> out) {
  {
    prof::Scope t(prof::gemm);
    out.noalias() = p.W.transpose() * X;  // [H, V] x [V, B]
  }
  out.colwise() += p.c;
  sigmoid_inplace(out);
}

void visible_probs(const Params& p, const Eigen::Ref<const Matrix>& Hs, Eigen::Ref<Matrix> out) {
  {
    prof::Scope t(prof::gemm);
    out.noalias() = p.W * Hs;  // [V, H] x [H, B]
  }
  out.colwise() += p.b;
  sigmoid_inplace(out);
}

void sample_bernoulli(const CounterRng& rng, Stream s, uint32_t sub, uint64_t step,
                      const uint64_t* index, Eigen::Ref<Matrix> P) {
  thread_local std::vector<float> u;
  u.resize(P.rows());
  for (Eigen::Index col = 0; col < P.cols(); ++col) {
    rng.uniforms(s, sub, step, index[col], u.data(), u.size());
    float* x = P.col(col).data();
    for (Eigen::Index i = 0; i < P.rows(); ++i) x[i] = u[i] < x[i] ? 1.0f : 0.0f;
  }
}

CdCounters cd_gradient(const Params& p, const CdConfig& cfg, const Eigen::Ref<const Matrix>& X,
                       const uint64_t* sample_index, Matrix* chains, const uint64_t* chain_index,
                       const CounterRng& rng, CdWorkspace& ws, Params grad) {
  prof::Scope timed(prof::cd);
  const CdCounters out = cd_statistics(p, cfg, X, sample_index, chains, chain_index, rng, ws, grad);
  cd_weight_rows(ws, grad, 0, p.V);
  return out;
}

void cd_weight_rows(const CdWorkspace& ws, Params grad, size_t i0, size_t i1) {
  const auto r0 = static_cast<Eigen::Index>(i0), n = static_cast<Eigen::Index>(i1 - i0);
  if (n == static_cast<Eigen::Index>(grad.V))
    grad.W.noalias() = ws.A * ws.P.transpose();  // [V, B+N] x [B+N, H]
  else
    grad.W.middleRows(r0, n).noalias() = ws.A.middleRows(r0, n) * ws.P.transpose();
}

CdCounters cd_statistics(const Params& p, const CdConfig& cfg, const Eigen::Ref<const Matrix>& X,
                         const uint64_t* sample_index, Matrix* chains, const uint64_t* chain_index,
                         const CounterRng& rng, CdWorkspace& ws, Params grad) {
  const Eigen::Index V = p.V, H = p.H, B = X.cols();
  const Eigen::Index N = cfg.pcd ? chains->cols() : B;  // negative particles on this rank
  const double Ng = cfg.pcd ? static_cast<double>(cfg.Cg) : static_cast<double>(cfg.Bg);
  ws.A.resize(V, B + N);
  ws.P.resize(H, B + N);
  ws.Hs.resize(H, std::max(B, N));
  auto X0 = ws.A.leftCols(B), Vneg = ws.A.rightCols(N);    // [V, B], [V, N]
  auto H0 = ws.P.leftCols(B), Hneg = ws.P.rightCols(N);    // [H, B], [H, N]
  CdCounters out;

  // Positive phase: p(h | x) for the data.
  X0 = X;
  hidden_probs(p, X0, H0);
  // h0 ~ p(h | x)
  auto Hs = ws.Hs.leftCols(B);
  Hs = H0;
  sample_bernoulli(rng, Stream::hidden, 0, cfg.step, sample_index, Hs);

  if (!cfg.pcd) {
    for (int t = 1; t <= cfg.k; ++t) {
      visible_probs(p, Hs, Vneg);  // v_t = p(v | h_{t-1})
      if (t == 1) out.recon_sq = (X0 - Vneg).squaredNorm();
      if (t < cfg.k) sample_bernoulli(rng, Stream::visible, t, cfg.step, sample_index, Vneg);
      hidden_probs(p, Vneg, Hneg);  // p(h | v_t)
      if (t < cfg.k) {
        Hs = Hneg;
        sample_bernoulli(rng, Stream::hidden, t, cfg.step, sample_index, Hs);
      }
    }
  } else {
    // Reconstruction error of the data (a monitor only; costs one extra product).
    if (cfg.recon) {
      ws.Vr.resize(V, B);
      visible_probs(p, Hs, ws.Vr);
      out.recon_sq = (X0 - ws.Vr).squaredNorm();
    }
    // k full Gibbs sweeps of the persistent chains; the chain states stay binary.
    auto Hc = ws.Hs.leftCols(N);
    for (int t = 1; cfg.sweep_chains && t <= cfg.k; ++t) {
      hidden_probs(p, *chains, Hc);
      sample_bernoulli(rng, Stream::hidden, kChainSub + t, cfg.step, chain_index, Hc);
      visible_probs(p, Hc, *chains);
      sample_bernoulli(rng, Stream::visible, kChainSub + t, cfg.step, chain_index, *chains);
    }
    Vneg = *chains;
    hidden_probs(p, Vneg, Hneg);
  }

  // Scale so that one product gives positive minus negative statistics:
  //   dW = [X0 Vneg] [H0/Bg  -Hneg/Ng]'
  const float sp = static_cast<float>(1.0 / static_cast<double>(cfg.Bg));
  const float sn = static_cast<float>(1.0 / Ng);
  H0 *= sp;
  Hneg *= -sn;
  // grad.W = [X0 Vneg] [H0/Bg  -Hneg/Ng]' is cd_weight_rows' job
  grad.b = X0.rowwise().sum() * sp - Vneg.rowwise().sum() * sn;
  grad.c = ws.P.rowwise().sum();
  return out;
}

uint32_t sgd_momentum_update(float* theta, float* momentum, const float* g, const SgdHyper& h,
                             size_t a, size_t b) {
  float* __restrict th = theta;
  float* __restrict m = momentum;
  const float* __restrict gr = g;
  const float mu = h.momentum, lr = h.lr, wd = h.weight_decay;
  uint32_t nonfinite = 0;
  auto exponent_all_ones = [](float x) {
    uint32_t bits;
    std::memcpy(&bits, &x, sizeof bits);
    return static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
  };
  const size_t wb = std::min(b, h.n_weights), ba = std::max(a, h.n_weights);
  for (size_t i = a; i < wb; ++i) {  // weights
    m[i] = mu * m[i] + lr * (gr[i] - wd * th[i]);
    th[i] += m[i];
    nonfinite |= exponent_all_ones(th[i]);
  }
  for (size_t i = ba; i < b; ++i) {  // biases
    m[i] = mu * m[i] + lr * gr[i];
    th[i] += m[i];
    nonfinite |= exponent_all_ones(th[i]);
  }
  return nonfinite;
}

// ---------------------------------------------------------------------------
// Reference implementation: loops, double accumulation, same random numbers.
// ---------------------------------------------------------------------------
namespace {
double sigm(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// p(h_j = 1 | v) for one sample
std::vector<double> ph_given_v(const Params& p, const std::vector<double>& v) {
  std::vector<double> h(p.H);
  for (size_t j = 0; j < p.H; ++j) {
    double a = p.c(j);
    for (size_t i = 0; i < p.V; ++i) a += v[i] * p.W(i, j);
    h[j] = sigm(a);
  }
  return h;
}
std::vector<double> pv_given_h(const Params& p, const std::vector<double>& h) {
  std::vector<double> v(p.V);
  for (size_t i = 0; i < p.V; ++i) {
    double a = p.b(i);
    for (size_t j = 0; j < p.H; ++j) a += p.W(i, j) * h[j];
    v[i] = sigm(a);
  }
  return v;
}
void sample(const CounterRng& rng, Stream s, uint32_t sub, uint64_t step, uint64_t index,
            std::vector<double>& x) {
  std::vector<float> u(x.size());
  rng.uniforms(s, sub, step, index, u.data(), u.size());
  // The fast path compares with float probabilities: do the same.
  for (size_t i = 0; i < x.size(); ++i) x[i] = u[i] < static_cast<float>(x[i]) ? 1.0 : 0.0;
}
}  // namespace

CdCounters cd_gradient_naive(const Params& p, const CdConfig& cfg, const Matrix& X,
                             const uint64_t* sample_index, Matrix* chains,
                             const uint64_t* chain_index, const CounterRng& rng, Params grad) {
  const size_t V = p.V, H = p.H, B = X.cols();
  std::vector<double> gW(V * H, 0.0), gb(V, 0.0), gc(H, 0.0);
  CdCounters out;
  auto accumulate = [&](const std::vector<double>& v, const std::vector<double>& h, double w) {
    for (size_t i = 0; i < V; ++i) {
      gb[i] += w * v[i];
      for (size_t j = 0; j < H; ++j) gW[i * H + j] += w * v[i] * h[j];
    }
    for (size_t j = 0; j < H; ++j) gc[j] += w * h[j];
  };
  const double wp = 1.0 / static_cast<double>(cfg.Bg);
  const double wn = -1.0 / static_cast<double>(cfg.pcd ? cfg.Cg : cfg.Bg);
  for (size_t n = 0; n < B; ++n) {
    std::vector<double> x(V);
    for (size_t i = 0; i < V; ++i) x[i] = X(i, n);
    std::vector<double> h0 = ph_given_v(p, x);
    accumulate(x, h0, wp);
    std::vector<double> hs = h0;
    sample(rng, Stream::hidden, 0, cfg.step, sample_index[n], hs);
    if (!cfg.pcd) {
      std::vector<double> v, h;
      for (int t = 1; t <= cfg.k; ++t) {
        v = pv_given_h(p, hs);
        if (t == 1)
          for (size_t i = 0; i < V; ++i) out.recon_sq += (x[i] - v[i]) * (x[i] - v[i]);
        if (t < cfg.k) sample(rng, Stream::visible, t, cfg.step, sample_index[n], v);
        h = ph_given_v(p, v);
        if (t < cfg.k) {
          hs = h;
          sample(rng, Stream::hidden, t, cfg.step, sample_index[n], hs);
        }
      }
      accumulate(v, h, wn);
    } else {
      std::vector<double> v = pv_given_h(p, hs);
      for (size_t i = 0; i < V; ++i) out.recon_sq += (x[i] - v[i]) * (x[i] - v[i]);
    }
  }
  if (cfg.pcd) {
    for (Eigen::Index m = 0; m < chains->cols(); ++m) {
      std::vector<double> v(V);
      for (size_t i = 0; i < V; ++i) v[i] = (*chains)(i, m);
      for (int t = 1; cfg.sweep_chains && t <= cfg.k; ++t) {
        std::vector<double> h = ph_given_v(p, v);
        sample(rng, Stream::hidden, kChainSub + t, cfg.step, chain_index[m], h);
        v = pv_given_h(p, h);
        sample(rng, Stream::visible, kChainSub + t, cfg.step, chain_index[m], v);
      }
      for (size_t i = 0; i < V; ++i) (*chains)(i, m) = static_cast<float>(v[i]);
      accumulate(v, ph_given_v(p, v), wn);
    }
  }
  for (size_t i = 0; i < V; ++i)
    for (size_t j = 0; j < H; ++j) grad.W(i, j) = static_cast<float>(gW[i * H + j]);
  for (size_t i = 0; i < V; ++i) grad.b(i) = static_cast<float>(gb[i]);
  for (size_t j = 0; j < H; ++j) grad.c(j) = static_cast<float>(gc[j]);
  return out;
}

}  // namespace rbm
