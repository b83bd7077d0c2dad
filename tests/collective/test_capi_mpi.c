/* The C API of the multi-rank save (ckpt_mpi.h), as a C99 program:
 *   test_capi_mpi DIR     under mpirun on any number of ranks
 * Saves a row-split matrix and a bias owned by rank 0, loads column bands,
 * checks every value; then a rank adding a piece of the wrong size fails the
 * commit on every rank (its own code there, E192 elsewhere) and leaves nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt_mpi.h"

enum { ROWS = 10, COLUMNS = 6 };

static float value(int64_t row, int64_t column) { return (float)(row * COLUMNS + column) + 0.25f; }

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, ranks = 0, wrong = 0, total = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  const int64_t shape[2] = {ROWS, COLUMNS};
  const int64_t first = ROWS * rank / ranks, last = ROWS * (rank + 1) / ranks;
  float band[ROWS * COLUMNS];
  for (int64_t r = first; r < last; ++r) {
    for (int64_t c = 0; c < COLUMNS; ++c) band[(r - first) * COLUMNS + c] = value(r, c);
  }
  const float bias[COLUMNS] = {1, 2, 3, 4, 5, 6};

  ckpt_mpi_writer* writer = NULL;
  if (ckpt_mpi_create(argv[1], MPI_COMM_WORLD, 0, &writer) != CKPT_OK) {
    fprintf(stderr, "rank %d: create: %s\n", rank, ckpt_mpi_last_error());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  const int64_t offset[2] = {first, 0}, piece[2] = {last - first, COLUMNS};
  const int64_t bias_shape[1] = {COLUMNS}, zero[1] = {0};
  ckpt_status added = ckpt_mpi_writer_add(writer, "weight", CKPT_DTYPE_FLOAT, 2, shape, offset, piece, band,
                                          (uint64_t)((last - first) * COLUMNS * sizeof(float)));
  if (added == CKPT_OK && rank == 0) {
    added = ckpt_mpi_writer_add(writer, "bias", CKPT_DTYPE_FLOAT, 1, bias_shape, zero, bias_shape, bias, sizeof bias);
  }
  if (added != CKPT_OK || ckpt_mpi_writer_commit(writer) != CKPT_OK) {
    fprintf(stderr, "rank %d: save: %s\n", rank, ckpt_mpi_writer_error(writer));
    wrong++;
  }
  ckpt_mpi_writer_free(writer);

  ckpt_mpi_reader* reader = NULL;
  if (ckpt_mpi_open(argv[1], MPI_COMM_WORLD, &reader) != CKPT_OK) {
    fprintf(stderr, "rank %d: open: %s\n", rank, ckpt_mpi_last_error());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  ckpt_tensor_info info;
  if (ckpt_mpi_tensor_count(reader) != 2 || ckpt_mpi_tensor_at(reader, 1, &info) != CKPT_OK ||
      strcmp(info.name, "weight") != 0 || info.ndim != 2 || info.shape[0] != ROWS || info.shape[1] != COLUMNS) {
    fprintf(stderr, "rank %d: unexpected tensor list\n", rank);
    wrong++;
  }
  const int64_t from = COLUMNS * rank / ranks, to = COLUMNS * (rank + 1) / ranks;
  const int64_t box_offset[2] = {0, from}, box_shape[2] = {ROWS, to - from};
  float columns[ROWS * COLUMNS];
  if (ckpt_mpi_read(reader, "weight", 2, box_offset, box_shape, columns, (uint64_t)(ROWS * (to - from) * sizeof(float))) !=
      CKPT_OK) {
    fprintf(stderr, "rank %d: read: %s\n", rank, ckpt_mpi_reader_error(reader));
    wrong++;
  } else {
    for (int64_t r = 0; r < ROWS; ++r) {
      for (int64_t c = from; c < to; ++c) wrong += columns[r * (to - from) + (c - from)] != value(r, c);
    }
  }
  float bias_read[COLUMNS];
  if (ckpt_mpi_read(reader, "bias", 1, zero, bias_shape, bias_read, sizeof bias_read) != CKPT_OK ||
      memcmp(bias_read, bias, sizeof bias) != 0) {
    wrong++;
  }
  ckpt_mpi_reader_free(reader);

  /* The last rank's piece is short a byte: every commit fails, nothing appears. */
  char failed_path[4096];
  snprintf(failed_path, sizeof failed_path, "%s.failed", argv[1]);
  if (ckpt_mpi_create(failed_path, MPI_COMM_WORLD, 0, &writer) != CKPT_OK) MPI_Abort(MPI_COMM_WORLD, 1);
  const uint64_t size = (uint64_t)((last - first) * COLUMNS * sizeof(float)) - (rank == ranks - 1 ? 1 : 0);
  added = ckpt_mpi_writer_add(writer, "weight", CKPT_DTYPE_FLOAT, 2, shape, offset, piece, band, size);
  const ckpt_status committed = ckpt_mpi_writer_commit(writer);
  const ckpt_status expected = rank == ranks - 1 ? 402 : 192;
  if ((rank == ranks - 1) == (added == CKPT_OK) || committed != expected) {
    fprintf(stderr, "rank %d: commit after a bad piece returned %d, expected %d: %s\n", rank, committed, expected,
            ckpt_mpi_writer_error(writer));
    wrong++;
  }
  ckpt_mpi_writer_free(writer);
  MPI_Barrier(MPI_COMM_WORLD);
  struct stat info_failed;
  if (rank == 0 && stat(failed_path, &info_failed) == 0) {
    fprintf(stderr, "%s exists after a failed commit\n", failed_path);
    wrong++;
  }

  MPI_Allreduce(&wrong, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) printf("C API on %d ranks: %d wrong\n", ranks, total);
  MPI_Finalize();
  return total == 0 ? 0 : 1;
}
