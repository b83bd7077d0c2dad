/* ckpt.h: the stable C API (C99) of the ckpt checkpoint SDK.
 *
 * Open a checkpoint of any supported format (OneFlow snapshot directory,
 * safetensors, and every format libformat registers), list its tensors, read
 * one into your buffer or map it read-only, validate it, write a checkpoint,
 * convert between formats.
 *
 * Conventions (spec/c-api.md):
 *  - Every function that can fail returns ckpt_status: CKPT_OK (0) or the
 *    library's error number (401 for E401 data_size_mismatch, ...; see
 *    spec/errors.md), or CKPT_ERR_NO_MEMORY / CKPT_ERR_INTERNAL. No C++
 *    exception ever leaves the library.
 *  - The message of the last failure is kept per thread (ckpt_last_error)
 *    and per handle (ckpt_reader_error, ckpt_writer_error).
 *  - Handles are opaque. What ckpt_open/ckpt_create/ckpt_map/ckpt_validate
 *    return is owned by the caller and freed with the matching
 *    ckpt_close/ckpt_writer_free/ckpt_view_free/ckpt_report_free (each
 *    accepts NULL). Strings and arrays returned by accessors belong to the
 *    handle they came from and stay valid until it is freed.
 *  - A handle is used by one thread at a time; different handles are
 *    independent. Views are immutable and may be shared.
 */
#ifndef CKPT_H
#define CKPT_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define CKPT_API __attribute__((visibility("default")))
#else
#define CKPT_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define CKPT_API_VERSION 4 /* 2: ckpt_validate_format, reader views (ckpt_reader_cast/filter/rename);
                              3: ckpt_open_with (pickle policy), the object's non-tensor values;
                              4: ckpt_convert_with (source policy, skip_unsupported, strict) */

typedef int ckpt_status;
#define CKPT_OK 0
/* Codes of the C boundary itself, below the library's 1xx family. */
#define CKPT_ERR_NO_MEMORY 1 /* an allocation failed */
#define CKPT_ERR_INTERNAL 2  /* an unexpected failure inside the library */

/* Data types: OneFlow's DataType numbers (spec/dtypes.md). */
#define CKPT_DTYPE_FLOAT 2
#define CKPT_DTYPE_DOUBLE 3
#define CKPT_DTYPE_INT8 4
#define CKPT_DTYPE_INT32 5
#define CKPT_DTYPE_INT64 6
#define CKPT_DTYPE_UINT8 7
#define CKPT_DTYPE_FLOAT16 9
#define CKPT_DTYPE_BFLOAT16 11
#define CKPT_DTYPE_BOOL 12
#define CKPT_DTYPE_UINT16 13
#define CKPT_DTYPE_UINT32 14
#define CKPT_DTYPE_UINT64 15
#define CKPT_DTYPE_INT16 17
#define CKPT_DTYPE_COMPLEX64 20
#define CKPT_DTYPE_COMPLEX128 21

/* Flags of ckpt_create and ckpt_convert. */
#define CKPT_OVERWRITE 1u /* replace an existing file or checkpoint (atomically); never another directory */

typedef struct ckpt_reader ckpt_reader;
typedef struct ckpt_writer ckpt_writer;
typedef struct ckpt_view ckpt_view;
typedef struct ckpt_report ckpt_report;

typedef struct ckpt_tensor_info {
  const char* name;
  int32_t dtype;          /* CKPT_DTYPE_* */
  size_t ndim;            /* 0 for a scalar */
  const int64_t* shape;   /* ndim dims */
  uint64_t nbytes;        /* bytes of the C-order little-endian data */
} ckpt_tensor_info;

typedef struct ckpt_issue {
  int code;               /* 302 for E302 */
  const char* code_name;  /* "meta_syntax" */
  int is_error;           /* 0: a warning */
  const char* variable;   /* "" for checkpoint-level issues */
  const char* message;    /* names the file, expected and actual */
} ckpt_issue;

/* ---- errors ---- */

/* The message of the calling thread's last failure ("" if none yet). */
CKPT_API const char* ckpt_last_error(void);
/* The code of the calling thread's last failure (CKPT_OK if none yet). */
CKPT_API ckpt_status ckpt_last_error_code(void);
/* "data_size_mismatch" for 401; "unknown" for a number that is no code. */
CKPT_API const char* ckpt_error_name(ckpt_status code);

/* ---- data types ---- */

/* "kFloat" for CKPT_DTYPE_FLOAT; NULL for an unknown number. */
CKPT_API const char* ckpt_dtype_name(int32_t dtype);
/* Bytes per element; 0 for an unknown or variable-size type. */
CKPT_API size_t ckpt_dtype_size(int32_t dtype);

/* ---- reading ---- */

/* Opens `path`; `format` names the format ("oneflow", "safetensors", ...) or
 * is NULL to detect it from the content. */
CKPT_API ckpt_status ckpt_open(const char* path, const char* format, ckpt_reader** reader);

/* Options of ckpt_open_with, since CKPT_API_VERSION 3. Zero-initialise it
 * ({0}), then set what you need. */
typedef struct ckpt_open_options {
  const char* format; /* as ckpt_open's; NULL detects the format */
  /* The pickle formats' policy (spec/pickle.md, "Pickle policy"): globals
   * ("module.name", e.g. "argparse.Namespace") whose objects are kept as
   * inert stubs, never imported or called; numpy's
   * "numpy.core.multiarray._reconstruct" and "...scalar" read numpy arrays
   * and scalars. Unknown globals are refused (E704) unless listed here or
   * stub_unknown is nonzero. */
  const char* const* allowed_globals;
  size_t allowed_global_count;
  int stub_unknown;
} ckpt_open_options;
/* ckpt_open with options; `options` NULL is ckpt_open(path, NULL, reader). */
CKPT_API ckpt_status ckpt_open_with(const char* path, const ckpt_open_options* options, ckpt_reader** reader);
CKPT_API void ckpt_close(ckpt_reader* reader);
/* The last failure of a call on this reader ("" if none). */
CKPT_API const char* ckpt_reader_error(const ckpt_reader* reader);
CKPT_API const char* ckpt_reader_format(const ckpt_reader* reader);
/* Tensors are indexed 0..count-1 in name order. */
CKPT_API size_t ckpt_tensor_count(const ckpt_reader* reader);
CKPT_API ckpt_status ckpt_tensor_at(const ckpt_reader* reader, size_t index, ckpt_tensor_info* info);
CKPT_API ckpt_status ckpt_tensor_find(const ckpt_reader* reader, const char* name, ckpt_tensor_info* info);
/* Copies the tensor into `buffer`, which must be exactly its nbytes long. */
CKPT_API ckpt_status ckpt_read(ckpt_reader* reader, const char* name, void* buffer, uint64_t buffer_size);

/* Views (spec/casting.md) on an open reader, since CKPT_API_VERSION 2: each
 * changes what the reader presents, without copying anything, and views
 * stack (filter, then rename, then cast, in the order called). On failure
 * the reader is left as it was. Tensor infos and names taken before the
 * call are invalid after a successful one. */
/* Floating tensors (float16, bfloat16, float, double) read as `dtype`, one
 * of those four; integer, bool and complex tensors are unchanged. */
CKPT_API ckpt_status ckpt_reader_cast(ckpt_reader* reader, int32_t dtype);
/* Keeps a tensor when its name matches any of `include` (or include_count
 * is 0) and none of `exclude`; patterns are fnmatch-style (`*`, `?`, `[a-z]`).
 * An include pattern that matches nothing is an error (E104). */
CKPT_API ckpt_status ckpt_reader_filter(ckpt_reader* reader, const char* const* include, size_t include_count,
                                        const char* const* exclude, size_t exclude_count);
/* Renames by prefix: each rule is "OLD=NEW"; a name takes the first rule
 * whose OLD it starts with. Two tensors ending with one name fail (E213). */
CKPT_API ckpt_status ckpt_reader_rename(ckpt_reader* reader, const char* const* rules, size_t rule_count);

/* The non-tensor values of a pickle format's object (an epoch, a config,
 * a stub of an allowed class), since CKPT_API_VERSION 3: its leaves as
 * ckpt-inspect lists them (spec/pickle.md, "Non-tensor data"), in tree
 * order; none for the flat formats. */
#define CKPT_VALUE_NONE 0
#define CKPT_VALUE_BOOL 1  /* int_value 0 or 1 */
#define CKPT_VALUE_INT 2   /* int_value */
#define CKPT_VALUE_FLOAT 3 /* float_value */
#define CKPT_VALUE_STR 4   /* text: UTF-8, text_size bytes, NUL-terminated */
#define CKPT_VALUE_BYTES 5 /* text: text_size bytes (may hold NULs) */
#define CKPT_VALUE_OTHER 6 /* a container, stub or numpy array: see repr */

typedef struct ckpt_object_leaf {
  const char* path;  /* keys and indices joined with "." as tensors are named; "" for the root */
  const char* type;  /* "int", "str", "dict", "argparse.Namespace", "numpy.float64", ... */
  int32_t kind;      /* CKPT_VALUE_*; a numpy scalar has the kind of its value */
  int64_t int_value;
  double float_value;
  const char* text;
  size_t text_size;
  const char* repr;  /* Python's repr(); NULL when longer than 64 KiB */
} ckpt_object_leaf;

CKPT_API size_t ckpt_object_leaf_count(const ckpt_reader* reader);
CKPT_API ckpt_status ckpt_object_leaf_at(const ckpt_reader* reader, size_t index, ckpt_object_leaf* leaf);

/* A read-only view of a tensor's bytes: a memory mapping of the file when
 * the format stores the tensor as plain bytes in a file (OneFlow `out`,
 * safetensors, npy, stored npz members, contiguous torch records), otherwise
 * a private copy. The view stays valid after the
 * reader is closed, until ckpt_view_free. */
CKPT_API ckpt_status ckpt_map(ckpt_reader* reader, const char* name, ckpt_view** view);
CKPT_API const void* ckpt_view_data(const ckpt_view* view);
CKPT_API uint64_t ckpt_view_size(const ckpt_view* view);
/* 1 when the data is mapped from the file (no copy was made). */
CKPT_API int ckpt_view_is_mapped(const ckpt_view* view);
CKPT_API void ckpt_view_free(ckpt_view* view);

/* ---- validation ---- */

/* Checks `path` against every rule of its format and collects all problems,
 * as ckpt-validate does: the format's validator, then leftovers of an
 * interrupted write beside `path`. `format` names the format ("oneflow",
 * "torch", ...) or is NULL to detect it from the content. A broken
 * checkpoint still gives CKPT_OK and a report; the status is an error only
 * when no report could be made (out of memory, bad arguments). */
CKPT_API ckpt_status ckpt_validate_format(const char* path, const char* format, ckpt_report** report);
/* ckpt_validate_format(path, NULL, report). */
CKPT_API ckpt_status ckpt_validate(const char* path, ckpt_report** report);
CKPT_API int ckpt_report_valid(const ckpt_report* report); /* 1: no issue of severity error */
/* The registry's name of the format checked: "oneflow", "safetensors", ...;
 * "" when nothing was recognised. */
CKPT_API const char* ckpt_report_format(const ckpt_report* report);
CKPT_API size_t ckpt_report_issue_count(const ckpt_report* report);
CKPT_API ckpt_status ckpt_report_issue(const ckpt_report* report, size_t index, ckpt_issue* issue);
CKPT_API void ckpt_report_free(ckpt_report* report);

/* ---- writing ---- */

/* Starts a checkpoint at `path` in `format` (NULL: "oneflow", a snapshot
 * directory). Nothing appears at `path` before ckpt_writer_commit; an
 * existing `path` is refused (E103) unless `flags` has CKPT_OVERWRITE. */
CKPT_API ckpt_status ckpt_create(const char* path, const char* format, unsigned flags, ckpt_writer** writer);
/* Adds a tensor from `data` (C order, little-endian), `size` bytes exactly.
 * The data is written (or staged) before the call returns. */
CKPT_API ckpt_status ckpt_writer_add(ckpt_writer* writer, const char* name, int32_t dtype, const int64_t* shape,
                                     size_t ndim, const void* data, uint64_t size);
/* Publishes everything added, crash-safe: the destination is the old
 * content or the complete new one, never a mix. */
CKPT_API ckpt_status ckpt_writer_commit(ckpt_writer* writer);
CKPT_API const char* ckpt_writer_error(const ckpt_writer* writer);
/* Frees the writer; an uncommitted one leaves nothing behind. */
CKPT_API void ckpt_writer_free(ckpt_writer* writer);

/* ---- conversion ---- */

/* Copies every tensor of `source` (any format, detected) into a new
 * checkpoint at `destination` in `format` (NULL: "oneflow"), streaming. */
CKPT_API ckpt_status ckpt_convert(const char* source, const char* destination, const char* format, unsigned flags);

/* Options of ckpt_convert_with, since CKPT_API_VERSION 4. Zero-initialise
 * it ({0}), then set what you need. */
typedef struct ckpt_convert_options {
  const char* format; /* the destination's format; NULL: "oneflow" */
  unsigned flags;     /* CKPT_OVERWRITE */
  /* How the source is opened, as ckpt_open_with opens it: its format and
   * the pickle policy. NULL: the format detected, the default policy. */
  const ckpt_open_options* source_options;
  /* Nonzero: tensors of types ckpt cannot represent (an npz member of
   * '|S3' or '<f16') are left out; zero: such a source is refused (E540). */
  int skip_unsupported;
  /* Nonzero: refuse (E150) rather than drop a pickle source's non-tensor
   * data (an epoch, a config) that a flat destination has no place for. */
  int strict;
} ckpt_convert_options;
/* ckpt_convert with options; `options` NULL is ckpt_convert(source, destination, NULL, 0). */
CKPT_API ckpt_status ckpt_convert_with(const char* source, const char* destination, const ckpt_convert_options* options);

#ifdef __cplusplus
}
#endif

#endif /* CKPT_H */
