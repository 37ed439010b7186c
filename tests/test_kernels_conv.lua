-- Linear, conv2d and pooling kernels (sf.kernels): hand-computed cases, naive Lua-loop
-- references on seeded random shapes, finite-difference gradients, accumulation and
-- scale, nil skips proven by the kernel counters, strided inputs, reused outputs, and
-- the error contract.
local lu = require "luaunit"
local sf = require "surgft"
local testutil = require "testutil"
local K = sf.kernels
local testutil = require "testutil"

-- ---- helpers ----

local function flat(t) return t:reshape(-1):totable() end

local function from_flat(v, shape) return sf.tensor(v):reshape(shape) end

-- max |a - b| over two flat arrays, relative to the larger of 1 and max |b|
local function rel_maxdiff(a, b)
  lu.assertEquals(#a, #b)
  local d, m = 0, 1
  for i = 1, #a do
    d = math.max(d, math.abs(a[i] - b[i]))
    m = math.max(m, math.abs(b[i]))
  end
  return d / m
end

local function assert_near(got, want, tol, what)
  local a = sf.is_tensor(got) and flat(got) or got
  local b = sf.is_tensor(want) and flat(want) or want
  local d = rel_maxdiff(a, b)
  lu.assertTrue(d <= (tol or 1e-5), string.format("%s: max relative difference %g > %g", what or "", d, tol or 1e-5))
end

local function pair(v) return type(v) == "table" and v or {v, v} end

-- Naive conv2d on flat arrays (0-based index arithmetic): forward, and the scatter form
-- of all three gradients for upstream gradient g.
local function ref_conv(x, xs, w, ws, b, stride, pad)
  local N, C, H, W = xs[1], xs[2], xs[3], xs[4]
  local Kc, R, S = ws[1], ws[3], ws[4]
  local sh, sw = pair(stride)[1], pair(stride)[2]
  local ph, pw = pair(pad)[1], pair(pad)[2]
  local OH, OW = (H + 2 * ph - R) // sh + 1, (W + 2 * pw - S) // sw + 1
  local out = {}
  for n = 0, N - 1 do
    for k = 0, Kc - 1 do
      for oh = 0, OH - 1 do
        for ow = 0, OW - 1 do
          local s = b and b[k + 1] or 0
          for c = 0, C - 1 do
            for r = 0, R - 1 do
              local ih = oh * sh - ph + r
              if ih >= 0 and ih < H then
                for q = 0, S - 1 do
                  local iw = ow * sw - pw + q
                  if iw >= 0 and iw < W then
                    s = s + x[((n * C + c) * H + ih) * W + iw + 1] * w[((k * C + c) * R + r) * S + q + 1]
                  end
                end
              end
            end
          end
          out[((n * Kc + k) * OH + oh) * OW + ow + 1] = s
        end
      end
    end
  end
  return out, {N, Kc, OH, OW}
end

local function ref_conv_grads(g, x, xs, w, ws, stride, pad)
  local N, C, H, W = xs[1], xs[2], xs[3], xs[4]
  local Kc, R, S = ws[1], ws[3], ws[4]
  local sh, sw = pair(stride)[1], pair(stride)[2]
  local ph, pw = pair(pad)[1], pair(pad)[2]
  local OH, OW = (H + 2 * ph - R) // sh + 1, (W + 2 * pw - S) // sw + 1
  local dx, dw, db = {}, {}, {}
  for i = 1, #x do dx[i] = 0 end
  for i = 1, #w do dw[i] = 0 end
  for k = 1, Kc do db[k] = 0 end
  for n = 0, N - 1 do
    for k = 0, Kc - 1 do
      for oh = 0, OH - 1 do
        for ow = 0, OW - 1 do
          local gv = g[((n * Kc + k) * OH + oh) * OW + ow + 1]
          db[k + 1] = db[k + 1] + gv
          for c = 0, C - 1 do
            for r = 0, R - 1 do
              local ih = oh * sh - ph + r
              if ih >= 0 and ih < H then
                for q = 0, S - 1 do
                  local iw = ow * sw - pw + q
                  if iw >= 0 and iw < W then
                    local xi, wi = ((n * C + c) * H + ih) * W + iw + 1, ((k * C + c) * R + r) * S + q + 1
                    dx[xi] = dx[xi] + gv * w[wi]
                    dw[wi] = dw[wi] + gv * x[xi]
                  end
                end
              end
            end
          end
        end
      end
    end
  end
  return dx, dw, db
end

-- sum(out * proj) in double: the scalar loss of the gradient checks
local function project(out, proj)
  local o, p, s = flat(out), flat(proj), 0
  for i = 1, #o do s = s + o[i] * p[i] end
  return s
end

-- Central differences of loss() with respect to `count` seeded elements of tensor t
-- (contiguous), compared with the flat analytic gradient.
local function fd_check(t, analytic, loss, rng, count, eps, tol, what)
  local v = t:view(-1)
  local n = v:numel()
  for j = 1, count do
    local i = rng:random(n)
    local x0 = v:get(i)
    v:set(i, x0 + eps)
    local lp = loss()
    v:set(i, x0 - eps)
    local lm = loss()
    v:set(i, x0)
    local num = (lp - lm) / (2 * eps)
    local a = analytic[i]
    lu.assertTrue(math.abs(num - a) <= tol * math.max(1, math.abs(a)),
      string.format("%s: element %d analytic %.6g numeric %.6g", what, i, a, num))
  end
end

local function randn(shape, rng) return sf.randn(shape, rng) end

-- ---- conv2d ----

TestConv2d = {}

function TestConv2d:setUp() K.reset_counters() end

function TestConv2d:test_hand_computed()
  -- input 1..9 in a 3x3 plane, kernel [[1,0],[0,-1]]: each output is x[i][j] - x[i+1][j+1] = -4
  local x = from_flat({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3})
  local w = from_flat({1, 0, 0, -1}, {1, 1, 2, 2})
  lu.assertEquals(K.conv2d_forward(x, w):totable(), {{{{-4, -4}, {-4, -4}}}})
  lu.assertEquals(K.conv2d_forward(x, w, sf.tensor{10}):totable(), {{{{6, 6}, {6, 6}}}})
  -- padding 1: the border sees zeros
  lu.assertEquals(K.conv2d_forward(x, w, nil, 1, 1):totable(),
    {{{{-1, -2, -3, 0}, {-4, -4, -4, 3}, {-7, -4, -4, 6}, {0, 7, 8, 9}}}})
  -- stride 2 with padding 1: the corners of the padded map
  lu.assertEquals(K.conv2d_forward(x, w, nil, 2, 1):totable(), {{{{-1, -3}, {-7, -4}}}})
  -- a 1x1 convolution (the direct sgemm path): channel mixing, two channels in, one out
  local x2 = from_flat({1, 2, 3, 4, 10, 20, 30, 40}, {1, 2, 2, 2})
  local w2 = from_flat({2, -1}, {1, 2, 1, 1})
  lu.assertEquals(K.conv2d_forward(x2, w2, sf.tensor{0.5}):totable(), {{{{-7.5, -15.5}, {-23.5, -31.5}}}})
  -- backward input of the 2x2 kernel with unit upstream gradient
  local dx = K.conv2d_backward_input(sf.ones{1, 1, 2, 2}, w, x)
  lu.assertEquals(dx:totable(), {{{{1, 1, 0}, {1, 0, -1}, {0, -1, -1}}}})
  -- weight gradient: sums of the input windows
  local dw, db = K.conv2d_backward_weight(sf.ones{1, 1, 2, 2}, x, sf.zeros{1, 1, 2, 2}, sf.zeros{1})
  lu.assertEquals(dw:totable(), {{{{12, 16}, {24, 28}}}})
  lu.assertEquals(db:totable(), {4})
end

-- shapes covering the paths: general im2col (several strides and paddings, non-square,
-- batch > 1, channels > 1), 1x1 stride 1 (direct sgemm), 1x1 strided (im2col)
local CASES = {
  {x = {2, 3, 7, 5}, w = {4, 3, 3, 3}, stride = 1, pad = 1, bias = true},
  {x = {3, 2, 6, 8}, w = {5, 2, 3, 2}, stride = {2, 1}, pad = {1, 0}, bias = false},
  {x = {2, 4, 9, 9}, w = {3, 4, 5, 5}, stride = 2, pad = 2, bias = true},
  {x = {1, 3, 5, 4}, w = {2, 3, 2, 3}, stride = {1, 3}, pad = {0, 2}, bias = true},
  {x = {4, 5, 4, 3}, w = {6, 5, 1, 1}, stride = 1, pad = 0, bias = true},
  {x = {2, 3, 5, 5}, w = {2, 3, 1, 1}, stride = 2, pad = 0, bias = false},
  -- even widths at column stride 2 (the input gradient interleaves zeros row by row)
  {x = {2, 4, 8, 6}, w = {5, 4, 1, 1}, stride = 2, pad = 0, bias = true},
  {x = {2, 3, 7, 8}, w = {4, 3, 1, 1}, stride = {1, 2}, pad = 0, bias = false},
  {x = {2, 2, 4, 4}, w = {3, 2, 4, 4}, stride = 3, pad = 1, bias = true},
  {x = {5, 2, 3, 3}, w = {2, 2, 3, 3}, stride = 1, pad = 0, bias = false},
  -- the direct (stride-1) path: full register tiles and remainder channels, several
  -- tiles per image, no padding, non-square kernels and paddings, large kernels
  {x = {2, 6, 12, 10}, w = {11, 6, 3, 3}, stride = 1, pad = 1, bias = true},
  {x = {3, 3, 10, 9}, w = {9, 3, 3, 3}, stride = 1, pad = 0, bias = false},
  {x = {2, 4, 9, 11}, w = {8, 4, 5, 3}, stride = 1, pad = {2, 1}, bias = true},
  {x = {1, 2, 20, 20}, w = {17, 2, 3, 3}, stride = 1, pad = 1, bias = false},
  {x = {2, 3, 8, 8}, w = {16, 3, 7, 7}, stride = 1, pad = 3, bias = true},
  {x = {2, 5, 24, 20}, w = {7, 5, 3, 3}, stride = 1, pad = 0, bias = true},
  -- stride 2 through phase planes (forward and input gradient): padded and unpadded, odd
  -- and even sizes, even and odd kernels, non-square kernels and paddings
  {x = {2, 3, 12, 10}, w = {10, 3, 3, 3}, stride = 2, pad = 1, bias = true},
  -- stride 2 onto a 4x8 plane (whole vectors of 16: the masked weight gradient on AVX-512)
  {x = {3, 5, 8, 16}, w = {7, 5, 3, 3}, stride = 2, pad = 1, bias = true},
  {x = {2, 2, 9, 11}, w = {9, 2, 3, 3}, stride = 2, pad = 0, bias = false},
  {x = {2, 3, 13, 12}, w = {5, 3, 2, 2}, stride = 2, pad = 0, bias = true},
  {x = {1, 4, 15, 17}, w = {18, 4, 4, 3}, stride = 2, pad = {1, 2}, bias = false},
  {x = {2, 2, 20, 19}, w = {3, 2, 5, 5}, stride = 2, pad = 2, bias = true},
  -- strided 1x1 (the shortcut path): full and remainder channel tiles
  {x = {3, 9, 11, 13}, w = {12, 9, 1, 1}, stride = {2, 3}, pad = 0, bias = true},
  -- 3x3 pad 1 stride 1 with 16 or more channels both ways: Winograd F(4x4, 3x3) forward and
  -- input gradient on AVX-512 (odd plane sides: tiles cut at the edge; 17 outputs: a padded
  -- register tile)
  {x = {3, 16, 7, 9}, w = {17, 16, 3, 3}, stride = 1, pad = 1, bias = true},
  -- ... F(2x2, 3x3) on planes of 2 rows (F(4x4, 3x3)'s tiles would be half empty), its
  -- weight gradient by F(3x3, 2x2)
  {x = {2, 16, 2, 6}, w = {16, 16, 3, 3}, stride = 1, pad = 1, bias = true},
  -- ... and with channels in multiples of 4, the weight gradient by F(4x4, 3x3)'s transpose
  {x = {2, 20, 6, 10}, w = {16, 20, 3, 3}, stride = 1, pad = 1, bias = false},
  -- 3x3 pad 1 stride 2 with 16 or more channels: Winograd on the phases, all three kernels
  -- (an odd output side: tiles cut at the edge)
  {x = {2, 16, 12, 13}, w = {16, 16, 3, 3}, stride = 2, pad = 1, bias = true},
}

-- Every algorithm of every kernel is exercised by CASES (checked against the naive
-- reference below): the path each case takes, as the library reports it
function TestConv2d:test_cases_cover_every_path()
  local seen = {}
  for _, c in ipairs(CASES) do
    local p = K.conv2d_path(c.x, c.w, c.stride, c.pad)
    for kernel, path in pairs(p) do seen[kernel .. " " .. path] = true end
  end
  for _, want in ipairs{"forward direct", "forward direct-phase", "forward pointwise", "forward strided-pointwise",
                        "forward im2col", "backward_input direct", "backward_input direct-phase",
                        "backward_input pointwise",
                        "backward_input strided-pointwise", "backward_input im2col", "backward_weight direct",
                        "backward_weight pointwise", "backward_weight strided-pointwise", "backward_weight im2col"} do
    lu.assertTrue(seen[want], "no case takes the path: " .. want)
  end
  -- 3x3 pad 1 stride 1 reads the unpadded planes with masked loads on AVX-512 builds, and
  -- stride 2 its dense phase planes
  local masked = sf.simd == "avx512"
  for _, kernel in ipairs{"forward", "backward_input", "backward_weight"} do
    lu.assertEquals(seen[kernel .. " direct-masked"] or false, masked, kernel .. " direct-masked on " .. sf.simd)
  end
  for _, kernel in ipairs{"forward", "backward_input", "backward_weight"} do
    lu.assertEquals(seen[kernel .. " direct-masked-phase"] or false, masked, kernel .. " direct-masked-phase on " .. sf.simd)
  end
  -- and with 16 or more channels both ways, the forward and input gradient by Winograd, and
  -- the weight gradient too where the channels are multiples of 4
  for _, kernel in ipairs{"forward", "backward_input", "backward_weight"} do
    lu.assertEquals(seen[kernel .. " winograd"] or false, masked, kernel .. " winograd on " .. sf.simd)
    lu.assertEquals(seen[kernel .. " winograd-phase"] or false, masked, kernel .. " winograd-phase on " .. sf.simd)
  end
  for _, kernel in ipairs{"forward", "backward_input", "backward_weight"} do
    lu.assertEquals(seen[kernel .. " winograd4"] or false, masked, kernel .. " winograd4 on " .. sf.simd)
  end
  -- the geometry of a CIFAR ResNet's layers
  local p = K.conv2d_path({128, 16, 32, 32}, {16, 16, 3, 3}, 1, 1)
  local d3 = masked and "direct-masked" or "direct"
  local w4 = masked and "winograd4" or "direct"
  lu.assertEquals({p.forward, p.backward_input, p.backward_weight}, {w4, w4, w4})
  -- the stem (3 input channels): no Winograd forward
  p = K.conv2d_path({128, 3, 32, 32}, {16, 3, 3, 3}, 1, 1)
  lu.assertEquals({p.forward, p.backward_input}, {d3, d3})
  p = K.conv2d_path({128, 16, 32, 32}, {32, 16, 3, 3}, 2, 1)
  local w2 = masked and "winograd-phase" or "direct-phase"
  lu.assertEquals({p.forward, p.backward_input, p.backward_weight}, {w2, w2, masked and w2 or "direct"})
  -- the small CNN's 7x7 output (its 2x2 tiles padded by a third) too
  p = K.conv2d_path({128, 64, 14, 14}, {128, 64, 3, 3}, 2, 1)
  lu.assertEquals({p.forward, p.backward_input, p.backward_weight}, {w2, w2, masked and w2 or "im2col"})
  lu.assertErrorMsgContains("conv2d_path: input has 3 channels but the weight expects 4", K.conv2d_path,
    {1, 3, 8, 8}, {2, 4, 3, 3})
  lu.assertErrorMsgContains("conv2d_path: argument #2 (weight) is", K.conv2d_path, {1, 3, 8, 8}, "w")
  lu.assertErrorMsgContains("conv2d_path: stride", K.conv2d_path, {1, 3, 8, 8}, {2, 3, 3, 3}, 0)
end

-- The direct paths pick a register tile shape per geometry (channels x vectors of
-- positions: the one that pads the wide rows least). Which geometry takes which shape
-- depends on the vector width, so search small geometries for every shape the library
-- reports and check each found one, forward and input gradient, against the reference.
function TestConv2d:test_every_tile_shape()
  local found = {}
  local function try(xs, ws, st, pd)
    local p = K.conv2d_path(xs, ws, st, pd)
    for _, key in ipairs{"forward_tiles", "backward_input_tiles"} do
      for shape in (p[key] or ""):gmatch("[^,]+") do
        if not found[shape] then found[shape] = {xs = xs, ws = ws, stride = st, pad = pd} end
      end
    end
  end
  -- (16 input channels at stride 1 too, Winograd off: the masked tiles of wider layers)
  local wino = K.conv2d_winograd(false)
  for hw = 3, 20 do
    for _, co in ipairs{5, 16, 32} do
      try({2, 3, hw, hw}, {co, 3, 3, 3}, 1, 1)
      try({2, 16, hw, hw}, {co, 16, 3, 3}, 1, 1)
      try({2, 3, hw + 1, hw}, {co, 3, 3, 3}, 2, 1)
    end
  end
  local rng, n = sf.rng(16), 0
  local ok, err = pcall(function()
    for shape, c in pairs(found) do
      n = n + 1
      local x, w = randn(c.xs, rng), randn(c.ws, rng)
      local want, oshape = ref_conv(flat(x), c.xs, flat(w), c.ws, nil, c.stride, c.pad)
      assert_near(K.conv2d_forward(x, w, nil, c.stride, c.pad), want, 1e-5, "forward, tiles " .. shape)
      local g = randn(oshape, rng)
      local rdx = ref_conv_grads(flat(g), flat(x), c.xs, flat(w), c.ws, c.stride, c.pad)
      assert_near(K.conv2d_backward_input(g, w, x, c.stride, c.pad), rdx, 1e-5, "dinp, tiles " .. shape)
    end
  end)
  K.conv2d_winograd(wino)
  if not ok then error(err, 0) end
  -- 3 shapes, and a 4th (the 1-vector tile with fewer channels) where channels do not fill
  -- the widest block
  lu.assertTrue(n >= 4, "tile shapes found: " .. n)
  -- AVX-512: the masked 2-vector tile's blocks of 12 channels (32 = 12 + 12 + 8) among them
  if sf.simd == "avx512" then lu.assertNotNil(found["m12x2"], "no geometry takes the m12x2 tile") end
end

function TestConv2d:test_forward_against_naive()
  local rng = sf.rng(11)
  for ci, c in ipairs(CASES) do
    local x, w = randn(c.x, rng), randn(c.w, rng)
    local b = c.bias and randn({c.w[1]}, rng) or nil
    local want, oshape = ref_conv(flat(x), c.x, flat(w), c.w, b and flat(b), c.stride, c.pad)
    local out = K.conv2d_forward(x, w, b, c.stride, c.pad)
    lu.assertEquals(out:size(), oshape, "case " .. ci)
    assert_near(out, want, 1e-5, "forward case " .. ci)
  end
end

-- The forward's epilogue (relu, residual) on every path: the same values as the separate
-- operations, bit for bit (each output is the same float sum plus the same additions)
function TestConv2d:test_forward_epilogue()
  local rng = sf.rng(17)
  for ci, c in ipairs(CASES) do
    local x, w = randn(c.x, rng), randn(c.w, rng)
    local b = c.bias and randn({c.w[1]}, rng) or nil
    local plain = K.conv2d_forward(x, w, b, c.stride, c.pad)
    local res = randn(plain:size(), rng)
    local tag = "case " .. ci
    lu.assertEquals(flat(K.conv2d_forward(x, w, b, c.stride, c.pad, nil, true)), flat(plain:relu()), tag .. " relu")
    lu.assertEquals(flat(K.conv2d_forward(x, w, b, c.stride, c.pad, nil, false, res)), flat(plain + res),
      tag .. " residual")
    local out = sf.zeros(plain:size())
    local got = K.conv2d_forward(x, w, b, c.stride, c.pad, out, true, res)
    lu.assertTrue(rawequal(got, out), tag .. ": the given output is returned")
    lu.assertEquals(flat(got), flat((plain + res):relu()), tag .. " residual + relu")
  end
  -- a chunked batch on the im2col path, and several threads on a direct one
  local x, w = randn({9, 3, 9, 9}, rng), randn({4, 3, 5, 5}, rng)
  local plain = K.conv2d_forward(x, w, nil, 2, 2)
  local res = randn(plain:size(), rng)
  lu.assertEquals(flat(K.conv2d_forward(x, w, nil, 2, 2, nil, true, res)), flat((plain + res):relu()), "im2col chunks")
  local n0 = sf.threads()
  sf.set_threads(2)
  local x2, w2 = randn({6, 8, 12, 12}, rng), randn({8, 8, 3, 3}, rng)
  local p2 = K.conv2d_forward(x2, w2, nil, 1, 1)
  local r2 = randn(p2:size(), rng)
  local got = K.conv2d_forward(x2, w2, nil, 1, 1, nil, true, r2)
  sf.set_threads(n0)
  lu.assertEquals(flat(got), flat((p2 + r2):relu()), "2 threads")
  -- bad residuals
  lu.assertErrorMsgContains("conv2d_forward: argument #8 (residual) has shape [6,8,12,11], expected [6,8,12,12]",
    K.conv2d_forward, x2, w2, nil, 1, 1, nil, true, sf.zeros{6, 8, 12, 11})
  lu.assertErrorMsgContains("conv2d_forward: argument #8 (residual) is", K.conv2d_forward, x2, w2, nil, 1, 1, nil,
    false, "r")
  lu.assertErrorMsgContains("conv2d_forward: argument #6 shares storage with argument #8", K.conv2d_forward, x2, w2,
    nil, 1, 1, r2, false, r2)
end

-- 3x3 pad 1 stride 1 over many plane sizes (the masked path on AVX-512 builds: masks at
-- every border, planes smaller than a vector, tails of every length, every tile shape and
-- remainder channels), forward with bias, residual and ReLU, and the input and weight
-- gradients, against the naive reference
function TestConv2d:test_3x3_pad1_plane_sizes()
  local rng = sf.rng(29)
  for _, hw in ipairs{{1, 4}, {4, 4}, {2, 9}, {5, 7}, {7, 7}, {8, 8}, {3, 17}, {9, 16}, {11, 13}, {16, 16}, {6, 33}} do
    for _, co in ipairs{1, 7, 16, 19} do
      local xs, ws = {2, 3, hw[1], hw[2]}, {co, 3, 3, 3}
      local x, w, b = randn(xs, rng), randn(ws, rng), randn({co}, rng)
      local want, oshape = ref_conv(flat(x), xs, flat(w), ws, flat(b), 1, 1)
      local tag = string.format("%dx%d, %d channels (%s)", hw[1], hw[2], co, K.conv2d_path(xs, ws, 1, 1).forward)
      assert_near(K.conv2d_forward(x, w, b, 1, 1), want, 1e-5, "forward " .. tag)
      local res = randn(oshape, rng)
      local fused = K.conv2d_forward(x, w, b, 1, 1, nil, true, res)
      local plain = from_flat(want, oshape)
      assert_near(fused, (plain + res):relu(), 1e-5, "epilogue " .. tag)
      local g = randn(oshape, rng)
      local rdx, rdw, rdb = ref_conv_grads(flat(g), flat(x), xs, flat(w), ws, 1, 1)
      assert_near(K.conv2d_backward_input(g, w, x, 1, 1), rdx, 1e-5, "dinp " .. tag)
      local dw, db = K.conv2d_backward_weight(g, x, sf.zeros(ws), sf.zeros{co}, 1, 1)
      assert_near(dw, rdw, 1e-5, "dweight " .. tag)
      assert_near(db, rdb, 1e-5, "dbias " .. tag)
    end
  end
end

-- The forward's BatchNorm row statistics (stats = true): per image and channel the mean
-- and M2 = sum (v - mean)^2 of the output as written, on every path, chunked and at 2
-- threads; a training-mode BatchNorm given them computes what it computes without them,
-- bit for bit (both merge the same float row statistics in the same order)
function TestConv2d:test_forward_stats()
  local rng = sf.rng(19)
  local function check(x, w, b, stride, pad, tag)
    local plain = K.conv2d_forward(x, w, b, stride, pad)
    local out, st = K.conv2d_forward(x, w, b, stride, pad, nil, nil, nil, true)
    lu.assertEquals(flat(out), flat(plain), tag .. ": the output is unchanged")
    local N, Kc = out:size(1), out:size(2)
    lu.assertEquals(st:size(), {N, Kc, 2}, tag)
    local v, P = flat(out), out:size(3) * out:size(4)
    local want = {}
    for n = 0, N - 1 do
      for k = 0, Kc - 1 do
        local s = 0
        for p = 1, P do s = s + v[(n * Kc + k) * P + p] end
        local m = s / P
        local q = 0
        for p = 1, P do q = q + (v[(n * Kc + k) * P + p] - m) ^ 2 end
        want[#want + 1], want[#want + 2] = m, q
      end
    end
    assert_near(st, want, 1e-5, tag .. ": stats")
    for _, relu in ipairs{false, true} do
      local a = {K.batchnorm_forward_train(out, nil, nil, nil, nil, 0.1, 1e-5, nil, relu)}
      local bb = {K.batchnorm_forward_train(out, nil, nil, nil, nil, 0.1, 1e-5, nil, relu, st)}
      for i = 1, 3 do lu.assertTrue(a[i]:equal(bb[i]), tag .. ": batchnorm result " .. i .. " with the stats") end
    end
    -- a given stats tensor is filled and returned
    local given = sf.zeros{N, Kc, 2}
    local _, st2 = K.conv2d_forward(x, w, b, stride, pad, nil, nil, nil, given)
    lu.assertTrue(rawequal(st2, given), tag .. ": the given stats tensor is returned")
    lu.assertTrue(st2:equal(st), tag .. ": given stats")
  end
  for ci, c in ipairs(CASES) do
    local x, w = randn(c.x, rng), randn(c.w, rng)
    check(x, w, c.bias and randn({c.w[1]}, rng) or nil, c.stride, c.pad, "case " .. ci)
  end
  -- offsets far from 0 (the M2 is around each row's mean), chunks of the im2col path
  check(randn({9, 3, 9, 9}, rng) + 40, randn({4, 3, 5, 5}, rng), sf.ones(4) * 100, 2, 2, "im2col chunks")
  testutil.assert_same_bits_across_threads(function(r)
    local res = {}
    for _, c in ipairs{{{6, 8, 12, 12}, {8, 8, 3, 3}, 1, 1}, {{6, 8, 12, 12}, {16, 8, 3, 3}, 2, 1},
                       {{6, 8, 12, 12}, {16, 8, 1, 1}, 2, 0}, {{6, 3, 9, 9}, {4, 3, 5, 5}, 2, 2}} do
      local _, st = K.conv2d_forward(randn(c[1], r), randn(c[2], r), nil, c[3], c[4], nil, nil, nil, true)
      res[#res + 1] = {"stats " .. #res + 1, st}
    end
    return res
  end, 23)
  -- bad stats
  local x, w = randn({2, 3, 6, 6}, rng), randn({4, 3, 3, 3}, rng)
  lu.assertErrorMsgContains("conv2d_forward: argument #9 (stats) has shape [2,4,3], expected [2,4,2]",
    K.conv2d_forward, x, w, nil, 1, 1, nil, nil, nil, sf.zeros{2, 4, 3})
  lu.assertErrorMsgContains("conv2d_forward: argument #9 (stats) is", K.conv2d_forward, x, w, nil, 1, 1, nil, nil,
    nil, "yes")
  lu.assertErrorMsgContains("conv2d_forward: argument #9 (stats) of shape [2,4,2] is not contiguous",
    K.conv2d_forward, x, w, nil, 1, 1, nil, nil, nil, sf.zeros{2, 2, 4}:transpose(2, 3))
  -- an empty batch: empty output and statistics
  local o0, s0 = K.conv2d_forward(sf.zeros{0, 3, 6, 6}, w, nil, 1, 1, nil, nil, nil, true)
  lu.assertEquals({o0:size(), s0:size()}, {{0, 4, 6, 6}, {0, 4, 2}})
  local buf = sf.zeros(72)
  lu.assertErrorMsgContains("conv2d_forward: argument #9 shares storage with argument #1", K.conv2d_forward,
    buf:view(2, 4, 3, 3), sf.zeros{4, 4, 3, 3}, nil, 1, 1, nil, nil, nil, buf:narrow(1, 1, 16):view(2, 4, 2))
  local out, st = K.conv2d_forward(x, w, nil, 1, 1, nil, nil, nil, true)
  lu.assertErrorMsgContains("batchnorm_forward_train: argument #10 (stats) has shape [2,4], expected [2,4,2]",
    K.batchnorm_forward_train, out, nil, nil, nil, nil, 0.1, 1e-5, nil, false, sf.zeros{2, 4})
  lu.assertErrorMsgContains("batchnorm_forward_train: argument #10 (stats) has shape [2,4,2], expected [4,2,2] ([N, C, 2] of input [4,2,6,6])",
    K.batchnorm_forward_train, out:reshape(4, 2, 6, 6), nil, nil, nil, nil, 0.1, 1e-5, nil, false, st)
end

function TestConv2d:test_backward_against_naive()
  local rng = sf.rng(12)
  for ci, c in ipairs(CASES) do
    local x, w = randn(c.x, rng), randn(c.w, rng)
    local out = K.conv2d_forward(x, w, nil, c.stride, c.pad)
    local g = randn(out:size(), rng)
    local rdx, rdw, rdb = ref_conv_grads(flat(g), flat(x), c.x, flat(w), c.w, c.stride, c.pad)
    local dx = K.conv2d_backward_input(g, w, x, c.stride, c.pad)
    assert_near(dx, rdx, 1e-5, "dinp case " .. ci)
    -- the shape may also be given as a table
    assert_near(K.conv2d_backward_input(g, w, c.x, c.stride, c.pad), rdx, 1e-5, "dinp (shape) case " .. ci)
    local dw, db = K.conv2d_backward_weight(g, x, sf.zeros(c.w), sf.zeros{c.w[1]}, c.stride, c.pad)
    assert_near(dw, rdw, 1e-5, "dweight case " .. ci)
    assert_near(db, rdb, 1e-5, "dbias case " .. ci)
  end
end

-- enough images that the kernels process the batch in several chunks (the last partial)
function TestConv2d:test_larger_batch()
  local rng = sf.rng(13)
  local xs, ws = {9, 16, 20, 20}, {2, 16, 3, 3}
  local x, w, b = randn(xs, rng), randn(ws, rng), randn({2}, rng)
  local want = ref_conv(flat(x), xs, flat(w), ws, flat(b), 1, 1)
  local out = K.conv2d_forward(x, w, b, 1, 1)
  assert_near(out, want, 1e-5, "forward")
  local g = randn(out:size(), rng)
  local rdx, rdw, rdb = ref_conv_grads(flat(g), flat(x), xs, flat(w), ws, 1, 1)
  assert_near(K.conv2d_backward_input(g, w, x, 1, 1), rdx, 1e-5, "dinp")
  local dw, db = K.conv2d_backward_weight(g, x, sf.zeros(ws), sf.zeros{2}, 1, 1)
  assert_near(dw, rdw, 1e-4, "dweight")
  assert_near(db, rdb, 1e-5, "dbias")
end

-- With several threads the batch is split into one range of images per thread (each with
-- its own columns and a single-threaded sgemm; the im2col forward and input gradient in
-- whole chunks of images) and the weight-gradient partials are added in a fixed order:
-- every thread count must agree with the naive reference, give one thread's bits for the
-- forward and the input gradient (the weight gradient to rounding), and a thread count
-- the same bits every time.
function TestConv2d:test_threads_agree()
  local rng = sf.rng(15)
  -- im2col weight gradient with direct forward/input gradient; every path direct; the
  -- strided 1x1 path; the im2col path (stride 2)
  local geoms = {
    {xs = {13, 8, 12, 12}, ws = {6, 8, 3, 3}, stride = 1, pad = 1},
    {xs = {9, 3, 20, 20}, ws = {10, 3, 3, 3}, stride = 1, pad = 1},
    {xs = {11, 16, 40, 40}, ws = {24, 16, 1, 1}, stride = 2, pad = 0},
    {xs = {7, 4, 11, 11}, ws = {5, 4, 3, 3}, stride = 2, pad = 1},
    {xs = {7, 4, 16, 16}, ws = {9, 4, 3, 3}, stride = 2, pad = 1},
    -- im2col on a 3-column plane with 16 channels (a Winograd geometry the direct path
    -- rejects): 2 images, 1 or 2 per part
    {xs = {2, 16, 12, 3}, ws = {36, 16, 3, 3}, stride = 1, pad = 1},
  }
  for gi, geo in ipairs(geoms) do
    local xs, ws, st, pd = geo.xs, geo.ws, geo.stride, geo.pad
    local x, w, b = randn(xs, rng), randn(ws, rng), randn({ws[1]}, rng)
    local want, oshape = ref_conv(flat(x), xs, flat(w), ws, flat(b), st, pd)
    local g = randn(oshape, rng)
    local rdx, rdw, rdb = ref_conv_grads(flat(g), flat(x), xs, flat(w), ws, st, pd)
    local n0 = sf.threads()
    local function run()
      local out = K.conv2d_forward(x, w, b, st, pd)
      local dx = K.conv2d_backward_input(g, w, x, st, pd)
      local dw, db = K.conv2d_backward_weight(g, x, sf.zeros(ws), sf.zeros{ws[1]}, st, pd)
      return {flat(out), flat(dx), flat(dw), flat(db)}
    end
    local one
    for _, t in ipairs{1, 2, 3, 2} do
      local tag = string.format("geometry %d, %d threads", gi, t)
      sf.set_threads(t)
      local r = run()
      sf.set_threads(n0)
      assert_near(r[1], want, 1e-5, tag .. ": forward")
      assert_near(r[2], rdx, 1e-5, tag .. ": dinp")
      assert_near(r[3], rdw, 1e-4, tag .. ": dweight")
      assert_near(r[4], rdb, 1e-5, tag .. ": dbias")
      if t == 1 then one = r end
      lu.assertEquals(r[1], one[1], tag .. " vs 1: forward")
      lu.assertEquals(r[2], one[2], tag .. " vs 1: dinp")
      assert_near(r[3], one[3], 1e-5, tag .. " vs 1: dweight")
      sf.set_threads(t)
      local again = run()
      sf.set_threads(n0)
      for i = 1, 4 do lu.assertEquals(again[i], r[i], tag .. ": repeatable") end
    end
  end
end

function TestConv2d:test_finite_differences()
  local rng = sf.rng(14)
  -- the last three cases: the Winograd kernels on AVX-512, F(2x2, 3x3), F(4x4, 3x3) and
  -- stride 2
  for ci, c in ipairs({CASES[1], CASES[2], CASES[5], CASES[#CASES - 2], CASES[#CASES - 1], CASES[#CASES]}) do
    local x, w, b = randn(c.x, rng), randn(c.w, rng), randn({c.w[1]}, rng)
    local out = K.conv2d_forward(x, w, b, c.stride, c.pad)
    local proj = randn(out:size(), rng)
    local function loss() return project(K.conv2d_forward(x, w, b, c.stride, c.pad), proj) end
    local dx = flat(K.conv2d_backward_input(proj, w, x, c.stride, c.pad))
    local dw, db = K.conv2d_backward_weight(proj, x, sf.zeros(c.w), sf.zeros{c.w[1]}, c.stride, c.pad)
    fd_check(x, dx, loss, rng, 12, 1e-2, 1e-2, "conv dinp case " .. ci)
    fd_check(w, flat(dw), loss, rng, 12, 1e-2, 1e-2, "conv dweight case " .. ci)
    fd_check(b, flat(db), loss, rng, 3, 1e-2, 1e-2, "conv dbias case " .. ci)
  end
end

function TestConv2d:test_accumulation_and_scale()
  local rng = sf.rng(15)
  local x, w = randn({2, 3, 6, 6}, rng), randn({4, 3, 3, 3}, rng)
  local g = randn({2, 4, 6, 6}, rng)
  local dw1, db1 = K.conv2d_backward_weight(g, x, sf.zeros{4, 3, 3, 3}, sf.zeros{4}, 1, 1)
  local dw2, db2 = sf.zeros{4, 3, 3, 3}, sf.zeros{4}
  local rw, rb = K.conv2d_backward_weight(g, x, dw2, db2, 1, 1)
  lu.assertTrue(rw == dw2 and rb == db2, "the accumulators are returned")
  K.conv2d_backward_weight(g, x, dw2, db2, 1, 1)
  assert_near(dw2, flat(dw1 * 2), 1e-6, "backward twice dweight")
  assert_near(db2, flat(db1 * 2), 1e-6, "backward twice dbias")
  local dw3, db3 = K.conv2d_backward_weight(g, x, sf.zeros{4, 3, 3, 3}, sf.zeros{4}, 1, 1, 0.25)
  assert_near(dw3, flat(dw1 * 0.25), 1e-6, "scale dweight")
  assert_near(db3, flat(db1 * 0.25), 1e-6, "scale dbias")
  -- on top of existing values
  local dw4 = sf.ones{4, 3, 3, 3}
  K.conv2d_backward_weight(g, x, dw4, nil, 1, 1, -1)
  assert_near(dw4, flat(1 - dw1), 1e-6, "accumulates into existing values")
end

function TestConv2d:test_nil_skips_and_counters()
  local rng = sf.rng(16)
  local x, w = randn({2, 3, 5, 5}, rng), randn({4, 3, 3, 3}, rng)
  local g = randn({2, 4, 5, 5}, rng)
  K.reset_counters()
  K.conv2d_forward(x, w, nil, 1, 1)
  local r1, r2 = K.conv2d_backward_weight(g, x, nil, nil, 1, 1)
  lu.assertNil(r1)
  lu.assertNil(r2)
  local cnt = K.counters()
  lu.assertEquals(cnt.conv_fwd, 1)
  lu.assertEquals(cnt.conv_bwd_weight, 0, "nothing requested: no work, no count")
  lu.assertEquals(cnt.conv_bwd_input, 0)
  -- bias only: counted, and equal to the full call's bias gradient
  local db = sf.zeros{4}
  local rw, rb = K.conv2d_backward_weight(g, x, nil, db, 1, 1)
  lu.assertNil(rw)
  lu.assertTrue(rb == db)
  local _, dbf = K.conv2d_backward_weight(g, x, sf.zeros{4, 3, 3, 3}, sf.zeros{4}, 1, 1)
  assert_near(db, dbf, 1e-6, "bias-only gradient")
  K.conv2d_backward_input(g, w, x, 1, 1)
  cnt = K.counters()
  lu.assertEquals(cnt.conv_bwd_weight, 2)
  lu.assertEquals(cnt.conv_bwd_input, 1)
  lu.assertEquals(cnt.linear_fwd, 0)
  K.reset_counters()
  lu.assertEquals(K.counters().conv_fwd, 0)
  -- every kernel kind has a counter
  for _, name in ipairs({"linear_fwd", "linear_bwd_input", "linear_bwd_weight", "conv_fwd", "conv_bwd_input",
                         "conv_bwd_weight", "pool_fwd", "pool_bwd", "norm_fwd", "act_fwd", "loss_fwd",
                         "optim_step"}) do
    lu.assertEquals(K.counters()[name], 0, name)
  end
end

function TestConv2d:test_strided_inputs_agree()
  local rng = sf.rng(17)
  local x, w, b = randn({2, 3, 6, 5}, rng), randn({4, 3, 3, 3}, rng), randn({4}, rng)
  -- the same values through non-contiguous views
  local xt = x:transpose(3, 4):clone():transpose(3, 4)
  local wt = w:transpose(1, 2):clone():transpose(1, 2)
  local bt = randn({4, 2}, rng):select(2, 1)
  bt:copy(b)
  lu.assertFalse(xt:is_contiguous())
  lu.assertFalse(wt:is_contiguous())
  lu.assertFalse(bt:is_contiguous())
  local ref = K.conv2d_forward(x, w, b, 1, 1)
  assert_near(K.conv2d_forward(xt, wt, bt, 1, 1), ref, 0, "forward")
  local g = randn(ref:size(), rng)
  local gt = g:transpose(1, 2):clone():transpose(1, 2)
  assert_near(K.conv2d_backward_input(gt, wt, xt, 1, 1), K.conv2d_backward_input(g, w, x, 1, 1), 0, "dinp")
  local dw1, db1 = K.conv2d_backward_weight(g, x, sf.zeros{4, 3, 3, 3}, sf.zeros{4}, 1, 1)
  local dw2, db2 = K.conv2d_backward_weight(gt, xt, sf.zeros{4, 3, 3, 3}, sf.zeros{4}, 1, 1)
  assert_near(dw2, dw1, 0, "dweight")
  assert_near(db2, db1, 0, "dbias")
  -- expanded (stride 0) upstream gradient
  local ge = sf.ones{1, 1, 1, 1}:expand{2, 4, 6, 5}
  assert_near(K.conv2d_backward_input(ge, w, x, 1, 1), K.conv2d_backward_input(sf.ones{2, 4, 6, 5}, w, x, 1, 1), 0,
    "expanded dout")
end

function TestConv2d:test_out_reuse()
  local rng = sf.rng(18)
  local x, w = randn({2, 3, 5, 5}, rng), randn({4, 3, 3, 3}, rng)
  local out = sf.full({2, 4, 5, 5}, 7)
  local r = K.conv2d_forward(x, w, nil, 1, 1, out)
  lu.assertTrue(r == out)
  assert_near(out, K.conv2d_forward(x, w, nil, 1, 1), 0, "out overwritten")
  local dinp = sf.full({2, 3, 5, 5}, 7)
  local g = randn({2, 4, 5, 5}, rng)
  lu.assertTrue(K.conv2d_backward_input(g, w, x, 1, 1, dinp) == dinp)
  assert_near(dinp, K.conv2d_backward_input(g, w, x, 1, 1), 0, "dinp overwritten")
  -- a view into a larger buffer works when contiguous (a flat gradient buffer)
  local buf = sf.zeros{200}
  local dwv = buf:narrow(1, 11, 108):view{4, 3, 3, 3}
  K.conv2d_backward_weight(g, x, dwv, nil, 1, 1)
  local dw = K.conv2d_backward_weight(g, x, sf.zeros{4, 3, 3, 3}, nil, 1, 1)
  assert_near(dwv, dw, 0, "dweight view")
  lu.assertEquals(buf:get(10), 0)
  lu.assertEquals(buf:get(119), 0)
end

function TestConv2d:test_errors()
  local x, w = sf.zeros{2, 3, 8, 8}, sf.zeros{4, 3, 3, 3}
  local function err(msg, f, ...) lu.assertErrorMsgContains(msg, f, ...) end
  err("conv2d_forward: argument #1 (input) has shape [8,3,32], expected [N,C,H,W]", K.conv2d_forward,
    sf.zeros{8, 3, 32}, w)
  err("conv2d_forward: argument #1 (input) is nil, expected a tensor [N,C,H,W]", K.conv2d_forward, nil, w)
  err("conv2d_forward: argument #2 (weight) has shape [4,3,3], expected [K,C,R,S]", K.conv2d_forward, x,
    sf.zeros{4, 3, 3})
  err("conv2d_forward: input has 3 channels but weight [16,4,3,3] expects 4", K.conv2d_forward, x,
    sf.zeros{16, 4, 3, 3})
  err("conv2d_forward: argument #3 (bias) has shape [5], expected [4] (weight [4,3,3,3])", K.conv2d_forward, x, w,
    sf.zeros{5})
  err("conv2d_forward: argument #3 (bias) has shape [4,1], expected [K]", K.conv2d_forward, x, w, sf.zeros{4, 1})
  err("conv2d_forward: kernel 3x3 is larger than the padded input 2x2", K.conv2d_forward, sf.zeros{1, 3, 2, 2}, w)
  err("conv2d_forward: stride {0,0} must be positive", K.conv2d_forward, x, w, nil, 0)
  err("conv2d_forward: padding {-1,0} must be non-negative", K.conv2d_forward, x, w, nil, 1, {-1, 0})
  err("conv2d_forward: argument #4 (stride) is string, expected an integer or {h,w}", K.conv2d_forward, x, w, nil,
    "2")
  err("conv2d_forward: argument #4 (stride) is 1.5, expected an integer or {h,w}", K.conv2d_forward, x, w, nil, 1.5)
  err("conv2d_forward: argument #5 (padding) entry 2 is not an integer", K.conv2d_forward, x, w, nil, 1, {1, "a"})
  err("conv2d_forward: argument #6 (out) has shape [2,4,8,8], expected [2,4,6,6]", K.conv2d_forward, x, w, nil, 1,
    0, sf.zeros{2, 4, 8, 8})
  err("conv2d_forward: argument #6 (out) of shape [2,4,6,6] is not contiguous", K.conv2d_forward, x, w, nil, 1, 0,
    sf.zeros{2, 4, 6, 6}:transpose(3, 4))
  local xx = sf.zeros{1, 1, 3, 3}
  err("conv2d_forward: argument #6 shares storage with argument #1", K.conv2d_forward, xx, sf.zeros{1, 1, 1, 1}, nil,
    1, 0, xx)
  err("conv2d_forward: argument #2 (weight) is an empty (released) tensor", function()
    local ww = sf.zeros{4, 3, 3, 3}
    getmetatable(ww).__gc(ww)
    return K.conv2d_forward(x, ww)
  end)
  -- backward input
  err("conv2d_backward_input: argument #1 (dout) has shape [2,4,5,5], expected [2,4,8,8]",
    K.conv2d_backward_input, sf.zeros{2, 4, 5, 5}, w, x, 1, 1)
  err("conv2d_backward_input: argument #3 (input) is string, expected a tensor or a shape {N,C,H,W}",
    K.conv2d_backward_input, sf.zeros{2, 4, 8, 8}, w, "x", 1, 1)
  err("conv2d_backward_input: argument #3 (input) entry 3 is not a size", K.conv2d_backward_input,
    sf.zeros{2, 4, 8, 8}, w, {2, 3, -8, 8}, 1, 1)
  err("conv2d_backward_input: argument #3 (input) has shape [2,3,8], expected [N,C,H,W]", K.conv2d_backward_input,
    sf.zeros{2, 4, 8, 8}, w, sf.zeros{2, 3, 8}, 1, 1)
  err("conv2d_backward_input: input has 5 channels but weight [4,3,3,3] expects 3", K.conv2d_backward_input,
    sf.zeros{2, 4, 8, 8}, w, {2, 5, 8, 8}, 1, 1)
  err("conv2d_backward_input: argument #6 (dinp) has shape [2,3,8,9], expected [2,3,8,8]", K.conv2d_backward_input,
    sf.zeros{2, 4, 8, 8}, w, x, 1, 1, sf.zeros{2, 3, 8, 9})
  local g = sf.zeros{2, 4, 8, 8}
  -- backward weight
  err("conv2d_backward_weight: argument #1 (dout) has shape [2,4,8,8], expected [2,4,6,6]",
    K.conv2d_backward_weight, g, x, sf.zeros{4, 3, 3, 3}, nil, 1, 0)
  err("conv2d_backward_weight: input has 3 channels but weight [4,2,3,3] expects 2", K.conv2d_backward_weight, g, x,
    sf.zeros{4, 2, 3, 3}, nil, 1, 1)
  err("conv2d_backward_weight: argument #4 (dbias) has shape [3], expected [4]", K.conv2d_backward_weight, g, x, nil,
    sf.zeros{3}, 1, 1)
  err("conv2d_backward_weight: argument #1 (dout) has shape [2,4,8,8], expected [3,*,*,*]",
    K.conv2d_backward_weight, g, sf.zeros{3, 3, 8, 8}, nil, sf.zeros{4}, 1, 1)
  err("conv2d_backward_weight: argument #3 (dweight) of shape [4,3,3,3] is not contiguous",
    K.conv2d_backward_weight, g, x, sf.zeros{4, 3, 3, 3}:transpose(3, 4), nil, 1, 1)
  err("conv2d_backward_weight: argument #7 (scale) is string, expected a number", K.conv2d_backward_weight, g, x,
    sf.zeros{4, 3, 3, 3}, nil, 1, 1, "x")
  err("conv2d_backward_weight: argument #3 shares storage with argument #1", K.conv2d_backward_weight,
    g, x, g:narrow(1, 1, 1):view(-1):narrow(1, 1, 108):view{4, 3, 3, 3}, nil, 1, 1)
end

-- runs fn with the masked 3x3 path (AVX-512 builds) switched on or off, restoring it;
-- Winograd's path (which would take the wider layers first) is off meanwhile
local function with_masked(on, fn, ...)
  local was, wino = K.conv2d_masked(on), K.conv2d_winograd(false)
  local ok, err = pcall(fn, ...)
  K.conv2d_masked(was)
  K.conv2d_winograd(wino)
  if not ok then error(err, 0) end
end

-- The masked 3x3 path against the padded direct path it replaces: the forward (with its
-- epilogue and statistics) and the input gradient are the same sums in the same order,
-- bit for bit; the weight gradient closes its lanes in another order (to rounding).
-- Stride 2: the masked tiles on dense phase planes against the padded phase path.
function TestConv2d:test_masked_matches_direct()
  if sf.simd ~= "avx512" then
    lu.assertFalse(K.conv2d_masked(), "no masked path without AVX-512")
    return
  end
  local rng = sf.rng(33)
  local geoms = {{2, 3, 7, 5, 4}, {2, 6, 12, 10, 11}, {1, 2, 20, 20, 17}, {3, 16, 8, 8, 16}, {2, 5, 4, 4, 19},
                 {2, 8, 16, 16, 24}, {1, 3, 33, 6, 8}}
  for _, gm in ipairs(geoms) do
    local xs, ws = {gm[1], gm[2], gm[3], gm[4]}, {gm[5], gm[2], 3, 3}
    local x, w, b = randn(xs, rng), randn(ws, rng), randn({gm[5]}, rng)
    local res = randn({gm[1], gm[5], gm[3], gm[4]}, rng)
    local g = randn({gm[1], gm[5], gm[3], gm[4]}, rng)
    local r = {}
    for _, on in ipairs{true, false} do
      with_masked(on, function()
        local tag = table.concat(xs, "x") .. " -> " .. gm[5] .. (on and " masked" or " direct")
        lu.assertEquals(K.conv2d_path(xs, ws, 1, 1).forward, on and "direct-masked" or "direct", tag)
        local o, st = K.conv2d_forward(x, w, b, 1, 1, nil, nil, nil, true)
        local dw = sf.zeros(ws)
        K.conv2d_backward_weight(g, x, dw, nil, 1, 1)
        r[on] = {o = o, st = st, ep = K.conv2d_forward(x, w, b, 1, 1, nil, true, res),
                 dx = K.conv2d_backward_input(g, w, x, 1, 1), dw = dw}
      end)
    end
    local tag = table.concat(xs, "x") .. " -> " .. gm[5]
    for _, k in ipairs{"o", "st", "ep", "dx"} do lu.assertTrue(r[true][k]:equal(r[false][k]), tag .. ": " .. k) end
    assert_near(r[true].dw, r[false].dw, 1e-5, tag .. ": dweight")
  end
  -- stride 2: odd and even planes, 1..3 rows or columns, channel counts around the tiles';
  -- planes under 128 positions that do not fill whole vectors stack images on one grid
  -- (7x7: 8 images, so 11 leave a short last chunk)
  local geoms2 = {{2, 3, 7, 5, 4}, {2, 6, 12, 10, 11}, {1, 2, 20, 20, 17}, {3, 16, 8, 8, 16}, {2, 5, 4, 4, 19},
                  {2, 8, 16, 16, 24}, {1, 4, 14, 14, 33}, {1, 3, 2, 3, 5}, {2, 4, 3, 9, 7}, {1, 2, 33, 31, 9},
                  {11, 3, 14, 14, 9}, {5, 2, 7, 5, 4}}
  for _, gm in ipairs(geoms2) do
    local xs, ws = {gm[1], gm[2], gm[3], gm[4]}, {gm[5], gm[2], 3, 3}
    local os = {gm[1], gm[5], (gm[3] + 1) // 2, (gm[4] + 1) // 2}
    local x, w, b = randn(xs, rng), randn(ws, rng), randn({gm[5]}, rng)
    local res, g = randn(os, rng), randn(os, rng)
    local r = {}
    for _, on in ipairs{true, false} do
      with_masked(on, function()
        local tag = table.concat(xs, "x") .. " -> " .. gm[5] .. " stride 2" .. (on and " masked" or " phase")
        local p = K.conv2d_path(xs, ws, 2, 1)
        local want = on and "direct-masked-phase" or "direct-phase"
        lu.assertEquals(p.forward, want, tag)
        local o, st = K.conv2d_forward(x, w, b, 2, 1, nil, nil, nil, true)
        local dw = sf.zeros(ws)
        K.conv2d_backward_weight(g, x, dw, nil, 2, 1)
        lu.assertEquals(p.backward_weight, on and "direct-masked-phase" or "direct", tag)
        r[on] = {o = o, st = st, ep = K.conv2d_forward(x, w, b, 2, 1, nil, true, res),
                 dx = K.conv2d_backward_input(g, w, x, 2, 1), pdx = p.backward_input, dw = dw}
      end)
    end
    local tag = table.concat(xs, "x") .. " -> " .. gm[5] .. " stride 2"
    for _, k in ipairs{"o", "st", "ep", "dx"} do lu.assertTrue(r[true][k]:equal(r[false][k]), tag .. ": " .. k) end
    assert_near(r[true].dw, r[false].dw, 1e-5, tag .. ": dweight")
    -- the input gradient takes the phases where the padded phase path would
    lu.assertEquals(r[true].pdx == "direct-masked-phase", r[false].pdx == "direct-phase", tag .. ": " .. r[true].pdx)
  end
  lu.assertErrorMsgContains("conv2d_masked: argument #1 (on) is number, expected a boolean or nil", K.conv2d_masked, 1)
end

-- Each Winograd geometry {N, C, H, W, K} at `stride` (pad 1) against the masked direct
-- path (the Winograd switch off): the forward (with its statistics and epilogue) and the
-- input gradient agree to rounding (within tol of the outputs' scale) and give the same
-- bits at 1 and 2 threads; the weight gradient agrees to rounding at 1 and 2 threads (its
-- per-thread partial sums add in another order). expect(gm, on): the paths of the three
-- kernels with the switch on or off.
local function check_winograd(stride, geoms, rng, expect, tol)
  local n0 = sf.threads()
  for _, gm in ipairs(geoms) do
    local xs, ws = {gm[1], gm[2], gm[3], gm[4]}, {gm[5], gm[2], 3, 3}
    local ys = {gm[1], gm[5], (gm[3] - 1) // stride + 1, (gm[4] - 1) // stride + 1}
    local x, w, b = randn(xs, rng), randn(ws, rng), randn({gm[5]}, rng)
    local res, g = randn(ys, rng), randn(ys, rng)
    local tag = table.concat(xs, "x") .. " -> " .. gm[5] .. " stride " .. stride
    local r = {}
    for _, mode in ipairs{"direct", "w1", "w2"} do
      local was = K.conv2d_winograd(mode ~= "direct")
      sf.set_threads(mode == "w2" and 2 or 1)
      local ok, err = pcall(function()
        local p = K.conv2d_path(xs, ws, stride, 1)
        lu.assertEquals({p.forward, p.backward_input, p.backward_weight}, expect(gm, mode ~= "direct"), tag)
        local o, st = K.conv2d_forward(x, w, b, stride, 1, nil, nil, nil, true)
        r[mode] = {o = o, st = st, ep = K.conv2d_forward(x, w, b, stride, 1, nil, true, res),
                   dx = K.conv2d_backward_input(g, w, x, stride, 1),
                   dw = K.conv2d_backward_weight(g, x, sf.zeros(ws), nil, stride, 1)}
      end)
      K.conv2d_winograd(was)
      sf.set_threads(n0)
      if not ok then error(err, 0) end
    end
    for _, k in ipairs{"o", "st", "ep", "dx"} do
      -- rounding only: a few units in the last place of the outputs' scale (a wrong sign or
      -- tap in a transform is off by the outputs' own size)
      assert_near(r.w1[k], r.direct[k], tol, tag .. ": " .. k)
      lu.assertTrue(r.w1[k]:equal(r.w2[k]), tag .. ": " .. k .. " differs between 1 and 2 threads")
    end
    assert_near(r.w1.dw, r.direct.dw, 4e-6, tag .. ": dweight")
    assert_near(r.w2.dw, r.direct.dw, 4e-6, tag .. ": dweight, 2 threads")
  end
end

-- the paths of a geometry whose forward and input gradient take `path` when taken(gm) and
-- the switch is on (else `direct`), and whose weight gradient takes `wpath` then (channels
-- in multiples of 4 both ways)
local function paths(path, wpath, direct, taken)
  return function(gm, on)
    local f = on and taken(gm) and path or direct
    local w = on and taken(gm) and gm[2] % 4 == 0 and gm[5] % 4 == 0 and wpath or direct
    return {f, f, w}
  end
end

-- ... and one geometry's three kernels against the naive reference, with the bias
local function check_winograd_reference(xs, ws, stride, path, rng, tol)
  local x, w, b = randn(xs, rng), randn(ws, rng), randn({ws[1]}, rng)
  lu.assertEquals(K.conv2d_path(xs, ws, stride, 1).forward, path)
  local want, oshape = ref_conv(flat(x), xs, flat(w), ws, flat(b), stride, 1)
  assert_near(K.conv2d_forward(x, w, b, stride, 1), want, tol, path .. " forward against the reference")
  local g = randn(oshape, rng)
  local rdx, rdw = ref_conv_grads(flat(g), flat(x), xs, flat(w), ws, stride, 1)
  assert_near(K.conv2d_backward_input(g, w, x, stride, 1), rdx, tol, path .. " input gradient against the reference")
  assert_near(K.conv2d_backward_weight(g, x, sf.zeros(ws), nil, stride, 1), rdw, 1e-5,
    path .. " weight gradient against the reference")
end

-- Winograd F(2x2, 3x3) (3x3 pad 1 stride 1, 16 or more channels both ways, AVX-512), the
-- weight gradient by F(3x3, 2x2): planes with odd sides (tiles cut at the edges), one row,
-- rows of more than 16 tiles, channels that do not fill the register tiles, and batches
-- whose chunks of tile rows span images or end short.
function TestConv2d:test_winograd_matches_direct()
  if sf.simd ~= "avx512" then
    lu.assertFalse(K.conv2d_winograd(), "no Winograd path without AVX-512")
    lu.assertEquals(K.conv2d_path({2, 16, 8, 8}, {16, 16, 3, 3}, 1, 1).forward, "direct")
    return
  end
  local rng = sf.rng(35)
  local f4 = K.conv2d_winograd4(false) -- F(2x2, 3x3) here; F(4x4, 3x3) below
  check_winograd(1, {{2, 16, 8, 8, 16}, {3, 16, 7, 9, 17}, {2, 24, 1, 5, 16}, {2, 16, 6, 4, 20}, {1, 16, 5, 40, 16},
                     {5, 32, 4, 4, 32}, {9, 19, 3, 4, 33}, {2, 16, 34, 33, 24}, {3, 64, 4, 4, 64},
                     -- planes of up to 16 columns put 2 or 4 rows of tiles in a vector: 5 rows
                     -- of tiles (a group cut at the image's end), and a chunk ending mid-image
                     {7, 16, 10, 12, 16}, {15, 16, 6, 12, 16}},
                 rng, paths("winograd", "winograd", "direct-masked", function() return true end), 4e-6)
  check_winograd_reference({2, 16, 6, 7}, {16, 16, 3, 3}, 1, "winograd", rng, 1e-5)
  K.conv2d_winograd4(f4)
  lu.assertErrorMsgContains("conv2d_winograd: argument #1 (on) is number, expected a boolean or nil",
    K.conv2d_winograd, 1)
end

-- Stride 2 (3x3, pad 1) by Winograd on the phases ("winograd-phase"), under the same switch:
-- 2x2 output tiles cut at odd sides, rows of more than 8 tiles (one transform step), 2 and
-- 4 rows of tiles per vector (groups cut at an image's end, a chunk ending mid-image),
-- channels that do not fill the register tiles, chunks spanning images. A 3x3 output (4
-- tiles for 9 outputs: more multiplies than the direct sum) keeps the direct path.
function TestConv2d:test_winograd_phase_matches_direct()
  if sf.simd ~= "avx512" then
    lu.assertEquals(K.conv2d_path({2, 16, 28, 28}, {16, 16, 3, 3}, 2, 1).forward, "direct-phase")
    return
  end
  local rng = sf.rng(36)
  check_winograd(2, {{2, 16, 28, 28, 16}, {3, 16, 32, 32, 32}, {2, 16, 16, 16, 20}, {2, 20, 27, 25, 16},
                     {1, 16, 8, 70, 16}, {9, 17, 12, 12, 33}, {5, 64, 16, 16, 64}, {40, 16, 8, 8, 16},
                     {2, 16, 4, 30, 16}, {3, 32, 15, 16, 16}, {2, 64, 14, 14, 64}, {3, 64, 28, 28, 64},
                     {2, 16, 6, 5, 16}},
                 rng, paths("winograd-phase", "winograd-phase", "direct-masked-phase", function(gm)
                   -- taken where its 2x2 tiles (25 multiplies) beat 9 per output
                   local oh, ow = (gm[3] + 1) // 2, (gm[4] + 1) // 2
                   return 25 * ((oh + 1) // 2) * ((ow + 1) // 2) <= 9 * oh * ow
                 end), 4e-6)
  check_winograd_reference({2, 16, 12, 13}, {16, 16, 3, 3}, 2, "winograd-phase", rng, 1e-5)
end

-- F(4x4, 3x3) for the same layers where its tiles fit the plane better than F(2x2, 3x3)'s
-- (the weight gradient by its transpose, channels in multiples of 4 both ways): odd sides,
-- 2 and 4 rows of tiles per vector (planes of at most 32 and 16 columns; groups cut at an
-- image's end, chunks ending mid-image), rows of more than 7 tiles (one transform step on
-- wider planes), channels that do not fill the register tiles. Its transforms scale by up
-- to 8 and 1/24: measured 2-7e-6 of the outputs' scale against F(2x2, 3x3)'s 2-9e-7, so
-- the bound is 2e-5 (a wrong coefficient is off by the outputs' own size).
function TestConv2d:test_winograd4_matches_direct()
  if sf.simd ~= "avx512" then
    lu.assertFalse(K.conv2d_winograd4(), "no Winograd path without AVX-512")
    return
  end
  local rng = sf.rng(37)
  local function taken(gm) -- 36 multiplies per 4x4 tile against 16 per 2x2
    return 36 * ((gm[3] + 3) // 4) * ((gm[4] + 3) // 4) < 16 * ((gm[3] + 1) // 2) * ((gm[4] + 1) // 2)
  end
  local f4 = paths("winograd4", "winograd4", "direct-masked", taken)
  local f2 = paths("winograd", "winograd", "direct-masked", function() return true end)
  check_winograd(1, {{2, 16, 32, 32, 16}, {3, 32, 16, 16, 32}, {5, 64, 8, 8, 64}, {3, 16, 7, 9, 17},
                     {2, 19, 13, 70, 24}, {9, 16, 12, 12, 20}, {3, 16, 30, 29, 16}, {40, 16, 4, 4, 16},
                     {2, 64, 32, 32, 64}, {2, 16, 2, 6, 16}},
                 rng, function(gm, on) return taken(gm) and f4(gm, on) or f2(gm, on) end, 2e-5)
  check_winograd_reference({2, 16, 9, 11}, {16, 16, 3, 3}, 1, "winograd4", rng, 3e-5)
  lu.assertErrorMsgContains("conv2d_winograd4: argument #1 (on) is number, expected a boolean or nil",
    K.conv2d_winograd4, 1)
end

-- K.conv2d_backward runs both gradients; on stride-1 3x3 direct shapes in one pass over
-- dout (its padded planes serve as the weight gradient's wide layout), otherwise through
-- the two kernels. Either way the bits are those of the separate kernels: the same parts,
-- chunks and sums (dweight at a given thread count; dinp and dbias at any).
local FUSED_GEOMS = {
  -- ResNet-like, several chunks of images (the last partial), remainder channel tiles
  {xs = {11, 5, 8, 8}, ws = {7, 5, 3, 3}, pad = 1, path = "direct-fused"},
  {xs = {3, 4, 16, 16}, ws = {6, 4, 3, 3}, pad = 1, path = "direct-fused"},
  -- small and odd maps: the tail [J, Jw) of the wide sweep reaches into the next
  -- channel's top padding
  {xs = {9, 3, 4, 4}, ws = {4, 3, 3, 3}, pad = 1, path = "direct-fused"},
  {xs = {7, 2, 5, 5}, ws = {5, 2, 3, 3}, pad = 1, path = "direct-fused"},
  {xs = {5, 3, 7, 6}, ws = {2, 3, 3, 3}, pad = 1, path = "direct-fused"},
  {xs = {4, 2, 3, 9}, ws = {1, 2, 3, 3}, pad = {1, 1}, path = "direct-fused"},
  {xs = {2, 3, 12, 13}, ws = {64, 3, 3, 3}, pad = 1, path = "direct-fused"},
  -- several parts at 2 and 3 threads: one chunk each, then two chunks each
  {xs = {13, 8, 12, 12}, ws = {6, 8, 3, 3}, pad = 1, path = "direct-fused"},
  {xs = {24, 8, 16, 16}, ws = {8, 8, 3, 3}, pad = 1, path = "direct-fused"},
  -- the separate kernels: more than 64 output channels, no padding, stride 2, 1x1,
  -- 1x1 strided, 5x5
  {xs = {3, 2, 8, 8}, ws = {65, 2, 3, 3}, pad = 1, path = "separate"},
  {xs = {3, 3, 10, 9}, ws = {9, 3, 3, 3}, pad = 0, path = "separate"},
  {xs = {5, 4, 11, 11}, ws = {5, 4, 3, 3}, stride = 2, pad = 1, path = "separate"},
  {xs = {4, 5, 4, 3}, ws = {6, 5, 1, 1}, pad = 0, path = "separate"},
  {xs = {3, 9, 11, 13}, ws = {12, 9, 1, 1}, stride = {2, 3}, pad = 0, path = "separate"},
  {xs = {2, 4, 9, 9}, ws = {3, 4, 5, 5}, pad = 2, path = "separate"},
}

-- (with the masked path off: on AVX-512 builds it takes these 3x3 layers, each of its
-- kernels reading dout once, and the one-pass direct backward serves the other builds)
function TestConv2d:test_backward_both_paths()
  with_masked(false, function()
  for gi, c in ipairs(FUSED_GEOMS) do
    lu.assertEquals(K.conv2d_path(c.xs, c.ws, c.stride or 1, c.pad).backward, c.path, "geometry " .. gi)
  end
  lu.assertEquals(K.conv2d_path({128, 16, 32, 32}, {16, 16, 3, 3}, 1, 1).backward, "direct-fused")
  lu.assertEquals(K.conv2d_path({128, 64, 8, 8}, {64, 64, 3, 3}, 1, 1).backward, "direct-fused")
  lu.assertEquals(K.conv2d_path({128, 16, 32, 32}, {32, 16, 3, 3}, 2, 1).backward, "separate")
  end)
  -- with it on, the masked kernels run one after the other
  if sf.simd == "avx512" then
    lu.assertEquals(K.conv2d_path({128, 16, 32, 32}, {16, 16, 3, 3}, 1, 1).backward, "separate")
  end
end

-- the fused call against the separate ones, bit for bit, at 1, 2, 3 threads (dweight and
-- dbias accumulated onto nonzero values with a scale); dinp and dbias the same bits at
-- every thread count
function TestConv2d:test_backward_same_bits_as_separate()
  for _, masked in ipairs{false, true} do with_masked(masked, function()
  local all = {}
  for _, c in ipairs(CASES) do all[#all + 1] = {xs = c.x, ws = c.w, stride = c.stride, pad = c.pad} end
  for _, c in ipairs(FUSED_GEOMS) do all[#all + 1] = c end
  testutil.assert_same_bits_across_threads(function(rng)
    local out = {}
    for gi, c in ipairs(all) do
      local st = c.stride or 1
      local x, w = randn(c.xs, rng), randn(c.ws, rng)
      local oshape = K.conv2d_forward(x, w, nil, st, c.pad):size()
      local g = randn(oshape, rng)
      local w0, b0 = randn(c.ws, rng), randn({c.ws[1]}, rng)
      local tag = string.format("geometry %d (%s), %d threads", gi, K.conv2d_path(c.xs, c.ws, st, c.pad).backward,
        sf.threads())
      local dw1, db1 = w0:clone(), b0:clone()
      K.conv2d_backward_weight(g, x, dw1, db1, st, c.pad, 0.5)
      local dx1 = K.conv2d_backward_input(g, w, x, st, c.pad)
      local dw2, db2 = w0:clone(), b0:clone()
      local dx2 = K.conv2d_backward(g, w, x, dw2, db2, st, c.pad, 0.5, true)
      lu.assertTrue(dx2:equal(dx1), tag .. ": dinp")
      lu.assertTrue(dw2:equal(dw1), tag .. ": dweight")
      lu.assertTrue(db2:equal(db1), tag .. ": dbias")
      -- without the bias, without the input gradient, without the weight gradient
      local dw3 = w0:clone()
      lu.assertTrue(K.conv2d_backward(g, w, x, dw3, nil, st, c.pad, 0.5):equal(dx1), tag .. ": dinp, no bias")
      lu.assertTrue(dw3:equal(dw1), tag .. ": dweight, no bias")
      local dw4, db4 = w0:clone(), b0:clone()
      lu.assertNil(K.conv2d_backward(g, w, x, dw4, db4, st, c.pad, 0.5, false))
      lu.assertTrue(dw4:equal(dw1) and db4:equal(db1), tag .. ": weight gradients only")
      local db5 = b0:clone()
      lu.assertTrue(K.conv2d_backward(g, w, x, nil, db5, st, c.pad, 0.5):equal(dx1), tag .. ": dinp and dbias")
      lu.assertTrue(db5:equal(db1), tag .. ": dbias without dweight")
      out[#out + 1] = {tag:gsub(", %d threads", "") .. " dinp", dx2}
      out[#out + 1] = {tag:gsub(", %d threads", "") .. " dbias", db2}
    end
    return out
  end, 31)
  end) end
end

-- against the naive reference too (a chunked batch on the fused path), and the counters
-- of the two gradients it computes
local function backward_naive_and_counters()
  local rng = sf.rng(32)
  local xs, ws = {11, 5, 8, 8}, {7, 5, 3, 3}
  local x, w = randn(xs, rng), randn(ws, rng)
  local _, oshape = ref_conv(flat(x), xs, flat(w), ws, nil, 1, 1)
  local g = randn(oshape, rng)
  local rdx, rdw, rdb = ref_conv_grads(flat(g), flat(x), xs, flat(w), ws, 1, 1)
  K.reset_counters()
  local dw, db = sf.zeros(ws), sf.zeros{7}
  local dx = K.conv2d_backward(g, w, x, dw, db, 1, 1)
  assert_near(dx, rdx, 1e-5, "dinp")
  assert_near(dw, rdw, 1e-4, "dweight")
  assert_near(db, rdb, 1e-5, "dbias")
  local cnt = K.counters()
  lu.assertEquals({cnt.conv_bwd_input, cnt.conv_bwd_weight}, {1, 1})
  lu.assertNil(K.conv2d_backward(g, w, x, nil, nil, 1, 1, 1, false))
  cnt = K.counters()
  lu.assertEquals({cnt.conv_bwd_input, cnt.conv_bwd_weight}, {1, 1}, "nothing requested: no work, no count")
  -- non-contiguous operands give the same bits
  local xt = x:transpose(3, 4):clone():transpose(3, 4)
  local gt = g:transpose(3, 4):clone():transpose(3, 4)
  local dw2, db2 = sf.zeros(ws), sf.zeros{7}
  lu.assertTrue(K.conv2d_backward(gt, w, xt, dw2, db2, 1, 1):equal(dx))
  lu.assertTrue(dw2:equal(dw) and db2:equal(db))
  -- an empty batch: an empty dinp, the gradients untouched
  local dx0 = K.conv2d_backward(sf.zeros{0, 7, 8, 8}, w, sf.zeros{0, 5, 8, 8}, dw2, db2, 1, 1)
  lu.assertEquals(dx0:size(), {0, 5, 8, 8})
  lu.assertTrue(dw2:equal(dw) and db2:equal(db))
end
function TestConv2d:test_backward_against_naive_and_counters()
  for _, masked in ipairs{false, true} do with_masked(masked, backward_naive_and_counters) end
end

function TestConv2d:test_backward_errors()
  local x, w, g = sf.zeros{2, 3, 8, 8}, sf.zeros{4, 3, 3, 3}, sf.zeros{2, 4, 8, 8}
  local dw, db = sf.zeros{4, 3, 3, 3}, sf.zeros{4}
  local function err(msg, ...) lu.assertErrorMsgContains(msg, K.conv2d_backward, ...) end
  err("conv2d_backward: argument #1 (dout) is nil, expected a tensor [N,K,OH,OW]", nil, w, x, dw, db, 1, 1)
  err("conv2d_backward: argument #2 (weight) has shape [4,3,3], expected [K,C,R,S]", g, sf.zeros{4, 3, 3}, x, dw, db,
    1, 1)
  err("conv2d_backward: argument #3 (input) is table, expected a tensor [N,C,H,W]", g, w, {2, 3, 8, 8}, dw, db, 1, 1)
  err("conv2d_backward: input has 5 channels but weight [4,3,3,3] expects 3", g, w, sf.zeros{2, 5, 8, 8}, dw, db, 1,
    1)
  err("conv2d_backward: argument #1 (dout) has shape [2,4,8,8], expected [2,4,6,6]", g, w, x, dw, db, 1, 0)
  err("conv2d_backward: argument #4 (dweight) has shape [4,3,3,2], expected [4,3,3,3]", g, w, x, sf.zeros{4, 3, 3, 2},
    db, 1, 1)
  err("conv2d_backward: argument #4 (dweight) of shape [4,3,3,3] is not contiguous", g, w, x,
    sf.zeros{4, 3, 3, 3}:transpose(3, 4), db, 1, 1)
  err("conv2d_backward: argument #5 (dbias) has shape [3], expected [4] (weight [4,3,3,3])", g, w, x, dw,
    sf.zeros{3}, 1, 1)
  err("conv2d_backward: argument #5 (dbias) is string, expected a tensor [K]", g, w, x, dw, "b", 1, 1)
  err("conv2d_backward: argument #6 (stride) is string, expected an integer or {h,w}", g, w, x, dw, db, "1", 1)
  err("conv2d_backward: stride {0,0} must be positive", g, w, x, dw, db, 0, 1)
  err("conv2d_backward: argument #8 (scale) is string, expected a number", g, w, x, dw, db, 1, 1, "x")
  err("conv2d_backward: argument #4 shares storage with argument #1", g,  w, x,
    g:view(-1):narrow(1, 1, 108):view{4, 3, 3, 3}, db, 1, 1)
  err("conv2d_backward: argument #5 shares storage with argument #3", g, w, x, dw, x:view(-1):narrow(1, 1, 4), 1, 1)
  err("conv2d_backward: argument #4 shares storage with argument #2", g, w, x, w, db, 1, 1)
  -- a failed call leaves the gradients untouched
  local dw0 = randn({4, 3, 3, 3}, sf.rng(33))
  local keep = dw0:clone()
  lu.assertFalse(pcall(K.conv2d_backward, g, w, x, dw0, sf.zeros{3}, 1, 1))
  lu.assertTrue(dw0:equal(keep))
end

-- ---- linear ----

TestLinear = {}

function TestLinear:setUp() K.reset_counters() end

local function ref_linear(x, N, C, w, Kc, b)
  local out = {}
  for n = 0, N - 1 do
    for k = 0, Kc - 1 do
      local s = b and b[k + 1] or 0
      for c = 0, C - 1 do s = s + x[n * C + c + 1] * w[k * C + c + 1] end
      out[n * Kc + k + 1] = s
    end
  end
  return out
end

function TestLinear:test_hand_computed()
  local x = sf.tensor{{1, 2}, {3, 4}, {5, 6}}
  local w = sf.tensor{{1, 0}, {0, 1}, {1, -1}}
  lu.assertEquals(K.linear_forward(x, w):totable(), {{1, 2, -1}, {3, 4, -1}, {5, 6, -1}})
  lu.assertEquals(K.linear_forward(x, w, sf.tensor{10, 20, 30}):totable(), {{11, 22, 29}, {13, 24, 29}, {15, 26, 29}})
  local g = sf.tensor{{1, 0, 1}, {0, 1, 0}, {0, 0, 2}}
  lu.assertEquals(K.linear_backward_input(g, w):totable(), {{2, -1}, {0, 1}, {2, -2}})
  local dw, db = K.linear_backward_weight(g, x, sf.zeros{3, 2}, sf.zeros{3})
  lu.assertEquals(dw:totable(), {{1, 2}, {3, 4}, {11, 14}})
  lu.assertEquals(db:totable(), {1, 1, 3})
end

function TestLinear:test_against_naive_and_fd()
  local rng = sf.rng(21)
  for _, c in ipairs({{N = 5, C = 7, K = 3, bias = true}, {N = 1, C = 4, K = 6, bias = false},
                      {N = 33, C = 17, K = 300, bias = true}}) do
    local x, w = randn({c.N, c.C}, rng), randn({c.K, c.C}, rng)
    local b = c.bias and randn({c.K}, rng) or nil
    local out = K.linear_forward(x, w, b)
    assert_near(out, ref_linear(flat(x), c.N, c.C, flat(w), c.K, b and flat(b)), 1e-5, "forward")
    local proj = randn({c.N, c.K}, rng)
    local function loss() return project(K.linear_forward(x, w, b), proj) end
    local dx = K.linear_backward_input(proj, w)
    local dw, db = K.linear_backward_weight(proj, x, sf.zeros{c.K, c.C}, sf.zeros{c.K})
    -- references: dx = g w, dw = g^T x, db = column sums of g
    assert_near(dx, flat(proj:matmul(w)), 1e-5, "dinp")
    assert_near(dw, flat(proj:t():matmul(x)), 1e-5, "dweight")
    assert_near(db, flat(proj:sum(1)), 1e-5, "dbias")
    fd_check(x, flat(dx), loss, rng, 8, 1e-2, 1e-2, "linear dinp")
    fd_check(w, flat(dw), loss, rng, 8, 1e-2, 1e-2, "linear dweight")
    if b then fd_check(b, flat(db), loss, rng, 3, 1e-2, 1e-2, "linear dbias") end
  end
end

-- With several threads the rows of a product with a short inner dimension are split over
-- the threads (single-threaded sgemm each): rows are independent, so the bits are those
-- of one thread; the weight gradient (a sum over rows) is checked against one thread too
function TestLinear:test_threads_agree()
  local rng = sf.rng(23)
  local x, w, b = randn({2000, 64}, rng), randn({96, 64}, rng), randn({96}, rng)
  local g = randn({2000, 96}, rng)
  local n0 = sf.threads()
  local function run(t)
    sf.set_threads(t)
    local r = {flat(K.linear_forward(x, w, b)), flat(K.linear_backward_input(g, w)),
               flat(K.linear_backward_weight(g, x, sf.zeros{96, 64}))}
    sf.set_threads(n0)
    return r
  end
  local one, two = run(1), run(2)
  lu.assertEquals(two[1], one[1], "forward: 2 threads = 1 thread")
  lu.assertEquals(two[2], one[2], "dinp: 2 threads = 1 thread")
  assert_near(two[3], one[3], 1e-5, "dweight")
  lu.assertEquals(run(2)[1], two[1], "repeatable")
end

function TestLinear:test_leading_dims_flattened()
  local rng = sf.rng(22)
  local x, w, b = randn({2, 3, 4}, rng), randn({5, 4}, rng), randn({5}, rng)
  local out = K.linear_forward(x, w, b)
  lu.assertEquals(out:size(), {2, 3, 5})
  assert_near(out, K.linear_forward(x:reshape{6, 4}, w, b), 0, "3-D forward")
  local g = randn({2, 3, 5}, rng)
  local dx = K.linear_backward_input(g, w)
  lu.assertEquals(dx:size(), {2, 3, 4})
  assert_near(dx, K.linear_backward_input(g:reshape{6, 5}, w), 0, "3-D dinp")
  local dw = K.linear_backward_weight(g, x, sf.zeros{5, 4})
  assert_near(dw, K.linear_backward_weight(g:reshape{6, 5}, x:reshape{6, 4}, sf.zeros{5, 4}), 0, "3-D dweight")
  -- a single 1-D row
  assert_near(K.linear_forward(x:select(1, 1):select(1, 1), w, b), out:select(1, 1):select(1, 1), 0, "1-D")
end

function TestLinear:test_accumulation_scale_skips()
  local rng = sf.rng(23)
  local x, g = randn({4, 3}, rng), randn({4, 2}, rng)
  local dw1, db1 = K.linear_backward_weight(g, x, sf.zeros{2, 3}, sf.zeros{2})
  local dw, db = sf.zeros{2, 3}, sf.zeros{2}
  K.linear_backward_weight(g, x, dw, db)
  K.linear_backward_weight(g, x, dw, db)
  assert_near(dw, flat(dw1 * 2), 1e-6, "twice dweight")
  assert_near(db, flat(db1 * 2), 1e-6, "twice dbias")
  local dw3, db3 = K.linear_backward_weight(g, x, sf.zeros{2, 3}, sf.zeros{2}, 3)
  assert_near(dw3, flat(dw1 * 3), 1e-6, "scale dweight")
  assert_near(db3, flat(db1 * 3), 1e-6, "scale dbias")
  K.reset_counters()
  local r1, r2 = K.linear_backward_weight(g, x)
  lu.assertNil(r1)
  lu.assertNil(r2)
  lu.assertEquals(K.counters().linear_bwd_weight, 0)
  local _, rb = K.linear_backward_weight(g, x, nil, sf.zeros{2})
  assert_near(rb, db1, 1e-6, "bias only")
  lu.assertEquals(K.counters().linear_bwd_weight, 1)
  K.linear_forward(x, randn({2, 3}, rng))
  K.linear_backward_input(g, randn({2, 3}, rng))
  lu.assertEquals(K.counters().linear_fwd, 1)
  lu.assertEquals(K.counters().linear_bwd_input, 1)
end

function TestLinear:test_strided_and_out()
  local rng = sf.rng(24)
  local x, w, b = randn({4, 3}, rng), randn({5, 3}, rng), randn({5}, rng)
  local xt, wt = x:t():clone():t(), w:t():clone():t()
  lu.assertFalse(xt:is_contiguous())
  local ref = K.linear_forward(x, w, b)
  assert_near(K.linear_forward(xt, wt, b), ref, 0, "strided forward")
  local out = sf.zeros{4, 5}
  lu.assertTrue(K.linear_forward(x, w, b, out) == out)
  assert_near(out, ref, 0, "out")
  local g = randn({4, 5}, rng)
  local dinp = sf.zeros{4, 3}
  lu.assertTrue(K.linear_backward_input(g, w, dinp) == dinp)
  assert_near(dinp, flat(g:matmul(w)), 1e-6, "dinp out")
  local gt = g:t():clone():t()
  local dw1 = K.linear_backward_weight(g, x, sf.zeros{5, 3})
  assert_near(K.linear_backward_weight(gt, xt, sf.zeros{5, 3}), dw1, 0, "strided dweight")
end

function TestLinear:test_errors()
  local x, w = sf.zeros{4, 3}, sf.zeros{5, 3}
  local function err(msg, f, ...) lu.assertErrorMsgContains(msg, f, ...) end
  err("linear_forward: input has 4 features but weight [5,3] expects 3", K.linear_forward, sf.zeros{4, 4}, w)
  err("linear_forward: argument #2 (weight) has shape [5,3,1], expected [K,C]", K.linear_forward, x,
    sf.zeros{5, 3, 1})
  err("linear_forward: argument #1 (input) has shape [], expected [N,C]", K.linear_forward, sf.zeros{}, w)
  err("linear_forward: argument #3 (bias) has shape [4], expected [5] (weight [5,3])", K.linear_forward, x, w,
    sf.zeros{4})
  err("linear_forward: argument #4 (out) has shape [4,3], expected [4,5]", K.linear_forward, x, w, nil,
    sf.zeros{4, 3})
  err("linear_forward: argument #4 (out) of shape [4,5] is not contiguous", K.linear_forward, x, w, nil,
    sf.zeros{5, 4}:t())
  local buf = sf.zeros{40}
  err("linear_forward: argument #4 shares storage with argument #2", K.linear_forward, sf.zeros{5, 3},
    buf:narrow(1, 1, 15):view{5, 3}, nil, buf:narrow(1, 16, 25):view{5, 5})
  err("linear_backward_input: dout has 4 features but weight [5,3] has 5 outputs", K.linear_backward_input,
    sf.zeros{2, 4}, w)
  err("linear_backward_input: argument #3 (dinp) has shape [2,5], expected [2,3]", K.linear_backward_input,
    sf.zeros{2, 5}, w, sf.zeros{2, 5})
  err("linear_backward_weight: argument #2 (input) has shape [3], expected 2 dimensions like dout [4,5]",
    K.linear_backward_weight, sf.zeros{4, 5}, sf.zeros{3}, sf.zeros{5, 3})
  err("linear_backward_weight: input [3,3] and dout [4,5] differ in the leading (batch) dimensions",
    K.linear_backward_weight, sf.zeros{4, 5}, sf.zeros{3, 3}, sf.zeros{5, 3})
  err("linear_backward_weight: argument #3 (dweight) has shape [3,5], expected [5,3]", K.linear_backward_weight,
    sf.zeros{4, 5}, x, sf.zeros{3, 5})
  err("linear_backward_weight: argument #4 (dbias) has shape [3], expected [5]", K.linear_backward_weight,
    sf.zeros{4, 5}, x, nil, sf.zeros{3})
  err("linear_backward_weight: argument #5 (scale) is table, expected a number", K.linear_backward_weight,
    sf.zeros{4, 5}, x, sf.zeros{5, 3}, nil, {})
end

-- ---- pooling ----

TestPool = {}

function TestPool:setUp() K.reset_counters() end

-- naive pooling on flat arrays; kind "max" returns values and 0-based plane indices
local function ref_pool(kind, x, xs, k, s, p, cip)
  local N, C, H, W = xs[1], xs[2], xs[3], xs[4]
  local kh, kw = pair(k)[1], pair(k)[2]
  local sh, sw = pair(s)[1], pair(s)[2]
  local ph, pw = pair(p)[1], pair(p)[2]
  local OH, OW = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
  local out, ix = {}, {}
  for pl = 0, N * C - 1 do
    for oh = 0, OH - 1 do
      for ow = 0, OW - 1 do
        local best, bi, sum, cnt = -math.huge, nil, 0, 0
        for r = 0, kh - 1 do
          for q = 0, kw - 1 do
            local ih, iw = oh * sh - ph + r, ow * sw - pw + q
            if ih >= 0 and ih < H and iw >= 0 and iw < W then
              local v = x[pl * H * W + ih * W + iw + 1]
              if bi == nil or v > best then best, bi = v, ih * W + iw end
              sum, cnt = sum + v, cnt + 1
            end
          end
        end
        local o = pl * OH * OW + oh * OW + ow + 1
        if kind == "max" then
          out[o], ix[o] = best, bi
        else
          out[o] = sum / (cip and kh * kw or cnt)
        end
      end
    end
  end
  return out, ix, {N, C, OH, OW}
end

function TestPool:test_maxpool_hand_computed()
  local x = from_flat({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, {1, 1, 4, 4})
  local out, ix = K.maxpool2d_forward(x, 2)
  lu.assertEquals(out:totable(), {{{{6, 8}, {14, 16}}}})
  lu.assertEquals(ix:totable(), {{{{5, 7}, {13, 15}}}})
  -- padding 1 with stride 2: padding never wins even against negative values
  local xn = x * -1
  out, ix = K.maxpool2d_forward(xn, 3, 2, 1)
  lu.assertEquals(out:totable(), {{{{-1, -2}, {-5, -6}}}})
  lu.assertEquals(ix:totable(), {{{{0, 1}, {4, 5}}}})
  -- ties: the first in row-major order
  out, ix = K.maxpool2d_forward(sf.ones{1, 1, 2, 2}, 2)
  lu.assertEquals(ix:totable(), {{{{0}}}})
  -- a NaN wins its window
  local xnan = sf.zeros{1, 1, 2, 2}
  xnan:set(1, 1, 2, 1, 0 / 0)
  out, ix = K.maxpool2d_forward(xnan, 2)
  lu.assertTrue(out:get(1, 1, 1, 1) ~= out:get(1, 1, 1, 1))
  lu.assertEquals(ix:get(1, 1, 1, 1), 2)
  -- backward scatters to the indices, summing overlaps
  local g = from_flat({1, 2, 3, 4}, {1, 1, 2, 2})
  out, ix = K.maxpool2d_forward(x, 2)
  lu.assertEquals(K.maxpool2d_backward(g, ix, x):totable(),
    {{{{0, 0, 0, 0}, {0, 1, 0, 2}, {0, 0, 0, 0}, {0, 3, 0, 4}}}})
  local ones = sf.ones{1, 1, 3, 3}
  out, ix = K.maxpool2d_forward(ones, 2, 1)
  lu.assertEquals(K.maxpool2d_backward(sf.ones{1, 1, 2, 2}, ix, {1, 1, 3, 3}):totable(),
    {{{{1, 1, 0}, {1, 1, 0}, {0, 0, 0}}}})
  -- indices skipped with false
  local o2, i2 = K.maxpool2d_forward(x, 2, nil, 0, nil, false)
  lu.assertNil(i2)
  lu.assertEquals(o2:totable(), {{{{6, 8}, {14, 16}}}})
end

function TestPool:test_avgpool_hand_computed()
  local x = from_flat({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3})
  lu.assertEquals(K.avgpool2d_forward(x, 2, 1):totable(), {{{{3, 4}, {6, 7}}}})
  -- padding 1, stride 2: corners hold one real value of four (PyTorch's default divides by 4)
  lu.assertEquals(K.avgpool2d_forward(x, 2, 2, 1):totable(), {{{{0.25, 1.25}, {2.75, 7}}}})
  lu.assertEquals(K.avgpool2d_forward(x, 2, 2, 1, false):totable(), {{{{1, 2.5}, {5.5, 7}}}})
  -- backward of a 2x2 stride-1 window: interior cells are in more windows
  lu.assertEquals(K.avgpool2d_backward(sf.ones{1, 1, 2, 2}, x, 2, 1):totable(),
    {{{{0.25, 0.5, 0.25}, {0.5, 1, 0.5}, {0.25, 0.5, 0.25}}}})
  lu.assertEquals(K.avgpool2d_backward(sf.ones{1, 1, 2, 2}, x, 2, 2, 1, false):totable(),
    {{{{1, 0.5, 0.5}, {0.5, 0.25, 0.25}, {0.5, 0.25, 0.25}}}})
  -- global average
  local xg = from_flat({1, 2, 3, 4, 10, 20, 30, 40}, {1, 2, 2, 2})
  lu.assertEquals(K.global_avgpool_forward(xg):totable(), {{2.5, 25}})
  lu.assertEquals(K.global_avgpool_backward(sf.tensor{{4, 8}}, xg):totable(), {{{{1, 1}, {1, 1}}, {{2, 2}, {2, 2}}}})
end

local POOL_CASES = {
  {x = {2, 3, 7, 6}, k = 3, s = 2, p = 1},
  {x = {1, 2, 5, 8}, k = {2, 3}, s = {1, 2}, p = {1, 0}},
  {x = {3, 1, 6, 6}, k = 2, s = nil, p = 0},
  {x = {2, 2, 5, 5}, k = {3, 1}, s = 1, p = {1, 0}},
}

function TestPool:test_against_naive()
  local rng = sf.rng(31)
  for ci, c in ipairs(POOL_CASES) do
    local x = randn(c.x, rng)
    local s = c.s or c.k
    local want, wix, oshape = ref_pool("max", flat(x), c.x, c.k, s, c.p)
    local out, ix = K.maxpool2d_forward(x, c.k, c.s, c.p)
    lu.assertEquals(out:size(), oshape)
    assert_near(out, want, 0, "maxpool case " .. ci)
    assert_near(ix, wix, 0, "maxpool indices case " .. ci)
    for _, cip in ipairs({true, false}) do
      local wa = ref_pool("avg", flat(x), c.x, c.k, s, c.p, cip)
      assert_near(K.avgpool2d_forward(x, c.k, c.s, c.p, cip), wa, 1e-6, "avgpool case " .. ci)
    end
  end
  local x = randn({3, 4, 5, 7}, rng)
  local want = {}
  local xf = flat(x)
  for pl = 0, 11 do
    local sm = 0
    for i = 1, 35 do sm = sm + xf[pl * 35 + i] end
    want[pl + 1] = sm / 35
  end
  assert_near(K.global_avgpool_forward(x), want, 1e-6, "global")
end

-- distinct, well-separated values so that a perturbation never changes an argmax
local function separated(shape, rng)
  local n = 1
  for _, d in ipairs(shape) do n = n * d end
  local perm = rng:permutation(n)
  for i = 1, n do perm[i] = (perm[i] - n / 2) * 0.05 end
  return from_flat(perm, shape)
end

function TestPool:test_finite_differences()
  local rng = sf.rng(32)
  for ci, c in ipairs(POOL_CASES) do
    local x = separated(c.x, rng)
    local out = K.maxpool2d_forward(x, c.k, c.s, c.p)
    local proj = randn(out:size(), rng)
    local _, ix = K.maxpool2d_forward(x, c.k, c.s, c.p)
    local dx = flat(K.maxpool2d_backward(proj, ix, x))
    fd_check(x, dx, function() return project((K.maxpool2d_forward(x, c.k, c.s, c.p)), proj) end, rng, 15, 1e-3,
      1e-2, "maxpool case " .. ci)
    for _, cip in ipairs({true, false}) do
      local da = flat(K.avgpool2d_backward(proj, x, c.k, c.s, c.p, cip))
      fd_check(x, da, function() return project(K.avgpool2d_forward(x, c.k, c.s, c.p, cip), proj) end, rng, 15,
        1e-2, 1e-2, "avgpool case " .. ci)
    end
  end
  local x = randn({2, 3, 4, 5}, rng)
  local proj = randn({2, 3}, rng)
  local dx = flat(K.global_avgpool_backward(proj, x))
  fd_check(x, dx, function() return project(K.global_avgpool_forward(x), proj) end, rng, 10, 1e-2, 1e-2, "global")
end

function TestPool:test_counters_strided_out()
  local rng = sf.rng(33)
  local x = randn({2, 3, 6, 6}, rng)
  K.reset_counters()
  local out, ix = K.maxpool2d_forward(x, 2)
  K.maxpool2d_backward(out, ix, x)
  K.avgpool2d_forward(x, 2)
  K.avgpool2d_backward(out, x, 2)
  K.global_avgpool_forward(x)
  K.global_avgpool_backward(sf.zeros{2, 3}, x)
  lu.assertEquals(K.counters().pool_fwd, 3)
  lu.assertEquals(K.counters().pool_bwd, 3)
  -- strided input agrees with contiguous
  local xt = x:transpose(3, 4):clone():transpose(3, 4)
  assert_near((K.maxpool2d_forward(xt, 3, 2, 1)), (K.maxpool2d_forward(x, 3, 2, 1)), 0, "max strided")
  assert_near(K.avgpool2d_forward(xt, 3, 2, 1), K.avgpool2d_forward(x, 3, 2, 1), 0, "avg strided")
  assert_near(K.global_avgpool_forward(xt), K.global_avgpool_forward(x), 0, "global strided")
  -- outputs reused
  local o, i = sf.zeros{2, 3, 3, 3}, sf.zeros{2, 3, 3, 3}
  local r1, r2 = K.maxpool2d_forward(x, 2, 2, 0, o, i)
  lu.assertTrue(r1 == o and r2 == i)
  assert_near(o, (K.maxpool2d_forward(x, 2)), 0, "max out")
  local d = sf.full({2, 3, 6, 6}, 9)
  lu.assertTrue(K.maxpool2d_backward(o, i, x, d) == d)
  assert_near(d, K.maxpool2d_backward(o, i, x), 0, "max dinp")
  local a = sf.zeros{2, 3, 3, 3}
  lu.assertTrue(K.avgpool2d_forward(x, 2, 2, 0, true, a) == a)
  local da = sf.full({2, 3, 6, 6}, 9)
  lu.assertTrue(K.avgpool2d_backward(a, x, 2, 2, 0, true, da) == da)
  assert_near(da, K.avgpool2d_backward(a, x, 2), 0, "avg dinp")
  local go = sf.zeros{2, 3}
  lu.assertTrue(K.global_avgpool_forward(x, go) == go)
  local gd = sf.zeros{2, 3, 6, 6}
  lu.assertTrue(K.global_avgpool_backward(go, x, gd) == gd)
end

function TestPool:test_errors()
  local x = sf.zeros{2, 3, 6, 6}
  local function err(msg, f, ...) lu.assertErrorMsgContains(msg, f, ...) end
  err("maxpool2d_forward: argument #1 (input) has shape [3,6,6], expected [N,C,H,W]", K.maxpool2d_forward,
    sf.zeros{3, 6, 6}, 2)
  err("maxpool2d_forward: argument #2 (kernel) is missing, expected an integer or {h,w}", K.maxpool2d_forward, x)
  err("maxpool2d_forward: kernel size {0,0} must be positive", K.maxpool2d_forward, x, 0)
  err("maxpool2d_forward: stride {0,1} must be positive", K.maxpool2d_forward, x, 2, {0, 1})
  err("maxpool2d_forward: padding {2,2} must be between 0 and half the kernel size {3,3}", K.maxpool2d_forward, x,
    3, 1, 2)
  err("maxpool2d_forward: kernel 7x7 is larger than the padded input 6x6", K.maxpool2d_forward, x, 7)
  err("maxpool2d_forward: argument #5 (out) has shape [2,3,6,6], expected [2,3,3,3]", K.maxpool2d_forward, x, 2,
    nil, 0, sf.zeros{2, 3, 6, 6})
  err("maxpool2d_forward: argument #6 (indices) has shape [2,3,2,2], expected [2,3,3,3]", K.maxpool2d_forward, x,
    2, nil, 0, nil, sf.zeros{2, 3, 2, 2})
  local o = sf.zeros{2, 3, 3, 3}
  err("maxpool2d_forward: argument #5 (out) and argument #6 (indices) share storage", K.maxpool2d_forward, x, 2,
    nil, 0, o, o)
  local g, ix = sf.zeros{2, 3, 3, 3}, sf.zeros{2, 3, 3, 3}
  err("maxpool2d_backward: argument #2 (indices) has shape [2,3,3,2], expected [2,3,3,3] like dout",
    K.maxpool2d_backward, g, sf.zeros{2, 3, 3, 2}, x)
  err("maxpool2d_backward: argument #1 (dout) has shape [2,3,3,3], expected [2,4,*,*] (input [2,4,6,6])",
    K.maxpool2d_backward, g, ix, {2, 4, 6, 6})
  local bad = sf.zeros{2, 3, 3, 3}
  bad:set(1, 2, 1, 1, 36)
  err("maxpool2d_backward: argument #2 (indices) holds 36.0 at element 10, expected an integer in [0,36)",
    K.maxpool2d_backward, g, bad, x)
  bad:set(1, 2, 1, 1, 0.5)
  err("maxpool2d_backward: argument #2 (indices) holds 0.5 at element 10", K.maxpool2d_backward, g, bad, x)
  err("maxpool2d_backward: argument #3 (input) is missing, expected a tensor or a shape {N,C,H,W}",
    K.maxpool2d_backward, g, ix)
  err("avgpool2d_forward: padding {1,1} must be between 0 and half the kernel size {1,1}", K.avgpool2d_forward, x,
    1, 1, 1)
  err("avgpool2d_backward: argument #1 (dout) has shape [2,3,3,3], expected [2,3,5,5]", K.avgpool2d_backward, g, x,
    2, 1)
  err("avgpool2d_backward: argument #7 (dinp) has shape [2,3,3,3], expected [2,3,6,6]", K.avgpool2d_backward, g, x,
    2, 2, 0, true, sf.zeros{2, 3, 3, 3})
  err("global_avgpool_forward: argument #1 (input) has shape [2,3], expected [N,C,H,W]", K.global_avgpool_forward,
    sf.zeros{2, 3})
  err("global_avgpool_forward: argument #2 (out) has shape [3,2], expected [2,3]", K.global_avgpool_forward, x,
    sf.zeros{3, 2})
  err("global_avgpool_backward: argument #1 (dout) has shape [2,4], expected [2,3] (input [2,3,6,6])",
    K.global_avgpool_backward, sf.zeros{2, 4}, x)
  err("global_avgpool_backward: argument #1 (dout) has shape [2,3,1], expected [N,C]", K.global_avgpool_backward,
    sf.zeros{2, 3, 1}, x)
end

os.exit(lu.LuaUnit.run())
