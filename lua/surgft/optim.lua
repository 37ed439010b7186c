-- Optimizers over a model's parameter records: SGD (momentum, Nesterov), Adam with
-- coupled L2 weight decay (torch.optim.Adam, the paper's), AdamW (decoupled).
--
--   local opt = sf.optim.adam(model, {lr = 1e-3, weight_decay = 1e-4})
--   model:zero_grad(); ...backward...; opt:step()
--
-- Only trainable records move; each uses lr * rec.lr_scale and decays only when
-- rec.decay. State (momentum, Adam moments, step count) is created on a record's first
-- update, so frozen parameters never get any.
--
-- When a record's trainable flag or lr scale changes between steps, `on_change` says
-- what happens to its state: "keep" (default: moments and step count carry on, as
-- PyTorch does when a param group's lr changes) or "reset" (state is dropped and
-- rebuilt on the next update, as if the optimizer were new for that tensor).
-- opt:reset() drops all state (the released Auto-RGN code builds a new Adam per epoch).
local sf = require "surgft.core"
local K = sf.kernels

local optim = {}

local Optimizer = {}
Optimizer.__index = Optimizer

local function check_opts(kind, opts, defaults)
  opts = opts or {}
  require("surgft.util").check_options("optim." .. kind, opts, defaults, 4)
  local out = {}
  for k, v in pairs(defaults) do
    if opts[k] == nil then out[k] = v else out[k] = opts[k] end
    if type(v) == "number" and type(out[k]) ~= "number" then
      error(string.format("optim.%s: option '%s' must be a number, got %s", kind, k, type(out[k])), 3)
    end
  end
  if out.lr < 0 then error(string.format("optim.%s: lr must be >= 0, got %g", kind, out.lr), 3) end
  if out.on_change ~= "keep" and out.on_change ~= "reset" then
    error(string.format("optim.%s: on_change must be 'keep' or 'reset', got '%s'", kind, tostring(out.on_change)), 3)
  end
  return out
end

local function new(kind, model, opts, defaults)
  if type(model) ~= "table" or not model.parameters then
    error(string.format("optim.%s: argument #1 must be a model (a module with parameters()), got %s", kind, type(model)), 3)
  end
  local self = setmetatable({kind = kind, model = model, state = {}, seen = {}}, Optimizer)
  self.opts = check_opts(kind, opts, defaults)
  return self
end

function optim.sgd(model, opts)
  return new("sgd", model, opts, {lr = 0.01, momentum = 0, dampening = 0, nesterov = false, weight_decay = 0,
                                   on_change = "keep"})
end

function optim.adam(model, opts)
  return new("adam", model, opts, {lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0,
                                    on_change = "keep", decoupled = false})
end

function optim.adamw(model, opts)
  local o = new("adamw", model, opts, {lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 1e-2,
                                        on_change = "keep", decoupled = true})
  o.opts.decoupled = true
  return o
end

-- apply on_change for one record before its update
function Optimizer:_track(rec)
  local last = self.seen[rec.name]
  if last and self.opts.on_change == "reset" and (not last.trainable or last.lr_scale ~= rec.lr_scale) then
    self.state[rec.name] = nil
  end
  self.seen[rec.name] = {trainable = rec.trainable, lr_scale = rec.lr_scale}
end

function Optimizer:step()
  local o = self.opts
  for _, rec in ipairs(self.model:parameters()) do
    if rec.trainable then
      self:_track(rec)
      local lr = o.lr * rec.lr_scale
      local wd = rec.decay and o.weight_decay or 0
      local st = self.state[rec.name]
      if self.kind == "sgd" then
        local first = false
        if not st then
          st = {step = 0, buf = o.momentum ~= 0 and sf.zeros(rec.shape) or nil}
          self.state[rec.name] = st
          first = true
        end
        st.step = st.step + 1
        K.sgd_step(rec.value, rec.grad, st.buf, lr, o.momentum, o.dampening, o.nesterov, wd, first)
      else
        if not st then
          st = {step = 0, m = sf.zeros(rec.shape), v = sf.zeros(rec.shape)}
          self.state[rec.name] = st
        end
        st.step = st.step + 1
        K.adam_step(rec.value, rec.grad, st.m, st.v, lr, o.beta1, o.beta2, o.eps, wd, o.decoupled, st.step)
      end
    elseif self.seen[rec.name] then
      if self.opts.on_change == "reset" then self.state[rec.name] = nil end
      self.seen[rec.name] = {trainable = false, lr_scale = rec.lr_scale}
    end
  end
end

function Optimizer:zero_grad() self.model:zero_grad() end

-- drop every record's state
function Optimizer:reset()
  self.state, self.seen = {}, {}
end

-- names of the records that hold state (for tests and reports)
function Optimizer:state_names()
  local out = {}
  for name in pairs(self.state) do out[#out + 1] = name end
  table.sort(out)
  return out
end

-- state_dict() -> name -> tensor table (for safetensors) plus a plain-table header
function Optimizer:state_dict()
  local tensors, meta = {}, {kind = self.kind, opts = self.opts, steps = {}}
  for name, st in pairs(self.state) do
    meta.steps[name] = st.step
    for _, k in ipairs{"buf", "m", "v"} do
      if st[k] then tensors["optim." .. name .. "." .. k] = st[k] end
    end
  end
  return tensors, meta
end

function Optimizer:load_state_dict(tensors, meta)
  if meta.kind ~= self.kind then
    error(string.format("load_state_dict: state is for optimizer '%s', this one is '%s'", tostring(meta.kind), self.kind), 2)
  end
  local state = {}
  for name, step in pairs(meta.steps) do
    local st = {step = step}
    for _, k in ipairs{"buf", "m", "v"} do
      local t = tensors["optim." .. name .. "." .. k]
      if t then st[k] = t:clone() end
    end
    state[name] = st
  end
  self.state = state
end

optim.Optimizer = Optimizer
return optim
