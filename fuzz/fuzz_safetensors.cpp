// safetensors: the fail-fast reader and the collecting sink agree.
#include <cstdlib>

#include "ckpt/format/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ckpt::MemorySource source({reinterpret_cast<const std::byte*>(data), size});
  auto header = ckpt::read_safetensors_header(source);
  ckpt::CollectAll problems;
  auto collected = ckpt::read_safetensors_header(source, problems);
  if (header.ok() == problems.has_errors() || header.ok() != collected.has_value()) std::abort();
  return 0;
}
