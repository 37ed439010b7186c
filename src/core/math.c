/* Elementwise kernels: binary ops (tensor-tensor and tensor-scalar), unary ops, clamp, where. */
#include <math.h>
#include <string.h>

#include "iter.h"
#include "tensor.h"
#include "vmath.h"

/*
 * Every op has one tight flat loop for the case where all operands are contiguous (the
 * switch on the op sits outside the loop, so each case is its own vectorisable loop) and
 * one strided fallback through SF_ITER_EACH. The element expressions are written once,
 * as macros over x (and y), and expanded into both loops.
 *
 * Everything is single-threaded. Once vectorised (exp included, see sf_expf_) a 1e6
 * element pass costs about 0.3 ms, near memory speed; what dominates a fresh output is
 * the first touch of its newly mapped pages, an allocator matter. On the 2-core machine
 * this was written on, a pthread split could gain at most 2x on a few hundred
 * microseconds, so it is not worth its code until a benchmark says otherwise.
 */

const char *sf_binop_name(sf_binop op) {
  switch (op) {
    case SF_ADD: return "add";
    case SF_SUB: return "sub";
    case SF_MUL: return "mul";
    case SF_DIV: return "div";
    case SF_POW: return "pow";
    case SF_MAXIMUM: return "maximum";
    case SF_MINIMUM: return "minimum";
    case SF_EQ: return "eq";
    case SF_NE: return "ne";
    case SF_LT: return "lt";
    case SF_LE: return "le";
    case SF_GT: return "gt";
    case SF_GE: return "ge";
  }
  return "?";
}

const char *sf_unop_name(sf_unop op) {
  switch (op) {
    case SF_NEG: return "neg";
    case SF_ABS: return "abs";
    case SF_EXP: return "exp";
    case SF_LOG: return "log";
    case SF_SQRT: return "sqrt";
    case SF_TANH: return "tanh";
    case SF_SIGMOID: return "sigmoid";
    case SF_RELU: return "relu";
    case SF_SIGN: return "sign";
    case SF_SQUARE: return "square";
    case SF_RECIPROCAL: return "reciprocal";
  }
  return "?";
}

/* ---- validation and output handling, shared by every op ---- */

static int check_input(const char *fn, int argn, const sf_tensor *t) {
  if (!t || !t->storage) return sf_err("%s: argument #%d is an empty (released) tensor", fn, argn);
  return 0;
}

static int check_same_shape(const char *fn, int argn, const sf_tensor *t, const sf_tensor *ref) {
  char b1[SF_SHAPE_BUF], b2[SF_SHAPE_BUF];
  if (!sf_tensor_same_shape(t, ref))
    return sf_err("%s: argument #%d has shape %s, expected %s", fn, argn, sf_tshape(t, b1), sf_tshape(ref, b2));
  return 0;
}

/* A non-empty output must have the result's shape and be writable element by element. */
static int check_output(const char *fn, const sf_tensor *out, const sf_tensor *ref) {
  char b1[SF_SHAPE_BUF], b2[SF_SHAPE_BUF];
  if (!out->storage) return 0;
  if (!sf_tensor_same_shape(out, ref))
    return sf_err("%s: output has shape %s, expected %s", fn, sf_tshape(out, b1), sf_tshape(ref, b2));
  for (int d = 0; d < out->ndim; d++)
    if (out->stride[d] == 0 && out->size[d] > 1)
      return sf_err("%s: output of shape %s is an expanded view (stride 0 in dimension %d); writing through it is "
                    "ambiguous",
                    fn, sf_tshape(out, b1), d + 1);
  return 0;
}

static int same_view(const sf_tensor *a, const sf_tensor *b) {
  if (a->storage != b->storage || a->offset != b->offset || a->ndim != b->ndim) return 0;
  for (int d = 0; d < a->ndim; d++)
    if (a->size[d] != b->size[d] || (a->size[d] > 1 && a->stride[d] != b->stride[d])) return 0;
  return 1;
}

/* out reads and writes storage that src also reads, in another layout: writing an element
 * of out could change an element of src not yet read. Conservative (same storage = may
 * overlap); such calls compute into a temporary first. */
static int overlaps(const sf_tensor *out, const sf_tensor *src) {
  return src && out->storage == src->storage && !same_view(out, src);
}

/*
 * Resolves where the result goes: out itself (empty -> freshly allocated like ref, or a
 * non-overlapping / exactly aliasing view), or a temporary *tmp that finish_output
 * copies into out. Returns the tensor to write, or NULL on allocation failure.
 */
static sf_tensor *start_output(sf_tensor *out, sf_tensor *tmp, const sf_tensor *ref, const sf_tensor *s1,
                               const sf_tensor *s2, const sf_tensor *s3) {
  if (!out->storage) return sf_tensor_new_like(out, ref) ? NULL : out;
  if (overlaps(out, s1) || overlaps(out, s2) || overlaps(out, s3))
    return sf_tensor_new_like(tmp, ref) ? NULL : tmp;
  return out;
}

static int finish_output(sf_tensor *out, sf_tensor *tmp) {
  int rc = 0;
  if (tmp->storage) {
    rc = sf_tensor_copy(out, tmp);
    sf_tensor_release(tmp);
  }
  return rc;
}

static int all_contiguous(const sf_tensor *a, const sf_tensor *b, const sf_tensor *c) {
  return sf_tensor_is_contiguous(a) && (!b || sf_tensor_is_contiguous(b)) && (!c || sf_tensor_is_contiguous(c));
}

/* ---- element expressions ---- */

/* NaN-propagating maximum / minimum (as PyTorch's): a NaN in either operand wins. */
#define MAXIMUM_(x, y) (((x) != (x) || (x) > (y)) ? (x) : (y))
#define MINIMUM_(x, y) (((x) != (x) || (x) < (y)) ? (x) : (y))

/* Expands GEN(expr) for a binary op over floats x, y. */
#define BINARY_CASES(GEN)                              \
  switch (op) {                                        \
    case SF_ADD: GEN(x + y); break;                    \
    case SF_SUB: GEN(x - y); break;                    \
    case SF_MUL: GEN(x * y); break;                    \
    case SF_DIV: GEN(x / y); break;                    \
    case SF_POW: GEN(powf(x, y)); break;               \
    case SF_MAXIMUM: GEN(MAXIMUM_(x, y)); break;       \
    case SF_MINIMUM: GEN(MINIMUM_(x, y)); break;       \
    case SF_EQ: GEN((float)(x == y)); break;           \
    case SF_NE: GEN((float)(x != y)); break;           \
    case SF_LT: GEN((float)(x < y)); break;            \
    case SF_LE: GEN((float)(x <= y)); break;           \
    case SF_GT: GEN((float)(x > y)); break;            \
    case SF_GE: GEN((float)(x >= y)); break;           \
  }

/* sf_expf_ (vectorisable exp) lives in vmath.h, shared with the nn kernels. */

/* Sigmoid without overflow for large |x|: with e = exp(-|x|) in (0, 1],
 * sigmoid(x) = 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0. */
static inline float sigmoidf_(float x) {
  float e = sf_expf_(-fabsf(x));
  float r = 1.0f / (1.0f + e);
  return x >= 0.0f ? r : e * r;
}

/* relu and sign keep NaN (x < 0 and x > 0 are both false for it). */
#define UNARY_CASES(GEN)                                                  \
  switch (op) {                                                           \
    case SF_NEG: GEN(-x); break;                                          \
    case SF_ABS: GEN(fabsf(x)); break;                                    \
    case SF_EXP: GEN(sf_expf_(x)); break;                                    \
    case SF_LOG: GEN(logf(x)); break;                                     \
    case SF_SQRT: GEN(sqrtf(x)); break;                                   \
    case SF_TANH: GEN(tanhf(x)); break;                                   \
    case SF_SIGMOID: GEN(sigmoidf_(x)); break;                            \
    case SF_RELU: GEN(x < 0.0f ? 0.0f : x); break;                        \
    case SF_SIGN: GEN(x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : x)); break;   \
    case SF_SQUARE: GEN(x * x); break;                                    \
    case SF_RECIPROCAL: GEN(1.0f / x); break;                             \
  }

/* ---- kernels: flat loops over n contiguous floats (o may equal a or b) ---- */

/* o[i] depends on a[i] and b[i] only, so an exactly aliased output carries no dependence
 * between iterations: telling the compiler so lets it vectorise without run-time alias
 * checks (which GCC's -O2 cost model refuses to emit). Overlaps that are not exact never
 * reach these loops: they go through a temporary. */
#if defined(__GNUC__) && !defined(__clang__)
#define IVDEP _Pragma("GCC ivdep")
#else
#define IVDEP
#endif

/* BODY over i in [0, n): a main loop over a multiple of 16 elements, then the tail.
 * GCC's -O2 cost model vectorises only loops with no scalar remainder, so the split
 * keeps the main loop vectorised at -O2 as well as at -O3. */
#define FLAT_LOOP(n, BODY)                                          \
  do {                                                              \
    const int64_t nv_ = (n) & ~(int64_t)15;                         \
    IVDEP for (int64_t i = 0; i < nv_; i++) { BODY }                \
    for (int64_t i = nv_; i < (n); i++) { BODY }                    \
  } while (0)

static void binary_flat(float *o, const float *a, const float *b, int64_t n, sf_binop op) {
#define GEN(E) FLAT_LOOP(n, float x = a[i]; float y = b[i]; o[i] = (E););
  BINARY_CASES(GEN)
#undef GEN
}

static void binary_strided(const sf_tensor *o, const sf_tensor *a, const sf_tensor *b, sf_binop op) {
  sf_iter it;
  const sf_tensor *ts[3] = {o, a, b};
  sf_iter_init(&it, 3, ts);
#define GEN(E)                             \
  SF_ITER_EACH(it, {                       \
    float x = *x1;                         \
    float y = *x2;                         \
    *x0 = (E);                             \
  });
  BINARY_CASES(GEN)
#undef GEN
}

/* scalar on the right: y = s */
static void scalar_flat(float *o, const float *a, float s, int64_t n, sf_binop op) {
  const float y = s;
  switch (op) {
    case SF_POW: /* the common exponents skip powf */
      if (s == 2.0f) {
        FLAT_LOOP(n, o[i] = a[i] * a[i];);
        return;
      }
      if (s == 0.5f) {
        FLAT_LOOP(n, o[i] = sqrtf(a[i]););
        return;
      }
      if (s == 1.0f) {
        if (o != a) memmove(o, a, (size_t)n * sizeof *o);
        return;
      }
      break;
    default: break;
  }
#define GEN(E) FLAT_LOOP(n, float x = a[i]; o[i] = (E););
  BINARY_CASES(GEN)
#undef GEN
}

/* scalar on the left: x = s */
static void scalar_first_flat(float *o, const float *b, float s, int64_t n, sf_binop op) {
  const float x = s;
#define GEN(E) FLAT_LOOP(n, float y = b[i]; o[i] = (E););
  BINARY_CASES(GEN)
#undef GEN
}

static void scalar_strided(const sf_tensor *o, const sf_tensor *a, float s, sf_binop op, int scalar_first) {
  sf_iter it;
  const sf_tensor *ts[2] = {o, a};
  sf_iter_init(&it, 2, ts);
  if (scalar_first) {
    const float x = s;
#define GEN(E)                  \
  SF_ITER_EACH(it, {            \
    float y = *x1;              \
    *x0 = (E);                  \
  });
    BINARY_CASES(GEN)
#undef GEN
  } else {
    const float y = s;
    if (op == SF_POW && s == 2.0f) {
      SF_ITER_EACH(it, { *x0 = *x1 * *x1; });
      return;
    }
    if (op == SF_POW && s == 0.5f) {
      SF_ITER_EACH(it, { *x0 = sqrtf(*x1); });
      return;
    }
#define GEN(E)                  \
  SF_ITER_EACH(it, {            \
    float x = *x1;              \
    *x0 = (E);                  \
  });
    BINARY_CASES(GEN)
#undef GEN
  }
}

static void unary_flat(float *o, const float *a, int64_t n, sf_unop op) {
#define GEN(E) FLAT_LOOP(n, float x = a[i]; o[i] = (E););
  UNARY_CASES(GEN)
#undef GEN
}

static void unary_strided(const sf_tensor *o, const sf_tensor *a, sf_unop op) {
  sf_iter it;
  const sf_tensor *ts[2] = {o, a};
  sf_iter_init(&it, 2, ts);
#define GEN(E)                  \
  SF_ITER_EACH(it, {            \
    float x = *x1;              \
    *x0 = (E);                  \
  });
  UNARY_CASES(GEN)
#undef GEN
}

/* ---- public entry points ---- */

int sf_binary(sf_tensor *out, const sf_tensor *a, const sf_tensor *b, sf_binop op) {
  const char *fn = sf_binop_name(op);
  if (check_input(fn, 1, a) || check_input(fn, 2, b) || check_same_shape(fn, 2, b, a) || check_output(fn, out, a))
    return -1;
  sf_tensor tmp = SF_TENSOR_EMPTY;
  sf_tensor *o = start_output(out, &tmp, a, a, b, NULL);
  if (!o) return -1;
  if (all_contiguous(o, a, b))
    binary_flat(sf_tensor_data(o), sf_tensor_data(a), sf_tensor_data(b), sf_tensor_numel(a), op);
  else
    binary_strided(o, a, b, op);
  return finish_output(out, &tmp);
}

int sf_binary_scalar(sf_tensor *out, const sf_tensor *a, float s, sf_binop op, int scalar_first) {
  const char *fn = sf_binop_name(op);
  if (check_input(fn, scalar_first ? 2 : 1, a) || check_output(fn, out, a)) return -1;
  sf_tensor tmp = SF_TENSOR_EMPTY;
  sf_tensor *o = start_output(out, &tmp, a, a, NULL, NULL);
  if (!o) return -1;
  if (all_contiguous(o, a, NULL)) {
    if (scalar_first)
      scalar_first_flat(sf_tensor_data(o), sf_tensor_data(a), s, sf_tensor_numel(a), op);
    else
      scalar_flat(sf_tensor_data(o), sf_tensor_data(a), s, sf_tensor_numel(a), op);
  } else {
    scalar_strided(o, a, s, op, scalar_first);
  }
  return finish_output(out, &tmp);
}

int sf_unary(sf_tensor *out, const sf_tensor *a, sf_unop op) {
  const char *fn = sf_unop_name(op);
  if (check_input(fn, 1, a) || check_output(fn, out, a)) return -1;
  sf_tensor tmp = SF_TENSOR_EMPTY;
  sf_tensor *o = start_output(out, &tmp, a, a, NULL, NULL);
  if (!o) return -1;
  if (all_contiguous(o, a, NULL))
    unary_flat(sf_tensor_data(o), sf_tensor_data(a), sf_tensor_numel(a), op);
  else
    unary_strided(o, a, op);
  return finish_output(out, &tmp);
}

/* PyTorch's order: min(max(x, lo), hi), so lo > hi gives hi everywhere; NaN stays NaN. */
#define CLAMP_(x) ((x) < lo ? lo : ((x) > hi ? hi : (x)))

int sf_clamp(sf_tensor *out, const sf_tensor *a, float lo, float hi) {
  if (check_input("clamp", 1, a) || check_output("clamp", out, a)) return -1;
  if (lo != lo || hi != hi) return sf_err("clamp: bounds must not be NaN (got %g, %g)", (double)lo, (double)hi);
  sf_tensor tmp = SF_TENSOR_EMPTY;
  sf_tensor *o = start_output(out, &tmp, a, a, NULL, NULL);
  if (!o) return -1;
  if (all_contiguous(o, a, NULL)) {
    float *po = sf_tensor_data(o);
    const float *pa = sf_tensor_data(a);
    const int64_t n = sf_tensor_numel(a);
    FLAT_LOOP(n, {
      float v = pa[i] < lo ? lo : pa[i];
      po[i] = v > hi ? hi : v;
    });
  } else {
    sf_iter it;
    const sf_tensor *ts[2] = {o, a};
    sf_iter_init(&it, 2, ts);
    SF_ITER_EACH(it, {
      float v = *x1 < lo ? lo : *x1;
      *x0 = v > hi ? hi : v;
    });
  }
  return finish_output(out, &tmp);
}

int sf_where(sf_tensor *out, const sf_tensor *cond, const sf_tensor *a, const sf_tensor *b) {
  if (check_input("where", 1, cond) || check_input("where", 2, a) || check_input("where", 3, b) ||
      check_same_shape("where", 2, a, cond) || check_same_shape("where", 3, b, cond) ||
      check_output("where", out, cond))
    return -1;
  sf_tensor tmp = SF_TENSOR_EMPTY;
  /* the strided path below reads cond in both passes, so an output sharing cond's
   * storage must go through a temporary even when it is the same view */
  sf_tensor *o;
  if (out->storage && out->storage == cond->storage)
    o = sf_tensor_new_like(&tmp, cond) ? NULL : &tmp;
  else
    o = start_output(out, &tmp, cond, a, b, NULL);
  if (!o) return -1;
  if (all_contiguous(o, cond, a) && sf_tensor_is_contiguous(b)) {
    float *po = sf_tensor_data(o);
    const float *pc = sf_tensor_data(cond), *pa = sf_tensor_data(a), *pb = sf_tensor_data(b);
    const int64_t n = sf_tensor_numel(cond);
    FLAT_LOOP(n, po[i] = pc[i] != 0.0f ? pa[i] : pb[i];);
  } else {
    /* four operands, the iterator takes three: fill from a where cond holds, then from b
     * elsewhere. o may be a or b exactly; each pass reads an element before writing it
     * and the passes write disjoint elements, so both aliasings are safe. */
    sf_iter it;
    const sf_tensor *ta[3] = {o, cond, a};
    sf_iter_init(&it, 3, ta);
    SF_ITER_EACH(it, {
      if (*x1 != 0.0f) *x0 = *x2;
    });
    const sf_tensor *tb[3] = {o, cond, b};
    sf_iter_init(&it, 3, tb);
    SF_ITER_EACH(it, {
      if (*x1 == 0.0f) *x0 = *x2;
    });
  }
  return finish_output(out, &tmp);
}

int sf_equal(int *res, const sf_tensor *a, const sf_tensor *b) {
  *res = 0;
  if (check_input("equal", 1, a) || check_input("equal", 2, b)) return -1;
  if (!sf_tensor_same_shape(a, b)) return 0;
  int same = 1;
  if (all_contiguous(a, b, NULL)) {
    const float *pa = sf_tensor_data(a), *pb = sf_tensor_data(b);
    for (int64_t i = 0, n = sf_tensor_numel(a); i < n && same; i++) same = pa[i] == pb[i];
  } else {
    sf_iter it;
    const sf_tensor *ts[2] = {a, b};
    sf_iter_init(&it, 2, ts);
    SF_ITER_EACH(it, { same &= *x0 == *x1; });
  }
  *res = same;
  return 0;
}
