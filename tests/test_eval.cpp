// rbm_eval against references this file computes itself, in double, without the code
// under test: log Z by enumeration (all joint states of a tiny RBM; all hidden states of
// 784 x 16 and 20 x 12 RBMs), free energies and pseudo-likelihood by loops, hidden
// probabilities by a naive loop, PNGs decoded with libpng, and a probe whose accuracy
// follows from the data. The program is run as a user runs it (also under mpirun).
#include "eval_util.hpp"

using namespace evaltest;

// ---- exact log Z and AIS ----------------------------------------------------------------
//
// Tolerances of the AIS checks. The estimate Z^ = Z_A mean(w) is unbiased (Neal 2001) and,
// over M independent runs, close to normal with standard error sd(w)/sqrt(M); the program
// reports se = sd(w) / (sqrt(M) mean(w)), the delta-method standard error of log Z^. With
// d = Z^/Z - 1 ~ N(0, se^2), log Z^ - log Z = log(1 + d), so
//   |log Z^ - log Z| <= 3 se + (3 se)^2        (99.7 %, the "stated error"; the square
// covers log(1 + d) for d down to -3 se < -0.3). All seeds are fixed: each check is one
// deterministic draw, not a flaky one.
// The absolute bound is 0.1 nat, the accuracy the issue asks of the defaults. The schedules
// below are shorter than the default 14,500 steps; we require their stated 3 se to be below
// 0.05, so that the 99.7 % interval alone lies inside the 0.1 bound with room for the
// quadratic term, and check the error against both. A broken estimator (wrong increment,
// a transition that does not leave p_k invariant, a wrong log Z_A) is off by far more:
// dropping the H log 2 of Z_A alone moves log Z by 11 nats for H = 16.
void expect_ais_matches(const rbm::test::RunResult& r, double exact, const char* what) {
  ASSERT_EQ(r.code, 0) << r.err;
  const double est = json(r, "log_z"), se = json(r, "log_z_stderr");
  SCOPED_TRACE(what);
  std::printf("AIS %s: log Z^ = %.5f, exact %.5f, error %+.5f, 3 se %.5f, ESS %.1f\n", what, est,
              exact, est - exact, 3 * se, json(r, "ess"));
  EXPECT_LT(3 * se, 0.05) << "the schedule is too short for the 0.1 nat bound";
  EXPECT_LE(std::abs(est - exact), 3 * se + 9 * se * se) << "outside its stated error";
  EXPECT_LE(std::abs(est - exact), 0.1);
}

// The enumeration the other tests rely on, checked against the definition itself: an
// 8 x 5 RBM has 2^13 joint states, few enough to sum exp(-E(v, h)) over all of them.
// Both sums have 2^13 resp. 2^5 positive double terms: they agree to ~1e-15 relative;
// 1e-12 absolute on log Z ~ 10 still catches any wrong term. The program's own
// enumeration (reported when min(V, H) <= --exact-max) sums in another order: same bound.
TEST(EvalExact, TinyRbmEnumerationAgreesWithJointSum) {
  TempDir tmp;
  const Rbm m = random_rbm(8, 5, 1.0, 0.0, 1.0, 1.0, 11);
  const double joint = log_z_joint(m);
  const std::vector<double> lw = hidden_log_weights(m);
  EXPECT_NEAR(log_sum_exp(lw), joint, 1e-12);
  write_model(tmp / "m.h5", m);
  write_data(tmp / "d.h5", 2, 4, exact_samples(m, lw, 200, 1), exact_samples(m, lw, 50, 2));
  auto r = eval("loglik " + (tmp / "m.h5") + " " + (tmp / "d.h5") +
                " --runs 200 --betas 1000 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NEAR(json(r, "log_z_exact"), joint, 1e-12);
  expect_ais_matches(r, joint, "8 x 5");
}

// 784 x 16, weights N(0, 0.3^2): a_j = c_j + W_j'v has a spread of ~5 over images, so
// p(v) is a mixture of many sharply different components. Exact log Z sums the 2^16
// hidden states. The mean log-probability must be -mean F(v) - log Z^ with F computed
// here in double (the program computes F in double too: 1e-9 covers ~1e3 terms of ~1e2
// at relative 1e-16, summed in another order).
TEST(EvalAis, Rbm784x16MatchesExactLogZ) {
  TempDir tmp;
  const Rbm m = random_rbm(784, 16, 0.3, -1.0, 1.0, 1.0, 5);
  const std::vector<double> lw = hidden_log_weights(m);
  const double exact = log_sum_exp(lw);
  const Split train = exact_samples(m, lw, 500, 3), test = exact_samples(m, lw, 100, 4);
  write_model(tmp / "m.h5", m);
  write_data(tmp / "d.h5", 28, 28, train, test);
  auto r = eval("loglik " + (tmp / "m.h5") + " " + (tmp / "d.h5") +
                " --runs 100 --betas 4000 --json");
  expect_ais_matches(r, exact, "784 x 16");
  // The program's own enumeration: blocks of 4096 states through a double GEMM.
  EXPECT_NEAR(json(r, "log_z_exact"), exact, 1e-9 * std::abs(exact));
  double fsum = 0;
  for (size_t k = 0; k < test.n(); ++k) fsum += free_energy(m, threshold(test, k, m.V));
  EXPECT_NEAR(json(r, "mean_free_energy"), fsum / static_cast<double>(test.n()), 1e-9 * 1e3);
  EXPECT_NEAR(json(r, "mean_loglik"), -fsum / static_cast<double>(test.n()) - json(r, "log_z"),
              1e-9 * 1e3);
  EXPECT_EQ(json(r, "images"), 100);
  EXPECT_EQ(json(r, "runs"), 100);
  EXPECT_EQ(json(r, "betas"), 4000);
}

// 20 x 12 with LARGE weights N(0, 1.5^2): strongly multimodal, Gibbs sampling mixes slowly
// near beta = 1, the regime where AIS can underestimate. Exact log Z over 2^12 hidden states.
TEST(EvalAis, Rbm20x12LargeWeightsMatchesExactLogZ) {
  TempDir tmp;
  const Rbm m = random_rbm(20, 12, 1.5, 0.0, 1.0, 1.0, 3);
  const std::vector<double> lw = hidden_log_weights(m);
  const double exact = log_sum_exp(lw);
  write_model(tmp / "m.h5", m);
  write_data(tmp / "d.h5", 4, 5, exact_samples(m, lw, 500, 1), exact_samples(m, lw, 100, 2));
  auto r = eval("loglik " + (tmp / "m.h5") + " " + (tmp / "d.h5") +
                " --runs 1000 --betas 4000 --json");
  expect_ais_matches(r, exact, "20 x 12, weights N(0, 1.5^2)");
  EXPECT_NEAR(json(r, "log_z_exact"), exact, 1e-12 * 1e3);
}

// The same AIS under `mpirun -np 2`: runs are advanced in groups of at most 50 and ranks
// take whole groups (eval.hpp), so every run is computed with the same matrix shapes and
// random numbers (indexed by global run id) on 1 or 2 ranks, and rank 0 combines the
// weights in global run order: log Z must be BITWISE equal. The mean free energy is a
// sum of per-image doubles added in another order (each rank sums its shard, then
// MPI_Allreduce): it may differ by n eps sum|F| / n = 100 * 2^-53 * |F| < 1e-12 |F|.
TEST(EvalAis, TwoRanksGiveTheSameLogZAsOne) {
  TempDir tmp;
  const Rbm m = random_rbm(784, 16, 0.3, -1.0, 1.0, 1.0, 5);
  write_model(tmp / "m.h5", m);
  write_data(tmp / "d.h5", 28, 28, random_images(100, 784, 3), random_images(100, 784, 4));
  const std::string args = "loglik " + (tmp / "m.h5") + " " + (tmp / "d.h5") +
                           " --runs 120 --betas 300 --binarize stochastic --json";
  auto one = eval(args), two = eval(args, 2);
  ASSERT_EQ(one.code, 0) << one.err;
  ASSERT_EQ(two.code, 0) << two.err;
  EXPECT_EQ(json(one, "ranks"), 1);
  EXPECT_EQ(json(two, "ranks"), 2);
  EXPECT_EQ(json(one, "log_z"), json(two, "log_z"));
  EXPECT_EQ(json(one, "log_z_stderr"), json(two, "log_z_stderr"));
  const double f1 = json(one, "mean_free_energy"), f2 = json(two, "mean_free_energy");
  EXPECT_NEAR(f1, f2, 1e-12 * std::abs(f1));
  EXPECT_NEAR(json(one, "mean_loglik"), json(two, "mean_loglik"), 1e-12 * std::abs(f1) + 1e-12);
}

// ---- pseudo-likelihood, reconstruction, free-energy gap -----------------------------------
//
// Reference: loops in double. The flipped pixel of image k is the documented one,
// floor(r V / 2^32) with r the first word of Philox(seed; Stream::eval, kSubPlFlip, 0, k).
// The program computes a = c + W'v as a float GEMM (the rest in double), so its PL differs
// by at most V sum_j |dF/da_j| |da_j| with |dF/da_j| = |sigmoid(a_j + W_ij d) - sigmoid(a_j)|
// <= min(1, |W_ij|/4) and |da_j| <= gamma(V + 1) (|c_j| + sum_i |W_ij v_i|) — computed per
// image below. The reconstruction draws h_j = [u_j < p(h_j | v)] with the documented
// uniforms (kSubRecon); p(v | h) is a float GEMM + logistic: per pixel |dp| <= (1/4)
// gamma(H + 1)(|b_i| + sum_j |W_ij|) + 4u, so |d(v - p)^2| <= 2 |dp|.
TEST(EvalPseudo, MatchesDirectComputation) {
  TempDir tmp;
  const size_t V = 20, H = 12;
  const Rbm m = random_rbm(V, H, 1.0, 0.0, 1.0, 1.0, 21);
  const Split train = random_images(40, V, 5), test = random_images(30, V, 6);
  write_model(tmp / "m.h5", m);
  write_data(tmp / "d.h5", 4, 5, train, test);
  const uint64_t seed = 77;
  // Three flipped-pixel draws per image (draw 0 with --seed, draw d with seed + golden * d):
  // the reported value is the mean over images of each image's mean over its draws.
  auto r = eval("pseudo " + (tmp / "m.h5") + " " + (tmp / "d.h5") + " --seed 77 --draws 3 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(count_lines(r.out, "pseudo: "), 1u) << r.out;

  const rbm::CounterRng rng(seed);
  const size_t D = 3;
  double pl = 0, pl2 = 0, pl_tol = 0, rsq = 0, rsq_tol = 0, f_test = 0, f_train = 0;
  for (size_t k = 0; k < test.n(); ++k) {
    const std::vector<double> v = threshold(test, k, V);
    double mag_max = 0;  // max_j (|c_j| + sum_q |W_qj v_q|), for the tolerance
    for (size_t j = 0; j < H; ++j) {
      double mag = std::abs(m.c[j]);
      for (size_t q = 0; q < V; ++q) mag += std::abs(m.w(q, j) * v[q]);
      mag_max = std::max(mag_max, mag);
    }
    double image_pl = 0;
    for (size_t d = 0; d < D; ++d) {
      const rbm::CounterRng draw(seed + 0x9e3779b97f4a7c15ull * d);
      const uint32_t word = draw.bits(rbm::Stream::eval, rbm::eval::kSubPlFlip, 0, k, 0)[0];
      const size_t i = static_cast<size_t>((uint64_t{word} * V) >> 32);
      std::vector<double> flipped = v;
      flipped[i] = 1.0 - v[i];
      const double dF = free_energy(m, flipped) - free_energy(m, v);
      image_pl += static_cast<double>(V) * -softplus(-dF) / D;  // V log sigmoid(dF)
      for (size_t j = 0; j < H; ++j)
        pl_tol += static_cast<double>(V) * std::min(1.0, std::abs(m.w(i, j)) / 4) *
                  gamma(V + 1) * mag_max / D;
    }
    pl += image_pl;
    pl2 += image_pl * image_pl;
    std::vector<float> u(H);
    rng.uniforms(rbm::Stream::eval, rbm::eval::kSubRecon, 0, k, u.data(), H);
    std::vector<double> h(H);
    for (size_t j = 0; j < H; ++j) {
      double a = m.c[j];
      for (size_t q = 0; q < V; ++q) a += m.w(q, j) * v[q];
      h[j] = u[j] < sigmoid(a) ? 1.0 : 0.0;
    }
    for (size_t q = 0; q < V; ++q) {
      double a = m.b[q], mag = std::abs(m.b[q]);
      for (size_t j = 0; j < H; ++j) {
        a += m.w(q, j) * h[j];
        mag += std::abs(m.w(q, j));
      }
      rsq += (v[q] - sigmoid(a)) * (v[q] - sigmoid(a));
      rsq_tol += 2 * (0.25 * gamma(H + 1) * mag + 4 * kU);
    }
    f_test += free_energy(m, v);
    f_train += free_energy(m, threshold(train, k, V));  // gap: 30 = min(30, 40) images each
  }
  const double n = static_cast<double>(test.n());
  std::printf("PL %.9f (tolerance %.2e), recon MSE %.9f (tolerance %.2e)\n", pl / n, pl_tol / n,
              rsq / (n * V), rsq_tol / (n * V));
  EXPECT_NEAR(json(r, "pseudo_loglik"), pl / n, pl_tol / n + 1e-12);
  const double se = std::sqrt((pl2 - n * (pl / n) * (pl / n)) / (n - 1) / n);
  EXPECT_NEAR(json(r, "pseudo_loglik_stderr"), se, 1e-6 * se + pl_tol / n);
  EXPECT_EQ(json(r, "draws"), 3);
  EXPECT_NEAR(json(r, "recon_mse"), rsq / (n * V), rsq_tol / (n * V) + 1e-12);
  EXPECT_EQ(json(r, "gap_images"), 30);
  EXPECT_NEAR(json(r, "free_energy_split"), f_test / n, 1e-10);
  EXPECT_NEAR(json(r, "free_energy_train"), f_train / n, 1e-10);
  EXPECT_NEAR(json(r, "free_energy_gap"), (f_test - f_train) / n, 2e-10);
}

