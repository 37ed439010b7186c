-- Shift suites on real Fashion-MNIST images, one per shift type of the paper: corruptions
-- (input), a BREEDS-like subpopulation shift (feature), a label permutation and a spurious
-- marker (output). Source splits come from the training file, target splits from the test file.
local sf = require "surgft"
local dataset = require "surgft.data.dataset"
local fmnist = require "surgft.data.fmnist"

local M = {}

local COMMON = {seed = true, path = true, n_per_class = true, n_val_per_class = true, n_test_per_class = true,
                n_source_per_class = true, n_source_val_per_class = true}

local function check_opts(fn, opts, extra)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then error(string.format("bad argument #1 to '%s' (options table expected, got %s)", fn, type(opts)), 3) end
  for k in pairs(opts) do
    if not COMMON[k] and not (extra and extra[k]) then
      local names = {}
      for n in pairs(COMMON) do names[#names + 1] = n end
      for n in pairs(extra or {}) do names[#names + 1] = n end
      table.sort(names)
      error(string.format("%s: unknown option '%s' (options: %s)", fn, tostring(k), table.concat(names, ", ")), 3)
    end
  end
  return opts
end

--[[ The split sizes, per class of the suite's labels, and their defaults:
  source (from the Fashion-MNIST training file): n_source_val_per_class = 500, n_source_per_class = "rest"
  target (from the test file): n_test_per_class = 500, n_val_per_class = 10, n_per_class = 100 (train)
The target is cut test first, then val, then train, from one seeded shuffle per class, so
with the same seed the test and val sets do not change when n_per_class does (as long as
n_test_per_class is a number). The paper's CIFAR-10-C protocol: 10 val, n train per class. ]]
local function sizes(opts)
  return {src_val = opts.n_source_val_per_class or 500, src_train = opts.n_source_per_class or "rest",
          test = opts.n_test_per_class or 500, val = opts.n_val_per_class or 10, train = opts.n_per_class or 100}
end

-- A dataset of items idx (positions into the Fashion-MNIST split ds) with new labels
-- (labels[pos] for each position), classes, and meta.index = the Fashion-MNIST row.
local function build(ds, idx, labels, classes, name, extra_meta)
  local y, index = {}, {}
  for k, i in ipairs(idx) do
    y[k] = labels[i]
    index[k] = i
  end
  local meta = {index = index}
  for key, col in pairs(extra_meta or {}) do
    local c = {}
    for k, i in ipairs(idx) do c[k] = col[i] end
    meta[key] = c
  end
  local x = #idx > 0 and ds:gather(idx) or sf.empty{0, 1, 28, 28}
  return dataset.new{x = x, y = y, classes = classes, meta = meta, name = name}
end

--[[ The common skeleton: candidates of each file (positions with a suite label; others left
out), seeded per-class splits, datasets built. relabel(file, i) -> the suite's label of
Fashion-MNIST item i of that file ("train" or "test"), or nil to leave it out.
Returns the suite table without info. ]]
local function skeleton(fn, name, opts, classes, relabel, target_classes)
  local sz = sizes(opts)
  local rng = sf.rng(opts.seed or 0)
  local out = {source = {}, target = {}}
  for _, side in ipairs{"source", "target"} do
    local file = side == "source" and "train" or "test"
    local ds = fmnist.fashion_mnist{split = file, path = opts.path}
    local orig = ds:labels()
    local labels, cand = {}, {}
    for i = 1, ds:size() do
      local l = relabel(file, orig[i])
      if l then
        cand[#cand + 1] = i
        labels[#labels + 1] = l
      end
    end
    local cls = side == "target" and target_classes or classes
    local counts = side == "source" and {sz.src_val, sz.src_train} or {sz.test, sz.val, sz.train}
    local names = side == "source" and {"val", "train"} or {"test", "val", "train"}
    local pieces = dataset.split_labels(labels, cls, counts, rng, fn)
    -- positions in cand -> Fashion-MNIST indices; labels by Fashion-MNIST index
    local by_index = {}
    for p, i in ipairs(cand) do by_index[i] = labels[p] end
    local orig_col = {}
    for i = 1, ds:size() do orig_col[i] = orig[i] end
    for k, piece in ipairs(pieces) do
      local idx = {}
      for j, p in ipairs(piece) do idx[j] = cand[p] end
      out[side][names[k]] = build(ds, idx, by_index, cls, string.format("%s/%s/%s", name, side, names[k]),
                                  {fmnist_label = orig_col})
    end
  end
  return out
end

local function identity(_, l) return l end

-- One generator per (purpose, side, split), so that what one split draws never depends on
-- the sizes of the others: with the same seed, the target test set keeps its corruption
-- noise and markers when n_per_class changes.
local SPLIT_CODE = {source = {train = 1, val = 2}, target = {train = 3, val = 4, test = 5}}
local function split_rng(opts, purpose, side, k)
  return sf.rng(((opts.seed or 0) * 16 + purpose) * 8 + SPLIT_CODE[side][k])
end

--[[ sf.data.suites.fmnist_c{corruption = "gaussian_noise", severity = 5, ...common}
Input-level shift, like CIFAR-10-C: the target images are the test images with one
corruption (sf.corrupt) at one severity; the source is clean. The corruption noise is
drawn from a generator seeded by seed (a separate stream from the split sampling). ]]
function M.fmnist_c(opts)
  local fn = "fmnist_c"
  opts = check_opts(fn, opts, {corruption = true, severity = true})
  local c, s = opts.corruption or "gaussian_noise", opts.severity or 5
  local known = {}
  for _, n in ipairs(sf.corruptions()) do known[n] = true end
  if not known[c] then error(string.format("%s: unknown corruption '%s' (known: %s)", fn, tostring(c), table.concat(sf.corruptions(), ", ")), 2) end
  if math.type(s) ~= "integer" or s < 1 or s > 5 then error(fn .. ": severity must be an integer in 1..5, got " .. tostring(s), 2) end
  local suite = skeleton(fn, "fmnist_c", opts, fmnist.CLASSES, identity, fmnist.CLASSES)
  for _, k in ipairs{"test", "val", "train"} do
    local ds = suite.target[k]
    if ds:size() > 0 then suite.target[k] = ds:with_images(sf.corrupt(ds.x, c, s, split_rng(opts, 1, "target", k))) end
  end
  suite.info = {suite = fn, shift = "input", corruption = c, severity = s, seed = opts.seed or 0}
  return suite
end

-- a uniformly random permutation of 1..n with no fixed point (rejection: ~e draws)
function M.derangement(n, rng)
  if n < 2 then error("derangement: needs n >= 2, got " .. tostring(n), 2) end
  while true do
    local p = rng:permutation(n)
    local ok = true
    for i = 1, n do if p[i] == i then ok = false; break end end
    if ok then return p end
  end
end

--[[ sf.data.suites.fmnist_flip{permutation = {..} | perm_seed = 0, ...common}
Output-level shift, like CIFAR-Flip: target label = permutation[source label], a fixed
permutation of the 10 classes with no fixed point. By default it is drawn from perm_seed
(0), independently of seed, so that runs over seeds share one task. target.classes[j]
names the garment that carries label j in the target. ]]
function M.fmnist_flip(opts)
  local fn = "fmnist_flip"
  opts = check_opts(fn, opts, {permutation = true, perm_seed = true})
  local perm = opts.permutation
  if perm then
    local seen = {}
    if type(perm) ~= "table" or #perm ~= 10 then error(fn .. ": permutation must be a table of the 10 class ids", 2) end
    for i = 1, 10 do
      local v = perm[i]
      if math.type(v) ~= "integer" or v < 1 or v > 10 or seen[v] then error(fn .. ": permutation is not a permutation of 1..10", 2) end
      if v == i then error(string.format("%s: permutation has a fixed point (class %d)", fn, i), 2) end
      seen[v] = true
    end
  else
    perm = M.derangement(10, sf.rng(opts.perm_seed or 0))
  end
  local tclasses = {}
  for i = 1, 10 do tclasses[perm[i]] = fmnist.CLASSES[i] end
  local suite = skeleton(fn, "fmnist_flip", opts, fmnist.CLASSES, function(file, l)
    if file == "test" then return perm[l] end
    return l
  end, tclasses)
  suite.info = {suite = fn, shift = "output", permutation = perm, seed = opts.seed or 0}
  return suite
end

--[[ The subpopulation hierarchy (Fashion-MNIST 1-based class ids: 1 T-shirt/top, 2 Trouser,
3 Pullover, 4 Dress, 5 Coat, 6 Sandal, 7 Shirt, 8 Sneaker, 9 Bag, 10 Ankle boot):
  tops     : source {T-shirt/top, Pullover}  target {Coat, Shirt}
  footwear : source {Sandal, Sneaker}        target {Ankle boot}
  other    : source {Trouser, Bag}           target {Dress}
Source and target subclasses are disjoint; every class belongs to one superclass. ]]
M.SUBPOP_HIERARCHY = {
  {name = "tops", source = {1, 3}, target = {5, 7}},
  {name = "footwear", source = {6, 8}, target = {10}},
  {name = "other", source = {2, 9}, target = {4}},
}

--[[ sf.data.suites.fmnist_subpop{hierarchy = {{name =, source = {ids}, target = {ids}}, ..}, ...common}
Feature-level shift, BREEDS-like: labels are superclasses; the source sees some subclasses
of each superclass, the target others. Per-class counts count superclass items (the
target's subclasses are sampled as they come). meta.fmnist_label keeps the subclass. ]]
function M.fmnist_subpop(opts)
  local fn = "fmnist_subpop"
  opts = check_opts(fn, opts, {hierarchy = true})
  local h = opts.hierarchy or M.SUBPOP_HIERARCHY
  if type(h) ~= "table" or #h < 2 then error(fn .. ": hierarchy must list at least 2 superclasses", 2) end
  local super = {train = {}, test = {}}
  local classes = {}
  for k, sc in ipairs(h) do
    if type(sc) ~= "table" or type(sc.source) ~= "table" or type(sc.target) ~= "table" or #sc.source == 0 or #sc.target == 0 then
      error(string.format("%s: superclass %d needs non-empty 'source' and 'target' lists of class ids", fn, k), 2)
    end
    classes[k] = sc.name or ("super" .. k)
    for side, file in pairs{source = "train", target = "test"} do
      for _, c in ipairs(sc[side]) do
        if math.type(c) ~= "integer" or c < 1 or c > 10 then error(string.format("%s: class id %s is not in 1..10", fn, tostring(c)), 2) end
        if super.train[c] or super.test[c] then
          error(string.format("%s: class %d ('%s') appears twice in the hierarchy", fn, c, fmnist.CLASSES[c]), 2)
        end
        super[file][c] = k
      end
    end
  end
  local suite = skeleton(fn, "fmnist_subpop", opts, classes, function(file, l) return super[file][l] end, classes)
  local hier = {}
  for k, sc in ipairs(h) do
    local s, t = {}, {}
    for _, c in ipairs(sc.source) do s[#s + 1] = fmnist.CLASSES[c] end
    for _, c in ipairs(sc.target) do t[#t + 1] = fmnist.CLASSES[c] end
    hier[k] = {name = classes[k], source = s, target = t, source_ids = sc.source, target_ids = sc.target}
  end
  suite.info = {suite = fn, shift = "feature", hierarchy = hier, seed = opts.seed or 0}
  return suite
end

-- marker of position a (1..10): a size x size square of ones at the top (1-5) or bottom (6-10)
-- edge, at one of five columns spread across the width
local function marker_box(a, size, H, W)
  local row = a <= 5 and 1 or H - size + 1
  local col = 1 + ((a - 1) % 5) * ((W - size) // 4)
  return row, col
end

local function stamp(ds, attrs, size)
  local H, W = ds:shape()[2], ds:shape()[3]
  for i = 1, ds:size() do
    local r, c = marker_box(attrs[i], size, H, W)
    ds.x:select(1, i):narrow(2, r, size):narrow(3, c, size):fill(1)
  end
end

-- Per class: exactly round(rate * n_c) items aligned (marker = its class), the others at
-- one of the other 9 positions, uniformly. Returns attribute and aligned columns.
local function draw_attributes(ds, rate, rng)
  local attr, aligned = {}, {}
  for c, idx in ipairs(ds:by_class()) do
    local perm = rng:permutation(#idx)
    local na = math.floor(rate * #idx + 0.5)
    for k = 1, #idx do
      local i = idx[perm[k]]
      if k <= na then
        attr[i], aligned[i] = c, 1
      else
        local a = rng:random(1, 9)
        attr[i], aligned[i] = a >= c and a + 1 or a, 0
      end
    end
  end
  return attr, aligned
end

--[[ sf.data.suites.fmnist_spurious{rate = 0.95, target_rate = "balanced" | "reversed" | r,
                                    marker = 4, ...common}
Output-level spurious correlation, like Waterbirds: every image carries a white square
marker (marker x marker pixels) at one of 10 positions on its top or bottom edge. In the
source, a fraction rate of each class has the marker at its own class's position
("aligned"); the rest at another position, uniformly. In the target the fraction is
target_rate: "balanced" = 0.1 (the marker says nothing about the label), "reversed" = 0
(never at its class's position). meta.attribute = marker position, meta.aligned = 1/0,
meta.group = 2 (label - 1) + (aligned ? 1 : 2), in 1..20, for worst-group accuracy. ]]
function M.fmnist_spurious(opts)
  local fn = "fmnist_spurious"
  opts = check_opts(fn, opts, {rate = true, target_rate = true, marker = true})
  local rate = opts.rate or 0.95
  local trate = opts.target_rate or "balanced"
  if trate == "balanced" then trate = 0.1 elseif trate == "reversed" then trate = 0 end
  for what, r in pairs{rate = rate, target_rate = trate} do
    if type(r) ~= "number" or r < 0 or r > 1 then error(string.format("%s: %s must be in [0, 1] (or 'balanced'/'reversed' for target_rate), got %s", fn, what, tostring(r)), 2) end
  end
  local size = opts.marker or 4
  if math.type(size) ~= "integer" or size < 1 or size > 5 then error(fn .. ": marker must be an integer size in 1..5", 2) end
  local suite = skeleton(fn, "fmnist_spurious", opts, fmnist.CLASSES, identity, fmnist.CLASSES)
  local groups = {}
  for c = 1, 10 do
    groups[2 * c - 1] = fmnist.CLASSES[c] .. " / aligned marker"
    groups[2 * c] = fmnist.CLASSES[c] .. " / other marker"
  end
  for _, side in ipairs{"source", "target"} do
    for _, k in ipairs{"train", "val", "test"} do
      local ds = suite[side][k]
      if ds then
        local attr, aligned = draw_attributes(ds, side == "source" and rate or trate, split_rng(opts, 2, side, k))
        stamp(ds, attr, size)
        local y, group = ds:labels(), {}
        for i = 1, ds:size() do group[i] = 2 * (y[i] - 1) + (aligned[i] == 1 and 1 or 2) end
        ds.meta.attribute, ds.meta.aligned, ds.meta.group = attr, aligned, group
      end
    end
  end
  suite.info = {suite = fn, shift = "output", rate = rate, target_rate = trate, marker = size, groups = groups,
                seed = opts.seed or 0}
  return suite
end

--[[ sf.data.suites.group_accuracy(pred, ds[, column = "group"]) -> worst, {[group] = acc}, {[group] = n}
pred: predicted class ids (a Lua array or a [N] tensor, 1-based) for every item of ds. ]]
function M.group_accuracy(pred, ds, column)
  column = column or "group"
  local g = ds.meta[column]
  if not g then error("group_accuracy: the dataset has no meta column '" .. column .. "'", 2) end
  if sf.is_tensor(pred) then pred = pred:totable() end
  if #pred ~= ds:size() then error(string.format("group_accuracy: %d predictions for %d items", #pred, ds:size()), 2) end
  local y, hit, n = ds:labels(), {}, {}
  for i = 1, ds:size() do
    local k = g[i]
    n[k] = (n[k] or 0) + 1
    hit[k] = (hit[k] or 0) + (pred[i] == y[i] and 1 or 0)
  end
  local acc, worst = {}, math.huge
  for k, m in pairs(n) do
    acc[k] = hit[k] / m
    if acc[k] < worst then worst = acc[k] end
  end
  return worst, acc, n
end

M.names = {"fmnist_c", "fmnist_flip", "fmnist_subpop", "fmnist_spurious"}

return M
