// rbm_dist when things go wrong, with the faults injected for real: an LD_PRELOAD shim
// that makes fsync/rename fail (tests/shims/fail_io.c), a small tmpfs that fills up,
// checkpoints damaged with the HDF5 C API, real kills, ranks in separate PID
// namespaces. Every case: one line, the documented exit code, no hang, nothing lost
// or half-written.
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>

#include "rbm/node_shared.hpp"

#include "trainer_util.hpp"

using namespace trainertest;

namespace {

std::string with_shim(const std::string& env, const std::string& cmd) {
  return "env LD_PRELOAD=" + std::string(RBM_FAIL_IO_SHIM) + " " + env + " " + cmd;
}

bool any_temporary_in(const std::string& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) return true;
  return false;
}

// Sets an attribute of /train to a value of HDF5 type `type` (or deletes it when
// `data` is null).
void set_train_attr(const std::string& file, const char* name, hid_t type, const void* data) {
  h5::Id f = h5::open_file(file, true);
  h5::Id g = h5::open_object(f, "/train");
  H5Adelete(g, name);
  if (!data) return;
  h5::Id space(H5Screate(H5S_SCALAR), H5Sclose);
  h5::Id a(H5Acreate2(g, name, type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  ASSERT_GE(H5Awrite(a, type, data), 0);
}

template <typename T>
void set_array_value(const std::string& file, const char* path, size_t index, T value) {
  h5::Id f = h5::open_file(file, true);
  std::vector<hsize_t> dims;
  std::vector<T> v = h5::read_array<T>(f, path, file, &dims);
  v[index] = value;
  h5::Id d(H5Dopen2(f, path, H5P_DEFAULT), H5Dclose);
  ASSERT_GE(H5Dwrite(d, h5::native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()), 0);
}

// A tmpfs of `bytes` mounted on `dir` for the test's lifetime (root only).
struct SmallDisk {
  std::string dir;
  bool mounted = false;
  SmallDisk(const std::string& d, size_t bytes) : dir(d) {
    fs::create_directories(dir);
    mounted = ::mount("tmpfs", dir.c_str(), "tmpfs", 0, fmt("size=", bytes).c_str()) == 0;
  }
  ~SmallDisk() {
    if (mounted) ::umount2(dir.c_str(), MNT_DETACH);
  }
};

}  // namespace

// ---------------------------------------------------------------------------
// Checkpoint writes: every failing step keeps the last good checkpoint byte for byte.
// ---------------------------------------------------------------------------
TEST(WriteFailure, FsyncOrRenameFailingKeepsTheLastCheckpoint) {
  TempDir tmp;
  const std::string data = tmp / "bars.h5", ck = tmp / "model.h5";
  write_bars(data, 480, 0);
  RunResult ok = run(rbm_dist(2, "--data " + data + " --hidden 16 --epochs 1 --checkpoint " + ck));
  ASSERT_EQ(ok.code, 0) << ok.err;
  const std::string before = read_file(ck);
  for (const std::string fault : {"RBM_FAIL_FSYNC=.tmp.", "RBM_FAIL_RENAME=model.h5"}) {
    RunResult r = run(with_shim(fault, rbm_dist(2, "--data " + data + " --resume " + ck +
                                                       " --epochs 2")),
                      60);
    EXPECT_EQ(r.code, exit_code::runtime) << fault << ": " << r.err;
    EXPECT_EQ(count_lines_starting(r.err, "rbm_dist:"), 1) << r.err;
    EXPECT_NE(r.err.find(ck), std::string::npos) << "names the file: " << r.err;
    EXPECT_NE(r.err.find("Input/output error"), std::string::npos) << "the OS error: " << r.err;
    EXPECT_EQ(r.out.find("checkpoint " + ck + " written (epoch 2"), std::string::npos) << r.out;
    EXPECT_EQ(read_file(ck), before) << fault << ": the last good checkpoint must stay";
    EXPECT_FALSE(any_temporary_in(tmp.path)) << fault << ": the temporary must be removed";
  }
  // The folder's fsync comes after the rename: the new checkpoint is complete and in
  // place, but its name may not survive a crash — said, exit 1.
  RunResult r = run(with_shim("RBM_FAIL_FSYNC_DIR=" + tmp.path.filename().string(),
                              rbm_dist(2, "--data " + data + " --resume " + ck + " --epochs 2")),
                    60);
  EXPECT_EQ(r.code, exit_code::runtime) << r.err;
  EXPECT_NE(r.err.find("its folder"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("Input/output error"), std::string::npos) << r.err;
  EXPECT_EQ(read_train_state(ck, 64, 16).epoch, 2u) << "the complete new checkpoint";
  EXPECT_FALSE(any_temporary_in(tmp.path));
}

// A full disk half-way through the new checkpoint (in /train/momentum, after the
// model): one line with the file and "No space left on device", exit 1 on every rank.
TEST(WriteFailure, FullDiskKeepsTheLastCheckpoint) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (mounts a small tmpfs)";
  TempDir tmp;
  const std::string data = tmp / "bars.h5";
  write_bars(data, 480, 0);
  const std::string args = " --data " + data + " --hidden 2048 --batch-size 96";
  RunResult probe = run(rbm_dist(1, args + " --epochs 1 --checkpoint " + tmp / "probe.h5"));
  ASSERT_EQ(probe.code, 0) << probe.err;
  const size_t S = fs::file_size(tmp / "probe.h5");
  // Room for the old checkpoint and 3/4 of a new one: the model (first half) fits, the
  // momentum (second half) does not.
  SmallDisk disk(tmp / "disk", (S + S * 3 / 4 + 4095) / 4096 * 4096);
  if (!disk.mounted) GTEST_SKIP() << "mount tmpfs failed: " << std::strerror(errno);
  const std::string ck = disk.dir + "/model.h5";
  RunResult first = run(rbm_dist(2, args + " --epochs 1 --checkpoint " + ck));
  ASSERT_EQ(first.code, 0) << first.err;
  const std::string before = read_file(ck);
  RunResult r = run(rbm_dist(2, args + " --resume " + ck + " --epochs 2"), 60);
  EXPECT_EQ(r.code, exit_code::runtime) << r.err;
  EXPECT_EQ(count_lines_starting(r.err, "rbm_dist:"), 1) << r.err;
  EXPECT_NE(r.err.find(ck), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
  EXPECT_EQ(read_file(ck), before);
  EXPECT_FALSE(any_temporary_in(disk.dir));
}

// ---------------------------------------------------------------------------
// Temporaries of killed writers are removed at the next start; a live one is kept.
// ---------------------------------------------------------------------------
TEST(StaleTemporaries, DeadWritersRemovedLiveOnesKept) {
  TempDir tmp;
  const std::string data = tmp / "bars.h5", ck = tmp / "model.h5";
  write_bars(data, 480, 0);
  const pid_t dead = fork();
  if (dead == 0) _exit(0);
  waitpid(dead, nullptr, 0);  // a pid that no longer runs
  Background live("sleep 60");
  char host[256] = "";
  gethostname(host, sizeof host);
  const std::string stale = ck + ".tmp." + host + "." + std::to_string(dead);
  const std::string running = ck + ".tmp." + host + "." + std::to_string(live.pid);
  const std::string other_host = ck + ".tmp.otherhost." + std::to_string(dead);
  for (const std::string& f : {stale, running, other_host}) std::ofstream(f) << "partial";
  RunResult r = run(rbm_dist(2, "--data " + data + " --hidden 16 --epochs 1 --checkpoint " + ck));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(fs::exists(stale)) << "left by a dead writer: removed";
  EXPECT_TRUE(fs::exists(running)) << "a live writer's temporary is never touched";
  EXPECT_TRUE(fs::exists(other_host)) << "another host's writer cannot be judged from here";
  EXPECT_NE(r.out.find("removed " + stale), std::string::npos) << r.out;
  live.signal_group(SIGKILL);
  live.wait(5);
}

// ---------------------------------------------------------------------------
// An output that is an input is refused before anything is written.
// ---------------------------------------------------------------------------
TEST(SameFile, OutputsThatAreInputsAreRefused) {
  TempDir tmp;
  const std::string data = tmp / "bars.h5";
  write_bars(data, 480, 0);
  fs::create_hard_link(data, tmp / "link.h5");
  const std::string before = read_file(data);
  const std::string base = "--data " + data + " --hidden 16 --epochs 1";
  for (const std::string& bad :
       {" --checkpoint " + data, " --checkpoint " + tmp.path.string() + "/./bars.h5",
        " --checkpoint " + tmp / "link.h5", " --metrics " + data,
        " --checkpoint " + tmp / "m.h5 --metrics " + tmp / "m.h5"}) {
    RunResult r = run(rbm_dist(2, base + bad), 60);
    EXPECT_EQ(r.code, exit_code::usage) << bad << ": " << r.err;
    EXPECT_NE(r.err.find("is the same file as"), std::string::npos) << r.err;
    EXPECT_EQ(count_lines_starting(r.err, "rbm_dist:"), 1) << r.err;
    EXPECT_EQ(read_file(data), before) << bad << ": the data must not be touched";
    EXPECT_FALSE(fs::exists(tmp / "m.h5"));
  }
  // rbm_eval: the features or a picture written over the data or the model.
  RunResult m = run(rbm_dist(2, base + " --checkpoint " + tmp / "model.h5"));
  ASSERT_EQ(m.code, 0) << m.err;
  const std::string model_before = read_file(tmp / "model.h5");
  for (const std::string& cmd :
       {bin("rbm_eval") + " transform " + tmp / "model.h5" + " " + data + " --force --out " + data,
        bin("rbm_eval") + " transform " + tmp / "model.h5" + " " + data + " --force --out " + tmp / "model.h5",
        bin("rbm_eval") + " filters " + tmp / "model.h5" + " --out " + tmp / "model.h5"}) {
    RunResult e = run(cmd);
    EXPECT_EQ(e.code, exit_code::usage) << cmd << ": " << e.err;
    EXPECT_NE(e.err.find("is the same file as"), std::string::npos) << e.err;
    EXPECT_TRUE(read_file(data) == before) << cmd << ": the data must not be touched";
    EXPECT_TRUE(read_file(tmp / "model.h5") == model_before) << cmd << ": the model must not be touched";
  }
  // mnist2h5 --force with an input as the output.
  const std::string img = tmp / "img", lab = tmp / "lab";
  write_idx(img, {3, 2, 2}, std::vector<uint8_t>(12, 7));
  write_idx(lab, {3}, {1, 2, 3});
  const std::string img_before = read_file(img);
  RunResult r = run(bin("mnist2h5") + " --train-images " + img + " --train-labels " + lab +
                    " --force " + img);
  EXPECT_EQ(r.code, exit_code::usage) << r.err;
  EXPECT_NE(r.err.find("is the same file as"), std::string::npos) << r.err;
  EXPECT_EQ(read_file(img), img_before);
}

// ---------------------------------------------------------------------------
// --metrics: checked at start-up; on resume no epoch is repeated.
// ---------------------------------------------------------------------------
TEST(Metrics, CheckedAtStartAndNotRepeatedOnResume) {
  TempDir tmp;
  const std::string data = tmp / "bars.h5", ck = tmp / "model.h5", m = tmp / "m.jsonl";
  write_bars(data, 480, 0);
  RunResult bad = run(rbm_dist(2, "--data " + data + " --hidden 16 --epochs 1 --checkpoint " + ck +
                                      " --metrics " + tmp / "no/such/folder/m.jsonl"));
  EXPECT_EQ(bad.code, exit_code::usage) << bad.err;
  EXPECT_NE(bad.err.find("--metrics"), std::string::npos) << bad.err;
  EXPECT_FALSE(fs::exists(ck)) << "refused before any training";
  RunResult r = run(rbm_dist(2, "--data " + data + " --hidden 16 --epochs 2 --checkpoint " + ck +
                                    " --metrics " + m));
  ASSERT_EQ(r.code, 0) << r.err;
  // As if a run had written epoch 3's line and was killed before its checkpoint.
  std::ofstream(m, std::ios::app) << "{\"epoch\": 3, \"step\": 15, \"recon_error\": 9}\n";
  RunResult r2 = run(rbm_dist(2, "--data " + data + " --resume " + ck + " --epochs 3"));
  ASSERT_EQ(r2.code, 0) << r2.err;
  std::istringstream in(read_file(m));
  std::vector<int> epochs;
  for (std::string line; std::getline(in, line);) {
    int e = 0;
    ASSERT_EQ(std::sscanf(line.c_str(), "{\"epoch\": %d", &e), 1) << line;
    epochs.push_back(e);
    EXPECT_EQ(line.find("\"recon_error\": 9}"), std::string::npos) << "the stale line is gone";
  }
  EXPECT_EQ(epochs, (std::vector<int>{1, 2, 3}));
}

// ---------------------------------------------------------------------------
// Negative counts, in every program.
// ---------------------------------------------------------------------------
TEST(BadValues, NegativeCountsAreOneLineExit2) {
  TempDir tmp;
  const std::string data = tmp / "bars.h5";
  write_bars(data, 480, 0);
  const std::string base = "--data " + data + " --checkpoint " + tmp / "m.h5";
  for (const std::string bad : {" --epochs -1", " --hidden -1", " --pcd --chains -1",
                                " --checkpoint-every -1", " --batch-size -5", " --seed -1",
                                " --monitor-size -1", " --momentum-epochs -2"}) {
    RunResult r = run(rbm_dist(2, base + bad), 30);
    EXPECT_EQ(r.code, exit_code::usage) << bad << ": " << r.err;
    EXPECT_EQ(count_lines_starting(r.err, "rbm_dist:"), 1) << r.err;
    EXPECT_NE(r.err.find("must be 0 or more"), std::string::npos) << bad << ": " << r.err;
  }
  std::ofstream(tmp / "c.cfg") << "epochs = -3\n";
  RunResult c = run(rbm_dist(0, base + " --config " + tmp / "c.cfg"));
  EXPECT_EQ(c.code, exit_code::usage) << c.err;
  EXPECT_NE(c.err.find("--epochs -3: must be 0 or more (in --config"), std::string::npos) << c.err;
  RunResult b = run(bin("rbm_bench") + " --data " + data + " --steps -1");
  EXPECT_EQ(b.code, exit_code::usage) << b.err;
  EXPECT_NE(b.err.find("--steps -1"), std::string::npos) << b.err;
}

// ---------------------------------------------------------------------------
// Damaged checkpoints: every bad attribute or value is exit 2 naming the file.
// ---------------------------------------------------------------------------
TEST(DamagedCheckpoint, AttributesAndValuesValidatedOnResume) {
  TempDir tmp;
  const std::string data = tmp / "bars.h5", good = tmp / "good.h5";
  write_bars(data, 480, 0);
  RunResult ok = run(rbm_dist(2, "--data " + data + " --hidden 16 --epochs 1 --pcd --chains 10"
                                  " --checkpoint " + good));
  ASSERT_EQ(ok.code, 0) << ok.err;
  const int64_t minus5 = -5, big = int64_t{1} << 62;
  const uint64_t max64 = UINT64_MAX;
  const double frac = 3.7;
  struct Case {
    std::string what, expect;
    std::function<void(const std::string&)> damage;
  };
  const std::vector<Case> cases = {
      {"step -5", "step = -5 is out of range",
       [&](const std::string& f) { set_train_attr(f, "step", H5T_NATIVE_INT64, &minus5); }},
      {"step 2^62", "out of range",
       [&](const std::string& f) { set_train_attr(f, "step", H5T_NATIVE_INT64, &big); }},
      {"step 2^64-1", "out of range",
       [&](const std::string& f) { set_train_attr(f, "step", H5T_NATIVE_UINT64, &max64); }},
      {"step 3.7", "step is not an integer",
       [&](const std::string& f) { set_train_attr(f, "step", H5T_NATIVE_DOUBLE, &frac); }},
      {"no step", "missing attribute step",
       [&](const std::string& f) { set_train_attr(f, "step", H5T_NATIVE_INT64, nullptr); }},
      {"NaN weight", "/model holds NaN",
       [&](const std::string& f) { set_array_value<float>(f, "/model/weights", 5, NAN); }},
      {"Inf momentum", "/train/momentum holds NaN or infinite",
       [&](const std::string& f) { set_array_value<float>(f, "/train/momentum", 7, INFINITY); }},
      {"chain value 2", "persistent chains are binary",
       [&](const std::string& f) { set_array_value<uint8_t>(f, "/train/chains", 3, 2); }},
  };
  for (const Case& c : cases) {
    const std::string f = tmp / "damaged.h5";
    fs::copy_file(good, f, fs::copy_options::overwrite_existing);
    c.damage(f);
    RunResult r = run(rbm_dist(2, "--data " + data + " --resume " + f + " --epochs 2"), 30);
    EXPECT_EQ(r.code, exit_code::usage) << c.what << ": " << r.err;
    EXPECT_EQ(count_lines_starting(r.err, "rbm_dist:"), 1) << c.what << ": " << r.err;
    EXPECT_NE(r.err.find(f), std::string::npos) << c.what << ": names the file: " << r.err;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.what << ": " << r.err;
  }
}

// ---------------------------------------------------------------------------
// A model that cannot fit: our one line, exit 1, before anything is touched.
// ---------------------------------------------------------------------------
TEST(Memory, ModelTooLargeIsOneLineExit1) {
  TempDir tmp;
  const std::string data = tmp / "bars.h5";
  write_bars(data, 480, 0);
  RunResult r = run(rbm_dist(2, "--data " + data + " --hidden 100000000 --checkpoint " +
                                    tmp / "m.h5"),
                    60);
  EXPECT_EQ(r.code, exit_code::runtime) << r.err;
  EXPECT_EQ(count_lines_starting(r.err, "rbm_dist:"), 1) << r.err;
  EXPECT_NE(r.err.find("MB for a 64x100000000 model: out of memory"), std::string::npos) << r.err;
}

// ---------------------------------------------------------------------------
// A dead rank is noticed without PIDs. The ranks of a node share a robust mutex per
// rank (node_shared.hpp, liveness). Checked here in the condition that broke the PID
// test: the holder lives in its OWN PID namespace (its PID means nothing to us), is
// stopped (not dead), then killed. (End to end across PID namespaces cannot run here:
// Open MPI 4.1.4's own shared memory, vader and osc/sm, segfaults when ranks are in
// different PID namespaces — measured.)
// ---------------------------------------------------------------------------
TEST(DeadRank, LivenessAcrossPidNamespacesAndStops) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (unshare CLONE_NEWPID)";
  auto* m = static_cast<pthread_mutex_t*>(mmap(nullptr, sizeof(pthread_mutex_t),
                                               PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                                               -1, 0));
  ASSERT_NE(m, MAP_FAILED);
  liveness::init(m);
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t outer = fork();  // outer -> unshare(NEWPID) -> inner (pid 1 of a new namespace)
  if (outer == 0) {
    if (unshare(CLONE_NEWPID) != 0) _exit(3);
    const pid_t inner = fork();
    if (inner == 0) {
      liveness::hold(m);
      char c = 'x';
      if (write(ready[1], &c, 1) != 1) _exit(4);
      for (;;) pause();
    }
    int st = 0;
    waitpid(inner, &st, 0);
    _exit(0);
  }
  char c = 0;
  ASSERT_EQ(read(ready[0], &c, 1), 1) << "the holder did not start";
  EXPECT_FALSE(liveness::died(m)) << "a live holder in another PID namespace";
  // The holder's pid as seen from here (the only child of `outer`).
  RunResult child = run("pgrep -P " + std::to_string(outer), 5);
  const pid_t holder = static_cast<pid_t>(std::stoi(child.out));
  kill(holder, SIGSTOP);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_FALSE(liveness::died(m)) << "a stopped holder is not dead";
  kill(holder, SIGKILL);
  waitpid(outer, nullptr, 0);
  EXPECT_TRUE(liveness::died(m)) << "a killed holder";
  munmap(m, sizeof(pthread_mutex_t));
}

// A rank that is stopped for a while (SIGSTOP, a debugger, a swapped-out node) does not
// end the job; a killed one ends it within seconds, naming it.
TEST(DeadRank, StoppedRankSurvivesKilledRankEndsTheJob) {
  TempDir tmp;
  const std::string data = tmp / "bars.h5";
  write_bars(data, 3000, 0);
  const std::string ck = tmp / "stop.h5";
  Background job(rbm_dist(3, "--data " + data + " --hidden 32 --batch-size 30 --epochs 100000"
                                 " --checkpoint " + ck));
  ASSERT_TRUE(wait_for_file(ck, 60)) << "the job did not start";
  RunResult pids = run("pgrep -f '^" + bin("rbm_dist") + " .*stop.h5'", 10);
  std::istringstream in(pids.out);
  std::vector<int> ranks;
  for (std::string p; in >> p;) ranks.push_back(std::stoi(p));
  ASSERT_EQ(ranks.size(), 3u) << pids.out;
  kill(ranks[2], SIGSTOP);
  std::this_thread::sleep_for(std::chrono::seconds(3));  // six liveness checks
  kill(ranks[2], SIGCONT);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(kill(ranks[0], 0), 0) << "the job must survive a stopped rank";
  const auto t0 = std::chrono::steady_clock::now();
  kill(ranks[1], SIGKILL);
  const int code = job.wait(30);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(code, -1) << "the job hung";
  EXPECT_NE(code, 0);
  EXPECT_LT(secs, 10.0) << "the job must end within seconds";
}
