// The RBM math against independent references: brute-force sums over hidden
// states, a loop implementation of the CD statistics, and exact model
// expectations on an RBM small enough to enumerate.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "rbm/binarize.hpp"
#include "rbm/errors.hpp"
#include "rbm/rbm.hpp"
#include "rbm/rng.hpp"

using namespace rbm;

namespace {
// Random parameters: W ~ N(0, sw^2), b, c ~ N(0, sb^2), from a fixed std generator.
ParamBuffer random_params(size_t V, size_t H, double sw, double sb, unsigned seed) {
  ParamBuffer p(V, H);
  CounterRng rng(seed);
  std::vector<float> u(Params::count(V, H) * 2);
  rng.uniforms(Stream::eval, 0, 0, 0, u.data(), u.size());
  for (size_t k = 0; k < Params::count(V, H); ++k) {
    double r = std::sqrt(-2 * std::log(u[2 * k] + 1e-7)) * std::cos(2 * M_PI * u[2 * k + 1]);
    p.data[k] = static_cast<float>(r * (k < V * H ? sw : sb));
  }
  return p;
}

// -log sum_h exp(-E(v, h)), E = -b'v - c'h - v'Wh, by enumerating all 2^H states.
double free_energy_brute(const Params& p, const std::vector<double>& v) {
  std::vector<double> terms;
  for (size_t s = 0; s < (size_t{1} << p.H); ++s) {
    double e = 0;
    for (size_t i = 0; i < p.V; ++i) e += p.b(i) * v[i];
    for (size_t j = 0; j < p.H; ++j) {
      if (!((s >> j) & 1)) continue;
      e += p.c(j);
      for (size_t i = 0; i < p.V; ++i) e += v[i] * p.W(i, j);
    }
    terms.push_back(e);
  }
  double m = *std::max_element(terms.begin(), terms.end()), z = 0;
  for (double t : terms) z += std::exp(t - m);
  return -(m + std::log(z));
}
}  // namespace

TEST(FreeEnergy, MatchesBruteForceOverHiddenStates) {
  const size_t V = 9, H = 6, B = 12;
  ParamBuffer pb = random_params(V, H, 1.0, 0.5, 7);
  Matrix X(V, B);
  CounterRng rng(3);
  std::vector<float> u(V);
  for (size_t n = 0; n < B; ++n) {
    rng.uniforms(Stream::eval, 1, 0, n, u.data(), V);
    for (size_t i = 0; i < V; ++i) X(i, n) = n % 2 ? (u[i] < 0.5f ? 1.0f : 0.0f) : u[i];
  }
  Vector F = free_energy(pb.view, X);
  for (size_t n = 0; n < B; ++n) {
    std::vector<double> v(V);
    for (size_t i = 0; i < V; ++i) v[i] = X(i, n);
    double ref = free_energy_brute(pb.view, v);
    // float evaluation: ~H+V terms of magnitude <= ~10, each rounded at 2^-24
    // relative: |error| <= 20 * 10 * 6e-8 ~ 1.2e-5; allow 1e-4 * max(1, |F|).
    EXPECT_NEAR(F(n), ref, 1e-4 * std::max(1.0, std::abs(ref))) << "sample " << n;
  }
}

TEST(Rng, CounterBasedAndSplitInvariant) {
  CounterRng a(42), b(42), c(43);
  std::vector<float> x(37), y(37), z(37);
  a.uniforms(Stream::hidden, 1, 1000, 5, x.data(), 37);
  b.uniforms(Stream::hidden, 1, 1000, 5, y.data(), 37);
  c.uniforms(Stream::hidden, 1, 1000, 5, z.data(), 37);
  EXPECT_EQ(x, y);
  EXPECT_NE(x, z);
  // The first 20 units are the same whether 20 or 37 are drawn.
  std::vector<float> w(20);
  a.uniforms(Stream::hidden, 1, 1000, 5, w.data(), 20);
  EXPECT_TRUE(std::equal(w.begin(), w.end(), x.begin()));
  // Mean of 100,000 uniforms: 0.5 +- 5 * sqrt(1/12 / 1e5) = 0.5 +- 0.0046.
  std::vector<float> big(100000);
  a.uniforms(Stream::visible, 0, 7, 9, big.data(), big.size());
  double m = 0;
  for (float f : big) {
    ASSERT_GE(f, 0.0f);
    ASSERT_LT(f, 1.0f);
    m += f;
  }
  EXPECT_NEAR(m / big.size(), 0.5, 0.0046);
}

class CdVsNaive : public ::testing::TestWithParam<std::tuple<int, bool>> {};

TEST_P(CdVsNaive, GemmStatisticsEqualLoopReference) {
  auto [k, pcd] = GetParam();
  const size_t V = 23, H = 11, B = 9, C = 7;
  ParamBuffer pb = random_params(V, H, 0.3, 0.3, 11);
  Matrix X(V, B);
  std::vector<uint64_t> idx(B), cidx(C);
  CounterRng rng(5);
  std::vector<float> u(V);
  for (size_t n = 0; n < B; ++n) {
    idx[n] = 1000 + 3 * n;
    rng.uniforms(Stream::eval, 2, 0, n, u.data(), V);
    for (size_t i = 0; i < V; ++i) X(i, n) = u[i];
  }
  Matrix chains(V, C);
  for (size_t m = 0; m < C; ++m) {
    cidx[m] = 2 * m + 1;
    rng.uniforms(Stream::eval, 3, 0, m, u.data(), V);
    for (size_t i = 0; i < V; ++i) chains(i, m) = u[i] < 0.5f ? 1.0f : 0.0f;
  }
  Matrix chains_ref = chains;
  CdConfig cfg{k, pcd, 77, /*Bg=*/B * 3, /*Cg=*/C * 2};
  ParamBuffer g(V, H), gref(V, H);
  CdWorkspace ws;
  CdCounters fast = cd_gradient(pb.view, cfg, X, idx.data(), pcd ? &chains : nullptr,
                                cidx.data(), CounterRng(99), ws, g.view);
  CdCounters ref = cd_gradient_naive(pb.view, cfg, X, idx.data(), pcd ? &chains_ref : nullptr,
                                     cidx.data(), CounterRng(99), gref.view);
  // Both draw the same random numbers; the reference sums in double. Each
  // statistic is a sum of at most B + C = 16 products of numbers in [0, 1],
  // divided by >= 14: float rounding of the GEMM path is <= 16 * 2^-24 / 14
  // ~ 7e-8 per term; sigmoid / product differences of ~1e-6 relative propagate
  // into the same sums: 1e-5 absolute is a bound with a wide margin.
  for (size_t k2 = 0; k2 < Params::count(V, H); ++k2)
    ASSERT_NEAR(g.data[k2], gref.data[k2], 1e-5) << "parameter " << k2;
  EXPECT_NEAR(fast.recon_sq, ref.recon_sq, 1e-4 * std::max(1.0, ref.recon_sq));
  if (pcd) {
    EXPECT_EQ(chains, chains_ref) << "chains must follow identical Gibbs paths";
  }
}

INSTANTIATE_TEST_SUITE_P(KAndPcd, CdVsNaive,
                         ::testing::Combine(::testing::Values(1, 3), ::testing::Bool()));

TEST(Pcd, ModelExpectationsMatchExactEnumeration) {
  // 8 visible x 5 hidden: the model's E[v h'] exactly, by summing over all 2^8
  // visible states with p(v) = exp(-F(v)) / Z and E[h_j | v] = sigmoid(c_j + W_j'v).
  const size_t V = 8, H = 5;
  ParamBuffer pb = random_params(V, H, 0.8, 0.5, 21);
  const Params& p = pb.view;
  std::vector<double> exact(V * H, 0.0), fe(1 << V);
  double m = -1e300;
  for (size_t s = 0; s < (size_t{1} << V); ++s) {
    std::vector<double> v(V);
    for (size_t i = 0; i < V; ++i) v[i] = (s >> i) & 1;
    fe[s] = -free_energy_brute(p, v);
    m = std::max(m, fe[s]);
  }
  double Z = 0;
  for (double f : fe) Z += std::exp(f - m);
  for (size_t s = 0; s < (size_t{1} << V); ++s) {
    double pv = std::exp(fe[s] - m) / Z;
    for (size_t j = 0; j < H; ++j) {
      double a = p.c(j);
      for (size_t i = 0; i < V; ++i) a += ((s >> i) & 1) * p.W(i, j);
      double hj = 1 / (1 + std::exp(-a));
      for (size_t i = 0; i < V; ++i) exact[i * H + j] += pv * ((s >> i) & 1) * hj;
    }
  }
  // PCD chains with fixed parameters: the negative statistics of cd_gradient are
  // -(1/Cg) sum_m v_m p(h|v_m)'. No data (B = 0), so grad.W = -E_chains[v h'].
  const size_t C = 2000, burn = 50, T = 300;
  Matrix chains = Matrix::Zero(V, C);
  std::vector<uint64_t> cidx(C);
  for (size_t c = 0; c < C; ++c) cidx[c] = c;
  Matrix X(V, 0);
  ParamBuffer g(V, H);
  CdWorkspace ws;
  std::vector<double> est(V * H, 0.0);
  CounterRng rng(8);
  for (size_t t = 0; t < burn + T; ++t) {
    CdConfig cfg{1, true, t, 1, C};
    cd_gradient(p, cfg, X, nullptr, &chains, cidx.data(), rng, ws, g.view);
    if (t >= burn)
      for (size_t k = 0; k < V * H; ++k) est[k] -= g.view.W.data()[k] / T;
  }
  // Monte Carlo error: each estimate is a mean of C*T = 600,000 values in [0, 1]
  // (variance <= 1/4), autocorrelated along a chain; with an integrated
  // autocorrelation time tau <= 20 sweeps for weights this small, the standard
  // error is <= 0.5 * sqrt(tau / (C*T)) = 0.0029. 6 standard errors: 0.0175.
  for (size_t k = 0; k < V * H; ++k)
    EXPECT_NEAR(est[k], exact[k], 0.0175) << "E[v_" << k / H << " h_" << k % H << "]";
}

// The update against a plain per-element loop written from the formula in rbm.hpp, over
// segments [a, b) that straddle the weight/bias boundary (as the local ranks split the
// buffer). The same float operations in the same order: the results are bitwise equal.
TEST(Update, SgdMomentumEqualsPlainLoopOnEverySegment) {
  const size_t V = 7, H = 5, n = rbm::Params::count(V, H), nw = V * H;
  std::mt19937 gen(3);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> theta(n), mom(n), g(n);
  for (size_t i = 0; i < n; ++i) theta[i] = u(gen), mom[i] = u(gen), g[i] = u(gen);
  const rbm::SgdHyper h{0.05f, 0.9f, 2e-4f, nw};
  std::vector<float> th_ref = theta, m_ref = mom;
  for (size_t i = 0; i < n; ++i) {
    const float decay = i < nw ? h.weight_decay * th_ref[i] : 0.0f;
    m_ref[i] = h.momentum * m_ref[i] + h.lr * (g[i] - decay);
    th_ref[i] = th_ref[i] + m_ref[i];
  }
  for (size_t cut : {size_t{0}, size_t{1}, nw - 1, nw, nw + 3, n}) {
    std::vector<float> th = theta, m = mom;
    EXPECT_EQ(rbm::sgd_momentum_update(th.data(), m.data(), g.data(), h, 0, cut), 0u);
    EXPECT_EQ(rbm::sgd_momentum_update(th.data(), m.data(), g.data(), h, cut, n), 0u);
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(th[i], th_ref[i]) << "element " << i << ", cut " << cut;
      ASSERT_EQ(m[i], m_ref[i]) << "element " << i << ", cut " << cut;
    }
  }
}

// A non-finite new value is reported, in the weights and in the biases, and only in
// the segment that holds it.
TEST(Update, ReportsNonFiniteValues) {
  const size_t V = 3, H = 2, n = rbm::Params::count(V, H), nw = V * H;
  const rbm::SgdHyper h{1.0f, 0.0f, 0.0f, nw};
  for (size_t bad : {size_t{0}, nw + 1}) {
    std::vector<float> th(n, 0.0f), m(n, 0.0f), g(n, 1.0f);
    g[bad] = bad == 0 ? INFINITY : NAN;
    EXPECT_EQ(rbm::sgd_momentum_update(th.data(), m.data(), g.data(), h, bad, bad + 1), 1u);
    EXPECT_EQ(rbm::sgd_momentum_update(th.data(), m.data(), g.data(), h, bad + 1, n), 0u);
  }
}

// One binarisation convention (binarize.hpp): none = x/255, threshold = [x >= 128],
// stochastic = [u < x/255] with u the documented Philox draw; its empirical mean over
// many images is x/255 within 4 standard errors.
TEST(Binarizer, MatchesTheDocumentedConvention) {
  const rbm::CounterRng rng(9);
  std::vector<uint8_t> px(256);
  for (int x = 0; x < 256; ++x) px[x] = static_cast<uint8_t>(x);
  std::vector<float> v(256), u(256);
  rbm::Binarizer none(rbm::Binarize::none, rng), thr(rbm::Binarize::threshold, rng),
      sto(rbm::Binarize::stochastic, rng);
  none.row(px.data(), 256, 0, 0, 0, v.data());
  for (int x = 0; x < 256; ++x) EXPECT_EQ(v[x], static_cast<float>(x) / 255.0f);
  thr.row(px.data(), 256, 0, 0, 0, v.data());
  for (int x = 0; x < 256; ++x) EXPECT_EQ(v[x], x >= 128 ? 1.0f : 0.0f);
  std::vector<double> mean(256, 0.0);
  const int N = 4000;
  for (int n = 0; n < N; ++n) {
    sto.row(px.data(), 256, 2, 5, n, v.data());
    rng.uniforms(rbm::Stream::binarize, 2, 5, n, u.data(), 256);
    for (int x = 0; x < 256; ++x) {
      ASSERT_EQ(v[x], u[x] < static_cast<float>(x) / 255.0f ? 1.0f : 0.0f);
      mean[x] += static_cast<double>(v[x]) / N;
    }
  }
  for (int x = 0; x < 256; ++x) {
    const double p = x / 255.0, se = std::sqrt(p * (1 - p) / N);
    EXPECT_NEAR(mean[x], p, 4 * se + 1e-12) << "pixel value " << x;
    EXPECT_EQ(sto.mean(static_cast<uint8_t>(x)), static_cast<float>(x) / 255.0f);
  }
  EXPECT_THROW(rbm::parse_binarize("gray"), rbm::UsageError);
}
