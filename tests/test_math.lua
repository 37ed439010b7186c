-- Elementwise math: arithmetic and comparison methods, unary ops, clamp, where, equal,
-- in-place variants, metamethods, strided inputs, and the error contract of each.
local lu = require "luaunit"
local sf = require "surgft"

local nan, inf = 0 / 0, math.huge

-- flatten a nested table (from totable) into a list
local function flat(t, out)
  out = out or {}
  if type(t) ~= "table" then out[#out + 1] = t; return out end
  for _, v in ipairs(t) do flat(v, out) end
  return out
end

-- t (a tensor) has shape `shape` and values `want` (nested table) within eps; NaN matches NaN
local function assertClose(t, want, eps, shape)
  eps = eps or 0
  local got, exp = flat(t:totable()), flat(want)
  lu.assertEquals(#got, #exp, "element count")
  if shape then lu.assertEquals(t:size(), shape) end
  for i = 1, #exp do
    local g, w = got[i], exp[i]
    if w ~= w then
      lu.assertTrue(g ~= g, string.format("element %d: got %s, expected nan", i, tostring(g)))
    elseif w == inf or w == -inf then
      lu.assertEquals(g, w, string.format("element %d", i))
    else
      lu.assertTrue(math.abs(g - w) <= eps,
                    string.format("element %d: got %.9g, expected %.9g (eps %g)", i, g, w, eps))
    end
  end
end

-- seeded random tensor of shape, uniform in [lo, hi)
local function rand(rng, shape, lo, hi)
  return sf.rand(shape, rng) * (hi - lo) + lo
end

-- ---------------------------------------------------------------------------------------
TestBinary = {}

function TestBinary:setUp()
  self.a = sf.tensor{{1, -2, 3}, {0.5, 4, -1}}
  self.b = sf.tensor{{2, 4, -1}, {0.5, 2, 3}}
end

function TestBinary:test_tensor_tensor()
  local a, b = self.a, self.b
  assertClose(a:add(b), {{3, 2, 2}, {1, 6, 2}}, 0, {2, 3})
  assertClose(a:sub(b), {{-1, -6, 4}, {0, 2, -4}})
  assertClose(a:mul(b), {{2, -8, -3}, {0.25, 8, -3}})
  assertClose(a:div(b), {{0.5, -0.5, -3}, {1, 2, -1 / 3}}, 1e-7)
  assertClose(a:pow(b), {{1, 16, 1 / 3}, {math.sqrt(0.5), 16, -1}}, 1e-6)
  assertClose(a:maximum(b), {{2, 4, 3}, {0.5, 4, 3}})
  assertClose(a:minimum(b), {{1, -2, -1}, {0.5, 2, -1}})
end

function TestBinary:test_tensor_number()
  local a = self.a
  assertClose(a:add(2), {{3, 0, 5}, {2.5, 6, 1}})
  assertClose(a:sub(2), {{-1, -4, 1}, {-1.5, 2, -3}})
  assertClose(a:mul(-3), {{-3, 6, -9}, {-1.5, -12, 3}})
  assertClose(a:div(4), {{0.25, -0.5, 0.75}, {0.125, 1, -0.25}})
  assertClose(a:pow(2), {{1, 4, 9}, {0.25, 16, 1}})
  assertClose(a:pow(3), {{1, -8, 27}, {0.125, 64, -1}}, 1e-5)
  assertClose(a:pow(1), a:totable())
  assertClose(a:pow(0.5), {{1, nan, math.sqrt(3)}, {math.sqrt(0.5), 2, nan}}, 1e-6)
  assertClose(a:maximum(0), {{1, 0, 3}, {0.5, 4, 0}})
  assertClose(a:minimum(0), {{0, -2, 0}, {0, 0, -1}})
end

function TestBinary:test_library_form()
  assertClose(sf.add(self.a, self.b), self.a:add(self.b):totable())
  assertClose(sf.mul(self.a, 2), self.a:mul(2):totable())
  assertClose(sf.exp(self.a), self.a:exp():totable())
end

function TestBinary:test_inputs_unchanged()
  local before = self.a:totable()
  local _ = self.a:add(self.b), self.a:pow(2), self.a:exp()
  lu.assertEquals(self.a:totable(), before)
end

function TestBinary:test_comparisons()
  local a, b = self.a, self.b
  assertClose(a:eq(b), {{0, 0, 0}, {1, 0, 0}})
  assertClose(a:ne(b), {{1, 1, 1}, {0, 1, 1}})
  assertClose(a:lt(b), {{1, 1, 0}, {0, 0, 1}})
  assertClose(a:le(b), {{1, 1, 0}, {1, 0, 1}})
  assertClose(a:gt(b), {{0, 0, 1}, {0, 1, 0}})
  assertClose(a:ge(b), {{0, 0, 1}, {1, 1, 0}})
  assertClose(a:eq(3), {{0, 0, 1}, {0, 0, 0}})
  assertClose(a:ne(3), {{1, 1, 0}, {1, 1, 1}})
  assertClose(a:lt(1), {{0, 1, 0}, {1, 0, 1}})
  assertClose(a:le(1), {{1, 1, 0}, {1, 0, 1}})
  assertClose(a:gt(1), {{0, 0, 1}, {0, 1, 0}})
  assertClose(a:ge(1), {{1, 0, 1}, {0, 1, 0}})
  -- NaN compares unequal to everything, itself included
  local n = sf.tensor{nan, 1}
  assertClose(n:eq(n), {0, 1})
  assertClose(n:ne(n), {1, 0})
end

function TestBinary:test_nan_propagation()
  local n, m = sf.tensor{nan, 1, 2}, sf.tensor{0, nan, 1}
  assertClose(n:maximum(m), {nan, nan, 2})
  assertClose(m:maximum(n), {nan, nan, 2})
  assertClose(n:minimum(m), {nan, nan, 1})
  assertClose(sf.tensor{nan, -1}:relu(), {nan, 0})
end

function TestBinary:test_in_place_returns_self_and_writes_storage()
  local cases = {
    {"add_", 1, {{2, -1, 4}, {1.5, 5, 0}}},
    {"sub_", 1, {{0, -3, 2}, {-0.5, 3, -2}}},
    {"mul_", 2, {{2, -4, 6}, {1, 8, -2}}},
    {"div_", 2, {{0.5, -1, 1.5}, {0.25, 2, -0.5}}},
    {"pow_", 2, {{1, 4, 9}, {0.25, 16, 1}}},
  }
  for _, c in ipairs(cases) do
    local a = self.a:clone()
    local view = a:view(-1) -- shares a's storage
    local r = a[c[1]](a, c[2])
    lu.assertTrue(rawequal(r, a), c[1] .. " returns self")
    assertClose(a, c[3], 1e-7)
    assertClose(view, flat(c[3]), 1e-7)
  end
  -- tensor operands
  local a = self.a:clone()
  lu.assertTrue(rawequal(a:add_(self.b), a))
  assertClose(a, {{3, 2, 2}, {1, 6, 2}})
  lu.assertTrue(rawequal(a:sub_(self.b), a))
  assertClose(a, self.a:totable())
  lu.assertTrue(rawequal(a:mul_(self.b), a))
  assertClose(a, {{2, -8, -3}, {0.25, 8, -3}})
  lu.assertTrue(rawequal(a:div_(self.b), a))
  assertClose(a, self.a:totable())
  lu.assertTrue(rawequal(a:pow_(sf.full({2, 3}, 2)), a))
  assertClose(a, {{1, 4, 9}, {0.25, 16, 1}})
  -- a:op_(a): every operand the same tensor
  a:mul_(a)
  assertClose(a, {{1, 16, 81}, {0.0625, 256, 1}})
end

-- ---------------------------------------------------------------------------------------
TestUnary = {}

function TestUnary:test_values()
  local x = sf.tensor{-2, -0.5, 0, 0.5, 4}
  local e = math.exp
  assertClose(x:neg(), {2, 0.5, 0, -0.5, -4})
  assertClose(x:abs(), {2, 0.5, 0, 0.5, 4})
  assertClose(x:exp(), {e(-2), e(-0.5), 1, e(0.5), e(4)}, 1e-5)
  assertClose(x:log(), {nan, nan, -inf, math.log(0.5), math.log(4)}, 1e-6)
  assertClose(x:sqrt(), {nan, nan, 0, math.sqrt(0.5), 2}, 1e-7)
  local function tanh(v) return (e(v) - e(-v)) / (e(v) + e(-v)) end
  assertClose(x:tanh(), {tanh(-2), tanh(-0.5), 0, tanh(0.5), tanh(4)}, 1e-6)
  local function sig(v) return 1 / (1 + e(-v)) end
  assertClose(x:sigmoid(), {sig(-2), sig(-0.5), 0.5, sig(0.5), sig(4)}, 1e-7)
  assertClose(x:relu(), {0, 0, 0, 0.5, 4})
  assertClose(x:sign(), {-1, -1, 0, 1, 1})
  assertClose(x:square(), {4, 0.25, 0, 0.25, 16})
  assertClose(x:reciprocal(), {-0.5, -2, inf, 2, 0.25})
end

function TestUnary:test_extremes()
  local x = sf.tensor{-1000, -100, 0, 100, 1000}
  local s = x:sigmoid()
  assertClose(s, {0, 3.7200760e-44, 0.5, 1, 1}, 1e-45)
  assertClose(x:exp(), {0, 3.7200760e-44, 1, inf, inf}, 1e-45)
  assertClose(x:tanh(), {-1, -1, 0, 1, 1})
end

function TestUnary:test_in_place()
  local names = {"neg", "abs", "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "sign", "square", "reciprocal"}
  for _, name in ipairs(names) do
    local x = sf.tensor{{0.25, 1}, {2, 3}}
    local want = x[name](x):totable()
    local view = x:view(-1)
    local r = x[name .. "_"](x)
    lu.assertTrue(rawequal(r, x), name .. "_ returns self")
    assertClose(x, want, 0)
    assertClose(view, flat(want), 0)
  end
end

-- ---------------------------------------------------------------------------------------
TestClampWhere = {}

function TestClampWhere:test_clamp()
  local x = sf.tensor{-3, -1, 0, 2, 5}
  assertClose(x:clamp(-1, 2), {-1, -1, 0, 2, 2})
  assertClose(x:clamp(nil, 1), {-3, -1, 0, 1, 1})
  assertClose(x:clamp(0), {0, 0, 0, 2, 5})
  assertClose(x:clamp(0, nil), {0, 0, 0, 2, 5})
  assertClose(x:clamp(3, 1), {1, 1, 1, 1, 1}) -- PyTorch's order: min(max(x, lo), hi)
  assertClose(sf.tensor{nan}:clamp(0, 1), {nan})
  lu.assertTrue(rawequal(x:clamp_(-1, 1), x))
  assertClose(x, {-1, -1, 0, 1, 1})
end

function TestClampWhere:test_where()
  local c = sf.tensor{{1, 0}, {0, -2}}
  local a = sf.tensor{{1, 2}, {3, 4}}
  local b = sf.tensor{{10, 20}, {30, 40}}
  assertClose(sf.where(c, a, b), {{1, 20}, {30, 4}})
  assertClose(sf.where(c, a, 0), {{1, 0}, {0, 4}})
  assertClose(sf.where(c, -1, b), {{-1, 20}, {30, -1}})
  assertClose(sf.where(c, 7, 8), {{7, 8}, {8, 7}}, 0, {2, 2})
  -- a typical use: zero the negatives through a comparison
  local x = sf.tensor{-1, 2, -3}
  assertClose(sf.where(x:gt(0), x, 0), {0, 2, 0})
  -- transposed cond and operands
  assertClose(sf.where(c:t(), a:t(), b), {{1, 20}, {30, 4}})
end

function TestClampWhere:test_equal()
  local a = sf.tensor{{1, 2}, {3, 4}}
  lu.assertTrue(a:equal(a:clone()))
  lu.assertTrue(a:equal(sf.tensor{{1, 3}, {2, 4}}:t()))
  lu.assertFalse(a:equal(sf.tensor{{1, 2}, {3, 5}}))
  lu.assertFalse(a:equal(sf.tensor{1, 2, 3, 4}))
  lu.assertFalse(sf.tensor{nan}:equal(sf.tensor{nan}))
  lu.assertTrue(sf.equal(a, a))
end

-- ---------------------------------------------------------------------------------------
TestMeta = {}

function TestMeta:test_arithmetic()
  local t = sf.tensor{1, 2, 4}
  local u = sf.tensor{2, 2, 2}
  assertClose(t + u, {3, 4, 6})
  assertClose(t - u, {-1, 0, 2})
  assertClose(t * u, {2, 4, 8})
  assertClose(t / u, {0.5, 1, 2})
  assertClose(t ^ u, {1, 4, 16})
  assertClose(-t, {-1, -2, -4})
  assertClose(t + 1, {2, 3, 5})
  assertClose(1 + t, {2, 3, 5})
  assertClose(t - 1, {0, 1, 3})
  assertClose(2 - t, {1, 0, -2})
  assertClose(t * 3, {3, 6, 12})
  assertClose(3 * t, {3, 6, 12})
  assertClose(t / 2, {0.5, 1, 2})
  assertClose(2 / t, {2, 1, 0.5})
  assertClose(t ^ 2, {1, 4, 16})
  assertClose(t ^ 0.5, {1, math.sqrt(2), 2}, 1e-7)
  assertClose(2 ^ t, {2, 4, 16})
  assertClose(((t * 2 + 1):relu():exp()), {math.exp(3), math.exp(5), math.exp(9)}, 1e-2)
end

function TestMeta:test_no_eq_metamethod()
  -- __eq would have to return a boolean; tensors compare by identity, values by equal
  lu.assertNil(getmetatable(sf.zeros(1)).__eq)
  local t = sf.tensor{1, 2}
  lu.assertFalse(t == t:clone())
  lu.assertTrue(t == t)
  lu.assertTrue(t:equal(t:clone()))
end

-- ---------------------------------------------------------------------------------------
TestStrided = {}

-- each op on strided inputs equals the op on contiguous copies of them
function TestStrided:test_transposed_narrowed_expanded_agree()
  local rng = sf.rng(11)
  local base = rand(rng, {4, 6}, 0.5, 2)
  local other = rand(rng, {6, 4}, 0.5, 2)
  local inputs = {
    transposed = {base:t(), other},                                     -- [6,4]
    narrowed = {base:narrow(2, 2, 4), other:narrow(1, 3, 4)},           -- [4,4]
    expanded = {base:select(1, 2):unsqueeze(1):expand(3, 6), rand(rng, {3, 6}, 0.5, 2)},
  }
  local binops = {"add", "sub", "mul", "div", "pow", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge"}
  local unops = {"neg", "abs", "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "sign", "square", "reciprocal"}
  for kind, ab in pairs(inputs) do
    local a, b = ab[1], ab[2]
    lu.assertFalse(a:is_contiguous(), kind)
    local ac, bc = a:contiguous(), b:contiguous()
    for _, op in ipairs(binops) do
      lu.assertTrue(a[op](a, b):equal(ac[op](ac, bc)), kind .. " " .. op)
      lu.assertTrue(b[op](b, a):equal(bc[op](bc, ac)), kind .. " " .. op .. " (strided second)")
      lu.assertTrue(a[op](a, 1.5):equal(ac[op](ac, 1.5)), kind .. " " .. op .. " scalar")
    end
    for _, op in ipairs(unops) do
      lu.assertTrue(a[op](a):equal(ac[op](ac)), kind .. " " .. op)
    end
    lu.assertTrue((2 - a):equal(2 - ac), kind .. " 2 - t")
    lu.assertTrue((2 / a):equal(2 / ac), kind .. " 2 / t")
    lu.assertTrue((a ^ 2):equal(ac ^ 2), kind .. " t ^ 2")
    lu.assertTrue((a ^ 0.5):equal(ac ^ 0.5), kind .. " t ^ 0.5")
    lu.assertTrue(a:clamp(0.8, 1.5):equal(ac:clamp(0.8, 1.5)), kind .. " clamp")
    local c = a:gt(1)
    lu.assertTrue(sf.where(c, a, b):equal(sf.where(c:contiguous(), ac, bc)), kind .. " where")
  end
end

function TestStrided:test_in_place_on_transposed_view()
  local x = sf.tensor{{1, 2, 3}, {4, 5, 6}}
  local xt = x:t()
  local r = xt:add_(sf.tensor{{10, 20}, {30, 40}, {50, 60}})
  lu.assertTrue(rawequal(r, xt))
  assertClose(x, {{11, 32, 53}, {24, 45, 66}})
  xt:mul_(2)
  assertClose(x, {{22, 64, 106}, {48, 90, 132}})
  xt:neg_()
  assertClose(x, {{-22, -64, -106}, {-48, -90, -132}})
  xt:clamp_(-100, -50)
  assertClose(x, {{-50, -64, -100}, {-50, -90, -100}})
end

function TestStrided:test_in_place_on_narrowed_view()
  local x = sf.tensor{1, 2, 3, 4, 5}
  x:narrow(1, 2, 3):mul_(10)
  assertClose(x, {1, 20, 30, 40, 5})
  -- overlapping views: x[2..5] += x[1..4] reads the original values
  x = sf.tensor{1, 2, 3, 4, 5}
  x:narrow(1, 2, 4):add_(x:narrow(1, 1, 4))
  assertClose(x, {1, 3, 5, 7, 9})
end

-- ---------------------------------------------------------------------------------------
TestErrors = {}

function TestErrors:test_shape_mismatch()
  local a, b = sf.zeros(3, 4), sf.zeros(3, 5)
  lu.assertErrorMsgContains("add: argument #2 has shape [3,5], expected [3,4]", function() return a:add(b) end)
  lu.assertErrorMsgContains("add: argument #2 has shape [3,5], expected [3,4]", function() return a + b end)
  lu.assertErrorMsgContains("sub: argument #2 has shape [3,5], expected [3,4]", function() return a - b end)
  lu.assertErrorMsgContains("mul: argument #2 has shape [3,5], expected [3,4]", function() return a * b end)
  lu.assertErrorMsgContains("div: argument #2 has shape [3,5], expected [3,4]", function() return a / b end)
  lu.assertErrorMsgContains("pow: argument #2 has shape [3,5], expected [3,4]", function() return a ^ b end)
  lu.assertErrorMsgContains("add_: argument #2 has shape [3,5], expected [3,4]", function() return a:add_(b) end)
  lu.assertErrorMsgContains("pow_: argument #2 has shape [3,5], expected [3,4]", function() return a:pow_(b) end)
  lu.assertErrorMsgContains("maximum: argument #2 has shape [3,5], expected [3,4]", function() return a:maximum(b) end)
  lu.assertErrorMsgContains("le: argument #2 has shape [3,5], expected [3,4]", function() return a:le(b) end)
  -- no broadcasting, not even from a one-element tensor
  lu.assertErrorMsgContains("mul: argument #2 has shape [], expected [3,4]", function() return a * sf.tensor(2) end)
  lu.assertErrorMsgContains("where: argument #2 has shape [3,5], expected [3,4]", function() return sf.where(a, b, a) end)
  lu.assertErrorMsgContains("where: argument #3 has shape [3,5], expected [3,4]", function() return sf.where(a, a, b) end)
  -- a failed in-place op leaves the tensor untouched
  local c = sf.ones(3, 4)
  pcall(function() return c:add_(b) end)
  assertClose(c, sf.ones(3, 4):totable())
end

function TestErrors:test_operand_types()
  local t = sf.zeros(2)
  lu.assertErrorMsgContains("bad argument #2 to 'add' (tensor or number expected, got string)",
                            function() return t:add("1") end)
  lu.assertErrorMsgContains("bad argument #2 to 'mul_' (tensor or number expected, got table)",
                            function() return t:mul_({}) end)
  lu.assertErrorMsgContains("bad argument #2 to 'lt' (tensor or number expected, got no value)", function() return t:lt() end)
  lu.assertErrorMsgContains("bad argument #2 to 'add' (tensor or number expected, got boolean)",
                            function() return t + true end)
  lu.assertErrorMsgContains("bad argument #1 to 'sub' (tensor or number expected, got string)",
                            function() return "x" - t end)
  lu.assertErrorMsgContains("bad argument #1 to 'sub' (tensor or number expected, got table)",
                            function() return {} - t end)
  lu.assertErrorMsgContains("bad argument #1 to 'exp' (tensor expected, got number)", function() return sf.exp(3) end)
  lu.assertErrorMsgContains("bad argument #1 to 'add' (tensor expected, got number)", function() return sf.add(1, t) end)
  lu.assertErrorMsgContains("bad argument #2 to 'equal' (tensor expected, got number)", function() return t:equal(0) end)
  lu.assertErrorMsgContains("bad argument #1 to 'where' (tensor expected, got boolean)",
                            function() return sf.where(true, t, t) end)
  lu.assertErrorMsgContains("bad argument #3 to 'where' (tensor or number expected, got string)",
                            function() return sf.where(t, t, "0") end)
  lu.assertErrorMsgContains("bad argument #2 to 'where' (tensor or number expected, got nil)",
                            function() return sf.where(t) end)
  -- pcall'd library functions still name themselves
  lu.assertErrorMsgContains("bad argument #2 to 'div' (tensor or number expected, got string)", sf.div, t, "2")
end

function TestErrors:test_clamp_arguments()
  local t = sf.zeros(2)
  lu.assertErrorMsgContains("bad argument #2 to 'clamp' (at least one bound expected, got none)",
                            function() return t:clamp() end)
  lu.assertErrorMsgContains("bad argument #3 to 'clamp' (number or nil expected, got string)",
                            function() return t:clamp(0, "1") end)
  lu.assertErrorMsgContains("clamp: bounds must not be NaN", function() return t:clamp(nan, 1) end)
  lu.assertErrorMsgContains("clamp_: bounds must not be NaN", function() return t:clamp_(0, nan) end)
end

function TestErrors:test_expanded_output()
  local e = sf.ones(1, 3):expand(2, 3)
  lu.assertErrorMsgContains("add_: output of shape [2,3] is an expanded view", function() return e:add_(1) end)
  lu.assertErrorMsgContains("exp_: output of shape [2,3] is an expanded view", function() return e:exp_() end)
  lu.assertErrorMsgContains("clamp_: output of shape [2,3] is an expanded view", function() return e:clamp_(0, 1) end)
  -- reading an expanded tensor is fine
  assertClose(e + 1, {{2, 2, 2}, {2, 2, 2}})
end

function TestErrors:test_released_tensor()
  local t = sf.zeros(2)
  local u = sf.zeros(2)
  getmetatable(u).__close(u)
  lu.assertErrorMsgContains("bad argument #2 to 'add' (tensor is empty: it was released)", function() return t:add(u) end)
  lu.assertErrorMsgContains("(tensor is empty: it was released)", function() return t + u end)
  lu.assertErrorMsgContains("bad argument #1 to 'relu' (tensor is empty: it was released)", function() return u:relu() end)
end

TestExtraArguments = {}

function TestExtraArguments:test_alpha_is_refused()
  local t, u = sf.ones(3), sf.ones(3)
  lu.assertErrorMsgContains("bad argument #3 to 'add_' (add_ takes one operand; got 3 arguments", t.add_, t, u, -0.1)
  lu.assertErrorMsgContains("bad argument #3 to 'sub' (sub takes one operand", t.sub, t, u, 2)
  lu.assertEquals(t:totable(), {1, 1, 1})
end

-- ---------------------------------------------------------------------------------------
-- Large ops are split over the thread pool: contiguous ones in flat parts, strided ones
-- by outer rows, copies likewise. Every element is computed the serial way, so the bits
-- must not depend on the thread count, and the strided split (which starts each part's
-- counter mid-tensor) must agree with the flat path.

TestParallel = {}

-- the ops under test, on inputs big enough for several parts of 64K elements
local function parallel_cases(rng)
  local a = rand(rng, {300001}, -3, 3) -- not a multiple of 16: the last part has a tail
  local b = rand(rng, {300001}, 0.5, 2)
  local m = rand(rng, {520, 600}, -2, 2)
  local mt = rand(rng, {600, 520}, -2, 2):t() -- strided, [520, 600]
  local d = rand(rng, {40, 50, 160}, -1, 1):permute{2, 1, 3} -- 3 strided dims, [50, 40, 160]
  local big = rand(rng, {512, 65, 65}, -1, 1) -- the attention's softmax backward shapes
  local dot = rand(rng, {512, 65, 1}, -1, 1)
  local inplace = a:clone()
  inplace:mul_(b)
  local into = sf.zeros(50, 40, 160)
  into:copy(d)
  return {
    {"add", a + b}, {"div", a / b}, {"pow", b:pow(a)}, {"scalar", a * 3}, {"scalar first", 2 - a},
    {"square", a:pow(2)}, {"exp", a:exp()}, {"tanh", a:tanh()}, {"sigmoid", a:sigmoid()},
    {"clamp", a:clamp(-1, 1)}, {"where", sf.where(a:gt(0), a, b)}, {"in place", inplace},
    {"strided binary", m * mt}, {"strided scalar", mt + 1}, {"strided unary", d:exp()},
    {"strided clamp", d:clamp(-0.5, 0.5)}, {"strided where", sf.where(mt:gt(0), mt, m)},
    {"expanded", big - dot:expand(512, 65, 65)},
    {"copy", a:clone()}, {"strided copy", d:contiguous()}, {"copy into", into},
  }
end

function TestParallel:test_threads_same_bits_and_repeatable()
  require("testutil").assert_same_bits_across_threads(parallel_cases, 41)
end

-- the strided parts agree with the flat loop, element by element (at the thread count the
-- suite runs with, and at 2)
function TestParallel:test_strided_split_matches_flat()
  local n0 = sf.threads()
  for _, t in ipairs{1, 2} do
    sf.set_threads(t)
    local rng = sf.rng(42)
    local d = rand(rng, {40, 50, 160}, -1, 1):permute{2, 1, 3}
    local e = rand(rng, {50, 40, 160}, -1, 1)
    local dc = d:contiguous()
    local ok, err = pcall(function()
      lu.assertTrue((d * e):equal(dc * e), "strided mul")
      lu.assertTrue(d:sigmoid():equal(dc:sigmoid()), "strided sigmoid")
      lu.assertTrue((3 / d):equal(3 / dc), "strided scalar first")
      -- the copy agrees with reading element by element
      local want, got = {}, dc:reshape(-1):totable()
      for i = 1, 50, 7 do
        for j = 1, 40, 3 do
          for k = 1, 160, 11 do want[#want + 1] = {d:get(i, j, k), got[((i - 1) * 40 + j - 1) * 160 + k]} end
        end
      end
      for _, w in ipairs(want) do lu.assertEquals(w[2], w[1]) end
    end)
    sf.set_threads(n0)
    if not ok then error(err, 0) end
  end
end

os.exit(lu.LuaUnit.run())
