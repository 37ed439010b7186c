-- The main job: a small ViT pre-trained on three hospitals of Camelyon17 and fine-tuned on
-- a few labelled patches of a new hospital, one row per tuned subset (the paper's ViT
-- table, Camelyon17 column, where tuning the embedding wins). Runs on the real
-- Camelyon17-WILDS under $SURGFT_DATA/camelyon17_v1.0 when present, else on
-- camelyon-synth (generated into data/generated/ in the same layout, in seconds).
--
-- Source: the WILDS train split (three hospitals), its id_val split for validation.
-- Target: the WILDS test hospital, cut per class and per seed into 50 training patches,
-- 50 validation patches and 150 test patches (counts).
-- Protocol: the paper's (Adam with coupled weight decay 1e-4, batch 64, the best
-- (lr, epoch) by target validation accuracy, test accuracy there, mean (std) over seeds).
-- This script reports what it measures, also where it disagrees with the paper.
--
--   surgft-lua experiments/camelyon_embed.lua [--quick]
local paper = require "surgft.paper"
local quick = arg and arg[1] == "--quick"

paper.vit_experiment{
  name = "camelyon_embed", title = "Camelyon17", quick = quick,
  task = {
    name = "Camelyon17", dataset = "camelyon17", synth = "camelyon", cache_name = "camelyon_vit",
    vit = paper.wilds_vit{classes = 2},
    pretrain = paper.wilds_pretrain(quick and 1 or 8),
    counts = {150, 50, 50}, -- test, validation and training patches per class
    seed_offset = 1000,
  },
}
