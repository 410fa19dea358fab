// mnist2h5 on bad input: every case gives exit 2, one line on stderr naming the file,
// and leaves no output or temporary file behind (fixture: idx_util.hpp).
#include <sys/stat.h>

#include "idx_util.hpp"

using namespace idxtest;
// ---- IdxReject: bad input, one line, nothing left behind ------------------------------

TEST_F(IdxReject, MissingFileNamesTheNamesLookedFor) {
  fs::remove(test_labels);
  RunResult r = convert();
  EXPECT_TRUE(rejected(r, in, out));
  EXPECT_TRUE(contains(r.err, "t10k-labels-idx1-ubyte")) << r.err;
  EXPECT_TRUE(contains(r.err, "t10k-labels.idx1-ubyte")) << r.err;
}

TEST_F(IdxReject, MissingFileGivenByOption) {
  RunResult r = run(bin("mnist2h5") + " --train-images " + quote(in + "/nope") +
                    " --train-labels " + quote(train_labels) + " " + quote(h5));
  EXPECT_TRUE(rejected(r, in + "/nope", out));
}

TEST_F(IdxReject, LabelFileGivenAsImages) {
  write_idx(train_images, {kTrain}, train.labels, false);
  RunResult r = convert();
  EXPECT_TRUE(rejected(r, train_images, out));
  EXPECT_TRUE(contains(r.err, "magic 0x00000801 is an IDX1 label file, expected 0x00000803"))
      << r.err;
}

TEST_F(IdxReject, ImageFileGivenAsLabels) {
  fs::remove(test_labels);
  write_idx(test_labels, {kTest, kRows, kCols}, test.pixels, false);
  RunResult r = convert();
  EXPECT_TRUE(rejected(r, test_labels, out));
  EXPECT_TRUE(contains(r.err, "0x00000803")) << r.err;
  EXPECT_TRUE(contains(r.err, "0x00000801")) << r.err;
}

TEST_F(IdxReject, NonUbyteTypeCode) {
  std::string bytes = read_file(train_images);
  bytes[2] = 0x0D;  // float32
  write_bytes(train_images, bytes);
  RunResult r = convert();
  EXPECT_TRUE(rejected(r, train_images, out));
  EXPECT_TRUE(contains(r.err, "0x0D")) << r.err;
}

TEST_F(IdxReject, NotAnIdxFile) {
  write_bytes(train_images, "P5\n4 5\n255\n" + std::string(kDim, 'x'));
  EXPECT_TRUE(rejected(convert(), train_images, out));
}

TEST_F(IdxReject, ImageAndLabelCountsDiffer) {
  fs::remove(train_labels);
  const std::string labels = in + "/train-labels-idx1-ubyte";
  write_idx(labels, {kTrain - 1}, rows_of(train.labels, 0, kTrain - 1, 1), false);
  RunResult r = convert();
  EXPECT_TRUE(rejected(r, train_images, out));
  EXPECT_TRUE(contains(r.err, labels)) << r.err;
  EXPECT_TRUE(contains(r.err, std::to_string(kTrain))) << r.err;
  EXPECT_TRUE(contains(r.err, std::to_string(kTrain - 1))) << r.err;
}

TEST_F(IdxReject, TruncatedRawFile) {
  fs::resize_file(train_images, fs::file_size(train_images) - 3);
  RunResult r = convert();
  EXPECT_TRUE(rejected(r, train_images, out));
  EXPECT_TRUE(contains(r.err, "truncated")) << r.err;
  // The header's promise and what the file holds, both from our own writing.
  EXPECT_TRUE(contains(r.err, std::to_string(kTrain * kDim))) << r.err;
  EXPECT_TRUE(contains(r.err, std::to_string(kTrain * kDim - 3))) << r.err;
}

TEST_F(IdxReject, TruncatedHeader) {
  write_bytes(train_images, read_file(train_images).substr(0, 9));
  EXPECT_TRUE(rejected(convert(), train_images, out));
}

TEST_F(IdxReject, TrailingBytes) {
  write_bytes(test_labels, read_file(test_labels) + "junk");
  RunResult r = convert();
  EXPECT_TRUE(rejected(r, test_labels, out));
  EXPECT_TRUE(contains(r.err, "4 extra bytes")) << r.err;
}

TEST_F(IdxReject, CorruptGzipStream) {
  std::string z = read_file(test_images);
  ASSERT_GT(z.size(), 40u);
  for (size_t i = z.size() / 2; i < z.size() / 2 + 4; ++i) z[i] = static_cast<char>(z[i] ^ 0x5A);
  write_bytes(test_images, z);
  RunResult r = convert();
  EXPECT_TRUE(rejected(r, test_images, out));
  EXPECT_TRUE(contains(r.err, "gzip")) << r.err;
}

TEST_F(IdxReject, CorruptGzipChecksum) {
  // The last 8 bytes of a gzip file are CRC-32 and length: flip one CRC bit.
  std::string z = read_file(test_images);
  z[z.size() - 8] = static_cast<char>(z[z.size() - 8] ^ 1);
  write_bytes(test_images, z);
  RunResult r = convert();
  EXPECT_TRUE(rejected(r, test_images, out));
  EXPECT_TRUE(contains(r.err, "gzip")) << r.err;
}

TEST_F(IdxReject, TruncatedGzipStream) {
  write_bytes(train_labels, read_file(train_labels).substr(0, fs::file_size(train_labels) / 2));
  RunResult r = convert();
  EXPECT_TRUE(rejected(r, train_labels, out));
  EXPECT_TRUE(contains(r.err, "gzip")) << r.err;
}

TEST_F(IdxReject, ZeroColumns) {
  write_idx(train_images, {kTrain, kRows, 0}, {}, false);
  EXPECT_TRUE(rejected(convert(), train_images, out));
}

TEST_F(IdxReject, TrainAndTestImageSizesDiffer) {
  // Same bytes per image (20), different shape: 5x4 is not 4x5.
  fs::remove(test_images);
  write_idx(test_images, {kTest, kCols, kRows}, test.pixels, true);
  RunResult r = convert();
  EXPECT_TRUE(rejected(r, test_images, out));
  EXPECT_TRUE(contains(r.err, train_images)) << r.err;
}

TEST_F(IdxReject, ValidationSizeNotSmallerThanTrainingSet) {
  RunResult r = convert("--validation-size " + std::to_string(kTrain));
  EXPECT_TRUE(rejected(r, "--validation-size", out));
  EXPECT_TRUE(contains(r.err, train_images)) << r.err;
}

TEST_F(IdxReject, IncompleteFilePairsAndBadValues) {
  const std::string m = bin("mnist2h5");
  EXPECT_TRUE(rejected(run(m + " --train-images " + quote(train_images) + " " + quote(h5)),
                       "--train-labels", out));
  EXPECT_TRUE(
      rejected(run(m + " --train-images " + quote(train_images) + " --train-labels " +
                   quote(train_labels) + " --test-images " + quote(test_images) + " " + quote(h5)),
               "--test-labels", out));
  EXPECT_TRUE(rejected(run(m + " " + quote(in) + " --train-images " + quote(train_images) +
                           " --train-labels " + quote(train_labels) + " " + quote(h5)),
                       in, out));
  EXPECT_TRUE(rejected(convert("--compression 10"), "--compression", out));
  EXPECT_TRUE(rejected(convert("--chunk-rows 0"), "--chunk-rows", out));
  EXPECT_TRUE(rejected(convert("--validation-size -1"), "--validation-size", out));
  EXPECT_TRUE(rejected(run(m + " " + quote(in) + " " + quote(tmp / "no/such/dir/x.h5")),
                       tmp / "no/such/dir", out));
}

TEST_F(IdxReject, ExistingOutputNeedsForceAndFailedForceKeepsIt) {
  ASSERT_EQ(convert().code, 0);
  const std::string old = read_file(h5);

  // Without --force: refused, file untouched.
  RunResult r = convert("--validation-size 5");
  EXPECT_TRUE(rejected(r, h5, out, {"data.h5"}));
  EXPECT_TRUE(contains(r.err, "--force")) << r.err;
  EXPECT_EQ(read_file(h5), old);

  // --force with a bad input: refused, the old file bit-identical, no temp file.
  const std::string good = read_file(train_images);
  fs::resize_file(train_images, fs::file_size(train_images) - 1);
  EXPECT_TRUE(rejected(convert("--force --validation-size 5"), train_images, out, {"data.h5"}));
  EXPECT_EQ(read_file(h5), old);

  // --force with good input: replaced by the new conversion.
  write_bytes(train_images, good);
  r = convert("--force --validation-size 5");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(entries(out), std::vector<std::string>{"data.h5"});
  expect_rows("/train", train, 0, kTrain - 5);
  expect_rows("/validation", train, kTrain - 5, 5);
}


// ---- inputs that used to hang or balloon ------------------------------------------------

// A FIFO as an input would block open() until some writer appears: refused at once,
// by name and in a folder (where only regular files count as candidates).
TEST_F(IdxReject, FifoInputIsRefusedWithoutWaiting) {
  const std::string fifo = in + "/images.fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  RunResult r = run(bin("mnist2h5") + " --train-images " + quote(fifo) + " --train-labels " +
                        quote(train_labels) + " " + quote(h5),
                    30);
  EXPECT_FALSE(r.timed_out);
  EXPECT_TRUE(rejected(r, fifo, out));
  EXPECT_TRUE(contains(r.err, "FIFO")) << r.err;

  fs::remove(test_labels);
  ASSERT_EQ(mkfifo(test_labels.c_str(), 0600), 0);  // t10k-labels-idx1-ubyte is now a pipe
  r = run(bin("mnist2h5") + " " + quote(in) + " " + quote(h5), 30);
  EXPECT_FALSE(r.timed_out);
  EXPECT_TRUE(rejected(r, test_labels, out));
  EXPECT_TRUE(contains(r.err, "FIFO")) << r.err;
}

namespace {
// One gzip member holding `data` (zlib, windowBits 31 = gzip wrapper).
std::string gzip_member(const std::string& data) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 9, Z_DEFLATED, 31, 9, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&z, data.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// A ~2 MB gzip (concatenated members, which gzip readers join) whose IDX3 header
// declares [n, 28, 28] and which inflates to `zero_mib` MiB of zeros after it.
void write_gzip_bomb(const std::string& path, uint32_t n, size_t zero_mib) {
  std::string head = {0, 0, 0x08, 3};
  for (uint32_t d : {n, 28u, 28u})
    for (int s = 24; s >= 0; s -= 8) head.push_back(static_cast<char>((d >> s) & 0xff));
  const std::string block = gzip_member(std::string(size_t{64} << 20, '\0'));  // 64 MiB
  std::ofstream f(path, std::ios::binary);
  f << gzip_member(head);
  for (size_t i = 0; i < zero_mib / 64; ++i) f << block;
}
}  // namespace

// A 2 MB gzip that inflates to 2 GiB under a plausible header (3,000,000 images of
// 28x28 = 2.35 GB): the data is counted in a first pass that keeps nothing, so the
// "truncated" error comes with a peak RSS of a few MB (it was 4.4 GB: the data was
// kept, then copied into a buffer of the declared size). And 2 GiB after a header of
// 1000 images: "extra bytes" after at most 64 MiB of inflating, same small RSS.
#if defined(__SANITIZE_ADDRESS__)
constexpr long kBombRssKb = 512 * 1024;  // ASan: shadow memory and its 256 MB quarantine
#else
constexpr long kBombRssKb = 100 * 1024;
#endif
TEST_F(IdxReject, GzipBombKeepsMemoryBounded) {
  write_gzip_bomb(train_images + ".gz", 3000000, 2048);
  fs::remove(train_images);
  ASSERT_LT(fs::file_size(train_images + ".gz"), 4u << 20);
  RunResult r = run("exec " + bin("mnist2h5") + " " + quote(in) + " " + quote(h5), 240);
  EXPECT_TRUE(rejected(r, train_images + ".gz", out));
  EXPECT_TRUE(contains(r.err, "truncated")) << r.err;
  EXPECT_TRUE(contains(r.err, "2352000000")) << r.err;  // the header's promise
  EXPECT_TRUE(contains(r.err, "2147483648")) << r.err;  // what the file holds
  EXPECT_LT(r.max_rss_kb, kBombRssKb) << "peak RSS " << r.max_rss_kb << " kB";

  write_gzip_bomb(train_images + ".gz", 1000, 2048);
  r = run("exec " + bin("mnist2h5") + " " + quote(in) + " " + quote(h5), 240);
  EXPECT_TRUE(rejected(r, train_images + ".gz", out));
  EXPECT_TRUE(contains(r.err, "more than 67108864 extra bytes")) << r.err;
  EXPECT_LT(r.max_rss_kb, kBombRssKb) << "peak RSS " << r.max_rss_kb << " kB";
}
