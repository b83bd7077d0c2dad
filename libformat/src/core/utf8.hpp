// The one UTF-8 checker: safetensors headers and names (strict) and pickle
// strs (CPython's "surrogatepass", which lets surrogate code points through).
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace ckpt::detail {

enum class Surrogates { kRefused, kAllowed };

// Offset of the first byte that breaks UTF-8 (a bad lead or continuation
// byte, an overlong form, a code point over U+10FFFF, a surrogate unless
// allowed), or nullopt when there is none.
std::optional<std::size_t> utf8_error_offset(std::string_view text, Surrogates surrogates = Surrogates::kRefused);

}  // namespace ckpt::detail
