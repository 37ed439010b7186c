-- sf.data: dataset objects, the batch loader (order, drop_last, augmentation,
-- standardisation) and the loaders of every real layout (Fashion-MNIST IDX, CIFAR-10
-- batches, CIFAR-10-C .npy, Camelyon17-WILDS, FMoW-WILDS), each read from small files this
-- suite writes to a temporary directory; error contracts for missing paths and columns.
local lu = require "luaunit"
local sf = require "surgft"
local D = sf.data

local FMNIST = "/usr/share/datasets/fashion-mnist"

-- ---- helpers ----

local tmpdir = os.tmpname()
os.remove(tmpdir)
assert(os.execute("mkdir -p '" .. tmpdir .. "'"))

local function mkdir(p) assert(os.execute("mkdir -p '" .. p .. "'")) end

local function write(p, bytes)
  local f = assert(io.open(p, "wb"))
  f:write(bytes)
  f:close()
  return p
end

local function errmsg(fn, ...)
  local ok, msg = pcall(fn, ...)
  lu.assertFalse(ok, "expected an error")
  return tostring(msg)
end

local function assertErrorContainsAll(fn, fragments, ...)
  local msg = errmsg(fn, ...)
  for _, f in ipairs(fragments) do lu.assertStrContains(msg, f) end
  return msg
end

local function range(n)
  local t = {}
  for i = 1, n do t[i] = i end
  return t
end

-- a small in-memory dataset: item i is filled with the value i (so images identify items)
local function numbered(n, C, H, W, classes)
  C, H, W = C or 1, H or 4, W or 4
  local x = sf.empty{n, C, H, W}
  local y, grp = {}, {}
  for i = 1, n do
    x:select(1, i):fill(i)
    y[i] = (i - 1) % (classes or 3) + 1
    grp[i] = "g" .. (i % 2)
  end
  return D.dataset{x = x, y = y, meta = {grp = grp}, name = "numbered"}
end

-- the item ids in a batch of numbered images: the value of the top-left pixel
local function ids_of(x)
  local out = {}
  for b = 1, x:size(1) do out[b] = math.floor(x:get(b, 1, 1, 1) + 0.5) end
  return out
end

-- ---- datasets ----

TestDataset = {}

function TestDataset:test_items_and_meta()
  local ds = numbered(7)
  lu.assertEquals(ds:size(), 7)
  lu.assertEquals(#ds, 7)
  lu.assertEquals(ds:shape(), {1, 4, 4})
  lu.assertEquals(ds.classes, {"1", "2", "3"})
  local img, label, meta = ds:get(5)
  lu.assertEquals(img:shape(), {1, 4, 4})
  lu.assertEquals(img:get(1, 2, 3), 5)
  lu.assertEquals(label, 2)
  lu.assertEquals(math.type(label), "integer")
  lu.assertEquals(meta, {grp = "g1"})
  lu.assertTrue(img:shares_storage(ds.x)) -- a view, no copy
  local x, y = ds:tensors()
  lu.assertEquals(x:shape(), {7, 1, 4, 4})
  lu.assertEquals(y:totable(), {1, 2, 3, 1, 2, 3, 1})
  lu.assertEquals(ds:class_counts(), {3, 2, 2})
  lu.assertEquals(ds:by_class(), {{1, 4, 7}, {2, 5}, {3, 6}})
  lu.assertStrContains(tostring(ds), "7 items of [1,4,4]")
end

function TestDataset:test_subset_copies_rows_labels_and_meta()
  local ds = numbered(7)
  local sub = ds:subset({6, 2, 3, 4})
  lu.assertEquals(sub:size(), 4)
  lu.assertEquals(ids_of(sub.x), {6, 2, 3, 4})
  lu.assertEquals(sub:labels(), {3, 2, 3, 1})
  lu.assertEquals(sub.meta.grp, {"g0", "g0", "g1", "g0"})
  lu.assertFalse(sub.x:shares_storage(ds.x))
  local empty = ds:subset({})
  lu.assertEquals(empty:size(), 0)
  lu.assertEquals(empty.x:shape(), {0, 1, 4, 4})
end

function TestDataset:test_tensor_labels_and_errors()
  local x = sf.zeros{3, 1, 2, 2}
  local ds = D.dataset{x = x, y = sf.tensor{1, 2, 2}, classes = {"a", "b"}}
  lu.assertEquals(ds:labels(), {1, 2, 2})
  lu.assertStrContains(errmsg(D.dataset, {x = sf.zeros{3, 2, 2}, y = {1, 1, 1}}), "field 'x' must be a [N,C,H,W] tensor, got [3,2,2]")
  lu.assertStrContains(errmsg(D.dataset, {x = x, y = {1, 1}}), "field 'y' has 2 labels, expected 3")
  lu.assertStrContains(errmsg(D.dataset, {x = x, y = sf.zeros{2}}), "field 'y' has shape [2], expected [3]")
  lu.assertStrContains(errmsg(D.dataset, {x = x, y = {1, 3, 1}, classes = {"a", "b"}}), "label 2 is 3, outside 1..2")
  lu.assertStrContains(errmsg(D.dataset, {x = x, y = {1, 0, 1}}), "label 2 is 0")
  lu.assertStrContains(errmsg(D.dataset, {x = x, y = {1, 1.5, 1}}), "label 2 is 1.5")
  lu.assertStrContains(errmsg(D.dataset, {x = x, y = {1, 1, 1}, meta = {h = {1, 2}}}), "meta column 'h' has 2 entries, expected 3")
  lu.assertStrContains(errmsg(D.dataset, {y = {1}}), "needs field 'x'")
  lu.assertStrContains(errmsg(function() return ds:get(4) end), "index 4 out of range 1..3")
  lu.assertStrContains(errmsg(function() return ds:get(0) end), "index 0 out of range")
  lu.assertStrContains(errmsg(function() return ds:subset({1, 9}) end), "index 9 out of range 1..3")
end

function TestDataset:test_split_per_class_sizes_disjoint_seeded()
  local ds = numbered(30) -- 10 items per class
  local a = D.split_per_class(ds, {2, 3, "rest"}, sf.rng(5))
  lu.assertEquals({#a[1], #a[2], #a[3]}, {6, 9, 15})
  local seen = {}
  for _, piece in ipairs(a) do
    for _, i in ipairs(piece) do
      lu.assertNil(seen[i], "item in two pieces")
      seen[i] = true
    end
  end
  lu.assertEquals(ds:subset(a[1]):class_counts(), {2, 2, 2})
  lu.assertEquals(D.split_per_class(ds, {2, 3, "rest"}, sf.rng(5)), a)
  lu.assertNotEquals(D.split_per_class(ds, {2, 3, "rest"}, sf.rng(6))[1], a[1])
  lu.assertStrContains(errmsg(D.split_per_class, ds, {8, 3}, sf.rng(0)), "class 1 ('1') has 10 items, 11 requested")
  lu.assertStrContains(errmsg(D.split_per_class, ds, {"rest", "rest"}, sf.rng(0)), "at most one")
  lu.assertStrContains(errmsg(D.split_per_class, ds, {-1}, sf.rng(0)), "not a non-negative integer")
end

function TestDataset:test_stats()
  local x = sf.empty{2, 2, 1, 2}
  x:select(2, 1):copy(sf.tensor{{{1, 3}}, {{5, 7}}})
  x:select(2, 2):fill(2)
  local mean, std = D.stats(D.dataset{x = x, y = {1, 1}})
  lu.assertAlmostEquals(mean[1], 4, 1e-6)
  lu.assertAlmostEquals(std[1], math.sqrt(5), 1e-6) -- population: (9 + 1 + 1 + 9) / 4
  lu.assertAlmostEquals(mean[2], 2, 1e-6)
  lu.assertAlmostEquals(std[2], 0, 1e-6)
end

-- ---- the loader ----

TestLoader = {}

function TestLoader:test_unshuffled_batches_in_order()
  local ds = numbered(10)
  local L = D.loader(ds, {batch = 4, shuffle = false})
  lu.assertEquals(#L, 3)
  local got, sizes = {}, {}
  for x, y, idx in L do
    sizes[#sizes + 1] = x:size(1)
    lu.assertEquals(x:shape(), {x:size(1), 1, 4, 4})
    lu.assertEquals(ids_of(x), idx)
    for k, i in ipairs(idx) do
      lu.assertEquals(y:get(k), ds:label(i))
      got[#got + 1] = i
    end
  end
  lu.assertEquals(sizes, {4, 4, 2})
  lu.assertEquals(got, range(10))
end

function TestLoader:test_drop_last()
  local L = D.loader(numbered(10), {batch = 4, shuffle = false, drop_last = true})
  lu.assertEquals(#L, 2)
  local n = 0
  for x in L do
    n = n + 1
    lu.assertEquals(x:size(1), 4)
  end
  lu.assertEquals(n, 2)
  lu.assertEquals(#D.loader(numbered(8), {batch = 4, drop_last = true}), 2)
  lu.assertEquals(#D.loader(numbered(8), {batch = 4}), 2)
end

local function epoch_order(L)
  local order = {}
  for x, _, idx in L do
    lu.assertEquals(ids_of(x), idx)
    for _, i in ipairs(idx) do order[#order + 1] = i end
  end
  return order
end

function TestLoader:test_shuffle_is_a_seeded_permutation_per_epoch()
  local ds = numbered(25)
  local L = D.loader(ds, {batch = 7, seed = 3})
  local e1, e2 = epoch_order(L), epoch_order(L)
  local s1 = table.move(e1, 1, #e1, 1, {})
  table.sort(s1)
  lu.assertEquals(s1, range(25)) -- every item exactly once
  lu.assertNotEquals(e1, range(25))
  lu.assertNotEquals(e1, e2) -- a new order each epoch
  local M = D.loader(ds, {batch = 7, rng = sf.rng(3)})
  lu.assertEquals(epoch_order(M), e1) -- same seed, same orders
  lu.assertEquals(epoch_order(M), e2)
  lu.assertNotEquals(epoch_order(D.loader(ds, {batch = 7, seed = 4})), e1)
end

function TestLoader:test_epoch_iterator_and_early_break()
  local ds = numbered(9)
  local L = D.loader(ds, {batch = 2, shuffle = false})
  for _ in L do break end -- an abandoned epoch does not leak into the next loop
  lu.assertEquals(epoch_order(L), range(9))
  local it, n = L:epoch(), 0
  while it() do n = n + 1 end
  lu.assertEquals(n, 5)
  lu.assertStrContains(tostring(L), "5 batches of 2")
end

function TestLoader:test_standardize_values()
  local x = sf.empty{2, 2, 1, 2}
  x:select(2, 1):copy(sf.tensor{{{1, 3}}, {{5, 7}}})
  x:select(2, 2):copy(sf.tensor{{{0, 1}}, {{2, 4}}})
  local ds = D.dataset{x = x, y = {1, 2}}
  local L = D.loader(ds, {batch = 2, shuffle = false, standardize = {mean = {4, 1}, std = {2, 0.5}}})
  local xb = L:epoch()()
  lu.assertEquals(xb:select(2, 1):totable(), {{{-1.5, -0.5}}, {{0.5, 1.5}}})
  lu.assertEquals(xb:select(2, 2):totable(), {{{-2, 0}}, {{2, 6}}})
  lu.assertEquals(x:get(1, 1, 1, 1), 1) -- the dataset is untouched
  local one = D.loader(ds, {batch = 2, shuffle = false, standardize = {mean = 1, std = 2}}):epoch()()
  lu.assertEquals(one:select(2, 2):totable(), {{{-0.5, 0}}, {{0.5, 1.5}}})
end

function TestLoader:test_crop_is_a_seeded_zero_padded_shift()
  -- one bright pixel per image: after a crop it moves by the same (dy, dx) <= pad or leaves
  local n, H, W, pad = 12, 6, 6, 2
  local x = sf.zeros{n, 1, H, W}
  for i = 1, n do x:set(i, 1, 3, 4, 1) end
  local ds = D.dataset{x = x, y = range(n)}
  local L = D.loader(ds, {batch = 5, seed = 1, augment = {crop = pad}})
  local moved = 0
  for xb, _, idx in L do
    lu.assertEquals(xb:shape(), {#idx, 1, H, W})
    for b = 1, #idx do
      local img = xb:select(1, b)
      lu.assertTrue(img:sum() <= 1)
      if img:sum() == 1 then
        local flat = img:reshape{-1}:argmax()
        local r, c = (flat - 1) // W + 1, (flat - 1) % W + 1
        lu.assertTrue(math.abs(r - 3) <= pad and math.abs(c - 4) <= pad)
        if r ~= 3 or c ~= 4 then moved = moved + 1 end
      end
    end
  end
  lu.assertTrue(moved > 0)
  -- same seed, same crops
  local a = D.loader(ds, {batch = 12, seed = 9, augment = {crop = pad}}):epoch()()
  local b = D.loader(ds, {batch = 12, seed = 9, augment = {crop = pad}}):epoch()()
  local c = D.loader(ds, {batch = 12, seed = 10, augment = {crop = pad}}):epoch()()
  lu.assertEquals(a:max_abs_diff(b), 0)
  lu.assertTrue(a:max_abs_diff(c) > 0)
end

function TestLoader:test_flip_mirrors_some_images()
  local n, W = 16, 5
  local x = sf.empty{n, 2, 3, W}
  for i = 1, n do
    for w = 1, W do x:select(1, i):narrow(3, w, 1):fill(10 * i + w) end
  end
  local ds = D.dataset{x = x, y = range(n)}
  local xb, _, idx = D.loader(ds, {batch = n, seed = 2, augment = {flip = true}}):epoch()()
  lu.assertEquals(xb:shape(), {n, 2, 3, W})
  local flipped = 0
  for b = 1, n do
    local i = idx[b]
    local first = xb:get(b, 2, 3, 1)
    if first == 10 * i + W then
      flipped = flipped + 1
      for w = 1, W do lu.assertEquals(xb:get(b, 1, 2, w), 10 * i + W - w + 1) end
    else
      for w = 1, W do lu.assertEquals(xb:get(b, 1, 2, w), 10 * i + w) end
    end
  end
  lu.assertTrue(flipped > 0 and flipped < n)
  local again = D.loader(ds, {batch = n, seed = 2, augment = {flip = true}}):epoch()()
  lu.assertEquals(xb:max_abs_diff(again), 0)
end

function TestLoader:test_option_errors()
  local ds = numbered(4)
  lu.assertStrContains(errmsg(D.loader, ds, {batch = 0}), "loader: batch must be a positive integer, got 0")
  lu.assertStrContains(errmsg(D.loader, ds, {bacth = 3}), "loader: unknown option 'bacth'")
  lu.assertStrContains(errmsg(D.loader, ds, {seed = 1, rng = sf.rng(1)}), "give rng or seed, not both")
  lu.assertStrContains(errmsg(D.loader, ds, {augment = {crop = -1}}), "augment.crop")
  lu.assertStrContains(errmsg(D.loader, ds, {augment = {rotate = 1}}), "unknown augment option 'rotate'")
  lu.assertStrContains(errmsg(D.loader, ds, {standardize = {mean = {0, 0}, std = 1}}), "standardize.mean must be a number or a table of 1 or 1 numbers")
  lu.assertStrContains(errmsg(D.loader, ds, {standardize = {mean = 0, std = 0}}), "standardize.std[1] is 0, expected > 0")
  lu.assertStrContains(errmsg(D.loader, {}, {}), "bad argument #1 to 'loader' (dataset expected")
end

-- ---- Fashion-MNIST ----

TestFashionMNIST = {}

local function idx_file(path, type_byte, dims, payload)
  local h = string.char(0, 0, type_byte, #dims)
  for _, d in ipairs(dims) do h = h .. string.pack(">I4", d) end
  return write(path, h .. payload)
end

function TestFashionMNIST:test_debian_files()
  local ok = io.open(FMNIST .. "/t10k-images-idx3-ubyte.gz", "rb")
  if not ok then lu.skip("dataset-fashion-mnist is not installed") end
  ok:close()
  local ds = D.fashion_mnist{split = "test"}
  lu.assertEquals(ds:size(), 10000)
  lu.assertEquals(ds:shape(), {1, 28, 28})
  lu.assertEquals(ds.classes[1], "T-shirt/top")
  lu.assertEquals(ds.classes[10], "Ankle boot")
  local x = ds:tensors()
  lu.assertTrue(x:min() >= 0 and x:max() <= 1 and x:max() > 0.99)
  lu.assertEquals(ds:class_counts(), {1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000})
  lu.assertEquals(ds:label(1), 10) -- the first test image is an ankle boot (class 9, 0-based)
  lu.assertEquals(D.fashion_mnist{split = "train"}:size(), 60000)
end

function TestFashionMNIST:test_path_override_and_errors()
  local dir = tmpdir .. "/fm"
  mkdir(dir)
  local pix = {}
  for i = 1, 2 * 28 * 28 do pix[i] = string.char((i - 1) % 256) end
  idx_file(dir .. "/t10k-images-idx3-ubyte", 0x08, {2, 28, 28}, table.concat(pix))
  idx_file(dir .. "/t10k-labels-idx1-ubyte", 0x08, {2}, string.char(9, 0))
  local ds = D.fashion_mnist{split = "test", path = dir}
  lu.assertEquals(ds:labels(), {10, 1})
  lu.assertAlmostEquals(ds.x:get(1, 1, 1, 2), 1 / 255, 1e-7)
  lu.assertAlmostEquals(ds.x:get(2, 1, 1, 1), ((28 * 28) % 256) / 255, 1e-7)
  lu.assertEquals(ds.meta.index, {1, 2})
  assertErrorContainsAll(D.fashion_mnist, {"fashion_mnist: no 'train-images-idx3-ubyte.gz'", dir, "dataset-fashion-mnist"},
                         {split = "train", path = dir})
  lu.assertStrContains(errmsg(D.fashion_mnist, {split = "val", path = dir}), "split must be 'train' or 'test'")
  local bad = tmpdir .. "/fm-bad"
  mkdir(bad)
  idx_file(bad .. "/t10k-images-idx3-ubyte", 0x08, {2, 28, 28}, table.concat(pix))
  idx_file(bad .. "/t10k-labels-idx1-ubyte", 0x08, {3}, string.char(9, 0, 1))
  assertErrorContainsAll(D.fashion_mnist, {"t10k-labels-idx1-ubyte", "expected [2]"}, {split = "test", path = bad})
  idx_file(bad .. "/t10k-labels-idx1-ubyte", 0x08, {2}, string.char(9, 10))
  assertErrorContainsAll(D.fashion_mnist, {"labels outside 0..9"}, {split = "test", path = bad})
end

-- ---- CIFAR-10 and CIFAR-10-C ----

TestCifar = {}

local function cifar_batch(path, labels, base)
  local recs = {}
  for r, l in ipairs(labels) do
    local px = {}
    for p = 1, 3072 do px[p] = string.char((base + r * 7 + p) % 256) end
    recs[r] = string.char(l) .. table.concat(px)
  end
  return write(path, table.concat(recs))
end

function TestCifar:test_batches_concatenated_in_order()
  local root = tmpdir .. "/cifar"
  local dir = root .. "/cifar-10-batches-bin"
  mkdir(dir)
  for b = 1, 5 do cifar_batch(dir .. "/data_batch_" .. b .. ".bin", {b - 1, b}, b * 11) end
  cifar_batch(dir .. "/test_batch.bin", {3, 4, 5}, 0)
  local ds = D.cifar10{root = root}
  lu.assertEquals(ds:size(), 10)
  lu.assertEquals(ds:labels(), {1, 2, 2, 3, 3, 4, 4, 5, 5, 6})
  lu.assertEquals(ds.classes[1], "airplane")
  -- record 2 of batch 3 is item 6: its first red byte is (3 * 11 + 2 * 7 + 1) % 256
  lu.assertAlmostEquals(ds.x:get(6, 1, 1, 1), (33 + 14 + 1) / 255, 1e-6)
  local test = D.cifar10{root = root, split = "test"}
  lu.assertEquals(test:labels(), {4, 5, 6})
  write(dir .. "/batches.meta.txt", "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n\n")
  lu.assertEquals(D.cifar10{root = root, split = "test"}.classes[3], "c")
  os.remove(dir .. "/data_batch_4.bin")
  assertErrorContainsAll(D.cifar10, {"cifar10: missing file", dir .. "/data_batch_4.bin"}, {root = root})
  assertErrorContainsAll(D.cifar10, {"cifar10: missing file", tmpdir .. "/nowhere/cifar-10-batches-bin/test_batch.bin"},
                         {root = tmpdir .. "/nowhere", split = "test"})
end

function TestCifar:test_cifar10c_severity_slices()
  local root = tmpdir .. "/c10c"
  local dir = root .. "/CIFAR-10-C"
  mkdir(dir)
  -- 5 severities x 2 images of 32x32x3 (NHWC); pixel value = 10 * image + channel
  local x = sf.empty{10, 32, 32, 3}
  for i = 1, 10 do
    for ch = 1, 3 do x:select(1, i):select(3, ch):fill(10 * i + ch) end
  end
  sf.write_npy(dir .. "/fog.npy", x)
  sf.write_npy(dir .. "/labels.npy", sf.tensor{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
  local ds = D.cifar10c{root = root, corruption = "fog", severity = 3}
  lu.assertEquals(ds:size(), 2)
  lu.assertEquals(ds:shape(), {3, 32, 32})
  lu.assertEquals(ds:labels(), {5, 6})
  lu.assertAlmostEquals(ds.x:get(1, 2, 7, 9), 52 / 255, 1e-6) -- image 5, channel 2
  lu.assertAlmostEquals(ds.x:get(2, 3, 1, 1), 63 / 255, 1e-6)
  lu.assertEquals(ds.info, {corruption = "fog", severity = 3})
  assertErrorContainsAll(D.cifar10c, {"cifar10c: missing file", dir .. "/snow.npy"}, {root = root, corruption = "snow"})
  lu.assertStrContains(errmsg(D.cifar10c, {root = root, corruption = "fog", severity = 6}), "severity must be an integer in 1..5")
  lu.assertStrContains(errmsg(D.cifar10c, {root = root}), "option 'corruption'")
  sf.write_npy(dir .. "/bad.npy", sf.zeros{10, 3, 32, 32})
  assertErrorContainsAll(D.cifar10c, {"read_npy", dir .. "/bad.npy"}, {root = root, corruption = "bad"})
end

-- ---- Camelyon17-WILDS ----

TestCamelyon = {}

-- rows: {patient, node, x, y, tumor, slide, center, split}
local CAM_ROWS = {
  {"004", 4, 3328, 21792, 1, 0, 0, 0}, {"004", 4, 3200, 22272, 0, 0, 0, 0}, {"004", 4, 3168, 22208, 1, 0, 0, 1},
  {"021", 2, 10, 20, 0, 11, 1, 0}, {"022", 4, 30, 40, 1, 12, 1, 0},
  {"041", 1, 50, 60, 0, 21, 2, 0}, {"041", 1, 70, 80, 1, 21, 2, 0},
  {"061", 3, 90, 100, 0, 31, 3, 0}, {"081", 0, 110, 120, 1, 41, 4, 0}, {"081", 0, 130, 140, 0, 41, 4, 1},
}

-- a camelyon17_v1.0 tree: the metadata's first column has an empty name (as in WILDS);
-- patch k is 6x6 RGB filled with (k/20, tumor, center/10)
local function camelyon_tree(root, opts)
  opts = opts or {}
  local dir = root .. "/camelyon17_v1.0"
  local lines = {opts.header or ",patient,node,x_coord,y_coord,tumor,slide,center,split"}
  for k, r in ipairs(CAM_ROWS) do
    lines[#lines + 1] = string.format("%d,%s,%d,%d,%d,%d,%d,%d,%d", k - 1, table.unpack(r))
    local sub = string.format("patches/patient_%s_node_%d", r[1], r[2])
    mkdir(dir .. "/" .. sub)
    local img = sf.empty{3, 6, 6}
    img:select(1, 1):fill(k / 20)
    img:select(1, 2):fill(r[5])
    img:select(1, 3):fill(r[7] / 10)
    if not (opts.skip == k) then
      sf.write_png(string.format("%s/%s/patch_patient_%s_node_%d_x_%d_y_%d.png", dir, sub, r[1], r[2], r[3], r[4]), img)
    end
  end
  write(dir .. "/metadata.csv", table.concat(lines, "\n") .. "\n")
  return dir
end

-- the metadata rows (1-based) behind the items of ds, from the red channel
local function cam_rows(ds)
  local out = {}
  for i = 1, ds:size() do out[i] = math.floor(ds:image(i):get(1, 1, 1) * 20 + 0.5) end
  return out
end

function TestCamelyon:test_official_split()
  local root = tmpdir .. "/cam"
  camelyon_tree(root)
  local train = D.camelyon17{root = root}
  lu.assertEquals(cam_rows(train), {1, 2, 8, 9}) -- centers 0, 3, 4 with split 0
  lu.assertEquals(train.meta.hospital, {0, 0, 3, 4})
  lu.assertEquals(train:labels(), {2, 1, 1, 2})
  lu.assertEquals(train.classes, {"normal", "tumor"})
  lu.assertEquals(train.meta.patient, {"004", "004", "061", "081"})
  lu.assertEquals(train.meta.slide, {0, 0, 31, 41})
  lu.assertFalse(train:lazy())
  local img, label, meta = train:get(4)
  lu.assertEquals(img:shape(), {3, 6, 6})
  lu.assertEquals(label, 2)
  lu.assertAlmostEquals(img:get(2, 3, 3), 1, 1e-6) -- green channel = tumor
  lu.assertAlmostEquals(img:get(3, 1, 1), 0.4, 1 / 255)
  lu.assertEquals(meta.split, "train")
  lu.assertEquals(cam_rows(D.camelyon17{root = root, split = "id_val"}), {3, 10})
  lu.assertEquals(cam_rows(D.camelyon17{root = root, split = "val"}), {4, 5}) -- center 1
  lu.assertEquals(cam_rows(D.camelyon17{root = root, split = "test"}), {6, 7}) -- center 2
  lu.assertEquals(cam_rows(D.camelyon17{root = root, split = {"train", "val"}, hospitals = {0, 1}}), {1, 2, 4, 5})
  -- the root may also be the dataset directory itself
  lu.assertEquals(cam_rows(D.camelyon17{root = root .. "/camelyon17_v1.0", split = "test"}), {6, 7})
end

function TestCamelyon:test_subsample_and_lazy()
  local root = tmpdir .. "/cam2"
  camelyon_tree(root)
  local a = D.camelyon17{root = root, n_per_class = 1, seed = 4}
  lu.assertEquals(a:class_counts(), {1, 1})
  local b = D.camelyon17{root = root, n_per_class = 1, seed = 4}
  lu.assertEquals(cam_rows(a), cam_rows(b))
  local c = D.camelyon17{root = root, n = 3, seed = 1}
  lu.assertEquals(c:size(), 3)
  local lazy = D.camelyon17{root = root, lazy = true}
  lu.assertTrue(lazy:lazy())
  lu.assertEquals(cam_rows(lazy), {1, 2, 8, 9})
  local xb, yb = D.loader(lazy, {batch = 4, shuffle = false}):epoch()()
  lu.assertEquals(xb:shape(), {4, 3, 6, 6})
  lu.assertEquals(yb:totable(), {2, 1, 1, 2})
  local x = lazy:tensors()
  lu.assertEquals(x:shape(), {4, 3, 6, 6})
  lu.assertStrContains(errmsg(D.camelyon17, {root = root, n_per_class = 3}), "class 1 ('normal') has 2 items, 3 requested")
  lu.assertStrContains(errmsg(D.camelyon17, {root = root, n = 5}), "option 'n' = 5 but the split has 4 items")
end

function TestCamelyon:test_errors()
  lu.assertStrContains(errmsg(D.camelyon17, {root = tmpdir .. "/absent"}),
                       "camelyon17: no 'metadata.csv' in '" .. tmpdir .. "/absent/camelyon17_v1.0'")
  local root = tmpdir .. "/cam-bad"
  camelyon_tree(root, {header = ",patient,node,x_coord,y_coord,tumour,slide,center,split"})
  assertErrorContainsAll(D.camelyon17, {"read_csv", root .. "/camelyon17_v1.0/metadata.csv", "no column 'tumor'"}, {root = root})
  local root2 = tmpdir .. "/cam-missing"
  camelyon_tree(root2, {skip = 8})
  assertErrorContainsAll(D.camelyon17, {"read_png", "patch_patient_061_node_3_x_90_y_100.png"}, {root = root2})
  lu.assertStrContains(errmsg(D.camelyon17, {root = root2, split = "ood"}), "unknown split 'ood'")
end

function TestCamelyon:test_root_from_environment()
  local root = tmpdir .. "/cam-env"
  camelyon_tree(root)
  local bin = require("testutil").binary()
  local f = assert(io.popen(string.format("SURGFT_DATA='%s' '%s' -e 'print(require(\"surgft\").data.camelyon17{split = \"test\"}:size())'",
                                          root, bin)))
  local out = f:read("a")
  f:close()
  lu.assertEquals(out, "2\n")
end

-- ---- FMoW-WILDS ----

TestFmow = {}

-- rows: {split, category, country_code, timestamp}; image i (0-based row) is 5x5 RGB, red = i/50
local FMOW_ROWS = {
  {"train", "port", "USA", "2010-03-01T10:00:00Z"}, -- 0 train, Americas
  {"train", "airport", "FRA", "2012-12-31T23:59:59Z"}, -- 1 train, Europe
  {"seq", "zoo", "USA", "2011-01-01T00:00:00Z"}, -- 2 dropped
  {"val", "port", "KEN", "2011-05-05T00:00:00Z"}, -- 3 id_val, Africa
  {"test", "airport", "XXX", "2009-05-05T00:00:00Z"}, -- 4 id_test, Other
  {"val", "airport", "USA", "2013-01-01T00:00:00Z"}, -- 5 val (OOD)
  {"val", "port", "FRA", "2015-12-31T00:00:00Z"}, -- 6 val (OOD)
  {"train", "port", "FRA", "2014-06-01T00:00:00Z"}, -- 7 in no split (train rows after 2013 are unused)
  {"test", "port", "KEN", "2016-01-01T00:00:00Z"}, -- 8 test (OOD)
  {"test", "airport", "USA", "2017-07-07T00:00:00Z"}, -- 9 test (OOD)
}

local function fmow_tree(root, opts)
  opts = opts or {}
  local dir = root .. "/fmow_v1.1"
  mkdir(dir .. "/images")
  local lines = {opts.region and "split,img_filename,category,region,timestamp" or
                 "split,img_filename,img_path,category,country_code,cloud_cover,timestamp"}
  for i, r in ipairs(FMOW_ROWS) do
    if opts.region then
      local reg = ({USA = "Americas", FRA = "Europe", KEN = "Africa", XXX = "Asia"})[r[3]]
      lines[#lines + 1] = string.format("%s,img_%d.jpg,%s,%s,%s", r[1], i - 1, r[2], reg, r[4])
    else
      lines[#lines + 1] = string.format("%s,img_%d.jpg,\"some/path, with comma\",%s,%s,0,%s", r[1], i - 1, r[2], r[3], r[4])
    end
    sf.write_png(string.format("%s/images/rgb_img_%d.png", dir, i - 1), sf.full({3, 5, 5}, (i - 1) / 50))
  end
  write(dir .. "/rgb_metadata.csv", table.concat(lines, "\r\n") .. "\r\n")
  if not opts.region and not opts.no_map then
    write(dir .. "/country_code_mapping.csv", "name,alpha-2,alpha-3,region\nUnited States,US,USA,Americas\n" ..
          "France,FR,FRA,Europe\nKenya,KE,KEN,Africa\n")
  end
  return dir
end

local function fmow_rows(ds)
  local out = {}
  for i = 1, ds:size() do out[i] = math.floor(ds:image(i):get(1, 1, 1) * 50 + 0.5) end
  return out
end

function TestFmow:test_official_time_split()
  local root = tmpdir .. "/fmow"
  fmow_tree(root)
  local train = D.fmow{root = root}
  lu.assertEquals(fmow_rows(train), {0, 1})
  lu.assertEquals(train.meta.index, {0, 1})
  lu.assertEquals(train.classes, {"airport", "port", "zoo"}) -- sorted, from the whole file
  lu.assertEquals(train:labels(), {2, 1})
  lu.assertEquals(train.meta.region, {"Americas", "Europe"})
  lu.assertEquals(train.meta.year, {2010, 2012})
  lu.assertEquals(fmow_rows(D.fmow{root = root, split = "id_val"}), {3})
  lu.assertEquals(fmow_rows(D.fmow{root = root, split = "id_test"}), {4})
  lu.assertEquals(D.fmow{root = root, split = "id_test"}.meta.region, {"Other"})
  local val = D.fmow{root = root, split = "val"}
  lu.assertEquals(fmow_rows(val), {5, 6})
  lu.assertEquals(val.meta.year, {2013, 2015})
  local test = D.fmow{root = root, split = "test"}
  lu.assertEquals(fmow_rows(test), {8, 9})
  lu.assertEquals(test.meta.split, {"test", "test"})
  lu.assertEquals(fmow_rows(D.fmow{root = root, split = {"val", "test"}, regions = {"Africa", "Europe"}}), {6, 8})
  local x = test:tensors()
  lu.assertEquals(x:shape(), {2, 3, 5, 5})
end

function TestFmow:test_region_column_and_errors()
  local root = tmpdir .. "/fmow-region"
  fmow_tree(root, {region = true})
  local ds = D.fmow{root = root, split = "id_test"}
  lu.assertEquals(ds.meta.region, {"Asia"})
  local root2 = tmpdir .. "/fmow-nomap"
  local dir2 = fmow_tree(root2, {no_map = true})
  assertErrorContainsAll(D.fmow, {"fmow:", dir2 .. "/country_code_mapping.csv", "is missing"}, {root = root2})
  lu.assertStrContains(errmsg(D.fmow, {root = tmpdir .. "/absent"}), "fmow: no 'rgb_metadata.csv' in '" .. tmpdir .. "/absent/fmow_v1.1'")
  local root3 = tmpdir .. "/fmow-cols"
  mkdir(root3 .. "/fmow_v1.1")
  write(root3 .. "/fmow_v1.1/rgb_metadata.csv", "split,category,country_code\ntrain,port,USA\n")
  assertErrorContainsAll(D.fmow, {"read_csv", "rgb_metadata.csv", "no column 'timestamp'"}, {root = root3})
  write(root3 .. "/fmow_v1.1/rgb_metadata.csv", "split,category,timestamp,region\ntrain,port,yesterday,Asia\n")
  assertErrorContainsAll(D.fmow, {"row 1", "timestamp 'yesterday'"}, {root = root3})
  write(root3 .. "/fmow_v1.1/rgb_metadata.csv", "split,category,timestamp,region\nholdout,port,2010,Asia\n")
  assertErrorContainsAll(D.fmow, {"row 1", "split is 'holdout'"}, {root = root3})
  lu.assertStrContains(errmsg(D.fmow, {root = root, split = "ood"}), "unknown split 'ood'")
end

local rc = lu.LuaUnit.run()
os.execute("rm -rf '" .. tmpdir .. "'")
os.exit(rc)
