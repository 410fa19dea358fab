// mnist2h5 on bad input: every case gives exit 2, one line on stderr naming the file,
// and leaves no output or temporary file behind (fixture: idx_util.hpp).
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

