-- Generators: determinism, state save/restore, distributions, the default generator.
local lu = require "luaunit"
local sf = require "surgft"

TestRng = {}

function TestRng:test_same_seed_same_stream()
  local a, b = sf.rng(42), sf.rng(42)
  lu.assertEquals(sf.randn({5}, a):totable(), sf.randn({5}, b):totable())
  lu.assertNotEquals(sf.randn({5}, sf.rng(1)):totable(), sf.randn({5}, sf.rng(2)):totable())
end

function TestRng:test_known_first_values()
  -- xoshiro256** seeded by splitmix64(0): a fixed stream, so results never drift silently
  local r = sf.rng(0)
  local u = r:uniform()
  lu.assertTrue(u >= 0 and u < 1)
  local r2 = sf.rng(0)
  lu.assertEquals(r2:uniform(), u)
end

function TestRng:test_state_restore()
  local r = sf.rng(7)
  r:normal()
  local s = r:state()
  lu.assertEquals(#s, 32)
  local x = sf.rand({10}, r):totable()
  r:set_state(s)
  lu.assertEquals(sf.rand({10}, r):totable(), x)
  local c = r:clone()
  lu.assertEquals(c:uniform(), r:uniform())
  r:seed(7)
  local fresh = sf.rng(7)
  lu.assertEquals(r:uniform(), fresh:uniform())
  lu.assertErrorMsgContains("expected a 32-byte state string, got 3 bytes", r.set_state, r, "abc")
  lu.assertErrorMsgContains("all-zero state", r.set_state, r, string.rep("\0", 32))
end

function TestRng:test_moments()
  local r = sf.rng(1)
  local n = 20000
  local x = sf.randn({n}, r):totable()
  local s, s2 = 0, 0
  for i = 1, n do s = s + x[i]; s2 = s2 + x[i] * x[i] end
  local mean, var = s / n, s2 / n - (s / n) ^ 2
  lu.assertAlmostEquals(mean, 0, 0.03)
  lu.assertAlmostEquals(var, 1, 0.04)
  local u = sf.rand({n}, r):totable()
  s = 0
  for i = 1, n do
    lu.assertTrue(u[i] >= 0 and u[i] < 1)
    s = s + u[i]
  end
  lu.assertAlmostEquals(s / n, 0.5, 0.01)
end

function TestRng:test_randint_bernoulli()
  local r = sf.rng(3)
  local t = sf.randint(2, 5, {1000}, r):totable()
  local seen = {}
  for _, v in ipairs(t) do
    lu.assertTrue(v >= 2 and v < 5 and v == math.floor(v))
    seen[v] = true
  end
  lu.assertTrue(seen[2] and seen[3] and seen[4])
  local z = sf.randint(3, {50}, r):totable()
  for _, v in ipairs(z) do lu.assertTrue(v >= 0 and v <= 2) end
  local b = sf.bernoulli({4000}, 0.25, r):totable()
  local s = 0
  for _, v in ipairs(b) do lu.assertTrue(v == 0 or v == 1); s = s + v end
  lu.assertAlmostEquals(s / 4000, 0.25, 0.03)
  local p = sf.tensor{0, 1, 0, 1}
  lu.assertEquals(sf.bernoulli(p, r):totable(), {0, 1, 0, 1})
  lu.assertErrorMsgContains("bad argument #2 to 'bernoulli' (probability 1.5 is outside [0, 1])", sf.bernoulli, {3}, 1.5, r)
  lu.assertErrorMsgContains("empty range: low 5 >= high 5", sf.randint, 5, 5, {2}, r)
  lu.assertErrorMsgContains("outside [0, 1]", sf.bernoulli, sf.tensor{0.5, 2}, r)
end

function TestRng:test_scalar_draws()
  local r = sf.rng(9)
  for _ = 1, 100 do
    local k = r:random(3, 5)
    lu.assertTrue(k >= 3 and k <= 5 and math.type(k) == "integer")
  end
  local p = r:permutation(10)
  table.sort(p)
  for i = 1, 10 do lu.assertEquals(p[i], i) end
  lu.assertErrorMsgContains("interval is empty", r.random, r, 5, 3)
end

function TestRng:test_inplace_fills()
  local r = sf.rng(5)
  local t = sf.zeros(3, 4):t()
  t:normal_(r, 2, 0)  -- std 0: every element equals the mean, through a strided view
  lu.assertEquals(t:totable()[1][1], 2)
  local u = sf.zeros(1000):uniform_(r, -1, 1):totable()
  for _, v in ipairs(u) do lu.assertTrue(v >= -1 and v < 1) end
end

function TestRng:test_default_generator()
  sf.manual_seed(123)
  local a = sf.randn({4}):totable()
  sf.manual_seed(123)
  lu.assertEquals(sf.randn({4}):totable(), a)
  lu.assertEquals(sf.randn({4}, sf.default_rng()):numel(), 4)
end

function TestRng:test_errors()
  lu.assertErrorMsgContains("bad argument #2 to 'randn' (rng expected, got string)", sf.randn, {2}, "x")
  lu.assertErrorMsgContains("integer seed expected, got 1.5", sf.rng, 1.5)
  lu.assertErrorMsgContains("tensor expected, got rng", sf.zeros(2).copy, sf.zeros(2), sf.rng(0))
end

os.exit(lu.LuaUnit.run())
