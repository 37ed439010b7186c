-- The FMoW column of the paper's ViT table: a small ViT pre-trained on satellite tiles
-- from 2002-2012 and fine-tuned on a few labelled tiles from 2016-2017 (new years, shifted
-- regions and styles), one row per tuned subset; the paper finds the last three blocks
-- best here. Runs on the real FMoW-WILDS under $SURGFT_DATA/fmow_v1.1 when present, else
-- on fmow-synth (generated into data/generated/ in the same layout). This script reports
-- what it measures, also where it disagrees with the paper.
--
-- Source: the WILDS train split, its id_val split for validation. Target: the OOD test
-- split (2016 on), cut per class and per seed into 10 training, 10 validation and 25 test
-- tiles (counts).
--
--   surgft-lua experiments/fmow_last3.lua [--quick]
local paper = require "surgft.paper"
local quick = arg and arg[1] == "--quick"

paper.vit_experiment{
  name = "fmow_last3", title = "FMoW", quick = quick,
  task = {
    name = "FMoW", dataset = "fmow", synth = "fmow", cache_name = "fmow_vit",
    vit = paper.wilds_vit(),
    pretrain = paper.wilds_pretrain(quick and 1 or 15),
    counts = {25, 10, 10}, -- test, validation and training tiles per class
    seed_offset = 2000,
  },
}
