// NumPy .npz archives: a zip of "<name>.npy" members. np.savez stores them,
// np.savez_compressed deflates them, and numpy always writes ZIP64 records.
// Member names become variable names, so they are checked like directory
// names: no '/', '\', '..', absolute path or control character.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "ckpt/format/atomic_output.hpp"
#include "ckpt/format/npy.hpp"
#include "ckpt/format/validate.hpp"
#include "ckpt/format/zip.hpp"

namespace ckpt {

inline constexpr std::string_view kNpzExtension = ".npz";

// One array of an archive: its header and its member's bytes.
struct NpzArray {
  std::string name;
  NpyHeader header;
  std::unique_ptr<ByteSource> member;
};

// Whether `member` is "<variable>.npy" with a safe variable name; returns the name.
Result<std::string> npz_variable_name(std::string_view member);

class NpzReader {
 public:
  // Reads the directory and checks every member name; members that are not
  // .npy files are refused (kUnexpectedEntry).
  static Result<NpzReader> open(const std::filesystem::path& path, NpyReadOptions options = {});

  const std::string& path() const { return file_->name(); }
  // Variable names, in archive order.
  const std::vector<std::string>& names() const { return names_; }
  // Opens a member and reads its .npy header (kUnknownVariable if absent).
  Result<NpzArray> open_array(std::string_view name, std::vector<Error>* warnings = nullptr) const;
  const NpyReadOptions& options() const { return options_; }

 private:
  NpzReader(std::unique_ptr<FileSource> file, ZipReader zip, std::vector<std::string> names, NpyReadOptions options)
      : file_(std::move(file)), zip_(std::move(zip)), names_(std::move(names)), options_(options) {}
  std::unique_ptr<FileSource> file_;  // stable address for zip_
  ZipReader zip_;
  std::vector<std::string> names_;
  NpyReadOptions options_;
};

// Writes an .npz crash-safely (AtomicFile); nothing appears before commit().
class NpzWriter {
 public:
  static Result<NpzWriter> create(const std::filesystem::path& destination, WriteOptions options = {},
                                  ZipMethod method = ZipMethod::kStored);
  // One array from meta.byte_size() C-order little-endian bytes of `data` at `offset`.
  Status add(std::string_view name, const VariableMeta& meta, const ByteSource& data, std::uint64_t offset = 0);
  // One array whose elements (C order, little-endian) `write_data` writes
  // to the sink it is given; it must write exactly meta.byte_size() bytes.
  Status add(std::string_view name, const VariableMeta& meta, const std::function<Status(ByteSink&)>& write_data);
  Status commit();

 private:
  NpzWriter(std::unique_ptr<AtomicFile> file, ZipMethod method)
      : file_(std::move(file)), zip_(std::make_unique<ZipWriter>(*file_)), method_(method) {}
  std::unique_ptr<AtomicFile> file_;
  std::unique_ptr<ZipWriter> zip_;
  ZipMethod method_;
  std::unordered_set<std::string> names_;
};

// Every member checked: names, headers, sizes, and the CRC of all data
// (which reads the whole archive once).
ValidationReport validate_npz(const std::filesystem::path& path, const NpyReadOptions& options = {});

}  // namespace ckpt
