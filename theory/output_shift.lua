-- Output perturbations y -> t y: last-layer tuning fits them; first-layer tuning with ReLU
-- and a non-negative head cannot fit t < 0. Run:
--   surgft-lua theory/output_shift.lua [seeds=0,1,2] [d=10] [k=20] [n=200] [ts=-1,-0.5,0.5,2]
--
-- Model f(x) = v^T phi(B x), B [k,d], v [k], squared loss, x ~ N(0, I_d). The source
-- network (B_src ~ N(0, 1/d), v_src ~ N(0, 1/k), or |N(0, 1/k)| for a non-negative head)
-- defines y_src = f_src(x); the target is y_trg = t y_src on the same inputs. Each method
-- runs small-step gradient descent on n target samples from (B_src, v_src) until the loss
-- is ~0 or stops moving; losses are on a fresh test set of n_test inputs (the
-- population estimate) and on the n samples, relative to E[y_src^2].
--
-- Statements checked (asserted, every seed):
--   * Last-layer tuning: v = t v_src gives f = t f_src exactly (any phi, any t), and
--     gradient descent on v (a convex least-squares problem on fixed features, n > k)
--     reaches ~zero test loss.
--   * First-layer tuning, ReLU, v_src >= 0: f(x) = sum_j v_j relu(.) >= 0 for every B, so
--     for t < 0 (targets <= 0) the training loss can't go below mean(min(y, 0)^2) =
--     mean(y^2), the loss of predicting 0. Checked: every output of the tuned network is
--     >= 0 and its loss is >= that bound.
-- Reported (intermediate cases, not asserted): first-layer tuning for t > 0 with ReLU
-- (B = t B_src is exact by positive homogeneity, whether descent finds it is measured),
-- with linear phi (B = t B_src for any t), and with a mixed-sign head for t < 0 (units with
-- v_j < 0 can produce negative outputs, but t f_src is not representable in general);
-- full fine-tuning in every case.
local sf = require "surgft"
local here = (debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./")
package.path = here .. "../?.lua;" .. package.path
local C = require "theory.common"

local M = {}

M.defaults = {d = 10, k = 20, n = 200, n_test = 2000, seeds = {0, 1, 2}, ts = {-1, -0.5, 0.5, 2},
              steps = 6000, tol = 1e-12, stall = 1000, lr_frac = 0.3}

M.ZERO = 1e-6

-- the cases: activation and head sign
M.cases = {
  {phi = "relu", head = "nonneg"},
  {phi = "relu", head = "mixed"},
  {phi = "linear", head = "mixed"},
}

local function source(o, case, rng)
  local B = sf.randn({o.k, o.d}, rng):div(math.sqrt(o.d))
  local v = sf.randn({o.k}, rng):div(math.sqrt(o.k))
  if case.head == "nonneg" then v = v:abs() end
  return B, v
end

-- one (case, t, seed): closed forms and the three descents
function M.run_one(o, case, t, seed)
  local rng = sf.rng(seed)
  local B, v = source(o, case, rng)
  local X, Xt = sf.randn({o.n, o.d}, rng), sf.randn({o.n_test, o.d}, rng)
  local ysrc, ysrc_t = C.predict(X, B, v, case.phi), C.predict(Xt, B, v, case.phi)
  local y, yt = ysrc:mul(t), ysrc_t:mul(t)
  local norm = ysrc_t:square():mean()                       -- E y_src^2 (test set)
  local function test_loss(Bx, vx) return C.predict(Xt, Bx, vx, case.phi):sub(yt):square():mean() / norm end
  local r = {seed = seed, t = t}
  r.last_closed = test_loss(B, v:mul(t))
  -- the best any non-negative predictor can do on the training set: mean(min(y, 0)^2)
  r.nonneg_bound = y:minimum(sf.zeros(o.n)):square():mean() / ysrc:square():mean()
  if t > 0 or case.phi == "linear" then r.first_closed = test_loss(B:mul(t), v) end
  local lr = C.step_size(X, B, v, o.lr_frac)
  for _, method in ipairs{"first", "last", "all"} do
    local g = C.gd{X = X, y = y, B = B, v = v, phi = case.phi, train = method, lr = lr, steps = o.steps,
                   tol = o.tol, stall = o.stall}
    r[method] = {test = test_loss(g.B, g.v), train = g.train_loss / ysrc:square():mean(), steps = g.steps,
                 diverged = g.diverged, min_out = C.predict(X, g.B, g.v, case.phi):min()}
  end
  return r
end

-- run(opts) -> {rows = {{case, t, seeds = {r...}}}, claims}
function M.run(opts)
  local o = C.options(M.defaults, opts, "output_shift")
  if type(o.seeds) == "number" then o.seeds = {o.seeds} end
  if type(o.ts) == "number" then o.ts = {o.ts} end
  local out = {rows = {}, claims = {}, opts = o}
  local ok_last, ok_last_cf, ok_relu, nrelu = true, true, true, 0
  for _, case in ipairs(M.cases) do
    for _, t in ipairs(o.ts) do
      local row = {case = case, t = t, seeds = {}}
      for i, seed in ipairs(o.seeds) do
        local r = M.run_one(o, case, t, seed)
        row.seeds[i] = r
        if not (r.last_closed < M.ZERO) then ok_last_cf = false end
        if r.last.diverged or not (r.last.test < M.ZERO) then ok_last = false end
        if case.phi == "relu" and case.head == "nonneg" and t < 0 then
          nrelu = nrelu + 1
          if not (r.first.min_out >= 0 and r.first.train >= r.nonneg_bound * (1 - 1e-5)) then ok_relu = false end
        end
      end
      out.rows[#out.rows + 1] = row
    end
  end
  local cl = out.claims
  cl[#cl + 1] = {text = "last layer, closed form v = t v_src: ~zero test loss, every phi, head, t, seed", ok = ok_last_cf}
  cl[#cl + 1] = {text = string.format("last-layer gradient descent: test loss < %g x E[y_src^2], every case", M.ZERO), ok = ok_last}
  cl[#cl + 1] = {text = string.format("first layer, ReLU, v_src >= 0, t < 0 (%d runs): outputs stay >= 0 and the loss stays >= mean(min(y,0)^2)",
                                      nrelu), ok = ok_relu and nrelu > 0}
  return out
end

local function mean_of(row, f)
  local xs = {}
  for i, r in ipairs(row.seeds) do xs[i] = f(r) end
  return C.mean(xs)
end

function M.print(out)
  local o = out.opts
  print(string.format("Output shift y -> t y: d = %d, k = %d, n = %d, n_test = %d; losses relative to E[y_src^2], mean over %d seed(s)",
    o.d, o.k, o.n, o.n_test, #o.seeds))
  local rows = {}
  for _, row in ipairs(out.rows) do
    local c = row.case
    local fc = row.seeds[1].first_closed
    rows[#rows + 1] = {
      c.phi, c.head, row.t,
      mean_of(row, function(r) return r.last_closed end),
      mean_of(row, function(r) return r.last.test end),
      fc and mean_of(row, function(r) return r.first_closed end) or "-",
      c.head == "nonneg" and mean_of(row, function(r) return r.nonneg_bound end) or "-",
      mean_of(row, function(r) return r.first.train end),
      mean_of(row, function(r) return r.first.test end),
      C.min((function() local xs = {} for i, r in ipairs(row.seeds) do xs[i] = r.first.min_out end return xs end)()),
      C.max((function() local xs = {} for i, r in ipairs(row.seeds) do xs[i] = r.first.steps end return xs end)()),
      mean_of(row, function(r) return r.all.test end),
    }
  end
  C.print_table({"phi", "v_src", "t", "last v=t*v_src", "last GD test", "first B=t*B_src", "nonneg bound",
                 "first GD train", "first GD test", "first min f(x)", "first steps", "all GD test"}, rows)
  print("  (nonneg bound: the lowest training loss any network with outputs >= 0 can reach; first min f(x): the")
  print("   smallest output of the first-layer-tuned network on the training inputs, over seeds; first steps: the")
  print(string.format("   most descent steps over seeds, %d = the cap, the loss still moving)", o.steps))
  print()
  return C.report_claims(out.claims)
end

C.main("theory.output_shift", ..., function(argv)
  local out = M.run(C.parse_args(argv, M.defaults, "output_shift"))
  return M.print(out)
end)

return M
