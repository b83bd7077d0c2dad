// Writing an E1 snapshot (what flow.save(state_dict, dir) writes in OneFlow
// 0.4/0.5 and every later version loads), crash-safe:
//
//   1. a staging sibling directory ".<name>.ckpt-tmp-<pid>-<n>" is created;
//   2. per variable: <var>/out, then <var>/meta, each fsynced, then <var>/ fsynced;
//   3. snapshot_done (empty) is written and fsynced last, then the staging root;
//   4. the staging directory is renamed onto the destination (exchanged
//      atomically when replacing), and the parent directory fsynced.
#pragma once

#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>

#include "ckpt/format/atomic_output.hpp"
#include "ckpt/format/byte_io.hpp"
#include "ckpt/format/error.hpp"
#include "ckpt/format/names.hpp"
#include "ckpt/format/tensor.hpp"

namespace ckpt {

// Whether `name` can be a variable directory that OneFlow reads back under
// the same name: a safe directory entry (check_entry_name) that is not a
// reserved file name of the layout.
Status check_variable_name(std::string_view name);

class SnapshotWriter {
 public:
  static Result<SnapshotWriter> create(const std::filesystem::path& destination, WriteOptions options = {});

  // Adds one variable; `data` must hold exactly meta.byte_size() bytes.
  Status add(std::string_view name, const VariableMeta& meta, const ByteSource& data);
  Status add(std::string_view name, const VariableMeta& meta, std::span<const std::byte> data);
  // Adds one variable whose `out` bytes `write_data` writes to the sink it is
  // given (copied from an offset of another file, converted on the way);
  // it must write exactly meta.byte_size() bytes.
  Status add(std::string_view name, const VariableMeta& meta, const std::function<Status(ByteSink&)>& write_data);

  // Writes snapshot_done and moves the snapshot into place. Without a
  // commit, nothing appears at the destination; after a failed add, commit
  // refuses (kInvalidArgument) rather than publish a partial variable.
  Status commit();
  // For OneFlow's pickle directory (P1): writes `pickled_data` instead of
  // snapshot_done, last, and moves the directory into place.
  Status commit_pickle_dir(std::span<const std::byte> pickled_data);

  const std::filesystem::path& destination() const { return directory_.destination(); }

 private:
  explicit SnapshotWriter(AtomicDirectory directory) : directory_(std::move(directory)) {}
  Status write_file(const std::filesystem::path& relative, const ByteSource& data);
  Status refuse_after_failure() const;

  AtomicDirectory directory_;
  std::unordered_set<std::string> names_;
  bool failed_ = false;
};

}  // namespace ckpt
