// Zip archives (npz, torch): the central directory reader and the member
// streams (stored and deflated) never read outside the archive, never
// inflate past a member's declared size, and fail cleanly on bad CRCs.
#include <algorithm>
#include <cstdlib>
#include <vector>

#include "ckpt/format/zip.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ckpt::MemorySource source({reinterpret_cast<const std::byte*>(data), size});
  auto zip = ckpt::ZipReader::open(source);
  if (!zip.ok()) return 0;
  std::size_t members = 0;
  for (const auto& entry : zip->entries()) {
    if (++members > 16) break;
    auto member = zip->open_member(entry);
    if (!member.ok()) continue;
    if ((*member)->size() != entry.size) std::abort();
    std::vector<std::byte> buffer(4096);
    std::uint64_t limit = std::min<std::uint64_t>((*member)->size(), 1u << 20);
    for (std::uint64_t offset = 0; offset < limit; offset += buffer.size()) {
      std::size_t piece = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), limit - offset));
      if (!(*member)->read_at(offset, std::span(buffer.data(), piece)).ok()) break;
    }
  }
  return 0;
}
