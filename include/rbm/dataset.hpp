// rbm/dataset.hpp — the dataset schema written by mnist2h5 and the sharded reader.
//
// defines: rbm::schema, rbm::DatasetInfo, rbm::inspect_dataset, rbm::Shard, rbm::read_shard,
//          rbm::read_shard_head, rbm::read_all, rbm::RowBlock, rbm::read_row_block,
//          rbm::thread_read_bytes
//
// Schema (see README "File formats"):
//   /train/images       uint8 [N, rows*cols], chunked along N, deflate; attrs rows, cols (int32)
//   /train/labels       uint8 [N]
//   /test/images, /test/labels             the t10k files
//   /validation/images, /validation/labels  with --validation-size K (last K train images)
//   root attribute "source": the input files
// Readers also accept float32 images with values in [0, 1].
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "rbm/h5.hpp"
#include "rbm/shard.hpp"

namespace rbm {

namespace schema {
inline constexpr const char* train_images = "/train/images";
inline constexpr const char* train_labels = "/train/labels";
inline constexpr const char* test_images = "/test/images";
inline constexpr const char* test_labels = "/test/labels";
inline constexpr const char* valid_images = "/validation/images";
inline constexpr const char* valid_labels = "/validation/labels";
}  // namespace schema

struct DatasetInfo {
  std::string file, path;
  size_t rows = 0;  ///< N
  size_t dim = 0;   ///< D (pixels per image)
  h5::Type type = h5::Type::other;
  int img_rows = 0, img_cols = 0;  ///< from attributes; 0 when absent
  uint64_t stored_bytes = 0;       ///< bytes the dataset takes in the file (H5Dget_storage_size)
  uint64_t chunk_rows = 0;         ///< rows per HDF5 chunk; 0 when not chunked
};

/// Opens `file`, checks that `path` is a uint8 or float32 [N, D] dataset with N, D > 0
/// whose data is really stored in the file (h5::check_stored).
/// Throws UsageError naming file, path and the problem.
DatasetInfo inspect_dataset(const std::string& file, const std::string& path);

/// "/validation/images" if present, else "/test/images", else "" (no monitor set).
std::string monitor_images_path(const std::string& file);

/// One rank's rows of an [N, D] image dataset, held as bytes: 60,000 MNIST
/// images are 47 MB here, not 188 MB as float.
struct Shard {
  ShardLayout layout;             ///< which global rows these are
  size_t dim = 0;                 ///< D
  std::vector<uint8_t> pixels;    ///< [n_local, D] row-major; float32 input is quantised x*255
  size_t rows() const { return layout.local_rows(); }
  const uint8_t* row(size_t l) const { return pixels.data() + l * dim; }
};

/// Reads only this rank's shard with one HDF5 hyperslab selection (block-cyclic,
/// see shard.hpp). Throws UsageError if the dataset has fewer blocks than ranks.
Shard read_shard(const std::string& file, const std::string& path, int rank, int size,
                 size_t block = 1);

/// This rank's rows (block-cyclic, block 1) of only the FIRST min(N, max_rows) rows:
/// what a monitor of max_rows images needs, without reading the rest of the dataset.
/// Ranks may get no rows (max_rows < size); layout.n is min(N, max_rows).
Shard read_shard_head(const std::string& file, const std::string& path, int rank, int size,
                     size_t max_rows);

/// Consecutive rows [first, first + rows()) of an [N, D] image dataset, as bytes: what
/// one rank of the trainer holds (its virtual shards, see shard.hpp).
struct RowBlock {
  size_t first = 0;              ///< file row of local row 0
  size_t total = 0;              ///< N of the whole dataset
  size_t dim = 0;                ///< D
  std::vector<uint8_t> pixels;   ///< [rows, D] row-major; float32 input is quantised x*255
  uint64_t bytes_read = 0;       ///< bytes this thread read from files while reading it
  size_t rows() const { return dim ? pixels.size() / dim : 0; }
  const uint8_t* row(size_t l) const { return pixels.data() + l * dim; }
};

/// Reads file rows [r0, r1) with ONE hyperslab (r0 == r1: nothing but the metadata).
/// `bytes_read` is what the kernel counted for this thread's read()/pread() calls
/// meanwhile (/proc/thread-self/io rchar): the chunks HDF5 fetched plus metadata.
RowBlock read_row_block(const std::string& file, const std::string& path, size_t r0, size_t r1);

/// Bytes this thread has read with read()/pread() so far (/proc/thread-self/io
/// "rchar"; 0 if unavailable).
uint64_t thread_read_bytes();

/// Reads all rows [N, D] (tools that need the whole set, e.g. rbm_eval on one rank).
Shard read_all(const std::string& file, const std::string& path);

}  // namespace rbm
