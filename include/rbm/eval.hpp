// rbm/eval.hpp — how good is a trained RBM: exact log Z by enumeration, Annealed
// Importance Sampling (AIS), pseudo-likelihood, reconstruction error, Gibbs samples,
// hidden-unit features and a linear probe on them. The math of `rbm_eval`; no MPI here
// (the program spreads AIS runs over ranks and gathers the weights).
//
// defines: rbm::eval::images_matrix, log_z_exact, ais_betas, base_rate_biases,
//          log_z_base_rate, ais_groups, ais_log_weights, AisEstimate, ais_combine,
//          raise_image_id, raise_groups, raise_log_weights, free_energy_d, pl_flip_index,
//          pseudo_loglik, recon_sq, gibbs_snapshots, ProbeResult, softmax_probe
//
// Letters as in rbm.hpp: V visible units, H hidden units; N images of a split,
// R AIS runs on this rank, K annealing steps (betas), C classes.
// Energy E(v, h) = -b'v - c'h - v'W h, free energy F(v) = -b'v - sum_j softplus(c_j + W_j'v),
// p(v) = exp(-F(v)) / Z.
//
// Random numbers: every draw is CounterRng(seed)(Stream::eval, sub, step, index, unit)
// with the sub-stream constants below and `index` a GLOBAL id (AIS run, image, chain),
// so results do not depend on the number of ranks.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "rbm/binarize.hpp"
#include "rbm/dataset.hpp"
#include "rbm/rbm.hpp"
#include "rbm/rng.hpp"

namespace rbm::eval {

// Sub-streams of Stream::eval (documented: tests reproduce the draws).
inline constexpr uint32_t kSubAisInit = 0;     ///< v_1 ~ base-rate model, step 0, index = run
inline constexpr uint32_t kSubAisHidden = 1;   ///< h ~ p_k(h|v), step k, index = run
inline constexpr uint32_t kSubAisVisible = 2;  ///< v ~ p_k(v|h), step k, index = run
inline constexpr uint32_t kSubPlFlip = 3;      ///< pixel flipped for the pseudo-likelihood
inline constexpr uint32_t kSubRecon = 4;       ///< h ~ p(h|v) for the reconstruction error
inline constexpr uint32_t kSubChainInit = 5;   ///< noise the sample chains start from
inline constexpr uint32_t kSubChainHidden = 6; ///< h of chain sweep t (step t, index = chain)
inline constexpr uint32_t kSubChainVisible = 7;///< v of chain sweep t
inline constexpr uint32_t kSubRaiseHidden = 8; ///< RAISE h ~ p_k(h|x_k), step k, index = chain
inline constexpr uint32_t kSubRaiseVisible = 9;///< RAISE x_{k-1} ~ p_k(v|h), step k, index = chain

// ---- data -------------------------------------------------------------------

/// How uint8 pixels become visible values: rbm/binarize.hpp (one convention with the
/// trainer). Stochastic draws here: sub = split_sub(split), step 0, index = global image id.
using rbm::Binarize;
using rbm::binarize_name;
using rbm::binarize_text;
using rbm::parse_binarize;

/// Sub-stream of Stream::binarize for a split: train 0, test 1, validation 2, other 3.
uint32_t split_sub(const std::string& split);

/// Images first .. first+count-1 of a shard (local rows) as [V, count], one image per
/// column. Stochastic draws are indexed by the image's GLOBAL row in its split.
Matrix images_matrix(const Shard& s, size_t first, size_t count, Binarize mode,
                     const CounterRng& rng, uint32_t sub);

// ---- partition function -----------------------------------------------------

/// Exact log Z = log sum_{v,h} exp(-E(v, h)) in double, by enumerating the smaller layer:
///   over h:  log Z = log sum_h exp(c'h + sum_i softplus(b_i + (W h)_i))
///   over v:  log Z = log sum_v exp(b'v + sum_j softplus(c_j + (W'v)_j))
/// in blocks of 4096 states (one double GEMM each) with a running log-sum-exp.
/// Cost 2^min(V,H) * V * H multiply-adds. Throws UsageError if min(V, H) > 30.
double log_z_exact(const Params& p);

/// The annealing schedule 0 = beta_0 < beta_1 < ... < beta_K = 1 (K + 1 values) with the
/// shape of Salakhutdinov & Murray (2008): for K = 14,500 exactly their steps of 1e-3 on
/// [0, 0.5], 1e-4 on [0.5, 0.9] and 1e-5 on [0.9, 1]; other K keep the proportions
/// (500 : 4000 : 10000 of the steps in the three pieces, each piece uniform).
/// The values are rounded to float (the AIS kernel works in float) so that consecutive
/// differences are exact. K >= 3.
std::vector<double> ais_betas(size_t K);

/// Visible biases of the base-rate model (S&M 2008): b_A = log(p / (1 - p)) with
/// p = (sum_n v_n + 1) / (N + 2) the smoothed pixel means of the training images
/// (`sums` [V] = sum over N images of the visible values, expected values for
/// stochastic binarisation), so that no bias is infinite.
Vector base_rate_biases(const Eigen::VectorXd& sums, double N);

/// log Z_A of the base-rate RBM (weights 0, hidden biases 0, H hidden units):
///   log Z_A = sum_i softplus(b_A_i) + H log 2
double log_z_base_rate(const Vector& bA, size_t H);

/// AIS runs are advanced in groups: group g of M runs is runs [g M / G, (g+1) M / G) with
/// G = ceil(M / kAisGroup) groups (at most kAisGroup = 50 runs each, one GEMM column per run).
/// Ranks take whole groups, so every group is computed with the same matrix shapes
/// whatever the rank count, and the weights are bitwise the same on 1 or P ranks.
inline constexpr size_t kAisGroup = 50;
inline size_t ais_groups(size_t runs) { return (runs + kAisGroup - 1) / kAisGroup; }
inline size_t ais_group_start(size_t runs, size_t g) { return runs * g / ais_groups(runs); }

/// Log importance weights of AIS runs first_run .. first_run+count-1 (global ids; one
/// group), all advanced together as the columns of [V, R] / [H, R] matrices.
/// Intermediate distributions (S&M 2008, eq. 13):
///   p*_k(v) = exp((1 - beta_k) b_A'v + beta_k b'v) prod_j (1 + exp(beta_k (c_j + W_j'v)))
/// so p*_0 is the base-rate model times 2^H and p*_K = exp(-F(v)). With v_1 ~ p_0 and
/// v_{k+1} ~ T_k(v_k) (one Gibbs sweep at beta_k: h ~ sigmoid(beta_k (c + W'v)),
/// v ~ sigmoid((1 - beta_k) b_A + beta_k (b + W h))):
///   log w = sum_{k=1..K} [log p*_k(v_k) - log p*_{k-1}(v_k)],
/// each increment computed directly, not as a difference of two large numbers:
///   (beta_k - beta_{k-1}) (b - b_A)'v + sum_j log1p(sigmoid(beta_{k-1} a_j) expm1(dbeta a_j))
/// with a = c + W'v, because softplus(x + d) - softplus(x) = log1p(sigmoid(x) expm1(d)).
/// E[w] = Z_B / Z_A (Neal 2001). `betas` from ais_betas(); `bA` from base_rate_biases().
std::vector<double> ais_log_weights(const Params& p, const Vector& bA,
                                    const std::vector<double>& betas, uint64_t first_run,
                                    size_t count, const CounterRng& rng);

/// log Z from M >= 2 importance weights.
struct AisEstimate {
  double log_z = 0;         ///< log Z_A + log mean(w)
  double log_z_stderr = 0;  ///< delta method: sd(w) / (sqrt(M) mean(w))
  double log_z_lo = 0;      ///< log Z_A + log(mean(w) - 3 sd(w)/sqrt(M)); -inf if <= 0
  double log_z_hi = 0;      ///< log Z_A + log(mean(w) + 3 sd(w)/sqrt(M))
  double log_z_base = 0;    ///< log Z_A
  double ess = 0;           ///< effective sample size (sum w)^2 / sum w^2, in [1, M]
  size_t runs = 0;          ///< M
};
/// Weights are shifted by max(log w) before exponentiating, so nothing overflows.
AisEstimate ais_combine(const std::vector<double>& log_w, double log_z_base);

// ---- RAISE ------------------------------------------------------------------

/// Reverse Annealed Importance Sampling (Burda, Grosse & Salakhutdinov, AISTATS 2015):
/// a stochastic LOWER bound on log p(v) of single test images, the other side of AIS's
/// stochastic upper bound -F(v) - log Z^ (AIS underestimates log Z).
///
/// Same intermediate distributions f_k = p*_k as AIS (same base-rate b_A, same betas),
/// Z_0 = Z_A. T_k is the Gibbs sweep v -> h -> v at beta_k; it is REVERSIBLE w.r.t.
/// p_k(v): p_k(v) T_k(v'|v) = sum_h p_k(h) p_k(v|h) p_k(v'|h) is symmetric in v, v'.
/// The annealed model p_ann(x_K) draws x_0 ~ p_0, x_k ~ T_k(.|x_{k-1}) for k = 1..K.
/// The reverse chain starts at x_K = v (the test image) and draws x_{k-1} ~ T_k(.|x_k) for
/// k = K..1. Its importance weight (forward path probability over reverse proposal, with
/// detailed balance f_k(x_{k-1}) T_k(x_k|x_{k-1}) = f_k(x_k) T_k(x_{k-1}|x_k)) telescopes to
///   log w = log f_K(v) - log Z_A - sum_{k=1..K} [log f_k(x_{k-1}) - log f_{k-1}(x_{k-1})]
///         = -F(v) - log Z_A - (the increments AIS adds, at the reverse states),
/// each increment by ais_log_weights' stable formula
///   (beta_k - beta_{k-1}) (b - b_A)'x + sum_j log1p(sigmoid(beta_{k-1} a_j) expm1(dbeta a_j)),
/// a = c + W'x. E[w] = p_ann(v), so log mean_m w over M chains is, by Jensen, a stochastic
/// lower bound on log p_ann(v) (which tends to log p(v) as the schedule gets finer).
///
/// Sweep k: h ~ sigmoid(beta_k a(x_k)) with CounterRng(Stream::eval, kSubRaiseHidden, k,
/// chain, unit j), x_{k-1} ~ sigmoid((1 - beta_k) b_A + beta_k (b + W h)) with
/// (kSubRaiseVisible, k, chain, unit i), where chain = image_id * M + m (global ids).
/// The same float arithmetic as AIS; -F(v) in double (free_energy_d), log w in double.
///
/// Images: `--raise-images N` of a split of `total` images are the evenly spaced global
/// rows raise_image_id(i) = floor(i * total / N), i = 0..N-1 (so a split ordered by class
/// is still sampled evenly). They are advanced in groups of whole images, at most
/// kRaiseGroup columns (image x chain) per group (at least one image): group g of G holds
/// images [g N / G, (g+1) N / G); ranks take whole groups, so the matrix shapes and
/// hence the weights are bitwise the same on 1 or P ranks.
inline constexpr size_t kRaiseGroup = 100;
inline uint64_t raise_image_id(size_t i, size_t N, size_t total) {
  return static_cast<uint64_t>(i) * total / N;  // i, total < 2^32: no overflow
}
inline size_t raise_groups(size_t N, size_t M) {
  const size_t per = std::max<size_t>(1, kRaiseGroup / std::max<size_t>(M, 1));
  return (N + per - 1) / per;
}
inline size_t raise_group_start(size_t N, size_t M, size_t g) { return N * g / raise_groups(N, M); }

/// Log weights of the M reverse chains of each column of X [V, n] (binary images, global
/// ids image_ids[0..n)), as computed above; result [n * M], image-major (image q, chain m
/// at q * M + m). `log_z_base` = log_z_base_rate(bA, H). Throws UsageError when a chain
/// id image_id * M + m does not fit the 32-bit RNG index.
std::vector<double> raise_log_weights(const Params& p, const Vector& bA, double log_z_base,
                                      const std::vector<double>& betas,
                                      const Eigen::Ref<const Matrix>& X,
                                      const uint64_t* image_ids, size_t M,
                                      const CounterRng& rng);

// ---- free energy, pseudo-likelihood, reconstruction ----------------------------

/// F(v) of each column of X [V, N] in DOUBLE (one double GEMM): the mean log-likelihood
/// -F - log Z is reported to 1e-4 nats, which float sums over 784 + 500 terms of size
/// ~10 do not guarantee. Same formula as rbm::free_energy.
Eigen::VectorXd free_energy_d(const Params& p, const Eigen::Ref<const Matrix>& X);

/// The pixel flipped in image `index` (global id): floor(r * V / 2^32) with r the first
/// 32-bit word of CounterRng::bits(Stream::eval, kSubPlFlip, 0, index, 0).
size_t pl_flip_index(const CounterRng& rng, uint64_t index, size_t V);

/// Pseudo-log-likelihood of each column of X [V, N], as scikit-learn's
/// BernoulliRBM.score_samples: ONE pixel i per image is flipped (v~_i = 1 - v_i) and
///   PL(v) = V * log sigmoid(F(v~) - F(v))      (= V log p(v_i | v_-i), a stochastic
/// estimate of sum_i log p(v_i | v_-i)). The free-energy difference is computed directly:
///   F(v~) - F(v) = -b_i d - sum_j log1p(sigmoid(a_j) expm1(W_ij d)),  d = 1 - 2 v_i,
///   a = c + W'v (one float GEMM; the rest in double).   `ids` [N] global image ids.
Eigen::VectorXd pseudo_loglik(const Params& p, const Eigen::Ref<const Matrix>& X,
                              const uint64_t* ids, const CounterRng& rng);

/// Sum over images and pixels of (v - p(v | h))^2 with h ~ p(h | v) SAMPLED
/// (CounterRng(Stream::eval, kSubRecon, 0, id, unit j)), the trainer's definition.
/// Divide by N * V for the mean squared error per pixel.
double recon_sq(const Params& p, const Eigen::Ref<const Matrix>& X, const uint64_t* ids,
                const CounterRng& rng);

// ---- pictures ----------------------------------------------------------------

/// Gibbs chains 0..chains-1 started from uniform noise v_0 ~ Bernoulli(1/2); sweep t
/// (t = 1, 2, ...) draws h ~ p(h | v_{t-1}) and v_t ~ p(v | h). Snapshot s of chain m
/// is p(v | h) of sweep t_s = burn_in + s * spacing (the mean image, less noisy than v_t).
/// Returns [V, chains * snapshots], column m * snapshots + s. burn_in >= 1.
Matrix gibbs_snapshots(const Params& p, size_t chains, size_t burn_in, size_t spacing,
                       size_t snapshots, const CounterRng& rng);

// ---- linear probe ------------------------------------------------------------

struct ProbeResult {
  double train_accuracy = 0, test_accuracy = 0;
  double objective = 0;  ///< final value of the regularised objective below
  int iterations = 0;    ///< LBFGS iterations; -1 when the line search gave up
  int evaluations = 0;   ///< objective + gradient evaluations (full passes over X)
  std::string stop;      ///< "converged", "max-iter", or "line search stopped: <why>"
};

/// Multinomial logistic regression (softmax), full batch, L2 on the weights only:
///   min_{T [C, D], beta [C]}  (1/N) sum_n [logsumexp(z_n) - z_n,y_n] + (l2/2) ||T||_F^2,
///   z_n = T x_n + beta,
/// gradient (1/N)(P - Y) X' + l2 T and (1/N) sum_n (p_n - y_n), minimised from 0 with
/// LBFGSpp::LBFGSSolver<double> (stops when ||grad|| <= 1e-5 max(1, ||x||)). The two
/// products with X are float GEMMs over blocks of 256 samples (each block read once),
/// softmax and sums in double; the best point seen is kept if the line search gives up
/// (the float products limit how small a decrease it can see). X* are [D, N] (one sample
/// per column), labels in [0, C).
ProbeResult softmax_probe(const Eigen::Ref<const Matrix>& Xtrain, const std::vector<int>& ytrain,
                          const Eigen::Ref<const Matrix>& Xtest, const std::vector<int>& ytest,
                          int classes, double l2, int max_iter);

}  // namespace rbm::eval
