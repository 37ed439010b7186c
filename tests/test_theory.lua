-- The theory checks at reduced sizes: the claims of input_shift, output_shift and phase
-- hold, the matrix-code descent matches the module protocol with frozen layers, and the
-- closed forms are what the statements say.
local lu = require "luaunit"
local sf = require "surgft"
-- the repository root, from this file's path (meson runs the suites from tests/)
local root = (debug.getinfo(1, "S").source:match("^@(.*)/tests/[^/]*$") or ".")
package.path = root .. "/?.lua;" .. package.path
local C = require "theory.common"
local IS = require "theory.input_shift"
local OS = require "theory.output_shift"
local PH = require "theory.phase"

local function assert_claims(claims)
  lu.assertTrue(#claims > 0)
  for _, c in ipairs(claims) do lu.assertTrue(c.ok, "claim failed: " .. c.text) end
end

local function maxdiff(a, b) return a:sub(b):abs():max() end

TestDescent = {}

-- the workbench's freezing (only the trainable records move, backward stops below the
-- lowest trainable layer) gives the same trajectory as the hand-written gradients
function TestDescent:test_module_matches_matrix_code()
  local r = sf.rng(3)
  local X, y = sf.randn({16, 5}, r), sf.randn({16}, r)
  local B, v = sf.randn({4, 5}, r):div(2), sf.randn({4}, r):div(2)
  for _, phi in ipairs{"linear", "relu"} do
    for _, train in ipairs{"first", "last", "all"} do
      local a = C.gd{X = X, y = y, B = B, v = v, phi = phi, train = train, lr = 0.05, steps = 20}
      local b = C.gd_module{X = X, y = y, B = B, v = v, phi = phi, train = train, lr = 0.05, steps = 20}
      local what = phi .. "/" .. train
      lu.assertTrue(maxdiff(a.B, b.B) < 1e-5, what .. ": B differs")
      lu.assertTrue(maxdiff(a.v, b.v) < 1e-5, what .. ": v differs")
      -- frozen layers did not move
      if train == "last" then lu.assertEquals(b.B:totable(), B:totable()) end
      if train == "first" then lu.assertEquals(b.v:totable(), v:totable()) end
      if train ~= "last" then lu.assertTrue(maxdiff(b.B, B) > 1e-3, what .. ": B did not move") end
    end
  end
end

function TestDescent:test_stops_at_tolerance_and_on_stall()
  local r = sf.rng(4)
  local X = sf.randn({20, 3}, r)
  local B, v = sf.randn({3, 3}, r), sf.randn({3}, r)
  local y = C.predict(X, B:mul(-1), v)            -- reachable by the first layer: B -> -B
  local g = C.gd{X = X, y = y, B = B, v = v, train = "first", lr = C.step_size(X, B, v, 0.5), steps = 100000, tol = 1e-10}
  lu.assertTrue(g.train_loss <= 1e-10 * g.initial_loss)
  lu.assertTrue(g.steps < 100000)
  -- an unreachable target with a non-negative ReLU network stalls instead of running on
  local h = C.gd{X = X, y = y:abs():mul(-1), B = B, v = v:abs(), phi = "relu", train = "first",
                 lr = C.step_size(X, B, v, 0.3), steps = 100000, stall = 500}
  lu.assertTrue(h.steps < 100000)
  lu.assertTrue(h.train_loss > 0.5 * y:square():mean())
end

function TestDescent:test_options_errors()
  lu.assertErrorMsgContains("input_shift.theorem: unknown option 'sede'", IS.theorem, {sede = 1})
  lu.assertErrorMsgContains("gd: train must be 'first', 'last' or 'all', got nil", C.gd,
    {X = sf.zeros(2, 2), y = sf.zeros(2), B = sf.eye(2), v = sf.ones(2), lr = 0.1})
  lu.assertErrorMsgContains("arguments are key=value", C.parse_args, {"d"}, {d = 1}, "x")
  local o = C.parse_args({"d=3", "seeds=0,1", "scale=reference", "plots=false"},
    {d = 1, seeds = {0}, scale = "balanced", plots = true}, "x")
  lu.assertEquals(o, {d = 3, seeds = {0, 1}, scale = "reference", plots = false})
end

TestInputShift = {}

function TestInputShift:test_construction_is_what_the_header_says()
  local c = IS.construct{d = 10, k = 5, m = 2, alpha = 3, n = 6, scale = "balanced", rng = sf.rng(1)}
  -- the source is fit exactly: B_src^T v_src = w_src
  lu.assertTrue(maxdiff(c.B:t():matmul(c.v), c.wsrc) < 1e-5)
  -- balanced: |v|^2 = s^2 = the squared singular values of B
  lu.assertAlmostEquals(c.v:square():sum(), c.scale ^ 2, 1e-4)
  -- w* = A^-1 w_src: unchanged on U, divided by alpha on S
  lu.assertTrue(maxdiff(c.U:t():matmul(c.wstar), c.U:t():matmul(c.wsrc)) < 1e-5)
  lu.assertTrue(maxdiff(c.S:t():matmul(c.wstar), c.S:t():matmul(c.wsrc):div(3)) < 1e-5)
  -- 3 samples in U, 3 in S (scaled by alpha), labels w*^T x
  lu.assertTrue(c.X:narrow(1, 1, 3):matmul(c.S):abs():max() < 1e-5)
  lu.assertTrue(c.X:narrow(1, 4, 3):matmul(c.U):abs():max() < 1e-5)
  lu.assertTrue(maxdiff(c.X:matmul(c.wstar), c.y) < 1e-5)
  -- population loss: 0 at w*, and the closed form at w_src: 0.5 alpha^2 |P_S (w_src - w*)|^2
  local Bstar = c.B:clone()
  lu.assertTrue(c.pop(c.B, c.v) > 0)
  local e = c.S:t():matmul(c.wsrc):mul(1 - 1 / 3)
  lu.assertAlmostEquals(c.pop(c.B, c.v), 0.5 * 9 * e:square():sum(), 1e-4)
  -- B with B^T v = w*: B + v (w* - w_src)^T / |v|^2
  Bstar:add_(sf.outer(c.v, c.wstar:sub(c.wsrc)):div(c.v:square():sum()))
  lu.assertTrue(c.pop(Bstar, c.v) < 1e-9)
end

function TestInputShift:test_claims_small()
  local out = IS.run{prop = {d = 8, k = 4, n = 24, steps = 8000},
                     theorem = {d = 16, k = 8, m = 2, n = 8, seeds = {0, 1}, steps = 8000}, compare = false}
  assert_claims(out.claims)
  local rA = out.prop[1]
  lu.assertTrue(rA.first_closed_pop < 1e-6 and rA.first_gd_pop < 1e-6)
  lu.assertTrue(rA.last_closed_pop > 1e-3)
  for _, r in ipairs(out.theorem[1].rows) do
    lu.assertTrue(r.first.pop <= 1e-6 * r.L0)
    lu.assertTrue(r.all.min_pop >= 1e-4 * r.L0)
    lu.assertTrue(r.all.train <= 1e-9 * r.all.train0, "full fine-tuning fits the samples too")
  end
end

-- with k = d and B orthogonal, the first-order forgetting vanishes (B^T B maps span(X)
-- to itself): full tuning's loss is orders of magnitude below the k < d case
function TestInputShift:test_isotropic_first_layer_forgets_little()
  local base = {d = 16, m = 2, n = 8, seeds = {0}, steps = 8000}
  local function min_rel(k)
    local t = {}
    for key, val in pairs(base) do t[key] = val end
    t.k = k
    local r = IS.theorem(t)[1]
    return r.all.min_pop / r.L0
  end
  lu.assertTrue(min_rel(16) < 0.1 * min_rel(8))
end

TestOutputShift = {}

function TestOutputShift:test_claims_small()
  local out = OS.run{d = 4, k = 8, n = 60, n_test = 300, seeds = {0}, ts = {-1, 2}, steps = 4000, stall = 500}
  assert_claims(out.claims)
  for _, row in ipairs(out.rows) do
    local r = row.seeds[1]
    if row.case.phi == "relu" and row.case.head == "nonneg" and row.t < 0 then
      lu.assertTrue(r.first.min_out >= 0)
      lu.assertTrue(r.first.train >= 0.99, "t = -1: no better than predicting 0")
      lu.assertTrue(r.all.test < 0.1, "full tuning can flip the head")
    end
    if row.t > 0 or row.case.phi == "linear" then lu.assertTrue(r.first_closed < 1e-6) end
  end
end

TestPhase = {}

function TestPhase:test_small_sweep_csv_and_claims()
  local dir = os.tmpname()
  os.remove(dir)
  local out = PH.run{settings = {{d = 10, k = 5, m = 2}}, ns = {2, 6, 24}, seeds = {0}, out = dir, plots = false,
                     steps = 6000}
  assert_claims(out.claims)
  local f = assert(io.open(dir .. "/phase.csv"))
  local lines = {}
  for line in f:lines() do lines[#lines + 1] = line end
  f:close()
  lu.assertEquals(lines[1], "d,k,m,alpha,n,n_s,n_u,seed,method,L0,pop,rel,train_rel,steps,converged,success")
  lu.assertEquals(#lines, 1 + 3 * 3)
  -- n = 2: one S sample can't span m = 2 dims: first layer fails; n = 24 spans R^10: all succeed
  local s = out.summary[1].ns
  lu.assertEquals(s[1].first.nsucc, 0)
  lu.assertEquals(s[3].first.nsucc, 1)
  lu.assertEquals(s[3].all.nsucc, 1)
  lu.assertEquals(s[3].last.nsucc, 0)
  os.remove(dir .. "/phase.csv")
  os.remove(dir)
end

os.exit(lu.LuaUnit.run())
