// tests/test_bf16.cpp — the bf16 GEMM layer and cd_gradient_bf16 against fp32 and
// double references, within tolerances derived from bf16's 8-bit mantissa.
//
// THE ERROR MODEL (used by every bound below)
//   u = 2^-8: bf16 keeps 8 significant bits (7 stored + the implicit one), so the
//             spacing of bf16 numbers in [1, 2) is 2^-7 and round-to-nearest-even gives
//             round(a) = a (1 + e), |e| <= u = 2^-8, for normal a (0 and 1 are exact).
//             (A bound of 2^-9 would need 8 STORED mantissa bits; it is violated, e.g.
//             17.577 -> 17.5 is off by 2.7e-3 relative, and Bf16Round checks u = 2^-8.)
//   delta = 2u + u^2: a product of two rounded inputs,
//             round(a) round(b) = a b (1 + e), |e| <= (1 + u)^2 - 1 = 2u + u^2.
//   g(K) = K 2^-24 / (1 - K 2^-24): a sum of K fp32 terms accumulated in fp32 in
//             any order has |error| <= g(K) * sum |terms| (Higham, Thm 3.1; the
//             standard gamma_K with unit roundoff 2^-24).
// So a dot product of K terms taken in bf16 with fp32 accumulation differs from the
// exact one by at most  (delta + g(K) (1 + delta)) * sum_k |a_k| |b_k|,
// and from an fp32 dot product of the unrounded inputs by at most
//   (delta + 2 g(K) (1 + delta)) * sum_k |a_k| |b_k|        ("sums of K terms").
// For the CD statistics (K = B + N = 2B for CD-1, entries scaled by 1/B, |x|, |p| <= 1)
// this gives |dW_bf16 - dW_fp32| <= (delta + 2 g(2B)) * 2 ~ 1.6e-2 in the worst case;
// the test below uses the per-entry version of that bound, plus the propagation of
// the forward products' rounding through the sigmoids (Lipschitz constant 1/4) into
// p(h|x), v1 = p(v|h0) and p(h|v1), and plus the effect of any hidden sample h0 that
// the rounding flipped (each such flip is checked to sit within the rounding
// distance of its uniform: |u - p(h|x)| <= the derived bound on |dp|).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>
#include <limits>
#include <random>

#include "rbm/gemm_bf16.hpp"
#include "rbm/rbm_bf16.hpp"

using namespace rbm;
using bf16::bf16_t;

namespace {

constexpr double kU = 0x1.0p-8;                 // bf16 unit roundoff
constexpr double kDelta = 2 * kU + kU * kU;     // product of two rounded inputs
// Absolute slack for fp32 element-wise operations (bias add, Eigen's logistic, the
// 1/B scaling): each is within a few fp32 ulps (<= 2.4e-7) of a value <= 1 in size.
constexpr double kSlack = 1e-6;
double g(double K) { return K * 0x1.0p-24 / (1 - K * 0x1.0p-24); }

#define SKIP_WITHOUT_NATIVE_BF16()                                                  \
  do {                                                                              \
    if (!bf16::cpu_has_native_bf16())                                               \
      GTEST_SKIP() << "CPU without native bf16 (AVX512_BF16 / AMX-BF16): "          \
                   << bf16::native_bf16_name();                                     \
  } while (0)

float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Deterministic pseudo-random floats from the project's counter RNG.
std::vector<float> uniforms(uint64_t id, size_t n) {
  std::vector<float> u(n);
  CounterRng(1234).uniforms(Stream::eval, 99, 0, id, u.data(), n);
  return u;
}

// Column-major op(A)[i,k] with A stored (lda) as A or A'.
double opget(const std::vector<float>& A, bool t, int64_t lda, int64_t i, int64_t k) {
  return t ? A[k + i * lda] : A[i + k * lda];
}
}  // namespace

// ---------------------------------------------------------------------------
// conversion
// ---------------------------------------------------------------------------
TEST(Bf16Round, NearestEvenAndSpecials) {
  EXPECT_EQ(bf16::round(1.0f), 0x3f80);
  EXPECT_EQ(bf16::round(0.0f), 0x0000);
  EXPECT_EQ(bf16::round(-0.0f), 0x8000);
  EXPECT_EQ(bf16::round(bits_to_float(0x3f808000u)), 0x3f80);  // tie, even below
  EXPECT_EQ(bf16::round(bits_to_float(0x3f818000u)), 0x3f82);  // tie, even above
  EXPECT_EQ(bf16::round(bits_to_float(0x3f808001u)), 0x3f81);  // just above the tie
  EXPECT_EQ(bf16::round(bits_to_float(0x3f807fffu)), 0x3f80);  // just below
  EXPECT_EQ(bf16::round(INFINITY), 0x7f80);
  EXPECT_EQ(bf16::round(-INFINITY), 0xff80);
  EXPECT_TRUE(std::isnan(bf16::to_float(bf16::round(NAN))));
  EXPECT_TRUE(std::isnan(bf16::to_float(bf16::round(bits_to_float(0x7f800001u)))));  // sNaN stays NaN
  EXPECT_EQ(bf16::round(bits_to_float(0x7f7fffffu)), 0x7f80);  // FLT_MAX rounds to inf (RNE)
  for (int k = 0; k <= 256; ++k) EXPECT_EQ(bf16::to_float(bf16::round(float(k))), float(k));
  // relative error <= u over many magnitudes
  auto u = uniforms(1, 20000);
  for (size_t i = 0; i < u.size(); ++i) {
    const float x = std::ldexp(u[i] + 0.5f, static_cast<int>(i % 60) - 30) * (i % 2 ? -1 : 1);
    const double r = bf16::to_float(bf16::round(x));
    EXPECT_LE(std::abs(r - x), kU * std::abs(x)) << x;
  }
}

TEST(Bf16Round, VectorMatchesScalarBitForBit) {
  SKIP_WITHOUT_NATIVE_BF16();
  auto u = uniforms(2, 4096);
  std::vector<float> in(u.size());
  for (size_t i = 0; i < in.size(); ++i) {
    uint32_t bits;
    std::memcpy(&bits, &u[i], 4);
    in[i] = std::ldexp(u[i] + 0.25f, static_cast<int>(i % 40) - 20);
    if (i % 7 == 0) {  // exact ties
      std::memcpy(&bits, &in[i], 4);
      bits = (bits & 0xffff0000u) | 0x8000u;
      std::memcpy(&in[i], &bits, 4);
    }
    if (i % 11 == 0) in[i] = -in[i];
  }
  in[3] = 0.0f; in[4] = -0.0f; in[5] = INFINITY; in[6] = 1.0f; in[8] = NAN;
  in[9] = bits_to_float(0x00000123u);   // denormals: both flush to signed zero
  in[10] = bits_to_float(0x80400000u);
  for (size_t n : {size_t(0), size_t(1), size_t(15), size_t(16), size_t(17), size_t(31),
                   size_t(32), size_t(33), size_t(100), in.size()}) {
    std::vector<bf16_t> a(n + 1, 0xabcd), b(n + 1, 0xabcd);
    bf16::to_bf16(in.data(), a.data(), n);
    bf16::to_bf16_scalar(in.data(), b.data(), n);
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(a[i], b[i]) << "n=" << n << " i=" << i << " x=" << in[i];
    EXPECT_EQ(a[n], 0xabcd) << "wrote past the end, n=" << n;
  }
}

// ---------------------------------------------------------------------------
// GEMM layer against a double loop
// ---------------------------------------------------------------------------
TEST(Bf16Gemm, AllTransposesMatchDoubleLoopWithinDerivedBound) {
  SKIP_WITHOUT_NATIVE_BF16();
  struct Case {
    bool ta, tb;
    int64_t M, N, K, pad;
  };
  for (const Case& cs : {Case{false, false, 37, 13, 53, 0}, Case{true, false, 64, 9, 130, 3},
                         Case{false, true, 17, 70, 33, 5}, Case{true, true, 40, 31, 77, 1},
                         Case{false, false, 500, 100, 784, 0}}) {
    const int64_t lda = (cs.ta ? cs.K : cs.M) + cs.pad, ldb = (cs.tb ? cs.N : cs.K) + cs.pad,
                  ldc = cs.M + cs.pad;
    const int64_t acols = cs.ta ? cs.M : cs.K, bcols = cs.tb ? cs.K : cs.N;
    auto ua = uniforms(10 + cs.M, lda * acols), ub = uniforms(20 + cs.N, ldb * bcols);
    std::vector<float> A(ua.size()), B(ub.size());
    for (size_t i = 0; i < A.size(); ++i) A[i] = 2 * ua[i] - 1;
    for (size_t i = 0; i < B.size(); ++i) B[i] = ub[i] < 0.5f ? 0.0f : ub[i];
    std::vector<bf16_t> Ab(A.size()), Bb(B.size());
    bf16::to_bf16(A.data(), Ab.data(), A.size());
    bf16::to_bf16(B.data(), Bb.data(), B.size());
    std::vector<float> Ar(A.size()), Br(B.size());  // the rounded inputs as floats
    bf16::to_float(Ab.data(), Ar.data(), Ar.size());
    bf16::to_float(Bb.data(), Br.data(), Br.size());
    std::vector<float> C(ldc * cs.N, -7.0f);
    bf16::gemm(cs.ta ? bf16::Op::T : bf16::Op::N, cs.tb ? bf16::Op::T : bf16::Op::N, cs.M, cs.N,
               cs.K, Ab.data(), lda, Bb.data(), ldb, C.data(), ldc);
    double worst = 0;
    for (int64_t j = 0; j < cs.N; ++j)
      for (int64_t i = 0; i < ldc; ++i) {
        if (i >= cs.M) {  // padding rows of C are not written
          ASSERT_EQ(C[i + j * ldc], -7.0f);
          continue;
        }
        double exact_r = 0, abs_r = 0, exact = 0, absum = 0;
        for (int64_t k = 0; k < cs.K; ++k) {
          const double a = opget(A, cs.ta, lda, i, k), b = opget(B, cs.tb, ldb, k, j);
          const double ar = opget(Ar, cs.ta, lda, i, k), br = opget(Br, cs.tb, ldb, k, j);
          exact += a * b;
          absum += std::abs(a * b);
          exact_r += ar * br;
          abs_r += std::abs(ar * br);
        }
        const double c = C[i + j * ldc];
        // Same rounded inputs: only fp32 accumulation differs.
        ASSERT_LE(std::abs(c - exact_r), g(cs.K) * abs_r + 1e-30)
            << "M=" << cs.M << " i=" << i << " j=" << j;
        // Unrounded inputs: bf16 rounding of both factors plus accumulation.
        const double bound = (kDelta + g(cs.K) * (1 + kDelta)) * absum;
        ASSERT_LE(std::abs(c - exact), bound) << "M=" << cs.M << " i=" << i << " j=" << j;
        if (absum > 0) worst = std::max(worst, std::abs(c - exact) / bound);
      }
    std::printf("  gemm %c%c M=%ld N=%ld K=%ld: max |err| / bound = %.3f, impl %s\n",
                cs.ta ? 'T' : 'N', cs.tb ? 'T' : 'N', static_cast<long>(cs.M),
                static_cast<long>(cs.N), static_cast<long>(cs.K), worst,
                bf16::gemm_impl(cs.ta ? bf16::Op::T : bf16::Op::N, cs.tb ? bf16::Op::T : bf16::Op::N,
                                cs.M, cs.N, cs.K, lda, ldb, ldc).c_str());
  }
}

TEST(Bf16Gemm, CdProductsMatchDoubleLoopAndPrimitivesAreReused) {
  SKIP_WITHOUT_NATIVE_BF16();
  const int64_t V = 50, H = 23, B = 7, K = 2 * B;
  auto uw = uniforms(100, V * H), ux = uniforms(101, V * K), up = uniforms(102, H * K);
  std::vector<float> W(V * H), X(V * K), P(H * K);  // W row-major [V,H]; X [V,K], P [H,K] col-major
  for (size_t i = 0; i < W.size(); ++i) W[i] = uw[i] - 0.5f;
  for (size_t i = 0; i < X.size(); ++i) X[i] = ux[i];
  for (size_t i = 0; i < P.size(); ++i) P[i] = up[i] < 0.5f ? 1.0f : 0.0f;  // binary: exact
  std::vector<bf16_t> Wb(W.size()), Xb(X.size()), Pb(P.size());
  bf16::to_bf16(W.data(), Wb.data(), W.size());
  bf16::to_bf16(X.data(), Xb.data(), X.size());
  bf16::to_bf16(P.data(), Pb.data(), P.size());
  std::vector<float> Hpre(H * B), Vpre(V * B), dW(V * H);
  for (int rep = 0; rep < 3; ++rep) {
    bf16::hidden_pre(Wb.data(), V, H, Xb.data(), B, Hpre.data());
    bf16::visible_pre(Wb.data(), V, H, Pb.data(), B, Vpre.data());
    bf16::stats(Xb.data(), V, Pb.data(), H, K, dW.data());
  }
  const size_t cached = bf16::cache_size();
  bf16::hidden_pre(Wb.data(), V, H, Xb.data(), B, Hpre.data());
  EXPECT_EQ(bf16::cache_size(), cached) << "a repeated shape created a new primitive";
  auto check = [](double got, double exact, double absum, int64_t K_, const char* what) {
    ASSERT_LE(std::abs(got - exact), (kDelta + g(K_) * (1 + kDelta)) * absum) << what;
  };
  for (int64_t n = 0; n < B; ++n)
    for (int64_t j = 0; j < H; ++j) {  // W'X
      double e = 0, a = 0;
      for (int64_t i = 0; i < V; ++i) e += double(W[i * H + j]) * X[i + n * V], a += std::abs(double(W[i * H + j]) * X[i + n * V]);
      check(Hpre[j + n * H], e, a, V, "W'X");
    }
  for (int64_t n = 0; n < B; ++n)
    for (int64_t i = 0; i < V; ++i) {  // W Hs
      double e = 0, a = 0;
      for (int64_t j = 0; j < H; ++j) e += double(W[i * H + j]) * P[j + n * H], a += std::abs(double(W[i * H + j]) * P[j + n * H]);
      check(Vpre[i + n * V], e, a, H, "W Hs");
    }
  for (int64_t i = 0; i < V; ++i)
    for (int64_t j = 0; j < H; ++j) {  // A P'
      double e = 0, a = 0;
      for (int64_t k = 0; k < K; ++k) e += double(X[i + k * V]) * P[j + k * H], a += std::abs(double(X[i + k * V]) * P[j + k * H]);
      check(dW[i * H + j], e, a, K, "A P'");
    }
}

// ---------------------------------------------------------------------------
// CD-1 statistics: bf16 against fp32 (cd_gradient), per-entry derived bound
// ---------------------------------------------------------------------------
namespace {
struct Model {
  ParamBuffer theta;
  Matrix X;
  std::vector<uint64_t> idx;
};

// x in {0, k/255} like the images (about 40% zeros); W ~ U(-w, w); b, c ~ U(-1, 1).
Model make_model(size_t V, size_t H, size_t B, double wscale, uint64_t seed) {
  Model m{ParamBuffer(V, H), Matrix(V, B), std::vector<uint64_t>(B)};
  auto uw = uniforms(seed, V * H + V + H), ux = uniforms(seed + 1, V * B);
  for (size_t k = 0; k < V * H; ++k) m.theta.data[k] = static_cast<float>(wscale * (2 * uw[k] - 1));
  for (size_t k = V * H; k < V * H + V + H; ++k) m.theta.data[k] = 2 * uw[k] - 1;
  for (size_t k = 0; k < V * B; ++k)
    m.X.data()[k] = ux[k] < 0.4f ? 0.0f : std::floor(ux[k] * 255.0f) / 255.0f;
  for (size_t n = 0; n < B; ++n) m.idx[n] = 1000 + 3 * n;
  return m;
}

double sigm(double x) { return 1 / (1 + std::exp(-x)); }
}  // namespace

class Cd1Bound : public ::testing::TestWithParam<double> {};

TEST_P(Cd1Bound, StatisticsWithinDerivedBoundOfFp32) {
  SKIP_WITHOUT_NATIVE_BF16();
  const size_t V = 784, H = 120, B = 48;
  const double wscale = GetParam();
  Model m = make_model(V, H, B, wscale, 7);
  const Params& p = m.theta.view;
  const CdConfig cfg{1, false, 5, B, B};
  const CounterRng rng(99);
  ParamBuffer gf(V, H), gb(V, H);
  CdWorkspace wsf;
  CdBf16Workspace wsb;
  cd_gradient(p, cfg, m.X, m.idx.data(), nullptr, nullptr, rng, wsf, gf.view);
  cd_gradient_bf16(p, cfg, m.X, m.idx.data(), nullptr, nullptr, rng, wsb, gb.view);
  const Matrix Hf = wsf.Hs.leftCols(B), Hb = wsb.f32.Hs.leftCols(B);  // h0 of each path

  // The bound, per entry (derivation at the top of this file; h = the fp32 path's h0):
  //   D0[j,n]  >= |dp(h_j|x_n)|   = (delta + 2g(V)(1+delta)) sum_i |w_ij| x_in / 4 + slack
  //   F [i,n]   = sum over flipped j of |w_ij|        (h0 samples the rounding flipped)
  //   Dv[i,n]  >= |dv1_in|        = ((delta + 2g(H)(1+delta)) (sum_j |w_ij| h_jn + F) + F) / 4 + slack
  //   D1[j,n]  >= |dp(h_j|v1_n)|  = ((delta + 2g(V)(1+delta)) sum_i |w_ij| (v_in + Dv_in)
  //                                  + sum_i |w_ij| Dv_in) / 4 + slack
  //   |ddW_ij| <= 1/B sum_n [ delta' x (p0 + D0) + x D0
  //                          + delta' (v + Dv)(p1 + D1) + Dv p1 + v D1 + Dv D1 ]
  //               + 2 g(2B) (1 + delta') 1/B sum_n [x (p0 + D0) + (v + Dv)(p1 + D1)] + slack
  //   |ddb_i|  <= 1/B sum_n Dv + 2 g(B) 1/B sum_n (x + v + Dv) + slack
  //   |ddc_j|  <= 1/B sum_n (D0 + D1) + 2 g(2B) 1/B sum_n (p0 + p1 + D0 + D1) + slack
  // with delta' = delta + 2^-23 (the 1/B scaling of P in fp32 before rounding).
  const double dV = kDelta + 2 * g(V) * (1 + kDelta), dH = kDelta + 2 * g(H) * (1 + kDelta);
  const double dP = kDelta + 0x1.0p-23;
  Eigen::MatrixXd p0(H, B), D0(H, B), v1(V, B), Dv(V, B), p1(H, B), D1(H, B);
  const Eigen::MatrixXd Wd = p.W.cast<double>(), Wa = Wd.cwiseAbs();
  size_t flips = 0;
  std::vector<float> u(H);
  for (size_t n = 0; n < B; ++n) {
    const Eigen::VectorXd x = m.X.col(n).cast<double>();
    const Eigen::VectorXd pre0 = Wd.transpose() * x + p.c.cast<double>();
    const Eigen::VectorXd s1 = Wa.transpose() * x;
    rng.uniforms(Stream::hidden, 0, cfg.step, m.idx[n], u.data(), H);
    Eigen::VectorXd flipped = Eigen::VectorXd::Zero(H);
    for (size_t j = 0; j < H; ++j) {
      p0(j, n) = sigm(pre0(j));
      D0(j, n) = dV * s1(j) / 4 + kSlack;
      if (Hf(j, n) != Hb(j, n)) {
        ++flips;
        flipped(j) = 1;
        // a flip must come from rounding: the uniform lies within the bound of p
        EXPECT_LE(std::abs(double(u[j]) - p0(j, n)), D0(j, n)) << "unexplained flip j=" << j << " n=" << n;
      }
    }
    const Eigen::VectorXd h = Hf.col(n).cast<double>();
    const Eigen::VectorXd pre1 = Wd * h + p.b.cast<double>();
    const Eigen::VectorXd s2 = Wa * h, F = Wa * flipped;
    for (size_t i = 0; i < V; ++i) {
      v1(i, n) = sigm(pre1(i));
      Dv(i, n) = (dH * (s2(i) + F(i)) + F(i)) / 4 + kSlack;
    }
    const Eigen::VectorXd pre2 = Wd.transpose() * v1.col(n) + p.c.cast<double>();
    const Eigen::VectorXd s3 = Wa.transpose() * (v1.col(n) + Dv.col(n)), s4 = Wa.transpose() * Dv.col(n);
    for (size_t j = 0; j < H; ++j) {
      p1(j, n) = sigm(pre2(j));
      D1(j, n) = (dV * s3(j) + s4(j)) / 4 + kSlack;
    }
  }
  const Eigen::MatrixXd X = m.X.cast<double>();
  const double iB = 1.0 / B, gK = g(2.0 * B);
  Eigen::MatrixXd bW = iB * (dP * X * (p0 + D0).transpose() + X * D0.transpose() +
                             dP * (v1 + Dv) * (p1 + D1).transpose() + Dv * p1.transpose() +
                             v1 * D1.transpose() + Dv * D1.transpose()) +
                       2 * gK * (1 + dP) * iB * (X * (p0 + D0).transpose() + (v1 + Dv) * (p1 + D1).transpose());
  bW.array() += kSlack;
  const Eigen::VectorXd bb = (iB * Dv.rowwise().sum() + 2 * g(B) * iB * (X + v1 + Dv).rowwise().sum()).array() + kSlack;
  const Eigen::VectorXd bc = (iB * (D0 + D1).rowwise().sum() + 2 * gK * iB * (p0 + p1 + D0 + D1).rowwise().sum()).array() + kSlack;

  double worst = 0, maxdiff = 0, maxbound = 0;
  size_t bad = 0;
  for (size_t i = 0; i < V; ++i)
    for (size_t j = 0; j < H; ++j) {
      const double d = std::abs(double(gb.view.W(i, j)) - gf.view.W(i, j));
      bad += d > bW(i, j);
      worst = std::max(worst, d / bW(i, j));
      maxdiff = std::max(maxdiff, d);
      maxbound = std::max(maxbound, bW(i, j));
    }
  for (size_t i = 0; i < V; ++i) {
    const double d = std::abs(double(gb.view.b(i)) - gf.view.b(i));
    bad += d > bb(i);
    worst = std::max(worst, d / bb(i));
  }
  for (size_t j = 0; j < H; ++j) {
    const double d = std::abs(double(gb.view.c(j)) - gf.view.c(j));
    bad += d > bc(j);
    worst = std::max(worst, d / bc(j));
  }
  std::printf("  |w| <= %.2f: %zu of %zu h0 samples flipped by rounding; max |ddW| %.2e, "
              "largest bound %.2e, max |diff|/bound %.3f\n",
              wscale, flips, H * B, maxdiff, maxbound, worst);
  EXPECT_EQ(bad, 0u) << "entries outside the derived bound (worst ratio " << worst << ")";
  EXPECT_GT(maxdiff, 0.0) << "bf16 path gave fp32's result bit for bit: was bf16 used?";
}

// Small weights (the initialisation scale) and trained-model-like weights.
INSTANTIATE_TEST_SUITE_P(WeightScales, Cd1Bound, ::testing::Values(0.01, 0.1));

// ---------------------------------------------------------------------------
// CD-k and PCD: same code paths; sample flips compound over Gibbs steps, so these
// check closeness in aggregate (not a per-entry bound) and the chain bookkeeping.
// ---------------------------------------------------------------------------
TEST(CdBf16, CdkAndPcdCloseToFp32) {
  SKIP_WITHOUT_NATIVE_BF16();
  const size_t V = 784, H = 64, B = 32, C = 24;
  Model m = make_model(V, H, B, 0.05, 21);
  const CounterRng rng(5);
  for (bool pcd : {false, true}) {
    const CdConfig cfg{3, pcd, 11, B, pcd ? C : B};
    Matrix chains_f = (m.X.leftCols(C).array() > 0.5f).cast<float>(), chains_b = chains_f;
    std::vector<uint64_t> cidx(C);
    for (size_t k = 0; k < C; ++k) cidx[k] = 7 * k;
    ParamBuffer gf(V, H), gb(V, H);
    CdWorkspace wsf;
    CdBf16Workspace wsb;
    auto cf = cd_gradient(m.theta.view, cfg, m.X, m.idx.data(), pcd ? &chains_f : nullptr,
                          cidx.data(), rng, wsf, gf.view);
    auto cb = cd_gradient_prec(Precision::bf16, m.theta.view, cfg, m.X, m.idx.data(),
                               pcd ? &chains_b : nullptr, cidx.data(), rng, wsb, gb.view);
    double num = 0, den = 0;
    for (size_t k = 0; k < gf.data.size(); ++k)
      num += std::abs(double(gb.data[k]) - gf.data[k]), den += std::abs(double(gf.data[k]));
    std::printf("  %s k=3: relative L1 difference of the statistics %.2e\n", pcd ? "PCD" : "CD", num / den);
    EXPECT_LT(num / den, 0.02);
    EXPECT_NEAR(cb.recon_sq, cf.recon_sq, 0.01 * cf.recon_sq);
    if (pcd) {
      EXPECT_TRUE(((chains_b.array() == 0) || (chains_b.array() == 1)).all()) << "chains must stay binary";
      const double differ = (chains_b.array() != chains_f.array()).cast<double>().mean();
      EXPECT_LT(differ, 0.02) << "fraction of chain units that differ";
    }
  }
}

TEST(CdBf16, PrecisionNames) {
  EXPECT_EQ(parse_precision("fp32"), Precision::fp32);
  EXPECT_EQ(parse_precision("bf16"), Precision::bf16);
  EXPECT_STREQ(precision_name(Precision::bf16), "bf16");
  EXPECT_ANY_THROW(parse_precision("fp16"));
  EXPECT_FALSE(bf16::describe().empty());
  bf16::set_threads(1);
  EXPECT_EQ(bf16::threads(), 1);
}

TEST(CdBf16, UpdatePassKeepsTheBf16CopyOfW) {
  SKIP_WITHOUT_NATIVE_BF16();
  const size_t V = 300, H = 70, B = 16;  // V*H + V + H = 21370: two ranges of 16384
  Model m = make_model(V, H, B, 0.05, 31);
  CdBf16Workspace ws;
  std::vector<int> covered(m.theta.data.size(), 0);
  update_with_bf16_copy(m.theta.view, ws, [&](size_t first, size_t count) {
    for (size_t k = first; k < first + count; ++k) {
      ++covered[k];
      m.theta.data[k] += 0.001f * static_cast<float>(k % 7);
    }
  });
  EXPECT_TRUE(std::all_of(covered.begin(), covered.end(), [](int c) { return c == 1; }));
  ASSERT_TRUE(ws.w_is_current);
  std::vector<bf16_t> expect(V * H);
  bf16::to_bf16(m.theta.data.data(), expect.data(), V * H);
  EXPECT_TRUE(std::equal(expect.begin(), expect.end(), ws.Wb.data()));
  // cd_gradient_bf16 with the copy supplied gives what it gives when converting itself
  const CdConfig cfg{1, false, 3, B, B};
  const CounterRng rng(8);
  // One gradient buffer for both calls: db and dc (Eigen row sums, also in
  // cd_gradient) can differ in the last bit when the destination's alignment differs.
  ParamBuffer g(V, H);
  cd_gradient_bf16(m.theta.view, cfg, m.X, m.idx.data(), nullptr, nullptr, rng, ws, g.view);
  const std::vector<float> g1 = g.data;
  EXPECT_FALSE(ws.w_is_current) << "the flag holds for one call only";
  cd_gradient_bf16(m.theta.view, cfg, m.X, m.idx.data(), nullptr, nullptr, rng, ws, g.view);
  const std::vector<float>& g2 = g.data;
  size_t ndiff = 0, first = 0;
  for (size_t k = 0; k < g1.size(); ++k)
    if (g1[k] != g2[k] && !ndiff++) first = k;
  EXPECT_EQ(ndiff, 0u) << "first at " << first << " of " << g1.size() << ": " << g1[first]
                       << " vs " << g2[first];
}

// The node's fused reduce+update (fused_update, what rbm_dist's NodeShared::reduce
// calls on one node) against the unfused reference: sum the slots into a buffer in
// slot order, then sgd_momentum_update. Bit for bit, on every segment split, with and
// without the bf16 copy of W — the copy equal to to_bf16 of the new weights.
TEST(FusedUpdate, EqualsSumThenUpdateBitwiseAndWritesTheBf16Copy) {
  const size_t V = 300, H = 70, n = V * H + V + H;  // 21370: several blocks of 2048
  std::mt19937 gen(5);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  SgdHyper h;
  h.lr = 0.1f;
  h.momentum = 0.9f;
  h.weight_decay = 2e-4f;
  h.n_weights = V * H;
  for (int ng : {1, 2, 3, 8}) {
    std::vector<std::vector<float>> slots(ng, std::vector<float>(n));
    for (auto& s : slots)
      for (float& x : s) x = 0.01f * u(gen);
    std::vector<const float*> g;
    for (auto& s : slots) g.push_back(s.data());
    std::vector<float> theta0(n), mom0(n);
    for (size_t i = 0; i < n; ++i) theta0[i] = 0.05f * u(gen), mom0[i] = 0.001f * u(gen);
    // reference
    std::vector<float> sum = slots[0], th_ref = theta0, m_ref = mom0;
    for (int k = 1; k < ng; ++k)
      for (size_t i = 0; i < n; ++i) sum[i] += slots[k][i];
    EXPECT_EQ(sgd_momentum_update(th_ref.data(), m_ref.data(), sum.data(), h, 0, n), 0u);
    std::vector<bf16_t> w_ref(V * H);
    bf16::to_bf16_scalar(th_ref.data(), w_ref.data(), V * H);
    // fused, split into segments as 1, 2 and 3 local ranks would
    for (size_t parts : {1, 2, 3}) {
      std::vector<float> th = theta0, m = mom0;
      std::vector<bf16_t> w(V * H, 0xffff);
      const size_t per = (n + parts - 1) / parts / 16 * 16 + 16;
      for (size_t a = 0; a < n; a += per)
        EXPECT_EQ(fused_update(th.data(), m.data(), g.data(), ng, h, a, std::min(n, a + per),
                               w.data()),
                  0u);
      EXPECT_EQ(th, th_ref) << ng << " slots, " << parts << " segments";
      EXPECT_EQ(m, m_ref) << ng << " slots, " << parts << " segments";
      EXPECT_EQ(w, w_ref) << ng << " slots, " << parts << " segments";
    }
  }
  // A non-finite result is reported.
  std::vector<float> th(n, 1.0f), m(n, 0.0f), s(n, 0.0f);
  s[V * H + 3] = std::numeric_limits<float>::infinity();
  const float* g1 = s.data();
  EXPECT_EQ(fused_update(th.data(), m.data(), &g1, 1, h, 0, n), 1u);
}
