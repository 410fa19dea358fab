// eval_pseudo.cpp — `rbm_eval pseudo`: pseudo-log-likelihood, reconstruction error and
// the free-energy gap between a split and the training images (rank 0).
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

po::options_description pseudo_options() {
  po::options_description o("rbm_eval pseudo options");
  auto a = o.add_options();
  add_model(a);
  add_data(a, "dataset (mnist2h5 schema); also the second positional argument");
  a("split", po::value<std::string>()->default_value("test")->value_name("NAME"),
    "images scored (train, test or validation); the free-energy gap compares them with "
    "as many /train images");
  add_seed(a);
  a("draws", po::value<long>()->default_value(5)->value_name("D"),
    "flipped-pixel draws per image: the pseudo-log-likelihood is their mean, with its "
    "standard error over images (draw 0 uses --seed itself)");
  add_binarize(a, "threshold");
  add_json(a);
  return o;
}

int run_pseudo(const Context& c) {
  std::string model_path, data_path, split;
  ev::Binarize mode{};
  size_t draws = 1;
  ParamBuffer model;
  agree(c.env, [&] {  // the checks, on rank 0; every rank exits with their verdict
    if (!c.env.root()) return;
    model_path = need(c, "model", "MODEL.h5");
    data_path = need(c, "data", "DATA.h5");
    split = c.str("split");
    check_split_name(split, false);
    model = model_for_eval(model_path);
    mode = resolve_binarize(c, model_path, ev::Binarize::threshold, true);
    draws = static_cast<size_t>(at_least(c, "draws", 1));
    data_for_model(data_path, "train", model_path, model.V());
    data_for_model(data_path, split, model_path, model.V());
  });
  if (!c.env.root()) return exit_code::ok;
  {
    const Params& p = model.view;
    const CounterRng rng(c.seed());

    const Shard s = read_all(data_path, images_path(split));
    const Shard train = read_all(data_path, schema::train_images);
    const size_t n_gap = std::min(s.rows(), train.rows());
    double pl = 0, pl2 = 0, rsq = 0, f_split = 0, f_train = 0;
    for (size_t first = 0; first < s.rows(); first += kBatch) {
      const size_t n = std::min(kBatch, s.rows() - first);
      const Matrix X = ev::images_matrix(s, first, n, mode, rng, ev::split_sub(split));
      const std::vector<uint64_t> ids = global_ids(s, first, n);
      Eigen::VectorXd per_image = Eigen::VectorXd::Zero(static_cast<Eigen::Index>(n));
      for (size_t d = 0; d < draws; ++d)
        per_image += ev::pseudo_loglik(p, X, ids.data(),
                                       d == 0 ? rng : CounterRng(c.seed() + 0x9e3779b97f4a7c15ull * d));
      per_image /= static_cast<double>(draws);
      pl += per_image.sum();
      pl2 += per_image.squaredNorm();
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
    const double pl_se = N > 1 ? std::sqrt(std::max(0.0, (pl2 - N * mean_pl * mean_pl) / (N - 1)) / N) : 0;
    if (!std::isfinite(mean_pl) || !std::isfinite(mse))
      throw Error(fmt("pseudo: ", model_path, ": the pseudo-log-likelihood is not finite (",
                      mean_pl, "): the model's values overflow on these images"));
    const double fs = f_split / G, ft = f_train / G;
    char buf[1024];
    std::snprintf(buf, sizeof buf,
                  "pseudo: %s: mean pseudo-log-likelihood = %.4f +- %.4f nats/image (s.e.; %zu "
                  "images, %zu flipped-pixel draws each, as sklearn score_samples) | "
                  "reconstruction MSE = %.6f "
                  "per pixel | free-energy gap F(%s) - F(train) = %+.4f (%.4f - %.4f, %zu images "
                  "each) | binarize %s",
                  split.c_str(), mean_pl, pl_se, s.rows(), draws, mse, split.c_str(), fs - ft, fs,
                  ft, n_gap,
                  ev::binarize_text(mode).c_str());
    Json j;
    j.add("subcommand", "pseudo").add("model", model_path).add("data", data_path)
        .add("split", split).add("images", s.rows()).add("binarize", ev::binarize_name(mode))
        .add("seed", static_cast<size_t>(rng.seed())).add("pseudo_loglik", mean_pl).add("pseudo_loglik_stderr", pl_se).add("draws", draws)
        .add("recon_mse", mse).add("free_energy_split", fs).add("free_energy_train", ft)
        .add("free_energy_gap", fs - ft).add("gap_images", n_gap)
        .add("seconds", since(c.t0));
    print_result(c, buf, j);
  }
  return exit_code::ok;
}

}  // namespace rbm::evalcli
