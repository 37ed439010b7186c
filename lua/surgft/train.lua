-- Training: evaluation, source pre-training with an on-disk cache, and the paper's
-- fine-tuning protocol with a selection policy.
--
--   local src = sf.pretrain{arch = {"vit", {image = 32, ...}}, data = source, epochs = 10}
--   local r = sf.finetune{model = src, data = target, policy = sf.policy.first(1), lr = 1e-3}
--   r.best --> {epoch =, val =, test =}; r.epochs --> per-epoch {epoch, loss, val, test}
local sf = require "surgft.core"
local nn = require "surgft.nn"
local models = require "surgft.models"
local optim = require "surgft.optim"
local P = require "surgft.policy"
local checkpoint = require "surgft.checkpoint"

local T = {}

-- bump when training semantics change, so cached source models are not reused
T.CACHE_VERSION = 1

local function data() return require "surgft.data" end

local function fail(fn, fmt, ...) error(fn .. ": " .. string.format(fmt, ...), 3) end

local function check_options(fn, o, allowed) require("surgft.util").check_options(fn, o, allowed, 4) end

local function is_dataset(ds) return type(ds) == "table" and ds.tensors ~= nil and ds.size ~= nil end

-- ---- paths ----

-- the repository root (the directory holding lua/): caches and runs live under it
function T.root_dir()
  local path = package.searchpath("surgft.train", package.path)
  local root = path and path:match("^(.*)/lua/surgft/train%.lua$")
  -- build/../lua -> lua: paths in messages and results stay readable
  if root then
    local prev
    repeat prev = root; root = root:gsub("/[^/]+/%.%./", "/", 1) until root == prev
    root = root:gsub("/[^/]+/%.%.$", "")
  end
  return root or "."
end

-- ---- evaluation ----

-- Explicit "train" BatchNorm modes become "eval" while evaluating (running statistics,
-- no updates); "batch" and "tent" stay (test-time adaptation uses batch statistics).
local function with_eval_modes(model, fn)
  local saved = {}
  model:visit(function(m)
    if m.set_mode and m._mode == "train" then saved[#saved + 1] = m; m._mode = "eval" end
  end)
  local was = model:is_training()
  model:evaluate()
  local ok, a, b = pcall(fn)
  for _, m in ipairs(saved) do m._mode = "train" end
  if was then model:training() end
  if not ok then error(a, 0) end
  return a, b
end

-- evaluate(model, ds[, {batch = 256, standardize}]) -> accuracy in [0, 1], predictions
-- (a Lua array of 1-based classes)
-- (o.forward = fn(x) -> logits replaces model:forward, e.g. on cached features)
function T.evaluate(model, ds, o)
  o = o or {}
  if not is_dataset(ds) then fail("evaluate", "argument #2 must be a dataset, got %s", type(ds)) end
  local loader = data().loader(ds, {batch = o.batch or 256, shuffle = false, standardize = o.standardize})
  local forward = o.forward or function(x) return model:forward(x) end
  return with_eval_modes(model, function()
    local correct, n, pred = 0, 0, {}
    for x, y in loader do
      local logits = forward(x)
      local _, idx = logits:max(2)
      local p, t = idx:totable(), y:totable()
      for i = 1, #p do
        n = n + 1
        pred[n] = p[i]
        if p[i] == t[i] then correct = correct + 1 end
      end
    end
    return n > 0 and correct / n or 0 / 0, pred
  end)
end

-- ---- hashing for cache keys ----

-- a canonical text of a plain value (sorted keys), for hashing
local function canon(v)
  local t = type(v)
  if t == "table" then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = tostring(k) .. "=" .. canon(v[k]) end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif t == "number" then
    return string.format("%.17g", v)
  end
  return tostring(v)
end
T.canon = canon

-- FNV-1a, 64-bit, as 16 hex digits
function T.hash(s)
  local h = -3750763034362895579 -- 0xcbf29ce484222325
  for i = 1, #s do
    h = h ~ s:byte(i)
    h = h * 1099511628211
  end
  return string.format("%016x", h)
end

-- a fingerprint of a dataset's contents (cheap: sizes, sums and norms)
function T.fingerprint(ds)
  local x, y = ds:tensors()
  return canon{name = ds.name, n = ds:size(), shape = x:size(), xs = string.format("%.6e", x:sum()),
               xn = string.format("%.6e", x:norm()), ys = y:sum(), y2 = (y * y):sum()}
end

-- ---- pre-training ----

local PRETRAIN_OPTS = {arch = false, data = false, epochs = false, optim = false, lr = false, momentum = false,
                       weight_decay = false, schedule = false, batch = false, augment = false, standardize = false,
                       seed = false, cache = false, name = false, verbose = false, label_smoothing = false}

local function build_arch(fn, arch, rng)
  if type(arch) ~= "table" or type(arch[1]) ~= "string" or not models[arch[1]] then
    fail(fn, "arch must be {\"<model>\", {options}} with a model from sf.models (mlp, cnn, resnet, vit, two_layer)")
  end
  local cfg = {}
  for k, v in pairs(arch[2] or {}) do cfg[k] = v end
  cfg.rng = rng
  return models[arch[1]](cfg)
end

-- a learning rate at step s of S: constant, cosine (to 0) or step (x0.1 at 50% and 75%)
local function lr_at(schedule, lr, s, S)
  if schedule == "cosine" then return lr * 0.5 * (1 + math.cos(math.pi * (s - 1) / S)) end
  if schedule == "step" then
    if s > 0.75 * S then return lr * 0.01 elseif s > 0.5 * S then return lr * 0.1 end
  end
  return lr
end

-- pretrain{arch = {"vit", {...}}, data = {train = ds, val = ds}, epochs = 10, optim = "sgd" | "adam",
--          lr = 0.05, momentum = 0.9, weight_decay = 5e-4, schedule = "cosine" | "step" | "none",
--          batch = 128, augment = {crop = 4, flip = true}, standardize, seed = 0, cache = true,
--          name = "source", verbose = true}
-- -> model (BatchNorm in train mode while training; left in evaluate()), info
-- The result is cached under data/cache/pretrained/, keyed by the whole configuration, the
-- training data's fingerprint and the code's cache version; the next call loads it.
function T.pretrain(o)
  check_options("pretrain", o, PRETRAIN_OPTS)
  if type(o.data) ~= "table" or not is_dataset(o.data.train) then
    fail("pretrain", "data must be {train = dataset, val = dataset}")
  end
  local cfg = {arch = o.arch, epochs = o.epochs or 10, optim = o.optim or "sgd", lr = o.lr or 0.05,
               momentum = o.momentum or 0.9, weight_decay = o.weight_decay or 5e-4, schedule = o.schedule or "cosine",
               batch = o.batch or 128, augment = o.augment, standardize = o.standardize, seed = o.seed or 0,
               label_smoothing = o.label_smoothing or 0}
  if cfg.optim ~= "sgd" and cfg.optim ~= "adam" then fail("pretrain", "optim must be 'sgd' or 'adam', got '%s'", tostring(cfg.optim)) end
  local verbose = o.verbose ~= false
  if verbose then io.stdout:setvbuf("line") end
  local key = canon{cfg = cfg, train = T.fingerprint(o.data.train), version = T.CACHE_VERSION, sf = sf.version}
  local name = (o.name or "source"):gsub("[^%w_%-]", "_")
  local dir = T.root_dir() .. "/data/cache/pretrained"
  local path = string.format("%s/%s-%s.safetensors", dir, name, T.hash(key))
  local rng = sf.rng(cfg.seed)
  local model = build_arch("pretrain", cfg.arch, rng)
  local info = {path = path, cached = false, config = cfg}
  if o.cache ~= false then
    local f = io.open(path, "rb")
    if f then
      f:close()
      local t0 = os.clock()
      checkpoint.load(path, {model = model})
      model:evaluate()
      info.cached, info.load_seconds = true, os.clock() - t0
      if verbose then print(string.format("pretrain: loaded the cached source model %s", path)) end
      if o.data.val then info.val = T.evaluate(model, o.data.val, {standardize = cfg.standardize}) end
      return model, info
    end
  end
  model:training()
  model:set_trainable(true)
  local opt = cfg.optim == "sgd"
    and optim.sgd(model, {lr = cfg.lr, momentum = cfg.momentum, weight_decay = cfg.weight_decay})
    or optim.adam(model, {lr = cfg.lr, weight_decay = cfg.weight_decay})
  local loader = data().loader(o.data.train, {batch = cfg.batch, shuffle = true, drop_last = true, rng = rng,
                                              augment = cfg.augment, standardize = cfg.standardize})
  local S, s = cfg.epochs * #loader, 0
  local t0 = os.time()
  local clock0 = os.clock()
  for epoch = 1, cfg.epochs do
    local total, nb = 0, 0
    for x, y in loader do
      s = s + 1
      opt.opts.lr = lr_at(cfg.schedule, cfg.lr, s, S)
      model:zero_grad()
      local loss, d = nn.cross_entropy(model:forward(x), y, {label_smoothing = cfg.label_smoothing})
      model:backward(x, d, false)
      opt:step()
      model:clear_state()
      total, nb = total + loss, nb + 1
    end
    info.train_loss = total / math.max(nb, 1)
    if verbose then
      local val = o.data.val and T.evaluate(model, o.data.val, {standardize = cfg.standardize})
      print(string.format("pretrain %s epoch %d/%d: loss %.4f%s (%.0f s)", name, epoch, cfg.epochs, info.train_loss,
        val and string.format(", source val acc %.2f%%", 100 * val) or "", os.time() - t0))
    end
  end
  info.seconds = os.clock() - clock0
  model:evaluate()
  if o.data.val then info.val = T.evaluate(model, o.data.val, {standardize = cfg.standardize}) end
  if o.cache ~= false then
    os.execute(string.format("mkdir -p '%s'", dir))
    checkpoint.save(path, {model = model, config = {key = key, val = info.val}})
    if verbose then print("pretrain: cached the source model as " .. path) end
  end
  return model, info
end

-- ---- the frozen-prefix cache ----
--
-- When every top-level block below the lowest trainable one is frozen and deterministic
-- (BatchNorm in explicit eval mode, no active dropout), and the selection does not change
-- during training (a static policy), the prefix's outputs are the same for every epoch
-- and every learning rate of a sweep: they are computed once per data set and reused, and
-- training runs the remaining blocks only. The cache lives beside the source model (weak
-- keys: it goes when the data set or the model goes) and is bounded by
-- SURGFT_PREFIX_CACHE_MB (default 2048); beyond it, fine-tuning runs the whole model.

local prefix_cache = setmetatable({}, {__mode = "k"}) -- source model -> ds -> key -> features

function T.prefix_cache_limit()
  return (tonumber(os.getenv("SURGFT_PREFIX_CACHE_MB")) or 2048) * 1024 * 1024
end

-- the index of the first top-level child that must run (lowest with a trainable
-- parameter), or nil when the prefix cannot be cached
local function cacheable_prefix(model)
  if model:type() ~= "Sequential" then return nil end
  local children = model._children
  local k
  for i, c in ipairs(children) do
    if c.module:has_trainable() then k = i break end
  end
  if not k or k == 1 then return nil end
  for i = 1, k - 1 do
    local ok = true
    children[i].module:visit(function(m)
      if m.set_mode and m:mode() ~= "eval" then ok = false end
      if m:type() == "Dropout" and m.p > 0 then ok = false end
    end)
    if not ok then return nil end
  end
  return k
end
T.cacheable_prefix = cacheable_prefix

local function run_prefix(model, k, x)
  for i = 1, k - 1 do x = model:call_child(i, "forward", x) end
  return x
end

-- features of ds through children 1..k-1 as a dataset ([N,1,numel] images), or nil when
-- over the memory limit; in batches of `batch` (the fine-tuning batch: each batch's
-- activations are fresh memory the first time, and on a machine slow to zero pages a
-- ResNet-20 prefix at batch 256 cost ~0.5 s more than at 64 over 1,000 images)
local function prefix_features(source, model, k, ds, std, batch)
  local by_ds = prefix_cache[source] or setmetatable({}, {__mode = "k"})
  prefix_cache[source] = by_ds
  local by_key = by_ds[ds] or {}
  by_ds[ds] = by_key
  local key = k .. ":" .. canon(std or {})
  if by_key[key] then return by_key[key] end
  local loader = data().loader(ds, {batch = batch, shuffle = false, standardize = std})
  local feats, shape, row
  with_eval_modes(model, function()
    local pos = 0
    for x in loader do
      local f = run_prefix(model, k, x)
      if not feats then
        shape = f:size()
        row = f:numel() // f:size(1)
        if 4 * row * ds:size() > T.prefix_cache_limit() then return end
        feats = sf.empty(ds:size(), 1, 1, row)
      end
      feats:narrow(1, pos + 1, f:size(1)):copy(f)
      pos = pos + f:size(1)
    end
  end)
  if not feats then return nil end
  table.remove(shape, 1)
  local fds = data().dataset{x = feats, y = ds:labels(), classes = ds.classes,
                             meta = ds.meta, name = (ds.name or "data") .. ":prefix" .. k}
  by_key[key] = {ds = fds, shape = shape}
  return by_key[key]
end

local function suffix_forward(model, k, shape, x)
  local b = x:size(1)
  local s = {b}
  for _, d in ipairs(shape) do s[#s + 1] = d end
  x = x:view(s)
  model._s_suffix_input = x
  for i = k, #model._children do x = model:call_child(i, "forward", x) end
  return x
end

local function suffix_backward(model, k, g)
  local steps = {}
  for i = k, #model._children do
    steps[#steps + 1] = {model._children[i].name, i == k and model._s_suffix_input or model._children[i - 1].module.output}
  end
  model:chain_backward(steps, g, false)
end

-- ---- fine-tuning ----

local FINETUNE_OPTS = {model = false, data = false, policy = false, optim = false, lr = false, weight_decay = false,
                       epochs = false, batch = false, bn = false, seed = false, every = false, stat_batches = false,
                       on_change = false, standardize = false, inplace = false, dry_run = false, verbose = false,
                       label_smoothing = false, momentum = false, eval_batch = false, prefix_cache = false,
                       test = false}

local function check_target(fn, d)
  if type(d) ~= "table" then fail(fn, "data must be {train = ds, val = ds, test = ds}, got %s", type(d)) end
  for _, k in ipairs{"train", "val", "test"} do
    if not is_dataset(d[k]) then fail(fn, "data.%s must be a dataset (got %s)", k, type(d[k])) end
  end
end

-- finetune{model = source, data = {train, val, test}, policy = sf.policy.all(), optim = "adam",
--          lr = 1e-3, weight_decay = 1e-4, epochs = 15, batch = 64, bn = "eval", seed = 0,
--          every = nil (steps between re-selections; nil = each epoch), stat_batches = 5,
--          on_change = "keep", standardize, inplace = false, dry_run = false,
--          test = "every" | "best"}
-- test = "best" evaluates the test set only at epochs whose validation accuracy beats every
-- earlier one (the only epochs selection can pick): the same selected result, fewer passes;
-- the other epochs then carry no test accuracy.
-- The paper's protocol: Adam with coupled L2 weight decay, BatchNorm in eval mode, no
-- augmentation; validation and test accuracy after every epoch. The source model is
-- cloned unless inplace. Returns {epochs = {{epoch, loss, val, test, trainable}},
-- best = {epoch, val, test} (best validation, ties: first), model, report}.
function T.finetune(o)
  check_options("finetune", o, FINETUNE_OPTS)
  if type(o.model) ~= "table" or not o.model.parameters then fail("finetune", "model must be a model") end
  check_target("finetune", o.data)
  local policy = P.wrap(o.policy or P.all())
  local cfg = {optim = o.optim or "adam", lr = o.lr or 1e-3, weight_decay = o.weight_decay or 1e-4,
               epochs = o.epochs or 15, batch = o.batch or 64, bn = o.bn or "eval", seed = o.seed or 0}
  if cfg.optim ~= "adam" and cfg.optim ~= "sgd" and cfg.optim ~= "adamw" then
    fail("finetune", "optim must be 'adam', 'adamw' or 'sgd', got '%s'", tostring(cfg.optim))
  end
  local model = o.inplace and o.model or o.model:clone()
  if cfg.bn ~= "follow" then model:set_bn_mode(cfg.bn) end
  local rng = sf.rng(cfg.seed)
  local std = o.standardize
  local loader = data().loader(o.data.train, {batch = cfg.batch, shuffle = true, rng = rng, standardize = std})
  local stat_loader = data().loader(o.data.train, {batch = cfg.batch, shuffle = false, standardize = std})
  local loss_fn = function(logits, y) return nn.cross_entropy(logits, y, {label_smoothing = o.label_smoothing}) end
  local opt = optim[cfg.optim](model, {lr = cfg.lr, weight_decay = cfg.weight_decay, on_change = o.on_change,
                                       momentum = cfg.optim == "sgd" and (o.momentum or 0.9) or nil})
  local steps = 0
  local function select(epoch)
    local ctx = P.context{model = model, epoch = epoch, step = steps, stat_batches = o.stat_batches,
                          batches = function() return stat_loader:epoch() end, loss = loss_fn}
    local sel = policy.select(ctx)
    P.apply(model, sel, policy.empty)
    if policy.fresh_optimizer then opt:reset() end
  end
  local result = {epochs = {}, policy = policy.name, config = cfg, model = model}
  -- a test set with group labels (meta.group) also gets its worst-group accuracy
  local groups = o.data.test.meta and o.data.test.meta.group
  local forward, eval_data, eval_std -- set below, once the selection is known
  if o.test ~= nil and o.test ~= "every" and o.test ~= "best" then
    fail("finetune", "test must be 'every' or 'best', got '%s'", tostring(o.test))
  end
  local best_val = -1
  local function record(epoch, loss)
    local eo = {standardize = eval_std, batch = o.eval_batch, forward = forward}
    local val = T.evaluate(model, eval_data.val, eo)
    local test, pred, worst
    if o.test ~= "best" or val > best_val then
      test, pred = T.evaluate(model, eval_data.test, eo)
      worst = groups and data().suites.group_accuracy(pred, o.data.test) or nil
    end
    best_val = math.max(best_val, val)
    local ntrain = 0
    for _, rec in ipairs(model:parameters()) do if rec.trainable then ntrain = ntrain + 1 end end
    local e = {epoch = epoch, loss = loss, val = val, test = test, worst_group = worst, trainable = ntrain}
    result.epochs[#result.epochs + 1] = e
    if o.verbose then
      print(string.format("  epoch %2d: loss %s, val %.2f%%, test %s, %d tensors train", epoch,
        loss and string.format("%.4f", loss) or "-", 100 * val, test and string.format("%.2f%%", 100 * test) or "-",
        ntrain))
    end
    return e
  end
  select(0)
  -- the frozen prefix: cached features and a suffix-only forward when possible
  local k = o.prefix_cache ~= false and policy.static and not policy.empty and cacheable_prefix(model)
  local feats
  if k then
    feats = {}
    for _, split in ipairs{"train", "val", "test"} do
      feats[split] = prefix_features(o.model, model, k, o.data[split], std, cfg.batch)
      if not feats[split] then feats, k = nil, nil break end
    end
  end
  result.prefix = k and k - 1 or 0
  forward = function(x) return model:forward(x) end
  local backward = function(x, d) model:backward(x, d, false) end
  eval_data, eval_std = o.data, std
  if k then
    forward = function(x) return suffix_forward(model, k, feats.train.shape, x) end
    backward = function(_, d) suffix_backward(model, k, d) end
    loader = data().loader(feats.train.ds, {batch = cfg.batch, shuffle = true, rng = rng})
    eval_data, eval_std = {val = feats.val.ds, test = feats.test.ds}, nil
  end
  result.report = P.report(model, string.format("what trains (policy %s, epoch 0):", policy.name))
  if o.dry_run then
    print(result.report)
    return result
  end
  if policy.empty then
    local e = record(0, nil)
    result.best = {epoch = 0, val = e.val, test = e.test, worst_group = e.worst_group}
    return result
  end
  for epoch = 1, cfg.epochs do
    if epoch > 1 then select(epoch) end
    model:training()
    local total, nb = 0, 0
    for x, y in loader do
      steps = steps + 1
      if o.every and steps > 1 and (steps - 1) % o.every == 0 then select(epoch) end
      model:zero_grad()
      local loss, d = loss_fn(forward(x), y)
      backward(x, d)
      opt:step()
      model:clear_state()
      total, nb = total + loss, nb + 1
    end
    local e = record(epoch, total / math.max(nb, 1))
    if not result.best or e.val > result.best.val then
      result.best = {epoch = epoch, val = e.val, test = e.test, worst_group = e.worst_group}
    end
  end
  return result
end

return T
