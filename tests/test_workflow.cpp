// The research workflow around rbm_dist, as a user runs it: no run overwrites another
// run's files (checked byte for byte), resuming F continues F, stored paths work from
// any folder, the monitor says which split it uses, the epoch line carries a
// pseudo-log-likelihood, one file per checkpoint, best.h5 and early stopping,
// --init-from, logs without escape codes, config files with line numbers, and the
// Slurm script resuming only its own checkpoint.
#include "trainer_util.hpp"

using namespace trainertest;

namespace {
// A dataset with a /validation split (the converter's default layout).
void write_bars_with_validation(const std::string& path) {
  write_bars(path, 600, 100);
  h5::Id f = h5::open_file(path, true);
  std::vector<hsize_t> dims;
  std::vector<uint8_t> px = h5::read_array<uint8_t>(f, schema::test_images, path, &dims);
  h5::write_array(f, schema::valid_images, px.data(), dims, {256, 4});
}
std::string run_ok(const std::string& cmd) {
  RunResult r = run(cmd, 120);
  EXPECT_EQ(r.code, 0) << cmd << "\n" << r.err;
  return r.out;
}
std::vector<int> metric_epochs(const std::string& file) {
  std::istringstream in(read_file(file));
  std::vector<int> e;
  for (std::string line; std::getline(in, line);) {
    int k = 0;
    if (std::sscanf(line.c_str(), "{\"epoch\": %d", &k) == 1) e.push_back(k);
  }
  return e;
}
}  // namespace

TEST(Workflow, ResumingACopyNeverTouchesTheOriginalRun) {
  TempDir tmp;
  const std::string data = tmp / "bars.h5", orig = tmp / "straight3.h5", om = tmp / "metrics.jsonl";
  write_bars_with_validation(data);
  run_ok(rbm_dist(2, "--data " + data + " --hidden 16 --epochs 2 --checkpoint " + orig +
                         " --metrics " + om));
  const std::string orig_bytes = read_file(orig), om_bytes = read_file(om);
  // 1. Resuming a copy continues the copy.
  fs::copy_file(orig, tmp / "r.h5");
  run_ok(rbm_dist(2, "--data " + data + " --resume " + tmp / "r.h5" + " --epochs 3"));
  EXPECT_EQ(read_train_state(tmp / "r.h5", 64, 16).epoch, 3u) << "the copy continues";
  EXPECT_TRUE(read_file(orig) == orig_bytes) << "the original checkpoint is untouched";
  EXPECT_TRUE(read_file(om) == om_bytes) << "the original metrics are untouched";
  // 2. A copy resumed with its own --checkpoint: still nothing of the original changes.
  fs::copy_file(orig, tmp / "r2.h5");
  run_ok(rbm_dist(2, "--data " + data + " --resume " + tmp / "r2.h5" + " --epochs 3 --checkpoint " +
                         tmp / "other.h5"));
  EXPECT_TRUE(read_file(om) == om_bytes);
  EXPECT_TRUE(read_file(orig) == orig_bytes);
  // 3. The stored configuration as --config, from another folder: a fresh run that
  //    writes nothing of the original's (no output path is stored).
  h5::Id f = h5::open_file(orig);
  const std::string cfg = h5::read_attr_string(h5::open_object(f, "/train"), "config");
  EXPECT_EQ(cfg.find("checkpoint ="), std::string::npos) << cfg;
  EXPECT_EQ(cfg.find("metrics ="), std::string::npos) << cfg;
  std::ofstream(tmp / "stored.cfg") << cfg;
  fs::create_directory(tmp / "elsewhere");
  run_ok("cd " + tmp / "elsewhere" + " && " + rbm_dist(2, "--config " + tmp / "stored.cfg"));
  EXPECT_TRUE(fs::exists(tmp / "elsewhere/model.h5"));
  EXPECT_TRUE(read_file(orig) == orig_bytes);
  EXPECT_TRUE(read_file(om) == om_bytes);
  // 4. Resuming the run's own checkpoint continues its own metrics, without repeats,
  //    and the stored (absolute) data path works from any folder.
  run_ok("cd " + tmp / "elsewhere" + " && " + rbm_dist(2, "--resume " + orig + " --epochs 3"));
  EXPECT_EQ(metric_epochs(om), (std::vector<int>{1, 2, 3}));
}

TEST(Workflow, AFreshRunRefusesToReplaceAnotherRunsFiles) {
  TempDir tmp;
  const std::string data = tmp / "bars.h5", ck = tmp / "model.h5", m = tmp / "m.jsonl";
  write_bars_with_validation(data);
  run_ok(rbm_dist(2, "--data " + data + " --hidden 16 --epochs 1 --checkpoint " + ck +
                         " --metrics " + m));
  const std::string ck_bytes = read_file(ck), m_bytes = read_file(m);
  for (const std::string& args : {" --checkpoint " + ck, " --checkpoint " + tmp / "new.h5" + " --metrics " + m}) {
    RunResult r = run(rbm_dist(2, "--data " + data + " --hidden 16 --epochs 1" + args), 60);
    EXPECT_EQ(r.code, exit_code::usage) << args << ": " << r.err;
    EXPECT_NE(r.err.find("already exists: continue that run with --resume"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("or replace it with --force"), std::string::npos) << r.err;
    EXPECT_TRUE(read_file(ck) == ck_bytes) << "the checkpoint must be untouched";
    EXPECT_TRUE(read_file(m) == m_bytes) << "the metrics must be untouched";
  }
  run_ok(rbm_dist(2, "--data " + data + " --hidden 16 --epochs 1 --seed 9 --force --checkpoint " + ck));
  EXPECT_FALSE(read_file(ck) == ck_bytes) << "--force replaces it";
}

TEST(Workflow, MonitorNamesItsSplitAndTheEpochLineHasPseudoLikelihood) {
  TempDir tmp;
  const std::string with_valid = tmp / "v.h5", test_only = tmp / "t.h5";
  write_bars_with_validation(with_valid);
  write_bars(test_only, 600, 100);
  std::string out = run_ok(rbm_dist(2, "--data " + with_valid + " --hidden 16 --epochs 1 --checkpoint " +
                                           tmp / "a.h5" + " --metrics " + tmp / "a.jsonl"));
  EXPECT_TRUE(std::regex_search(out, std::regex("lr 0.1 mu 0.5 \\| .* valid .* \\| PLL valid -[0-9.]+ \\+- [0-9.]+")))
      << out;
  EXPECT_EQ(out.find("warning"), std::string::npos) << out;
  const std::string line = read_file(tmp / "a.jsonl");
  for (const char* key : {"\"lr\": 0.1", "\"momentum\": 0.5", "\"pseudo_loglik_valid\": -",
                          "\"pseudo_loglik_valid_stderr\": ", "\"monitor_split\": \"valid\""})
    EXPECT_NE(line.find(key), std::string::npos) << key << " in " << line;
  out = run_ok(rbm_dist(2, "--data " + test_only + " --hidden 16 --epochs 1 --checkpoint " + tmp / "b.h5"));
  EXPECT_NE(out.find("warning: " + test_only + " has no /validation images"), std::string::npos) << out;
  EXPECT_NE(out.find("PLL test"), std::string::npos) << out;
  EXPECT_EQ(out.find(" valid "), std::string::npos) << "test data is never called valid: " << out;
  RunResult r = run(rbm_dist(2, "--data " + test_only + " --hidden 16 --keep-best --checkpoint " + tmp / "c.h5"));
  EXPECT_EQ(r.code, exit_code::usage) << r.err;
  EXPECT_NE(r.err.find("selecting on test data"), std::string::npos) << r.err;
  // A blown-up model says so (lr 1000 gives finite but absurd free energies).
  RunResult big = run(rbm_dist(2, "--data " + with_valid + " --hidden 16 --epochs 1 --lr 1000 --checkpoint " +
                                      tmp / "d.h5"));
  if (big.code == 0) {
    EXPECT_NE(big.out.find("warning: the mean free energy"), std::string::npos) << big.out;
  } else {
    EXPECT_EQ(big.code, exit_code::diverged) << big.err;
  }
}

TEST(Workflow, OneFilePerEpochBestAndEarlyStop) {
  TempDir tmp;
  const std::string data = tmp / "bars.h5";
  write_bars_with_validation(data);
  run_ok(rbm_dist(2, "--data " + data + " --hidden 16 --epochs 3 --checkpoint '" + tmp.path.string() +
                         "/m-{epoch}.h5'"));
  for (uint64_t e = 1; e <= 3; ++e)
    EXPECT_EQ(read_train_state(tmp / ("m-" + std::to_string(e) + ".h5"), 64, 16).epoch, e);
  // Resuming epoch 2's file continues the series: m-3.h5 gets bitwise the same weights.
  const std::vector<float> m3 = params_of(tmp / "m-3.h5");
  run_ok(rbm_dist(2, "--data " + data + " --resume " + tmp / "m-2.h5" + " --epochs 3"));
  EXPECT_TRUE(params_of(tmp / "m-3.h5") == m3) << "resumed series differs";
  EXPECT_EQ(read_train_state(tmp / "m-2.h5", 64, 16).epoch, 2u) << "epoch 2's file is kept";
  // --keep-best with --early-stop: a learning rate that makes things worse stops early.
  fs::create_directory(tmp / "es");
  const std::string out = run_ok(rbm_dist(2, "--data " + data + " --hidden 16 --epochs 30 --lr 20 --momentum 0.99"
                                                " --keep-best --early-stop 2 --checkpoint " + tmp / "es/m.h5"));
  std::smatch mt;
  ASSERT_TRUE(std::regex_search(out, mt, std::regex("early stop after epoch ([0-9]+).*the best epoch is ([0-9]+)")))
      << out;
  const uint64_t last = std::stoull(mt[1]), best = std::stoull(mt[2]);
  EXPECT_EQ(last, best + 2);
  EXPECT_EQ(read_train_state(tmp / "es/best.h5", 64, 16).epoch, best) << "best.h5 holds the best epoch";
  EXPECT_EQ(read_train_state(tmp / "es/m.h5", 64, 16).epoch, last);
}

TEST(Workflow, InitFromStartsANewRunFromAModel) {
  TempDir tmp;
  const std::string data = tmp / "bars.h5", a = tmp / "a.h5";
  write_bars_with_validation(data);
  run_ok(rbm_dist(2, "--data " + data + " --hidden 16 --epochs 2 --checkpoint " + a));
  const std::string a_bytes = read_file(a);
  const std::string out = run_ok(rbm_dist(2, "--data " + data + " --hidden 16 --epochs 1 --pcd --lr 0.01"
                                                " --init-from " + a + " --checkpoint " + tmp / "b.h5"));
  EXPECT_NE(out.find("epoch   1/1"), std::string::npos) << "a new run from epoch 1: " << out;
  EXPECT_EQ(read_train_state(tmp / "b.h5", 64, 16).step, 6u);
  EXPECT_TRUE(read_file(a) == a_bytes);
  RunResult r = run(rbm_dist(2, "--data " + data + " --hidden 24 --init-from " + a + " --checkpoint " + tmp / "c.h5"));
  EXPECT_EQ(r.code, exit_code::usage) << r.err;
  EXPECT_NE(r.err.find("model is 64x16 but the data has 64 pixels and --hidden is 24 (give --hidden 16)"),
            std::string::npos) << r.err;
}

TEST(Workflow, LogsHaveNoEscapeCodesAndConfigErrorsNameTheLine) {
  TempDir tmp;
  const std::string data = tmp / "bars.h5";
  write_bars_with_validation(data);
  // mpirun's output to a file (rank 0's own stdout is a pty under mpirun): --progress auto.
  RunResult r = run(mpirun(2) + bin("rbm_dist") + " --data " + data + " --hidden 16 --epochs 2 --checkpoint " +
                    tmp / "m.h5" + " > " + tmp / "log");
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string log = read_file(tmp / "log");
  EXPECT_NE(log.find("epoch   2/2"), std::string::npos) << log;
  EXPECT_EQ(log.find('\r'), std::string::npos) << "no carriage returns in a log";
  EXPECT_EQ(log.find("\033["), std::string::npos) << "no terminal escape codes in a log";
  struct Case {
    std::string text, expect;
  };
  for (const Case& c : {Case{"# comment\n[train]\nlr = 0.1\n", ":2: '[train]': sections are not used"},
                        Case{"epochs = 2\nlrr = 0.1\n", ":2: unknown option 'lrr' (did you mean 'lr'?)"},
                        Case{"\nepochs = many\n", ":2: the argument ('many') for option"},
                        Case{"hidden\n", ":1: 'hidden': expected 'name = value'"}}) {
    std::ofstream(tmp / "c.cfg") << c.text;
    RunResult e = run(rbm_dist(2, "--data " + data + " --config " + tmp / "c.cfg"));
    EXPECT_EQ(e.code, exit_code::usage) << e.err;
    EXPECT_NE(e.err.find(tmp / "c.cfg" + c.expect), std::string::npos) << e.err;
    EXPECT_EQ(count_lines_starting(e.err, "rbm_dist:"), 1) << e.err;
  }
}

TEST(Workflow, SlurmScriptResumesOnlyItsOwnCheckpoint) {
  // The batch script also runs outside Slurm (as a plain script), which is enough here.
  TempDir tmp;
  const std::string data = tmp / "bars.h5", out = tmp / "run";
  write_bars_with_validation(data);
  const std::string script = "RBM_BIN=" + std::string(RBM_BIN_DIR) + " bash " + std::string(RBM_SOURCE_DIR) +
                             "/slurm/rbm_dist.sbatch " + data + " " + out + " --hidden 16 --batch-size 50";
  run_ok(script + " --epochs 2");
  const std::string model = read_file(out + "/model.h5");
  // A newer non-checkpoint .h5 and a newer copy of an older state in OUTDIR.
  fs::copy_file(out + "/model.h5", out + "/old-copy.h5");
  std::ofstream(out + "/features.h5") << "not a checkpoint";
  const std::string copy = read_file(out + "/old-copy.h5");
  const std::string log = run_ok(script + " --epochs 3");
  EXPECT_NE(log.find("resuming from " + out + "/model.h5"), std::string::npos) << log;
  EXPECT_EQ(read_train_state(out + "/model.h5", 64, 16).epoch, 3u);
  EXPECT_TRUE(read_file(out + "/old-copy.h5") == copy) << "never resumed, never written";
}

// rbm_eval binarises as the model was trained (from the checkpoint), warns when told
// otherwise, and refuses grey values where a log-probability needs binary images.
TEST(Workflow, EvaluationMatchesTraining) {
  TempDir tmp;
  const std::string data = tmp / "bars.h5";
  write_bars_with_validation(data);
  run_ok(rbm_dist(2, "--data " + data + " --hidden 16 --epochs 1 --checkpoint " + tmp / "s.h5"));
  run_ok(rbm_dist(2, "--data " + data + " --hidden 16 --epochs 1 --binarize none --checkpoint " +
                         tmp / "g.h5"));
  const std::string ev = bin("rbm_eval");
  std::string out = run_ok(ev + " pseudo " + tmp / "s.h5" + " " + data + " --json");
  EXPECT_NE(out.find("\"binarize\": \"stochastic\""), std::string::npos) << out;
  EXPECT_EQ(out.find("warning"), std::string::npos) << out;
  out = run_ok(ev + " loglik " + tmp / "s.h5" + " " + data + " --runs 4 --betas 100 --binarize threshold --json");
  EXPECT_NE(out.find("warning: " + tmp / "s.h5" + " was trained with --binarize stochastic; evaluating with threshold"),
            std::string::npos) << out;
  for (const char* sub : {"loglik", "pseudo"}) {
    RunResult r = run(ev + " " + sub + " " + tmp / "g.h5" + " " + data);
    EXPECT_EQ(r.code, exit_code::usage) << sub << ": " << r.err;
    EXPECT_NE(r.err.find("needs binary images"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("give --binarize stochastic or threshold"), std::string::npos) << r.err;
  }
}
