-- A worked example of a new selection policy written in Lua: "tune only the block whose
-- relative gradient norm is largest, re-chosen at every epoch". It shows the dry-run
-- "what trains" report, then compares the policy with full fine-tuning and last-layer
-- tuning in a small experiment on one input-level shift (Fashion-MNIST-C gaussian_noise,
-- severity 5, 10 target images per class). This script reports what it measures.
--
--   surgft-lua experiments/custom_policy.lua [--quick]
local sf = require "surgft"
local paper = require "surgft.paper"
local P = sf.policy
local quick = arg and arg[1] == "--quick"

-- The task: a source model pre-trained on clean Fashion-MNIST (cached on disk, shared with
-- cifar10c_blocks.lua), and target splits of the corrupted test images, one per seed.
local task = paper.suite_task{
  name = "FMNIST-C gaussian_noise",
  cache_name = "FMNIST_C_source",
  suite = sf.data.suites.fmnist_c,
  options = {corruption = "gaussian_noise", severity = 5, n_per_class = 10, n_test_per_class = 100,
             n_source_per_class = quick and 200 or 1000},
  arch = paper.fmnist_arch(10),
  pretrain = paper.fmnist_pretrain(quick),
}

-- ---- the policy ----
--
-- A policy is a function of a context `ctx`, called by sf.finetune before epoch 1 and
-- again at the start of every later epoch (or every `every` steps, an option of
-- sf.finetune / sf.experiment). It returns {[block or parameter name] = lr scale}; every
-- parameter left out is frozen: no gradient, no update, no weight decay, no optimizer
-- state. What the context offers:
--   ctx.model          the model being fine-tuned (ctx.model:parameters() lists records
--                      {name, block, value, grad, trainable, lr_scale, ...})
--   ctx.blocks         the block names in model order: stem, block1, block2, block3, head
--   ctx.epoch, ctx.step  where training is (epoch 0 = before any update)
--   ctx:grad_norms()   per tensor {grad = ||g||, value = ||theta||, rgn, max_abs, nan, inf},
--                      averaged over the first few target training batches (stat_batches)
--   ctx:rgn()          per tensor ||g|| / ||theta|| (what Auto-RGN scales the lr by)
--   ctx:snr()          per tensor gradient signal-to-noise ratio over examples (Auto-SNR)
-- The statistics are computed lazily, once per call of the policy, on the current weights
-- (so the choice can change as training moves the model).
--
-- This one measures each block as a whole: the norm of the block's gradient relative to
-- the norm of its weights, sqrt(sum ||g||^2) / sqrt(sum ||theta||^2) over its tensors
-- (a per-tensor mean would let a tiny bias vector with a large ratio decide). The block
-- that the target loss pulls on hardest, relative to its size, trains at full lr.
local show = false -- print the per-block scores (on for the dry run below)

local function block_rgn(ctx)
  local g2, v2 = {}, {}
  local norms = ctx:grad_norms()
  for _, rec in ipairs(ctx.model:parameters()) do
    local n = norms[rec.name]
    g2[rec.block] = (g2[rec.block] or 0) + n.grad ^ 2
    v2[rec.block] = (v2[rec.block] or 0) + n.value ^ 2
  end
  local score = {}
  for _, b in ipairs(ctx.blocks) do score[b] = v2[b] > 0 and math.sqrt(g2[b] / v2[b]) or 0 end
  return score
end

local chosen = {} -- how often each block was chosen (over the runs this script computes)

local top_rgn_block = P.wrap(function(ctx)
  local score = block_rgn(ctx)
  local best = ctx.blocks[1]
  for _, b in ipairs(ctx.blocks) do if score[b] > score[best] then best = b end end
  if show then
    local parts = {}
    for _, b in ipairs(ctx.blocks) do parts[#parts + 1] = string.format("%s %.3g", b, score[b]) end
    print(string.format("epoch %d, block RGN: %s -> tune %s", ctx.epoch, table.concat(parts, ", "), best))
  end
  chosen[best] = (chosen[best] or 0) + 1
  return {[best] = 1}
end, "top_rgn_block") -- the name is part of the experiment's cell keys: rename it when the code changes

-- ---- a dry run: what would train at epoch 0 on the seed-0 target ----
show = true
sf.finetune{model = task.model, data = task.data(0), policy = top_rgn_block, dry_run = true}
show = false
chosen = {}

-- ---- the comparison: the paper's protocol (lr sweep, seeds, best epoch by validation) ----
local res = paper.fmnist_experiment{
  name = "custom_policy", tasks = {task}, quick = quick,
  title = "Fashion-MNIST-C gaussian_noise (severity 5), 10 images per class",
  policies = {{"All", P.all()}, {"Top-RGN block", top_rgn_block}, {"Last layer", P.last_layer()}},
}

local picks = {}
for _, b in ipairs(task.model:blocks()) do
  if chosen[b] then picks[#picks + 1] = string.format("%s %d", b, chosen[b]) end
end
if #picks > 0 then print("\nTop-RGN block: epochs each block was chosen (runs computed now): " .. table.concat(picks, ", ")) end
print("results: " .. res.dir)
