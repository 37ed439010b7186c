-- Optimizers: single steps against closed forms, lr scales reaching the update, frozen
-- parameters untouched and stateless, weight-decay flags, state on freeze/unfreeze,
-- state save/restore, and the kernels' error contract.
local lu = require "luaunit"
local sf = require "surgft"
local nn = require "surgft.nn"
local optim = require "surgft.optim"

-- a model with two parameters a [3] and b [2], gradients set by hand
local Two = nn.class("Two")
function Two:init()
  self:param("a", sf.tensor{1, -2, 3})
  self:param("b", sf.tensor{0.5, 4})
end
function Two:forward(x) return x end

local function setup(ga, gb)
  local m = Two():build()
  m:parameter("a").grad:copy(sf.tensor(ga or {0.1, 0.2, -0.3}))
  m:parameter("b").grad:copy(sf.tensor(gb or {1, -1}))
  return m
end

local function close(actual, expected, tol)
  local t = actual:totable()
  for i = 1, #expected do lu.assertAlmostEquals(t[i], expected[i], tol or 1e-6) end
end

TestSGD = {}

function TestSGD:test_plain_with_decay()
  local m = setup()
  local o = optim.sgd(m, {lr = 0.1, weight_decay = 0.01})
  o:step()
  -- p - lr * (g + wd * p)
  close(m:parameter("a").value, {1 - 0.1 * (0.1 + 0.01), -2 - 0.1 * (0.2 - 0.02), 3 - 0.1 * (-0.3 + 0.03)})
end

function TestSGD:test_momentum_and_nesterov()
  for _, nesterov in ipairs{false, true} do
    local m = setup()
    local o = optim.sgd(m, {lr = 0.1, momentum = 0.9, nesterov = nesterov})
    local p, buf = 1.0, nil
    for _ = 1, 3 do
      o:step()
      local g = 0.1
      buf = buf and 0.9 * buf + g or g
      p = p - 0.1 * (nesterov and (g + 0.9 * buf) or buf)
    end
    lu.assertAlmostEquals(m:parameter("a").value:get(1), p, 1e-6)
  end
end

TestAdam = {}

local function adam_ref(p, g, steps, lr, wd, decoupled)
  local m, v = 0, 0
  for t = 1, steps do
    local gi = decoupled and g or g + wd * p
    if decoupled then p = p * (1 - lr * wd) end
    m = 0.9 * m + 0.1 * gi
    v = 0.999 * v + 0.001 * gi * gi
    local mh, vh = m / (1 - 0.9 ^ t), v / (1 - 0.999 ^ t)
    p = p - lr * mh / (math.sqrt(vh) + 1e-8)
  end
  return p
end

function TestAdam:test_coupled_weight_decay_matches_closed_form()
  local m = setup()
  local o = optim.adam(m, {lr = 0.01, weight_decay = 1e-4})
  for _ = 1, 3 do o:step() end
  local a = m:parameter("a").value:totable()
  lu.assertAlmostEquals(a[1], adam_ref(1, 0.1, 3, 0.01, 1e-4, false), 1e-6)
  lu.assertAlmostEquals(a[3], adam_ref(3, -0.3, 3, 0.01, 1e-4, false), 1e-6)
end

function TestAdam:test_adamw_is_decoupled()
  local m = setup()
  local o = optim.adamw(m, {lr = 0.01, weight_decay = 0.1})
  for _ = 1, 2 do o:step() end
  lu.assertAlmostEquals(m:parameter("a").value:get(2), adam_ref(-2, 0.2, 2, 0.01, 0.1, true), 1e-6)
  lu.assertNotAlmostEquals(adam_ref(-2, 0.2, 2, 0.01, 0.1, true), adam_ref(-2, 0.2, 2, 0.01, 0.1, false), 1e-7)
end

TestSelection = {}

function TestSelection:test_lr_scale_reaches_the_update()
  local m = setup({1, 1, 1}, {1, 1})
  m:parameter("b").lr_scale = 0.25
  optim.sgd(m, {lr = 0.1}):step()
  close(m:parameter("a").value, {0.9, -2.1, 2.9})
  close(m:parameter("b").value, {0.5 - 0.025, 4 - 0.025})
end

function TestSelection:test_frozen_is_untouched_and_stateless()
  for _, kind in ipairs{"sgd", "adam", "adamw"} do
    local m = setup()
    m:parameter("a").trainable = false
    local before = m:parameter("a").value:clone()
    local o = optim[kind](m, {lr = 0.1, weight_decay = 0.5, momentum = kind == "sgd" and 0.9 or nil})
    o:step(); o:step()
    lu.assertTrue(m:parameter("a").value:equal(before), kind .. ": a frozen parameter moved")
    lu.assertEquals(o:state_names(), {"b"})
  end
end

function TestSelection:test_decay_flag()
  local m = setup({0, 0, 0}, {0, 0})
  m:parameter("b").decay = false
  optim.sgd(m, {lr = 0.1, weight_decay = 0.5}):step()
  close(m:parameter("a").value, {1 - 0.05, -2 + 0.1, 3 - 0.15})
  close(m:parameter("b").value, {0.5, 4})
end

function TestSelection:test_state_on_change_keep_and_reset()
  local function run(on_change)
    local m = setup()
    local o = optim.adam(m, {lr = 0.1, on_change = on_change})
    o:step()
    m:parameter("a").trainable = false
    o:step()
    m:parameter("a").trainable = true
    m:parameter("a").grad:fill(1) -- a new gradient: kept moments mix it with the old one
    o:step()
    return m:parameter("a").value:get(1), o
  end
  local keep, ok = run("keep")
  local reset = run("reset")
  lu.assertEquals(ok.state.a.step, 2) -- kept: two updates counted across the freeze
  -- reset: the third step starts from fresh moments (step 1), so the update is the
  -- full lr * sign(g) again; keep continues the bias-corrected moments
  lu.assertAlmostEquals(reset, 1 - 0.1 - 0.1, 1e-6)
  lu.assertNotAlmostEquals(keep, reset, 1e-3)
  local m = setup()
  local o = optim.adam(m, {lr = 0.1, on_change = "reset"})
  o:step()
  m:parameter("b").lr_scale = 0.5
  o:step()
  lu.assertEquals(o.state.b.step, 1) -- a new lr scale restarted b's state
  lu.assertEquals(o.state.a.step, 2)
end

function TestSelection:test_reset_drops_everything()
  local m = setup()
  local o = optim.adam(m)
  o:step()
  o:reset()
  lu.assertEquals(o:state_names(), {})
end

function TestSelection:test_state_dict_round_trip()
  local m1, m2 = setup(), setup()
  local o1, o2 = optim.adam(m1, {lr = 0.05}), optim.adam(m2, {lr = 0.05})
  o1:step()
  o2:load_state_dict(o1:state_dict())
  m2:parameter("a").value:copy(m1:parameter("a").value)
  m2:parameter("b").value:copy(m1:parameter("b").value)
  o1:step(); o2:step()
  lu.assertTrue(m1:parameter("a").value:equal(m2:parameter("a").value))
  lu.assertTrue(m1:parameter("b").value:equal(m2:parameter("b").value))
  local o3 = optim.sgd(setup())
  lu.assertErrorMsgContains("state is for optimizer 'adam', this one is 'sgd'", o3.load_state_dict, o3, o1:state_dict())
end

TestErrors = {}

function TestErrors:test_options()
  local m = setup()
  lu.assertErrorMsgContains("optim.adam: unknown option 'lrr'", optim.adam, m, {lrr = 1})
  lu.assertErrorMsgContains("optim.sgd: option 'lr' must be a number, got string", optim.sgd, m, {lr = "x"})
  lu.assertErrorMsgContains("optim.sgd: lr must be >= 0, got -1", optim.sgd, m, {lr = -1})
  lu.assertErrorMsgContains("on_change must be 'keep' or 'reset', got 'x'", optim.adam, m, {on_change = "x"})
  lu.assertErrorMsgContains("argument #1 must be a model", optim.adam, 3)
end

function TestErrors:test_kernels()
  local K = sf.kernels
  local p, g = sf.zeros(3), sf.zeros(4)
  lu.assertErrorMsgContains("argument #2 (grad) has shape [4], expected the parameter's shape [3]",
    K.sgd_step, p, g, nil, 0.1, 0, 0, false, 0, true)
  lu.assertErrorMsgContains("needs a momentum buffer", K.sgd_step, p, sf.zeros(3), nil, 0.1, 0.9, 0, false, 0, true)
  lu.assertErrorMsgContains("(param) of shape [3,2] must be contiguous", K.adam_step, sf.zeros(2, 3):t(), sf.zeros(6),
    sf.zeros(6), sf.zeros(6), 0.1, 0.9, 0.999, 1e-8, 0, false, 1)
  lu.assertErrorMsgContains("argument #11 (step) is 0, expected >= 1", K.adam_step, p, sf.zeros(3), sf.zeros(3),
    sf.zeros(3), 0.1, 0.9, 0.999, 1e-8, 0, false, 0)
end

TestStats = {}

function TestStats:test_stats_and_snr()
  local K = sf.kernels
  local st = K.stats(sf.tensor{3, -4, 0 / 0, math.huge})
  lu.assertEquals(st.norm, 5)
  lu.assertEquals(st.max_abs, 4)
  lu.assertEquals(st.nan, 1)
  lu.assertEquals(st.inf, 1)
  lu.assertEquals(K.stats(sf.tensor{{3, 0}, {0, 4}}:t()).norm, 5) -- strided
  -- per-example SNR: column means 2 and 2.25, sample variances 2 and 0.125
  lu.assertAlmostEquals(K.snr_examples(sf.tensor{{1, 2}, {3, 2.5}}, 0), (4 / 2 + 2.25 ^ 2 / 0.125) / 2, 1e-9)
  -- the code variant: mean of g^2 / var(g along dim 1), var with ddof 1
  lu.assertAlmostEquals(K.snr_code(sf.tensor{{1, 2}, {3, 4}}, 0), (1 / 2 + 9 / 2 + 4 / 2 + 16 / 2) / 4, 1e-9)
  lu.assertErrorMsgContains("expected [B,...] with B >= 2 examples", K.snr_examples, sf.zeros(1, 3))
end

os.exit(lu.LuaUnit.run())
