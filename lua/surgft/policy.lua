-- Selection policies: which parameters train, at which learning-rate scale.
--
-- A policy is a function of a context returning a map from block names or parameter
-- names to lr scales; whatever is absent (or scaled 0) is frozen:
--
--   local mine = function(ctx)
--     local g = ctx:rgn()               -- {[param name] = ||g|| / ||theta||}
--     return {block2 = 1.0, head = 0.1}
--   end
--
-- sf.finetune calls it at each epoch start (or every `every` steps). The built-ins are
-- tables {name = ..., select = fn, ...} made by the constructors below; sf.policy.wrap
-- turns a plain function into one. A key that matches no block and no parameter is an
-- error, as is a selection that leaves nothing trainable (unless the policy is none()).
--
-- The context (made by sf.finetune, or sf.policy.context for a dry run) holds: model,
-- blocks (ordered names), epoch, step, and lazily computed statistics over the first
-- `stat_batches` target training batches on the current model: ctx:grad_norms(),
-- ctx:rgn(), ctx:snr() (per-example), ctx:snr_code() (the released code's variant).
local sf = require "surgft.core"
local K = sf.kernels

local P = {}

-- ---- applying a selection ----

-- apply(model, selection) sets every record's trainable flag and lr scale; returns the
-- number of trainable records. selection: {[block or param name] = scale}
function P.apply(model, selection, allow_empty)
  if type(selection) ~= "table" then
    error(string.format("policy: a policy must return a table of {name = lr scale}, got %s", type(selection)), 2)
  end
  local recs = model:parameters()
  local by_block, by_name = {}, {}
  for _, rec in ipairs(recs) do
    by_block[rec.block] = true
    by_name[rec.name] = rec
  end
  local scale_of = {}
  for key, scale in pairs(selection) do
    if type(scale) ~= "number" or scale < 0 or scale ~= scale then
      error(string.format("policy: lr scale for '%s' must be a number >= 0, got %s", tostring(key), tostring(scale)), 2)
    end
    if by_name[key] then
      scale_of[key] = scale
    elseif by_block[key] then
      for _, rec in ipairs(recs) do
        if rec.block == key and scale_of[rec.name] == nil then scale_of[rec.name] = scale end
      end
    else
      error(string.format("policy: '%s' matches no block and no parameter (blocks: %s)", tostring(key),
        table.concat(model:blocks(), ", ")), 2)
    end
  end
  -- explicit parameter names win over their block's scale
  for key, scale in pairs(selection) do if by_name[key] then scale_of[key] = scale end end
  local n = 0
  for _, rec in ipairs(recs) do
    local s = scale_of[rec.name]
    rec.trainable = s ~= nil and s > 0
    rec.lr_scale = s or 0
    if rec.trainable then n = n + 1 end
  end
  if n == 0 and not allow_empty then
    error("policy: the selection leaves no parameter trainable (use sf.policy.none() for no fine-tuning)", 2)
  end
  return n
end

-- ---- constructors ----

-- static = the selection depends on the model's structure only, not on its statistics or
-- the epoch (sf.finetune may then cache a frozen prefix's outputs)
local function make(name, fn, extra)
  local p = {name = name, select = fn}
  for k, v in pairs(extra or {}) do p[k] = v end
  return p
end

-- wrap(fn[, name]): a user function as a policy
function P.wrap(fn, name, extra)
  if type(fn) == "table" and fn.select then return fn end
  if type(fn) ~= "function" then
    error(string.format("policy: expected a function or a policy, got %s", type(fn)), 2)
  end
  return make(name or "custom", fn, extra)
end

local function all_blocks(ctx, list)
  local out = {}
  for _, b in ipairs(list) do out[b] = 1 end
  return out
end

function P.all() return make("all", function(ctx) return all_blocks(ctx, ctx.blocks) end, {static = true}) end

function P.none() return make("none", function() return {} end, {empty = true, static = true}) end

-- blocks{"block1", "block2"[, scale = 1]}: those blocks, each at scale 1 (or the given
-- table {block1 = 1, head = 0.1})
function P.blocks(list)
  if type(list) ~= "table" then error("policy.blocks: expected a list of block names", 2) end
  local sel, names = {}, {}
  for k, v in pairs(list) do
    if type(k) == "number" then sel[v] = 1; names[#names + 1] = v
    else sel[k] = v; names[#names + 1] = k end
  end
  table.sort(names)
  return make("blocks(" .. table.concat(names, ",") .. ")", function() return sel end, {static = true})
end

local function check_k(fn, k)
  if math.type(k) ~= "integer" or k < 1 then
    error(string.format("policy.%s: k must be a positive integer, got %s", fn, tostring(k)), 3)
  end
end

-- first(k) / last(k): the first or last k blocks in model order
function P.first(k)
  check_k("first", k)
  return make("first(" .. k .. ")", function(ctx)
    if k > #ctx.blocks then
      error(string.format("policy.first(%d): the model has only %d blocks (%s)", k, #ctx.blocks,
        table.concat(ctx.blocks, ", ")), 0)
    end
    local out = {}
    for i = 1, k do out[ctx.blocks[i]] = 1 end
    return out
  end, {static = true})
end

function P.last(k)
  check_k("last", k)
  return make("last(" .. k .. ")", function(ctx)
    local n = #ctx.blocks
    if k > n then
      error(string.format("policy.last(%d): the model has only %d blocks (%s)", k, n, table.concat(ctx.blocks, ", ")), 0)
    end
    local out = {}
    for i = n - k + 1, n do out[ctx.blocks[i]] = 1 end
    return out
  end, {static = true})
end

-- last_layer(): the parameters of the last module that has any (the linear head)
function P.last_layer()
  return make("last_layer", function(ctx)
    local recs = ctx.model:parameters()
    local last = recs[#recs].module
    local out = {}
    for _, rec in ipairs(recs) do if rec.module == last then out[rec.name] = 1 end end
    return out
  end, {static = true})
end

-- embed(): the "embed" block (a ViT's patch, class-token and position embeddings)
function P.embed() return make("embed", function() return {embed = 1} end, {static = true}) end

-- pattern(p[, scale]): every parameter whose name matches the Lua pattern p
function P.pattern(pat, scale)
  return make("pattern(" .. pat .. ")", function(ctx)
    local out, any = {}, false
    for _, rec in ipairs(ctx.model:parameters()) do
      if rec.name:find(pat) then out[rec.name] = scale or 1; any = true end
    end
    if not any then error(string.format("policy.pattern: '%s' matches no parameter", pat), 0) end
    return out
  end, {static = true})
end

-- ---- automatic criteria ----

local function is_norm(rec)
  local t = rec.module:type()
  return t == "BatchNorm" or t == "BatchNorm1d" or t == "BatchNorm2d" or t == "LayerNorm" or t == "GroupNorm"
end
P.is_norm = is_norm

-- auto_rgn{variant = "paper" | "code"}: lr scale = RGN / max RGN per tensor, recomputed
-- each epoch. "paper": every tensor, optimizer state kept across epochs. "code": as
-- the released implementation: norm-layer tensors frozen, and a fresh Adam each epoch.
function P.auto_rgn(o)
  o = o or {}
  local variant = o.variant or "paper"
  if variant ~= "paper" and variant ~= "code" then
    error(string.format("policy.auto_rgn: variant must be 'paper' or 'code', got '%s'", tostring(variant)), 2)
  end
  return make("auto_rgn" .. (variant == "code" and "_code" or ""), function(ctx)
    local rgn = ctx:rgn()
    local mx = 0
    for _, rec in ipairs(ctx.model:parameters()) do
      if variant == "paper" or not is_norm(rec) then mx = math.max(mx, rgn[rec.name]) end
    end
    local out = {}
    for _, rec in ipairs(ctx.model:parameters()) do
      if (variant == "paper" or not is_norm(rec)) and mx > 0 then out[rec.name] = rgn[rec.name] / mx end
    end
    return out
  end, {fresh_optimizer = variant == "code"})
end

-- auto_snr{variant = "paper" | "code", threshold = 0.95}: tensors whose normalised SNR
-- (SNR / max SNR) reaches the threshold train at scale 1, the rest are frozen.
-- "paper": per-example SNR (mean^2 / variance over examples). "code": the released
-- code's variance across the tensor's first axis, norm layers excluded.
function P.auto_snr(o)
  o = o or {}
  local variant, thr = o.variant or "paper", o.threshold or 0.95
  if variant ~= "paper" and variant ~= "code" then
    error(string.format("policy.auto_snr: variant must be 'paper' or 'code', got '%s'", tostring(variant)), 2)
  end
  return make("auto_snr" .. (variant == "code" and "_code" or ""), function(ctx)
    local snr = variant == "paper" and ctx:snr() or ctx:snr_code()
    local mx = 0
    for _, rec in ipairs(ctx.model:parameters()) do
      local v = snr[rec.name]
      if v and v == v and (variant == "paper" or not is_norm(rec)) then mx = math.max(mx, v) end
    end
    local out = {}
    for _, rec in ipairs(ctx.model:parameters()) do
      local v = snr[rec.name]
      if v and v == v and mx > 0 and v / mx >= thr and (variant == "paper" or not is_norm(rec)) then
        out[rec.name] = 1
      end
    end
    return out
  end, {fresh_optimizer = variant == "code"})
end

-- ---- the context and its statistics ----

local Ctx = {}
Ctx.__index = Ctx

-- context{model, batches = fn() -> iterator of (x, y), loss = fn(logits, y) -> loss, d,
--         stat_batches = 5, epoch, step}
function P.context(o)
  local ctx = setmetatable({model = o.model, blocks = o.model:blocks(), epoch = o.epoch or 0, step = o.step or 0,
                            _batches = o.batches, _loss = o.loss, stat_batches = o.stat_batches or 5,
                            _cache = {}}, Ctx)
  return ctx
end

-- run fn(rec_list) with every parameter temporarily trainable (statistics need every
-- tensor's gradient), restoring flags and lr scales afterwards
local function with_all_trainable(model, fn)
  local saved = {}
  for i, rec in ipairs(model:parameters()) do
    saved[i] = {rec.trainable, rec.lr_scale}
    rec.trainable = true
  end
  local ok, err = pcall(fn)
  for i, rec in ipairs(model:parameters()) do rec.trainable, rec.lr_scale = saved[i][1], saved[i][2] end
  model:zero_grad()
  if not ok then error(err, 0) end
end

local function each_batch(ctx, fn)
  if not ctx._batches then error("policy context: no target batches to compute statistics on", 3) end
  local n = 0
  for x, y in ctx._batches() do
    n = n + 1
    if n > ctx.stat_batches then break end
    fn(x, y)
  end
  if n == 0 then error("policy context: the target training set yielded no batch", 3) end
end

-- grad_norms() -> {[name] = {grad = ||g||, value = ||theta||, rgn = ||g||/||theta||,
-- max_abs, nan, inf}}, each averaged over the first stat_batches batches
function Ctx:grad_norms()
  if self._cache.norms then return self._cache.norms end
  local model, out, nb = self.model, {}, 0
  local value_norm = {} -- the parameters do not move while statistics are gathered
  for _, rec in ipairs(model:parameters()) do value_norm[rec.name] = K.stats(rec.value).norm end
  with_all_trainable(model, function()
    each_batch(self, function(x, y)
      nb = nb + 1
      model:zero_grad()
      local logits = model:forward(x)
      local _, d = self._loss(logits, y)
      model:backward(x, d, false)
      for _, rec in ipairs(model:parameters()) do
        local g, vn = K.stats(rec.grad), value_norm[rec.name]
        local e = out[rec.name] or {grad = 0, value = vn, rgn = 0, max_abs = 0, nan = 0, inf = 0}
        e.grad = e.grad + g.norm
        e.rgn = e.rgn + (vn > 0 and g.norm / vn or 0)
        e.max_abs = math.max(e.max_abs, g.max_abs)
        e.nan, e.inf = e.nan + g.nan, e.inf + g.inf
        out[rec.name] = e
      end
    end)
  end)
  for _, e in pairs(out) do e.grad, e.rgn = e.grad / nb, e.rgn / nb end
  self._cache.norms = out
  return out
end

-- rgn() -> {[name] = relative gradient norm}
function Ctx:rgn()
  local out = {}
  for name, e in pairs(self:grad_norms()) do out[name] = e.rgn end
  return out
end

-- snr() -> {[name] = per-example SNR}: the mean over a tensor's elements of
-- mean^2 / variance of the per-example gradients (ddof 1), over the examples of the
-- first stat_batches batches. Every layer with parameters accumulates the per-example
-- gradients' sum and sum of squares during one backward per batch (C kernels for Linear
-- and Conv2d, tensor ops for the norms and tokens), so no per-example gradient is stored.
-- BatchNorm in eval mode makes them exactly per-example. A model with a layer that cannot
-- do this falls back to one backward pass per example (ctx:snr_loop(), also a reference).
local function moment_stats(sum, sumsq, n)
  local out = {}
  for name, s in pairs(sum) do
    if n < 2 then out[name] = 0 / 0 else
      local mean = s / n
      local var = (sumsq[name] - mean * mean * n) / (n - 1)
      out[name] = ((mean * mean) / var:clamp(0, nil):add_(1e-8)):mean()
    end
  end
  return out
end

function Ctx:snr()
  if self._cache.snr then return self._cache.snr end
  local model = self.model
  local supported = true
  for _, rec in ipairs(model:parameters()) do
    if not rec.module.moments then supported = false end
  end
  if not supported then return self:snr_loop() end
  local sum, sumsq, n = {}, {}, 0
  with_all_trainable(model, function()
    for _, rec in ipairs(model:parameters()) do
      local m = rec.module
      m._s_moments = m._s_moments or {}
      local pair = {sum = sf.zeros(rec.shape), sumsq = sf.zeros(rec.shape)}
      m._s_moments[rec.attr] = pair
      sum[rec.name], sumsq[rec.name] = pair.sum, pair.sumsq
    end
    each_batch(self, function(x, y)
      model:zero_grad()
      local _, d = self._loss(model:forward(x), y)
      d:mul_(x:size(1)) -- per-example losses, not their mean
      model:backward(x, d, false)
      n = n + x:size(1)
    end)
  end)
  for _, rec in ipairs(model:parameters()) do rec.module._s_moments = nil end
  self._cache.snr = moment_stats(sum, sumsq, n)
  return self._cache.snr
end

-- snr_loop(): the same statistic from one backward pass per example
function Ctx:snr_loop()
  if self._cache.snr_loop then return self._cache.snr_loop end
  local model = self.model
  local sum, sumsq, n = {}, {}, 0
  with_all_trainable(model, function()
    for _, rec in ipairs(model:parameters()) do
      sum[rec.name], sumsq[rec.name] = sf.zeros(rec.shape), sf.zeros(rec.shape)
    end
    each_batch(self, function(x, y)
      for i = 1, x:size(1) do
        local xi, yi = x:narrow(1, i, 1), y:narrow(1, i, 1)
        model:zero_grad()
        local _, d = self._loss(model:forward(xi), yi)
        model:backward(xi, d, false)
        for _, rec in ipairs(model:parameters()) do
          sum[rec.name]:add_(rec.grad)
          sumsq[rec.name]:add_(rec.grad * rec.grad)
        end
        n = n + 1
      end
    end)
  end)
  self._cache.snr_loop = moment_stats(sum, sumsq, n)
  return self._cache.snr_loop
end

-- snr_code() -> {[name] = the released code's SNR}, averaged over the batches
function Ctx:snr_code()
  if self._cache.snr_code then return self._cache.snr_code end
  local model, out, nb = self.model, {}, 0
  with_all_trainable(model, function()
    each_batch(self, function(x, y)
      nb = nb + 1
      model:zero_grad()
      local _, d = self._loss(model:forward(x), y)
      model:backward(x, d, false)
      for _, rec in ipairs(model:parameters()) do
        local v = rec.grad:dim() >= 1 and rec.grad:size(1) >= 2 and K.snr_code(rec.grad) or 0 / 0
        out[rec.name] = (out[rec.name] or 0) + v
      end
    end)
  end)
  for k, v in pairs(out) do out[k] = v / nb end
  self._cache.snr_code = out
  return out
end

-- ---- the "what trains" report ----

-- report(model) -> a printable table: every parameter with its block, trainable flag and
-- lr scale, then every BatchNorm layer with its mode
function P.report(model, title)
  local lines = {}
  if title then lines[#lines + 1] = title end
  local w = 4
  for _, rec in ipairs(model:parameters()) do w = math.max(w, #rec.name) end
  lines[#lines + 1] = string.format("%-" .. w .. "s  %-8s  %-6s  %8s  %s", "parameter", "block", "trains", "lr scale",
    "shape")
  local ntrain, nfrozen, ptrain, ptotal = 0, 0, 0, 0
  for _, rec in ipairs(model:parameters()) do
    lines[#lines + 1] = string.format("%-" .. w .. "s  %-8s  %-6s  %8.3g  [%s]", rec.name, rec.block,
      rec.trainable and "yes" or "no", rec.trainable and rec.lr_scale or 0, table.concat(rec.shape, ","))
    local numel = rec.value:numel()
    ptotal = ptotal + numel
    if rec.trainable then ntrain = ntrain + 1; ptrain = ptrain + numel else nfrozen = nfrozen + 1 end
  end
  lines[#lines + 1] = string.format("%d tensors train (%d values of %d, %.1f%%), %d frozen", ntrain, ptrain, ptotal,
    ptotal > 0 and 100 * ptrain / ptotal or 0, nfrozen)
  model:visit(function(m, path)
    if m.mode and m.set_mode then
      lines[#lines + 1] = string.format("norm layer %s (%s): mode %s%s", path, m:type(), m:mode(),
        m._mode and " (explicit)" or " (follows training())")
    end
  end)
  return table.concat(lines, "\n")
end

return P
