/* Many small tensors through the C API (issue 15, item 4 and 5).
 *
 *   many_tensors_bench open WORKDIR COUNT...
 *     For each format (safetensors, npy, oneflow) and each COUNT, a checkpoint
 *     of COUNT float32 scalars, written once under WORKDIR and kept; prints
 *     the best of 3 ckpt_open + ckpt_close times and the time per tensor.
 *
 *   many_tensors_bench read WORKDIR COUNT BYTES ROUNDS
 *     COUNT tensors of BYTES bytes in each format; per round, alternating,
 *     a plain open/read/close loop over the files that hold the tensors
 *     (read until end of file: the .npy files, each snapshot variable's
 *     `meta` and `out`, the safetensors file) and ckpt_open + ckpt_read of
 *     every tensor + ckpt_close; prints the best of ROUNDS of each and
 *     their ratio (plain time / C API time: 1 is as fast as the loop).
 *
 * Checkpoints are made once and reused: timing a run right after deleting
 * thousands of files measures the file system's cleanup, not the reader. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"

static const char* const kFormats[] = {"safetensors", "npy", "oneflow"};
enum { kFormatCount = 3, kNameBytes = 32, kPathBytes = 4096 };

static double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void die(const char* what, const char* detail) {
  fprintf(stderr, "many_tensors_bench: %s: %s\n", what, detail);
  exit(1);
}

/* Paths longer than PATH_MAX are refused, never cut. */
#define FORMAT_PATH(out, ...) \
  do { \
    if (snprintf((out), kPathBytes, __VA_ARGS__) >= kPathBytes) die("path too long", (out)); \
  } while (0)

static void tensor_name(char* out, size_t index) { snprintf(out, kNameBytes, "w%07zu", index); }

static void checkpoint_path(char* out, const char* workdir, const char* format, size_t count, uint64_t bytes) {
  FORMAT_PATH(out, "%s/%s-%zu-%llu%s", workdir, format, count, (unsigned long long)bytes,
           strcmp(format, "safetensors") == 0 ? ".safetensors" : "");
}

/* Writes the checkpoint unless a previous run left it complete. */
static void make_checkpoint(const char* path, const char* format, size_t count, uint64_t bytes) {
  struct stat info;
  if (stat(path, &info) == 0) return;
  float* values = calloc((size_t)bytes / sizeof(float) + 1, sizeof(float));
  if (values == NULL) die("calloc", strerror(errno));
  ckpt_writer* writer = NULL;
  if (ckpt_create(path, format, 0, &writer) != CKPT_OK) die("ckpt_create", ckpt_last_error());
  int64_t shape[1] = {(int64_t)(bytes / sizeof(float))};
  for (size_t i = 0; i < count; ++i) {
    char name[kNameBytes];
    tensor_name(name, i);
    values[0] = (float)i;
    if (ckpt_writer_add(writer, name, CKPT_DTYPE_FLOAT, shape, 1, values, bytes) != CKPT_OK) {
      die("ckpt_writer_add", ckpt_writer_error(writer));
    }
  }
  if (ckpt_writer_commit(writer) != CKPT_OK) die("ckpt_writer_commit", ckpt_writer_error(writer));
  ckpt_writer_free(writer);
  free(values);
}

static double time_open(const char* path) {
  double start = now_seconds();
  ckpt_reader* reader = NULL;
  if (ckpt_open(path, NULL, &reader) != CKPT_OK) die("ckpt_open", ckpt_last_error());
  ckpt_close(reader);
  return now_seconds() - start;
}

static int run_open(const char* workdir, int argc, char** argv) {
  printf("| format | tensors | open + close (best of 3) | per tensor |\n|---|---|---|---|\n");
  for (int f = 0; f < kFormatCount; ++f) {
    for (int i = 0; i < argc; ++i) {
      size_t count = (size_t)strtoull(argv[i], NULL, 10);
      char path[kPathBytes];
      checkpoint_path(path, workdir, kFormats[f], count, sizeof(float));
      make_checkpoint(path, kFormats[f], count, sizeof(float));
      double best = time_open(path);
      for (int round = 1; round < 3; ++round) {
        double t = time_open(path);
        if (t < best) best = t;
      }
      printf("| %s | %zu | %.4f s | %.2f µs |\n", kFormats[f], count, best, best * 1e6 / (double)count);
      fflush(stdout);
    }
  }
  return 0;
}

/* The files that hold what the C API reads: every .npy; every variable's
 * `meta` (shape and dtype) and `out` (values); the one safetensors file
 * (read once, whole). */
static char** plain_files(const char* path, const char* format, size_t count, size_t* file_count) {
  int single = strcmp(format, "safetensors") == 0;
  int snapshot = strcmp(format, "oneflow") == 0;
  *file_count = single ? 1 : snapshot ? 2 * count : count;
  char** files = calloc(*file_count, sizeof(char*));
  if (files == NULL) die("calloc", strerror(errno));
  for (size_t i = 0; i < *file_count; ++i) {
    char name[kNameBytes];
    tensor_name(name, snapshot ? i / 2 : i);
    files[i] = malloc(kPathBytes);
    if (files[i] == NULL) die("malloc", strerror(errno));
    if (single) {
      FORMAT_PATH(files[i], "%s", path);
    } else if (snapshot) {
      FORMAT_PATH(files[i], "%s/%s/%s", path, name, i % 2 == 0 ? "meta" : "out");
    } else {
      FORMAT_PATH(files[i], "%s/%s.npy", path, name);
    }
  }
  return files;
}

static double time_plain(char** files, size_t file_count, char* buffer, size_t buffer_bytes, uint64_t* total) {
  double start = now_seconds();
  *total = 0;
  for (size_t i = 0; i < file_count; ++i) {
    int fd = open(files[i], O_RDONLY | O_CLOEXEC);
    if (fd < 0) die(files[i], strerror(errno));
    ssize_t n;
    while ((n = read(fd, buffer, buffer_bytes)) > 0) *total += (uint64_t)n;
    if (n < 0) die(files[i], strerror(errno));
    close(fd);
  }
  return now_seconds() - start;
}

static double time_capi(const char* path, size_t count, char* buffer, uint64_t bytes) {
  double start = now_seconds();
  ckpt_reader* reader = NULL;
  if (ckpt_open(path, NULL, &reader) != CKPT_OK) die("ckpt_open", ckpt_last_error());
  if (ckpt_tensor_count(reader) != count) die(path, "unexpected tensor count");
  for (size_t i = 0; i < count; ++i) {
    ckpt_tensor_info info;
    if (ckpt_tensor_at(reader, i, &info) != CKPT_OK) die("ckpt_tensor_at", ckpt_reader_error(reader));
    if (ckpt_read(reader, info.name, buffer, bytes) != CKPT_OK) die("ckpt_read", ckpt_reader_error(reader));
  }
  ckpt_close(reader);
  return now_seconds() - start;
}

static int run_read(const char* workdir, size_t count, uint64_t bytes, int rounds) {
  size_t buffer_bytes = (size_t)bytes + 65536;
  char* buffer = malloc(buffer_bytes);
  if (buffer == NULL) die("malloc", strerror(errno));
  printf("| format | plain open/read/close | C API open + read | plain ÷ C API |\n|---|---|---|---|\n");
  for (int f = 0; f < kFormatCount; ++f) {
    char path[kPathBytes];
    checkpoint_path(path, workdir, kFormats[f], count, bytes);
    make_checkpoint(path, kFormats[f], count, bytes);
    size_t file_count = 0;
    char** files = plain_files(path, kFormats[f], count, &file_count);
    double best_plain = 1e30;
    double best_capi = 1e30;
    for (int round = 0; round < rounds; ++round) {
      uint64_t total = 0;
      double plain = time_plain(files, file_count, buffer, buffer_bytes, &total);
      if (total < count * bytes) die(path, "the plain loop read fewer bytes than the tensors hold");
      double capi = time_capi(path, count, buffer, bytes);
      if (plain < best_plain) best_plain = plain;
      if (capi < best_capi) best_capi = capi;
    }
    printf("| %s | %.4f s | %.4f s | %.2f |\n", kFormats[f], best_plain, best_capi, best_plain / best_capi);
    fflush(stdout);
    for (size_t i = 0; i < file_count; ++i) free(files[i]);
    free(files);
  }
  free(buffer);
  return 0;
}

/* WORKDIR is made when absent (not its parents), so the documented commands run as they stand. */
static int ensure_workdir(const char* workdir) {
  if (mkdir(workdir, 0755) == 0 || errno == EEXIST) return 0;
  fprintf(stderr, "many_tensors_bench: mkdir %s: %s\n", workdir, strerror(errno));
  return 1;
}

int main(int argc, char** argv) {
  if (argc >= 3 && (strcmp(argv[1], "open") == 0 || strcmp(argv[1], "read") == 0) && ensure_workdir(argv[2]) != 0) {
    return 1;
  }
  if (argc >= 4 && strcmp(argv[1], "open") == 0) return run_open(argv[2], argc - 3, argv + 3);
  if (argc == 6 && strcmp(argv[1], "read") == 0) {
    return run_read(argv[2], (size_t)strtoull(argv[3], NULL, 10), strtoull(argv[4], NULL, 10), atoi(argv[5]));
  }
  fprintf(stderr,
          "usage: many_tensors_bench open WORKDIR COUNT...\n"
          "       many_tensors_bench read WORKDIR COUNT BYTES ROUNDS\n");
  return 2;
}
