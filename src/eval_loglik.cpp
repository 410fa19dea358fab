// eval_loglik.cpp — `rbm_eval loglik`: log Z by Annealed Importance Sampling with the
// runs spread over the MPI ranks, the mean log-likelihood -F(v) - log Z of a split, with
// --raise a RAISE lower bound on images of the split, and whether the AIS number can be
// trusted (ESS, AIS-RAISE sandwich).
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

// Reverse chains per image. One chain already gives a valid stochastic lower bound (the
// mean over images of log w); M chains narrow the Jensen gap E log w - log E w at M times
// the cost. Measured on a 3-epoch CD-1 784x500 model (README): at the default 14500 betas
// one chain closed the sandwich to 0.02 +- 0.09 nat over 1000 images (15 min on 2 busy
// cores), so more chains would only multiply the time; at 2000 betas 4 chains raised the
// bound by 1.4 nats over 1 chain, so use more chains with a shorter schedule.
constexpr long kRaiseChainsDefault = 1;

// When the AIS number is not printed as a number with a +- (eval_loglik's output rule):
//  * ESS < kEssTrust: fewer than 10 effective runs of --runs, the weights are dominated
//    by a handful of runs, so sd(w) is itself badly estimated and the stated s.e. is not
//    an error bar (README's CD-1 table row: ESS 1.9 of 500).
//  * |sandwich width| > 3 s.e.(log Z^) + 3 s.e.(width) + kSandwichSlackNats, with
//    width = mean over the RAISE images of (AIS_i - RAISE_i) and s.e.(width) its standard
//    error over those images (paired: AIS_i - RAISE_i = -F_i - log Z^ - r_i does not
//    carry the image-to-image spread of log p(v), which is tens of nats). The true
//    (annealed) log-likelihood lies between the two up to their noise, so a width beyond
//    the noise means one of them is off by up to that much. 1 nat: differences between
//    models that decide a comparison are a few nats (S&M 2008: CD-3 vs CD-25 on MNIST
//    ~19 nats, the schedule-length effects they report ~1-2 nats), so a model whose
//    log-likelihood is uncertain by more than a nat beyond its noise is not quoted.
//    A NEGATIVE width beyond the same bound (RAISE above AIS) is flagged too: RAISE
//    bounds log p_ann, not log p, and exceeds AIS when the schedule is too short.
constexpr double kEssTrust = 10.0;
constexpr double kSandwichSlackNats = 1.0;

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
  a("raise", po::bool_switch(),
    "also run Reverse AIS (Burda et al. 2015) from test images: a stochastic LOWER bound on "
    "the mean log-likelihood, the other side of AIS's sandwich; same betas and base rate");
  a("raise-images", po::value<long>()->default_value(0)->value_name("N"),
    "images RAISE starts from: N evenly spaced images of the split (0 = all); the cost is "
    "N x chains x betas Gibbs sweeps, spread over the MPI ranks");
  a("raise-chains", po::value<long>()->default_value(kRaiseChainsDefault)->value_name("M"),
    "reverse chains per image (log of their mean weight); 1 is a valid bound and, at the "
    "default 14500 betas, closed the AIS-RAISE sandwich to 0.02 nat on a trained 784x500 "
    "model; with fewer betas use more (4 chains at 2000 betas: +1.4 nats tighter)");
  add_json(a);
  return o;
}

int run_loglik(const Context& c) {
  std::string model_path, data_path, split;
  ParamBuffer model;
  ev::Binarize mode{};
  size_t runs = 0, K = 0, n_train = 0, n_split = 0, raise_n = 0, raise_m = 0;
  long exact_max = 0;
  const bool do_raise = c.flag("raise");
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
    n_split = data_for_model(data_path, split, model_path, model.V()).rows;
    raise_m = static_cast<size_t>(at_least(c, "raise-chains", 1));
    const long ri = c.num("raise-images");
    if (ri != 0 && (ri < 2 || static_cast<size_t>(ri) > n_split))
      throw UsageError(fmt("--raise-images ", ri, ": must be 0 (all ", n_split, " images of ",
                           split, ") or between 2 and ", n_split));
    raise_n = ri == 0 ? n_split : static_cast<size_t>(ri);
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

  // RAISE: rank r does the whole groups [r G / P, (r+1) G / P) of images (eval.hpp); per
  // image r_i = log mean_m w_im and F_i, gathered by rank 0 in global image order.
  std::vector<double> raise_r, raise_f;  // [raise_n] on rank 0
  double raise_seconds = 0;
  if (do_raise) {
    const auto t_raise = Clock::now();
    std::optional<Shard> all;  // the split is read whole by every rank (uint8: 8 MB per 10k)
    agree(c.env, [&] { all = read_all(data_path, images_path(split)); });
    const size_t Gr = ev::raise_groups(raise_n, raise_m);
    auto first_image_of_rank = [&](size_t q) { return ev::raise_group_start(raise_n, raise_m, Gr * q / P); };
    std::vector<double> local_rf;  // pairs (r_i, F_i)
    for (size_t g = Gr * static_cast<size_t>(c.env.rank) / P;
         g < Gr * (static_cast<size_t>(c.env.rank) + 1) / P; ++g) {
      const size_t lo = ev::raise_group_start(raise_n, raise_m, g);
      const size_t hi = ev::raise_group_start(raise_n, raise_m, g + 1);
      Matrix X(p.V, static_cast<Eigen::Index>(hi - lo));  // [V, images of the group]
      std::vector<uint64_t> ids(hi - lo);
      for (size_t i = lo; i < hi; ++i) {
        ids[i - lo] = ev::raise_image_id(i, raise_n, n_split);
        X.col(static_cast<Eigen::Index>(i - lo)) =
            ev::images_matrix(*all, ids[i - lo], 1, mode, rng, ev::split_sub(split));
      }
      const std::vector<double> w =
          ev::raise_log_weights(p, bA, log_za, betas, X, ids.data(), raise_m, rng);
      const Eigen::VectorXd F = ev::free_energy_d(p, X);
      for (size_t q = 0; q < hi - lo; ++q) {
        const double top = *std::max_element(w.begin() + static_cast<long>(q * raise_m),
                                             w.begin() + static_cast<long>((q + 1) * raise_m));
        double sum = 0;  // log mean_m w = top + log(sum_m exp(w_m - top) / M)
        for (size_t m = 0; m < raise_m; ++m) sum += std::exp(w[q * raise_m + m] - top);
        local_rf.push_back(top + std::log(sum / static_cast<double>(raise_m)));
        local_rf.push_back(F(static_cast<Eigen::Index>(q)));
      }
    }
    std::vector<int> rcounts(P), rdispls(P);
    for (size_t q = 0; q < P; ++q) {
      rdispls[q] = static_cast<int>(2 * first_image_of_rank(q));
      rcounts[q] = static_cast<int>(2 * (first_image_of_rank(q + 1) - first_image_of_rank(q)));
    }
    std::vector<double> rf(c.env.root() ? 2 * raise_n : 0);
    MPI_Gatherv(local_rf.data(), static_cast<int>(local_rf.size()), MPI_DOUBLE, rf.data(),
                rcounts.data(), rdispls.data(), MPI_DOUBLE, 0, MPI_COMM_WORLD);
    raise_seconds = since(t_raise);
    for (size_t i = 0; 2 * i < rf.size(); ++i) {
      raise_r.push_back(rf[2 * i]);
      raise_f.push_back(rf[2 * i + 1]);
    }
  }
  if (!c.env.root()) return exit_code::ok;

  const ev::AisEstimate est = ev::ais_combine(log_w, log_za);
  const double mean_f = fsum_g[0] / fsum_g[1];
  const double mean_ll = -mean_f - est.log_z;
  const bool do_exact = std::min(p.V, p.H) <= static_cast<size_t>(exact_max);
  const double exact = do_exact ? ev::log_z_exact(p) : 0.0;
  const double rate = static_cast<double>(runs) * static_cast<double>(K) / ais_seconds;

  // RAISE summary over its images, in global image order (bitwise the same on any P).
  const double Nr = static_cast<double>(raise_n);
  double raise_mean = 0, raise_se = 0, ais_same = 0, width = 0, width_se = 0;
  if (do_raise) {
    double sr = 0, sd = 0;  // sums of r_i and of d_i = AIS_i - r_i = -F_i - log Z^ - r_i
    for (size_t i = 0; i < raise_n; ++i) {
      sr += raise_r[i];
      sd += -raise_f[i] - est.log_z - raise_r[i];
    }
    raise_mean = sr / Nr;
    width = sd / Nr;
    ais_same = raise_mean + width;
    double vr = 0, vd = 0;  // two-pass sample variances
    for (size_t i = 0; i < raise_n; ++i) {
      vr += (raise_r[i] - raise_mean) * (raise_r[i] - raise_mean);
      const double d = -raise_f[i] - est.log_z - raise_r[i];
      vd += (d - width) * (d - width);
    }
    raise_se = std::sqrt(vr / (Nr - 1) / Nr);
    width_se = std::sqrt(vd / (Nr - 1) / Nr);
  }

  // Trust rule (constants above): ESS first, then the sandwich.
  std::string reason;
  char buf[1024];
  const double width_max = 3 * est.log_z_stderr + 3 * width_se + kSandwichSlackNats;
  if (!(est.ess >= kEssTrust)) {
    std::snprintf(buf, sizeof buf, "AIS ESS %.1f of %zu < %.0f", est.ess, runs, kEssTrust);
    reason = buf;
  } else if (do_raise && !(std::abs(width) <= width_max)) {
    std::snprintf(buf, sizeof buf,
                  "%s %.2f nats > %.2f = 3 s.e. AIS + 3 s.e. width + %.0f nat",
                  width >= 0 ? "AIS-RAISE sandwich width" : "RAISE above AIS by",
                  std::abs(width), width_max, kSandwichSlackNats);
    reason = buf;
  }
  const bool trust = reason.empty();
  const double raise_rate = do_raise ? Nr * static_cast<double>(raise_m) *
                                           static_cast<double>(K) / raise_seconds : 0.0;

  std::string summary;
  if (trust) {
    std::snprintf(buf, sizeof buf,
                  "loglik: log Z = %.4f +- %.4f (3 s.e.; AIS %zu runs x %zu betas, ESS %.1f, "
                  "%.1f s, %.3g run-steps/s) | %s: mean log p(v) = %.4f nats over %.0f images",
                  est.log_z, 3 * est.log_z_stderr, runs, K, est.ess, ais_seconds, rate,
                  split.c_str(), mean_ll, fsum_g[1]);
  } else {
    std::snprintf(buf, sizeof buf,
                  "loglik: AIS %zu runs x %zu betas, ESS %.1f, %.1f s, %.3g run-steps/s | "
                  "%s log-lik: not trustworthy (%s)%s",
                  runs, K, est.ess, ais_seconds, rate, split.c_str(), reason.c_str(),
                  do_raise ? "" : "; add --raise for a lower bound");
  }
  summary = buf;
  if (do_raise) {
    std::snprintf(buf, sizeof buf,
                  "%s RAISE lower bound %.2f +- %.2f (s.e. over %zu images x %zu chains, "
                  "%.1f s, %.3g chain-steps/s)",
                  trust ? " |" : ";", raise_mean, raise_se, raise_n, raise_m, raise_seconds,
                  raise_rate);
    summary += buf;
    if (trust) {
      std::snprintf(buf, sizeof buf, ", AIS on the same images %.2f, sandwich width %.2f +- %.2f",
                    ais_same, width, 3 * width_se);
      summary += buf;
    }
  }
  summary += ", binarize " + ev::binarize_text(mode);
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
  if (do_raise)
    j.add("mean_loglik_raise", raise_mean).add("mean_loglik_raise_stderr", raise_se)
        .add("raise_images", raise_n).add("raise_chains", raise_m)
        .add("mean_loglik_ais_same_images", ais_same).add("sandwich_width", width)
        .add("sandwich_width_stderr", width_se).add("raise_seconds", raise_seconds);
  j.add_bool("trustworthy", trust).add("untrustworthy_reason", reason);
  if (do_exact) j.add("log_z_exact", exact);
  j.add("ais_seconds", ais_seconds).add("run_steps_per_second", rate)
      .add("ranks", c.env.size).add("seconds", since(c.t0));
  print_result(c, summary, j);
  return exit_code::ok;
}

}  // namespace rbm::evalcli
