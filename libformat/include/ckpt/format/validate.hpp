// Kept for one release: the validation report moved to validation.hpp
// (generic), validate_snapshot to snapshot.hpp (OneFlow).
#pragma once

#include "ckpt/format/snapshot.hpp"
#include "ckpt/format/validation.hpp"
