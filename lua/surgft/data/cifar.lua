-- CIFAR-10 (binary batches) and CIFAR-10-C (.npy per corruption) from a copy the user provides.
local sf = require "surgft"
local dataset = require "surgft.data.dataset"

local M = {}

M.CLASSES = {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"}

local function root_of(fn, root)
  root = dataset.data_root(root)
  if not root then
    error(fn .. ": no data root: pass root = dir or set SURGFT_DATA (CIFAR-10 is not shipped with surgft)", 0)
  end
  return root
end

-- class names from batches.meta.txt when present (one per line), else the standard ten
local function class_names(dir)
  local f = io.open(dir .. "/batches.meta.txt", "r")
  if not f then return M.CLASSES end
  local names = {}
  for line in f:lines() do
    line = line:gsub("%s+$", "")
    if line ~= "" then names[#names + 1] = line end
  end
  f:close()
  return #names == 10 and names or M.CLASSES
end

--[[ sf.data.cifar10{split = "train" | "test", root = dir} reads
<root>/cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin (root defaults to $SURGFT_DATA):
images [3,32,32] in [0,1], labels 1..10. ]]
function M.cifar10(opts)
  opts = opts or {}
  local split = opts.split or "train"
  if split ~= "train" and split ~= "test" then error("cifar10: split must be 'train' or 'test', got '" .. tostring(split) .. "'", 2) end
  local dir = root_of("cifar10", opts.root) .. "/cifar-10-batches-bin"
  local files = {}
  if split == "train" then
    for b = 1, 5 do files[b] = dir .. "/data_batch_" .. b .. ".bin" end
  else
    files[1] = dir .. "/test_batch.bin"
  end
  for _, p in ipairs(files) do
    if not dataset.exists(p) then error("cifar10: missing file '" .. p .. "' (expected the CIFAR-10 binary version there)", 0) end
  end
  local xs, ys, n = {}, {}, 0
  for b, p in ipairs(files) do
    xs[b], ys[b] = sf.read_cifar(p)
    n = n + xs[b]:size(1)
  end
  local x, y = xs[1], ys[1]
  if #files > 1 then -- one tensor for all batches
    x, y = sf.empty{n, 3, 32, 32}, sf.empty{n}
    local pos = 1
    for b = 1, #files do
      local m = xs[b]:size(1)
      x:narrow(1, pos, m):copy(xs[b])
      y:narrow(1, pos, m):copy(ys[b])
      pos = pos + m
    end
  end
  return dataset.new{x = x, y = y:add(1), classes = class_names(dir), name = "cifar10/" .. split}
end

--[[ sf.data.cifar10c{corruption = "fog", severity = 1..5, root = dir} reads
<root>/CIFAR-10-C/<corruption>.npy ([50000,32,32,3] uint8, severities 1-5 stacked in
blocks of 10000) and labels.npy; returns the 10000 images of that severity. ]]
function M.cifar10c(opts)
  opts = opts or {}
  local c, s = opts.corruption, opts.severity or 5
  if type(c) ~= "string" then error("cifar10c: option 'corruption' (a name such as 'fog') is required", 2) end
  if math.type(s) ~= "integer" or s < 1 or s > 5 then error("cifar10c: severity must be an integer in 1..5, got " .. tostring(s), 2) end
  local dir = root_of("cifar10c", opts.root) .. "/CIFAR-10-C"
  local ip, lp = dir .. "/" .. c .. ".npy", dir .. "/labels.npy"
  for _, p in ipairs{ip, lp} do
    if not dataset.exists(p) then error("cifar10c: missing file '" .. p .. "' (expected the published CIFAR-10-C arrays there)", 0) end
  end
  local all = sf.read_npy(ip, {shape = {-1, 32, 32, 3}})
  local labels = sf.read_npy(lp, {shape = {all:size(1)}})
  local per = all:size(1) // 5
  if per * 5 ~= all:size(1) then
    error(string.format("cifar10c: '%s' has %d images, expected 5 severities of equal size", ip, all:size(1)), 0)
  end
  -- NHWC uint8 values -> NCHW in [0,1]
  local x = all:narrow(1, (s - 1) * per + 1, per):permute{1, 4, 2, 3}:contiguous():div_(255)
  local y = labels:narrow(1, (s - 1) * per + 1, per):add(1)
  return dataset.new{x = x, y = y, classes = M.CLASSES, name = string.format("cifar10c/%s-%d", c, s),
                     info = {corruption = c, severity = s}}
end

return M
