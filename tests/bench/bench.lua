-- The side-by-side benchmark: surgft against PyTorch on the CPU, in one run.
--
--   build/surgft-lua tests/bench/bench.lua            # full run (see README.md for its time)
--   build/surgft-lua tests/bench/bench.lua --quick    # smoke run, under a minute
--   options: --repeats=N --threads=1,2 --models=mlp,cnn --no-torch --no-frozen --out=DIR
--
-- Every measurement is a separate process (surgft_worker.lua or torch_worker.py), and the
-- two sides alternate, config by config, over several repeats, so the machine's drift
-- (other load, frequency) hits both alike; rows quote medians over all timed runs.
-- PyTorch runs in its best configuration for the thread count: OMP_WAIT_POLICY=PASSIVE
-- (spinning OpenMP workers lose badly on a loaded two-core machine) and, for the conv
-- nets, whichever of NCHW and channels_last is faster, chosen per row.
-- Results: a table on stdout, runs/bench/results.json and results.md (--quick: quick.*).
local cjson = require "cjson"

-- ---- options ----

local O = {quick = false, repeats = nil, threads = nil, models = nil, torch = true, frozen = true, out = nil}
for _, a in ipairs(arg) do
  local k, v = a:match("^%-%-([%w-]+)=(.*)$")
  if not k then k = a:match("^%-%-([%w-]+)$") end
  if k == "quick" then O.quick = true
  elseif k == "no-torch" then O.torch = false
  elseif k == "no-frozen" then O.frozen = false
  elseif k == "repeats" and math.tointeger(tonumber(v)) then O.repeats = math.tointeger(tonumber(v))
  elseif k == "threads" and v then O.threads = {}; for t in v:gmatch("%d+") do O.threads[#O.threads + 1] = tonumber(t) end
  elseif k == "models" and v then O.models = {}; for m in v:gmatch("[%w_]+") do O.models[#O.models + 1] = m end
  elseif k == "out" and v then O.out = v
  else
    io.stderr:write("bench: unknown argument '" .. a .. "'\n" ..
      "usage: surgft-lua tests/bench/bench.lua [--quick] [--repeats=N] [--threads=1,2] [--models=a,b]" ..
      " [--no-torch] [--no-frozen] [--out=DIR]\n")
    os.exit(2)
  end
end

-- the interpreter running this script runs our workers too
local lua_exe = arg[-1]
do
  local i = -1
  while arg[i - 1] do i = i - 1 end
  lua_exe = arg[i]
end
local here = arg[0]:match("^(.*)/[^/]*$") or "."
local root = here:match("^(.-)/?tests/bench$")
if root == nil then root = here .. "/../.." elseif root == "" then root = "." end
local PYTHON = "/usr/bin/python3" -- Debian's, which sees python3-torch

-- ---- what runs ----

-- Surgical cases select parameters by name prefix; both sides name parameters alike.
-- "first" is the paper's first block (ResNet: stem + the first residual block, as in
-- ../shared/bench/torch_freeze.py); "last" the last residual block (conv nets: the last
-- conv block); "head" the classifier.
local MODELS = {
  {name = "mlp", modes = {"train", "fwd"}, layouts = "nchw"},
  {name = "cnn", modes = {"train", "fwd", "fwd_bntrain", "head", "head_bneval", "first", "last"},
   layouts = "nchw,nhwc",
   select = {head = "head.", head_bneval = "head.", first = "block1.", last = "block3."}},
  {name = "resnet8", modes = {"train", "fwd"}, layouts = "nchw,nhwc"},
  {name = "resnet20", modes = {"train", "fwd", "fwd_bntrain", "head", "head_bneval", "first", "last"},
   layouts = "nchw,nhwc",
   select = {head = "head.", head_bneval = "head.", first = "stem.,block1.0.", last = "block3.2."}},
  {name = "vit", modes = {"train", "fwd"}, layouts = "nchw"},
}
local LABEL = {mlp = "MLP 784-512-512-10", cnn = "small CNN", resnet8 = "ResNet-8", resnet20 = "ResNet-20",
               vit = "tiny ViT"}
local MODE_LABEL = {train = "train step", fwd = "forward", head = "head only", first = "first block only",
                    last = "last block only", all = "all", head_bneval = "head only, BatchNorm eval",
                    fwd_bntrain = "forward, BatchNorm on batch statistics"}

local P -- run parameters
if O.quick then
  P = {repeats = 1, threads = {1}, target = 0.1, samples = 2, max_mode_s = 2,
       models = {mlp = {"train", "fwd"}, cnn = {"train", "fwd", "fwd_bntrain", "head"}},
       frozen = {model = "resnet8", images = 128, epochs = 2, passes = 2}, memory = {model = "cnn", steps = 3}}
else
  P = {repeats = 3, threads = {1, 2}, target = 0.4, samples = 3, max_mode_s = 8, models = {},
       frozen = {model = "resnet20", images = 1000, epochs = 15, passes = 3}, memory = {model = "resnet20", steps = 10}}
  for _, m in ipairs(MODELS) do P.models[m.name] = m.modes end
end
P.repeats = O.repeats or P.repeats
P.threads = O.threads or P.threads
if O.models then
  local sel = {}
  for _, n in ipairs(O.models) do
    for _, m in ipairs(MODELS) do if m.name == n then sel[n] = P.models[n] or m.modes end end
    if not sel[n] then io.stderr:write("bench: unknown model '" .. n .. "'\n"); os.exit(2) end
  end
  P.models = sel
end
P.frozen.threads = math.max(table.unpack(P.threads)) -- the configuration users run sweeps in
P.memory.threads = P.frozen.threads

-- ---- small helpers ----

local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function median(t)
  if #t == 0 then return nil end
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  if n % 2 == 1 then return s[(n + 1) // 2] end
  return (s[n // 2] + s[n // 2 + 1]) / 2
end

local function now_s()
  local p = io.popen("date +%s.%N")
  local s = p:read("l")
  p:close()
  return tonumber(s)
end

local function read_file(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write_atomic(path, text)
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "w"))
  f:write(text)
  f:close()
  assert(os.rename(tmp, path))
end

-- runs a worker; its stderr (progress) goes to ours, stdout is parsed for RESULT
local function run_worker(env, cmd)
  local p = io.popen(env .. " " .. cmd)
  local res, lines = nil, {}
  for line in p:lines() do
    local j = line:match("^RESULT (.*)$")
    if j then res = cjson.decode(j) else lines[#lines + 1] = line end
  end
  local ok, how, code = p:close()
  if not ok or not res then
    return nil, string.format("%s (%s %s)%s", cmd, tostring(how), tostring(code),
      #lines > 0 and (": " .. table.concat(lines, " | ")) or "")
  end
  return res
end

local function worker_args(m, threads, side)
  local a = {"--model=" .. m.name, "--threads=" .. threads, "--batch=128", "--modes=" .. table.concat(P.models[m.name], ","),
             "--target=" .. P.target, "--samples=" .. P.samples, "--max-mode-s=" .. P.max_mode_s}
  for k, v in pairs(m.select or {}) do a[#a + 1] = "--select=" .. k .. "=" .. v end
  if side == "torch" then a[#a + 1] = "--layouts=" .. m.layouts end
  for i, s in ipairs(a) do a[i] = sh_quote(s) end
  return table.concat(a, " ")
end

local function surgft_cmd(m, threads)
  return "SURGFT_THREADS=" .. threads, sh_quote(lua_exe) .. " " .. sh_quote(here .. "/surgft_worker.lua") .. " " ..
    worker_args(m, threads, "surgft")
end

local function torch_cmd(m, threads)
  return "OMP_WAIT_POLICY=PASSIVE", sh_quote(PYTHON) .. " " .. sh_quote(here .. "/torch_worker.py") .. " " ..
    worker_args(m, threads, "torch")
end

-- ---- the machine ----

local function machine()
  local cpu = (read_file("/proc/cpuinfo") or ""):match("model name%s*:%s*([^\n]+)") or "?"
  local p = io.popen("nproc")
  local ncpu = tonumber(p:read("l"))
  p:close()
  local sf = require "surgft"
  -- the kernels' vector ISA and whether the masked 3x3 path is on: the conv numbers of
  -- an AVX-512 build and of an AVX2 one (or with K.conv2d_masked(false)) differ
  return {cpu = cpu, cores = ncpu, surgft = sf.version, blas = sf.blas_config and sf.blas_config() or "?",
          simd = sf.simd, masked_conv = sf.kernels.conv2d_masked(), date = os.date("!%Y-%m-%dT%H:%M:%SZ")}
end

local have_torch = O.torch and os.execute(sh_quote(PYTHON) .. " -c 'import torch' 2>/dev/null") == true
local torch_note
if not O.torch then
  torch_note = "PyTorch side skipped (--no-torch)"
elseif not have_torch then
  torch_note = "python3-torch is not installed (apt-get install python3-torch): surgft side only"
end
if torch_note then io.stderr:write("bench: " .. torch_note .. "\n") end

-- ---- the runs ----

local configs = {}
for _, t in ipairs(P.threads) do
  for _, m in ipairs(MODELS) do if P.models[m.name] then configs[#configs + 1] = {model = m, threads = t} end end
end
local total = #configs * P.repeats * (have_torch and 2 or 1) + (O.frozen and 1 or 0) + (have_torch and 2 or 1)
local raw, failures, done = {}, {}, 0
local t_start = now_s()

local function progress(what)
  done = done + 1
  local el = now_s() - t_start
  local eta = done > 1 and el / (done - 1) * (total - done + 1) or nil
  io.stderr:write(string.format("[%d/%d] %s  (%.0f s elapsed%s)\n", done, total, what, el,
    eta and string.format(", ~%.0f s left", eta) or ""))
end

for r = 1, P.repeats do
  -- alternate which side goes first, and the config order, between repeats
  local order = {}
  for i = 1, #configs do order[i] = r % 2 == 1 and configs[i] or configs[#configs + 1 - i] end
  for _, c in ipairs(order) do
    local sides = {"surgft", "torch"}
    if r % 2 == 0 then sides = {"torch", "surgft"} end
    for _, side in ipairs(sides) do
      if side == "surgft" or have_torch then
        progress(string.format("%s %s t=%d (repeat %d/%d)", side, c.model.name, c.threads, r, P.repeats))
        local env, cmd
        if side == "surgft" then env, cmd = surgft_cmd(c.model, c.threads) else env, cmd = torch_cmd(c.model, c.threads) end
        local res, err = run_worker(env, cmd)
        if res then
          res.requested_threads, res.repeat_index = c.threads, r
          raw[#raw + 1] = res
        else
          failures[#failures + 1] = err
          io.stderr:write("bench: worker failed: " .. err .. "\n")
        end
      end
    end
  end
end

-- peak memory of training steps in fresh processes, one per side
local memruns = {}
do
  local mm = P.memory
  local margs = " --model=" .. mm.model .. " --threads=" .. mm.threads .. " --batch=128 --mem-steps=" .. mm.steps
  local sides = {{"surgft", "SURGFT_THREADS=" .. mm.threads, sh_quote(lua_exe) .. " " .. sh_quote(here .. "/surgft_worker.lua")}}
  if have_torch then
    sides[2] = {"torch", "OMP_WAIT_POLICY=PASSIVE", sh_quote(PYTHON) .. " " .. sh_quote(here .. "/torch_worker.py")}
  end
  for _, sd in ipairs(sides) do
    progress(string.format("%s memory %s t=%d (%d training steps)", sd[1], mm.model, mm.threads, mm.steps))
    local res, err = run_worker(sd[2], sd[3] .. margs)
    if res then memruns[sd[1]] = res else failures[#failures + 1] = err; io.stderr:write("bench: worker failed: " .. err .. "\n") end
  end
end

local frozen
if O.frozen then
  local f = P.frozen
  progress(string.format("surgft frozen-prefix %s t=%d (%d images, %d epochs)", f.model, f.threads, f.images, f.epochs))
  local cmd = sh_quote(lua_exe) .. " " .. sh_quote(here .. "/surgft_worker.lua") .. " --frozen --model=" .. f.model ..
    " --threads=" .. f.threads .. " --images=" .. f.images .. " --epochs=" .. f.epochs .. " --passes=" .. f.passes
  local res, err = run_worker("SURGFT_THREADS=" .. f.threads, cmd)
  if res then frozen = res else failures[#failures + 1] = err; io.stderr:write("bench: worker failed: " .. err .. "\n") end
end
local wall = now_s() - t_start

-- ---- aggregation ----

-- samples[side][model][threads][mode][layout] = {img/s...}; plus per-process peak memory
local samples, mem, flops, macs, util = {}, {}, {}, {}, {}
local function at(t, ...)
  for _, k in ipairs{...} do
    t[k] = t[k] or {}
    t = t[k]
  end
  return t
end
for _, res in ipairs(raw) do
  local t = res.requested_threads
  for i, r in ipairs(res.results) do
    local s = at(samples, res.side, res.model, t, r.mode, r.layout)
    for _, v in ipairs(r.samples) do s[#s + 1] = v end
    local u = at(util, res.side, res.model, t, r.mode, r.layout)
    u[#u + 1] = r.cpu_util
    if r.flops then at(flops, res.model)[r.mode] = r.flops end
    -- peak memory of a training step: the process's high-water mark after its first
    -- mode (train, every parameter trains, default layout)
    if i == 1 and r.mode == "train" then
      local mm = at(mem, res.side, res.model, t)
      mm[#mm + 1] = r.hwm_kb
    end
  end
  at(macs, res.model)[res.side] = res.macs_fwd
  for _, r in ipairs(res.results) do at(macs, res.model, "trainable", r.mode)[res.side] = r.trainable end
end

local rows = {}
for _, t in ipairs(P.threads) do
  for _, m in ipairs(MODELS) do
    for _, mode in ipairs(P.models[m.name] or {}) do
      local ours = samples.surgft and samples.surgft[m.name] and samples.surgft[m.name][t] and
        samples.surgft[m.name][t][mode]
      local theirs = samples.torch and samples.torch[m.name] and samples.torch[m.name][t] and
        samples.torch[m.name][t][mode]
      local row = {model = m.name, threads = t, mode = mode, flops_per_image = flops[m.name] and flops[m.name][mode]}
      if ours and ours.nchw then
        row.surgft_ips = median(ours.nchw)
        row.surgft_runs = #ours.nchw
        row.surgft_range = {math.min(table.unpack(ours.nchw)), math.max(table.unpack(ours.nchw))}
        row.surgft_cpu_util = median(util.surgft[m.name][t][mode].nchw)
      end
      if theirs then
        for lay, s in pairs(theirs) do
          local med = median(s)
          row.torch_by_layout = row.torch_by_layout or {}
          row.torch_by_layout[lay] = med
          if not row.torch_ips or med > row.torch_ips then
            row.torch_ips, row.torch_layout, row.torch_runs = med, lay, #s
            row.torch_range = {math.min(table.unpack(s)), math.max(table.unpack(s))}
            row.torch_cpu_util = median(util.torch[m.name][t][mode][lay])
          end
        end
      end
      if row.flops_per_image then
        if row.surgft_ips then row.surgft_gflops = row.flops_per_image * row.surgft_ips / 1e9 end
        if row.torch_ips then row.torch_gflops = row.flops_per_image * row.torch_ips / 1e9 end
      end
      if row.surgft_ips and row.torch_ips then row.ratio = row.surgft_ips / row.torch_ips end
      rows[#rows + 1] = row
    end
  end
end
-- cost of a step relative to a forward pass, per side (head only should be about 1): the
-- forward in eval mode, and the one with BatchNorm on batch statistics (what a step whose
-- frozen BatchNorm layers are in train mode has to run before its head)
local function is_fwd(mode) return mode == "fwd" or mode == "fwd_bntrain" end
local fwd_of, fwdt_of = {}, {}
for _, r in ipairs(rows) do
  if r.mode == "fwd" then fwd_of[r.model .. "/" .. r.threads] = r end
  if r.mode == "fwd_bntrain" then fwdt_of[r.model .. "/" .. r.threads] = r end
end
for _, r in ipairs(rows) do
  local f, t = fwd_of[r.model .. "/" .. r.threads], fwdt_of[r.model .. "/" .. r.threads]
  if f and not is_fwd(r.mode) then
    if f.surgft_ips and r.surgft_ips then r.surgft_vs_fwd = f.surgft_ips / r.surgft_ips end
    if f.torch_ips and r.torch_ips then r.torch_vs_fwd = f.torch_ips / r.torch_ips end
  end
  if t and not is_fwd(r.mode) and not r.mode:match("_bneval$") then
    if t.surgft_ips and r.surgft_ips then r.surgft_vs_fwdt = t.surgft_ips / r.surgft_ips end
    if t.torch_ips and r.torch_ips then r.torch_vs_fwdt = t.torch_ips / r.torch_ips end
  end
end

local memory = {}
for _, t in ipairs(P.threads) do
  for _, m in ipairs(MODELS) do
    local a = mem.surgft and mem.surgft[m.name] and mem.surgft[m.name][t]
    local b = mem.torch and mem.torch[m.name] and mem.torch[m.name][t]
    if a or b then
      local e = {model = m.name, threads = t, surgft_mb = a and median(a) / 1024, torch_mb = b and median(b) / 1024}
      if e.surgft_mb and e.torch_mb then e.ratio = e.surgft_mb / e.torch_mb end
      memory[#memory + 1] = e
    end
  end
end

local mac_mismatch = {}
for name, m in pairs(macs) do
  if m.surgft and m.torch and m.surgft ~= m.torch then
    mac_mismatch[#mac_mismatch + 1] = string.format("%s: surgft %d, torch %d MAC/image", name, m.surgft, m.torch)
  end
  for mode, n in pairs(m.trainable or {}) do
    if n.surgft and n.torch and n.surgft ~= n.torch then
      mac_mismatch[#mac_mismatch + 1] = string.format("%s %s: surgft trains %d tensors, torch %d", name, mode,
        n.surgft, n.torch)
    end
  end
end

-- ---- report ----

local function num(v, fmt) return v and string.format(fmt or "%.0f", v) or "-" end

local function md_table(head, body)
  local out = {"| " .. table.concat(head, " | ") .. " |", "|" .. string.rep("---|", #head)}
  for _, r in ipairs(body) do out[#out + 1] = "| " .. table.concat(r, " | ") .. " |" end
  return table.concat(out, "\n")
end

local function main_table(filter)
  local body = {}
  for _, r in ipairs(rows) do
    if filter(r) then
      body[#body + 1] = {LABEL[r.model], tostring(r.threads), MODE_LABEL[r.mode] or r.mode, num(r.surgft_ips),
                         num(r.torch_ips), num(r.ratio, "%.2f"), num(r.surgft_gflops, "%.1f"),
                         num(r.torch_gflops, "%.1f"), r.torch_layout or "-"}
    end
  end
  return md_table({"model", "threads", "step", "surgft img/s", "PyTorch img/s", "ratio", "surgft GFLOP/s",
                   "PyTorch GFLOP/s", "PyTorch layout"}, body)
end

local function surgical_table()
  local body = {}
  for _, r in ipairs(rows) do
    local m = P.models[r.model]
    if #m > 2 and not is_fwd(r.mode) then
      body[#body + 1] = {LABEL[r.model], tostring(r.threads), r.mode == "train" and "all" or MODE_LABEL[r.mode],
                         num(r.surgft_ips), num(r.torch_ips), num(r.ratio, "%.2f"), num(r.surgft_vs_fwd, "%.2f"),
                         num(r.torch_vs_fwd, "%.2f"), num(r.surgft_vs_fwdt, "%.2f"), num(r.torch_vs_fwdt, "%.2f")}
    end
  end
  return md_table({"model", "threads", "trains", "surgft img/s", "PyTorch img/s", "ratio",
                   "surgft step / forward", "PyTorch step / forward", "surgft step / forward (batch stats)",
                   "PyTorch step / forward (batch stats)"}, body)
end

local function memory_table()
  local a, b = memruns.surgft, memruns.torch
  local function mb(r, f) return r and num(f(r) / 1024) or "-" end
  local first = function(r) return r.hwm_kb_per_step[1] end
  local last = function(r) return r.hwm_kb_per_step[#r.hwm_kb_per_step] end
  local base = function(r) return r.baseline_kb end
  local m = P.memory
  return md_table({"model", "threads", "steps", "surgft baseline MB", "surgft peak MB after 1 step", "after " .. m.steps,
                   "PyTorch baseline MB", "PyTorch peak MB after 1 step", "after " .. m.steps, "ratio (peaks)"},
    {{LABEL[m.model], tostring(m.threads), tostring(m.steps), mb(a, base), mb(a, first), mb(a, last), mb(b, base),
      mb(b, first), mb(b, last), (a and b) and string.format("%.2f", last(a) / last(b)) or "-"}})
end

local M = machine()
local torch_version
for _, x in ipairs(raw) do torch_version = torch_version or x.torch end
local doc = {}
doc[#doc + 1] = string.format("# surgft vs PyTorch%s\n", O.quick and " (quick smoke run)" or "")
doc[#doc + 1] = string.format("%s, %d cores; surgft %s (%s kernels%s; %s); %s; %s; batch 128; %d repeat(s), " ..
  "interleaved; medians over up to %d timed runs per row; wall time %.0f s.\n", M.cpu, M.cores or 0, M.surgft,
  M.simd or "?", M.masked_conv and ", masked 3x3 convolutions" or "", M.blas,
  have_torch and string.format("PyTorch %s with OMP_WAIT_POLICY=PASSIVE, best of NCHW/channels_last per row",
    torch_version or "?") or torch_note, M.date, P.repeats, P.repeats * P.samples, wall)
-- how much CPU the workers got: at 1 thread a quiet machine gives ~1.0 CPU s per wall s;
-- less means other load shared the cores during the run
do
  local parts = {}
  for _, t in ipairs(P.threads) do
    for _, side in ipairs{"surgft", "torch"} do
      local u = {}
      for _, r in ipairs(rows) do
        local v = r[side .. "_cpu_util"]
        if r.threads == t and v then u[#u + 1] = v end
      end
      if #u > 0 then parts[#parts + 1] = string.format("%s %.2f at %d thread%s", side, median(u), t, t > 1 and "s" or "") end
    end
  end
  if #parts > 0 then
    doc[#doc + 1] = "CPU seconds per wall second over the timed runs (median; ~the thread count on a quiet machine, " ..
      "lower when other load shares the cores): " .. table.concat(parts, ", ") .. ".\n"
  end
end
doc[#doc + 1] = "## Throughput (ratio = surgft / PyTorch img/s)\n"
doc[#doc + 1] = main_table(function(r) return r.mode == "train" or is_fwd(r.mode) end) .. "\n"
local any_surgical = false
for _, r in ipairs(rows) do if r.mode ~= "train" and not is_fwd(r.mode) then any_surgical = true end end
if any_surgical then
  doc[#doc + 1] = "## Surgical steps (BatchNorm in train mode unless the row says eval; step / forward = a forward " ..
    "pass's img/s over the step's, the forward in eval mode, and (batch stats) with BatchNorm on batch statistics as " ..
    "the step's own forward; eval-mode rows have only the first)\n"
  doc[#doc + 1] = surgical_table() .. "\n"
end
doc[#doc + 1] = "## Peak resident memory of training steps at batch 128 (whole process: VmHWM / ru_maxrss; " ..
  "baseline = after building the model and the batch, before the first step)\n"
doc[#doc + 1] = memory_table() .. "\n"
if frozen then
  doc[#doc + 1] = "## Frozen prefix: head-only sf.finetune vs a forward pass\n"
  doc[#doc + 1] = md_table({"model", "threads", "images", "epochs", "finetune s", "one forward pass s", "ratio",
                            "2nd lr of the sweep s", "ratio"},
    {{LABEL[frozen.model], tostring(math.tointeger(frozen.threads)), tostring(math.tointeger(frozen.images)),
      tostring(math.tointeger(frozen.epochs)), num(frozen.finetune_s, "%.2f"), num(frozen.forward_pass_s, "%.2f"),
      num(frozen.ratio, "%.2f"), num(frozen.finetune2_s, "%.2f"), num(frozen.ratio2, "%.2f")}}) ..
    "\n\n(sf.finetune with policy last_layer, bn eval, Adam, batch 64, lr 1e-3 then 1e-2 on the same source model;" ..
    " validation and test sets of one image; the forward pass is model:forward over the same images at batch 64" ..
    " under evaluate(). Target: ratio <= 2 plus the head's own training; without frozen-prefix caching it is" ..
    " about the number of epochs)\n"
end
if #mac_mismatch > 0 then
  doc[#doc + 1] = "**The two sides count different work (the models differ):** " .. table.concat(mac_mismatch, "; ") .. "\n"
end
if #failures > 0 then
  doc[#doc + 1] = "**Failed workers:**\n\n- " .. table.concat(failures, "\n- ") .. "\n"
end
local text = table.concat(doc, "\n")
io.write("\n", text)

local out_dir = O.out or (root .. "/runs/bench")
os.execute("mkdir -p " .. sh_quote(out_dir))
local base = out_dir .. "/" .. (O.quick and "quick" or "results")
local json = {machine = M, quick = O.quick, repeats = P.repeats, threads = P.threads, wall_seconds = wall,
              torch = have_torch, torch_note = torch_note, rows = rows, memory = memruns,
              memory_after_timed_steps = memory, frozen = frozen,
              failures = failures, mac_mismatch = mac_mismatch, raw = raw}
write_atomic(base .. ".json", cjson.encode(json))
write_atomic(base .. ".md", text)
io.write(string.format("\nwrote %s.json and %s.md\n", base, base))
if #failures > 0 or #mac_mismatch > 0 then os.exit(1) end
