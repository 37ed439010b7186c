-- Dataset objects: images [N,C,H,W] and 1-based labels in memory (or read on demand),
-- class names and per-example metadata columns; subsets, per-class sampling, row gathers.
local sf = require "surgft"

local M = {}

local Dataset = {}
Dataset.__index = Dataset
M.Dataset = Dataset

local function fail(fn, fmt, ...) error(fn .. ": " .. string.format(fmt, ...), 3) end

local function shape_str(s) return "[" .. table.concat(s, ",") .. "]" end

-- Copies rows idx[1..n] of x (dim 1) into out[1..n]; consecutive indices become one
-- narrow copy, so an unshuffled or sorted gather costs a few C calls, not one per row.
function M.gather(x, idx, out)
  local n, k = #idx, 1
  while k <= n do
    local s, run = idx[k], 1
    while k + run <= n and idx[k + run] == s + run do run = run + 1 end
    out:narrow(1, k, run):copy(x:narrow(1, s, run))
    k = k + run
  end
  return out
end

--[[ sf.data.dataset{x = [N,C,H,W], y = [N] or {labels}, classes = {names}, meta = {col = array},
                     name = "..."}
  or, read on demand (for sets too large to hold in memory):
     sf.data.dataset{read = function(key) -> [C,H,W] end, keys = {key_1..key_N},
                     shape = {C,H,W}, y = ..., classes = ..., meta = ..., name = ...}
Labels are class ids 1..#classes (Lua convention), stored as floats. ]]
function M.new(o)
  local fn = "dataset"
  if type(o) ~= "table" then fail(fn, "expected a table of fields, got %s", type(o)) end
  local self = setmetatable({name = o.name or "dataset", classes = o.classes, meta = {}}, Dataset)
  local n
  if o.x ~= nil then
    if not sf.is_tensor(o.x) or o.x:dim() ~= 4 then
      fail(fn, "field 'x' must be a [N,C,H,W] tensor, got %s", sf.is_tensor(o.x) and shape_str(o.x:shape()) or type(o.x))
    end
    self.x = o.x
    n = o.x:size(1)
    self._shape = {o.x:size(2), o.x:size(3), o.x:size(4)}
  elseif o.read ~= nil then
    if type(o.read) ~= "function" or type(o.keys) ~= "table" or type(o.shape) ~= "table" or #o.shape ~= 3 then
      fail(fn, "a dataset read on demand needs 'read' (function), 'keys' (table) and 'shape' ({C,H,W})")
    end
    self._read, self._keys, self._shape = o.read, o.keys, {o.shape[1], o.shape[2], o.shape[3]}
    n = #o.keys
  else
    fail(fn, "needs field 'x' (a [N,C,H,W] tensor) or 'read' + 'keys' + 'shape'")
  end
  -- labels: a Lua array (fast per-item access, per-class sampling) and a tensor (batches)
  local ylist
  if sf.is_tensor(o.y) then
    if o.y:dim() ~= 1 or o.y:size(1) ~= n then
      fail(fn, "field 'y' has shape %s, expected [%d]", shape_str(o.y:shape()), n)
    end
    ylist = o.y:totable()
  elseif type(o.y) == "table" then
    ylist = o.y
    if #ylist ~= n then fail(fn, "field 'y' has %d labels, expected %d", #ylist, n) end
  else
    fail(fn, "field 'y' must be a tensor or a table of labels, got %s", type(o.y))
  end
  local nc = o.classes and #o.classes or 0
  for i = 1, n do
    local v = ylist[i]
    if math.type(v) ~= "integer" then
      if type(v) ~= "number" or v ~= math.floor(v) then fail(fn, "label %d is %s, expected an integer class id", i, tostring(v)) end
      v = math.tointeger(v)
    end
    if v < 1 or (nc > 0 and v > nc) then
      fail(fn, "label %d is %d, outside 1..%d", i, v, nc > 0 and nc or math.maxinteger)
    end
    ylist[i] = v
  end
  self._y = ylist
  self.y = sf.is_tensor(o.y) and o.y or (n > 0 and sf.tensor(ylist) or sf.zeros{0})
  if not self.classes then
    local m = 0
    for i = 1, n do if ylist[i] > m then m = ylist[i] end end
    self.classes = {}
    for c = 1, m do self.classes[c] = tostring(c) end
  end
  for k, col in pairs(o.meta or {}) do
    if type(col) ~= "table" or #col ~= n then
      fail(fn, "meta column '%s' has %s entries, expected %d", tostring(k), type(col) == "table" and #col or type(col), n)
    end
    self.meta[k] = col
  end
  self._n = n
  self.info = o.info
  return self
end

function Dataset:size() return self._n end
Dataset.__len = Dataset.size

-- {C,H,W} of every image
function Dataset:shape() return {self._shape[1], self._shape[2], self._shape[3]} end

-- true when images are read from disk on demand rather than held in memory
function Dataset:lazy() return self.x == nil end

local function check_index(self, i, fn)
  if math.type(i) ~= "integer" then
    if type(i) ~= "number" or i ~= math.floor(i) then
      error(string.format("bad argument #1 to '%s' (integer index expected, got %s)", fn, tostring(i)), 3)
    end
    i = math.tointeger(i)
  end
  if i < 1 or i > self._n then
    error(string.format("bad argument #1 to '%s' (index %d out of range 1..%d)", fn, i, self._n), 3)
  end
  return i
end

-- the image of item i: a view into the dataset's tensor (in memory) or a fresh read
function Dataset:image(i)
  i = check_index(self, i, "image")
  if self.x then return self.x:select(1, i) end
  local img = self._read(self._keys[i])
  local s = img:shape()
  if #s ~= 3 or s[1] ~= self._shape[1] or s[2] ~= self._shape[2] or s[3] ~= self._shape[3] then
    error(string.format("%s: item %d (%s) has shape %s, expected %s", self.name, i, tostring(self._keys[i]),
                        shape_str(s), shape_str(self._shape)), 2)
  end
  return img
end

-- ds:get(i) -> image [C,H,W], label (1-based integer), metadata {column = value}
function Dataset:get(i)
  i = check_index(self, i, "get")
  local m = {}
  for k, col in pairs(self.meta) do m[k] = col[i] end
  return self:image(i), self._y[i], m
end

function Dataset:label(i) return self._y[check_index(self, i, "label")] end

-- the labels as a Lua array (shared: do not modify)
function Dataset:labels() return self._y end

-- Images of items idx (a Lua array of 1-based indices) into a new [#idx,C,H,W] tensor.
function Dataset:gather(idx, out)
  local n = #idx
  out = out or sf.empty{n, self._shape[1], self._shape[2], self._shape[3]}
  if self.x then
    for k = 1, n do check_index(self, idx[k], "gather") end
    return M.gather(self.x, idx, out)
  end
  for k = 1, n do out:select(1, k):copy(self:image(idx[k])) end
  return out
end

-- ds:tensors() -> x [N,C,H,W], y [N] (labels 1-based floats); reads every image of a lazy set
function Dataset:tensors()
  if not self.x then
    local all = {}
    for i = 1, self._n do all[i] = i end
    self.x = self:gather(all)
  end
  return self.x, self.y
end

-- ds:subset(indices) -> a new dataset of those items, in that order (images copied when in memory)
function Dataset:subset(idx, name)
  if type(idx) ~= "table" then error("bad argument #1 to 'subset' (table of indices expected, got " .. type(idx) .. ")", 2) end
  local n = #idx
  local y, meta = {}, {}
  for k = 1, n do y[k] = self._y[check_index(self, idx[k], "subset")] end
  for key, col in pairs(self.meta) do
    local c = {}
    for k = 1, n do c[k] = col[idx[k]] end
    meta[key] = c
  end
  local o = {y = y, classes = self.classes, meta = meta, name = name or self.name, info = self.info}
  if self.x then
    o.x = n > 0 and self:gather(idx) or sf.empty{0, self._shape[1], self._shape[2], self._shape[3]}
  else
    local keys = {}
    for k = 1, n do keys[k] = self._keys[idx[k]] end
    o.read, o.keys, o.shape = self._read, keys, self._shape
  end
  return M.new(o)
end

-- the same items with other images (e.g. corrupted); x must have this dataset's shape
function Dataset:with_images(x, name)
  local s = x:shape()
  if #s ~= 4 or s[1] ~= self._n then
    error(string.format("bad argument #1 to 'with_images' (shape %s, expected [%d,C,H,W])", shape_str(s), self._n), 2)
  end
  return M.new{x = x, y = self._y, classes = self.classes, meta = self.meta, name = name or self.name, info = self.info}
end

-- {[class id] = {indices}} in increasing index order
function Dataset:by_class()
  local out = {}
  for c = 1, #self.classes do out[c] = {} end
  for i = 1, self._n do
    local l = out[self._y[i]]
    l[#l + 1] = i
  end
  return out
end

-- number of items per class id
function Dataset:class_counts()
  local out = {}
  for c = 1, #self.classes do out[c] = 0 end
  for i = 1, self._n do out[self._y[i]] = out[self._y[i]] + 1 end
  return out
end

function Dataset:__tostring()
  return string.format("surgft.Dataset '%s': %d items of %s, %d classes%s", self.name, self._n, shape_str(self._shape),
                       #self.classes, self.x and "" or " (read on demand)")
end

-- Per-channel mean and standard deviation (population) over the whole set, as Lua arrays;
-- ready for loader{standardize = {mean = .., std = ..}}.
function M.stats(ds)
  local x = ds:tensors()
  local mean, std = {}, {}
  for c = 1, x:size(2) do
    local xc = x:select(2, c)
    mean[c] = xc:mean()
    std[c] = xc:std({ddof = 0})
  end
  return mean, std
end

--[[ Seeded per-class sampling over a labels array (class ids 1..nclasses): for each class,
its positions are shuffled by rng and cut into consecutive pieces of the sizes in counts
(integers; at most one "rest" = all that the others leave). Returns one sorted list of
positions per piece: disjoint by construction. Errors when a class has too few items. ]]
function M.split_labels(labels, classes, counts, rng, fn)
  fn = fn or "split_per_class"
  local byc = {}
  for c = 1, #classes do byc[c] = {} end
  for i = 1, #labels do
    local l = byc[labels[i]]
    l[#l + 1] = i
  end
  local fixed, rests = 0, 0
  local want = {}
  for p = 1, #counts do
    if counts[p] == "rest" then rests = rests + 1
    else
      want[p] = math.type(counts[p]) == "integer" and counts[p] or math.tointeger(counts[p])
      if not want[p] or want[p] < 0 then
        error(string.format("%s: per-class count %s is not a non-negative integer", fn, tostring(counts[p])), 2)
      end
      fixed = fixed + want[p]
    end
  end
  if rests > 1 then error(fn .. ": at most one per-class count may be 'rest'", 2) end
  local pieces = {}
  for p = 1, #counts do pieces[p] = {} end
  for c = 1, #byc do
    local idx = byc[c]
    if fixed > #idx then
      error(string.format("%s: class %d ('%s') has %d items, %d requested", fn, c, classes[c], #idx, fixed), 2)
    end
    local perm = rng:permutation(#idx)
    local pos = 0
    for p = 1, #counts do
      local piece, n = pieces[p], want[p] or (#idx - fixed)
      for k = pos + 1, pos + n do piece[#piece + 1] = idx[perm[k]] end
      pos = pos + n
    end
  end
  for p = 1, #counts do table.sort(pieces[p]) end
  return pieces
end

-- the same over a dataset's labels: pieces of dataset indices
function M.split_per_class(ds, counts, rng, fn)
  return M.split_labels(ds:labels(), ds.classes, counts, rng, fn)
end

-- ---- paths ----

function M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- a directory exists (and is readable) when a file can be opened inside it or it opens itself
function M.is_dir(path)
  local f = io.open(path, "rb")
  if not f then return false end
  local ok, _, code = f:read(1)
  f:close()
  return ok == nil and code == 21 -- EISDIR
end

-- The root of the real data sets: the option when given, else $SURGFT_DATA, else nil.
function M.data_root(root)
  if root ~= nil then return root end
  local env = os.getenv("SURGFT_DATA")
  if env and env ~= "" then return env end
  return nil
end

return M
