-- Output-level shift (like CIFAR-Flip): Fashion-MNIST with the labels permuted by a fixed
-- permutation without a fixed point in the target. The paper finds tuning only the last
-- layer best for output-level shifts. This script reports what it measures.
--
--   surgft-lua experiments/flip_last.lua [--quick]
local sf = require "surgft"
local paper = require "surgft.paper"
local quick = arg and arg[1] == "--quick"

local task = paper.suite_task{
  name = "FMNIST-Flip",
  suite = sf.data.suites.fmnist_flip,
  options = {n_per_class = 10, n_test_per_class = 100, n_source_per_class = quick and 200 or 1000},
  arch = paper.fmnist_arch(10),
  pretrain = paper.fmnist_pretrain(quick),
}

paper.fmnist_experiment{name = "flip_last", tasks = {task}, quick = quick,
                       title = "Fashion-MNIST, labels permuted (output-level shift)"}
