/* C-only test of the elementwise core (math.c): values, aliasing, strided views, errors. TAP. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "src/core/rng.h"
#include "src/core/tensor.h"

static int ntest = 0, nfail = 0;

static void ok(int cond, const char *what) {
  ntest++;
  if (!cond) nfail++;
  printf("%s %d - %s\n", cond ? "ok" : "not ok", ntest, what);
}

/* the message of the last failing call contains want */
static void ok_err(int rc, const char *want, const char *what) {
  int good = rc == -1 && strstr(sf_errmsg(), want) != NULL;
  if (!good) printf("# got rc %d, message '%s', wanted '%s'\n", rc, sf_errmsg(), want);
  ok(good, what);
}

/* a fresh contiguous tensor from values */
static sf_tensor make(int ndim, const int64_t *size, const float *v) {
  sf_tensor t = SF_TENSOR_EMPTY;
  if (sf_tensor_new(&t, ndim, size)) return t;
  memcpy(sf_tensor_data(&t), v, (size_t)sf_tensor_numel(&t) * sizeof(float));
  return t;
}

static sf_tensor make1(int64_t n, const float *v) { return make(1, &n, v); }

/* max |t[i] - want[i]| over row-major elements (any layout); NaN where exactly one is NaN */
static double maxdiff(const sf_tensor *t, const float *want) {
  double m = 0;
  for (int64_t i = 0, n = sf_tensor_numel(t); i < n; i++) {
    float g = *sf_tensor_ptr_linear(t, i);
    if (isnan(g) && isnan(want[i])) continue;
    if (isinf(g) && g == want[i]) continue;
    double d = fabs((double)g - (double)want[i]);
    if (!(d <= m)) m = d;
  }
  return m;
}

static int same_values(const sf_tensor *a, const sf_tensor *b) {
  if (!sf_tensor_same_shape(a, b)) return 0;
  for (int64_t i = 0, n = sf_tensor_numel(a); i < n; i++) {
    float x = *sf_tensor_ptr_linear(a, i), y = *sf_tensor_ptr_linear(b, i);
    if (!(x == y || (isnan(x) && isnan(y)))) return 0;
  }
  return 1;
}

static void test_binary_values(void) {
  const float av[4] = {1, -2, 3, 0.5f}, bv[4] = {2, 4, -1, 0.5f};
  sf_tensor a = make1(4, av), b = make1(4, bv);
  struct {
    sf_binop op;
    float want[4];
  } cases[] = {
      {SF_ADD, {3, 2, 2, 1}},
      {SF_SUB, {-1, -6, 4, 0}},
      {SF_MUL, {2, -8, -3, 0.25f}},
      {SF_DIV, {0.5f, -0.5f, -3, 1}},
      {SF_POW, {1, 16, 1.0f / 3.0f, 0.70710678f}},
      {SF_MAXIMUM, {2, 4, 3, 0.5f}},
      {SF_MINIMUM, {1, -2, -1, 0.5f}},
      {SF_EQ, {0, 0, 0, 1}},
      {SF_NE, {1, 1, 1, 0}},
      {SF_LT, {1, 1, 0, 0}},
      {SF_LE, {1, 1, 0, 1}},
      {SF_GT, {0, 0, 1, 0}},
      {SF_GE, {0, 0, 1, 1}},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    sf_tensor o = SF_TENSOR_EMPTY;
    char what[64];
    snprintf(what, sizeof what, "binary %s values", sf_binop_name(cases[k].op));
    ok(sf_binary(&o, &a, &b, cases[k].op) == 0 && maxdiff(&o, cases[k].want) < 1e-6, what);
    sf_tensor_release(&o);
  }
  sf_tensor_release(&a);
  sf_tensor_release(&b);
}

static void test_scalar_values(void) {
  const float av[4] = {1, -2, 4, 0.25f};
  sf_tensor a = make1(4, av), o = SF_TENSOR_EMPTY;
  struct {
    sf_binop op;
    float s;
    int first;
    float want[4];
  } cases[] = {
      {SF_ADD, 2, 0, {3, 0, 6, 2.25f}},
      {SF_SUB, 2, 0, {-1, -4, 2, -1.75f}},
      {SF_SUB, 2, 1, {1, 4, -2, 1.75f}},
      {SF_DIV, 2, 0, {0.5f, -1, 2, 0.125f}},
      {SF_DIV, 2, 1, {2, -1, 0.5f, 8}},
      {SF_MUL, 3, 1, {3, -6, 12, 0.75f}},
      {SF_POW, 2, 0, {1, 4, 16, 0.0625f}},
      {SF_POW, 0.5f, 0, {1, NAN, 2, 0.5f}},
      {SF_POW, 1, 0, {1, -2, 4, 0.25f}},
      {SF_POW, 3, 0, {1, -8, 64, 0.015625f}},
      {SF_POW, 2, 1, {2, 0.25f, 16, 1.18920712f}},
      {SF_MAXIMUM, 0, 0, {1, 0, 4, 0.25f}},
      {SF_MINIMUM, 0, 1, {0, -2, 0, 0}},
      {SF_LT, 1, 0, {0, 1, 0, 1}},
      {SF_LT, 1, 1, {0, 0, 1, 0}},
      {SF_GE, 1, 0, {1, 0, 1, 0}},
      {SF_EQ, 4, 1, {0, 0, 1, 0}},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    char what[80];
    snprintf(what, sizeof what, "scalar %s %g (scalar first %d) values", sf_binop_name(cases[k].op),
             (double)cases[k].s, cases[k].first);
    ok(sf_binary_scalar(&o, &a, cases[k].s, cases[k].op, cases[k].first) == 0 && maxdiff(&o, cases[k].want) < 1e-6,
       what);
    sf_tensor_release(&o);
  }
  /* the scalar fast paths again through the strided loop: a column expanded to [4,3] */
  sf_tensor col = SF_TENSOR_EMPTY, e = SF_TENSOR_EMPTY;
  int64_t shape[2] = {4, 3};
  sf_tensor_unsqueeze(&col, &a, 1);
  sf_tensor_expand(&e, &col, 2, shape);
  const float sq[12] = {1, 1, 1, 4, 4, 4, 16, 16, 16, 0.0625f, 0.0625f, 0.0625f};
  ok(sf_binary_scalar(&o, &e, 2, SF_POW, 0) == 0 && maxdiff(&o, sq) == 0, "strided pow 2 fast path");
  sf_tensor_release(&o);
  const float rt[12] = {1, 1, 1, NAN, NAN, NAN, 2, 2, 2, 0.5f, 0.5f, 0.5f};
  ok(sf_binary_scalar(&o, &e, 0.5f, SF_POW, 0) == 0 && maxdiff(&o, rt) == 0, "strided pow 0.5 fast path");
  sf_tensor_release(&o);
  const float rs[12] = {1, 1, 1, -0.5f, -0.5f, -0.5f, 0.25f, 0.25f, 0.25f, 4, 4, 4};
  ok(sf_binary_scalar(&o, &e, 1, SF_DIV, 1) == 0 && maxdiff(&o, rs) == 0, "strided scalar-first div");
  sf_tensor_release(&o);
  sf_tensor_release(&e);
  sf_tensor_release(&col);
  sf_tensor_release(&a);
}

static void test_unary_values(void) {
  const float av[5] = {-2, -0.5f, 0, 0.5f, 4};
  sf_tensor a = make1(5, av), o = SF_TENSOR_EMPTY;
  struct {
    sf_unop op;
    float want[5];
  } cases[] = {
      {SF_NEG, {2, 0.5f, 0, -0.5f, -4}},
      {SF_ABS, {2, 0.5f, 0, 0.5f, 4}},
      {SF_EXP, {0.13533528f, 0.60653066f, 1, 1.64872127f, 54.59815f}},
      {SF_LOG, {NAN, NAN, -INFINITY, -0.69314718f, 1.38629436f}},
      {SF_SQRT, {NAN, NAN, 0, 0.70710678f, 2}},
      {SF_TANH, {-0.96402758f, -0.46211716f, 0, 0.46211716f, 0.99932930f}},
      {SF_SIGMOID, {0.11920292f, 0.37754067f, 0.5f, 0.62245933f, 0.98201379f}},
      {SF_RELU, {0, 0, 0, 0.5f, 4}},
      {SF_SIGN, {-1, -1, 0, 1, 1}},
      {SF_SQUARE, {4, 0.25f, 0, 0.25f, 16}},
      {SF_RECIPROCAL, {-0.5f, -2, INFINITY, 2, 0.25f}},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    char what[64];
    snprintf(what, sizeof what, "unary %s values", sf_unop_name(cases[k].op));
    ok(sf_unary(&o, &a, cases[k].op) == 0 && maxdiff(&o, cases[k].want) < 1e-5, what);
    sf_tensor_release(&o);
  }
  sf_tensor_release(&a);

  /* sigmoid and exp at the extremes: no NaN, no overflow in the intermediate */
  const float xv[7] = {-1000, -100, -88, 88, 100, 1000, NAN};
  sf_tensor x = make1(7, xv);
  const float sig[7] = {0, 3.7200760e-44f, 6.0546018e-39f, 1, 1, 1, NAN};
  ok(sf_unary(&o, &x, SF_SIGMOID) == 0 && maxdiff(&o, sig) < 1e-45, "sigmoid at large |x| (subnormal results too)");
  sf_tensor_release(&o);
  const float ex[7] = {0, 3.7200760e-44f, 6.0546018e-39f, 1.6516363e38f, INFINITY, INFINITY, NAN};
  ok(sf_unary(&o, &x, SF_EXP) == 0 && maxdiff(&o, ex) < 1e31, "exp at the range limits: 0, subnormal, inf, NaN");
  ok(sf_tensor_ptr_linear(&o, 3)[0] / 1.6516363e38f - 1.0f < 1e-6f, "exp(88) relative error");
  sf_tensor_release(&o);
  sf_tensor_release(&x);

  /* NaN handling: relu and sign keep NaN, maximum/minimum propagate it from either side */
  const float nv[3] = {NAN, 1, -1}, mv[3] = {0, NAN, NAN};
  sf_tensor n = make1(3, nv), m = make1(3, mv);
  sf_unary(&o, &n, SF_RELU);
  ok(isnan(sf_tensor_data(&o)[0]), "relu(NaN) is NaN");
  sf_tensor_release(&o);
  sf_unary(&o, &n, SF_SIGN);
  ok(isnan(sf_tensor_data(&o)[0]), "sign(NaN) is NaN");
  sf_tensor_release(&o);
  sf_binary(&o, &n, &m, SF_MAXIMUM);
  ok(isnan(sf_tensor_data(&o)[0]) && isnan(sf_tensor_data(&o)[1]) && isnan(sf_tensor_data(&o)[2]),
     "maximum propagates NaN from either operand");
  sf_tensor_release(&o);
  sf_binary(&o, &m, &n, SF_MINIMUM);
  ok(isnan(sf_tensor_data(&o)[0]) && isnan(sf_tensor_data(&o)[1]) && isnan(sf_tensor_data(&o)[2]),
     "minimum propagates NaN from either operand");
  sf_tensor_release(&o);
  sf_tensor_release(&n);
  sf_tensor_release(&m);
}

/* exp within 1 ulp of double exp on a seeded sample of the whole finite range */
static void test_exp_accuracy(void) {
  int64_t n = 200000;
  sf_tensor x = SF_TENSOR_EMPTY, y = SF_TENSOR_EMPTY;
  sf_rng rng;
  sf_rng_seed(&rng, 7);
  sf_tensor_new(&x, 1, &n);
  float *px = sf_tensor_data(&x);
  for (int64_t i = 0; i < n; i++) {
    /* half uniform over [-104, 89], half near 0 where relative accuracy is hardest to keep */
    double u = sf_rng_uniform(&rng);
    px[i] = (float)(i % 2 ? -104.0 + 193.0 * u : (u - 0.5) * 1e-3);
  }
  sf_unary(&y, &x, SF_EXP);
  const float *py = sf_tensor_data(&y);
  double worst = 0;
  for (int64_t i = 0; i < n; i++) {
    double want = exp((double)px[i]);
    float w = (float)want;
    if (w == 0.0f || isinf(w)) {
      if (py[i] != w && fabs((double)py[i] - want) > 1.5e-45) worst = 99;
      continue;
    }
    float aw = fabsf(w);
    double ulp = aw < 1.17549435e-38f ? 1.4e-45 : (double)(nextafterf(aw, INFINITY) - aw);
    double e = fabs((double)py[i] - want) / ulp;
    if (e > worst) worst = e;
  }
  printf("# exp: max error %.3f ulp over %lld samples\n", worst, (long long)n);
  ok(worst <= 1.0, "exp within 1 ulp of double exp");
  sf_tensor_release(&x);
  sf_tensor_release(&y);
}

static void test_clamp_where_equal(void) {
  const float av[5] = {-3, -1, 0, 2, NAN};
  sf_tensor a = make1(5, av), o = SF_TENSOR_EMPTY;
  const float c1[5] = {-1, -1, 0, 1, NAN};
  ok(sf_clamp(&o, &a, -1, 1) == 0 && maxdiff(&o, c1) == 0, "clamp [-1, 1], NaN kept");
  sf_tensor_release(&o);
  const float c2[5] = {0, 0, 0, 2, NAN};
  ok(sf_clamp(&o, &a, 0, INFINITY) == 0 && maxdiff(&o, c2) == 0, "clamp with an open upper bound");
  sf_tensor_release(&o);
  const float c3[5] = {-5, -5, -5, -5, NAN};
  ok(sf_clamp(&o, &a, 5, -5) == 0 && maxdiff(&o, c3) == 0, "clamp with lo > hi gives hi (PyTorch's order)");
  sf_tensor_release(&o);
  ok_err(sf_clamp(&o, &a, NAN, 1), "clamp: bounds must not be NaN", "clamp NaN bound error");
  ok(o.storage == NULL, "output left empty on error");

  const float cv[5] = {1, 0, -2, 0, 0.5f}, bv[5] = {10, 20, 30, 40, 50};
  sf_tensor c = make1(5, cv), b = make1(5, bv);
  const float w[5] = {-3, 20, 0, 40, NAN};
  ok(sf_where(&o, &c, &a, &b) == 0 && maxdiff(&o, w) == 0, "where: nonzero picks a");
  sf_tensor_release(&o);

  int eq = -1;
  sf_tensor a2 = SF_TENSOR_EMPTY;
  sf_tensor_clone(&a2, &b);
  ok(sf_equal(&eq, &b, &a2) == 0 && eq == 1, "equal: clone is equal");
  sf_tensor_data(&a2)[4] = 51;
  ok(sf_equal(&eq, &b, &a2) == 0 && eq == 0, "equal: one element differs");
  ok(sf_equal(&eq, &a, &a) == 0 && eq == 0, "equal: NaN equals nothing");
  int64_t s2[2] = {5, 1};
  sf_tensor r = SF_TENSOR_EMPTY;
  sf_tensor_reshape(&r, &b, 2, s2);
  ok(sf_equal(&eq, &b, &r) == 0 && eq == 0, "equal: same values, other shape");
  sf_tensor_release(&r);
  sf_tensor_release(&a2);
  sf_tensor_release(&a);
  sf_tensor_release(&b);
  sf_tensor_release(&c);
}

/* out aliasing a, b, both, or cond; partial overlap through views */
static void test_aliasing(void) {
  const float av[4] = {1, 2, 3, 4}, bv[4] = {10, 20, 30, 40};
  sf_tensor a = make1(4, av), b = make1(4, bv);
  sf_storage *as = a.storage;
  const float s1[4] = {11, 22, 33, 44};
  ok(sf_binary(&a, &a, &b, SF_ADD) == 0 && maxdiff(&a, s1) == 0 && a.storage == as, "in place: out = a");
  const float s2[4] = {1, 2, 3, 4};
  ok(sf_binary(&b, &a, &b, SF_SUB) == 0 && maxdiff(&b, s2) == 0, "in place: out = b");
  const float s3[4] = {1, 4, 9, 16};
  ok(sf_binary(&b, &b, &b, SF_MUL) == 0 && maxdiff(&b, s3) == 0, "in place: out = a = b");
  const float s4[4] = {1, 2, 3, 4};
  ok(sf_unary(&b, &b, SF_SQRT) == 0 && maxdiff(&b, s4) == 0, "unary in place");
  ok(sf_binary_scalar(&b, &b, 2, SF_SUB, 1) == 0, "scalar-first in place");
  const float s5[4] = {1, 0, -1, -2};
  ok(maxdiff(&b, s5) == 0, "scalar-first in place values");

  /* a separate view of the same elements (not the same struct) */
  sf_tensor v = SF_TENSOR_EMPTY;
  sf_tensor_share(&v, &b);
  ok(sf_binary_scalar(&v, &b, 10, SF_ADD, 0) == 0, "out is another view of a");
  const float s6[4] = {11, 10, 9, 8};
  ok(maxdiff(&b, s6) == 0, "out is another view of a: values");
  sf_tensor_release(&v);

  /* partial overlap: t[1..3] = t[0..2] + t[1..3] must read the original values */
  const float tv[4] = {1, 2, 3, 4};
  sf_tensor t = make1(4, tv), lo = SF_TENSOR_EMPTY, hi = SF_TENSOR_EMPTY;
  sf_tensor_narrow(&lo, &t, 0, 0, 3);
  sf_tensor_narrow(&hi, &t, 0, 1, 3);
  ok(sf_binary(&hi, &lo, &hi, SF_ADD) == 0, "overlapping output");
  const float s7[4] = {1, 3, 5, 7};
  ok(maxdiff(&t, s7) == 0, "overlapping output reads the original values");
  ok(sf_unary(&lo, &hi, SF_NEG) == 0, "overlapping unary");
  const float s8[4] = {-3, -5, -7, 7};
  ok(maxdiff(&t, s8) == 0, "overlapping unary values");
  sf_tensor_release(&lo);
  sf_tensor_release(&hi);

  /* where: out aliasing a, b and cond */
  const float cv[4] = {1, 0, 1, 0};
  sf_tensor c = make1(4, cv), x = make1(4, av), y = make1(4, bv);
  const float w1[4] = {1, 20, 3, 40};
  ok(sf_where(&x, &c, &x, &y) == 0 && maxdiff(&x, w1) == 0, "where in place: out = a");
  const float x0[4] = {1, 2, 3, 4};
  memcpy(sf_tensor_data(&x), x0, sizeof x0);
  ok(sf_where(&y, &c, &x, &y) == 0 && maxdiff(&y, w1) == 0, "where in place: out = b");
  memcpy(sf_tensor_data(&y), bv, sizeof bv);
  const float w2[4] = {1, 20, 1, 40};
  ok(sf_where(&c, &c, &c, &y) == 0 && maxdiff(&c, w2) == 0, "where in place: out = cond");
  sf_tensor_release(&c);
  sf_tensor_release(&x);
  sf_tensor_release(&y);
  sf_tensor_release(&t);
  sf_tensor_release(&a);
  sf_tensor_release(&b);
}

/* strided inputs and outputs agree with the contiguous computation */
static void test_strided(void) {
  sf_rng rng;
  sf_rng_seed(&rng, 3);
  int64_t shape[3] = {3, 4, 5};
  sf_tensor a = SF_TENSOR_EMPTY, b = SF_TENSOR_EMPTY;
  sf_tensor_new(&a, 3, shape);
  sf_tensor_new(&b, 3, shape);
  for (int64_t i = 0; i < 60; i++) {
    sf_tensor_data(&a)[i] = (float)(sf_rng_uniform(&rng) * 4 - 2);
    sf_tensor_data(&b)[i] = (float)(sf_rng_uniform(&rng) * 4 + 0.5);
  }
  /* at = a transposed (dims 0, 2) made contiguous, then viewed back: same values, strided */
  sf_tensor at = SF_TENSOR_EMPTY, atc = SF_TENSOR_EMPTY, back = SF_TENSOR_EMPTY;
  sf_tensor_transpose(&at, &a, 0, 2);
  sf_tensor_clone(&atc, &at);
  sf_tensor_transpose(&back, &atc, 0, 2); /* back: same values as a, non-contiguous */
  ok(!sf_tensor_is_contiguous(&back) && same_values(&back, &a), "strided copy of a");

  for (int op = SF_ADD; op <= SF_GE; op++) {
    sf_tensor c1 = SF_TENSOR_EMPTY, c2 = SF_TENSOR_EMPTY;
    sf_binary(&c1, &a, &b, (sf_binop)op);
    sf_binary(&c2, &back, &b, (sf_binop)op);
    char what[64];
    snprintf(what, sizeof what, "strided %s agrees with contiguous", sf_binop_name((sf_binop)op));
    ok(same_values(&c1, &c2), what);
    sf_tensor_release(&c1);
    sf_tensor_release(&c2);
  }
  for (int op = SF_NEG; op <= SF_RECIPROCAL; op++) {
    sf_tensor c1 = SF_TENSOR_EMPTY, c2 = SF_TENSOR_EMPTY;
    sf_unary(&c1, &b, (sf_unop)op); /* b > 0: log and sqrt defined */
    sf_tensor bt = SF_TENSOR_EMPTY;
    sf_tensor_narrow(&bt, &b, 1, 1, 2); /* narrowed: strided */
    sf_tensor_release(&c1);
    sf_unary(&c1, &bt, (sf_unop)op);
    sf_tensor btc = SF_TENSOR_EMPTY;
    sf_tensor_clone(&btc, &bt);
    sf_unary(&c2, &btc, (sf_unop)op);
    char what[64];
    snprintf(what, sizeof what, "narrowed %s agrees with contiguous", sf_unop_name((sf_unop)op));
    ok(same_values(&c1, &c2), what);
    sf_tensor_release(&c1);
    sf_tensor_release(&c2);
    sf_tensor_release(&bt);
    sf_tensor_release(&btc);
  }

  /* in place on a transposed view writes the right elements of the storage */
  sf_tensor a2 = SF_TENSOR_EMPTY, a2t = SF_TENSOR_EMPTY, bt = SF_TENSOR_EMPTY, want = SF_TENSOR_EMPTY;
  sf_tensor_clone(&a2, &a);
  sf_tensor_transpose(&a2t, &a2, 0, 1);
  sf_tensor_transpose(&bt, &b, 0, 1);
  sf_binary(&want, &a, &b, SF_MUL);
  ok(sf_binary(&a2t, &a2t, &bt, SF_MUL) == 0 && same_values(&a2, &want), "in place on a transposed view");
  sf_tensor_release(&want);
  sf_unary(&want, &a2, SF_TANH);
  ok(sf_unary(&a2t, &a2t, SF_TANH) == 0 && same_values(&a2, &want), "unary in place on a transposed view");
  sf_tensor_release(&want);

  /* expanded input: a row broadcast by stride 0 */
  const float rv[3] = {1, 2, 3};
  int64_t rs[2] = {2, 3};
  const float mv[6] = {1, 1, 1, 2, 2, 2};
  sf_tensor row = make1(3, rv), m = make(2, rs, mv), e = SF_TENSOR_EMPTY, o = SF_TENSOR_EMPTY;
  sf_tensor_expand(&e, &row, 2, rs);
  const float ew[6] = {1, 2, 3, 2, 4, 6};
  ok(sf_binary(&o, &e, &m, SF_MUL) == 0 && maxdiff(&o, ew) == 0, "expanded input");
  ok(sf_tensor_is_contiguous(&o), "fresh output is contiguous");
  sf_tensor_release(&o);
  sf_tensor cond = SF_TENSOR_EMPTY;
  sf_binary_scalar(&cond, &m, 1, SF_EQ, 0);
  ok(maxdiff(&cond, (const float[6]){1, 1, 1, 0, 0, 0}) == 0, "eq scalar gives 0/1");
  sf_tensor ct = SF_TENSOR_EMPTY;
  int64_t t32[2] = {3, 2};
  sf_tensor_release(&cond);
  sf_tensor_new(&cond, 2, t32);
  memcpy(sf_tensor_data(&cond), (const float[6]){1, 0, 0, 0, 1, 0}, 6 * sizeof(float));
  sf_tensor_transpose(&ct, &cond, 0, 1); /* [2,3]: {{1,0,1},{0,0,0}} */
  const float ww[6] = {1, 1, 3, 2, 2, 2};
  ok(sf_where(&o, &ct, &e, &m) == 0 && maxdiff(&o, ww) == 0, "where with transposed cond, expanded a");
  sf_tensor_release(&o);
  sf_tensor_release(&ct);
  sf_tensor_release(&cond);
  sf_tensor_release(&row);
  sf_tensor_release(&m);
  sf_tensor_release(&e);
  sf_tensor_release(&a2);
  sf_tensor_release(&a2t);
  sf_tensor_release(&bt);
  sf_tensor_release(&at);
  sf_tensor_release(&atc);
  sf_tensor_release(&back);
  sf_tensor_release(&a);
  sf_tensor_release(&b);
}

static void test_errors(void) {
  int64_t s34[2] = {3, 4}, s35[2] = {3, 5}, s22[2] = {2, 2};
  sf_tensor a = SF_TENSOR_EMPTY, b = SF_TENSOR_EMPTY, o = SF_TENSOR_EMPTY, empty = SF_TENSOR_EMPTY;
  sf_tensor_zeros(&a, 2, s34);
  sf_tensor_zeros(&b, 2, s35);
  ok_err(sf_binary(&o, &a, &b, SF_ADD), "add: argument #2 has shape [3,5], expected [3,4]", "shape mismatch message");
  ok(o.storage == NULL, "output stays empty on error");
  ok_err(sf_binary(&o, &a, &b, SF_GE), "ge: argument #2 has shape [3,5]", "comparison names itself");
  sf_tensor_zeros(&o, 2, s22);
  ok_err(sf_binary(&o, &a, &a, SF_MUL), "mul: output has shape [2,2], expected [3,4]", "output shape message");
  ok_err(sf_unary(&o, &a, SF_EXP), "exp: output has shape [2,2], expected [3,4]", "unary output shape message");
  ok_err(sf_binary_scalar(&o, &a, 1, SF_DIV, 1), "div: output has shape [2,2]", "scalar output shape message");
  ok(o.storage != NULL && o.size[0] == 2, "a non-empty output is untouched on error");
  sf_tensor_release(&o);
  ok_err(sf_binary(&o, &empty, &a, SF_SUB), "sub: argument #1 is an empty", "empty argument #1");
  ok_err(sf_binary(&o, &a, &empty, SF_SUB), "sub: argument #2 is an empty", "empty argument #2");
  ok_err(sf_binary_scalar(&o, &empty, 2, SF_SUB, 1), "sub: argument #2 is an empty", "scalar-first empty is #2");
  ok_err(sf_unary(&o, &empty, SF_RELU), "relu: argument #1 is an empty", "unary empty argument");

  /* writing through an expanded view is refused */
  sf_tensor row = SF_TENSOR_EMPTY, e = SF_TENSOR_EMPTY, r1 = SF_TENSOR_EMPTY;
  sf_tensor_narrow(&r1, &a, 0, 0, 1);
  sf_tensor_expand(&e, &r1, 2, s34);
  ok_err(sf_binary(&e, &e, &a, SF_ADD), "add: output of shape [3,4] is an expanded view", "expanded output");
  ok_err(sf_clamp(&e, &e, 0, 1), "clamp: output of shape [3,4] is an expanded view", "expanded clamp output");

  sf_tensor c = SF_TENSOR_EMPTY;
  sf_tensor_zeros(&c, 2, s34);
  ok_err(sf_where(&o, &c, &b, &a), "where: argument #2 has shape [3,5], expected [3,4]", "where #2 shape");
  ok_err(sf_where(&o, &c, &a, &b), "where: argument #3 has shape [3,5], expected [3,4]", "where #3 shape");
  ok_err(sf_where(&o, &empty, &a, &a), "where: argument #1 is an empty", "where empty cond");
  int eq;
  ok_err(sf_equal(&eq, &a, &empty), "equal: argument #2 is an empty", "equal empty");
  ok(o.storage == NULL, "output still empty");
  sf_tensor_release(&c);
  sf_tensor_release(&row);
  sf_tensor_release(&e);
  sf_tensor_release(&r1);
  sf_tensor_release(&a);
  sf_tensor_release(&b);
}

/* zero-element and 0-d tensors */
static void test_edge_shapes(void) {
  int64_t z[2] = {0, 3};
  sf_tensor a = SF_TENSOR_EMPTY, o = SF_TENSOR_EMPTY;
  sf_tensor_zeros(&a, 2, z);
  ok(sf_binary(&o, &a, &a, SF_ADD) == 0 && o.ndim == 2 && o.size[0] == 0 && o.size[1] == 3, "zero elements");
  sf_tensor_release(&o);
  sf_tensor_release(&a);
  sf_tensor_full(&a, 0, z, 3);
  ok(sf_binary_scalar(&o, &a, 2, SF_POW, 1) == 0 && o.ndim == 0 && sf_tensor_data(&o)[0] == 8, "0-d tensor");
  sf_tensor_release(&o);
  sf_tensor_release(&a);
}

int main(void) {
  test_binary_values();
  test_scalar_values();
  test_unary_values();
  test_exp_accuracy();
  test_clamp_where_equal();
  test_aliasing();
  test_strided();
  test_errors();
  test_edge_shapes();
  ok(sf_storage_live_bytes() == 0, "all storage released");
  printf("1..%d\n", ntest);
  return nfail ? 1 : 0;
}
