-- The module protocol: Torch's forward/backward with named, flat parameters.
--
--   forward(input)                      -> output (kept in self.output)
--   backward(input, gradOutput[, need]) -> gradInput (nil when need == false)
--        accumulates the gradients of trainable parameters; frozen ones get none.
--        need == false says nobody wants the input gradient: the module then skips
--        it, and a container stops the backward pass below its lowest trainable child.
--   parameters()  -> records {name, block, value, grad, trainable, lr_scale, decay,
--                              shape, module, attr}, in a stable order
--   zero_grad(), training(), evaluate(), clone(), apply(fn), tostring
--
-- Parameters are declared by leaf modules with self:param(attr, tensor, {decay=...}).
-- The first call of parameters() (or build()) on the outermost module, the root, lays
-- every parameter and its gradient out in one flat value buffer and one flat gradient
-- buffer, and rebinds each layer's tensor (self.weight) to a view of them. After that
-- the tree is fixed: adding children is an error.
local sf = require "surgft.core"

local nn = {}

-- ---- classes ----

local Module = {}
Module.__index = Module
Module._class_name = "Module"
nn.Module = Module

-- what every constructor does before the class's init
local function base_init(self)
  self._params = {}     -- ordered local records: {attr, value, grad, decay, trainable, ...}
  self._buffers = {}    -- ordered {attr, value}: persistent state saved with the model
  self._children = {}   -- ordered {name, module}
  self._train = true
  self.output = nil
  self.gradInput = nil
end

-- nn.class(name[, parent]) -> class; instances are made by calling the class:
-- Linear(3, 4) runs Linear.init(self, 3, 4).
function nn.class(name, parent)
  local cls = {}
  cls.__index = cls
  cls.__name = name
  cls._class_name = name
  cls.__tostring = function(self) return self:tostring_tree() end
  setmetatable(cls, {__index = parent or Module, __call = function(c, ...) return c.new(...) end})
  cls.new = function(...)
    local self = setmetatable({}, cls)
    base_init(self)
    self:init(...)
    return self
  end
  return cls
end

function Module:init() end

function Module:type() return self._class_name end

-- ---- parameter records ----

-- A record's `trainable` flag lives behind this metatable so that every write to it,
-- wherever it comes from (set_trainable, sf.policy.apply, a checkpoint, a user's own
-- loop over the records), bumps train_gen; has_trainable() caches its answer per module
-- with the train_gen it saw (containers ask it of every child at every forward). The flag
-- is stored as _trainable; read and write rec.trainable as before.
local train_gen = 0
local REC = {
  __index = function(r, k) if k == "trainable" then return rawget(r, "_trainable") end end,
  __newindex = function(r, k, v)
    if k ~= "trainable" then rawset(r, k, v) return end
    if rawget(r, "_trainable") ~= v then train_gen = train_gen + 1 end
    rawset(r, "_trainable", v)
  end,
}

-- ---- declaring parameters, buffers and children ----

-- self:param("weight", tensor[, {decay = true}]) declares a parameter; self.weight is
-- its value (a view into the root's flat buffer once built).
function Module:param(attr, value, opts)
  if self._built then error(string.format("%s: cannot add parameter '%s' after the model was built", self:type(), attr), 2) end
  assert(sf.is_tensor(value), "param: value must be a tensor")
  opts = opts or {}
  local rec = setmetatable({attr = attr, value = value, decay = opts.decay ~= false, lr_scale = 1,
                            module = self, shape = value:size()}, REC)
  rec.trainable = true
  self._params[#self._params + 1] = rec
  self._params[attr] = rec
  self[attr] = value
  return value
end

-- a persistent non-parameter tensor (BatchNorm running statistics)
function Module:buffer(attr, value)
  self._buffers[#self._buffers + 1] = {attr = attr, value = value}
  self[attr] = value
  return value
end

function Module:add(name, module)
  if self._built then error(string.format("%s: cannot add child '%s' after the model was built", self:type(), tostring(name)), 2) end
  if module == nil then module, name = name, #self._children end
  name = tostring(name)
  if type(module) ~= "table" or not module.forward then
    error(string.format("%s:add: argument for child '%s' is not a module (got %s)", self:type(), name, type(module)), 2)
  end
  if self._children[name] then error(string.format("%s:add: a child named '%s' already exists", self:type(), name), 2) end
  self._children[#self._children + 1] = {name = name, module = module}
  self._children[name] = module
  train_gen = train_gen + 1 -- the subtree changed: cached has_trainable answers are stale
  return self
end

function Module:children()
  local out = {}
  for i, c in ipairs(self._children) do out[i] = c.module end
  return out
end

function Module:child(name) return self._children[name] end

-- ---- traversal ----

-- visit(fn) calls fn(module, path) depth-first, parents before children
function Module:visit(fn, prefix)
  fn(self, prefix or "")
  for _, c in ipairs(self._children) do
    c.module:visit(fn, prefix and prefix ~= "" and (prefix .. "." .. c.name) or tostring(c.name))
  end
end

-- apply(fn): fn(module) on every module, parents first; returns self
function Module:apply(fn)
  self:visit(function(m) fn(m) end)
  return self
end

-- ---- building: flat buffers and records ----

-- the block a parameter belongs to: the first component of its name, unless the root
-- says otherwise with a block_of(name) method
local function default_block(name) return name:match("^([^.]+)") or name end

-- module -> the root that built it (weak, and outside the modules so clone() never
-- follows it up to the whole model)
local ROOT = setmetatable({}, {__mode = "k"})

function Module:build()
  if self._built then return self end
  local records, total = {}, 0
  self:visit(function(m, path)
    if m ~= self and m._built then
      error(string.format("%s: child '%s' belongs to another built model; clone it first", self:type(), path), 3)
    end
    for _, rec in ipairs(m._params) do
      rec.name = path == "" and rec.attr or (path .. "." .. rec.attr)
      rec.offset = total
      rec.numel = rec.value:numel()
      total = total + rec.numel
      records[#records + 1] = rec
    end
  end)
  local flat_value, flat_grad = sf.zeros(math.max(total, 0)), sf.zeros(math.max(total, 0))
  for _, rec in ipairs(records) do
    local v = flat_value:narrow(1, rec.offset + 1, rec.numel):view(rec.shape)
    v:copy(rec.value)
    rec.value = v
    rec.grad = flat_grad:narrow(1, rec.offset + 1, rec.numel):view(rec.shape)
    rec.module[rec.attr] = v
    rec.block = self.block_of and self:block_of(rec.name) or default_block(rec.name)
  end
  self._records = records
  self._by_name = {}
  for _, rec in ipairs(records) do self._by_name[rec.name] = rec end
  self._flat_value, self._flat_grad = flat_value, flat_grad
  self:visit(function(m) m._built = true; ROOT[m] = self end)
  return self
end

-- parameters() -> the records, in order (builds on first call). A module inside a built
-- model answers with its subtree's records: the same objects, full names.
function Module:parameters()
  self:build()
  if self._records then return self._records end
  local out = {}
  self:visit(function(m) for _, rec in ipairs(m._params) do out[#out + 1] = rec end end)
  return out
end

function Module:parameter(name)
  self:build()
  local rec = self._by_name and self._by_name[name]
  if not self._by_name then
    for _, r in ipairs(self:parameters()) do if r.name == name then rec = r end end
  end
  if not rec then error(string.format("parameter: no parameter named '%s'", tostring(name)), 2) end
  return rec
end

-- flat() -> values, gradients: the root's flat buffers, or for a module inside a built
-- model the slice its subtree occupies (depth-first layout makes it contiguous)
function Module:flat()
  self:build()
  if self._flat_value then return self._flat_value, self._flat_grad end
  local recs, root = self:parameters(), ROOT[self]
  if #recs == 0 then return sf.zeros(0), sf.zeros(0) end
  local first, last = recs[1], recs[#recs]
  local n = last.offset + last.numel - first.offset
  return root._flat_value:narrow(1, first.offset + 1, n), root._flat_grad:narrow(1, first.offset + 1, n)
end

-- blocks() -> block names in order of first appearance (a model may override)
function Module:blocks()
  local seen, out = {}, {}
  for _, rec in ipairs(self:parameters()) do
    if not seen[rec.block] then seen[rec.block] = true; out[#out + 1] = rec.block end
  end
  return out
end

function Module:zero_grad()
  local _, g = self:flat()
  g:zero()
  return self
end

-- named persistent state: parameters and buffers, name -> tensor (for checkpoints);
-- names are relative to this module (the full names on the root)
function Module:state()
  self:build()
  local out = {}
  self:visit(function(m, path)
    for _, rec in ipairs(m._params) do out[path == "" and rec.attr or (path .. "." .. rec.attr)] = rec.value end
    for _, b in ipairs(m._buffers) do out[path == "" and b.attr or (path .. "." .. b.attr)] = m[b.attr] end
  end)
  return out
end

-- ---- freezing ----

-- set_trainable(flag[, filter]): filter is nil (all), a block name, or a function(rec)
function Module:set_trainable(flag, filter)
  local matched = 0
  for _, rec in ipairs(self:parameters()) do
    if filter == nil or filter == rec.block or (type(filter) == "function" and filter(rec)) then
      rec.trainable = flag
      matched = matched + 1
    end
  end
  if type(filter) == "string" and matched == 0 then
    error(string.format("set_trainable: no block named '%s' (blocks: %s)", filter, table.concat(self:blocks(), ", ")), 2)
  end
  return self
end

-- does any parameter of this subtree train? (leaf layers skip gradient work otherwise;
-- containers decide folding with it). Cached until any record's flag changes.
function Module:has_trainable()
  if self._trains_at == train_gen then return self._trains end
  local t = false
  for _, rec in ipairs(self._params) do if rec.trainable then t = true break end end
  if not t then
    for _, c in ipairs(self._children) do if c.module:has_trainable() then t = true break end end
  end
  self._trains, self._trains_at = t, train_gen
  return t
end

-- is a named local parameter trainable? (for layer implementations)
function Module:trains(attr)
  local rec = self._params[attr]
  return rec ~= nil and rec.trainable
end

-- ---- modes ----

function Module:training()
  self:apply(function(m) m._train = true end)
  return self
end

function Module:evaluate()
  self:apply(function(m) m._train = false end)
  return self
end

function Module:is_training() return self._train end

-- set_bn_mode(mode): an explicit BatchNorm mode on every norm layer of the subtree
-- ("eval" | "batch" | "train" | "tent"), or nil to follow training()/evaluate() again
function Module:set_bn_mode(mode)
  self:apply(function(m) if m.set_mode then m:set_mode(mode) end end)
  return self
end

-- clear_state(): drop every module's output, input gradient and saved activations (the
-- _s_* fields), so a step's buffers can be freed before the next step (Torch's clearState)
-- set_fusion(on): whether blocks may compute a BatchNorm and the ReLU after it in one pass
-- (about a tenth of a ResNet training step), and fold eval-mode BatchNorms into the
-- convolutions before them where nothing trainable lies at or below (inference; see
-- blocks.lua). On by default. Fused or folded, some submodules keep no output of their
-- own (a BatchNorm's pre-activation, a folded convolution's): switch fusion off to read
-- every submodule's output after a forward. Applies to this module and everything below.
function Module:set_fusion(on)
  self:visit(function(m) m._no_fusion = (on == false) or nil end)
  return self
end

-- Shared by the containers and blocks that fuse or fold (fusion is off under
-- set_fusion(false), which the callers check through self._no_fusion):
-- can `norm` take the ReLU module `relu` that follows it into its own pass?
function nn.fuses_relu(norm, relu)
  return norm ~= nil and norm.fuses_relu ~= nil and norm:fuses_relu() and relu ~= nil and relu:type() == "ReLU"
end
-- is m a BatchNorm in eval mode (one a convolution before it can absorb)?
function nn.eval_bn(m) return m ~= nil and m.eval_affine ~= nil and m:mode() == "eval" end
-- does module m (run before norm) compute the batch statistics that norm, a BatchNorm on
-- batch statistics, would otherwise find in a pass of its own (Conv2d:forward(x, true))?
function nn.stats_for(m, norm)
  return m ~= nil and m.bn_stats ~= nil and norm ~= nil and norm.eval_affine ~= nil and norm:mode() ~= "eval"
    and norm.dims ~= 2
end

-- A module whose forward ran folded never kept what its backward needs: run the forward
-- again without folding (same results up to rounding) before the backward goes on.
-- A forward that normalised in place (BatchNorm on batch statistics, see blocks.lua) has
-- already moved the running statistics: the recompute uses the batch statistics alone
-- (mode "batch"), which gives the same outputs and leaves the running ones as they are.
function Module:unfold_for_backward(input)
  if not self._s_folded then return end
  self._s_nofold = true
  local moved = {}
  self:visit(function(m)
    if m.eval_affine ~= nil and m:mode() == "train" then moved[#moved + 1] = {m, m._mode}; m._mode = "batch" end
  end)
  local ok, err = pcall(self.forward, self, input)
  for _, r in ipairs(moved) do r[1]._mode = r[2] end
  if not ok then error(err, 0) end
end

function Module:clear_state()
  self:visit(function(m)
    m.output, m.gradInput = nil, nil
    for k in pairs(m) do
      if type(k) == "string" and k:sub(1, 3) == "_s_" then m[k] = nil end
    end
  end)
  return self
end

-- ---- copies ----

local function deep_copy(v, seen)
  if sf.is_tensor(v) then return v end -- tensors are handled by clone() below
  if type(v) ~= "table" then return v end
  if seen[v] then return seen[v] end
  local out = {}
  seen[v] = out
  for k, x in pairs(v) do out[deep_copy(k, seen)] = deep_copy(x, seen) end
  return setmetatable(out, getmetatable(v))
end

local RNG_MT = getmetatable(sf.rng(1))

-- clone(): a deep copy with its own tensors (unbuilt copies stay unbuilt; built ones
-- get their own flat buffers with the same values, trainable flags and lr scales).
-- Generators held by layers (Dropout's rng) are copied in their current state, so the
-- clone draws the same masks as the original would, without advancing its stream.
function Module:clone()
  local seen = {}
  -- tensors that are parameters or buffers are cloned; scratch (output, gradInput) dropped
  local copy = deep_copy(self, seen)
  copy:visit(function(m)
    m.output, m.gradInput = nil, nil
    for k, v in pairs(m) do -- scratch kept between calls is named _s_*: never shared
      if type(k) == "string" and k:sub(1, 3) == "_s_" then
        m[k] = nil
      elseif type(v) == "userdata" and getmetatable(v) == RNG_MT then
        m[k] = v:clone()
      end
    end
    for _, b in ipairs(m._buffers) do
      b.value = m[b.attr]:clone()
      m[b.attr] = b.value
    end
    for _, rec in ipairs(m._params) do
      rec.value = m[rec.attr]:clone()
      rec.grad = nil
      m[rec.attr] = rec.value
      rec.module = m
    end
    m._built = nil
    m._records, m._by_name, m._flat_value, m._flat_grad = nil, nil, nil, nil
  end)
  if self._built then
    copy:build()
    for i, rec in ipairs(self:parameters()) do
      copy._records[i].trainable = rec.trainable
      copy._records[i].lr_scale = rec.lr_scale
    end
  end
  return copy
end

-- ---- errors: which child failed ----

-- call_child(i or name, method, ...): a child's method, with an error that names the
-- child's path and type ("In child 'block1' (Sequential) of ResNet > In child '0' ...")
function Module:call_child(i, method, ...)
  local c
  if type(i) == "number" then
    c = self._children[i]
  else
    for _, e in ipairs(self._children) do if e.name == i then c = e break end end
  end
  if not c then error(string.format("%s: no child '%s'", self:type(), tostring(i)), 2) end
  local ok, a, b = pcall(c.module[method], c.module, ...)
  if not ok then
    local where = string.format("In child '%s' (%s) of %s", tostring(c.name), c.module:type(), self:type())
    if type(a) == "string" and a:find("^In child ") then
      a = where .. " > " .. a
    elseif type(a) == "string" then
      a = where .. ", " .. method .. ": " .. a
    end
    error(a, 0)
  end
  return a, b
end

-- chain_backward(steps, gradOutput, need): backward through children applied in
-- sequence, steps = {{child, input}, ...} in forward order. Nothing runs below the
-- lowest child with a trainable parameter when no input gradient is wanted; returns
-- the input gradient, or nil when need == false.
function Module:chain_backward(steps, g, need)
  local lo = 1
  if need == false then
    lo = nil
    for i, st in ipairs(steps) do
      local c = type(st[1]) == "table" and st[1] or self._children[st[1]]
      if c:has_trainable() then lo = i break end
    end
    if not lo then return nil end
  end
  local prev
  for i = #steps, lo, -1 do
    g = self:call_child(steps[i][1], "backward", steps[i][2], g, i > lo or need ~= false)
    -- the gradient the child above produced has been consumed: let it go now rather than
    -- at clear_state (a step would otherwise hold every layer's input gradient at once)
    if prev then prev.gradInput = nil end
    prev = type(steps[i][1]) == "table" and steps[i][1] or self._children[steps[i][1]]
  end
  -- the lowest child's gradient goes to the caller (the container's own gradInput): the
  -- child need not hold it too, or it would outlive the container's use of it
  if prev then prev.gradInput = nil end
  if need == false then return nil end
  return g
end

-- ---- printing ----

function Module:extra_repr() return "" end

function Module:tostring_tree(indent)
  indent = indent or ""
  local head = self:type()
  local extra = self:extra_repr()
  if extra ~= "" then head = head .. "(" .. extra .. ")" end
  if #self._children == 0 then return head end
  local lines = {head .. " {"}
  for _, c in ipairs(self._children) do
    lines[#lines + 1] = indent .. "  (" .. tostring(c.name) .. "): " .. c.module:tostring_tree(indent .. "  ")
  end
  lines[#lines + 1] = indent .. "}"
  return table.concat(lines, "\n")
end
Module.__tostring = Module.tostring_tree

-- ---- defaults for leaves ----

function Module:forward(input)
  error(string.format("%s: forward is not implemented", self:type()), 2)
end

function Module:backward(input, gradOutput, need)
  error(string.format("%s: backward is not implemented", self:type()), 2)
end

return nn
