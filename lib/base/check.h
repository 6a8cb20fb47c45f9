// CHECK(cond): aborts on a broken invariant of *our* code. Never use it for
// input from a peer: that is a Result error (style.md habit 8).
#pragma once

#include <cstdio>
#include <cstdlib>

#define QREXEC_CHECK(cond)                                                        \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                              \
    }                                                                            \
  } while (0)
