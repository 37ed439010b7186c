-- Pictures of the shifts: PNG grids of examples, so that a person can see what changes.
--
--   surgft-lua experiments/pictures.lua [out_dir = runs/pictures] [size = 32]
--
-- Writes under out_dir:
--   camelyon_hospitals.png  one row per hospital of camelyon-synth (WILDS centers 0..4:
--                           0, 3, 4 train; 1 OOD val; 2 OOD test), normal patches on the
--                           left half, tumour patches on the right half
--   fmow_regions.png        one row per region of fmow-synth, one column per class
--   fmow_years.png          one row per sensor era (2004, 2008, 2012, 2014, 2017), one column per class
--   fmnist_corruptions.png  Fashion-MNIST: per row one corruption, clean then severities 1-5
--                           (when sf.corrupt and the Debian Fashion-MNIST files are available)
-- Images under 64 px are enlarged 2x (nearest neighbour). The generated sets come from
-- surgft.data.synth (cached under data/generated/).
local sf = require "surgft"
local synth = require "surgft.data.synth"

local out = arg and arg[1] or "runs/pictures"
local size = math.tointeger(tonumber(arg and arg[2] or "32") or 32) or 32
local PAD = 2

local function mkdir_p(path)
  local acc = path:sub(1, 1) == "/" and "" or "."
  for part in path:gmatch("[^/]+") do
    acc = acc == "." and part or acc .. "/" .. part
    assert(sf.synth.mkdir(acc))
  end
end

-- nearest-neighbour enlargement of a [C,h,w] image by an integer factor
local function enlarge(img, f)
  if f == 1 then return img end
  local c, h, w = img:size(1), img:size(2), img:size(3)
  return img:reshape{c, h, 1, w, 1}:expand{c, h, f, w, f}:contiguous():reshape{c, h * f, w * f}
end

-- rows: a list of lists of [C,h,w] images (C = 1 or 3; gray is repeated), each enlarged
-- scale times; a nil entry stays blank. Returns [3,H,W] on a white background.
local function grid(rows, h, w, scale)
  scale = scale or 1
  for _, r in ipairs(rows) do
    for j = 1, #r do
      if r[j] then r[j] = enlarge(r[j], scale) end
    end
  end
  h, w = h * scale, w * scale
  local ncol = 0
  for _, r in ipairs(rows) do ncol = math.max(ncol, #r) end
  local H, W = #rows * (h + PAD) + PAD, ncol * (w + PAD) + PAD
  local g = sf.ones{3, H, W}
  for i, r in ipairs(rows) do
    for j = 1, ncol do
      local img = r[j]
      if img then
        if img:size(1) == 1 then img = img:expand{3, h, w} end
        g:narrow(2, PAD + (i - 1) * (h + PAD) + 1, h):narrow(3, PAD + (j - 1) * (w + PAD) + 1, w):copy(img)
      end
    end
  end
  return g
end

local function save(name, img)
  local path = out .. "/" .. name
  sf.write_png(path, img)
  print("wrote " .. path)
end

mkdir_p(out)

-- ---- camelyon-synth: each hospital ----
do
  local _, dir = synth.camelyon{size = size}
  local csv = sf.read_csv(dir .. "/metadata.csv", {numbers = false})
  local c = csv.columns
  local per = 6 -- normal and tumour examples per row
  local rows = {}
  for center = 0, 4 do
    local normal, tumour = {}, {}
    for i = 1, csv.nrows do
      if tonumber(c.center[i]) == center then
        local list = c.tumor[i] == "1" and tumour or normal
        if #list < per then
          local p, n = c.patient[i], c.node[i]
          list[#list + 1] = sf.read_png(string.format("%s/patches/patient_%s_node_%s/patch_patient_%s_node_%s_x_%s_y_%s.png",
                                                      dir, p, n, p, n, c.x_coord[i], c.y_coord[i]))
        end
      end
    end
    local row = {}
    for j = 1, per do row[j] = normal[j] end
    for j = 1, per do row[per + 1 + j] = tumour[j] end -- one blank column between the halves
    rows[#rows + 1] = row
  end
  save("camelyon_hospitals.png", grid(rows, size, size, size < 64 and 2 or 1))
  print("  rows: centers 0 (train), 1 (OOD val), 2 (OOD test), 3 (train), 4 (train); left normal, right tumour")
end

-- ---- fmow-synth: each region (rows) by class (columns), and each sensor era ----
do
  local classes, regions = sf.synth.fmow_classes(), sf.synth.fmow_regions()
  local _, dir = synth.fmow{size = size}
  local csv = sf.read_csv(dir .. "/rgb_metadata.csv", {numbers = false})
  local c = csv.columns
  local first = {} -- region -> class -> first image index
  for i = 1, csv.nrows do
    local r, k = c.region[i], c.category[i]
    first[r] = first[r] or {}
    first[r][k] = first[r][k] or i - 1
  end
  local rows = {}
  for ri, r in ipairs(regions) do
    rows[ri] = {}
    for ci, k in ipairs(classes) do
      local idx = first[r] and first[r][k]
      if idx then rows[ri][ci] = sf.read_png(string.format("%s/images/rgb_img_%d.png", dir, idx)) end
    end
  end
  save("fmow_regions.png", grid(rows, size, size, size < 64 and 2 or 1))
  print("  rows: " .. table.concat(regions, ", ") .. "; columns: " .. table.concat(classes, ", "))
  -- the same scene seed across eras: only the year changes (content density and sensor)
  rows = {}
  for yi, year in ipairs{2004, 2008, 2012, 2014, 2017} do
    rows[yi] = {}
    for ci = 1, #classes do rows[yi][ci] = sf.synth.fmow_tile(size, ci, 4, year, sf.rng(1000 + ci)) end
  end
  save("fmow_years.png", grid(rows, size, size, size < 64 and 2 or 1))
  print("  rows: 2004, 2008, 2012, 2014, 2017 (region Americas, same scene seed per column)")
end

-- ---- Fashion-MNIST: clean vs each corruption and severity ----
do
  local ok, ds = pcall(function() return sf.data.fashion_mnist{split = "test"} end)
  if not ok then
    print("skipping Fashion-MNIST corruptions: " .. tostring(ds))
  elseif not sf.corrupt or not sf.corruptions then
    print("skipping Fashion-MNIST corruptions: sf.corrupt is not available")
  else
    local img = ds:image(1)
    local rows, names = {}, sf.corruptions("all")
    for _, name in ipairs(names) do
      local row = {img}
      for s = 1, 5 do row[s + 1] = sf.corrupt(img, name, s, sf.rng(s)) end
      rows[#rows + 1] = row
    end
    save("fmnist_corruptions.png", grid(rows, 28, 28, 2))
    print("  rows: " .. table.concat(names, ", ") .. "; columns: clean, severity 1..5")
  end
end
