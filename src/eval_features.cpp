// eval_features.cpp — `rbm_eval transform` (p(h|x) of every image to HDF5, atomically)
// and `rbm_eval probe` (softmax regression on the features vs on the pixels) (rank 0).
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>

#include "rbm/checkpoint.hpp"
#include "rbm/errors.hpp"
#include "rbm/eval.hpp"
#include "rbm/eval_cli.hpp"
#include <filesystem>

#include "rbm/atomic_file.hpp"
#include "rbm/h5.hpp"
#include "rbm/paths.hpp"

namespace rbm::evalcli {

namespace ev = rbm::eval;
namespace fs = std::filesystem;

po::options_description transform_options() {
  po::options_description o("rbm_eval transform options");
  auto a = o.add_options();
  add_model(a);
  add_data(a, "dataset (mnist2h5 schema); also the second positional argument");
  a("out", po::value<std::string>()->value_name("FEATURES.h5"),
    "HDF5 file to write: /<split>/features float32 [N, H] = p(h|x) and /<split>/labels "
    "(copied); written to a temporary name and renamed when complete (required)");
  a("split", po::value<std::string>()->default_value("all")->value_name("NAME"),
    "train, test, validation, or all (every split the dataset has)");
  add_binarize(a, "none");
  add_seed(a);
  a("force", po::bool_switch(), "replace FEATURES.h5 if it exists");
  add_json(a);
  return o;
}

// Writes p(h|x) of every image of `split` as <split>/features [N, H] float32, in
// batches (hyperslabs of rows), and copies <split>/labels when the dataset has them.
size_t write_features(hid_t f, const std::string& data_path, const std::string& split,
                      const Params& p, ev::Binarize mode, const CounterRng& rng) {
  const Shard s = read_all(data_path, images_path(split));
  const hsize_t N = s.rows(), H = p.H;
  const std::string path = "/" + split + "/features";
  h5::ensure_group(f, "/" + split);
  hsize_t dims[2] = {N, H};
  hsize_t chunk[2] = {std::min<hsize_t>(N, std::max<hsize_t>(1, (1u << 18) / H)), H};
  h5::Id space(H5Screate_simple(2, dims, nullptr), H5Sclose);
  h5::Id dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_chunk(dcpl, 2, chunk);
  h5::Id d(H5Dcreate2(f, path.c_str(), H5T_NATIVE_FLOAT, space, H5P_DEFAULT, dcpl,
                           H5P_DEFAULT),
                H5Dclose);
  if (d < 0) h5::fail("cannot create " + path);
  Matrix P;
  for (size_t first = 0; first < N; first += kBatch) {
    const size_t n = std::min<size_t>(kBatch, N - first);
    const Matrix X = ev::images_matrix(s, first, n, mode, rng, ev::split_sub(split));
    P.resize(p.H, static_cast<Eigen::Index>(n));
    hidden_probs(p, X, P);  // [H, n] column-major = [n, H] row-major
    hsize_t start[2] = {first, 0}, count[2] = {n, H};
    h5::Id fspace(H5Dget_space(d), H5Sclose);
    H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, nullptr, count, nullptr);
    h5::Id mspace(H5Screate_simple(2, count, nullptr), H5Sclose);
    if (H5Dwrite(d, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, P.data()) < 0)
      h5::fail("cannot write " + path);
  }
  h5::Id in = h5::open_file(data_path);
  if (h5::exists(in, labels_path(split))) {
    std::vector<hsize_t> ld;
    const std::vector<uint8_t> labels =
        h5::read_array<uint8_t>(in, labels_path(split), data_path, &ld);
    h5::write_array<uint8_t>(f, labels_path(split), labels.data(), ld);
  }
  return N;
}

int run_transform(const Context& c) {
  std::string model_path, data_path, out;
  ev::Binarize mode{};
  ParamBuffer model;
  std::vector<std::string> splits;
  agree(c.env, [&] {  // the checks, on rank 0; every rank exits with their verdict
    if (!c.env.root()) return;
    model_path = need(c, "model", "MODEL.h5");
    data_path = need(c, "data", "DATA.h5");
    out = need(c, "out", "--out FEATURES.h5");
    const std::string split = c.str("split");
    check_split_name(split, true);
    const bool force = c.flag("force");
    check_output(out, &force);
    check_outputs_differ({{"--out", out}}, {{"MODEL", model_path}, {"DATA", data_path}});
    model = model_for_eval(model_path);
    mode = resolve_binarize(c, model_path, ev::Binarize::none, false);
    {
      h5::Id in = h5::open_file(data_path);
      for (const char* s : {"train", "validation", "test"})
        if ((split == "all" || split == s) && h5::exists(in, images_path(s)))
          splits.push_back(s);
    }
    if (splits.empty())
      throw UsageError(fmt(data_path, ": no ", split == "all" ? "/train, /validation or /test"
                                                               : images_path(split),
                           " images (expected the mnist2h5 schema)"));
    for (const std::string& s : splits) data_for_model(data_path, s, model_path, model.V());
  });
  if (!c.env.root()) return exit_code::ok;
  {
    const Params& p = model.view;
    const CounterRng rng(c.seed());
    AtomicFile tmp(out);
    std::string counts;
    size_t total = 0;
    {
      h5::Id f = h5::create_file(tmp.temp_path());
      for (const std::string& s : splits) {
        const size_t n = write_features(f, data_path, s, p, mode, rng);
        counts += fmt(counts.empty() ? "" : ", ", s, " ", n);
        total += n;
      }
      h5::write_attr(f, "format", std::string("rbm-features"));
      h5::write_attr(f, "format_version", int64_t{1});
      h5::write_attr(f, "model", fs::absolute(model_path).string());
      h5::write_attr(f, "data", fs::absolute(data_path).string());
      h5::write_attr(f, "binarize", ev::binarize_name(mode));
      h5::close_written(f, tmp.temp_path());
    }
    tmp.commit();
    Json j;
    j.add("subcommand", "transform").add("model", model_path).add("data", data_path)
        .add("out", out).add("splits", counts).add("images", total).add("H", p.H)
        .add("binarize", ev::binarize_name(mode)).add("seconds", since(c.t0));
    print_result(c,
                 fmt("transform: wrote ", out, ": p(h|x) float32 [N, ", p.H, "] for ", counts,
                     " images with their labels, binarize ", ev::binarize_text(mode)),
                 j);
  }
  return exit_code::ok;
}

// ---- probe ----------------------------------------------------------------------------

po::options_description probe_options() {
  po::options_description o("rbm_eval probe options");
  auto a = o.add_options();
  add_model(a);
  add_data(a, "dataset (mnist2h5 schema) with /train and the --split images and labels; "
              "also the second positional argument");
  a("split", po::value<std::string>()->default_value("test")->value_name("NAME"),
    "images the accuracy is measured on: test or validation");
  a("l2", po::value<double>()->default_value(1e-4)->value_name("LAMBDA"),
    "L2 penalty (lambda/2) ||T||^2 on the regression weights (not the biases)");
  a("max-iter", po::value<long>()->default_value(300)->value_name("N"),
    "LBFGS iterations at most (each one or a few full passes over the training images)");
  a("train-size", po::value<long>()->default_value(0)->value_name("N"),
    "use only the first N training images (0 = all), for speed");
  add_binarize(a, "none");
  add_seed(a);
  add_json(a);
  return o;
}

std::vector<int> read_labels(const std::string& data, const std::string& split, size_t n) {
  h5::Id f = h5::open_file(data);
  std::vector<uint8_t> raw = h5::read_array<uint8_t>(f, labels_path(split), data);
  if (raw.size() < n)
    throw UsageError(fmt(data, ": ", labels_path(split), " has ", raw.size(), " labels for ", n,
                         " images"));
  return std::vector<int>(raw.begin(), raw.begin() + static_cast<std::ptrdiff_t>(n));
}

int run_probe(const Context& c) {
  std::string model_path, data_path, split;
  double l2 = 0;
  int max_iter = 0;
  long train_size = 0;
  ev::Binarize mode{};
  ParamBuffer model;
  agree(c.env, [&] {  // the checks, on rank 0; every rank exits with their verdict
    if (!c.env.root()) return;
    model_path = need(c, "model", "MODEL.h5");
    data_path = need(c, "data", "DATA.h5");
    split = c.str("split");
    if (split != "test" && split != "validation")
      throw UsageError("--split " + split + ": expected test or validation");
    l2 = c.vm["l2"].as<double>();
    if (!(l2 >= 0)) throw UsageError(fmt("--l2 ", l2, ": must be 0 or more"));
    max_iter = static_cast<int>(at_least(c, "max-iter", 1));
    train_size = at_least(c, "train-size", 0);
    model = model_for_eval(model_path);
    mode = resolve_binarize(c, model_path, ev::Binarize::none, false);
    data_for_model(data_path, "train", model_path, model.V());
    data_for_model(data_path, split, model_path, model.V());
  });
  if (!c.env.root()) return exit_code::ok;
  {
    const Params& p = model.view;
    const CounterRng rng(c.seed());

    const Shard tr = read_all(data_path, schema::train_images);
    const Shard te = read_all(data_path, images_path(split));
    const size_t n_tr = train_size ? std::min(tr.rows(), static_cast<size_t>(train_size))
                                   : tr.rows();
    const std::vector<int> y_tr = read_labels(data_path, "train", n_tr);
    const std::vector<int> y_te = read_labels(data_path, split, te.rows());
    const int classes = 1 + std::max(*std::max_element(y_tr.begin(), y_tr.end()),
                                     *std::max_element(y_te.begin(), y_te.end()));
    const Matrix X_tr = ev::images_matrix(tr, 0, n_tr, mode, rng, ev::split_sub("train"));
    const Matrix X_te = ev::images_matrix(te, 0, te.rows(), mode, rng, ev::split_sub(split));
    Matrix F_tr(p.H, X_tr.cols()), F_te(p.H, X_te.cols());
    hidden_probs(p, X_tr, F_tr);
    hidden_probs(p, X_te, F_te);

    auto t = Clock::now();
    const ev::ProbeResult feat = ev::softmax_probe(F_tr, y_tr, F_te, y_te, classes, l2, max_iter);
    const double feat_s = since(t);
    t = Clock::now();
    const ev::ProbeResult raw = ev::softmax_probe(X_tr, y_tr, X_te, y_te, classes, l2, max_iter);
    const double raw_s = since(t);

    char buf[1024];
    std::snprintf(buf, sizeof buf,
                  "probe: %s accuracy RBM features %.4f (H = %zu, train %.4f, %d passes, %s) vs "
                  "raw pixels %.4f (D = %zu, train %.4f, %d passes, %s) | softmax regression, L2 %g, "
                  "%zu train / %zu %s images, %d classes, binarize %s",
                  split.c_str(), feat.test_accuracy, p.H, feat.train_accuracy, feat.evaluations,
                  feat.stop.c_str(), raw.test_accuracy, p.V, raw.train_accuracy, raw.evaluations,
                  raw.stop.c_str(), l2, n_tr, te.rows(), split.c_str(), classes,
                  ev::binarize_text(mode).c_str());
    Json j;
    j.add("subcommand", "probe").add("model", model_path).add("data", data_path)
        .add("split", split).add("train_images", n_tr).add("test_images", te.rows())
        .add("classes", classes).add("l2", l2).add("binarize", ev::binarize_name(mode))
        .add("features_test_accuracy", feat.test_accuracy)
        .add("features_train_accuracy", feat.train_accuracy)
        .add("features_objective", feat.objective).add("features_iterations", feat.iterations)
        .add("features_evaluations", feat.evaluations)
        .add("features_stop", feat.stop).add("features_seconds", feat_s)
        .add("raw_test_accuracy", raw.test_accuracy).add("raw_train_accuracy", raw.train_accuracy)
        .add("raw_objective", raw.objective).add("raw_iterations", raw.iterations)
        .add("raw_evaluations", raw.evaluations)
        .add("raw_stop", raw.stop).add("raw_seconds", raw_s).add("seconds", since(c.t0));
    print_result(c, buf, j);
  }
  return exit_code::ok;
}

}  // namespace rbm::evalcli
