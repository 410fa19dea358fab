// Hostile HDF5 inputs for every reader (rbm_dist under real mpirun, rbm_eval, the
// library): files truncated or corrupted by the test, datasets that declare far more
// than the file stores (crafted with the HDF5 C API), a group or a broken link where a
// dataset belongs, and FIFOs made with mkfifo — as the data file itself, behind an
// HDF5 external link, or as a dataset's external raw file. Each must be one line and
// exit 2, naming the file, within seconds (a FIFO used to hang every rank).
#include <gtest/gtest.h>
#include <hdf5.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "rbm/checkpoint.hpp"
#include "rbm/dataset.hpp"
#include "rbm/errors.hpp"
#include "rbm/h5.hpp"
#include "test_util.hpp"

using namespace rbm;
using rbm::test::bin;
using rbm::test::mpirun;
using rbm::test::run;
using rbm::test::RunResult;
using rbm::test::TempDir;
namespace fs = std::filesystem;

namespace {

std::string rbm_dist(int np, const std::string& args) {
  return (np ? mpirun(np) : std::string()) + bin("rbm_dist") + " --progress never " + args;
}
std::string rbm_eval(const std::string& args) { return bin("rbm_eval") + " " + args; }

// Exit 2, not timed out, and exactly one line of ours ("<prog>: ...", mpirun's own box
// aside) that holds every needle.
::testing::AssertionResult refused(const RunResult& r, const std::string& prog,
                                   const std::vector<std::string>& needles) {
  std::string ours;
  int n = 0;
  std::istringstream in(r.err);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(prog + ": ", 0) == 0) ours = line, ++n;
  auto fail = [&] {
    return ::testing::AssertionFailure() << "exit " << r.code << (r.timed_out ? " (TIMED OUT)" : "")
                                         << " after " << r.seconds << " s, stderr:\n" << r.err;
  };
  if (r.timed_out) return fail() << "\nhung";
  if (r.code != exit_code::usage) return fail() << "\nexpected exit 2";
  if (n != 1) return fail() << "\nexpected exactly one line starting '" << prog << ": '";
  for (const std::string& s : needles)
    if (ours.find(s) == std::string::npos) return fail() << "\nthe line does not hold: " << s;
  return ::testing::AssertionSuccess();
}

// The message of the UsageError `f` throws ("" and a test failure if it does not).
template <typename F>
std::string usage_error(F&& f) {
  try {
    f();
  } catch (const UsageError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a UsageError: " << e.what();
    return "";
  }
  ADD_FAILURE() << "no error";
  return "";
}

void write_model_file(const std::string& path, size_t V, size_t H) {
  ParamBuffer pb(V, H);
  for (size_t i = 0; i < pb.data.size(); ++i) pb.data[i] = 0.01f * static_cast<float>(i % 7);
  write_checkpoint(path, pb.view, nullptr);
}

// Overwrites `count` bytes at `at` with 0x55.
void scribble(const std::string& path, uint64_t at, size_t count) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(at));
  const std::string junk(count, '\x55');
  f.write(junk.data(), static_cast<std::streamsize>(count));
}

// File address and size of the chunk of `dset` in `file` whose first row is `row`.
std::pair<haddr_t, hsize_t> chunk_at(const std::string& file, const std::string& dset, hsize_t row) {
  hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, dset.c_str(), H5P_DEFAULT);
  hsize_t offset[2] = {row, 0}, size = 0;
  haddr_t addr = HADDR_UNDEF;
  unsigned mask = 0;
  EXPECT_GE(H5Dget_chunk_info_by_coord(d, offset, &mask, &addr, &size), 0);
  H5Dclose(d);
  H5Fclose(f);
  return {addr, size};
}

// A uint8 [rows, cols] dataset at `path` created with `dcpl`, of which nothing is written.
void create_unwritten(hid_t f, const char* path, hsize_t rows, hsize_t cols, hid_t dcpl) {
  hid_t g = H5Gcreate2(f, "/train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Gclose(g);
  hsize_t dims[2] = {rows, cols};
  hid_t space = H5Screate_simple(2, dims, nullptr);
  hid_t d = H5Dcreate2(f, path, H5T_NATIVE_UINT8, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  EXPECT_GE(d, 0);
  H5Dclose(d);
  H5Sclose(space);
}

}  // namespace

// ---- damaged files ---------------------------------------------------------------------

// A file cut in half: HDF5's innermost message ("truncated file: eof = <bytes> ...
// stored_eof = <bytes>") is what we print, not the outer "unable to open file" — for the
// library, rbm_eval and every rank of rbm_dist.
TEST(InputFiles, TruncatedFileGivesTheInnermostCause) {
  TempDir tmp;
  const std::string data = tmp / "cut.h5", model = tmp / "m.h5";
  test::write_pattern_h5(data, 2000, 50, 200);
  write_model_file(model, 50, 4);
  const auto full = fs::file_size(data), half = full / 2;
  fs::resize_file(data, half);
  const std::string msg = usage_error([&] { inspect_dataset(data, schema::train_images); });
  EXPECT_NE(msg.find(data + ": "), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated file: eof = " + std::to_string(half)), std::string::npos) << msg;
  EXPECT_NE(msg.find("stored_eof = " + std::to_string(full)), std::string::npos) << msg;
  EXPECT_TRUE(refused(run(rbm_dist(2, "--data " + data + " --checkpoint " + (tmp / "o.h5")), 60),
                      "rbm_dist", {data, "truncated file: eof = " + std::to_string(half)}));
  EXPECT_TRUE(refused(run(rbm_eval("pseudo " + model + " " + data), 60), "rbm_eval",
                      {data, "truncated file"}));
  // A truncated model: the same, naming the model.
  fs::resize_file(model, fs::file_size(model) / 2);
  EXPECT_TRUE(refused(run(rbm_eval("filters " + model + " --out " + (tmp / "f.png")), 60),
                      "rbm_eval", {model, "truncated file"}));
}

// Scribbled-over deflate data in one chunk: a read error is bad input (exit 2) naming
// the file, from the library and from rbm_dist's ranks (whose shards both touch it).
TEST(InputFiles, CorruptChunkIsBadInput) {
  TempDir tmp;
  const std::string data = tmp / "bad.h5";
  test::write_pattern_h5(data, 2000, 50);
  const auto [addr, size] = chunk_at(data, schema::train_images, 0);
  ASSERT_NE(addr, HADDR_UNDEF);
  scribble(data, addr + size / 2, 64);
  const std::string msg = usage_error([&] { read_all(data, schema::train_images); });
  EXPECT_NE(msg.find(data + ": cannot read /train/images"), std::string::npos) << msg;
  RunResult r = run(rbm_dist(2, "--data " + data + " --checkpoint " + (tmp / "o.h5")), 60);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.code, exit_code::usage) << r.err;
  EXPECT_NE(r.err.find(data + ": cannot read /train/images"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp / "o.h5"));
}

// --train-path naming a group, a soft link to nowhere, an external link to a missing
// file: usage errors naming the file and the path (were exit 1 "internal" errors).
TEST(InputFiles, GroupAndBrokenLinksAreBadInput) {
  TempDir tmp;
  const std::string data = tmp / "links.h5";
  test::write_pattern_h5(data, 100, 16);
  {
    hid_t f = H5Fopen(data.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    ASSERT_GE(H5Lcreate_soft("/nowhere/images", f, "/train/dangling", H5P_DEFAULT, H5P_DEFAULT), 0);
    ASSERT_GE(H5Lcreate_external("missing.h5", "/train/images", f, "/train/elsewhere", H5P_DEFAULT,
                                 H5P_DEFAULT), 0);
    H5Fclose(f);
  }
  std::string msg = usage_error([&] { inspect_dataset(data, "/train"); });
  EXPECT_NE(msg.find(data + ": /train is a group"), std::string::npos) << msg;
  msg = usage_error([&] { inspect_dataset(data, "/train/dangling"); });
  EXPECT_NE(msg.find(data + ": cannot open /train/dangling"), std::string::npos) << msg;
  msg = usage_error([&] { inspect_dataset(data, "/train/elsewhere"); });
  EXPECT_NE(msg.find(data + ": cannot open /train/elsewhere"), std::string::npos) << msg;
  for (const std::string path : {"/train", "/train/dangling", "/train/elsewhere"})
    EXPECT_TRUE(refused(run(rbm_dist(2, "--data " + data + " --train-path " + path +
                                            " --checkpoint " + (tmp / "o.h5")),
                            60),
                        "rbm_dist", {data, path}));
}

// ---- datasets that declare more than the file holds ---------------------------------------

// A 2-3 KB file declaring /train/images as 10^9 x 784 (chunked, nothing written): each
// rank used to ask for 392 GB. Now: exit 2 before any rank allocates, naming the file
// and both sizes. Also a dataset with only 2 of its 4 chunks written.
TEST(InputFiles, ChunkedDatasetLargerThanItsFile) {
  TempDir tmp;
  const std::string big = tmp / "big.h5", part = tmp / "part.h5";
  {
    hid_t f = H5Fcreate(big.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hsize_t chunk[2] = {1024, 784};
    H5Pset_chunk(dcpl, 2, chunk);
    H5Pset_deflate(dcpl, 4);
    create_unwritten(f, "/train/images", 1000000000, 784, dcpl);
    H5Pclose(dcpl);
    H5Fclose(f);
  }
  ASSERT_LT(fs::file_size(big), 8192u);
  const std::string msg = usage_error([&] { inspect_dataset(big, schema::train_images); });
  for (const std::string& s : {big + ": /train/images declares [1000000000, 784] = 784.0 GB",
                              std::string("stores 0 of them")})
    EXPECT_NE(msg.find(s), std::string::npos) << msg;
  RunResult r = run(rbm_dist(2, "--data " + big + " --checkpoint " + (tmp / "o.h5")), 60);
  EXPECT_TRUE(refused(r, "rbm_dist", {big, "784.0 GB", "stores 0 of them", "KB file"}));
  write_model_file(tmp / "m.h5", 784, 4);
  EXPECT_TRUE(refused(run(rbm_eval("pseudo " + (tmp / "m.h5") + " " + big), 60), "rbm_eval",
                      {big, "784.0 GB"}));

  {  // 4096 rows in 4 chunks, rows 0..2047 written
    hid_t f = H5Fcreate(part.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hsize_t chunk[2] = {1024, 16};
    H5Pset_chunk(dcpl, 2, chunk);
    create_unwritten(f, "/train/images", 4096, 16, dcpl);
    hid_t d = H5Dopen2(f, "/train/images", H5P_DEFAULT);
    hid_t fs_ = H5Dget_space(d);
    hsize_t start[2] = {0, 0}, count[2] = {2048, 16};
    H5Sselect_hyperslab(fs_, H5S_SELECT_SET, start, nullptr, count, nullptr);
    hid_t ms = H5Screate_simple(2, count, nullptr);
    std::vector<uint8_t> px(2048 * 16, 7);
    ASSERT_GE(H5Dwrite(d, H5T_NATIVE_UINT8, ms, fs_, H5P_DEFAULT, px.data()), 0);
    H5Sclose(ms);
    H5Sclose(fs_);
    H5Dclose(d);
    H5Pclose(dcpl);
    H5Fclose(f);
  }
  EXPECT_NE(usage_error([&] { inspect_dataset(part, schema::train_images); })
                .find("in 4 chunks but the file stores 2 of them"),
            std::string::npos);
}

// Contiguous storage never allocated (H5D_ALLOC_TIME_LATE, nothing written): reading it
// would return 784 MB of fill values. And raw data in an external flat file that is
// shorter than declared, or a FIFO.
TEST(InputFiles, ContiguousAndExternalStorageLargerThanStored) {
  TempDir tmp;
  const std::string late = tmp / "late.h5", ext = tmp / "ext.h5", raw = tmp / "raw.bin";
  {
    hid_t f = H5Fcreate(late.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_layout(dcpl, H5D_CONTIGUOUS);
    H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_LATE);
    create_unwritten(f, "/train/images", 1000000, 784, dcpl);
    H5Pclose(dcpl);
    H5Fclose(f);
  }
  std::string msg = usage_error([&] { inspect_dataset(late, schema::train_images); });
  EXPECT_NE(msg.find("declares [1000000, 784] = 784.0 MB but the file stores 0 bytes"),
            std::string::npos) << msg;

  {
    hid_t f = H5Fcreate(ext.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_external(dcpl, raw.c_str(), 0, 1000 * 16);
    create_unwritten(f, "/train/images", 1000, 16, dcpl);
    H5Pclose(dcpl);
    H5Fclose(f);
  }
  std::ofstream(raw, std::ios::binary) << std::string(500 * 16, '\x10');
  msg = usage_error([&] { inspect_dataset(ext, schema::train_images); });
  EXPECT_NE(msg.find("external files hold only 8.0 KB"), std::string::npos) << msg;
  std::ofstream(raw, std::ios::binary) << std::string(1000 * 16, '\x10');
  EXPECT_EQ(read_all(ext, schema::train_images).rows(), 1000u);  // complete: readable

  fs::remove(raw);
  ASSERT_EQ(mkfifo(raw.c_str(), 0600), 0);
  write_model_file(tmp / "m.h5", 16, 4);
  EXPECT_TRUE(refused(run(rbm_eval("pseudo " + (tmp / "m.h5") + " " + ext + " --split train"), 30),
                      "rbm_eval", {ext, raw, "FIFO"}));
  EXPECT_TRUE(refused(run(rbm_dist(2, "--data " + ext + " --checkpoint " + (tmp / "o.h5")), 30),
                      "rbm_dist", {raw, "FIFO"}));
}

// ---- FIFOs -----------------------------------------------------------------------------

// A FIFO as --data, as --resume, as an rbm_eval model or dataset: refused up front
// (open() on a FIFO waits for a writer: every rank used to hang).
TEST(InputFiles, FifoIsRefusedUpFront) {
  TempDir tmp;
  const std::string fifo = tmp / "data.h5", good = tmp / "good.h5", model = tmp / "m.h5";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  test::write_pattern_h5(good, 200, 16, 50);
  write_model_file(model, 16, 4);
  const std::string ck = " --checkpoint " + (tmp / "o.h5");
  EXPECT_TRUE(refused(run(rbm_dist(2, "--data " + fifo + ck), 30), "rbm_dist", {fifo, "FIFO"}));
  EXPECT_TRUE(refused(run(rbm_dist(2, "--data " + good + " --resume " + fifo + ck), 30),
                      "rbm_dist", {fifo, "FIFO"}));
  EXPECT_TRUE(refused(run(rbm_eval("pseudo " + model + " " + fifo), 30), "rbm_eval",
                      {fifo, "FIFO"}));
  EXPECT_TRUE(refused(run(rbm_eval("filters " + fifo + " --out " + (tmp / "f.png")), 30),
                      "rbm_eval", {fifo, "FIFO"}));
  EXPECT_TRUE(refused(run(rbm_eval("loglik " + model + " " + fifo), 30), "rbm_eval",
                      {fifo, "FIFO"}));
}

// An HDF5 external link whose target is a FIFO — as the dataset itself, or as a group
// on the way to it: HDF5 would open() the FIFO while following the link. Refused with
// the link and the FIFO named.
TEST(InputFiles, ExternalLinkToFifoIsRefused) {
  TempDir tmp;
  const std::string data = tmp / "linked.h5", fifo = tmp / "fifo.h5", model = tmp / "m.h5";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  write_model_file(model, 16, 4);
  {
    hid_t f = H5Fcreate(data.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t g = H5Gcreate2(f, "/train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(g);
    // relative to the linking file's folder, as HDF5 resolves it
    ASSERT_GE(H5Lcreate_external("fifo.h5", "/train/images", f, "/train/images", H5P_DEFAULT,
                                 H5P_DEFAULT), 0);
    ASSERT_GE(H5Lcreate_external(fifo.c_str(), "/test", f, "/test", H5P_DEFAULT, H5P_DEFAULT), 0);
    H5Fclose(f);
  }
  const std::string ck = " --checkpoint " + (tmp / "o.h5");
  EXPECT_TRUE(refused(run(rbm_dist(2, "--data " + data + ck), 30), "rbm_dist",
                      {data, "external link to fifo.h5", "FIFO"}));
  EXPECT_TRUE(refused(run(rbm_dist(2, "--data " + data + " --train-path /test/images" + ck), 30),
                      "rbm_dist", {data, fifo, "FIFO"}));
  EXPECT_TRUE(refused(run(rbm_eval("pseudo " + model + " " + data + " --split train"), 30),
                      "rbm_eval", {data, "FIFO"}));
}

// ---- the monitor reads only what it uses ------------------------------------------------

TEST(InputFiles, ReadShardHeadReadsOnlyTheFirstRows) {
  TempDir tmp;
  const std::string path = tmp / "p.h5";
  test::write_pattern_h5(path, 1037, 13);
  for (size_t max_rows : {size_t{100}, size_t{2}, size_t{5000}}) {
    const size_t n = std::min<size_t>(max_rows, 1037);
    size_t total = 0;
    for (int r = 0; r < 3; ++r) {
      const Shard s = read_shard_head(path, schema::train_images, r, 3, max_rows);
      EXPECT_EQ(s.layout.n, n);
      for (size_t l = 0; l < s.rows(); ++l)
        for (size_t p = 0; p < 13; ++p)
          ASSERT_EQ(s.row(l)[p], test::pattern_pixel(s.layout.global_row(l), p));
      total += s.rows();
    }
    EXPECT_EQ(total, n);  // with 2 rows over 3 ranks, rank 2 holds none
  }
}

// /validation/images of 2048 rows whose second chunk (rows 1024..2047) is corrupt: the
// default --monitor-size 1000 never touches it, so training runs (it used to read all
// of /validation); a monitor of 2048 rows does read it and fails naming the file.
TEST(InputFiles, MonitorReadsOnlyMonitorSizeRows) {
  TempDir tmp;
  const std::string data = tmp / "d.h5";
  test::write_pattern_h5(data, 400, 16);
  {
    h5::Id f = h5::open_file(data, true);
    std::vector<uint8_t> px(2048 * 16);
    for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i * 7);
    h5::write_array<uint8_t>(f, schema::valid_images, px.data(), {2048, 16}, {1024, 4});
  }
  const auto [addr, size] = chunk_at(data, schema::valid_images, 1024);
  ASSERT_NE(addr, HADDR_UNDEF);
  scribble(data, addr + size / 2, 64);
  const std::string args = "--data " + data + " --hidden 8 --epochs 1 --batch-size 50 --checkpoint " +
                           (tmp / "o.h5");
  RunResult r = run(rbm_dist(2, args + " --monitor-size 1000"), 120);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("(gap"), std::string::npos) << r.out;  // the monitor ran
  r = run(rbm_dist(2, args + " --monitor-size 2048 --force"), 120);
  EXPECT_EQ(r.code, exit_code::usage) << r.err;
  EXPECT_NE(r.err.find(data + ": cannot read /validation/images"), std::string::npos) << r.err;
}
