-- demo: the runtime as it exists today, end to end. A seeded synthetic linear regression
-- (y = X w + noise) is solved five ways -- LAPACK least squares, the normal equations, QR,
-- SVD, and gradient descent driven by matmul -- and the estimates are compared in a table.
-- It stands in for the main experiment until experiments/camelyon_embed.lua exists.
--
--   surgft-lua experiments/demo.lua [N [D [seed]]]
local sf = require "surgft"

local N = tonumber(arg and arg[1]) or 4000 -- examples
local D = tonumber(arg and arg[2]) or 16   -- features
local SEED = tonumber(arg and arg[3]) or 0
local NOISE = 0.1
local rng = sf.rng(SEED)

-- One buffer Z = [e | X | y], shape [N, D+2]; the noise e, the features X and the targets
-- y are column views into it, so the products below read them without copies:
--   [e | X] @ [NOISE; w_true] = y          (generating the data)
--   [X | y] @ [w; -1]         = X w - y    (the residual of an estimate w)
local Z = sf.zeros(N, D + 2)
local e, X, y = Z:narrow(2, 1, 1), Z:narrow(2, 2, D), Z:narrow(2, D + 2, 1)
local EX, XY = Z:narrow(2, 1, D + 1), Z:narrow(2, 2, D + 1)
e:copy(sf.randn({N, 1}, rng))
X:copy(sf.randn({N, D}, rng))
local w_true = sf.randn({D, 1}, rng)

local coef = sf.zeros(D + 1, 1)
coef:set(1, 1, NOISE)
coef:narrow(1, 2, D):copy(w_true)
y:copy(EX:matmul(coef))

-- [w; -1]: an estimate extended so that XY @ it is the residual
local function extended(w)
  local v = sf.full({D + 1, 1}, -1)
  v:narrow(1, 1, D):copy(w)
  return v
end

local function rms_residual(w) return XY:matmul(extended(w)):norm() / math.sqrt(N) end

local estimates = {}

estimates[#estimates + 1] = {"lstsq (LAPACK gelsd)", X:lstsq(y)}

local XtX, Xty = X:t():matmul(X), X:t():matmul(y)
estimates[#estimates + 1] = {"normal equations", XtX:solve(Xty)}

local Q, R = X:qr()
estimates[#estimates + 1] = {"QR: R w = Q'y", R:solve(Q:t():matmul(y))}

-- pseudo-inverse: w = V diag(1/s) U'y (the division on D entries, element by element)
local U, S, Vt = X:svd()
local c = U:t():matmul(y)
for i = 1, D do c:set(i, 1, c:get(i, 1) / S:get(i)) end
estimates[#estimates + 1] = {"SVD pseudo-inverse", Vt:t():matmul(c)}

-- gradient descent on the mean squared error: w <- w - lr * X'(X w - y) / N. X'X/N is
-- close to the identity for Gaussian features, so a step of 0.5 converges fast.
local w = sf.zeros(D, 1)
local LR, STEPS = 0.5, 60
for _ = 1, STEPS do
  local g = X:t():matmul(XY:matmul(extended(w))) -- [D,1]
  for i = 1, D do w:set(i, 1, w:get(i, 1) - LR * g:get(i, 1) / N) end
end
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
print("first coefficients, true vs lstsq:")
print(sf.tensor{w_true:narrow(1, 1, 4):reshape(-1):totable(), ref:narrow(1, 1, 4):reshape(-1):totable()})
