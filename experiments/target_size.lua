-- Amount of target data: tuning the first block vs all layers (and the last layer) as the
-- target training set grows from 1 to 100 images per class, on an input-level shift
-- (Fashion-MNIST-C, gaussian_noise, severity 5), where the paper finds Block 1 best. The
-- paper: first-block tuning beats full tuning down to 1 image per class, and the advantage
-- shrinks as the target set grows. For one seed every size shares the test and validation
-- images; only the training set grows. This script reports what it measures.
--
--   surgft-lua experiments/target_size.lua [--quick]
--
-- Prints the table (rows = tuned subset, columns = target images per class) and writes
-- runs/target_size/ (results, table) with curves.{png,pdf,gp,dat}: accuracy against
-- images per class, error bars = std over seeds.
local sf = require "surgft"
local paper = require "surgft.paper"
local E = require "surgft.experiment"
local quick = arg and arg[1] == "--quick"

local SIZES = quick and {1, 5} or {1, 2, 5, 10, 50, 100}
local ROWS = {"Block 1", "All", "Last layer"}
-- The learning-rate sweep: the shared protocol's {1e-2, 1e-3, 1e-4} without 1e-4, which
-- keeps the whole sweep under 20 minutes on one thread (162 -> 108 cells; at 1 image per
-- class an epoch is one Adam step, and 15 steps of 1e-4 barely move the model). Put 1e-4
-- back for the full sweep: finished cells are kept, only the new ones run.
local LRS = {1e-2, 1e-3}

-- the same source model and target test/validation sets as cifar10c_blocks.lua's
-- gaussian_noise column
local tasks = paper.size_tasks{
  name = "FMNIST-C gaussian_noise",
  sizes = SIZES,
  cache_name = "FMNIST_C_source",
  suite = sf.data.suites.fmnist_c,
  options = {corruption = "gaussian_noise", severity = 5, n_test_per_class = 100,
             n_source_per_class = quick and 200 or 1000},
  arch = paper.fmnist_arch(10),
  pretrain = paper.fmnist_pretrain(quick),
}

local title = "Fashion-MNIST-C gaussian_noise (severity 5), columns = target images per class"
local res = paper.fmnist_experiment{name = "target_size", title = title, tasks = tasks, quick = quick, lrs = LRS,
                                    policies = paper.pick_rows(ROWS)}

local fig = E.plot_curves{results = res, tasks = tasks, labels = ROWS, name = "curves",
                          title = "Fashion-MNIST-C gaussian_noise: target accuracy vs target set size",
                          xlabel = "target training images per class"}
print(fig.rendered and ("figure: " .. fig.png .. " and " .. fig.pdf) or ("figure data: " .. fig.dat))

-- the paper's question, per size: how far ahead of full fine-tuning is Block 1?
print("\nBlock 1 - All (points), mean over seeds:")
for _, t in ipairs(tasks) do
  local s = res.summary[t.name]
  print(string.format("  %4d per class: %+6.1f", t.size, 100 * (s["Block 1"].mean - s.All.mean)))
end
