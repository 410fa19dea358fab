// trainer_util.hpp — what the rbm_dist end-to-end tests share: a learnable "bars"
// dataset, running rbm_dist (under mpirun), background jobs in their own process group.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>
#include <thread>

#include "rbm/checkpoint.hpp"
#include "rbm/dataset.hpp"
#include "rbm/errors.hpp"
#include "rbm/h5.hpp"
#include "rbm/rbm.hpp"
#include "test_util.hpp"

using namespace rbm;
using namespace rbm::test;
namespace fs = std::filesystem;

namespace trainertest {

// "Bars" images (side x side): each image has random horizontal or vertical bars,
// drawn at intensity 230 on 10, with 5% of the pixels flipped: learnable structure.
inline void write_bars(const std::string& path, size_t n, size_t n_test, size_t side = 8) {
  const size_t d = side * side;
  auto make = [&](size_t rows, unsigned seed, std::vector<uint8_t>& px, std::vector<uint8_t>& lab) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<double> u(0, 1);
    px.assign(rows * d, 10);
    lab.resize(rows);
    for (size_t i = 0; i < rows; ++i) {
      const bool vertical = u(gen) < 0.5;
      lab[i] = vertical;
      for (size_t b = 0; b < side; ++b) {
        if (u(gen) >= 0.3) continue;
        for (size_t k = 0; k < side; ++k)
          px[i * d + (vertical ? k * side + b : b * side + k)] = 230;
      }
      for (size_t p = 0; p < d; ++p)
        if (u(gen) < 0.05) px[i * d + p] = px[i * d + p] > 128 ? 10 : 230;
    }
  };
  h5::Id f = h5::create_file(path);
  std::vector<uint8_t> px, lab;
  make(n, 1, px, lab);
  h5::write_array(f, schema::train_images, px.data(), {n, d}, {256, 4});
  h5::write_array(f, schema::train_labels, lab.data(), {n});
  if (n_test) {
    make(n_test, 2, px, lab);
    h5::write_array(f, schema::test_images, px.data(), {n_test, d}, {256, 4});
    h5::write_array(f, schema::test_labels, lab.data(), {n_test});
  }
}

// rbm_dist under `mpirun -np np` (np = 0: the binary alone).
inline std::string rbm_dist(int np, const std::string& args) {
  return (np ? mpirun(np) : std::string()) + bin("rbm_dist") + " --progress never " + args;
}

inline std::vector<float> params_of(const std::string& path) { return read_model(path).data; }

inline int count_lines_starting(const std::string& text, const std::string& prefix) {
  int n = 0;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) n += line.rfind(prefix, 0) == 0;
  return n;
}

// A command in the background, in its own process group (so that a kill reaches
// mpirun and every rank).
struct Background {
  pid_t pid = -1;
  explicit Background(const std::string& cmd) {
    pid = fork();
    if (pid == 0) {
      setpgid(0, 0);
      int null = open("/dev/null", O_RDWR);
      dup2(null, 0);
      dup2(null, 1);
      dup2(null, 2);
      execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    setpgid(pid, pid);
  }
  void signal_group(int sig) const { kill(-pid, sig); }
  void signal_leader(int sig) const { kill(pid, sig); }
  // Exit status, or -1 if it did not end within `seconds` (then it is killed).
  int wait(double seconds) {
    auto t0 = std::chrono::steady_clock::now();
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > seconds) {
        kill(-pid, SIGKILL);
        waitpid(pid, &status, 0);
        return -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
};

// Sends `sig` to every process whose command line matches the regex `pattern` (pgrep
// -f); returns how many there were.
inline int kill_processes(const std::string& pattern, int sig) {
  RunResult pids = run("pgrep -f '" + pattern + "'", 10);
  std::istringstream in(pids.out);
  int n = 0;
  for (std::string p; in >> p; ++n) kill(std::stoi(p), sig);
  return n;
}

inline bool wait_for_file(const std::string& path, double seconds) {
  auto t0 = std::chrono::steady_clock::now();
  while (!fs::exists(path)) {
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > seconds)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

}  // namespace trainertest
