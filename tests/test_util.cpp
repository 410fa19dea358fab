#include "test_util.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "rbm/dataset.hpp"
#include "rbm/h5.hpp"

namespace rbm::test {

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "rbm_test_XXXXXX").string();
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  path = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path, ec);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

RunResult run(const std::string& cmd, double timeout_s) {
  RunResult r;
  TempDir tmp;
  const std::string out = tmp / "stdout", err = tmp / "stderr";
  auto t0 = std::chrono::steady_clock::now();
  pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);  // own process group: a timeout kills mpirun and all ranks
    int fo = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int fe = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int fi = open("/dev/null", O_RDONLY);
    dup2(fi, 0);
    dup2(fo, 1);
    dup2(fe, 2);
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  if (pid < 0) return r;
  setpgid(pid, pid);
  int status = 0;
  struct rusage usage {};
  for (;;) {
    pid_t w = wait4(pid, &status, WNOHANG, &usage);
    if (w == pid) break;
    double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (el > timeout_s) {
      r.timed_out = true;
      kill(-pid, SIGKILL);
      wait4(pid, &status, 0, &usage);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.max_rss_kb = usage.ru_maxrss;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

std::string bin(const std::string& name) { return std::string(RBM_BIN_DIR) + "/" + name; }

std::string mpirun(int np) {
  return "mpirun --oversubscribe --allow-run-as-root -np " + std::to_string(np) + " ";
}

void write_idx(const std::string& path, const std::vector<uint32_t>& dims,
               const std::vector<uint8_t>& data, bool gzip) {
  std::string bytes;
  bytes.push_back(0);
  bytes.push_back(0);
  bytes.push_back(0x08);
  bytes.push_back(static_cast<char>(dims.size()));
  for (uint32_t d : dims) {
    for (int s = 24; s >= 0; s -= 8) bytes.push_back(static_cast<char>((d >> s) & 0xff));
  }
  bytes.append(reinterpret_cast<const char*>(data.data()), data.size());
  if (gzip) {
    gzFile g = gzopen(path.c_str(), "wb");
    gzwrite(g, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(g);
  } else {
    std::ofstream(path, std::ios::binary).write(bytes.data(), bytes.size());
  }
}

uint8_t pattern_pixel(size_t i, size_t p) {
  return static_cast<uint8_t>((i * 131 + p * 7 + (i >> 8) * 13) & 0xff);
}

void write_pattern_h5(const std::string& path, size_t n, size_t d, size_t n_test) {
  h5::Id f = h5::create_file(path);
  auto put = [&](const char* img, const char* lab, size_t rows, size_t offset) {
    std::vector<uint8_t> px(rows * d), labels(rows);
    for (size_t i = 0; i < rows; ++i) {
      for (size_t p = 0; p < d; ++p) px[i * d + p] = pattern_pixel(i + offset, p);
      labels[i] = static_cast<uint8_t>((i + offset) % 10);
    }
    h5::write_array(f, img, px.data(), {rows, d}, {1024, 4});
    h5::write_array(f, lab, labels.data(), {rows});
  };
  put(schema::train_images, schema::train_labels, n, 0);
  if (n_test) put(schema::test_images, schema::test_labels, n_test, 1000000);
}

}  // namespace rbm::test
