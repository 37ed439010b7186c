-- Per-layer convolution rates from Lua, next to sgemm: the CIFAR ResNets' 3x3 layers and
-- the small CNN's stride-2 ones, batch 128, one thread, preallocated outputs, minimum of 7
-- calls per kernel. GFLOP/s count the direct sum's 2 N C K 9 OH OW per wall second (so
-- Winograd's rates can exceed the machine's peak); every layer runs with the Winograd paths
-- off (the masked direct path) and on (winograd-phase at stride 2; at stride 1 both
-- F(2x2, 3x3), winograd4 off, and F(4x4, 3x3)).
--
--   build/surgft-lua tests/bench/layers.lua
local sf = require "surgft"
local K = sf.kernels
sf.set_threads(1)
local rng = sf.rng(3)
local a, b = sf.randn({1024, 1024}, rng), sf.randn({1024, 1024}, rng)
local best = 1e9
for i = 1, 7 do local t0 = sf.clock(); local c = a:matmul(b); best = math.min(best, sf.clock() - t0) end
print(string.format("sgemm 1024^3: %.0f GFLOP/s", 2 * 1024^3 / best / 1e9))
local layers = {{16,16,32,32,1}, {32,32,16,16,1}, {64,64,8,8,1}, {16,32,32,32,2}, {32,64,16,16,2}, {32,64,28,28,2}, {64,128,14,14,2}}
for _, g in ipairs(layers) do
  local C, Kc, H, W, st = table.unpack(g)
  local N = 128
  local OH, OW = st == 1 and H or (H + 1) // 2, st == 1 and W or (W + 1) // 2
  local x, w = sf.randn({N, C, H, W}, rng), sf.randn({Kc, C, 3, 3}, rng)
  local gy, dw = sf.randn({N, Kc, OH, OW}, rng), sf.zeros({Kc, C, 3, 3})
  local o, dx = sf.zeros({N, Kc, OH, OW}), sf.zeros({N, C, H, W})
  local flop = 2 * N * C * Kc * 9 * OH * OW
  local row = {}
  for _, mode in ipairs(st == 1 and {"off", "f2", "f4"} or {"off", "on"}) do
    K.conv2d_winograd(mode ~= "off")
    K.conv2d_winograd4(mode ~= "f2")
    local bf, bb, bw = 1e9, 1e9, 1e9
    for i = 1, 7 do
      local t0 = sf.clock(); K.conv2d_forward(x, w, nil, st, 1, o); bf = math.min(bf, sf.clock() - t0)
      t0 = sf.clock(); K.conv2d_backward_input(gy, w, x, st, 1, dx); bb = math.min(bb, sf.clock() - t0)
      t0 = sf.clock(); K.conv2d_backward_weight(gy, x, dw, nil, st, 1); bw = math.min(bw, sf.clock() - t0)
    end
    local p = K.conv2d_path({N, C, H, W}, {Kc, C, 3, 3}, st, 1)
    row[#row + 1] = string.format("%s: %.0f / %.0f / %.0f", p.forward .. "," .. p.backward_weight, flop / bf / 1e9, flop / bb / 1e9, flop / bw / 1e9)
  end
  print(string.format("%d->%d %dx%d s%d  %s", C, Kc, H, W, st, table.concat(row, "   ")))
end
K.conv2d_winograd(true)
K.conv2d_winograd4(true)
