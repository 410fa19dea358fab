// mnist_h5.cpp — IDX files to the HDF5 dataset schema (see rbm/mnist_h5.hpp).
#include "rbm/mnist_h5.hpp"

#include <filesystem>

#include "rbm/dataset.hpp"
#include "rbm/errors.hpp"
#include "rbm/input_file.hpp"

namespace rbm {

namespace fs = std::filesystem;

namespace {
// The file in `dir` for e.g. stem "train-images", kind "idx3-ubyte": the dashed or the
// dotted spelling, raw or .gz, the first that exists.
std::string find_in(const fs::path& dir, const std::string& stem, const std::string& kind) {
  const std::string dash = stem + "-" + kind, dot = stem + "." + kind;
  for (const std::string& name : {dash, dash + ".gz", dot, dot + ".gz"}) {
    std::error_code ec;
    if (fs::is_regular_file(dir / name, ec)) return (dir / name).string();
    if (fs::exists(dir / name, ec))  // a FIFO or a device by that name: say so
      require_regular_file((dir / name).string(), "expected an IDX file");
  }
  throw UsageError(fmt(dir.string(), ": no ", stem, " file: looked for ", dash, ", ", dot,
                       " (each raw or .gz)"));
}

// Writes images [first, first+count) of `s` as <images_path> [count, rows*cols] with
// attributes rows, cols, and their labels as <labels_path> [count].
void write_rows(hid_t f, const char* images_path, const char* labels_path, const IdxSet& s,
                size_t first, size_t count, h5::Storage storage) {
  const size_t d = s.dim();
  h5::write_array<uint8_t>(f, images_path, s.images.data.data() + first * d, {count, d}, storage);
  h5::Id obj = h5::open_object(f, images_path);
  h5::write_attr(obj, "rows", int64_t{s.images.dims[1]});
  h5::write_attr(obj, "cols", int64_t{s.images.dims[2]});
  h5::write_array<uint8_t>(f, labels_path, s.labels.data.data() + first, {count});
}

std::string absolute(const std::string& p) { return fs::absolute(p).lexically_normal().string(); }
}  // namespace

MnistFiles find_mnist_files(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw UsageError(dir + ": no such folder (DIR must hold the four MNIST IDX files)");
  return {find_in(dir, "train-images", "idx3-ubyte"), find_in(dir, "train-labels", "idx1-ubyte"),
          find_in(dir, "t10k-images", "idx3-ubyte"), find_in(dir, "t10k-labels", "idx1-ubyte")};
}

IdxSet read_idx_set(const std::string& images, const std::string& labels) {
  IdxSet s{read_idx(images, 3, "images"), read_idx(labels, 1, "labels")};
  if (s.images.count() != s.labels.count())
    throw UsageError(fmt(images, " has ", s.images.count(), " images but ", labels, " has ",
                         s.labels.count(), " labels (they must come from the same set)"));
  return s;
}

void write_mnist_h5(const std::string& path, const IdxSet& train, const IdxSet* test,
                    size_t n_valid, const MnistFiles& files, h5::Storage storage) {
  try {
    h5::Id f = h5::create_file(path);
    const size_t n = train.n();
    write_rows(f, schema::train_images, schema::train_labels, train, 0, n - n_valid, storage);
    if (n_valid)
      write_rows(f, schema::valid_images, schema::valid_labels, train, n - n_valid, n_valid,
                 storage);
    if (test) write_rows(f, schema::test_images, schema::test_labels, *test, 0, test->n(), storage);
    std::string source = absolute(files.train_images) + ", " + absolute(files.train_labels);
    if (test) source += ", " + absolute(files.test_images) + ", " + absolute(files.test_labels);
    h5::write_attr(f, "source", source);
    h5::close_written(f, path);
  } catch (const Error& e) {  // a full disk, say: name the file in the one line
    const std::string msg = e.what();
    throw Error(msg.rfind(path, 0) == 0 ? msg : path + ": " + msg, e.code());
  }
}

}  // namespace rbm
