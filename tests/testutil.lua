-- Helpers shared by the LuaUnit suites (required from tests/, the suites' working
-- directory): temporary directories, whole-file I/O, and tensor comparisons.
local lu = require "luaunit"
local sf = require "surgft"

local U = {}

-- a fresh, empty temporary directory
function U.tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p '" .. d .. "'"))
  return d
end

function U.slurp(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- write bytes to p; returns p
function U.spit(p, bytes)
  local f = assert(io.open(p, "wb"))
  f:write(bytes)
  f:close()
  return p
end

-- max |a - b| over nested tables of equal shape (fails on a shape mismatch)
function U.maxdiff(a, b)
  if type(a) == "number" then
    lu.assertEquals(type(b), "number")
    return math.abs(a - b)
  end
  lu.assertEquals(#a, #b)
  local m = 0
  for i = 1, #a do m = math.max(m, U.maxdiff(a[i], b[i])) end
  return m
end

-- t (tensor or nested table) within tol (default 1e-5) of expected, elementwise
function U.assert_close(t, expected, tol)
  tol = tol or 1e-5
  local got = sf.is_tensor(t) and t:totable() or t
  local want = sf.is_tensor(expected) and expected:totable() or expected
  local d = U.maxdiff(got, want)
  lu.assertTrue(d <= tol, string.format("max difference %g > %g", d, tol))
end

return U
