-- One surgft benchmark process, started by tests/bench/bench.lua; the twin of
-- torch_worker.py (same arguments, same RESULT line, same timing procedure).
--
--   surgft-lua tests/bench/surgft_worker.lua --model=resnet20 --threads=2 --batch=128 \
--       --modes=train,fwd,head --select=head=head. --target=0.4 --samples=3
--   surgft-lua tests/bench/surgft_worker.lua --frozen --model=resnet20 --threads=2 \
--       --images=1000 --epochs=15
--
-- Modes: train (every parameter trains), fwd (forward only under model:evaluate()),
-- fwd_bntrain (forward only, BatchNorm on batch statistics: a training step's forward), or a
-- name given by --select=NAME=prefix1,prefix2: a training step where only the parameters
-- whose names start with a prefix train (set with sf.policy.apply; BatchNorm stays in
-- train mode, as on the PyTorch side, unless NAME ends in _bneval). A step is zero_grad,
-- forward, cross_entropy, backward, SGD (lr 0.01, momentum 0.9).
--
-- --frozen times sf.finetune with policy last_layer and bn "eval" (head-only fine-tuning)
-- on --images random images for --epochs epochs, against plain forward passes over the
-- same images, so the ratio shows what frozen-prefix caching saves.
local sf = require "surgft"
local cjson = require "cjson"

local function fail(fmt, ...)
  io.stderr:write("surgft_worker: " .. string.format(fmt, ...) .. "\n")
  os.exit(2)
end

local O = {model = nil, threads = 1, batch = 128, modes = "train,fwd", layouts = "nchw", target = 0.4, samples = 3,
           max_mode_s = 10, seed = 0, frozen = false, images = 1000, epochs = 15, passes = 2, mem_steps = 0}
local SELECT = {}
for _, a in ipairs(arg) do
  local k, v = a:match("^%-%-([%w_-]+)=(.*)$")
  if not k then k = a:match("^%-%-([%w_-]+)$"); v = true end
  if not k then fail("bad argument '%s' (expected --key=value)", a) end
  k = k:gsub("-", "_")
  if k == "select" then
    local name, list = tostring(v):match("^([^=]+)=(.*)$")
    if not name then fail("--select needs NAME=prefix,prefix, got '%s'", tostring(v)) end
    local pre = {}
    for p in list:gmatch("[^,]+") do pre[#pre + 1] = p end
    SELECT[name] = pre
  elseif O[k] == nil and k ~= "model" then
    fail("unknown option --%s", k)
  elseif type(O[k]) == "number" then
    O[k] = tonumber(v) or fail("--%s must be a number, got '%s'", k, tostring(v))
  else
    O[k] = v
  end
end
if not O.model then fail("--model is required") end
O.threads, O.batch, O.samples = math.tointeger(O.threads), math.tointeger(O.batch), math.tointeger(O.samples)
O.images, O.epochs = math.tointeger(O.images), math.tointeger(O.epochs)
O.mem_steps = math.tointeger(O.mem_steps)

sf.set_threads(O.threads)

-- Wall-clock seconds. Lua's os.clock is CPU time (summed over threads) and os.time has
-- one-second resolution, so ask date(1) unless the library offers a clock. Most of the
-- spawn latency sits on both ends of an interval and cancels; what does not (reading
-- the answer, reaping the child: ~2 ms) is measured once and subtracted.
local now = sf.clock
if not now then
  local function date_now()
    local p = io.popen("date +%s.%N")
    local s = p:read("l")
    p:close()
    return tonumber(s)
  end
  local d = {}
  for i = 1, 5 do
    local a = date_now()
    d[i] = date_now() - a
  end
  table.sort(d)
  local bias = d[3]
  local calls = 0
  now = function() calls = calls + 1; return date_now() - calls * bias end
end

-- threads of this process, as the kernel counts them
local function os_threads()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return tonumber(s:match("Threads:%s*(%d+)"))
end

-- peak resident set size of this process (kB), as the kernel counts it
local function hwm_kb()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmHWM:%s*(%d+)"))
end

local function build(name, rng)
  if name == "mlp" then return sf.models.mlp{sizes = {784, 512, 512, 10}, rng = rng}, {1, 28, 28} end
  if name == "cnn" then return sf.models.cnn{in_channels = 1, widths = {32, 64, 128}, classes = 10, rng = rng}, {1, 28, 28} end
  if name == "resnet8" then return sf.models.resnet{depth = 8, rng = rng}, {3, 32, 32} end
  if name == "resnet20" then return sf.models.resnet{depth = 20, rng = rng}, {3, 32, 32} end
  if name == "vit" then
    return sf.models.vit{image = 32, patch = 4, dim = 64, depth = 6, heads = 4, mlp_ratio = 2, classes = 10, rng = rng},
      {3, 32, 32}
  end
  fail("unknown model '%s' (valid: cnn, mlp, resnet8, resnet20, vit)", tostring(name))
end

-- Per-image work of the model as computed, in forward order: one entry per convolution,
-- linear layer and attention (q k^T and a v) with its forward multiply-accumulates and
-- whether it has trainable parameters. Needs a forward pass done (output sizes).
local function layer_work(model)
  local entries, pending_attn = {}, nil
  model:visit(function(m)
    local t = m:type()
    local out = m.output
    if t == "Conv2d" or t == "Linear" then
      local per = out:numel() // out:size(1)
      local k = t == "Conv2d" and m.cin * m.k * m.k or m.nin
      entries[#entries + 1] = {macs = per * k, params = true, trains = m:has_trainable()}
      if pending_attn then entries[#entries + 1] = pending_attn; pending_attn = nil end -- after qkv
    elseif t == "MultiheadAttention" then
      local tokens = out:size(2)
      pending_attn = {macs = 2 * tokens * tokens * m.dim, params = false, trains = false}
    end
  end)
  return entries
end

-- FLOPs per image a step needs: the forward, each trainable layer's weight gradient, and
-- the input gradient of every layer above the lowest trainable one (attention: both
-- matmuls' operand gradients, 2x its forward). A full step is then ~3x the forward, less
-- the first layer's unneeded input gradient.
local function step_flops(entries, training)
  local fwd, lowest = 0, nil
  for i, e in ipairs(entries) do
    fwd = fwd + e.macs
    if training and e.trains and not lowest then lowest = i end
  end
  local total = fwd
  if lowest then
    for i, e in ipairs(entries) do
      if e.trains then total = total + e.macs end
      if i > lowest then total = total + (e.params and e.macs or 2 * e.macs) end
    end
  end
  return 2 * total, 2 * fwd
end

local function prefixed(name, prefixes)
  for _, p in ipairs(prefixes) do if name:sub(1, #p) == p then return true end end
  return false
end

-- a closure running one step of `mode`, and the number of trainable tensors
local function make_step(model, x, y, mode)
  if mode == "fwd" then
    model:set_trainable(false)
    model:evaluate()
    return function() model:forward(x) end, 0
  end
  if mode == "fwd_bntrain" then -- BatchNorm on batch statistics, as in a training step's forward
    model:set_trainable(false)
    model:training()
    return function() model:forward(x); model:clear_state() end, 0
  end
  model:training()
  local sel, n = {}, 0
  for _, rec in ipairs(model:parameters()) do
    if mode == "train" or prefixed(rec.name, SELECT[mode] or fail("mode '%s' has no --select", mode)) then
      sel[rec.name] = 1
      n = n + 1
    end
  end
  if n == 0 then fail("mode '%s' selects no parameter of %s", mode, O.model) end
  sf.policy.apply(model, sel)
  -- a mode named *_bneval runs BatchNorm on its running statistics (the paper's protocol;
  -- the frozen prefix then folds), the others keep batch statistics as on the PyTorch side
  if mode:match("_bneval$") then model:evaluate() end
  local opt = sf.optim.sgd(model, {lr = 0.01, momentum = 0.9})
  return function()
    model:zero_grad()
    local _, d = sf.nn.cross_entropy(model:forward(x), y)
    model:backward(x, d, false)
    opt:step()
    model:clear_state() -- as sf.pretrain / sf.finetune do: the step's activations can go
  end, n
end

local function measure(step, batch)
  local t0 = now()
  step()
  local per = now() - t0
  if per < O.target then -- the first step allocates and starts threads: time a second one
    t0 = now()
    step()
    per = now() - t0
  end
  local k = math.max(1, math.floor(O.target / per + 0.5))
  local ips, start, cpu0 = {}, now(), os.clock()
  for i = 1, O.samples do
    t0 = now()
    for _ = 1, k do step() end
    ips[#ips + 1] = k * batch / (now() - t0)
    if i >= 2 and now() - start > O.max_mode_s then break end
  end
  -- CPU seconds per wall second over the timed runs (os.clock sums all threads): about
  -- the thread count when busy, above it when threads oversubscribe
  local util = (os.clock() - cpu0) / (now() - start)
  return ips, k, util
end

local function bench_steps()
  local rng = sf.rng(O.seed)
  local model, shape = build(O.model, rng)
  local x = sf.randn({O.batch, shape[1], shape[2], shape[3]}, rng)
  local y = sf.randint(1, 11, {O.batch}, rng)
  local out = {side = "surgft", model = O.model, threads = sf.threads(), batch = O.batch, version = sf.version,
               results = {}}
  for mode in O.modes:gmatch("[^,]+") do
    local step, ntrain = make_step(model, x, y, mode)
    local t0 = now()
    local ips, k, util = measure(step, O.batch)
    -- the training steps clear their activations, and fused or folded layers keep none:
    -- one forward with every output kept, for layer_work to read their sizes
    model:set_fusion(false)
    model:forward(x)
    local flops, fwd = step_flops(layer_work(model), mode ~= "fwd" and mode ~= "fwd_bntrain")
    model:set_fusion(true)
    model:clear_state()
    out.macs_fwd = fwd // 2
    out.results[#out.results + 1] = {mode = mode, layout = "nchw", samples = ips, steps = k, trainable = ntrain,
                                     cpu_util = util, flops = flops, hwm_kb = hwm_kb()}
    local parts = {}
    for i, v in ipairs(ips) do parts[i] = string.format("%.0f", v) end
    io.stderr:write(string.format("  surgft %s t=%d %s: %s img/s (%.1f s)\n", O.model, O.threads, mode,
      table.concat(parts, " "), now() - t0))
  end
  out.hwm_kb = hwm_kb()
  out.os_threads = os_threads()
  return out
end

-- --mem-steps=N: peak resident memory over N full training steps in a fresh process
-- (no timing), with the high-water mark and the live tensor bytes after each step
local function bench_memory()
  local rng = sf.rng(O.seed)
  local model, shape = build(O.model, rng)
  local x = sf.randn({O.batch, shape[1], shape[2], shape[3]}, rng)
  local y = sf.randint(1, 11, {O.batch}, rng)
  local base = hwm_kb()
  local step = make_step(model, x, y, "train")
  local per, live = {}, {}
  for i = 1, O.mem_steps do
    step()
    per[i], live[i] = hwm_kb(), sf.memory() // 1024
  end
  io.stderr:write(string.format("  surgft memory %s t=%d: baseline %d MB, peak after each step %s MB\n", O.model,
    O.threads, base // 1024, table.concat((function()
      local t = {}
      for i, v in ipairs(per) do t[i] = tostring(v // 1024) end
      return t
    end)(), " ")))
  return {side = "surgft", memory = true, model = O.model, threads = sf.threads(), batch = O.batch, steps = O.mem_steps,
          baseline_kb = base, hwm_kb_per_step = per, live_tensor_kb_per_step = live, hwm_kb = hwm_kb()}
end

-- head-only sf.finetune against plain forward passes over the same images
local function bench_frozen()
  local rng = sf.rng(O.seed)
  local model, shape = build(O.model, rng)
  local n = O.images
  local ds = sf.data.dataset{x = sf.randn({n, shape[1], shape[2], shape[3]}, rng), y = sf.randint(1, 11, {n}, rng),
                             name = "bench"}
  -- validation and test sets of one image: sf.finetune evaluates both after every epoch,
  -- which should not count as fine-tuning work (2 * epochs images forward, < 3% here)
  local tiny = sf.data.dataset{x = sf.randn({1, shape[1], shape[2], shape[3]}, rng), y = sf.tensor{1}, name = "one"}
  local batch = 64 -- sf.finetune's default batch
  local function forward_pass()
    local loader = sf.data.loader(ds, {batch = batch, shuffle = false})
    model:evaluate()
    local t0 = now()
    for xb in loader do model:forward(xb) end
    return now() - t0
  end
  local passes = {}
  forward_pass() -- warm-up: scratch buffers, page faults
  passes[#passes + 1] = forward_pass()
  -- a two-point learning-rate sweep on the same source model and data: the first run
  -- pays for the frozen prefix (when it is cached), the second may reuse it
  local runs, r = {}, nil
  for i, lr in ipairs{1e-3, 1e-2} do
    local t0 = now()
    r = sf.finetune{model = model, data = {train = ds, val = tiny, test = tiny}, policy = sf.policy.last_layer(),
                    bn = "eval", epochs = O.epochs, batch = batch, seed = O.seed, lr = lr}
    runs[i] = now() - t0
  end
  for _ = 2, O.passes do passes[#passes + 1] = forward_pass() end
  table.sort(passes)
  local fwd = passes[(#passes + 1) // 2]
  if #passes % 2 == 0 then fwd = (passes[#passes // 2] + passes[#passes // 2 + 1]) / 2 end
  io.stderr:write(string.format("  surgft frozen %s t=%d: finetune %.2f s (sweep's 2nd lr %.2f s), forward pass " ..
    "%.2f s (ratio %.2f)\n", O.model, O.threads, runs[1], runs[2], fwd, runs[1] / fwd))
  return {side = "surgft", frozen = true, model = O.model, threads = sf.threads(), images = n, epochs = O.epochs,
          batch = batch, finetune_s = runs[1], finetune2_s = runs[2], forward_pass_s = fwd, forward_passes = passes,
          ratio = runs[1] / fwd, ratio2 = runs[2] / fwd,
          trainable = r.epochs[#r.epochs] and r.epochs[#r.epochs].trainable, hwm_kb = hwm_kb()}
end

local res
if O.frozen then res = bench_frozen() elseif O.mem_steps > 0 then res = bench_memory() else res = bench_steps() end
io.write("RESULT ", cjson.encode(res), "\n")
