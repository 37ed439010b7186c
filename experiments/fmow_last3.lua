-- The FMoW column of the paper's ViT table: a small ViT pre-trained on satellite tiles
-- from 2002-2012 and fine-tuned on a few labelled tiles from 2016-2017 (new years, shifted
-- regions and styles), one row per tuned subset; the paper finds the last three blocks
-- best here. Runs on the real FMoW-WILDS under $SURGFT_DATA/fmow_v1.1 when present, else
-- on fmow-synth (generated into data/generated/ in the same layout). This script reports
-- what it measures, also where it disagrees with the paper.
--
-- Source: the WILDS train split, its id_val split for validation. Target: the OOD test
-- split (2016 on), cut per class and per seed into n_per_class training, val_per_class
-- validation and test_per_class test tiles.
--
--   surgft-lua experiments/fmow_last3.lua [--quick]
local sf = require "surgft"
local paper = require "surgft.paper"
local quick = arg and arg[1] == "--quick"

local config = {
  vit = {image = 32, patch = 8, channels = 3, dim = 64, depth = 6, heads = 4, mlp_ratio = 2},
  pretrain = {epochs = quick and 1 or 15, optim = "adam", lr = 1e-3, weight_decay = 1e-4, batch = 128,
              schedule = "cosine", augment = {flip = true}},
  n_per_class = 10, val_per_class = 10, test_per_class = 25,
  lrs = quick and {1e-3} or {1e-3, 1e-4, 1e-5},
  seeds = quick and {0} or {0, 1, 2},
  epochs = quick and 2 or 10,
}

local task, label = paper.wilds_task{
  name = "FMoW", dataset = "fmow", synth = "fmow", cache_name = "fmow_vit",
  vit = config.vit, pretrain = config.pretrain,
  counts = {config.test_per_class, config.val_per_class, config.n_per_class}, seed_offset = 2000,
}

sf.experiment{
  name = "fmow_last3" .. (quick and "_quick" or ""),
  title = "FMoW (" .. label .. "), ViT",
  tasks = {task},
  policies = paper.vit_rows(config.vit.depth),
  lrs = config.lrs, seeds = config.seeds, epochs = config.epochs, test = "best",
}:run()
