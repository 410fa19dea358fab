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
// is written atomically (rbm/atomic_file.hpp; SIGINT/SIGTERM/SIGHUP remove the
// temporary), so a failed or interrupted run leaves no file behind, and --force
// replaces an old OUT.h5 only when the new one is complete. The conversion itself is
// rbm/mnist_h5.hpp.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "rbm/atomic_file.hpp"
#include "rbm/blas_backend.hpp"
#include "rbm/cli.hpp"
#include "rbm/errors.hpp"
#include "rbm/mnist_h5.hpp"
#include "rbm/mpi_env.hpp"
#include "rbm/paths.hpp"

namespace fs = std::filesystem;
namespace po = boost::program_options;
using rbm::fmt;
using rbm::UsageError;

namespace {

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
      ("validation-size", po::value<std::string>()->default_value("auto")->value_name("K"),
       "move the last K training images to /validation (K < number of training images); "
       "auto = a sixth of them, at most 10000 (MNIST: the usual last 10000 of 60000); 0 = none")
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
  rbm::MnistFiles in;
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
    in = rbm::find_mnist_files(dir);
  }

  const std::string k_text = vm["validation-size"].as<std::string>();
  long k = -1;  // -1: auto, decided once the training images are counted
  if (k_text != "auto") {
    size_t used = 0;
    try {
      k = std::stol(k_text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != k_text.size() || k_text.empty())
      throw UsageError("--validation-size " + k_text + ": expected a number of images or auto");
  }
  const long chunk = vm["chunk-rows"].as<long>();
  const int level = vm["compression"].as<int>();
  if (k < -1 || (k == -1 && k_text != "auto"))
    throw UsageError(fmt("--validation-size ", k_text, ": must be 0 or more (or auto)"));
  if (chunk < 1)
    throw UsageError(fmt("--chunk-rows ", chunk, ": must be at least 1 (default 1024)"));
  if (level < 0 || level > 9)
    throw UsageError(fmt("--compression ", level, ": must be 0 (none) to 9 (smallest)"));

  std::error_code ec;
  const fs::path out_dir = fs::path(out).parent_path();
  if (!out_dir.empty() && !fs::is_directory(out_dir, ec))
    throw UsageError(fmt(out, ": folder ", out_dir.string(), " does not exist"));
  if (fs::is_directory(out, ec)) throw UsageError(fmt(out, ": is a folder, expected a file name"));
  rbm::check_outputs_differ({{"output", out}}, {{"--train-images", in.train_images},
                                                {"--train-labels", in.train_labels},
                                                {"--test-images", in.test_images},
                                                {"--test-labels", in.test_labels}});
  if (fs::exists(out, ec) && !vm["force"].as<bool>())
    throw UsageError(fmt(out, ": already exists (add --force to replace it)"));

  // ---- read and check everything ------------------------------------------------
  const rbm::IdxSet train = rbm::read_idx_set(in.train_images, in.train_labels);
  const bool has_test = !in.test_images.empty();
  const rbm::IdxSet test = has_test ? rbm::read_idx_set(in.test_images, in.test_labels) : rbm::IdxSet{};
  if (has_test &&
      (test.images.dims[1] != train.images.dims[1] || test.images.dims[2] != train.images.dims[2]))
    throw UsageError(fmt(in.test_images, ": images are ", test.images.dims[1], "x",
                         test.images.dims[2], " but ", in.train_images, " holds ",
                         train.images.dims[1], "x", train.images.dims[2],
                         " images (train and test must come from the same data set)"));
  const size_t n = train.n();
  const size_t n_valid = k >= 0 ? static_cast<size_t>(k) : std::min<size_t>(10000, n / 6);
  if (n_valid >= n)
    throw UsageError(fmt("--validation-size ", k, ": must be smaller than the ", n,
                         " training images in ", in.train_images));

  // ---- write atomically ------------------------------------------------------------
  for (const std::string& stale : rbm::remove_stale_temporaries(out))
    std::printf("note: removed %s, left by a conversion that no longer runs\n", stale.c_str());
  rbm::AtomicFile temp(out, /*cleanup_on_signal=*/true);
  rbm::write_mnist_h5(temp.temp_path(), train, has_test ? &test : nullptr, n_valid, in,
                      rbm::h5::Storage{static_cast<hsize_t>(chunk), level});
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
