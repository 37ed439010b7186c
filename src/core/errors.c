/* The one error path of the C core: a thread-local message, set by sf_err. */
#include "tensor.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static _Thread_local char errbuf[512];

int sf_err(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errbuf, sizeof errbuf, fmt, ap);
  va_end(ap);
  return -1;
}

const char *sf_errmsg(void) { return errbuf; }

char *sf_shape_str(char *buf, size_t n, int ndim, const int64_t *size) {
  size_t used = 0;
  int w = snprintf(buf, n, "[");
  if (w > 0) used = (size_t)w;
  for (int d = 0; d < ndim && used < n; d++) {
    w = snprintf(buf + used, n - used, d ? ",%lld" : "%lld", (long long)size[d]);
    if (w > 0) used += (size_t)w;
  }
  if (used < n) snprintf(buf + used, n - used, "]");
  return buf;
}

char *sf_tshape(const sf_tensor *t, char *buf) { return sf_shape_str(buf, SF_SHAPE_BUF, t->ndim, t->size); }

void sf_assert_fail(const char *what, const char *file, int line) {
  fprintf(stderr, "surgft: internal error: assertion '%s' failed at %s:%d\n", what, file, line);
  abort();
}
