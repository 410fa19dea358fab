// Parallel tempering (rbm/pt.hpp, rbm_dist --pt): the swap rule and the stationary
// distribution against exact enumeration of a tiny RBM; end to end under real mpirun:
// rank-count invariance, bitwise resume after a stop signal (swap rates included), and
// bad values / a resume with another ladder refused in one line.
#include <cmath>
#include <random>

#include "rbm/gemm_bf16.hpp"
#include "rbm/pt.hpp"
#include "trainer_util.hpp"

using namespace trainertest;

namespace {

// A tiny RBM with strong random parameters (so the temperatures differ a lot and a
// wrong swap rule shows): W ~ N(0, 1.5^2), b, c ~ N(0, 1).
struct Tiny {
  static constexpr size_t V = 5, H = 3, S = size_t{1} << V;
  ParamBuffer pb{V, H};
  Tiny() {
    std::mt19937_64 gen(11);
    std::normal_distribution<double> w(0.0, 1.5), n(0.0, 1.0);
    for (size_t i = 0; i < V; ++i)
      for (size_t j = 0; j < H; ++j) pb.view.W(i, j) = static_cast<float>(w(gen));
    for (size_t i = 0; i < V; ++i) pb.view.b(i) = static_cast<float>(n(gen));
    for (size_t j = 0; j < H; ++j) pb.view.c(j) = static_cast<float>(n(gen));
  }
  static double bit(size_t s, size_t i) { return static_cast<double>((s >> i) & 1u); }
  // log f_beta(v) = log sum_h exp(-beta E(v, h)) by enumeration of the 2^H hidden
  // states (independent of the softplus formula pt.cpp uses).
  double log_f(size_t v, double beta) const {
    const Params& p = pb.view;
    double sum = 0;
    for (size_t h = 0; h < (size_t{1} << H); ++h) {
      double negE = 0;
      for (size_t i = 0; i < V; ++i) negE += p.b(i) * bit(v, i);
      for (size_t j = 0; j < H; ++j) negE += p.c(j) * bit(h, j);
      for (size_t i = 0; i < V; ++i)
        for (size_t j = 0; j < H; ++j) negE += bit(v, i) * p.W(i, j) * bit(h, j);
      sum += std::exp(beta * negE);
    }
    return std::log(sum);
  }
  // Exact p_beta(v) over the 2^V visible states.
  std::vector<double> marginal(double beta) const {
    std::vector<double> p(S);
    double z = 0;
    for (size_t v = 0; v < S; ++v) z += p[v] = std::exp(log_f(v, beta));
    for (double& x : p) x /= z;
    return p;
  }
};

// Replicas [V, K*C] with every column an independent exact draw from p_{beta_r}
// (std::discrete_distribution: another generator than the sampler's Philox).
Matrix exact_replicas(const Tiny& t, const std::vector<float>& beta, Eigen::Index C,
                      unsigned seed) {
  const auto K = static_cast<Eigen::Index>(beta.size());
  Matrix R(Tiny::V, K * C);
  std::mt19937_64 gen(seed);
  for (Eigen::Index r = 0; r < K; ++r) {
    const std::vector<double> p = t.marginal(beta[static_cast<size_t>(r)]);
    std::discrete_distribution<size_t> d(p.begin(), p.end());
    for (Eigen::Index m = 0; m < C; ++m) {
      const size_t s = d(gen);
      for (size_t i = 0; i < Tiny::V; ++i) R(static_cast<Eigen::Index>(i), r * C + m) = static_cast<float>(Tiny::bit(s, i));
    }
  }
  return R;
}

size_t state_of(const Matrix& R, Eigen::Index col) {
  size_t s = 0;
  for (Eigen::Index i = 0; i < R.rows(); ++i) s |= static_cast<size_t>(R(i, col) > 0.5f) << i;
  return s;
}

}  // namespace

// ---------------------------------------------------------------------------
// 1. The swap rule: with (x, y) ~ p_{beta_r} x p_{beta_{r+1}} exactly, the probability
//    that pt_update accepts the exchange is E[min(1, f_r(y) f_{r+1}(x) / (f_r(x) f_{r+1}(y)))].
// ---------------------------------------------------------------------------
TEST(PtSampler, SwapAcceptanceMatchesExactEnumeration) {
  Tiny t;
  const int K = 4;
  std::vector<float> beta;
  for (double b : pt_betas(K, 0.2)) beta.push_back(static_cast<float>(b));
  EXPECT_FLOAT_EQ(beta[0], 1.0f);
  EXPECT_FLOAT_EQ(beta[K - 1], 0.2f);
  for (int r = 0; r + 2 < K; ++r)  // geometric: equal ratios
    EXPECT_NEAR(beta[r + 1] / beta[r], beta[r + 2] / beta[r + 1], 1e-6);
  const Eigen::Index C = 20000;
  std::vector<uint64_t> ids(C);
  for (Eigen::Index m = 0; m < C; ++m) ids[m] = static_cast<uint64_t>(m);
  const CounterRng rng(7);
  PtWorkspace ws;
  // Steps 0 and 1 propose the even pairs (0,1), (2,3) and the odd pair (1,2) (DEO).
  std::vector<double> rate(K - 1, -1);
  for (uint64_t step : {0, 1}) {
    Matrix R = exact_replicas(t, beta, C, 100 + static_cast<unsigned>(step));
    std::vector<float> acc(K - 1, 0.0f);
    pt_update(t.pb.view, beta, 1, step, C, ids.data(), rng, R, ws, acc.data());
    for (int r = 0; r + 1 < K; ++r) {
      EXPECT_EQ(pt_pair_attempted(step, r), (r % 2) == static_cast<int>(step));
      if (pt_pair_attempted(step, r)) rate[r] = acc[r] / static_cast<double>(C);
      else EXPECT_EQ(acc[r], 0.0f) << "pair " << r << " is not proposed at step " << step;
    }
  }
  for (int r = 0; r + 1 < K; ++r) {
    const double bx = beta[r], by = beta[r + 1];
    const std::vector<double> px = t.marginal(bx), py = t.marginal(by);
    double expect = 0;
    for (size_t x = 0; x < Tiny::S; ++x)
      for (size_t y = 0; y < Tiny::S; ++y)
        expect += px[x] * py[y] *
                  std::min(1.0, std::exp(t.log_f(y, bx) + t.log_f(x, by) - t.log_f(x, bx) -
                                         t.log_f(y, by)));
    // The C chains use distinct uniforms and independent exact states: the accepted
    // count is Binomial(C, expect). 5 standard errors (<= 5 * 0.5 / sqrt(20000) = 0.018):
    // a false failure has probability < 6e-7 per pair. (The float betas are used on
    // both sides; float log-marginals move the rate by ~1e-6.)
    const double se = std::sqrt(expect * (1 - expect) / static_cast<double>(C));
    EXPECT_NEAR(rate[r], expect, 5 * se + 1e-6) << "pair (" << r << ", " << r + 1 << ")";
    EXPECT_GT(expect, 0.05);  // the test has teeth: swaps do happen ...
    EXPECT_LT(expect, 0.95);  // ... and are refused too
  }
}

// ---------------------------------------------------------------------------
// 2. The stationary distribution: PT leaves the product of the tempered marginals
//    invariant, so chains started from exact draws are still exact after T updates.
// ---------------------------------------------------------------------------
TEST(PtSampler, ReplicasKeepTheExactTemperedMarginals) {
  Tiny t;
  const int K = 4;
  std::vector<float> beta;
  for (double b : pt_betas(K, 0.2)) beta.push_back(static_cast<float>(b));
  const Eigen::Index C = 20000;
  std::vector<uint64_t> ids(C);
  for (Eigen::Index m = 0; m < C; ++m) ids[m] = static_cast<uint64_t>(m);
  const CounterRng rng(8);
  PtWorkspace ws;
  const double eps = std::sqrt(2 * (Tiny::S * std::log(2.0) + std::log(1e6)) / static_cast<double>(C));
  // sweeps = 1: the trainer's kernel. sweeps = 0: swaps alone, which must keep the
  // product distribution by themselves (one Gibbs sweep of this tiny RBM mixes so
  // fast that it would hide a wrong swap rule: checked by breaking the rule).
  for (int sweeps : {1, 0}) {
  SCOPED_TRACE(sweeps);
  Matrix R = exact_replicas(t, beta, C, 200 + static_cast<unsigned>(sweeps));
  const Matrix R0 = R;
  std::vector<float> acc(K - 1, 0.0f);
  for (uint64_t step = 0; step < 20; ++step)
    pt_update(t.pb.view, beta, sweeps, step, C, ids.data(), rng, R, ws, acc.data());
  for (int r = 0; r + 1 < K; ++r) EXPECT_GT(acc[r], 0.05 * 10 * C) << "pair " << r;
  // The states moved (so the check below is not trivially true of a frozen sampler).
  Eigen::Index moved = 0;
  for (Eigen::Index m = 0; m < C; ++m) moved += state_of(R, m) != state_of(R0, m);
  EXPECT_GT(moved, C / 4);
  // Chains are independent (distinct uniforms, independent starts): each block's C final
  // states are i.i.d. from p_beta if the kernel is right. Bretagnolle-Huber-Carol:
  // P(||p_hat - p||_1 >= eps) <= 2^S exp(-C eps^2 / 2); S = 32 cells, probability
  // 1e-6: eps = sqrt(2 (32 ln 2 + ln 1e6) / 20000) = 0.060.
  for (int r : {0, K - 1}) {
    const std::vector<double> p = t.marginal(beta[r]);
    std::vector<double> hat(Tiny::S, 0.0);
    for (Eigen::Index m = 0; m < C; ++m) hat[state_of(R, r * C + m)] += 1.0 / static_cast<double>(C);
    double l1 = 0;
    for (size_t s = 0; s < Tiny::S; ++s) l1 += std::abs(hat[s] - p[s]);
    EXPECT_LT(l1, eps) << "replica at beta " << beta[r];
  }
  }
  // The temperatures differ by far more than eps (the check can tell them apart).
  const std::vector<double> p1 = t.marginal(beta[0]), pk = t.marginal(beta[K - 1]);
  double d = 0;
  for (size_t s = 0; s < Tiny::S; ++s) d += std::abs(p1[s] - pk[s]);
  EXPECT_GT(d, 4 * eps);
}

// ---------------------------------------------------------------------------
// 3. rbm_dist --pt: the same model on 1 and 3 ranks.
// ---------------------------------------------------------------------------
namespace {
std::string swap_rates(const std::string& metrics_file) {
  std::string all, text = read_file(metrics_file);
  std::regex re("\"pt_swap_rates\": \\[[^\\]]*\\]");
  for (std::sregex_iterator it(text.begin(), text.end(), re), end; it != end; ++it)
    all += it->str() + "\n";
  return all;
}
}  // namespace

class PtRankInvariance : public ::testing::TestWithParam<std::string> {};

TEST_P(PtRankInvariance, OneAndThreeRanksGiveTheSameWeightsAndSwapRates) {
  const bool bf16 = GetParam().find("bf16") != std::string::npos;
  if (bf16 && !bf16::cpu_has_native_bf16())
    GTEST_SKIP() << "CPU without native bf16 (AVX512_BF16 / AMX-BF16): --precision bf16 refused";
  TempDir tmp;
  const std::string data = tmp / "bars.h5";
  write_bars(data, 1001, 0);
  const std::string common = " --data " + data + " --hidden 24 --epochs 2 --batch-size 96" +
                             " --seed 5 --pt 4 --pt-min-beta 0.3 --chains 16 " + GetParam();
  auto run_np = [&](int np) {
    const std::string out = tmp / ("np" + std::to_string(np) + ".h5");
    const std::string met = tmp / ("np" + std::to_string(np) + ".jsonl");
    RunResult r = run(rbm_dist(np, common + " --checkpoint " + out + " --metrics " + met), 120);
    EXPECT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("| swap min "), std::string::npos) << r.out;
    return std::pair{params_of(out), swap_rates(met)};
  };
  const auto [ref, ref_rates] = run_np(1);
  const auto [got, rates] = run_np(3);
  // Tolerance: the argument of RankInvariance in test_trainer.cpp (only the order of
  // float sums differs with the rank count: 1e-5 for fp32, 4e-4 for bf16). The tempered
  // sweeps add K = 4 times the chain draws and 16 swap decisions per step, each of which
  // could flip only if its uniform fell within ~1e-7 of its threshold: ~0.1 expected
  // flips per run, and a flip would be far above the tolerance (and show in the rates).
  const double tol = bf16 ? 4e-4 : 1e-5;
  ASSERT_EQ(got.size(), ref.size());
  double maxdiff = 0;
  for (size_t k = 0; k < ref.size(); ++k) maxdiff = std::max<double>(maxdiff, std::abs(got[k] - ref[k]));
  EXPECT_LE(maxdiff, tol);
  // The swap counts are sums of integers over the ranks: exactly the same rates.
  EXPECT_EQ(rates, ref_rates);
  EXPECT_EQ(count_lines_starting(ref_rates, "\"pt_swap_rates\": ["), 2) << ref_rates;
}

INSTANTIATE_TEST_SUITE_P(Modes, PtRankInvariance,
                         ::testing::Values("--cd-k 1", "--cd-k 2 --precision bf16"),
                         [](const ::testing::TestParamInfo<std::string>& p) {
                           return std::string(p.index == 0 ? "Pt" : "PtCd2Bf16");
                         });

// ---------------------------------------------------------------------------
// 4. Bitwise resume: stopped mid-epoch by SIGUSR1, resumed == straight run (weights
//    and every epoch's swap rates, so the replicas and the counters were restored).
// ---------------------------------------------------------------------------
TEST(PtResume, StopSignalThenResumeIsBitwiseTheStraightRun) {
  TempDir tmp;
  const std::string data = tmp / "bars.h5";
  write_bars(data, 3000, 0);
  const std::string args = " --data " + data +
                           " --hidden 32 --epochs 40 --batch-size 20 --seed 4 --pt 5 --chains 20";
  const std::string full = tmp / "full.h5", full_m = tmp / "full.jsonl";
  RunResult f = run(rbm_dist(2, args + " --checkpoint " + full + " --metrics " + full_m), 300);
  ASSERT_EQ(f.code, 0) << f.err;
  const std::string ck = tmp / "stopped.h5", ck_m = tmp / "stopped.jsonl";
  Background job(rbm_dist(2, args + " --checkpoint " + ck + " --metrics " + ck_m));
  ASSERT_TRUE(wait_for_file(ck, 60));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(kill_processes("^" + bin("rbm_dist") + " .*stopped.h5", SIGUSR1), 2);
  EXPECT_EQ(job.wait(30), exit_code::preempted);
  TrainState st = read_train_state(ck, 64, 32);
  ASSERT_LT(st.step, 40u * 150u) << "the run finished before the signal: make it longer";
  EXPECT_NE(st.step % st.steps_per_epoch, 0u) << "expected a mid-epoch checkpoint";
  EXPECT_EQ(st.pt_chains.size(), 5u * 20u * 64u);
  EXPECT_EQ(st.pt_betas.size(), 5u);
  // The beta = 1 block of /train/pt_chains is /train/chains.
  EXPECT_TRUE(std::equal(st.chains.begin(), st.chains.end(), st.pt_chains.begin()));
  RunResult r = run(rbm_dist(2, "--data " + data + " --resume " + ck), 300);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(params_of(ck), params_of(full)) << "resumed from step " << st.step;
  EXPECT_EQ(swap_rates(ck_m), swap_rates(full_m));
  EXPECT_EQ(count_lines_starting(swap_rates(full_m), "\"pt_swap_rates\": ["), 40);

  // A resume must keep the ladder: another --pt or --pt-min-beta is one line, exit 2.
  for (const std::string& other : {" --pt 4", " --pt-min-beta 0.5", " --pt 0 --pcd"}) {
    RunResult bad = run(rbm_dist(2, "--data " + data + " --resume " + ck + " --epochs 41" + other), 60);
    EXPECT_EQ(bad.code, exit_code::usage) << other << "\n" << bad.err;
    EXPECT_EQ(count_lines_starting(bad.err, "rbm_dist:"), 1) << other << "\n" << bad.err;
  }
}

// ---------------------------------------------------------------------------
// 5. Bad values: one line from rank 0 naming the flag, exit 2.
// ---------------------------------------------------------------------------
TEST(PtErrors, BadValuesOneLineExit2) {
  TempDir tmp;
  const std::string data = tmp / "bars.h5";
  write_bars(data, 100, 0);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {" --pt 1", "--pt 1"},
      {" --pt 65", "--pt 65"},
      {" --pt 10 --pt-min-beta 0", "--pt-min-beta 0"},
      {" --pt 10 --pt-min-beta 1.5", "--pt-min-beta 1.5"},
      {" --pt 10 --pt-min-beta 1", "--pt-min-beta 1"},
  };
  for (const auto& [args, needle] : cases) {
    RunResult r = run(rbm_dist(2, "--data " + data + args + " --checkpoint " + tmp / "m.h5"), 60);
    EXPECT_EQ(r.code, exit_code::usage) << args << "\n" << r.err;
    EXPECT_EQ(count_lines_starting(r.err, "rbm_dist:"), 1) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << args << "\n" << r.err;
    EXPECT_FALSE(fs::exists(tmp / "m.h5"));
  }
}
