-- The paper's experimental vocabulary, shared by the scripts in experiments/: the rows
-- (tuned subsets) of its tables, and tasks built from a shift suite (a cached source model
-- pre-trained on the suite's source split, and seeded target splits).
local sf = require "surgft"
local P = sf.policy

local paper = {}

-- ResNet rows: Block 1 is the stem plus the first stage, as in the released code
function paper.resnet_rows()
  return {
    {"No fine-tuning", P.none()},
    {"All", P.all()},
    {"Block 1", P.blocks{"stem", "block1"}},
    {"Block 2", P.blocks{"block2"}},
    {"Block 3", P.blocks{"block3"}},
    {"Last layer", P.last_layer()},
  }
end

-- ViT rows for a model of the given depth: the embedding, the first and last three
-- transformer blocks, the last (linear) layer
function paper.vit_rows(depth)
  depth = depth or 6
  local first, last = {}, {}
  for i = 1, math.min(3, depth) do first[#first + 1] = "block" .. i end
  for i = math.max(1, depth - 2), depth do last[#last + 1] = "block" .. i end
  return {
    {"No fine-tuning", P.none()},
    {"All", P.all()},
    {"Embedding", P.embed()},
    {"First 3 blocks", P.blocks(first)},
    {"Last 3 blocks", P.blocks(last)},
    {"Last layer", P.last_layer()},
  }
end

-- suite_task{name =, suite = sf.data.suites.fmnist_c, options = {...}, arch = {"resnet", {...}},
--            pretrain = {epochs =, lr =, ...}} -> an experiment task: the source model is
-- pre-trained (or loaded from the cache) on the suite's source split of seed 0; the target
-- of seed s comes from the suite with seed s (the same source file, fresh target splits).
function paper.suite_task(o)
  local opts = {}
  for k, v in pairs(o.options or {}) do opts[k] = v end
  opts.seed = 0
  local suite = o.suite(opts)
  local pre = {arch = o.arch, data = suite.source, name = o.cache_name or o.name:gsub("%W", "_")}
  for k, v in pairs(o.pretrain or {}) do pre[k] = v end
  local model, info = sf.pretrain(pre)
  print(string.format("%s: source model val accuracy %.2f%%%s", o.name, 100 * (info.val or 0 / 0),
    info.cached and " (cached)" or ""))
  return {name = o.name, model = model, data = paper.suite_targets(o.suite, opts, suite.target), info = suite.info,
          key = info.path:match("[^/]*$")}
end

-- suite_targets(suite, options[, first]) -> function(seed) -> the suite's target splits
-- built with these options at that seed (first: the already built target of seed 0)
function paper.suite_targets(suite, opts, first)
  return function(seed)
    if seed == 0 and first then return first end
    local so = {}
    for k, v in pairs(opts) do so[k] = v end
    so.seed = seed
    return suite(so).target
  end
end

-- size_tasks{name =, suite =, options = {...}, sizes = {1, 2, 5, ...}, arch =, pretrain =,
--            cache_name =} -> one experiment task per target size (training images per
-- class, the suite's n_per_class), all sharing one source model. A task is named by its
-- size ("1", "2", ...) so an experiment's table has one column per size, and carries
-- .size for curves against it (sf.experiment.plot_curves). The suites cut the target test
-- and validation sets before the training set, so for one seed every size is evaluated
-- on the same test and validation images; only the training set grows.
function paper.size_tasks(o)
  if type(o.sizes) ~= "table" or #o.sizes == 0 then error("paper.size_tasks: sizes must be a non-empty list", 2) end
  for i, n in ipairs(o.sizes) do
    if math.type(n) ~= "integer" or n < 1 then
      error(string.format("paper.size_tasks: sizes[%d] must be a positive integer, got %s", i, tostring(n)), 2)
    end
  end
  local tasks = {}
  for i, n in ipairs(o.sizes) do
    local opts = {}
    for k, v in pairs(o.options or {}) do opts[k] = v end
    opts.n_per_class = n
    local t
    if i == 1 then
      -- the first size pre-trains (or loads) the source model; the source split does not
      -- depend on n_per_class, so the others share it
      t = paper.suite_task{name = o.name or "target sizes", suite = o.suite, options = opts, arch = o.arch,
                           pretrain = o.pretrain, cache_name = o.cache_name}
      t.name = tostring(n)
    else
      opts.seed = 0
      t = {name = tostring(n), model = tasks[1].model, key = tasks[1].key, info = tasks[1].info,
           data = paper.suite_targets(o.suite, opts)}
    end
    t.size = n
    tasks[i] = t
  end
  return tasks
end

-- pick_rows(labels[, rows = resnet_rows()]) -> the rows with these labels, in this order
function paper.pick_rows(labels, rows)
  rows = rows or paper.resnet_rows()
  local by, out = {}, {}
  for _, r in ipairs(rows) do by[r[1]] = r end
  for i, l in ipairs(labels) do
    if not by[l] then
      local have = {}
      for _, r in ipairs(rows) do have[#have + 1] = r[1] end
      error(string.format("paper.pick_rows: no row '%s' (rows: %s)", tostring(l), table.concat(have, ", ")), 2)
    end
    out[i] = by[l]
  end
  return out
end

-- sweep(o, d) -> the results of sf.experiment(...):run() for the paper's protocols: name
-- o.name (+ "_quick"), 3 seeds, d.epochs epochs, learning rates o.lrs or d.lrs; o.quick = a
-- smoke run (one lr 1e-3, one seed, 2 epochs); d.title, d.tasks, d.policies as given
local function sweep(o, d)
  return sf.experiment{
    name = o.name .. (o.quick and "_quick" or ""),
    title = d.title,
    tasks = d.tasks,
    policies = d.policies,
    lrs = o.quick and {1e-3} or o.lrs or d.lrs,
    seeds = o.quick and {0} or {0, 1, 2},
    epochs = o.quick and 2 or d.epochs,
    test = "best", -- test accuracy only where validation improves: the selected numbers, fewer passes
  }:run()
end

-- The Fashion-MNIST protocol shared by the suite experiments: a pre-activation ResNet-8
-- on 1x28x28 images, pre-trained 5 epochs (SGD 0.05, batch 128), the paper's fine-tuning
-- sweep (lrs 1e-2, 1e-3, 1e-4; 3 seeds; 15 epochs). quick = a smoke run in seconds.
function paper.fmnist_arch(classes)
  return {"resnet", {depth = 8, block = "preact", in_channels = 1, classes = classes}}
end

function paper.fmnist_pretrain(quick) return {epochs = quick and 1 or 5, lr = 0.05, batch = 128} end

-- fmnist_experiment{name =, title =, tasks = {...}, policies = rows (default resnet_rows),
--                   quick = bool, lrs = {...} (default 1e-2, 1e-3, 1e-4)}
-- -> the results of sf.experiment(...):run()
function paper.fmnist_experiment(o)
  return sweep(o, {title = o.title, tasks = o.tasks, policies = o.policies or paper.resnet_rows(),
                   lrs = {1e-2, 1e-3, 1e-4}, epochs = 15})
end

-- The small ViT of the WILDS experiments (extra: fields to add or override) and its
-- pre-training for the given number of epochs: Adam 1e-3 with weight decay 1e-4, batch 128,
-- a cosine schedule, horizontal flips. Patch 8 gives 16 tokens + the class token; at
-- patch 4 (64 tokens) a sweep takes about four times as long.
function paper.wilds_vit(extra)
  local vit = {image = 32, patch = 8, channels = 3, dim = 64, depth = 6, heads = 4, mlp_ratio = 2}
  for k, v in pairs(extra or {}) do vit[k] = v end
  return vit
end

function paper.wilds_pretrain(epochs)
  return {epochs = epochs, optim = "adam", lr = 1e-3, weight_decay = 1e-4, batch = 128, schedule = "cosine",
          augment = {flip = true}}
end

-- wilds_task{name =, dataset = "camelyon17" | "fmow", synth = "camelyon" | "fmow", vit = {...},
--            pretrain = {...}, counts = {test, val, train} per class, target_split = "test",
--            seed_offset = 0} -> an experiment task and a description of the data
-- The real WILDS set under $SURGFT_DATA when present, else the generated stand-in in the
-- same layout. Source: the train split, id_val for validation, standardised with the
-- source's per-channel statistics. Target of seed s: target_split cut per class into
-- counts (test, val, train), drawn with rng seed_offset + s.
function paper.wilds_task(o)
  local load = sf.data[o.dataset]
  local root = sf.data.data_root()
  local real = root and pcall(load, {root = root, split = o.target_split or "test", n = 1})
  if not real then root = require("surgft.data.synth")[o.synth]{} end
  local label = real and "WILDS" or (o.synth .. "-synth")
  print(string.format("%s data: %s (%s)", o.name, root, label))
  local source = {train = load{root = root, split = "train"}, val = load{root = root, split = "id_val"}}
  local vit = {}
  for k, v in pairs(o.vit) do vit[k] = v end
  vit.classes = vit.classes or #source.train.classes
  local mean, std = sf.data.stats(source.train)
  local standardize = {mean = mean, std = std}
  local pre = {arch = {"vit", vit}, data = source, name = o.cache_name or (o.dataset .. "_vit"),
               standardize = standardize}
  for k, v in pairs(o.pretrain or {}) do pre[k] = v end
  local model, info = sf.pretrain(pre)
  print(string.format("source model: id_val accuracy %.2f%%%s", 100 * info.val, info.cached and " (cached)" or ""))
  local pool = load{root = root, split = o.target_split or "test"}
  local function target(seed)
    local test, val, train = table.unpack(sf.data.split_per_class(pool, o.counts, sf.rng((o.seed_offset or 0) + seed)))
    return {train = pool:subset(train), val = pool:subset(val), test = pool:subset(test)}
  end
  return {name = o.name, model = model, data = target, standardize = standardize, key = info.path:match("[^/]*$"),
          info = {root = root, real = real}}, label
end

-- vit_experiment{name =, title =, task = {the wilds_task options}, quick = bool,
--                lrs = {...} (default 1e-3, 1e-4, 1e-5)} -> the results of sf.experiment(...):run()
-- The ViT-table protocol shared by the WILDS experiments: one wilds_task, the vit_rows of
-- its model's depth, 3 seeds, 10 epochs; quick = a smoke run (one lr, one seed, 2 epochs).
-- The title gets the data's label: "<title> (<WILDS | ...-synth>), ViT".
function paper.vit_experiment(o)
  local task, label = paper.wilds_task(o.task)
  return sweep(o, {title = o.title .. " (" .. label .. "), ViT", tasks = {task},
                   policies = paper.vit_rows(o.task.vit.depth), lrs = {1e-3, 1e-4, 1e-5}, epochs = 10})
end

return paper
