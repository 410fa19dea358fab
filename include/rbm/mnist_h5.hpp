// rbm/mnist_h5.hpp — MNIST-style IDX files -> the HDF5 dataset schema (rbm/dataset.hpp);
// the library side of mnist2h5.
//
// defines: rbm::MnistFiles, find_mnist_files, IdxSet, read_idx_set, write_mnist_h5
#pragma once

#include <string>

#include "rbm/h5.hpp"
#include "rbm/idx.hpp"

namespace rbm {

/// The four input files; test_* may be "".
struct MnistFiles {
  std::string train_images, train_labels, test_images, test_labels;
};

/// The files in `dir`: train-images-idx3-ubyte, train-labels-idx1-ubyte,
/// t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each in the dashed or the dotted
/// ("train-images.idx3-ubyte") spelling, raw or .gz. Throws UsageError naming what is missing.
MnistFiles find_mnist_files(const std::string& dir);

/// An image file and its label file, checked to describe the same images.
struct IdxSet {
  IdxArray images, labels;
  size_t n() const { return images.count(); }
  size_t dim() const { return images.item_size(); }
};
IdxSet read_idx_set(const std::string& images, const std::string& labels);

/// Writes the dataset to `path` (a new file; the caller makes it atomic): the first
/// N - n_valid training images to /train, the last n_valid to /validation, `test` (if
/// not null) to /test, each images [n, rows*cols] with attributes rows, cols and labels
/// [n], byte for byte; root attribute `source` lists `files` as absolute paths.
/// Checks every write and the final close (rbm::Error naming `path`).
void write_mnist_h5(const std::string& path, const IdxSet& train, const IdxSet* test,
                    size_t n_valid, const MnistFiles& files, h5::Storage storage);

}  // namespace rbm
