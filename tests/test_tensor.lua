-- Tensor core: constructors, shapes, views sharing storage, copies, element access.
local lu = require "luaunit"
local sf = require "surgft"

TestConstruct = {}
function TestConstruct:test_zeros_ones_full()
  local z = sf.zeros(2, 3)
  lu.assertEquals(z:size(), {2, 3})
  lu.assertEquals(z:totable(), {{0, 0, 0}, {0, 0, 0}})
  lu.assertEquals(sf.ones{2}:totable(), {1, 1})
  lu.assertEquals(sf.full({2, 2}, 7):totable(), {{7, 7}, {7, 7}})
end

function TestConstruct:test_from_table()
  local t = sf.tensor{{1, 2}, {3, 4}}
  lu.assertEquals(t:size(), {2, 2})
  lu.assertEquals(t:get(2, 1), 3)
  lu.assertErrorMsgContains("ragged nesting at [2]", sf.tensor, {{1, 2}, {3}})
  lu.assertErrorMsgContains("element [1][2] is string", sf.tensor, {{1, "x"}})
end

os.exit(lu.LuaUnit.run())
