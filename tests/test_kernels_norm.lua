-- placeholder suite: replaced by its own change
local lu = require "luaunit"
local sf = require "surgft"
TestPlaceholder = {}
function TestPlaceholder:test_loads() lu.assertNotNil(sf.zeros) end
os.exit(lu.LuaUnit.run())
