-- The model zoo (surgft.models) through the module protocol: finite-difference gradients
-- of whole models, parameter names and blocks, flat buffers, zero_grad, backward twice,
-- batch-versus-single, deep clones, apply/tostring, error paths, real freezing (kernel
-- counters and which modules ran backward) and BatchNorm modes inside models.
local lu = require "luaunit"
local sf = require "surgft"
local nn = require "surgft.nn"
local models = require "surgft.models"
local gc = require "gradcheck"

local K = sf.kernels

-- small instances of every model, with an input of the right shape
local function tiny(kind, seed)
  local r = sf.rng(seed or 1)
  if kind == "mlp" then
    return models.mlp{sizes = {12, 6, 5, 3}, rng = r}, sf.randn({3, 3, 2, 2}, r)
  elseif kind == "cnn" then
    return models.cnn{in_channels = 2, widths = {3, 4, 4}, classes = 3, rng = r}, sf.randn({3, 2, 6, 5}, r)
  elseif kind:match("^resnet") then
    local block = kind:match("preact") and "preact" or "basic"
    local norm = kind:match("gn") and "gn" or "bn"
    return models.resnet{depth = 8, widths = {2, 4, 4}, classes = 3, block = block, norm = norm, gn_groups = 2,
      rng = r}, sf.randn({2, 3, 6, 6}, r)
  elseif kind == "vit" then
    return models.vit{image = 8, patch = 4, channels = 2, dim = 8, depth = 2, heads = 2, mlp_ratio = 2, classes = 3,
      rng = r}, sf.randn({2, 2, 8, 8}, r)
  elseif kind == "two_layer" then
    return models.two_layer{d = 5, k = 4, phi = "relu", out = 2, rng = r}, sf.randn({3, 5}, r)
  elseif kind == "two_layer_linear" then
    return models.two_layer{d = 5, k = 4, rng = r}, sf.randn({3, 5}, r)
  end
  error("no tiny model " .. kind)
end

local KINDS = {"mlp", "cnn", "resnet_basic_bn", "resnet_basic_gn", "resnet_preact_bn", "resnet_preact_gn", "vit",
               "two_layer", "two_layer_linear"}

local function names_of(m)
  local out = {}
  for i, rec in ipairs(m:parameters()) do out[i] = rec.name end
  return out
end

local function contains(list, v)
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

-- ---- finite differences through whole models ----

TestModelGrads = {}

-- In a ResNet every step of an early weight moves hundreds of ReLU inputs, so many
-- coordinates have a kink within reach (those are detected exactly and skipped): the
-- deep models are allowed to skip up to half of them. Every layer type is also checked
-- alone in test_nn.lua, where nothing is skipped.
local MAX_SKIP = {resnet_basic_bn = 0.5, resnet_basic_gn = 0.5, resnet_preact_bn = 0.5, resnet_preact_gn = 0.5}

for _, kind in ipairs(KINDS) do
  TestModelGrads["test_" .. kind] = function()
    local m, x = tiny(kind, 3)
    gc.check_module(lu, m, x, {rng = sf.rng(4), eps = 1e-3, k = 6, title = kind .. " (training)",
      max_skip = MAX_SKIP[kind]})
  end
end

-- BatchNorm models in evaluate(): the fixed running-statistics path. The statistics are
-- first set from a calibration batch (momentum 1), so that units are alive, not dead.
for _, kind in ipairs{"cnn", "resnet_basic_bn", "resnet_preact_bn"} do
  TestModelGrads["test_" .. kind .. "_evaluate"] = function()
    local m, x = tiny(kind, 5)
    m:apply(function(mod) if mod.running_var then mod.momentum = 1 end end)
    m:training()
    m:forward(sf.randn(x:size(), sf.rng(6)))
    m:apply(function(mod) if mod.running_var then mod.momentum = 0.1 end end)
    m:evaluate()
    gc.check_module(lu, m, x, {rng = sf.rng(8), eps = 1e-3, k = 6, title = kind .. " (evaluate)",
      max_skip = MAX_SKIP[kind]})
  end
end

-- ---- names and blocks ----

TestModelNames = {}

function TestModelNames:test_resnet()
  local m = tiny("resnet_basic_bn")
  lu.assertEquals(m:blocks(), {"stem", "block1", "block2", "block3", "head"})
  local rec = m:parameter("block1.0.conv1.weight")
  lu.assertEquals(rec.block, "block1")
  lu.assertEquals(rec.shape, {2, 2, 3, 3})
  lu.assertEquals(m:parameter("stem.conv.weight").block, "stem")
  lu.assertEquals(m:parameter("block2.0.shortcut.0.weight").shape, {4, 2, 1, 1})
  lu.assertEquals(m:parameter("block2.0.shortcut.1.bias").block, "block2")
  lu.assertEquals(m:parameter("head.fc.weight").block, "head")
  lu.assertErrorMsgContains("no parameter named 'block9.x'", m.parameter, m, "block9.x")
  -- depth 20: three blocks per stage, named 0, 1, 2
  local m20 = models.resnet{depth = 20, widths = {2, 2, 2}, rng = sf.rng(1)}
  lu.assertTrue(contains(names_of(m20), "block3.2.bn2.weight"))
  lu.assertFalse(contains(names_of(m20), "block3.3.bn2.weight"))
  -- pre-activation: the stem is a bare convolution, the head has the final norm
  local p = tiny("resnet_preact_bn")
  lu.assertEquals(p:blocks(), {"stem", "block1", "block2", "block3", "head"})
  lu.assertEquals(names_of(p)[1], "stem.conv.weight")
  lu.assertEquals(names_of(p)[2], "block1.0.bn1.weight")
  lu.assertTrue(contains(names_of(p), "head.bn.weight"))
  -- group norm has the same names
  local g = tiny("resnet_basic_gn")
  lu.assertEquals(names_of(g), names_of(m))
  lu.assertEquals(g:child("stem"):child("bn"):type(), "GroupNorm")
end

function TestModelNames:test_vit()
  local m = tiny("vit")
  lu.assertEquals(m:blocks(), {"embed", "block1", "block2", "head"})
  for _, n in ipairs{"embed.patch.proj.weight", "embed.tokens.cls", "embed.tokens.pos", "block1.attn.qkv.weight",
                     "block2.attn.proj.bias", "block1.ln1.weight", "block2.fc2.weight", "head.norm.weight",
                     "head.fc.weight"} do
    lu.assertTrue(contains(names_of(m), n), "vit has " .. n)
  end
  lu.assertEquals(m:parameter("embed.tokens.pos").shape, {1, 5, 8})
  lu.assertEquals(m:parameter("block1.attn.qkv.weight").block, "block1")
  lu.assertEquals(m:parameter("block1.fc1.weight").shape, {16, 8}) -- mlp_ratio 2
end

function TestModelNames:test_others()
  lu.assertEquals(tiny("mlp"):blocks(), {"fc1", "fc2", "head"})
  lu.assertEquals(names_of(tiny("mlp")), {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "head.weight",
                                          "head.bias"})
  lu.assertEquals(tiny("cnn"):blocks(), {"block1", "block2", "block3", "head"})
  lu.assertEquals(names_of(tiny("cnn"))[1], "block1.conv.weight")
  lu.assertEquals(tiny("two_layer"):blocks(), {"first", "last"})
  lu.assertEquals(names_of(tiny("two_layer")), {"first.weight", "last.weight"})
end

function TestModelNames:test_block_order_is_parameter_order()
  -- each block's parameters are contiguous in the record list and in the flat buffer
  for _, kind in ipairs(KINDS) do
    local m = tiny(kind)
    local blocks, seen, last = m:blocks(), {}, nil
    local pos = {}
    for i, b in ipairs(blocks) do pos[b] = i end
    local offset = 0
    for _, rec in ipairs(m:parameters()) do
      if rec.block ~= last then
        lu.assertNil(seen[rec.block], kind .. ": block " .. rec.block .. " is split")
        seen[rec.block] = true
        if last then lu.assertTrue(pos[rec.block] > pos[last], kind .. ": block order") end
        last = rec.block
      end
      lu.assertEquals(rec.offset, offset, kind .. ": " .. rec.name .. " offset")
      offset = offset + rec.value:numel()
    end
    lu.assertEquals(m:flat():numel(), offset)
  end
end

function TestModelNames:test_set_trainable_unknown_block()
  local m = models.cnn{in_channels = 1, widths = {4, 8}, classes = 2, rng = sf.rng(0)}
  lu.assertErrorMsgContains("set_trainable: no block named 'blokc1' (blocks: block1, block2, head)",
    m.set_trainable, m, false, "blokc1")
  m:set_trainable(false, "block1")
  lu.assertFalse(m:parameter("block1.conv.weight").trainable)
end

function TestModelNames:test_model_option_errors()
  lu.assertErrorMsgContains("depth must be 6n+2", models.resnet, {depth = 10})
  lu.assertErrorMsgContains("unknown option 'widht'", models.resnet, {widht = {1}})
  lu.assertErrorMsgContains("block must be 'basic' or 'preact'", models.resnet, {block = "bottleneck"})
  lu.assertErrorMsgContains("norm must be 'bn' or 'gn'", models.resnet, {norm = "ln"})
  lu.assertErrorMsgContains("d and k must be positive integers", models.two_layer, {d = 0, k = 2})
  lu.assertErrorMsgContains("phi must be 'linear' or 'relu'", models.two_layer, {d = 2, k = 2, phi = "tanh"})
  lu.assertErrorMsgContains("sizes needs at least", models.mlp, {sizes = {3}})
end

-- every builder checks its options the same way: each names itself and its own valid keys
function TestModelNames:test_every_builder_checks_its_options()
  local valid = {
    mlp = "rng, sizes",
    cnn = "classes, in_channels, rng, widths",
    resnet = "block, classes, depth, gn_groups, in_channels, norm, rng, widths",
    vit = "channels, classes, depth, dim, heads, image, mlp_ratio, patch, rng",
    two_layer = "d, k, out, phi, rng",
  }
  for name, keys in pairs(valid) do
    lu.assertErrorMsgContains(string.format("models.%s: unknown option 'bogus' (valid: %s)", name, keys),
      models[name], {bogus = 1})
    lu.assertErrorMsgContains(string.format("models.%s: expected an options table, got number", name), models[name], 3)
  end
  lu.assertErrorMsgContains("models.resnet: block must be 'basic' or 'preact', got 'false'", models.resnet,
    {block = false})
  lu.assertErrorMsgContains("models.two_layer: phi must be 'linear' or 'relu', got 'false'", models.two_layer,
    {d = 2, k = 2, phi = false})
  -- the message points at the caller's line, not into models.lua
  local ok, err = pcall(function() local m = models.resnet{norm = "ln"}; return m end)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "test_models.lua:")
end

-- ---- flat buffers ----

TestFlatBuffers = {}

function TestFlatBuffers:test_records_are_views()
  for _, kind in ipairs(KINDS) do
    local m = tiny(kind)
    local fv, fg = m:flat()
    lu.assertEquals(fv:dim(), 1)
    for _, rec in ipairs(m:parameters()) do
      lu.assertTrue(rec.value:shares_storage(fv), kind .. ": " .. rec.name .. " value is a view of the flat values")
      lu.assertTrue(rec.grad:shares_storage(fg), kind .. ": " .. rec.name .. " grad is a view of the flat grads")
      lu.assertFalse(rec.value:shares_storage(fg))
      lu.assertEquals(rec.value:size(), rec.shape)
      lu.assertEquals(rec.grad:size(), rec.shape)
      -- the layer computes with the record's tensor
      lu.assertTrue(rec.module[rec.attr] == rec.value, kind .. ": " .. rec.name .. " is the layer's tensor")
    end
  end
end

function TestFlatBuffers:test_writes_through_the_flat_buffer()
  local m, x = tiny("mlp")
  local fv = m:flat()
  local y0 = m:forward(x):clone()
  local rec = m:parameter("head.bias")
  fv:narrow(1, rec.offset + 1, rec.numel):add_(1)
  local y1 = m:forward(x)
  lu.assertTrue((y1 - y0):allclose(sf.ones(y0:size()), 1e-6, 1e-6), "head bias +1 through the flat buffer")
end

function TestFlatBuffers:test_zero_grad_zeroes_all()
  for _, kind in ipairs{"resnet_basic_bn", "vit", "cnn"} do
    local m, x = tiny(kind)
    local y = m:forward(x)
    m:backward(x, sf.randn(y:size(), sf.rng(2)))
    local _, fg = m:flat()
    lu.assertTrue(fg:abs():sum() > 0)
    for _, rec in ipairs(m:parameters()) do
      lu.assertTrue(rec.grad:abs():sum() > 0, kind .. ": " .. rec.name .. " got a gradient")
    end
    m:zero_grad()
    lu.assertEquals(fg:abs():max(), 0)
  end
end

function TestFlatBuffers:test_backward_twice_doubles()
  for _, kind in ipairs(KINDS) do
    local m, x = tiny(kind)
    local y = m:forward(x)
    local d = sf.randn(y:size(), sf.rng(3))
    m:zero_grad()
    local g1 = m:backward(x, d):clone()
    local once = select(2, m:flat()):clone()
    local g2 = m:backward(x, d)
    local twice = select(2, m:flat())
    local diff = twice:max_abs_diff(once * 2)
    lu.assertTrue(diff <= 1e-5 * math.max(1, once:abs():max()),
      kind .. ": backward twice = 2x gradients, max difference " .. diff)
    lu.assertTrue(g2:equal(g1), kind .. ": the input gradient does not accumulate")
  end
end

function TestFlatBuffers:test_submodule_of_built_model()
  -- a module inside a built model answers the protocol for its subtree
  local m, x = tiny("resnet_basic_bn")
  local b2 = m:child("block2")
  local recs = b2:parameters()
  lu.assertEquals(#recs, 9)
  lu.assertEquals(recs[1].name, "block2.0.conv1.weight")
  lu.assertIs(recs[1], m:parameter("block2.0.conv1.weight"), "the same record objects as the root's")
  lu.assertIs(b2:parameter("block2.0.bn2.bias"), m:parameter("block2.0.bn2.bias"))
  lu.assertErrorMsgContains("no parameter named 'block1.0.conv1.weight'", b2.parameter, b2, "block1.0.conv1.weight")
  lu.assertEquals(b2:blocks(), {"block2"})
  -- its flat slice is a view of the root's buffers, exactly its records' range
  local fv, fg = b2:flat()
  local n = 0
  for _, rec in ipairs(recs) do
    n = n + rec.numel
    lu.assertTrue(rec.value:shares_storage(fv))
  end
  lu.assertEquals(fv:numel(), n)
  lu.assertTrue(fv:shares_storage((m:flat())))
  lu.assertTrue(fg:shares_storage(select(2, m:flat())))
  -- zero_grad zeroes the subtree only
  local y = m:forward(x)
  m:backward(x, sf.randn(y:size(), sf.rng(1)))
  b2:zero_grad()
  lu.assertEquals(fg:abs():max(), 0)
  lu.assertTrue(m:parameter("block3.0.conv1.weight").grad:abs():sum() > 0)
  lu.assertTrue(m:parameter("block1.0.conv1.weight").grad:abs():sum() > 0)
  -- set_trainable on the subtree
  m:child("head"):set_trainable(false)
  for _, rec in ipairs(m:parameters()) do lu.assertEquals(rec.trainable, rec.block ~= "head", rec.name) end
  -- state names relative to the module; a parameterless module has an empty flat buffer
  local st = m:child("head"):state()
  lu.assertNotNil(st["fc.weight"])
  lu.assertNil(st["head.fc.weight"])
  lu.assertTrue(st["fc.weight"] == m:parameter("head.fc.weight").value)
  lu.assertEquals(m:child("head"):child("pool"):flat():numel(), 0)
  -- and a deep clone of it is a model of its own
  local h = m:child("head"):clone()
  lu.assertEquals(names_of(h), {"fc.weight", "fc.bias"})
  lu.assertFalse(h:parameters()[1].trainable, "trainable flags copied")
  lu.assertTrue(h:flat():equal((m:child("head"):flat())))
  lu.assertFalse(h:flat():shares_storage((m:flat())))
end

-- ---- batch versus single ----

TestBatchVsSingle = {}

for _, kind in ipairs(KINDS) do
  TestBatchVsSingle["test_" .. kind] = function()
    local m, x = tiny(kind, 9)
    m:evaluate()
    local y = m:forward(x):clone()
    for i = 1, x:size(1) do
      local yi = m:forward(x:narrow(1, i, 1))
      local want = y:narrow(1, i, 1)
      local diff = yi:max_abs_diff(want)
      lu.assertTrue(diff <= 1e-5, string.format("%s: example %d alone differs by %.3g", kind, i, diff))
    end
  end
end

-- ---- clone ----

TestClone = {}

local function snapshot(m)
  local s = {}
  for name, t in pairs(m:state()) do s[name] = t:clone() end
  return s
end

local function same_state(m, s)
  for name, t in pairs(m:state()) do
    if not t:equal(s[name]) then return false, name end
  end
  return true
end

function TestClone:test_deep()
  for _, kind in ipairs{"resnet_basic_bn", "vit", "cnn", "mlp"} do
    local m, x = tiny(kind)
    m:set_trainable(false, m:blocks()[1])
    m:parameters()[#m:parameters()].lr_scale = 0.25
    local before = snapshot(m)
    local c = m:clone()
    -- same names, values, flags and scales; separate storage
    lu.assertEquals(names_of(c), names_of(m))
    local cf, cg = c:flat()
    local mf, mg = m:flat()
    lu.assertTrue(cf:equal(mf))
    lu.assertFalse(cf:shares_storage(mf))
    lu.assertFalse(cg:shares_storage(mg))
    for i, rec in ipairs(c:parameters()) do
      local orig = m:parameters()[i]
      lu.assertEquals(rec.trainable, orig.trainable, rec.name .. " trainable copied")
      lu.assertEquals(rec.lr_scale, orig.lr_scale, rec.name .. " lr_scale copied")
      lu.assertTrue(rec.value:shares_storage(cf))
      lu.assertTrue(rec.module[rec.attr] == rec.value)
      lu.assertFalse(rec.module == orig.module)
    end
    -- train the clone: a few SGD steps in training mode (running statistics move too)
    c:training()
    for _ = 1, 3 do
      c:zero_grad()
      local y = c:forward(x)
      c:backward(x, sf.randn(y:size(), sf.rng(5)))
      cf:add_(cg * -0.1)
    end
    lu.assertFalse(cf:equal(mf), kind .. ": the clone moved")
    local ok, name = same_state(m, before)
    lu.assertTrue(ok, kind .. ": the original changed at " .. tostring(name))
    lu.assertEquals(mg:abs():max(), 0, kind .. ": the original's gradients stayed zero")
    -- and the original still computes what it computed
    local y1 = m:forward(x)
    lu.assertTrue(y1:equal(m:clone():forward(x)))
  end
end

function TestClone:test_clone_keeps_modes()
  local m = tiny("cnn")
  m:child("block2"):child("bn"):set_mode("tent")
  m:evaluate()
  local c = m:clone()
  lu.assertEquals(c:child("block2"):child("bn"):mode(), "tent")
  lu.assertEquals(c:child("block1"):child("bn"):mode(), "eval")
  c:training()
  lu.assertEquals(c:child("block1"):child("bn"):mode(), "train")
  lu.assertEquals(m:child("block1"):child("bn"):mode(), "eval")
end

function TestClone:test_dropout_rng_not_shared()
  -- a clone's dropout draws from its own copy of the generator, in the same state
  local d = nn.Dropout(0.5, {rng = sf.rng(3)})
  local m = nn.Sequential{nn.Linear(4, 4, {rng = sf.rng(1)}), d}
  m:build()
  local c = m:clone()
  lu.assertFalse(c:child("1").rng == d.rng)
  local x = sf.randn({8, 4}, sf.rng(2))
  local a1 = m:forward(x):clone()
  local b1 = c:forward(x):clone()
  lu.assertTrue(a1:equal(b1), "the clone starts from the same generator state")
  local b2 = c:forward(x):clone()
  c:forward(x)
  local a2 = m:forward(x)
  lu.assertFalse(a2:equal(a1), "a second mask differs from the first")
  lu.assertTrue(a2:equal(b2), "the clone's draws did not advance the original's generator")
end

-- ---- apply, tostring, errors ----

TestTreeAndErrors = {}

function TestTreeAndErrors:test_apply()
  local m = tiny("resnet_basic_bn")
  local count, types = 0, {}
  lu.assertIs(m:apply(function(mod)
    count = count + 1
    types[mod:type()] = (types[mod:type()] or 0) + 1
  end), m)
  lu.assertEquals(types.Conv2d, 9)     -- stem, 2 per block, 2 shortcuts
  lu.assertEquals(types.BasicBlock, 3)
  lu.assertEquals(types.Linear, 1)
  lu.assertEquals(types.BatchNorm2d, 9)
  -- parents before children
  local order = {}
  m:visit(function(_, path) order[#order + 1] = path end)
  lu.assertEquals(order[1], "")
  lu.assertEquals(order[2], "stem")
  lu.assertEquals(order[3], "stem.conv")
  lu.assertTrue(contains(order, "block2.0.shortcut.1"))
end

function TestTreeAndErrors:test_tostring()
  local s = tostring(tiny("resnet_basic_bn"))
  lu.assertStrContains(s, "(stem): Sequential {")
  lu.assertStrContains(s, "(block1): Sequential {")
  lu.assertStrContains(s, "(0): BasicBlock {")
  lu.assertStrContains(s, "(conv1): Conv2d(2 -> 2, 3x3, stride 1, pad 1, no bias)")
  lu.assertStrContains(s, "(shortcut): Sequential {")
  lu.assertStrContains(s, "(fc): Linear(4 -> 3)")
  lu.assertStrContains(s, "BatchNorm2d(4, eps 1e-05, mode train)")
  local v = tostring(tiny("vit"))
  lu.assertStrContains(v, "(attn): MultiheadAttention(8, 2 heads)")
  lu.assertStrContains(v, "(patch): PatchEmbed {")
end

function TestTreeAndErrors:test_add_after_build()
  local m = tiny("cnn")
  lu.assertErrorMsgContains("cannot add child 'extra' after the model was built", m.add, m, "extra", nn.ReLU())
  local head = m:child("head")
  lu.assertErrorMsgContains("cannot add child", head.add, head, "extra", nn.ReLU())
end

function TestTreeAndErrors:test_bad_input_names_child_path()
  local m = tiny("cnn") -- 2 input channels
  local ok, msg = pcall(m.forward, m, sf.randn({2, 3, 6, 6}, sf.rng(1)))
  lu.assertFalse(ok)
  lu.assertStrContains(msg, "In child 'block1' (Sequential) of Sequential > In child 'conv' (Conv2d) of Sequential")
  lu.assertStrContains(msg, "Conv2d(2 -> 3): input has shape [2,3,6,6], expected [N,2,H,W]")
  -- from inside a residual block
  local r = tiny("resnet_basic_bn")
  ok, msg = pcall(r.forward, r, sf.randn({2, 1, 6, 6}, sf.rng(1)))
  lu.assertFalse(ok)
  lu.assertStrContains(msg, "In child 'stem' (Sequential) of Sequential > In child 'conv' (Conv2d)")
  lu.assertStrContains(msg, "input has shape [2,1,6,6], expected [N,3,H,W]")
  -- the vit at the wrong image size fails where the token count is checked
  local v = tiny("vit")
  ok, msg = pcall(v.forward, v, sf.randn({1, 2, 12, 12}, sf.rng(1)))
  lu.assertFalse(ok)
  lu.assertStrContains(msg, "In child 'embed' (Sequential) of Sequential > In child 'tokens' (Tokens)")
  lu.assertStrContains(msg, "Tokens: input has shape [1,9,8], expected [N,4,8]")
  -- an mlp given the wrong feature count
  local p = tiny("mlp")
  ok, msg = pcall(p.forward, p, sf.randn({2, 10}, sf.rng(1)))
  lu.assertFalse(ok)
  lu.assertStrContains(msg, "In child 'fc1' (Linear) of Sequential, forward: Linear(12 -> 6): input has shape [2,10]")
end

function TestTreeAndErrors:test_backward_error_names_child()
  local m, x = tiny("mlp")
  m:forward(x)
  local ok, msg = pcall(m.backward, m, x, sf.randn({3, 4}, sf.rng(1)))
  lu.assertFalse(ok)
  lu.assertStrContains(msg, "In child 'head' (Linear) of Sequential, backward:")
end

-- ---- freezing is real ----

TestFreezing = {}

-- spies on every module's backward: which paths ran
local function spy(m)
  local ran = {}
  m:visit(function(mod, path)
    local orig = mod.backward
    mod.backward = function(self, ...)
      ran[path] = (ran[path] or 0) + 1
      return orig(self, ...)
    end
  end)
  return ran
end

local function under(path, prefixes)
  for _, p in ipairs(prefixes) do
    if path == p or path:sub(1, #p + 1) == p .. "." then return true end
  end
  return false
end

-- Runs the fully trainable model, then the model with only `filter` trainable and
-- need == false. Checks the frozen gradients are exactly zero and the trainable ones
-- equal the unfrozen run's. Returns the kernel counters of the frozen backward and the
-- paths whose backward ran.
local function frozen_run(m, x, filter)
  m:set_bn_mode("eval")
  local y = m:forward(x)
  local d = sf.randn(y:size(), sf.rng(11))
  m:set_trainable(true)
  m:zero_grad()
  m:forward(x)
  m:backward(x, d)
  local full = select(2, m:flat()):clone()
  m:set_trainable(false)
  m:set_trainable(true, filter)
  m:zero_grad()
  m:forward(x)
  local ran = spy(m)
  K.reset_counters()
  local gin = m:backward(x, d, false)
  local counters = K.counters()
  lu.assertNil(gin, "backward(x, d, false) returns no input gradient")
  local _, fg = m:flat()
  local ntrain = 0
  for _, rec in ipairs(m:parameters()) do
    local g = fg:narrow(1, rec.offset + 1, rec.numel)
    local want = full:narrow(1, rec.offset + 1, rec.numel)
    if rec.trainable then
      ntrain = ntrain + 1
      local diff = g:max_abs_diff(want)
      lu.assertTrue(diff <= 1e-6 * math.max(1, want:abs():max()),
        rec.name .. ": trainable gradient differs from the unfrozen run by " .. diff)
      lu.assertTrue(g:abs():sum() > 0, rec.name .. " got a gradient")
    else
      lu.assertEquals(g:abs():max(), 0, rec.name .. " is frozen and must get no gradient")
    end
  end
  lu.assertTrue(ntrain > 0)
  return counters, ran
end

function TestFreezing:test_cnn_head_only()
  local m, x = tiny("cnn")
  local c, ran = frozen_run(m, x, "head")
  lu.assertEquals(c.conv_bwd_input, 0)
  lu.assertEquals(c.conv_bwd_weight, 0)
  lu.assertEquals(c.norm_bwd_input, 0)
  lu.assertEquals(c.norm_bwd_affine, 0)
  lu.assertEquals(c.act_bwd, 0)
  lu.assertEquals(c.linear_bwd_weight, 1)
  lu.assertEquals(c.linear_bwd_input, 0)
  lu.assertEquals(c.pool_bwd, 0)
  for path in pairs(ran) do
    lu.assertTrue(path == "" or under(path, {"head"}), "backward ran in frozen " .. path)
  end
  lu.assertNil(ran["head.pool"], "nothing below the head's linear layer")
end

function TestFreezing:test_resnet_head_only()
  for _, kind in ipairs{"resnet_basic_bn", "resnet_preact_gn"} do
    local m, x = tiny(kind)
    local c, ran = frozen_run(m, x, "head")
    lu.assertEquals(c.conv_bwd_input + c.conv_bwd_weight, 0, kind)
    if kind:match("preact") then
      -- the pre-activation head starts with its trainable norm: the linear layer passes
      -- the gradient down to it, and the norm computes no input gradient
      lu.assertEquals(c.linear_bwd_input, 1, kind)
      lu.assertEquals(c.norm_bwd_affine, 1, kind)
    else
      lu.assertEquals(c.linear_bwd_input, 0, kind)
      lu.assertEquals(c.norm_bwd_affine, 0, kind)
    end
    lu.assertEquals(c.norm_bwd_input, 0, kind)
    for path in pairs(ran) do
      lu.assertTrue(path == "" or under(path, {"head"}), kind .. ": backward ran in frozen " .. path)
    end
  end
end

function TestFreezing:test_resnet_block2_only()
  local m, x = tiny("resnet_basic_bn")
  local c, ran = frozen_run(m, x, "block2")
  for path in pairs(ran) do
    lu.assertFalse(under(path, {"stem", "block1"}), "backward ran below block2 in " .. path)
  end
  lu.assertNotNil(ran["block3.0.conv1"], "block3 passes the gradient down")
  lu.assertNotNil(ran["block2.0.conv1"])
  -- convolutions: weights of block2's conv1, conv2 and shortcut; inputs of block3's
  -- three convs and of block2's conv2 only (block2's conv1 and shortcut see the frozen
  -- block1 output: no input gradient)
  lu.assertEquals(c.conv_bwd_weight, 3)
  lu.assertEquals(c.conv_bwd_input, 4)
  lu.assertEquals(c.linear_bwd_weight, 0)
  lu.assertEquals(c.linear_bwd_input, 1)
end

function TestFreezing:test_preact_block2_only()
  local m, x = tiny("resnet_preact_bn")
  local c, ran = frozen_run(m, x, "block2")
  for path in pairs(ran) do
    lu.assertFalse(under(path, {"stem", "block1"}), "backward ran below block2 in " .. path)
  end
  -- block2.0.bn1 trains, so conv1 and the shortcut pass gradients down to it; nothing
  -- computes the gradient of block2's input
  lu.assertEquals(c.conv_bwd_weight, 3)
  lu.assertEquals(c.norm_bwd_input, 3 + 1) -- block3's bn1 and bn2, head bn; block2's bn2
end

function TestFreezing:test_single_parameter()
  -- a filter function: only one bias trains
  local m, x = tiny("resnet_basic_bn")
  local c = frozen_run(m, x, function(rec) return rec.name == "block3.0.bn2.bias" end)
  lu.assertEquals(c.conv_bwd_weight, 0)
  lu.assertEquals(c.conv_bwd_input, 0)
  lu.assertEquals(c.norm_bwd_affine, 1)
end

function TestFreezing:test_vit_head_only()
  local m, x = tiny("vit")
  local c, ran = frozen_run(m, x, "head")
  for path in pairs(ran) do
    lu.assertTrue(path == "" or under(path, {"head"}), "backward ran in frozen " .. path)
  end
  lu.assertNil(ran["block2.attn"], "no attention backward")
  lu.assertEquals(c.conv_bwd_weight + c.conv_bwd_input, 0)
  lu.assertEquals(c.linear_bwd_weight, 1)
  lu.assertEquals(c.linear_bwd_input, 1) -- the head's fc gives the gradient to the trained head.norm
  lu.assertEquals(c.norm_bwd_input, 0)
  lu.assertEquals(c.norm_bwd_affine, 1)
end

function TestFreezing:test_vit_late_mlp_only()
  -- only block2's MLP trains: block2's attention and everything below stay idle
  local m, x = tiny("vit")
  local c, ran = frozen_run(m, x, function(rec) return rec.name:match("^block2%.fc") ~= nil end)
  for path in pairs(ran) do
    lu.assertFalse(under(path, {"embed", "block1", "block2.attn", "block2.ln1", "block2.ln2"}),
      "backward ran in " .. path)
  end
  lu.assertEquals(c.linear_bwd_weight, 2)
end

function TestFreezing:test_vit_attention_projection_only()
  -- only block2's attention output projection trains: the softmax backward and the qkv
  -- projection never run, nor anything below block2's attention
  local m, x = tiny("vit")
  local c, ran = frozen_run(m, x, "block2")
  lu.assertNotNil(ran["block2.attn.qkv"], "with all of block2 training, qkv runs")
  c, ran = frozen_run(m, x, function(rec) return rec.name:match("^block2%.attn%.proj") ~= nil end)
  lu.assertNil(ran["block2.attn.qkv"], "qkv backward ran")
  lu.assertNil(ran["block2.ln1"], "ln1 backward ran")
  lu.assertNotNil(ran["block2.attn.proj"])
  lu.assertEquals(c.linear_bwd_weight, 1)
  -- fc2, fc1 and head.fc pass the gradient down; proj computes no input gradient
  lu.assertEquals(c.linear_bwd_input, 3)
end

function TestFreezing:test_vit_embed_only()
  -- the lowest block trains: the gradient goes through everything, the patch conv
  -- computes its weight gradient but no input gradient
  local m, x = tiny("vit")
  local c = frozen_run(m, x, "embed")
  lu.assertEquals(c.conv_bwd_weight, 1)
  lu.assertEquals(c.conv_bwd_input, 0)
  lu.assertEquals(c.linear_bwd_weight, 0)
end

function TestFreezing:test_frozen_stays_zero_over_steps()
  local m, x = tiny("mlp")
  m:set_trainable(false, "fc1")
  m:zero_grad()
  for _ = 1, 3 do
    local y = m:forward(x)
    m:backward(x, sf.randn(y:size(), sf.rng(1)))
  end
  lu.assertEquals(m:parameter("fc1.weight").grad:abs():max(), 0)
  lu.assertEquals(m:parameter("fc1.bias").grad:abs():max(), 0)
  lu.assertTrue(m:parameter("fc2.weight").grad:abs():sum() > 0)
end

-- ---- BatchNorm modes inside models ----

TestModelBNModes = {}

local function running(m)
  local out = {}
  m:visit(function(mod, path)
    if mod.running_mean then out[#out + 1] = {path, mod.running_mean:clone(), mod.running_var:clone(), mod} end
  end)
  return out
end

function TestModelBNModes:test_explicit_eval_survives_training()
  local m, x = tiny("resnet_basic_bn")
  m:set_bn_mode("eval")
  m:training()
  local before = running(m)
  local y = m:forward(x)
  m:backward(x, sf.randn(y:size(), sf.rng(1)))
  for _, b in ipairs(before) do
    lu.assertEquals(b[4]:mode(), "eval", b[1])
    lu.assertTrue(b[4].running_mean:equal(b[2]), b[1] .. " running mean moved in eval mode")
    lu.assertTrue(b[4].running_var:equal(b[3]), b[1] .. " running var moved in eval mode")
  end
  -- back to following training(): now the statistics move
  m:set_bn_mode(nil)
  m:forward(x)
  for _, b in ipairs(before) do
    lu.assertEquals(b[4]:mode(), "train", b[1])
    lu.assertFalse(b[4].running_mean:equal(b[2]), b[1] .. " running mean did not move in train mode")
  end
end

function TestModelBNModes:test_modes_independent_of_freezing()
  local m, x = tiny("cnn")
  m:set_trainable(false)
  local before = running(m)
  m:training()
  m:forward(x)
  for _, b in ipairs(before) do
    lu.assertFalse(b[4].running_mean:equal(b[2]), b[1] .. ": freezing must not change the BN mode")
  end
  m:set_bn_mode("batch")
  before = running(m)
  local y1 = m:forward(x):clone()
  for _, b in ipairs(before) do lu.assertTrue(b[4].running_mean:equal(b[2]), b[1] .. " moved in batch mode") end
  m:evaluate()
  lu.assertTrue(m:forward(x):equal(y1), "batch mode under evaluate() still uses batch statistics")
end

os.exit(lu.LuaUnit.run())
