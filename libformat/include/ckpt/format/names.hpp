// Names that become one entry of a checkpoint directory (a variable's
// directory, an array's file) must stay that entry: checked before a writer
// creates one and when a reader joins a name found in a file to a path.
#pragma once

#include <string_view>

#include "ckpt/format/error.hpp"

namespace ckpt {

// Whether `name` can be one directory entry read back under the same name:
// not empty, not "." or "..", no '/', no NUL or control character, not a
// staging leftover's name, at most 255 bytes. kUnsafeName otherwise.
Status check_entry_name(std::string_view name);

}  // namespace ckpt
