// doctest's implementation, compiled once for every test executable.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
