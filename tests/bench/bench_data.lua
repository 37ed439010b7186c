-- Data benchmark (issue 4's bar; not a test): loading the 60,000 Fashion-MNIST training
-- images, corrupting 10,000 28x28 images with each corruption at severities 1 and 5,
-- and generating the default camelyon-synth (into a temporary directory, so the cache is
-- not touched). Medians of a few repeats, wall-clock seconds.
--
--   build/surgft-lua tests/bench/bench_data.lua [repeats = 3]
local sf = require "surgft"
local repeats = tonumber(arg and arg[1]) or 3

local function median(f)
  local ts = {}
  for i = 1, repeats do
    local t0 = sf.clock()
    f(i)
    ts[i] = sf.clock() - t0
  end
  table.sort(ts)
  return ts[(#ts + 1) // 2]
end

local train = sf.data.fashion_mnist{split = "train"}
local path = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
local t_load = median(function() return sf.read_idx(path) end)
print(string.format("Fashion-MNIST: read 60,000 training images (IDX, gzip) %8.3f s   (bar: < 1 s)", t_load))

local x = train:tensors():narrow(1, 1, 10000)
print("corrupting 10,000 28x28 images (bar: seconds):")
local worst = 0
for _, name in ipairs(sf.corruptions()) do
  local t1 = median(function(i) return sf.corrupt(x, name, 1, sf.rng(i)) end)
  local t5 = median(function(i) return sf.corrupt(x, name, 5, sf.rng(i)) end)
  worst = math.max(worst, t1, t5)
  print(string.format("  %-18s severity 1 %6.2f s   severity 5 %6.2f s", name, t1, t5))
end
print(string.format("  slowest %.2f s", worst))

local synth = require "surgft.data.synth"
local tmp = os.tmpname()
os.remove(tmp)
local t_gen = median(function(i)
  local dir = tmp .. "-" .. i
  synth.camelyon{root = dir, quiet = true}
  os.execute("rm -rf '" .. dir .. "'")
end)
print(string.format("camelyon-synth: generate the default set (5 x 1000 patches, 32x32) %6.2f s   (bar: < 30 s)", t_gen))
