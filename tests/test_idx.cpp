// IDX parsing and the mnist2h5 converter, checked against the bytes the test wrote:
//  * IdxRead:   rbm::read_idx on raw and gzip'd files, dims and bytes exact.
//  * IdxConvert: the real mnist2h5 on a small 4x5 set; every pixel and label of the
//               HDF5 file compared with the input, plus shapes, type, layout, attributes.
//  * IdxReject: every bad input gives exit 2, one line on stderr naming the file, and
//               leaves no output or temporary file behind.
//  * IdxFashionMnist: the full Fashion-MNIST package (skipped when not installed),
//               compared with the .gz files decoded here with zlib.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <zlib.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "rbm/dataset.hpp"
#include "rbm/errors.hpp"
#include "rbm/h5.hpp"
#include "rbm/idx.hpp"
#include "test_util.hpp"

using rbm::test::bin;
using rbm::test::read_file;
using rbm::test::run;
using rbm::test::RunResult;
using rbm::test::TempDir;
using rbm::test::write_idx;
namespace fs = std::filesystem;

namespace {

// ---- reference data ------------------------------------------------------------

constexpr uint32_t kRows = 4, kCols = 5, kDim = kRows * kCols;
constexpr uint32_t kTrain = 50, kTest = 20;

// n images of kRows x kCols whose bytes encode their index (offset keeps test != train).
struct Images {
  std::vector<uint8_t> pixels, labels;
};
Images pattern(size_t n, size_t offset) {
  Images s;
  for (size_t i = 0; i < n; ++i) {
    for (size_t p = 0; p < kDim; ++p) s.pixels.push_back(rbm::test::pattern_pixel(i + offset, p));
    s.labels.push_back(static_cast<uint8_t>((7 * (i + offset) + 3) % 10));
  }
  return s;
}

std::vector<uint8_t> rows_of(const std::vector<uint8_t>& v, size_t first, size_t count,
                             size_t width) {
  return {v.begin() + static_cast<long>(first * width),
          v.begin() + static_cast<long>((first + count) * width)};
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), bytes.size());
}

std::string quote(const std::string& s) {
  return "'" + s + "'";
}

// The whole decompressed content of a gzip file, decoded with zlib here (not read_idx).
std::string gunzip(const std::string& path) {
  gzFile g = gzopen(path.c_str(), "rb");
  if (!g) return "";
  std::string out;
  char buf[1 << 16];
  int n;
  while ((n = gzread(g, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  gzclose(g);
  return out;
}

uint32_t be32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = v << 8 | static_cast<uint8_t>(s[at + i]);
  return v;
}

std::vector<uint8_t> bytes_from(const std::string& s, size_t offset) {
  return {s.begin() + static_cast<long>(offset), s.end()};
}

// ---- reading the converter's output -----------------------------------------------

struct H5Set {
  std::vector<uint8_t> images, labels;
  std::vector<hsize_t> image_dims, label_dims;
};

H5Set read_set(const std::string& file, const std::string& images, const std::string& labels) {
  rbm::h5::Id f = rbm::h5::open_file(file);
  H5Set s;
  s.images = rbm::h5::read_array<uint8_t>(f, images, file, &s.image_dims);
  s.labels = rbm::h5::read_array<uint8_t>(f, labels, file, &s.label_dims);
  return s;
}

struct Layout {
  H5D_layout_t layout = H5D_LAYOUT_ERROR;
  int filters = 0;
  bool deflate = false;
  std::vector<hsize_t> chunk;
  rbm::h5::Type type = rbm::h5::Type::other;
};

Layout layout_of(const std::string& file, const std::string& path) {
  rbm::h5::Id f = rbm::h5::open_file(file);
  rbm::h5::Id d = rbm::h5::open_dataset(f, path, file);
  rbm::h5::Id plist(H5Dget_create_plist(d), H5Pclose);
  Layout L;
  L.type = rbm::h5::dataset_type(d);
  L.layout = H5Pget_layout(plist);
  L.filters = H5Pget_nfilters(plist);
  for (int i = 0; i < L.filters; ++i) {
    unsigned flags = 0, config = 0;
    size_t nelem = 0;
    char name[64];
    H5Z_filter_t id = H5Pget_filter2(plist, static_cast<unsigned>(i), &flags, &nelem, nullptr,
                                     sizeof name, name, &config);
    L.deflate |= id == H5Z_FILTER_DEFLATE;
  }
  if (L.layout == H5D_CHUNKED) {
    L.chunk.resize(
        static_cast<size_t>(H5Sget_simple_extent_ndims(rbm::h5::Id(H5Dget_space(d), H5Sclose))));
    H5Pget_chunk(plist, static_cast<int>(L.chunk.size()), L.chunk.data());
  }
  return L;
}

// An int32 scalar attribute (the schema says int32 for rows and cols).
::testing::AssertionResult int32_attr_is(const std::string& file, const std::string& path,
                                         const char* name, int64_t expected) {
  rbm::h5::Id f = rbm::h5::open_file(file);
  rbm::h5::Id obj = rbm::h5::open_object(f, path);
  rbm::h5::Id attr(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  if (attr < 0) return ::testing::AssertionFailure() << path << " has no attribute " << name;
  rbm::h5::Id type(H5Aget_type(attr), H5Tclose);
  if (H5Tget_class(type) != H5T_INTEGER || H5Tget_size(type) != 4)
    return ::testing::AssertionFailure() << path << "@" << name << " is not int32";
  int64_t v = rbm::h5::read_attr_int(obj, name);
  if (v != expected)
    return ::testing::AssertionFailure()
           << path << "@" << name << " = " << v << ", expected " << expected;
  return ::testing::AssertionSuccess();
}

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// A rejected run: exit 2, exactly one line on stderr that starts "mnist2h5: " and names
// `file`, and `out_dir` holds exactly `left` (no output, no OUT.h5.tmp.<pid>).
::testing::AssertionResult rejected(const RunResult& r, const std::string& file,
                                    const std::string& out_dir,
                                    const std::vector<std::string>& left = {}) {
  auto fail = [&] {
    return ::testing::AssertionFailure() << "exit " << r.code << ", stderr: " << r.err << "\n";
  };
  if (r.code != rbm::exit_code::usage) return fail() << "expected exit 2";
  if (std::count(r.err.begin(), r.err.end(), '\n') != 1 || r.err.back() != '\n')
    return fail() << "stderr is not exactly one line";
  if (r.err.rfind("mnist2h5: ", 0) != 0) return fail() << "stderr does not start 'mnist2h5: '";
  if (r.err.find(file) == std::string::npos) return fail() << "stderr does not name " << file;
  if (entries(out_dir) != left) {
    auto f = fail() << "output folder holds:";
    for (const auto& e : entries(out_dir)) f << " " << e;
    return f;
  }
  return ::testing::AssertionSuccess();
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// ---- the fixture: a small MNIST-like folder, mixed raw and .gz -----------------------

class IdxConvert : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directory(in);
    fs::create_directory(out);
    write_idx(train_images, {kTrain, kRows, kCols}, train.pixels, false);
    write_idx(train_labels, {kTrain}, train.labels, true);
    write_idx(test_images, {kTest, kRows, kCols}, test.pixels, true);
    write_idx(test_labels, {kTest}, test.labels, false);
  }

  RunResult convert(const std::string& extra = "") const {
    return run(bin("mnist2h5") + " " + quote(in) + " " + quote(h5) + " " + extra);
  }

  // Every byte of `group` equals train/test rows [first, first+count).
  void expect_rows(const std::string& group, const Images& ref, size_t first, size_t count) {
    SCOPED_TRACE(group);
    H5Set s = read_set(h5, group + "/images", group + "/labels");
    EXPECT_EQ(s.image_dims, (std::vector<hsize_t>{count, kDim}));
    EXPECT_EQ(s.label_dims, (std::vector<hsize_t>{count}));
    EXPECT_EQ(s.images, rows_of(ref.pixels, first, count, kDim));
    EXPECT_EQ(s.labels, rows_of(ref.labels, first, count, 1));
  }

  TempDir tmp;
  std::string in = tmp / "in", out = tmp / "out", h5 = tmp / "out/data.h5";
  std::string train_images = in + "/train-images-idx3-ubyte";
  std::string train_labels = in + "/train-labels-idx1-ubyte.gz";
  std::string test_images = in + "/t10k-images-idx3-ubyte.gz";
  std::string test_labels = in + "/t10k-labels-idx1-ubyte";
  Images train = pattern(kTrain, 0), test = pattern(kTest, 1000);
};

class IdxReject : public IdxConvert {};

}  // namespace

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
  RunResult r = convert("--chunk-rows 16");
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
                    " --train-labels " + quote(train_labels) + " --output " + quote(h5));
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
  RunResult r = convert();
  ASSERT_EQ(r.code, 0) << r.err;
  expect_rows("/train", train, 0, kTrain);
  expect_rows("/test", test, 0, kTest);
}

TEST_F(IdxConvert, CompressionZeroAndOptionsFromConfigFile) {
  write_bytes(tmp / "opts.cfg", "compression = 0\nchunk-rows = 8\n");
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
                        "--validation-size K (=0)", "--chunk-rows N (=1024)",
                        "--compression LEVEL (=4)", "--force", "--config"})
    EXPECT_TRUE(contains(r.out, s)) << "--help lacks " << s << ":\n" << r.out;
  RunResult md = run(bin("mnist2h5") + " --help-markdown");
  EXPECT_EQ(md.code, 0);
  EXPECT_TRUE(contains(md.out, "| `--chunk-rows N` | `1024` |")) << md.out;
}

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

// ---- IdxFashionMnist: the real data set -----------------------------------------------

TEST(IdxFashionMnist, FullConversionByteExact) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::is_directory(dir))
    GTEST_SKIP() << dir << " is missing (Fashion-MNIST package not installed): skipped";
  TempDir tmp;
  const std::string h5 = tmp / "fashion.h5";
  RunResult r = run(bin("mnist2h5") + " " + dir + " " + quote(h5), 300);
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
