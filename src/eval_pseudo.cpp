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
  add_binarize(a, "threshold");
  add_json(a);
  return o;
}

int run_pseudo(const Context& c) {
  std::string model_path, data_path, split;
  ev::Binarize mode{};
  ParamBuffer model;
  agree(c.env, [&] {  // the checks, on rank 0; every rank exits with their verdict
    if (!c.env.root()) return;
    model_path = need(c, "model", "MODEL.h5");
    data_path = need(c, "data", "DATA.h5");
    split = c.str("split");
    check_split_name(split, false);
    mode = ev::parse_binarize(c.str("binarize"));
    model = model_for_eval(model_path);
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
  }
  return exit_code::ok;
}

}  // namespace rbm::evalcli
