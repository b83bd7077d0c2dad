// A tensor's bytes held for a caller: a read-only memory mapping of the file
// when the source is plain bytes in a file (OneFlow `out`, safetensors, npy,
// stored npz members, contiguous torch tensors), otherwise a private copy.
// What ckpt_map hands out.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include <fmt/format.h>

#include "ckpt/format/byte_io.hpp"
#include "ckpt/format/error.hpp"

namespace ckpt::capi {

class TensorBytes {
 public:
  TensorBytes(const TensorBytes&) = delete;
  TensorBytes& operator=(const TensorBytes&) = delete;
  ~TensorBytes() {
    if (mapping_ != nullptr) ::munmap(mapping_, mapping_length_);
  }

  // The mapping stays valid after the source (and its file) is closed, and
  // after the file is replaced or removed.
  static Result<std::unique_ptr<TensorBytes>> load(const ByteSource& source) {
    auto bytes = std::unique_ptr<TensorBytes>(new TensorBytes());
    bytes->size_ = source.size();
    if (source.size() > 0 && source.file_descriptor() >= 0) {
      auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
      std::uint64_t start = source.file_offset();
      std::uint64_t aligned = start - start % page;
      std::size_t length = static_cast<std::size_t>(source.size() + (start - aligned));
      void* mapping = ::mmap(nullptr, length, PROT_READ, MAP_PRIVATE, source.file_descriptor(),
                             static_cast<off_t>(aligned));
      if (mapping == MAP_FAILED) {
        return Error(ErrorCode::kIo, fmt::format("mmap failed: {}", std::strerror(errno))).in_file(source.name());
      }
      bytes->mapping_ = mapping;
      bytes->mapping_length_ = length;
      bytes->data_ = static_cast<const std::byte*>(mapping) + (start - aligned);
    } else {
      bytes->copy_.resize(static_cast<std::size_t>(source.size()));
      CKPT_TRY(source.read_at(0, bytes->copy_));
      bytes->data_ = bytes->copy_.data();
    }
    return bytes;
  }

  const std::byte* data() const { return data_; }
  std::uint64_t size() const { return size_; }
  bool mapped() const { return mapping_ != nullptr; }

 private:
  TensorBytes() = default;
  void* mapping_ = nullptr;  // page-aligned start of the mapping, when mapped
  std::size_t mapping_length_ = 0;
  const std::byte* data_ = nullptr;
  std::uint64_t size_ = 0;
  std::vector<std::byte> copy_;  // the bytes, when they could not be mapped
};

}  // namespace ckpt::capi
