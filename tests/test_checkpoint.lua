-- Checkpoints: safetensors read/write (round trips bit-exact, hand-built files, header
-- layout, atomic writes, every corrupt-file error, a seeded fuzz loop) and model
-- checkpoints (parameters, buffers, trainable mask, lr scales, optimizer state, RNG state,
-- config, the all-at-once mismatch report), with a Python cross-check when python3 is there.
local lu = require "luaunit"
local sf = require "surgft"
local ok_nn, nn = pcall(require, "surgft.nn.module") -- the module layer may not be there yet

-- ---- helpers ----

local util = require "testutil"
local tmpdir = util.tmpdir()

local function path(name) return tmpdir .. "/" .. name end

local function write(name, bytes) return util.spit(path(name), bytes) end

local slurp = util.slurp

-- names of the files in tmpdir
local function listing()
  local f = assert(io.popen("ls -A '" .. tmpdir .. "'"))
  local out = {}
  for line in f:lines() do out[#out + 1] = line end
  f:close()
  table.sort(out)
  return out
end

local function temps()
  local out = {}
  for _, n in ipairs(listing()) do if n:find("%.tmp") then out[#out + 1] = n end end
  return out
end

-- the float32 bits of every element, row-major: equal strings = bit-identical tensors
local function bits(t)
  local flat = t:contiguous():reshape{-1}
  local parts = {}
  for i = 1, flat:numel() do parts[i] = string.pack("<f", flat:get(i)) end
  return table.concat(parts)
end

local function assertBitEqual(a, b, what)
  lu.assertEquals(a:size(), b:size(), what)
  lu.assertTrue(bits(a) == bits(b), (what or "") .. ": values differ")
end

-- a safetensors file from a header text and a data string
local function st_bytes(header, data) return string.pack("<I8", #header) .. header .. (data or "") end

local function assertLoadError(p, fragment)
  local ok, msg = pcall(sf.load_safetensors, p)
  lu.assertFalse(ok, "expected an error for " .. p)
  msg = tostring(msg)
  lu.assertStrContains(msg, "load_safetensors: ")
  lu.assertStrContains(msg, p)
  lu.assertStrContains(msg, fragment)
end

-- ---- safetensors ----

TestSafetensors = {}

function TestSafetensors:test_round_trip_bit_exact()
  local r = sf.rng(11)
  local big = sf.randn({6, 5, 4}, r)
  local specials = sf.tensor{0, -0.0, 1 / 0, -1 / 0, 0 / 0, 1.4e-45, 3.4028234663852886e38, -1.1754943508222875e-38}
  local t = {
    scalar = sf.full({}, -2.75),
    empty = sf.zeros({0, 3}),
    empty2 = sf.zeros({2, 0, 4}),
    vec = sf.randn({7}, r),
    img = sf.randn({2, 3, 4, 5}, r),
    transposed = big:transpose(1, 3),            -- strided
    narrowed = big:narrow(2, 2, 3),              -- offset + strided
    selected = big:select(3, 4),                 -- stride 4 innermost
    expanded = sf.randn({1, 5}, r):expand{3, 5}, -- stride 0
    specials = specials,
    ["weird name/ü \"q\""] = sf.randn({2}, r),
  }
  lu.assertFalse(t.transposed:is_contiguous())
  local p = path("round.safetensors")
  sf.save_safetensors(p, t)
  local u, meta = sf.load_safetensors(p)
  lu.assertEquals(meta, {})
  local n = 0
  for name, v in pairs(u) do
    n = n + 1
    assertBitEqual(v, t[name], name)
    lu.assertTrue(v:is_contiguous(), name)
  end
  lu.assertEquals(n, 11)
  lu.assertEquals(u.scalar:dim(), 0)
  lu.assertEquals(u.empty2:size(), {2, 0, 4})
  -- NaN and the sign of zero survive
  local s = u.specials
  lu.assertTrue(s:get(5) ~= s:get(5))
  lu.assertEquals(1 / s:get(2), -1 / 0)
  lu.assertEquals(s:get(6), 1.401298464324817e-45)
  -- loaded tensors own their storage
  lu.assertFalse(u.transposed:shares_storage(big))
end

function TestSafetensors:test_large_tensors()
  -- more than one 1 MiB chunk on the strided write path and the converting read path
  local r = sf.rng(13)
  local big = sf.randn({600, 500}, r):t()
  local p = path("large.safetensors")
  sf.save_safetensors(p, {big = big})
  local u = sf.load_safetensors(p)
  lu.assertEquals(u.big:size(), {500, 600})
  lu.assertTrue(sf.equal(u.big, big))
  local n = 600001 -- F16: 1.0, -2.0, 0.5 repeating
  local pattern = string.pack("<I2I2I2", 0x3C00, 0xC000, 0x3800)
  local data = string.rep(pattern, n // 3) .. string.pack("<I2", 0x3C00)
  local q = write("large16.safetensors", st_bytes(string.format('{"h":{"dtype":"F16","shape":[%d],"data_offsets":[0,%d]}}',
                                                                n, 2 * n), data))
  local h = sf.load_safetensors(q).h
  lu.assertEquals(h:numel(), n)
  lu.assertEquals(h:sum(), (n // 3) * -0.5 + 1)
  lu.assertEquals({h:get(1), h:get(2), h:get(3), h:get(n - 1), h:get(n)}, {1, -2, 0.5, 0.5, 1})
end

function TestSafetensors:test_deterministic_bytes()
  local r = sf.rng(3)
  local a, b, c = sf.randn({4, 2}, r), sf.randn({3}, r), sf.randn({2, 2}, r)
  local p1, p2, p3 = path("det1.safetensors"), path("det2.safetensors"), path("det3.safetensors")
  local t1 = {}
  t1.zeta, t1.alpha, t1.mid = a, b, c
  local t2 = {}
  t2.mid, t2.alpha, t2.zeta = c, b, a
  sf.save_safetensors(p1, t1, {z = "1", a = "2", m = "3"})
  sf.save_safetensors(p2, t2, {m = "3", a = "2", z = "1"})
  lu.assertTrue(slurp(p1) == slurp(p2))
  -- and a loaded file written again is the same file
  local u, meta = sf.load_safetensors(p1)
  sf.save_safetensors(p3, u, meta)
  lu.assertTrue(slurp(p1) == slurp(p3))
end

function TestSafetensors:test_header_layout()
  local p = path("layout.safetensors")
  sf.save_safetensors(p, {b = sf.tensor{1, 2}, a = sf.tensor{{-1.5}}, s = sf.full({}, 4)}, {k = "v"})
  local bytes = slurp(p)
  local n = string.unpack("<I8", bytes)
  local expect = '{"__metadata__":{"k":"v"},' ..
                 '"a":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]},' ..
                 '"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},' ..
                 '"s":{"dtype":"F32","shape":[],"data_offsets":[12,16]}}'
  local pad = (8 - #expect % 8) % 8
  lu.assertTrue(pad > 0, "the test needs a header that is padded")
  lu.assertEquals(n % 8, 0)
  lu.assertEquals(n, #expect + pad)
  lu.assertEquals(bytes:sub(9, 8 + n), expect .. string.rep(" ", pad))
  lu.assertEquals(#bytes, 8 + n + 16)
  lu.assertTrue(bytes:sub(9 + n) == string.pack("<ffff", -1.5, 1, 2, 4))
  -- no __metadata__ key at all when there is none
  sf.save_safetensors(p, {x = sf.zeros(1)})
  bytes = slurp(p)
  n = string.unpack("<I8", bytes)
  lu.assertEquals(bytes:sub(9, 8 + n):gsub(" +$", ""), '{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}')
  lu.assertEquals(n % 8, 0)
end

function TestSafetensors:test_hand_built_file()
  -- every dtype we read, keys in no particular order, spaces, an unpadded header,
  -- data not in name order, a gap between tensors
  local data = {}
  local function put(name, dtype, shape, bytes)
    local b = 0
    for _, d in ipairs(data) do b = b + #d.bytes end
    data[#data + 1] = {name = name, dtype = dtype, shape = shape, begin = b, bytes = bytes}
  end
  put("z_f32", "F32", {2, 2}, string.pack("<ffff", 1, -2, 0.5, 3.25))
  put("a_f64", "F64", {3}, string.pack("<ddd", 0.1, -1e300, 2.5))
  put("gap", "U8", {0}, "")
  data[#data].bytes = "\0\0\0" -- three unused bytes after an empty tensor
  put("f16", "F16", {7}, string.pack("<I2I2I2I2I2I2I2", 0x3C00, 0xC000, 0x3800, 0x7BFF, 0x0001, 0x7C00, 0x7E00))
  put("bf16", "BF16", {2}, string.pack("<I2I2", 0x3F80, 0xC040))
  put("i64", "I64", {2}, string.pack("<i8i8", -5, 1 << 40))
  put("i32", "I32", {1, 2}, string.pack("<i4i4", -7, 2147483647))
  put("i16", "I16", {1}, string.pack("<i2", -300))
  put("i8", "I8", {2}, string.pack("<i1i1", -128, 127))
  put("u8", "U8", {3}, string.pack("BBB", 0, 128, 255))
  put("u16", "U16", {1}, string.pack("<I2", 65535))
  put("u32", "U32", {1}, string.pack("<I4", 4000000000))
  put("u64", "U64", {1}, string.pack("<I8", 1 << 33))
  put("bool", "BOOL", {3}, "\0\1\0")
  local parts, blob = {}, {}
  for i = #data, 1, -1 do
    local d = data[i]
    local dsize = ({F32 = 4, F64 = 8, F16 = 2, BF16 = 2, I64 = 8, I32 = 4, I16 = 2, I8 = 1, U8 = 1, U16 = 2, U32 = 4,
                    U64 = 8, BOOL = 1})[d.dtype]
    local numel = 1
    for _, s in ipairs(d.shape) do numel = numel * s end
    local finish = d.begin + numel * dsize
    parts[#parts + 1] = string.format('"%s" : { "shape" : [%s], "data_offsets" : [ %d , %d ], "dtype" : "%s" }', d.name,
                                      table.concat(d.shape, ", "), d.begin, finish, d.dtype)
  end
  for i, d in ipairs(data) do blob[i] = d.bytes end
  local header = ' { "__metadata__" : {"format" : "pt", "note" : "hand \\u00e9"}, ' .. table.concat(parts, ", ") .. "}\n"
  lu.assertNotEquals(#header % 8, 0)
  local p = write("hand.safetensors", st_bytes(header, table.concat(blob)))
  local t, meta = sf.load_safetensors(p)
  lu.assertEquals(meta, {format = "pt", note = "hand é"})
  lu.assertEquals(t.z_f32:totable(), {{1, -2}, {0.5, 3.25}})
  local f64 = t.a_f64:totable()
  lu.assertEquals(f64[1], string.unpack("<f", string.pack("<f", 0.1))) -- rounded to float32
  lu.assertEquals(f64[2], -1 / 0)                                      -- overflows float32
  lu.assertEquals(f64[3], 2.5)
  lu.assertEquals(t.gap:size(), {0})
  local h = t.f16:totable()
  lu.assertEquals({h[1], h[2], h[3], h[4], h[5], h[6]}, {1, -2, 0.5, 65504, 2 ^ -24, 1 / 0})
  lu.assertTrue(h[7] ~= h[7])
  lu.assertEquals(t.bf16:totable(), {1, -3})
  lu.assertEquals(t.i64:totable(), {-5, 2 ^ 40})
  lu.assertEquals(t.i32:totable(), {{-7, 2147483648}}) -- nearest float32
  lu.assertEquals(t.i16:totable(), {-300})
  lu.assertEquals(t.i8:totable(), {-128, 127})
  lu.assertEquals(t.u8:totable(), {0, 128, 255})
  lu.assertEquals(t.u16:totable(), {65535})
  lu.assertEquals(t.u32:totable(), {4000000000})
  lu.assertEquals(t.u64:totable(), {2 ^ 33})
  lu.assertEquals(t.bool:totable(), {0, 1, 0})
end

function TestSafetensors:test_empty_file_of_tensors()
  local p = path("none.safetensors")
  sf.save_safetensors(p, {})
  local bytes = slurp(p)
  lu.assertEquals(#bytes, 16)
  lu.assertEquals(bytes:sub(9), "{}      ")
  local t, meta = sf.load_safetensors(p)
  lu.assertEquals(t, {})
  lu.assertEquals(meta, {})
end

function TestSafetensors:test_atomic_write()
  local p = path("atomic.safetensors")
  local r = sf.rng(5)
  local old = {w = sf.randn({3, 3}, r)}
  sf.save_safetensors(p, old)
  lu.assertEquals(temps(), {})
  local before = slurp(p)
  -- an error in the middle of the write: the old file stays, no temporary is left
  local ck = sf.checkpoint
  local count = 0
  ck._after_tensor_written = function(name)
    count = count + 1
    if count == 2 then error("disk full (simulated) after " .. name, 0) end
  end
  local ok, msg = pcall(sf.save_safetensors, p, {a = sf.randn({100}, r), b = sf.randn({100}, r), c = sf.randn({2}, r)})
  ck._after_tensor_written = nil
  lu.assertFalse(ok)
  lu.assertStrContains(msg, "disk full (simulated) after b")
  lu.assertEquals(count, 2)
  lu.assertTrue(slurp(p) == before)
  lu.assertEquals(temps(), {})
  -- the rename fails (the target is a directory): the temporary is removed
  local d = path("adir")
  assert(os.execute("mkdir -p '" .. d .. "'"))
  lu.assertErrorMsgContains("save_safetensors: cannot rename", sf.save_safetensors, d, old)
  lu.assertEquals(temps(), {})
  -- the temporary cannot be created
  lu.assertErrorMsgContains("save_safetensors: cannot create '" .. tmpdir .. "/no/such/dir/x.safetensors.tmp",
                            sf.save_safetensors, tmpdir .. "/no/such/dir/x.safetensors", old)
  -- a good write replaces the file
  sf.save_safetensors(p, {v = sf.ones(2)})
  lu.assertEquals(sf.load_safetensors(p).v:totable(), {1, 1})
  lu.assertEquals(temps(), {})
end

function TestSafetensors:test_argument_errors()
  local p = path("args.safetensors")
  lu.assertErrorMsgContains("bad argument #1 to 'save_safetensors' (path expected, got number)", sf.save_safetensors, 1, {})
  lu.assertErrorMsgContains("bad argument #2 to 'save_safetensors' (table of name -> tensor expected, got nil)",
                            sf.save_safetensors, p)
  lu.assertErrorMsgContains("tensor names must be strings, got number key 1", sf.save_safetensors, p, {sf.zeros(1)})
  lu.assertErrorMsgContains("entry 'x' is a number, expected a tensor", sf.save_safetensors, p, {x = 1})
  lu.assertErrorMsgContains("'__metadata__' is reserved", sf.save_safetensors, p, {__metadata__ = sf.zeros(1)})
  lu.assertErrorMsgContains("bad argument #3 to 'save_safetensors' (metadata maps strings to strings; entry n is a number)",
                            sf.save_safetensors, p, {x = sf.zeros(1)}, {n = 1})
  lu.assertErrorMsgContains("bad argument #1 to 'load_safetensors' (path expected, got nil)", sf.load_safetensors)
  lu.assertErrorMsgContains("load_safetensors: cannot open '" .. path("missing.safetensors") .. "'", sf.load_safetensors,
                            path("missing.safetensors"))
  lu.assertEquals(temps(), {})
  lu.assertFalse(io.open(p, "rb") ~= nil)
end

local function entry(name, dtype, shape, b, e)
  return string.format('"%s":{"dtype":"%s","shape":[%s],"data_offsets":[%s,%s]}', name, dtype, shape, b, e)
end

function TestSafetensors:test_corrupt_files()
  local good = entry("a", "F32", "2,2", 0, 16)
  local data16 = string.pack("<ffff", 1, 2, 3, 4)
  -- sanity: the good file loads
  lu.assertEquals(sf.load_safetensors(write("good.safetensors", st_bytes("{" .. good .. "}", data16))).a:totable(),
                  {{1, 2}, {3, 4}})
  local cases = {
    {"short", "abc", "is truncated: 3 bytes, shorter than the 8-byte header length"},
    {"empty", "", "is truncated: 0 bytes"},
    {"hlen", string.pack("<I8", 1000) .. "{}", "header length 1000 is larger than the rest of the file (2 bytes)"},
    {"hlen_huge", string.pack("<I8", -1) .. "{}", "header length 18446744073709551615 is larger than the rest"},
    {"json", st_bytes('{"a":{"dtype":"F32",', data16), "has a bad JSON header: "},
    {"json2", st_bytes('{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}}', data16), "has a bad JSON header: "},
    {"nan", st_bytes('{"a":{"dtype":"F32","shape":[NaN],"data_offsets":[0,16]}}', data16), "has a bad JSON header: "},
    {"array", st_bytes("[1,2]", ""), "has a bad JSON header: it does not start with '{'"},
    {"notobj", st_bytes('{"a":3}', ""), "has a bad header: entry 'a' is not an object"},
    {"truncated", st_bytes("{" .. good .. "}", data16:sub(1, 10)),
     "is truncated or has bad offsets: tensor 'a' has data_offsets [0, 16] but the data section has 10 bytes"},
    {"beyond", st_bytes("{" .. entry("a", "F32", "2", 8, 16) .. "}", data16:sub(1, 12)),
     "data_offsets [8, 16] but the data section has 12 bytes"},
    {"reversed", st_bytes("{" .. entry("a", "F32", "0", 8, 4) .. "}", data16), "bad data_offsets [8, 4] for tensor 'a'"},
    {"negative", st_bytes("{" .. entry("a", "F32", "1", -4, 0) .. "}", data16), "bad data_offsets [-4, 0]"},
    {"overlap", st_bytes("{" .. entry("b", "F32", "2", 8, 16) .. "," .. entry("a", "F32", "3", 0, 12) .. "}", data16),
     "has overlapping tensors: 'a' [0, 12] and 'b' [8, 16]"},
    {"overlap_inside", st_bytes("{" .. entry("a", "F32", "4", 0, 16) .. "," .. entry("b", "F32", "1", 4, 8) .. "}",
                                data16), "has overlapping tensors: 'a' [0, 16] and 'b' [4, 8]"},
    {"dtype", st_bytes("{" .. entry("a", "Q4", "2,2", 0, 16) .. "}", data16),
     "has tensor 'a' of unknown or unsupported dtype 'Q4' (supported: F64, F32, F16, BF16"},
    {"dtype_f8", st_bytes("{" .. entry("a", "F8_E4M3", "16", 0, 16) .. "}", data16), "unsupported dtype 'F8_E4M3'"},
    {"nodtype", st_bytes('{"a":{"shape":[4],"data_offsets":[0,16]}}', data16), "tensor 'a' has no dtype string"},
    {"size", st_bytes("{" .. entry("a", "F32", "2,2", 0, 12) .. "}", data16),
     "has a size mismatch: tensor 'a' of dtype F32 and shape [2,2] needs 16 bytes, data_offsets [0, 12] hold 12"},
    {"size16", st_bytes("{" .. entry("a", "F16", "3", 0, 8) .. "}", data16),
     "tensor 'a' of dtype F16 and shape [3] needs 6 bytes, data_offsets [0, 8] hold 8"},
    {"shape_neg", st_bytes("{" .. entry("a", "F32", "-1", 0, 4) .. "}", data16), "shape entry 1 = -1"},
    {"shape_frac", st_bytes("{" .. entry("a", "F32", "1.5", 0, 4) .. "}", data16), "shape entry 1 = 1.5"},
    {"shape_str", st_bytes('{"a":{"dtype":"F32","shape":"4","data_offsets":[0,16]}}', data16), "has no shape array"},
    {"shape_dims", st_bytes("{" .. entry("a", "F32", "1,1,1,1,1,1,1,1,1", 0, 4) .. "}", data16), "with 9 dimensions"},
    {"shape_huge", st_bytes("{" .. entry("a", "F32", "4294967296,4294967296", 0, 4) .. "}", data16),
     "has tensor 'a' with an impossible shape"},
    {"offsets", st_bytes('{"a":{"dtype":"F32","shape":[4],"data_offsets":[0]}}', data16),
     "needs data_offsets [begin, end] as two integers"},
    {"meta", st_bytes('{"__metadata__":{"k":1}}', ""), "__metadata__ must map strings to strings (entry 'k' is a number)"},
    {"meta_null", st_bytes('{"__metadata__":{"k":null}}', ""), "(entry 'k' is a null)"},
    {"meta_obj", st_bytes('{"__metadata__":"x"}', ""), "__metadata__ is not an object"},
  }
  for _, c in ipairs(cases) do assertLoadError(write("bad_" .. c[1] .. ".safetensors", c[2]), c[3]) end
  -- a directory is not a file
  local ok, msg = pcall(sf.load_safetensors, tmpdir)
  lu.assertFalse(ok)
  lu.assertStrContains(msg, "load_safetensors: ")
end

function TestSafetensors:test_fuzz()
  -- mutated and truncated valid files: a clean error or a result, never a crash
  local r = sf.rng(21)
  local p = path("fuzz-src.safetensors")
  sf.save_safetensors(p, {a = sf.randn({3, 4}, r), b = sf.randn({5}, r), s = sf.full({}, 1)}, {k = "v"})
  local base = slurp(p)
  local hand = st_bytes('{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"i":{"dtype":"I64","shape":[1],' ..
                        '"data_offsets":[4,12]}}', string.rep("\1", 12))
  local loaded, failed = 0, 0
  for i = 1, 400 do
    local src = i % 2 == 0 and base or hand
    local bytes = src
    local mode = r:random(3)
    if mode == 1 then -- truncate
      bytes = src:sub(1, r:random(#src) - 1)
    else              -- flip a few bytes, mostly in the header
      local b = {src:byte(1, -1)}
      for _ = 1, r:random(4) do
        local k = mode == 2 and r:random(math.min(#b, 120)) or r:random(#b)
        b[k] = r:random(256) - 1
      end
      bytes = string.char(table.unpack(b))
    end
    local fp = write("fuzz.safetensors", bytes)
    local ok, msg = pcall(sf.load_safetensors, fp)
    if ok then loaded = loaded + 1 else
      failed = failed + 1
      lu.assertStrContains(tostring(msg), "load_safetensors: ")
    end
  end
  lu.assertTrue(loaded > 0 and failed > 0, string.format("loaded %d, failed %d", loaded, failed))
end

-- files checked by a reader other than ours: safetensors/torch when installed, else
-- Python's own json and struct modules
function TestSafetensors:test_python_cross_check()
  local py = "/usr/bin/python3"
  local f = io.open(py, "rb")
  lu.skipIf(f == nil, "no " .. py .. ": cross-check skipped")
  f:close()
  local r = sf.rng(8)
  local t = {w = sf.randn({3, 4}, r):t(), b = sf.randn({5}, r), s = sf.full({}, 1 / 3), e = sf.zeros({0})}
  local p = path("py.safetensors")
  sf.save_safetensors(p, t, {who = "surgft"})
  local script = path("check.py")
  write("check.py", [[
import json, struct, sys
path, out = sys.argv[1], sys.argv[2]
lines = []
try:
    from safetensors.torch import load_file  # the reference reader, when installed
    for name, v in sorted(load_file(path).items()):
        lines.append(name + " " + " ".join(repr(float(x)) for x in v.flatten().tolist()))
    lines.insert(0, "reader safetensors")
except ImportError:
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    assert n % 8 == 0, "header not padded"
    h = json.loads(data[8:8 + n])
    meta = h.pop("__metadata__", {})
    assert meta == {"who": "surgft"}, meta
    for name in sorted(h):
        e = h[name]
        b, f = e["data_offsets"]
        assert e["dtype"] == "F32"
        count = 1
        for s in e["shape"]:
            count *= s
        assert f - b == 4 * count
        vals = struct.unpack("<%df" % count, data[8 + n + b:8 + n + f])
        lines.append(name + " " + " ".join(repr(x) for x in vals))
    lines.insert(0, "reader json+struct")
# and a file written by Python for us to read (spaces, insertion order, F64, no padding)
vals = [0.1, -2.5, 1e-40]
hdr = json.dumps({"z": {"dtype": "F64", "shape": [3], "data_offsets": [0, 24]}, "__metadata__": {"by": "python"}})
with open(out, "wb") as fp:
    fp.write(struct.pack("<Q", len(hdr)) + hdr.encode() + struct.pack("<3d", *vals))
print("\n".join(lines))
]])
  local out = path("from_python.safetensors")
  local pipe = assert(io.popen(string.format("'%s' '%s' '%s' '%s' 2>&1", py, script, p, out)))
  local text = pipe:read("a")
  local okrun = pipe:close()
  lu.assertTrue(okrun, "python failed: " .. text)
  local lines = {}
  for line in text:gmatch("[^\n]+") do lines[#lines + 1] = line end
  print("# python cross-check: " .. lines[1] .. (lines[1]:find("json") and " (safetensors/torch not installed)" or ""))
  local names = {"b", "e", "s", "w"}
  lu.assertEquals(#lines, 1 + #names)
  for i, name in ipairs(names) do
    local fields = {}
    for x in lines[i + 1]:gmatch("%S+") do fields[#fields + 1] = x end
    lu.assertEquals(fields[1], name)
    local flat = t[name]:contiguous():reshape{-1}
    lu.assertEquals(#fields - 1, flat:numel(), name)
    for k = 1, flat:numel() do lu.assertEquals(tonumber(fields[k + 1]), flat:get(k), name .. "[" .. k .. "]") end
  end
  local z, meta = sf.load_safetensors(out)
  lu.assertEquals(meta, {by = "python"})
  local zt = z.z:totable()
  lu.assertEquals(zt[1], string.unpack("<f", string.pack("<f", 0.1)))
  lu.assertEquals(zt[2], -2.5)
  lu.assertEquals(zt[3], string.unpack("<f", string.pack("<f", 1e-40))) -- a float32 subnormal
end

-- ---- model checkpoints ----

-- stand-in modules (the real layers are written elsewhere)
if not ok_nn then nn = {class = function() return setmetatable({}, {__call = function() end}) end} end
local Tiny = nn.class("Tiny")
function Tiny:init(seed, rows)
  self:param("weight", sf.randn({rows or 3, 2}, sf.rng(seed or 0)))
  self:buffer("running_mean", sf.zeros(3))
end
function Tiny:forward(x) return x end

local Pair = nn.class("Pair")
function Pair:init(seed)
  self:add("a", Tiny(seed))
  self:add("b", Tiny((seed or 0) + 100))
end
function Pair:forward(x) return x end

local function pair(seed)
  local m = Pair(seed)
  m:build()
  -- non-trivial buffers
  local r = sf.rng(seed + 1000)
  m:child("a").running_mean:copy(sf.randn({3}, r))
  m:child("b").running_mean:copy(sf.randn({3}, r))
  return m
end

local function assertSameState(m1, m2)
  local s1, s2 = m1:state(), m2:state()
  local n = 0
  for name, v in pairs(s1) do
    n = n + 1
    lu.assertNotNil(s2[name], name)
    assertBitEqual(s2[name], v, name)
  end
  for name in pairs(s2) do lu.assertNotNil(s1[name], name) end
  return n
end

TestCheckpoint = {}

function TestCheckpoint:test_exposed()
  lu.assertIsFunction(sf.save_safetensors)
  lu.assertIsFunction(sf.load_safetensors)
  lu.assertIsFunction(sf.checkpoint.save)
  lu.assertIsFunction(sf.checkpoint.load)
end

function TestCheckpoint:test_model_round_trip()
  lu.skipIf(not ok_nn, "surgft.nn.module not available")
  local m1, m2 = pair(1), pair(2)
  m1:parameter("a.weight").trainable = false
  m1:parameter("b.weight").lr_scale = 1 / 3
  lu.assertNotEquals(bits(m1:child("a").weight), bits(m2:child("a").weight))
  local p = path("model.safetensors")
  sf.checkpoint.save(p, {model = m1})
  lu.assertEquals(temps(), {})
  -- the file is a plain safetensors state dict with our metadata
  local t, meta = sf.load_safetensors(p)
  local names = {}
  for k in pairs(t) do names[#names + 1] = k end
  table.sort(names)
  lu.assertEquals(names, {"a.running_mean", "a.weight", "b.running_mean", "b.weight"})
  lu.assertEquals(meta["surgft.format"], "checkpoint")
  lu.assertEquals(meta["surgft.version"], "1")
  lu.assertEquals(meta["surgft.model"], "Pair")
  lu.assertEquals(meta["surgft.trainable"], '{"a.weight":false,"b.weight":true}')
  lu.assertEquals(meta["surgft.lr_scale"], '{"a.weight":1,"b.weight":0.33333333333333331}')
  -- load into the other model: values copied into its existing tensors
  local w_view = m2:child("a").weight
  local flat = m2:flat()
  local report = sf.checkpoint.load(p, {model = m2})
  lu.assertEquals(assertSameState(m1, m2), 4)
  lu.assertTrue(m2:child("a").weight == w_view)
  lu.assertTrue(w_view:shares_storage(flat))
  assertBitEqual(w_view, m1:child("a").weight, "view")
  lu.assertFalse(m2:parameter("a.weight").trainable)
  lu.assertTrue(m2:parameter("b.weight").trainable)
  lu.assertEquals(m2:parameter("b.weight").lr_scale, 1 / 3) -- exactly
  lu.assertEquals(m2:parameter("a.weight").lr_scale, 1)
  lu.assertEquals(report.loaded, {"a.running_mean", "a.weight", "b.running_mean", "b.weight"})
  lu.assertEquals(report.missing, {})
  lu.assertEquals(report.unexpected, {})
  lu.assertEquals(report.mismatched, {})
  lu.assertNil(report.message)
  lu.assertNil(report.config)
end

function TestCheckpoint:test_config_round_trip()
  lu.skipIf(not ok_nn, "surgft.nn.module not available")
  local m = pair(3)
  local cfg = {name = "camelyon", lrs = {1e-2, 1e-3, 1 / 3}, epochs = 15, bn = {mode = "eval", tent = false},
               empty = {}, note = "quote \" and \\ and ü", big = 2 ^ 60, tiny = 5e-324, neg = -0.5}
  local p = path("config.safetensors")
  sf.checkpoint.save(p, {model = m, config = cfg})
  local report = sf.checkpoint.load(p, {model = pair(4)})
  lu.assertEquals(report.config, cfg)
  lu.assertEquals(report.config.lrs[3], 1 / 3)
  lu.assertEquals(math.type(report.config.epochs), "integer")
  lu.assertEquals(report.metadata["surgft.config"], sf.checkpoint._encode_json(cfg, "config"))
  -- what JSON cannot hold is refused, naming where it is
  local function fails(c, fragment)
    lu.assertErrorMsgContains(fragment, sf.checkpoint.save, path("bad.safetensors"), {model = m, config = c})
  end
  fails({f = print}, "checkpoint.save: config.f is a function")
  fails({x = {1, 2, y = 3}}, "config.x mixes array entries and named keys")
  fails({x = {[1] = 1, [3] = 3}}, "config.x has key 3")
  fails({lr = 0 / 0}, "config.lr is " .. tostring(0 / 0))
  fails({lr = 1 / 0}, "config.lr is inf")
  local cyc = {}
  cyc.self = cyc
  fails({c = cyc}, "config.c.self refers to itself")
  lu.assertEquals(temps(), {})
  lu.assertFalse(io.open(path("bad.safetensors"), "rb") ~= nil)
end

function TestCheckpoint:test_rng_round_trip()
  lu.skipIf(not ok_nn, "surgft.nn.module not available")
  local m = pair(5)
  local r = sf.rng(7)
  for _ = 1, 5 do r:uniform() end
  local p = path("rng.safetensors")
  sf.checkpoint.save(p, {model = m, rng = r})
  local _, meta = sf.load_safetensors(p)
  lu.assertEquals(#meta["surgft.rng"], 64)
  local expect = {}
  for i = 1, 10 do expect[i] = r:uniform() end
  local r2 = sf.rng(99)
  sf.checkpoint.load(p, {model = pair(6), rng = r2})
  for i = 1, 10 do lu.assertEquals(r2:uniform(), expect[i]) end
  -- an rng asked for but not in the file
  local p2 = path("norng.safetensors")
  sf.checkpoint.save(p2, {model = m})
  lu.assertErrorMsgContains("rng: the file has no generator state", sf.checkpoint.load, p2, {model = pair(6), rng = r2})
end

local ok_optim, optim = pcall(require, "surgft.optim")

-- fill every gradient with seeded values
local function fake_grads(m, seed)
  local _, g = m:flat()
  g:copy(sf.randn({g:numel()}, sf.rng(seed)))
end

function TestCheckpoint:test_optimizer_round_trip()
  lu.skipIf(not ok_nn, "surgft.nn.module not available")
  lu.skipIf(not ok_optim, "surgft.optim not available: " .. tostring(optim))
  for _, kind in ipairs{"adam", "sgd"} do
    local m1 = pair(10)
    m1:parameter("a.weight").trainable = false -- no optimizer state for it
    local o1 = optim[kind](m1, {lr = 0.1, momentum = kind == "sgd" and 0.9 or nil, weight_decay = 1e-4})
    for s = 1, 3 do
      fake_grads(m1, s)
      o1:step()
    end
    lu.assertEquals(o1:state_names(), {"b.weight"})
    local p = path("opt_" .. kind .. ".safetensors")
    sf.checkpoint.save(p, {model = m1, optimizer = o1})
    local t = sf.load_safetensors(p)
    lu.assertNotNil(t[kind == "adam" and "optim.b.weight.m" or "optim.b.weight.buf"])
    local m2 = pair(11)
    local o2 = optim[kind](m2, {lr = 0.1, momentum = kind == "sgd" and 0.9 or nil, weight_decay = 1e-4})
    local report = sf.checkpoint.load(p, {model = m2, optimizer = o2})
    lu.assertNil(report.message)
    lu.assertEquals(o2:state_names(), {"b.weight"})
    local st1, st2 = o1.state["b.weight"], o2.state["b.weight"]
    lu.assertEquals(st2.step, 3)
    lu.assertEquals(math.type(st2.step), "integer")
    for _, k in ipairs{"m", "v", "buf"} do
      if st1[k] then assertBitEqual(st2[k], st1[k], kind .. " " .. k) end
    end
    -- the next step is identical in both
    fake_grads(m1, 4)
    fake_grads(m2, 4)
    o1:step()
    o2:step()
    assertSameState(m1, m2)
  end
end

function TestCheckpoint:test_optimizer_problems()
  lu.skipIf(not ok_nn, "surgft.nn.module not available")
  lu.skipIf(not ok_optim, "surgft.optim not available: " .. tostring(optim))
  local m1 = pair(12)
  local o1 = optim.adam(m1)
  fake_grads(m1, 1)
  o1:step()
  local p = path("opt_adam.safetensors")
  sf.checkpoint.save(p, {model = m1, optimizer = o1})
  -- a different optimizer kind
  local m2 = pair(13)
  local before = bits(m2:child("a").weight)
  lu.assertErrorMsgContains("optimizer: the file holds 'adam' state, the optimizer is 'sgd'", sf.checkpoint.load, p,
                            {model = m2, optimizer = optim.sgd(m2)})
  lu.assertEquals(bits(m2:child("a").weight), before) -- nothing loaded under strict
  -- no optimizer state in the file
  local p2 = path("noopt.safetensors")
  sf.checkpoint.save(p2, {model = m1})
  lu.assertErrorMsgContains("optimizer: the file has no optimizer state", sf.checkpoint.load, p2,
                            {model = m2, optimizer = optim.adam(m2)})
  -- optimizer state in the file but none asked for: ignored, not unexpected
  local report = sf.checkpoint.load(p, {model = m2})
  lu.assertEquals(report.unexpected, {})
  -- a model tensor whose name would collide with optimizer state
  local Odd = nn.class("Odd")
  function Odd:init() self:add("optim", Tiny(0)) end
  function Odd:forward(x) return x end
  local odd = Odd()
  lu.assertErrorMsgContains("checkpoint.save: model tensors optim.running_mean, optim.weight start with 'optim.'", sf.checkpoint.save,
                            path("odd.safetensors"), {model = odd, optimizer = optim.adam(odd)})
end

-- a model like Pair with a child 'c' instead of 'b' and a 'd' of a given height
local Other = nn.class("Other")
function Other:init(rows_d, with_b)
  self:add("a", Tiny(50))
  self:add(with_b and "b" or "c", Tiny(51))
  self:add("d", Tiny(52, rows_d))
end
function Other:forward(x) return x end

function TestCheckpoint:test_mismatch_report()
  lu.skipIf(not ok_nn, "surgft.nn.module not available")
  local src = Other(3, true)
  src:build()
  src:child("a").running_mean:fill(7)
  local p = path("mismatch.safetensors")
  sf.checkpoint.save(p, {model = src})
  local dst = Other(4, false) -- 'c' where the file has 'b'; d.weight is [4,2], the file's [3,2]
  dst:build()
  local before = {}
  for name, v in pairs(dst:state()) do before[name] = bits(v) end
  local expect = "checkpoint.load: '" .. p .. "' does not match the model: " ..
                 "missing: c.running_mean, c.weight; unexpected: b.running_mean, b.weight; " ..
                 "shape mismatch: d.weight [3,2] in file vs [4,2] in model"
  local ok, msg = pcall(sf.checkpoint.load, p, {model = dst})
  lu.assertFalse(ok)
  lu.assertEquals(msg, expect)
  for name, v in pairs(dst:state()) do lu.assertEquals(bits(v), before[name], name .. " changed") end
  -- strict = false: what matches is loaded, the report lists the rest
  local report = sf.checkpoint.load(p, {model = dst, strict = false})
  lu.assertEquals(report.message, expect)
  lu.assertEquals(report.loaded, {"a.running_mean", "a.weight", "d.running_mean"})
  lu.assertEquals(report.missing, {"c.running_mean", "c.weight"})
  lu.assertEquals(report.unexpected, {"b.running_mean", "b.weight"})
  lu.assertEquals(report.mismatched, {{name = "d.weight", file = {3, 2}, model = {4, 2}}})
  lu.assertEquals(dst:child("a").running_mean:totable(), {7, 7, 7})
  assertBitEqual(dst:child("a").weight, src:child("a").weight, "a.weight")
  lu.assertEquals(bits(dst:child("d").weight), before["d.weight"])
  lu.assertEquals(bits(dst:child("c").weight), before["c.weight"])
end

function TestCheckpoint:test_plain_state_dict()
  lu.skipIf(not ok_nn, "surgft.nn.module not available")
  -- a file without surgft metadata (as exported from PyTorch) loads as weights only
  local m1, m2 = pair(20), pair(21)
  m2:parameter("a.weight").trainable = false
  local p = path("plain.safetensors")
  sf.save_safetensors(p, m1:state())
  local report = sf.checkpoint.load(p, {model = m2})
  assertSameState(m1, m2)
  lu.assertFalse(m2:parameter("a.weight").trainable) -- untouched: the file says nothing
  lu.assertEquals(report.metadata, {})
end

function TestCheckpoint:test_option_errors()
  lu.skipIf(not ok_nn, "surgft.nn.module not available")
  local m = pair(30)
  local p = path("opts.safetensors")
  lu.assertErrorMsgContains("bad argument #2 to 'checkpoint.save' (unknown option 'modle'; options: config, model, optimizer, rng)",
                            sf.checkpoint.save, p, {modle = m})
  lu.assertErrorMsgContains("option 'model' must be a module, got nil", sf.checkpoint.save, p, {})
  lu.assertErrorMsgContains("bad argument #2 to 'checkpoint.save' (options table expected, got nil)", sf.checkpoint.save, p)
  lu.assertErrorMsgContains("option 'rng' must be a generator", sf.checkpoint.save, p, {model = m, rng = 3})
  lu.assertErrorMsgContains("option 'optimizer' must be an optimizer", sf.checkpoint.save, p, {model = m, optimizer = {}})
  lu.assertErrorMsgContains("unknown option 'strcit'", sf.checkpoint.load, p, {model = m, strcit = false})
  lu.assertErrorMsgContains("load_safetensors: cannot open '" .. p .. "'", sf.checkpoint.load, p, {model = m})
  -- bad surgft metadata
  local bad = path("badmeta.safetensors")
  sf.save_safetensors(bad, m:state(), {["surgft.trainable"] = "{not json", ["surgft.format"] = "checkpoint"})
  lu.assertErrorMsgContains("checkpoint.load: file '" .. bad .. "' has a bad 'surgft.trainable' entry", sf.checkpoint.load,
                            bad, {model = m})
  sf.save_safetensors(bad, m:state(), {["surgft.rng"] = "xyz"})
  lu.assertErrorMsgContains("has a bad 'surgft.rng' entry (expected 64 hex digits)", sf.checkpoint.load, bad,
                            {model = m, rng = sf.rng(0)})
end

local rc = lu.LuaUnit.run()
os.execute("rm -rf '" .. tmpdir .. "'")
os.exit(rc)
