-- Generated stand-ins for Camelyon17-WILDS and FMoW-WILDS, written on disk in the real WILDS
-- layouts (so sf.data.camelyon17 / sf.data.fmow read them), cached under data/generated/,
-- regenerated when missing or when the generator version, seed or size options change.
-- The pixels and the generative story are in C: src/data/synth_camelyon.c, synth_fmow.c.
local sf = require "surgft"

local M = {}

-- Bump when the pixels or the metadata of a generator change: cached sets are regenerated.
M.VERSION = {camelyon = 1, fmow = 1}

M.CAMELYON_DEFAULTS = {size = 32, n_per_center = 1000, slides_per_center = 5, seed = 0}
M.FMOW_DEFAULTS = {size = 32, seed = 0, n = {train = 3000, id_val = 400, id_test = 400, val = 800, test = 800}}

local STAMP = "SYNTH_STAMP"

-- ---- files and directories ----

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write_file(fn, path, s)
  local f, err = io.open(path, "wb")
  if not f then error(fn .. ": cannot write '" .. path .. "': " .. tostring(err), 0) end
  local ok, werr = f:write(s)
  f:close()
  if not ok then error(fn .. ": cannot write '" .. path .. "': " .. tostring(werr), 0) end
end

local function mkdir(fn, path)
  local ok, err = sf.synth.mkdir(path)
  if not ok then error(fn .. ": " .. err, 0) end
end

local function mkdir_p(fn, path)
  local acc = path:sub(1, 1) == "/" and "" or "."
  for part in path:gmatch("[^/]+") do
    acc = acc == "." and part or acc .. "/" .. part
    mkdir(fn, acc)
  end
end

-- "/a/b/../c" -> "/a/c" (only for absolute paths; relative ones are kept as they are)
local function normalise(path)
  if path:sub(1, 1) ~= "/" then return path end
  local parts = {}
  for part in path:gmatch("[^/]+") do
    if part == ".." then
      parts[#parts] = nil
    elseif part ~= "." then
      parts[#parts + 1] = part
    end
  end
  return "/" .. table.concat(parts, "/")
end

-- The repository root when this file runs from a source checkout (<repo>/lua/surgft/data/),
-- else nil (an installed copy).
local function repo_root()
  local src = debug.getinfo(1, "S").source
  local path = src:sub(1, 1) == "@" and src:sub(2) or package.searchpath("surgft.data.synth", package.path)
  if not path then return nil end
  local dir = normalise(path):match("^(.*)lua/surgft/data/synth%.lua$")
  if not dir then return nil end
  dir = dir == "" and "." or dir:gsub("/$", "")
  if dir == "" then dir = "/" end
  if exists(dir .. "/meson.build") then return dir end
  return nil
end

--[[ M.default_root(name): where a generated set lives unless the caller passes root:
<repo>/data/generated/<name> in a source checkout, else $XDG_CACHE_HOME/surgft/generated/<name>
(~/.cache/... when unset). ]]
function M.default_root(name)
  local repo = repo_root()
  if repo then return repo .. "/data/generated/" .. name end
  local cache = os.getenv("XDG_CACHE_HOME")
  if not cache or cache == "" then
    local home = os.getenv("HOME")
    if not home or home == "" then error("synth: no repository, XDG_CACHE_HOME or HOME to hold generated data: pass root", 0) end
    cache = home .. "/.cache"
  end
  return cache .. "/surgft/generated/" .. name
end

--[[ Build <root>/<sub> atomically: when its stamp equals `stamp` it is kept; otherwise
write(tmpdir) fills a fresh temporary directory beside it, the stamp is written last and the
directory renamed over <root>/<sub>. A failure (or a crash) leaves no <root>/<sub> half
written: only a .tmp directory, removed on error. ]]
local function build(fn, root, sub, stamp, write, quiet)
  mkdir_p(fn, root)
  local final = root .. "/" .. sub
  if read_file(final .. "/" .. STAMP) == stamp then return false end
  local tmp, err = sf.synth.mkdtemp(root .. "/." .. sub .. ".tmp-")
  if not tmp then error(fn .. ": " .. err, 0) end
  local t0 = os.clock()
  local ok, werr = pcall(write, tmp)
  if ok then ok, werr = pcall(write_file, fn, tmp .. "/" .. STAMP, stamp) end
  if not ok then
    sf.synth.rmtree(tmp)
    error(werr, 0)
  end
  -- move a stale copy out of the way, then put the new one in place
  local old
  if exists(final) then
    old = assert(sf.synth.mkdtemp(root .. "/." .. sub .. ".old-"))
    local rok, rerr = os.rename(final, old .. "/" .. sub)
    if not rok then
      sf.synth.rmtree(tmp)
      sf.synth.rmtree(old)
      error(fn .. ": cannot move the stale '" .. final .. "' away: " .. tostring(rerr), 0)
    end
  end
  local rok, rerr = os.rename(tmp, final)
  if not rok then
    sf.synth.rmtree(tmp)
    if old then sf.synth.rmtree(old) end
    -- another process may have finished the same set first
    if read_file(final .. "/" .. STAMP) ~= stamp then
      error(fn .. ": cannot rename '" .. tmp .. "' to '" .. final .. "': " .. tostring(rerr), 0)
    end
    return false
  end
  if old then sf.synth.rmtree(old) end
  if not quiet then
    io.stderr:write(string.format("%s: generated '%s' in %.1f s (CPU)\n", fn, final, os.clock() - t0))
  end
  return true
end

-- ---- options ----

local function check_options(fn, opts, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(fn .. ": options must be a table, got " .. type(opts), 3) end
  for k in pairs(opts) do
    if not allowed[k] then
      local names = {}
      for n in pairs(allowed) do names[#names + 1] = n end
      table.sort(names)
      error(string.format("%s: unknown option '%s' (options: %s)", fn, tostring(k), table.concat(names, ", ")), 3)
    end
  end
  return opts
end

local function int_opt(fn, opts, name, def, lo, hi)
  local v = opts[name]
  if v == nil then return def end
  if math.type(v) ~= "integer" or v < lo or v > hi then
    error(string.format("%s: option '%s' must be an integer in [%d, %d], got %s", fn, name, lo, hi, tostring(v)), 3)
  end
  return v
end

local function root_opt(fn, opts, default_name)
  local r = opts.root
  if r == nil then return M.default_root(default_name) end
  if type(r) ~= "string" or r == "" then error(fn .. ": option 'root' must be a non-empty string", 3) end
  return r
end

-- Tests set M._fail_after = n to make a writer raise after n images (atomicity checks).
M._fail_after = nil
local function maybe_fail(fn, count)
  if M._fail_after and count >= M._fail_after then error(fn .. ": injected failure after " .. count .. " images (test hook)", 0) end
end

-- a reproducible per-item generator: seeds of different items and data sets never coincide
local function item_rng(seed, salt, i)
  return sf.rng(seed * 0x100000001B3 + salt * 0x9E3779B1 + i)
end

-- ---- camelyon-synth ----

local TRAIN_CENTERS = {[0] = true, [3] = true, [4] = true} -- WILDS: val (OOD) = 1, test (OOD) = 2

--[[ M.camelyon{root = dir, size = 32, n_per_center = 1000 | {n0, n1, n2, n3, n4},
               slides_per_center = 5, seed = 0, quiet = false} -> root, dataset dir
Writes <root>/camelyon17_v1.0/metadata.csv (columns: an unnamed index, patient, node,
x_coord, y_coord, tumor, slide, center, split) and
patches/patient_<ppp>_node_<n>/patch_patient_<ppp>_node_<n>_x_<x>_y_<y>.png, unless a copy
with the same stamp is there. Read it with sf.data.camelyon17{root = root, split = ...}.
Centers are the WILDS ids 0..4 (n_per_center as a table lists them in that order); as in
WILDS, centers 0, 3, 4 are the training hospitals (split 0 = train, about 10% split 1 =
id_val), center 1 the OOD validation and center 2 the OOD test hospital, whose stain
differs most. Patients are numbered 20 * center + slide-in-center, as on the real set. ]]
function M.camelyon(opts)
  local fn = "camelyon"
  opts = check_options(fn, opts, {root = true, size = true, n_per_center = true, slides_per_center = true,
                                  seed = true, quiet = true})
  local d = M.CAMELYON_DEFAULTS
  local size = int_opt(fn, opts, "size", d.size, 8, 512)
  local seed = int_opt(fn, opts, "seed", d.seed, 0, math.maxinteger)
  local slides = int_opt(fn, opts, "slides_per_center", d.slides_per_center, 1, 10)
  local n = opts.n_per_center or d.n_per_center
  local counts = {}
  if math.type(n) == "integer" then
    for c = 1, 5 do counts[c] = n end
  elseif type(n) == "table" and #n == 5 then
    for c = 1, 5 do counts[c] = n[c] end
  else
    error(fn .. ": option 'n_per_center' must be an integer or a table of 5 integers (centers 0..4), got " .. tostring(n), 2)
  end
  for c = 1, 5 do
    if math.type(counts[c]) ~= "integer" or counts[c] < 0 or counts[c] > 1000000 then
      error(string.format("%s: option 'n_per_center': center %d has %s patches, expected an integer in [0, 1000000]",
                          fn, c - 1, tostring(counts[c])), 2)
    end
  end
  local root = root_opt(fn, opts, "camelyon-synth-" .. size)
  local stamp = string.format("generator camelyon-synth\nversion %d\nseed %d\nsize %d\nn_per_center %s\nslides_per_center %d\n",
                              M.VERSION.camelyon, seed, size, table.concat(counts, ","), slides)

  local function write(dir)
    mkdir(fn, dir .. "/patches")
    local rng = sf.rng(seed)
    local lines = {",patient,node,x_coord,y_coord,tumor,slide,center,split"}
    local row = 0
    for center = 0, 4 do
      local prev = sf.synth.camelyon_prevalence(center)
      local nodes, made = {}, {}
      for j = 0, slides - 1 do
        nodes[j] = rng:random(0, 4)
        made[j] = 0
      end
      for i = 0, counts[center + 1] - 1 do
        local j = i % slides
        local patient, node, slide = string.format("%03d", 20 * center + j), nodes[j], 10 * center + j
        local k = made[j]
        made[j] = k + 1
        -- unique coordinates on the slide, on the 32-pixel grid of the real set
        local x, y = 32 * (60 + 3 * (k % 250)), 32 * (60 + 3 * (k // 250))
        local tumor = rng:uniform() < prev and 1 or 0
        local split = (TRAIN_CENTERS[center] and rng:uniform() < 0.1) and 1 or 0
        local sub = string.format("patient_%s_node_%d", patient, node)
        if k == 0 then mkdir(fn, dir .. "/patches/" .. sub) end
        local img = sf.synth.camelyon_patch(size, center, tumor, seed * 1000 + slide, item_rng(seed, 1, row))
        sf.write_png(string.format("%s/patches/%s/patch_%s_x_%d_y_%d.png", dir, sub, sub, x, y), img)
        lines[#lines + 1] = string.format("%d,%s,%d,%d,%d,%d,%d,%d,%d", row, patient, node, x, y, tumor, slide, center, split)
        row = row + 1
        maybe_fail(fn, row)
      end
    end
    write_file(fn, dir .. "/metadata.csv", table.concat(lines, "\n") .. "\n")
  end

  build(fn, root, "camelyon17_v1.0", stamp, write, opts.quiet)
  return root, root .. "/camelyon17_v1.0"
end

-- ---- fmow-synth ----

-- countries per region (name, alpha-2, alpha-3, lat, lon); "Other" uses codes the mapping
-- file does not list, as unmapped codes become "Other" in WILDS
local COUNTRIES = {
  Asia = {{"China", "CN", "CHN", 32, 110}, {"India", "IN", "IND", 22, 79}, {"Japan", "JP", "JPN", 36, 138},
          {"Indonesia", "ID", "IDN", -3, 115}, {"Thailand", "TH", "THA", 15, 101}},
  Europe = {{"France", "FR", "FRA", 46, 2}, {"Germany", "DE", "DEU", 51, 10}, {"United Kingdom", "GB", "GBR", 53, -1},
            {"Italy", "IT", "ITA", 43, 12}, {"Spain", "ES", "ESP", 40, -4}},
  Africa = {{"Nigeria", "NG", "NGA", 9, 8}, {"Kenya", "KE", "KEN", 0, 38}, {"South Africa", "ZA", "ZAF", -29, 24},
            {"Egypt", "EG", "EGY", 27, 30}, {"Ethiopia", "ET", "ETH", 9, 39}},
  Americas = {{"United States", "US", "USA", 38, -97}, {"Brazil", "BR", "BRA", -10, -52}, {"Mexico", "MX", "MEX", 23, -102},
              {"Canada", "CA", "CAN", 56, -106}, {"Argentina", "AR", "ARG", -34, -64}},
  Oceania = {{"Australia", "AU", "AUS", -25, 134}, {"New Zealand", "NZ", "NZL", -41, 174}, {"Fiji", "FJ", "FJI", -18, 178},
             {"Papua New Guinea", "PG", "PNG", -6, 147}},
  Other = {{"Antarctica", "AQ", "ATA", -75, 0}, {"United States Minor Outlying Islands", "UM", "UMI", 19, 166}},
}

-- the WILDS splits: the metadata split value and the years each is drawn from
local FMOW_SPLITS = {
  {name = "train", value = "train", years = {2002, 2012}},
  {name = "id_val", value = "val", years = {2002, 2012}},
  {name = "id_test", value = "test", years = {2002, 2012}},
  {name = "val", value = "val", years = {2013, 2015}},
  {name = "test", value = "test", years = {2016, 2017}},
}

local function draw(rng, p)
  local u, acc = rng:uniform(), 0
  for i = 1, #p do
    acc = acc + p[i]
    if u < acc then return i end
  end
  return #p
end

--[[ M.fmow{root = dir, size = 32, n = {train = 3000, id_val = 400, id_test = 400, val = 800,
           test = 800}, seed = 0, quiet = false} -> root, dataset dir
Writes <root>/fmow_v1.1/rgb_metadata.csv (split, img_filename, img_path, category, visible,
img_width, img_height, country_code, timestamp, lat, lon, region), country_code_mapping.csv
(name, alpha-2, alpha-3, region) and images/rgb_img_<i>.png (i = 0-based row), unless a copy
with the same stamp is there. Read it with sf.data.fmow{root = root, split = ...}. The split
counts follow WILDS: train, id_val, id_test from 2002-2012 (split values train, val, test),
val (OOD) from 2013-2015, test (OOD) from 2016-2017; n may give some of them (the others
keep their defaults). Rows are in random order, as images of all splits are mixed. ]]
function M.fmow(opts)
  local fn = "fmow"
  opts = check_options(fn, opts, {root = true, size = true, n = true, seed = true, quiet = true})
  local d = M.FMOW_DEFAULTS
  local size = int_opt(fn, opts, "size", d.size, 8, 512)
  local seed = int_opt(fn, opts, "seed", d.seed, 0, math.maxinteger)
  local counts = {}
  for k, v in pairs(d.n) do counts[k] = v end
  if opts.n ~= nil then
    if type(opts.n) ~= "table" then error(fn .. ": option 'n' must be a table of split counts, got " .. type(opts.n), 2) end
    for k, v in pairs(opts.n) do
      if counts[k] == nil then
        error(fn .. ": option 'n' has an unknown split '" .. tostring(k) .. "' (train, id_val, id_test, val, test)", 2)
      end
      if math.type(v) ~= "integer" or v < 0 or v > 1000000 then
        error(string.format("%s: option 'n': split '%s' has %s images, expected an integer in [0, 1000000]", fn, k, tostring(v)), 2)
      end
      counts[k] = v
    end
  end
  local root = root_opt(fn, opts, "fmow-synth-" .. size)
  local count_str = {}
  for _, s in ipairs(FMOW_SPLITS) do count_str[#count_str + 1] = s.name .. "=" .. counts[s.name] end
  local stamp = string.format("generator fmow-synth\nversion %d\nseed %d\nsize %d\nn %s\n", M.VERSION.fmow, seed, size,
                              table.concat(count_str, ","))

  local function write(dir)
    mkdir(fn, dir .. "/images")
    local classes, regions = sf.synth.fmow_classes(), sf.synth.fmow_regions()
    local rng = sf.rng(seed)
    -- draw every item's metadata first, then shuffle the rows
    local items = {}
    for _, s in ipairs(FMOW_SPLITS) do
      local y0, y1 = s.years[1], s.years[2]
      local yw, ysum = {}, 0 -- more imagery in later years, as on the real set
      for y = y0, y1 do
        yw[#yw + 1] = y - 2000
        ysum = ysum + y - 2000
      end
      for i = 1, #yw do yw[i] = yw[i] / ysum end
      for _ = 1, counts[s.name] do
        local year = y0 + draw(rng, yw) - 1
        local region = draw(rng, sf.synth.fmow_region_prior(year))
        local cls = draw(rng, sf.synth.fmow_class_prior(region, year))
        local cs = COUNTRIES[regions[region]]
        local country = cs[rng:random(1, #cs)]
        items[#items + 1] = {
          split = s.value, year = year, region = region, cls = cls, country = country,
          time = string.format("%04d-%02d-%02dT%02d:%02d:%02dZ", year, rng:random(1, 12), rng:random(1, 28),
                               rng:random(0, 23), rng:random(0, 59), rng:random(0, 59)),
          lat = country[4] + rng:normal(0, 2), lon = country[5] + rng:normal(0, 2),
        }
      end
    end
    local perm = rng:permutation(#items)
    local lines = {"split,img_filename,img_path,category,visible,img_width,img_height,country_code,timestamp,lat,lon,region"}
    local per_class = {}
    for idx = 0, #items - 1 do
      local it = items[perm[idx + 1]]
      local cat = classes[it.cls]
      local k = per_class[cat] or 0
      per_class[cat] = k + 1
      local img = sf.synth.fmow_tile(size, it.cls, it.region, it.year, item_rng(seed, 2, idx))
      sf.write_png(string.format("%s/images/rgb_img_%d.png", dir, idx), img)
      maybe_fail(fn, idx + 1)
      local file = string.format("%s_%d_0_rgb.jpg", cat, k)
      lines[#lines + 1] = string.format("%s,%s,%s/%s/%s_%d/%s,%s,True,%d,%d,%s,%s,%.5f,%.5f,%s", it.split, file, it.split, cat,
                                        cat, k, file, cat, size, size, it.country[3], it.time, it.lat, it.lon,
                                        regions[it.region])
    end
    write_file(fn, dir .. "/rgb_metadata.csv", table.concat(lines, "\n") .. "\n")
    local map = {"name,alpha-2,alpha-3,region"}
    for _, r in ipairs(regions) do
      if r ~= "Other" then
        for _, c in ipairs(COUNTRIES[r]) do map[#map + 1] = string.format("%s,%s,%s,%s", c[1], c[2], c[3], r) end
      end
    end
    write_file(fn, dir .. "/country_code_mapping.csv", table.concat(map, "\n") .. "\n")
  end

  build(fn, root, "fmow_v1.1", stamp, write, opts.quiet)
  return root, root .. "/fmow_v1.1"
end

return M
