-- Shared pieces of the theory checks: the two-layer network's gradient descent (plain
-- matrix code and the module-protocol version), random bases, small double-precision
-- helpers, option handling, the table printer and the "run as a script" detection.
local sf = require "surgft"

local C = {}

-- ---- options ----

-- C.options(defaults, given, who) -> a copy of defaults overridden by given; unknown keys raise
function C.options(defaults, given, who)
  local o = {}
  for k, v in pairs(defaults) do o[k] = v end
  for k, v in pairs(given or {}) do
    if defaults[k] == nil then
      local names = {}
      for n in pairs(defaults) do names[#names + 1] = n end
      table.sort(names)
      error(string.format("%s: unknown option '%s' (valid: %s)", who, tostring(k), table.concat(names, ", ")), 3)
    end
    o[k] = v
  end
  return o
end

-- command-line arguments key=value (numbers, comma lists of numbers, true/false, strings)
function C.parse_args(argv, defaults, who)
  local given = {}
  for _, a in ipairs(argv or {}) do
    local k, v = a:match("^%-*([%w_]+)=(.*)$")
    if not k then error(string.format("%s: arguments are key=value (got '%s')", who, a), 0) end
    if v == "true" or v == "false" then
      given[k] = v == "true"
    elseif v:find(",") then
      local list = {}
      for item in v:gmatch("[^,]+") do list[#list + 1] = tonumber(item) or item end
      given[k] = list
    else
      given[k] = math.tointeger(tonumber(v)) or tonumber(v) or v
    end
  end
  return C.options(defaults, given, who)
end

-- ---- random bases ----

-- an n x n orthogonal matrix: Q of the QR factorisation of a Gaussian matrix
function C.orthogonal(n, rng)
  local q = sf.qr(sf.randn({n, n}, rng))
  return q
end

-- ---- double-precision helpers on Lua tables ----

function C.vec(t) return sf.is_tensor(t) and t:reshape(-1):totable() or t end

function C.dot(a, b)
  local s = 0
  for i = 1, #a do s = s + a[i] * b[i] end
  return s
end

function C.sub(a, b)
  local o = {}
  for i = 1, #a do o[i] = a[i] - b[i] end
  return o
end

function C.mean(xs)
  local s = 0
  for _, x in ipairs(xs) do s = s + x end
  return s / #xs
end

function C.max(xs)
  local m = -math.huge
  for _, x in ipairs(xs) do if x > m then m = x end end
  return m
end

function C.min(xs)
  local m = math.huge
  for _, x in ipairs(xs) do if x < m then m = x end end
  return m
end

-- ---- the two-layer network f(x) = v^T phi(B x), squared loss ----

local function act(h, phi) return phi == "relu" and h:relu() or h end

-- C.predict(X [n,d], B [k,d], v [k], phi) -> [n]
function C.predict(X, B, v, phi)
  return act(X:matmul(B:t()), phi):matmul(v)
end

-- mean squared error of the network on (X, y), as a Lua number (accumulated in double)
function C.mse(X, y, B, v, phi)
  local e = C.predict(X, B, v, phi):sub(y)
  return e:square():mean()
end

-- A step size for small-step gradient descent: frac / (a bound on the curvature of the
-- empirical loss at the start), from the largest eigenvalue of X^T X / n and the
-- largest singular values of B and v. The same step is used for every method so that
-- the three trajectories are the same gradient flow, discretised alike.
function C.step_size(X, B, v, frac)
  local n = X:size(1)
  local ev = sf.eigh(X:t():matmul(X):div(n))
  local lam = ev:max()
  local sb = sf.svd(B):max()
  local vv = v:square():sum()
  return (frac or 0.2) / (2 * lam * (vv + sb * sb))
end

-- C.gd{X, y, B, v, phi, train = "first"|"last"|"all", lr, steps, tol, stall, observe}
-- Full-batch gradient descent on mean((f(x) - y)^2) from (B, v) (copied, not modified).
-- observe(step, B, v, train_loss) is called before the first step and after each step;
-- it may return true to stop. Stops early when train_loss <= tol * initial loss, or,
-- with stall = s, when s steps lowered the loss by less than a 1e-6 fraction (the
-- descent has converged to a non-zero loss).
-- Returns {B, v, steps, train_loss, initial_loss, diverged}.
function C.gd(o)
  local X, y, phi = o.X, o.y, o.phi or "linear"
  local B, v = o.B:clone(), o.v:clone()
  local n = X:size(1)
  local first = o.train == "first" or o.train == "all"
  local last = o.train == "last" or o.train == "all"
  if not (first or last) then error("gd: train must be 'first', 'last' or 'all', got " .. tostring(o.train), 2) end
  local lr, steps, tol, stall = o.lr, o.steps or 1000, o.tol or 0, o.stall
  local loss0, loss, mark
  local step = 0
  while true do
    local h = X:matmul(B:t())                    -- [n,k] pre-activations
    local a = act(h, phi)                        -- [n,k] features
    local e = a:matmul(v):sub(y)                 -- [n] residuals
    loss = e:square():mean()
    if step == 0 then loss0 = loss end
    if loss ~= loss or loss == math.huge then return {B = B, v = v, steps = step, train_loss = loss, initial_loss = loss0, diverged = true} end
    if o.observe and o.observe(step, B, v, loss) then break end
    if step >= steps or loss <= tol * loss0 then break end
    if stall and step % stall == 0 then
      if mark and loss >= mark * (1 - 1e-6) then break end
      mark = loss
    end
    local dout = e:mul(2 / n)                    -- [n] dL/df
    local gv = last and a:t():matmul(dout) or nil -- [k]
    if first then
      local da = sf.outer(dout, v)               -- [n,k] dL/da
      if phi == "relu" then da = da:mul(h:gt(0)) end
      B:sub_(da:t():matmul(X):mul(lr))           -- [k,d]
    end
    if gv then v:sub_(gv:mul(lr)) end
    step = step + 1
  end
  return {B = B, v = v, steps = step, train_loss = loss, initial_loss = loss0, diverged = false}
end

-- The same descent through the module protocol: a two_layer model whose trainable
-- flags say what moves (first-layer tuning = only first.weight trainable), its
-- backward, and sf.optim.sgd. Used by the tests to check that the workbench's freezing
-- gives the matrix code's trajectory.
function C.gd_module(o)
  local models = require "surgft.models"
  local optim = require "surgft.optim"
  local k, d = o.B:size(1), o.B:size(2)
  local model = models.two_layer{d = d, k = k, phi = o.phi or "linear", rng = sf.rng(0)}
  model:parameter("first.weight").value:copy(o.B)
  model:parameter("last.weight").value:copy(o.v:view{1, k})
  model:set_trainable(o.train == "first" or o.train == "all", "first")
  model:set_trainable(o.train == "last" or o.train == "all", "last")
  local opt = optim.sgd(model, {lr = o.lr})
  local n = o.X:size(1)
  for _ = 1, o.steps do
    model:zero_grad()
    local out = model:forward(o.X)               -- [n,1]
    local dout = out:view{n}:sub(o.y):mul(2 / n):view{n, 1}
    model:backward(o.X, dout, false)
    opt:step()
  end
  return {B = model:parameter("first.weight").value:clone(), v = model:parameter("last.weight").value:view{k}:clone(),
          model = model}
end

-- ---- output ----

function C.fmt(x)
  if type(x) ~= "number" then return tostring(x) end
  if math.type(x) == "integer" then return tostring(x) end
  if x ~= x then return "nan" end
  return string.format("%.3g", x)
end

-- print a table: headers {..}, rows {{..}, ..}; cells formatted with C.fmt
function C.print_table(headers, rows, out)
  out = out or io.stdout
  local cells, width = {}, {}
  for j, h in ipairs(headers) do width[j] = #h end
  for i, r in ipairs(rows) do
    cells[i] = {}
    for j = 1, #headers do
      local s = C.fmt(r[j])
      cells[i][j] = s
      if #s > width[j] then width[j] = #s end
    end
  end
  local function line(vals)
    local parts = {}
    for j, s in ipairs(vals) do parts[j] = string.rep(" ", width[j] - #s) .. s end
    out:write("  ", table.concat(parts, "  "), "\n")
  end
  line(headers)
  local rule = {}
  for j = 1, #headers do rule[j] = string.rep("-", width[j]) end
  line(rule)
  for _, r in ipairs(cells) do line(r) end
end

-- claims: a list of {text, ok}; prints PASS/FAIL lines and returns whether all hold
function C.report_claims(claims, out)
  out = out or io.stdout
  local all = true
  for _, c in ipairs(claims) do
    out:write(string.format("  [%s] %s\n", c.ok and "PASS" or "FAIL", c.text))
    all = all and c.ok
  end
  return all
end

-- C.main(modname, chunk_args, fn): runs fn(arg) and exits non-zero when it returns
-- false, unless the file is being required as the module `modname` (then nothing runs)
function C.main(modname, first_vararg, fn)
  if first_vararg == modname then return end
  local t0 = os.clock()
  local ok = fn(arg or {})
  io.stdout:write(string.format("(cpu time %.1f s)\n", os.clock() - t0))
  os.exit(ok and 0 or 1)
end

return C
