// HDF5 round trips through rbm::h5 and the sharded reader, against the bytes written.
#include <gtest/gtest.h>

#include "rbm/dataset.hpp"
#include "rbm/errors.hpp"
#include "rbm/h5.hpp"
#include "test_util.hpp"

using namespace rbm;
using rbm::test::TempDir;

TEST(H5, ArrayAndAttributeRoundTrip) {
  TempDir tmp;
  const std::string path = tmp / "a.h5";
  std::vector<float> w(6 * 5);
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.25f * static_cast<float>(i) - 3.0f;
  {
    h5::Id f = h5::create_file(path);
    h5::write_array(f, "/model/weights", w.data(), {6, 5});
    h5::write_attr(f, "format", std::string("rbm-checkpoint"));
    h5::write_attr(f, "format_version", int64_t{1});
    h5::write_attr(f, "lr", 0.125);
  }
  h5::Id f = h5::open_file(path);
  std::vector<hsize_t> dims;
  auto back = h5::read_array<float>(f, "/model/weights", path, &dims);
  EXPECT_EQ(dims, (std::vector<hsize_t>{6, 5}));
  EXPECT_EQ(back, w);
  EXPECT_EQ(h5::read_attr_string(f, "format"), "rbm-checkpoint");
  EXPECT_EQ(h5::read_attr_int(f, "format_version"), 1);
  EXPECT_EQ(h5::read_attr_double(f, "lr"), 0.125);
  EXPECT_TRUE(h5::exists(f, "/model/weights"));
  EXPECT_FALSE(h5::exists(f, "/model/nothing"));
  EXPECT_FALSE(h5::exists(f, "/nothing/at/all"));
}

TEST(H5, ShardReadMatchesPattern) {
  TempDir tmp;
  const std::string path = tmp / "p.h5";
  const size_t n = 1037, d = 13;
  test::write_pattern_h5(path, n, d);
  for (int size : {1, 3, 8}) {
    for (size_t block : {size_t{1}, size_t{4}}) {
      size_t total = 0;
      for (int r = 0; r < size; ++r) {
        Shard s = read_shard(path, schema::train_images, r, size, block);
        ASSERT_EQ(s.dim, d);
        for (size_t l = 0; l < s.rows(); ++l) {
          size_t g = s.layout.global_row(l);
          for (size_t p = 0; p < d; ++p)
            ASSERT_EQ(s.row(l)[p], test::pattern_pixel(g, p)) << "rank " << r << " row " << g;
        }
        total += s.rows();
      }
      EXPECT_EQ(total, n);
    }
  }
}

TEST(H5, FloatImagesAreQuantisedAndRangeChecked) {
  TempDir tmp;
  const std::string path = tmp / "f.h5";
  std::vector<float> px = {0.0f, 1.0f, 0.5f, 128.0f / 255.0f};
  {
    h5::Id f = h5::create_file(path);
    h5::write_array(f, "/train/images", px.data(), {2, 2});
  }
  Shard s = read_all(path, schema::train_images);
  EXPECT_EQ(s.pixels, (std::vector<uint8_t>{0, 255, 128, 128}));
  px[2] = 1.5f;
  {
    h5::Id f = h5::create_file(path);
    h5::write_array(f, "/train/images", px.data(), {2, 2});
  }
  EXPECT_THROW(read_all(path, schema::train_images), UsageError);
}

TEST(H5, BadDatasetsAreUsageErrors) {
  TempDir tmp;
  const std::string path = tmp / "bad.h5";
  std::vector<uint8_t> v(10, 1);
  {
    h5::Id f = h5::create_file(path);
    h5::write_array(f, "/train/images", v.data(), {10});       // not [N, D]
    h5::write_array(f, "/test/images", v.data(), {2, 5});
  }
  try {
    inspect_dataset(path, "/train/images");
    FAIL() << "1-D dataset accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("/train/images"), std::string::npos);
  }
  EXPECT_THROW(inspect_dataset(path, "/validation/images"), UsageError);
  EXPECT_THROW(inspect_dataset(tmp / "missing.h5", "/train/images"), UsageError);
  // Fewer rows than ranks: the error says so.
  try {
    read_shard(path, "/test/images", 0, 3);
    FAIL() << "2 rows over 3 ranks accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("at most 2 ranks"), std::string::npos) << e.what();
  }
}
