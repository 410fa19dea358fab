// bench.cpp — measurement helpers of rbm_bench (see rbm/bench.hpp).
#include "rbm/bench.hpp"

#include <time.h>

#include <sstream>

#include "rbm/errors.hpp"
#include "rbm/gemm_bf16.hpp"
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
  if (out.empty()) throw UsageError("--shapes: give at least one HxB pair");
  return out;
}

std::vector<Precision> parse_precisions(const std::string& s) {
  std::vector<Precision> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item != "fp32" && item != "bf16")
      throw UsageError("--precision " + s + ": use fp32, bf16 or fp32,bf16");
    out.push_back(parse_precision(item));
  }
  if (out.empty()) throw UsageError("--precision: use fp32, bf16 or fp32,bf16");
  return out;
}

double clock_now(Clock c) {
  timespec ts;
  clock_gettime(c == Clock::cpu ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double gemm_rate(size_t V, size_t H, size_t B, double seconds, Precision prec, Clock c) {
  MatrixRM W = MatrixRM::Random(V, H) * 0.01f;  // [V, H]
  Matrix X = Matrix::Random(V, B), Hm(H, B), Vm(V, B);
  Matrix A = Matrix::Random(V, 2 * B), P = Matrix::Random(H, 2 * B);
  MatrixRM G(V, H);
  bf16::AlignedBuffer Wb, Xb, Hb, Vb, Ab, Pb;
  if (prec == Precision::bf16) {
    bf16::to_bf16(W.data(), Wb.reserve(V * H), V * H);
    bf16::to_bf16(X.data(), Xb.reserve(V * B), V * B);
    bf16::to_bf16(Hm.setRandom().data(), Hb.reserve(H * B), H * B);
    bf16::to_bf16(Vm.setRandom().data(), Vb.reserve(V * B), V * B);
    bf16::to_bf16(A.data(), Ab.reserve(V * 2 * B), V * 2 * B);
    bf16::to_bf16(P.data(), Pb.reserve(H * 2 * B), H * 2 * B);
  }
  auto once = [&] {
    if (prec == Precision::bf16) {
      const auto v = static_cast<int64_t>(V), h = static_cast<int64_t>(H), b = static_cast<int64_t>(B);
      bf16::hidden_pre(Wb.data(), v, h, Xb.data(), b, Hm.data());   // 2VHB
      bf16::visible_pre(Wb.data(), v, h, Hb.data(), b, Vm.data());  // 2VHB
      bf16::hidden_pre(Wb.data(), v, h, Vb.data(), b, Hm.data());   // 2VHB
      bf16::stats(Ab.data(), v, Pb.data(), h, 2 * b, G.data());     // 4VHB
      return;
    }
    Hm.noalias() = W.transpose() * X;  // 2VHB
    Vm.noalias() = W * Hm;             // 2VHB
    Hm.noalias() = W.transpose() * Vm; // 2VHB
    G.noalias() = A * P.transpose();   // 4VHB
  };
  once();
  size_t reps = 0;
  double t0 = clock_now(c), t = 0;
  do {
    once();
    ++reps;
    t = clock_now(c) - t0;
  } while (t < seconds);
  return 10.0 * V * H * B * reps / t;
}

}  // namespace rbm::bench
