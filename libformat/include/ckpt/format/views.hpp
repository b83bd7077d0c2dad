// Views: readers that present another reader's tensors cast to another
// floating type, filtered by name or renamed, without copying anything.
// Each takes ownership of the reader it wraps and is a reader itself, so
// views stack, and every tool and every format gets them:
//
//   auto kept = filter_view(std::move(reader), {"encoder.*"}, {});
//   auto narrow = cast_view(std::move(kept).value(), DType::kBFloat16);
//   auto renamed = rename_view(std::move(narrow).value(), {{"encoder.", "model.encoder."}});
//
// A cast view keeps the source's object() (pickle formats: nesting and
// non-tensor leaves); filter and rename views are flat (object() is null),
// since the object names tensors they may have dropped or renamed;
// hidden_object() gives what they hide, so a conversion can say it is lost.
// Rules: spec/casting.md. Sources opened from a view may read through the
// wrapped reader: the view must outlive them, as for any reader.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ckpt/format/byte_io.hpp"
#include "ckpt/format/checkpoint.hpp"
#include "ckpt/format/dtype.hpp"
#include "ckpt/format/error.hpp"

namespace ckpt {

// kFloat16, kBFloat16, kFloat, kDouble and the FP8 types: the types a cast converts.
bool is_floating(DType dtype);

// Elements of `from` in `source` read as elements of `to`, converted in
// bounded chunks inside read_at (any offset and length), rounded to nearest
// even; NaN, Inf and overflow as spec/casting.md says. Both types must be
// floating (kInvalidArgument) and the source a whole number of elements
// (kDataSizeMismatch).
Result<std::unique_ptr<ByteSource>> cast_source(std::unique_ptr<ByteSource> source, DType from, DType to);

// Floating tensors appear as `target`; integer, bool and complex tensors
// are unchanged. Fails when `target` is not floating, or when a tensor's
// byte size as `target` does not fit in 64 bits.
Result<std::unique_ptr<CheckpointReader>> cast_view(std::unique_ptr<CheckpointReader> reader, DType target);

// fnmatch-style: `*` any run of characters (dots and slashes included), `?`
// one character, `[abc]`, `[a-z]`, `[!abc]` a set, `\` escapes the next one.
bool glob_match(std::string_view pattern, std::string_view name);

// Keeps a tensor when its name matches any of `include` (or `include` is
// empty) and none of `exclude`. An include pattern that matches no tensor
// is an error (kInvalidArgument): it is almost always a typo, and the
// result would silently lack what was asked for.
Result<std::unique_ptr<CheckpointReader>> filter_view(std::unique_ptr<CheckpointReader> reader,
                                                      std::vector<std::string> include,
                                                      std::vector<std::string> exclude);

// A name starting with `from` has that prefix replaced by `to`. An empty
// `from` matches every name (prepends `to`); an empty `to` strips the prefix.
struct RenameRule {
  std::string from;
  std::string to;
};

// "OLD=NEW", split at the first '='.
Result<RenameRule> parse_rename_rule(std::string_view text);

// Each name is renamed by the first rule whose prefix it starts with, or
// kept. Two tensors ending up with one name are kDuplicateName, naming both
// sources; a name renamed to nothing is kInvalidArgument. Stays sorted.
Result<std::unique_ptr<CheckpointReader>> rename_view(std::unique_ptr<CheckpointReader> reader,
                                                      std::vector<RenameRule> rules);

// The source object a filter or rename view leaves out of `reader` (looking
// through stacked views), or null when `reader` has its object() or none of
// its views hides one. Its non-tensor values are dropped by whatever reads
// through `reader`; a conversion names them (spec/pickle.md, "Non-tensor data").
const pickle::Value* hidden_object(const CheckpointReader& reader);

}  // namespace ckpt
