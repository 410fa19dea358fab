// eval_pictures.cpp — `rbm_eval filters` and `rbm_eval samples`: PNG grids of the
// weights and of Gibbs chains (rank 0).
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>

#include "rbm/checkpoint.hpp"
#include "rbm/errors.hpp"
#include "rbm/eval.hpp"
#include "rbm/eval_cli.hpp"
#include "rbm/paths.hpp"
#include "rbm/png_grid.hpp"

namespace rbm::evalcli {

namespace ev = rbm::eval;

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
  std::string model_path, out;
  long max_tiles = 0;
  ParamBuffer model;
  std::pair<size_t, size_t> shape;
  agree(c.env, [&] {  // the checks, on rank 0; every rank exits with their verdict
    if (!c.env.root()) return;
    model_path = need(c, "model", "MODEL.h5");
    out = need(c, "out", "--out FILE.png");
    max_tiles = at_least(c, "max-tiles", 0);
    check_output(out, nullptr);
    check_outputs_differ({{"--out", out}}, {{"MODEL", model_path}, {"--data", c.str("data")}});
    model = model_for_eval(model_path);
    shape = tile_shape(c.str("data"), model.V());
  });
  if (!c.env.root()) return exit_code::ok;
  {
    const Params& p = model.view;
    const auto [rows, cols] = shape;
    const size_t n = max_tiles == 0 ? p.H : std::min(p.H, static_cast<size_t>(max_tiles));
    std::vector<std::vector<uint8_t>> tiles(n);
    std::vector<float> w(p.V);
    for (size_t j = 0; j < n; ++j) {
      for (size_t i = 0; i < p.V; ++i)
        w[i] = p.W(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j));
      tiles[j] = png::scale_to_bytes(w.data(), p.V);
    }
    const png::GridLayout g(n, rows, cols, 0);
    png::write_png(out, png::tile_grid(tiles, g, 0));
    Json j;
    j.add("subcommand", "filters").add("model", model_path).add("out", out).add("tiles", n)
        .add("tile_rows", rows).add("tile_cols", cols).add("grid_cols", g.grid_cols)
        .add("width", g.width()).add("height", g.height()).add("seconds", since(c.t0));
    print_result(c,
                 fmt("filters: wrote ", out, ": ", n, " of ", p.H, " hidden units as ", rows, "x",
                     cols, " tiles (each scaled min..max -> black..white), ", g.grid_rows, "x",
                     g.grid_cols, " grid, ", g.width(), "x", g.height(), " px"),
                 j);
  }
  return exit_code::ok;
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
  std::string model_path, out;
  size_t chains = 0, burn_in = 0, spacing = 0, snaps = 0;
  ParamBuffer model;
  std::pair<size_t, size_t> shape;
  agree(c.env, [&] {  // the checks, on rank 0; every rank exits with their verdict
    if (!c.env.root()) return;
    model_path = need(c, "model", "MODEL.h5");
    out = need(c, "out", "--out FILE.png");
    chains = static_cast<size_t>(at_least(c, "chains", 1));
    burn_in = static_cast<size_t>(at_least(c, "burn-in", 1));
    spacing = static_cast<size_t>(at_least(c, "spacing", 1));
    snaps = static_cast<size_t>(at_least(c, "snapshots", 1));
    check_output(out, nullptr);
    check_outputs_differ({{"--out", out}}, {{"MODEL", model_path}, {"--data", c.str("data")}});
    model = model_for_eval(model_path);
    shape = tile_shape(c.str("data"), model.V());
  });
  if (!c.env.root()) return exit_code::ok;
  {
    const Params& p = model.view;
    const auto [rows, cols] = shape;
    const CounterRng rng(c.seed());
    const auto t = Clock::now();
    const Matrix S = ev::gibbs_snapshots(p, chains, burn_in, spacing, snaps, rng);
    const double gibbs_s = since(t);
    std::vector<std::vector<uint8_t>> tiles(static_cast<size_t>(S.cols()));
    for (Eigen::Index k = 0; k < S.cols(); ++k)
      tiles[static_cast<size_t>(k)] = png::probs_to_bytes(S.col(k).data(), p.V);
    const png::GridLayout g(tiles.size(), rows, cols, snaps);
    png::write_png(out, png::tile_grid(tiles, g, 128));
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
  }
  return exit_code::ok;
}

}  // namespace rbm::evalcli
