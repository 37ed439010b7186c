-- The model zoo. Every model is a Sequential whose top-level children are its blocks,
-- in order, so parameter names start with the block (block1.0.conv1.weight) and
-- model:blocks() lists them:
--   mlp:        fc1, fc2, ..., head
--   cnn:        block1, block2, block3, head
--   resnet:     stem, block1, block2, block3, head   (the paper's "Block 1" is stem +
--               block1: a policy's choice, see sf.policy)
--   vit:        embed, block1 .. blockN, head
--   two_layer:  first, last                           (f(x) = v^T phi(B x))
local sf = require "surgft.core"
local nn = require "surgft.nn"

local models = {}

local function opt(o, k, default)
  if o[k] == nil then return default end
  return o[k]
end

-- a builder's options table (absent = {}), checked to hold only these keys and rng
local function options(fn, o, keys)
  o = o or {}
  local allowed = {rng = true}
  for _, k in ipairs(keys) do allowed[k] = true end
  -- level 4: the caller of the builder that called options
  require("surgft.util").check_options("models." .. fn, o, allowed, 4)
  return o
end

-- o[k], one of two names (absent = the first); anything else is the caller's error
local function choice(fn, o, k, a, b)
  local v = opt(o, k, a)
  if v ~= a and v ~= b then
    error(string.format("models.%s: %s must be '%s' or '%s', got '%s'", fn, k, a, b, tostring(v)), 3)
  end
  return v
end

-- global average pooling and the linear classifier, added to a head Sequential
local function pool_classifier(head, cin, o)
  head:add("pool", nn.GlobalAvgPool())
  head:add("fc", nn.Linear(cin, opt(o, "classes", 10), {rng = o.rng}))
  return head
end

-- mlp{sizes = {784, 512, 512, 10}, rng = r}: Flatten, then Linear + ReLU pairs, then the head
function models.mlp(o)
  o = options("mlp", o, {"sizes"})
  local sizes = opt(o, "sizes", {784, 512, 512, 10})
  if #sizes < 2 then error("models.mlp: sizes needs at least an input and an output size", 2) end
  local m = nn.Sequential()
  m:add("flatten", nn.Flatten())
  for i = 1, #sizes - 2 do
    m:add("fc" .. i, nn.Linear(sizes[i], sizes[i + 1], {rng = o.rng}))
    m:add("act" .. i, nn.ReLU())
  end
  m:add("head", nn.Linear(sizes[#sizes - 1], sizes[#sizes], {rng = o.rng}))
  m.kind = "mlp"
  return m:build()
end

-- cnn{in_channels = 1, widths = {32, 64, 128}, classes = 10, rng}: three conv-BN-ReLU
-- blocks (the 2nd and 3rd with stride 2), global average pooling and a linear head
function models.cnn(o)
  o = options("cnn", o, {"in_channels", "widths", "classes"})
  local cin = opt(o, "in_channels", 1)
  local widths = opt(o, "widths", {32, 64, 128})
  local m = nn.Sequential()
  for i, w in ipairs(widths) do
    local b = nn.Sequential()
    b:add("conv", nn.Conv2d(cin, w, 3, {stride = i == 1 and 1 or 2, padding = 1, bias = false, rng = o.rng}))
    b:add("bn", nn.BatchNorm2d(w))
    b:add("relu", nn.ReLU())
    m:add("block" .. i, b)
    cin = w
  end
  m:add("head", pool_classifier(nn.Sequential(), cin, o))
  m.kind = "cnn"
  return m:build()
end

-- resnet{depth = 8 | 20 | 26 | 6n+2, widths = {16, 32, 64}, classes = 10, in_channels = 3,
--        block = "basic" | "preact", norm = "bn" | "gn", gn_groups = 8, rng}
function models.resnet(o)
  o = options("resnet", o, {"depth", "widths", "classes", "in_channels", "block", "norm", "gn_groups"})
  local depth = opt(o, "depth", 20)
  if math.type(depth) ~= "integer" or depth < 8 or (depth - 2) % 6 ~= 0 then
    error(string.format("models.resnet: depth must be 6n+2 (8, 14, 20, 26, ...), got %s", tostring(depth)), 2)
  end
  local n = (depth - 2) // 6
  local widths = opt(o, "widths", {16, 32, 64})
  local kind = choice("resnet", o, "block", "basic", "preact")
  local norm = choice("resnet", o, "norm", "bn", "gn")
  local bopts = {norm = norm, gn_groups = o.gn_groups, rng = o.rng}
  local Block = kind == "basic" and nn.BasicBlock or nn.PreActBlock
  local m = nn.Sequential()
  local stem = nn.Sequential()
  stem:add("conv", nn.Conv2d(opt(o, "in_channels", 3), widths[1], 3, {padding = 1, bias = false, rng = o.rng}))
  if kind == "basic" then
    stem:add("bn", nn.norm_layer(norm, widths[1], bopts))
    stem:add("relu", nn.ReLU())
  end
  m:add("stem", stem)
  local cin = widths[1]
  for s, w in ipairs(widths) do
    local stage = nn.Sequential()
    for i = 1, n do
      stage:add(tostring(i - 1), Block(cin, w, (i == 1 and s > 1) and 2 or 1, bopts))
      cin = w
    end
    m:add("block" .. s, stage)
  end
  local head = nn.Sequential()
  if kind == "preact" then
    head:add("bn", nn.norm_layer(norm, cin, bopts))
    head:add("relu", nn.ReLU())
  end
  m:add("head", pool_classifier(head, cin, o))
  m.kind = "resnet"
  return m:build()
end

-- vit{image = 32, patch = 4, channels = 3, dim = 64, depth = 6, heads = 4, mlp_ratio = 2,
--     classes = 2, rng}: patch embedding + class token + positions, pre-LN blocks, then
--     a final LayerNorm on the class token and a linear head
function models.vit(o)
  o = options("vit", o, {"image", "patch", "channels", "dim", "depth", "heads", "mlp_ratio", "classes"})
  local image, patch = opt(o, "image", 32), opt(o, "patch", 4)
  local dim, depth = opt(o, "dim", 64), opt(o, "depth", 6)
  local m = nn.Sequential()
  local embed = nn.Sequential()
  local pe = nn.PatchEmbed(image, patch, opt(o, "channels", 3), dim, {rng = o.rng})
  embed:add("patch", pe)
  embed:add("tokens", nn.Tokens(pe.tokens, dim, {rng = o.rng}))
  m:add("embed", embed)
  for i = 1, depth do
    m:add("block" .. i, nn.TransformerBlock(dim, opt(o, "heads", 4), {mlp_ratio = opt(o, "mlp_ratio", 2), rng = o.rng}))
  end
  local head = nn.Sequential()
  head:add("norm", nn.LayerNorm(dim))
  head:add("cls", nn.SelectToken(1))
  head:add("fc", nn.Linear(dim, opt(o, "classes", 2), {rng = o.rng}))
  m:add("head", head)
  m.kind = "vit"
  return m:build()
end

-- two_layer{d, k, phi = "linear" | "relu", out = 1, rng}: f(x) = v^T phi(B x) with
-- B = first.weight [k,d] and v = last.weight [out,k], no biases (the paper's theory model)
function models.two_layer(o)
  o = options("two_layer", o, {"d", "k", "phi", "out"})
  local d, k = o.d, o.k
  if math.type(d) ~= "integer" or math.type(k) ~= "integer" or d < 1 or k < 1 then
    error(string.format("models.two_layer: d and k must be positive integers, got d = %s, k = %s", tostring(d),
      tostring(k)), 2)
  end
  local phi = choice("two_layer", o, "phi", "linear", "relu")
  local m = nn.Sequential()
  m:add("first", nn.Linear(d, k, {bias = false, rng = o.rng}))
  if phi == "relu" then m:add("phi", nn.ReLU()) end
  m:add("last", nn.Linear(k, opt(o, "out", 1), {bias = false, rng = o.rng}))
  m.kind = "two_layer"
  return m:build()
end

return models
