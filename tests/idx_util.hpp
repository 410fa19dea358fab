// idx_util.hpp — what the mnist2h5 tests share: reference images, reading the
// converter's output with the HDF5 C API, and the small MNIST-like folder fixture.
#pragma once

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

namespace idxtest {

// ---- reference data ------------------------------------------------------------

constexpr uint32_t kRows = 4, kCols = 5, kDim = kRows * kCols;
constexpr uint32_t kTrain = 50, kTest = 20;

// n images of kRows x kCols whose bytes encode their index (offset keeps test != train).
struct Images {
  std::vector<uint8_t> pixels, labels;
};
inline Images pattern(size_t n, size_t offset) {
  Images s;
  for (size_t i = 0; i < n; ++i) {
    for (size_t p = 0; p < kDim; ++p) s.pixels.push_back(rbm::test::pattern_pixel(i + offset, p));
    s.labels.push_back(static_cast<uint8_t>((7 * (i + offset) + 3) % 10));
  }
  return s;
}

inline std::vector<uint8_t> rows_of(const std::vector<uint8_t>& v, size_t first, size_t count,
                             size_t width) {
  return {v.begin() + static_cast<long>(first * width),
          v.begin() + static_cast<long>((first + count) * width)};
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), bytes.size());
}

inline std::string quote(const std::string& s) {
  return "'" + s + "'";
}

// The whole decompressed content of a gzip file, decoded with zlib here (not read_idx).
inline std::string gunzip(const std::string& path) {
  gzFile g = gzopen(path.c_str(), "rb");
  if (!g) return "";
  std::string out;
  char buf[1 << 16];
  int n;
  while ((n = gzread(g, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  gzclose(g);
  return out;
}

inline uint32_t be32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = v << 8 | static_cast<uint8_t>(s[at + i]);
  return v;
}

inline std::vector<uint8_t> bytes_from(const std::string& s, size_t offset) {
  return {s.begin() + static_cast<long>(offset), s.end()};
}

// ---- reading the converter's output -----------------------------------------------

struct H5Set {
  std::vector<uint8_t> images, labels;
  std::vector<hsize_t> image_dims, label_dims;
};

inline H5Set read_set(const std::string& file, const std::string& images, const std::string& labels) {
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

inline Layout layout_of(const std::string& file, const std::string& path) {
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

inline std::vector<std::string> entries(const std::string& dir) {
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

inline bool contains(const std::string& s, const std::string& part) {
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

}  // namespace idxtest
