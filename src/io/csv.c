/* CSV reader (RFC 4180 with a header line), parsed in place in one buffer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io.h"

typedef struct fields {
  char **v;
  int64_t n, cap;
} fields;

static int push(fields *f, char *s) {
  if (f->n == f->cap) {
    int64_t cap = f->cap ? 2 * f->cap : 1024;
    char **v = realloc(f->v, (size_t)cap * sizeof *v);
    if (!v) return -1;
    f->v = v;
    f->cap = cap;
  }
  f->v[f->n++] = s;
  return 0;
}

void sf_csv_free(sf_csv *c) {
  free(c->header); /* header and cells share one array */
  free(c->buf);
  memset(c, 0, sizeof *c);
}

/* Parse buf[0..size) in place: unquoting only ever shortens a field, so the write
 * position q never passes the read position p. buf has one spare byte for the last NUL. */
static int parse(sf_csv *out, char *buf, int64_t size, const char *path, fields *f) {
  char *p = buf, *end = buf + size, *q = buf;
  int64_t line = 1, ncols = -1, nrows = 0;
  if (size >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3)) p += 3, q += 3; /* UTF-8 byte order mark */
  while (p < end) {
    int64_t rec_line = line, nf = 0;
    if (*p == '\n' || (*p == '\r' && p + 1 < end && p[1] == '\n')) { /* blank line: skipped */
      p += *p == '\r' ? 2 : 1;
      line++;
      continue;
    }
    for (;;) { /* one field per iteration */
      char *start = q;
      if (p < end && *p == '"') {
        int64_t qline = line;
        p++;
        for (;;) {
          if (p == end)
            return sf_err("read_csv: file '%s' line %lld: unterminated quoted field", path, (long long)qline);
          if (*p == '"') {
            if (p + 1 < end && p[1] == '"') {
              *q++ = '"';
              p += 2;
              continue;
            }
            p++;
            break;
          }
          if (*p == '\n') line++;
          *q++ = *p++;
        }
        if (p < end && *p != ',' && *p != '\n' && !(*p == '\r' && p + 1 < end && p[1] == '\n'))
          return sf_err("read_csv: file '%s' line %lld: unexpected character '%c' after a closing quote", path,
                        (long long)line, *p >= ' ' && *p < 127 ? *p : '?');
      } else {
        while (p < end && *p != ',' && *p != '\n' && !(*p == '\r' && p + 1 < end && p[1] == '\n')) *q++ = *p++;
      }
      /* p is at ',', a line end or the end: read it before the NUL may overwrite it */
      int more = p < end && *p == ',';
      int eol = p < end && !more;
      if (more) p++;
      else if (eol) p += *p == '\r' ? 2 : 1;
      *q++ = 0;
      if (push(f, start)) return sf_err("read_csv: out of memory reading '%s'", path);
      nf++;
      if (eol) line++;
      if (!more) break;
    }
    if (ncols < 0) {
      ncols = nf;
    } else if (nf != ncols) {
      return sf_err("read_csv: file '%s' line %lld has %lld fields, expected %lld (as in the header)", path,
                    (long long)rec_line, (long long)nf, (long long)ncols);
    } else {
      nrows++;
    }
  }
  if (ncols < 0) return sf_err("read_csv: file '%s' is empty (no header line)", path);
  if (ncols > 1 << 20) return sf_err("read_csv: file '%s' has %lld columns", path, (long long)ncols);
  for (int64_t i = 0; i < ncols; i++)
    for (int64_t j = 0; j < i; j++)
      if (!strcmp(f->v[i], f->v[j]))
        return sf_err("read_csv: file '%s' has the column name '%s' twice (columns %lld and %lld)", path, f->v[i],
                      (long long)j + 1, (long long)i + 1);
  out->ncols = (int)ncols;
  out->nrows = nrows;
  return 0;
}

int sf_read_csv(sf_csv *out, const char *path) {
  sf_csv_free(out);
  FILE *fp = fopen(path, "rb");
  if (!fp) return sf_err("read_csv: cannot open '%s': %s", path, strerror(errno));
  struct stat st;
  int serr = fstat(fileno(fp), &st) ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
  if (serr) {
    fclose(fp);
    return sf_err("read_csv: cannot read '%s': %s", path, strerror(serr));
  }
  int64_t size = (int64_t)st.st_size;
  char *buf = malloc((size_t)size + 1);
  if (!buf) {
    fclose(fp);
    return sf_err("read_csv: out of memory reading '%s' (%lld bytes)", path, (long long)size);
  }
  size_t got = fread(buf, 1, (size_t)size, fp);
  int err = ferror(fp) ? errno : 0;
  fclose(fp);
  if ((int64_t)got != size) {
    free(buf);
    return sf_err("read_csv: cannot read '%s': %s", path, err ? strerror(err) : "file changed while reading");
  }
  const char *nul = memchr(buf, 0, (size_t)size);
  if (nul) {
    int64_t line = 1;
    for (const char *s = buf; s < nul; s++) line += *s == '\n';
    free(buf);
    return sf_err("read_csv: file '%s' line %lld contains a NUL byte (not a text file?)", path, (long long)line);
  }
  fields f = {NULL, 0, 0};
  if (parse(out, buf, size, path, &f)) {
    free(f.v);
    free(buf);
    memset(out, 0, sizeof *out);
    return -1;
  }
  out->buf = buf;
  out->header = f.v;
  out->cells = f.v + out->ncols;
  return 0;
}

int sf_csv_column(const sf_csv *c, const char *name) {
  for (int i = 0; i < c->ncols; i++)
    if (!strcmp(c->header[i], name)) return i;
  return -1;
}

int sf_csv_require(const sf_csv *c, const char *path, int n, const char *const *names) {
  for (int k = 0; k < n; k++) {
    if (sf_csv_column(c, names[k]) >= 0) continue;
    char list[256];
    size_t used = 0;
    list[0] = 0;
    for (int i = 0; i < c->ncols && used + 8 < sizeof list; i++) {
      const char *h = c->header[i][0] ? c->header[i] : "''"; /* the WILDS index column has no name */
      int w = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", h);
      if (w > 0) used += (size_t)w;
    }
    if (used >= sizeof list) strcpy(list + sizeof list - 4, "...");
    return sf_err("read_csv: file '%s' has no column '%s' (columns: %s)", path, names[k], list);
  }
  return 0;
}
