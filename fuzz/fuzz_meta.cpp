// meta text: parsing never crashes, a parsed meta prints and re-parses to
// itself, and the fail-fast and collecting sinks agree on validity.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ckpt/format/meta.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto meta = ckpt::parse_meta(text);
  ckpt::CollectAll problems;
  auto collected = ckpt::parse_meta(text, problems);
  if (meta.ok() == problems.has_errors() || meta.ok() != collected.has_value()) std::abort();  // the sinks disagree
  if (meta.ok()) {
    auto again = ckpt::parse_meta(ckpt::meta_to_text(*meta));
    if (!again.ok() || !(*again == *meta)) std::abort();
    if (again->byte_size() != meta->byte_size()) std::abort();
  }
  return 0;
}
