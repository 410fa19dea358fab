#include "rbm/dataset.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "rbm/errors.hpp"

namespace rbm {

DatasetInfo inspect_dataset(const std::string& file, const std::string& path) {
  h5::Id f = h5::open_file(file);
  h5::Id d = h5::open_dataset(f, path, file);
  DatasetInfo info;
  info.file = file;
  info.path = path;
  info.type = h5::dataset_type(d);
  std::vector<hsize_t> dims = h5::dataset_shape(d);
  if (dims.size() != 2)
    throw UsageError(fmt(file, ": ", path, " has ", dims.size(),
                         " dimensions, expected 2 ([N images, D pixels]; mnist2h5 writes that)"));
  info.rows = dims[0];
  info.dim = dims[1];
  if (info.rows == 0 || info.dim == 0)
    throw UsageError(fmt(file, ": ", path, " is empty (shape [", info.rows, ", ", info.dim, "])"));
  if (info.type != h5::Type::u8 && info.type != h5::Type::f32)
    throw UsageError(fmt(file, ": ", path, " holds ", h5::type_name(info.type),
                         ", expected uint8 pixels or float32 in [0, 1]"));
  // Before any rank sizes a buffer by [N, D]: the data must really be in the file.
  h5::check_stored(d, file, path);
  info.stored_bytes = H5Dget_storage_size(d);
  {
    h5::Id plist(H5Dget_create_plist(d), H5Pclose);
    hsize_t chunk[2] = {0, 0};
    if (H5Pget_layout(plist) == H5D_CHUNKED && H5Pget_chunk(plist, 2, chunk) == 2)
      info.chunk_rows = chunk[0];
  }
  if (h5::has_attr(d, "rows") && h5::has_attr(d, "cols")) {
    info.img_rows = static_cast<int>(h5::read_attr_int(d, "rows"));
    info.img_cols = static_cast<int>(h5::read_attr_int(d, "cols"));
  }
  return info;
}

std::string monitor_images_path(const std::string& file) {
  h5::Id f = h5::open_file(file);
  if (h5::exists(f, schema::valid_images)) return schema::valid_images;
  if (h5::exists(f, schema::test_images)) return schema::test_images;
  return "";
}

namespace {
void select(hid_t space, const ShardLayout& L, size_t dim) {
  H5Sselect_none(space);
  if (L.hs_full_blocks() > 0) {
    hsize_t start[2] = {L.hs_start(), 0}, stride[2] = {L.hs_stride(), 1};
    hsize_t count[2] = {L.hs_full_blocks(), 1}, block[2] = {L.block, dim};
    if (H5Sselect_hyperslab(space, H5S_SELECT_SET, start, stride, count, block) < 0)
      h5::fail("cannot select shard");
  }
  if (L.tail_rows() > 0) {
    hsize_t start[2] = {L.tail_start(), 0}, count[2] = {L.tail_rows(), dim};
    if (H5Sselect_hyperslab(space, H5S_SELECT_OR, start, nullptr, count, nullptr) < 0)
      h5::fail("cannot select shard tail");
  }
}

// Reads this rank's rows of the first layout.n rows (layout.n <= N).
Shard read_rows(const std::string& file, const std::string& path, ShardLayout layout) {
  DatasetInfo info = inspect_dataset(file, path);
  if (layout.n > info.rows) layout = ShardLayout(info.rows, layout.rank, layout.size, layout.block);
  h5::Id f = h5::open_file(file);
  h5::Id d = h5::open_dataset(f, path, file);
  Shard s{layout, info.dim, {}};
  const size_t n = layout.local_rows();
  if (n == 0) return s;  // a rank without rows of a short head (read_shard_head)
  h5::Id fspace(H5Dget_space(d), H5Sclose);
  select(fspace, layout, info.dim);
  hsize_t mdims[2] = {n, info.dim};
  h5::Id mspace(H5Screate_simple(2, mdims, nullptr), H5Sclose);
  s.pixels.resize(n * info.dim);
  if (info.type == h5::Type::u8) {
    if (H5Dread(d, H5T_NATIVE_UINT8, mspace, fspace, H5P_DEFAULT, s.pixels.data()) < 0)
      h5::fail(fmt(file, ": cannot read ", path, " rows of rank ", layout.rank), exit_code::usage);
  } else {
    std::vector<float> tmp(n * info.dim);
    if (H5Dread(d, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, tmp.data()) < 0)
      h5::fail(fmt(file, ": cannot read ", path, " rows of rank ", layout.rank), exit_code::usage);
    for (size_t i = 0; i < tmp.size(); ++i) {
      float x = tmp[i];
      if (!(x >= 0.0f && x <= 1.0f))
        throw UsageError(fmt(file, ": ", path, " row ", layout.global_row(i / info.dim),
                             " holds ", x, ", float32 images must lie in [0, 1]"));
      s.pixels[i] = static_cast<uint8_t>(std::lround(x * 255.0f));
    }
  }
  return s;
}
}  // namespace

Shard read_shard(const std::string& file, const std::string& path, int rank, int size,
                 size_t block) {
  DatasetInfo info = inspect_dataset(file, path);
  ShardLayout layout(info.rows, rank, size, block);
  const size_t blocks = (info.rows + block - 1) / block;
  if (blocks < static_cast<size_t>(size))
    throw UsageError(fmt(file, ": ", path, " has ", info.rows, " rows but the job has ", size,
                         " ranks, so some ranks would get no data (run with at most ", blocks,
                         " ranks)"));
  return read_rows(file, path, layout);
}

Shard read_shard_head(const std::string& file, const std::string& path, int rank, int size,
                     size_t max_rows) {
  DatasetInfo info = inspect_dataset(file, path);
  const size_t n = std::min(info.rows, max_rows);
  return read_rows(file, path, ShardLayout(n, rank, size, 1));
}

uint64_t thread_read_bytes() {
  uint64_t v = 0;
  if (FILE* f = std::fopen("/proc/thread-self/io", "r")) {
    char key[32];
    unsigned long long x = 0;
    while (std::fscanf(f, "%31s %llu", key, &x) == 2)
      if (std::strcmp(key, "rchar:") == 0) v = x;
    std::fclose(f);
  }
  return v;
}

RowBlock read_row_block(const std::string& file, const std::string& path, size_t r0, size_t r1) {
  const uint64_t before = thread_read_bytes();
  RowBlock b;
  {
    DatasetInfo info = inspect_dataset(file, path);
    if (r0 > r1 || r1 > info.rows)
      throw Error(fmt(file, ": ", path, ": rows [", r0, ", ", r1, ") outside [0, ", info.rows, ")"));
    b.first = r0;
    b.total = info.rows;
    b.dim = info.dim;
    const size_t n = r1 - r0;
    b.pixels.resize(n * info.dim);
    if (n > 0) {
      h5::Id f = h5::open_file(file);
      h5::Id d = h5::open_dataset(f, path, file);
      h5::Id fspace(H5Dget_space(d), H5Sclose);
      hsize_t start[2] = {r0, 0}, count[2] = {n, info.dim};
      if (H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, nullptr, count, nullptr) < 0)
        h5::fail("cannot select rows");
      h5::Id mspace(H5Screate_simple(2, count, nullptr), H5Sclose);
      if (info.type == h5::Type::u8) {
        if (H5Dread(d, H5T_NATIVE_UINT8, mspace, fspace, H5P_DEFAULT, b.pixels.data()) < 0)
          h5::fail(fmt(file, ": cannot read ", path, " rows ", r0, "-", r1 - 1), exit_code::usage);
      } else {
        std::vector<float> tmp(n * info.dim);
        if (H5Dread(d, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, tmp.data()) < 0)
          h5::fail(fmt(file, ": cannot read ", path, " rows ", r0, "-", r1 - 1), exit_code::usage);
        for (size_t i = 0; i < tmp.size(); ++i) {
          float x = tmp[i];
          if (!(x >= 0.0f && x <= 1.0f))
            throw UsageError(fmt(file, ": ", path, " row ", r0 + i / info.dim, " holds ", x,
                                 ", float32 images must lie in [0, 1]"));
          b.pixels[i] = static_cast<uint8_t>(std::lround(x * 255.0f));
        }
      }
    }
  }  // every HDF5 handle closed (and its reads done) before counting
  b.bytes_read = thread_read_bytes() - before;
  return b;
}

Shard read_all(const std::string& file, const std::string& path) {
  DatasetInfo info = inspect_dataset(file, path);
  return read_rows(file, path, ShardLayout(info.rows, 0, 1, 1));
}

}  // namespace rbm
