-- The Lua module layer (surgft.nn): finite-difference checks of the input gradient and of
-- every parameter gradient for each layer, block and loss; BatchNorm modes; the module
-- protocol on single layers (build, add after build, set_bn_mode, error messages).
local lu = require "luaunit"
local sf = require "surgft"
local nn = require "surgft.nn"
local gc = require "gradcheck"

local function shape_of(t) return t:size() end

-- a built copy of a module with its tensors; runs the full gradient check
local function check(m, x, opts)
  opts = opts or {}
  opts.rng = opts.rng or sf.rng(opts.seed or 1)
  return gc.check_module(lu, m, x, opts)
end

-- ---- Linear ----

TestGradLinear = {}

function TestGradLinear:test_2d_bias()
  local r = sf.rng(10)
  check(nn.Linear(5, 4, {rng = r}), sf.randn({3, 5}, r), {title = "Linear 2-D"})
end

function TestGradLinear:test_2d_no_bias()
  local r = sf.rng(11)
  local m = nn.Linear(5, 4, {bias = false, rng = r})
  lu.assertNil(m.bias)
  lu.assertEquals(#m:parameters(), 1)
  check(m, sf.randn({3, 5}, r), {title = "Linear no bias"})
end

function TestGradLinear:test_3d_input()
  local r = sf.rng(12)
  local m = nn.Linear(4, 6, {rng = r})
  local x = sf.randn({2, 3, 4}, r)
  lu.assertEquals(shape_of(m:forward(x)), {2, 3, 6})
  check(m, x, {title = "Linear 3-D"})
  local m2 = nn.Linear(4, 6, {bias = false, rng = r})
  check(m2, x, {title = "Linear 3-D no bias"})
end

function TestGradLinear:test_values_by_hand()
  local m = nn.Linear(2, 2)
  m:parameters()
  m.weight:copy(sf.tensor{{1, 2}, {3, 4}})
  m.bias:copy(sf.tensor{0.5, -1})
  local y = m:forward(sf.tensor{{1, -1}})
  lu.assertEquals(y:totable(), {{-0.5, -2}})
end

-- ---- Conv2d ----

TestGradConv2d = {}

local conv_cases = {
  {stride = 1, padding = 0, bias = true, h = 5, w = 7},
  {stride = 1, padding = 1, bias = false, h = 6, w = 4},
  {stride = 2, padding = 0, bias = true, h = 7, w = 6},
  {stride = 2, padding = 1, bias = false, h = 5, w = 8},
  {stride = 2, padding = 1, bias = true, h = 6, w = 6},
}

for i, c in ipairs(conv_cases) do
  TestGradConv2d["test_case" .. i] = function()
    local r = sf.rng(20 + i)
    local m = nn.Conv2d(2, 3, 3, {stride = c.stride, padding = c.padding, bias = c.bias, rng = r})
    local x = sf.randn({2, 2, c.h, c.w}, r)
    local y = m:forward(x)
    local oh = (c.h + 2 * c.padding - 3) // c.stride + 1
    local ow = (c.w + 2 * c.padding - 3) // c.stride + 1
    lu.assertEquals(shape_of(y), {2, 3, oh, ow})
    lu.assertEquals(m.bias ~= nil, c.bias)
    check(m, x, {title = string.format("Conv2d stride %d pad %d bias %s %dx%d", c.stride, c.padding,
      tostring(c.bias), c.h, c.w)})
  end
end

function TestGradConv2d:test_1x1_kernel()
  local r = sf.rng(29)
  check(nn.Conv2d(3, 2, 1, {stride = 2, rng = r}), sf.randn({2, 3, 5, 4}, r), {title = "Conv2d 1x1 stride 2"})
end

-- ---- BatchNorm ----

TestGradBatchNorm = {}

-- a BatchNorm with non-trivial affine parameters and running statistics
local function make_bn(cls, c, r)
  local m = cls(c)
  m:parameters()
  m.weight:copy(sf.randn({c}, r):mul_(0.5):add_(1))
  m.bias:copy(sf.randn({c}, r))
  m.running_mean:copy(sf.randn({c}, r))
  m.running_var:copy(sf.rand({c}, r):add_(0.5))
  return m
end

for _, mode in ipairs{"train", "batch", "eval", "tent"} do
  TestGradBatchNorm["test_2d_" .. mode] = function()
    local r = sf.rng(31)
    local m = make_bn(nn.BatchNorm2d, 3, r):set_mode(mode)
    local rm, rv = m.running_mean:clone(), m.running_var:clone()
    check(m, sf.randn({3, 3, 4, 5}, r):mul_(2):add_(1), {title = "BatchNorm2d " .. mode})
    if mode ~= "train" then
      lu.assertTrue(m.running_mean:equal(rm), mode .. ": running mean moved")
      lu.assertTrue(m.running_var:equal(rv), mode .. ": running var moved")
    end
  end
  TestGradBatchNorm["test_1d_" .. mode] = function()
    local r = sf.rng(32)
    local m = make_bn(nn.BatchNorm1d, 4, r):set_mode(mode)
    check(m, sf.randn({5, 4}, r):mul_(2):add_(-1), {title = "BatchNorm1d " .. mode})
  end
end

function TestGradBatchNorm:test_eval_uses_running_stats()
  -- in eval mode the output is (x - rm) / sqrt(rv + eps) * w + b, per channel, by hand
  local r = sf.rng(33)
  local m = make_bn(nn.BatchNorm1d, 2, r):set_mode("eval")
  local x = sf.randn({3, 2}, r)
  local y = m:forward(x)
  for i = 1, 3 do
    for c = 1, 2 do
      local want = (x:get(i, c) - m.running_mean:get(c)) / math.sqrt(m.running_var:get(c) + 1e-5) * m.weight:get(c)
        + m.bias:get(c)
      lu.assertAlmostEquals(y:get(i, c), want, 1e-5)
    end
  end
end

function TestGradBatchNorm:test_no_affine()
  local r = sf.rng(34)
  local m = nn.BatchNorm2d(2, {affine = false})
  lu.assertEquals(#m:parameters(), 0)
  check(m, sf.randn({2, 2, 3, 3}, r), {title = "BatchNorm2d no affine"})
end

-- ---- LayerNorm, GroupNorm ----

TestGradNorms = {}

function TestGradNorms:test_layernorm_2d()
  local r = sf.rng(40)
  local m = nn.LayerNorm(6)
  m:parameters()
  m.weight:copy(sf.randn({6}, r)); m.bias:copy(sf.randn({6}, r))
  check(m, sf.randn({4, 6}, r), {title = "LayerNorm [N,D]"})
end

function TestGradNorms:test_layernorm_3d()
  local r = sf.rng(41)
  local m = nn.LayerNorm(5)
  m:parameters()
  m.weight:copy(sf.randn({5}, r)); m.bias:copy(sf.randn({5}, r))
  check(m, sf.randn({2, 3, 5}, r), {title = "LayerNorm [N,T,D]"})
end

function TestGradNorms:test_groupnorm()
  local r = sf.rng(42)
  local m = nn.GroupNorm(2, 4)
  m:parameters()
  m.weight:copy(sf.randn({4}, r)); m.bias:copy(sf.randn({4}, r))
  check(m, sf.randn({2, 4, 3, 3}, r), {title = "GroupNorm"})
  local m1 = nn.GroupNorm(1, 3)
  check(m1, sf.randn({2, 3, 2, 4}, r), {title = "GroupNorm 1 group"})
end

-- ---- activations, dropout ----

TestGradActivations = {}

function TestGradActivations:test_relu()
  local r = sf.rng(50)
  local x = gc.away_from_zero({3, 7}, r, 0.1)
  check(nn.ReLU(), x, {title = "ReLU"})
  -- the kink check itself must never be what makes this pass
  local rep = check(nn.ReLU(), x, {title = "ReLU"})
  for _, it in ipairs(rep.items) do lu.assertEquals(it.skipped, 0) end
end

function TestGradActivations:test_gelu()
  local r = sf.rng(51)
  check(nn.GELU(), sf.randn({3, 7}, r), {title = "GELU erf"})
  check(nn.GELU{approximate = "tanh"}, sf.randn({3, 7}, r), {title = "GELU tanh"})
  -- the two forms differ: GELU(1) = 0.8413447 (erf), 0.8411920 (tanh approximation)
  local one = sf.ones(1, 1)
  lu.assertAlmostEquals(nn.GELU():forward(one):item(), 0.8413447, 2e-6)
  lu.assertAlmostEquals(nn.GELU{approximate = "tanh"}:forward(one):item(), 0.8411920, 2e-6)
end

function TestGradActivations:test_tanh_sigmoid()
  local r = sf.rng(52)
  check(nn.Tanh(), sf.randn({2, 3, 4}, r), {title = "Tanh"})
  check(nn.Sigmoid(), sf.randn({2, 3, 4}, r), {title = "Sigmoid"})
end

function TestGradActivations:test_dropout_fixed_mask()
  local r = sf.rng(53)
  local d = nn.Dropout(0.4, {rng = sf.rng(7)})
  local s = d.rng:state()
  local x = sf.randn({4, 6}, r)
  local rep = check(d, x, {title = "Dropout", before = function() d.rng:set_state(s) end})
  lu.assertEquals(#rep.items, 1)
  -- the mask really drops: some outputs are zero, the others are x / (1 - p)
  d.rng:set_state(s)
  local y = d:forward(x)
  local zeros, kept = 0, 0
  for i = 1, 4 do
    for j = 1, 6 do
      if y:get(i, j) == 0 then zeros = zeros + 1 else
        kept = kept + 1
        lu.assertAlmostEquals(y:get(i, j), x:get(i, j) / 0.6, 1e-5)
      end
    end
  end
  lu.assertTrue(zeros > 0 and kept > 0, "dropout at p = 0.4 over 24 values drops some and keeps some")
  -- under evaluate() it is the identity, gradient included
  d:evaluate()
  lu.assertTrue(d:forward(x):equal(x))
  lu.assertTrue(d:backward(x, y):equal(y))
end

-- ---- pooling and reshaping ----

TestGradPooling = {}

function TestGradPooling:test_maxpool()
  local r = sf.rng(60)
  -- values 0.05 apart: a step of 1e-2 never changes which one is the maximum
  check(nn.MaxPool2d(2), gc.distinct({2, 2, 4, 6}, r, 0.05), {title = "MaxPool2d 2", eps = 1e-2})
  local rep = check(nn.MaxPool2d(3, 2, 1), gc.distinct({2, 2, 5, 6}, r, 0.05), {title = "MaxPool2d 3/2/1"})
  lu.assertEquals(rep.items[1].skipped, 0)
end

function TestGradPooling:test_avgpool()
  local r = sf.rng(61)
  check(nn.AvgPool2d(2), sf.randn({2, 3, 4, 6}, r), {title = "AvgPool2d 2"})
  check(nn.AvgPool2d(3, 2, 1), sf.randn({2, 2, 5, 6}, r), {title = "AvgPool2d 3/2/1"})
end

function TestGradPooling:test_global_avgpool_flatten()
  local r = sf.rng(62)
  local g = nn.GlobalAvgPool()
  local x = sf.randn({2, 3, 4, 5}, r)
  lu.assertEquals(shape_of(g:forward(x)), {2, 3})
  lu.assertAlmostEquals(g:forward(x):get(2, 3), x:select(1, 2):select(1, 3):mean(), 1e-6)
  check(g, x, {title = "GlobalAvgPool"})
  local f = nn.Flatten()
  lu.assertEquals(shape_of(f:forward(x)), {2, 60})
  check(f, x, {title = "Flatten"})
end

-- ---- containers ----

TestGradContainers = {}

function TestGradContainers:test_sequential()
  local r = sf.rng(70)
  local m = nn.Sequential{nn.Linear(4, 5, {rng = r}), nn.Tanh(), nn.Linear(5, 3, {rng = r})}
  lu.assertEquals(m:parameters()[1].name, "0.weight")
  lu.assertEquals(m:parameters()[4].name, "2.bias")
  check(m, sf.randn({3, 4}, r), {title = "Sequential"})
end

function TestGradContainers:test_named_sequential()
  local r = sf.rng(71)
  local m = nn.Sequential{{"a", nn.Linear(3, 3, {rng = r})}, {"b", nn.Sigmoid()}, {"c", nn.Linear(3, 2, {rng = r})}}
  lu.assertEquals(m:parameters()[3].name, "c.weight")
  lu.assertEquals(m:blocks(), {"a", "c"})
  check(m, sf.randn({2, 3}, r), {title = "named Sequential"})
end

function TestGradContainers:test_residual_identity()
  local r = sf.rng(72)
  local m = nn.Residual(nn.Sequential{nn.Linear(4, 4, {rng = r}), nn.Tanh()})
  local x = sf.randn({3, 4}, r)
  local y = m:forward(x)
  local b = m:child("branch"):forward(x)
  lu.assertTrue(y:allclose(b + x, 1e-6, 1e-6))
  check(m, x, {title = "Residual identity"})
end

function TestGradContainers:test_residual_shortcut()
  local r = sf.rng(73)
  local m = nn.Residual(nn.Sequential{nn.Linear(4, 3, {rng = r}), nn.Sigmoid()}, nn.Linear(4, 3, {rng = r}))
  check(m, sf.randn({3, 4}, r), {title = "Residual with shortcut"})
end

function TestGradContainers:test_identity()
  local r = sf.rng(74)
  local m = nn.Sequential{nn.Identity(), nn.Linear(3, 2, {rng = r})}
  check(m, sf.randn({2, 3}, r), {title = "Identity"})
end

-- ---- transformer pieces ----

TestGradTransformer = {}

function TestGradTransformer:test_patch_embed()
  local r = sf.rng(80)
  local m = nn.PatchEmbed(8, 4, 2, 5, {rng = r})
  local x = sf.randn({2, 2, 8, 8}, r)
  lu.assertEquals(shape_of(m:forward(x)), {2, 4, 5})
  lu.assertEquals(m:parameters()[1].name, "proj.weight")
  check(m, x, {title = "PatchEmbed"})
end

function TestGradTransformer:test_patch_embed_token_order()
  -- token t is the patch at row (t-1)//w, column (t-1)%w: compare with the conv output
  local r = sf.rng(81)
  local m = nn.PatchEmbed(6, 3, 1, 2, {rng = r})
  local x = sf.randn({1, 1, 6, 6}, r)
  local tok = m:forward(x)
  local conv = m:child("proj"):forward(x)
  for t = 1, 4 do
    for d = 1, 2 do
      lu.assertEquals(tok:get(1, t, d), conv:get(1, d, (t - 1) // 2 + 1, (t - 1) % 2 + 1))
    end
  end
end

function TestGradTransformer:test_tokens()
  local r = sf.rng(82)
  local m = nn.Tokens(3, 4, {rng = r})
  local x = sf.randn({2, 3, 4}, r)
  local y = m:forward(x)
  lu.assertEquals(shape_of(y), {2, 4, 4})
  lu.assertAlmostEquals(y:get(2, 1, 3), m.cls:get(1, 1, 3) + m.pos:get(1, 1, 3), 1e-6)
  lu.assertAlmostEquals(y:get(2, 3, 4), x:get(2, 2, 4) + m.pos:get(1, 3, 4), 1e-6)
  check(m, x, {title = "Tokens"})
end

function TestGradTransformer:test_select_token()
  local r = sf.rng(83)
  local x = sf.randn({2, 4, 3}, r)
  check(nn.SelectToken(1), x, {title = "SelectToken 1"})
  check(nn.SelectToken(3), x, {title = "SelectToken 3"})
  lu.assertTrue(nn.SelectToken(3):forward(x):equal(x:select(2, 3)))
end

function TestGradTransformer:test_attention()
  local r = sf.rng(84)
  local m = nn.MultiheadAttention(6, 2, {rng = r})
  local x = sf.randn({2, 4, 6}, r)
  check(m, x, {title = "MultiheadAttention"})
  check(nn.MultiheadAttention(4, 1, {rng = r}), sf.randn({1, 3, 4}, r), {title = "MultiheadAttention 1 head"})
end

-- attention by hand for one example, one head: softmax(q k^T / sqrt(d)) v, then proj
function TestGradTransformer:test_attention_values()
  local r = sf.rng(85)
  local m = nn.MultiheadAttention(4, 2, {rng = r})
  local x = sf.randn({1, 3, 4}, r)
  local y = m:forward(x)
  local qkv = m:child("qkv"):forward(x):select(1, 1) -- [T,12]
  local ctx = sf.zeros(3, 4)
  for h = 1, 2 do
    local q = qkv:narrow(2, (h - 1) * 2 + 1, 2)
    local k = qkv:narrow(2, 4 + (h - 1) * 2 + 1, 2)
    local v = qkv:narrow(2, 8 + (h - 1) * 2 + 1, 2)
    local a = q:matmul(k:t()):mul_(1 / math.sqrt(2)):softmax(2)
    ctx:narrow(2, (h - 1) * 2 + 1, 2):copy(a:matmul(v))
  end
  local want = m:child("proj"):forward(ctx:unsqueeze(1))
  lu.assertTrue(y:allclose(want, 1e-5, 1e-5), "attention output by hand: max diff " .. y:max_abs_diff(want))
end

function TestGradTransformer:test_transformer_block()
  local r = sf.rng(86)
  local m = nn.TransformerBlock(4, 2, {mlp_ratio = 2, rng = r})
  check(m, sf.randn({2, 3, 4}, r), {title = "TransformerBlock"})
end

-- ---- ResNet blocks ----

TestGradBlocks = {}

for _, kind in ipairs{"BasicBlock", "PreActBlock"} do
  for _, norm in ipairs{"bn", "gn"} do
    for _, proj in ipairs{false, true} do
      TestGradBlocks[string.format("test_%s_%s_%s", kind, norm, proj and "projection" or "identity")] = function()
        local r = sf.rng(90)
        local cout, stride = proj and 4 or 2, proj and 2 or 1
        local m = nn[kind](2, cout, stride, {norm = norm, gn_groups = 2, rng = r})
        lu.assertEquals(m:child("shortcut") ~= nil, proj)
        -- small planes: few ReLU units, so few kinks within reach of the step. GroupNorm
        -- blocks get a larger step: some of their weight gradients are ~0.04 against a loss
        -- scale of ~20, and at a step of 1e-3 the float32 rounding of the forward moved the
        -- central difference by up to 5% (it differed between -O0 and -O2 builds; the
        -- analytic gradients agree to 1e-6). At 3e-3 it is within 1%.
        local x = sf.randn({2, 2, 5, 3}, r)
        local y = m:forward(x)
        lu.assertEquals(shape_of(y), {2, cout, proj and 3 or 5, proj and 2 or 3})
        check(m, x, {title = kind .. " " .. norm .. (proj and " projection" or ""), eps = norm == "gn" and 3e-3 or 1e-3})
      end
    end
  end
end

-- BatchNorm + ReLU fused in the blocks (the default) against set_fusion(false): the
-- same output and gradients, in train and eval modes; fused, the BatchNorm keeps no
-- output of its own (the pre-activation was never computed), the ReLU does
local function fusion_seq(r)
  return nn.Sequential{nn.Conv2d(3, 6, 3, {stride = 2, padding = 1, rng = r}), nn.BatchNorm2d(6), nn.ReLU(),
                       nn.Conv2d(6, 6, 1, {rng = r}), nn.BatchNorm2d(6), nn.ReLU()}
end
for _, kind in ipairs{"BasicBlock", "PreActBlock", "Sequential"} do
  TestGradBlocks["test_" .. kind .. "_fusion"] = function()
    local r = sf.rng(91)
    local m = kind == "Sequential" and fusion_seq(r) or nn[kind](3, 6, 2, {rng = r})
    local x, g = sf.randn({4, 3, 8, 8}, r), sf.randn({4, 6, 4, 4}, r)
    for _, train in ipairs{true, false} do
      local results = {}
      for _, fuse in ipairs{true, false} do
        local c = m:clone():set_fusion(fuse)
        if train then c:training() else c:evaluate() end
        local y = c:forward(x):clone()
        local bn, relu = c:child(kind == "Sequential" and "1" or "bn1"), c:child(kind == "Sequential" and "2" or "relu1")
        lu.assertEquals(bn.output == nil, fuse, "the BatchNorm's output is kept only without fusion")
        lu.assertNotNil(relu.output)
        c:zero_grad()
        local gx = c:backward(x, g):clone()
        local grads = {}
        for _, rec in ipairs(c:parameters()) do grads[rec.name] = rec.grad:clone() end
        results[fuse] = {y = y, gx = gx, grads = grads}
      end
      local a, b = results[true], results[false]
      local tag = kind .. (train and " train" or " eval")
      lu.assertTrue(sf.max((a.y - b.y):abs()) == 0, tag .. ": output")
      lu.assertTrue(sf.max((a.gx - b.gx):abs()) < 1e-5, tag .. ": input gradient")
      for name, t in pairs(a.grads) do
        lu.assertTrue(sf.max((t - b.grads[name]):abs()) < 1e-4, tag .. ": gradient of " .. name)
      end
    end
  end
end

-- A Conv2d followed by a BatchNorm on batch statistics hands it its output's row
-- statistics (Conv2d:forward(x, true)): every such BatchNorm of the blocks and of a
-- Sequential gets them (the outputs are compared bit for bit with fusion off above), none
-- without fusion or in eval mode
function TestGradBlocks:test_conv_bn_stats_handoff()
  local K = sf.kernels
  local real = K.batchnorm_forward_train
  local given, calls = 0, 0
  K.batchnorm_forward_train = function(...)
    calls = calls + 1
    if select(10, ...) ~= nil then given = given + 1 end
    return real(...)
  end
  local ok, err = pcall(function()
    local r = sf.rng(93)
    for kind, want in pairs{Sequential = 2, BasicBlock = 3, PreActBlock = 1} do
      local m = kind == "Sequential" and fusion_seq(r) or nn[kind](3, 6, 2, {rng = r})
      local x = sf.randn({4, 3, 8, 8}, r)
      for _, mode in ipairs{"train", "batch", "tent"} do
        m:apply(function(b) if b.eval_affine then b:set_mode(mode) end end)
        m:training()
        given, calls = 0, 0
        m:forward(x)
        lu.assertEquals(given, want, kind .. " " .. mode .. ": BatchNorms given the convolution's statistics")
        given, calls = 0, 0
        m:clone():set_fusion(false):forward(x)
        lu.assertEquals(given, 0, kind .. " " .. mode .. ": none without fusion")
        lu.assertTrue(calls > 0)
      end
    end
  end)
  K.batchnorm_forward_train = real
  if not ok then error(err, 0) end
end

-- a backward (no input gradient) through both models after their forwards: the trainable
-- parameters' gradients agree within tol
local function head_grads_match(h, href, x, g, tol, tag)
  h:zero_grad(); href:zero_grad()
  h:backward(x, g, false); href:backward(x, g, false)
  local pa, pb = h:parameters(), href:parameters()
  for i, rec in ipairs(pa) do
    if rec.trainable then
      lu.assertTrue(sf.max((rec.grad - pb[i].grad):abs()) < tol, tag .. ": gradient of " .. rec.name)
    end
  end
end

-- Inference folding: a frozen model in eval mode runs each Conv2d with its BatchNorm
-- folded in; the outputs match the unfolded model, the folded layers keep no output, and
-- a backward (input gradient, or a trainable head) recomputes what it needs
function TestGradBlocks:test_eval_folding()
  for _, block in ipairs{"basic", "preact"} do
    local r = sf.rng(92)
    local m = sf.models.resnet{depth = 8, block = block, widths = {4, 6, 8}, classes = 5, rng = r}
    -- running statistics away from 0/1, so that folding them in is a real test
    m:training()
    for _ = 1, 3 do m:forward(sf.randn({6, 3, 12, 12}, r) * 2 + 0.5) end
    m:evaluate()
    local x, g = sf.randn({4, 3, 12, 12}, r), sf.randn({4, 5}, r)
    local ref = m:clone():set_fusion(false)
    ref:set_trainable(false)
    local want = ref:forward(x):clone()
    ref:zero_grad()
    local want_gx = ref:backward(x, g):clone()
    local f = m:clone()
    f:set_trainable(false)
    local got = f:forward(x):clone()
    lu.assertTrue(sf.max((got - want):abs()) < 1e-4 * (1 + sf.max(want:abs())), block .. ": folded forward")
    if block == "basic" then lu.assertNil(f:child("stem"):child("conv").output, block .. ": the stem ran folded") end
    lu.assertNil(f:child("block2"):child("0"):child("conv1").output, block .. ": block2.0 ran folded")
    -- a backward asking for the input gradient recomputes the intermediates
    f:zero_grad()
    local gx = f:backward(x, g)
    lu.assertTrue(sf.max((gx - want_gx):abs()) < 1e-4 * (1 + sf.max(want_gx:abs())), block .. ": input gradient")
    -- a trainable head: everything below it folds, the head's gradient is unchanged
    local h = m:clone()
    h:set_trainable(false)
    sf.policy.apply(h, {head = 1})
    local href = h:clone():set_fusion(false)
    local out, outref = h:forward(x), href:forward(x)
    lu.assertTrue(sf.max((out - outref):abs()) < 1e-4 * (1 + sf.max(outref:abs())), block .. ": head-only forward")
    head_grads_match(h, href, x, g, 1e-4, block)
    -- training mode never folds (batch statistics)
    local t = m:clone():clear_state()
    t:set_trainable(false)
    t:training()
    t:forward(x)
    -- (the BatchNorm ran on batch statistics, over its convolution's output in place)
    lu.assertTrue(t:child("block2"):child("0"):child("bn1")._s_batch_stats, block .. ": no folding with batch statistics")
  end
end

-- Frozen blocks with BatchNorm on batch statistics (training mode) and nothing trainable
-- before them normalise each convolution's output in place: outputs, running statistics,
-- a trainable head's gradients and (through the recompute a backward triggers) the input
-- gradient are those of the unfused model, and the recompute leaves the running statistics
-- where the forward put them.
function TestGradBlocks:test_inplace_batch_norm_when_frozen()
  local r = sf.rng(93)
  local models = {
    resnet = sf.models.resnet{depth = 8, widths = {4, 6, 8}, classes = 5, rng = r},
    cnn = sf.models.cnn{in_channels = 3, widths = {4, 6, 8}, classes = 5, rng = r},
  }
  for name, m in pairs(models) do
    m:training()
    local x, g = sf.randn({4, 3, 12, 12}, r), sf.randn({4, 5}, r)
    local f, ref = m:clone(), m:clone():set_fusion(false)
    f:set_trainable(false); ref:set_trainable(false)
    local got, want = f:forward(x):clone(), ref:forward(x):clone()
    lu.assertTrue(sf.max((got - want):abs()) <= 1e-5 * (1 + sf.max(want:abs())), name .. ": forward")
    local inplace = 0
    f:visit(function(mm) if mm._s_folded then inplace = inplace + 1 end end)
    lu.assertTrue(inplace >= 2, name .. ": ran in place")
    -- the convolutions written over keep no output (as folded ones)
    f:visit(function(mm, path)
      if mm:type() == "Conv2d" and path:match("conv1$") then lu.assertNil(mm.output, name .. ": " .. path .. ".output") end
    end)
    local function running(mm)
      local t = {}
      mm:visit(function(b, path) if b.running_mean then t[path] = {b.running_mean:clone(), b.running_var:clone()} end end)
      return t
    end
    local rf, rr = running(f), running(ref)
    for path, v in pairs(rr) do
      lu.assertTrue(sf.max((rf[path][1] - v[1]):abs()) < 1e-6, name .. ": running mean of " .. path)
      lu.assertTrue(sf.max((rf[path][2] - v[2]):abs()) < 1e-6, name .. ": running var of " .. path)
    end
    -- an input gradient: recomputed forward, same gradient, running statistics not moved again
    f:zero_grad(); ref:zero_grad()
    local gx, want_gx = f:backward(x, g), ref:backward(x, g)
    lu.assertTrue(sf.max((gx - want_gx):abs()) < 1e-4 * (1 + sf.max(want_gx:abs())), name .. ": input gradient")
    local rf2 = running(f)
    for path, v in pairs(rf) do
      lu.assertTrue(rf2[path][1]:equal(v[1]) and rf2[path][2]:equal(v[2]), name .. ": the recompute moved " .. path)
    end
    -- a trainable head on top
    local h, href = m:clone(), m:clone():set_fusion(false)
    for _, mm in ipairs{h, href} do mm:set_trainable(false); sf.policy.apply(mm, {head = 1}) end
    h:forward(x); href:forward(x)
    head_grads_match(h, href, x, g, 1e-5, name)
  end
  -- the norm + residual + ReLU pass needs batch statistics
  local bn = sf.nn.BatchNorm2d(4)
  bn:evaluate()
  lu.assertErrorMsgContains("BatchNorm2d: a residual is only taken with relu = true and batch statistics (mode eval)",
    bn.forward, bn, sf.randn({2, 4, 3, 3}, r), true, nil, nil, sf.randn({2, 4, 3, 3}, r))
end

-- ---- cached trainability and memory ----

TestTrainableCache = {}

-- Sequential folds a frozen conv + eval BatchNorm (+ ReLU) with nothing trainable at or
-- below; has_trainable() is cached, so every way of changing a flag after a forward must
-- be seen by the next forward (folding off for a now-trainable conv, on again once frozen)
function TestTrainableCache:test_flag_changes_after_forward()
  local r = sf.rng(31)
  local function make()
    local m = nn.Sequential{nn.Conv2d(2, 3, 3, {padding = 1, rng = r}), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                            nn.Linear(3 * 5 * 5, 4, {rng = r})}
    m:training()
    m:forward(sf.randn({4, 2, 5, 5}, r) + 0.3) -- running statistics away from 0/1
    m:evaluate()
    m:set_trainable(false)
    return m
  end
  local x, g = sf.randn({3, 2, 5, 5}, r), sf.randn({3, 4}, r)
  local conv_w = function(rec) return rec.name == "0.weight" end
  local setters = {
    set_trainable = function(m, on) m:set_trainable(on, conv_w) end,
    policy = function(m, on) sf.policy.apply(m, on and {["0.weight"] = 1, ["4.weight"] = 1} or {["4.weight"] = 1}) end,
    record = function(m, on) m:parameter("0.weight").trainable = on end,
  }
  for how, set in pairs(setters) do
    local m = make()
    local ref = m:clone():set_fusion(false)
    m:forward(x)
    lu.assertNil(m:child("0").output, how .. ": frozen conv folded")
    lu.assertTrue(m._s_folded, how .. ": frozen conv folded")
    set(m, true)
    set(ref, true)
    local out = m:forward(x)
    lu.assertNotNil(m:child("0").output, how .. ": a now-trainable conv does not fold")
    lu.assertNil(m._s_folded, how .. ": a now-trainable conv does not fold")
    local want = ref:forward(x)
    lu.assertTrue(sf.max((out - want):abs()) < 1e-5, how .. ": forward")
    m:zero_grad(); ref:zero_grad()
    m:backward(x, g, false); ref:backward(x, g, false)
    local rec, rref = m:parameter("0.weight"), ref:parameter("0.weight")
    lu.assertTrue(sf.max(rec.grad:abs()) > 0, how .. ": the conv gets a gradient")
    lu.assertTrue(sf.max((rec.grad - rref.grad):abs()) < 1e-5, how .. ": the conv's gradient")
    set(m, false)
    m:forward(x)
    lu.assertNil(m:child("0").output, how .. ": frozen again, folded again")
  end
end

-- the cache also follows the tree: a trainable child added to an unbuilt container
function TestTrainableCache:test_add_child_after_query()
  local s = nn.Sequential{nn.ReLU()}
  lu.assertFalse(s:has_trainable())
  s:add(nn.Linear(2, 2))
  lu.assertTrue(s:has_trainable())
  -- clones keep their flags and their own cache
  s:set_trainable(false)
  local c = s:clone()
  lu.assertFalse(c:has_trainable())
  c:set_trainable(true)
  lu.assertTrue(c:has_trainable())
  lu.assertFalse(s:has_trainable())
end

TestMemory = {}

-- big storages (>= 1 MB) are reused from a cache of mappings: a tensor a user holds is
-- never handed out again or changed, whatever is freed and allocated around it
function TestMemory:test_held_tensors_survive_reuse()
  local r = sf.rng(5)
  local n = 300000 -- 1.2 MB
  local held = sf.full({n}, 7)
  for i = 1, 20 do
    local t = sf.randn({n}, r)
    t:fill(i)
    lu.assertEquals(t:get(n), i)
    if i % 5 == 0 then collectgarbage() end
  end
  lu.assertEquals(sf.min(held), 7)
  lu.assertEquals(sf.max(held), 7)
  -- a released one comes back with its values overwritten, never shared
  local a = sf.zeros(n)
  a = nil
  collectgarbage()
  local b, c = sf.zeros(n), sf.ones(n)
  lu.assertEquals(sf.max(b:abs()), 0)
  lu.assertEquals(sf.min(c), 1)
  lu.assertFalse(b:shares_storage(c))
end

-- training steps free what they no longer need: the outputs and input gradients a user
-- keeps are untouched by later steps, live bytes come back to the model's own after a
-- collection, and sf.memory_trim gives every cached mapping back
function TestMemory:test_training_steps()
  local r = sf.rng(6)
  local m = sf.models.resnet{depth = 8, widths = {8, 16, 32}, classes = 10, rng = r}
  local x, y = sf.randn({16, 3, 32, 32}, r), sf.randint(1, 11, {16}, r)
  m:training()
  m:parameters()
  collectgarbage()
  local base = sf.memory()
  local opt = sf.optim.sgd(m, {lr = 0.01})
  local kept_out, kept_gx, copies
  for i = 1, 4 do
    m:zero_grad()
    local out = m:forward(x)
    local _, d = sf.nn.cross_entropy(out, y)
    local gx = m:backward(x, d)
    opt:step()
    m:clear_state()
    -- consumed gradients are not held by the modules after the backward
    m:visit(function(mod) lu.assertNil(mod.gradInput) end)
    if i == 1 then kept_out, kept_gx, copies = out, gx, {out:clone(), gx:clone()} end
  end
  lu.assertEquals(sf.max((kept_out - copies[1]):abs()), 0)
  lu.assertEquals(sf.max((kept_gx - copies[2]):abs()), 0)
  kept_out, kept_gx, copies = nil, nil, nil
  collectgarbage()
  lu.assertEquals(sf.memory(), base)
  -- released activations are cached for the next step (not under AddressSanitizer, nor
  -- with SURGFT_STORAGE_CACHE=0: every storage then comes from malloc)
  local _, cached = sf.memory()
  lu.assertTrue(cached >= 0)
  sf.memory_trim()
  local live, after = sf.memory()
  lu.assertEquals(live, base)
  lu.assertEquals(after, 0)
end

-- ---- losses ----

TestGradLosses = {}

function TestGradLosses:test_cross_entropy()
  local r = sf.rng(100)
  local logits = sf.randn({4, 5}, r)
  local targets = sf.tensor{1, 5, 3, 3}
  for _, ls in ipairs{0, 0.1} do
    local loss, g = nn.cross_entropy(logits, targets, {label_smoothing = ls})
    g = g:clone()
    -- by hand: mean over rows of -sum_k q_k log softmax_k, q = (1-ls) onehot + ls/K
    local lsm, want = logits:log_softmax(2), 0
    for i = 1, 4 do
      for k = 1, 5 do
        local q = (k == targets:get(i) and (1 - ls) or 0) + ls / 5
        want = want - q * lsm:get(i, k)
      end
    end
    lu.assertAlmostEquals(loss, want / 4, 1e-5)
    gc.check_function(lu, function() return (nn.cross_entropy(logits, targets, {label_smoothing = ls})) end,
      logits, g, {rng = r, title = "cross_entropy ls " .. ls, eps = 1e-2})
  end
end

function TestGradLosses:test_mse()
  local r = sf.rng(101)
  local p, t = sf.randn({3, 4}, r), sf.randn({3, 4}, r)
  local loss, g = nn.mse(p, t)
  lu.assertAlmostEquals(loss, ((p - t) * (p - t)):mean(), 1e-6)
  gc.check_function(lu, function() return (nn.mse(p, t)) end, p, g:clone(), {rng = r, title = "mse"})
end

function TestGradLosses:test_softmax_entropy()
  local r = sf.rng(102)
  local z = sf.randn({3, 4}, r)
  local loss, g = nn.softmax_entropy(z)
  local s, want = z:softmax(2), 0
  for i = 1, 3 do for k = 1, 4 do want = want - s:get(i, k) * math.log(s:get(i, k)) end end
  lu.assertAlmostEquals(loss, want / 3, 1e-5)
  gc.check_function(lu, function() return (nn.softmax_entropy(z)) end, z, g:clone(), {rng = r, title = "entropy"})
end

function TestGradLosses:test_distance_penalty()
  local r = sf.rng(103)
  for _, p in ipairs{1, 2} do
    local m = nn.Sequential{nn.Linear(3, 4, {rng = r}), nn.Linear(4, 2, {rng = r})}
    local ref = {}
    for name, t in pairs(m:state()) do
      -- every |w - w0| >= 0.1: the L1 kink is out of reach of the step
      ref[name] = t - gc.away_from_zero(t:size(), r, 0.1):mul_(0.3)
    end
    m:zero_grad()
    local pen = nn.distance_penalty(m, ref, {p = p, lambda = 0.7})
    local want = 0
    for _, rec in ipairs(m:parameters()) do
      local d = rec.value - ref[rec.name]
      want = want + 0.7 * (p == 2 and (d * d):sum() or d:abs():sum())
    end
    lu.assertAlmostEquals(pen, want, 1e-4)
    -- every call adds to the gradients: keep the analytic ones before differencing
    local grads = {}
    for i, rec in ipairs(m:parameters()) do grads[i] = rec.grad:clone() end
    for i, rec in ipairs(m:parameters()) do
      local g = grads[i]
      gc.check_function(lu, function() return nn.distance_penalty(m, ref, {p = p, lambda = 0.7}) end, rec.value, g,
        {rng = r, title = "distance_penalty p = " .. p, what = rec.name})
    end
  end
end

function TestGradLosses:test_distance_penalty_frozen_and_errors()
  local r = sf.rng(104)
  local m = nn.Sequential{nn.Linear(2, 2, {rng = r}), nn.Linear(2, 2, {rng = r})}
  local ref = {}
  for name, t in pairs(m:state()) do ref[name] = t:clone():add_(1) end
  m:set_trainable(false, "0")
  m:zero_grad()
  local pen = nn.distance_penalty(m, ref, {p = 2})
  lu.assertAlmostEquals(pen, 6, 1e-5) -- only block "1": 4 + 2 elements at distance 1
  lu.assertEquals(m:parameter("0.weight").grad:abs():sum(), 0)
  lu.assertErrorMsgContains("p must be 1 or 2", nn.distance_penalty, m, ref, {p = 3})
  ref["1.bias"] = nil
  lu.assertErrorMsgContains("no tensor '1.bias'", nn.distance_penalty, m, ref)
end

-- ---- BatchNorm modes ----

TestBatchNormModes = {}

-- channel-wise mean and unbiased variance of x [N,C,H,W] (double, by hand)
local function channel_stats(x)
  local n, c = x:size(1), x:size(2)
  local means, vars = {}, {}
  for ch = 1, c do
    local v = x:select(2, ch):contiguous():reshape(-1):totable()
    local s = 0
    for _, a in ipairs(v) do s = s + a end
    local m = s / #v
    local ss = 0
    for _, a in ipairs(v) do ss = ss + (a - m) ^ 2 end
    means[ch], vars[ch] = m, ss / (#v - 1)
  end
  return means, vars, n
end

function TestBatchNormModes:test_default_follows_training()
  local m = nn.BatchNorm2d(2)
  lu.assertEquals(m:mode(), "train")
  m:evaluate()
  lu.assertEquals(m:mode(), "eval")
  m:training()
  lu.assertEquals(m:mode(), "train")
end

function TestBatchNormModes:test_eval_never_updates()
  local r = sf.rng(110)
  local m = make_bn(nn.BatchNorm2d, 2, r):set_mode("eval")
  local rm, rv = m.running_mean:clone(), m.running_var:clone()
  for _ = 1, 3 do
    local x = sf.randn({4, 2, 3, 3}, r)
    m:forward(x)
    m:backward(x, sf.randn({4, 2, 3, 3}, r))
  end
  lu.assertTrue(m.running_mean:equal(rm))
  lu.assertTrue(m.running_var:equal(rv))
  -- also inside a parent in training mode
  local b = nn.BatchNorm2d(2):set_mode("eval")
  local s = nn.Sequential{nn.Conv2d(2, 2, 1, {rng = r}), b}
  s:training()
  s:forward(sf.randn({4, 2, 3, 3}, r))
  lu.assertEquals(b:mode(), "eval")
  lu.assertEquals(b.running_mean:totable(), {0, 0})
  lu.assertEquals(b.running_var:totable(), {1, 1})
end

function TestBatchNormModes:test_train_updates_pytorch_formula()
  local r = sf.rng(111)
  local m = make_bn(nn.BatchNorm2d, 3, r):set_mode("train")
  m.momentum = 0.2
  local x = sf.randn({4, 3, 2, 3}, r):mul_(2):add_(0.5)
  local rm, rv = m.running_mean:totable(), m.running_var:totable()
  local means, vars = channel_stats(x)
  local y = m:forward(x)
  for c = 1, 3 do
    lu.assertAlmostEquals(m.running_mean:get(c), 0.8 * rm[c] + 0.2 * means[c], 1e-5)
    lu.assertAlmostEquals(m.running_var:get(c), 0.8 * rv[c] + 0.2 * vars[c], 1e-4)
  end
  -- the output uses the batch statistics (biased variance)
  local c, v = 2, x:select(2, 2)
  local nb = v:numel()
  local biased = vars[c] * (nb - 1) / nb
  local want = (x:get(3, 2, 2, 1) - means[c]) / math.sqrt(biased + 1e-5) * m.weight:get(c) + m.bias:get(c)
  lu.assertAlmostEquals(y:get(3, 2, 2, 1), want, 1e-4)
end

function TestBatchNormModes:test_batch_and_tent_use_batch_stats_only()
  local r = sf.rng(112)
  for _, mode in ipairs{"batch", "tent"} do
    local m = make_bn(nn.BatchNorm2d, 2, r):set_mode(mode)
    local t = make_bn(nn.BatchNorm2d, 2, r):set_mode("train")
    t.weight:copy(m.weight); t.bias:copy(m.bias)
    local rm, rv = m.running_mean:clone(), m.running_var:clone()
    local x = sf.randn({3, 2, 3, 3}, r)
    local y = m:forward(x)
    lu.assertTrue(y:allclose(t:forward(x), 1e-6, 1e-6), mode .. " output equals the train-mode output")
    lu.assertTrue(m.running_mean:equal(rm), mode .. ": running mean untouched")
    lu.assertTrue(m.running_var:equal(rv), mode .. ": running var untouched")
    m:evaluate()
    lu.assertEquals(m:mode(), mode, "evaluate() does not override an explicit mode")
  end
end

function TestBatchNormModes:test_parent_does_not_override_explicit_mode()
  local r = sf.rng(113)
  local a, b = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
  local s = nn.Sequential{nn.Linear(3, 3, {rng = r}), a, nn.Linear(3, 3, {rng = r}), b}
  a:set_mode("batch")
  s:evaluate()
  lu.assertEquals(a:mode(), "batch")
  lu.assertEquals(b:mode(), "eval")
  s:training()
  lu.assertEquals(a:mode(), "batch")
  lu.assertEquals(b:mode(), "train")
  s:set_bn_mode("eval")
  s:training()
  lu.assertEquals(a:mode(), "eval")
  lu.assertEquals(b:mode(), "eval")
  s:set_bn_mode(nil) -- follow training()/evaluate() again
  lu.assertEquals(a:mode(), "train")
  s:evaluate()
  lu.assertEquals(b:mode(), "eval")
  lu.assertEquals(a:mode(), "eval")
end

function TestBatchNormModes:test_mode_in_tostring()
  local m = nn.Sequential{nn.BatchNorm1d(2)}
  m:set_bn_mode("tent")
  lu.assertStrContains(tostring(m), "mode tent (explicit)")
  m:set_bn_mode(nil)
  lu.assertStrContains(tostring(m), "mode train")
  lu.assertNotStrContains(tostring(m), "explicit")
end

function TestBatchNormModes:test_invalid_mode()
  local m = nn.Sequential{nn.BatchNorm2d(2)}
  lu.assertErrorMsgContains("mode must be 'eval', 'batch', 'train' or 'tent'", m.set_bn_mode, m, "frozen")
  lu.assertErrorMsgContains("got 'Eval'", nn.BatchNorm2d(2).set_mode, nn.BatchNorm2d(2), "Eval")
end

function TestBatchNormModes:test_tent_trains_affine_only_by_choice()
  -- tent is a mode, not a freezing rule: the affine parameters get gradients, and the
  -- mode says nothing about trainable flags
  local r = sf.rng(114)
  local m = make_bn(nn.BatchNorm2d, 2, r):set_mode("tent")
  local x = sf.randn({2, 2, 3, 3}, r)
  m:zero_grad()
  m:forward(x)
  m:backward(x, sf.randn({2, 2, 3, 3}, r))
  lu.assertTrue(m:parameter("weight").grad:abs():sum() > 0)
  lu.assertTrue(m:parameter("weight").trainable)
end

-- ---- protocol on single modules ----

TestModuleProtocol = {}

function TestModuleProtocol:test_add_after_build_errors()
  local s = nn.Sequential{nn.Linear(2, 2)}
  s:parameters()
  lu.assertErrorMsgContains("cannot add child", s.add, s, "x", nn.ReLU())
  lu.assertErrorMsgContains("cannot add parameter 'extra' after the model was built",
    s:child("0").param, s:child("0"), "extra", sf.zeros(2))
end

function TestModuleProtocol:test_child_of_other_model_errors()
  local l = nn.Linear(2, 2)
  local a = nn.Sequential{l}
  a:build()
  local b = nn.Sequential{l}
  lu.assertErrorMsgContains("belongs to another built model", b.build, b)
end

function TestModuleProtocol:test_bad_add()
  local s = nn.Sequential()
  lu.assertErrorMsgContains("is not a module", s.add, s, "a", 42)
  s:add("a", nn.ReLU())
  lu.assertErrorMsgContains("a child named 'a' already exists", s.add, s, "a", nn.ReLU())
end

function TestModuleProtocol:test_layer_shape_errors()
  local r = sf.rng(120)
  lu.assertErrorMsgContains("Linear(5 -> 4): input has shape [3,6], expected [...,5]",
    nn.Linear(5, 4).forward, nn.Linear(5, 4), sf.randn({3, 6}, r))
  local c = nn.Conv2d(3, 4, 3)
  lu.assertErrorMsgContains("Conv2d(3 -> 4): input has shape [2,2,5,5], expected [N,3,H,W]", c.forward, c,
    sf.randn({2, 2, 5, 5}, r))
  local b = nn.BatchNorm2d(4)
  lu.assertErrorMsgContains("BatchNorm2d(4): input has shape [2,4], expected [N,4,H,W]", b.forward, b,
    sf.randn({2, 4}, r))
  local b1 = nn.BatchNorm1d(4)
  lu.assertErrorMsgContains("BatchNorm1d(4): input has shape [2,3], expected [N,4]", b1.forward, b1,
    sf.randn({2, 3}, r))
  local ln = nn.LayerNorm(4)
  lu.assertErrorMsgContains("LayerNorm(4): input has shape [2,5]", ln.forward, ln, sf.randn({2, 5}, r))
  local gn = nn.GroupNorm(2, 4)
  lu.assertErrorMsgContains("GroupNorm(2, 4): input has shape [2,3,2,2]", gn.forward, gn, sf.randn({2, 3, 2, 2}, r))
  local t = nn.Tokens(4, 3)
  lu.assertErrorMsgContains("Tokens: input has shape [1,3,3], expected [N,4,3]", t.forward, t, sf.randn({1, 3, 3}, r))
  local a = nn.MultiheadAttention(4, 2)
  lu.assertErrorMsgContains("MultiheadAttention(4, 2 heads): input has shape [2,4]", a.forward, a, sf.randn({2, 4}, r))
end

function TestModuleProtocol:test_constructor_errors()
  lu.assertErrorMsgContains("Linear: in_features must be an integer >= 1, got 0", nn.Linear, 0, 3)
  lu.assertErrorMsgContains("Conv2d: stride must be an integer >= 1", nn.Conv2d, 1, 1, 3, {stride = 0})
  lu.assertErrorMsgContains("Conv2d: padding must be an integer >= 0", nn.Conv2d, 1, 1, 3, {padding = -1})
  lu.assertErrorMsgContains("GroupNorm: 6 channels do not split into 4 groups", nn.GroupNorm, 4, 6)
  lu.assertErrorMsgContains("Dropout: p must be a number in [0, 1)", nn.Dropout, 1)
  lu.assertErrorMsgContains("MultiheadAttention: dim 6 is not a multiple of heads 4", nn.MultiheadAttention, 6, 4)
  lu.assertErrorMsgContains("PatchEmbed: image size 10 is not a multiple of the patch size 4", nn.PatchEmbed,
    10, 4, 3, 8)
end

function TestModuleProtocol:test_residual_shape_mismatch()
  local m = nn.Residual(nn.Linear(3, 2))
  lu.assertErrorMsgContains("Residual: branch output has shape [4,2] but shortcut output has shape [4,3]", m.forward,
    m, sf.randn({4, 3}, sf.rng(1)))
end

function TestModuleProtocol:test_container_error_names_child_path()
  local inner = nn.Sequential()
  inner:add("fc", nn.Linear(3, 2))
  local outer = nn.Sequential()
  outer:add("block1", inner)
  local ok, msg = pcall(outer.forward, outer, sf.randn({2, 5}, sf.rng(1)))
  lu.assertFalse(ok)
  lu.assertStrContains(msg, "In child 'block1' (Sequential) of Sequential > In child 'fc' (Linear) of Sequential")
  lu.assertStrContains(msg, "Linear(3 -> 2): input has shape [2,5], expected [...,3]")
end

function TestModuleProtocol:test_zero_parameter_module()
  local m = nn.ReLU()
  lu.assertEquals(#m:parameters(), 0)
  m:zero_grad()
  lu.assertEquals(m:blocks(), {})
end

os.exit(lu.LuaUnit.run())
