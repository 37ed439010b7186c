-- Helpers shared by the LuaUnit suites (required from tests/, the suites' working
-- directory): temporary directories, whole-file I/O, tensor comparisons, and the
-- same-bits-at-any-thread-count check of the parallel kernels.
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

-- cases(rng) returns a list of {name, tensor}; run with rng seeded by seed at 1 thread,
-- then at 2, 3 and again 2 threads, every tensor must have the same bits as at 1 thread
-- (the kernels split work so that no result depends on the thread count) and the
-- repeated thread count must repeat them; the caller's thread count is restored even
-- when a case fails
function U.assert_same_bits_across_threads(cases, seed)
  local n0 = sf.threads()
  sf.set_threads(1)
  local ok, one = pcall(cases, sf.rng(seed))
  sf.set_threads(n0)
  if not ok then error(one, 0) end
  for _, t in ipairs{2, 3, 2} do
    sf.set_threads(t)
    local ok2, res = pcall(cases, sf.rng(seed))
    sf.set_threads(n0)
    if not ok2 then error(res, 0) end
    for i, c in ipairs(one) do
      lu.assertEquals(res[i][1], c[1])
      lu.assertTrue(res[i][2]:equal(c[2]), t .. " threads: " .. c[1] .. " differs from 1 thread")
    end
  end
end

-- the surgft-lua under test, as an absolute path (children may run in another directory):
-- $SURGFT_BUILD_DIR/surgft-lua (set by meson test), else the interpreter running the suite
function U.binary()
  local dir = os.getenv("SURGFT_BUILD_DIR")
  local bin = dir and dir ~= "" and (dir .. "/surgft-lua") or arg[-1]
  if bin:sub(1, 1) ~= "/" then
    local p = assert(io.popen("pwd"))
    bin = p:read("l") .. "/" .. bin
    p:close()
  end
  return bin
end

return U
