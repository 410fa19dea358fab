// mnist2h5 — converts MNIST-style IDX files (MNIST, Fashion-MNIST, KMNIST) into the
// HDF5 schema every rbm_dist program reads (rbm/dataset.hpp):
//
//   mnist2h5 DIR OUT.h5
//   mnist2h5 --train-images F --train-labels F [--test-images F --test-labels F] OUT.h5
//
// DIR holds train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
// t10k-labels-idx1-ubyte (or the "train-images.idx3-ubyte" spelling), each raw or .gz.
// Pixels and labels are copied byte for byte; images are flattened to rows*cols per row.
//
// Every input is read and checked completely before anything is written. The output
// is written as OUT.h5.tmp.<pid> in the same folder and renamed to OUT.h5 at the end,
// so a failed (or interrupted) run leaves no file behind, and --force replaces an old
// OUT.h5 only when the new one is complete.
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "rbm/blas_backend.hpp"
#include "rbm/cli.hpp"
#include "rbm/dataset.hpp"
#include "rbm/errors.hpp"
#include "rbm/h5.hpp"
#include "rbm/idx.hpp"
#include "rbm/mpi_env.hpp"

namespace fs = std::filesystem;
namespace po = boost::program_options;
using rbm::fmt;
using rbm::IdxArray;
using rbm::UsageError;

namespace {

// ---- input files ------------------------------------------------------------

struct Inputs {
  std::string train_images, train_labels, test_images, test_labels;  // test_* may be ""
};

// The file in `dir` for e.g. stem "train-images", kind "idx3-ubyte": the dashed or the
// dotted spelling, raw or .gz, the first that exists.
std::string find_in(const fs::path& dir, const std::string& stem, const std::string& kind) {
  const std::string dash = stem + "-" + kind, dot = stem + "." + kind;
  for (const std::string& name : {dash, dash + ".gz", dot, dot + ".gz"}) {
    std::error_code ec;
    if (fs::is_regular_file(dir / name, ec)) return (dir / name).string();
  }
  throw UsageError(fmt(dir.string(), ": no ", stem, " file: looked for ", dash, ", ", dot,
                       " (each raw or .gz)"));
}

Inputs find_inputs(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw UsageError(dir + ": no such folder (DIR must hold the four MNIST IDX files)");
  return {find_in(dir, "train-images", "idx3-ubyte"), find_in(dir, "train-labels", "idx1-ubyte"),
          find_in(dir, "t10k-images", "idx3-ubyte"), find_in(dir, "t10k-labels", "idx1-ubyte")};
}

// An image file and its label file, checked to describe the same images.
struct Set {
  IdxArray images, labels;
  size_t n() const { return images.count(); }
  size_t dim() const { return images.item_size(); }
};

Set read_set(const std::string& images, const std::string& labels) {
  Set s{rbm::read_idx(images, 3, "images"), rbm::read_idx(labels, 1, "labels")};
  if (s.images.count() != s.labels.count())
    throw UsageError(fmt(images, " has ", s.images.count(), " images but ", labels, " has ",
                         s.labels.count(), " labels (they must come from the same set)"));
  return s;
}

// ---- output -----------------------------------------------------------------

// Path of the temporary output, for the signal handler (which may only call unlink).
char g_temp_path[4096] = "";

extern "C" void remove_temp_and_die(int sig) {
  if (g_temp_path[0]) unlink(g_temp_path);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

// OUT.h5.tmp.<pid>: removed on any failure (exception or SIGINT/SIGTERM/SIGHUP),
// renamed to OUT.h5 by commit().
class TempOutput {
 public:
  explicit TempOutput(const std::string& final_path)
      : final_(final_path), temp_(fmt(final_path, ".tmp.", getpid())) {
    if (temp_.size() >= sizeof g_temp_path) throw UsageError(final_ + ": path too long");
    std::strcpy(g_temp_path, temp_.c_str());
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) std::signal(sig, remove_temp_and_die);
  }
  TempOutput(const TempOutput&) = delete;
  TempOutput& operator=(const TempOutput&) = delete;
  ~TempOutput() {
    if (!committed_) unlink(temp_.c_str());
    g_temp_path[0] = '\0';
  }
  const std::string& path() const { return temp_; }
  void commit() {
    if (std::rename(temp_.c_str(), final_.c_str()) != 0)
      throw rbm::Error(
          fmt(final_, ": cannot rename ", temp_, " to it (", std::strerror(errno), ")"));
    committed_ = true;
  }

 private:
  std::string final_, temp_;
  bool committed_ = false;
};

// Writes images [first, first+count) of `s` as <images_path> [count, rows*cols] with
// attributes rows, cols, and their labels as <labels_path> [count].
void write_rows(hid_t f, const char* images_path, const char* labels_path, const Set& s,
                size_t first, size_t count, rbm::h5::Storage storage) {
  const size_t d = s.dim();
  rbm::h5::write_array<uint8_t>(f, images_path, s.images.data.data() + first * d, {count, d},
                                storage);
  rbm::h5::Id obj = rbm::h5::open_object(f, images_path);
  rbm::h5::write_attr(obj, "rows", int64_t{s.images.dims[1]});
  rbm::h5::write_attr(obj, "cols", int64_t{s.images.dims[2]});
  rbm::h5::write_array<uint8_t>(f, labels_path, s.labels.data.data() + first, {count});
}

std::string absolute(const std::string& p) {
  return fs::absolute(p).lexically_normal().string();
}

// ---- main -------------------------------------------------------------------

int convert(int argc, char** argv) {
  const auto t0 = std::chrono::steady_clock::now();
  const rbm::cli::Program prog{
      "mnist2h5",
      "mnist2h5 DIR OUT.h5 [options]\n"
      "       mnist2h5 --train-images F --train-labels F [--test-images F --test-labels F] "
      "OUT.h5",
      "Converts MNIST-style IDX files (raw or .gz) into the HDF5 dataset rbm_dist reads."};
  po::options_description opts("mnist2h5 options");
  // clang-format off
  opts.add_options()
      ("input-dir", po::value<std::string>()->value_name("DIR"),
       "folder holding train-images-idx3-ubyte, train-labels-idx1-ubyte, "
       "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (raw or .gz); also the first "
       "positional argument")
      ("output", po::value<std::string>()->value_name("OUT.h5"),
       "HDF5 file to write; also the second positional argument (the only one with "
       "--train-images)")
      ("train-images", po::value<std::string>()->value_name("FILE"),
       "IDX3 training images, instead of DIR (needs --train-labels)")
      ("train-labels", po::value<std::string>()->value_name("FILE"), "IDX1 training labels")
      ("test-images", po::value<std::string>()->value_name("FILE"),
       "IDX3 test images (optional, with --test-labels)")
      ("test-labels", po::value<std::string>()->value_name("FILE"), "IDX1 test labels")
      ("validation-size", po::value<long>()->default_value(0)->value_name("K"),
       "move the last K training images to /validation (K < number of training images)")
      ("chunk-rows", po::value<long>()->default_value(1024)->value_name("N"),
       "images per HDF5 chunk")
      ("compression", po::value<int>()->default_value(4)->value_name("LEVEL"),
       "deflate level, 0 (none) to 9 (smallest)")
      ("force", po::bool_switch(), "replace OUT.h5 if it exists (only once the new file is "
       "complete)");
  // clang-format on
  po::positional_options_description positional;
  positional.add("input-dir", 1).add("output", 1);
  rbm::cli::Parsed parsed = rbm::cli::parse(prog, opts, argc, argv, &positional);
  if (parsed.help) return rbm::exit_code::ok;
  // Every program states its GEMM backend first (this one multiplies no matrices).
  std::printf("mnist2h5 %s: GEMM %s (unused here)\n", RBM_VERSION, rbm::blas::describe().c_str());
  const po::variables_map& vm = parsed.vm;
  auto get = [&](const char* name) {
    return vm.count(name) ? vm[name].as<std::string>() : std::string();
  };

  // ---- which files -------------------------------------------------------------
  std::string dir = get("input-dir"), out = get("output");
  const bool by_name = vm.count("train-images") || vm.count("train-labels") ||
                       vm.count("test-images") || vm.count("test-labels");
  if (by_name && out.empty()) std::swap(dir, out);  // "--train-images F ... OUT.h5"
  if (out.empty())
    throw UsageError(
        "no output file: give DIR OUT.h5, or --train-images F --train-labels F "
        "OUT.h5 (see mnist2h5 --help)");
  Inputs in;
  if (by_name) {
    if (!dir.empty())
      throw UsageError(fmt("input folder ", dir,
                           " and --train-images/--test-images both given: "
                           "name the input either way, not both"));
    in = {get("train-images"), get("train-labels"), get("test-images"), get("test-labels")};
    if (in.train_images.empty() || in.train_labels.empty())
      throw UsageError(fmt(in.train_images.empty() ? "--train-labels" : "--train-images",
                           " given without ",
                           in.train_images.empty() ? "--train-images" : "--train-labels",
                           ": the training pair is required"));
    if (in.test_images.empty() != in.test_labels.empty())
      throw UsageError(fmt(in.test_images.empty() ? "--test-labels" : "--test-images",
                           " given without ",
                           in.test_images.empty() ? "--test-images" : "--test-labels",
                           ": give both test files or neither"));
  } else {
    if (dir.empty())
      throw UsageError(
          "no input: give DIR OUT.h5, or --train-images F --train-labels F OUT.h5 "
          "(see mnist2h5 --help)");
    in = find_inputs(dir);
  }

  const long k = vm["validation-size"].as<long>(), chunk = vm["chunk-rows"].as<long>();
  const int level = vm["compression"].as<int>();
  if (k < 0) throw UsageError(fmt("--validation-size ", k, ": must be 0 or more"));
  if (chunk < 1)
    throw UsageError(fmt("--chunk-rows ", chunk, ": must be at least 1 (default 1024)"));
  if (level < 0 || level > 9)
    throw UsageError(fmt("--compression ", level, ": must be 0 (none) to 9 (smallest)"));

  std::error_code ec;
  const fs::path out_dir = fs::path(out).parent_path();
  if (!out_dir.empty() && !fs::is_directory(out_dir, ec))
    throw UsageError(fmt(out, ": folder ", out_dir.string(), " does not exist"));
  if (fs::is_directory(out, ec)) throw UsageError(fmt(out, ": is a folder, expected a file name"));
  if (fs::exists(out, ec) && !vm["force"].as<bool>())
    throw UsageError(fmt(out, ": already exists (add --force to replace it)"));

  // ---- read and check everything ------------------------------------------------
  const Set train = read_set(in.train_images, in.train_labels);
  const bool has_test = !in.test_images.empty();
  const Set test = has_test ? read_set(in.test_images, in.test_labels) : Set{};
  if (has_test &&
      (test.images.dims[1] != train.images.dims[1] || test.images.dims[2] != train.images.dims[2]))
    throw UsageError(fmt(in.test_images, ": images are ", test.images.dims[1], "x",
                         test.images.dims[2], " but ", in.train_images, " holds ",
                         train.images.dims[1], "x", train.images.dims[2],
                         " images (train and test must come from the same data set)"));
  const size_t n = train.n(), n_valid = static_cast<size_t>(k);
  if (n_valid >= n)
    throw UsageError(fmt("--validation-size ", k, ": must be smaller than the ", n,
                         " training images in ", in.train_images));

  // ---- write OUT.h5.tmp.<pid>, then rename ------------------------------------------
  TempOutput temp(out);
  try {
    rbm::h5::Id f = rbm::h5::create_file(temp.path());
    const rbm::h5::Storage storage{static_cast<hsize_t>(chunk), level};
    namespace schema = rbm::schema;
    write_rows(f, schema::train_images, schema::train_labels, train, 0, n - n_valid, storage);
    if (n_valid)
      write_rows(f, schema::valid_images, schema::valid_labels, train, n - n_valid, n_valid,
                 storage);
    if (has_test)
      write_rows(f, schema::test_images, schema::test_labels, test, 0, test.n(), storage);
    std::string source = absolute(in.train_images) + ", " + absolute(in.train_labels);
    if (has_test) source += ", " + absolute(in.test_images) + ", " + absolute(in.test_labels);
    rbm::h5::write_attr(f, "source", source);
    if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) rbm::h5::fail("cannot flush");
  } catch (const rbm::Error& e) {  // a full disk, say: name the file in the one line
    const std::string msg = e.what();
    throw rbm::Error(msg.rfind(temp.path(), 0) == 0 ? msg : temp.path() + ": " + msg, e.code());
  }
  temp.commit();

  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string counts = fmt(n - n_valid, " train");
  if (n_valid) counts += fmt(", ", n_valid, " validation");
  if (has_test) counts += fmt(", ", test.n(), " test");
  std::printf("wrote %s: %s images of %ux%u, %.1f MB in %.2f s\n", out.c_str(), counts.c_str(),
              train.images.dims[1], train.images.dims[2],
              static_cast<double>(fs::file_size(out)) / 1e6, seconds);
  return rbm::exit_code::ok;
}

}  // namespace

int main(int argc, char** argv) {
  rbm::blas::ensure_fast_kernel(argc, argv);
  return rbm::run_program("mnist2h5", [&] { return convert(argc, argv); });
}
