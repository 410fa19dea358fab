// xcore_bw — how fast does one core read data that the OTHER core has just
// written (what the node-shared reduction and the next step's GEMM do every step),
// against data it wrote itself? Two threads pinned to CPUs 0 and 1 take turns: the
// writer fills a buffer, the reader sums it; thread CPU time of the read.
//   build/xcore_bw [MB] [reps]      (built with -O3 -ffast-math: the read loop vectorises)
#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

static double cpu_now() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
static void pin(int cpu) {
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(cpu, &s);
  pthread_setaffinity_np(pthread_self(), sizeof s, &s);
}

int main(int argc, char** argv) {
  const size_t mb = argc > 1 ? std::atof(argv[1]) * (1 << 20) : 786 * 1024;  // 784x250 floats
  const int reps = argc > 2 ? std::atoi(argv[2]) : 400;
  const size_t n = mb / sizeof(float);
  std::vector<float> buf(n, 1.0f);
  std::atomic<int> turn{0};  // 0: writer's turn, 1: reader's turn
  double remote = 0, local = 0;
  volatile float sink = 0;
  std::thread writer([&] {
    pin(0);
    for (int r = 0; r < reps; ++r) {
      while (turn.load(std::memory_order_acquire) != 0) {}
      for (size_t i = 0; i < n; ++i) buf[i] = static_cast<float>(r + i);
      turn.store(1, std::memory_order_release);
    }
  });
  std::thread reader([&] {
    pin(1);
    for (int r = 0; r < reps; ++r) {
      while (turn.load(std::memory_order_acquire) != 1) {}
      double t0 = cpu_now();
      float s = 0;
      for (size_t i = 0; i < n; ++i) s += buf[i];
      remote += cpu_now() - t0;
      // the same data again, now local (in this core's caches, or L3)
      for (size_t i = 0; i < n; ++i) buf[i] = s + i;  // written by THIS core
      t0 = cpu_now();
      for (size_t i = 0; i < n; ++i) s += buf[i];
      local += cpu_now() - t0;
      sink = s;
      turn.store(0, std::memory_order_release);
    }
  });
  writer.join();
  reader.join();
  std::printf("%.2f MB: read what the other core wrote %.1f GB/s (%.0f us), what this core "
              "wrote %.1f GB/s (%.0f us)\n",
              mb / 1048576.0, mb * reps / remote * 1e-9, 1e6 * remote / reps,
              mb * reps / local * 1e-9, 1e6 * local / reps);
  return 0;
}
