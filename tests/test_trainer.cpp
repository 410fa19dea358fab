// rbm_dist end to end, under real mpirun: rank-count invariance, exact resume after
// SIGKILL and after the stop signal, atomic checkpoints, the error policy (one line
// from rank 0, exit 2; a failure on one rank ends the job), the consistency check,
// divergence, --help/--config, and a loss that falls on real data.
#include "trainer_util.hpp"

#include "rbm/gemm_bf16.hpp"

using namespace trainertest;

// ---------------------------------------------------------------------------
// 1. The distributed gradient is the serial gradient.
// ---------------------------------------------------------------------------
class RankInvariance : public ::testing::TestWithParam<std::string> {};

TEST_P(RankInvariance, OneToEightRanksGiveTheSameWeightsWithDefaultShuffle) {
  const bool bf16 = GetParam().find("bf16") != std::string::npos;
  if (bf16 && !bf16::cpu_has_native_bf16())
    GTEST_SKIP() << "CPU without native bf16 (AVX512_BF16 / AMX-BF16): --precision bf16 refused";
  TempDir tmp;
  const std::string data = tmp / "bars.h5";
  // 1001 rows (7 x 11 x 13): divisible neither by 2, 3, 4, 8 ranks nor by the batch of 96;
  // 10 steps of 96 per epoch (default --drop-last on: the last 41 positions of each
  // epoch's order are left out); 2 epochs, so the reshuffle is exercised.
  // DEFAULT options otherwise: --shuffle epoch, --shards 720 (1-2 rows per shard here).
  write_bars(data, 1001, 0);
  const std::string common = " --data " + data + " --hidden 24 --epochs 2 --batch-size 96" +
                             " --seed 5 " + GetParam();
  auto run_np = [&](int np, const std::string& extra) {
    const std::string out = tmp / ("np" + std::to_string(np) + (extra.empty() ? "" : "-private") + ".h5");
    RunResult r = run(rbm_dist(np, common + extra + " --checkpoint " + out), 120);
    EXPECT_EQ(r.code, 0) << r.out << r.err;
    return params_of(out);
  };
  const std::vector<float> ref = run_np(1, "");
  // Tolerance. The batches (which rows, with which random draws) do not depend on the
  // rank count (shard.hpp), only the order of the floating-point sums does. Each
  // gradient entry is a sum of at most Bg = 96 terms in [-1, 1], divided by 96;
  // summing per-rank partial sums in another order changes it by at most
  // ~96 * 2^-24 / 96 ~ 6e-8 per step. The update multiplies by lr = 0.1 and momentum
  // 0.5 at most doubles it; after T = 22 steps the parameters differ by about
  // 22 * 0.1 * 2 * 6e-8 ~ 2.6e-7, plus what the sigmoids propagate (|W| < 1: a factor
  // of a few). 1e-5 leaves a 10x margin. A Bernoulli draw flips only if u falls within
  // ~1e-7 of p: ~22 x 96 x 88 x 2 ~ 370,000 draws x 1e-7 ~ 0.04 expected flips (most
  // early, when the parameters still agree to the last bit), and a flip would show as
  // an error of ~lr/Bg = 1e-3, far above the tolerance. Before the virtual shards, the
  // default shuffle keyed on the rank: 1 vs 3 ranks differed by 0.035.
  // bf16 (product inputs rounded to bf16, fp32 accumulation) adds one effect that
  // fp32 does not have: the per-rank products sum in another order, so a probability
  // p(h_j|v) can differ in its last fp32 bit between two runs, and if it lies that
  // close to a bf16 rounding boundary, its bf16 input to the statistics product
  // differs by one bf16 step (<= 2^-7 relative: 8 significant bits). Chance per
  // rounding ~2^-23 / 2^-8 = 2^-15; (B + N) H <= 192 x 24 of them per step, 22 steps:
  // ~3 such events per run (the bf16 weight copy adds a few more, ~|w| smaller). One
  // event moves column j of dW by x_i 2^-7 p / min(Bg, Cg) <= 2^-7 / 16, the
  // parameters by lr times that, doubled at most by the momentum (mu = 0.5):
  // 2 * 0.1 * 2^-7 / 16 = 9.8e-5 — measured 9.7e-5 for PCD with 16 chains (one column).
  // Tolerance: 4 such events on the same parameter, 4e-4, still 8x below what one
  // flipped Bernoulli draw would cost (lr p / Cg ~ 3e-3).
  const double tol = bf16 ? 4e-4 : 1e-5;
  for (int np : {2, 3, 4, 8}) {
    for (const std::string& extra : {std::string(""), std::string(" --node-size 1")}) {
      if (np == 8 && !extra.empty()) continue;  // 8 x private copies: slow, same path as 4
      std::vector<float> got = run_np(np, extra);
      ASSERT_EQ(got.size(), ref.size());
      double maxdiff = 0;
      size_t at = 0, over = 0;
      for (size_t k = 0; k < ref.size(); ++k) {
        const double d = std::abs(got[k] - ref[k]);
        over += d > tol;
        if (d > maxdiff) maxdiff = d, at = k;
      }
      EXPECT_LE(maxdiff, tol) << np << " ranks" << extra << ": at parameter " << at << " of "
                               << ref.size() << " (" << ref[at] << " vs " << got[at] << "), "
                               << over << " parameters over the tolerance";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, RankInvariance,
                         ::testing::Values("--cd-k 1", "--pcd --chains 16",
                                           "--cd-k 3 --binarize stochastic",
                                           "--cd-k 1 --shards 10",
                                           "--cd-k 1 --precision bf16",
                                           "--pcd --chains 16 --precision bf16"),
                         [](const ::testing::TestParamInfo<std::string>& p) {
                           return std::string(p.index == 0   ? "Cd1"
                                              : p.index == 1 ? "Pcd"
                                              : p.index == 2 ? "Cd3Stochastic"
                                              : p.index == 3 ? "Cd1TenShards"  // 3, 4, 8 do not divide 10
                                              : p.index == 4 ? "Cd1Bf16"
                                                             : "PcdBf16");
                         });

// ---------------------------------------------------------------------------
// 2. Exact resume: killed runs continue to bitwise the same weights.
// ---------------------------------------------------------------------------
namespace {
struct ResumeCase {
  std::string data, args;
  int np;
};
std::string full_run(const TempDir& tmp, const ResumeCase& c) {
  const std::string out = tmp / "full.h5";
  RunResult r = run(rbm_dist(c.np, "--data " + c.data + c.args + " --force --checkpoint " + out), 200);
  EXPECT_EQ(r.code, 0) << r.err;
  return out;
}
}  // namespace

TEST(Resume, AfterSigkillBitwiseEqual) {
  TempDir tmp;
  const std::string data = tmp / "bars.h5";
  write_bars(data, 3000, 0);
  std::vector<std::string> modes = {" --cd-k 2", " --pcd --chains 30"};
  // bf16: the bf16 copy of W is rebuilt from the fp32 checkpoint on resume, exactly as
  // the update pass writes it (same rounding): still bitwise.
  if (bf16::cpu_has_native_bf16()) modes.push_back(" --pcd --chains 30 --precision bf16");
  for (const std::string& mode : modes) {
    ResumeCase c{data, " --hidden 32 --epochs 60 --batch-size 20 --seed 3" + mode, 2};
    const std::vector<float> ref = params_of(full_run(tmp, c));
    const std::string ck = tmp / "killed.h5";
    fs::remove(ck);
    Background job(rbm_dist(c.np, "--data " + data + c.args + " --checkpoint " + ck));
    ASSERT_TRUE(wait_for_file(ck, 60)) << "no checkpoint appeared";
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    // A crash: mpirun puts the ranks in process groups of their own, so the ranks
    // themselves are killed too (all at once), not only mpirun's group.
    EXPECT_EQ(kill_processes("^" + bin("rbm_dist") + " .*killed.h5", SIGKILL), c.np);
    job.signal_group(SIGKILL);
    job.wait(10);
    TrainState st = read_train_state(ck, 64, 32);
    ASSERT_LT(st.step, 60u * 150u) << "the run finished before it was killed: make it longer";
    RunResult r = run(rbm_dist(c.np, "--data " + data + " --resume " + ck), 200);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(params_of(ck), ref) << "resumed from step " << st.step << mode;
  }
}

TEST(Resume, StopSignalCheckpointsExits75AndResumesBitwise) {
  TempDir tmp;
  const std::string data = tmp / "bars.h5";
  write_bars(data, 3000, 0);
  for (int sig : {SIGUSR1, SIGTERM}) {
    ResumeCase c{data, " --hidden 32 --epochs 60 --batch-size 20 --seed 4 --pcd --chains 20", 2};
    const std::vector<float> ref = params_of(full_run(tmp, c));
    const std::string ck = tmp / "stopped.h5";
    fs::remove(ck);
    // The ranks themselves get the signal, as Slurm delivers it to a job step
    // (mpirun forwards SIGUSR1 too; see the Slurm tests).
    Background job(rbm_dist(c.np, "--data " + data + c.args + " --checkpoint " + ck));
    ASSERT_TRUE(wait_for_file(ck, 60));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    RunResult pids = run("pgrep -f '^" + bin("rbm_dist") + " .*stopped.h5'", 10);
    std::istringstream in(pids.out);
    int n = 0;
    for (std::string p; in >> p; ++n) kill(std::stoi(p), sig);
    ASSERT_EQ(n, c.np) << "expected " << c.np << " rank processes";
    const auto t0 = std::chrono::steady_clock::now();
    const int code = job.wait(30);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(code, exit_code::preempted) << "signal " << sig;
    EXPECT_LT(secs, 10.0) << "the ranks took too long to agree and stop";
    TrainState st = read_train_state(ck, 64, 32);
    EXPECT_NE(st.step % st.steps_per_epoch, 0u) << "expected a mid-epoch checkpoint";
    RunResult r = run(rbm_dist(c.np, "--data " + data + " --resume " + ck), 200);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(params_of(ck), ref) << "resumed from step " << st.step;
  }
}

// ---------------------------------------------------------------------------
// 3. Atomic checkpoints: a kill at any moment leaves no or a complete checkpoint.
// ---------------------------------------------------------------------------
TEST(Checkpoint, KilledAtRandomMomentsNeverHalfWritten) {
  TempDir tmp;
  const std::string data = tmp / "big.h5";
  write_bars(data, 400, 0, 28);  // 784 pixels: each checkpoint is ~3 MB
  const std::string ck = tmp / "model.h5";
  std::mt19937 gen(7);
  std::uniform_int_distribution<int> delay_ms(0, 120);  // a few epochs, each one a write
  int seen_complete = 0;
  for (int round = 0; round < 15; ++round) {
    fs::remove(ck);
    Background job(rbm_dist(0, "--data " + data + " --hidden 400 --batch-size 40 --epochs 100000"
                                  " --checkpoint-every 1 --checkpoint " + ck));
    // Kill at a random moment among the next checkpoint writes (each epoch writes one).
    if (wait_for_file(ck, 60))
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(gen)));
    job.signal_group(SIGKILL);
    job.wait(10);
    ASSERT_TRUE(fs::exists(ck)) << "the rename must never remove the old checkpoint";
    ParamBuffer m = read_model(ck);  // throws on a truncated or corrupt file
    EXPECT_EQ(m.V(), 784u);
    EXPECT_EQ(m.H(), 400u);
    TrainState st = read_train_state(ck, 784, 400);
    EXPECT_EQ(st.step % 10, 0u) << "epoch checkpoints only";
    ++seen_complete;
  }
  EXPECT_EQ(seen_complete, 15);
}

// ---------------------------------------------------------------------------
// 4. Errors: one line from rank 0, exit 2; a failure on one rank ends the job.
// ---------------------------------------------------------------------------
TEST(Errors, BadFlagsOneLineFromRankZeroExit2) {
  TempDir tmp;
  const std::string data = tmp / "bars.h5";
  write_bars(data, 100, 20);
  const std::string flat = tmp / "flat.h5";
  {
    std::vector<uint8_t> v(640, 1);
    h5::Id f = h5::create_file(flat);
    h5::write_array(f, "/train/images", v.data(), {640});
    h5::write_array(f, "/cube/images", v.data(), {10, 8, 8});
  }
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--data " + data + " --bogus 1", "bogus"},
      {"--data " + data + " --hidden 0", "--hidden 0"},
      {"--data " + data + " --lr -1", "--lr -1"},
      {"--data " + data + " --batch-size 1000", "--batch-size 1000"},
      {"--data " + data + " --train-path /nope", "/nope"},
      {"--data " + flat, "/train/images"},
      {"--data " + flat + " --train-path /cube/images", "/cube/images"},
      {"--data " + tmp / "missing.h5", "missing.h5"},
      {"--data " + data + " --binarize bogus", "--binarize bogus"},
      {"--data " + data + " --precision fp16", "--precision fp16"},
      {"--hidden 10", "--data"},
  };
  for (const auto& [args, needle] : cases) {
    RunResult r = run(rbm_dist(4, args + " --checkpoint " + tmp / "m.h5"), 60);
    EXPECT_EQ(r.code, exit_code::usage) << args << "\n" << r.err;
    EXPECT_EQ(count_lines_starting(r.err, "rbm_dist:"), 1) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << args << "\n" << r.err;
    EXPECT_FALSE(fs::exists(tmp / "m.h5"));
  }
}

TEST(Errors, Bf16WithoutNativeBf16IsOneLineExit2) {
  // RBM_FAKE_NO_BF16=1 (a test hook, see rbm/gemm_bf16.hpp) makes the CPU check say
  // "no native bf16", as on a CPU without AVX512_BF16 or AMX.
  TempDir tmp;
  const std::string data = tmp / "bars.h5";
  write_bars(data, 100, 0);
  const std::string ck = tmp / "m.h5";
  RunResult r = run("RBM_FAKE_NO_BF16=1 " +
                    rbm_dist(2, "--data " + data + " --precision bf16 --checkpoint " + ck), 60);
  EXPECT_EQ(r.code, exit_code::usage) << r.out << r.err;
  EXPECT_EQ(count_lines_starting(r.err, "rbm_dist:"), 1) << r.err;
  EXPECT_NE(r.err.find("--precision bf16: this CPU has no native bf16"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("use --precision fp32"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(ck));
  // fp32 still runs there, and the banner says what the CPU has and what runs.
  RunResult f = run("RBM_FAKE_NO_BF16=1 " +
                    rbm_dist(2, "--data " + data + " --epochs 1 --hidden 8 --checkpoint " + ck), 60);
  EXPECT_EQ(f.code, 0) << f.err;
  EXPECT_NE(f.out.find("precision fp32: products in fp32 (CPU bf16: none"), std::string::npos)
      << f.out;
  if (bf16::cpu_has_native_bf16()) {
    RunResult b = run(rbm_dist(2, "--data " + data + " --epochs 1 --hidden 8 --precision bf16"
                                  " --force --checkpoint " + ck), 60);
    EXPECT_EQ(b.code, 0) << b.err;
    EXPECT_NE(b.out.find("precision bf16: products in oneDNN"), std::string::npos) << b.out;
    EXPECT_NE(b.out.find("CPU bf16: " + std::string(bf16::native_bf16_name())),
              std::string::npos) << b.out;
    EXPECT_EQ(read_model(ck).H(), 8u) << "the checkpoint is the usual fp32 model";
  }
}

TEST(Errors, FailureOnOneRankEndsTheJobWithItsMessage) {
  TempDir tmp;
  const std::string good = tmp / "good.h5", bad = tmp / "bad.h5";
  write_bars(good, 4000, 0);
  fs::copy_file(good, bad);
  // Corrupt the compressed chunk bytes in the middle of the file: the metadata stay
  // readable, only reading the pixels fails — and only the rank that reads bad.h5.
  {
    std::fstream f(bad, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(0, std::ios::end);
    const auto size = static_cast<long>(f.tellg());
    for (long off = size / 4; off < size * 3 / 4; off += 97) {
      f.seekp(off);
      f.put(static_cast<char>(0xA5));
    }
  }
  // Every rank runs the same command (the ranks compare their options); rank 3 alone
  // sees the corrupt bytes at the same path, through a bind mount in its own mount
  // namespace (a stale cache on one node, say). Needs root.
  if (geteuid() != 0) GTEST_SKIP() << "needs root (a bind mount in a private mount namespace)";
  const std::string args = " --progress never --data " + good +
                           " --hidden 16 --epochs 2 --checkpoint " + tmp / "m.h5";
  RunResult r = run(mpirun(3) + bin("rbm_dist") + args + " : -np 1 unshare --mount sh -c 'mount "
                        "--make-rprivate / && mount --bind " + bad + " " + good + " && exec " +
                        bin("rbm_dist") + args + "'",
                    60);
  EXPECT_FALSE(r.timed_out) << "the job hung";
  EXPECT_NE(r.code, 0);
  EXPECT_LT(r.seconds, 20.0) << "the job must end within seconds";
  EXPECT_NE(r.err.find("rbm_dist: rank 3: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(good), std::string::npos) << "names the file it could not read: " << r.err;
  EXPECT_EQ(count_lines_starting(r.err, "rbm_dist:"), 1) << r.err;
}

TEST(Errors, RanksThatDisagreeAreDetected) {
  // An MPMD launch whose ranks differ in one option (weight decay): caught at set-up by
  // comparing the effective configurations, with private model copies (--node-size 1)
  // and with one shared copy per node (where the parameter checksum could never differ).
  TempDir tmp;
  const std::string data = tmp / "bars.h5";
  write_bars(data, 480, 0);
  for (const std::string layout : {" --node-size 1", ""}) {
    const std::string common = " --progress never --data " + data + " --hidden 16 --epochs 5" +
                               layout + " --checkpoint " + tmp / "m.h5";
    RunResult r = run(mpirun(1) + bin("rbm_dist") + common + " --weight-decay 0 : -np 1 " +
                          bin("rbm_dist") + common + " --weight-decay 0.01",
                      60);
    EXPECT_FALSE(r.timed_out);
    EXPECT_EQ(r.code, exit_code::usage) << r.err;
    EXPECT_NE(r.err.find("rank 1 was started with other options than rank 0: 'weight-decay = "
                         "0.01' vs 'weight-decay = 0'"),
              std::string::npos)
        << layout << ": " << r.err;
    EXPECT_EQ(count_lines_starting(r.err, "rbm_dist:"), 1) << r.err;
    EXPECT_FALSE(fs::exists(tmp / "m.h5")) << "nothing may be written";
  }
}

TEST(Errors, DivergenceStopsAndKeepsTheLastGoodCheckpoint) {
  TempDir tmp;
  const std::string data = tmp / "bars.h5";
  write_bars(data, 480, 0);
  const std::string ck = tmp / "m.h5";
  // 480 rows, batch 100: with --drop-last off (taken over by the resume) an epoch has 5
  // steps, and lr 1e12 reaches NaN within the first resumed epoch, before any checkpoint;
  // the default's 4 steps leave huge but finite weights that are checkpointed first.
  RunResult ok = run(rbm_dist(2, "--data " + data +
                                     " --hidden 16 --epochs 1 --drop-last off --checkpoint " + ck));
  ASSERT_EQ(ok.code, 0) << ok.err;
  const std::string before = read_file(ck);
  RunResult r = run(rbm_dist(2, "--data " + data + " --resume " + ck + " --epochs 5 --lr 1e12"));
  EXPECT_EQ(r.code, exit_code::diverged) << r.out << r.err;
  EXPECT_EQ(count_lines_starting(r.err, "rbm_dist:"), 1) << r.err;
  EXPECT_TRUE(std::regex_search(r.err, std::regex("step [0-9]+ .*learning rate 1e\\+12")))
      << r.err;
  EXPECT_EQ(read_file(ck), before) << "the last good checkpoint must be kept as it was";
}

// ---------------------------------------------------------------------------
// 5. Options: --help with defaults, --config, and resume's stored configuration.
// ---------------------------------------------------------------------------
TEST(Options, HelpConfigAndResumeDefaults) {
  RunResult h = run(bin("rbm_dist") + " --help");
  ASSERT_EQ(h.code, 0);
  for (const char* opt : {"--data", "--hidden", "--epochs", "--batch-size", "--cd-k", "--pcd",
                          "--chains", "--lr", "--momentum", "--weight-decay", "--binarize",
                          "--shuffle", "--seed", "--checkpoint", "--checkpoint-every",
                          "--resume", "--metrics", "--check-consistency", "--config"})
    EXPECT_NE(h.out.find(opt), std::string::npos) << opt;
  EXPECT_NE(h.out.find("--hidden H (=500)"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("--lr RATE (=0.1)"), std::string::npos);

  TempDir tmp;
  const std::string data = tmp / "bars.h5";
  write_bars(data, 200, 0);
  const std::string cfg = tmp / "run.cfg";
  std::ofstream(cfg) << "hidden = 7\nepochs = 3\nseed = 9\n";
  const std::string ck = tmp / "m.h5";
  RunResult r = run(rbm_dist(0, "--config " + cfg + " --epochs 1 --data " + data +
                                    " --checkpoint " + ck));
  ASSERT_EQ(r.code, 0) << r.err;
  auto row = [](const std::string& out, const std::string& name) {
    std::smatch m;
    std::regex re("\\| " + name + " +\\| (\\S+) +\\| ([a-z ]+)\\n");
    return std::regex_search(out, m, re) ? m[1].str() + "/" + m[2].str() : std::string("?");
  };
  EXPECT_EQ(row(r.out, "hidden"), "7/config file");
  EXPECT_EQ(row(r.out, "epochs"), "1/command line");
  EXPECT_EQ(row(r.out, "seed"), "9/config file");
  EXPECT_EQ(read_model(ck).H(), 7u);
  // Resume with nothing but --epochs: everything else comes from the checkpoint.
  RunResult res = run(rbm_dist(0, "--data " + data + " --resume " + ck + " --epochs 2"));
  ASSERT_EQ(res.code, 0) << res.err;
  EXPECT_EQ(row(res.out, "hidden"), "7/checkpoint");
  EXPECT_EQ(read_train_state(ck, 64, 7).epoch, 2u);
}

// Defaults that depend on the method (apply_method_defaults): persistent chains get
// momentum 0.5 throughout and a learning rate decaying linearly, lr (1 - e/E) in epoch e
// of E; CD-k keeps momentum 0.9 after --momentum-epochs and a constant rate. Given
// values (command line, checkpoint) always win. The reference is the formula itself.
TEST(Options, MethodDefaultsForPersistentChains) {
  RunResult h = run(bin("rbm_dist") + " --help");
  ASSERT_EQ(h.code, 0);
  EXPECT_NE(h.out.find("--momentum MU (=auto)"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("--lr-schedule S (=auto)"), std::string::npos) << h.out;

  TempDir tmp;
  const std::string data = tmp / "bars.h5";
  write_bars(data, 200, 0);
  auto row = [](const std::string& out, const std::string& name) {
    std::smatch m;
    std::regex re("\\| " + name + " +\\| (\\S+) +\\| ([-a-zA-Z ]+)\\n");
    return std::regex_search(out, m, re) ? m[1].str() + "/" + m[2].str() : std::string("?");
  };
  auto column = [](const std::string& jsonl, const std::string& key) {
    std::vector<double> v;
    std::istringstream in(jsonl);
    for (std::string line; std::getline(in, line);) {
      std::smatch m;
      if (std::regex_search(line, m, std::regex("\"" + key + "\": ([-0-9.e+]+)")))
        v.push_back(std::stod(m[1].str()));
    }
    return v;
  };
  const size_t E = 4;
  const std::string common = "--data " + data + " --hidden 8 --batch-size 50 --epochs " +
                             std::to_string(E) + " --momentum-epochs 1 ";
  // PCD: momentum 0.5 in every epoch, lr 0.1 (1 - e/4).
  RunResult p = run(rbm_dist(0, common + "--pcd --checkpoint " + tmp / "p.h5" + " --metrics " +
                                    tmp / "p.jsonl"));
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_EQ(row(p.out, "momentum"), "0.5/default with --pcd") << p.out;
  EXPECT_EQ(row(p.out, "lr-schedule"), "linear/default with --pcd") << p.out;
  std::vector<double> lr = column(read_file(tmp / "p.jsonl"), "lr");
  std::vector<double> mu = column(read_file(tmp / "p.jsonl"), "momentum");
  ASSERT_EQ(lr.size(), E);
  ASSERT_EQ(mu.size(), E);
  for (size_t e = 0; e < E; ++e) {
    // float(0.1 * (1 - e/E)) printed to 9 significant digits: within 1e-7 relative.
    EXPECT_NEAR(lr[e], 0.1 * (1.0 - static_cast<double>(e) / E), 1e-8) << "epoch " << e;
    EXPECT_EQ(mu[e], 0.5) << "epoch " << e;
  }
  // A resume keeps what the checkpoint says (the same schedule, from its epochs).
  RunResult res = run(rbm_dist(0, "--data " + data + " --resume " + tmp / "p.h5" + " --epochs 5"));
  ASSERT_EQ(res.code, 0) << res.err;
  EXPECT_EQ(row(res.out, "momentum"), "0.5/checkpoint") << res.out;
  EXPECT_EQ(row(res.out, "lr-schedule"), "linear/checkpoint") << res.out;
  // CD-k: momentum 0.9 after --momentum-epochs, constant lr.
  RunResult c = run(rbm_dist(0, common + "--checkpoint " + tmp / "c.h5" + " --metrics " +
                                    tmp / "c.jsonl"));
  ASSERT_EQ(c.code, 0) << c.err;
  EXPECT_EQ(row(c.out, "momentum"), "0.9/default for CD-k") << c.out;
  EXPECT_EQ(row(c.out, "lr-schedule"), "constant/default for CD-k") << c.out;
  lr = column(read_file(tmp / "c.jsonl"), "lr");
  mu = column(read_file(tmp / "c.jsonl"), "momentum");
  ASSERT_EQ(lr.size(), E);
  for (size_t e = 0; e < E; ++e) {
    EXPECT_NEAR(lr[e], 0.1, 1e-8);
    EXPECT_NEAR(mu[e], e < 1 ? 0.5 : 0.9, 1e-7);
  }
  // Parallel tempering has persistent chains too.
  RunResult t = run(rbm_dist(0, common + "--pt 2 --checkpoint " + tmp / "t.h5"));
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_EQ(row(t.out, "momentum"), "0.5/default with --pt") << t.out;
  EXPECT_EQ(row(t.out, "lr-schedule"), "linear/default with --pt") << t.out;
  // Given values win over the method's defaults.
  RunResult g = run(rbm_dist(0, common + "--pcd --momentum 0.9 --lr-schedule constant --checkpoint " +
                                    tmp / "g.h5"));
  ASSERT_EQ(g.code, 0) << g.err;
  EXPECT_EQ(row(g.out, "momentum"), "0.9/command line") << g.out;
  EXPECT_EQ(row(g.out, "lr-schedule"), "constant/command line") << g.out;
  RunResult bad = run(rbm_dist(0, common + "--lr-schedule cosine --checkpoint " + tmp / "b.h5"));
  EXPECT_EQ(bad.code, exit_code::usage);
  EXPECT_NE(bad.err.find("--lr-schedule cosine: use constant, linear or auto"), std::string::npos)
      << bad.err;
}

// ---------------------------------------------------------------------------
// 6. Learning on real data.
// ---------------------------------------------------------------------------
TEST(Learning, ReconstructionFallsOverTheFirstEpochOnFashionMnist) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(dir + "/t10k-images-idx3-ubyte.gz"))
    GTEST_SKIP() << dir << " is missing (Debian package dataset-fashion-mnist): skipped";
  TempDir tmp;
  const std::string data = tmp / "fashion.h5", ck = tmp / "m.h5", metrics = tmp / "m.jsonl";
  // The 10,000 t10k images as a training set keep the test quick.
  RunResult c = run(bin("mnist2h5") + " --train-images " + dir + "/t10k-images-idx3-ubyte.gz" +
                    " --train-labels " + dir + "/t10k-labels-idx1-ubyte.gz " + data);
  ASSERT_EQ(c.code, 0) << c.err;
  RunResult r = run(rbm_dist(0, "--data " + data + " --hidden 200 --batch-size 20 --epochs 1"
                                    " --checkpoint " + ck + " --metrics " + metrics));
  ASSERT_EQ(r.code, 0) << r.err;

  // Reference: the model the trainer starts from, without its N(0, 0.01^2) noise:
  // W = 0, b = logit(pixel means), c = 0, so p(v|h) = pixel means. Its error is the
  // pixel variance around the mean; a model that learned anything must beat it.
  Shard s = read_all(data, schema::train_images);
  const size_t V = s.dim, n = 1000;
  Matrix X(V, n);
  std::vector<double> mean(V, 0.0);
  for (size_t l = 0; l < s.rows(); ++l)
    for (size_t i = 0; i < V; ++i) mean[i] += s.row(l)[i] / 255.0 / s.rows();
  for (size_t k = 0; k < n; ++k)
    for (size_t i = 0; i < V; ++i) X(i, k) = s.row(k)[i] / 255.0f;
  double ref = 0;
  for (size_t k = 0; k < n; ++k)
    for (size_t i = 0; i < V; ++i) ref += std::pow(X(i, k) - mean[i], 2) / (n * V);
  ParamBuffer m = read_model(ck);
  Matrix Hp(m.H(), n), Vp(V, n);
  hidden_probs(m.view, X, Hp);
  visible_probs(m.view, Hp, Vp);
  const double trained = (X - Vp).squaredNorm() / (n * V);
  EXPECT_LT(trained, 0.5 * ref) << "trained " << trained << " vs start " << ref;

  std::string line;
  std::ifstream in(metrics);
  ASSERT_TRUE(std::getline(in, line));
  for (const char* key : {"epoch", "step", "recon_error", "free_energy_train", "free_energy_valid",
                          "samples_per_s", "seconds"}) {
    std::smatch mm;
    std::regex re(std::string("\"") + key + "\": (-?[0-9.eE+-]+|null)");
    ASSERT_TRUE(std::regex_search(line, mm, re)) << key << " missing in " << line;
    if (std::string(key) != "free_energy_valid") {
      EXPECT_NO_THROW((void)std::stod(mm[1].str())) << key;
    }
  }
}


// ---------------------------------------------------------------------------
// 7. rbm_bench: a sweep over shapes and precisions, one row each, a summary line.
// ---------------------------------------------------------------------------
TEST(Bench, SweepRowsSummaryAndExitCodes) {
  TempDir tmp;
  const std::string data = tmp / "bars.h5";
  write_bars(data, 480, 0);
  const bool bf16 = bf16::cpu_has_native_bf16();
  const std::string args = " --data " + data + " --shapes 16x20,24x48 --steps 5 --warmup 2" +
                           " --gemm-seconds 0.02 --precision " + (bf16 ? "fp32,bf16" : "fp32");
  for (int np : {1, 2}) {
    RunResult r = run(mpirun(np) + bin("rbm_bench") + args, 120);
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    size_t rows = 0;
    std::istringstream in(r.out);
    for (std::string line; std::getline(in, line);)
      if (!line.empty() && line[0] != '#') {
        ++rows;
        EXPECT_NE(line.find(" OK"), std::string::npos) << line;
      }
    EXPECT_EQ(rows, bf16 ? 4u : 2u) << r.out;
    EXPECT_NE(r.out.find("# summary: " + std::to_string(rows) + " rows, " + std::to_string(np) +
                         " rank(s)"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("#wrong 0;"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("check: all OK"), std::string::npos) << r.out;
    // per-rank batch column: 48 over np ranks
    EXPECT_TRUE(std::regex_search(r.out, std::regex(" +" + std::to_string(np) +
                                                    " fp32 +24 +48 +" + std::to_string(48 / np) + " ")))
        << r.out;
  }
  RunResult f = run("RBM_FAKE_NO_BF16=1 " + bin("rbm_bench") + " --data " + data +
                    " --precision bf16 --steps 1", 60);
  EXPECT_EQ(f.code, exit_code::usage) << f.err;
  EXPECT_NE(f.err.find("--precision bf16: this CPU has no native bf16"), std::string::npos) << f.err;
  RunResult p = run(bin("rbm_bench") + " --data " + data + " --precision fp16", 60);
  EXPECT_EQ(p.code, exit_code::usage) << p.err;
}
