// rbm_dist — data-parallel training of a binary RBM with CD-k / PCD over MPI.
//
//   mpirun -np 8 rbm_dist --data mnist.h5 --hidden 500 --epochs 20 --checkpoint model.h5
//
// Phases: options (identical on every rank, errors from rank 0 only) -> the
// effective configuration -> data + model set-up -> training loop -> checkpoint.
#include <cstdio>

#include "rbm/blas_backend.hpp"
#include "rbm/checkpoint.hpp"
#include "rbm/cli.hpp"
#include "rbm/gemm_bf16.hpp"
#include "rbm/rbm_bf16.hpp"
#include "rbm/mpi_env.hpp"
#include "rbm/trainer.hpp"

using namespace rbm;

int main(int argc, char** argv) {
  blas::ensure_fast_kernel(argc, argv);  // before anything else: may re-exec once
  install_stop_handlers();
  return run_mpi_program("rbm_dist", argc, argv, [&](const MpiEnv& env) {
    const cli::Program prog{"rbm_dist", "mpirun -np N rbm_dist --data FILE.h5 [options]",
                            "rbm_dist: train a binary RBM with CD-k or PCD, data-parallel over MPI."};
    TrainConfig cfg;
    cli::po::options_description opts = train_options(cfg);

    // ---- options: the same on every rank, so errors are collective -------------
    cli::Parsed parsed;
    agree(env, [&] { parsed = cli::parse(prog, opts, argc, argv, nullptr, env.root()); });
    if (parsed.help) return exit_code::ok;
    if (!cfg.resume.empty()) {
      // The checkpoint's configuration is the base; the command line and --config win.
      // Rank 0 reads it; the text goes to every rank.
      std::string base, resume = cfg.resume;
      agree(env, [&] {
        if (env.root()) base = read_train_state_config(resume);
      });
      broadcast_string(base);
      agree(env, [&] {
        parsed = cli::parse(prog, opts, argc, argv, nullptr, false, base, resume);
      });
    }
    agree(env, [&] { validate(cfg); });

    // ---- the effective configuration, from rank 0 only --------------------------
    if (env.root()) {
      std::printf("rbm_dist %s: %d %s, GEMM %s\n", RBM_VERSION, env.size,
                  env.size == 1 ? "rank" : "ranks", blas::describe().c_str());
      std::printf("%s\n", precision_banner(parse_precision(cfg.precision)).c_str());
      std::printf("%s", cli::config_table(opts, parsed).c_str());
      std::fflush(stdout);
    }

    // ---- set-up and training ----------------------------------------------------
    Trainer trainer(env, cfg, cli::config_text(opts, parsed.vm, {"resume", "config"}));
    trainer.setup();
    return trainer.run();
  });
}
