#include "rbm/input_file.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "rbm/errors.hpp"

namespace rbm {

const char* describe_non_regular(unsigned mode) {
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

void require_regular_file(const std::string& path, const std::string& what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw UsageError(fmt(path, ": cannot open (", std::strerror(errno), ")"));
  if (S_ISDIR(st.st_mode)) throw UsageError(fmt(path, ": is a folder (", what, ")"));
  if (!S_ISREG(st.st_mode))
    throw UsageError(fmt(path, ": is ", describe_non_regular(st.st_mode), ", not a regular file (",
                         what, "; reading it could wait for ever: copy the data to a file)"));
}

}  // namespace rbm
