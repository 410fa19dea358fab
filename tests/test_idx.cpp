// IDX parsing and the mnist2h5 converter, checked against the bytes the test wrote:
//  * IdxRead:   rbm::read_idx on raw and gzip'd files, dims and bytes exact.
//  * IdxConvert: the real mnist2h5 on a small 4x5 set; every pixel and label of the
//               HDF5 file compared with the input, plus shapes, type, layout, attributes.
//  * IdxReject: every bad input gives exit 2, one line on stderr naming the file, and
//               leaves no output or temporary file behind.
//  * IdxFashionMnist: the full Fashion-MNIST package (skipped when not installed),
//               compared with the .gz files decoded here with zlib.
#include "idx_util.hpp"

using namespace idxtest;

// ---- IdxRead: the parser alone -------------------------------------------------------

TEST(IdxRead, RawImagesExact) {
  TempDir tmp;
  Images ref = pattern(7, 0);
  const std::string path = tmp / "img";
  write_idx(path, {7, kRows, kCols}, ref.pixels, false);
  rbm::IdxArray a = rbm::read_idx(path, 3, "images");
  EXPECT_EQ(a.dims, (std::vector<uint32_t>{7, kRows, kCols}));
  EXPECT_EQ(a.data, ref.pixels);
  EXPECT_EQ(a.count(), 7u);
  EXPECT_EQ(a.item_size(), kDim);
  EXPECT_EQ(a.path, path);
  EXPECT_FALSE(a.gzipped);
}

TEST(IdxRead, GzipImagesAndLabelsExact) {
  TempDir tmp;
  Images ref = pattern(9, 5);
  write_idx(tmp / "img.gz", {9, kRows, kCols}, ref.pixels, true);
  write_idx(tmp / "lab.gz", {9}, ref.labels, true);
  rbm::IdxArray img = rbm::read_idx(tmp / "img.gz", 3, "images");
  rbm::IdxArray lab = rbm::read_idx(tmp / "lab.gz", 1, "labels");
  EXPECT_TRUE(img.gzipped);
  EXPECT_EQ(img.dims, (std::vector<uint32_t>{9, kRows, kCols}));
  EXPECT_EQ(img.data, ref.pixels);
  EXPECT_TRUE(lab.gzipped);
  EXPECT_EQ(lab.dims, (std::vector<uint32_t>{9}));
  EXPECT_EQ(lab.data, ref.labels);
}

TEST(IdxRead, GzipRecognisedByContentNotName) {
  TempDir tmp;
  Images ref = pattern(3, 0);
  write_idx(tmp / "raw.gz", {3}, ref.labels, false);  // raw bytes, .gz name
  write_idx(tmp / "zipped", {3}, ref.labels, true);   // gzip bytes, no .gz
  rbm::IdxArray a = rbm::read_idx(tmp / "raw.gz", 1, "labels");
  rbm::IdxArray b = rbm::read_idx(tmp / "zipped", 1, "labels");
  EXPECT_FALSE(a.gzipped);
  EXPECT_TRUE(b.gzipped);
  EXPECT_EQ(a.data, ref.labels);
  EXPECT_EQ(b.data, ref.labels);
}

TEST(IdxRead, ErrorIsOneUsageLineStartingWithThePath) {
  TempDir tmp;
  const std::string path = tmp / "labels";
  write_idx(path, {4}, {1, 2, 3, 4}, false);
  try {
    rbm::read_idx(path, 3, "images");
    FAIL() << "an IDX1 file was accepted as IDX3 images";
  } catch (const rbm::UsageError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
    EXPECT_TRUE(contains(msg, "0x00000801")) << msg;
    EXPECT_TRUE(contains(msg, "0x00000803")) << msg;
    EXPECT_FALSE(contains(msg, "\n")) << msg;
  }
}

// ---- IdxConvert: the converter's output, byte for byte ----------------------------------

TEST_F(IdxConvert, EveryPixelAndLabelShapesLayoutAndAttributes) {
  RunResult r = convert("--chunk-rows 16 --validation-size 0");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  // Two lines: the GEMM backend (every program states it first) and the summary.
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 2) << r.out;
  EXPECT_EQ(r.out.rfind("mnist2h5 ", 0), 0u) << r.out;
  EXPECT_TRUE(contains(r.out, h5)) << r.out;
  EXPECT_EQ(entries(out), std::vector<std::string>{"data.h5"});

  expect_rows("/train", train, 0, kTrain);
  expect_rows("/test", test, 0, kTest);
  {
    rbm::h5::Id f = rbm::h5::open_file(h5);
    EXPECT_FALSE(rbm::h5::exists(f, "/validation"));
    // The source attribute names the four input files.
    const std::string source = rbm::h5::read_attr_string(f, "source");
    for (const std::string& p : {train_images, train_labels, test_images, test_labels})
      EXPECT_TRUE(contains(source, p)) << source << " lacks " << p;
  }
  for (const char* path : {rbm::schema::train_images, rbm::schema::test_images}) {
    SCOPED_TRACE(path);
    Layout L = layout_of(h5, path);
    EXPECT_EQ(L.type, rbm::h5::Type::u8);
    EXPECT_EQ(L.layout, H5D_CHUNKED);
    EXPECT_GE(L.filters, 1);
    EXPECT_TRUE(L.deflate);
    EXPECT_EQ(L.chunk, (std::vector<hsize_t>{16, kDim}));  // chunked along N only
    EXPECT_TRUE(int32_attr_is(h5, path, "rows", kRows));
    EXPECT_TRUE(int32_attr_is(h5, path, "cols", kCols));
  }
  for (const char* path : {rbm::schema::train_labels, rbm::schema::test_labels})
    EXPECT_EQ(layout_of(h5, path).type, rbm::h5::Type::u8) << path;
}

// The default keeps a validation split (test data is never the validation set): a
// sixth of the training images, at most 10,000.
TEST_F(IdxConvert, DefaultValidationSplitIsASixthAtMost10000) {
  RunResult r = convert();
  ASSERT_EQ(r.code, 0) << r.err;
  const uint32_t k = kTrain / 6;
  expect_rows("/train", train, 0, kTrain - k);
  expect_rows("/validation", train, kTrain - k, k);
  expect_rows("/test", test, 0, kTest);
}

TEST_F(IdxConvert, ValidationIsTheLastKTrainingImages) {
  const size_t k = 12;
  RunResult r = convert("--validation-size " + std::to_string(k));
  ASSERT_EQ(r.code, 0) << r.err;
  expect_rows("/train", train, 0, kTrain - k);
  expect_rows("/validation", train, kTrain - k, k);
  expect_rows("/test", test, 0, kTest);
  EXPECT_TRUE(int32_attr_is(h5, rbm::schema::valid_images, "rows", kRows));
  EXPECT_TRUE(int32_attr_is(h5, rbm::schema::valid_images, "cols", kCols));
}

TEST_F(IdxConvert, FourFileOptionsWithValidation) {
  const size_t k = 7;
  RunResult r =
      run(bin("mnist2h5") + " --train-images " + quote(train_images) + " --train-labels " +
          quote(train_labels) + " --test-images " + quote(test_images) + " --test-labels " +
          quote(test_labels) + " --validation-size " + std::to_string(k) + " " + quote(h5));
  ASSERT_EQ(r.code, 0) << r.err;
  expect_rows("/train", train, 0, kTrain - k);
  expect_rows("/validation", train, kTrain - k, k);
  expect_rows("/test", test, 0, kTest);
}

TEST_F(IdxConvert, TrainPairAloneWritesNoTestGroup) {
  RunResult r = run(bin("mnist2h5") + " --train-images " + quote(train_images) +
                    " --train-labels " + quote(train_labels) + " --output " + quote(h5) +
                    " --validation-size 0");
  ASSERT_EQ(r.code, 0) << r.err;
  expect_rows("/train", train, 0, kTrain);
  rbm::h5::Id f = rbm::h5::open_file(h5);
  EXPECT_FALSE(rbm::h5::exists(f, "/test"));
  EXPECT_FALSE(rbm::h5::exists(f, "/validation"));
}

TEST_F(IdxConvert, DottedNamesAndGzipByContent) {
  // train images under the dotted spelling; raw bytes named .gz; gzip bytes without .gz.
  fs::rename(train_images, in + "/train-images.idx3-ubyte");
  fs::remove(train_labels);
  write_idx(in + "/train-labels-idx1-ubyte.gz", {kTrain}, train.labels, false);
  fs::remove(test_labels);
  write_idx(in + "/t10k-labels-idx1-ubyte", {kTest}, test.labels, true);
  RunResult r = convert("--validation-size 0");
  ASSERT_EQ(r.code, 0) << r.err;
  expect_rows("/train", train, 0, kTrain);
  expect_rows("/test", test, 0, kTest);
}

TEST_F(IdxConvert, CompressionZeroAndOptionsFromConfigFile) {
  write_bytes(tmp / "opts.cfg", "compression = 0\nchunk-rows = 8\nvalidation-size = 0\n");
  RunResult r = convert("--config " + quote(tmp / "opts.cfg"));
  ASSERT_EQ(r.code, 0) << r.err;
  Layout L = layout_of(h5, rbm::schema::train_images);
  EXPECT_EQ(L.layout, H5D_CHUNKED);
  EXPECT_EQ(L.filters, 0);
  EXPECT_EQ(L.chunk, (std::vector<hsize_t>{8, kDim}));
  expect_rows("/train", train, 0, kTrain);
}

TEST_F(IdxConvert, HelpListsEveryOptionWithDefaults) {
  RunResult r = run(bin("mnist2h5") + " --help");
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* s : {"--train-images", "--train-labels", "--test-images", "--test-labels",
                        "--validation-size K (=auto)", "--chunk-rows N (=1024)",
                        "--compression LEVEL (=4)", "--force", "--config"})
    EXPECT_TRUE(contains(r.out, s)) << "--help lacks " << s << ":\n" << r.out;
  RunResult md = run(bin("mnist2h5") + " --help-markdown");
  EXPECT_EQ(md.code, 0);
  EXPECT_TRUE(contains(md.out, "| `--chunk-rows N` | `1024` |")) << md.out;
}

// ---- IdxFashionMnist: the real data set -----------------------------------------------

TEST(IdxFashionMnist, FullConversionByteExact) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::is_directory(dir))
    GTEST_SKIP() << dir << " is missing (Fashion-MNIST package not installed): skipped";
  TempDir tmp;
  const std::string h5 = tmp / "fashion.h5";
  RunResult r = run(bin("mnist2h5") + " " + dir + " " + quote(h5) + " --validation-size 0", 300);
  ASSERT_EQ(r.code, 0) << r.err;
  std::cout << "[   info   ] " << r.out << "[   info   ] wall " << r.seconds << " s, "
            << fs::file_size(h5) << " bytes\n";
  RecordProperty("seconds", std::to_string(r.seconds));
  RecordProperty("bytes", std::to_string(fs::file_size(h5)));

  struct Part {
    const char *images, *labels, *h5_images, *h5_labels;
    uint32_t n;
  };
  for (const Part& p : {Part{"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                             rbm::schema::train_images, rbm::schema::train_labels, 60000},
                        Part{"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
                             rbm::schema::test_images, rbm::schema::test_labels, 10000}}) {
    SCOPED_TRACE(p.images);
    const std::string img = gunzip(dir + "/" + p.images), lab = gunzip(dir + "/" + p.labels);
    ASSERT_EQ(img.size(), 16 + size_t{p.n} * 784);
    ASSERT_EQ(lab.size(), 8 + size_t{p.n});
    ASSERT_EQ(be32(img, 0), 0x803u);
    ASSERT_EQ(be32(img, 4), p.n);
    ASSERT_EQ(be32(img, 8), 28u);
    ASSERT_EQ(be32(img, 12), 28u);
    ASSERT_EQ(be32(lab, 0), 0x801u);
    ASSERT_EQ(be32(lab, 4), p.n);
    H5Set s = read_set(h5, p.h5_images, p.h5_labels);
    EXPECT_EQ(s.image_dims, (std::vector<hsize_t>{p.n, 784}));
    EXPECT_EQ(s.label_dims, (std::vector<hsize_t>{p.n}));
    EXPECT_TRUE(s.images == bytes_from(img, 16)) << "pixels differ from the IDX file";
    EXPECT_TRUE(s.labels == bytes_from(lab, 8)) << "labels differ from the IDX file";
    EXPECT_TRUE(int32_attr_is(h5, p.h5_images, "rows", 28));
    EXPECT_TRUE(int32_attr_is(h5, p.h5_images, "cols", 28));
  }
}

