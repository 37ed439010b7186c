-- demo: the runtime as it exists today, end to end. A seeded synthetic linear regression
-- (y = X w + noise) is solved five ways -- LAPACK least squares, the normal equations, QR,
-- SVD, and gradient descent -- and the estimates are compared in a table.
-- It stands in for the main experiment until experiments/camelyon_embed.lua exists.
--
--   surgft-lua experiments/demo.lua [N [D [seed]]]
local sf = require "surgft"

local N = tonumber(arg and arg[1]) or 4000 -- examples
local D = tonumber(arg and arg[2]) or 16   -- features
local SEED = tonumber(arg and arg[3]) or 0
local NOISE = 0.1
local rng = sf.rng(SEED)

local X = sf.randn({N, D}, rng)                          -- features
local w_true = sf.randn({D, 1}, rng)                     -- the weights to recover
local y = X:matmul(w_true) + sf.randn({N, 1}, rng) * NOISE

local function rms_residual(w) return (X:matmul(w) - y):norm() / math.sqrt(N) end

local estimates = {}

estimates[#estimates + 1] = {"lstsq (LAPACK gelsd)", X:lstsq(y)}

local Xt = X:t() -- a view: no copy; matmul hands the transposition to sgemm
estimates[#estimates + 1] = {"normal equations", Xt:matmul(X):solve(Xt:matmul(y))}

local Q, R = X:qr()
estimates[#estimates + 1] = {"QR: R w = Q'y", R:solve(Q:t():matmul(y))}

local U, S, Vt = X:svd() -- pseudo-inverse: w = V diag(1/s) U'y
estimates[#estimates + 1] = {"SVD pseudo-inverse", Vt:t():matmul(U:t():matmul(y) / S:reshape{D, 1})}

-- gradient descent on the mean squared error: X'X/N is close to the identity for
-- Gaussian features, so a step of 0.5 converges fast
local w = sf.zeros(D, 1)
local LR, STEPS = 0.5, 60
local curve = {}
for step = 1, STEPS do
  local r = X:matmul(w) - y
  if (step - 1) % 10 == 0 then curve[#curve + 1] = string.format("%d: %.4f", step - 1, r:norm() / math.sqrt(N)) end
  w = w - Xt:matmul(r) * (LR / N)
end
curve[#curve + 1] = string.format("%d: %.4f", STEPS, rms_residual(w))
estimates[#estimates + 1] = {string.format("gradient descent (%d steps)", STEPS), w}

-- the table
print(string.format("surgft %s demo: least squares, N = %d examples, D = %d features, noise %.2f, seed %d, %d threads",
                    sf.version, N, D, NOISE, SEED, sf.threads()))
print()
print(string.format("  %-28s  %14s  %14s", "method", "max |w - w*|", "rms residual"))
print("  " .. string.rep("-", 60))
local ref = estimates[1][2]
for _, est in ipairs(estimates) do
  local name, west = est[1], est[2]
  local err = west:max_abs_diff(w_true)
  print(string.format("  %-28s  %14.6f  %14.6f", name, err, rms_residual(west)))
  -- the methods solve the same problem: they must agree, and recover w* to noise level
  assert(west:max_abs_diff(ref) < 1e-3, name .. " disagrees with lstsq")
  assert(err < 10 * NOISE / math.sqrt(N) * math.sqrt(D), name .. " is far from the true weights")
end
print(string.format("  %-28s  %14s  %14.6f", "true weights", "0", rms_residual(w_true)))
print()
print("gradient descent, rms residual by step: " .. table.concat(curve, ", "))
print()
print("first coefficients, true vs lstsq:")
print(sf.tensor{w_true:narrow(1, 1, 4):reshape(-1):totable(), ref:narrow(1, 1, 4):reshape(-1):totable()})
