// meta text: parsing never crashes, a parsed meta prints and re-parses to
// itself, and check() agrees with parse() on validity.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ckpt/format/meta.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto meta = ckpt::VariableMeta::parse(text);
  auto problems = ckpt::VariableMeta::check(text);
  bool has_error = false;
  for (const auto& problem : problems) has_error |= problem.code() != ckpt::ErrorCode::kMetaUnknownField;
  if (meta.ok() == has_error) std::abort();  // parse() and check() disagree
  if (meta.ok()) {
    auto again = ckpt::VariableMeta::parse(meta->to_text());
    if (!again.ok() || !(*again == *meta)) std::abort();
    if (again->byte_size() != meta->byte_size()) std::abort();
  }
  return 0;
}
