-- The Fashion-MNIST shift suites (sf.data.suites): split sizes, disjointness, source from
-- the training file and target from the test file, determinism by seed, and each shift's
-- own contract (corrupted target, derangement, disjoint subclasses, spurious marker rates).
-- Small per-class sizes keep it fast; needs the Debian package dataset-fashion-mnist.
local lu = require "luaunit"
local sf = require "surgft"
local S = sf.data.suites
local CLASSES = sf.data.FASHION_MNIST_CLASSES

local have = io.open("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", "rb")
if have then have:close() end

local SMALL = {n_per_class = 3, n_val_per_class = 2, n_test_per_class = 5, n_source_per_class = 6,
               n_source_val_per_class = 2}

local function opts(extra)
  local o = {}
  for k, v in pairs(SMALL) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local function errmsg(fn, ...)
  local ok, msg = pcall(fn, ...)
  lu.assertFalse(ok, "expected an error")
  return tostring(msg)
end

local train_file, test_file -- the Fashion-MNIST splits, loaded once
local function files()
  if not have then lu.skip("dataset-fashion-mnist is not installed") end
  train_file = train_file or sf.data.fashion_mnist{split = "train"}
  test_file = test_file or sf.data.fashion_mnist{split = "test"}
  return train_file, test_file
end

-- the structure every suite shares: sizes, disjoint splits, provenance of every image
-- clean = {source = bool, target = bool}: images must equal their Fashion-MNIST originals
local function check_structure(suite, nclasses, clean)
  local train, test = files()
  local expect = {source = {train = SMALL.n_source_per_class, val = SMALL.n_source_val_per_class},
                  target = {train = SMALL.n_per_class, val = SMALL.n_val_per_class, test = SMALL.n_test_per_class}}
  for side, splits in pairs(expect) do
    local seen = {}
    for name, per in pairs(splits) do
      local ds = suite[side][name]
      lu.assertNotNil(ds, side .. "." .. name)
      lu.assertEquals(ds:size(), per * nclasses, side .. "." .. name)
      lu.assertEquals(#ds.classes, nclasses)
      for _, c in ipairs(ds:class_counts()) do lu.assertEquals(c, per) end
      lu.assertEquals(ds:shape(), {1, 28, 28})
      local file = side == "source" and train or test
      for i, k in ipairs(ds.meta.index) do
        lu.assertNil(seen[k], string.format("%s item %d (file row %d) in two splits", side, i, k))
        seen[k] = true
        lu.assertEquals(ds.meta.fmnist_label[i], file:label(k))
        if clean[side] then lu.assertEquals(ds:image(i):max_abs_diff(file:image(k)), 0) end
      end
    end
  end
end

local function same_suite(a, b)
  for _, side in ipairs{"source", "target"} do
    for name, ds in pairs(a[side]) do
      lu.assertEquals(ds.meta.index, b[side][name].meta.index)
      lu.assertEquals(ds:labels(), b[side][name]:labels())
      lu.assertEquals(ds.x:max_abs_diff(b[side][name].x), 0)
    end
  end
end

-- ---- fmnist_c ----

TestFmnistC = {}

function TestFmnistC:test_structure_and_corrupted_target()
  local train, test = files()
  local s = S.fmnist_c(opts{corruption = "gaussian_noise", severity = 3, seed = 1})
  lu.assertEquals(s.info, {suite = "fmnist_c", shift = "input", corruption = "gaussian_noise", severity = 3, seed = 1})
  lu.assertEquals(s.target.test.classes, CLASSES)
  -- the source is clean; every target image differs from its clean original, labels unchanged
  check_structure(s, 10, {source = true})
  for _, name in ipairs{"train", "val", "test"} do
    local ds = s.target[name]
    lu.assertEquals(ds:size(), SMALL[name == "train" and "n_per_class" or name == "val" and "n_val_per_class" or "n_test_per_class"] * 10)
    for i, k in ipairs(ds.meta.index) do
      lu.assertTrue(ds:image(i):max_abs_diff(test:image(k)) > 0.01)
      lu.assertEquals(ds:label(i), test:label(k))
    end
    lu.assertTrue(ds.x:min() >= 0 and ds.x:max() <= 1)
  end
  lu.assertNotNil(train)
end

function TestFmnistC:test_deterministic_by_seed()
  local a = S.fmnist_c(opts{corruption = "shot_noise", seed = 2})
  same_suite(a, S.fmnist_c(opts{corruption = "shot_noise", seed = 2}))
  local c = S.fmnist_c(opts{corruption = "shot_noise", seed = 3})
  lu.assertNotEquals(c.target.train.meta.index, a.target.train.meta.index)
  lu.assertNotEquals(c.source.train.meta.index, a.source.train.meta.index)
end

function TestFmnistC:test_fixed_test_set_across_target_sizes()
  local a = S.fmnist_c(opts{corruption = "fog", seed = 4, n_per_class = 1})
  local b = S.fmnist_c(opts{corruption = "fog", seed = 4, n_per_class = 4})
  lu.assertEquals(a.target.test.meta.index, b.target.test.meta.index)
  lu.assertEquals(a.target.val.meta.index, b.target.val.meta.index)
  lu.assertEquals(a.target.test.x:max_abs_diff(b.target.test.x), 0) -- the same corruption noise too
  lu.assertEquals(a.target.val.x:max_abs_diff(b.target.val.x), 0)
  lu.assertEquals(b.target.train:size(), 40)
end

function TestFmnistC:test_errors()
  files()
  lu.assertStrContains(errmsg(S.fmnist_c, opts{corruption = "smog"}), "fmnist_c: unknown corruption 'smog' (known: gaussian_noise")
  lu.assertStrContains(errmsg(S.fmnist_c, opts{severity = 0}), "severity must be an integer in 1..5, got 0")
  lu.assertStrContains(errmsg(S.fmnist_c, opts{sevrity = 2}), "fmnist_c: unknown option 'sevrity'")
  lu.assertStrContains(errmsg(S.fmnist_c, opts{n_test_per_class = 995, n_per_class = 5, n_val_per_class = 1}),
                       "fmnist_c: class 1 ('T-shirt/top') has 1000 items, 1001 requested")
end

-- ---- fmnist_flip ----

TestFmnistFlip = {}

function TestFmnistFlip:test_structure_and_permuted_labels()
  local s = S.fmnist_flip(opts{seed = 5})
  check_structure(s, 10, {source = true, target = true})
  local perm = s.info.permutation
  lu.assertEquals(#perm, 10)
  local seen = {}
  for i = 1, 10 do
    lu.assertNotEquals(perm[i], i, "fixed point")
    seen[perm[i]] = true
  end
  for i = 1, 10 do lu.assertTrue(seen[i]) end
  for i = 1, s.source.train:size() do lu.assertEquals(s.source.train:label(i), s.source.train.meta.fmnist_label[i]) end
  for _, name in ipairs{"train", "val", "test"} do
    local ds = s.target[name]
    for i = 1, ds:size() do lu.assertEquals(ds:label(i), perm[ds.meta.fmnist_label[i]]) end
    for c = 1, 10 do lu.assertEquals(ds.classes[perm[c]], CLASSES[c]) end
  end
  -- the permutation is a property of the task: the same for every split seed
  lu.assertEquals(S.fmnist_flip(opts{seed = 6}).info.permutation, perm)
  lu.assertNotEquals(S.fmnist_flip(opts{perm_seed = 1}).info.permutation, perm)
  same_suite(s, S.fmnist_flip(opts{seed = 5}))
end

function TestFmnistFlip:test_derangements_and_explicit_permutation()
  local rng = sf.rng(0)
  for _ = 1, 200 do
    local p = S.derangement(4, rng)
    for i = 1, 4 do lu.assertNotEquals(p[i], i) end
  end
  local shift = {2, 3, 4, 5, 6, 7, 8, 9, 10, 1}
  local s = S.fmnist_flip(opts{permutation = shift})
  lu.assertEquals(s.info.permutation, shift)
  lu.assertEquals(s.target.test.classes[1], "Ankle boot")
  local fixed = {2, 1, 3, 5, 4, 7, 6, 9, 10, 8}
  lu.assertStrContains(errmsg(S.fmnist_flip, opts{permutation = fixed}), "fmnist_flip: permutation has a fixed point (class 3)")
  lu.assertStrContains(errmsg(S.fmnist_flip, opts{permutation = {3, 3, 4, 5, 6, 7, 8, 9, 10, 1}}), "is not a permutation of 1..10")
  lu.assertStrContains(errmsg(S.fmnist_flip, opts{permutation = {2, 1}}), "a table of the 10 class ids")
end

-- ---- fmnist_subpop ----

TestFmnistSubpop = {}

function TestFmnistSubpop:test_disjoint_subclasses()
  local s = S.fmnist_subpop(opts{seed = 7})
  check_structure(s, 3, {source = true, target = true})
  lu.assertEquals(s.source.train.classes, {"tops", "footwear", "other"})
  local h = s.info.hierarchy
  lu.assertEquals(h[1].source, {"T-shirt/top", "Pullover"})
  lu.assertEquals(h[1].target, {"Coat", "Shirt"})
  local super, side_of = {}, {}
  for k, sc in ipairs(S.SUBPOP_HIERARCHY) do
    for _, c in ipairs(sc.source) do super[c], side_of[c] = k, "source" end
    for _, c in ipairs(sc.target) do super[c], side_of[c] = k, "target" end
  end
  for c = 1, 10 do lu.assertNotNil(super[c], "class " .. c .. " in no superclass") end
  local used = {source = {}, target = {}}
  for _, side in ipairs{"source", "target"} do
    for _, ds in pairs(s[side]) do
      for i = 1, ds:size() do
        local sub = ds.meta.fmnist_label[i]
        lu.assertEquals(side_of[sub], side)
        lu.assertEquals(ds:label(i), super[sub])
        used[side][sub] = true
      end
    end
  end
  for c in pairs(used.source) do lu.assertNil(used.target[c], "subclass in both source and target") end
  same_suite(s, S.fmnist_subpop(opts{seed = 7}))
end

function TestFmnistSubpop:test_custom_hierarchy_and_errors()
  local h = {{name = "upper", source = {1}, target = {3}}, {name = "shoes", source = {6}, target = {8, 10}}}
  local s = S.fmnist_subpop(opts{hierarchy = h})
  lu.assertEquals(s.target.test.classes, {"upper", "shoes"})
  lu.assertEquals(s.target.test:size(), 10)
  lu.assertStrContains(errmsg(S.fmnist_subpop, opts{hierarchy = {{source = {1}, target = {1}}, {source = {2}, target = {3}}}}),
                       "class 1 ('T-shirt/top') appears twice")
  lu.assertStrContains(errmsg(S.fmnist_subpop, opts{hierarchy = {{source = {1}, target = {}}, {source = {2}, target = {3}}}}),
                       "superclass 1 needs non-empty")
  lu.assertStrContains(errmsg(S.fmnist_subpop, opts{hierarchy = {{source = {1}, target = {11}}, {source = {2}, target = {3}}}}),
                       "class id 11 is not in 1..10")
end

-- ---- fmnist_spurious ----

TestFmnistSpurious = {}

local function aligned_rate(ds)
  local n = 0
  for i = 1, ds:size() do n = n + ds.meta.aligned[i] end
  return n / ds:size()
end

function TestFmnistSpurious:test_rates_markers_and_groups()
  local o = opts{seed = 8, rate = 0.5, n_source_per_class = 20, n_test_per_class = 20}
  local s = S.fmnist_spurious(o)
  -- exactly round(rate * n) aligned items per class
  lu.assertAlmostEquals(aligned_rate(s.source.train), 0.5, 1e-12)
  lu.assertAlmostEquals(aligned_rate(s.source.val), 0.5, 1e-12)
  lu.assertAlmostEquals(aligned_rate(s.target.test), 0.1, 1e-12) -- "balanced": 2 of 20 per class
  local test = select(2, files())
  for _, side in ipairs{"source", "target"} do
    for _, ds in pairs(s[side]) do
      for i = 1, ds:size() do
        local y, a, al = ds:label(i), ds.meta.attribute[i], ds.meta.aligned[i]
        lu.assertEquals(al == 1, a == y)
        lu.assertEquals(ds.meta.group[i], 2 * (y - 1) + (al == 1 and 1 or 2))
        -- the marker: a 4x4 square of ones at position a (top edge 1-5, bottom edge 6-10)
        local r, c = a <= 5 and 1 or 25, 1 + ((a - 1) % 5) * 6
        lu.assertEquals(ds:image(i):narrow(2, r, 4):narrow(3, c, 4):min(), 1)
      end
    end
  end
  -- away from the marker the image is the original
  local ds = s.target.test
  local k = ds.meta.index[1]
  lu.assertEquals(ds:image(1):narrow(2, 6, 18):max_abs_diff(test:image(k):narrow(2, 6, 18)), 0)
  -- the attribute predicts the label in the source far better than in the target
  local src = S.fmnist_spurious(opts{seed = 8, n_source_per_class = 20})
  lu.assertAlmostEquals(aligned_rate(src.source.train), 0.95, 1e-12)
  lu.assertAlmostEquals(aligned_rate(S.fmnist_spurious(opts{target_rate = "reversed", n_test_per_class = 20}).target.test), 0, 1e-12)
  same_suite(s, S.fmnist_spurious(o))
  lu.assertEquals(#s.info.groups, 20)
  -- the target test markers do not depend on the other splits' sizes
  local o2 = opts{seed = 8, rate = 0.5, n_source_per_class = 7, n_test_per_class = 20, n_per_class = 1}
  lu.assertEquals(S.fmnist_spurious(o2).target.test.meta.attribute, s.target.test.meta.attribute)
end

function TestFmnistSpurious:test_group_accuracy()
  local s = S.fmnist_spurious(opts{seed = 9, rate = 1})
  local ds = s.target.test
  local worst, acc, n = S.group_accuracy(ds:labels(), ds)
  lu.assertEquals(worst, 1)
  local total = 0
  for g, m in pairs(n) do
    total = total + m
    lu.assertEquals(acc[g], 1)
  end
  lu.assertEquals(total, ds:size())
  -- wrong on every item of group 1 (class 1, aligned marker) and right elsewhere
  local pred = {}
  for i = 1, ds:size() do pred[i] = ds.meta.group[i] == 1 and 2 or ds:label(i) end
  worst, acc = S.group_accuracy(sf.tensor(pred), ds)
  lu.assertEquals(worst, 0)
  lu.assertEquals(acc[1], 0)
  lu.assertEquals(acc[2], 1)
  lu.assertStrContains(errmsg(S.group_accuracy, {1}, ds), "group_accuracy: 1 predictions for 50 items")
  lu.assertStrContains(errmsg(S.group_accuracy, pred, ds, "colour"), "no meta column 'colour'")
  lu.assertStrContains(errmsg(S.fmnist_spurious, opts{rate = 1.5}), "rate must be in [0, 1]")
  lu.assertStrContains(errmsg(S.fmnist_spurious, opts{marker = 9}), "marker must be an integer size in 1..5")
end

local rc = lu.LuaUnit.run()
os.exit(rc)
