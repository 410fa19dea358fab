// RAISE (rbm_eval loglik --raise) against references this file computes itself, in double:
// exact log-likelihoods of tiny RBMs by enumerating their hidden states, and the log
// weight of one reverse chain by a plain loop over the documented random draws. Also the
// rank invariance under mpirun and the "not trustworthy" output rule.
#include "eval_util.hpp"

using namespace evaltest;

namespace {

// The mean over the RAISE images of the exact log p(v) = -F(v) - log Z. With
// --raise-images = all (the default) the images are every test image (raise_image_id is
// the identity when N = total), threshold-binarised: exact samples are 0/255 pixels.
double exact_mean_loglik(const Rbm& m, const Split& test, double log_z) {
  double s = 0;
  for (size_t k = 0; k < test.n(); ++k) s += -free_energy(m, threshold(test, k, m.V)) - log_z;
  return s / static_cast<double>(test.n());
}

struct Sandwich {
  double raise, ais_same, exact, width_se, log_z_se;
};

// Runs loglik --raise on a tiny RBM with its own exact samples as data.
Sandwich run_sandwich(const Rbm& m, const std::string& args, const char* what) {
  TempDir tmp;
  const std::vector<double> lw = hidden_log_weights(m);
  const double log_z = log_sum_exp(lw);
  const Split train = exact_samples(m, lw, 500, 1), test = exact_samples(m, lw, 100, 2);
  write_model(tmp / "m.h5", m);
  write_data(tmp / "d.h5", 3, 4, train, test);
  auto r = eval("loglik " + (tmp / "m.h5") + " " + (tmp / "d.h5") + " --raise --json " + args);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json(r, "raise_images"), 100);
  Sandwich s{json(r, "mean_loglik_raise"), json(r, "mean_loglik_ais_same_images"),
             exact_mean_loglik(m, test, log_z), json(r, "sandwich_width_stderr"),
             json(r, "log_z_stderr")};
  std::printf("%s: RAISE %.4f <= exact %.4f <= AIS %.4f (3 s.e. width %.4f, 3 s.e. log Z %.4f, "
              "ESS %.1f)\n", what, s.raise, s.exact, s.ais_same, 3 * s.width_se, 3 * s.log_z_se,
              json(r, "ess"));
  // The sandwich, each side within its stated error (99.7 %, fixed seeds: deterministic):
  //  * RAISE: E[w] = p_ann(v), so E[log mean_m w] <= log p_ann(v); p_ann -> p with the
  //    schedule, and the per-image differences r_i - exact_i have standard error
  //    sandwich_width_stderr (AIS_i - r_i = exact_i - r_i + (log Z - log Z^), the last
  //    term the same for every image), so mean r <= exact + 3 of them.
  //  * AIS: E[Z^] = Z, so -F - log Z^ is a stochastic upper bound; |log Z^ - log Z| <=
  //    3 se + (3 se)^2 as in test_eval.cpp, hence exact <= AIS + 3 se + 9 se^2.
  EXPECT_LE(s.raise, s.exact + 3 * s.width_se) << what;
  EXPECT_LE(s.exact, s.ais_same + 3 * s.log_z_se + 9 * s.log_z_se * s.log_z_se) << what;
  return s;
}

}  // namespace

// Weights N(0, 1.5^2) on 12 x 8: strongly multimodal, slow Gibbs mixing at beta = 1, where
// a short schedule leaves a loose bound. With 10,000 betas and 10 chains per image the
// bound must be close: within 3 s.e. + 0.1 nat of the exact value (the 0.1 nat the AIS
// tests ask of AIS). A wrong increment sign, a missing log Z_A term (H log 2 = 5.5 nats)
// or a sweep at the wrong beta is off by far more.
TEST(Raise, MultimodalTinyRbmSandwichesTheExactLogLikelihood) {
  const Rbm m = random_rbm(12, 8, 1.5, 0.0, 1.0, 1.0, 7);
  run_sandwich(m, "--runs 500 --betas 500 --raise-chains 4", "12 x 8 w~N(0,1.5^2), 500 betas");
  const Sandwich s =
      run_sandwich(m, "--runs 500 --betas 10000 --raise-chains 10", "12 x 8, 10000 betas");
  EXPECT_LE(std::abs(s.raise - s.exact), 3 * s.width_se + 0.1);
}

// Weak weights N(0, 0.3^2): p_ann is close to p already at 1000 betas, and RAISE is close.
TEST(Raise, WeakTinyRbmRaiseIsCloseToExact) {
  const Rbm m = random_rbm(12, 8, 0.3, 0.0, 1.0, 1.0, 8);
  const Sandwich s = run_sandwich(m, "--runs 200 --betas 1000 --raise-chains 5", "12 x 8 weak");
  EXPECT_LE(std::abs(s.raise - s.exact), 3 * s.width_se + 0.1);
}

// One reverse chain by a plain loop in double, from the documented draws:
//   x_K = v; for k = K..1: h_j = [u < sigmoid(beta_k (c_j + W_j'x))] with
//   u = uniforms(eval, kSubRaiseHidden, k, chain, j); x_i = [u < sigmoid((1 - beta_k) bA_i
//   + beta_k (b_i + W_i h))] with (kSubRaiseVisible, k, chain, i);
//   log w = -F(v) - log Z_A - sum_k [log f_k(x_{k-1}) - log f_{k-1}(x_{k-1})],
//   log f_beta(x) = (1 - beta) bA'x + beta b'x + sum_j softplus(beta a_j), a = c + W'x,
// the increment taken as a plain DIFFERENCE (not the program's log1p form), chain = id*M+m.
// The program computes each increment in float: a = c + W'x has absolute error
// <= gamma(V+1)(|c_j| + sum_i |W_ij|) =: da_j, which moves the increment's j-th term by at
// most |d/da (softplus(b1 a) - softplus(b0 a))| da_j <= dbeta (1 + |a_j|/4) da_j; the
// float logistic/expm1/log1p and the sums of V and H terms add relative errors bounded by
// gamma(V + H + 8) of the sum of the terms' magnitudes. Summed over the K steps. A draw
// whose u lies within the float error of its probability could go either way between the
// float program and this loop: p = sigmoid(float GEMM) is off by at most
// (1/4) gamma(n + 1) (sum of |terms|) + 4u (n = V or H terms); the test asserts that every
// draw is farther than that from its threshold (fixed seed: deterministic).
TEST(Raise, SingleChainLogWeightMatchesPlainLoop) {
  const size_t V = 12, H = 8, M = 3, K = 40;
  const Rbm m = random_rbm(V, H, 1.5, 0.0, 1.0, 1.0, 9);
  rbm::ParamBuffer pb(V, H);
  std::copy(m.W.begin(), m.W.end(), pb.view.W.data());
  std::copy(m.b.begin(), m.b.end(), pb.view.b.data());
  std::copy(m.c.begin(), m.c.end(), pb.view.c.data());
  rbm::Vector bA(V);
  for (size_t i = 0; i < V; ++i) bA(static_cast<Eigen::Index>(i)) = static_cast<float>(-1.0 + 0.15 * i);
  double log_za = static_cast<double>(H) * std::log(2.0);
  for (size_t i = 0; i < V; ++i) log_za += softplus(bA(static_cast<Eigen::Index>(i)));
  EXPECT_NEAR(rbm::eval::log_z_base_rate(bA, H), log_za, 1e-12);
  const std::vector<double> betas = rbm::eval::ais_betas(K);
  std::vector<double> v(V);
  rbm::Matrix X(V, 1);
  for (size_t i = 0; i < V; ++i) {
    v[i] = (i * 7 + 3) % 5 < 2 ? 1.0 : 0.0;
    X(static_cast<Eigen::Index>(i), 0) = static_cast<float>(v[i]);
  }
  const uint64_t image = 5;
  const rbm::CounterRng rng(123);
  const std::vector<double> w =
      rbm::eval::raise_log_weights(pb.view, bA, log_za, betas, X, &image, M, rng);
  ASSERT_EQ(w.size(), M);

  auto log_f = [&](double beta, const std::vector<double>& x) {
    double s = 0;
    for (size_t i = 0; i < V; ++i) s += ((1 - beta) * bA(static_cast<Eigen::Index>(i)) + beta * m.b[i]) * x[i];
    for (size_t j = 0; j < H; ++j) {
      double a = m.c[j];
      for (size_t i = 0; i < V; ++i) a += m.w(i, j) * x[i];
      s += softplus(beta * a);
    }
    return s;
  };
  double closest = 1;  // min over all draws of |u - p| - (float error bound of p)
  for (size_t c = 0; c < M; ++c) {
    const uint64_t chain = image * M + c;
    std::vector<double> x = v, h(H);
    double lw = -free_energy(m, v) - log_za, tol = 1e-12;
    std::vector<float> uh(H), uv(V);
    for (size_t k = K; k >= 1; --k) {
      const double b1 = betas[k], b0 = betas[k - 1];
      rng.uniforms(rbm::Stream::eval, rbm::eval::kSubRaiseHidden, k, chain, uh.data(), H);
      for (size_t j = 0; j < H; ++j) {
        double a = m.c[j], sa = std::abs(m.c[j]);
        for (size_t i = 0; i < V; ++i) {
          a += m.w(i, j) * x[i];
          sa += std::abs(m.w(i, j) * x[i]);
        }
        const double pr = sigmoid(b1 * a);
        closest = std::min(closest, std::abs(uh[j] - pr) - (0.25 * gamma(V + 1) * sa + 4 * kU));
        h[j] = uh[j] < pr ? 1.0 : 0.0;
      }
      rng.uniforms(rbm::Stream::eval, rbm::eval::kSubRaiseVisible, k, chain, uv.data(), V);
      for (size_t i = 0; i < V; ++i) {
        double a = (1 - b1) * bA(static_cast<Eigen::Index>(i)) + b1 * m.b[i];
        double sa = std::abs(a);
        for (size_t j = 0; j < H; ++j) {
          a += b1 * m.w(i, j) * h[j];
          sa += std::abs(m.w(i, j) * h[j]);
        }
        const double pr = sigmoid(a);
        closest = std::min(closest, std::abs(uv[i] - pr) - (0.25 * gamma(H + 3) * sa + 4 * kU));
        x[i] = uv[i] < pr ? 1.0 : 0.0;
      }
      const double inc = log_f(b1, x) - log_f(b0, x);
      lw -= inc;
      double mag = 0, da_term = 0;
      for (size_t i = 0; i < V; ++i)
        mag += (b1 - b0) * std::abs(m.b[i] - bA(static_cast<Eigen::Index>(i))) * x[i];
      for (size_t j = 0; j < H; ++j) {
        double a = m.c[j], sa = std::abs(m.c[j]);
        for (size_t i = 0; i < V; ++i) {
          a += m.w(i, j) * x[i];
          sa += std::abs(m.w(i, j));
        }
        mag += std::abs(softplus(b1 * a) - softplus(b0 * a));
        da_term += (b1 - b0) * (1 + std::abs(a) / 4) * gamma(V + 1) * sa;
      }
      tol += da_term + gamma(V + H + 8) * mag;
    }
    std::printf("chain %zu: program %.12f, loop %.12f, difference %.2e, tolerance %.2e\n", c,
                w[c], lw, w[c] - lw, tol);
    EXPECT_NEAR(w[c], lw, tol) << "chain " << c;
  }
  EXPECT_GT(closest, 0) << "a draw is a near tie: pick another seed";
}

// Ranks take whole groups of images and every draw is keyed by the global chain id
// (eval.hpp), so 1 and 3 ranks give BITWISE the same per-image weights, gathered in global
// image order and summed on rank 0 in that order: every RAISE number is bitwise equal.
// 30 images x 7 chains: groups of floor(100 / 7) = 14 images, 3 groups, one per rank.
TEST(Raise, OneAndThreeRanksGiveBitwiseTheSameBound) {
  TempDir tmp;
  const Rbm m = random_rbm(784, 16, 0.3, -1.0, 1.0, 1.0, 5);
  write_model(tmp / "m.h5", m);
  write_data(tmp / "d.h5", 28, 28, random_images(100, 784, 3), random_images(100, 784, 4));
  const std::string args = "loglik " + (tmp / "m.h5") + " " + (tmp / "d.h5") +
                           " --runs 20 --betas 200 --binarize stochastic --raise "
                           "--raise-images 30 --raise-chains 7 --json";
  auto one = eval(args, 1), three = eval(args, 3);
  ASSERT_EQ(one.code, 0) << one.err;
  ASSERT_EQ(three.code, 0) << three.err;
  EXPECT_EQ(json(three, "ranks"), 3);
  EXPECT_EQ(json(one, "raise_images"), 30);
  EXPECT_EQ(json(one, "raise_chains"), 7);
  for (const char* k : {"mean_loglik_raise", "mean_loglik_raise_stderr",
                        "mean_loglik_ais_same_images", "sandwich_width", "sandwich_width_stderr"})
    EXPECT_EQ(json(one, k), json(three, k)) << k;
  EXPECT_TRUE(std::isfinite(json(one, "mean_loglik_raise")));
}

// The output rule: ESS < 10 of the AIS runs means the AIS number is NOT printed (neither
// log Z +- nor mean log p(v)); the summary says why and gives the RAISE bound instead, and
// the JSON says "trustworthy": false with the reason. A random 784 x 200 model annealed in
// only 3 steps from the base rate: one run's weight dominates (ESS near 1). The same output for
// a weak 8 x 5 model with 1000 betas is trustworthy and prints the numbers.
TEST(Raise, LowEssIsReportedAsNotTrustworthy) {
  TempDir tmp;
  const Rbm bad = random_rbm(784, 200, 0.2, -1.0, 1.0, 1.0, 5);
  write_model(tmp / "bad.h5", bad);
  write_data(tmp / "bad_d.h5", 28, 28, random_images(200, 784, 1), random_images(50, 784, 2));
  auto r = eval("loglik " + (tmp / "bad.h5") + " " + (tmp / "bad_d.h5") +
                " --runs 2000 --betas 3 --raise --json");
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_LT(json(r, "ess"), 10) << "the setting must give a low ESS";
  EXPECT_NE(r.out.find("test log-lik: not trustworthy (AIS ESS "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("RAISE lower bound "), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("log Z ="), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("mean log p(v)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"trustworthy\": false"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"untrustworthy_reason\": \"AIS ESS "), std::string::npos) << r.out;
  // Without --raise: the same verdict, and a pointer to --raise.
  r = eval("loglik " + (tmp / "bad.h5") + " " + (tmp / "bad_d.h5") + " --runs 100 --betas 3 --json");
  EXPECT_NE(r.out.find("not trustworthy (AIS ESS "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("add --raise"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"trustworthy\": false"), std::string::npos) << r.out;

  const Rbm good = random_rbm(8, 5, 0.3, 0.0, 1.0, 1.0, 11);
  const std::vector<double> lw2 = hidden_log_weights(good);
  write_model(tmp / "good.h5", good);
  write_data(tmp / "good_d.h5", 2, 4, exact_samples(good, lw2, 200, 1), exact_samples(good, lw2, 50, 2));
  r = eval("loglik " + (tmp / "good.h5") + " " + (tmp / "good_d.h5") +
           " --runs 100 --betas 1000 --raise --raise-chains 3 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("mean log p(v) = "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("sandwich width"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"trustworthy\": true, \"untrustworthy_reason\": \"\""), std::string::npos)
      << r.out;
}

// Bad RAISE flag values: one line naming the flag, exit 2.
TEST(Raise, BadFlagValuesAreRefused) {
  TempDir tmp;
  const Rbm m = random_rbm(8, 5, 0.3, 0.0, 1.0, 1.0, 11);
  write_model(tmp / "m.h5", m);
  write_data(tmp / "d.h5", 2, 4, random_images(20, 8, 1), random_images(10, 8, 2));
  const std::string base = "loglik " + (tmp / "m.h5") + " " + (tmp / "d.h5") + " --raise ";
  for (const auto& [args, needle] : std::vector<std::pair<std::string, std::string>>{
           {"--raise-images 1", "--raise-images 1: must be 0 (all 10 images of test)"},
           {"--raise-images 11", "--raise-images 11"},
           {"--raise-chains 0", "--raise-chains 0"}}) {
    auto r = eval(base + args);
    EXPECT_EQ(r.code, 2) << args;
    EXPECT_NE(r.err.find(needle), std::string::npos) << args << ": " << r.err;
    EXPECT_EQ(count_lines(r.err), 1u) << r.err;
  }
}

// The sandwich half of the rule: a schedule so short (3 betas) that AIS still has many
// effective runs (the base rate is fitted to the model's own samples) but the annealed
// model p_ann, which RAISE bounds, is far from the RBM on the test images (random grey
// images thresholded, unlike the model's samples), so AIS and RAISE disagree by more than
// their noise + 1 nat. The verdict must then name the sandwich, and no AIS number is
// printed (--exact-max 0: no exact log Z line either).
TEST(Raise, WideSandwichIsReportedAsNotTrustworthy) {
  TempDir tmp;
  const Rbm m = random_rbm(784, 16, 0.3, -1.0, 1.0, 1.0, 5);
  const std::vector<double> lw = hidden_log_weights(m);
  write_model(tmp / "m.h5", m);
  write_data(tmp / "d.h5", 28, 28, exact_samples(m, lw, 200, 1), random_images(200, 784, 2));
  auto r = eval("loglik " + (tmp / "m.h5") + " " + (tmp / "d.h5") +
                " --runs 5000 --betas 3 --raise --exact-max 0 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_GE(json(r, "ess"), 10) << "the setting must pass the ESS rule";
  const double width = json(r, "sandwich_width");
  const double limit = 3 * json(r, "log_z_stderr") + 3 * json(r, "sandwich_width_stderr") + 1.0;
  std::printf("ESS %.1f, sandwich width %.3f, limit %.3f\n", json(r, "ess"), width, limit);
  ASSERT_GT(std::abs(width), limit) << "the setting must give a wide sandwich";
  EXPECT_NE(r.out.find(width > 0 ? "test log-lik: not trustworthy (AIS-RAISE sandwich width "
                                   : "test log-lik: not trustworthy (RAISE above AIS by "),
            std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"trustworthy\": false"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("mean log p(v)"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("log Z ="), std::string::npos) << r.out;
}
