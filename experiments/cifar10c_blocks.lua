-- Input-level shift (CIFAR-10 -> CIFAR-10-C, severity 5): a ResNet-26 pre-trained on
-- CIFAR-10 and fine-tuned on a few corrupted target images per class, one column per
-- corruption. Runs on the real CIFAR-10 / CIFAR-10-C when they are under $SURGFT_DATA
-- (cifar-10-batches-bin/, CIFAR-10-C/), else on Fashion-MNIST-C (the same corruptions
-- computed in C on real Fashion-MNIST images, a smaller pre-activation ResNet). The paper
-- finds tuning Block 1 best for input-level shifts. This script reports what it measures.
--
--   surgft-lua experiments/cifar10c_blocks.lua [--quick] [corruption ...]
local sf = require "surgft"
local paper = require "surgft.paper"

local quick, chosen = false, {}
for _, a in ipairs(arg or {}) do
  if a == "--quick" then quick = true else chosen[#chosen + 1] = a end
end
if #chosen == 0 then
  chosen = quick and {"gaussian_noise"} or {"gaussian_noise", "impulse_noise", "defocus_blur", "contrast", "fog",
                                            "pixelate"}
end

-- the real data: CIFAR-10 train (500 per class held out for validation) as the source;
-- per corruption, the 10,000 severity-5 test images cut per class into 90 test, 10
-- validation and 10 training images (the released code's split at train_n = 100)
local function cifar_tasks()
  local train = sf.data.cifar10{split = "train"}
  local val_idx, train_idx = table.unpack(sf.data.split_per_class(train, {500, "rest"}, sf.rng(0)))
  local source = {train = train:subset(train_idx), val = train:subset(val_idx)}
  local mean, std = sf.data.stats(source.train)
  local std_opts = {mean = mean, std = std}
  local model, info = sf.pretrain{arch = {"resnet", {depth = 26, block = "preact", classes = 10}}, data = source,
                                  name = "CIFAR10_resnet26", epochs = quick and 1 or 30, lr = 0.1, batch = 128,
                                  augment = {crop = 4, flip = true}, standardize = std_opts}
  print(string.format("CIFAR-10 source model: val accuracy %.2f%%", 100 * info.val))
  local out = {}
  for _, c in ipairs(chosen) do
    local target = function(seed)
      local ds = sf.data.cifar10c{corruption = c, severity = 5}
      local test, val, tr = table.unpack(sf.data.split_per_class(ds, {90, 10, 10}, sf.rng(seed)))
      return {train = ds:subset(tr), val = ds:subset(val), test = ds:subset(test)}
    end
    out[#out + 1] = {name = c, model = model, data = target, standardize = std_opts, key = info.path:match("[^/]*$")}
  end
  return out
end

local function fmnist_tasks()
  local out = {}
  for _, c in ipairs(chosen) do
    out[#out + 1] = paper.suite_task{
      name = c,
      cache_name = "FMNIST_C_source",
      suite = sf.data.suites.fmnist_c,
      options = {corruption = c, severity = 5, n_per_class = 10, n_test_per_class = 100,
                 n_source_per_class = quick and 200 or 1000},
      arch = paper.fmnist_arch(10),
      pretrain = paper.fmnist_pretrain(quick),
    }
  end
  return out
end

local real = pcall(sf.data.cifar10, {split = "test"})
local tasks = real and cifar_tasks() or fmnist_tasks()

paper.fmnist_experiment{name = "cifar10c_blocks", tasks = tasks, quick = quick,
                       title = real and "CIFAR-10-C (severity 5)" or "Fashion-MNIST-C (severity 5)"}
