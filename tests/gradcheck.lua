-- Finite-difference gradient checks for modules, functions and losses (float32-aware).
--
-- The scalar checked is L = sum(out * R) for a fixed random R, accumulated in double.
-- Central differences use the step actually taken in float32 ((x+h) - (x-h) after
-- rounding). A coordinate whose differences at two steps betray a kink in reach (a ReLU
-- or a max-pool tie crossed by the step, see gc.numeric) is skipped and counted, never
-- compared: the decision uses numeric values only, so a skip can reduce coverage (capped
-- per check) but cannot hide a wrong analytic gradient. GRADCHECK_VERBOSE=1 prints the
-- max difference and the skips of every check.
local sf = require "surgft"

local gc = {}

gc.rtol, gc.atol = 2e-2, 1e-3

-- sum(t * R) in double, and sum(|t * R|) (the scale of float32 rounding noise in it);
-- R is a Lua table of the same numel (t's elements in row-major order) or a tensor
function gc.dot(t, R)
  local v, s, a = t:contiguous():reshape(-1):totable(), 0, 0
  if type(R) ~= "table" then R = R:contiguous():reshape(-1):totable() end
  assert(#v == #R, string.format("gradcheck.dot: %d values against %d weights", #v, #R))
  for i = 1, #v do
    local p = v[i] * R[i]
    s, a = s + p, a + math.abs(p)
  end
  return s, a
end

-- k distinct 1-based indices out of n (all of them when n <= k), drawn with rng
function gc.subset(n, k, rng)
  if n <= k then
    local all = {}
    for i = 1, n do all[i] = i end
    return all
  end
  local p = rng:permutation(n)
  local out = {}
  for i = 1, k do out[i] = p[i] end
  table.sort(out)
  return out
end

-- numeric derivatives of loss() (a function returning a number and optionally the
-- scale of its rounding noise) with respect to the elements idx of x (perturbed in place
-- through a flat view; x must be contiguous). Returns {[i] = value or false (a kink in
-- reach: skipped)}.
--
-- Kinks: with a slope jump J at distance d from x, the central difference with step h/2
-- (the value returned) is off by J (1/2 - d/h) when d < h/2. Two signals expose it:
-- the central differences at h and h/2 differ by J d / (2h), and the one-sided slope
-- gaps A (step h) and B (step h/2), equal to h L'' and h/2 L'' on smooth functions (so
-- A - 2B is O(h^2)), give A - 2B = J (3d/h - 1). When both stay within a band b, the
-- error of the returned value is at most 1.5 b; b is 2/3 of the comparison tolerance
-- plus the float32 noise of the differences.
--
-- probe (optional, see gc.kink_probe) detects kinks exactly: a coordinate whose steps
-- change a ReLU's active set or a max-pool's choice anywhere in the module is skipped.
function gc.numeric(loss, x, idx, eps, rtol, atol, probe)
  assert(x:is_contiguous(), "gradcheck.numeric: the perturbed tensor must be contiguous")
  rtol, atol = rtol or gc.rtol, atol or gc.atol
  local xf, out = x:view(-1), {}
  local crossed
  local function at()
    local l, s = loss()
    if probe and probe:changed() then crossed = true end
    return l, s or 0
  end
  for _, i in ipairs(idx) do
    local v = xf:get(i)
    crossed = false
    local l0, scale = at()
    local function central(h)
      xf:set(i, v + h); local hp = xf:get(i); local lp = at()
      xf:set(i, v - h); local hm = xf:get(i); local lm = at()
      xf:set(i, v)
      return (lp - lm) / (hp - hm), (lp - l0) / (hp - v) - (l0 - lm) / (v - hm), hp - hm
    end
    local c1, A, s1 = central(eps)
    local c2, B, s2 = central(eps / 2)
    -- float32 noise of the loss (about 1e-6 of its absolute scale), through the steps
    local noise = 1e-6 * scale * (10 / s2 + 2 / s1)
    local band = (rtol * math.abs(c2) + atol) / 1.5 + noise
    local kink = crossed or math.abs(c1 - c2) > band or math.abs(A - 2 * B) > band
    out[i] = (not kink) and c2 or false
  end
  return out
end

-- kink_probe(m): remembers, at the current point, the active set of every ReLU and the
-- argmax of every MaxPool2d in the module tree (after a forward); probe:changed() says
-- whether the last forward differs from that.
function gc.kink_probe(m)
  local probes = {}
  local function sig(mod)
    local t = mod:type()
    if t == "ReLU" then return mod.output:gt(0) end
    if t == "MaxPool2d" then return mod._s_idx and mod._s_idx:clone() end
    return nil
  end
  m:visit(function(mod)
    local s0 = sig(mod)
    if s0 then probes[#probes + 1] = {mod = mod, base = s0} end
  end)
  local probe = {count = #probes}
  function probe.changed()
    for _, p in ipairs(probes) do
      if not sig(p.mod):equal(p.base) then return true end
    end
    return false
  end
  return probe
end

-- Compares analytic gradients (a tensor, same shape as x) with numeric ones on idx.
-- Returns ok, max |a - n|, a message describing the worst coordinate, #skipped.
function gc.compare(ana, num, idx, rtol, atol)
  rtol, atol = rtol or gc.rtol, atol or gc.atol
  local a = ana:contiguous():reshape(-1)
  local ok, worst, msg, skipped, worst_excess = true, 0, "", 0, -math.huge
  for _, i in ipairs(idx) do
    local n = num[i]
    if n == false then
      skipped = skipped + 1
    else
      local av = a:get(i)
      local d = math.abs(av - n)
      local bound = rtol * math.max(math.abs(av), math.abs(n)) + atol
      if d > worst then worst = d end
      if not (d <= bound) then ok = false end
      if d - bound > worst_excess then
        worst_excess = d - bound
        msg = string.format("element %d: analytic %.6g, numeric %.6g", i, av, n)
      end
    end
  end
  return ok, worst, msg, skipped
end

-- A report collects the result of each compared tensor; :assert(lu) fails listing every
-- failing one with its max difference.
local Report = {}
Report.__index = Report

function gc.report(title) return setmetatable({title = title, items = {}}, Report) end

function Report:add(what, ok, worst, msg, skipped, checked)
  self.items[#self.items + 1] = {what = what, ok = ok, worst = worst, msg = msg, skipped = skipped, checked = checked}
end

function Report:assert(lu, max_skip_frac)
  max_skip_frac = max_skip_frac or 0.25
  local bad, skipped, checked = {}, 0, 0
  for _, it in ipairs(self.items) do
    skipped, checked = skipped + it.skipped, checked + it.checked
    if not it.ok then
      bad[#bad + 1] = string.format("  %s: max |a - n| = %.3g (%s)", it.what, it.worst, it.msg)
    end
  end
  if #bad > 0 then
    lu.fail(string.format("%s: gradient check failed for %d of %d tensors:\n%s", self.title, #bad, #self.items,
      table.concat(bad, "\n")))
  end
  if checked > 0 and skipped > max_skip_frac * checked then
    lu.fail(string.format("%s: %d of %d coordinates straddle a kink; the check lost its coverage", self.title,
      skipped, checked))
  end
  if os.getenv("GRADCHECK_VERBOSE") then
    local worst = 0
    for _, it in ipairs(self.items) do worst = math.max(worst, it.worst) end
    io.stderr:write(string.format("%s: %d tensors, max |a - n| %.3g, %d of %d coordinates skipped\n", self.title,
      #self.items, worst, skipped, checked))
  end
  lu.assertTrue(#self.items > 0, self.title .. ": nothing was checked")
  return self
end

-- check_module(lu, m, x, opts): input gradient and every parameter gradient of module m
-- at input x. opts:
--   rng        generator for R and the coordinate subsets (required)
--   eps        step (1e-2), k: coordinates per tensor (12)
--   before     function() called before every forward (restore a dropout rng, ...)
--   input      false to skip the input gradient (integer-valued inputs)
--   params     false to skip parameter gradients
--   nonzero    false to allow identically zero gradients (by default each is an error)
--   rtol, atol tolerances
--   title      for messages
-- Returns the report (already asserted).
function gc.check_module(lu, m, x, opts)
  local rng = assert(opts.rng, "check_module: opts.rng is required")
  local eps, k = opts.eps or 1e-2, opts.k or 12
  local before = opts.before or function() end
  local rep = gc.report(opts.title or m:type())
  before()
  local out = m:forward(x)
  local R = sf.randn(out:size(), rng)
  local Rt = R:reshape(-1):totable()
  if m._params and m.zero_grad then m:zero_grad() end
  local gin = m:backward(x, R)
  -- keep the analytic results: further forwards may reuse buffers
  gin = gin and gin:clone()
  local grads = {}
  local records = opts.params ~= false and m.parameters and m:parameters() or {}
  for i, rec in ipairs(records) do grads[i] = rec.grad:clone() end
  -- a check against all-zero gradients proves nothing (dead ReLUs, saturated units)
  if opts.nonzero ~= false then
    local dead = {}
    if gin and opts.input ~= false and gin:abs():max() == 0 then dead[#dead + 1] = "input" end
    for i, rec in ipairs(records) do
      if grads[i]:abs():max() == 0 then dead[#dead + 1] = rec.name end
    end
    if #dead > 0 then
      lu.fail(string.format("%s: the gradient is identically zero for %s: the check would be vacuous",
        opts.title or m:type(), table.concat(dead, ", ")))
    end
  end
  local function loss() before(); return gc.dot(m:forward(x), Rt) end
  loss()
  local probe = gc.kink_probe(m)
  if probe.count == 0 then probe = nil end
  if opts.input ~= false then
    lu.assertNotNil(gin, (opts.title or m:type()) .. ": backward returned no input gradient")
    lu.assertEquals(gin:size(), x:size(), (opts.title or m:type()) .. ": input gradient shape")
    local idx = gc.subset(x:numel(), k, rng)
    local num = gc.numeric(loss, x, idx, eps, opts.rtol, opts.atol, probe)
    local ok, worst, msg, sk = gc.compare(gin, num, idx, opts.rtol, opts.atol)
    rep:add("input", ok, worst, msg, sk, #idx)
  end
  for i, rec in ipairs(records) do
    local idx = gc.subset(rec.value:numel(), k, rng)
    local num = gc.numeric(loss, rec.value, idx, eps, opts.rtol, opts.atol, probe)
    local ok, worst, msg, sk = gc.compare(grads[i], num, idx, opts.rtol, opts.atol)
    rep:add(rec.name, ok, worst, msg, sk, #idx)
  end
  return rep:assert(lu, opts.max_skip)
end

-- check_function(lu, f, x, grad, opts): f() returns a number depending on x (perturbed
-- in place), grad is the analytic gradient tensor (shape of x)
function gc.check_function(lu, f, x, grad, opts)
  opts = opts or {}
  local rng = assert(opts.rng, "check_function: opts.rng is required")
  local idx = gc.subset(x:numel(), opts.k or 24, rng)
  local num = gc.numeric(f, x, idx, opts.eps or 1e-2, opts.rtol, opts.atol)
  local rep = gc.report(opts.title or "function")
  local ok, worst, msg, sk = gc.compare(grad, num, idx, opts.rtol, opts.atol)
  rep:add(opts.what or "x", ok, worst, msg, sk, #idx)
  return rep:assert(lu, opts.max_skip)
end

-- numbers away from 0 by at least `gap` (inputs of ReLU-like layers: no kink in reach)
function gc.away_from_zero(shape, rng, gap)
  gap = gap or 0.1
  local t = sf.randn(shape, rng)
  local v = t:view(-1)
  for i = 1, t:numel() do
    local a = v:get(i)
    v:set(i, (a >= 0 and 1 or -1) * (gap + math.abs(a)))
  end
  return t
end

-- values spaced at least `gap` apart, shuffled (max-pool inputs: no ties in reach)
function gc.distinct(shape, rng, gap)
  gap = gap or 0.05
  local t = sf.empty(shape)
  local n = t:numel()
  local p = rng:permutation(n)
  local v = t:view(-1)
  for i = 1, n do v:set(i, (p[i] - n / 2) * gap) end
  return t
end

return gc
