/* Embedding ckpt from C: load every tensor of a checkpoint (any supported
 * format) into buffers this program owns, and print a line per tensor.
 *
 *   cc load_checkpoint.c $(pkg-config --cflags --libs ckpt) -o load_checkpoint
 *   ./load_checkpoint CHECKPOINT
 */
#include <ckpt.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char** argv) {
  ckpt_reader* reader = NULL;
  size_t i;
  if (argc != 2) {
    fprintf(stderr, "usage: %s CHECKPOINT\n", argv[0]);
    return 2;
  }
  if (ckpt_open(argv[1], NULL, &reader) != CKPT_OK) {
    fprintf(stderr, "%s\n", ckpt_last_error());
    return 1;
  }
  printf("%s: %s, %zu tensors\n", argv[1], ckpt_reader_format(reader), ckpt_tensor_count(reader));
  for (i = 0; i < ckpt_tensor_count(reader); ++i) {
    ckpt_tensor_info info;
    void* buffer;
    size_t d;
    double sum = 0;
    if (ckpt_tensor_at(reader, i, &info) != CKPT_OK) break;
    buffer = malloc(info.nbytes > 0 ? (size_t)info.nbytes : 1);
    if (buffer == NULL || ckpt_read(reader, info.name, buffer, info.nbytes) != CKPT_OK) {
      fprintf(stderr, "%s\n", buffer == NULL ? "out of memory" : ckpt_reader_error(reader));
      free(buffer);
      ckpt_close(reader);
      return 1;
    }
    printf("%s %s [", info.name, ckpt_dtype_name(info.dtype));
    for (d = 0; d < info.ndim; ++d) printf(d == 0 ? "%lld" : ", %lld", (long long)info.shape[d]);
    printf("] %llu bytes", (unsigned long long)info.nbytes);
    if (info.dtype == CKPT_DTYPE_FLOAT) {
      const float* values = buffer;
      for (d = 0; d < info.nbytes / sizeof(float); ++d) sum += values[d];
      printf(" sum=%.6g", sum);
    }
    printf("\n");
    free(buffer);
  }
  ckpt_close(reader);
  return 0;
}
