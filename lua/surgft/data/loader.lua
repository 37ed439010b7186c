-- Batch iterator over a dataset: seeded shuffling, drop_last, random crop with padding,
-- horizontal flip and per-channel standardisation, all with tensor copies (no pixel loops).
local sf = require "surgft"
local dataset = require "surgft.data.dataset"

local M = {}

local Loader = {}
Loader.__index = Loader

local OPTIONS = {batch = true, shuffle = true, drop_last = true, rng = true, seed = true, augment = true,
                 standardize = true}

local function bad(fmt, ...) error("loader: " .. string.format(fmt, ...), 3) end

-- a per-channel list of C numbers from a number or a table of 1 or C numbers
local function per_channel(v, C, what)
  if type(v) == "number" then v = {v} end
  if type(v) ~= "table" or (#v ~= 1 and #v ~= C) then
    bad("standardize.%s must be a number or a table of 1 or %d numbers", what, C)
  end
  local out = {}
  for c = 1, C do
    out[c] = v[#v == 1 and 1 or c]
    if type(out[c]) ~= "number" then bad("standardize.%s[%d] is %s, expected a number", what, c, type(out[c])) end
    if what == "std" and not (out[c] > 0) then bad("standardize.std[%d] is %s, expected > 0", c, tostring(out[c])) end
  end
  return out
end

--[[ sf.data.loader(ds, {batch = 64, shuffle = true, drop_last = false, rng = sf.rng(seed) | seed = 0,
                        augment = {crop = 4, flip = true}, standardize = {mean = {..}, std = {..}}})
Iterate it directly, one epoch per loop, each epoch drawing a new order from the rng:
    for x, y, idx in loader do ... end      -- x [B,C,H,W], y [B] (1-based floats), idx {dataset indices}
or use loader:epoch() for an explicit iterator. #loader is the number of batches per epoch.
Batches are fresh tensors: keeping one is safe. ]]
function M.new(ds, opts)
  if type(ds) ~= "table" or getmetatable(ds) ~= dataset.Dataset then
    error("bad argument #1 to 'loader' (dataset expected, got " .. type(ds) .. ")", 2)
  end
  opts = opts or {}
  if type(opts) ~= "table" then error("bad argument #2 to 'loader' (options table expected, got " .. type(opts) .. ")", 2) end
  for k in pairs(opts) do
    if not OPTIONS[k] then bad("unknown option '%s' (options: augment, batch, drop_last, rng, seed, shuffle, standardize)", tostring(k)) end
  end
  local self = setmetatable({ds = ds}, Loader)
  self.batch = opts.batch or 64
  if math.type(self.batch) ~= "integer" or self.batch < 1 then bad("batch must be a positive integer, got %s", tostring(self.batch)) end
  self.shuffle = opts.shuffle ~= false
  self.drop_last = opts.drop_last == true
  if opts.rng ~= nil and opts.seed ~= nil then bad("give rng or seed, not both") end
  self.rng = opts.rng or sf.rng(opts.seed or 0)
  local C, H, W = table.unpack(ds:shape())
  local aug = opts.augment
  if aug then
    if type(aug) ~= "table" then bad("augment must be a table {crop = pad, flip = bool}, got %s", type(aug)) end
    for k in pairs(aug) do if k ~= "crop" and k ~= "flip" then bad("unknown augment option '%s' (crop, flip)", tostring(k)) end end
    local pad = aug.crop or 0
    if math.type(pad) ~= "integer" or pad < 0 then bad("augment.crop (the padding) must be a non-negative integer, got %s", tostring(pad)) end
    self.crop = pad > 0 and pad or nil
    self.flip = aug.flip == true
  end
  local st = opts.standardize
  if st then
    if type(st) ~= "table" then bad("standardize must be a table {mean = .., std = ..}, got %s", type(st)) end
    local mean, std = per_channel(st.mean, C, "mean"), per_channel(st.std, C, "std")
    local m, s = sf.empty{1, C, 1, 1}, sf.empty{1, C, 1, 1}
    for c = 1, C do
      m:set(1, c, 1, 1, mean[c])
      s:set(1, c, 1, 1, std[c])
    end
    self.mean, self.std = m, s
  end
  self._H, self._W = H, W
  return self
end

function Loader:__len()
  local n, b = self.ds:size(), self.batch
  return self.drop_last and n // b or (n + b - 1) // b
end
Loader.batches = Loader.__len

-- the visiting order of one epoch (advances the rng when shuffling)
function Loader:order()
  local n = self.ds:size()
  if self.shuffle then return self.rng:permutation(n) end
  local o = {}
  for i = 1, n do o[i] = i end
  return o
end

-- in place on x [B,C,H,W]: a random HxW window of x zero-padded by pad on each side
local function random_crop(x, pad, rng)
  local B, C, H, W = x:size(1), x:size(2), x:size(3), x:size(4)
  local padded = sf.zeros{B, C, H + 2 * pad, W + 2 * pad}
  padded:narrow(3, pad + 1, H):narrow(4, pad + 1, W):copy(x)
  for b = 1, B do
    local dy, dx = rng:random(0, 2 * pad), rng:random(0, 2 * pad)
    x:select(1, b):copy(padded:select(1, b):narrow(2, dy + 1, H):narrow(3, dx + 1, W))
  end
end

-- in place on x [B,C,H,W]: each image mirrored left-right with probability 1/2
local function random_flip(x, rng)
  local B, W = x:size(1), x:size(4)
  local which = {}
  for b = 1, B do if rng:random(0, 1) == 1 then which[#which + 1] = b end end
  if #which == 0 then return end
  -- mirror the whole batch one column at a time (W copies), then take the chosen images
  local mirrored = sf.empty(x:shape())
  for w = 1, W do mirrored:narrow(4, w, 1):copy(x:narrow(4, W - w + 1, 1)) end
  for _, b in ipairs(which) do x:select(1, b):copy(mirrored:select(1, b)) end
end

-- the batch of the dataset items idx (a Lua array): x [B,C,H,W], y [B]
function Loader:make_batch(idx)
  local ds = self.ds
  local x = ds:gather(idx)
  local labels, yl = ds:labels(), {}
  for k = 1, #idx do yl[k] = labels[idx[k]] end
  local y = sf.tensor(yl)
  if self.crop then random_crop(x, self.crop, self.rng) end
  if self.flip then random_flip(x, self.rng) end
  if self.mean then
    local s = x:shape()
    x:sub_(self.mean:expand(s)):div_(self.std:expand(s))
  end
  return x, y
end

-- loader:epoch() -> iterator of x, y, idx over one epoch
function Loader:epoch()
  local order = self:order()
  local n, b = #order, self.batch
  local pos = 0
  return function()
    if pos >= n then return nil end
    local m = math.min(b, n - pos)
    if m < b and self.drop_last then return nil end
    local idx = table.move(order, pos + 1, pos + m, 1, {})
    pos = pos + m
    local x, y = self:make_batch(idx)
    return x, y, idx
  end
end

-- `for x, y, idx in loader do`: the generic for calls the loader with a nil control value
-- first, which starts a new epoch; later calls continue it.
function Loader:__call(_, control)
  if control == nil or not self._it then self._it = self:epoch() end
  local x, y, idx = self._it()
  if x == nil then self._it = nil end
  return x, y, idx
end

function Loader:__tostring()
  return string.format("surgft.Loader over '%s': %d batches of %d%s%s%s%s", self.ds.name, #self, self.batch,
                       self.shuffle and ", shuffled" or "", self.crop and (", crop pad " .. self.crop) or "",
                       self.flip and ", flip" or "", self.mean and ", standardized" or "")
end

return M
