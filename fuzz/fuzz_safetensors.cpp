// safetensors: the fail-fast reader and the collecting checker agree, and
// an accepted header describes tensors that lie inside the file.
#include <cstdlib>

#include "ckpt/format/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ckpt::MemorySource source({reinterpret_cast<const std::byte*>(data), size});
  auto header = ckpt::read_safetensors_header(source);
  auto problems = ckpt::check_safetensors(source);
  if (header.ok() != problems.empty()) std::abort();
  return 0;
}
