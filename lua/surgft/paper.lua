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
  local first = suite.target
  local function target(seed)
    if seed == 0 then return first end
    local so = {}
    for k, v in pairs(opts) do so[k] = v end
    so.seed = seed
    return o.suite(so).target
  end
  return {name = o.name, model = model, data = target, info = suite.info, key = info.path:match("[^/]*$")}
end

return paper
