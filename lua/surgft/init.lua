-- surgft: the Lua library. The C runtime (surgft.core) provides tensors, generators
-- and kernels; this file adds the Lua-side pieces and is what `require "surgft"` returns.
local core = require "surgft.core"
-- the bindings this library was written against (SFL_ABI in src/lua/sfl.h)
local ABI = 9
if core.abi ~= ABI then
  error(string.format("surgft: the Lua library in %s expects the C core's interface %d, but the loaded core "
    .. "(version %s) has %s: the build is stale or from another checkout; rebuild it (ninja -C build)",
    debug.getinfo(1, "S").source:gsub("^@", ""), ABI, tostring(core.version), tostring(core.abi)), 2)
end

local sf = core
require("surgft.tensor")(sf)
sf.data = require "surgft.data" -- loads its parts on first use
sf.checkpoint = require "surgft.checkpoint"
sf.save_safetensors, sf.load_safetensors = sf.checkpoint.save_safetensors, sf.checkpoint.load_safetensors

sf.nn = require "surgft.nn"
sf.models = require "surgft.models"
sf.optim = require "surgft.optim"
sf.policy = require "surgft.policy"
local train = require "surgft.train"
sf.pretrain, sf.finetune, sf.evaluate = train.pretrain, train.finetune, train.evaluate
sf.experiment = require("surgft.experiment").new

return sf
