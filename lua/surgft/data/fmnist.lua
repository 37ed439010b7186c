-- Fashion-MNIST from its IDX files (Debian's dataset-fashion-mnist by default): [1,28,28] in [0,1].
local sf = require "surgft"
local dataset = require "surgft.data.dataset"

local M = {}

M.DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
M.CLASSES = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"}

local FILES = {train = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte"},
               test = {"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}}

-- The directory holding the IDX files: opts.path, else $SURGFT_DATA/fashion-mnist when it
-- holds them, else the Debian package's directory.
function M.dir(path)
  if path then return path end
  local root = dataset.data_root()
  if root then
    local d = root .. "/fashion-mnist"
    if dataset.exists(d .. "/" .. FILES.train[1] .. ".gz") or dataset.exists(d .. "/" .. FILES.train[1]) then return d end
  end
  return M.DEBIAN_DIR
end

local function find(dir, base)
  for _, name in ipairs{base .. ".gz", base} do
    local p = dir .. "/" .. name
    if dataset.exists(p) then return p end
  end
  error(string.format("fashion_mnist: no '%s.gz' (or '%s') in '%s'; install the Debian package " ..
                      "dataset-fashion-mnist, or set SURGFT_DATA to a directory holding fashion-mnist/, or pass path",
                      base, base, dir), 0)
end

-- decoded splits, kept for the life of the process: the suites reuse them (treat as read-only)
local cache = {}

local function load(dir, split)
  local key = dir .. "|" .. split
  if cache[key] then return cache[key].x, cache[key].y end
  local ip, lp = find(dir, FILES[split][1]), find(dir, FILES[split][2])
  local raw = sf.read_idx(ip)
  local s = raw:shape()
  if #s ~= 3 or s[2] ~= 28 or s[3] ~= 28 then
    error(string.format("fashion_mnist: '%s' has shape [%s], expected [N,28,28]", ip, table.concat(s, ",")), 0)
  end
  local y = sf.read_idx(lp)
  if y:dim() ~= 1 or y:size(1) ~= s[1] then
    error(string.format("fashion_mnist: '%s' has shape [%s], expected [%d] to match '%s'", lp,
                        table.concat(y:shape(), ","), s[1], ip), 0)
  end
  if y:numel() > 0 and (y:min() < 0 or y:max() > 9) then
    error(string.format("fashion_mnist: '%s' holds labels outside 0..9", lp), 0)
  end
  local x = raw:reshape{s[1], 1, 28, 28}:div_(255)
  y = y:add(1)
  cache[key] = {x = x, y = y}
  return x, y
end

--[[ sf.data.fashion_mnist{split = "train" | "test", path = dir} -> dataset of [1,28,28] images
in [0,1], labels 1..10 (M.CLASSES), meta.index = the row in the original file (1-based). ]]
function M.fashion_mnist(opts)
  opts = opts or {}
  local split = opts.split or "train"
  if not FILES[split] then error("fashion_mnist: split must be 'train' or 'test', got '" .. tostring(split) .. "'", 2) end
  local x, y = load(M.dir(opts.path), split)
  local index = {}
  for i = 1, x:size(1) do index[i] = i end
  return dataset.new{x = x, y = y, classes = M.CLASSES, meta = {index = index}, name = "fashion-mnist/" .. split}
end

return M
