/* Lua bindings for linear algebra (LAPACK): solve, lstsq, qr, svd, eigh, inverse. Each is
 * a tensor method and a library function (sf.svd(a) == a:svd()). */
#include "sfl.h"

/* a:solve(b): x with a x = b; b is [n] or [n,k] */
static int t_solve(lua_State *L) {
  sf_tensor *a = sfl_check(L, 1), *b = sfl_check(L, 2);
  sf_tensor *x = sfl_push(L);
  SFL_TRY(L, sf_solve(x, a, b));
  sfl_account(L, x);
  return 1;
}

/* a:lstsq(b): the minimum-norm x minimising ||a x - b|| */
static int t_lstsq(lua_State *L) {
  sf_tensor *a = sfl_check(L, 1), *b = sfl_check(L, 2);
  sf_tensor *x = sfl_push(L);
  SFL_TRY(L, sf_lstsq(x, a, b));
  sfl_account(L, x);
  return 1;
}

static int t_inverse(lua_State *L) {
  sf_tensor *a = sfl_check(L, 1);
  sf_tensor *x = sfl_push(L);
  SFL_TRY(L, sf_inverse(x, a));
  sfl_account(L, x);
  return 1;
}

/* a:qr() -> Q [m,k], R [k,n] with k = min(m,n) */
static int t_qr(lua_State *L) {
  sf_tensor *a = sfl_check(L, 1);
  sf_tensor *q = sfl_push(L), *r = sfl_push(L);
  SFL_TRY(L, sf_qr(q, r, a));
  sfl_account(L, q);
  sfl_account(L, r);
  return 2;
}

/* a:svd() -> U [m,k], S [k] (descending), Vt [k,n] */
static int t_svd(lua_State *L) {
  sf_tensor *a = sfl_check(L, 1);
  sf_tensor *u = sfl_push(L), *s = sfl_push(L), *vt = sfl_push(L);
  SFL_TRY(L, sf_svd(u, s, vt, a));
  sfl_account(L, u);
  sfl_account(L, vt);
  return 3;
}

/* a:eigh() -> w [n] (ascending), V [n,n] (eigenvectors in columns); reads a's lower
 * triangle */
static int t_eigh(lua_State *L) {
  sf_tensor *a = sfl_check(L, 1);
  sf_tensor *w = sfl_push(L), *v = sfl_push(L);
  SFL_TRY(L, sf_eigh(w, v, a));
  sfl_account(L, v);
  return 2;
}

static const luaL_Reg methods[] = {
    {"solve", t_solve}, {"lstsq", t_lstsq}, {"inverse", t_inverse}, {"qr", t_qr},
    {"svd", t_svd},     {"eigh", t_eigh},   {NULL, NULL},
};

const sfl_area sfl_area_linalg = {NULL, methods, NULL, NULL};
