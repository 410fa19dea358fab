// rbm/idx.hpp — reads the IDX files that MNIST, Fashion-MNIST and KMNIST ship in.
//
// defines: rbm::IdxArray, rbm::read_idx
//
// IDX format (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS"); integers are big-endian:
//   offset 0      2 bytes   0x00 0x00
//   offset 2      1 byte    type code: 0x08 unsigned byte, the only type accepted here
//                           (0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64)
//   offset 3      1 byte    d = number of dimensions
//   offset 4      4*d bytes uint32 size of each dimension, size_0 (the item count) first
//   offset 4+4d             size_0 * ... * size_{d-1} data bytes, row-major, and nothing after
// Read as one number, the first 4 bytes (the "magic") are 0x00000803 for an image file
// [N, rows, cols] and 0x00000801 for a label file [N].
//
// A file may be gzip'd whatever its name: gzip is recognised by its content (the bytes
// 1f 8b at the start), so "train-images-idx3-ubyte.gz" holding raw bytes works too.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rbm {

struct IdxArray {
  std::vector<uint32_t> dims;  ///< [N, rows, cols] for images, [N] for labels
  std::vector<uint8_t> data;   ///< prod(dims) bytes, row-major, exactly as in the file
  std::string path;            ///< the file read
  bool gzipped = false;        ///< true if the file was a gzip stream

  size_t count() const { return dims.empty() ? 0 : dims[0]; }
  /// Bytes per item (rows*cols for images, 1 for labels).
  size_t item_size() const { return count() ? data.size() / count() : 0; }
};

/// Reads a whole unsigned-byte IDX file with `expected_ndims` dimensions, none of them 0.
/// `role` ("images" or "labels") only words the messages. Any problem (missing file,
/// wrong magic, truncated or trailing data, corrupt gzip stream) throws rbm::UsageError
/// with one line starting "<path>: ".
IdxArray read_idx(const std::string& path, int expected_ndims, const std::string& role);

}  // namespace rbm
