// eval_loglik.cpp — `rbm_eval loglik`: log Z by Annealed Importance Sampling with the
// runs spread over the MPI ranks, and the mean log-likelihood -F(v) - log Z of a split.
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>

#include "rbm/checkpoint.hpp"
#include "rbm/errors.hpp"
#include "rbm/eval.hpp"
#include "rbm/eval_cli.hpp"

namespace rbm::evalcli {

namespace ev = rbm::eval;

namespace {
// Exact log Z enumerates 2^K states (K = min(V, H)) and sums out the other layer's
// L = max(V, H) units for each: measured here (AMD EPYC, one core, shared machine)
// about 75,000 states/s for L = 784, i.e. 5.9e7 state-units/s. --exact-max is capped
// where that takes minutes: 2^24 states of a 784-visible model take about 4 minutes,
// 2^25 about 8, 2^30 about 4 hours.
constexpr long kExactMaxCap = 24;
constexpr double kStateUnitsPerSecond = 5.9e7;

std::string duration_text(double s) {
  if (s < 90) return fmt(static_cast<long>(std::ceil(s)), " s");
  if (s < 5400) return fmt(static_cast<long>(std::lround(s / 60)), " min");
  if (s < 2 * 86400) return fmt(std::lround(s / 360) / 10.0, " h");
  return fmt(std::lround(s / 8640) / 10.0, " days");
}

double exact_seconds(long states_log2, size_t L) {
  return std::ldexp(1.0, static_cast<int>(states_log2)) * static_cast<double>(L) /
         kStateUnitsPerSecond;
}
}  // namespace

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
    "also compute log Z exactly by enumeration when min(V, H) <= U (2^U states); at most "
    "24: 2^24 states of a 784-visible model take about 4 minutes on one core");
  add_json(a);
  return o;
}

int run_loglik(const Context& c) {
  std::string model_path, data_path, split;
  ParamBuffer model;
  ev::Binarize mode{};
  size_t runs = 0, K = 0, n_train = 0;
  long exact_max = 0;
  agree(c.env, [&] {
    model_path = need(c, "model", "MODEL.h5");
    data_path = need(c, "data", "DATA.h5");
    split = c.str("split");
    check_split_name(split, false);
    runs = static_cast<size_t>(at_least(c, "runs", 2));
    K = static_cast<size_t>(at_least(c, "betas", 3));
    exact_max = at_least(c, "exact-max", 0);
    model = model_for_eval(model_path);
    mode = resolve_binarize(c, model_path, ev::Binarize::threshold, true);
    if (exact_max > kExactMaxCap) {  // before any work (the AIS run takes minutes)
      const size_t L = std::max<size_t>(std::max(model.V(), model.H()), 1);
      throw UsageError(fmt("--exact-max ", exact_max, ": enumerating up to 2^", exact_max,
                           " states would take about ", duration_text(exact_seconds(exact_max, L)),
                           " on one core for this ", model.V(), "x", model.H(),
                           " model (about ", std::lround(kStateUnitsPerSecond / static_cast<double>(L)),
                           " states/s); at most ", kExactMaxCap, " (2^", kExactMaxCap, " states: about ",
                           duration_text(exact_seconds(kExactMaxCap, L)), ")"));
    }
    n_train = data_for_model(data_path, "train", model_path, model.V()).rows;
    data_for_model(data_path, split, model_path, model.V());
  });
  const Params& p = model.view;
  const CounterRng rng(c.seed());

  // Base-rate model from the training pixel means: sums of integers, exact in any order.
  Eigen::VectorXd sums;
  {
    std::optional<Shard> shard;
    agree(c.env, [&] {
      shard = read_shard(data_path, schema::train_images, c.env.rank, c.env.size);
    });
    const Shard& train = *shard;
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
  const Vector bA = ev::base_rate_biases(sums, static_cast<double>(n_train));
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
    std::optional<Shard> shard;
    agree(c.env, [&] {
      shard = read_shard(data_path, images_path(split), c.env.rank, c.env.size);
    });
    const Shard& s = *shard;
    for (size_t first = 0; first < s.rows(); first += kBatch) {
      const size_t n = std::min(kBatch, s.rows() - first);
      const Matrix X = ev::images_matrix(s, first, n, mode, rng, ev::split_sub(split));
      fsum[0] += ev::free_energy_d(p, X).sum();
      fsum[1] += static_cast<double>(n);
    }
  }
  MPI_Allreduce(fsum, fsum_g, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  if (!c.env.root()) return exit_code::ok;

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
  return exit_code::ok;
}

}  // namespace rbm::evalcli
