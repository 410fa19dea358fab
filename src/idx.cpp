#include "rbm/idx.hpp"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "rbm/errors.hpp"

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

  // Data: grown as it arrives, so a lying header cannot make us allocate what the
  // file does not hold.
  const size_t header = 4 + raw.size();
  size_t got = 0;
  while (got < bytes) {
    const size_t step = std::min<size_t>(bytes - got, std::max<size_t>(got, size_t{1} << 20));
    a.data.resize(got + step);
    const size_t r = read_some(g.get(), path, a.data.data() + got, step);
    got += r;
    if (r < step) break;
  }
  if (got < bytes)
    throw UsageError(fmt(path, ": truncated: header ", shape(a.dims), " says ", bytes,
                         " data bytes after its ", header, ", the ", file, " has ", got,
                         " (an incomplete download? fetch it again)"));

  // Nothing may follow. Reading on to the end also makes zlib check the gzip CRC.
  uint8_t extra[4096];
  uint64_t more = 0;
  while ((n = read_some(g.get(), path, extra, sizeof extra)) > 0) more += n;
  if (more > 0)
    throw UsageError(fmt(path, ": ", more, " extra bytes after the ", bytes, " data bytes of ",
                         role, " ", shape(a.dims), " (wrong header, or not an IDX file)"));
  return a;
}

}  // namespace rbm
