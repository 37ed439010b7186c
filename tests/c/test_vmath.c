/* C test of the vectorisable math in src/core/vmath.h: sf_erff_ against libm's erf (in
 * double, the true value) and erff over a fine sample of [-5, 5], sf_expf_ over an even
 * sweep, and their special values. TAP output. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "src/core/vmath.h"

static int ntest = 0, nfail = 0;

static void ok(int cond, const char *what) {
  ntest++;
  if (!cond) nfail++;
  printf("%s %d - %s\n", cond ? "ok" : "not ok", ntest, what);
}

/* |got - want| in units of the float spacing at want */
static double ulps(float got, double want) {
  const double sp = (double)nextafterf((float)fabs(want), INFINITY) - (double)(float)fabs(want);
  return fabs((double)got - want) / sp;
}


int main(void) {
  char what[160];
  /* every 257th float of [-5, 5] (about 8 million, both signs; the bit patterns of the
   * positive floats step by 257), through a plain loop into an array, so that it is the
   * vectorised code that is checked */
  enum { CH = 4096 };
  static float in[CH], out[CH];
  double worst = 0, worst_libm = 0;
  float at = 0;
  long count = 0;
  uint32_t five;
  const float f5 = 5.0f;
  memcpy(&five, &f5, sizeof five);
  for (uint32_t b = 0; b <= five;) {
    int n = 0;
    for (; n + 1 < CH && b <= five; n += 2, b += 257) {
      float v;
      memcpy(&v, &b, sizeof v);
      in[n] = v;
      in[n + 1] = -v;
    }
    for (int i = 0; i < n; i++) out[i] = sf_erff_(in[i]);
    for (int i = 0; i < n; i++) {
      const double e = ulps(out[i], erf((double)in[i]));
      const double el = ulps(erff(in[i]), erf((double)in[i]));
      if (e > worst) worst = e, at = in[i];
      if (el > worst_libm) worst_libm = el;
    }
    count += n;
  }
  printf("# sf_erff_: %ld floats of [-5, 5], max error %.3f ulp at %.9g (libm erff: %.3f ulp)\n", count, worst,
         (double)at, worst_libm);
  snprintf(what, sizeof what, "erf within 1.5 ulp of the true value over [-5, 5] (max %.3f)", worst);
  ok(worst <= 1.5, what);

  ok(sf_erff_(0.0f) == 0.0f && !signbit(sf_erff_(0.0f)) && signbit(sf_erff_(-0.0f)), "erf(+-0) = +-0");
  ok(sf_erff_(INFINITY) == 1.0f && sf_erff_(-INFINITY) == -1.0f, "erf(+-inf) = +-1");
  ok(sf_erff_(4.0f) == 1.0f && sf_erff_(-100.0f) == -1.0f, "erf saturates to +-1 beyond 3.95");
  ok(isnan(sf_erff_(NAN)), "erf(NaN) is NaN");
  ok(sf_erff_(1e-30f) == (float)(1e-30 * 1.1283791670955126) && sf_erff_(1e-40f) != 0.0f,
     "erf keeps tiny and subnormal arguments");
  ok(fabsf(sf_erff_(1.0f) - 0.84270079f) <= 6e-8f && fabsf(sf_erff_(0.5f) - 0.52049988f) <= 6e-8f,
     "erf(1), erf(0.5) by hand");

  /* exp: 4 million evenly spaced points of [-104, 89] against double exp */
  double we = 0;
  const long NE = 4000000;
  for (long i0 = 0; i0 < NE; i0 += CH) {
    const int n = NE - i0 < CH ? (int)(NE - i0) : CH;
    for (int i = 0; i < n; i++) in[i] = (float)(-104.0 + 193.0 * (double)(i0 + i) / (double)NE);
    for (int i = 0; i < n; i++) out[i] = sf_expf_(in[i]);
    for (int i = 0; i < n; i++) {
      const double w = exp((double)in[i]);
      if (w < 1.2e-38) continue; /* subnormal results: absolute, checked below */
      const double e = ulps(out[i], w);
      if (e > we) we = e;
    }
  }
  snprintf(what, sizeof what, "exp within 1 ulp over [-87, 89] (max %.3f)", we);
  ok(we <= 1.0, what);
  ok(sf_expf_(0.0f) == 1.0f && sf_expf_(-INFINITY) == 0.0f && sf_expf_(INFINITY) == INFINITY &&
         isnan(sf_expf_(NAN)),
     "exp(0) = 1, exp(-inf) = 0, exp(inf) = inf, exp(NaN) = NaN");
  ok(fabs((double)sf_expf_(-100.0f) - exp(-100.0)) < 1.5e-45, "exp gives subnormal results");

  printf("1..%d\n", ntest);
  return nfail != 0;
}
