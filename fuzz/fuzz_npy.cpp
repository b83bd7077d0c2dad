// .npy files: the header parser never evaluates or crashes, the data of an
// accepted file converts to exactly its meta's size, and the header we
// would write for the same array parses back to the same meta.
#include <cstdlib>
#include <memory>
#include <span>

#include "ckpt/format/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto source = std::make_shared<const ckpt::MemorySource>(std::span(reinterpret_cast<const std::byte*>(data), size));
  ckpt::NpyReadOptions options;
  options.void2_as_bfloat16 = size % 2 == 0;
  options.max_reorder_bytes = 1u << 20;
  auto header = ckpt::read_npy_header(*source, options);
  if (!header.ok()) return 0;
  auto elements = ckpt::open_npy_data(source, *header, options);
  if (elements.ok()) {
    ckpt::MemorySink sink;
    if ((*elements)->size() != header->meta.byte_size()) std::abort();
    if (sink.write_from(**elements, 0, (*elements)->size()).ok() && sink.bytes().size() != header->meta.byte_size()) {
      std::abort();
    }
  }
  auto written = ckpt::make_npy_header(header->meta);
  if (written.ok()) {
    std::string file = *written + std::string(header->meta.byte_size(), '\0');
    ckpt::MemorySource again(ckpt::as_bytes(file));
    auto reparsed = ckpt::read_npy_header(again, options);
    if (!reparsed.ok() || !(reparsed->meta == header->meta) || reparsed->data_offset % ckpt::kNpyAlignment != 0) {
      std::abort();
    }
  }
  return 0;
}
