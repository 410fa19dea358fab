// rbm/h5.hpp — a thin RAII layer over the HDF5 C library.
//
// defines: rbm::h5::Id, open_file, create_file, open_dataset, exists, ensure_group,
//          dataset_shape, dataset_type, write_array, read_array, write_attr, read_attr_*
//
// Every call that fails throws rbm::Error with ONE line: "<file>: <what we were
// doing>: <innermost HDF5 message>". The HDF5 error stack is never printed
// (H5Eset_auto is switched off once, in init()).
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

namespace rbm::h5 {

/// Switches HDF5's automatic error printing off (idempotent; called by every opener).
void init();

/// Owns one hid_t and closes it with the matching H5?close.
class Id {
 public:
  using Closer = herr_t (*)(hid_t);
  Id() = default;
  Id(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
  Id(Id&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = H5I_INVALID_HID; }
  Id& operator=(Id&& o) noexcept;
  ~Id() { reset(); }
  void reset();
  /// Closes now and returns the closer's status (reset() ignores it). Use for files
  /// being written: H5Fclose is where HDF5 writes what it still buffers.
  herr_t close();
  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }  // NOLINT: pass straight to H5 calls

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

/// Collapses the current HDF5 error stack into "<context>: <innermost message>" and
/// throws rbm::Error with `code` (2 = exit_code::usage for a bad input file).
[[noreturn]] void fail(const std::string& context, int code = 1);
/// The innermost description on the HDF5 error stack (where the error was detected,
/// e.g. "truncated file: eof = 108049 ..."), then clears the stack.
std::string innermost_error();


Id open_file(const std::string& path, bool writable = false);
/// Creates (truncating) a file. Used only on AtomicFile temporaries (rbm/atomic_file.hpp).
Id create_file(const std::string& path);
/// Flushes and closes a file being written; any failure (a full disk, an I/O error)
/// throws rbm::Error "<path>: cannot write: <innermost HDF5 message>".
void close_written(Id& file, const std::string& path);

/// True if every component of an absolute path like "/train/images" exists.
bool exists(hid_t loc, const std::string& path);
void ensure_group(hid_t loc, const std::string& path);
/// Opens a dataset; a missing path, a group, a broken link, or an external link to a
/// non-regular file is a UsageError naming `file` and `path`. Every open and link test
/// of this layer follows external links only to regular files.
Id open_dataset(hid_t loc, const std::string& path, const std::string& file);
/// Throws UsageError naming `file`, `path` and both sizes when the dataset declares more
/// data than the file stores: unallocated chunks, a contiguous block beyond the end of
/// the file, or external raw files that are short, missing or not regular files.
/// Reading such a dataset would allocate the declared size (10^9 x 784 = 784 GB) and
/// return fill values. Virtual datasets are refused.
void check_stored(hid_t dset, const std::string& file, const std::string& path);

std::vector<hsize_t> dataset_shape(hid_t dset);
enum class Type { u8, i32, i64, f32, f64, other };
Type dataset_type(hid_t dset);
const char* type_name(Type t);

template <typename T>
hid_t native_type();

struct Storage {
  hsize_t chunk_rows = 0;  ///< 0 = contiguous; else chunked along the first axis
  int deflate = 0;         ///< 0 = none, 1..9 = gzip level (needs chunk_rows > 0)
};

/// Writes a whole array of shape `dims` (row-major) at `path` (parent groups created).
template <typename T>
void write_array(hid_t loc, const std::string& path, const T* data,
                 const std::vector<hsize_t>& dims, Storage storage = {});

/// Reads a whole array, checking its rank and element class; returns shape in *dims.
template <typename T>
std::vector<T> read_array(hid_t loc, const std::string& path, const std::string& file,
                          std::vector<hsize_t>* dims = nullptr);

void write_attr(hid_t obj, const std::string& name, int64_t value);
void write_attr(hid_t obj, const std::string& name, double value);
void write_attr(hid_t obj, const std::string& name, const std::string& value);
bool has_attr(hid_t obj, const std::string& name);
int64_t read_attr_int(hid_t obj, const std::string& name);
double read_attr_double(hid_t obj, const std::string& name);
std::string read_attr_string(hid_t obj, const std::string& name);

/// Opens the group or dataset at `path` for attribute access.
Id open_object(hid_t loc, const std::string& path);

}  // namespace rbm::h5
