-- Reductions: sum, mean, prod, var, std, max, min, argmax, argmin, norm, softmax,
-- log_softmax, allclose, max_abs_diff. Hand-computed values, a plain-Lua reference over
-- every dimension, strided views against contiguous copies, NaN, and error contracts.
local lu = require "luaunit"
local sf = require "surgft"

local NAN = 0 / 0
local INF = math.huge

local function isnan(v) return v ~= v end

local function flat(t) return t:reshape(-1):totable() end

-- |a - b| <= tol * (1 + |b|) for numbers, NaN matching NaN
local function near(a, b, tol, what)
  tol = tol or 1e-5
  if isnan(b) then
    lu.assertTrue(isnan(a), (what or "") .. ": expected nan, got " .. tostring(a))
  elseif b == INF or b == -INF then
    lu.assertEquals(a, b, what)
  else
    lu.assertTrue(math.abs(a - b) <= tol * (1 + math.abs(b)),
      string.format("%s: got %.9g, expected %.9g", what or "", a, b))
  end
end

local function near_list(got, want, tol, what)
  lu.assertEquals(#got, #want, what)
  for i = 1, #want do near(got[i], want[i], tol, (what or "") .. " [" .. i .. "]") end
end

-- the slices of x along dim, one list of values per output element, in row-major order
-- of the output; also the output shape
local function slices(x, dim)
  local sz = x:size()
  local nd = #sz
  local osz = {}
  for d = 1, nd do if d ~= dim then osz[#osz + 1] = sz[d] end end
  local count = 1
  for _, s in ipairs(osz) do count = count * s end
  local out = {}
  for lin = 0, count - 1 do
    local oi, r = {}, lin
    for d = #osz, 1, -1 do oi[d] = r % osz[d] + 1; r = r // osz[d] end
    local vals = {}
    for j = 1, sz[dim] do
      local full, k = {}, 1
      for d = 1, nd do
        if d == dim then full[d] = j else full[d] = oi[k]; k = k + 1 end
      end
      vals[j] = x:get(table.unpack(full))
    end
    out[#out + 1] = vals
  end
  return out, osz
end

-- all values of x in row-major order, through get (works on any view)
local function values(x)
  local v = {}
  local sz = x:size()
  local n = x:numel()
  for lin = 0, n - 1 do
    local idx, r = {}, lin
    for d = #sz, 1, -1 do idx[d] = r % sz[d] + 1; r = r // sz[d] end
    v[#v + 1] = x:get(table.unpack(idx))
  end
  return v
end

-- plain-Lua references over a list
local ref = {}
function ref.sum(v) local s = 0 for _, x in ipairs(v) do s = s + x end return s end
function ref.mean(v) return ref.sum(v) / #v end
function ref.prod(v) local s = 1 for _, x in ipairs(v) do s = s * x end return s end
function ref.max(v)
  local b, bi = v[1], 1
  for i, x in ipairs(v) do
    if isnan(x) then return x, i end
    if x > b then b, bi = x, i end
  end
  return b, bi
end
function ref.min(v)
  local b, bi = v[1], 1
  for i, x in ipairs(v) do
    if isnan(x) then return x, i end
    if x < b then b, bi = x, i end
  end
  return b, bi
end
function ref.argmax(v) local _, i = ref.max(v) return i end
function ref.argmin(v) local _, i = ref.min(v) return i end
function ref.var(v, ddof)
  ddof = ddof or 1
  local m = ref.mean(v)
  local s = 0
  for _, x in ipairs(v) do s = s + (x - m) ^ 2 end
  if #v - ddof <= 0 then return NAN end
  return s / (#v - ddof)
end
function ref.std(v, ddof) return math.sqrt(ref.var(v, ddof)) end
function ref.norm(v, p)
  p = p or 2
  if p == INF then local m = 0 for _, x in ipairs(v) do m = math.max(m, math.abs(x)) end return m end
  if p == -INF then local m = INF for _, x in ipairs(v) do m = math.min(m, math.abs(x)) end return m end
  if p == 0 then local c = 0 for _, x in ipairs(v) do if x ~= 0 then c = c + 1 end end return c end
  local s = 0
  for _, x in ipairs(v) do s = s + math.abs(x) ^ p end
  return s ^ (1 / p)
end

local OPS = {"sum", "mean", "prod", "max", "min", "argmax", "argmin"}
local NORMS = {2, 1, 3, 0.5, 0, INF, -INF}

-- check every reduction of x over dim against the reference
local function check_dim(x, dim, what)
  local sl, osz = slices(x, dim)
  local function want(f, ...)
    local w = {}
    for i, s in ipairs(sl) do w[i] = f(s, ...) end
    return w
  end
  for _, op in ipairs(OPS) do
    local got = x[op](x, dim)
    lu.assertEquals(got:size(), osz, what .. " " .. op .. " shape")
    near_list(flat(got), want(ref[op]), 1e-5, what .. " " .. op .. "(" .. dim .. ")")
  end
  local v, i = x:max(dim)
  near_list(flat(v), want(ref.max), 1e-6, what .. " max values")
  near_list(flat(i), want(ref.argmax), 0, what .. " max indices")
  v, i = x:min(dim)
  near_list(flat(v), want(ref.min), 1e-6, what .. " min values")
  near_list(flat(i), want(ref.argmin), 0, what .. " min indices")
  for _, ddof in ipairs{0, 1} do
    near_list(flat(x:var(dim, {ddof = ddof})), want(ref.var, ddof), 1e-5, what .. " var ddof=" .. ddof)
    near_list(flat(x:std(dim, {ddof = ddof})), want(ref.std, ddof), 1e-5, what .. " std ddof=" .. ddof)
  end
  for _, p in ipairs(NORMS) do
    near_list(flat(x:norm(p, dim)), want(ref.norm, p), 1e-5, what .. " norm p=" .. p)
  end
end

local function check_all(x, what)
  local v = values(x)
  for _, op in ipairs(OPS) do near(x[op](x), ref[op](v), 1e-5, what .. " " .. op .. "()") end
  near(x:var(), ref.var(v, 1), 1e-5, what .. " var()")
  near(x:var{ddof = 0}, ref.var(v, 0), 1e-5, what .. " var{ddof=0}")
  near(x:std(), ref.std(v, 1), 1e-5, what .. " std()")
  for _, p in ipairs(NORMS) do near(x:norm(p), ref.norm(v, p), 1e-5, what .. " norm(" .. p .. ")") end
end

-- every op, whole and along every dimension, must agree between a view and its copy
local function check_same(view, what)
  local c = view:contiguous():clone()
  lu.assertFalse(view:is_contiguous(), what .. " should be a strided view")
  for _, op in ipairs(OPS) do
    lu.assertEquals(view[op](view), c[op](c), what .. " " .. op .. "()")
    for d = 1, view:dim() do
      lu.assertEquals(view[op](view, d):max_abs_diff(c[op](c, d)), 0, what .. " " .. op .. "(" .. d .. ")")
    end
  end
  near(view:var(), c:var(), 1e-12, what .. " var()")
  for d = 1, view:dim() do
    lu.assertTrue(view:var(d):allclose(c:var(d), 1e-6, 1e-7), what .. " var(" .. d .. ")")
    lu.assertTrue(view:norm(3, d):allclose(c:norm(3, d), 1e-6, 1e-7), what .. " norm(3, " .. d .. ")")
    lu.assertTrue(view:softmax(d):allclose(c:softmax(d), 1e-6, 1e-7), what .. " softmax(" .. d .. ")")
    lu.assertTrue(view:log_softmax(d):allclose(c:log_softmax(d), 1e-6, 1e-6), what .. " log_softmax(" .. d .. ")")
  end
end

-- ---------------------------------------------------------------------------

TestReduceHand = {}

function TestReduceHand:test_whole_tensor()
  local t = sf.tensor{{1, 5, 3}, {4, 2, 6}}
  lu.assertEquals(t:sum(), 21)
  lu.assertEquals(t:mean(), 3.5)
  lu.assertEquals(t:prod(), 720)
  lu.assertEquals(t:max(), 6)
  lu.assertEquals(t:min(), 1)
  lu.assertEquals(t:argmax(), 6)
  lu.assertEquals(t:argmin(), 1)
  lu.assertEquals(math.type(t:argmax()), "integer")
  lu.assertEquals(math.type(t:sum()), "float")
  near(t:var(), 3.5, 1e-12)                 -- 17.5 / 5
  near(t:var{ddof = 0}, 17.5 / 6, 1e-12)
  near(t:std(), math.sqrt(3.5), 1e-12)
  near(t:std{ddof = 0}, math.sqrt(17.5 / 6), 1e-12)
  near(t:norm(), math.sqrt(91), 1e-12)
  lu.assertEquals(t:norm(1), 21)
  lu.assertEquals(t:norm(INF), 6)
  lu.assertEquals(t:norm(-INF), 1)
  lu.assertEquals(t:norm(0), 6)
  near(t:norm(3), 441 ^ (1 / 3), 1e-12)
  -- library form
  lu.assertEquals(sf.sum(t), 21)
  lu.assertEquals(sf.argmax(t), 6)
end

-- sf.arange(24):reshape{2,3,4}: element (i,j,k) (0-based) = 12i + 4j + k
function TestReduceHand:test_every_dim_of_arange()
  local x = sf.arange(24):reshape{2, 3, 4}
  -- dim 1: (j,k) -> (4j+k) + (12+4j+k)
  local s1 = x:sum(1)
  lu.assertEquals(s1:size(), {3, 4})
  for j = 0, 2 do for k = 0, 3 do lu.assertEquals(s1:get(j + 1, k + 1), 12 + 8 * j + 2 * k) end end
  -- dim 2: (i,k) -> sum_j (12i+4j+k) = 36i + 12 + 3k
  local s2 = x:sum(2)
  for i = 0, 1 do for k = 0, 3 do lu.assertEquals(s2:get(i + 1, k + 1), 36 * i + 12 + 3 * k) end end
  -- dim 3: (i,j) -> 48i + 16j + 6
  local s3 = x:sum(-1)
  lu.assertEquals(s3:size(), {2, 3})
  for i = 0, 1 do for j = 0, 2 do lu.assertEquals(s3:get(i + 1, j + 1), 48 * i + 16 * j + 6) end end
  -- means
  lu.assertEquals(x:mean(3):totable(), {{1.5, 5.5, 9.5}, {13.5, 17.5, 21.5}})
  lu.assertEquals(x:mean(1):get(1, 1), 6)
  -- max over dim 1 is the second slab, index 2 everywhere
  local v, i = x:max(1)
  lu.assertEquals(v:totable(), x:select(1, 2):totable())
  lu.assertEquals(i:totable(), {{2, 2, 2, 2}, {2, 2, 2, 2}, {2, 2, 2, 2}})
  -- min over dim 3 is the first column, index 1
  v, i = x:min(3)
  lu.assertEquals(v:totable(), {{0, 4, 8}, {12, 16, 20}})
  lu.assertEquals(i:totable(), {{1, 1, 1}, {1, 1, 1}})
  lu.assertEquals(x:argmax(2):totable(), {{3, 3, 3, 3}, {3, 3, 3, 3}})
  lu.assertEquals(x:argmin(2):totable(), {{1, 1, 1, 1}, {1, 1, 1, 1}})
  -- prod over dim 1: (4j+k)(12+4j+k); row j=0: 0*12, 1*13, 2*14, 3*15
  lu.assertEquals(x:prod(1):select(1, 1):totable(), {0, 13, 28, 45})
  -- var: {a, a+1, a+2, a+3} has sample variance 5/3, population 1.25
  near_list(flat(x:var(3)), {5 / 3, 5 / 3, 5 / 3, 5 / 3, 5 / 3, 5 / 3}, 1e-6)
  near_list(flat(x:var(3, {ddof = 0})), {1.25, 1.25, 1.25, 1.25, 1.25, 1.25}, 1e-6)
  -- var over dim 1: {a, a+12}: 72 (sample), 36 (population)
  for _, e in ipairs(flat(x:var(1))) do near(e, 72, 1e-6) end
  for _, e in ipairs(flat(x:var(1, {ddof = 0}))) do near(e, 36, 1e-6) end
  for _, e in ipairs(flat(x:std(1, {ddof = 0}))) do near(e, 6, 1e-6) end
  -- norm over dim 1 at (0,1): sqrt(1 + 13^2)
  near(x:norm(2, 1):get(1, 2), math.sqrt(170), 1e-6)
  lu.assertEquals(x:norm(1, 3):totable(), x:sum(3):totable())
  lu.assertEquals(x:norm(INF, 2):get(1, 1), 8)
end

function TestReduceHand:test_keepdim_shapes()
  local x = sf.zeros(2, 3, 4)
  lu.assertEquals(x:sum(2, true):size(), {2, 1, 4})
  lu.assertEquals(x:sum(2, false):size(), {2, 4})
  lu.assertEquals(x:mean(1, true):size(), {1, 3, 4})
  lu.assertEquals(x:prod(-1, true):size(), {2, 3, 1})
  local v, i = x:max(3, true)
  lu.assertEquals(v:size(), {2, 3, 1})
  lu.assertEquals(i:size(), {2, 3, 1})
  v, i = x:min(1, true)
  lu.assertEquals(i:size(), {1, 3, 4})
  lu.assertEquals(x:argmax(-1, true):size(), {2, 3, 1})
  lu.assertEquals(x:argmin(2, true):size(), {2, 1, 4})
  lu.assertEquals(x:var(2, true):size(), {2, 1, 4})
  lu.assertEquals(x:var(2, {keepdim = true, ddof = 0}):size(), {2, 1, 4})
  lu.assertEquals(x:std(3, {keepdim = true}):size(), {2, 3, 1})
  lu.assertEquals(x:norm(2, 1, true):size(), {1, 3, 4})
  lu.assertEquals(x:norm(1, 1):size(), {3, 4})
  -- a 1-D reduction without keepdim is 0-D
  local s = sf.tensor{1, 2, 3}:sum(1)
  lu.assertEquals(s:dim(), 0)
  lu.assertEquals(s:item(), 6)
  lu.assertEquals(sf.tensor{1, 2, 3}:sum(1, true):size(), {1})
  -- keepdim values hold the same numbers
  local r = sf.randn({2, 3, 4}, sf.rng(3))
  lu.assertEquals(flat(r:sum(2, true)), flat(r:sum(2)))
end

function TestReduceHand:test_indices_are_one_based_ties_first()
  local t = sf.tensor{{3, 9, 9}, {7, 1, 7}}
  lu.assertEquals(t:argmax(), 2)      -- the first 9
  lu.assertEquals(t:argmin(), 5)
  lu.assertEquals(t:argmax(2):totable(), {2, 1})
  lu.assertEquals(t:argmin(2):totable(), {1, 2})
  lu.assertEquals(t:argmax(1):totable(), {2, 1, 1})
  local v, i = t:max(2)
  lu.assertEquals(v:totable(), {9, 7})
  lu.assertEquals(i:totable(), {2, 1})
  v, i = t:min(1)
  lu.assertEquals(v:totable(), {3, 1, 7})
  lu.assertEquals(i:totable(), {1, 2, 2})
  -- all equal (also at the extremes): index 1
  lu.assertEquals(sf.full({4}, 5):argmax(), 1)
  lu.assertEquals(sf.full({4}, -INF):argmax(), 1)
  lu.assertEquals(sf.full({4}, -INF):max(), -INF)
  lu.assertEquals(sf.full({4}, INF):argmin(), 1)
  lu.assertEquals(sf.full({2, 3}, -INF):argmax(2):totable(), {1, 1})
  lu.assertEquals(sf.full({3, 2}, INF):argmin(1):totable(), {1, 1})
  local iv
  v, iv = sf.full({2, 3}, -INF):max(1)
  lu.assertEquals(iv:totable(), {1, 1, 1})
  -- an index into a transposed view counts in the view's row-major order
  lu.assertEquals(t:t():argmax(), 3)  -- view {{3,7},{9,1},{9,7}}: the first 9 is element 3
end

function TestReduceHand:test_double_accumulation()
  -- 1e6 copies of float(0.1): a float accumulator drifts by ~1%, a double one does not
  local n = 1000000
  local f01 = 0.100000001490116119384765625
  near(sf.full({n}, 0.1):sum(), n * f01, 1e-9)
  near(sf.full({n}, 0.1):mean(), f01, 1e-9)
  near(sf.full({1000, 1000}, 0.1):sum(1):get(1), 1000 * f01, 1e-7)
  near(sf.full({1000, 1000}, 0.1):t():sum(), n * f01, 1e-9)
  -- variance of a large offset is not swamped by the offset
  near(sf.tensor{1e4 + 1, 1e4 + 2, 1e4 + 3}:var(), 1, 1e-9)
end

function TestReduceHand:test_empty_tensors()
  local e = sf.zeros(0, 3)
  lu.assertEquals(e:sum(), 0)
  lu.assertTrue(isnan(e:mean()))
  lu.assertEquals(e:prod(), 1)
  lu.assertEquals(e:norm(), 0)
  lu.assertTrue(isnan(e:var()))
  lu.assertEquals(e:sum(1):totable(), {0, 0, 0})
  lu.assertEquals(e:prod(1):totable(), {1, 1, 1})
  lu.assertEquals(e:sum(2):size(), {0})
  local v, i = e:max(2)
  lu.assertEquals(v:size(), {0})
  lu.assertEquals(i:size(), {0})
  lu.assertEquals(e:softmax(1):size(), {0, 3})
  lu.assertTrue(e:allclose(sf.zeros(0, 3)))
  lu.assertEquals(e:max_abs_diff(sf.zeros(0, 3)), 0)
end

TestReduceRef = {}

function TestReduceRef:test_every_dim_of_3d()
  local x = sf.randn({3, 4, 5}, sf.rng(0))
  check_all(x, "randn[3,4,5]")
  for d = 1, 3 do check_dim(x, d, "randn[3,4,5] dim " .. d) end
  for d = -3, -1 do
    lu.assertEquals(x:sum(d):totable(), x:sum(d + 4):totable())
  end
end

-- the column-blocked path (contiguous, reducing a middle dim) with more columns than
-- one block, and the [N,C] case over dim 1
function TestReduceRef:test_wide_middle_and_rows()
  local x = sf.randn({2, 3, 300}, sf.rng(1))
  check_dim(x, 2, "randn[2,3,300] dim 2")
  check_dim(x, 1, "randn[2,3,300] dim 1")
  local m = sf.randn({7, 5}, sf.rng(2))
  check_dim(m, 1, "randn[7,5] dim 1")
  check_dim(m, 2, "randn[7,5] dim 2")
end

TestReduceStrided = {}

function TestReduceStrided:test_views_agree_with_copies()
  local rng = sf.rng(4)
  local x = sf.randn({3, 4, 5}, rng)
  check_same(x:transpose(1, 3), "transpose(1,3)")
  check_same(x:transpose(2, 3), "transpose(2,3)")
  check_same(x:narrow(2, 2, 2), "narrow(2,2,2)")
  check_same(x:narrow(3, 2, 3), "narrow(3,2,3)")
  check_same(x:permute(2, 3, 1), "permute(2,3,1)")
  check_same(sf.randn({3, 1, 5}, rng):expand(3, 4, 5), "expand{3,4,5}")
  check_same(sf.randn({3, 4, 1}, rng):expand(3, 4, 6), "expand{3,4,6}")
  check_same(sf.randn({6, 5}, rng):t(), "t()")
end

function TestReduceStrided:test_views_against_reference()
  local x = sf.randn({4, 3, 5}, sf.rng(5))
  local v = x:transpose(1, 2):narrow(3, 2, 3)
  check_all(v, "transpose+narrow")
  for d = 1, 3 do check_dim(v, d, "transpose+narrow dim " .. d) end
  local e = sf.randn({1, 5}, sf.rng(6)):expand(4, 5)
  check_all(e, "expand")
  for d = 1, 2 do check_dim(e, d, "expand dim " .. d) end
end

TestReduceNaN = {}

function TestReduceNaN:test_nan_propagates()
  local t = sf.tensor{{1, NAN, 3}, {4, 5, 6}}
  lu.assertTrue(isnan(t:max()))
  lu.assertTrue(isnan(t:min()))
  lu.assertTrue(isnan(t:sum()))
  lu.assertTrue(isnan(t:mean()))
  lu.assertTrue(isnan(t:var()))
  lu.assertTrue(isnan(t:norm()))
  lu.assertTrue(isnan(t:norm(INF)))
  lu.assertEquals(t:argmax(), 2)
  lu.assertEquals(t:argmin(), 2)
  -- along the rows (last dim) ...
  local v, i = t:max(2)
  lu.assertTrue(isnan(v:get(1)))
  lu.assertEquals(v:get(2), 6)
  lu.assertEquals(i:totable(), {2, 3})
  v, i = t:min(2)
  lu.assertTrue(isnan(v:get(1)))
  lu.assertEquals(i:totable(), {2, 1})
  -- ... along columns (dim 1: the blocked path) ...
  v, i = t:max(1)
  lu.assertEquals(v:get(1), 4)
  lu.assertTrue(isnan(v:get(2)))
  lu.assertEquals(i:totable(), {2, 1, 2})
  lu.assertEquals(t:argmin(1):totable(), {1, 1, 1})
  -- ... and through a strided view
  v, i = t:t():max(2)
  lu.assertTrue(isnan(v:get(2)))
  lu.assertEquals(i:totable(), {2, 1, 2})
  lu.assertTrue(isnan(t:t():max()))
  lu.assertEquals(t:t():argmax(), 3)
  local s = t:sum(2)
  lu.assertTrue(isnan(s:get(1)))
  lu.assertEquals(s:get(2), 15)
  lu.assertTrue(isnan(t:var(2):get(1)))
  near(t:var(2):get(2), 1, 1e-12)
  -- a NaN after a larger value still wins
  lu.assertTrue(isnan(sf.tensor{9, NAN, 1}:max()))
  lu.assertEquals(sf.tensor{9, 1, NAN, NAN}:argmax(), 3)
  -- softmax: a NaN row is all NaN, other rows are untouched
  local sm = t:softmax(2)
  for j = 1, 3 do lu.assertTrue(isnan(sm:get(1, j))) end
  near(sm:sum(2):get(2), 1, 1e-6)
  -- comparisons: NaN is not close to NaN
  lu.assertFalse(t:allclose(t))
  lu.assertTrue(isnan(t:max_abs_diff(t)))
end

TestSoftmax = {}

function TestSoftmax:test_hand_values()
  local x = sf.tensor{1, 2, 3}
  local z = math.exp(1) + math.exp(2) + math.exp(3)
  near_list(x:softmax(1):totable(), {math.exp(1) / z, math.exp(2) / z, math.exp(3) / z}, 1e-6)
  near_list(x:log_softmax(1):totable(), {1 - math.log(z), 2 - math.log(z), 3 - math.log(z)}, 1e-6)
  -- uniform logits
  near_list(sf.zeros(4):softmax(1):totable(), {0.25, 0.25, 0.25, 0.25}, 1e-7)
  -- columns of a matrix
  local m = sf.tensor{{0, 0}, {math.log(3), 0}}
  near_list(flat(m:softmax(1)), {0.25, 0.5, 0.75, 0.5}, 1e-6)
  near_list(flat(m:softmax(-1)), {0.5, 0.5, 0.75, 0.25}, 1e-6)
end

function TestSoftmax:test_sums_and_log_agree_every_dim()
  local x = sf.randn({3, 4, 5}, sf.rng(7))
  for d = 1, 3 do
    local s, ls = x:softmax(d), x:log_softmax(d)
    lu.assertEquals(s:size(), {3, 4, 5})
    for _, e in ipairs(flat(s:sum(d))) do near(e, 1, 1e-6, "softmax(" .. d .. ") sums") end
    local sv, lv = flat(s), flat(ls)
    for k = 1, #sv do near(math.exp(lv[k]), sv[k], 1e-5, "exp(log_softmax) " .. k) end
    -- against a plain-Lua softmax of each slice
    local sl = slices(x, d)
    local got = slices(s, d)
    for k, v in ipairs(sl) do
      local mx = ref.max(v)
      local z = 0
      for _, e in ipairs(v) do z = z + math.exp(e - mx) end
      for j, e in ipairs(v) do near(got[k][j], math.exp(e - mx) / z, 1e-5) end
    end
  end
end

function TestSoftmax:test_large_logits_do_not_overflow()
  local x = sf.tensor{{1e4, 0, -1e4}, {1e4, 1e4, 1e4}}
  local s = x:softmax(2)
  near_list(flat(s), {1, 0, 0, 1 / 3, 1 / 3, 1 / 3}, 1e-6)
  local ls = x:log_softmax(2)
  near_list(flat(ls), {0, -1e4, -2e4, -math.log(3), -math.log(3), -math.log(3)}, 1e-6)
  for _, e in ipairs(flat(ls)) do lu.assertTrue(e == e and e > -INF) end
  -- shifting the logits changes nothing
  local r = sf.randn({2, 6}, sf.rng(8))
  local shifted = sf.tensor(r)
  for i = 1, 2 do for j = 1, 6 do shifted:set(i, j, r:get(i, j) + 1000) end end
  lu.assertTrue(shifted:softmax(2):allclose(r:softmax(2), 1e-3, 1e-5))
end

TestCompare = {}

function TestCompare:test_allclose()
  local a = sf.tensor{1, 100}
  lu.assertTrue(a:allclose(sf.tensor{1, 100}))
  lu.assertTrue(a:allclose(sf.tensor{1 + 1e-6, 100.0005}))   -- within 1e-8 + 1e-5 |b|
  lu.assertFalse(a:allclose(sf.tensor{1.001, 100}))
  lu.assertTrue(a:allclose(sf.tensor{1.001, 100}, 1e-5, 1e-2))
  lu.assertTrue(a:allclose(sf.tensor{1.001, 100}, 1e-2))
  lu.assertFalse(a:allclose(sf.tensor{1.001, 100}, 0, 0))
  lu.assertTrue(sf.tensor{INF, -INF}:allclose(sf.tensor{INF, -INF}))
  lu.assertFalse(sf.tensor{INF}:allclose(sf.tensor{-INF}))
  lu.assertFalse(sf.tensor{INF}:allclose(sf.tensor{1e30}))
  -- strided operands
  local x = sf.randn({3, 4}, sf.rng(9))
  lu.assertTrue(x:t():allclose(x:t():contiguous()))
  lu.assertTrue(sf.allclose(x, x:clone()))
end

function TestCompare:test_max_abs_diff()
  local a = sf.tensor{{1, 2}, {3, 4}}
  lu.assertEquals(a:max_abs_diff(sf.tensor{{1, 2.5}, {1, 4}}), 2)
  lu.assertEquals(a:max_abs_diff(a), 0)
  lu.assertEquals(a:t():max_abs_diff(sf.tensor{{1, 3}, {2, 4}}), 0)
  lu.assertEquals(sf.tensor{INF}:max_abs_diff(sf.tensor{INF}), 0)
  lu.assertEquals(sf.tensor{INF}:max_abs_diff(sf.tensor{0}), INF)
  lu.assertEquals(sf.max_abs_diff(sf.tensor{-1}, sf.tensor{2}), 3)
end

TestVar = {}

function TestVar:test_ddof_and_degenerate()
  lu.assertTrue(isnan(sf.tensor{5}:var()))             -- n - ddof = 0: nan, as PyTorch
  lu.assertEquals(sf.tensor{5}:var{ddof = 0}, 0)
  lu.assertTrue(isnan(sf.tensor{1, 2}:var{ddof = 2}))
  near(sf.tensor{1, 2}:var{ddof = 0}, 0.25, 1e-12)
  near(sf.tensor{1, 2}:var(), 0.5, 1e-12)
  local v = sf.zeros(3, 1):var(2)
  for _, e in ipairs(v:totable()) do lu.assertTrue(isnan(e)) end
  lu.assertEquals(sf.zeros(3, 1):var(2, {ddof = 0}):totable(), {0, 0, 0})
  -- nil dim with options, and keepdim as a boolean
  near(sf.tensor{1, 2, 3}:var(nil, {ddof = 0}), 2 / 3, 1e-12)
  lu.assertEquals(sf.tensor{{1, 2, 3}}:var(2, true):size(), {1, 1})
end

-- Contiguous rows take a vectorised path (split over threads when large); it must agree
-- with the strided path (a transposed view), with a double-precision Lua reference, and
-- give the same bits for any thread count (rows are independent). NaN and -inf rows too.
function TestSoftmax:test_fast_rows_agree()
  local rng = sf.rng(77)
  local rows = (sf.randn({600, 65}, rng) * 4):totable()
  rows[3][5] = 0 / 0
  for j = 1, 65 do rows[7][j] = -math.huge end
  rows[9][1] = -math.huge
  local x = sf.tensor(rows)
  local xt = x:t():contiguous():t() -- the same values through a strided view
  local n0 = sf.threads()
  for _, take_log in ipairs{false, true} do
    local f = take_log and "log_softmax" or "softmax"
    sf.set_threads(1)
    local one = x[f](x, 2)
    sf.set_threads(2)
    local two = x[f](x, 2)
    sf.set_threads(n0)
    local o, t2, st = one:totable(), two:totable(), xt[f](xt, 2):totable()
    for r = 1, 600 do
      for j = 1, 65 do
        local a, b = o[r][j], t2[r][j]
        lu.assertTrue(a == b or (isnan(a) and isnan(b)), string.format("%s: 1 and 2 threads differ at %d,%d", f, r, j))
      end
    end
    for _, r in ipairs{1, 2, 100, 600} do
      local row, z, mx = rows[r], 0, -math.huge
      for j = 1, 65 do mx = math.max(mx, row[j]) end
      for j = 1, 65 do z = z + math.exp(row[j] - mx) end
      for j = 1, 65 do
        local want = take_log and (row[j] - mx - math.log(z)) or math.exp(row[j] - mx) / z
        near(o[r][j], want, take_log and 2e-6 or 1e-7)
        near(st[r][j], o[r][j], take_log and 2e-6 or 1e-7)
      end
    end
    for j = 1, 65 do lu.assertTrue(isnan(o[3][j]) and isnan(st[3][j]), f .. ": NaN row") end
    for j = 1, 65 do lu.assertTrue(isnan(o[7][j]) and isnan(st[7][j]), f .. ": all -inf row") end
    lu.assertEquals(o[9][1], take_log and -math.huge or 0)
    lu.assertEquals(st[9][1], take_log and -math.huge or 0)
  end
end

TestReduceErrors = {}

function TestReduceErrors:test_empty_reductions()
  local e = sf.zeros(0, 3)
  lu.assertErrorMsgContains("max: cannot reduce an empty tensor of shape [0,3]", e.max, e)
  lu.assertErrorMsgContains("min: cannot reduce an empty tensor of shape [0,3]", e.min, e)
  lu.assertErrorMsgContains("argmax: cannot reduce an empty tensor of shape [0,3]", e.argmax, e)
  lu.assertErrorMsgContains("argmin: cannot reduce an empty tensor of shape [0,3]", e.argmin, e)
  lu.assertErrorMsgContains("norm: cannot reduce an empty tensor of shape [0,3]", e.norm, e, INF)
  lu.assertErrorMsgContains("max: cannot reduce an empty tensor of shape [0,3] along dimension 1", e.max, e, 1)
  lu.assertErrorMsgContains("argmin: cannot reduce an empty tensor of shape [0,3] along dimension 1",
    e.argmin, e, 1)
  lu.assertErrorMsgContains("norm: cannot reduce an empty tensor of shape [0,3] along dimension 1",
    e.norm, e, -INF, 1)
end

function TestReduceErrors:test_dim_out_of_range()
  local x = sf.zeros(2, 3, 4)
  local msg = "dimension 4 out of range for a 3-D tensor of shape [2,3,4]"
  for _, op in ipairs{"sum", "mean", "prod", "max", "min", "argmax", "argmin", "var", "std", "softmax",
                      "log_softmax"} do
    lu.assertErrorMsgContains("bad argument #2 to '" .. op .. "' (" .. msg, x[op], x, 4)
  end
  lu.assertErrorMsgContains("bad argument #2 to 'sum' (dimension 0 out of range", x.sum, x, 0)
  lu.assertErrorMsgContains("bad argument #2 to 'max' (dimension -4 out of range", x.max, x, -4)
  lu.assertErrorMsgContains("bad argument #3 to 'norm' (" .. msg, x.norm, x, 2, 4)
  lu.assertErrorMsgContains("bad argument #2 to 'sum' (integer expected, got 1.5)", x.sum, x, 1.5)
  lu.assertErrorMsgContains("out of range for a 0-D tensor of shape []", sf.tensor(3).sum, sf.tensor(3), 1)
end

function TestReduceErrors:test_arguments()
  local x = sf.zeros(2, 3)
  lu.assertErrorMsgContains("bad argument #2 to 'softmax' (dimension expected: softmax needs an explicit dim",
    x.softmax, x)
  lu.assertErrorMsgContains("log_softmax needs an explicit dim", x.log_softmax, x)
  lu.assertErrorMsgContains("bad argument #3 to 'sum' (keepdim must be a boolean, got number)", x.sum, x, 1, 1)
  lu.assertErrorMsgContains("bad argument #3 to 'max' (keepdim needs a dimension", x.max, x, nil, true)
  lu.assertErrorMsgContains("bad argument #4 to 'norm' (keepdim needs a dimension", x.norm, x, 2, nil, true)
  lu.assertErrorMsgContains("bad argument #3 to 'var' (unknown option 'dof'; expected ddof or keepdim)",
    x.var, x, 1, {dof = 0})
  lu.assertErrorMsgContains("bad argument #2 to 'std' (option ddof must be an integer >= 0, got -1)",
    x.std, x, {ddof = -1})
  lu.assertErrorMsgContains("option ddof must be an integer >= 0, got 0.5", x.var, x, {ddof = 0.5})
  lu.assertErrorMsgContains("option keepdim must be a boolean, got number", x.var, x, 1, {keepdim = 1})
  lu.assertErrorMsgContains("bad argument #2 to 'var' (keepdim needs a dimension", x.var, x, {keepdim = true})
  lu.assertErrorMsgContains("norm: the norm order p is nan", x.norm, x, NAN)
  lu.assertErrorMsgContains("norm: the norm order p is nan", x.norm, x, NAN, 1)
  lu.assertErrorMsgContains("norm' (number expected, got string)", x.norm, x, "fro")
  lu.assertErrorMsgContains("bad argument #1 to 'sum' (tensor expected, got number)", sf.sum, 3)
end

function TestReduceErrors:test_compare_shapes()
  local a, b = sf.zeros(2, 3), sf.zeros(3, 2)
  lu.assertErrorMsgContains("allclose: argument #2 has shape [3,2], expected [2,3]", a.allclose, a, b)
  lu.assertErrorMsgContains("max_abs_diff: argument #2 has shape [3,2], expected [2,3]", a.max_abs_diff, a, b)
  lu.assertErrorMsgContains("allclose: argument #2 has shape [6], expected [2,3]", a.allclose, a, sf.zeros(6))
  lu.assertErrorMsgContains("allclose: tolerances must be >= 0 (got rtol -1, atol 1e-08)",
    a.allclose, a, a, -1)
  lu.assertErrorMsgContains("bad argument #2 to 'allclose' (tensor expected, got number)", a.allclose, a, 1)
  lu.assertErrorMsgContains("bad argument #2 to 'max_abs_diff' (tensor expected, got no value)", a.max_abs_diff, a)
end

os.exit(lu.LuaUnit.run())
