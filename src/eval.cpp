// eval.cpp — the math of rbm_eval (see rbm/eval.hpp for the formulas).

#include "rbm/eval.hpp"

#include <LBFGS.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "rbm/errors.hpp"

namespace rbm::eval {

using Eigen::Index;

// ---- data -------------------------------------------------------------------

uint32_t split_sub(const std::string& split) {
  if (split == "train") return 0;
  if (split == "test") return 1;
  if (split == "validation") return 2;
  return 3;
}

Matrix images_matrix(const Shard& s, size_t first, size_t count, Binarize mode,
                     const CounterRng& rng, uint32_t sub) {
  const Binarizer bin(mode, rng);
  Matrix X(s.dim, count);
  for (size_t n = 0; n < count; ++n)
    bin.row(s.row(first + n), s.dim, sub, 0, s.layout.global_row(first + n),
            X.col(static_cast<Index>(n)).data());
  return X;
}

// ---- exact log Z ------------------------------------------------------------

namespace {

// Running log-sum-exp of a stream of values.
struct LogSumExp {
  double max = -std::numeric_limits<double>::infinity();
  double sum = 0;  // sum of exp(x - max)
  void add(const Eigen::ArrayXd& x) {
    const double m = x.maxCoeff();
    if (m > max) {
      sum *= std::exp(max - m);
      max = m;
    }
    sum += (x - max).exp().sum();
  }
  double value() const { return max + std::log(sum); }
};

// softplus(x) = max(x, 0) + log1p(exp(-|x|)), stable for any x, elementwise.
template <typename Derived>
auto softplus_array(const Eigen::ArrayBase<Derived>& a) {
  return a.max(0) + (-a.abs()).exp().log1p();
}

}  // namespace

double log_z_exact(const Params& p) {
  // Enumerate the smaller layer: K enumerated units with biases e, the other layer
  // (L units, biases f) is summed out analytically; M [L, K] couples them.
  const bool over_h = p.H <= p.V;
  const Index K = static_cast<Index>(over_h ? p.H : p.V);
  if (K > 30)
    throw UsageError(fmt("exact log Z needs 2^", K, " states (min(V, H) = ", K,
                         "): only possible up to 30 units"));
  Eigen::MatrixXd M = over_h ? Eigen::MatrixXd(p.W.cast<double>())
                             : Eigen::MatrixXd(p.W.transpose().cast<double>());  // [L, K]
  const Eigen::VectorXd e = (over_h ? p.c : p.b).cast<double>();                 // [K]
  const Eigen::VectorXd f = (over_h ? p.b : p.c).cast<double>();                 // [L]
  const uint64_t states = uint64_t{1} << K;
  const Index block = static_cast<Index>(std::min<uint64_t>(states, 4096));
  Eigen::MatrixXd S(K, block), A(M.rows(), block);
  LogSumExp lse;
  for (uint64_t first = 0; first < states; first += static_cast<uint64_t>(block)) {
    for (Index n = 0; n < block; ++n)
      for (Index k = 0; k < K; ++k) S(k, n) = static_cast<double>(((first + n) >> k) & 1u);
    A.noalias() = M * S;  // [L, block]
    A.colwise() += f;
    Eigen::ArrayXd x = (e.transpose() * S).transpose().array() +
                       softplus_array(A.array()).colwise().sum().transpose();
    lse.add(x);
  }
  return lse.value();
}

// ---- AIS --------------------------------------------------------------------

std::vector<double> ais_betas(size_t K) {
  if (K < 3) throw UsageError(fmt("--betas ", K, ": need at least 3 annealing steps"));
  // S&M 2008: 500 steps on [0, 0.5], 4,000 on [0.5, 0.9], 10,000 on [0.9, 1].
  const double Kd = static_cast<double>(K);
  size_t n1 = std::max<size_t>(1, static_cast<size_t>(std::llround(Kd * 500.0 / 14500.0)));
  size_t n2 = std::max<size_t>(1, static_cast<size_t>(std::llround(Kd * 4000.0 / 14500.0)));
  while (n1 + n2 + 1 > K) (n2 > 1 ? n2 : n1) -= 1;
  const size_t n3 = K - n1 - n2;
  std::vector<double> beta;
  beta.reserve(K + 1);
  auto piece = [&](double from, double to, size_t n) {
    for (size_t i = 0; i < n; ++i)
      beta.push_back(from + (to - from) * static_cast<double>(i) / static_cast<double>(n));
  };
  piece(0.0, 0.5, n1);
  piece(0.5, 0.9, n2);
  piece(0.9, 1.0, n3);
  beta.push_back(1.0);
  for (double& b : beta) b = static_cast<double>(static_cast<float>(b));
  return beta;
}

Vector base_rate_biases(const Eigen::VectorXd& sums, double N) {
  Eigen::ArrayXd pm = (sums.array() + 1.0) / (N + 2.0);
  return (pm / (1.0 - pm)).log().cast<float>().matrix();
}

double log_z_base_rate(const Vector& bA, size_t H) {
  double s = static_cast<double>(H) * std::log(2.0);
  for (Index i = 0; i < bA.size(); ++i) s += softplus(static_cast<double>(bA(i)));
  return s;
}

std::vector<double> ais_log_weights(const Params& p, const Vector& bA,
                                    const std::vector<double>& betas, uint64_t first_run,
                                    size_t count, const CounterRng& rng) {
  const Index V = static_cast<Index>(p.V), H = static_cast<Index>(p.H);
  const Index R = static_cast<Index>(count);
  const size_t K = betas.size() - 1;
  std::vector<uint64_t> ids(count);
  std::iota(ids.begin(), ids.end(), first_run);
  if (count == 0) return {};

  const Vector db = p.b - bA;        // [V]  d/dbeta of the visible term
  Matrix X(V, R);                    // [V, R] v_k of every run
  Matrix A(H, R);                    // [H, R] a = c + W'v
  Matrix Hs(H, R);                   // [H, R] p_k(h|v), then h ~ p_k(h|v)
  Eigen::ArrayXXf S(H, R), T(H, R);  // sigmoid(beta_{k-1} a), sigmoid(..) expm1(dbeta a)
  Eigen::ArrayXd logw = Eigen::ArrayXd::Zero(R);

  // v_1 ~ p_0: the base-rate model, independent pixels with p = sigmoid(b_A).
  X = bA.array().logistic().matrix().replicate(1, R);
  sample_bernoulli(rng, Stream::eval, kSubAisInit, 0, ids.data(), X);

  for (size_t k = 1; k <= K; ++k) {
    // Consecutive betas are floats whose difference is exact (ais_betas).
    const float b0 = static_cast<float>(betas[k - 1]), b1 = static_cast<float>(betas[k]);
    const float dbeta = b1 - b0;
    // log p*_k(v_k) - log p*_{k-1}(v_k)
    A.noalias() = p.W.transpose() * X;  // [H, V] x [V, R]
    A.colwise() += p.c;
    S = (b0 * A.array()).logistic();
    T = S * (dbeta * A.array()).expm1();
    logw += static_cast<double>(dbeta) * (X.transpose() * db).cast<double>().array();
    logw += T.log1p().colwise().sum().transpose().cast<double>();
    if (k == K) break;
    // T_k: one Gibbs sweep that leaves p_k invariant.
    //   p_k(h|v) = sigmoid(b1 a) = sigmoid(b0 a) e^{dbeta a} / (1 + sigmoid(b0 a) expm1(dbeta a))
    Hs = ((S + T) / (1.0f + T)).matrix();
    sample_bernoulli(rng, Stream::eval, kSubAisHidden, k, ids.data(), Hs);
    const Vector vbias = b1 * p.b + (1.0f - b1) * bA;  // [V]
    X.noalias() = p.W * Hs;                            // [V, H] x [H, R]
    X = ((b1 * X.array()).colwise() + vbias.array()).logistic().matrix();
    sample_bernoulli(rng, Stream::eval, kSubAisVisible, k, ids.data(), X);
  }
  return std::vector<double>(logw.data(), logw.data() + R);
}

AisEstimate ais_combine(const std::vector<double>& log_w, double log_z_base) {
  const size_t M = log_w.size();
  if (M < 2) throw UsageError(fmt("--runs ", M, ": need at least 2 AIS runs for an error bar"));
  const double shift = *std::max_element(log_w.begin(), log_w.end());
  double sum = 0, sum_sq = 0;
  for (double l : log_w) {
    const double w = std::exp(l - shift);
    sum += w;
    sum_sq += w * w;
  }
  const double Md = static_cast<double>(M);
  const double mean = sum / Md;
  double var = 0;  // sample variance, two-pass for accuracy
  for (double l : log_w) var += (std::exp(l - shift) - mean) * (std::exp(l - shift) - mean);
  var /= Md - 1.0;
  const double se = std::sqrt(var / Md);  // standard error of mean(w)
  AisEstimate e;
  e.runs = M;
  e.log_z_base = log_z_base;
  e.log_z = log_z_base + shift + std::log(mean);
  e.log_z_stderr = se / mean;
  e.log_z_hi = log_z_base + shift + std::log(mean + 3.0 * se);
  e.log_z_lo = mean > 3.0 * se ? log_z_base + shift + std::log(mean - 3.0 * se)
                               : -std::numeric_limits<double>::infinity();
  e.ess = sum * sum / sum_sq;
  return e;
}

// ---- free energy, pseudo-likelihood, reconstruction ----------------------------

Eigen::VectorXd free_energy_d(const Params& p, const Eigen::Ref<const Matrix>& X) {
  const Eigen::MatrixXd Xd = X.cast<double>();
  Eigen::MatrixXd A = p.W.transpose().cast<double>() * Xd;  // [H, N]
  A.colwise() += p.c.cast<double>();
  Eigen::VectorXd F = -(Xd.transpose() * p.b.cast<double>());
  F -= softplus_array(A.array()).colwise().sum().matrix().transpose();
  return F;
}

size_t pl_flip_index(const CounterRng& rng, uint64_t index, size_t V) {
  const uint32_t r = rng.bits(Stream::eval, kSubPlFlip, 0, index, 0)[0];
  return static_cast<size_t>((static_cast<uint64_t>(r) * V) >> 32);
}

Eigen::VectorXd pseudo_loglik(const Params& p, const Eigen::Ref<const Matrix>& X,
                              const uint64_t* ids, const CounterRng& rng) {
  const Index N = X.cols(), H = static_cast<Index>(p.H);
  Matrix A(H, N);
  A.noalias() = p.W.transpose() * X;  // [H, N]
  A.colwise() += p.c;
  Eigen::VectorXd pl(N);
  const double Vd = static_cast<double>(p.V);
  for (Index n = 0; n < N; ++n) {
    const size_t i = pl_flip_index(rng, ids[n], p.V);
    const double d = 1.0 - 2.0 * static_cast<double>(X(static_cast<Index>(i), n));
    double dF = -static_cast<double>(p.b(static_cast<Index>(i))) * d;
    for (Index j = 0; j < H; ++j) {
      const double a = A(j, n);
      const double s = 1.0 / (1.0 + std::exp(-a));
      dF -= std::log1p(s * std::expm1(static_cast<double>(p.W(static_cast<Index>(i), j)) * d));
    }
    pl(n) = -Vd * softplus(-dF);  // V log sigmoid(dF)
  }
  return pl;
}

double recon_sq(const Params& p, const Eigen::Ref<const Matrix>& X, const uint64_t* ids,
                const CounterRng& rng) {
  Matrix Hs(p.H, X.cols()), R(p.V, X.cols());
  hidden_probs(p, X, Hs);
  sample_bernoulli(rng, Stream::eval, kSubRecon, 0, ids, Hs);
  visible_probs(p, Hs, R);
  return (X - R).cast<double>().squaredNorm();
}

// ---- pictures ----------------------------------------------------------------

Matrix gibbs_snapshots(const Params& p, size_t chains, size_t burn_in, size_t spacing,
                       size_t snapshots, const CounterRng& rng) {
  if (burn_in < 1) throw UsageError("--burn-in 0: must be at least 1 Gibbs sweep");
  std::vector<uint64_t> ids(chains);
  std::iota(ids.begin(), ids.end(), uint64_t{0});
  const Index C = static_cast<Index>(chains), S = static_cast<Index>(snapshots);
  Matrix Vs = Matrix::Constant(p.V, C, 0.5f);  // [V, C]
  sample_bernoulli(rng, Stream::eval, kSubChainInit, 0, ids.data(), Vs);
  Matrix Hs(p.H, C);
  Matrix out(p.V, C * S);
  const size_t last = burn_in + (snapshots - 1) * spacing;
  for (size_t t = 1, s = 0; t <= last; ++t) {
    hidden_probs(p, Vs, Hs);
    sample_bernoulli(rng, Stream::eval, kSubChainHidden, t, ids.data(), Hs);
    visible_probs(p, Hs, Vs);  // p(v | h)
    if (t == burn_in + s * spacing) {
      for (Index m = 0; m < C; ++m) out.col(m * S + static_cast<Index>(s)) = Vs.col(m);
      ++s;
    }
    sample_bernoulli(rng, Stream::eval, kSubChainVisible, t, ids.data(), Vs);
  }
  return out;
}

// ---- linear probe ------------------------------------------------------------

namespace {

// The softmax-regression objective of softmax_probe, for LBFGSpp. Parameters:
// x = [vec(T) (C x D, column-major) | beta (C)].
class SoftmaxObjective {
 public:
  SoftmaxObjective(const Eigen::Ref<const Matrix>& X, const std::vector<int>& y, int classes,
                   double l2)
      : X_(X), y_(y), C_(classes), l2_(l2) {}

  // Blocks of kBlock samples: each block of X is read from memory once and used by both
  // products while it is in cache (the products are skinny, C rows: memory-bound).
  double operator()(const Eigen::VectorXd& x, Eigen::VectorXd& grad) {
    constexpr Index kBlock = 256;
    ++evaluations;
    const Index D = X_.rows(), N = X_.cols();
    Eigen::Map<const Eigen::MatrixXd> T(x.data(), C_, D);
    Eigen::Map<const Eigen::VectorXd> beta(x.data() + C_ * D, C_);
    const Eigen::MatrixXf Tf = T.cast<float>();
    Eigen::MatrixXd GX = Eigen::MatrixXd::Zero(C_, D);  // sum_n (p_n - y_n) x_n'
    Eigen::VectorXd gb = Eigen::VectorXd::Zero(C_);     // sum_n (p_n - y_n)
    Eigen::MatrixXf Zf(C_, kBlock), GXb(C_, D);
    double loss = 0;
    for (Index first = 0; first < N; first += kBlock) {
      const Index nb = std::min(kBlock, N - first);
      const auto Xb = X_.middleCols(first, nb);
      Zf.resize(C_, nb);
      Zf.noalias() = Tf * Xb;  // [C, D] x [D, nb]
      for (Index n = 0; n < nb; ++n) {  // z <- p - y, column by column, in double
        Eigen::VectorXd z = Zf.col(n).cast<double>() + beta;
        const int y = y_[static_cast<size_t>(first + n)];
        const double m = z.maxCoeff();
        const double lse = m + std::log((z.array() - m).exp().sum());
        loss += lse - z(y);
        z = (z.array() - lse).exp();
        z(y) -= 1.0;
        gb += z;
        Zf.col(n) = z.cast<float>();
      }
      GXb.noalias() = Zf * Xb.transpose();  // [C, nb] x [nb, D]
      GX += GXb.cast<double>();
    }
    const double invN = 1.0 / static_cast<double>(N);
    Eigen::Map<Eigen::MatrixXd> gT(grad.data(), C_, D);
    Eigen::Map<Eigen::VectorXd> gbeta(grad.data() + C_ * D, C_);
    gT = GX * invN + l2_ * T;
    gbeta = gb * invN;
    const double f = loss * invN + 0.5 * l2_ * T.squaredNorm();
    if (f < best_f) {
      best_f = f;
      best_x = x;
    }
    return f;
  }

  double best_f = std::numeric_limits<double>::infinity();
  Eigen::VectorXd best_x;
  int evaluations = 0;

 private:
  Eigen::Ref<const Matrix> X_;
  const std::vector<int>& y_;
  Index C_;
  double l2_;
};

double accuracy(const Eigen::VectorXd& x, const Eigen::Ref<const Matrix>& X,
                const std::vector<int>& y, int classes) {
  const Index D = X.rows();
  Eigen::Map<const Eigen::MatrixXd> T(x.data(), classes, D);
  Eigen::Map<const Eigen::VectorXd> beta(x.data() + classes * D, classes);
  Eigen::MatrixXf Zf(classes, X.cols());
  Zf.noalias() = T.cast<float>() * X;
  size_t right = 0;
  for (Index n = 0; n < X.cols(); ++n) {
    Index best = 0;
    (Zf.col(n).cast<double>() + beta).maxCoeff(&best);
    right += best == y[n];
  }
  return X.cols() ? static_cast<double>(right) / static_cast<double>(X.cols()) : 0.0;
}

}  // namespace

ProbeResult softmax_probe(const Eigen::Ref<const Matrix>& Xtrain, const std::vector<int>& ytrain,
                          const Eigen::Ref<const Matrix>& Xtest, const std::vector<int>& ytest,
                          int classes, double l2, int max_iter) {
  LBFGSpp::LBFGSParam<double> param;
  param.epsilon = 1e-5;
  param.epsilon_rel = 1e-5;
  param.max_iterations = max_iter;
  LBFGSpp::LBFGSSolver<double> solver(param);
  SoftmaxObjective f(Xtrain, ytrain, classes, l2);
  Eigen::VectorXd x = Eigen::VectorXd::Zero(classes * (Xtrain.rows() + 1));
  ProbeResult r;
  double fx = 0;
  try {
    r.iterations = solver.minimize(f, x, fx);
    r.stop = r.iterations >= max_iter ? "max-iter" : "converged";
  } catch (const std::exception& e) {
    // The line search cannot make progress once the float products' rounding
    // dominates the decrease: keep the best point seen.
    r.iterations = -1;
    r.stop = std::string("line search stopped: ") + e.what();
  }
  r.evaluations = f.evaluations;
  if (f.best_x.size() == x.size()) x = f.best_x;
  r.objective = f.best_f;
  r.train_accuracy = accuracy(x, Xtrain, ytrain, classes);
  r.test_accuracy = accuracy(x, Xtest, ytest, classes);
  return r;
}

}  // namespace rbm::eval
