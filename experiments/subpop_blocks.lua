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
  arch = paper.fmnist_arch(3),
  pretrain = paper.fmnist_pretrain(quick),
}

paper.fmnist_experiment{name = "subpop_blocks", tasks = {task}, quick = quick,
                       title = "Fashion-MNIST superclasses, unseen subclasses (feature-level shift)"}
