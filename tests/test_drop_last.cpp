// --drop-last: every step of an epoch averages exactly --batch-size images (on, the
// default) or the epoch ends with a partial batch (off); counted in the metrics and the
// checkpoint, rank-count invariant, resumed bitwise and never with the other setting.
#include "trainer_util.hpp"

using namespace trainertest;

namespace {
// The values of `key` in a metrics file, one per JSON line.
std::vector<double> metric(const std::string& path, const std::string& key) {
  std::vector<double> out;
  std::istringstream in(read_file(path));
  const std::regex re("\"" + key + "\": ([-0-9.eE+]+)");
  std::smatch m;
  for (std::string line; std::getline(in, line);)
    if (std::regex_search(line, m, re)) out.push_back(std::stod(m[1]));
  return out;
}
}  // namespace

// N = 1003, B = 100. on: floor(1003/100) = 10 steps; the epoch's samples are 1000 =
// 10 x 100, and since no step can hold more than B images, each of the 10 holds exactly
// 100. off: ceil = 11 steps, 1003 samples: 10 full steps and a last one of 3.
TEST(DropLast, StepsAndSamplesPerEpochOnAndOff) {
  TempDir tmp;
  const std::string data = tmp / "bars.h5";
  write_bars(data, 1003, 0);
  struct Mode {
    std::string flag;
    uint64_t steps;
    double samples;
  };
  for (const Mode& m : {Mode{"", 10, 1000}, Mode{" --drop-last on", 10, 1000},
                        Mode{" --drop-last off", 11, 1003}}) {
    const std::string ck = tmp / "m.h5", mt = tmp / "m.jsonl";
    fs::remove(mt);
    RunResult r = run(rbm_dist(2, "--data " + data + " --hidden 8 --epochs 2 --batch-size 100" +
                                      m.flag + " --force --checkpoint " + ck + " --metrics " + mt),
                      120);
    ASSERT_EQ(r.code, 0) << m.flag << r.err;
    EXPECT_EQ(read_train_state(ck, 64, 8).steps_per_epoch, m.steps) << m.flag;
    EXPECT_EQ(metric(mt, "step"), (std::vector<double>{1.0 * m.steps, 2.0 * m.steps})) << m.flag;
    EXPECT_EQ(metric(mt, "samples"), (std::vector<double>{m.samples, m.samples})) << m.flag;
  }
}

// The dropped positions are the end of each epoch's order, so with --shuffle epoch other
// rows are left out each epoch; the batches stay those of shard.hpp: any rank count
// gives the same model (tolerance as in RankInvariance, test_trainer.cpp: 1e-5).
TEST(DropLast, RankInvariantAndResumedBitwise) {
  TempDir tmp;
  const std::string data = tmp / "bars.h5";
  write_bars(data, 1003, 0);
  const std::string common = "--data " + data + " --hidden 16 --batch-size 100 --seed 9 --force";
  auto model = [&](int np, const std::string& extra, const std::string& name) {
    RunResult r = run(rbm_dist(np, common + extra + " --checkpoint " + tmp / name), 120);
    EXPECT_EQ(r.code, 0) << extra << r.err;
    return params_of(tmp / name);
  };
  for (const std::string mode : {" --drop-last on", " --drop-last off --pcd --chains 10"}) {
    const std::vector<float> ref = model(1, " --epochs 3" + mode, "one.h5");
    const std::vector<float> three = model(3, " --epochs 3" + mode, "three.h5");
    ASSERT_EQ(three.size(), ref.size());
    double maxdiff = 0;
    for (size_t k = 0; k < ref.size(); ++k) maxdiff = std::max<double>(maxdiff, std::abs(three[k] - ref[k]));
    EXPECT_LE(maxdiff, 1e-5) << mode;
    // Split 1 + 2 epochs; the resume takes --drop-last from the checkpoint's configuration.
    model(2, " --epochs 1" + mode, "split.h5");
    RunResult r = run(rbm_dist(2, "--data " + data + " --epochs 3 --resume " + tmp / "split.h5"), 120);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(params_of(tmp / "split.h5"), model(2, " --epochs 3" + mode, "whole.h5")) << mode;
  }
}

TEST(DropLast, RefusedValuesAndResumeWithTheOtherSetting) {
  TempDir tmp;
  const std::string data = tmp / "bars.h5";
  write_bars(data, 1003, 0);
  const std::string ck = tmp / "m.h5";
  RunResult r = run(rbm_dist(1, "--data " + data + " --hidden 8 --epochs 1 --batch-size 100 "
                                "--drop-last off --checkpoint " + ck), 120);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      // a bad value: the flag, the value, the fix
      {"--data " + data + " --drop-last maybe --checkpoint " + tmp / "x.h5", {"--drop-last maybe: use on or off"}},
      // N < B: both values and the fix
      {"--data " + data + " --batch-size 2000 --checkpoint " + tmp / "x.h5",
       {"--batch-size 2000 is larger than the dataset (1003 images", "use --batch-size 1003 or less"}},
      // 11 steps per epoch in the checkpoint, 10 with on: refused, naming the flag
      {"--data " + data + " --epochs 2 --drop-last on --resume " + ck,
       {"written with 11 steps per epoch, this run has 10 (--drop-last on", "--drop-last off"}},
  };
  for (const auto& [args, needles] : cases) {
    RunResult e = run(rbm_dist(2, args), 60);
    EXPECT_EQ(e.code, exit_code::usage) << args << "\n" << e.err;
    EXPECT_EQ(count_lines_starting(e.err, "rbm_dist:"), 1) << args << "\n" << e.err;
    for (const std::string& needle : needles)
      EXPECT_NE(e.err.find(needle), std::string::npos) << args << "\n" << e.err;
  }
}
