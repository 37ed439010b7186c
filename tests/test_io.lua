-- File formats: IDX (plain and gzip), CIFAR-10 batches, .npy, PNG and CSV. Every test
-- file is crafted here, byte by byte, into a temporary directory; bad inputs check the
-- error contract (function, file, problem); a seeded fuzz loop mutates valid files and
-- requires a clean error or a result, never a crash (run it under the ASan build).
local lu = require "luaunit"
local sf = require "surgft"

local FMNIST = os.getenv("SURGFT_FMNIST") or "/usr/share/datasets/fashion-mnist"

-- ---- helpers ----

local util = require "testutil"
local tmpdir = util.tmpdir()

local function path(name) return tmpdir .. "/" .. name end

local function write(name, bytes) return util.spit(path(name), bytes) end

local slurp = util.slurp

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() end
  return f ~= nil
end

local function gzip(bytes)
  local tmp = path("gzip-in")
  write("gzip-in", bytes)
  local f = assert(io.popen("gzip -c -n '" .. tmp .. "'", "r"))
  local z = f:read("a")
  f:close()
  assert(#z > 0 and z:byte(1) == 0x1f, "gzip failed")
  return z
end

-- nested table of floats -> the same with x * scale rounded to integers
local function scaled(t, scale)
  if type(t) == "number" then return math.floor(t * scale + 0.5) end
  local r = {}
  for i, v in ipairs(t) do r[i] = scaled(v, scale) end
  return r
end

-- an error message must start with the function's name and name the file
local function assertFileError(fn, p, fragment, ...)
  local ok, msg = pcall(fn, p, ...)
  lu.assertFalse(ok, "expected an error for " .. p)
  lu.assertIsString(msg)
  lu.assertStrContains(msg, p)
  lu.assertStrContains(msg, fragment)
  return msg
end

local function idx(type_byte, dims, payload)
  local h = string.char(0, 0, type_byte, #dims)
  for _, d in ipairs(dims) do h = h .. string.pack(">I4", d) end
  return h .. payload
end

local function bytes(list)
  local t = {}
  for i, v in ipairs(list) do t[i] = string.char(v) end
  return table.concat(t)
end

local function npy(descr, shape, payload, fortran, version)
  local s = #shape == 1 and ("(" .. shape[1] .. ",)") or ("(" .. table.concat(shape, ", ") .. ")")
  local dict = string.format("{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", descr,
                             fortran and "True" or "False", s)
  version = version or 1
  local pre = version == 1 and 10 or 12
  local total = pre + #dict + 1
  dict = dict .. string.rep(" ", (64 - total % 64) % 64) .. "\n"
  local len = version == 1 and string.pack("<I2", #dict) or string.pack("<I4", #dict)
  return "\x93NUMPY" .. string.char(version, 0) .. len .. dict .. payload
end

-- a minimal PNG encoder (stored deflate blocks) to craft every colour type and depth
local crc_table = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do c = (c & 1 == 1) and (0xEDB88320 ~ (c >> 1)) or (c >> 1) end
  crc_table[i] = c
end
local function crc32(s)
  local c = 0xFFFFFFFF
  for i = 1, #s do c = crc_table[(c ~ s:byte(i)) & 0xFF] ~ (c >> 8) end
  return c ~ 0xFFFFFFFF
end
local function zlib_stored(data)
  local a, b = 1, 0
  for i = 1, #data do
    a = (a + data:byte(i)) % 65521
    b = (b + a) % 65521
  end
  local out, pos = {"\x78\x01"}, 1
  repeat
    local len = math.min(65535, #data - pos + 1)
    local final = pos + len > #data and 1 or 0
    out[#out + 1] = string.pack("<I1I2I2", final, len, len ~ 0xFFFF) .. data:sub(pos, pos + len - 1)
    pos = pos + len
  until pos > #data
  out[#out + 1] = string.pack(">I4", (b << 16) | a)
  return table.concat(out)
end
local function chunk(kind, data) return string.pack(">I4", #data) .. kind .. data .. string.pack(">I4", crc32(kind .. data)) end
-- rows: one byte string per scanline (without the filter byte); extra: chunks before IDAT
local function png(w, h, depth, ctype, rows, extra, idat)
  local raw = {}
  for i, r in ipairs(rows) do raw[i] = "\0" .. r end
  return "\137PNG\r\n\26\n" .. chunk("IHDR", string.pack(">I4I4BBBBB", w, h, depth, ctype, 0, 0, 0)) ..
             (extra or "") .. chunk("IDAT", idat or zlib_stored(table.concat(raw))) .. chunk("IEND", "")
end

local function mem_settled()
  collectgarbage()
  collectgarbage()
  return sf.memory()
end

-- ---- IDX ----

TestIdx = {}

function TestIdx:test_ubyte_plain_and_gzip()
  local payload = bytes{0, 1, 2, 3, 4, 5, 250, 251, 252, 253, 254, 255}
  local raw = idx(0x08, {2, 2, 3}, payload)
  for _, t in ipairs{sf.read_idx(write("u8.idx", raw)), sf.read_idx(write("u8.idx.gz", gzip(raw))),
                     sf.read_idx(write("u8-gz-no-suffix", gzip(raw)))} do
    lu.assertEquals(t:shape(), {2, 2, 3})
    lu.assertEquals(t:totable(), {{{0, 1, 2}, {3, 4, 5}}, {{250, 251, 252}, {253, 254, 255}}})
  end
  local labels = sf.read_idx(write("labels.idx", idx(0x08, {4}, bytes{9, 0, 3, 7})))
  lu.assertEquals(labels:totable(), {9, 0, 3, 7})
end

function TestIdx:test_int32_and_float()
  local t = sf.read_idx(write("i32.idx", idx(0x0C, {3}, string.pack(">i4>i4>i4", -5, 0, 123456))))
  lu.assertEquals(t:totable(), {-5, 0, 123456})
  local f = sf.read_idx(write("f32.idx.gz", gzip(idx(0x0D, {2, 1}, string.pack(">f>f", 1.5, -0.25)))))
  lu.assertEquals(f:totable(), {{1.5}, {-0.25}})
  lu.assertEquals(sf.read_idx(write("empty.idx", idx(0x08, {0, 28}, ""))):shape(), {0, 28})
end

function TestIdx:test_errors()
  local missing = path("nope.gz")
  lu.assertErrorMsgContains("read_idx: cannot open '" .. missing .. "': No such file or directory", sf.read_idx,
                            missing)
  assertFileError(sf.read_idx, write("magic.idx", "\1\2\8\1" .. string.pack(">I4", 1) .. "x"),
                  "is not an IDX file (magic 01 02 08 01")
  assertFileError(sf.read_idx, write("type.idx", idx(0x09, {1}, "x")), "IDX element type 0x09")
  assertFileError(sf.read_idx, write("ndim.idx", idx(0x08, {}, "")), "declares 0 dimensions")
  assertFileError(sf.read_idx, write("short.idx", "\0\0"), "too short for an IDX header")
  assertFileError(sf.read_idx, write("hdr.idx", "\0\0\8\3\0\0\0\2"), "expected 16 bytes of header, got 8")
  -- a short read, plain (caught from the file size) and gzip (caught while reading)
  local short = idx(0x08, {2, 2, 3}, bytes{1, 2, 3, 4, 5})
  assertFileError(sf.read_idx, write("trunc.idx", short),
                  "is truncated: expected 12 bytes of data for shape [2,2,3], got 5")
  assertFileError(sf.read_idx, write("trunc.idx.gz", gzip(short)),
                  "is truncated: expected 12 bytes of data for shape [2,2,3], got 5")
  local full = gzip(idx(0x08, {2, 2, 3}, string.rep("\7", 12)))
  assertFileError(sf.read_idx, write("cut.idx.gz", full:sub(1, #full - 10)), "read_idx: file")
  assertFileError(sf.read_idx, write("extra.idx", idx(0x08, {2}, "abc")), "extra bytes after the 2 bytes of data")
  -- a corrupt header cannot make it allocate what the file cannot hold
  assertFileError(sf.read_idx, write("huge.idx.gz", gzip(idx(0x08, {1000000, 1000000}, "x"))),
                  "needs 1000000000000 bytes of data")
  assertFileError(sf.read_idx, write("huge.idx", idx(0x08, {60000, 28, 28}, "x")),
                  "expected 47040000 bytes of data for shape [60000,28,28], got 1")
  for _, reader in ipairs{sf.read_idx, sf.read_cifar, sf.read_npy, sf.read_csv} do
    lu.assertErrorMsgContains("cannot read '" .. tmpdir .. "': Is a directory", reader, tmpdir)
  end
  local ok, msg = pcall(sf.read_idx)
  lu.assertFalse(ok)
  lu.assertStrMatches(msg, "bad argument #1 to '[%w.]*read_idx' %(string expected, got no value%)")
end

function TestIdx:test_fashion_mnist()
  local images = FMNIST .. "/train-images-idx3-ubyte.gz"
  if not exists(images) then
    lu.skip("Fashion-MNIST not found at " .. FMNIST .. " (Debian package dataset-fashion-mnist; or set SURGFT_FMNIST)")
  end
  local x = sf.read_idx(images)
  local y = sf.read_idx(FMNIST .. "/train-labels-idx1-ubyte.gz")
  lu.assertEquals(x:shape(), {60000, 28, 28})
  lu.assertEquals(y:shape(), {60000})
  local counts, lo, hi = {}, math.huge, -math.huge
  for _, v in ipairs(y:totable()) do
    lu.assertEquals(v, math.floor(v))
    counts[v] = (counts[v] or 0) + 1
  end
  for c = 0, 9 do lu.assertEquals(counts[c], 6000) end -- Fashion-MNIST is balanced
  for _, v in ipairs(x:select(1, 1):reshape{784}:totable()) do
    lo, hi = math.min(lo, v), math.max(hi, v)
  end
  lu.assertEquals(lo, 0)
  lu.assertTrue(hi > 100 and hi <= 255)
  local t = sf.read_idx(FMNIST .. "/t10k-images-idx3-ubyte.gz")
  lu.assertEquals(t:shape(), {10000, 28, 28})
end

-- ---- CIFAR-10 ----

TestCifar = {}

local function cifar_record(label, seed)
  local px = {}
  for i = 1, 3072 do px[i] = string.char((i * 7 + seed) % 256) end
  return string.char(label) .. table.concat(px)
end

function TestCifar:test_read()
  local p = write("batch.bin", cifar_record(3, 0) .. cifar_record(9, 5))
  local x, y = sf.read_cifar(p)
  lu.assertEquals(x:shape(), {2, 3, 32, 32})
  lu.assertEquals(y:totable(), {3, 9})
  -- planes: R is bytes 1..1024, G 1025..2048, B 2049..3072 of each record
  local function byte(i, seed) return (i * 7 + seed) % 256 end
  lu.assertEquals(scaled(x:get(1, 1, 1, 1), 255), byte(1, 0))
  lu.assertEquals(scaled(x:get(1, 1, 1, 2), 255), byte(2, 0))
  lu.assertEquals(scaled(x:get(1, 1, 2, 1), 255), byte(33, 0))
  lu.assertEquals(scaled(x:get(1, 2, 1, 1), 255), byte(1025, 0))
  lu.assertEquals(scaled(x:get(2, 3, 32, 32), 255), byte(3072, 5))
  lu.assertAlmostEquals(x:get(2, 3, 32, 32), byte(3072, 5) / 255, 1e-7)
  local row = x:select(1, 2):select(1, 3):select(1, 32):totable()
  for _, v in ipairs(row) do lu.assertTrue(v >= 0 and v <= 1) end
end

function TestCifar:test_errors()
  assertFileError(sf.read_cifar, write("odd.bin", string.rep("\0", 3074)),
                  "has 3074 bytes, not a positive multiple of 3073")
  assertFileError(sf.read_cifar, write("zero.bin", ""), "has 0 bytes")
  assertFileError(sf.read_cifar, write("label.bin", cifar_record(1, 0) .. cifar_record(12, 0)),
                  "record 2 has label 12, expected 0..9")
  lu.assertErrorMsgContains("read_cifar: cannot open '" .. path("none.bin") .. "': No such file or directory",
                            sf.read_cifar, path("none.bin"))
end

-- ---- NumPy ----

TestNpy = {}

function TestNpy:test_dtypes()
  local u8 = sf.read_npy(write("u8.npy", npy("|u1", {2, 3}, bytes{0, 1, 2, 253, 254, 255})))
  lu.assertEquals(u8:totable(), {{0, 1, 2}, {253, 254, 255}})
  local f4 = sf.read_npy(write("f4.npy", npy("<f4", {3}, string.pack("<f<f<f", 1.5, -2, 0.125))))
  lu.assertEquals(f4:totable(), {1.5, -2, 0.125})
  local f8 = sf.read_npy(write("f8.npy", npy("<f8", {2, 1}, string.pack("<d<d", 0.5, 1e10), false, 2)))
  lu.assertEquals(f8:totable(), {{0.5}, {1e10}})
  local i8 = sf.read_npy(write("i8.npy", npy("<i8", {2}, string.pack("<i8<i8", -7, 40000000))))
  lu.assertEquals(i8:totable(), {-7, 40000000})
  local be = sf.read_npy(write("be.npy", npy(">f4", {2}, string.pack(">f>f", 3.25, -1))))
  lu.assertEquals(be:totable(), {3.25, -1})
  local b1 = sf.read_npy(write("b1.npy", npy("|b1", {3}, bytes{0, 1, 2})))
  lu.assertEquals(b1:totable(), {0, 1, 1})
  local i1 = sf.read_npy(write("i1.npy", npy("|i1", {2}, bytes{255, 1})))
  lu.assertEquals(i1:totable(), {-1, 1})
  local scalar = sf.read_npy(write("scalar.npy", npy("<f4", {}, string.pack("<f", 4))))
  lu.assertEquals(scalar:dim(), 0)
  lu.assertEquals(scalar:item(), 4)
  local v3 = sf.read_npy(write("v3.npy", npy("<i4", {2}, string.pack("<i4<i4", 5, 6), false, 3)))
  lu.assertEquals(v3:totable(), {5, 6})
end

function TestNpy:test_fortran_order_is_transposed()
  -- the 2x3 array [[1,2,3],[4,5,6]] stored column by column
  local t = sf.read_npy(write("fortran.npy", npy("<f4", {2, 3}, string.pack("<ffffff", 1, 4, 2, 5, 3, 6), true)))
  lu.assertEquals(t:shape(), {2, 3})
  lu.assertEquals(t:totable(), {{1, 2, 3}, {4, 5, 6}})
  lu.assertTrue(t:is_contiguous())
  local payload = {}
  for i = 0, 23 do payload[#payload + 1] = string.char(i) end
  -- element [i][j][k] of a Fortran (2,3,4) array is at i + 2 j + 6 k
  local t3 = sf.read_npy(write("fortran3.npy", npy("|u1", {2, 3, 4}, table.concat(payload), true)))
  lu.assertEquals(t3:get(2, 3, 4), 1 + 2 * 2 + 6 * 3)
  lu.assertEquals(t3:get(1, 2, 3), 0 + 2 * 1 + 6 * 2)
end

function TestNpy:test_round_trip()
  local a = sf.tensor{{1, 2, 3}, {4, 5.5, -6}}
  local p = path("rt.npy")
  sf.write_npy(p, a)
  lu.assertFalse(exists(p .. ".tmp"))
  local s = slurp(p)
  lu.assertEquals(s:sub(1, 8), "\x93NUMPY\1\0")
  local hlen = string.unpack("<I2", s, 9)
  lu.assertEquals((10 + hlen) % 64, 0)
  lu.assertStrContains(s:sub(11, 10 + hlen), "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }")
  lu.assertEquals(s:sub(10 + hlen, 10 + hlen), "\n")
  lu.assertEquals(sf.read_npy(p):totable(), a:totable())
  -- strided input is written in logical (C) order
  sf.write_npy(p, a:t())
  lu.assertEquals(sf.read_npy(p):totable(), {{1, 4}, {2, 5.5}, {3, -6}})
  sf.write_npy(p, sf.tensor{7, 8})
  lu.assertStrContains(slurp(p), "'shape': (2,), }")
  lu.assertEquals(sf.read_npy(p):totable(), {7, 8})
  sf.write_npy(p, sf.tensor(2.5))
  lu.assertEquals(sf.read_npy(p):item(), 2.5)
  sf.write_npy(p, sf.zeros(0, 4))
  lu.assertEquals(sf.read_npy(p):shape(), {0, 4})
end

function TestNpy:test_expected_shape()
  local p = write("img.npy", npy("|u1", {2, 4, 4, 3}, string.rep("\1", 96)))
  lu.assertEquals(sf.read_npy(p, {shape = {-1, 4, 4, 3}}):shape(), {2, 4, 4, 3})
  assertFileError(sf.read_npy, p, "has shape [2,4,4,3], expected [*,32,32,3]", {shape = {-1, 32, 32, 3}})
  assertFileError(sf.read_npy, p, "has shape [2,4,4,3], expected [2,48]", {shape = {2, 48}})
  lu.assertErrorMsgContains("bad argument #2 to 'read_npy' (unknown option 'shap'; options: shape)", sf.read_npy, p,
                            {shap = {1}})
  lu.assertErrorMsgContains("option 'shape' entry 2 is string", sf.read_npy, p, {shape = {1, "a"}})
end

function TestNpy:test_errors()
  assertFileError(sf.read_npy, write("magic.npy", "NUMPY\1\0\0\0xxxxxxxxx"), "is not a .npy file")
  assertFileError(sf.read_npy, write("c8.npy", npy("<c8", {1}, string.rep("\0", 8))), "has dtype '<c8'; supported:")
  assertFileError(sf.read_npy, write("str.npy", npy("<U4", {1}, string.rep("\0", 16))), "has dtype '<U4'")
  assertFileError(sf.read_npy, write("obj.npy", npy("|O", {1}, string.rep("\0", 8))), "has dtype '|O'")
  local structured = "\x93NUMPY\1\0" .. string.pack("<I2", 54) ..
                         "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }      \n"
  assertFileError(sf.read_npy, write("struct.npy", structured), "structured dtype")
  assertFileError(sf.read_npy, write("trunc.npy", npy("<f4", {4}, string.pack("<f<f", 1, 2))),
                  "is truncated: shape [4] of dtype '<f4' needs 16 bytes of data, the file has 8")
  assertFileError(sf.read_npy, write("trail.npy", npy("|u1", {2}, "abc")), "has trailing bytes")
  local nokey = "\x93NUMPY\1\0" .. string.pack("<I2", 40) .. "{'descr': '<f4', 'shape': (1,), }      \n"
  assertFileError(sf.read_npy, write("nokey.npy", nokey), "bad header (missing 'fortran_order')")
  local badshape = "\x93NUMPY\1\0" .. string.pack("<I2", 64) ..
                       "{'descr': '<f4', 'fortran_order': False, 'shape': (a,), }      \n"
  assertFileError(sf.read_npy, write("badshape.npy", badshape), "bad header (shape entry is not")
  assertFileError(sf.read_npy, write("ver.npy", "\x93NUMPY\9\0\10\0{}        \n"), "format version 9.0")
  assertFileError(sf.read_npy, write("hlen.npy", "\x93NUMPY\1\0\255\255{"), "is truncated: header of 65535 bytes")
  assertFileError(sf.read_npy, write("dims.npy", npy("|u1", {1, 1, 1, 1, 1, 1, 1, 1, 1}, "x")),
                  "more than 8 dimensions")
  lu.assertErrorMsgContains("read_npy: cannot open '" .. path("no.npy") .. "': No such file", sf.read_npy,
                            path("no.npy"))
end

function TestNpy:test_write_errors()
  local dir = path("no-such-dir") .. "/x.npy"
  lu.assertErrorMsgContains("write_npy: cannot create '" .. dir .. ".tmp': No such file or directory", sf.write_npy,
                            dir, sf.zeros(2))
  lu.assertErrorMsgContains("bad argument #2 to 'write_npy' (tensor expected, got table)", sf.write_npy,
                            path("x.npy"), {1, 2})
end

-- ---- PNG ----

TestPng = {}

function TestPng:test_round_trip_exact_8bit()
  local rng = sf.rng(1)
  for _, shape in ipairs{{1, 5, 7}, {3, 4, 6}, {4, 3, 2}} do
    local vals, n = {}, shape[1] * shape[2] * shape[3]
    for i = 1, n do vals[i] = rng:random(0, 255) end
    vals[1], vals[2] = 0, 255
    local t = sf.tensor(vals):reshape(shape)
    local unit = {}
    for i = 1, n do unit[i] = vals[i] / 255 end
    local p = path("rt.png")
    sf.write_png(p, sf.tensor(unit):reshape(shape))
    lu.assertFalse(exists(p .. ".tmp"))
    local r = sf.read_png(p, {keep_alpha = shape[1] == 4})
    lu.assertEquals(r:shape(), shape)
    lu.assertEquals(scaled(r:totable(), 255), t:totable())
  end
end

function TestPng:test_write_forms_and_clamping()
  local p = path("gray.png")
  sf.write_png(p, sf.tensor{{-0.5, 0, 0.5}, {1, 2, 0 / 0}})
  local r = sf.read_png(p)
  lu.assertEquals(r:shape(), {1, 2, 3})
  lu.assertEquals(scaled(r:totable(), 255), {{{0, 0, 128}, {255, 255, 0}}})
  -- a strided (transposed) CHW input writes its logical layout
  local hwc = sf.tensor{{{0, 1, 0}, {1, 0, 0}}} -- [1,2,3] seen as H=1,W=2,C=3
  sf.write_png(p, hwc:permute(3, 1, 2))
  lu.assertEquals(sf.read_png(p):totable(), {{{0, 1}}, {{1, 0}}, {{0, 0}}})
end

function TestPng:test_write_errors()
  local p = path("bad.png")
  lu.assertErrorMsgContains("write_png: argument #2 has shape [2,4,4], expected [H,W], [1,H,W], [3,H,W] or [4,H,W]",
                            sf.write_png, p, sf.zeros(2, 4, 4))
  lu.assertErrorMsgContains("write_png: argument #2 has shape [4]", sf.write_png, p, sf.zeros(4))
  lu.assertErrorMsgContains("write_png: argument #2 has shape [3,0,4], image sides must be", sf.write_png, p,
                            sf.zeros(3, 0, 4))
  local dir = path("no-such-dir") .. "/x.png"
  lu.assertErrorMsgContains("write_png: cannot create '" .. dir .. ".tmp'", sf.write_png, dir, sf.zeros(2, 2))
  lu.assertFalse(exists(p))
  -- a failed write leaves the previous file and no temporary
  sf.write_png(p, sf.ones(2, 2))
  pcall(sf.write_png, p, sf.zeros(5))
  lu.assertEquals(sf.read_png(p):totable(), {{{1, 1}, {1, 1}}})
  lu.assertFalse(exists(p .. ".tmp"))
end

function TestPng:test_gray_depths()
  -- 1-bit: 8 pixels per byte, most significant first
  local t = sf.read_png(write("g1.png", png(8, 2, 1, 0, {string.char(0xB1), string.char(0x0F)})))
  lu.assertEquals(t:totable(), {{{1, 0, 1, 1, 0, 0, 0, 1}, {0, 0, 0, 0, 1, 1, 1, 1}}})
  t = sf.read_png(write("g2.png", png(4, 1, 2, 0, {string.char(0x1B)}))) -- 0,1,2,3
  lu.assertEquals(scaled(t:totable(), 3), {{{0, 1, 2, 3}}})
  t = sf.read_png(write("g4.png", png(3, 1, 4, 0, {string.char(0x0F, 0x70)}))) -- 0,15,7
  lu.assertEquals(scaled(t:totable(), 15), {{{0, 15, 7}}})
  t = sf.read_png(write("g16.png", png(3, 1, 16, 0, {string.pack(">I2I2I2", 0, 65535, 257)})))
  lu.assertEquals(scaled(t:totable(), 65535), {{{0, 65535, 257}}})
  t = sf.read_png(write("g8.png", png(2, 1, 8, 0, {string.char(10, 200)})), {keep_alpha = true})
  lu.assertEquals(t:shape(), {2, 1, 2})
  lu.assertEquals(scaled(t:totable(), 255), {{{10, 200}}, {{255, 255}}})
end

function TestPng:test_alpha_and_colour()
  local ga = write("ga.png", png(2, 1, 8, 4, {string.char(10, 99, 20, 0)}))
  lu.assertEquals(scaled(sf.read_png(ga):totable(), 255), {{{10, 20}}})
  lu.assertEquals(scaled(sf.read_png(ga, {keep_alpha = true}):totable(), 255), {{{10, 20}}, {{99, 0}}})
  local rgba = write("rgba.png", png(1, 2, 8, 6, {string.char(1, 2, 3, 4), string.char(5, 6, 7, 8)}))
  lu.assertEquals(scaled(sf.read_png(rgba):totable(), 255), {{{1}, {5}}, {{2}, {6}}, {{3}, {7}}})
  lu.assertEquals(sf.read_png(rgba, {keep_alpha = true}):shape(), {4, 2, 1})
  local rgb16 = write("rgb16.png", png(1, 1, 16, 2, {string.pack(">I2I2I2", 1000, 65535, 0)}))
  lu.assertEquals(scaled(sf.read_png(rgb16):totable(), 65535), {{{1000}}, {{65535}}, {{0}}})
  lu.assertErrorMsgContains("bad argument #2 to 'read_png' (option 'keep_alpha' must be a boolean, got number)",
                            sf.read_png, rgba, {keep_alpha = 1})
end

function TestPng:test_palette()
  local plte = chunk("PLTE", string.char(255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30))
  local p8 = write("pal8.png", png(4, 1, 8, 3, {string.char(0, 1, 2, 3)}, plte))
  lu.assertEquals(scaled(sf.read_png(p8):totable(), 255),
                  {{{255, 0, 0, 10}}, {{0, 255, 0, 20}}, {{0, 0, 255, 30}}})
  local p2 = write("pal2.png", png(4, 1, 2, 3, {string.char(0x1B)}, plte .. chunk("tRNS", string.char(0, 128))))
  lu.assertEquals(scaled(sf.read_png(p2):totable(), 255),
                  {{{255, 0, 0, 10}}, {{0, 255, 0, 20}}, {{0, 0, 255, 30}}})
  local a = sf.read_png(p2, {keep_alpha = true})
  lu.assertEquals(a:shape(), {4, 1, 4})
  lu.assertEquals(scaled(a:select(1, 4):totable(), 255), {{0, 128, 255, 255}})
end

function TestPng:test_errors()
  lu.assertErrorMsgContains("read_png: cannot open '" .. path("none.png") .. "': No such file or directory",
                            sf.read_png, path("none.png"))
  assertFileError(sf.read_png, write("text.png", "hello, not a png"), "is not a PNG file (bad signature)")
  assertFileError(sf.read_png, write("tiny.png", "\137PN"), "is not a PNG file")
  local good = png(4, 4, 8, 0, {"abcd", "efgh", "ijkl", "mnop"})
  assertFileError(sf.read_png, write("cut.png", good:sub(1, 40)), "is not a valid PNG (")
  assertFileError(sf.read_png, write("cut2.png", good:sub(1, #good - 14)), "is not a valid PNG (")
  local crc = good:sub(1, 20) .. string.char(good:byte(21) ~ 1) .. good:sub(22) -- width byte of IHDR
  assertFileError(sf.read_png, write("crc.png", crc), "CRC error")
  assertFileError(sf.read_png, write("depth.png", png(2, 2, 3, 0, {"\0", "\0"})), "is not a valid PNG (")
  assertFileError(sf.read_png, write("zlib.png", png(2, 2, 8, 0, {}, nil, "garbage!")), "is not a valid PNG (")
  assertFileError(sf.read_png, write("short.png", png(4, 4, 8, 0, {"abcd"})), "is not a valid PNG (")
  lu.assertErrorMsgContains("unknown option 'alpha'", sf.read_png, path("x.png"), {alpha = true})
end

-- ---- CSV ----

TestCsv = {}

local CAMELYON = ",patient,node,x_coord,y_coord,tumor,slide,center,split\n" ..
                     "0,004,4,3328,21792,1,0,0,0\n" .. "1,004,4,3200,22272,1,0,0,0\n" .. "2,010,1,1024,512,0,5,3,1\n"

function TestCsv:test_wilds_metadata()
  local c = sf.read_csv(write("metadata.csv", CAMELYON), {require = {"center", "split"}})
  lu.assertEquals(c.header, {"", "patient", "node", "x_coord", "y_coord", "tumor", "slide", "center", "split"})
  lu.assertEquals(c.nrows, 3)
  lu.assertEquals(c.columns[""], {0, 1, 2})
  lu.assertEquals(c.columns.patient, {4, 4, 10}) -- numbers: every value converts
  lu.assertEquals(c.columns.center, {0, 0, 3})
  lu.assertEquals(math.type(c.columns.x_coord[1]), "integer")
  local s = sf.read_csv(path("metadata.csv"), {numbers = false})
  lu.assertEquals(s.columns.patient, {"004", "004", "010"})
end

function TestCsv:test_quoting_and_line_ends()
  local text = 'name,note,value\r\n' .. '"a, b","he said ""hi""",1.5\r\n' .. 'plain,,2\r\n' ..
                   '"multi\nline",x,\r\n' .. '"",y,3'
  local c = sf.read_csv(write("q.csv", text))
  lu.assertEquals(c.nrows, 4)
  lu.assertEquals(c.columns.name, {"a, b", "plain", "multi\nline", ""})
  lu.assertEquals(c.columns.note, {'he said "hi"', "", "x", "y"})
  lu.assertEquals(c.columns.value, {"1.5", "2", "", "3"}) -- an empty value keeps the column as strings
  local mixed = sf.read_csv(write("m.csv", "a,b\n1,x\n2.5,y\n\n"))
  lu.assertEquals(mixed.columns.a, {1, 2.5})
  lu.assertEquals(mixed.columns.b, {"x", "y"})
  local bom = sf.read_csv(write("bom.csv", "\xEF\xBB\xBFid\n7\n"))
  lu.assertEquals(bom.header, {"id"})
  lu.assertEquals(bom.columns.id, {7})
  local header_only = sf.read_csv(write("h.csv", "a,b\n"))
  lu.assertEquals(header_only.nrows, 0)
  lu.assertEquals(header_only.columns.a, {})
end

function TestCsv:test_errors()
  local p = write("metadata.csv", CAMELYON)
  assertFileError(sf.read_csv, p,
                  "read_csv: file '" .. p ..
                      "' has no column 'region' (columns: '', patient, node, x_coord, y_coord, tumor, slide, center, split)",
                  {require = {"center", "region"}})
  local abc = write("abc.csv", "a,b,c\n1,2,3\n")
  lu.assertErrorMsgContains("read_csv: file '" .. abc .. "' has no column 'split' (columns: a, b, c)", sf.read_csv,
                            abc, {require = {"split"}})
  assertFileError(sf.read_csv, write("ragged.csv", 'a,b,c\n1,2,3\n"x\ny",2,3\n4,5\n'),
                  "line 5 has 2 fields, expected 3 (as in the header)")
  assertFileError(sf.read_csv, write("long.csv", "a,b\n1,2,3\n"), "line 2 has 3 fields, expected 2")
  assertFileError(sf.read_csv, write("unterminated.csv", 'a,b\n1,"oops\n2,3\n'), "line 2: unterminated quoted field")
  assertFileError(sf.read_csv, write("afterquote.csv", 'a,b\n"x"y,2\n'),
                  "line 2: unexpected character 'y' after a closing quote")
  assertFileError(sf.read_csv, write("empty.csv", ""), "is empty (no header line)")
  assertFileError(sf.read_csv, write("dup.csv", "a,b,a\n1,2,3\n"), "has the column name 'a' twice (columns 1 and 3)")
  assertFileError(sf.read_csv, write("nul.csv", "a\n1\n2\0\n"), "line 3 contains a NUL byte")
  lu.assertErrorMsgContains("read_csv: cannot open '" .. path("none.csv") .. "': No such file or directory",
                            sf.read_csv, path("none.csv"))
  lu.assertErrorMsgContains("bad argument #2 to 'read_csv' (unknown option 'requires'; options: require, numbers)",
                            sf.read_csv, abc, {requires = {"a"}})
  lu.assertErrorMsgContains("option 'require' entry 1 is number", sf.read_csv, abc, {require = {1}})
end

-- ---- nothing leaks on error paths (tensor memory; the ASan build checks the C buffers) ----

TestLeaks = {}

function TestLeaks:test_errors_release_tensors()
  local before = mem_settled()
  local short = write("leak.idx.gz", gzip(idx(0x08, {100, 100}, string.rep("\1", 5000))))
  local npy_trunc = write("leak.npy", npy("<f4", {1000}, string.rep("\0", 400)))
  local png_cut = png(64, 64, 8, 0, (function()
    local r = {}
    for i = 1, 64 do r[i] = string.rep("\7", 64) end
    return r
  end)())
  local pc = write("leak.png", png_cut:sub(1, #png_cut - 2000))
  for _ = 1, 20 do
    lu.assertFalse(pcall(sf.read_idx, short))
    lu.assertFalse(pcall(sf.read_npy, npy_trunc))
    lu.assertFalse(pcall(sf.read_png, pc))
  end
  lu.assertEquals(mem_settled(), before)
end

-- ---- fuzz: mutated valid files read or fail cleanly ----

TestFuzz = {}

local function mutate(rng, s)
  local b = {string.byte(s, 1, -1)}
  local kind = rng:random(1, 4)
  if kind <= 2 then
    for _ = 1, rng:random(1, 4) do
      local i = rng:random(1, #b)
      b[i] = rng:random(0, 255)
    end
  end
  if kind >= 2 and kind <= 3 then
    local n = rng:random(0, #b)
    for i = #b, n + 1, -1 do b[i] = nil end
  end
  if kind == 4 then -- flip one bit in the first bytes, where the headers are
    local i = rng:random(1, math.min(#b, 64))
    b[i] = b[i] ~ (1 << rng:random(0, 7))
  end
  local parts = {}
  for i = 1, #b, 4096 do parts[#parts + 1] = string.char(table.unpack(b, i, math.min(#b, i + 4095))) end
  return table.concat(parts)
end

local function fuzz(name, seed, valid, reader, prefix, iterations)
  local rng = sf.rng(seed)
  local p = path(name)
  local ok_count = 0
  for it = 1, iterations or 200 do
    local src = valid[rng:random(1, #valid)]
    write(name, type(src) == "function" and src(rng) or mutate(rng, src))
    local ok, err = pcall(reader, p)
    if ok then
      ok_count = ok_count + 1
    else
      lu.assertIsString(err, "iteration " .. it)
      lu.assertStrContains(err, prefix)
    end
  end
  return ok_count
end

function TestFuzz:test_idx()
  local raw = idx(0x08, {3, 5, 4}, string.rep("\3\200", 30))
  local f32 = idx(0x0D, {2, 3}, string.pack(">ffffff", 1, 2, 3, 4, 5, 6))
  fuzz("fuzz.idx", 11, {raw, gzip(raw), f32, gzip(f32)}, sf.read_idx, "read_idx: ")
end

function TestFuzz:test_cifar()
  fuzz("fuzz.bin", 12, {cifar_record(1, 0) .. cifar_record(2, 3)}, sf.read_cifar, "read_cifar: ")
end

function TestFuzz:test_npy()
  local a = npy("<f4", {2, 3}, string.pack("<ffffff", 1, 2, 3, 4, 5, 6))
  local b = npy("|u1", {4, 2}, "abcdefgh", true, 2)
  local c = npy("<i8", {2}, string.pack("<i8<i8", 1, 2))
  fuzz("fuzz.npy", 13, {a, b, c}, sf.read_npy, "read_npy: ")
end

function TestFuzz:test_png()
  local plte = chunk("PLTE", string.char(255, 0, 0, 0, 255, 0, 0, 0, 255))
  local rows = {}
  for i = 1, 6 do rows[i] = string.rep(string.char(i * 20, 0, 255), 5) end
  local rgb = png(5, 6, 8, 2, rows)
  local pal = png(8, 2, 2, 3, {"\27\0", "\228\1"}, plte)
  local g16 = png(2, 2, 16, 4, {string.rep("\1\2", 4), string.rep("\255\0", 4)})
  -- also mutate inside the chunks with valid CRCs, so that libpng's decoding is reached
  local function deep(rng)
    local r = {}
    for i = 1, 3 do r[i] = mutate(rng, rows[i]) end
    local ihdr_depths = {1, 2, 4, 8, 16}
    local depth = ihdr_depths[rng:random(1, 5)]
    local ctypes = {0, 2, 3, 4, 6}
    return png(rng:random(1, 6), rng:random(1, 4), depth, ctypes[rng:random(1, 5)], r,
               rng:random(1, 2) == 1 and plte or nil, rng:random(1, 3) == 1 and mutate(rng, zlib_stored("\0abc")) or nil)
  end
  local rgba = path("fuzz-rgba.png")
  sf.write_png(rgba, sf.rand({4, 5, 5}, sf.rng(3)))
  local valid = {rgb, pal, g16, slurp(rgba), deep, deep}
  fuzz("fuzz.png", 14, valid, sf.read_png, "read_png: ")
  fuzz("fuzz-alpha.png", 15, valid, function(p) return sf.read_png(p, {keep_alpha = true}) end, "read_png: ")
end

function TestFuzz:test_csv()
  local q = 'name,note,value\r\n"a, b","he said ""hi""",1.5\r\nplain,,2\r\n"multi\nline",x,\r\n'
  fuzz("fuzz.csv", 16, {CAMELYON, q}, function(p) return sf.read_csv(p, {require = {"center"}}) end, "read_csv: ")
end

local rc = lu.LuaUnit.run()
os.execute("rm -rf '" .. tmpdir .. "'")
os.exit(rc)
