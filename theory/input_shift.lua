-- Input perturbations x -> A x: first-layer tuning represents them exactly; last-layer
-- tuning can't (Proposition), and full fine-tuning forgets (Theorem). Run:
--   surgft-lua theory/input_shift.lua [seeds=0,1,2,3,4] [d=40] [n=12] [m=3] [alpha=3] [scale=balanced]
--
-- Model f(x) = v^T phi(B x), B [k,d], v [k], squared loss; fine-tuning = small-step
-- gradient descent on the empirical loss of n target samples, from (B_src, v_src):
-- first-layer tuning moves B, last-layer tuning moves v, full fine-tuning both.
--
-- PROPOSITION (A invertible, labels unchanged: y_trg(A x) = y_src(x)).
--   (a) B = B_src A^-1 gives phi(B A x) = phi(B_src x): zero target loss, for any phi.
--   (b) With linear phi the predictor is w = B^T v. Last-layer tuning keeps w in the row
--       space of B_src (k-dimensional); the target regressor is w* = A^-T w_src. When
--       k < d and w* is outside that row space, no v reaches zero loss. Checked: the
--       closed-form minimum over v (least squares, on the n samples and on the target
--       population, whose second moment is A A^T) is > 0, and gradient descent on v
--       converges to the least-squares minimum (train loss and v agree).
--   Contrast row: A = 2 I keeps w* = w_src / 2 in the row space, so last-layer tuning
--   reaches zero there: the failure needs A^-T w_src outside row(B_src).
--
-- THEOREM (linear phi): there are d, k, source/target distributions and n such that,
-- with high probability over the n samples, first-layer tuning converges to zero
-- *population* target loss while full fine-tuning's population loss stays >= c > 0
-- along its whole trajectory.
--   Construction (the reference's, with two changes explained below): Q random
--   orthogonal splits R^d into S (m dims, the shifted subspace) and U (d - m dims).
--   Source inputs: half U z, half S z' (z, z' standard normal); labels w_src^T x.
--   Target = A source with A = P_U + alpha P_S: half the inputs in U with unchanged
--   labels, half in S scaled by alpha, labels w*^T x with w* = A^-1 w_src. B_src = s R
--   (R: k orthonormal rows), w_src = R^T v0 with v0 ~ N(0, I_k), v_src = v0 / s, so
--   B_src^T v_src = w_src: the source is fit exactly. Defaults d = 40, m = 3, alpha = 3,
--   n = 12: 6 samples in S (they span it) and 6 in U (6 of its 37 dimensions).
--   Why first-layer tuning reaches zero population loss:
--   * Every gradient step changes B by v r^T with r = (1/n) sum_i e_i x_i in span(X).
--     With v = v_src fixed, w = B^T v moves by -|v|^2 r: linear regression on w started
--     at w_src, restricted to span(X). It converges to w_src plus the smallest
--     correction in span(X) that fits the samples. The U samples are already fit by
--     w_src, so the correction lies in S and equals (1/alpha - 1) P_S w_src: the limit
--     is exactly w* (S is covered by the samples; U's unseen directions were never
--     wrong). This holds for any k and s.
--   Why full fine-tuning forgets:
--   * B P_perp = B_src P_perp for ever (P_perp: projector on span(X)'s complement), for
--     every method. On an unseen direction u, f(u) = v_t^T B_src u, and full tuning
--     moves v (dv = -B r): the error there is (P_perp B_src^T (v_t - v_src))^T u, while
--     the S error needs v and B to move. Both cannot vanish together: c > 0.
--   * To first order B_src^T (v_t - v_src) = -B_src^T B_src (integral of r). With k = d
--     and B_src = s R orthogonal (the reference: k = d, s = 1) B_src^T B_src = s^2 I maps
--     span(X) to itself, so the first-order forgetting is exactly zero and only a
--     second-order term remains (B_t differs from B_src by O(1/|v|^2)): c > 0 but tiny.
--     Change 1: k < d (default k = d/2), where B_src^T B_src = s^2 P_row(B_src) does
--     leave span(X): first-order forgetting. It also makes last-layer tuning fail
--     (w* leaves row(B_src)), so the three methods separate.
--   * The share of the correction carried by v is ~ s^2 / (|v|^2 + s^2). Change 2:
--     "balanced" scale s^2 = |v0|, so |v_src|^2 = s^2 (equal layer norms, the usual
--     balanced start of linear-network theory; gradient flow conserves B B^T - v v^T),
--     instead of the reference's s = 1 where |v|^2 ~ k >> s^2 and v barely moves.
--   The reference construction and k = d balanced are printed too, not asserted.
--   Claims (asserted construction, every seed): first-layer final population loss
--   <= 1e-6 x initial L0 (float32 descent); full fine-tuning's minimum population loss
--   over its whole trajectory >= 1e-4 x L0 (100 x the "zero" threshold; both thresholds
--   fixed before any run). Last-layer tuning is reported.
local sf = require "surgft"
local here = (debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./")
package.path = here .. "../?.lua;" .. package.path
local C = require "theory.common"

local M = {}

-- ---- the Proposition ----

-- a random invertible A = Q1 diag(s) Q2 with singular values in [lo, hi]
local function random_invertible(d, rng, lo, hi)
  local q1, q2 = C.orthogonal(d, rng), C.orthogonal(d, rng)
  local s = sf.rand({d}, rng):mul(hi - lo):add(lo)
  return q1:mul(s:view{1, d}:expand{d, d}):matmul(q2)
end

-- population loss of a linear predictor w under x = A x_src, x_src ~ N(0, I):
-- E (w^T x - w*^T x)^2 = |A^T (w - w*)|^2
local function pop_loss_gauss(A, w, wstar)
  local e = w:sub(wstar)
  return A:t():matmul(e):square():sum()
end

M.prop_defaults = {d = 20, k = 10, n = 60, seed = 0, steps = 20000}

function M.proposition(opts)
  local o = C.options(M.prop_defaults, opts, "input_shift.proposition")
  local d, k, n = o.d, o.k, o.n
  local rng = sf.rng(o.seed)
  local R = C.orthogonal(d, rng):narrow(1, 1, k):contiguous() -- [k,d] orthonormal rows
  local B = R
  local v = sf.randn({k}, rng)
  local wsrc = B:t():matmul(v)                                   -- [d]
  local Xsrc = sf.randn({n, d}, rng)
  local rows = {}
  local function case(name, A)
    local X = Xsrc:matmul(A:t())                                 -- target inputs A x
    local wstar = sf.solve(A:t(), wsrc)                          -- A^-T w_src
    local y = X:matmul(wstar)                                    -- = w_src^T x_src
    local ey2 = wsrc:square():sum()                       -- E y^2 = |w_src|^2
    -- (a) first layer, closed form: B A^-1 (B_1^T = A^-T B^T)
    local B1 = sf.solve(A:t(), B:t()):t():contiguous()
    local r = {name = name}
    r.first_closed_train = C.mse(X, y, B1, v) / ey2
    r.first_closed_pop = pop_loss_gauss(A, B1:t():matmul(v), wstar) / ey2
    -- the same B A^-1 with ReLU features: the source network's outputs are reproduced
    local yrelu = C.predict(Xsrc, B, v, "relu")
    r.first_closed_relu = C.predict(X, B1, v, "relu"):sub(yrelu):square():mean() / yrelu:square():mean()
    -- first layer, gradient descent
    local lr = C.step_size(X, B, v, 0.5)
    local g1 = C.gd{X = X, y = y, B = B, v = v, train = "first", lr = lr, steps = o.steps, tol = 1e-10}
    r.first_gd_train = g1.train_loss / ey2
    r.first_gd_pop = pop_loss_gauss(A, g1.B:t():matmul(g1.v), wstar) / ey2
    r.first_steps = g1.steps
    -- (b) last layer, closed form: least squares over v on the samples (features X B^T)
    -- and on the population (min_v |A^T B^T v - w_src|, as A^T w* = w_src)
    local F = X:matmul(B:t())                                    -- [n,k]
    local vls = sf.lstsq(F, y)
    r.last_closed_train = F:matmul(vls):sub(y):square():mean() / ey2
    local G = A:t():matmul(B:t())                                -- [d,k]
    local vpop = sf.lstsq(G, wsrc)
    r.last_closed_pop = G:matmul(vpop):sub(wsrc):square():sum() / ey2
    -- last layer, gradient descent (to its convergence: the train loss stops moving)
    local g2 = C.gd{X = X, y = y, B = B, v = v, train = "last", lr = C.step_size(X, B, v, 0.5), steps = o.steps}
    r.last_gd_train = g2.train_loss / ey2
    r.last_gd_pop = pop_loss_gauss(A, B:t():matmul(g2.v), wstar) / ey2
    r.last_gd_vs_ls = g2.v:sub(vls):norm() / vls:norm()
    r.last_steps = g2.steps
    -- is w* outside row(B)? its distance to the row space, relative
    local proj = B:t():matmul(B:matmul(wstar))
    r.wstar_out_of_rowspace = wstar:sub(proj):norm() / wstar:norm()
    rows[#rows + 1] = r
  end
  case("random A", random_invertible(d, rng, 0.5, 2.0))
  case("A = 2 I", sf.eye(d):mul(2))
  return rows
end

-- ---- the Theorem ----

M.thm_defaults = {d = 40, k = 20, m = 3, alpha = 3, n = 12, scale = "balanced", seeds = {0, 1, 2, 3, 4},
                  steps = 20000, tol = 1e-12, lr_frac = 0.2}

-- M.construct{d, k, m, alpha, n, scale, rng} -> the source network, target samples and
-- the population loss of any (B, v), for the construction in the header
function M.construct(o)
  local d, k, m, alpha, n, rng = o.d, o.k, o.m, o.alpha, o.n, o.rng
  assert(m >= 1 and m < d, "construct: need 1 <= m < d")
  local Q = C.orthogonal(d, rng)
  local S = Q:narrow(2, 1, m):contiguous()                      -- [d,m] shifted subspace
  local U = Q:narrow(2, m + 1, d - m):contiguous()              -- [d,d-m] unchanged subspace
  local R = C.orthogonal(d, rng):narrow(1, 1, k):contiguous()   -- [k,d] orthonormal rows
  local v0 = sf.randn({k}, rng)
  local wsrc = R:t():matmul(v0)                                  -- [d] in row(B_src)
  local s = 1
  if o.scale == "balanced" then s = math.sqrt(v0:norm())
  elseif o.scale ~= "reference" then error("construct: scale must be 'balanced' or 'reference', got " .. tostring(o.scale)) end
  local B, v = R:mul(s), v0:div(s)
  -- w* = A^-1 w_src = w_src + (1/alpha - 1) P_S w_src
  local wstar = wsrc:add(S:matmul(S:t():matmul(wsrc)):mul(1 / alpha - 1))
  local nu = n // 2                                              -- samples in U
  local ns = n - nu                                              -- samples in S
  local parts = {}
  if nu > 0 then parts[#parts + 1] = sf.randn({nu, d - m}, rng):matmul(U:t()) end
  if ns > 0 then parts[#parts + 1] = sf.randn({ns, m}, rng):matmul(S:t()):mul(alpha) end
  local X = sf.zeros(n, d)
  local row = 1
  for _, p in ipairs(parts) do
    X:narrow(1, row, p:size(1)):copy(p)
    row = row + p:size(1)
  end
  local y = X:matmul(wstar)
  -- population loss, in double: 0.5 |P_U e|^2 + 0.5 alpha^2 |P_S e|^2, e = w - w*
  local St = C.vec(S:t():contiguous())                           -- row-major [m,d]
  local ws = C.vec(wstar)
  local function pop(Bt, vt)
    local e = C.sub(C.vec(Bt:t():matmul(vt)), ws)
    local ee = C.dot(e, e)
    local se = 0
    for i = 1, m do
      local c = 0
      for j = 1, d do c = c + St[(i - 1) * d + j] * e[j] end
      se = se + c * c
    end
    return 0.5 * (ee - se) + 0.5 * alpha * alpha * se
  end
  return {X = X, y = y, B = B, v = v, wsrc = wsrc, wstar = wstar, S = S, U = U, pop = pop, scale = s}
end

-- one seed of the theorem: three methods from the same start, population loss tracked
function M.theorem_seed(o, seed)
  local c = M.construct{d = o.d, k = o.k, m = o.m, alpha = o.alpha, n = o.n, scale = o.scale, rng = sf.rng(seed)}
  local lr = C.step_size(c.X, c.B, c.v, o.lr_frac)
  local L0 = c.pop(c.B, c.v)
  local out = {seed = seed, L0 = L0, lr = lr}
  for _, method in ipairs{"first", "last", "all"} do
    local minpop, minstep = math.huge, 0
    local g = C.gd{X = c.X, y = c.y, B = c.B, v = c.v, train = method, lr = lr, steps = o.steps, tol = o.tol,
                   observe = function(step, B, v)
                     local p = c.pop(B, v)
                     if p < minpop then minpop, minstep = p, step end
                   end}
    out[method] = {pop = c.pop(g.B, g.v), train = g.train_loss, min_pop = minpop, min_step = minstep,
                   steps = g.steps, diverged = g.diverged, train0 = g.initial_loss}
  end
  return out
end

function M.theorem(opts)
  local o = C.options(M.thm_defaults, opts, "input_shift.theorem")
  if type(o.seeds) == "number" then o.seeds = {o.seeds} end
  local res = {}
  for i, seed in ipairs(o.seeds) do res[i] = M.theorem_seed(o, seed) end
  return res, o
end

M.ZERO = 1e-6   -- "~zero": population loss below this fraction of the initial one
M.AWAY = 1e-4   -- "bounded away": full fine-tuning's minimum above this fraction

-- the constructions run by default: the asserted one (options), and two for comparison
local function constructions(topts)
  local d = topts.d or M.thm_defaults.d
  return {
    {label = "main", opts = topts},
    {label = "reference (k = d, s = 1)", opts = {k = d, scale = "reference"}},
    {label = "k = d, balanced", opts = {k = d, scale = "balanced"}},
  }
end

-- run{prop = {...}, theorem = {...}, compare = true} -> {prop = rows, theorem = {{label,
-- opts, rows}, ...}, claims = {{text, ok}, ...}}; the first theorem entry is asserted
function M.run(opts)
  opts = opts or {}
  local popts, topts = opts.prop or {}, opts.theorem or {}
  local out = {prop = M.proposition(popts), claims = {}, theorem = {}}
  for i, c in ipairs(constructions(topts)) do
    if i == 1 or opts.compare ~= false then
      local t = {}
      for key, val in pairs(topts) do t[key] = val end
      for key, val in pairs(c.opts) do t[key] = val end
      local rows, o = M.theorem(t)
      out.theorem[#out.theorem + 1] = {label = c.label, opts = o, rows = rows}
    end
  end
  local cl = out.claims
  local rA, rI = out.prop[1], out.prop[2]
  cl[#cl + 1] = {text = "Prop (a): B_src A^-1 gives ~zero target loss (train, population, ReLU features) for random A",
                 ok = rA.first_closed_train < M.ZERO and rA.first_closed_pop < M.ZERO and rA.first_closed_relu < M.ZERO}
  cl[#cl + 1] = {text = "Prop (a): first-layer gradient descent reaches ~zero target loss (train and population)",
                 ok = rA.first_gd_train < M.ZERO and rA.first_gd_pop < M.ZERO}
  cl[#cl + 1] = {text = "Prop (b): k < d, random A: w* leaves row(B_src) and no v reaches zero loss (closed-form minima > 1e-3)",
                 ok = rA.wstar_out_of_rowspace > 1e-3 and rA.last_closed_train > 1e-3 and rA.last_closed_pop > 1e-3}
  cl[#cl + 1] = {text = "Prop (b): last-layer gradient descent agrees with the closed form (train loss within 1e-3, |v - v_ls|/|v_ls| < 1e-2)",
                 ok = math.abs(rA.last_gd_train - rA.last_closed_train) <= 1e-3 * rA.last_closed_train and rA.last_gd_vs_ls < 1e-2}
  cl[#cl + 1] = {text = "Prop contrast: A = 2 I keeps w* in row(B_src): last layer reaches ~zero loss",
                 ok = rI.last_closed_pop < M.ZERO and rI.last_gd_pop < M.ZERO}
  local th = out.theorem[1]
  local okf, oka = true, true
  for _, r in ipairs(th.rows) do
    if r.first.diverged or not (r.first.pop <= M.ZERO * r.L0) then okf = false end
    if r.all.diverged or not (r.all.min_pop >= M.AWAY * r.L0) then oka = false end
  end
  local desc = string.format("d = %d, k = %d, %s scale", th.opts.d, th.opts.k, th.opts.scale)
  cl[#cl + 1] = {text = string.format("Theorem (%s): first-layer population loss <= %g x L0, every seed", desc, M.ZERO), ok = okf}
  cl[#cl + 1] = {text = string.format("Theorem (%s): full fine-tuning's minimum population loss over the trajectory >= %g x L0, every seed",
                                      desc, M.AWAY), ok = oka}
  return out
end

function M.print(out)
  print("Proposition: input shift x -> A x, linear network, d = " .. M.prop_defaults.d .. ", k = " .. M.prop_defaults.k ..
        ", n = " .. M.prop_defaults.n .. "; losses relative to E[y^2]")
  local rows = {}
  for _, r in ipairs(out.prop) do
    rows[#rows + 1] = {r.name, r.first_closed_train, r.first_closed_pop, r.first_closed_relu, r.first_gd_train, r.first_gd_pop,
                       r.wstar_out_of_rowspace, r.last_closed_train, r.last_gd_train, r.last_closed_pop, r.last_gd_pop, r.last_gd_vs_ls}
  end
  C.print_table({"A", "1st B A^-1 train", "pop", "relu", "1st GD train", "pop", "|w* off row(B)|", "last LS train", "GD train",
                 "last LS pop", "GD pop", "|v-v_ls|"}, rows)
  for i, th in ipairs(out.theorem) do
    local o = th.opts
    print()
    print(string.format("Theorem [%s%s]: d = %d, k = %d, m = %d, alpha = %g, n = %d, %s scale; population target loss, L0 at the source model",
      th.label, i == 1 and ", asserted" or ", reported", o.d, o.k, o.m, o.alpha, o.n, o.scale))
    rows = {}
    for _, r in ipairs(th.rows) do
      rows[#rows + 1] = {r.seed, r.L0, r.first.pop, r.first.train, r.first.steps, r.last.pop, r.all.pop, r.all.train,
                         r.all.min_pop, r.all.min_pop / r.L0, r.all.min_step, r.all.steps}
    end
    C.print_table({"seed", "L0", "first pop", "first train", "steps", "last pop", "all pop", "all train", "all min pop",
                   "min/L0", "at step", "steps"}, rows)
  end
  print()
  return C.report_claims(out.claims)
end

C.main("theory.input_shift", ..., function(argv)
  local o = C.parse_args(argv, M.thm_defaults, "input_shift")
  local out = M.run{theorem = o}
  return M.print(out)
end)

return M
