/* The C API from C99: every entry point, its values, its errors and its
 * ownership rules. Usage: test_capi FIXTURES_DIR */
#define _POSIX_C_SOURCE 200809L
#include "ckpt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

#define CHECK(condition)                                                     \
  do {                                                                       \
    if (!(condition)) {                                                      \
      fprintf(stderr, "%s:%d: CHECK(%s) failed; last error: %s\n", __FILE__, \
              __LINE__, #condition, ckpt_last_error());                      \
      ++failures;                                                            \
    }                                                                        \
  } while (0)

/* Stops the current test: what follows would dereference its result. */
#define REQUIRE(condition)                                                   \
  do {                                                                       \
    int required_ = (condition);                                             \
    CHECK(required_);                                                        \
    if (!required_) return;                                                  \
  } while (0)

static char* read_whole_file(const char* path, long* size) {
  FILE* file = fopen(path, "rb");
  char* bytes;
  if (file == NULL) return NULL;
  fseek(file, 0, SEEK_END);
  *size = ftell(file);
  fseek(file, 0, SEEK_SET);
  bytes = malloc((size_t)*size + 1);
  if (bytes != NULL && fread(bytes, 1, (size_t)*size, file) != (size_t)*size) {
    free(bytes);
    bytes = NULL;
  }
  fclose(file);
  return bytes;
}

static void test_reading(const char* snapshot, const char* bias_out) {
  ckpt_reader* reader = NULL;
  ckpt_tensor_info info;
  ckpt_view* view = NULL;
  long expected_size = 0;
  char* expected = read_whole_file(bias_out, &expected_size);
  float* buffer;

  REQUIRE(expected != NULL && expected_size == 4000);
  REQUIRE(ckpt_open(snapshot, NULL, &reader) == CKPT_OK);
  CHECK(strcmp(ckpt_reader_format(reader), "oneflow") == 0);
  CHECK(ckpt_tensor_count(reader) == 210);
  CHECK(ckpt_tensor_at(reader, 0, &info) == CKPT_OK);
  CHECK(ckpt_tensor_at(reader, 210, &info) == 104);

  CHECK(ckpt_tensor_find(reader, "classifier.3.bias", &info) == CKPT_OK);
  CHECK(strcmp(info.name, "classifier.3.bias") == 0);
  CHECK(info.dtype == CKPT_DTYPE_FLOAT);
  CHECK(strcmp(ckpt_dtype_name(info.dtype), "kFloat") == 0 && ckpt_dtype_size(info.dtype) == 4);
  CHECK(info.ndim == 1 && info.shape[0] == 1000 && info.nbytes == 4000);

  buffer = malloc(4000);
  CHECK(ckpt_read(reader, "classifier.3.bias", buffer, 4000) == CKPT_OK);
  CHECK(memcmp(buffer, expected, 4000) == 0);
  /* A wrong size is refused, and the message says both sizes. */
  CHECK(ckpt_read(reader, "classifier.3.bias", buffer, 3996) == 402);
  CHECK(ckpt_last_error_code() == 402);
  CHECK(strstr(ckpt_reader_error(reader), "the buffer has 3996 bytes, the tensor 4000") != NULL);
  CHECK(strstr(ckpt_last_error(), "E402 buffer_size_mismatch: variable 'classifier.3.bias'") != NULL);
  CHECK(ckpt_read(reader, "nope", buffer, 4) == 214);
  CHECK(strcmp(ckpt_error_name(214), "unknown_variable") == 0);
  CHECK(ckpt_read(reader, NULL, buffer, 4) == 104);
  free(buffer);

  CHECK(ckpt_map(reader, "classifier.3.bias", &view) == CKPT_OK);
  ckpt_close(reader); /* the view outlives its reader */
  CHECK(ckpt_view_is_mapped(view) == 1);
  CHECK(ckpt_view_size(view) == 4000);
  CHECK(memcmp(ckpt_view_data(view), expected, 4000) == 0);
  ckpt_view_free(view);
  free(expected);

  CHECK(ckpt_open("/nonexistent/ckpt", NULL, &reader) == 102);
  CHECK(reader == NULL);
  CHECK(ckpt_open(snapshot, "hdf5", &reader) == 104);
  CHECK(strstr(ckpt_last_error(), "unknown format 'hdf5'") != NULL);
}

static void test_writing_and_converting(const char* snapshot, const char* scratch) {
  char path[4096];
  char converted[4096];
  ckpt_writer* writer = NULL;
  ckpt_reader* reader = NULL;
  ckpt_tensor_info info;
  ckpt_view* view = NULL;
  const int64_t shape[2] = {2, 3};
  const int32_t values[6] = {1, -2, 3, -4, 5, -6};
  int32_t back[6];

  snprintf(path, sizeof path, "%s/written.safetensors", scratch);
  REQUIRE(ckpt_create(path, "safetensors", 0, &writer) == CKPT_OK);
  CHECK(ckpt_writer_add(writer, "m", CKPT_DTYPE_INT32, shape, 2, values, sizeof values) == CKPT_OK);
  CHECK(ckpt_writer_add(writer, "m", CKPT_DTYPE_INT32, shape, 2, values, sizeof values) == 213);
  CHECK(strstr(ckpt_writer_error(writer), "variable 'm'") != NULL);
  CHECK(ckpt_writer_add(writer, "short", CKPT_DTYPE_INT32, shape, 2, values, 8) == 402);
  CHECK(ckpt_writer_add(writer, "bad", 99, shape, 2, values, sizeof values) == 104);
  CHECK(ckpt_writer_add(writer, "scalar", CKPT_DTYPE_DOUBLE, NULL, 0, "\0\0\0\0\0\0\xf0\x3f", 8) == CKPT_OK);
  CHECK(ckpt_writer_commit(writer) == CKPT_OK);
  ckpt_writer_free(writer);

  CHECK(ckpt_create(path, "safetensors", 0, &writer) == 103);
  CHECK(writer == NULL);
  REQUIRE(ckpt_create(path, "safetensors", CKPT_OVERWRITE, &writer) == CKPT_OK);
  ckpt_writer_free(writer); /* uncommitted: the first file stays */

  REQUIRE(ckpt_open(path, NULL, &reader) == CKPT_OK);
  CHECK(strcmp(ckpt_reader_format(reader), "safetensors") == 0);
  CHECK(ckpt_tensor_count(reader) == 2);
  CHECK(ckpt_tensor_find(reader, "scalar", &info) == CKPT_OK && info.ndim == 0 && info.nbytes == 8);
  CHECK(ckpt_read(reader, "m", back, sizeof back) == CKPT_OK);
  CHECK(memcmp(back, values, sizeof values) == 0);
  REQUIRE(ckpt_map(reader, "scalar", &view) == CKPT_OK);
  CHECK(ckpt_view_is_mapped(view) == 1);
  CHECK(*(const double*)ckpt_view_data(view) == 1.0);
  ckpt_view_free(view);
  ckpt_close(reader);

  snprintf(converted, sizeof converted, "%s/mobilenet.safetensors", scratch);
  CHECK(ckpt_convert(snapshot, converted, "safetensors", 0) == CKPT_OK);
  CHECK(ckpt_convert(snapshot, converted, "safetensors", 0) == 103);
  REQUIRE(ckpt_open(converted, NULL, &reader) == CKPT_OK);
  CHECK(ckpt_tensor_count(reader) == 210);
  ckpt_close(reader);
}

static void test_validation(const char* snapshot, const char* scratch) {
  char path[4096];
  ckpt_report* report = NULL;
  ckpt_issue issue;
  FILE* file;
  static const char header[] = "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}";
  unsigned char length[8] = {0};

  CHECK(ckpt_validate(snapshot, &report) == CKPT_OK);
  CHECK(ckpt_report_valid(report) == 1);
  CHECK(strcmp(ckpt_report_format(report), "oneflow") == 0);
  CHECK(ckpt_report_issue_count(report) == 0);
  ckpt_report_free(report);

  /* A safetensors file whose offsets disagree with its shape, and with 4
   bytes of data where 8 are declared. */
  snprintf(path, sizeof path, "%s/truncated.safetensors", scratch);
  file = fopen(path, "wb");
  length[0] = (unsigned char)(sizeof header - 1);
  fwrite(length, 1, 8, file);
  fwrite(header, 1, sizeof header - 1, file);
  fwrite("abcd", 1, 4, file);
  fclose(file);
  CHECK(ckpt_validate(path, &report) == CKPT_OK);
  CHECK(ckpt_report_valid(report) == 0);
  CHECK(strcmp(ckpt_report_format(report), "safetensors") == 0);
  CHECK(ckpt_report_issue_count(report) == 2);
  CHECK(ckpt_report_issue(report, 0, &issue) == CKPT_OK);
  CHECK(issue.code == 812 && issue.is_error == 1 && strcmp(issue.code_name, "safetensors_tensor_size") == 0);
  CHECK(strcmp(issue.variable, "w") == 0);
  CHECK(ckpt_report_issue(report, 1, &issue) == CKPT_OK && issue.code == 813);
  CHECK(strstr(issue.message, "truncated") != NULL);
  CHECK(ckpt_report_issue(report, 2, &issue) == 104);
  ckpt_report_free(report);

  CHECK(ckpt_validate(scratch, &report) == CKPT_OK);
  CHECK(ckpt_report_valid(report) == 0);
  CHECK(ckpt_report_issue(report, 0, &issue) == CKPT_OK && issue.code == 202);
  ckpt_report_free(report);
  CHECK(ckpt_validate(NULL, &report) == 104);

  /* The registry's validation, as ckpt-validate runs it: a leftover of an
   interrupted write beside the path is reported (a warning: still valid). */
  snprintf(path, sizeof path, "%s/written.safetensors", scratch);
  CHECK(ckpt_validate(path, &report) == CKPT_OK);
  CHECK(ckpt_report_valid(report) == 1 && ckpt_report_issue_count(report) == 0);
  ckpt_report_free(report);
  snprintf(path, sizeof path, "%s/.written.safetensors.ckpt-tmp-1-1", scratch);
  file = fopen(path, "wb");
  fclose(file);
  snprintf(path, sizeof path, "%s/written.safetensors", scratch);
  CHECK(ckpt_validate(path, &report) == CKPT_OK);
  CHECK(ckpt_report_valid(report) == 1);
  REQUIRE(ckpt_report_issue_count(report) == 1);
  CHECK(ckpt_report_issue(report, 0, &issue) == CKPT_OK && issue.code == 209 && issue.is_error == 0);
  CHECK(strstr(issue.message, ".written.safetensors.ckpt-tmp-1-1") != NULL);
  ckpt_report_free(report);

  /* A named format is validated as that format, like ckpt_open. */
  CHECK(ckpt_validate_format(path, "safetensors", &report) == CKPT_OK);
  CHECK(strcmp(ckpt_report_format(report), "safetensors") == 0 && ckpt_report_valid(report) == 1);
  ckpt_report_free(report);
  CHECK(ckpt_validate_format(path, "torch", &report) == CKPT_OK);
  CHECK(strcmp(ckpt_report_format(report), "torch") == 0 && ckpt_report_valid(report) == 0);
  ckpt_report_free(report);
  CHECK(ckpt_validate_format(snapshot, "oneflow", &report) == CKPT_OK);
  CHECK(strcmp(ckpt_report_format(report), "oneflow") == 0 && ckpt_report_valid(report) == 1);
  ckpt_report_free(report);
  CHECK(ckpt_validate_format(snapshot, "no-such-format", &report) == CKPT_OK);
  CHECK(ckpt_report_valid(report) == 0 && strcmp(ckpt_report_format(report), "") == 0);
  CHECK(ckpt_report_issue(report, 0, &issue) == CKPT_OK && issue.code == 104);
  ckpt_report_free(report);

  /* Freeing NULL is allowed everywhere. */
  ckpt_close(NULL);
  ckpt_view_free(NULL);
  ckpt_report_free(NULL);
  ckpt_writer_free(NULL);
}

/* After a failed open or create the handle is NULL: every call on it fails
 * cleanly or returns an empty value, none crashes. */
static void test_null_handles(const char* scratch) {
  char path[4096];
  ckpt_reader* reader = NULL;
  ckpt_writer* writer = NULL;
  ckpt_view* view = NULL;
  ckpt_report* report = NULL;
  ckpt_tensor_info info;
  ckpt_issue issue;
  char buffer[4];

  snprintf(path, sizeof path, "%s/missing", scratch);
  CHECK(ckpt_open(path, NULL, &reader) == 102);
  CHECK(reader == NULL);
  CHECK(strcmp(ckpt_reader_error(reader), "") == 0);
  CHECK(strcmp(ckpt_reader_format(reader), "") == 0);
  CHECK(ckpt_tensor_count(reader) == 0);
  CHECK(ckpt_tensor_at(reader, 0, &info) == 104);
  CHECK(ckpt_tensor_find(reader, "w", &info) == 104);
  CHECK(ckpt_read(reader, "w", buffer, sizeof buffer) == 104);
  CHECK(ckpt_map(reader, "w", &view) == 104 && view == NULL);
  CHECK(ckpt_view_data(view) == NULL && ckpt_view_size(view) == 0 && ckpt_view_is_mapped(view) == 0);
  ckpt_close(reader);

  CHECK(ckpt_create(path, "no-such-format", 0, &writer) == 104);
  CHECK(writer == NULL);
  CHECK(ckpt_writer_add(writer, "w", CKPT_DTYPE_FLOAT, NULL, 0, buffer, sizeof buffer) == 104);
  CHECK(ckpt_writer_commit(writer) == 104);
  CHECK(strcmp(ckpt_writer_error(writer), "") == 0);
  ckpt_writer_free(writer);

  CHECK(ckpt_validate(NULL, &report) == 104 && report == NULL);
  CHECK(ckpt_report_valid(report) == 0);
  CHECK(strcmp(ckpt_report_format(report), "") == 0);
  CHECK(ckpt_report_issue_count(report) == 0);
  CHECK(ckpt_report_issue(report, 0, &issue) == 104);
  ckpt_report_free(report);
}

/* Views stack on an open reader; a failed one leaves the reader as it was. */
static void test_views(const char* snapshot, const char* bias_out) {
  ckpt_reader* reader = NULL;
  ckpt_tensor_info info;
  const char* include[] = {"classifier.*"};
  const char* exclude[] = {"*.weight"};
  const char* typo[] = {"clasifier.*"};
  const char* rules[] = {"classifier.=head."};
  const char* clash[] = {"classifier.3.=x", "classifier.0.=x"};
  long size = 0;
  float* expected = (float*)read_whole_file(bias_out, &size);
  uint16_t half[1000];
  size_t i;
  REQUIRE(expected != NULL && size == 4000);
  REQUIRE(ckpt_open(snapshot, NULL, &reader) == CKPT_OK);
  CHECK(ckpt_reader_filter(reader, include, 1, exclude, 1) == CKPT_OK);
  CHECK(ckpt_tensor_count(reader) == 2); /* classifier.0.bias, classifier.3.bias */
  CHECK(ckpt_reader_filter(reader, typo, 1, NULL, 0) == 104);
  CHECK(strstr(ckpt_reader_error(reader), "clasifier.*") != NULL);
  CHECK(ckpt_tensor_count(reader) == 2);
  CHECK(ckpt_reader_rename(reader, clash, 2) == 213);
  CHECK(ckpt_reader_rename(reader, rules, 1) == CKPT_OK);
  CHECK(ckpt_tensor_find(reader, "classifier.3.bias", &info) == 214);
  CHECK(ckpt_reader_cast(reader, CKPT_DTYPE_INT32) == 104);
  CHECK(ckpt_reader_cast(reader, CKPT_DTYPE_FLOAT16) == CKPT_OK);
  REQUIRE(ckpt_tensor_find(reader, "head.3.bias", &info) == CKPT_OK);
  CHECK(info.dtype == CKPT_DTYPE_FLOAT16 && info.nbytes == 2000);
  CHECK(ckpt_read(reader, "head.3.bias", half, sizeof half) == CKPT_OK);
  for (i = 0; i < 1000; ++i) {
    /* float16 keeps 10 mantissa bits: within 2^-10 relative of the float. */
    uint16_t bits = half[i];
    int exponent = (bits >> 10) & 0x1f;
    double magnitude = exponent == 0 ? (bits & 0x3ff) / 1024.0 / 16384.0
                                     : (1 + (bits & 0x3ff) / 1024.0) * (double)(1L << exponent) / 32768.0;
    double value = (bits & 0x8000) ? -magnitude : magnitude;
    double error = value > expected[i] ? value - expected[i] : expected[i] - value;
    double bound = (expected[i] < 0 ? -expected[i] : expected[i]) / 1024.0 + 1e-7;
    if (error > bound) {
      CHECK(error <= bound);
      break;
    }
  }
  CHECK(ckpt_reader_filter(NULL, include, 1, NULL, 0) == 104);
  CHECK(ckpt_reader_rename(reader, NULL, 1) == 104);
  ckpt_close(reader);
  free(expected);
}

static const char* const kScratchFiles[] = {"written.safetensors", "mobilenet.safetensors", "truncated.safetensors",
                                            ".written.safetensors.ckpt-tmp-1-1"};

int main(int argc, char** argv) {
  char snapshot[4096];
  char bias_out[4200];
  char scratch[] = "/tmp/ckpt-capi-test-XXXXXX";
  size_t i;
  if (argc != 2) {
    fprintf(stderr, "usage: test_capi FIXTURES_DIR\n");
    return 2;
  }
  if (mkdtemp(scratch) == NULL) {
    perror("mkdtemp");
    return 2;
  }
  snprintf(snapshot, sizeof snapshot, "%s/oneflow-real/models_mobilenetv3_legacy_eager", argv[1]);
  snprintf(bias_out, sizeof bias_out, "%s/classifier.3.bias/out", snapshot);
  test_reading(snapshot, bias_out);
  test_views(snapshot, bias_out);
  test_writing_and_converting(snapshot, scratch);
  test_validation(snapshot, scratch);
  test_null_handles(scratch);
  for (i = 0; i < sizeof kScratchFiles / sizeof kScratchFiles[0]; ++i) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", scratch, kScratchFiles[i]);
    remove(path);
  }
  CHECK(remove(scratch) == 0); /* nothing else was left behind */
  if (failures == 0) printf("all C API checks passed\n");
  return failures == 0 ? 0 : 1;
}
