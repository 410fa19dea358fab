// rbm_dist — data-parallel training of a binary RBM with CD-k / PCD over MPI.
//
//   mpirun -np 8 rbm_dist --data mnist.h5 --hidden 500 --epochs 20 --checkpoint model.h5
//
// Phases: options (identical on every rank, errors from rank 0 only) -> the
// effective configuration -> data + model set-up -> training loop -> checkpoint.
#include <mpi.h>

#include <cstdio>
#include <filesystem>
#include <set>

#include "rbm/blas_backend.hpp"
#include "rbm/checkpoint.hpp"
#include "rbm/cli.hpp"
#include "rbm/gemm_bf16.hpp"
#include "rbm/rbm_bf16.hpp"
#include "rbm/mpi_env.hpp"
#include "rbm/paths.hpp"
#include "rbm/trainer.hpp"

using namespace rbm;

namespace {
// Options that name what a run writes (or how it starts): never taken from, nor
// stored in, a checkpoint's configuration.
const std::vector<std::string> kOutputOptions = {"checkpoint", "metrics", "force", "init-from"};
}  // namespace

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
      // Resuming F continues F. The checkpoint's configuration is the base for every
      // option except the output paths (never taken from a stored config): the
      // checkpoint defaults to F itself (or its '{epoch}' series), --metrics to the
      // run's own metrics file only when F is that run's checkpoint, not a copy.
      std::string base, resume = cfg.resume;
      StoredOutputs stored;
      int own = 0;
      agree(env, [&] {
        if (!env.root()) return;
        base = read_train_state_config(resume);
        stored = read_stored_outputs(resume);
        own = same_file(resume, stored.checkpoint_file);
      });
      broadcast_string(base);
      broadcast_string(stored.checkpoint_pattern);
      broadcast_string(stored.metrics_file);
      MPI_Bcast(&own, 1, MPI_INT, 0, MPI_COMM_WORLD);
      agree(env, [&] {
        parsed = cli::parse(prog, opts, argc, argv, nullptr, false,
                            cli::without_options(base, kOutputOptions), resume);
      });
      auto given = [&](const char* name) {
        return parsed.from_command_line.count(name) || parsed.from_config.count(name);
      };
      if (!given("checkpoint")) {
        cfg.checkpoint = own && !stored.checkpoint_pattern.empty() ? stored.checkpoint_pattern
                                                                   : resume;
        cli::set_value(parsed, "checkpoint", cfg.checkpoint);
      }
      if (!given("metrics") && own && !stored.metrics_file.empty()) {
        cfg.metrics = stored.metrics_file;
        cli::set_value(parsed, "metrics", cfg.metrics);
      } else if (!given("metrics") && !own && !stored.metrics_file.empty() && env.root()) {
        std::printf("note: %s is not the checkpoint its run wrote (%s): that run's metrics "
                    "file is not continued; give --metrics to record this one\n",
                    resume.c_str(), stored.checkpoint_file.c_str());
      }
    }
    // Stored paths work from any folder: --data and the outputs become absolute.
    for (auto [name, value] : {std::pair{"data", &cfg.data}, std::pair{"checkpoint", &cfg.checkpoint},
                               std::pair{"metrics", &cfg.metrics}})
      if (!value->empty()) {
        *value = std::filesystem::absolute(*value).lexically_normal().string();
        cli::set_value(parsed, name, *value);
      }
    apply_method_defaults(cfg, parsed);
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
    std::set<std::string> skip(kOutputOptions.begin(), kOutputOptions.end());
    skip.insert({"resume", "config"});
    Trainer trainer(env, cfg, cli::config_text(opts, parsed.vm, skip));
    trainer.setup();
    return trainer.run();
  });
}
