-- Feature-level shift (like BREEDS Living-17 / Entity-30): Fashion-MNIST superclasses
-- whose subclasses differ between source and target (see data/README.md for the
-- hierarchy). The paper finds a middle block best for feature-level shifts. This script
-- reports what it measures.
--
--   surgft-lua experiments/subpop_blocks.lua [--quick]
local sf = require "surgft"
local paper = require "surgft.paper"
local quick = arg and arg[1] == "--quick"

local task = paper.suite_task{
  name = "FMNIST-Subpop",
  suite = sf.data.suites.fmnist_subpop,
  options = {n_per_class = 30, n_test_per_class = 300, n_source_per_class = quick and 600 or 3000},
  arch = {"resnet", {depth = 8, block = "preact", in_channels = 1, classes = 3}},
  pretrain = {epochs = quick and 1 or 5, lr = 0.05, batch = 128},
}

sf.experiment{
  name = "subpop_blocks" .. (quick and "_quick" or ""),
  title = "Fashion-MNIST superclasses, unseen subclasses (feature-level shift)",
  tasks = {task},
  policies = paper.resnet_rows(),
  lrs = quick and {1e-3} or {1e-2, 1e-3, 1e-4},
  seeds = quick and {0} or {0, 1, 2},
  epochs = quick and 2 or 15,
  test = "best", -- test accuracy only where validation improves: the selected numbers, fewer passes
}:run()
