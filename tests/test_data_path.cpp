// rbm_dist's data path and node layout under real mpirun: each rank reads only its
// share of the file (the kernel's byte count, checked independently with strace), the
// monitor rows are read once, the checkpoint records the node layout and a resume on
// another layout says it will not be bitwise, and the bucketed cross-node reduction
// (--overlap on) trains the same model as one MPI_Allreduce (--overlap off).
#include <hdf5.h>

#include <map>

#include "trainer_util.hpp"

using namespace trainertest;

namespace {
// Stored size of the largest chunk of a dataset (H5Dget_chunk_info, HDF5 >= 1.10.5).
uint64_t largest_chunk(const std::string& file, const std::string& path) {
  h5::Id f = h5::open_file(file);
  h5::Id d = h5::open_dataset(f, path, file);
  h5::Id space(H5Dget_space(d), H5Sclose);
  hsize_t n = 0;
  H5Dget_num_chunks(d, space, &n);
  uint64_t big = 0;
  for (hsize_t i = 0; i < n; ++i) {
    hsize_t size = 0;
    haddr_t addr = 0;
    unsigned mask = 0;
    H5Dget_chunk_info(d, space, i, nullptr, &mask, &addr, &size);
    big = std::max<uint64_t>(big, size);
  }
  return big;
}

// Random pixels (they hardly compress, so the stored bytes are real work), chunks of
// 256 rows, deflate 4: train [n, 784] and test [n_test, 784].
void write_noise(const std::string& path, size_t n, size_t n_test) {
  std::mt19937 gen(11);
  h5::Id f = h5::create_file(path);
  for (auto [where, rows] : {std::pair{schema::train_images, n}, std::pair{schema::test_images, n_test}}) {
    std::vector<uint8_t> px(rows * 784);
    for (auto& p : px) p = static_cast<uint8_t>(gen());
    h5::write_array(f, where, px.data(), {rows, 784}, {256, 4});
  }
}

struct ReadLine {
  double max_mb = -1, min_mb = -1, total_mb = -1, stored_mb = -1, monitor_mb = -1;
};
ReadLine parse_read_line(const std::string& out) {
  ReadLine r;
  std::smatch m;
  if (std::regex_search(out, m, std::regex("read from the file per rank: max ([0-9.]+) MB, min "
                                           "([0-9.]+) MB, total ([0-9.]+) MB \\(stored: ([0-9.]+) MB"))) {
    r.max_mb = std::stod(m[1]);
    r.min_mb = std::stod(m[2]);
    r.total_mb = std::stod(m[3]);
    r.stored_mb = std::stod(m[4]);
  }
  if (std::regex_search(out, m, std::regex("monitor [^:]+: [0-9]+ rows read by rank 0 \\(([0-9.]+) MB\\)")))
    r.monitor_mb = std::stod(m[1]);
  return r;
}
}  // namespace

// The measurement, now bounded: at P ranks the busiest rank reads at most 1/P of
// the stored dataset plus two chunks (the partial chunks at the ends of its block) plus
// HDF5's metadata (superblock, object headers, chunk B-tree: < 64 KiB here).
TEST(DataPath, EachRankReadsOnlyItsShare) {
  TempDir tmp;
  const std::string data = tmp / "bars.h5";
  write_noise(data, 12000, 5000);
  DatasetInfo info = inspect_dataset(data, schema::train_images);
  const double stored = static_cast<double>(info.stored_bytes);
  const double chunk = static_cast<double>(largest_chunk(data, schema::train_images));
  const double meta = 64 * 1024;
  ASSERT_GT(stored, 20 * chunk) << "the test needs many chunks";
  const bool have_strace = run("command -v strace").code == 0;
  for (int np : {1, 2, 3, 4}) {
    const std::string trace = tmp / ("trace" + std::to_string(np));
    // strace -ff -y: every read()/pread64() of every process, one file per process
    // (trace.PID, so no call is split by another's), with the path behind the fd.
    const std::string pre = have_strace && np > 1
                                ? "strace -ff -y -qq -e trace=read,pread64 -e signal=none -o " + trace + " "
                                : "";
    RunResult r = run(pre + rbm_dist(np, "--data " + data + " --hidden 8 --epochs 1 --monitor-size 300"
                                         " --force --checkpoint " + tmp / "m.h5"), 180);
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    ReadLine rl = parse_read_line(r.out);
    ASSERT_GT(rl.max_mb, 0) << "no bytes-read report in: " << r.out;
    EXPECT_NEAR(rl.stored_mb * 1e6, stored, 1e3);
    const double bound = stored / np + 2 * chunk + meta;
    EXPECT_LE(rl.max_mb * 1e6, bound + 1e3) << np << " ranks: " << r.out;
    EXPECT_LE(rl.total_mb * 1e6, stored + np * (2 * chunk + meta) + 1e3) << np << " ranks";
    EXPECT_GE(rl.total_mb * 1e6, stored * 0.99) << "every stored byte is read by some rank";
    // Monitor: 300 of 5000 test rows -> at most two chunks of /test/images, rank 0 only.
    EXPECT_GT(rl.monitor_mb, 0);
    EXPECT_LE(rl.monitor_mb * 1e6, 2 * largest_chunk(data, schema::test_images) + meta + 1e3);
    if (pre.empty()) continue;
    // Independently: the bytes each process really read from data.h5 (strace sums).
    std::map<std::string, double> per_pid;
    const std::regex re("^(read|pread64)\\([0-9]+<([^>]*)>.*\\) = ([0-9]+)$");
    for (const auto& e : fs::directory_iterator(tmp.path)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("trace" + std::to_string(np) + ".", 0) != 0) continue;
      std::ifstream in(e.path());
      for (std::string line; std::getline(in, line);) {
        std::smatch m;
        if (std::regex_match(line, m, re) && m[2] == fs::canonical(data).string())
          per_pid[name] += std::stod(m[3]);
      }
    }
    ASSERT_GE(per_pid.size(), static_cast<size_t>(np)) << "strace saw no reads of " << data;
    double mx = 0, sum = 0;
    for (const auto& [pid, bytes] : per_pid) {
      mx = std::max(mx, bytes);
      sum += bytes;
    }
    // strace also sees the set-up's metadata reads (dataset checks, both datasets'
    // headers) and rank 0's monitor rows: allow those on top of the bound.
    const double monitor = 2.0 * largest_chunk(data, schema::test_images);
    EXPECT_LE(mx, bound + monitor + meta) << np << " ranks (strace)";
    EXPECT_LE(sum, stored + np * (2 * chunk + 2 * meta) + monitor) << np << " ranks (strace)";
    std::printf("%d ranks: reported max %.3f MB total %.3f MB; strace max %.3f MB total %.3f MB; "
                "stored %.3f MB, chunk <= %.3f MB\n",
                np, rl.max_mb, rl.total_mb, mx / 1e6, sum / 1e6, stored / 1e6, chunk / 1e6);
  }
}

// The node layout is in the checkpoint; a resume on another layout says so; the same
// layout resumes silently.
TEST(DataPath, CheckpointRecordsTheNodeLayout) {
  TempDir tmp;
  const std::string data = tmp / "bars.h5";
  write_bars(data, 600, 0);
  const std::string ck = tmp / "m.h5";
  RunResult r = run(rbm_dist(4, "--data " + data + " --hidden 8 --epochs 1 --node-size 2"
                                " --checkpoint " + ck));
  ASSERT_EQ(r.code, 0) << r.err;
  TrainState st = read_train_state(ck, 64, 8);
  EXPECT_EQ(st.ranks, 4);
  EXPECT_EQ(st.nodes, 2);
  EXPECT_EQ(st.ranks_per_node, 2);
  EXPECT_EQ(st.layout, "2+2");
  RunResult same = run(rbm_dist(4, "--data " + data + " --resume " + ck + " --epochs 2"));
  ASSERT_EQ(same.code, 0) << same.err;
  EXPECT_EQ(same.out.find("not bitwise"), std::string::npos) << same.out;
  RunResult other = run(rbm_dist(4, "--data " + data + " --resume " + ck + " --epochs 3 --node-size 0"));
  ASSERT_EQ(other.code, 0) << other.err;
  EXPECT_NE(other.out.find("was written by 4 ranks on 2 nodes (2+2), this job has 4 ranks on 1 "
                           "node (4): training continues, but not bitwise"),
            std::string::npos)
      << other.out;
  st = read_train_state(ck, 64, 8);
  EXPECT_EQ(st.layout, "4");
  RunResult fewer = run(rbm_dist(3, "--data " + data + " --resume " + ck + " --epochs 4"));
  ASSERT_EQ(fewer.code, 0) << fewer.err;
  EXPECT_NE(fewer.out.find("this job has 3 ranks on 1 node (3)"), std::string::npos) << fewer.out;
}

// More ranks than virtual shards: one line, exit 2, naming --shards.
TEST(DataPath, FewerShardsThanRanksIsAUsageError) {
  TempDir tmp;
  const std::string data = tmp / "bars.h5";
  write_bars(data, 600, 0);
  RunResult r = run(rbm_dist(4, "--data " + data + " --shards 3 --checkpoint " + tmp / "m.h5"));
  EXPECT_EQ(r.code, exit_code::usage) << r.err;
  EXPECT_EQ(count_lines_starting(r.err, "rbm_dist:"), 1) << r.err;
  EXPECT_NE(r.err.find("--shards 3: fewer virtual shards than the job's 4 ranks"), std::string::npos)
      << r.err;
}

// Several "nodes" (--node-size 1: every rank its own model copy and the cross-node path):
// the bucketed MPI_Iallreduce (--overlap on, the default) gives bitwise the same model on
// a second run (fixed summation order), and the model of one MPI_Allreduce after the step
// (--overlap off) within the rank-invariance tolerance (only the blocked product's
// rounding may differ); the run reports the communication it did not hide.
TEST(DataPath, OverlappedReductionIsReproducibleAndAgrees) {
  TempDir tmp;
  const std::string data = tmp / "bars.h5";
  write_bars(data, 1001, 0, 28);  // 784 x 40: 31,360 weights -> one bucket per ~41 rows
  auto train = [&](const std::string& name, const std::string& extra) {
    const std::string out = tmp / name;
    RunResult r = run(rbm_dist(3, "--data " + data + " --hidden 200 --epochs 1 --batch-size 96"
                                  " --node-size 1 --checkpoint " + out + extra), 180);
    EXPECT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("cross-node reduction: "), std::string::npos) << r.out;
    return params_of(out);
  };
  const std::vector<float> on1 = train("on1.h5", ""), on2 = train("on2.h5", " --overlap on");
  const std::vector<float> off = train("off.h5", " --overlap off");
  EXPECT_EQ(on1, on2) << "the overlapped reduction must be bitwise reproducible";
  double maxdiff = 0;
  for (size_t k = 0; k < off.size(); ++k)
    maxdiff = std::max(maxdiff, static_cast<double>(std::abs(on1[k] - off[k])));
  EXPECT_LE(maxdiff, 1e-5);
  std::printf("overlap on vs off: max |diff| %.3g\n", maxdiff);
}
