-- Parity with PyTorch: the small CNN, ResNet-8 (basic and pre-activation) and a tiny ViT,
-- BatchNorm in train and eval mode (and a GroupNorm ResNet-8 with label smoothing), built by tests/parity/make_reference.py in PyTorch
-- (float64 from float32 weights); we load the same weights and check logits, loss, every
-- parameter gradient, the running statistics and every named submodule's output:
-- max |ours - ref| / max |ref| < 1e-4 per tensor. Skipped when /usr/bin/python3 cannot
-- import torch (Debian's python3-torch).
local lu = require "luaunit"
local sf = require "surgft"
local cjson = require "cjson"

local PY = "/usr/bin/python3"
local TOL = 1e-4

local here = debug.getinfo(1, "S").source:match("^@(.*)$") or "tests/test_parity.lua"
local script = (here:match("^(.*)/[^/]*$") or ".") .. "/parity/make_reference.py"

local have_torch = os.execute(string.format("'%s' -c 'import torch' >/dev/null 2>&1", PY)) == true
local SKIP = PY .. " cannot import torch: parity with PyTorch skipped (apt-get install python3-torch)"

local tmpdir = os.tmpname()
os.remove(tmpdir)

-- the reference files, generated once by the Python script on first use
local generated, gen_error
local function references()
  if generated == nil then
    assert(os.execute("mkdir -p '" .. tmpdir .. "'"))
    local pipe = assert(io.popen(string.format("'%s' '%s' '%s' 2>&1", PY, script, tmpdir)))
    local text = pipe:read("a")
    generated = pipe:close() == true
    if not generated then gen_error = text end
  end
  lu.assertTrue(generated, "make_reference.py failed:\n" .. tostring(gen_error))
  return tmpdir
end

-- JSON numbers decode as floats; our constructors want integers
local function integers(v)
  if type(v) == "number" then return math.tointeger(v) or v end
  if type(v) == "table" then
    for k, x in pairs(v) do v[k] = integers(x) end
  end
  return v
end

-- compare one tensor; returns the relative error and prints the numbers
local function compare(case, what, ours, ref, quiet)
  lu.assertEquals(ours:size(), ref:size(), case .. " " .. what .. ": shape")
  local diff = (ours:contiguous() - ref):abs():max()
  local scale = ref:abs():max()
  local rel = scale > 0 and diff / scale or diff
  if not quiet or rel >= TOL or rel ~= rel then
    print(string.format("# %-14s %-34s max|diff| %.3e  max|ref| %.3e  rel %.2e%s", case, what, diff, scale, rel,
      (rel < TOL) and "" or "  FAIL"))
  end
  return rel
end

local function run_case(case)
  lu.skipIf(not have_torch, SKIP)
  local ref, meta = sf.load_safetensors(references() .. "/" .. case .. ".safetensors")
  local opts = integers(cjson.decode(meta.options))
  local model = sf.models[meta.model](opts)

  -- weights and running statistics by name, both ways
  local state = model:state()
  for name, t in pairs(state) do
    local w = ref["w." .. name]
    lu.assertNotNil(w, case .. ": the reference has no tensor for our '" .. name .. "'")
    lu.assertEquals(t:size(), w:size(), case .. ": shape of " .. name)
    t:copy(w)
  end
  for key in pairs(ref) do
    local name = key:match("^w%.(.*)$")
    if name then lu.assertNotNil(state[name], case .. ": our model has no '" .. name .. "' (PyTorch has)") end
  end

  if meta.mode == "train" then model:training() else model:evaluate() end
  local x, y = ref.input, ref.target
  local smoothing = tonumber(meta.label_smoothing)
  local running = {}
  for name, t in pairs(state) do if name:find("running_") then running[name] = t:clone() end end
  local logits, loss, d
  local function step()
    logits = model:forward(x)
    loss, d = sf.nn.cross_entropy(logits, y, {label_smoothing = smoothing})
    model:zero_grad()
    model:backward(x, d)
  end
  -- twice: with fused BatchNorm + ReLU (the default), then with fusion off, which keeps
  -- every submodule's output for the comparison below; both must match the reference
  local fused = {}
  step()
  fused.logits = logits:clone()
  for _, rec in ipairs(model:parameters()) do fused[rec.name] = rec.grad:clone() end
  for name, t in pairs(running) do state[name]:copy(t) end -- the first pass updated them
  model:set_fusion(false)
  step()

  local worst, failures = 0, {}
  local function check(what, ours, r, quiet)
    local rel = compare(case, what, ours, r, quiet)
    if not (rel < TOL) then failures[#failures + 1] = string.format("%s (rel %.2e)", what, rel) end
    if rel > worst then worst = rel end
  end

  check("logits (fused)", fused.logits, ref.logits)
  for _, rec in ipairs(model:parameters()) do check("grad (fused) " .. rec.name, fused[rec.name], ref["g." .. rec.name], true) end
  check("logits", logits, ref.logits)
  check("loss", sf.full({}, loss), ref.loss)
  for _, rec in ipairs(model:parameters()) do
    local g = ref["g." .. rec.name]
    lu.assertNotNil(g, case .. ": the reference has no gradient for " .. rec.name)
    check("grad " .. rec.name, rec.grad, g)
  end
  local stats = 0
  for key, r in pairs(ref) do
    local name = key:match("^rs%.(.*)$")
    if name then
      check("stat " .. name, state[name], r, true)
      stats = stats + 1
    end
  end
  local ours_stats = 0
  for name in pairs(state) do if name:find("running_") then ours_stats = ours_stats + 1 end end
  lu.assertEquals(stats, ours_stats, case .. ": running statistics in the reference vs ours")
  -- every named submodule's output, printed only when it differs: the first of these in
  -- forward order is where a mismatch starts
  local modules = {}
  model:visit(function(m, path) modules[path] = m end)
  local acts, act_worst = 0, 0
  for key, r in pairs(ref) do
    local path = key:match("^a%.(.*)$")
    if path then
      local m = modules[path]
      lu.assertNotNil(m, case .. ": we have no submodule '" .. path .. "'")
      local rel = compare(case, "output " .. path, m.output, r, true)
      if not (rel < TOL) then failures[#failures + 1] = string.format("output %s (rel %.2e)", path, rel) end
      act_worst = math.max(act_worst, rel)
      acts = acts + 1
    end
  end
  print(string.format("# %-14s worst rel %.2e over logits, loss, %d gradients; %d running stats, %d outputs "
    .. "(worst %.2e); loss %.6f (label smoothing %g), torch %s", case, worst, #model:parameters(), stats, acts,
    act_worst, loss, smoothing, meta.torch))
  lu.assertEquals(failures, {}, case .. ": tensors differ from PyTorch by more than " .. TOL)
end

TestParity = {}
for _, case in ipairs{"cnn_train", "cnn_eval", "resnet8_train", "resnet8_eval", "preact8_train", "preact8_eval",
                      "resnet8_gn", "vit"} do
  TestParity["test_" .. case] = function() run_case(case) end
end

local rc = lu.LuaUnit.run()
os.execute("rm -rf '" .. tmpdir .. "'")
os.exit(rc)
