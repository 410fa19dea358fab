// atomic_file.cpp — see rbm/atomic_file.hpp for the protocol.
#include "rbm/atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "rbm/errors.hpp"

namespace rbm {

namespace {
// The temporary to remove from a signal handler (which may only call unlink).
char g_signal_temp[4096] = "";

extern "C" void remove_temp_and_reraise(int sig) {
  if (g_signal_temp[0]) ::unlink(g_signal_temp);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}
}  // namespace

void fsync_or_throw(const std::string& path, bool directory, const std::string& what) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) throw Error(fmt(what, " ", path, ": cannot open for fsync: ", std::strerror(errno)));
  if (::fsync(fd) != 0) {
    const int e = errno;
    ::close(fd);
    throw Error(fmt(what, " ", path, ": fsync failed: ", std::strerror(e)));
  }
  if (::close(fd) != 0) throw Error(fmt(what, " ", path, ": close failed: ", std::strerror(errno)));
}

AtomicFile::AtomicFile(std::string target, bool cleanup_on_signal)
    : target_(std::move(target)), temp_(fmt(target_, ".tmp.", ::getpid())) {
  if (cleanup_on_signal) {
    if (temp_.size() >= sizeof g_signal_temp)
      throw UsageError(target_ + ": path too long");
    std::strcpy(g_signal_temp, temp_.c_str());
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) std::signal(sig, remove_temp_and_reraise);
    signal_cleanup_ = true;
  }
}

AtomicFile::~AtomicFile() {
  if (!committed_) ::unlink(temp_.c_str());
  if (signal_cleanup_) g_signal_temp[0] = '\0';
}

void AtomicFile::commit() {
  try {
    fsync_or_throw(temp_, false, target_ + ": the new file");
    if (std::rename(temp_.c_str(), target_.c_str()) != 0)
      throw Error(fmt(target_, ": cannot rename ", temp_, " to it: ", std::strerror(errno)));
  } catch (...) {
    ::unlink(temp_.c_str());
    throw;
  }
  committed_ = true;
  // The rename happened: the target is the new file. A failed folder fsync means the
  // new name may not survive a crash; say so (the data itself is complete).
  std::string dir = std::filesystem::path(target_).parent_path().string();
  fsync_or_throw(dir.empty() ? "." : dir, true, target_ + ": its folder");
}

}  // namespace rbm
