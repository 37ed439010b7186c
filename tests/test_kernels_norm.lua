-- Norm, activation, dropout and loss kernels (sf.kernels): hand-computed values,
-- finite-difference gradients, running statistics, dropout determinism, error contracts.
local lu = require "luaunit"
local sf = require "surgft"
local K = sf.kernels

-- ---- helpers (plain Lua, so that these tests depend only on the tensor core) ----

local function flat(t) return t:reshape(-1):totable() end

local function close_tables(got, want, tol, what)
  lu.assertEquals(#got, #want, (what or "") .. ": element count")
  local worst, at = 0, 0
  for i = 1, #want do
    local d = math.abs(got[i] - want[i]) / math.max(1, math.abs(want[i]))
    if not (d <= worst) then worst, at = d, i end
  end
  if worst > tol then
    lu.fail(string.format("%s: element %d is %.9g, expected %.9g (relative difference %.3g > %.3g)",
      what or "values", at, got[at], want[at], worst, tol))
  end
end

local function assert_close(got, want, tol, what)
  if type(got) ~= "table" then got = flat(got) end
  if type(want) ~= "table" then want = flat(want) end
  close_tables(got, want, tol or 1e-5, what)
end

local function dot(t, r)
  local s, v = 0, flat(t)
  for i = 1, #v do s = s + v[i] * r[i] end
  return s
end

local function rand_table(n, rng)
  return flat(sf.randn({n}, rng))
end

-- Central differences of sum(f() * R) with respect to every element of x (contiguous,
-- perturbed in place); the step is the one actually taken in float32.
local function numgrad(f, x, R, h)
  h = h or 1e-2
  local xf, g = x:view(-1), {}
  for i = 1, x:numel() do
    local v = xf:get(i)
    xf:set(i, v + h)
    local hp = xf:get(i)
    local lp = dot(f(), R)
    xf:set(i, v - h)
    local hm = xf:get(i)
    local lm = dot(f(), R)
    xf:set(i, v)
    g[i] = (lp - lm) / (hp - hm)
  end
  return g
end

-- max |num - ana| relative to the largest analytic entry
local function grad_error(num, ana)
  if type(ana) ~= "table" then ana = flat(ana) end
  local scale, err = 1e-3, 0
  for i = 1, #ana do scale = math.max(scale, math.abs(ana[i])) end
  for i = 1, #ana do err = math.max(err, math.abs(num[i] - ana[i])) end
  return err / scale
end

local function assert_grad(num, ana, what, tol)
  local e = grad_error(num, ana)
  lu.assertTrue(e < (tol or 1e-2), string.format("%s: finite-difference relative error %.3g", what, e))
end

local function err_contains(msg, f, ...)
  lu.assertErrorMsgContains(msg, f, ...)
end

local EPS = 1e-5

-- ---- BatchNorm ----

TestBatchNorm = {}

function TestBatchNorm:test_forward_1d_hand()
  -- [N=2, C=2]: channel 1 = {1, 3} (mean 2, var 1), channel 2 = {4, 8} (mean 6, var 4)
  local x = sf.tensor{{1, 4}, {3, 8}}
  local g, b = sf.tensor{2, 1}, sf.tensor{0.5, -1}
  local out, mean, invstd = K.batchnorm_forward_train(x, g, b)
  local i1, i2 = 1 / math.sqrt(1 + EPS), 1 / math.sqrt(4 + EPS)
  assert_close(mean, {2, 6}, 1e-6, "save_mean")
  assert_close(invstd, {i1, i2}, 1e-6, "save_invstd")
  assert_close(out, {0.5 - 2 * i1, -1 - 2 * i2, 0.5 + 2 * i1, -1 + 2 * i2}, 1e-6, "out")
  lu.assertEquals(out:size(), {2, 2})
end

function TestBatchNorm:test_forward_4d_hand_no_affine()
  -- [N=2, C=1, H=1, W=2]: {1,2,3,4}, mean 2.5, biased var 1.25
  local x = sf.tensor{1, 2, 3, 4}:reshape{2, 1, 1, 2}
  local out, mean, invstd = K.batchnorm_forward_train(x, nil, nil)
  local is = 1 / math.sqrt(1.25 + EPS)
  assert_close(mean, {2.5}, 1e-6, "mean")
  assert_close(invstd, {is}, 1e-6, "invstd")
  assert_close(out, {-1.5 * is, -0.5 * is, 0.5 * is, 1.5 * is}, 1e-6, "out")
  lu.assertEquals(out:size(), {2, 1, 1, 2})
end

function TestBatchNorm:test_running_update_unbiased()
  local rng = sf.rng(1)
  local x = sf.randn({3, 2, 2, 2}, rng)
  local rm, rv = sf.tensor{0.5, -1}, sf.tensor{2, 3}
  K.batchnorm_forward_train(x, nil, nil, rm, rv, 0.1, EPS)
  for c = 1, 2 do
    local v = flat(x:select(2, c))
    local s = 0
    for _, a in ipairs(v) do s = s + a end
    local m = s / #v
    local ss = 0
    for _, a in ipairs(v) do ss = ss + (a - m) ^ 2 end
    local unbiased = ss / (#v - 1)
    local m0, v0 = ({0.5, -1})[c], ({2, 3})[c]
    lu.assertAlmostEquals(rm:get(c), 0.9 * m0 + 0.1 * m, 1e-6)
    lu.assertAlmostEquals(rv:get(c), 0.9 * v0 + 0.1 * unbiased, 1e-5)
  end
  -- another momentum
  local rm2, rv2 = sf.zeros(2), sf.ones(2)
  local _, mean = K.batchnorm_forward_train(x, nil, nil, rm2, rv2, 0.5)
  assert_close(rm2, {0.5 * mean:get(1), 0.5 * mean:get(2)}, 1e-6, "momentum 0.5")
end

function TestBatchNorm:test_batch_mode_leaves_nothing_behind()
  -- without running tensors nothing is updated: the same call twice gives the same output
  local x = sf.randn({4, 3}, sf.rng(2))
  local a = K.batchnorm_forward_train(x)
  local b = K.batchnorm_forward_train(x)
  assert_close(a, b, 0, "repeat")
end

function TestBatchNorm:test_eval_forward_and_untouched_stats()
  local x = sf.randn({2, 3, 2, 2}, sf.rng(3))
  local g, b = sf.tensor{1, 2, 0.5}, sf.tensor{0, 1, -1}
  local rm, rv = sf.tensor{0.1, -0.2, 0.3}, sf.tensor{1, 0.5, 2}
  local rm0, rv0 = flat(rm), flat(rv)
  local out, invstd = K.batchnorm_forward_eval(x, g, b, rm, rv, EPS)
  assert_close(rm, rm0, 0, "running_mean untouched")
  assert_close(rv, rv0, 0, "running_var untouched")
  local m, v, gg, bb = flat(rm), flat(rv), flat(g), flat(b)
  assert_close(invstd, {1 / math.sqrt(1 + EPS), 1 / math.sqrt(0.5 + EPS), 1 / math.sqrt(2 + EPS)}, 1e-6, "invstd")
  for n = 1, 2 do
    for c = 1, 3 do
      for h = 1, 2 do
        for w = 1, 2 do
          local want = (x:get(n, c, h, w) - m[c]) / math.sqrt(v[c] + EPS) * gg[c] + bb[c]
          lu.assertAlmostEquals(out:get(n, c, h, w), want, 1e-5)
        end
      end
    end
  end
end

function TestBatchNorm:test_strided_input_and_out()
  local rng = sf.rng(4)
  local base = sf.randn({3, 5}, rng) -- x = base^T is a strided [5,3]
  local xt = base:t()
  lu.assertFalse(xt:is_contiguous())
  local a = K.batchnorm_forward_train(xt, nil, nil)
  local b = K.batchnorm_forward_train(xt:contiguous(), nil, nil)
  assert_close(a, b, 0, "strided vs contiguous")
  -- a given output is written into and returned
  local out = sf.zeros(5, 3)
  local r = K.batchnorm_forward_train(xt, nil, nil, nil, nil, 0.1, EPS, out)
  lu.assertTrue(rawequal(r, out))
  assert_close(out, b, 0, "given out")
  -- in place (eval): out = input
  local x = sf.randn({4, 2}, rng)
  local want = K.batchnorm_forward_eval(x, nil, nil, sf.zeros(2), sf.ones(2))
  local r2 = K.batchnorm_forward_eval(x, nil, nil, sf.zeros(2), sf.ones(2), EPS, x)
  lu.assertTrue(rawequal(r2, x))
  assert_close(x, want, 0, "in place")
end

-- Rows of 16 values or more run image by image, shorter ones channel by channel (the
-- same row functions either way): both against a double-precision reference (forward,
-- running statistics), finite differences (backward) and, with the ReLU, the ReLU's and
-- the BatchNorm's kernels one after the other
function TestBatchNorm:test_both_row_layouts()
  local rng = sf.rng(6)
  for _, shape in ipairs{{3, 4, 2, 2}, {3, 4, 4, 5}, {2, 3, 9, 9}} do
    local tag = table.concat(shape, "x")
    local C = shape[2]
    local x = sf.randn(shape, rng) * 2 + 0.5
    local g, b = sf.rand({C}, rng) + 0.5, sf.randn({C}, rng)
    local rm, rv = sf.zeros(C), sf.ones(C)
    local out, mean, invstd = K.batchnorm_forward_train(x, g, b, rm, rv, 0.1, EPS)
    for c = 1, C do
      local v = flat(x:select(2, c))
      local s, ss = 0, 0
      for _, a in ipairs(v) do s = s + a end
      local m = s / #v
      for _, a in ipairs(v) do ss = ss + (a - m) ^ 2 end
      local is = 1 / math.sqrt(ss / #v + EPS)
      lu.assertAlmostEquals(mean:get(c), m, 1e-5, tag .. " mean")
      lu.assertAlmostEquals(invstd:get(c), is, 1e-4 * is, tag .. " invstd")
      lu.assertAlmostEquals(rv:get(c), 0.9 + 0.1 * ss / (#v - 1), 1e-4, tag .. " running var")
      local o = flat(out:select(2, c))
      for i = 1, #v do lu.assertAlmostEquals(o[i], (v[i] - m) * is * g:get(c) + b:get(c), 1e-4, tag .. " out") end
    end
    for _, relu in ipairs{false, true} do
      local R = rand_table(x:numel(), rng)
      local dout = sf.tensor(R):reshape(shape)
      local f = function() return (K.batchnorm_forward_train(x, g, b, nil, nil, 0.1, EPS, nil, relu)) end
      local _, m2, i2 = f()
      _, m2, i2 = K.batchnorm_forward_train(x, g, b, nil, nil, 0.1, EPS, nil, relu)
      local dg, db = sf.zeros(C), sf.zeros(C)
      local dinp = K.batchnorm_backward(dout, x, g, m2, i2, true, dg, db, true, 1, relu, b)
      if relu then
        -- (finite differences would straddle the ReLU's kinks): the two-kernel composition
        local y = K.relu_forward((K.batchnorm_forward_train(x, g, b, nil, nil, 0.1, EPS)))
        local dg1, db1 = sf.zeros(C), sf.zeros(C)
        local want = K.batchnorm_backward(K.relu_backward(dout, y), x, g, m2, i2, true, dg1, db1, true)
        assert_close(dinp, want, 1e-5, tag .. " relu dinp")
        assert_close(dg, dg1, 1e-5, tag .. " relu dgamma")
        assert_close(db, db1, 1e-5, tag .. " relu dbeta")
      else
        assert_grad(numgrad(f, x, R, 1e-3), dinp, tag .. " dinp", 2e-2)
        assert_grad(numgrad(f, g, R, 1e-3), dg, tag .. " dgamma", 2e-2)
        assert_grad(numgrad(f, b, R, 1e-3), db, tag .. " dbeta", 2e-2)
      end
    end
  end
end

function TestBatchNorm:test_gradcheck_batch_stats()
  local rng = sf.rng(5)
  local x = sf.randn({3, 4, 2, 2}, rng)
  local g = sf.rand({4}, rng):reshape{4} -- in (0, 1)
  g = sf.tensor{0.5 + g:get(1), 0.5 + g:get(2), 0.5 + g:get(3), 0.5 + g:get(4)}
  local b = sf.tensor{0.1, -0.2, 0.3, 0}
  local R = rand_table(x:numel(), rng)
  local dout = sf.tensor(R):reshape{3, 4, 2, 2}
  local out, mean, invstd = K.batchnorm_forward_train(x, g, b)
  local dg, db = sf.zeros(4), sf.zeros(4)
  local dinp = K.batchnorm_backward(dout, x, g, mean, invstd, true, dg, db, true)
  lu.assertEquals(dinp:size(), {3, 4, 2, 2})
  local f = function() return (K.batchnorm_forward_train(x, g, b)) end
  assert_grad(numgrad(f, x, R), dinp, "dinp")
  assert_grad(numgrad(f, g, R), dg, "dgamma")
  assert_grad(numgrad(f, b, R), db, "dbeta")
  -- the checker can fail: the fixed-statistics formula is wrong for batch statistics
  local wrong = K.batchnorm_backward(dout, x, g, mean, invstd, true, nil, nil, false)
  lu.assertTrue(grad_error(numgrad(f, x, R), wrong) > 0.1)
  lu.assertNotNil(out)
end

function TestBatchNorm:test_gradcheck_batchnorm1d_no_affine()
  local rng = sf.rng(6)
  local x = sf.randn({5, 3}, rng)
  local R = rand_table(15, rng)
  local _, mean, invstd = K.batchnorm_forward_train(x)
  local dinp = K.batchnorm_backward(sf.tensor(R):reshape{5, 3}, x, nil, mean, invstd, true, nil, nil, true)
  assert_grad(numgrad(function() return (K.batchnorm_forward_train(x)) end, x, R), dinp, "dinp")
end

function TestBatchNorm:test_gradcheck_fixed_stats()
  local rng = sf.rng(7)
  local x = sf.randn({2, 3, 3}, rng)
  local g, b = sf.tensor{1.5, -0.5, 0.8}, sf.tensor{0, 0.2, -0.1}
  local rm, rv = sf.tensor{0.2, -0.1, 0}, sf.tensor{0.8, 1.5, 1}
  local R = rand_table(x:numel(), rng)
  local dout = sf.tensor(R):reshape{2, 3, 3}
  local _, invstd = K.batchnorm_forward_eval(x, g, b, rm, rv)
  local dg, db = sf.zeros(3), sf.zeros(3)
  local dinp = K.batchnorm_backward(dout, x, g, rm, invstd, true, dg, db, false)
  local f = function() return (K.batchnorm_forward_eval(x, g, b, rm, rv)) end
  assert_grad(numgrad(f, x, R), dinp, "dinp")
  assert_grad(numgrad(f, g, R), dg, "dgamma")
  assert_grad(numgrad(f, b, R), db, "dbeta")
  -- the simple affine formula exactly: dinp = dout * gamma * invstd
  local gi, ii = flat(g), flat(invstd)
  for n = 1, 2 do
    for c = 1, 3 do
      for h = 1, 3 do
        lu.assertAlmostEquals(dinp:get(n, c, h), dout:get(n, c, h) * gi[c] * ii[c], 1e-6)
      end
    end
  end
end

-- BatchNorm + residual + ReLU in one pass (a ResNet block's end): the same bits as the
-- BatchNorm and K.add_relu_forward one after the other (image-major and channel loops, given
-- or own statistics, written over the input), running statistics alike, and the errors
function TestBatchNorm:test_fused_add_relu_matches_separate()
  local rng = sf.rng(10)
  for _, shape in ipairs{{4, 5, 3, 3}, {3, 6, 8, 8}} do
    local x, r = sf.randn(shape, rng), sf.randn(shape, rng)
    local g, b = sf.randn({shape[2]}, rng), sf.randn({shape[2]}, rng)
    local rm, rv = sf.randn({shape[2]}, rng), sf.rand({shape[2]}, rng) + 0.5
    local rm1, rv1, rm2, rv2 = rm:clone(), rv:clone(), rm:clone(), rv:clone()
    local y, mean, invstd = K.batchnorm_forward_train(x, g, b, rm1, rv1)
    local want = K.add_relu_forward(y, r)
    local got, fmean, finvstd = K.batchnorm_forward_train(x, g, b, rm2, rv2, 0.1, EPS, nil, true, nil, r)
    local tag = table.concat(shape, "x")
    lu.assertTrue(got:equal(want), tag .. ": forward")
    lu.assertTrue(fmean:equal(mean) and finvstd:equal(invstd), tag .. ": saved statistics")
    lu.assertTrue(rm2:equal(rm1) and rv2:equal(rv1), tag .. ": running statistics")
    -- with the convolution's row statistics, written over the input
    local st = sf.zeros({shape[1], shape[2], 2})
    local xc = x:clone()
    local w = sf.randn({shape[2], shape[2], 1, 1}, rng)
    local c0, cst = K.conv2d_forward(xc, w, nil, 1, 0, nil, nil, nil, true)
    local want2 = K.add_relu_forward((K.batchnorm_forward_train(c0, g, b, nil, nil, 0.1, EPS)), r)
    local got2 = K.batchnorm_forward_train(c0, g, b, nil, nil, 0.1, EPS, c0, true, cst, r)
    lu.assertTrue(rawequal(got2, c0), tag .. ": the given output is returned")
    lu.assertTrue(got2:equal(want2), tag .. ": with the convolution's statistics, in place")
  end
  local x, r = sf.randn({2, 3, 4, 4}, rng), sf.randn({2, 3, 4, 4}, rng)
  err_contains("batchnorm_forward_train: argument #11 (residual) is only taken with relu = true (argument #9)",
    K.batchnorm_forward_train, x, nil, nil, nil, nil, 0.1, EPS, nil, false, nil, r)
  err_contains("batchnorm_forward_train: argument #11 (residual) has shape [2,3,4,3], expected [2,3,4,4]",
    K.batchnorm_forward_train, x, nil, nil, nil, nil, 0.1, EPS, nil, true, nil, sf.zeros(2, 3, 4, 3))
end

-- BatchNorm + ReLU in one pass (relu = true in the forward and the backward): the same
-- numbers as the two kernels one after the other, in every mode, and a gradient check
function TestBatchNorm:test_fused_relu_matches_separate()
  local rng = sf.rng(9)
  local x = sf.randn({4, 5, 3, 3}, rng)
  local g, b = sf.randn({5}, rng), sf.randn({5}, rng)
  local rm, rv = sf.randn({5}, rng), sf.rand({5}, rng) + 0.5
  local dy = sf.randn({4, 5, 3, 3}, rng)
  for _, mode in ipairs{"train", "eval"} do
    local out, mean, invstd, fused, fmean, finvstd
    local rm1, rv1, rm2, rv2 = rm:clone(), rv:clone(), rm:clone(), rv:clone()
    if mode == "train" then
      out, mean, invstd = K.batchnorm_forward_train(x, g, b, rm1, rv1)
      fused, fmean, finvstd = K.batchnorm_forward_train(x, g, b, rm2, rv2, 0.1, EPS, nil, true)
      lu.assertEquals(flat(rm2), flat(rm1), "running mean")
      lu.assertEquals(flat(rv2), flat(rv1), "running var")
    else
      out, invstd = K.batchnorm_forward_eval(x, g, b, rm, rv)
      fused, finvstd = K.batchnorm_forward_eval(x, g, b, rm, rv, EPS, nil, true)
      mean, fmean = rm, rm
    end
    local relu = K.relu_forward(out)
    lu.assertEquals(flat(fused), flat(relu), mode .. ": forward")
    lu.assertTrue(flat(fused)[1] >= 0)
    lu.assertEquals(flat(finvstd), flat(invstd), mode .. ": invstd")
    local bs = mode == "train"
    local dg1, db1, dg2, db2 = sf.zeros(5), sf.zeros(5), sf.zeros(5), sf.zeros(5)
    local want = K.batchnorm_backward(K.relu_backward(dy, relu), x, g, mean, invstd, true, dg1, db1, bs)
    local got = K.batchnorm_backward(dy, x, g, fmean, finvstd, true, dg2, db2, bs, 1, true, b)
    assert_close(got, want, 1e-5, mode .. ": dinp")
    assert_close(dg2, dg1, 1e-5, mode .. ": dgamma")
    assert_close(db2, db1, 1e-5, mode .. ": dbeta")
    -- the mask matters: without it the gradient differs
    local unmasked = K.batchnorm_backward(dy, x, g, fmean, finvstd, true, nil, nil, bs)
    lu.assertTrue(grad_error(flat(want), unmasked) > 1e-2, mode .. ": the mask changes the gradient")
  end
  -- the backward recomputes where the forward's ReLU was open: bit for bit, over many
  -- values (with unit dout and fixed statistics, dinp is gamma * invstd exactly there)
  local big = sf.randn({16, 5, 40, 40}, rng)
  local ones = sf.ones(16, 5, 40, 40)
  for _, mode in ipairs{"train", "eval"} do
    local y, mean, invstd
    if mode == "train" then
      y, mean, invstd = K.batchnorm_forward_train(big, g, b, nil, nil, 0.1, EPS, nil, true)
    else
      y, invstd = K.batchnorm_forward_eval(big, g, b, rm, rv, EPS, nil, true)
      mean = rm
    end
    local d = K.batchnorm_backward(ones, big, g, mean, invstd, true, nil, nil, false, 1, true, b)
    local open_y, open_d = (y:gt(0)):sum(), (d:ne(0)):sum()
    lu.assertEquals(open_d, open_y, mode .. ": the recomputed mask")
    lu.assertEquals(flat((y:gt(0)) - (d:ne(0))), flat(sf.zeros(16, 5, 40, 40)), mode .. ": mask, element by element")
  end
  -- finite differences through the fused forward
  local R = rand_table(x:numel(), rng)
  local dout = sf.tensor(R):reshape{4, 5, 3, 3}
  local f = function() return (K.batchnorm_forward_train(x, g, b, nil, nil, 0.1, EPS, nil, true)) end
  local out, mean, invstd = f()
  out, mean, invstd = K.batchnorm_forward_train(x, g, b, nil, nil, 0.1, EPS, nil, true)
  local dg, db = sf.zeros(5), sf.zeros(5)
  local dinp = K.batchnorm_backward(dout, x, g, mean, invstd, true, dg, db, true, 1, true, b)
  assert_grad(numgrad(f, x, R, 1e-3), dinp, "fused dinp", 2e-2)
  assert_grad(numgrad(f, g, R, 1e-3), dg, "fused dgamma", 2e-2)
  assert_grad(numgrad(f, b, R, 1e-3), db, "fused dbeta", 2e-2)
  -- errors: the flag must be a boolean, beta must have C elements
  err_contains("batchnorm_forward_train: argument #9 (relu) expected a boolean, got number",
    K.batchnorm_forward_train, x, g, b, nil, nil, 0.1, EPS, nil, 1)
  err_contains("batchnorm_forward_eval: argument #8 (relu) expected a boolean, got string",
    K.batchnorm_forward_eval, x, g, b, rm, rv, EPS, nil, "yes")
  err_contains("batchnorm_backward: argument #11 (relu) expected a boolean, got userdata",
    K.batchnorm_backward, dout, x, g, mean, invstd, true, nil, nil, true, 1, sf.zeros(4, 5, 9))
  err_contains("batchnorm_backward: argument #12 (beta) has shape [4], expected [5]",
    K.batchnorm_backward, dout, x, g, mean, invstd, true, nil, nil, true, 1, true, sf.zeros(4))
end

function TestBatchNorm:test_backward_skips_accumulates_and_scales()
  local rng = sf.rng(8)
  local x = sf.randn({4, 2}, rng)
  local dout = sf.randn({4, 2}, rng)
  local g = sf.tensor{1, 2}
  local _, mean, invstd = K.batchnorm_forward_train(x, g, nil)
  local dg1, db1 = sf.zeros(2), sf.zeros(2)
  local r = K.batchnorm_backward(dout, x, g, mean, invstd, nil, dg1, db1, true)
  lu.assertNil(r) -- dinp skipped
  local dg2, db2 = sf.zeros(2), sf.zeros(2)
  K.batchnorm_backward(dout, x, g, mean, invstd, false, dg2, db2, true)
  K.batchnorm_backward(dout, x, g, mean, invstd, false, dg2, db2, true)
  assert_close(dg2, {2 * dg1:get(1), 2 * dg1:get(2)}, 1e-6, "twice = 2x dgamma")
  assert_close(db2, {2 * db1:get(1), 2 * db1:get(2)}, 1e-6, "twice = 2x dbeta")
  local dg3 = sf.zeros(2)
  K.batchnorm_backward(dout, x, g, mean, invstd, nil, dg3, nil, true, 0.25)
  assert_close(dg3, {0.25 * dg1:get(1), 0.25 * dg1:get(2)}, 1e-6, "scale")
  -- dinp does not depend on whether the affine gradients are wanted
  local d1 = K.batchnorm_backward(dout, x, g, mean, invstd, true, nil, nil, true)
  local d2 = K.batchnorm_backward(dout, x, g, mean, invstd, true, sf.zeros(2), sf.zeros(2), true)
  assert_close(d1, d2, 0, "dinp alone")
  -- into a given tensor, and in place over dout
  local into = sf.zeros(4, 2)
  lu.assertTrue(rawequal(K.batchnorm_backward(dout, x, g, mean, invstd, into, nil, nil, true), into))
  assert_close(into, d1, 0, "given dinp")
  local dcopy = dout:clone()
  K.batchnorm_backward(dcopy, x, g, mean, invstd, dcopy, nil, nil, true)
  assert_close(dcopy, d1, 1e-6, "in place over dout")
end

function TestBatchNorm:test_counters()
  if not K.counters then return lu.skip("K.counters not available") end
  local x = sf.randn({4, 2}, sf.rng(9))
  local _, mean, invstd = K.batchnorm_forward_train(x)
  K.reset_counters()
  K.batchnorm_forward_train(x)
  K.batchnorm_forward_eval(x, nil, nil, mean, invstd)
  K.batchnorm_backward(x, x, nil, mean, invstd, nil, nil, nil, true) -- nothing wanted: no work
  K.batchnorm_backward(x, x, nil, mean, invstd, nil, sf.zeros(2), nil, true)
  K.batchnorm_backward(x, x, nil, mean, invstd, true, nil, nil, true)
  local c = K.counters()
  lu.assertEquals(c.norm_fwd, 2)
  lu.assertEquals(c.norm_bwd_affine, 1)
  lu.assertEquals(c.norm_bwd_input, 1)
end

function TestBatchNorm:test_errors()
  local x = sf.zeros(4, 16, 8, 8)
  err_contains("batchnorm_forward_train: argument #2 (gamma) has shape [8], expected [16] (C of input [4,16,8,8])",
    K.batchnorm_forward_train, x, sf.ones(8))
  err_contains("batchnorm_forward_train: argument #3 (beta) has shape [16,1], expected [16]",
    K.batchnorm_forward_train, x, nil, sf.ones(16, 1))
  err_contains("batchnorm_forward_train: argument #1 (input) has shape [5], expected [N,C,*]",
    K.batchnorm_forward_train, sf.zeros(5))
  err_contains("batchnorm_forward_train: argument #1 (input) expected a tensor, got table",
    K.batchnorm_forward_train, {1, 2})
  err_contains("running_mean (argument #4) and running_var (argument #5) must be given together",
    K.batchnorm_forward_train, x, nil, nil, sf.zeros(16))
  err_contains("batchnorm_forward_train: argument #5 (running_var) has shape [15], expected [16]",
    K.batchnorm_forward_train, x, nil, nil, sf.zeros(16), sf.ones(15))
  err_contains("argument #4 (running_mean) must be contiguous (it is updated in place)",
    K.batchnorm_forward_train, x, nil, nil, sf.zeros(16, 2):select(2, 1), sf.ones(16))
  err_contains("batchnorm_forward_train: argument #1 (input) has shape [1,3]: batch statistics need more than 1 value per channel",
    K.batchnorm_forward_train, sf.zeros(1, 3))
  err_contains("batchnorm_forward_train: argument #7 (eps) must be >= 0", K.batchnorm_forward_train, x, nil, nil,
    nil, nil, 0.1, -1)
  err_contains("batchnorm_forward_train: argument #6 (momentum) expected a number, got string",
    K.batchnorm_forward_train, x, nil, nil, nil, nil, "fast")
  err_contains("batchnorm_forward_train: argument #8 (out) has shape [4,16,8], expected [4,16,8,8] (the shape of input [4,16,8,8])",
    K.batchnorm_forward_train, x, nil, nil, nil, nil, 0.1, EPS, sf.zeros(4, 16, 8))
  err_contains("batchnorm_forward_train: argument #8 (out) must be contiguous",
    K.batchnorm_forward_train, sf.zeros(3, 2), nil, nil, nil, nil, 0.1, EPS, sf.zeros(2, 3):t())
  err_contains("batchnorm_forward_eval: argument #4 (running_mean) expected a tensor, got nil",
    K.batchnorm_forward_eval, x, nil, nil)
  err_contains("batchnorm_forward_eval: argument #5 (running_var) has shape [3], expected [16] (C of input [4,16,8,8])",
    K.batchnorm_forward_eval, x, nil, nil, sf.zeros(16), sf.ones(3))
  local s = sf.zeros(16)
  err_contains("batchnorm_backward: argument #1 (dout) has shape [4,16,8,4], expected [4,16,8,8] (the shape of input [4,16,8,8])",
    K.batchnorm_backward, sf.zeros(4, 16, 8, 4), x, nil, s, s, nil, nil, nil, true)
  err_contains("batchnorm_backward: argument #9 (batch_stats) expected a boolean, got nil",
    K.batchnorm_backward, x, x, nil, s, s, true, nil, nil)
  err_contains("batchnorm_backward: argument #7 (dgamma) has shape [4], expected [16]",
    K.batchnorm_backward, x, x, nil, s, s, nil, sf.zeros(4), nil, true)
  err_contains("batchnorm_backward: argument #8 (dbeta) must be contiguous (it is accumulated into)",
    K.batchnorm_backward, x, x, nil, s, s, nil, nil, sf.zeros(16, 2):select(2, 2), true)
  err_contains("batchnorm_backward: argument #5 (invstd) has shape [2], expected [16]",
    K.batchnorm_backward, x, x, nil, s, sf.zeros(2), nil, nil, nil, true)
  err_contains("batchnorm_backward: argument #6 (dinp) expected a tensor, true, false or nil, got number",
    K.batchnorm_backward, x, x, nil, s, s, 3, nil, nil, true)
end

-- ---- LayerNorm ----

-- BatchNorm splits its channels and ReLU its elements over the thread pool; every channel
-- and element is computed the serial way, so the bits must not depend on the thread count.
function TestBatchNorm:test_threads_same_bits()
  local rng = sf.rng(31)
  local x = sf.randn({8, 6, 64, 64}, rng) * 3 + 1
  local g = sf.randn({8, 6, 64, 64}, rng)
  local gamma, beta = sf.randn({6}, rng), sf.randn({6}, rng)
  local n0 = sf.threads()
  local function run()
    local rm, rv = sf.zeros{6}, sf.ones{6}
    local out, mean, invstd = K.batchnorm_forward_train(x, gamma, beta, rm, rv, 0.1, 1e-5)
    local eout, einv = K.batchnorm_forward_eval(x, gamma, beta, rm, rv, 1e-5)
    local dg, db = sf.zeros{6}, sf.zeros{6}
    local dx = K.batchnorm_backward(g, x, gamma, mean, invstd, true, dg, db, true, 0.5)
    local dxe = K.batchnorm_backward(g, x, gamma, rm, einv, true, nil, nil, false)
    local r = K.relu_forward(x)
    local dr = K.relu_backward(g, r)
    local res = {}
    for i, t in ipairs{out, mean, invstd, rm, rv, eout, einv, dg, db, dx, dxe, r, dr} do res[i] = flat(t) end
    return res
  end
  sf.set_threads(1)
  local one = run()
  local names = {"out", "mean", "invstd", "running_mean", "running_var", "eval out", "eval invstd", "dgamma",
                 "dbeta", "dinp", "dinp (fixed stats)", "relu", "relu backward"}
  for _, t in ipairs{2, 3} do
    sf.set_threads(t)
    local r = run()
    sf.set_threads(n0)
    for i = 1, #one do lu.assertEquals(r[i], one[i], t .. " threads: " .. names[i]) end
  end
  sf.set_threads(n0)
  -- and the values are right: a channel's output has mean beta, std |gamma|
  local out = K.batchnorm_forward_train(x, gamma, beta, nil, nil)
  local ch = out:select(2, 4)
  assert_close({ch:mean()}, {beta:totable()[4]}, 1e-4, "channel mean")
  assert_close({ch:std(nil, false, 0)}, {math.abs(gamma:totable()[4])}, 1e-3, "channel std")
end

TestLayerNorm = {}

function TestLayerNorm:test_forward_hand()
  -- rows {1,2,3} (mean 2, var 2/3) and {0,0,6} (mean 2, var 8)
  local x = sf.tensor{{1, 2, 3}, {0, 0, 6}}
  local g, b = sf.tensor{1, 2, 3}, sf.tensor{0, 0, 1}
  local out, mean, rstd = K.layernorm_forward(x, 3, g, b)
  local r1, r2 = 1 / math.sqrt(2 / 3 + EPS), 1 / math.sqrt(8 + EPS)
  assert_close(mean, {2, 2}, 1e-6, "mean")
  assert_close(rstd, {r1, r2}, 1e-6, "rstd")
  assert_close(out, {-r1, 0, 3 * r1 + 1, -2 * r2, -4 * r2, 12 * r2 + 1}, 1e-6, "out")
end

function TestLayerNorm:test_shapes_and_multi_dim_normalized()
  local rng = sf.rng(10)
  local x = sf.randn({2, 3, 4}, rng)
  local a, m = K.layernorm_forward(x, 12)          -- over the last two dims
  local b = K.layernorm_forward(x:reshape{2, 12}, 12)
  assert_close(a, b, 0, "[2,3,4] over 12 = [2,12]")
  lu.assertEquals(m:size(), {2})
  local _, m4 = K.layernorm_forward(x, 4)
  lu.assertEquals(m4:size(), {6})
  -- gamma may be given as the trailing shape [3,4]
  local g = sf.randn({3, 4}, rng)
  local c = K.layernorm_forward(x, 12, g)
  local d = K.layernorm_forward(x, 12, g:reshape{12})
  assert_close(c, d, 0, "gamma [3,4] vs [12]")
  -- strided input
  local xt = sf.randn({4, 3}, rng):t()
  assert_close(K.layernorm_forward(xt, 4), K.layernorm_forward(xt:contiguous(), 4), 0, "strided")
end

function TestLayerNorm:test_gradcheck()
  local rng = sf.rng(11)
  local x = sf.randn({3, 2, 5}, rng)
  local g, b = sf.randn({5}, rng), sf.randn({5}, rng)
  local R = rand_table(x:numel(), rng)
  local dout = sf.tensor(R):reshape{3, 2, 5}
  local _, mean, rstd = K.layernorm_forward(x, 5, g, b)
  local dg, db = sf.zeros(5), sf.zeros(5)
  local dinp = K.layernorm_backward(dout, x, 5, g, mean, rstd, true, dg, db)
  local f = function() return (K.layernorm_forward(x, 5, g, b)) end
  assert_grad(numgrad(f, x, R), dinp, "dinp")
  assert_grad(numgrad(f, g, R), dg, "dgamma")
  assert_grad(numgrad(f, b, R), db, "dbeta")
  -- no affine
  local _, m2, r2 = K.layernorm_forward(x, 5)
  local d2 = K.layernorm_backward(dout, x, 5, nil, m2, r2, true)
  assert_grad(numgrad(function() return (K.layernorm_forward(x, 5)) end, x, R), d2, "dinp, no affine")
  -- skip / accumulate / scale
  lu.assertNil(K.layernorm_backward(dout, x, 5, g, mean, rstd, nil, nil, nil))
  local dg2 = sf.zeros(5)
  K.layernorm_backward(dout, x, 5, g, mean, rstd, false, dg2, nil, 2)
  K.layernorm_backward(dout, x, 5, g, mean, rstd, false, dg2, nil, 1)
  local want = {}
  for i = 1, 5 do want[i] = 3 * dg:get(i) end
  assert_close(dg2, want, 1e-5, "accumulated with scale")
end

function TestLayerNorm:test_errors()
  local x = sf.zeros(2, 3, 4)
  err_contains("layernorm_forward: argument #2 (D) is 5, which is not the size of the trailing dimensions of argument #1 (input) of shape [2,3,4]",
    K.layernorm_forward, x, 5)
  err_contains("layernorm_forward: argument #2 (D) expected a positive integer, got nil", K.layernorm_forward, x)
  err_contains("layernorm_forward: argument #3 (gamma) has shape [3], expected [4] (D, the trailing elements of input [2,3,4])",
    K.layernorm_forward, x, 4, sf.ones(3))
  err_contains("layernorm_forward: argument #4 (beta) has shape [4,3], expected [12]",
    K.layernorm_forward, x, 12, nil, sf.ones(4, 3))
  err_contains("layernorm_forward: argument #6 (out) has shape [2,12], expected [2,3,4]",
    K.layernorm_forward, x, 4, nil, nil, EPS, sf.zeros(2, 12))
  local m = sf.zeros(6)
  err_contains("layernorm_backward: argument #5 (save_mean) has shape [6], expected [2] (rows of input [2,3,4])",
    K.layernorm_backward, x, x, 12, nil, m, m, true)
  err_contains("layernorm_backward: argument #1 (dout) has shape [2,12], expected [2,3,4]",
    K.layernorm_backward, sf.zeros(2, 12), x, 4, nil, m, m, true)
  err_contains("layernorm_backward: argument #8 (dgamma) has shape [5], expected [4]",
    K.layernorm_backward, x, x, 4, nil, m, m, true, sf.zeros(5))
end

-- ---- GroupNorm ----

TestGroupNorm = {}

function TestGroupNorm:test_forward_hand()
  -- [N=1, C=4, HW=1], G=2: groups {1,3} (mean 2, var 1) and {2,6} (mean 4, var 4)
  local x = sf.tensor{{1, 3, 2, 6}}
  local g, b = sf.tensor{1, 2, 1, 1}, sf.tensor{0, 0, 0, 1}
  local out, mean, rstd = K.groupnorm_forward(x, 2, g, b)
  local r1, r2 = 1 / math.sqrt(1 + EPS), 1 / math.sqrt(4 + EPS)
  lu.assertEquals(mean:size(), {1, 2})
  assert_close(mean, {2, 4}, 1e-6, "mean")
  assert_close(rstd, {r1, r2}, 1e-6, "rstd")
  assert_close(out, {-r1, 2 * r1, -2 * r2, 2 * r2 + 1}, 1e-6, "out")
end

function TestGroupNorm:test_relations()
  local rng = sf.rng(12)
  local x = sf.randn({2, 4, 3, 3}, rng)
  -- G = 1: LayerNorm over C*H*W
  assert_close(K.groupnorm_forward(x, 1), K.layernorm_forward(x, 36), 1e-5, "G=1 is LayerNorm")
  -- G = C: instance norm = LayerNorm over H*W of each (n, c)
  assert_close(K.groupnorm_forward(x, 4), K.layernorm_forward(x, 9), 1e-5, "G=C is instance norm")
  -- strided input
  local xp = x:transpose(3, 4)
  assert_close(K.groupnorm_forward(xp, 2), K.groupnorm_forward(xp:contiguous(), 2), 0, "strided")
end

function TestGroupNorm:test_gradcheck()
  local rng = sf.rng(13)
  local x = sf.randn({2, 6, 2, 2}, rng)
  local g, b = sf.randn({6}, rng), sf.randn({6}, rng)
  local R = rand_table(x:numel(), rng)
  local dout = sf.tensor(R):reshape{2, 6, 2, 2}
  local _, mean, rstd = K.groupnorm_forward(x, 3, g, b)
  local dg, db = sf.zeros(6), sf.zeros(6)
  local dinp = K.groupnorm_backward(dout, x, 3, g, mean, rstd, true, dg, db)
  local f = function() return (K.groupnorm_forward(x, 3, g, b)) end
  assert_grad(numgrad(f, x, R), dinp, "dinp")
  assert_grad(numgrad(f, g, R), dg, "dgamma")
  assert_grad(numgrad(f, b, R), db, "dbeta")
  lu.assertNil(K.groupnorm_backward(dout, x, 3, g, mean, rstd, nil, nil, nil))
end

function TestGroupNorm:test_errors()
  local x = sf.zeros(2, 6, 4)
  err_contains("groupnorm_forward: argument #2 (G) is 4, which does not divide C = 6 of argument #1 (input) of shape [2,6,4]",
    K.groupnorm_forward, x, 4)
  err_contains("groupnorm_forward: argument #2 (G) expected a positive integer, got 0", K.groupnorm_forward, x, 0)
  err_contains("groupnorm_forward: argument #3 (gamma) has shape [3], expected [6] (C of input [2,6,4])",
    K.groupnorm_forward, x, 3, sf.ones(3))
  local s = sf.zeros(2, 3)
  err_contains("groupnorm_backward: argument #6 (save_rstd) has shape [3,2], expected [2,3] (N and G of input [2,6,4])",
    K.groupnorm_backward, x, x, 3, nil, s, sf.zeros(3, 2), true)
  err_contains("groupnorm_backward: argument #9 (dbeta) has shape [3], expected [6]",
    K.groupnorm_backward, x, x, 3, nil, s, s, true, nil, sf.zeros(3))
end

-- ---- activations ----

TestActivations = {}

local GELU1 = 0.8413447460685429      -- 1 * Phi(1)
local GELU_M1 = -0.15865525393145707  -- -1 * Phi(-1)
local GELU_TANH1 = 0.8411919906082768

-- the residual sum and its ReLU in one pass: by hand, in place into either operand, NaN
-- kept, the same as the two kernels one after the other, and its errors
function TestActivations:test_add_relu()
  local a, b = sf.tensor{-2, -1, 0, 1, 3, 0 / 0}, sf.tensor{1, 2, -1, -1, 0.5, 0}
  local got = flat(K.add_relu_forward(a, b))
  lu.assertEquals({got[1], got[2], got[3], got[4], got[5]}, {0, 1, 0, 0, 3.5})
  lu.assertTrue(got[6] ~= got[6], "NaN stays NaN")
  local rng = sf.rng(12)
  local x, y = sf.randn({3, 4, 5, 6}, rng), sf.randn({3, 4, 5, 6}, rng)
  local want = flat(K.relu_forward(x + y))
  lu.assertEquals(flat(K.add_relu_forward(x, y)), want)
  local x2 = x:clone()
  lu.assertEquals(flat(K.add_relu_forward(x2, y, x2)), want, "in place into a")
  lu.assertEquals(flat(x2), want)
  local y2 = y:clone()
  K.add_relu_forward(x, y2, y2)
  lu.assertEquals(flat(y2), want, "in place into b")
  -- a strided operand
  local xt = x:transpose(1, 2):contiguous():transpose(1, 2)
  lu.assertEquals(flat(K.add_relu_forward(xt, y)), want, "strided a")
  err_contains("add_relu_forward: argument #2 (b) has shape [3,4,5], expected [3,4,5,6]", K.add_relu_forward, x,
    sf.zeros(3, 4, 5))
  err_contains("add_relu_forward: argument #1 (a) expected a tensor", K.add_relu_forward, {1}, y)
end

function TestActivations:test_hand_values()
  local x = sf.tensor{-2, -1, 0, 1, 3}
  assert_close(K.relu_forward(x), {0, 0, 0, 1, 3}, 0, "relu")
  assert_close(K.gelu_forward(x), {-2 * 0.022750131948179195, GELU_M1, 0, GELU1, 3 * 0.9986501019683699}, 1e-6, "gelu")
  lu.assertAlmostEquals(K.gelu_forward(sf.tensor{1}, nil, "tanh"):get(1), GELU_TANH1, 1e-6)
  lu.assertAlmostEquals(K.gelu_forward(sf.tensor{1}, nil, true):get(1), GELU_TANH1, 1e-6)
  lu.assertAlmostEquals(K.gelu_forward(sf.tensor{1}, nil, "none"):get(1), GELU1, 1e-6)
  assert_close(K.tanh_forward(x), {math.tanh and math.tanh(-2) or -0.9640275800758169, -0.7615941559557649, 0,
    0.7615941559557649, 0.9950547536867305}, 1e-6, "tanh")
  local sig = {}
  for i, v in ipairs{-2, -1, 0, 1, 3} do sig[i] = 1 / (1 + math.exp(-v)) end
  assert_close(K.sigmoid_forward(x), sig, 1e-6, "sigmoid")
  -- extreme inputs stay finite
  assert_close(K.sigmoid_forward(sf.tensor{-200, 200}), {0, 1}, 1e-6, "sigmoid saturation")
  -- relu backward: gradient 0 at 0, same from input or output
  local dout = sf.tensor{1, 2, 3, 4, 5}
  assert_close(K.relu_backward(dout, x), {0, 0, 0, 4, 5}, 0, "relu backward from input")
  assert_close(K.relu_backward(dout, K.relu_forward(x)), {0, 0, 0, 4, 5}, 0, "relu backward from output")
  -- gelu'(0) = 0.5, gelu'(1) = Phi(1) + phi(1)
  local d = K.gelu_backward(sf.tensor{1, 1}, sf.tensor{0, 1})
  assert_close(d, {0.5, 0.8413447460685429 + 0.24197072451914337}, 1e-6, "gelu backward")
end

-- every activation: finite differences through the documented saved tensor
function TestActivations:test_gradcheck()
  local rng = sf.rng(14)
  -- keep away from 0 so that ReLU's kink is not straddled by the step
  local vals = {}
  for i, v in ipairs(rand_table(24, rng)) do vals[i] = v + (v >= 0 and 0.1 or -0.1) end
  local x = sf.tensor(vals):reshape{4, 6}
  local R = rand_table(24, rng)
  local dout = sf.tensor(R):reshape{4, 6}
  local cases = {
    {"relu", function() return K.relu_forward(x) end, function() return K.relu_backward(dout, x) end},
    {"gelu", function() return K.gelu_forward(x) end, function() return K.gelu_backward(dout, x) end},
    {"gelu tanh", function() return K.gelu_forward(x, nil, "tanh") end,
      function() return K.gelu_backward(dout, x, nil, "tanh") end},
    {"tanh", function() return K.tanh_forward(x) end, function() return K.tanh_backward(dout, K.tanh_forward(x)) end},
    {"sigmoid", function() return K.sigmoid_forward(x) end,
      function() return K.sigmoid_backward(dout, K.sigmoid_forward(x)) end},
  }
  for _, c in ipairs(cases) do
    assert_grad(numgrad(c[2], x, R, 1e-2), c[3](), c[1], 2e-3)
  end
end

function TestActivations:test_inplace_strided_and_given()
  local rng = sf.rng(15)
  local x = sf.randn({3, 4}, rng)
  local want = K.tanh_forward(x)
  local xt = x:t()
  assert_close(K.tanh_forward(xt), K.tanh_forward(xt:contiguous()), 0, "strided")
  local y = x:clone()
  lu.assertTrue(rawequal(K.tanh_forward(y, y), y))
  assert_close(y, want, 0, "in place")
  local dout = sf.randn({3, 4}, rng)
  local d = K.sigmoid_backward(dout, want)
  local into = sf.zeros(3, 4)
  lu.assertTrue(rawequal(K.sigmoid_backward(dout, want, into), into))
  assert_close(into, d, 0, "given dinp")
end

function TestActivations:test_counters()
  if not K.counters then return lu.skip("K.counters not available") end
  local x = sf.randn({2, 2}, sf.rng(16))
  K.reset_counters()
  K.relu_forward(x); K.gelu_forward(x); K.relu_backward(x, x)
  K.dropout_forward(x, 0.5, sf.rng(0))
  local c = K.counters()
  lu.assertEquals(c.act_fwd, 3)
  lu.assertEquals(c.act_bwd, 1)
end

function TestActivations:test_errors()
  local x = sf.zeros(2, 3)
  err_contains("relu_forward: argument #2 (out) has shape [3,2], expected [2,3] (the shape of input [2,3])",
    K.relu_forward, x, sf.zeros(3, 2))
  err_contains("relu_forward: argument #1 (input) expected a tensor, got nil", K.relu_forward)
  err_contains("relu_forward: argument #2 (out) must be contiguous", K.relu_forward, sf.zeros(3, 2), x:t())
  err_contains("relu_backward: argument #1 (dout) has shape [6], expected [2,3] (the shape of input_or_output [2,3])",
    K.relu_backward, sf.zeros(6), x)
  err_contains("tanh_backward: argument #1 (dout) has shape [3], expected [2,3] (the shape of output [2,3])",
    K.tanh_backward, sf.zeros(3), x)
  err_contains("sigmoid_backward: argument #3 (dinp) has shape [2], expected [2,3]", K.sigmoid_backward, x, x, sf.zeros(2))
  err_contains("gelu_forward: argument #3 (approximate) must be \"none\" or \"tanh\", got \"erf\"",
    K.gelu_forward, x, nil, "erf")
  err_contains("gelu_backward: argument #4 (approximate) expected \"none\", \"tanh\" or a boolean, got number",
    K.gelu_backward, x, x, nil, 1)
  err_contains("relu_forward: argument #2 (out) expected a tensor or nil, got false", K.relu_forward, x, false)
end

-- ---- dropout ----

TestDropout = {}

function TestDropout:test_values_and_mask()
  local x = sf.randn({8, 16}, sf.rng(17))
  local out, mask = K.dropout_forward(x, 0.25, sf.rng(3))
  local xo, oo, mo = flat(x), flat(out), flat(mask)
  local kept = 0
  for i = 1, #xo do
    lu.assertTrue(mo[i] == 0 or mo[i] == 1)
    kept = kept + mo[i]
    lu.assertAlmostEquals(oo[i], xo[i] * mo[i] / 0.75, 1e-6)
  end
  lu.assertTrue(kept > 0 and kept < #xo)
  local dout = sf.randn({8, 16}, sf.rng(18))
  local d = K.dropout_backward(dout, mask, 0.25)
  local dd, dg = flat(dout), flat(d)
  for i = 1, #dd do lu.assertAlmostEquals(dg[i], dd[i] * mo[i] / 0.75, 1e-6) end
end

function TestDropout:test_determinism_and_keep_rate()
  local x = sf.ones(100, 100)
  local _, m1 = K.dropout_forward(x, 0.3, sf.rng(42))
  local _, m2 = K.dropout_forward(x, 0.3, sf.rng(42))
  assert_close(m1, m2, 0, "same seed, same mask")
  local _, m3 = K.dropout_forward(x, 0.3, sf.rng(43))
  local diff = 0
  local a, b = flat(m1), flat(m3)
  local kept = 0
  for i = 1, #a do
    if a[i] ~= b[i] then diff = diff + 1 end
    kept = kept + a[i]
  end
  lu.assertTrue(diff > 1000, "another seed gives another mask")
  -- keep rate 0.7 over 10000 draws: std = sqrt(10000 * 0.7 * 0.3) ~ 46; allow 5 sigma
  lu.assertTrue(math.abs(kept - 7000) < 230, "kept " .. kept)
  -- the generator advances by exactly numel draws, whatever p
  for _, p in ipairs{0, 0.5, 1} do
    local r, ref = sf.rng(7), sf.rng(7)
    K.dropout_forward(sf.ones(37), p, r)
    for _ = 1, 37 do ref:uniform() end
    lu.assertEquals(r:state(), ref:state(), "p = " .. p)
  end
end

function TestDropout:test_edges()
  local x = sf.randn({5}, sf.rng(19))
  local o0, m0 = K.dropout_forward(x, 0, sf.rng(1))
  assert_close(o0, x, 0, "p = 0 is the identity")
  assert_close(m0, {1, 1, 1, 1, 1}, 0, "p = 0 keeps all")
  local o1, m1 = K.dropout_forward(x, 1, sf.rng(1))
  assert_close(o1, {0, 0, 0, 0, 0}, 0, "p = 1 drops all")
  assert_close(K.dropout_backward(sf.ones(5), m1, 1), {0, 0, 0, 0, 0}, 0, "p = 1 backward")
  -- default generator when rng is nil; given outputs
  sf.manual_seed(5)
  local _, a = K.dropout_forward(sf.ones(20), 0.5)
  sf.manual_seed(5)
  local out, mask = sf.zeros(20), sf.zeros(20)
  local r1, r2 = K.dropout_forward(sf.ones(20), 0.5, nil, out, mask)
  lu.assertTrue(rawequal(r1, out) and rawequal(r2, mask))
  assert_close(mask, a, 0, "default generator")
end

function TestDropout:test_errors()
  local x = sf.zeros(4)
  err_contains("dropout_forward: argument #2 (p) must be in [0, 1], got 1.5", K.dropout_forward, x, 1.5, sf.rng(0))
  err_contains("dropout_forward: argument #2 (p) expected a number, got nil", K.dropout_forward, x)
  err_contains("dropout_forward: argument #3 (rng) expected an rng or nil, got table", K.dropout_forward, x, 0.5, {})
  err_contains("dropout_forward: argument #5 (mask) has shape [3], expected [4]", K.dropout_forward, x, 0.5,
    sf.rng(0), nil, sf.zeros(3))
  err_contains("dropout_forward: argument #5 (mask) must not be the input or the output tensor", K.dropout_forward,
    x, 0.5, sf.rng(0), nil, x)
  err_contains("dropout_backward: argument #1 (dout) has shape [5], expected [4] (the shape of mask [4])",
    K.dropout_backward, sf.zeros(5), x, 0.5)
  err_contains("dropout_backward: argument #3 (p) must be in [0, 1], got -0.1", K.dropout_backward, x, x, -0.1)
end

-- ---- losses ----

TestLosses = {}

local function log_softmax_row(row)
  local mx = -math.huge
  for _, v in ipairs(row) do mx = math.max(mx, v) end
  local s = 0
  for _, v in ipairs(row) do s = s + math.exp(v - mx) end
  local lse = mx + math.log(s)
  local r = {}
  for i, v in ipairs(row) do r[i] = v - lse end
  return r
end

function TestLosses:test_cross_entropy_is_minus_log_softmax_at_target()
  local logits = sf.randn({4, 5}, sf.rng(20))
  local targets = sf.tensor{3, 1, 5, 2}
  local loss = K.cross_entropy(logits, targets)
  local rows, want = logits:totable(), 0
  for n = 1, 4 do want = want - log_softmax_row(rows[n])[targets:get(n)] end
  lu.assertAlmostEquals(loss, want / 4, 1e-6)
  -- a hand case: logits {0, ln 3} for target 2 -> p = 3/4
  lu.assertAlmostEquals(K.cross_entropy(sf.tensor{{0, math.log(3)}}, sf.tensor{2}), -math.log(0.75), 1e-6)
end

function TestLosses:test_cross_entropy_label_smoothing_hand()
  -- K = 3, e = 0.3, one row {1, 2, 3}, target 1: q = {0.8, 0.1, 0.1}
  local lp = log_softmax_row{1, 2, 3}
  local want = -(0.8 * lp[1] + 0.1 * lp[2] + 0.1 * lp[3])
  local loss, d = K.cross_entropy(sf.tensor{{1, 2, 3}}, sf.tensor{1}, 0.3, true)
  lu.assertAlmostEquals(loss, want, 1e-6)
  assert_close(d, {math.exp(lp[1]) - 0.8, math.exp(lp[2]) - 0.1, math.exp(lp[3]) - 0.1}, 1e-6, "dlogits")
end

function TestLosses:test_cross_entropy_gradient()
  local rng = sf.rng(21)
  local logits = sf.randn({3, 4}, rng)
  local targets = sf.tensor{4, 2, 2}
  for _, e in ipairs{0, 0.1} do
    local _, d = K.cross_entropy(logits, targets, e, true)
    local num = numgrad(function() return sf.tensor{K.cross_entropy(logits, targets, e)} end, logits, {1}, 1e-2)
    assert_grad(num, d, "dlogits, smoothing " .. e, 2e-3)
    -- (softmax - onehot)/N, scaled
    local _, d2 = K.cross_entropy(logits, targets, e, sf.zeros(3, 4), 0.5)
    local half = {}
    for i, v in ipairs(flat(d)) do half[i] = 0.5 * v end
    assert_close(d2, half, 1e-6, "scale")
  end
  -- no gradient unless asked
  local l, none = K.cross_entropy(logits, targets)
  lu.assertNil(none)
  lu.assertIsNumber(l)
  local l2, none2 = K.cross_entropy(logits, targets, 0, false)
  lu.assertNil(none2)
  lu.assertEquals(l, l2)
end

function TestLosses:test_cross_entropy_stable_and_strided()
  local loss, d = K.cross_entropy(sf.tensor{{1000, 0}, {-1000, 1000}}, sf.tensor{1, 1}, 0, true)
  lu.assertAlmostEquals(loss, (0 + 2000) / 2, 1e-3)
  assert_close(d, {0, 0, -0.5, 0.5}, 1e-6, "saturated gradient")
  local base = sf.randn({5, 3}, sf.rng(22))
  local t = sf.tensor{1, 3, 5}
  local tt = sf.tensor{{1, 0}, {3, 0}, {5, 0}}:select(2, 1) -- strided targets
  lu.assertAlmostEquals(K.cross_entropy(base:t(), tt), K.cross_entropy(base:t():contiguous(), t), 1e-7)
end

function TestLosses:test_cross_entropy_errors()
  local l = sf.zeros(4, 10)
  err_contains("cross_entropy: argument #2 (targets) has value 11 at index 3, expected a class id in 1..10",
    K.cross_entropy, l, sf.tensor{1, 2, 11, 4})
  err_contains("cross_entropy: argument #2 (targets) has value 0 at index 1, expected a class id in 1..10",
    K.cross_entropy, l, sf.tensor{0, 2, 3, 4})
  err_contains("cross_entropy: argument #2 (targets) has value 2.5 at index 2", K.cross_entropy, l,
    sf.tensor{1, 2.5, 3, 4})
  err_contains("cross_entropy: argument #2 (targets) has shape [3], expected [4] (N of logits [4,10])",
    K.cross_entropy, l, sf.tensor{1, 2, 3})
  err_contains("cross_entropy: argument #1 (logits) has shape [10], expected [N,K]", K.cross_entropy, sf.zeros(10),
    sf.tensor{1})
  err_contains("cross_entropy: argument #3 (label_smoothing) must be in [0, 1], got 1.5", K.cross_entropy, l,
    sf.tensor{1, 2, 3, 4}, 1.5)
  err_contains("cross_entropy: argument #4 (dlogits) has shape [10,4], expected [4,10]", K.cross_entropy, l,
    sf.tensor{1, 2, 3, 4}, 0, sf.zeros(10, 4))
  err_contains("cross_entropy: argument #2 (targets) expected a tensor, got table", K.cross_entropy, l, {1, 2, 3, 4})
end

function TestLosses:test_mse()
  local p, t = sf.tensor{{1, 2}, {3, 4}}, sf.tensor{{0, 2}, {5, 4}}
  local loss, d = K.mse(p, t, true)
  lu.assertAlmostEquals(loss, (1 + 0 + 4 + 0) / 4, 1e-7)
  assert_close(d, {0.5, 0, -1, 0}, 1e-7, "dpred = 2 (p - t) / n")
  local _, d2 = K.mse(p, t, sf.zeros(2, 2), 3)
  assert_close(d2, {1.5, 0, -3, 0}, 1e-6, "scale")
  lu.assertNil(select(2, K.mse(p, t)))
  local rng = sf.rng(23)
  local x, y = sf.randn({3, 3}, rng), sf.randn({3, 3}, rng)
  local _, g = K.mse(x, y, true)
  assert_grad(numgrad(function() return sf.tensor{K.mse(x, y)} end, x, {1}), g, "dpred", 2e-3)
  lu.assertAlmostEquals(K.mse(x:t(), y:t()), (K.mse(x:t():contiguous(), y:t():contiguous())), 1e-7)
  err_contains("mse: argument #2 (target) has shape [2], expected [2,2] (the shape of pred [2,2])", K.mse, p,
    sf.zeros(2))
  err_contains("mse: argument #1 (pred) has shape [0]: the mean of no elements is undefined", K.mse, sf.zeros(0),
    sf.zeros(0))
end

function TestLosses:test_softmax_entropy()
  -- uniform logits: entropy log K; one-hot-like logits: entropy ~ 0
  lu.assertAlmostEquals(K.softmax_entropy(sf.zeros(3, 4)), math.log(4), 1e-6)
  lu.assertAlmostEquals(K.softmax_entropy(sf.tensor{{100, 0, 0}}), 0, 1e-6)
  local logits = sf.randn({3, 5}, sf.rng(24))
  local rows, want = logits:totable(), 0
  for n = 1, 3 do
    for _, v in ipairs(log_softmax_row(rows[n])) do want = want - math.exp(v) * v end
  end
  local h, d = K.softmax_entropy(logits, true)
  lu.assertAlmostEquals(h, want / 3, 1e-6)
  assert_grad(numgrad(function() return sf.tensor{K.softmax_entropy(logits)} end, logits, {1}), d, "dlogits", 2e-3)
  local _, d2 = K.softmax_entropy(logits, sf.zeros(3, 5), -1)
  local neg = {}
  for i, v in ipairs(flat(d)) do neg[i] = -v end
  assert_close(d2, neg, 1e-6, "scale -1")
  -- a -inf logit contributes nothing, not NaN
  local hi = K.softmax_entropy(sf.tensor{{0, 0, -math.huge}})
  lu.assertAlmostEquals(hi, math.log(2), 1e-6)
  err_contains("softmax_entropy: argument #1 (logits) has shape [2,0], expected [N,K] with N, K >= 1",
    K.softmax_entropy, sf.zeros(2, 0))
  err_contains("softmax_entropy: argument #2 (dlogits) has shape [5,3], expected [3,5]", K.softmax_entropy, logits,
    sf.zeros(5, 3))
end

function TestLosses:test_counters()
  if not K.counters then return lu.skip("K.counters not available") end
  local l = sf.zeros(2, 3)
  K.reset_counters()
  K.cross_entropy(l, sf.tensor{1, 2})
  K.cross_entropy(l, sf.tensor{1, 2}, 0, true)
  K.mse(l, l)
  K.softmax_entropy(l, true)
  local c = K.counters()
  lu.assertEquals(c.loss_fwd, 4)
  lu.assertEquals(c.loss_bwd, 2)
end

-- ---- threads ----

-- GELU, tanh, sigmoid and LayerNorm are split over the thread pool (elements, rows, and
-- for LayerNorm's affine gradients columns summed over every row in order): the bits must
-- not depend on the thread count, and two runs at 2 threads must agree.
TestThreads = {}

local function thread_cases(rng)
  local x = sf.randn({300001}, rng) * 2 -- not a multiple of 16
  local dy = sf.randn({300001}, rng)
  local res = {
    {"gelu", K.gelu_forward(x)}, {"gelu tanh", K.gelu_forward(x, nil, "tanh")},
    {"gelu backward", K.gelu_backward(dy, x)}, {"gelu tanh backward", K.gelu_backward(dy, x, nil, "tanh")},
    {"tanh", K.tanh_forward(x)}, {"tanh backward", K.tanh_backward(dy, K.tanh_forward(x))},
    {"sigmoid", K.sigmoid_forward(x)}, {"sigmoid backward", K.sigmoid_backward(dy, K.sigmoid_forward(x))},
  }
  -- LayerNorm with D a multiple of 16 and not, affine and not; dgamma/dbeta accumulate
  for _, D in ipairs{64, 40} do
    local M = 4000
    local xl = sf.randn({M, D}, rng) * 3 + 1
    local g, b = sf.randn({D}, rng), sf.randn({D}, rng)
    local dout = sf.randn({M, D}, rng)
    local out, mean, rstd = K.layernorm_forward(xl, D, g, b)
    local dg, db = sf.randn({D}, rng), sf.randn({D}, rng)
    local dx = K.layernorm_backward(dout, xl, D, g, mean, rstd, true, dg, db, 0.5)
    local out2, m2, r2 = K.layernorm_forward(xl, D)
    local dx2 = K.layernorm_backward(dout, xl, D, nil, m2, r2, true)
    for _, c in ipairs{{"out", out}, {"mean", mean}, {"rstd", rstd}, {"dinp", dx}, {"dgamma", dg}, {"dbeta", db},
                       {"out, no affine", out2}, {"dinp, no affine", dx2}} do
      res[#res + 1] = {"layernorm D=" .. D .. " " .. c[1], c[2]}
    end
  end
  local y = sf.randn({512, 65, 65}, rng):softmax(3)
  res[#res + 1] = {"softmax_backward", K.softmax_backward(sf.randn({512, 65, 65}, rng), y, 0.25)}
  return res
end

function TestThreads:test_same_bits_and_repeatable()
  require("testutil").assert_same_bits_across_threads(thread_cases, 51)
end

-- the column split of dgamma/dbeta sums every row: against a plain Lua sum
function TestThreads:test_layernorm_affine_gradient_values()
  local n0 = sf.threads()
  sf.set_threads(2)
  local rng = sf.rng(52)
  local M, D = 3000, 48
  local x, dout = sf.randn({M, D}, rng), sf.randn({M, D}, rng)
  local ok, err = pcall(function()
    local _, mean, rstd = K.layernorm_forward(x, D)
    local dg, db = sf.zeros(D), sf.ones(D)
    K.layernorm_backward(dout, x, D, nil, mean, rstd, nil, dg, db, 2)
    local xt, dt, mt, rt = x:totable(), dout:totable(), mean:totable(), rstd:totable()
    for _, i in ipairs{1, 16, 17, 33, 48} do
      local sg, sb = 0, 0
      for r = 1, M do
        sg = sg + dt[r][i] * (xt[r][i] - mt[r]) * rt[r]
        sb = sb + dt[r][i]
      end
      lu.assertAlmostEquals(dg:get(i), 2 * sg, 1e-3 * math.max(1, math.abs(sg)), "dgamma " .. i)
      lu.assertAlmostEquals(db:get(i), 1 + 2 * sb, 1e-3 * math.max(1, math.abs(sb)), "dbeta " .. i)
    end
  end)
  sf.set_threads(n0)
  if not ok then error(err, 0) end
end

-- ---- softmax backward ----

TestSoftmaxBackward = {}

function TestSoftmaxBackward:test_hand_values()
  -- row 1: y = {1/3, 2/3}, g = {1, 0}: <g,y> = 1/3, dx = y (g - 1/3) = {2/9, -2/9}
  -- row 2: y = {1/2, 1/2}, g = {3, 1}: <g,y> = 2, dx = {1/2, -1/2}; both times 0.5
  local y = sf.tensor{{1 / 3, 2 / 3}, {0.5, 0.5}}
  local g = sf.tensor{{1, 0}, {3, 1}}
  assert_close(K.softmax_backward(g, y, 0.5), {1 / 9, -1 / 9, 0.25, -0.25}, 1e-6, "scaled")
  assert_close(K.softmax_backward(g, y), {2 / 9, -2 / 9, 0.5, -0.5}, 1e-6, "scale 1 by default")
  lu.assertEquals(K.softmax_backward(g, y):size(), {2, 2})
end

function TestSoftmaxBackward:test_gradcheck()
  local rng = sf.rng(53)
  local x = sf.randn({3, 4, 5}, rng)
  local R = rand_table(x:numel(), rng)
  local dout = sf.tensor(R):reshape{3, 4, 5}
  local f = function() return x:softmax(3) end
  assert_grad(numgrad(f, x, R), K.softmax_backward(dout, x:softmax(3)), "softmax")
  local twice = flat(K.softmax_backward(dout, x:softmax(3), 1))
  for i = 1, #twice do twice[i] = 2 * twice[i] end
  assert_close(K.softmax_backward(dout, x:softmax(3), 2), twice, 1e-6, "scale 2")
end

-- the same bits as the separate tensor ops it replaced in the attention's backward
function TestSoftmaxBackward:test_matches_separate_ops_and_strided()
  local rng = sf.rng(54)
  local y = sf.randn({6, 7, 9}, rng):softmax(3)
  local g = sf.randn({6, 7, 9}, rng)
  local dot = (g * y):sum(3, true)
  local want = (g - dot:expand(6, 7, 9)) * y
  want:mul_(0.125)
  lu.assertTrue(K.softmax_backward(g, y, 0.125):equal(want), "fused = separate ops, bit for bit")
  -- strided operands
  local gt = g:transpose(1, 2):contiguous():transpose(1, 2)
  local yt = y:transpose(1, 2):contiguous():transpose(1, 2)
  lu.assertFalse(gt:is_contiguous())
  lu.assertTrue(K.softmax_backward(gt, yt, 0.125):equal(want), "strided")
  -- a 1-D row
  lu.assertTrue(K.softmax_backward(g:select(1, 2):select(1, 3), y:select(1, 2):select(1, 3), 0.125)
    :equal(want:select(1, 2):select(1, 3)), "1-D")
end

function TestSoftmaxBackward:test_errors()
  local a = sf.zeros(2, 3)
  err_contains("softmax_backward: argument #2 (out) has shape [3,2], expected [2,3] like argument #1 (grad_out)",
    K.softmax_backward, a, sf.zeros(3, 2))
  err_contains("softmax_backward: argument #2 (out) has shape [6], expected [2,3]", K.softmax_backward, a, sf.zeros(6))
  err_contains("softmax_backward: argument #1 (grad_out) expected a tensor, got nil", K.softmax_backward, nil, a)
  err_contains("softmax_backward: argument #2 (out) expected a tensor, got table", K.softmax_backward, a, {1})
  err_contains("softmax_backward: argument #3 (scale) expected a number, got string", K.softmax_backward, a, a, "x")
  err_contains("softmax_backward: argument #1 (grad_out) is 0-D, expected at least 1 dimension",
    K.softmax_backward, sf.zeros({}), sf.zeros({}))
  local u = sf.zeros(2, 3)
  getmetatable(u).__close(u)
  err_contains("softmax_backward: argument #2 (out) is an empty (released) tensor", K.softmax_backward, a, u)
end

os.exit(lu.LuaUnit.run())
