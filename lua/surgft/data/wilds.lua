-- Camelyon17-WILDS and FMoW-WILDS read from their published layouts (metadata CSV + PNGs),
-- with the official WILDS splits; the generated stand-ins are written in the same layouts.
local sf = require "surgft"
local dataset = require "surgft.data.dataset"

local M = {}

-- the dataset directory: <root>/<sub> when it holds the metadata file, else <root> itself
local function find_dir(fn, root, sub, meta)
  local r = dataset.data_root(root)
  if not r then
    error(string.format("%s: no data root: pass root = dir or set SURGFT_DATA (expected <root>/%s/%s)", fn, sub, meta), 0)
  end
  if dataset.exists(r .. "/" .. sub .. "/" .. meta) then return r .. "/" .. sub end
  if dataset.exists(r .. "/" .. meta) then return r end
  error(string.format("%s: no '%s' in '%s/%s' (nor in '%s')", fn, meta, r, sub, meta, r), 0)
end

local function int_of(fn, path, col, row, s)
  local v = math.tointeger(tonumber(s))
  if not v then error(string.format("%s: '%s' row %d: column '%s' is '%s', expected an integer", fn, path, row, col, s), 0) end
  return v
end

local function as_set(fn, what, v)
  if v == nil then return nil end
  if type(v) ~= "table" then v = {v} end
  local s = {}
  for _, x in ipairs(v) do s[x] = true end
  if next(s) == nil then error(fn .. ": option '" .. what .. "' is empty", 0) end
  return s
end

-- Options common to both sets, applied to the rows of the chosen split (a lazy dataset):
-- n_per_class / n (seeded subsample), then read every image unless lazy.
local function finish(fn, ds, opts)
  local rng = sf.rng(opts.seed or 0)
  if opts.n_per_class then
    ds = ds:subset(dataset.split_per_class(ds, {opts.n_per_class}, rng, fn)[1])
  elseif opts.n then
    if math.type(opts.n) ~= "integer" or opts.n < 0 then error(fn .. ": option 'n' must be a non-negative integer", 0) end
    if opts.n > ds:size() then error(string.format("%s: option 'n' = %d but the split has %d items", fn, opts.n, ds:size()), 0) end
    local perm = rng:permutation(ds:size())
    local idx = table.move(perm, 1, opts.n, 1, {})
    table.sort(idx)
    ds = ds:subset(idx)
  end
  local lazy = opts.lazy
  if lazy == nil then -- in memory unless it would take more than 4 GiB of floats
    local s = ds:shape()
    lazy = ds:size() * s[1] * s[2] * s[3] * 4 > (4 << 30)
  end
  if not lazy then ds:tensors() end
  return ds
end

-- a dataset read on demand over keys (paths relative to dir); the shape comes from the first image
local function lazy_set(dir, keys, labels, classes, meta, name)
  local function read(rel) return sf.read_png(dir .. "/" .. rel) end
  local shape = {3, 1, 1}
  if #keys > 0 then shape = read(keys[1]):shape() end
  if #shape ~= 3 or shape[1] ~= 3 then
    error(string.format("%s: '%s' has shape [%s], expected an RGB image", name, dir .. "/" .. keys[1], table.concat(shape, ",")), 0)
  end
  return dataset.new{read = read, keys = keys, shape = shape, y = labels, classes = classes, meta = meta, name = name}
end

M.CAMELYON_SPLITS = {train = true, id_val = true, val = true, test = true}

--[[ sf.data.camelyon17{root = dir, split = "train" | "id_val" | "val" | "test" (or a list),
                       hospitals = {centers}, n_per_class = k | n = k, seed = 0, lazy = bool,
                       val_center = 1, test_center = 2}
Reads <root>/camelyon17_v1.0/metadata.csv (or <root>/metadata.csv) and the patches
patches/patient_<p>_node_<n>/patch_patient_<p>_node_<n>_x_<x>_y_<y>.png. The official
WILDS split (0-based center ids, as in the metadata): val (OOD) = center 1, test (OOD) =
center 2; the other centers (0, 3, 4) form train (split column 0) and id_val (split 1).
Labels: 1 = normal, 2 = tumor. meta: hospital (= center), slide, patient, node, split. ]]
function M.camelyon17(opts)
  local fn = "camelyon17"
  opts = opts or {}
  local dir = find_dir(fn, opts.root, "camelyon17_v1.0", "metadata.csv")
  local path = dir .. "/metadata.csv"
  local csv = sf.read_csv(path, {require = {"patient", "node", "x_coord", "y_coord", "tumor", "center", "split"},
                                 numbers = false})
  local c = csv.columns
  local val_c, test_c = opts.val_center or 1, opts.test_center or 2
  local want = as_set(fn, "split", opts.split or "train")
  for s in pairs(want) do
    if not M.CAMELYON_SPLITS[s] then error(fn .. ": unknown split '" .. tostring(s) .. "' (train, id_val, val, test)", 0) end
  end
  local hospitals = as_set(fn, "hospitals", opts.hospitals)
  local keys, labels = {}, {}
  local meta = {hospital = {}, slide = {}, patient = {}, node = {}, split = {}}
  for i = 1, csv.nrows do
    local center = int_of(fn, path, "center", i, c.center[i])
    local split
    if center == val_c then split = "val"
    elseif center == test_c then split = "test"
    else
      local s = int_of(fn, path, "split", i, c.split[i])
      split = s == 0 and "train" or s == 1 and "id_val" or nil
      if not split then error(string.format("%s: '%s' row %d: split is %d, expected 0 (train) or 1 (id_val)", fn, path, i, s), 0) end
    end
    if want[split] and (not hospitals or hospitals[center]) then
      local tumor = int_of(fn, path, "tumor", i, c.tumor[i])
      if tumor ~= 0 and tumor ~= 1 then error(string.format("%s: '%s' row %d: tumor is %d, expected 0 or 1", fn, path, i, tumor), 0) end
      local p, nd = c.patient[i], c.node[i]
      local k = #keys + 1
      keys[k] = string.format("patches/patient_%s_node_%s/patch_patient_%s_node_%s_x_%s_y_%s.png", p, nd, p, nd,
                              c.x_coord[i], c.y_coord[i])
      labels[k] = tumor + 1
      meta.hospital[k] = center
      meta.slide[k] = c.slide and int_of(fn, path, "slide", i, c.slide[i]) or -1
      meta.patient[k] = p
      meta.node[k] = int_of(fn, path, "node", i, nd)
      meta.split[k] = split
    end
  end
  local ds = lazy_set(dir, keys, labels, {"normal", "tumor"}, meta, "camelyon17")
  return finish(fn, ds, opts)
end

M.FMOW_SPLITS = {train = true, id_val = true, id_test = true, val = true, test = true}

-- country code -> region from <dir>/country_code_mapping.csv (columns alpha-3, region)
local function region_map(fn, dir)
  local p = dir .. "/country_code_mapping.csv"
  if not dataset.exists(p) then return nil, p end
  local m = sf.read_csv(p, {require = {"alpha-3", "region"}, numbers = false})
  local map = {}
  for i = 1, m.nrows do map[m.columns["alpha-3"][i]] = m.columns.region[i] end
  return map, p
end

--[[ sf.data.fmow{root = dir, split = "train" | "id_val" | "id_test" | "val" | "test" (or a list),
                 regions = {names}, n_per_class = k | n = k, seed = 0, lazy = bool, test_year = 2016}
Reads <root>/fmow_v1.1/rgb_metadata.csv (or <root>/rgb_metadata.csv) and images/rgb_img_<i>.png,
where i is the 0-based row of the metadata file. Rows with split 'seq' are dropped. The
official WILDS split by time: train = split 'train' before 2013; val (OOD) = split 'val' in
2013-2015; test (OOD) = split 'test' in 2016 and later; id_val / id_test = split 'val' /
'test' before 2013. Region: the 'region' column when the file has one, else the country
code mapped through country_code_mapping.csv ('Other' when unmapped), as WILDS does.
Classes: the sorted category names of the whole file (the 62 WILDS categories on the real
set), or opts.classes. meta: region, year (calendar), split, index (image number). ]]
function M.fmow(opts)
  local fn = "fmow"
  opts = opts or {}
  local dir = find_dir(fn, opts.root, "fmow_v1.1", "rgb_metadata.csv")
  local path = dir .. "/rgb_metadata.csv"
  local csv = sf.read_csv(path, {require = {"split", "category", "timestamp"}, numbers = false})
  local c = csv.columns
  local regions_of = c.region
  local map, map_path
  if not regions_of then
    if not c.country_code then
      error(string.format("%s: '%s' has neither a 'region' nor a 'country_code' column", fn, path), 0)
    end
    map, map_path = region_map(fn, dir)
    if not map then error(string.format("%s: '%s' has no 'region' column and '%s' is missing", fn, path, map_path), 0) end
  end
  local test_year = opts.test_year or 2016
  local want = as_set(fn, "split", opts.split or "train")
  for s in pairs(want) do
    if not M.FMOW_SPLITS[s] then error(fn .. ": unknown split '" .. tostring(s) .. "' (train, id_val, id_test, val, test)", 0) end
  end
  local regions = as_set(fn, "regions", opts.regions)
  -- classes: every category of the file, sorted (byte order), unless given
  local classes = opts.classes
  if not classes then
    local seen = {}
    classes = {}
    for i = 1, csv.nrows do
      local k = c.category[i]
      if not seen[k] then seen[k] = true; classes[#classes + 1] = k end
    end
    table.sort(classes)
  end
  local class_id = {}
  for k, name in ipairs(classes) do class_id[name] = k end
  local keys, labels = {}, {}
  local meta = {region = {}, year = {}, split = {}, index = {}}
  for i = 1, csv.nrows do
    local s = c.split[i]
    if s ~= "seq" then
      if s ~= "train" and s ~= "val" and s ~= "test" then
        error(string.format("%s: '%s' row %d: split is '%s', expected train, val, test or seq", fn, path, i, s), 0)
      end
      local year = math.tointeger(tonumber(c.timestamp[i]:match("^(%d%d%d%d)")))
      if not year then
        error(string.format("%s: '%s' row %d: timestamp '%s' does not start with a year", fn, path, i, c.timestamp[i]), 0)
      end
      local split
      if year >= test_year then split = s == "test" and "test" or nil
      elseif year >= test_year - 3 then split = s == "val" and "val" or nil
      else split = s == "train" and "train" or s == "val" and "id_val" or "id_test" end
      local region = regions_of and regions_of[i] or map[c.country_code[i]] or "Other"
      if split and want[split] and (not regions or regions[region]) then
        local y = class_id[c.category[i]]
        if not y then error(string.format("%s: '%s' row %d: category '%s' is not among the classes", fn, path, i, c.category[i]), 0) end
        local k = #keys + 1
        keys[k] = string.format("images/rgb_img_%d.png", i - 1)
        labels[k] = y
        meta.region[k] = region
        meta.year[k] = year
        meta.split[k] = split
        meta.index[k] = i - 1
      end
    end
  end
  local ds = lazy_set(dir, keys, labels, classes, meta, "fmow")
  return finish(fn, ds, opts)
end

return M
