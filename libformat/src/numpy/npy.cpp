#include "ckpt/format/npy.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include "core/little_endian.hpp"

namespace ckpt {
namespace {

// The largest scalar byte-swapped: a float64, or each half of a complex128.
constexpr std::size_t kMaxSwapUnit = 8;

// A recursive-descent reader of the one dict literal numpy writes. It knows
// strings, True/False, tuples of non-negative ints, and nothing else.
class DictParser {
 public:
  DictParser(std::string_view text, bool allow_long_suffix) : text_(text), allow_long_suffix_(allow_long_suffix) {}

  Result<NpyDict> parse(const NpyReadOptions& options) {
    NpyDict dict{};
    bool has_descr = false, has_fortran = false, has_shape = false;
    skip_space();
    if (!consume('{')) return syntax("expected '{'");
    while (true) {
      skip_space();
      if (consume('}')) break;
      CKPT_ASSIGN_OR_RETURN(std::string_view key, string_literal());
      skip_space();
      if (!consume(':')) return syntax(fmt::format("expected ':' after key '{}'", key));
      skip_space();
      if (key == "descr") {
        if (has_descr) return duplicate(key);
        has_descr = true;
        if (peek() == '[') {
          return Error(ErrorCode::kNpyUnsupportedDtype,
                       "structured dtypes (a list descr) are not supported: only plain numeric arrays");
        }
        CKPT_ASSIGN_OR_RETURN(std::string_view descr, string_literal());
        CKPT_TRY(set_dtype(descr, options, dict));
      } else if (key == "fortran_order") {
        if (has_fortran) return duplicate(key);
        has_fortran = true;
        CKPT_ASSIGN_OR_RETURN(dict.fortran_order, bool_literal());
      } else if (key == "shape") {
        if (has_shape) return duplicate(key);
        has_shape = true;
        CKPT_ASSIGN_OR_RETURN(dict.shape, tuple_literal());
      } else {
        return syntax(fmt::format("unknown key '{}' (expected descr, fortran_order, shape)", key));
      }
      skip_space();
      if (consume(',')) continue;
      skip_space();
      if (!consume('}')) return syntax("expected ',' or '}' after a value");
      break;
    }
    skip_space();
    if (pos_ != text_.size()) return syntax("unexpected text after the dict");
    if (!has_descr) return missing("descr");
    if (!has_fortran) return missing("fortran_order");
    if (!has_shape) return missing("shape");
    return dict;
  }

 private:
  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  bool consume(char c) {
    if (pos_ >= text_.size() || text_[pos_] != c) return false;
    ++pos_;
    return true;
  }
  void skip_space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }
  Error syntax(std::string_view what) const {
    return Error(ErrorCode::kNpyHeader, fmt::format("header dict: {} at character {}", what, pos_));
  }
  Error duplicate(std::string_view key) const { return syntax(fmt::format("key '{}' given twice", key)); }
  Error missing(std::string_view key) const {
    return Error(ErrorCode::kNpyHeader, fmt::format("header dict: key '{}' is missing", key));
  }

  // '...' or "..." without escapes: numpy's descr and keys never need one.
  Result<std::string_view> string_literal() {
    char quote = peek();
    if (quote != '\'' && quote != '"') return syntax("expected a quoted string");
    std::size_t start = ++pos_;
    while (pos_ < text_.size() && text_[pos_] != quote) {
      if (text_[pos_] == '\\' || text_[pos_] == '\n') return syntax("escape or line break inside a string");
      ++pos_;
    }
    if (pos_ >= text_.size()) return syntax("unterminated string");
    return text_.substr(start, pos_++ - start);
  }

  Result<bool> bool_literal() {
    for (auto [word, value] : {std::pair{std::string_view("True"), true}, std::pair{std::string_view("False"), false}}) {
      if (text_.substr(pos_, word.size()) == word) {
        pos_ += word.size();
        return value;
      }
    }
    return syntax("fortran_order must be True or False");
  }

  Result<std::int64_t> integer() {
    if (peek() == '-') return syntax("negative dimension");
    std::size_t start = pos_;
    std::int64_t value = 0;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      int digit = text_[pos_] - '0';
      if (value > (std::numeric_limits<std::int64_t>::max() - digit) / 10) return syntax("dimension above 2^63-1");
      value = value * 10 + digit;
      ++pos_;
    }
    if (pos_ == start) return syntax("expected a dimension");
    if (pos_ - start > 1 && text_[start] == '0') return syntax("dimension with a leading zero");
    if (allow_long_suffix_ && (peek() == 'L' || peek() == 'l')) ++pos_;  // Python 2 long, v1/v2 only
    return value;
  }

  // "()", "(3,)", "(2, 3)", "(2, 3,)"; "(3)" is an int in Python, not a tuple.
  Result<Shape> tuple_literal() {
    if (!consume('(')) return syntax("shape must be a tuple");
    Shape shape;
    skip_space();
    if (consume(')')) return shape;
    while (true) {
      skip_space();
      CKPT_ASSIGN_OR_RETURN(std::int64_t dim, integer());
      shape.push_back(dim);
      skip_space();
      if (consume(',')) {
        skip_space();
        if (consume(')')) return shape;
        continue;
      }
      if (!consume(')')) return syntax("expected ',' or ')' in shape");
      if (shape.size() == 1) return syntax("'(n)' is not a tuple: a 1-d shape is written '(n,)'");
      return shape;
    }
  }

  static Status set_dtype(std::string_view descr, const NpyReadOptions& options, NpyDict& dict) {
    if (descr == "bfloat16") {
      dict.dtype = DType::kBFloat16;
      return {};
    }
    char order = '=';
    std::string_view body = descr;
    if (!body.empty() && (body[0] == '<' || body[0] == '>' || body[0] == '|' || body[0] == '=')) {
      order = body[0];
      body.remove_prefix(1);
    }
    if (!body.empty() && body[0] == 'O') {
      return Error(ErrorCode::kNpyUnsupportedDtype,
                   fmt::format("descr '{}' is an object array, which needs unpickling: refused", descr));
    }
    std::optional<DType> dtype;
    if (body == "V2" && options.void2_as_bfloat16) {
      dtype = DType::kBFloat16;
    } else if (body == "V2") {
      return Error(ErrorCode::kNpyUnsupportedDtype,
                   fmt::format("descr '{}' is raw 2-byte data; numpy writes ml_dtypes.bfloat16 this way: "
                               "read it as bfloat16 with the void2_as_bfloat16 option",
                               descr));
    } else {
      dtype = dtype_from_numpy(body);
    }
    if (!dtype) {
      return Error(ErrorCode::kNpyUnsupportedDtype,
                   fmt::format("descr '{}' has no OneFlow data type (supported: b1 i1 u1 i2 u2 i4 u4 i8 u8 "
                               "f2 f4 f8 c8 c16, and bfloat16)",
                               descr));
    }
    dict.dtype = *dtype;
    // '|' and '=' mean native order, little-endian on every supported host.
    dict.big_endian = order == '>' && dtype_size(*dtype) > 1;
    return {};
  }

  std::string_view text_;
  bool allow_long_suffix_;
  std::size_t pos_ = 0;
};

template <class T, T (*swap)(T)>
void swap_each(std::span<std::byte> bytes) {
  for (std::size_t i = 0; i + sizeof(T) <= bytes.size(); i += sizeof(T)) {
    T value;
    std::memcpy(&value, bytes.data() + i, sizeof(T));
    value = swap(value);
    std::memcpy(bytes.data() + i, &value, sizeof(T));
  }
}

std::uint16_t swap16(std::uint16_t v) { return __builtin_bswap16(v); }
std::uint32_t swap32(std::uint32_t v) { return __builtin_bswap32(v); }
std::uint64_t swap64(std::uint64_t v) { return __builtin_bswap64(v); }

// Reverses each `unit`-byte scalar (complex types swap each half).
void swap_bytes(std::span<std::byte> bytes, std::size_t unit) {
  switch (unit) {
    case 2: swap_each<std::uint16_t, swap16>(bytes); break;
    case 4: swap_each<std::uint32_t, swap32>(bytes); break;
    case 8: swap_each<std::uint64_t, swap64>(bytes); break;
    default:
      for (std::size_t i = 0; i + unit <= bytes.size(); i += unit) std::reverse(bytes.data() + i, bytes.data() + i + unit);
  }
}

std::string shape_literal(const Shape& shape) {
  if (shape.size() == 1) return fmt::format("({},)", shape[0]);
  return fmt::format("({})", fmt::join(shape, ", "));
}
}  // namespace

bool NpyHeader::is_plain() const { return !big_endian && (!fortran_order || meta.shape().size() < 2); }

Result<NpyDict> parse_npy_dict(std::string_view text, const NpyReadOptions& options) {
  return DictParser(text, /*allow_long_suffix=*/true).parse(options);
}

namespace {

struct HeaderText {
  int major_version;
  std::uint64_t data_offset;
  std::string dict;  // the dict literal
};

// Magic, version and the header's dict text, checked for length.
Result<HeaderText> read_header_text(const ByteSource& source) {
  auto fail = [&](ErrorCode code, std::string message) { return Error(code, std::move(message)).in_file(source.name()); };
  // One read brings the whole header of almost every file (numpy pads it to
  // 64 or 128 bytes): a directory of thousands of arrays costs one read each.
  std::array<std::byte, 512> prefix{};
  const std::uint64_t size = source.size();
  if (size < 8) return fail(ErrorCode::kNpyMagic, fmt::format("{} bytes: too short for an .npy file", size));
  const std::size_t prefix_size = static_cast<std::size_t>(std::min<std::uint64_t>(size, prefix.size()));
  CKPT_TRY(source.read_at(0, std::span(prefix.data(), prefix_size)));
  if (std::memcmp(prefix.data(), kNpyMagicBytes.data(), kNpyMagicBytes.size()) != 0) {
    return fail(ErrorCode::kNpyMagic, "not an .npy file: the magic \\x93NUMPY is missing");
  }
  const int major = static_cast<int>(prefix[6]);
  const int minor = static_cast<int>(prefix[7]);
  if (major < 1 || major > 3 || minor != 0) {
    return fail(ErrorCode::kNpyVersion, fmt::format("format version {}.{}; supported: 1.0, 2.0, 3.0", major, minor));
  }
  const std::size_t length_bytes = major == 1 ? 2 : 4;
  if (size < 8 + length_bytes) return fail(ErrorCode::kNpyTruncated, "the file ends inside the header length");
  const std::uint64_t header_length = detail::load_le(std::span(prefix).subspan(8, length_bytes));
  if (header_length > kNpyMaxHeaderBytes) {
    return fail(ErrorCode::kNpyHeader,
                fmt::format("header of {} bytes is over the cap of {}", header_length, kNpyMaxHeaderBytes));
  }
  const std::uint64_t data_offset = 8 + length_bytes + header_length;
  if (data_offset > size) {
    return fail(ErrorCode::kNpyTruncated,
                fmt::format("the header needs {} bytes but the file has {}", data_offset, size));
  }
  std::string text(static_cast<std::size_t>(header_length), '\0');
  if (data_offset <= prefix_size) {
    std::memcpy(text.data(), prefix.data() + 8 + length_bytes, text.size());
  } else {
    CKPT_TRY(source.read_at(8 + length_bytes, std::as_writable_bytes(std::span(text))));
  }
  return HeaderText{major, data_offset, std::move(text)};
}

// The header's errors stop it at once; the trailing-bytes warning goes to `problems`.
Result<NpyHeader> parse_npy_header(const ByteSource& source, const NpyReadOptions& options, ProblemSink& problems) {
  auto fail = [&](ErrorCode code, std::string message) { return Error(code, std::move(message)).in_file(source.name()); };
  CKPT_ASSIGN_OR_RETURN(HeaderText text, read_header_text(source));
  const std::uint64_t size = source.size();
  const std::uint64_t data_offset = text.data_offset;
  auto dict = DictParser(text.dict, /*allow_long_suffix=*/text.major_version < 3).parse(options);
  if (!dict.ok()) return std::move(dict).error().in_file(source.name());
  auto meta = VariableMeta::make(dict->dtype, dict->shape);
  if (!meta.ok()) return std::move(meta).error().in_file(source.name());
  NpyHeader header{text.major_version, dict->big_endian, dict->fortran_order, data_offset, std::move(meta).value()};
  const std::uint64_t available = size - data_offset;
  if (available < header.meta.byte_size()) {
    return fail(ErrorCode::kNpyTruncated,
                fmt::format("shape {} of {} needs {} data bytes; the file has {} after the header",
                            shape_to_string(header.meta.shape()), dtype_name(header.meta.dtype()),
                            header.meta.byte_size(), available));
  }
  if (available > header.meta.byte_size()) {  // the last check: nothing is left to stop
    problems.warning(fail(ErrorCode::kNpyTrailingBytes, fmt::format("{} bytes after the {} data bytes are ignored",
                                                                   available - header.meta.byte_size(),
                                                                   header.meta.byte_size())));
  }
  return header;
}

}  // namespace

std::string npy_header_descr(const ByteSource& source) {
  auto header = read_header_text(source);
  if (!header.ok()) return {};
  std::string_view text = header->dict;
  std::size_t at = std::string_view::npos;
  for (std::string_view key : {"'descr'", "\"descr\""}) at = std::min(at, text.find(key));
  if (at == std::string_view::npos) return {};
  at = text.find_first_not_of(" \t:", at + 7);
  if (at == std::string_view::npos) return {};
  if (text[at] == '\'' || text[at] == '"') {
    const std::size_t end = text.find(text[at], at + 1);
    return end == std::string_view::npos ? std::string() : std::string(text.substr(at + 1, end - at - 1));
  }
  // A structured dtype's list: up to its matching bracket (brackets inside quoted field names aside).
  int depth = 0;
  char quote = '\0';
  for (std::size_t i = at; i < text.size(); ++i) {
    const char c = text[i];
    if (quote != '\0') {
      if (c == quote) quote = '\0';
    } else if (c == '\'' || c == '"') {
      quote = c;
    } else if (c == '[' || c == '(') {
      ++depth;
    } else if ((c == ']' || c == ')') && --depth == 0) {
      return std::string(text.substr(at, i + 1 - at));
    }
  }
  return {};
}

std::string_view npy_descr(DType dtype) { return dtype == DType::kBFloat16 ? "<V2" : dtype_info(dtype).numpy_descr; }

std::optional<NpyHeader> read_npy_header(const ByteSource& source, const NpyReadOptions& options,
                                         ProblemSink& problems) {
  auto header = parse_npy_header(source, options, problems);
  if (header.ok()) return std::move(header).value();
  problems.error(std::move(header).error());
  return std::nullopt;
}

Result<NpyHeader> read_npy_header(const ByteSource& source, const NpyReadOptions& options) {
  FailFast problems;
  auto header = read_npy_header(source, options, problems);
  CKPT_TRY(problems.status());
  return std::move(*header);
}

Result<std::string> make_npy_header(const VariableMeta& meta) {
  std::string_view descr = npy_descr(meta.dtype());
  if (descr.empty()) {
    return Error(ErrorCode::kNpyUnsupportedDtype, fmt::format("numpy has no dtype for {}", dtype_name(meta.dtype())));
  }
  if (meta.shape().size() > kNumpyMaxDims) {
    return Error(ErrorCode::kOverFormatLimit, fmt::format("rank {} is over numpy's maximum of {} dimensions",
                                                          meta.shape().size(), kNumpyMaxDims));
  }
  // numpy sizes an array by its non-zero dims times the item size, and
  // refuses one whose size does not fit its signed index type, even empty.
  std::int64_t extent = static_cast<std::int64_t>(dtype_info(meta.dtype()).size);
  for (std::int64_t dim : meta.shape()) {
    if (dim != 0 && __builtin_mul_overflow(extent, dim, &extent)) {
      return Error(ErrorCode::kOverFormatLimit,
                   fmt::format("shape {}: its non-zero dims times the item size exceed 2^63 - 1, which numpy refuses",
                               shape_to_string(meta.shape())));
    }
  }
  std::string dict =
      fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}", descr, shape_literal(meta.shape()));
  // Version 1.0: numpy refuses headers over 10,000 bytes, so its 16-bit
  // length field always suffices.
  constexpr std::uint64_t kLengthBytes = 2;
  std::uint64_t unpadded = 8 + kLengthBytes + dict.size() + 1;  // + '\n'
  std::uint64_t padding = (kNpyAlignment - unpadded % kNpyAlignment) % kNpyAlignment;
  std::uint64_t header_length = dict.size() + padding + 1;
  if (header_length > kNumpyMaxHeaderLength) {
    return Error(ErrorCode::kOverFormatLimit, fmt::format("the header would be {} bytes; numpy refuses more than {}",
                                                          header_length, kNumpyMaxHeaderLength));
  }
  std::string out(kNpyMagicBytes);
  out.push_back('\x01');
  out.push_back('\0');
  detail::append_le(out, header_length, kLengthBytes);
  out += dict;
  out.append(static_cast<std::size_t>(padding), ' ');
  out.push_back('\n');
  return out;
}

Status check_npy_data(const VariableMeta& meta, const ByteSource& data) {
  CKPT_TRY(make_npy_header(meta));
  if (data.size() == meta.byte_size()) return {};
  return Error(ErrorCode::kBufferSizeMismatch,
               fmt::format("{} bytes of data, shape {} of {} needs {}", data.size(), shape_to_string(meta.shape()),
                           dtype_name(meta.dtype()), meta.byte_size()))
      .in_file(data.name());
}

Status write_npy(ByteSink& sink, const VariableMeta& meta, const ByteSource& data) {
  CKPT_TRY(check_npy_data(meta, data));
  CKPT_ASSIGN_OR_RETURN(std::string header, make_npy_header(meta));
  CKPT_TRY(sink.write(as_bytes(header)));
  return sink.write_from(data, 0, meta.byte_size());
}

Result<std::unique_ptr<ByteSwappedSource>> ByteSwappedSource::make(std::unique_ptr<ByteSource> inner,
                                                                   std::size_t unit) {
  if (unit == 0 || unit > kMaxSwapUnit || inner->size() % unit != 0) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("cannot swap {} bytes in units of {}", inner->size(), unit))
        .in_file(inner->name());
  }
  return std::unique_ptr<ByteSwappedSource>(new ByteSwappedSource(std::move(inner), unit));
}

Status ByteSwappedSource::read_at(std::uint64_t offset, std::span<std::byte> out) const {
  CKPT_TRY(check_range(*this, offset, out.size()));
  while (!out.empty()) {
    const std::size_t within = static_cast<std::size_t>(offset % unit_);
    if (within == 0 && out.size() >= unit_) {  // whole scalars: swapped in place
      std::span<std::byte> whole = out.first(out.size() - out.size() % unit_);
      CKPT_TRY(inner_->read_at(offset, whole));
      swap_bytes(whole, unit_);
      offset += whole.size();
      out = out.subspan(whole.size());
      continue;
    }
    // A scalar cut by either end of the read: swap all of it, keep the part asked for.
    std::array<std::byte, kMaxSwapUnit> scalar{};
    CKPT_TRY(inner_->read_at(offset - within, std::span(scalar.data(), unit_)));
    swap_bytes(std::span(scalar.data(), unit_), unit_);
    const std::size_t taken = std::min(unit_ - within, out.size());
    std::memcpy(out.data(), scalar.data() + within, taken);
    offset += taken;
    out = out.subspan(taken);
  }
  return {};
}

FortranOrderSource::FortranOrderSource(std::unique_ptr<ByteSource> inner, VariableMeta meta)
    : inner_(std::move(inner)), meta_(std::move(meta)), fortran_strides_(meta_.shape().size(), 1) {
  const Shape& shape = meta_.shape();
  for (std::size_t k = 1; k < shape.size(); ++k) {
    fortran_strides_[k] = fortran_strides_[k - 1] * static_cast<std::uint64_t>(shape[k - 1]);
  }
}

Result<std::unique_ptr<FortranOrderSource>> FortranOrderSource::make(std::unique_ptr<ByteSource> inner,
                                                                     const VariableMeta& meta,
                                                                     std::uint64_t max_bytes) {
  if (inner->size() != meta.byte_size()) {
    return Error(ErrorCode::kBufferSizeMismatch,
                 fmt::format("{} bytes for shape {} of {}, which needs {}", inner->size(),
                             shape_to_string(meta.shape()), dtype_name(meta.dtype()), meta.byte_size()))
        .in_file(inner->name());
  }
  if (meta.byte_size() > max_bytes) {
    return Error(ErrorCode::kNpyTooLargeToReorder,
                 fmt::format("Fortran-order array of {} bytes: reordering it to C order needs it in memory, "
                             "and the cap is {} bytes",
                             meta.byte_size(), max_bytes))
        .in_file(inner->name());
  }
  return std::unique_ptr<FortranOrderSource>(new FortranOrderSource(std::move(inner), meta));
}

Status FortranOrderSource::read_at(std::uint64_t offset, std::span<std::byte> out) const {
  CKPT_TRY(check_range(*this, offset, out.size()));
  if (out.empty()) return {};
  if (!loaded_) {
    fortran_.resize(static_cast<std::size_t>(meta_.byte_size()));
    CKPT_TRY(inner_->read_at(0, fortran_));
    loaded_ = true;
  }
  const Shape& shape = meta_.shape();
  const std::size_t rank = shape.size();
  const std::uint64_t element = dtype_size(meta_.dtype());
  // The C-order index of the first element asked for, and its Fortran offset.
  std::vector<std::int64_t> index(rank, 0);
  std::uint64_t rest = offset / element;
  std::uint64_t from = 0;
  for (std::size_t k = rank; k-- > 0;) {
    index[k] = static_cast<std::int64_t>(rest % static_cast<std::uint64_t>(shape[k]));
    rest /= static_cast<std::uint64_t>(shape[k]);
    from += static_cast<std::uint64_t>(index[k]) * fortran_strides_[k];
  }
  std::size_t within = static_cast<std::size_t>(offset % element);
  for (std::size_t done = 0; done < out.size();) {
    const std::size_t taken = std::min<std::size_t>(element - within, out.size() - done);
    std::memcpy(out.data() + done, fortran_.data() + from * element + within, taken);
    done += taken;
    within = 0;
    // Next element in C order: an odometer, the last axis fastest.
    for (std::size_t k = rank; k-- > 0;) {
      from += fortran_strides_[k];
      if (++index[k] < shape[k]) break;
      from -= fortran_strides_[k] * static_cast<std::uint64_t>(shape[k]);
      index[k] = 0;
    }
  }
  return {};
}

Result<std::unique_ptr<ByteSource>> open_npy_data(std::shared_ptr<const ByteSource> npy, const NpyHeader& header,
                                                  const NpyReadOptions& options) {
  const VariableMeta& meta = header.meta;
  CKPT_ASSIGN_OR_RETURN(SliceSource slice, SliceSource::make(std::move(npy), header.data_offset, meta.byte_size()));
  std::unique_ptr<ByteSource> data = std::make_unique<SliceSource>(std::move(slice));
  if (header.big_endian) {
    CKPT_ASSIGN_OR_RETURN(data, ByteSwappedSource::make(std::move(data), dtype_info(meta.dtype()).swap_unit));
  }
  if (header.fortran_order && meta.shape().size() >= 2) {  // 0-d and 1-d arrays read the same either way
    CKPT_ASSIGN_OR_RETURN(data, FortranOrderSource::make(std::move(data), meta, options.max_reorder_bytes));
  }
  return data;
}

}  // namespace ckpt
