/* ckpt_mpi.h: the C API (C99) of the multi-rank save and load on MPI
 * (spec/collective.md), in libckpt-mpi, built when Meson finds MPI.
 *
 * Every rank of a communicator adds its pieces of the tensors (a box of each:
 * offset and shape in the global tensor; a tensor owned whole by one rank is
 * one piece) and commits collectively: the destination directory appears
 * complete, or not at all, whatever rank fails or is killed. Any number of
 * ranks then opens it collectively and reads any box of any tensor.
 *
 * Conventions as in ckpt.h: ckpt_status codes, messages per handle
 * (ckpt_mpi_writer_error, ckpt_mpi_reader_error) and per thread for the
 * calls that make a handle (ckpt_mpi_last_error); no C++ exception leaves.
 * ckpt_mpi_create, ckpt_mpi_writer_commit and ckpt_mpi_open are collective:
 * every rank of `comm` calls them, in the same order.
 */
#ifndef CKPT_MPI_H
#define CKPT_MPI_H

#include <mpi.h>

#include "ckpt.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ckpt_mpi_writer ckpt_mpi_writer;
typedef struct ckpt_mpi_reader ckpt_mpi_reader;

/* The message of the last failed ckpt_mpi_create or ckpt_mpi_open on this thread. */
CKPT_API const char* ckpt_mpi_last_error(void);

/* Collective: starts a save into the directory `path` (flags: CKPT_OVERWRITE). */
CKPT_API ckpt_status ckpt_mpi_create(const char* path, MPI_Comm comm, unsigned flags, ckpt_mpi_writer** writer);
/* Local: the piece at `piece_offset` of shape `piece_shape` (ndim dims each)
 * of the tensor `name` (dtype, global `shape`), `size` bytes in C order over
 * the piece. The bytes are not copied: keep them unchanged until
 * ckpt_mpi_writer_commit returns. A failed add fails the commit on every rank. */
CKPT_API ckpt_status ckpt_mpi_writer_add(ckpt_mpi_writer* writer, const char* name, int32_t dtype, size_t ndim,
                                         const int64_t* shape, const int64_t* piece_offset, const int64_t* piece_shape,
                                         const void* data, uint64_t size);
/* Collective: publishes the set, or fails on every rank and leaves nothing
 * (the failing rank gets its own code, the others E192). */
CKPT_API ckpt_status ckpt_mpi_writer_commit(ckpt_mpi_writer* writer);
CKPT_API const char* ckpt_mpi_writer_error(const ckpt_mpi_writer* writer);
CKPT_API void ckpt_mpi_writer_free(ckpt_mpi_writer* writer);

/* Collective: opens the set at `path` on every rank of `comm`. */
CKPT_API ckpt_status ckpt_mpi_open(const char* path, MPI_Comm comm, ckpt_mpi_reader** reader);
/* The whole tensors, sorted by name; `info` stays valid as long as the reader. */
CKPT_API size_t ckpt_mpi_tensor_count(const ckpt_mpi_reader* reader);
CKPT_API ckpt_status ckpt_mpi_tensor_at(const ckpt_mpi_reader* reader, size_t index, ckpt_tensor_info* info);
/* Local: the box (`offset`, `shape`, ndim dims each) of tensor `name` into
 * `buffer` (C order over the box, exactly its bytes), reading only the
 * stored bytes that overlap it. */
CKPT_API ckpt_status ckpt_mpi_read(ckpt_mpi_reader* reader, const char* name, size_t ndim, const int64_t* offset,
                                   const int64_t* shape, void* buffer, uint64_t buffer_size);
CKPT_API const char* ckpt_mpi_reader_error(const ckpt_mpi_reader* reader);
CKPT_API void ckpt_mpi_reader_free(ckpt_mpi_reader* reader);

#ifdef __cplusplus
}
#endif

#endif /* CKPT_MPI_H */
