// bench.cpp — measurement helpers of rbm_bench (see rbm/bench.hpp).
#include "rbm/bench.hpp"

#include <mpi.h>

#include <sstream>

#include "rbm/errors.hpp"
#include "rbm/rbm.hpp"

namespace rbm::bench {

std::vector<Shape> parse_shapes(const std::string& s) {
  std::vector<Shape> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t x = item.find('x');
    if (x == std::string::npos) throw UsageError("--shapes " + s + ": use HxB pairs like 256x64,500x100");
    try {
      out.push_back({std::stoul(item.substr(0, x)), std::stoul(item.substr(x + 1))});
    } catch (const std::exception&) {
      throw UsageError("--shapes " + s + ": use HxB pairs like 256x64,500x100");
    }
    if (out.back().H == 0 || out.back().B == 0) throw UsageError("--shapes " + s + ": H, B >= 1");
  }
  return out;
}

double gemm_rate(size_t V, size_t H, size_t B, double seconds) {
  MatrixRM W = MatrixRM::Random(V, H);  // [V, H]
  Matrix X = Matrix::Random(V, B), Hm(H, B), Vm(V, B);
  Matrix A = Matrix::Random(V, 2 * B), P = Matrix::Random(H, 2 * B);
  MatrixRM G(V, H);
  auto once = [&] {
    Hm.noalias() = W.transpose() * X;  // 2VHB
    Vm.noalias() = W * Hm;             // 2VHB
    Hm.noalias() = W.transpose() * Vm; // 2VHB
    G.noalias() = A * P.transpose();   // 4VHB
  };
  once();
  size_t reps = 0;
  double t0 = MPI_Wtime(), t = 0;
  do {
    once();
    ++reps;
    t = MPI_Wtime() - t0;
  } while (t < seconds);
  return 10.0 * V * H * B * reps / t;
}

}  // namespace rbm::bench
