#include "rbm/idx.hpp"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "rbm/errors.hpp"
#include "rbm/input_file.hpp"

namespace rbm {

namespace {

struct GzClose {
  void operator()(gzFile_s* g) const { gzclose(g); }
};
using Gz = std::unique_ptr<gzFile_s, GzClose>;

std::string hex(uint32_t v, int digits) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%0*X", digits, v);
  return buf;
}

uint32_t be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

const char* type_name(uint8_t code) {
  switch (code) {
    case 0x08:
      return "unsigned byte";
    case 0x09:
      return "signed byte";
    case 0x0B:
      return "int16";
    case 0x0C:
      return "int32";
    case 0x0D:
      return "float32";
    case 0x0E:
      return "float64";
    default:
      return "not an IDX type";
  }
}

// What a file of this rank usually is, for "magic 0x00000801 is an IDX1 label file".
std::string kind(int ndims) {
  if (ndims == 1) return "an IDX1 label file";
  if (ndims == 3) return "an IDX3 image file";
  return fmt("an IDX", ndims, " file");
}

std::string shape(const std::vector<uint32_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

// Reads up to n bytes; fewer only at the end of the file. A corrupt gzip stream or a
// read error throws, with zlib's message (gzerror prefixes it with the path: dropped).
size_t read_some(gzFile g, const std::string& path, uint8_t* buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    const unsigned want = static_cast<unsigned>(std::min<size_t>(n - got, 1u << 30));
    const int r = gzread(g, buf + got, want);
    int err = Z_OK;
    std::string msg = gzerror(g, &err);
    if (r < 0 || err != Z_OK) {
      if (msg.rfind(path + ": ", 0) == 0) msg.erase(0, path.size() + 2);
      if (err == Z_ERRNO) throw UsageError(fmt(path, ": cannot read (", msg, ")"));
      throw UsageError(
          fmt(path, ": corrupt or truncated gzip stream (zlib: ", msg, "); fetch the file again"));
    }
    got += static_cast<size_t>(r);
    if (static_cast<unsigned>(r) < want) break;
  }
  return got;
}

}  // namespace

IdxArray read_idx(const std::string& path, int expected_ndims, const std::string& role) {
  const std::string expected = fmt(hex(0x0800u | static_cast<uint32_t>(expected_ndims), 8), " (IDX",
                                   expected_ndims, " ", role, ")");
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw UsageError(path + ": is a folder, expected an IDX file " + expected);
  // Not a pipe or a device: opening a FIFO would wait for a writer for ever, and the
  // data is read twice (below).
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    throw UsageError(fmt(path, ": is ", describe_non_regular(st.st_mode),
                         ", not a regular file (expected an IDX file ", expected,
                         "; reading it could wait for ever: copy the data to a file)"));
  Gz g(gzopen(path.c_str(), "rb"));
  if (!g) throw UsageError(fmt(path, ": cannot open (", std::strerror(errno), ")"));
  gzbuffer(g.get(), 1 << 18);

  IdxArray a;
  a.path = path;
  uint8_t head[4];
  size_t n = read_some(g.get(), path, head, 4);
  a.gzipped = gzdirect(g.get()) == 0;
  const char* file = a.gzipped ? "decompressed file" : "file";
  if (n < 4)
    throw UsageError(fmt(path, ": the ", file, " has ", n,
                         " bytes, too short for an IDX header (expected magic ", expected, ")"));
  const uint32_t magic = be32(head);
  if (head[0] != 0 || head[1] != 0)
    throw UsageError(
        fmt(path, ": not an IDX file (starts with ", hex(magic, 8), ", expected ", expected, ")"));
  if (head[2] != 0x08)
    throw UsageError(fmt(path, ": magic ", hex(magic, 8), " has type code ", hex(head[2], 2), " (",
                         type_name(head[2]), "), expected 0x08 (unsigned byte) as in ", expected));
  if (head[3] != expected_ndims)
    throw UsageError(
        fmt(path, ": magic ", hex(magic, 8), " is ", kind(head[3]), ", expected ", expected));

  // Dimensions: none may be 0, and their product (the data size) must be sane.
  std::vector<uint8_t> raw(4 * static_cast<size_t>(expected_ndims));
  n = read_some(g.get(), path, raw.data(), raw.size());
  if (n < raw.size())
    throw UsageError(fmt(path, ": truncated header: ", expected_ndims, " dimensions need ",
                         4 + raw.size(), " header bytes, the ", file, " has ", 4 + n));
  const uint64_t limit = uint64_t{1} << 40;
  uint64_t bytes = 1;
  for (int i = 0; i < expected_ndims; ++i) a.dims.push_back(be32(raw.data() + 4 * i));
  for (uint32_t d : a.dims) {
    if (d == 0)
      throw UsageError(fmt(path, ": dimensions ", shape(a.dims), " contain a 0 (empty ", role,
                           " file or corrupt header)"));
    if (bytes > limit / d)
      throw UsageError(fmt(path, ": dimensions ", shape(a.dims),
                           " make more than 1 TiB of data (corrupt header)"));
    bytes *= d;
  }

  // Data, in two passes so that memory is bounded by what the file really holds:
  //  1. stream through the (decompressed) file in 64 KiB pieces, keeping nothing, and
  //     count the bytes after the header, stopping kTrailingCap bytes past the declared
  //     size. A short file ("truncated") or a long one ("extra bytes") fails here,
  //     before any allocation: a 2 MB gzip that inflates to 2 GiB under a header of
  //     2.35 GB costs 64 KiB, not gigabytes.
  //  2. only then allocate exactly the declared size, rewind and read it.
  // Reading on to the end also makes zlib check the gzip CRC.
  const size_t header = 4 + raw.size();
  const uint64_t kTrailingCap = uint64_t{64} << 20;
  std::vector<uint8_t> piece(size_t{1} << 16);
  uint64_t total = 0;
  for (;;) {
    const uint64_t room = bytes + kTrailingCap - total;
    if (room == 0) break;
    const size_t want = static_cast<size_t>(std::min<uint64_t>(piece.size(), room));
    const size_t r = read_some(g.get(), path, piece.data(), want);
    total += r;
    if (r < want) break;
  }
  if (total < bytes)
    throw UsageError(fmt(path, ": truncated: header ", shape(a.dims), " says ", bytes,
                         " data bytes after its ", header, ", the ", file, " has ", total,
                         " (an incomplete download? fetch it again)"));
  if (total > bytes) {
    const uint64_t more = total - bytes;
    throw UsageError(fmt(path, ": ", more >= kTrailingCap ? "more than " : "", more,
                         " extra bytes after the ", bytes, " data bytes of ", role, " ",
                         shape(a.dims), " (wrong header, or not an IDX file)"));
  }
  if (gzrewind(g.get()) != 0)
    throw UsageError(fmt(path, ": cannot read it a second time (rewind failed)"));
  uint8_t skip[4 + 4 * 255];
  if (read_some(g.get(), path, skip, header) != header)
    throw UsageError(fmt(path, ": changed while being read (header shorter the second time)"));
  a.data.resize(bytes);
  const size_t got = read_some(g.get(), path, a.data.data(), bytes);
  if (got != bytes || read_some(g.get(), path, skip, 1) != 0)
    throw UsageError(fmt(path, ": changed while being read (", got, " data bytes the second time, ",
                         bytes, " the first)"));
  return a;
}

}  // namespace rbm
