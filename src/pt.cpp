// pt.cpp — parallel tempering of the persistent chains (see rbm/pt.hpp).
#include "rbm/pt.hpp"

#include <cmath>

#include "rbm/prof.hpp"

namespace rbm {

std::vector<double> pt_betas(int K, double beta_min) {
  std::vector<double> b(static_cast<size_t>(K));
  for (int r = 0; r < K; ++r)
    b[static_cast<size_t>(r)] = r == 0 ? 1.0 : std::pow(beta_min, static_cast<double>(r) / (K - 1));
  return b;
}

double pt_log_marginal(const Eigen::Ref<const Vector>& a, double bv, float beta) {
  // softplus(x) = max(x, 0) + log1p(exp(-|x|)) element-wise in float, summed in double
  const Eigen::ArrayXf x = beta * a.array();
  const Eigen::ArrayXf sp = x.max(0.0f) + (-x.abs()).exp().log1p();
  return static_cast<double>(beta) * bv + sp.cast<double>().sum();
}

void pt_update(const Params& p, const std::vector<float>& beta, int sweeps, uint64_t step,
               uint64_t Cg, const uint64_t* chain_index, const CounterRng& rng,
               Matrix& replicas, PtWorkspace& ws, float* accepted) {
  const Eigen::Index H = static_cast<Eigen::Index>(p.H);
  const Eigen::Index K = static_cast<Eigen::Index>(beta.size());
  const Eigen::Index C = replicas.cols() / K, N = K * C;
  ws.A.resize(H, N);
  ws.Hs.resize(H, N);
  ws.index.resize(static_cast<size_t>(N));
  for (Eigen::Index r = 0; r < K; ++r)
    for (Eigen::Index m = 0; m < C; ++m)
      ws.index[static_cast<size_t>(r * C + m)] = static_cast<uint64_t>(r) * Cg + chain_index[m];

  // 1. Swaps on the pre-activations A = c + W'V  [H, K*C]
  {
    prof::Scope t(prof::gemm);
    ws.A.noalias() = p.W.transpose() * replicas;  // [H, V] x [V, K*C]
  }
  ws.A.colwise() += p.c;
  const Vector bv = replicas.transpose() * p.b;  // [K*C] b'v of every replica
  std::vector<float> u(static_cast<size_t>(K > 1 ? K - 1 : 1));
  for (Eigen::Index m = 0; m < C; ++m) {
    rng.uniforms(Stream::pt_swap, 0, step, chain_index[m], u.data(), static_cast<size_t>(K - 1));
    for (auto r = static_cast<Eigen::Index>(step & 1u); r + 1 < K; r += 2) {
      const Eigen::Index x = r * C + m, y = (r + 1) * C + m;
      const float bx = beta[static_cast<size_t>(r)], by = beta[static_cast<size_t>(r + 1)];
      const double L = pt_log_marginal(ws.A.col(y), bv(y), bx) +
                       pt_log_marginal(ws.A.col(x), bv(x), by) -
                       pt_log_marginal(ws.A.col(x), bv(x), bx) -
                       pt_log_marginal(ws.A.col(y), bv(y), by);
      // accept with probability min(1, e^L): u < e^L (u in [0, 1), so L >= 0 always accepts)
      if (L >= 0 || static_cast<double>(u[static_cast<size_t>(r)]) < std::exp(L)) {
        replicas.col(x).swap(replicas.col(y));
        ws.A.col(x).swap(ws.A.col(y));
        accepted[r] += 1.0f;
      }
    }
  }

  // 2. Gibbs sweeps of every replica at its own temperature.
  for (int t = 1; t <= sweeps; ++t) {
    if (t > 1) {
      prof::Scope tg(prof::gemm);
      ws.A.noalias() = p.W.transpose() * replicas;
      ws.A.colwise() += p.c;
    }
    for (Eigen::Index r = 0; r < K; ++r) ws.A.middleCols(r * C, C) *= beta[static_cast<size_t>(r)];
    ws.Hs = ws.A.array().logistic().matrix();  // p_beta(h | v)
    sample_bernoulli(rng, Stream::pt_hidden, static_cast<uint32_t>(t), step, ws.index.data(), ws.Hs);
    {
      prof::Scope tg(prof::gemm);
      replicas.noalias() = p.W * ws.Hs;  // [V, H] x [H, K*C]
    }
    replicas.colwise() += p.b;
    for (Eigen::Index r = 0; r < K; ++r)
      replicas.middleCols(r * C, C) *= beta[static_cast<size_t>(r)];
    replicas = replicas.array().logistic().matrix();  // p_beta(v | h)
    sample_bernoulli(rng, Stream::pt_visible, static_cast<uint32_t>(t), step, ws.index.data(),
                     replicas);
  }
}

}  // namespace rbm
