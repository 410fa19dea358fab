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
// DATA.h5 any dataset in the mnist2h5 schema (rbm/dataset.hpp). This file is the
// dispatcher; each subcommand family is one library source (rbm/eval_cli.hpp) and the
// math is in rbm/eval.hpp.
//
// Only `loglik` uses several ranks (its AIS runs are independent: run r is the same
// computation whatever rank does it). The other subcommands run on rank 0; under
// mpirun the other ranks only take part in the checks. Every subcommand prints a configuration table, a
// one-line summary, and with --json a JSON object as the LAST line of stdout.
#include <cstdio>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "rbm/blas_backend.hpp"
#include "rbm/cli.hpp"
#include "rbm/errors.hpp"
#include "rbm/eval_cli.hpp"
#include "rbm/mpi_env.hpp"

using namespace rbm;
using namespace rbm::evalcli;

namespace {

struct Subcommand {
  const char* name;
  const char* usage;
  const char* summary;
  std::function<po::options_description()> options;
  std::vector<const char*> positional;  // option names filled by positional arguments
  std::function<int(const Context&)> run;
};

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

void print_header(const Context& c, const Subcommand& sub, const po::options_description& opts) {
  if (!c.env.root()) return;
  std::printf("# rbm_eval %s | %d rank%s | blas: %s\n", sub.name, c.env.size,
              c.env.size == 1 ? "" : "s", blas::describe().c_str());
  std::printf("%s", cli::config_table(opts, c.parsed).c_str());
}

int dispatch(const MpiEnv& env, int argc, char** argv) {
  const auto t0 = Clock::now();
  const std::string name = argc > 1 ? argv[1] : "";
  if (name == "--help" || name == "-h") {
    if (env.root()) std::printf("%s", overview().c_str());
    return exit_code::ok;
  }
  if (name == "--version") {
    if (env.root()) std::printf("%s", cli::version_text("rbm_eval").c_str());
    return exit_code::ok;
  }
  if (name == "--help-markdown") {
    if (env.root())
      for (const Subcommand& s : subcommands())
        std::printf("#### `rbm_eval %s`\n\n%s\n", s.name, cli::markdown_table(s.options()).c_str());
    return exit_code::ok;
  }
  const Subcommand* sub = nullptr;
  for (const Subcommand& s : subcommands())
    if (name == s.name) sub = &s;
  if (!sub) {
    agree(env, [&] {
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
  agree(env, [&] { parsed = cli::parse(prog, opts, argc - 1, argv + 1, &pos, env.root()); });
  if (parsed.help) return exit_code::ok;
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
