// rbm_eval — how good is a trained RBM, and what does it look like:
//
//   [mpirun -np N] rbm_eval loglik MODEL.h5 DATA.h5 [--split test] [--json]
//   rbm_eval pseudo    MODEL.h5 DATA.h5          pseudo-likelihood, reconstruction, F gap
//   rbm_eval filters   MODEL.h5 --out F.png      each hidden unit's weights as a tile
//   rbm_eval samples   MODEL.h5 --out F.png      Gibbs chains started from noise
//   rbm_eval transform MODEL.h5 DATA.h5 --out FEATURES.h5   p(h|x) for every image
//   rbm_eval probe     MODEL.h5 DATA.h5          softmax regression: features vs pixels
//
// MODEL.h5 is any file with /model in the checkpoint schema (rbm/checkpoint.hpp),
// DATA.h5 any dataset in the mnist2h5 schema (rbm/dataset.hpp). The math lives in
// rbm/eval.hpp; this file is options, I/O, MPI and reporting.
//
// Only `loglik` uses several ranks (its AIS runs are independent: run r is the same
// computation whatever rank does it). The other subcommands run on rank 0; under
// mpirun the other ranks wait. Every subcommand prints a configuration table, a
// one-line summary, and with --json a JSON object as the LAST line of stdout.
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "rbm/blas_backend.hpp"
#include "rbm/checkpoint.hpp"
#include "rbm/cli.hpp"
#include "rbm/dataset.hpp"
#include "rbm/errors.hpp"
#include "rbm/eval.hpp"
#include "rbm/h5.hpp"
#include "rbm/mpi_env.hpp"
#include "rbm/png_grid.hpp"

namespace fs = std::filesystem;
namespace po = boost::program_options;
namespace cli = rbm::cli;
namespace ev = rbm::eval;
using rbm::fmt;
using rbm::Matrix;
using rbm::MpiEnv;
using rbm::UsageError;

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// ---- JSON: one flat object on one line ---------------------------------------

class Json {
 public:
  Json& add(const std::string& key, double v) {
    char buf[64];
    if (std::isfinite(v))
      std::snprintf(buf, sizeof buf, "%.17g", v);
    else
      std::snprintf(buf, sizeof buf, "null");
    return raw(key, buf);
  }
  Json& add(const std::string& key, long long v) { return raw(key, std::to_string(v)); }
  Json& add(const std::string& key, size_t v) { return raw(key, std::to_string(v)); }
  Json& add(const std::string& key, int v) { return raw(key, std::to_string(v)); }
  Json& add(const std::string& key, const std::string& v) { return raw(key, quote(v)); }
  Json& add(const std::string& key, const char* v) { return raw(key, quote(v)); }
  std::string str() const { return "{" + body_ + "}"; }

 private:
  Json& raw(const std::string& key, const std::string& value) {
    body_ += (body_.empty() ? "" : ", ") + quote(key) + ": " + value;
    return *this;
  }
  static std::string quote(const std::string& s) {
    std::string o = "\"";
    for (unsigned char c : s) {
      if (c == '"' || c == '\\') {
        o += '\\';
        o += static_cast<char>(c);
      } else if (c < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        o += buf;
      } else {
        o += static_cast<char>(c);
      }
    }
    return o + "\"";
  }
  std::string body_;
};

// ---- subcommand table ---------------------------------------------------------

struct Context {
  const MpiEnv& env;
  const cli::Parsed& parsed;
  const po::variables_map& vm;
  Clock::time_point t0;
  const char* sub;
  std::string str(const char* name) const {
    return vm.count(name) ? vm[name].as<std::string>() : std::string();
  }
  long num(const char* name) const { return vm[name].as<long>(); }
  bool flag(const char* name) const { return vm.count(name) && vm[name].as<bool>(); }
};

struct Subcommand {
  const char* name;
  const char* usage;
  const char* summary;
  std::function<po::options_description()> options;
  std::vector<const char*> positional;  // option names filled by positional arguments
  std::function<int(const Context&)> run;
};

// ---- option declarations shared by several subcommands (declared once each) ------

void add_model(po::options_description_easy_init& o) {
  o("model", po::value<std::string>()->value_name("MODEL.h5"),
    "model or checkpoint file (/model in the rbm-checkpoint schema); also the first "
    "positional argument");
}
void add_data(po::options_description_easy_init& o, const char* what) {
  o("data", po::value<std::string>()->value_name("DATA.h5"), what);
}
void add_seed(po::options_description_easy_init& o) {
  o("seed", po::value<unsigned long>()->default_value(1)->value_name("S"),
    "seed of every random draw (counter-based: results do not depend on the rank count)");
}
void add_binarize(po::options_description_easy_init& o, const char* def) {
  o("binarize", po::value<std::string>()->default_value(def)->value_name("MODE"),
    "how pixels x become visible values: threshold (x >= 128), stochastic "
    "(Bernoulli(x/255), seeded) or none (x/255)");
}
void add_json(po::options_description_easy_init& o) {
  o("json", po::bool_switch(), "also print the results as one JSON object (the last line)");
}

// ---- checks and inputs ----------------------------------------------------------

std::string need(const Context& c, const char* name, const char* what) {
  std::string v = c.str(name);
  if (v.empty())
    throw UsageError(fmt("no ", what, " given (see rbm_eval ", c.sub, " --help)"));
  return v;
}

long at_least(const Context& c, const char* name, long min) {
  const long v = c.num(name);
  if (v < min) throw UsageError(fmt("--", name, " ", v, ": must be at least ", min));
  return v;
}

std::string images_path(const std::string& split) { return "/" + split + "/images"; }
std::string labels_path(const std::string& split) { return "/" + split + "/labels"; }

void check_split_name(const std::string& split, bool allow_all) {
  if (split == "train" || split == "test" || split == "validation" || (allow_all && split == "all"))
    return;
  throw UsageError(fmt("--split ", split, ": expected train, test, validation",
                       allow_all ? " or all" : ""));
}

// The dataset at /<split>/images, checked against the model's visible units.
rbm::DatasetInfo data_for_model(const std::string& data, const std::string& split,
                                const std::string& model, size_t V) {
  rbm::DatasetInfo info = rbm::inspect_dataset(data, images_path(split));
  if (info.dim != V)
    throw UsageError(fmt(data, ": ", info.path, " has ", info.dim, " pixels per image but ",
                         model, " has V = ", V, " visible units (model and data must match)"));
  return info;
}

// An output file's folder must exist; an existing file is replaced only with --force
// when `force` is not null.
void check_output(const std::string& out, const bool* force) {
  std::error_code ec;
  const fs::path dir = fs::path(out).parent_path();
  if (!dir.empty() && !fs::is_directory(dir, ec))
    throw UsageError(fmt(out, ": folder ", dir.string(), " does not exist"));
  if (fs::is_directory(out, ec)) throw UsageError(out + ": is a folder, expected a file name");
  if (force && !*force && fs::exists(out, ec))
    throw UsageError(out + ": already exists (add --force to replace it)");
}

// Tile shape of a V-pixel image: /train/images attributes rows, cols of --data when
// given, else a square.
std::pair<size_t, size_t> tile_shape(const std::string& data, size_t V) {
  if (!data.empty()) {
    rbm::DatasetInfo info = rbm::inspect_dataset(data, rbm::schema::train_images);
    if (info.img_rows > 0 && info.img_cols > 0) {
      const size_t r = static_cast<size_t>(info.img_rows), c = static_cast<size_t>(info.img_cols);
      if (r * c != V)
        throw UsageError(fmt(data, ": images are ", r, "x", c, " = ", r * c,
                             " pixels but the model has V = ", V, " visible units"));
      return {r, c};
    }
  }
  const size_t s = static_cast<size_t>(std::llround(std::sqrt(static_cast<double>(V))));
  if (s * s != V)
    throw UsageError(fmt("V = ", V, " visible units is not a square image: give --data DATA.h5 "
                         "whose /train/images has attributes rows and cols"));
  return {s, s};
}

void print_header(const Context& c, const Subcommand& sub, const po::options_description& opts) {
  if (!c.env.root()) return;
  std::printf("# rbm_eval %s | %d rank%s | blas: %s\n", sub.name, c.env.size,
              c.env.size == 1 ? "" : "s", rbm::blas::describe().c_str());
  std::printf("%s", cli::config_table(opts, c.parsed).c_str());
}

void print_result(const Context& c, const std::string& summary, const Json& json) {
  if (!c.env.root()) return;
  std::printf("%s\n", summary.c_str());
  if (c.flag("json")) std::printf("%s\n", json.str().c_str());
  std::fflush(stdout);
}

std::vector<uint64_t> global_ids(const rbm::Shard& s, size_t first, size_t count) {
  std::vector<uint64_t> ids(count);
  for (size_t n = 0; n < count; ++n) ids[n] = s.layout.global_row(first + n);
  return ids;
}

constexpr size_t kBatch = 4096;  // images per product when streaming a split

// ---- loglik -----------------------------------------------------------------------

po::options_description loglik_options() {
  po::options_description o("rbm_eval loglik options");
  auto a = o.add_options();
  add_model(a);
  add_data(a, "dataset (mnist2h5 schema): the split to score, and /train for the base rate; "
              "also the second positional argument");
  a("split", po::value<std::string>()->default_value("test")->value_name("NAME"),
    "images whose mean log-probability is reported: train, test or validation");
  a("runs", po::value<long>()->default_value(100)->value_name("M"),
    "AIS runs (independent importance weights; spread over the MPI ranks)");
  a("betas", po::value<long>()->default_value(14500)->value_name("K"),
    "AIS annealing steps; the Salakhutdinov-Murray schedule (steps of 1e-3 to beta 0.5, 1e-4 "
    "to 0.9, 1e-5 to 1 at K = 14500; other K keep those proportions)");
  add_seed(a);
  add_binarize(a, "threshold");
  a("exact-max", po::value<long>()->default_value(20)->value_name("U"),
    "also compute log Z exactly by enumeration when min(V, H) <= U (2^U states)");
  add_json(a);
  return o;
}

int run_loglik(const Context& c) {
  std::string model_path, data_path, split;
  rbm::ParamBuffer model;
  ev::Binarize mode{};
  size_t runs = 0, K = 0, n_train = 0;
  long exact_max = 0;
  rbm::agree(c.env, [&] {
    model_path = need(c, "model", "MODEL.h5");
    data_path = need(c, "data", "DATA.h5");
    split = c.str("split");
    check_split_name(split, false);
    runs = static_cast<size_t>(at_least(c, "runs", 2));
    K = static_cast<size_t>(at_least(c, "betas", 3));
    exact_max = at_least(c, "exact-max", 0);
    mode = ev::parse_binarize(c.str("binarize"));
    model = rbm::read_model(model_path);
    n_train = data_for_model(data_path, "train", model_path, model.V()).rows;
    data_for_model(data_path, split, model_path, model.V());
  });
  const rbm::Params& p = model.view;
  const rbm::CounterRng rng(c.vm["seed"].as<unsigned long>());

  // Base-rate model from the training pixel means: sums of integers, exact in any order.
  Eigen::VectorXd sums;
  {
    std::optional<rbm::Shard> shard;
    rbm::agree(c.env, [&] {
      shard = rbm::read_shard(data_path, rbm::schema::train_images, c.env.rank, c.env.size);
    });
    const rbm::Shard& train = *shard;
    std::vector<unsigned long long> s(p.V, 0), g(p.V, 0);
    for (size_t l = 0; l < train.rows(); ++l) {
      const uint8_t* px = train.row(l);
      for (size_t i = 0; i < p.V; ++i)
        s[i] += mode == ev::Binarize::threshold ? (px[i] >= 128 ? 1u : 0u) : px[i];
    }
    MPI_Allreduce(s.data(), g.data(), static_cast<int>(p.V), MPI_UNSIGNED_LONG_LONG, MPI_SUM,
                  MPI_COMM_WORLD);
    sums.resize(static_cast<Eigen::Index>(p.V));
    const double scale = mode == ev::Binarize::threshold ? 1.0 : 1.0 / 255.0;
    for (size_t i = 0; i < p.V; ++i) sums(static_cast<Eigen::Index>(i)) = static_cast<double>(g[i]) * scale;
  }
  const rbm::Vector bA = ev::base_rate_biases(sums, static_cast<double>(n_train));
  const double log_za = ev::log_z_base_rate(bA, p.H);

  // AIS: rank r does the whole groups [r G / P, (r+1) G / P) of runs (eval.hpp), a
  // contiguous range of global runs; rank 0 gathers the weights in global run order.
  const std::vector<double> betas = ev::ais_betas(K);
  const size_t P = static_cast<size_t>(c.env.size), G = ev::ais_groups(runs);
  auto first_run_of_rank = [&](size_t q) { return ev::ais_group_start(runs, G * q / P); };
  const auto t_ais = Clock::now();
  std::vector<double> local;
  for (size_t g = G * static_cast<size_t>(c.env.rank) / P;
       g < G * (static_cast<size_t>(c.env.rank) + 1) / P; ++g) {
    const size_t lo = ev::ais_group_start(runs, g), hi = ev::ais_group_start(runs, g + 1);
    const std::vector<double> w = ev::ais_log_weights(p, bA, betas, lo, hi - lo, rng);
    local.insert(local.end(), w.begin(), w.end());
  }
  std::vector<int> counts(P), displs(P);
  for (size_t q = 0; q < P; ++q) {
    displs[q] = static_cast<int>(first_run_of_rank(q));
    counts[q] = static_cast<int>(first_run_of_rank(q + 1) - first_run_of_rank(q));
  }
  std::vector<double> log_w(c.env.root() ? runs : 0);
  MPI_Gatherv(local.data(), static_cast<int>(local.size()), MPI_DOUBLE, log_w.data(),
              counts.data(), displs.data(), MPI_DOUBLE, 0, MPI_COMM_WORLD);
  const double ais_seconds = since(t_ais);

  // Mean free energy of the split: each rank its shard, one sum.
  double fsum[2] = {0, 0}, fsum_g[2] = {0, 0};  // sum of F, number of images
  {
    std::optional<rbm::Shard> shard;
    rbm::agree(c.env, [&] {
      shard = rbm::read_shard(data_path, images_path(split), c.env.rank, c.env.size);
    });
    const rbm::Shard& s = *shard;
    for (size_t first = 0; first < s.rows(); first += kBatch) {
      const size_t n = std::min(kBatch, s.rows() - first);
      const Matrix X = ev::images_matrix(s, first, n, mode, rng, ev::split_sub(split));
      fsum[0] += ev::free_energy_d(p, X).sum();
      fsum[1] += static_cast<double>(n);
    }
  }
  MPI_Allreduce(fsum, fsum_g, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  if (!c.env.root()) return rbm::exit_code::ok;

  const ev::AisEstimate est = ev::ais_combine(log_w, log_za);
  const double mean_f = fsum_g[0] / fsum_g[1];
  const double mean_ll = -mean_f - est.log_z;
  const bool do_exact = std::min(p.V, p.H) <= static_cast<size_t>(exact_max);
  const double exact = do_exact ? ev::log_z_exact(p) : 0.0;
  const double rate = static_cast<double>(runs) * static_cast<double>(K) / ais_seconds;

  char buf[1024];
  std::snprintf(buf, sizeof buf,
                "loglik: log Z = %.4f +- %.4f (3 s.e.; AIS %zu runs x %zu betas, ESS %.1f, "
                "%.1f s, %.3g run-steps/s) | %s: mean log p(v) = %.4f nats over %.0f images, "
                "binarize %s",
                est.log_z, 3 * est.log_z_stderr, runs, K, est.ess, ais_seconds, rate,
                split.c_str(), mean_ll, fsum_g[1], ev::binarize_text(mode).c_str());
  std::string summary = buf;
  if (do_exact) {
    std::snprintf(buf, sizeof buf, " | exact log Z = %.4f (AIS - exact = %+.4f)", exact,
                  est.log_z - exact);
    summary += buf;
  }
  Json j;
  j.add("subcommand", "loglik").add("model", model_path).add("data", data_path)
      .add("split", split).add("images", static_cast<size_t>(fsum_g[1]))
      .add("binarize", ev::binarize_name(mode)).add("V", p.V).add("H", p.H)
      .add("runs", runs).add("betas", K).add("seed", static_cast<size_t>(rng.seed()))
      .add("log_z", est.log_z).add("log_z_stderr", est.log_z_stderr)
      .add("log_z_lo", est.log_z_lo).add("log_z_hi", est.log_z_hi)
      .add("log_z_base", est.log_z_base).add("ess", est.ess)
      .add("mean_free_energy", mean_f).add("mean_loglik", mean_ll);
  if (do_exact) j.add("log_z_exact", exact);
  j.add("ais_seconds", ais_seconds).add("run_steps_per_second", rate)
      .add("ranks", c.env.size).add("seconds", since(c.t0));
  print_result(c, summary, j);
  return rbm::exit_code::ok;
}

// ---- pseudo -----------------------------------------------------------------------

po::options_description pseudo_options() {
  po::options_description o("rbm_eval pseudo options");
  auto a = o.add_options();
  add_model(a);
  add_data(a, "dataset (mnist2h5 schema); also the second positional argument");
  a("split", po::value<std::string>()->default_value("test")->value_name("NAME"),
    "images scored (train, test or validation); the free-energy gap compares them with "
    "as many /train images");
  add_seed(a);
  add_binarize(a, "threshold");
  add_json(a);
  return o;
}

int run_pseudo(const Context& c) {
  rbm::agree(c.env, [&] {
    if (!c.env.root()) return;
    const std::string model_path = need(c, "model", "MODEL.h5");
    const std::string data_path = need(c, "data", "DATA.h5");
    const std::string split = c.str("split");
    check_split_name(split, false);
    const ev::Binarize mode = ev::parse_binarize(c.str("binarize"));
    const rbm::ParamBuffer model = rbm::read_model(model_path);
    const rbm::Params& p = model.view;
    data_for_model(data_path, "train", model_path, p.V);
    data_for_model(data_path, split, model_path, p.V);
    const rbm::CounterRng rng(c.vm["seed"].as<unsigned long>());

    const rbm::Shard s = rbm::read_all(data_path, images_path(split));
    const rbm::Shard train = rbm::read_all(data_path, rbm::schema::train_images);
    const size_t n_gap = std::min(s.rows(), train.rows());
    double pl = 0, rsq = 0, f_split = 0, f_train = 0;
    for (size_t first = 0; first < s.rows(); first += kBatch) {
      const size_t n = std::min(kBatch, s.rows() - first);
      const Matrix X = ev::images_matrix(s, first, n, mode, rng, ev::split_sub(split));
      const std::vector<uint64_t> ids = global_ids(s, first, n);
      pl += ev::pseudo_loglik(p, X, ids.data(), rng).sum();
      rsq += ev::recon_sq(p, X, ids.data(), rng);
      if (first < n_gap)
        f_split +=
            ev::free_energy_d(p, X.leftCols(static_cast<Eigen::Index>(std::min(n, n_gap - first))))
                .sum();
    }
    for (size_t first = 0; first < n_gap; first += kBatch) {
      const size_t n = std::min(kBatch, n_gap - first);
      const Matrix X = ev::images_matrix(train, first, n, mode, rng, ev::split_sub("train"));
      f_train += ev::free_energy_d(p, X).sum();
    }
    const double N = static_cast<double>(s.rows()), G = static_cast<double>(n_gap);
    const double mean_pl = pl / N, mse = rsq / (N * static_cast<double>(p.V));
    const double fs = f_split / G, ft = f_train / G;
    char buf[1024];
    std::snprintf(buf, sizeof buf,
                  "pseudo: %s: mean pseudo-log-likelihood = %.4f nats/image (%zu images, one "
                  "flipped pixel each, as sklearn score_samples) | reconstruction MSE = %.6f "
                  "per pixel | free-energy gap F(%s) - F(train) = %+.4f (%.4f - %.4f, %zu images "
                  "each) | binarize %s",
                  split.c_str(), mean_pl, s.rows(), mse, split.c_str(), fs - ft, fs, ft, n_gap,
                  ev::binarize_text(mode).c_str());
    Json j;
    j.add("subcommand", "pseudo").add("model", model_path).add("data", data_path)
        .add("split", split).add("images", s.rows()).add("binarize", ev::binarize_name(mode))
        .add("seed", static_cast<size_t>(rng.seed())).add("pseudo_loglik", mean_pl)
        .add("recon_mse", mse).add("free_energy_split", fs).add("free_energy_train", ft)
        .add("free_energy_gap", fs - ft).add("gap_images", n_gap)
        .add("seconds", since(c.t0));
    print_result(c, buf, j);
  });
  return rbm::exit_code::ok;
}

// ---- filters ----------------------------------------------------------------------

po::options_description filters_options() {
  po::options_description o("rbm_eval filters options");
  auto a = o.add_options();
  add_model(a);
  a("out", po::value<std::string>()->value_name("FILE.png"), "PNG file to write (required)");
  add_data(a, "optional dataset whose /train/images attributes rows, cols give the tile "
              "shape (default: a square of sqrt(V) pixels)");
  a("max-tiles", po::value<long>()->default_value(100)->value_name("N"),
    "draw hidden units 0 .. N-1 (0 = all H)");
  add_json(a);
  return o;
}

int run_filters(const Context& c) {
  rbm::agree(c.env, [&] {
    if (!c.env.root()) return;
    const std::string model_path = need(c, "model", "MODEL.h5");
    const std::string out = need(c, "out", "--out FILE.png");
    const long max_tiles = at_least(c, "max-tiles", 0);
    check_output(out, nullptr);
    const rbm::ParamBuffer model = rbm::read_model(model_path);
    const rbm::Params& p = model.view;
    const auto [rows, cols] = tile_shape(c.str("data"), p.V);
    const size_t n = max_tiles == 0 ? p.H : std::min(p.H, static_cast<size_t>(max_tiles));
    std::vector<std::vector<uint8_t>> tiles(n);
    std::vector<float> w(p.V);
    for (size_t j = 0; j < n; ++j) {
      for (size_t i = 0; i < p.V; ++i)
        w[i] = p.W(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j));
      tiles[j] = rbm::png::scale_to_bytes(w.data(), p.V);
    }
    const rbm::png::GridLayout g(n, rows, cols, 0);
    rbm::png::write_png(out, rbm::png::tile_grid(tiles, g, 0));
    Json j;
    j.add("subcommand", "filters").add("model", model_path).add("out", out).add("tiles", n)
        .add("tile_rows", rows).add("tile_cols", cols).add("grid_cols", g.grid_cols)
        .add("width", g.width()).add("height", g.height()).add("seconds", since(c.t0));
    print_result(c,
                 fmt("filters: wrote ", out, ": ", n, " of ", p.H, " hidden units as ", rows, "x",
                     cols, " tiles (each scaled min..max -> black..white), ", g.grid_rows, "x",
                     g.grid_cols, " grid, ", g.width(), "x", g.height(), " px"),
                 j);
  });
  return rbm::exit_code::ok;
}

// ---- samples ----------------------------------------------------------------------

po::options_description samples_options() {
  po::options_description o("rbm_eval samples options");
  auto a = o.add_options();
  add_model(a);
  a("out", po::value<std::string>()->value_name("FILE.png"), "PNG file to write (required)");
  add_data(a, "optional dataset whose /train/images attributes rows, cols give the tile "
              "shape (default: a square of sqrt(V) pixels)");
  a("chains", po::value<long>()->default_value(10)->value_name("N"),
    "Gibbs chains, started from uniform noise; one row of the picture each");
  a("burn-in", po::value<long>()->default_value(1000)->value_name("T"),
    "Gibbs sweeps before the first snapshot (at least 1)");
  a("spacing", po::value<long>()->default_value(1000)->value_name("T"),
    "Gibbs sweeps between snapshots");
  a("snapshots", po::value<long>()->default_value(10)->value_name("S"),
    "snapshots per chain (columns); each shows p(v|h) of its sweep");
  add_seed(a);
  add_json(a);
  return o;
}

int run_samples(const Context& c) {
  rbm::agree(c.env, [&] {
    if (!c.env.root()) return;
    const std::string model_path = need(c, "model", "MODEL.h5");
    const std::string out = need(c, "out", "--out FILE.png");
    const size_t chains = static_cast<size_t>(at_least(c, "chains", 1));
    const size_t burn_in = static_cast<size_t>(at_least(c, "burn-in", 1));
    const size_t spacing = static_cast<size_t>(at_least(c, "spacing", 1));
    const size_t snaps = static_cast<size_t>(at_least(c, "snapshots", 1));
    check_output(out, nullptr);
    const rbm::ParamBuffer model = rbm::read_model(model_path);
    const rbm::Params& p = model.view;
    const auto [rows, cols] = tile_shape(c.str("data"), p.V);
    const rbm::CounterRng rng(c.vm["seed"].as<unsigned long>());
    const auto t = Clock::now();
    const Matrix S = ev::gibbs_snapshots(p, chains, burn_in, spacing, snaps, rng);
    const double gibbs_s = since(t);
    std::vector<std::vector<uint8_t>> tiles(static_cast<size_t>(S.cols()));
    for (Eigen::Index k = 0; k < S.cols(); ++k)
      tiles[static_cast<size_t>(k)] = rbm::png::probs_to_bytes(S.col(k).data(), p.V);
    const rbm::png::GridLayout g(tiles.size(), rows, cols, snaps);
    rbm::png::write_png(out, rbm::png::tile_grid(tiles, g, 128));
    const size_t last = burn_in + (snaps - 1) * spacing;
    Json j;
    j.add("subcommand", "samples").add("model", model_path).add("out", out)
        .add("chains", chains).add("snapshots", snaps).add("burn_in", burn_in)
        .add("spacing", spacing).add("sweeps", last).add("seed", static_cast<size_t>(rng.seed()))
        .add("width", g.width()).add("height", g.height()).add("gibbs_seconds", gibbs_s)
        .add("seconds", since(c.t0));
    print_result(c,
                 fmt("samples: wrote ", out, ": ", chains, " chains from noise (rows) x ", snaps,
                     " snapshots of p(v|h) (columns) at sweeps ", burn_in, " + s * ", spacing,
                     " up to ", last, ", ", g.width(), "x", g.height(), " px, ", gibbs_s,
                     " s of Gibbs sampling"),
                 j);
  });
  return rbm::exit_code::ok;
}

// ---- transform ----------------------------------------------------------------------

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

// Removes a temporary file unless it was renamed into place.
class TempFile {
 public:
  explicit TempFile(std::string final_path)
      : final_(std::move(final_path)), temp_(fmt(final_, ".tmp.", ::getpid())) {}
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    std::error_code ec;
    if (!done_) fs::remove(temp_, ec);
  }
  const std::string& path() const { return temp_; }
  void commit() {
    std::error_code ec;
    fs::rename(temp_, final_, ec);
    if (ec) throw rbm::Error(fmt(final_, ": cannot rename ", temp_, " to it (", ec.message(), ")"));
    done_ = true;
  }

 private:
  std::string final_, temp_;
  bool done_ = false;
};

// Writes p(h|x) of every image of `split` as <split>/features [N, H] float32, in
// batches (hyperslabs of rows), and copies <split>/labels when the dataset has them.
size_t write_features(hid_t f, const std::string& data_path, const std::string& split,
                      const rbm::Params& p, ev::Binarize mode, const rbm::CounterRng& rng) {
  const rbm::Shard s = rbm::read_all(data_path, images_path(split));
  const hsize_t N = s.rows(), H = p.H;
  const std::string path = "/" + split + "/features";
  rbm::h5::ensure_group(f, "/" + split);
  hsize_t dims[2] = {N, H};
  hsize_t chunk[2] = {std::min<hsize_t>(N, std::max<hsize_t>(1, (1u << 18) / H)), H};
  rbm::h5::Id space(H5Screate_simple(2, dims, nullptr), H5Sclose);
  rbm::h5::Id dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_chunk(dcpl, 2, chunk);
  rbm::h5::Id d(H5Dcreate2(f, path.c_str(), H5T_NATIVE_FLOAT, space, H5P_DEFAULT, dcpl,
                           H5P_DEFAULT),
                H5Dclose);
  if (d < 0) rbm::h5::fail("cannot create " + path);
  Matrix P;
  for (size_t first = 0; first < N; first += kBatch) {
    const size_t n = std::min<size_t>(kBatch, N - first);
    const Matrix X = ev::images_matrix(s, first, n, mode, rng, ev::split_sub(split));
    P.resize(p.H, static_cast<Eigen::Index>(n));
    rbm::hidden_probs(p, X, P);  // [H, n] column-major = [n, H] row-major
    hsize_t start[2] = {first, 0}, count[2] = {n, H};
    rbm::h5::Id fspace(H5Dget_space(d), H5Sclose);
    H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, nullptr, count, nullptr);
    rbm::h5::Id mspace(H5Screate_simple(2, count, nullptr), H5Sclose);
    if (H5Dwrite(d, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, P.data()) < 0)
      rbm::h5::fail("cannot write " + path);
  }
  rbm::h5::Id in = rbm::h5::open_file(data_path);
  if (rbm::h5::exists(in, labels_path(split))) {
    std::vector<hsize_t> ld;
    const std::vector<uint8_t> labels =
        rbm::h5::read_array<uint8_t>(in, labels_path(split), data_path, &ld);
    rbm::h5::write_array<uint8_t>(f, labels_path(split), labels.data(), ld);
  }
  return N;
}

int run_transform(const Context& c) {
  rbm::agree(c.env, [&] {
    if (!c.env.root()) return;
    const std::string model_path = need(c, "model", "MODEL.h5");
    const std::string data_path = need(c, "data", "DATA.h5");
    const std::string out = need(c, "out", "--out FEATURES.h5");
    const std::string split = c.str("split");
    check_split_name(split, true);
    const bool force = c.flag("force");
    check_output(out, &force);
    const ev::Binarize mode = ev::parse_binarize(c.str("binarize"));
    const rbm::ParamBuffer model = rbm::read_model(model_path);
    const rbm::Params& p = model.view;
    std::vector<std::string> splits;
    {
      rbm::h5::Id in = rbm::h5::open_file(data_path);
      for (const char* s : {"train", "validation", "test"})
        if ((split == "all" || split == s) && rbm::h5::exists(in, images_path(s)))
          splits.push_back(s);
    }
    if (splits.empty())
      throw UsageError(fmt(data_path, ": no ", split == "all" ? "/train, /validation or /test"
                                                               : images_path(split),
                           " images (expected the mnist2h5 schema)"));
    for (const std::string& s : splits) data_for_model(data_path, s, model_path, p.V);
    const rbm::CounterRng rng(c.vm["seed"].as<unsigned long>());

    TempFile tmp(out);
    std::string counts;
    size_t total = 0;
    {
      rbm::h5::Id f = rbm::h5::create_file(tmp.path());
      for (const std::string& s : splits) {
        const size_t n = write_features(f, data_path, s, p, mode, rng);
        counts += fmt(counts.empty() ? "" : ", ", s, " ", n);
        total += n;
      }
      rbm::h5::write_attr(f, "format", std::string("rbm-features"));
      rbm::h5::write_attr(f, "format_version", int64_t{1});
      rbm::h5::write_attr(f, "model", fs::absolute(model_path).string());
      rbm::h5::write_attr(f, "data", fs::absolute(data_path).string());
      rbm::h5::write_attr(f, "binarize", ev::binarize_name(mode));
      if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) rbm::h5::fail(tmp.path() + ": cannot flush");
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
  });
  return rbm::exit_code::ok;
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
  rbm::h5::Id f = rbm::h5::open_file(data);
  std::vector<uint8_t> raw = rbm::h5::read_array<uint8_t>(f, labels_path(split), data);
  if (raw.size() < n)
    throw UsageError(fmt(data, ": ", labels_path(split), " has ", raw.size(), " labels for ", n,
                         " images"));
  return std::vector<int>(raw.begin(), raw.begin() + static_cast<std::ptrdiff_t>(n));
}

int run_probe(const Context& c) {
  rbm::agree(c.env, [&] {
    if (!c.env.root()) return;
    const std::string model_path = need(c, "model", "MODEL.h5");
    const std::string data_path = need(c, "data", "DATA.h5");
    const std::string split = c.str("split");
    if (split != "test" && split != "validation")
      throw UsageError("--split " + split + ": expected test or validation");
    const double l2 = c.vm["l2"].as<double>();
    if (!(l2 >= 0)) throw UsageError(fmt("--l2 ", l2, ": must be 0 or more"));
    const int max_iter = static_cast<int>(at_least(c, "max-iter", 1));
    const long train_size = at_least(c, "train-size", 0);
    const ev::Binarize mode = ev::parse_binarize(c.str("binarize"));
    const rbm::ParamBuffer model = rbm::read_model(model_path);
    const rbm::Params& p = model.view;
    data_for_model(data_path, "train", model_path, p.V);
    data_for_model(data_path, split, model_path, p.V);
    const rbm::CounterRng rng(c.vm["seed"].as<unsigned long>());

    const rbm::Shard tr = rbm::read_all(data_path, rbm::schema::train_images);
    const rbm::Shard te = rbm::read_all(data_path, images_path(split));
    const size_t n_tr = train_size ? std::min(tr.rows(), static_cast<size_t>(train_size))
                                   : tr.rows();
    const std::vector<int> y_tr = read_labels(data_path, "train", n_tr);
    const std::vector<int> y_te = read_labels(data_path, split, te.rows());
    const int classes = 1 + std::max(*std::max_element(y_tr.begin(), y_tr.end()),
                                     *std::max_element(y_te.begin(), y_te.end()));
    const Matrix X_tr = ev::images_matrix(tr, 0, n_tr, mode, rng, ev::split_sub("train"));
    const Matrix X_te = ev::images_matrix(te, 0, te.rows(), mode, rng, ev::split_sub(split));
    Matrix F_tr(p.H, X_tr.cols()), F_te(p.H, X_te.cols());
    rbm::hidden_probs(p, X_tr, F_tr);
    rbm::hidden_probs(p, X_te, F_te);

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
  });
  return rbm::exit_code::ok;
}

// ---- dispatch ----------------------------------------------------------------------------

const std::vector<Subcommand>& subcommands() {
  static const std::vector<Subcommand> subs = {
      {"loglik", "[mpirun -np N] rbm_eval loglik MODEL.h5 DATA.h5 [options]",
       "Estimates log Z by Annealed Importance Sampling (Salakhutdinov & Murray 2008) and "
       "reports the mean log-probability -F(v) - log Z of a split's images.",
       loglik_options, {"model", "data"}, run_loglik},
      {"pseudo", "rbm_eval pseudo MODEL.h5 DATA.h5 [options]",
       "Mean pseudo-log-likelihood (as scikit-learn's BernoulliRBM.score_samples), "
       "reconstruction error and the free-energy gap between a split and the training images.",
       pseudo_options, {"model", "data"}, run_pseudo},
      {"filters", "rbm_eval filters MODEL.h5 --out FILE.png [options]",
       "Draws each hidden unit's weights as a tile (scaled per tile) into a PNG grid.",
       filters_options, {"model"}, run_filters},
      {"samples", "rbm_eval samples MODEL.h5 --out FILE.png [options]",
       "Runs Gibbs chains from noise and draws snapshots of p(v|h) into a PNG grid "
       "(one row per chain).",
       samples_options, {"model"}, run_samples},
      {"transform", "rbm_eval transform MODEL.h5 DATA.h5 --out FEATURES.h5 [options]",
       "Writes the hidden-unit probabilities p(h|x) of every image, with the labels, to HDF5.",
       transform_options, {"model", "data"}, run_transform},
      {"probe", "rbm_eval probe MODEL.h5 DATA.h5 [options]",
       "Test accuracy of softmax regression (LBFGS) on the RBM features vs on raw pixels.",
       probe_options, {"model", "data"}, run_probe},
  };
  return subs;
}

std::string overview() {
  std::ostringstream os;
  os << "rbm_eval: model quality, pictures and features of a trained RBM.\n\n"
        "usage: rbm_eval SUBCOMMAND ARGS... [options]   (rbm_eval SUBCOMMAND --help for its "
        "options)\n\n";
  for (const Subcommand& s : subcommands()) os << "  " << s.usage << "\n      " << s.summary << "\n";
  os << "\nrbm_eval --version prints the version, GEMM, MPI and HDF5 libraries and target "
        "architecture.\n";
  os << "\nErrors are one line on stderr; exit code 2 for bad input, 1 for I/O or internal "
        "errors.\n";
  return os.str();
}

int dispatch(const MpiEnv& env, int argc, char** argv) {
  const auto t0 = Clock::now();
  const std::string name = argc > 1 ? argv[1] : "";
  if (name == "--help" || name == "-h") {
    if (env.root()) std::printf("%s", overview().c_str());
    return rbm::exit_code::ok;
  }
  if (name == "--version") {
    if (env.root()) std::printf("%s", cli::version_text("rbm_eval").c_str());
    return rbm::exit_code::ok;
  }
  if (name == "--help-markdown") {
    if (env.root())
      for (const Subcommand& s : subcommands())
        std::printf("#### `rbm_eval %s`\n\n%s\n", s.name, cli::markdown_table(s.options()).c_str());
    return rbm::exit_code::ok;
  }
  const Subcommand* sub = nullptr;
  for (const Subcommand& s : subcommands())
    if (name == s.name) sub = &s;
  if (!sub) {
    rbm::agree(env, [&] {
      throw UsageError(name.empty()
                           ? std::string("no subcommand: give one of loglik, pseudo, filters, "
                                         "samples, transform, probe (see rbm_eval --help)")
                           : "unknown subcommand '" + name +
                                 "': expected loglik, pseudo, filters, samples, transform or "
                                 "probe (see rbm_eval --help)");
    });
  }
  const po::options_description opts = sub->options();
  po::positional_options_description pos;
  for (const char* p : sub->positional) pos.add(p, 1);
  const cli::Program prog{std::string("rbm_eval ") + sub->name, sub->usage, sub->summary};
  cli::Parsed parsed;
  rbm::agree(env, [&] { parsed = cli::parse(prog, opts, argc - 1, argv + 1, &pos, env.root()); });
  if (parsed.help) return rbm::exit_code::ok;
  const Context ctx{env, parsed, parsed.vm, t0, sub->name};
  print_header(ctx, *sub, opts);
  return sub->run(ctx);
}

}  // namespace

int main(int argc, char** argv) {
  rbm::blas::ensure_fast_kernel(argc, argv);
  return rbm::run_mpi_program("rbm_eval", argc, argv,
                              [&](const MpiEnv& env) { return dispatch(env, argc, argv); });
}
