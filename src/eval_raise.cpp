// eval_raise.cpp — Reverse Annealed Importance Sampling: a stochastic lower bound on the
// log-probability of test images (formulas in rbm/eval.hpp, above raise_log_weights).

#include <cmath>
#include <limits>

#include "rbm/errors.hpp"
#include "rbm/eval.hpp"

namespace rbm::eval {

using Eigen::Index;

std::vector<double> raise_log_weights(const Params& p, const Vector& bA, double log_z_base,
                                      const std::vector<double>& betas,
                                      const Eigen::Ref<const Matrix>& X0,
                                      const uint64_t* image_ids, size_t M,
                                      const CounterRng& rng) {
  const Index V = static_cast<Index>(p.V), H = static_cast<Index>(p.H);
  const size_t n = static_cast<size_t>(X0.cols());
  const Index R = static_cast<Index>(n * M);  // columns: image q, chain m at q * M + m
  const size_t K = betas.size() - 1;
  if (n == 0 || M == 0) return {};
  std::vector<uint64_t> ids(n * M);  // global chain ids (RNG index)
  for (size_t q = 0; q < n; ++q) {
    if ((image_ids[q] + 1) * M > (uint64_t{1} << 32))
      throw UsageError(fmt("--raise-chains ", M, ": image ", image_ids[q], " times ", M,
                           " chains exceeds the 2^32 random-number indices; use fewer chains"));
    for (size_t m = 0; m < M; ++m) ids[q * M + m] = image_ids[q] * M + m;
  }

  // log f_K(v) - log Z_A = -F(v) - log Z_A, in double, once per image.
  const Eigen::VectorXd F = free_energy_d(p, X0);  // [n]
  Eigen::ArrayXd logw(R);                          // [R]
  for (size_t q = 0; q < n; ++q)
    logw.segment(static_cast<Index>(q * M), static_cast<Index>(M)).setConstant(-F(static_cast<Index>(q)) - log_z_base);

  const Vector db = p.b - bA;        // [V]  d/dbeta of the visible term
  Matrix X(V, R);                    // [V, R] x_k of every chain; x_K = v
  for (size_t q = 0; q < n; ++q)
    X.middleCols(static_cast<Index>(q * M), static_cast<Index>(M)) =
        X0.col(static_cast<Index>(q)).replicate(1, static_cast<Index>(M));
  Matrix A(H, R);                    // [H, R] a = c + W'x
  Matrix Hs(H, R);                   // [H, R] p_k(h|x_k), then h ~ p_k(h|x_k)
  Eigen::ArrayXXf S(H, R), T(H, R);  // sigmoid(beta_{k-1} a), sigmoid(..) expm1(dbeta a)

  A.noalias() = p.W.transpose() * X;  // [H, V] x [V, R]
  A.colwise() += p.c;
  Hs = (static_cast<float>(betas[K]) * A.array()).logistic().matrix();  // p_K(h|v), beta_K = 1
  for (size_t k = K; k >= 1; --k) {
    // Consecutive betas are floats whose difference is exact (ais_betas).
    const float b0 = static_cast<float>(betas[k - 1]), b1 = static_cast<float>(betas[k]);
    const float dbeta = b1 - b0;
    // T_k: x_{k-1} ~ T_k(.|x_k), one Gibbs sweep at beta_k (Hs holds p_k(h|x_k)).
    sample_bernoulli(rng, Stream::eval, kSubRaiseHidden, k, ids.data(), Hs);
    const Vector vbias = b1 * p.b + (1.0f - b1) * bA;  // [V]
    X.noalias() = p.W * Hs;                            // [V, H] x [H, R]
    X = ((b1 * X.array()).colwise() + vbias.array()).logistic().matrix();
    sample_bernoulli(rng, Stream::eval, kSubRaiseVisible, k, ids.data(), X);
    // minus [log f_k(x_{k-1}) - log f_{k-1}(x_{k-1})], AIS's increment.
    A.noalias() = p.W.transpose() * X;  // [H, V] x [V, R]
    A.colwise() += p.c;
    S = (b0 * A.array()).logistic();
    T = S * (dbeta * A.array()).expm1();
    logw -= static_cast<double>(dbeta) * (X.transpose() * db).cast<double>().array();
    logw -= T.log1p().colwise().sum().transpose().cast<double>();
    // p_{k-1}(h|x_{k-1}) = sigmoid(beta_{k-1} a) = S: the next sweep's hidden probabilities.
    Hs = S.matrix();
  }
  return std::vector<double>(logw.data(), logw.data() + R);
}

}  // namespace rbm::eval
