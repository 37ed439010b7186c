-- Linear algebra (LAPACK): solve, inverse, lstsq, qr, svd, eigh. Hand-computed cases,
-- reconstructions of random matrices, strided inputs, and the error contract.
local lu = require "luaunit"
local sf = require "surgft"

local util = require "testutil"
local assert_close = util.assert_close

local function eye(n) return sf.eye(n):totable() end

-- a [n,k] whose columns are scaled by s[1..k] (A diag(s)), in Lua
local function scale_columns(a, s)
  local A, S = a:totable(), s:totable()
  for i = 1, #A do for j = 1, #S do A[i][j] = A[i][j] * S[j] end end
  return sf.tensor(A)
end

-- a random well-conditioned n x n matrix: randn + n I
local function well_conditioned(n, r)
  local a = sf.randn({n, n}, r)
  for i = 1, n do a:set(i, i, a:get(i, i) + n) end
  return a
end

TestSolve = {}

function TestSolve:test_hand_computed()
  local a = sf.tensor{{1, 2}, {3, 4}}
  assert_close(sf.solve(a, sf.tensor{5, 6}), {-4, 4.5}, 1e-5)
  assert_close(a:solve(sf.tensor{{5, 1}, {6, 0}}), {{-4, -2}, {4.5, 1.5}}, 1e-5)
  lu.assertEquals(a:solve(sf.tensor{5, 6}):size(), {2})
  lu.assertEquals(a:solve(sf.tensor{{5}, {6}}):size(), {2, 1})
  -- a needs a row exchange (zero leading pivot)
  assert_close(sf.tensor{{0, 1}, {1, 0}}:solve(sf.tensor{3, 7}), {7, 3}, 0)
end

function TestSolve:test_random_residual_and_strided_input()
  local r = sf.rng(21)
  local a, b = well_conditioned(7, r), sf.randn({7, 3}, r)
  local x = a:solve(b)
  assert_close(a:matmul(x), b, 1e-4)
  -- a transposed view solves a^T x = b, like its contiguous copy
  local at = a:t()
  assert_close(at:solve(b), at:contiguous():solve(b), 1e-6)
  assert_close(at:matmul(at:solve(b)), b, 1e-4)
  -- a strided right-hand side
  local bs = sf.randn({3, 7}, r):t()
  assert_close(a:solve(bs), a:solve(bs:contiguous()), 1e-6)
  -- inputs are untouched
  lu.assertEquals(a:totable(), a:clone():totable())
end

function TestSolve:test_errors()
  lu.assertErrorMsgContains("solve: argument #1 has shape [3,4], expected a square matrix [n,n]", sf.solve,
    sf.zeros(3, 4), sf.zeros(3))
  lu.assertErrorMsgContains("solve: argument #1 has shape [3], expected a 2-D square matrix [n,n]", sf.solve,
    sf.zeros(3), sf.zeros(3))
  lu.assertErrorMsgContains("solve: argument #2 has shape [3], expected [4] or [4,*]", sf.solve, sf.eye(4), sf.zeros(3))
  lu.assertErrorMsgContains("solve: argument #2 has shape [4,2,1], expected [4] or [4,*]", sf.solve, sf.eye(4),
    sf.zeros(4, 2, 1))
  lu.assertErrorMsgContains("solve: matrix is singular (U(2,2) is zero)", sf.solve, sf.tensor{{1, 2}, {2, 4}},
    sf.tensor{1, 1})
  lu.assertErrorMsgContains("solve: matrix is singular (U(3,3) is zero)", sf.solve,
    sf.tensor{{1, 0, 0}, {0, 1, 0}, {0, 0, 0}}, sf.zeros(3))
  lu.assertErrorMsgContains("solve: argument #1 (shape [2,2]) contains a non-finite value (NaN or Inf) at element 2",
    sf.solve, sf.tensor{{1, 0 / 0}, {0, 1}}, sf.zeros(2))
  lu.assertErrorMsgContains("solve: argument #2 (shape [2]) contains a non-finite value", sf.solve, sf.eye(2),
    sf.tensor{1, math.huge})
  lu.assertErrorMsgContains("bad argument #2 to 'solve' (tensor expected, got no value)", sf.solve, sf.eye(2))
end

TestInverse = {}

function TestInverse:test_hand_and_random()
  assert_close(sf.tensor{{1, 2}, {3, 4}}:inverse(), {{-2, 1}, {1.5, -0.5}}, 1e-5)
  assert_close(sf.inverse(sf.tensor{{2}}), {{0.5}}, 0)
  local r = sf.rng(22)
  local a = well_conditioned(6, r)
  local inv = a:inverse()
  assert_close(a:matmul(inv), eye(6), 1e-5)
  assert_close(inv:matmul(a), eye(6), 1e-5)
  assert_close(a:t():inverse(), inv:t():contiguous(), 1e-6)
  lu.assertEquals(sf.zeros(0, 0):inverse():size(), {0, 0})
end

function TestInverse:test_errors()
  lu.assertErrorMsgContains("inverse: matrix is singular (U(2,2) is zero)", sf.inverse, sf.tensor{{1, 2}, {2, 4}})
  lu.assertErrorMsgContains("inverse: argument #1 has shape [2,3], expected a square matrix [n,n]", sf.inverse,
    sf.zeros(2, 3))
  lu.assertErrorMsgContains("inverse: argument #1 (shape [1,1]) contains a non-finite value", sf.inverse,
    sf.tensor{{-math.huge}})
end

TestLstsq = {}

function TestLstsq:test_against_normal_equations()
  local r = sf.rng(23)
  local a, b = sf.randn({20, 4}, r), sf.randn({20}, r)
  local x = a:lstsq(b)
  lu.assertEquals(x:size(), {4})
  -- the normal equations a^T a x = a^T b
  local xn = a:t():matmul(a):solve(a:t():matmul(b))
  assert_close(x, xn, 1e-4)
  -- the residual is orthogonal to the columns of a
  local ax = a:matmul(x):totable()
  local res = {}
  for i, v in ipairs(b:totable()) do res[i] = v - ax[i] end
  assert_close(a:t():matmul(sf.tensor(res)), {0, 0, 0, 0}, 1e-4)
  -- several right-hand sides at once, and a transposed a
  local B = sf.randn({20, 3}, r)
  local X = a:lstsq(B)
  lu.assertEquals(X:size(), {4, 3})
  assert_close(X:select(2, 2), a:lstsq(B:select(2, 2)), 1e-5)
  local at = sf.randn({4, 20}, r)
  assert_close(at:t():lstsq(b), at:t():contiguous():lstsq(b), 1e-6)
end

function TestLstsq:test_square_equals_solve()
  local r = sf.rng(24)
  local a, b = well_conditioned(5, r), sf.randn({5}, r)
  assert_close(a:lstsq(b), a:solve(b), 1e-5)
end

function TestLstsq:test_rank_deficient_minimum_norm()
  -- two equal columns: every x with x1 + x2 = 2 fits exactly; the minimum norm one is {1, 1}
  assert_close(sf.tensor{{1, 1}, {1, 1}, {1, 1}}:lstsq(sf.tensor{2, 2, 2}), {1, 1}, 1e-5)
  -- a zero column gets a zero coefficient
  assert_close(sf.tensor{{1, 0}, {0, 0}, {1, 0}}:lstsq(sf.tensor{1, 5, 3}), {2, 0}, 1e-5)
  -- random rank-2 [10,4] = U V: the solution lies in the row space (orthogonal to the null space)
  local r = sf.rng(25)
  local a = sf.randn({10, 2}, r):matmul(sf.randn({2, 4}, r))
  local x = a:lstsq(sf.randn({10}, r))
  local _, _, vt = a:svd()
  local proj = vt:matmul(x):totable() -- components along the row space
  local nx, np = 0, 0
  for _, v in ipairs(x:totable()) do nx = nx + v * v end
  for i = 1, 2 do np = np + proj[i] * proj[i] end
  lu.assertAlmostEquals(np, nx, 1e-4 * math.max(1, nx))
  -- underdetermined [2,4]: x = a^T (a a^T)^-1 b, the minimum-norm exact solution
  local w = sf.randn({2, 4}, r)
  local bw = sf.tensor{1, -2}
  assert_close(w:lstsq(bw), w:t():matmul(w:matmul(w:t()):solve(bw)), 1e-4)
  assert_close(w:matmul(w:lstsq(bw)), {1, -2}, 1e-4)
end

function TestLstsq:test_errors()
  lu.assertErrorMsgContains("lstsq: argument #2 has shape [3], expected [4] or [4,*]", sf.lstsq, sf.zeros(4, 2),
    sf.zeros(3))
  lu.assertErrorMsgContains("lstsq: argument #1 has shape [4], expected a 2-D matrix [m,n]", sf.lstsq, sf.zeros(4),
    sf.zeros(4))
  lu.assertErrorMsgContains("lstsq: argument #1 (shape [2,2]) contains a non-finite value", sf.lstsq,
    sf.tensor{{0 / 0, 1}, {1, 1}}, sf.zeros(2))
end

TestQR = {}

function TestQR:test_tall_and_wide()
  local r = sf.rng(26)
  for _, shape in ipairs{{6, 4}, {3, 5}, {4, 4}} do
    local a = sf.randn(shape, r)
    local q, rr = a:qr()
    local k = math.min(shape[1], shape[2])
    lu.assertEquals(q:size(), {shape[1], k})
    lu.assertEquals(rr:size(), {k, shape[2]})
    assert_close(q:matmul(rr), a, 1e-5)
    assert_close(q:t():matmul(q), eye(k), 1e-5)
    local R = rr:totable()
    for i = 1, k do for j = 1, i - 1 do lu.assertEquals(R[i][j], 0) end end
  end
end

function TestQR:test_hand_and_strided()
  -- [[3],[4]] = [[0.6],[0.8]] [[5]] up to a sign
  local q, rr = sf.tensor{{3}, {4}}:qr()
  local s = rr:get(1, 1) > 0 and 1 or -1
  assert_close(q, {{0.6 * s}, {0.8 * s}}, 1e-6)
  assert_close(rr, {{5 * s}}, 1e-5)
  local a = sf.randn({5, 3}, sf.rng(27))
  local q1, r1 = a:t():qr()
  local q2, r2 = a:t():contiguous():qr()
  assert_close(q1, q2, 1e-6)
  assert_close(r1, r2, 1e-6)
end

function TestQR:test_errors()
  lu.assertErrorMsgContains("qr: argument #1 has shape [2,3,4], expected a 2-D matrix [m,n]", sf.qr, sf.zeros(2, 3, 4))
  lu.assertErrorMsgContains("qr: argument #1 (shape [1,2]) contains a non-finite value", sf.qr, sf.tensor{{1, 0 / 0}})
end

TestSVD = {}

function TestSVD:test_hand_computed()
  local u, s, vt = sf.tensor{{0, 2}, {3, 0}}:svd()
  assert_close(s, {3, 2}, 1e-6)
  -- |U| and |Vt| are permutations; the product is exact
  assert_close(scale_columns(u, s):matmul(vt), {{0, 2}, {3, 0}}, 1e-6)
end

function TestSVD:test_reconstruction()
  local r = sf.rng(28)
  for _, shape in ipairs{{7, 3}, {3, 7}, {5, 5}} do
    local a = sf.randn(shape, r)
    local u, s, vt = a:svd()
    local k = math.min(shape[1], shape[2])
    lu.assertEquals(u:size(), {shape[1], k})
    lu.assertEquals(s:size(), {k})
    lu.assertEquals(vt:size(), {k, shape[2]})
    local S = s:totable()
    for i = 2, k do lu.assertTrue(S[i - 1] >= S[i], "singular values descend") end
    lu.assertTrue(S[k] >= 0)
    assert_close(scale_columns(u, s):matmul(vt), a, 1e-5)
    assert_close(u:t():matmul(u), eye(k), 1e-5)
    assert_close(vt:matmul(vt:t()), eye(k), 1e-5)
  end
  -- a transposed view: the same singular values
  local a = sf.randn({4, 6}, r)
  local _, s1 = a:t():svd()
  local _, s2 = a:svd()
  assert_close(s1, s2, 1e-5)
end

function TestSVD:test_errors()
  lu.assertErrorMsgContains("svd: argument #1 has shape [3], expected a 2-D matrix [m,n]", sf.svd, sf.zeros(3))
  lu.assertErrorMsgContains("svd: argument #1 (shape [2,2]) contains a non-finite value (NaN or Inf) at element 4",
    sf.svd, sf.tensor{{1, 2}, {3, math.huge}})
end

TestEigh = {}

function TestEigh:test_hand_computed()
  local w, v = sf.tensor{{2, 1}, {1, 2}}:eigh()
  assert_close(w, {1, 3}, 1e-6)
  local V = v:totable()
  local h = math.sqrt(0.5)
  -- eigenvectors in columns, each up to sign: (1,-1)/sqrt2 for 1, (1,1)/sqrt2 for 3
  assert_close({math.abs(V[1][1]), math.abs(V[2][1])}, {h, h}, 1e-6)
  lu.assertTrue(V[1][1] * V[2][1] < 0)
  lu.assertTrue(V[1][2] * V[2][2] > 0)
end

function TestEigh:test_reconstruction_and_lower_triangle()
  local r = sf.rng(29)
  local b = sf.randn({6, 6}, r)
  local a = b:matmul(b:t()) -- symmetric (positive semi-definite)
  local w, v = a:eigh()
  local W = w:totable()
  for i = 2, 6 do lu.assertTrue(W[i - 1] <= W[i], "eigenvalues ascend") end
  assert_close(scale_columns(v, w):matmul(v:t()), a, 1e-4)
  assert_close(v:t():matmul(v), eye(6), 1e-5)
  -- only the lower triangle is read
  local junk = a:clone()
  for i = 1, 6 do for j = i + 1, 6 do junk:set(i, j, 99) end end
  local w2 = junk:eigh()
  assert_close(w2, w, 1e-6)
end

function TestEigh:test_errors()
  lu.assertErrorMsgContains("eigh: argument #1 has shape [2,3], expected a square matrix [n,n]", sf.eigh, sf.zeros(2, 3))
  lu.assertErrorMsgContains("eigh: argument #1 (shape [2,2]) contains a non-finite value", sf.eigh,
    sf.tensor{{1, 0}, {0 / 0, 1}})
end

os.exit(lu.LuaUnit.run())
