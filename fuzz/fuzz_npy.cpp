// .npy files: the header parser never evaluates or crashes, the data of an
// accepted file converts to exactly its meta's size, and the header we
// would write for the same array parses back to the same meta.
#include <cstdlib>
#include <span>

#include "ckpt/format/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ckpt::MemorySource source({reinterpret_cast<const std::byte*>(data), size});
  ckpt::NpyReadOptions options;
  options.void2_as_bfloat16 = size % 2 == 0;
  options.max_reorder_bytes = 1u << 20;
  auto header = ckpt::read_npy_header(source, options);
  if (!header.ok()) return 0;
  ckpt::MemorySink sink;
  if (ckpt::copy_npy_data(source, *header, sink, options).ok() && sink.bytes().size() != header->meta.byte_size()) {
    std::abort();
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
