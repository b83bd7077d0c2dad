// Multi-rank save and load on MPI (spec/collective.md): every rank writes its
// own pieces of the tensors in parallel into one staging directory; one rank
// publishes the set when all succeeded. Any number of ranks later reads any
// box of any tensor, each only the bytes it needs. Built as
// libckpt-collective when Meson finds MPI.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <mpi.h>

#include "ckpt/format/atomic_output.hpp"
#include "ckpt/format/error.hpp"
#include "ckpt/format/safetensors_sharded.hpp"
#include "ckpt/format/tensor.hpp"
#include "ckpt/format/tensor_chunks.hpp"

namespace ckpt {

class CollectiveWriter {
 public:
  // Collective over `comm`: rank 0 creates the staging directory beside
  // `destination` (options as for any writer; fault_hook applies on every
  // rank); every rank returns its error, or E192 on the others.
  static Result<CollectiveWriter> create(const std::filesystem::path& destination, MPI_Comm comm,
                                         WriteOptions options = {});
  CollectiveWriter(CollectiveWriter&&) noexcept;
  CollectiveWriter& operator=(CollectiveWriter&&) = delete;
  ~CollectiveWriter();

  // Local: the piece `box` of tensor `name` (dtype, global shape), its bytes
  // C order over the box. The bytes are not copied: keep them alive and
  // unchanged until commit() returns. A piece covering the whole tensor is
  // the tensor, owned whole. A failed add makes commit() fail on every rank.
  Status add(std::string_view name, DType dtype, const Shape& global_shape, const TensorBox& box,
             std::span<const std::byte> bytes);

  // Collective: checks that the pieces of all ranks tile their tensors
  // (E193), writes each rank's file, agrees that every rank succeeded, and
  // publishes the set (index last, one rename on rank 0). On any failure on
  // any rank nothing appears at the destination and the staging directory is
  // removed; the failing rank returns its error, the others E192.
  Status commit();

  const std::filesystem::path& destination() const;

 private:
  struct State;
  explicit CollectiveWriter(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

class CollectiveReader {
 public:
  // Collective over `comm`: every rank opens the set (sharded safetensors,
  // chunked or not) and the ranks agree it opened everywhere.
  static Result<CollectiveReader> open(const std::filesystem::path& path, MPI_Comm comm);

  // Sorted by name: the whole tensors, however they were split.
  const std::vector<TensorInfo>& tensors() const { return infos_; }
  const TensorInfo* find(std::string_view name) const;

  // Local: the elements of `box` of tensor `name` into `out` (C order over
  // the box, exactly its bytes), read from the stored pieces that overlap it
  // with one pread per contiguous run.
  Status read(std::string_view name, const TensorBox& box, std::span<std::byte> out) const;

 private:
  CollectiveReader(std::filesystem::path path, std::vector<ChunkedTensor> tensors);
  std::filesystem::path path_;
  std::vector<ChunkedTensor> tensors_;
  std::vector<TensorInfo> infos_;
};

}  // namespace ckpt
