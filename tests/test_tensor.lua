-- Tensor core: constructors, shapes, views sharing storage, copies, element access,
-- printing, memory accounting and the error contract of each.
local lu = require "luaunit"
local sf = require "surgft"

TestConstruct = {}

function TestConstruct:test_zeros_ones_full_empty()
  local z = sf.zeros(2, 3)
  lu.assertEquals(z:size(), {2, 3})
  lu.assertEquals(z:totable(), {{0, 0, 0}, {0, 0, 0}})
  lu.assertEquals(sf.zeros{2, 3}:size(), {2, 3})
  lu.assertEquals(sf.ones{2}:totable(), {1, 1})
  lu.assertEquals(sf.full({2, 2}, 7):totable(), {{7, 7}, {7, 7}})
  lu.assertEquals(sf.full(2, 2, -1.5):totable(), {{-1.5, -1.5}, {-1.5, -1.5}})
  lu.assertEquals(sf.empty(4, 5):size(), {4, 5})
  lu.assertEquals(sf.zeros(0, 3):numel(), 0)
  lu.assertEquals(sf.zeros{}:dim(), 0)
  lu.assertEquals(sf.zeros{}:numel(), 1)
end

function TestConstruct:test_arange_range_linspace()
  lu.assertEquals(sf.arange(5):totable(), {0, 1, 2, 3, 4})
  lu.assertEquals(sf.arange(2, 5):totable(), {2, 3, 4})
  lu.assertEquals(sf.arange(0, 1, 0.25):totable(), {0, 0.25, 0.5, 0.75})
  lu.assertEquals(sf.arange(5, 0, -2):totable(), {5, 3, 1})
  lu.assertEquals(sf.arange(3, 3):numel(), 0)
  lu.assertEquals(sf.range(1, 4):totable(), {1, 2, 3, 4})
  lu.assertEquals(sf.range(0, 1, 0.5):totable(), {0, 0.5, 1})
  lu.assertEquals(sf.linspace(0, 1, 5):totable(), {0, 0.25, 0.5, 0.75, 1})
  lu.assertEquals(sf.linspace(3, 9, 1):totable(), {3})
  lu.assertEquals(sf.linspace(3, 9, 0):numel(), 0)
end

function TestConstruct:test_eye()
  lu.assertEquals(sf.eye(3):totable(), {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}})
  lu.assertEquals(sf.eye(2, 3):totable(), {{1, 0, 0}, {0, 1, 0}})
end

function TestConstruct:test_from_table()
  local t = sf.tensor{{1, 2}, {3, 4}}
  lu.assertEquals(t:size(), {2, 2})
  lu.assertEquals(t:get(2, 1), 3)
  lu.assertEquals(sf.tensor{1, 2, 3}:size(), {3})
  lu.assertEquals(sf.tensor{{{1}, {2}}}:size(), {1, 2, 1})
  lu.assertEquals(sf.tensor(2.5):dim(), 0)
  lu.assertEquals(sf.tensor(2.5):item(), 2.5)
  lu.assertEquals(sf.tensor{}:numel(), 0)
  local c = sf.tensor(t)
  lu.assertFalse(c:shares_storage(t))
  lu.assertEquals(c:totable(), t:totable())
end

function TestConstruct:test_errors()
  lu.assertErrorMsgContains("ragged nesting at [2]", sf.tensor, {{1, 2}, {3}})
  lu.assertErrorMsgContains("element [1][2] is string", sf.tensor, {{1, "x"}})
  lu.assertErrorMsgContains("ragged nesting at [2]: expected a table of 2 entries, got number", sf.tensor, {{1, 2}, 3})
  lu.assertErrorMsgContains("bad argument #1 to 'zeros' (negative size in shape [2,-1])", sf.zeros, 2, -1)
  lu.assertErrorMsgContains("shape entry 2 is string", sf.zeros, {2, "a"})
  lu.assertErrorMsgContains("integer expected, got 1.5", sf.zeros, 1.5)
  lu.assertErrorMsgContains("shape has 9 dimensions, at most 8", sf.zeros, {1, 1, 1, 1, 1, 1, 1, 1, 1})
  lu.assertErrorMsgContains("arange: step must be finite and non-zero", sf.arange, 0, 1, 0)
  lu.assertErrorMsgContains("linspace: argument #3 (count) is -1", sf.linspace, 0, 1, -1)
  lu.assertErrorMsgContains("eye: sizes must be >= 0", sf.eye, -2)
  -- lauxlib names the function by its first key found in package.loaded ('surgft.full'
  -- or 'surgft.core.full', in table order)
  lu.assertErrorMsgContains("full' (number expected, got no value)", sf.full, {2})
end

TestShape = {}

function TestShape:test_queries()
  local t = sf.zeros(2, 3, 4)
  lu.assertEquals(t:size(), {2, 3, 4})
  lu.assertEquals(t:shape(), {2, 3, 4})
  lu.assertEquals(t:size(2), 3)
  lu.assertEquals(t:size(-1), 4)
  lu.assertEquals(t:stride(), {12, 4, 1})
  lu.assertEquals(t:stride(1), 12)
  lu.assertEquals(t:numel(), 24)
  lu.assertEquals(t:dim(), 3)
  lu.assertEquals(#t, 2)
  lu.assertTrue(t:is_contiguous())
  lu.assertErrorMsgContains("bad argument #2 to 'size' (dimension 4 out of range for a 3-D tensor of shape [2,3,4])",
    t.size, t, 4)
  lu.assertErrorMsgContains("dimension 0 out of range", t.size, t, 0)
  lu.assertErrorMsgContains("dimension -4 out of range", t.stride, t, -4)
end

function TestShape:test_not_a_tensor()
  lu.assertErrorMsgContains("bad argument #1 to 'size' (tensor expected, got number)", sf.size, 3)
  lu.assertErrorMsgContains("bad argument #2 to 'copy' (tensor expected, got table)", sf.zeros(2).copy, sf.zeros(2), {})
end

TestViews = {}

local function seq(...)  -- 1, 2, 3, ... in the given shape
  local shape = {...}
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  return sf.arange(1, n + 1):reshape(shape)
end

function TestViews:test_reshape_shares_storage()
  local t = seq(2, 3)
  local r = t:reshape{3, 2}
  lu.assertTrue(r:shares_storage(t))
  lu.assertEquals(r:totable(), {{1, 2}, {3, 4}, {5, 6}})
  r:set(1, 1, 100)
  lu.assertEquals(t:get(1, 1), 100)
  lu.assertEquals(t:reshape(-1):size(), {6})
  lu.assertEquals(t:reshape(3, -1):size(), {3, 2})
  lu.assertEquals(t:view(1, 6, 1):size(), {1, 6, 1})
end

function TestViews:test_reshape_noncontiguous()
  local t = seq(2, 3):t()             -- [3,2], strides {1,3}
  lu.assertFalse(t:is_contiguous())
  local r = t:reshape(6)              -- needs a copy
  lu.assertFalse(r:shares_storage(t))
  lu.assertEquals(r:totable(), {1, 4, 2, 5, 3, 6})
  lu.assertErrorMsgContains("view: tensor of shape [3,2] is not contiguous enough to view", t.view, t, 6)
  -- a narrowed tensor whose rows are contiguous can still be viewed
  local n = seq(4, 6):narrow(2, 1, 6):narrow(1, 2, 2)
  local v = n:view(12)
  lu.assertTrue(v:shares_storage(n))
  lu.assertEquals(v:get(1), 7)
  -- splitting a strided dimension is a view too
  local s = seq(4, 6):t():view(3, 2, 4)
  lu.assertEquals(s:get(2, 1, 2), seq(4, 6):get(2, 3))
end

function TestViews:test_reshape_errors()
  local t = seq(2, 3)
  lu.assertErrorMsgContains("reshape: cannot view a tensor of shape [2,3] (6 elements) as [4] (4 elements)", t.reshape, t, 4)
  lu.assertErrorMsgContains("reshape: only one dimension can be -1", t.reshape, t, -1, -1)
  lu.assertErrorMsgContains("reshape: cannot view a tensor of shape [2,3] (6 elements) as [4,-1]", t.reshape, t, 4, -1)
  lu.assertErrorMsgContains("bad argument #2 to 'reshape' (shape expected", t.reshape, t)
end

function TestViews:test_transpose_permute()
  local t = seq(2, 3)
  local tt = t:t()
  lu.assertEquals(tt:size(), {3, 2})
  lu.assertEquals(tt:stride(), {1, 3})
  lu.assertEquals(tt:totable(), {{1, 4}, {2, 5}, {3, 6}})
  lu.assertTrue(tt:shares_storage(t))
  local u = seq(2, 3, 4)
  lu.assertEquals(u:transpose(1, 3):size(), {4, 3, 2})
  lu.assertEquals(u:transpose(1, -1):get(4, 3, 2), u:get(2, 3, 4))
  local p = u:permute{3, 1, 2}
  lu.assertEquals(p:size(), {4, 2, 3})
  lu.assertEquals(p:get(3, 2, 1), u:get(2, 1, 3))
  lu.assertErrorMsgContains("permute: argument is not a permutation of 1..3", u.permute, u, {1, 1, 2})
  lu.assertErrorMsgContains("2 dimensions given for a 3-D tensor", u.permute, u, {1, 2})
  lu.assertErrorMsgContains("transpose without dimensions needs a 2-D tensor, got shape [2,3,4]", u.t, u)
end

function TestViews:test_narrow_select()
  local t = seq(3, 4)
  local n = t:narrow(2, 2, 2)
  lu.assertEquals(n:totable(), {{2, 3}, {6, 7}, {10, 11}})
  n:fill(0)
  lu.assertEquals(t:get(2, 2), 0)
  lu.assertEquals(t:narrow(1, 4, 0):numel(), 0)
  lu.assertEquals(t:select(1, 2):totable(), {5, 0, 0, 8})
  lu.assertEquals(t:select(2, -1):totable(), {4, 8, 12})
  lu.assertEquals(seq(3):select(1, 2):dim(), 0)
  lu.assertErrorMsgContains("narrow: range [3, 5] is out of bounds for dimension 2 of size 4 (shape [3,4])",
    t.narrow, t, 2, 3, 3)
  lu.assertErrorMsgContains("bad argument #3 to 'select' (index 5 out of range for the selected dimension of size 4)",
    t.select, t, 2, 5)
  lu.assertErrorMsgContains("index 0 out of range", t.select, t, 1, 0)
end

function TestViews:test_squeeze_unsqueeze_expand()
  local t = sf.zeros(1, 3, 1)
  lu.assertEquals(t:squeeze():size(), {3})
  lu.assertEquals(t:squeeze(3):size(), {1, 3})
  lu.assertEquals(t:squeeze(2):size(), {1, 3, 1})
  local v = seq(3)
  lu.assertEquals(v:unsqueeze(1):size(), {1, 3})
  lu.assertEquals(v:unsqueeze(2):size(), {3, 1})
  lu.assertEquals(v:unsqueeze(-1):size(), {3, 1})
  local e = v:unsqueeze(1):expand(2, 3)
  lu.assertEquals(e:stride(), {0, 1})
  lu.assertEquals(e:totable(), {{1, 2, 3}, {1, 2, 3}})
  lu.assertEquals(v:unsqueeze(2):expand{3, -1}:size(), {3, 1})
  lu.assertEquals(v:expand(4, 3):size(), {4, 3})
  lu.assertErrorMsgContains("expand: cannot expand shape [3] to [4] (only size-1 dimensions can grow)", v.expand, v, 4)
  lu.assertErrorMsgContains("expanded view", e.copy, e, sf.zeros(2, 3))
end

TestCopy = {}

function TestCopy:test_clone_contiguous_copy()
  local t = seq(2, 3)
  local c = t:clone()
  lu.assertFalse(c:shares_storage(t))
  c:set(1, 1, 9)
  lu.assertEquals(t:get(1, 1), 1)
  lu.assertTrue(t:contiguous():shares_storage(t))
  local tt = t:t():contiguous()
  lu.assertTrue(tt:is_contiguous())
  lu.assertEquals(tt:totable(), {{1, 4}, {2, 5}, {3, 6}})
  local dst = sf.zeros(3, 2)
  dst:copy(t:t())
  lu.assertEquals(dst:totable(), tt:totable())
  local flat = sf.zeros(6):copy(t)  -- same element count, row-major order
  lu.assertEquals(flat:totable(), {1, 2, 3, 4, 5, 6})
  sf.zeros(2, 3):t():copy(sf.ones(3, 2))  -- strided destination
  lu.assertErrorMsgContains("copy: argument #2 has shape [4] (4 elements), expected 6 elements like [2,3]",
    t.copy, t, sf.zeros(4))
end

function TestCopy:test_strided_copy_agrees()
  local rng = sf.rng(3)
  local a = sf.randn({4, 5, 6}, rng)
  local p = a:permute{3, 1, 2}
  local c = p:contiguous()
  for i = 1, 6 do for j = 1, 4 do for k = 1, 5 do
    lu.assertEquals(c:get(i, j, k), a:get(j, k, i))
  end end end
end

TestAccess = {}

function TestAccess:test_get_set_negative()
  local t = seq(2, 3)
  lu.assertEquals(t:get(-1, -1), 6)
  lu.assertEquals(t:get(1, -3), 1)
  t:set(-1, 1, 42)
  lu.assertEquals(t:get(2, 1), 42)
  lu.assertEquals(t:set(1, 1, 5), t)  -- returns self for chaining
  lu.assertErrorMsgContains("bad argument #3 to 'get' (index 4 out of range for dimension 2 of size 3, shape [2,3])",
    t.get, t, 1, 4)
  lu.assertErrorMsgContains("bad argument #2 to 'get' (1 indices given for a 2-D tensor of shape [2,3])", t.get, t, 1)
  lu.assertErrorMsgContains("index -3 out of range for dimension 1", t.get, t, -3, 1)
  lu.assertErrorMsgContains("integer expected, got 1.5", t.get, t, 1.5, 1)
  lu.assertErrorMsgContains("item needs a one-element tensor, got shape [2,3]", t.item, t)
end

function TestAccess:test_totable_of_view()
  lu.assertEquals(seq(2, 3):t():totable(), {{1, 4}, {2, 5}, {3, 6}})
  lu.assertEquals(sf.tensor(7):totable(), 7)
end

TestPrint = {}

function TestPrint:test_small()
  local s = tostring(sf.tensor{{1, 2}, {3, 4}})
  lu.assertStrContains(s, " 1 2\n 3 4")
  lu.assertStrContains(s, "[surgft.Tensor of size 2x2]")
  lu.assertStrContains(tostring(sf.tensor{0.5, -1}), "0.5000")
  lu.assertStrContains(tostring(sf.zeros(0, 2)), "no elements")
  lu.assertStrContains(tostring(sf.zeros(2, 2, 2)), "(2,.,.) =")
end

function TestPrint:test_elided()
  local s = tostring(sf.zeros(100, 100))
  lu.assertStrContains(s, "...")
  lu.assertStrContains(s, "[surgft.Tensor of size 100x100]")
  local lines = select(2, s:gsub("\n", ""))
  lu.assertTrue(lines < 12, "an elided 100x100 tensor prints fewer than 12 lines, got " .. lines)
end

TestMemory = {}

function TestMemory:test_released_by_gc_and_close()
  collectgarbage()
  local base = sf.memory()
  do
    local t <close> = sf.zeros(1000)
    lu.assertEquals(sf.memory() - base, 4000)
  end
  lu.assertEquals(sf.memory(), base)
end

function TestMemory:test_use_after_close()
  local t = sf.zeros(3)
  getmetatable(t).__close(t)
  lu.assertErrorMsgContains("tensor is empty: it was released", t.size, t)
end

function TestMemory:test_large_temporaries_are_collected()
  -- 400 temporaries of 4 MB each (1.6 GB in all) without a manual collectgarbage:
  -- the collector is told about tensor memory, so live memory stays bounded.
  collectgarbage()
  local base, peak = sf.memory(), 0
  for _ = 1, 400 do
    local _t = sf.zeros(1000, 1000)
    local live = sf.memory() - base
    if live > peak then peak = live end
  end
  lu.assertTrue(peak < 400e6, string.format("peak live tensor memory %.0f MB", peak / 1e6))
end

function TestMemory:test_views_keep_storage_alive()
  local v
  do
    local t = seq(4)
    v = t:narrow(1, 2, 2)
  end
  collectgarbage()
  collectgarbage()
  lu.assertEquals(v:totable(), {2, 3})
end

os.exit(lu.LuaUnit.run())
