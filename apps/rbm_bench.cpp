// rbm_bench — CD-1 training throughput of rbm_dist next to this machine's compute
// bound, per phase of the step, like nccl-tests: a sweep over shapes (and
// precisions), one row each, a summary line, and a non-zero exit when a check fails.
//
//   rbm_bench --data fashion.h5                                   (one rank)
//   mpirun -np 2 rbm_bench --data fashion.h5 --precision fp32,bf16
//
// The bound (derived once, here):
//   one CD-1 sample costs 5 matrix products of 2*V*H flops each —
//     p(h|x) = sig(W'x + c)        2VH
//     p(v|h) = sig(W h + b)        2VH
//     p(h|v1)                      2VH
//     x p(h|x)' - v1 p(h|v1)'      4VH   (one product with inner dimension 2B)
//   = 10*V*H flops per sample. The element-wise work (sigmoid, sampling, update)
//   is O(V*H/B + (V+H)) per sample and not counted. Each rank measures the GEMM
//   rate R_r of exactly ITS products — the per-rank batch B_r (B/ranks, ±1), in the
//   precision of the row (fp32: OpenBLAS sgemm via Eigen; bf16: oneDNN matmul, bf16
//   inputs) — all ranks at the same time, so bound = sum_r R_r / (10 V H) samples/s;
//   %bound = measured / bound.
// Phases (microseconds per step, mean over the ranks; on the --clock: with cpu, each
// rank's thread CPU time, so `wait` is the polling part of the barrier only):
//   gemm    the matrix products
//   elem    the rest of the CD statistics: bias, sigmoid, sampling, bf16 rounding, sums
//   update  the node's fused reduction + update: this rank's segment of theta and
//           momentum from the sum of all ranks' gradient slots (+ the bf16 copy of W)
//   wait    node barriers (waiting for the slowest rank), cross-node allreduce
//   other   the rest of the step: loading and binarising the batch, counters
// upd GB/s: bytes the node's fused reduce+update moves per step — L gradient slots
// read, theta and momentum read and written (+ the bf16 copy of W written) —
// over the slowest rank's update time.
// #wrong (summed over ranks; each checks 8 of its own real images with the current,
// trained weights): fp32 — entries of the step's GEMM statistics farther than 1e-5
// from the loop reference (cd_gradient_naive, see test_rbm.cpp); bf16 — entries of
// the bf16 statistics product, on the step's real operands, farther from the exact
// (double) product than the derived bound (2u + u^2 + K 2^-24) sum_k |a_ik p_jk|,
// u = 2^-8 (see test_bf16.cpp). (Whole bf16 statistics against fp32 are not compared
// entry by entry: a probability rounded across a uniform flips a sample, a legitimate
// difference of up to 1/B.) Exit 1 if any row has one.
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "rbm/bench.hpp"
#include "rbm/blas_backend.hpp"
#include "rbm/cli.hpp"
#include "rbm/gemm_bf16.hpp"
#include "rbm/mpi_env.hpp"
#include "rbm/prof.hpp"
#include "rbm/rbm_bf16.hpp"
#include "rbm/trainer.hpp"

using namespace rbm;
namespace po = cli::po;

namespace {
std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

struct Row {
  Precision prec;
  bench::Shape s;
  double rate = 0, bound = 0, wall = 0, cpu = 0, share = 0;
  size_t wrong = 0;
};
}  // namespace

int main(int argc, char** argv) {
  blas::ensure_fast_kernel(argc, argv);
  return run_mpi_program("rbm_bench", argc, argv, [&](const MpiEnv& env) {
    const cli::Program prog{"rbm_bench", "[mpirun -np N] rbm_bench --data FILE.h5 [options]",
                            "rbm_bench: CD-1 samples/s of rbm_dist against the GEMM-derived bound."};
    std::string data, shapes_text, prec_text, clock_text;
    size_t steps = 0, warmup = 0;
    double gemm_seconds = 0;
    po::options_description opts("rbm_bench options");
    opts.add_options()
        ("data", po::value(&data)->value_name("FILE"), "dataset in the mnist2h5 schema (required)")
        ("shapes", po::value(&shapes_text)->default_value("256x64,500x100")->value_name("HxB,..."),
         "hidden units x global batch size pairs to measure")
        ("precision", po::value(&prec_text)->default_value("fp32")->value_name("P,..."),
         "fp32 | bf16 | fp32,bf16: precision of the products (each shape in each)")
        ("steps", po::value(&steps)->default_value(0)->value_name("N"),
         "timed training steps per shape; 0 = one epoch")
        ("warmup", po::value(&warmup)->default_value(20)->value_name("N"), "untimed steps first")
        ("gemm-seconds", po::value(&gemm_seconds)->default_value(2.0)->value_name("S"),
         "seconds spent measuring the GEMM rate per shape")
        ("clock", po::value(&clock_text)->default_value("wall")->value_name("C"),
         "wall | cpu: clock of the GEMM rate and of samples/s (cpu: each rank's thread CPU "
         "time, for a loaded machine; both samples/s columns are printed either way)");
    cli::Parsed parsed;
    agree(env, [&] { parsed = cli::parse(prog, opts, argc, argv, nullptr, env.root()); });
    if (parsed.help) return exit_code::ok;
    std::vector<bench::Shape> shapes;
    std::vector<Precision> precs;
    bench::Clock clock = bench::Clock::wall;
    agree(env, [&] {
      if (data.empty()) throw UsageError("--data is required (a file written by mnist2h5)");
      shapes = bench::parse_shapes(shapes_text);
      precs = bench::parse_precisions(prec_text);
      if (clock_text != "wall" && clock_text != "cpu")
        throw UsageError("--clock " + clock_text + ": use wall or cpu");
      clock = clock_text == "cpu" ? bench::Clock::cpu : bench::Clock::wall;
      for (Precision p : precs)
        if (p == Precision::bf16 && !bf16::cpu_has_native_bf16())
          throw UsageError(fmt("--precision bf16: this CPU has no native bf16 unit (AVX512_BF16 "
                               "or AMX-BF16; found ", bf16::native_bf16_name(),
                               "): use --precision fp32"));
    });
    DatasetInfo info;
    agree(env, [&] { info = inspect_dataset(data, schema::train_images); });
    // ranks sharing this node's memory (the fused reduction's L)
    int local = 1;
    {
      MPI_Comm node;
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, env.rank, MPI_INFO_NULL, &node);
      MPI_Comm_size(node, &local);
      MPI_Comm_free(&node);
    }
    const size_t V = info.dim;
    if (env.root()) {
      std::printf("# rbm_bench %s: %d rank(s) (%d per node), GEMM fp32 %s\n", RBM_VERSION, env.size,
                  local, blas::describe().c_str());
      std::printf("#   bf16: %s\n", bf16::cpu_has_native_bf16() ? bf16::describe().c_str()
                                                                : "no native bf16 on this CPU");
      std::printf("# data %s: %zu images x %zu pixels; CD-1, lr 0.1, momentum 0.5, shuffled; "
                  "%s; load average %s\n", data.c_str(), info.rows, V,
                  steps ? fmt(steps, " timed steps").c_str() : "one epoch timed",
                  load_average().c_str());
      std::printf("# bound = sum over ranks of the GEMM rate at the per-rank shape / (10 V H); "
                  "%%bound on the %s clock; phases: us per step, mean over ranks (see "
                  "apps/rbm_bench.cpp)\n", clock_text.c_str());
      std::printf("#%5s %4s %5s %5s %6s %9s %9s %10s %10s %6s %7s %7s %7s %7s %7s %8s %6s  %s\n",
                  "ranks", "prec", "H", "B", "B/rank", "GFLOP/s", "bound", "samples/s",
                  "cpu_smp/s", "%bound", "gemm", "elem", "update", "wait", "other", "upd_GB/s",
                  "#wrong", "check");
      std::fflush(stdout);
    }
    std::vector<Row> rows;
    size_t wrong_total = 0;
    for (Precision prec : precs) {
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
        cfg.report = false;         // its table stays a table
        cfg.precision = precision_name(prec);
        agree(env, [&] { validate(cfg); });
        Trainer tr(env, cfg, "");
        tr.setup();
        // This rank's share of a global batch (block-cyclic: rows r, r+P, ...).
        const size_t P = static_cast<size_t>(env.size), r = static_cast<size_t>(env.rank);
        const size_t Br = s.B > r ? (s.B - r + P - 1) / P : 0;
        double rate = Br ? bench::gemm_rate(V, s.H, Br, gemm_seconds, prec, clock) : 0.0;
        MPI_Allreduce(MPI_IN_PLACE, &rate, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        const size_t n = steps ? steps : tr.steps_per_epoch();
        uint64_t t = 0;
        for (; t < warmup; ++t) tr.step(t);
        MPI_Barrier(MPI_COMM_WORLD);
        prof::reset();
        prof::cpu_clock() = clock == bench::Clock::cpu;
        prof::enable(true);
        const double w0 = bench::clock_now(bench::Clock::wall),
                     c0 = bench::clock_now(bench::Clock::cpu);
        for (size_t k = 0; k < n; ++k, ++t) tr.step(t);
        double el[2] = {bench::clock_now(bench::Clock::wall) - w0,
                        bench::clock_now(bench::Clock::cpu) - c0};
        prof::enable(false);
        const double* ph = prof::times();
        // per step, this rank: gemm, elem, update, wait, other
        double mine[5] = {ph[prof::gemm], ph[prof::cd] - ph[prof::gemm], ph[prof::update],
                          ph[prof::wait], 0};
        mine[4] = el[clock == bench::Clock::cpu ? 1 : 0] - ph[prof::cd] - ph[prof::update] -
                  ph[prof::wait];
        double mean[5], upd_max = ph[prof::update];
        MPI_Allreduce(mine, mean, 5, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        MPI_Allreduce(MPI_IN_PLACE, &upd_max, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        MPI_Allreduce(MPI_IN_PLACE, el, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        for (double& m : mean) m = m / static_cast<double>(env.size) / static_cast<double>(n);
        Row row{prec, s};
        row.rate = rate;
        row.wall = static_cast<double>(n * s.B) / el[0];
        row.cpu = static_cast<double>(n * s.B) / el[1];
        row.bound = rate / (10.0 * static_cast<double>(V * s.H));
        row.share = (clock == bench::Clock::cpu ? row.cpu : row.wall) / row.bound;
        const double np = static_cast<double>(Params::count(V, s.H));
        const double bytes = 4.0 * np * (local + 4) + (prec == Precision::bf16 ? 2.0 * V * s.H : 0);
        const double gbs = upd_max > 0 ? bytes / (upd_max / static_cast<double>(n)) * 1e-9 : 0;

        // Correctness on 8 real images of this rank: fp32 against the loop reference,
        // bf16 against fp32 (same uniforms).
        Shard sh = read_shard(data, schema::train_images, env.rank, env.size);
        const size_t nb = std::min<size_t>(8, sh.rows());
        Matrix X(V, nb);
        std::vector<uint64_t> idx(nb);
        for (size_t k = 0; k < nb; ++k) {
          idx[k] = sh.layout.global_row(k);
          for (size_t i = 0; i < V; ++i) X(i, k) = sh.row(k)[i] / 255.0f;
        }
        ParamBuffer g(V, s.H), gref(V, s.H);
        CdBf16Workspace ws;
        CdConfig cd{1, false, t, nb, nb};
        CounterRng rng(1);
        unsigned long long wrong = 0;
        if (prec == Precision::bf16) {
          // The bf16 statistics product on this step's real operands (those of the fp32
          // computation, so no sample flipped by rounding enters), entry by entry
          // against double: |bf16 result - exact| <= (2u + u^2 + K 2^-24) sum_k |a||p|,
          // u = 2^-8 (each input rounded once, fp32 accumulation over K terms).
          cd_gradient(tr.params(), cd, X, idx.data(), nullptr, nullptr, rng, ws.f32, gref.view);
          const Matrix& A = ws.f32.A;  // [V, K]
          const Matrix& Pm = ws.f32.P; // [H, K]
          const int64_t K = A.cols(), HH = static_cast<int64_t>(s.H), VV = static_cast<int64_t>(V);
          bf16::AlignedBuffer Ab, Pb;
          bf16::to_bf16(A.data(), Ab.reserve(A.size()), A.size());
          bf16::to_bf16(Pm.data(), Pb.reserve(Pm.size()), Pm.size());
          bf16::stats(Ab.data(), VV, Pb.data(), HH, K, g.view.W.data());
          const double u = std::ldexp(1.0, -8), rel = 2 * u + u * u + K * std::ldexp(1.0, -24);
          for (int64_t i = 0; i < VV; ++i)
            for (int64_t j = 0; j < HH; ++j) {
              double exact = 0, mag = 0;
              for (int64_t k = 0; k < K; ++k) {
                exact += double(A(i, k)) * Pm(j, k);
                mag += std::abs(double(A(i, k)) * Pm(j, k));
              }
              wrong += !(std::abs(g.view.W(i, j) - exact) <= rel * mag + 1e-30);
            }
        } else {
          cd_gradient(tr.params(), cd, X, idx.data(), nullptr, nullptr, rng, ws.f32, g.view);
          cd_gradient_naive(tr.params(), cd, X, idx.data(), nullptr, nullptr, rng, gref.view);
          for (size_t k = 0; k < g.data.size(); ++k)
            wrong += !(std::abs(static_cast<double>(g.data[k]) - gref.data[k]) <= 1e-5);
        }
        MPI_Allreduce(MPI_IN_PLACE, &wrong, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
        row.wrong = wrong;
        wrong_total += wrong;
        rows.push_back(row);
        if (env.root()) {
          std::printf(" %5d %4s %5zu %5zu %6zu %9.1f %9.0f %10.0f %10.0f %6.1f %7.0f %7.0f %7.0f "
                      "%7.0f %7.0f %8.1f %6llu  %s\n",
                      env.size, precision_name(prec), s.H, s.B, (s.B + P - 1) / P,
                      rate / 1e9, row.bound, row.wall, row.cpu, 100.0 * row.share, 1e6 * mean[0],
                      1e6 * mean[1], 1e6 * mean[2], 1e6 * mean[3], 1e6 * mean[4], gbs, wrong,
                      wrong ? "WRONG" : "OK");
          std::fflush(stdout);
        }
      }
    }
    if (env.root()) {
      double lo = 1e300, sum = 0;
      for (const Row& r : rows) lo = std::min(lo, r.share), sum += r.share;
      std::string speedups;
      for (const Row& b : rows)
        for (const Row& f : rows)
          if (b.prec == Precision::bf16 && f.prec == Precision::fp32 && b.s.H == f.s.H &&
              b.s.B == f.s.B)
            speedups += fmt(" ", b.s.H, "x", b.s.B, " ",
                            std::round(100 * (clock == bench::Clock::cpu ? b.cpu / f.cpu
                                                                         : b.wall / f.wall)) /
                                100,
                            "x;");
      std::printf("# summary: %zu rows, %d rank(s): share of the bound mean %.1f%% min %.1f%%;%s%s "
                  "#wrong %zu; load average %s; check: %s\n",
                  rows.size(), env.size, 100 * sum / static_cast<double>(rows.size()), 100 * lo,
                  speedups.empty() ? "" : " bf16/fp32 samples/s:", speedups.c_str(), wrong_total,
                  load_average().c_str(), wrong_total ? "FAILED" : "all OK");
      std::fflush(stdout);
    }
    return wrong_total ? exit_code::runtime : exit_code::ok;
  });
}
