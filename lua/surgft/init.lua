-- surgft: the Lua library. The C runtime (surgft.core) provides tensors, generators
-- and kernels; this file adds the Lua-side pieces and is what `require "surgft"` returns.
local core = require "surgft.core"

local sf = core
require("surgft.tensor")(sf)

return sf
