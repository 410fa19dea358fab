// rbm_bench — CD-1 training throughput next to this machine's compute bound.
//
//   rbm_bench --data fashion.h5                      (one rank: the README's table)
//   mpirun -np 8 rbm_bench --data fashion.h5         (slowest rank's time is reported)
//
// The bound (derived once, here):
//   one CD-1 sample costs 5 matrix products of 2*V*H flops each —
//     p(h|x) = sig(W'x + c)        2VH
//     p(v|h) = sig(W h + b)        2VH
//     p(h|v1)                      2VH
//     x p(h|x)' - v1 p(h|v1)'      4VH   (one product with inner dimension 2B)
//   = 10*V*H flops per sample. The element-wise work (sigmoid, sampling, update)
//   is O(V*H/B + (V+H)) per sample and not counted. bound = R / (10 V H) samples/s,
//   where R is the GEMM rate MEASURED here for exactly these shapes (same OpenBLAS
//   kernel, same thread count). ratio = measured training rate / bound.
// reduce column: share of the time spent in the step's fused reduction, update and
// node barriers (waiting for the slowest rank included).
// Correctness column: the step's GEMM statistics against the loop reference
// (cd_gradient_naive) on a real batch, max |difference| <= 1e-5 (see test_rbm.cpp).
#include <mpi.h>

#include <chrono>
#include <cstdio>

#include "rbm/bench.hpp"
#include "rbm/blas_backend.hpp"
#include "rbm/cli.hpp"
#include "rbm/mpi_env.hpp"
#include "rbm/trainer.hpp"

using namespace rbm;
namespace po = cli::po;

int main(int argc, char** argv) {
  blas::ensure_fast_kernel(argc, argv);
  return run_mpi_program("rbm_bench", argc, argv, [&](const MpiEnv& env) {
    const cli::Program prog{"rbm_bench", "[mpirun -np N] rbm_bench --data FILE.h5 [options]",
                            "rbm_bench: CD-1 samples/s of rbm_dist against the GEMM-derived bound."};
    std::string data, shapes_text;
    size_t steps = 0, warmup = 0;
    double gemm_seconds = 0;
    po::options_description opts("rbm_bench options");
    opts.add_options()
        ("data", po::value(&data)->value_name("FILE"), "dataset in the mnist2h5 schema (required)")
        ("shapes", po::value(&shapes_text)->default_value("256x64,500x100")->value_name("HxB,..."),
         "hidden units x global batch size pairs to measure")
        ("steps", po::value(&steps)->default_value(0)->value_name("N"),
         "timed training steps per shape; 0 = one epoch")
        ("warmup", po::value(&warmup)->default_value(20)->value_name("N"), "untimed steps first")
        ("gemm-seconds", po::value(&gemm_seconds)->default_value(2.0)->value_name("S"),
         "seconds spent measuring the GEMM rate per shape");
    cli::Parsed parsed;
    agree(env, [&] { parsed = cli::parse(prog, opts, argc, argv, nullptr, env.root()); });
    if (parsed.help) return exit_code::ok;
    std::vector<bench::Shape> shapes;
    agree(env, [&] {
      if (data.empty()) throw UsageError("--data is required (a file written by mnist2h5)");
      shapes = bench::parse_shapes(shapes_text);
    });
    DatasetInfo info;
    agree(env, [&] { info = inspect_dataset(data, schema::train_images); });
    if (env.root()) {
      std::printf("# rbm_bench %s: %d rank(s), GEMM %s\n", RBM_VERSION, env.size,
                  blas::describe().c_str());
      std::printf("# data %s: %zu images x %zu pixels; CD-1, lr 0.1, momentum 0.5, shuffled; "
                  "time = slowest rank\n", data.c_str(), info.rows, info.dim);
      std::printf("# bound = GEMM rate / (10 V H) flops per sample, see apps/rbm_bench.cpp\n");
      std::printf("#%6s %6s %10s %12s %12s %7s %10s  %s\n", "H", "B", "gemm_rate", "bound",
                  "measured", "ratio", "reduce", "check");
      std::printf("#%6s %6s %10s %12s %12s %7s %10s  %s\n", "", "", "(GFLOP/s)", "(samples/s)",
                  "(samples/s)", "(%)", "(%time)", "");
      std::fflush(stdout);
    }
    bool all_ok = true;
    for (const bench::Shape& s : shapes) {
      TrainConfig cfg;
      cfg.data = data;
      cfg.train_path = schema::train_images;
      cfg.hidden = s.H;
      cfg.batch = s.B;
      cfg.epochs = 1000000;
      cfg.progress = "never";
      cfg.check_consistency = 0;
      cfg.checkpoint = "(none)";  // the benchmark never writes one
      agree(env, [&] { validate(cfg); });
      Trainer tr(env, cfg, "");
      tr.setup();
      // GEMM rate of the machine: every rank measures the full batch's products at
      // the same time, and the rates add up (on one rank: one core's rate).
      double rate = bench::gemm_rate(info.dim, s.H, s.B, gemm_seconds);
      MPI_Allreduce(MPI_IN_PLACE, &rate, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
      const size_t n = steps ? steps : tr.steps_per_epoch();
      uint64_t t = 0;
      for (; t < warmup; ++t) tr.step(t);
      MPI_Barrier(MPI_COMM_WORLD);
      const double comm0 = tr.reduce_seconds();
      double t0 = MPI_Wtime();
      for (size_t k = 0; k < n; ++k, ++t) tr.step(t);
      double el = MPI_Wtime() - t0;
      double comm = tr.reduce_seconds() - comm0;
      MPI_Allreduce(MPI_IN_PLACE, &el, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      MPI_Allreduce(MPI_IN_PLACE, &comm, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      const double measured = static_cast<double>(n * s.B) / el;
      const double bound = rate / (10.0 * info.dim * s.H);

      // Correctness: GEMM statistics vs the loop reference on 8 real images.
      Shard sh = read_shard(data, schema::train_images, env.rank, env.size);
      const size_t nb = std::min<size_t>(8, sh.rows());
      Matrix X(info.dim, nb);
      std::vector<uint64_t> idx(nb);
      for (size_t k = 0; k < nb; ++k) {
        idx[k] = sh.layout.global_row(k);
        for (size_t i = 0; i < info.dim; ++i) X(i, k) = sh.row(k)[i] / 255.0f;
      }
      ParamBuffer g(info.dim, s.H), gref(info.dim, s.H);
      CdWorkspace ws;
      CdConfig cd{1, false, t, nb, nb};
      CounterRng rng(1);
      cd_gradient(tr.params(), cd, X, idx.data(), nullptr, nullptr, rng, ws, g.view);
      cd_gradient_naive(tr.params(), cd, X, idx.data(), nullptr, nullptr, rng, gref.view);
      double maxdiff = 0;
      for (size_t k = 0; k < g.data.size(); ++k)
        maxdiff = std::max(maxdiff, static_cast<double>(std::abs(g.data[k] - gref.data[k])));
      MPI_Allreduce(MPI_IN_PLACE, &maxdiff, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      const bool ok = maxdiff <= 1e-5;
      all_ok = all_ok && ok;
      if (env.root()) {
        std::printf(" %6zu %6zu %10.1f %12.0f %12.0f %7.1f %10.1f  %s (max|diff| %.1e)\n", s.H,
                    s.B, rate / 1e9, bound, measured, 100.0 * measured / bound, 100.0 * comm / el,
                    ok ? "OK" : "WRONG", maxdiff);
        std::fflush(stdout);
      }
    }
    if (env.root()) std::printf("# check: %s\n", all_ok ? "all OK" : "FAILED");
    return all_ok ? exit_code::ok : exit_code::runtime;
  });
}
