/* fail_io.c — an LD_PRELOAD shim that makes chosen file-system calls fail for real
 * callers (our programs), to test what they do when the disk says no:
 *   RBM_FAIL_FSYNC=<text>   fsync/fdatasync of a FILE whose path contains <text>
 *                           fails with EIO
 *   RBM_FAIL_FSYNC_DIR=<text>  the same for a FOLDER
 *   RBM_FAIL_RENAME=<text>  rename(old, new) with <text> in new fails with EIO
 * Everything else is passed to the C library. Built by tests/CMakeLists.txt. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fd_matches(int fd, const char* var) {
  struct stat st;
  if (fstat(fd, &st) != 0) return 0;
  if (S_ISDIR(st.st_mode)) var = "RBM_FAIL_FSYNC_DIR";
  const char* want = getenv(var);
  if (!want || !*want) return 0;
  char link[64], path[PATH_MAX];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, path, sizeof path - 1);
  if (n < 0) return 0;
  path[n] = '\0';
  return strstr(path, want) != NULL;
}

int fsync(int fd) {
  static int (*real)(int) = NULL;
  if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  if (fd_matches(fd, "RBM_FAIL_FSYNC")) {
    errno = EIO;
    return -1;
  }
  return real(fd);
}

int fdatasync(int fd) {
  static int (*real)(int) = NULL;
  if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
  if (fd_matches(fd, "RBM_FAIL_FSYNC")) {
    errno = EIO;
    return -1;
  }
  return real(fd);
}

int rename(const char* old_path, const char* new_path) {
  static int (*real)(const char*, const char*) = NULL;
  if (!real) real = (int (*)(const char*, const char*))dlsym(RTLD_NEXT, "rename");
  const char* want = getenv("RBM_FAIL_RENAME");
  if (want && *want && strstr(new_path, want)) {
    errno = EIO;
    return -1;
  }
  return real(old_path, new_path);
}
