-- sf.data: datasets, the batch loader and the shift suites. Submodules load on first use,
-- so `require "surgft"` stays fast.
local data = {}

-- public name -> {module, field}
local EXPORTS = {
  dataset = {"surgft.data.dataset", "new"},
  Dataset = {"surgft.data.dataset", "Dataset"},
  stats = {"surgft.data.dataset", "stats"},
  split_per_class = {"surgft.data.dataset", "split_per_class"},
  data_root = {"surgft.data.dataset", "data_root"},
  loader = {"surgft.data.loader", "new"},
  fashion_mnist = {"surgft.data.fmnist", "fashion_mnist"},
  FASHION_MNIST_CLASSES = {"surgft.data.fmnist", "CLASSES"},
  cifar10 = {"surgft.data.cifar", "cifar10"},
  cifar10c = {"surgft.data.cifar", "cifar10c"},
  camelyon17 = {"surgft.data.wilds", "camelyon17"},
  fmow = {"surgft.data.wilds", "fmow"},
  suites = {"surgft.data.suites"},
}

return setmetatable(data, {
  __index = function(t, k)
    local e = EXPORTS[k]
    if not e then return nil end
    local m = require(e[1])
    local v = e[2] and m[e[2]] or m
    rawset(t, k, v)
    return v
  end,
})
