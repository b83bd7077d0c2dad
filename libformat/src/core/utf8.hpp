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

// What writers check before storing a name as text (JSON, pickle str, zip names).
inline bool is_strict_utf8(std::string_view text) { return !utf8_error_offset(text).has_value(); }

}  // namespace ckpt::detail
