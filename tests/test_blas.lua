-- Matrix products (matmul, outer) and the thread count: hand-computed values, strided
-- views (transposed, narrowed, expanded, gappy) against contiguous copies, batches,
-- preallocated outputs, the error contract.
local lu = require "luaunit"
local sf = require "surgft"

local util = require "testutil"
local assert_close = util.assert_close

-- the product of two 2-D tensors, computed in Lua from their elements (the reference)
local function naive(a, b)
  local A, B = a:totable(), b:totable()
  local m, k, n = #A, #B, #B[1]
  local C = {}
  for i = 1, m do
    C[i] = {}
    for j = 1, n do
      local s = 0
      for p = 1, k do s = s + A[i][p] * B[p][j] end
      C[i][j] = s
    end
  end
  return C
end

TestMatmul = {}

function TestMatmul:test_hand_computed()
  local a = sf.tensor{{1, 2, 3}, {4, 5, 6}}
  local b = sf.tensor{{7, 8}, {9, 10}, {11, 12}}
  lu.assertEquals(a:matmul(b):totable(), {{58, 64}, {139, 154}})
  lu.assertEquals(sf.matmul(b, a):totable(), {{39, 54, 69}, {49, 68, 87}, {59, 82, 105}})
  lu.assertEquals(a:matmul(b):size(), {2, 2})
end

function TestMatmul:test_vectors()
  local a = sf.tensor{{1, 2, 3}, {4, 5, 6}}
  local v3, v2 = sf.tensor{1, 0, -1}, sf.tensor{2, -1}
  lu.assertEquals(a:matmul(v3):totable(), {-2, -2})           -- [m,k] x [k] -> [m]
  lu.assertEquals(v2:matmul(a):totable(), {-2, -1, 0})         -- [k] x [k,n] -> [n]
  local dot = v3:matmul(sf.tensor{3, 4, 5})                    -- [k] x [k] -> []
  lu.assertEquals(dot:dim(), 0)
  lu.assertEquals(dot:item(), -2)
end

function TestMatmul:test_random_against_naive()
  local r = sf.rng(11)
  local a, b = sf.randn({37, 53}, r), sf.randn({53, 29}, r)
  assert_close(a:matmul(b), naive(a, b), 1e-4)
end

function TestMatmul:test_transposed_views_are_not_copied_and_agree()
  local r = sf.rng(12)
  local at, bt = sf.randn({6, 5}, r), sf.randn({7, 6}, r) -- a = at^T [5,6], b = bt^T [6,7]
  local a, b = at:t(), bt:t()
  lu.assertFalse(a:is_contiguous())
  local ac, bc = a:contiguous(), b:contiguous()
  local ref = naive(ac, bc)
  assert_close(a:matmul(bc), ref, 1e-5)
  assert_close(ac:matmul(b), ref, 1e-5)
  assert_close(a:matmul(b), ref, 1e-5)
  assert_close(ac:matmul(bc), ref, 1e-5)
end

function TestMatmul:test_narrowed_views_agree()
  local r = sf.rng(13)
  local big = sf.randn({9, 10}, r)
  local a = big:narrow(1, 2, 4):narrow(2, 3, 5)   -- [4,5], row stride 10 > 5 columns
  local b = big:narrow(2, 1, 3):narrow(1, 4, 5)   -- [5,3]
  local ref = naive(a:contiguous(), b:contiguous())
  assert_close(a:matmul(b), ref, 1e-5)
  assert_close(a:t():contiguous():t():matmul(b), ref, 1e-5)
  -- narrowed and transposed at once
  assert_close(b:t():matmul(a:t()), naive(b:t():contiguous(), a:t():contiguous()), 1e-5)
end

function TestMatmul:test_views_that_need_a_copy()
  local r = sf.rng(14)
  -- neither stride is 1: a [3,4] slice of a [3,4,2] tensor
  local x = sf.randn({3, 4, 2}, r)
  local a = x:select(3, 2)
  lu.assertEquals(a:stride(), {8, 2})
  local b = sf.randn({4, 5}, r)
  assert_close(a:matmul(b), naive(a:contiguous(), b), 1e-5)
  -- an expanded operand (stride 0)
  local e = sf.tensor{1, 2, 3, 4}:unsqueeze(1):expand(3, 4)
  assert_close(e:matmul(b), naive(e:contiguous(), b), 1e-5)
  local col = sf.tensor{{2}, {3}, {4}, {5}}:expand(4, 5)
  assert_close(a:matmul(col), naive(a:contiguous(), col:contiguous()), 1e-5)
  -- strided and expanded vectors
  local v = x:select(3, 1):select(1, 2) -- [4] with stride 2
  assert_close(v:matmul(b), naive(v:unsqueeze(1):contiguous(), b)[1], 1e-5)
  local ones, rowsums = sf.tensor{1}:expand(4), {}
  for i, row in ipairs(a:totable()) do rowsums[i] = row[1] + row[2] + row[3] + row[4] end
  assert_close(a:matmul(ones), rowsums, 1e-5)
  -- inputs are untouched
  lu.assertEquals(e:totable()[2], {1, 2, 3, 4})
end

function TestMatmul:test_batched()
  local a = sf.tensor{{{1, 2}, {3, 4}}, {{1, 0}, {0, 1}}}
  local b = sf.tensor{{{5, 6}, {7, 8}}, {{2, 3}, {4, 5}}}
  lu.assertEquals(a:matmul(b):totable(), {{{19, 22}, {43, 50}}, {{2, 3}, {4, 5}}})
  local r = sf.rng(15)
  local A, B = sf.randn({3, 4, 5}, r), sf.randn({3, 5, 2}, r)
  local C = A:matmul(B)
  lu.assertEquals(C:size(), {3, 4, 2})
  for i = 1, 3 do assert_close(C:select(1, i), naive(A:select(1, i), B:select(1, i)), 1e-5) end
  -- transposed inner dimensions and a batch-transposed layout agree with contiguous copies
  local At = sf.randn({3, 5, 4}, r):transpose(2, 3)
  local Bp = sf.randn({5, 3, 2}, r):transpose(1, 2)
  local ref = At:contiguous():matmul(Bp:contiguous())
  assert_close(At:matmul(Bp), ref, 1e-5)
  -- an expanded batch (stride 0): every batch uses the same matrix
  local W = sf.randn({1, 5, 2}, r):expand(3, 5, 2)
  local D = A:matmul(W)
  for i = 1, 3 do assert_close(D:select(1, i), naive(A:select(1, i), W:select(1, 1)), 1e-5) end
end

-- a batch of small products is split over the threads: each product is the same single
-- sgemm call, so the bits do not depend on the thread count
function TestMatmul:test_batched_threads_agree()
  local r = sf.rng(16)
  local A, B = sf.randn({300, 17, 9}, r), sf.randn({300, 9, 21}, r)
  local n0 = sf.threads()
  sf.set_threads(1)
  local one = A:matmul(B)
  sf.set_threads(2)
  local two, again = A:matmul(B), A:matmul(B:transpose(2, 3):contiguous():transpose(2, 3))
  sf.set_threads(n0)
  lu.assertEquals(two:reshape(-1):totable(), one:reshape(-1):totable())
  lu.assertEquals(again:reshape(-1):totable(), one:reshape(-1):totable())
  for i = 1, 300, 97 do assert_close(two:select(1, i), naive(A:select(1, i), B:select(1, i)), 1e-5) end
end

function TestMatmul:test_empty_dimensions()
  local z = sf.zeros(2, 0):matmul(sf.zeros(0, 3))
  lu.assertEquals(z:totable(), {{0, 0, 0}, {0, 0, 0}})
  lu.assertEquals(sf.zeros(0, 4):matmul(sf.zeros(4, 3)):size(), {0, 3})
  lu.assertEquals(sf.zeros(2, 0, 3):matmul(sf.zeros(2, 3, 1)):size(), {2, 0, 1})
end

function TestMatmul:test_out_argument()
  local a = sf.tensor{{1, 2}, {3, 4}}
  local b = sf.tensor{{5, 6}, {7, 8}}
  local out = sf.full({2, 2}, -1)
  local res = a:matmul(b, out)
  lu.assertTrue(rawequal(res, out))
  lu.assertEquals(out:totable(), {{19, 22}, {43, 50}})
  -- writing into an operand goes through a temporary
  a:matmul(b, a)
  lu.assertEquals(a:totable(), {{19, 22}, {43, 50}})
  local c = sf.tensor{{1, 2}, {3, 4}}
  c:matmul(c:t(), c)
  lu.assertEquals(c:totable(), {{5, 11}, {11, 25}})
  lu.assertErrorMsgContains("matmul: output has shape [2,3], expected [2,2]", sf.matmul, a, b, sf.zeros(2, 3))
  lu.assertErrorMsgContains("matmul: output of shape [2,2] is not contiguous", sf.matmul, a, b, sf.zeros(2, 2):t())
  local o = sf.zeros(3)
  sf.outer(sf.tensor{1, 2, 3}, sf.tensor{1}, o:view(3, 1))
  lu.assertEquals(o:totable(), {1, 2, 3})
end

function TestMatmul:test_deterministic()
  local r = sf.rng(16)
  local a, b = sf.randn({64, 80}, r), sf.randn({80, 48}, r)
  lu.assertEquals(a:matmul(b):totable(), a:matmul(b):totable())
end

function TestMatmul:test_errors()
  local a = sf.zeros(2, 4)
  lu.assertErrorMsgContains("matmul: argument #2 has shape [3,5], expected [4,*]", sf.matmul, a, sf.zeros(3, 5))
  lu.assertErrorMsgContains("matmul: argument #2 has shape [3,5], expected [4,*]", a.matmul, a, sf.zeros(3, 5))
  lu.assertErrorMsgContains("matmul: argument #2 has shape [3], expected [4]", sf.matmul, a, sf.zeros(3))
  lu.assertErrorMsgContains("matmul: argument #2 has shape [3,2], expected [4,*]", sf.matmul, sf.zeros(4), sf.zeros(3, 2))
  lu.assertErrorMsgContains("matmul: argument #2 has shape [2,3,5], expected [2,4,*]", sf.matmul,
    sf.zeros(2, 3, 4), sf.zeros(2, 3, 5))
  lu.assertErrorMsgContains("matmul: argument #2 has shape [3,4,5], expected [2,4,*]", sf.matmul,
    sf.zeros(2, 3, 4), sf.zeros(3, 4, 5))
  lu.assertErrorMsgContains("matmul: argument #2 has shape [4,5], expected [2,4,*] (batched matmul needs both 3-D)",
    sf.matmul, sf.zeros(2, 3, 4), sf.zeros(4, 5))
  lu.assertErrorMsgContains("matmul: argument #1 has shape [3,4], expected [2,*,4] (batched matmul needs both 3-D)",
    sf.matmul, sf.zeros(3, 4), sf.zeros(2, 4, 5))
  lu.assertErrorMsgContains("matmul: argument #1 has shape [1,2,3,4], expected a 1-D, 2-D or 3-D tensor",
    sf.matmul, sf.zeros(1, 2, 3, 4), a)
  lu.assertErrorMsgContains("matmul: argument #2 has shape [], expected a 1-D, 2-D or 3-D tensor",
    sf.matmul, a, sf.tensor(3))
  lu.assertErrorMsgContains("bad argument #2 to 'matmul' (tensor expected, got number)", sf.matmul, a, 3)
  lu.assertErrorMsgContains("bad argument #3 to 'matmul' (tensor expected, got string)", sf.matmul, a, sf.zeros(4, 1), "x")
end

TestOuter = {}

function TestOuter:test_values()
  lu.assertEquals(sf.outer(sf.tensor{1, 2, 3}, sf.tensor{4, 5}):totable(), {{4, 5}, {8, 10}, {12, 15}})
  lu.assertEquals(sf.tensor{2}:outer(sf.tensor{-1, 0, 1}):totable(), {{-2, 0, 2}})
  -- strided and expanded vectors agree with contiguous ones
  local m = sf.tensor{{1, 2, 3}, {4, 5, 6}}
  local col = m:select(2, 2) -- {2, 5}, stride 3
  lu.assertEquals(col:outer(m:select(1, 2)):totable(), {{8, 10, 12}, {20, 25, 30}})
  lu.assertEquals(sf.tensor{3}:expand(2):outer(sf.tensor{1, 2}):totable(), {{3, 6}, {3, 6}})
  lu.assertEquals(sf.outer(sf.zeros(0), sf.ones(3)):size(), {0, 3})
end

function TestOuter:test_errors()
  lu.assertErrorMsgContains("outer: argument #1 has shape [2,2], expected a 1-D tensor", sf.outer, sf.zeros(2, 2), sf.zeros(2))
  lu.assertErrorMsgContains("outer: argument #2 has shape [], expected a 1-D tensor", sf.outer, sf.zeros(2), sf.tensor(1))
  lu.assertErrorMsgContains("outer: output has shape [3,2], expected [2,3]", sf.outer, sf.zeros(2), sf.zeros(3),
    sf.zeros(3, 2))
end

TestThreads = {}

function TestThreads:test_default_from_environment()
  local env = os.getenv("SURGFT_THREADS")
  if env and tonumber(env) then
    lu.assertEquals(sf.threads(), math.tointeger(tonumber(env)))
  else
    lu.assertTrue(sf.threads() >= 1)
  end
end

function TestThreads:test_round_trip()
  local before = sf.threads()
  sf.set_threads(1)
  lu.assertEquals(sf.threads(), 1)
  sf.set_threads(2)
  lu.assertEquals(sf.threads(), 2)
  -- results do not depend on the thread count
  local r = sf.rng(17)
  local a, b = sf.randn({96, 64}, r), sf.randn({64, 80}, r)
  local two = a:matmul(b):totable()
  sf.set_threads(1)
  assert_close(a:matmul(b), two, 1e-5)
  sf.set_threads(before)
  lu.assertEquals(sf.threads(), before)
end

function TestThreads:test_errors()
  lu.assertErrorMsgContains("bad argument #1 to 'set_threads' (thread count 0 is out of range, expected 1 to 4096)",
    sf.set_threads, 0)
  lu.assertErrorMsgContains("thread count -3 is out of range", sf.set_threads, -3)
  lu.assertErrorMsgContains("bad argument #1 to 'set_threads' (integer expected, got 1.5)", sf.set_threads, 1.5)
  lu.assertErrorMsgContains("bad argument #1 to 'set_threads' (integer expected, got no value)", sf.set_threads)
end

function TestThreads:test_bad_environment_warns_and_falls_back()
  -- the interpreter is arg's lowest index (options, if any, sit between it and the script)
  local lowest = 0
  while arg and arg[lowest - 1] do lowest = lowest - 1 end
  local exe = lowest < 0 and arg[lowest]
  if not exe then return lu.skip("interpreter path unknown") end
  local function run(value)
    local p = io.popen(string.format("SURGFT_THREADS=%s '%s' -e 'io.write(require(\"surgft\").threads())' 2>&1",
      value, exe))
    local s = p:read("a")
    p:close()
    return s
  end
  local s = run("abc")
  lu.assertStrContains(s, "surgft: warning: SURGFT_THREADS='abc' is not a thread count")
  lu.assertStrContains(s, "using")
  lu.assertStrContains(run("0"), "SURGFT_THREADS='0' is not a thread count")
  lu.assertStrContains(run("2x"), "SURGFT_THREADS='2x' is not a thread count")
  lu.assertEquals(run("1"), "1")
end

function TestThreads:test_config()
  lu.assertStrContains(sf.blas_config(), "OpenBLAS")
end

os.exit(lu.LuaUnit.run())
