-- Generated stand-ins (camelyon-synth, fmow-synth): layout, determinism, what differs
-- between hospitals, labels and eras, the stamp cache, atomic writes, error contracts.
local lu = require "luaunit"
local sf = require "surgft"
local synth = require "surgft.data.synth"

local function read_bytes(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- entries of a directory (names, sorted), hidden ones included
local function listdir(dir)
  local p = assert(io.popen("ls -A '" .. dir .. "'"))
  local out = {}
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  table.sort(out)
  return out
end

local function tmpdir()
  return assert(sf.synth.mkdtemp("/tmp/surgft-test-synth-"))
end

local SMALL_CAM = {size = 16, n_per_center = 4, slides_per_center = 2, seed = 3, quiet = true}
local SMALL_FMOW = {size = 16, n = {train = 6, id_val = 2, id_test = 2, val = 3, test = 3}, seed = 5, quiet = true}

local function with(opts, extra)
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local function cam_path(dir, c, i)
  local p, n = c.patient[i], c.node[i]
  return string.format("%s/patches/patient_%s_node_%s/patch_patient_%s_node_%s_x_%s_y_%s.png", dir, p, n, p, n,
                       c.x_coord[i], c.y_coord[i])
end

-- ---------------------------------------------------------------- camelyon-synth

TestCamelyonSynth = {}

function TestCamelyonSynth:setUp() self.root = tmpdir() end
function TestCamelyonSynth:tearDown()
  synth._fail_after = nil
  sf.synth.rmtree(self.root)
end

function TestCamelyonSynth:testLayoutAndColumns()
  local root, dir = synth.camelyon(with(SMALL_CAM, {root = self.root}))
  lu.assertEquals(root, self.root)
  lu.assertEquals(dir, self.root .. "/camelyon17_v1.0")
  lu.assertEquals(listdir(self.root), {"camelyon17_v1.0"}) -- no temporary directory left
  local csv = sf.read_csv(dir .. "/metadata.csv", {numbers = false})
  lu.assertEquals(csv.header, {"", "patient", "node", "x_coord", "y_coord", "tumor", "slide", "center", "split"})
  lu.assertEquals(csv.nrows, 20)
  local c = csv.columns
  local per_center, seen = {}, {}
  for i = 1, csv.nrows do
    lu.assertEquals(c[""][i], tostring(i - 1))
    local center = tonumber(c.center[i])
    per_center[center] = (per_center[center] or 0) + 1
    lu.assertStrMatches(c.patient[i], "%d%d%d")
    lu.assertEquals(tonumber(c.patient[i]) // 20, center) -- patients 20c .. 20c+19, as on the real set
    lu.assertEquals(tonumber(c.slide[i]) // 10, center)
    lu.assertTrue(c.tumor[i] == "0" or c.tumor[i] == "1")
    if center == 1 or center == 2 then lu.assertEquals(c.split[i], "0") end
    lu.assertTrue(c.split[i] == "0" or c.split[i] == "1")
    local p = cam_path(dir, c, i)
    lu.assertNil(seen[p], "duplicate patch path " .. p)
    seen[p] = true
    local img = sf.read_png(p)
    lu.assertEquals(img:shape(), {3, 16, 16})
  end
  lu.assertEquals(per_center, {[0] = 4, [1] = 4, [2] = 4, [3] = 4, [4] = 4})
  lu.assertStrContains(read_bytes(dir .. "/SYNTH_STAMP"), "seed 3\n")
end

function TestCamelyonSynth:testTheLoaderReadsIt()
  if not (sf.data and sf.data.camelyon17) then lu.skip("sf.data.camelyon17 is not available") end
  local root = synth.camelyon(with(SMALL_CAM, {root = self.root, n_per_center = {6, 5, 7, 4, 3}}))
  local n = 0
  for _, s in ipairs{"train", "id_val"} do n = n + sf.data.camelyon17{root = root, split = s}:size() end
  lu.assertEquals(n, 6 + 4 + 3) -- centers 0, 3, 4
  lu.assertEquals(sf.data.camelyon17{root = root, split = "val"}:size(), 5) -- center 1
  local test = sf.data.camelyon17{root = root, split = "test"}
  lu.assertEquals(test:size(), 7) -- center 2
  lu.assertEquals(test:shape(), {3, 16, 16})
end

function TestCamelyonSynth:testDeterministicBytes()
  local a, b = tmpdir(), tmpdir()
  local _, da = synth.camelyon(with(SMALL_CAM, {root = a}))
  local _, db = synth.camelyon(with(SMALL_CAM, {root = b}))
  local meta = read_bytes(da .. "/metadata.csv")
  lu.assertEquals(read_bytes(db .. "/metadata.csv"), meta)
  local csv = sf.read_csv(da .. "/metadata.csv", {numbers = false})
  for i = 1, csv.nrows do
    lu.assertEquals(read_bytes(cam_path(db, csv.columns, i)), read_bytes(cam_path(da, csv.columns, i)))
  end
  -- another seed: other labels or other pixels
  local c2 = tmpdir()
  local _, dc = synth.camelyon(with(SMALL_CAM, {root = c2, seed = 4}))
  local csv2 = sf.read_csv(dc .. "/metadata.csv", {numbers = false})
  local differ = read_bytes(dc .. "/metadata.csv") ~= meta
  for i = 1, csv2.nrows do
    if not exists(cam_path(da, csv2.columns, i)) or read_bytes(cam_path(dc, csv2.columns, i)) ~= read_bytes(cam_path(da, csv2.columns, i)) then
      differ = true
    end
  end
  lu.assertTrue(differ)
  for _, d in ipairs{a, b, c2} do sf.synth.rmtree(d) end
end

function TestCamelyonSynth:testPatchIsDeterministicAndSeeded()
  local x = sf.synth.camelyon_patch(32, 0, 1, 11, sf.rng(7))
  lu.assertEquals(x:shape(), {3, 32, 32})
  lu.assertTrue(sf.equal(x, sf.synth.camelyon_patch(32, 0, 1, 11, sf.rng(7))))
  lu.assertFalse(sf.equal(x, sf.synth.camelyon_patch(32, 0, 1, 11, sf.rng(8))))
  lu.assertFalse(sf.equal(x, sf.synth.camelyon_patch(32, 0, 1, 12, sf.rng(7)))) -- another slide, another stain jitter
  lu.assertTrue(x:min() >= 0 and x:max() <= 1)
  lu.assertEquals(sf.synth.camelyon_patch(96, 4, 0, 1, sf.rng(1)):shape(), {3, 96, 96})
end

-- mean RGB over n patches of a hospital (both labels), and the share of dark (haematoxylin) pixels
local function hospital_stats(center, tumor, n)
  local m, dark = {0, 0, 0}, 0
  for i = 1, n do
    local t = tumor or (i % 2)
    local x = sf.synth.camelyon_patch(32, center, t, 100 + center * 10 + i % 3, sf.rng(1000 * center + i))
    for c = 1, 3 do m[c] = m[c] + x:select(1, c):mean() / n end
    dark = dark + x:select(1, 1):lt(0.5):mean() / n
  end
  return m, dark
end

local function dist(a, b) return math.sqrt((a[1] - b[1]) ^ 2 + (a[2] - b[2]) ^ 2 + (a[3] - b[3]) ^ 2) end

function TestCamelyonSynth:testHospitalsDifferInStainAndTheTargetMost()
  local m = {}
  for c = 0, 4 do m[c] = hospital_stats(c, nil, 24) end
  for a = 0, 4 do
    for b = a + 1, 4 do lu.assertTrue(dist(m[a], m[b]) > 0.02, string.format("centers %d and %d look alike", a, b)) end
  end
  local src = {}
  for k = 1, 3 do src[k] = (m[0][k] + m[3][k] + m[4][k]) / 3 end
  local d2, d1 = dist(m[2], src), dist(m[1], src)
  lu.assertTrue(d2 > d1, string.format("test center 2 (%.3f) should be further from the source mean than center 1 (%.3f)", d2, d1))
  for _, c in ipairs{0, 3, 4} do lu.assertTrue(d2 > dist(m[c], src)) end
end

function TestCamelyonSynth:testTumourHasMoreHaematoxylinOnAverage()
  for _, c in ipairs{0, 2} do
    local _, dn = hospital_stats(c, 0, 30)
    local _, dt = hospital_stats(c, 1, 30)
    lu.assertTrue(dt > dn + 0.08, string.format("center %d: dark share tumour %.3f vs normal %.3f", c, dt, dn))
  end
end

function TestCamelyonSynth:testStampKeepsOrRegenerates()
  local opts = with(SMALL_CAM, {root = self.root})
  local _, dir = synth.camelyon(opts)
  local marker = dir .. "/marker"
  assert(io.open(marker, "w")):close()
  synth.camelyon(opts) -- same stamp: kept
  lu.assertTrue(exists(marker))
  synth.camelyon(with(opts, {seed = 9})) -- other seed: regenerated
  lu.assertFalse(exists(marker))
  lu.assertStrContains(read_bytes(dir .. "/SYNTH_STAMP"), "seed 9\n")
  assert(io.open(marker, "w")):close()
  synth.camelyon(with(opts, {seed = 9, size = 24})) -- other size: regenerated
  lu.assertFalse(exists(marker))
  lu.assertEquals(sf.read_png(dir .. "/patches/" .. listdir(dir .. "/patches")[1] .. "/" ..
                              listdir(dir .. "/patches/" .. listdir(dir .. "/patches")[1])[1]):shape(), {3, 24, 24})
  -- a damaged stamp (e.g. another version) regenerates too
  local f = assert(io.open(dir .. "/SYNTH_STAMP", "w"))
  f:write("generator camelyon-synth\nversion 0\n")
  f:close()
  assert(io.open(marker, "w")):close()
  synth.camelyon(with(opts, {seed = 9, size = 24}))
  lu.assertFalse(exists(marker))
  lu.assertEquals(listdir(self.root), {"camelyon17_v1.0"})
end

function TestCamelyonSynth:testFailureLeavesNothingHalfWritten()
  synth._fail_after = 7
  lu.assertErrorMsgContains("camelyon: injected failure after 7 images", synth.camelyon, with(SMALL_CAM, {root = self.root}))
  lu.assertEquals(listdir(self.root), {}) -- the temporary directory is gone, no data set
  -- a failure while replacing a stale copy keeps the old copy whole
  synth._fail_after = nil
  local _, dir = synth.camelyon(with(SMALL_CAM, {root = self.root}))
  local stamp = read_bytes(dir .. "/SYNTH_STAMP")
  synth._fail_after = 3
  lu.assertErrorMsgContains("injected failure", synth.camelyon, with(SMALL_CAM, {root = self.root, seed = 99}))
  lu.assertEquals(read_bytes(dir .. "/SYNTH_STAMP"), stamp)
  lu.assertEquals(listdir(self.root), {"camelyon17_v1.0"})
end

function TestCamelyonSynth:testBadOptions()
  local r = self.root
  lu.assertErrorMsgContains("camelyon: unknown option 'sizes'", synth.camelyon, {root = r, sizes = 32})
  lu.assertErrorMsgContains("camelyon: option 'size' must be an integer in [8, 512], got 4", synth.camelyon, {root = r, size = 4})
  lu.assertErrorMsgContains("camelyon: option 'size' must be an integer in [8, 512], got 32.5", synth.camelyon,
                            {root = r, size = 32.5})
  lu.assertErrorMsgContains("camelyon: option 'seed' must be an integer", synth.camelyon, {root = r, seed = -1})
  lu.assertErrorMsgContains("camelyon: option 'n_per_center' must be an integer or a table of 5 integers", synth.camelyon,
                            {root = r, n_per_center = {1, 2}})
  lu.assertErrorMsgContains("camelyon: option 'n_per_center': center 2 has -1 patches", synth.camelyon,
                            {root = r, n_per_center = {1, 1, -1, 1, 1}})
  lu.assertErrorMsgContains("camelyon: option 'root' must be a non-empty string", synth.camelyon, {root = ""})
  lu.assertErrorMsgContains("camelyon: options must be a table", synth.camelyon, 5)
  lu.assertEquals(listdir(r), {})
end

function TestCamelyonSynth:testKernelErrors()
  local g = sf.rng(0)
  lu.assertErrorMsgContains("camelyon_patch: argument #2 (center) is 5, expected 0..4", sf.synth.camelyon_patch, 32, 5, 0, 1, g)
  lu.assertErrorMsgContains("camelyon_patch: argument #1 (size) is 4, expected 8..512", sf.synth.camelyon_patch, 4, 0, 0, 1, g)
  lu.assertErrorMsgContains("camelyon_patch: argument #3 (tumor) is 2, expected 0 or 1", sf.synth.camelyon_patch, 32, 0, 2, 1, g)
  lu.assertErrorMsgContains("bad argument #5 to 'camelyon_patch' (rng expected, got no value)", sf.synth.camelyon_patch, 32, 0, 0, 1)
  lu.assertErrorMsgContains("bad argument #1 to 'camelyon_patch' (integer expected, got 3.5)", sf.synth.camelyon_patch, 3.5, 0, 0, 1, g)
  lu.assertErrorMsgContains("bad argument #4 to 'camelyon_patch' (integer slide key expected, got string)", sf.synth.camelyon_patch,
                            32, 0, 0, "k", g)
  lu.assertErrorMsgContains("bad argument #5 to 'camelyon_patch' (rng expected, got table)", sf.synth.camelyon_patch, 32, 0, 0, 1, {})
  lu.assertErrorMsgContains("bad argument #1 to 'camelyon_prevalence' (center 9", sf.synth.camelyon_prevalence, 9)
  for c = 0, 4 do
    local p = sf.synth.camelyon_prevalence(c)
    lu.assertTrue(p > 0.4 and p < 0.6)
  end
end

-- ---------------------------------------------------------------- fmow-synth

TestFmowSynth = {}

function TestFmowSynth:setUp() self.root = tmpdir() end
function TestFmowSynth:tearDown()
  synth._fail_after = nil
  sf.synth.rmtree(self.root)
end

function TestFmowSynth:testLayoutAndColumns()
  local root, dir = synth.fmow(with(SMALL_FMOW, {root = self.root}))
  lu.assertEquals(root, self.root)
  lu.assertEquals(listdir(self.root), {"fmow_v1.1"})
  lu.assertEquals(listdir(dir), {"SYNTH_STAMP", "country_code_mapping.csv", "images", "rgb_metadata.csv"})
  local csv = sf.read_csv(dir .. "/rgb_metadata.csv", {numbers = false})
  for _, col in ipairs{"split", "img_filename", "category", "region", "timestamp", "country_code"} do
    lu.assertNotNil(csv.columns[col], "missing column " .. col)
  end
  lu.assertEquals(csv.nrows, 16)
  local classes, regions = {}, {}
  for _, k in ipairs(sf.synth.fmow_classes()) do classes[k] = true end
  for _, r in ipairs(sf.synth.fmow_regions()) do regions[r] = true end
  local map = sf.read_csv(dir .. "/country_code_mapping.csv", {numbers = false})
  local region_of = {}
  for i = 1, map.nrows do region_of[map.columns["alpha-3"][i]] = map.columns.region[i] end
  local c = csv.columns
  local n = {train = 0, val = 0, test = 0}
  local ood = {val = 0, test = 0}
  for i = 1, csv.nrows do
    lu.assertTrue(classes[c.category[i]], c.category[i])
    lu.assertTrue(regions[c.region[i]], c.region[i])
    lu.assertEquals(region_of[c.country_code[i]] or "Other", c.region[i])
    local year = tonumber(c.timestamp[i]:match("^(%d%d%d%d)%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$"))
    lu.assertNotNil(year, c.timestamp[i])
    lu.assertTrue(year >= 2002 and year <= 2017)
    local s = c.split[i]
    n[s] = n[s] + 1
    if s == "train" then lu.assertTrue(year <= 2012) end
    if year >= 2016 then lu.assertEquals(s, "test"); ood.test = ood.test + 1 end
    if year >= 2013 and year <= 2015 then lu.assertEquals(s, "val"); ood.val = ood.val + 1 end
    lu.assertEquals(sf.read_png(string.format("%s/images/rgb_img_%d.png", dir, i - 1)):shape(), {3, 16, 16})
  end
  lu.assertEquals(n, {train = 6, val = 2 + 3, test = 2 + 3})
  lu.assertEquals(ood, {val = 3, test = 3})
  lu.assertFalse(exists(string.format("%s/images/rgb_img_%d.png", dir, csv.nrows)))
end

function TestFmowSynth:testTheLoaderReadsIt()
  if not (sf.data and sf.data.fmow) then lu.skip("sf.data.fmow is not available") end
  local root = synth.fmow(with(SMALL_FMOW, {root = self.root}))
  local want = SMALL_FMOW.n
  for s, k in pairs(want) do lu.assertEquals(sf.data.fmow{root = root, split = s}:size(), k, s) end
  lu.assertEquals(sf.data.fmow{root = root, split = "train"}:shape(), {3, 16, 16})
end

function TestFmowSynth:testDeterministicBytes()
  local a, b, c = tmpdir(), tmpdir(), tmpdir()
  local _, da = synth.fmow(with(SMALL_FMOW, {root = a}))
  local _, db = synth.fmow(with(SMALL_FMOW, {root = b}))
  local _, dc = synth.fmow(with(SMALL_FMOW, {root = c, seed = 6}))
  lu.assertEquals(read_bytes(db .. "/rgb_metadata.csv"), read_bytes(da .. "/rgb_metadata.csv"))
  local same_c = read_bytes(dc .. "/rgb_metadata.csv") == read_bytes(da .. "/rgb_metadata.csv")
  for i = 0, 15 do
    local p = "/images/rgb_img_" .. i .. ".png"
    lu.assertEquals(read_bytes(db .. p), read_bytes(da .. p))
    same_c = same_c and read_bytes(dc .. p) == read_bytes(da .. p)
  end
  lu.assertFalse(same_c)
  for _, d in ipairs{a, b, c} do sf.synth.rmtree(d) end
end

function TestFmowSynth:testPriorsAndEras()
  for region = 1, 6 do
    for _, year in ipairs{2002, 2017} do
      local p, s = sf.synth.fmow_class_prior(region, year), 0
      lu.assertEquals(#p, 10)
      for _, v in ipairs(p) do s = s + v end
      lu.assertAlmostEquals(s, 1, 1e-12)
    end
  end
  -- Africa: more crop fields, fewer airports than the Americas
  local af, am = sf.synth.fmow_class_prior(3, 2010), sf.synth.fmow_class_prior(4, 2010)
  lu.assertTrue(af[2] > am[2] and af[1] < am[1])
  local q0, q1 = sf.synth.fmow_region_prior(2002), sf.synth.fmow_region_prior(2017)
  lu.assertTrue(q1[3] > q0[3]) -- Africa's share grows
  -- the sensor drifts: early tiles are hazier and bluer than late ones (same scenes)
  local function blue_minus_red(year)
    local s = 0
    for i = 1, 20 do
      local x = sf.synth.fmow_tile(24, (i % 10) + 1, 2, year, sf.rng(i))
      s = s + (x:select(1, 3):mean() - x:select(1, 1):mean()) / 20
    end
    return s
  end
  lu.assertTrue(blue_minus_red(2003) > blue_minus_red(2016) + 0.05)
end

function TestFmowSynth:testRegionsDifferInStyle()
  local function mean_rgb(region)
    local m = {0, 0, 0}
    for i = 1, 20 do
      local x = sf.synth.fmow_tile(24, (i % 10) + 1, region, 2010, sf.rng(i))
      for c = 1, 3 do m[c] = m[c] + x:select(1, c):mean() / 20 end
    end
    return m
  end
  local africa, europe = mean_rgb(3), mean_rgb(2)
  lu.assertTrue(africa[1] - africa[3] > europe[1] - europe[3] + 0.03) -- red laterite soil vs green-grey
end

function TestFmowSynth:testFailureLeavesNothingHalfWritten()
  synth._fail_after = 5
  lu.assertErrorMsgContains("fmow: injected failure after 5 images", synth.fmow, with(SMALL_FMOW, {root = self.root}))
  lu.assertEquals(listdir(self.root), {})
end

function TestFmowSynth:testStampKeepsOrRegenerates()
  local opts = with(SMALL_FMOW, {root = self.root})
  local _, dir = synth.fmow(opts)
  local marker = dir .. "/marker"
  assert(io.open(marker, "w")):close()
  synth.fmow(opts)
  lu.assertTrue(exists(marker))
  synth.fmow(with(opts, {n = {train = 7, id_val = 2, id_test = 2, val = 3, test = 3}}))
  lu.assertFalse(exists(marker))
  lu.assertEquals(sf.read_csv(dir .. "/rgb_metadata.csv").nrows, 17)
end

function TestFmowSynth:testBadOptionsAndKernelErrors()
  local r = self.root
  lu.assertErrorMsgContains("fmow: unknown option 'n_train'", synth.fmow, {root = r, n_train = 5})
  lu.assertErrorMsgContains("fmow: option 'n' has an unknown split 'ood'", synth.fmow, {root = r, n = {ood = 5}})
  lu.assertErrorMsgContains("fmow: option 'n': split 'val' has -2 images", synth.fmow, {root = r, n = {val = -2}})
  lu.assertErrorMsgContains("fmow: option 'n' must be a table", synth.fmow, {root = r, n = 5})
  lu.assertErrorMsgContains("fmow: option 'size' must be an integer in [8, 512], got 1000", synth.fmow, {root = r, size = 1000})
  lu.assertEquals(listdir(r), {})
  local g = sf.rng(0)
  lu.assertErrorMsgContains("bad argument #2 to 'fmow_tile' (class 11, expected 1..10)", sf.synth.fmow_tile, 32, 11, 1, 2010, g)
  lu.assertErrorMsgContains("bad argument #3 to 'fmow_tile' (region 0, expected 1..6)", sf.synth.fmow_tile, 32, 1, 0, 2010, g)
  lu.assertErrorMsgContains("fmow_tile: argument #4 (year) is 1999, expected 2002..2017", sf.synth.fmow_tile, 32, 1, 1, 1999, g)
  lu.assertErrorMsgContains("fmow_tile: argument #1 (size) is 7, expected 8..512", sf.synth.fmow_tile, 7, 1, 1, 2010, g)
  lu.assertErrorMsgContains("bad argument #5 to 'fmow_tile' (rng expected, got no value)", sf.synth.fmow_tile, 32, 1, 1, 2010)
  lu.assertErrorMsgContains("bad argument #4 to 'fmow_tile' (integer expected, got string)", sf.synth.fmow_tile, 32, 1, 1, "x", g)
  lu.assertErrorMsgContains("fmow_class_prior: argument #2 (year) is 2018", sf.synth.fmow_class_prior, 1, 2018)
  lu.assertErrorMsgContains("bad argument #1 to 'fmow_class_prior' (region 7", sf.synth.fmow_class_prior, 7, 2010)
  lu.assertErrorMsgContains("fmow_region_prior: argument #1 (year) is 2001", sf.synth.fmow_region_prior, 2001)
  local x = sf.synth.fmow_tile(32, 9, 4, 2012, sf.rng(3))
  lu.assertEquals(x:shape(), {3, 32, 32})
  lu.assertTrue(sf.equal(x, sf.synth.fmow_tile(32, 9, 4, 2012, sf.rng(3))))
  lu.assertTrue(x:min() >= 0 and x:max() <= 1)
end

-- ---------------------------------------------------------------- directories

TestSynthDirs = {}

function TestSynthDirs:testMkdirMkdtempRmtree()
  local d = tmpdir()
  lu.assertStrMatches(d, "/tmp/surgft%-test%-synth%-......")
  lu.assertTrue(sf.synth.mkdir(d .. "/a"))
  lu.assertTrue(sf.synth.mkdir(d .. "/a")) -- exists: fine
  assert(io.open(d .. "/a/f", "w")):close()
  local ok, msg = sf.synth.mkdir(d .. "/a/f")
  lu.assertNil(ok)
  lu.assertStrContains(msg, "cannot create directory '" .. d .. "/a/f'")
  ok, msg = sf.synth.mkdir(d .. "/missing/b")
  lu.assertNil(ok)
  lu.assertStrContains(msg, "No such file or directory")
  ok, msg = sf.synth.mkdtemp(d .. "/nope/x-")
  lu.assertNil(ok)
  lu.assertStrContains(msg, "cannot create a temporary directory")
  lu.assertTrue(sf.synth.rmtree(d))
  lu.assertFalse(exists(d))
  lu.assertTrue(sf.synth.rmtree(d)) -- absent: fine
  lu.assertErrorMsgContains("refusing to remove '/'", sf.synth.rmtree, "/")
end

function TestSynthDirs:testDefaultRootIsUnderTheRepository()
  local r = synth.default_root("camelyon-synth-32")
  lu.assertStrMatches(r, ".*data/generated/camelyon%-synth%-32")
  lu.assertFalse(r:find("/%.%./") ~= nil)
end

os.exit(lu.LuaUnit.run())
