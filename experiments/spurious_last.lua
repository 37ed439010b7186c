-- Output-level shift through a spurious feature (like Waterbirds / CelebA): a marker whose
-- position matches the label in most source images and is balanced in the target. The
-- paper finds tuning the last layer best. The table shows average target accuracy; the
-- worst-group accuracy of the selected runs is printed after it.
--
--   surgft-lua experiments/spurious_last.lua [--quick]
local sf = require "surgft"
local paper = require "surgft.paper"
local quick = arg and arg[1] == "--quick"

local task = paper.suite_task{
  name = "FMNIST-Spurious",
  suite = sf.data.suites.fmnist_spurious,
  options = {n_per_class = 20, n_test_per_class = 200, n_source_per_class = quick and 200 or 1000},
  arch = paper.fmnist_arch(10),
  pretrain = paper.fmnist_pretrain(quick),
}

paper.fmnist_experiment{name = "spurious_last", tasks = {task}, quick = quick,
                       title = "Fashion-MNIST with a spurious marker (output-level shift)"}
