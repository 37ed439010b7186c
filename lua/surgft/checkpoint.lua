-- Checkpoints: safetensors files (the published format) and model / optimizer / RNG / config
-- save and load through them.
--
--   sf.save_safetensors("w.safetensors", {["fc.weight"] = w, ["fc.bias"] = b}, {note = "hi"})
--   local tensors, metadata = sf.load_safetensors("w.safetensors")
--
--   sf.checkpoint.save("run.safetensors", {model = net, optimizer = opt, rng = r, config = cfg})
--   local report = sf.checkpoint.load("run.safetensors", {model = net, optimizer = opt, rng = r})
--
-- The file format (https://github.com/huggingface/safetensors): an 8-byte little-endian
-- header length N, N bytes of JSON header, then the data section:
--   {"__metadata__": {"k": "v", ...},
--    "name": {"dtype": "F32", "shape": [2,3], "data_offsets": [begin, end]}, ...}
-- with offsets relative to the data section. We write F32 only, tensors in sorted name
-- order, packed without gaps, compact JSON with "__metadata__" first and keys in a fixed
-- order, padded with spaces so that N is a multiple of 8 (as the reference writer does):
-- the same tensors and metadata always give the same bytes. We read F32 and convert
-- F64, F16, BF16 and integer / BOOL dtypes to float32.
--
-- The header is parsed with lua-cjson. cjson writes tables in hash order and numbers
-- with at most 14 digits, so the writer assembles objects itself in sorted key order,
-- lets cjson escape every string, and prints numbers with %.17g (doubles round-trip
-- exactly). Tensor bytes go straight between the file and the tensor in C
-- (sf.safetensors.read / write), never through Lua strings.
--
-- A model checkpoint is a safetensors file holding:
--   model:state()        parameters and buffers (BatchNorm statistics) by module-tree name
--   opt:state_dict()     tensors named "optim.<param>.<m|v|buf>"
--   __metadata__         "surgft.format" = "checkpoint", "surgft.version" = "1",
--                        "surgft.model" = the root module's type,
--                        "surgft.trainable" = JSON {param: true|false},
--                        "surgft.lr_scale" = JSON {param: number},
--                        "surgft.optimizer" = JSON {kind, opts, steps = {param: n}},
--                        "surgft.rng" = the generator's 32-byte state in hex,
--                        "surgft.config" = JSON of the config table.
-- A plain safetensors state dict (no surgft metadata, e.g. exported from PyTorch) loads
-- as model weights only.
local sf = require "surgft.core"
local cjson = require "cjson"

local raw = sf.safetensors -- the C half: read, write, dtype_size, dtypes, tmpname
local M = {}

local json = cjson.new()
json.decode_invalid_numbers(false) -- NaN / Infinity / hex are not JSON
json.decode_max_depth(64)

local MAX_HEADER = 100000000 -- the reference implementation's limit on N
local MAX_NUMEL = 1 << 53

-- M._after_tensor_written(name): called after each tensor is written (tests use it to
-- fail in the middle of a write)
M._after_tensor_written = nil

-- ---- JSON: canonical writing, decoding ----

local function json_number(v, where)
  if v ~= v or v == math.huge or v == -math.huge then
    error(string.format("%s is %s, which JSON cannot represent", where, tostring(v)), 0)
  end
  local i = math.tointeger(v)
  if i then return string.format("%d", i) end
  return string.format("%.17g", v)
end

-- v as compact JSON with object keys sorted, so equal tables give equal text. where
-- names the value in messages ("config.optim.lr").
local function encode(v, where, seen)
  local ty = type(v)
  if ty == "string" then return json.encode(v) end
  if ty == "boolean" then return v and "true" or "false" end
  if ty == "number" then return json_number(v, where) end
  if ty ~= "table" then
    error(string.format("%s is a %s: only strings, numbers, booleans and tables can be saved as JSON", where, ty), 0)
  end
  seen = seen or {}
  if seen[v] then error(string.format("%s refers to itself: JSON cannot hold a cycle", where), 0) end
  seen[v] = true
  local n, count, strings = #v, 0, {}
  for k in pairs(v) do
    count = count + 1
    if type(k) == "string" then
      strings[#strings + 1] = k
    elseif math.type(k) ~= "integer" or k < 1 or k > n then
      error(string.format("%s has key %s: JSON objects need string keys (or an array 1..n)", where, tostring(k)), 0)
    end
  end
  local parts = {}
  if n > 0 then
    if #strings > 0 or count ~= n then
      error(string.format("%s mixes array entries and named keys: JSON cannot hold both", where), 0)
    end
    for i = 1, n do parts[i] = encode(v[i], where .. "[" .. i .. "]", seen) end
    seen[v] = nil
    return "[" .. table.concat(parts, ",") .. "]"
  end
  table.sort(strings)
  for i, k in ipairs(strings) do parts[i] = json.encode(k) .. ":" .. encode(v[k], where .. "." .. k, seen) end
  seen[v] = nil
  return "{" .. table.concat(parts, ",") .. "}"
end
M._encode_json = encode

-- cjson gives every number as a float: give integral values back their integer subtype
local function integers(v)
  if type(v) == "number" then return math.tointeger(v) or v end
  if type(v) == "table" then
    for k, x in pairs(v) do v[k] = integers(x) end
  end
  return v
end

local function decode(text)
  local ok, v = pcall(json.decode, text)
  if not ok then return nil, tostring(v) end
  return integers(v)
end

local function shape_str(s)
  local parts = {}
  for i, n in ipairs(s) do parts[i] = string.format("%d", n) end
  return "[" .. table.concat(parts, ",") .. "]"
end

local function sorted_keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

-- ---- safetensors ----

-- the header text for tensors in the given order (entries {name, shape, begin, finish})
local function header_text(entries, metadata)
  local parts = {}
  if metadata and next(metadata) ~= nil then
    local m = {}
    for i, k in ipairs(sorted_keys(metadata)) do m[i] = json.encode(k) .. ":" .. json.encode(metadata[k]) end
    parts[1] = '"__metadata__":{' .. table.concat(m, ",") .. "}"
  end
  for _, e in ipairs(entries) do
    parts[#parts + 1] = string.format('%s:{"dtype":"F32","shape":%s,"data_offsets":[%d,%d]}', json.encode(e.name),
                                      shape_str(e.shape), e.begin, e.finish)
  end
  local h = "{" .. table.concat(parts, ",") .. "}"
  return h .. string.rep(" ", (8 - #h % 8) % 8)
end

-- sf.save_safetensors(path, tensors[, metadata]): tensors maps names to tensors (any
-- strides), metadata strings to strings. Written to a temporary file beside path and
-- renamed over it, so path is either the old file or the complete new one.
function M.save_safetensors(path, tensors, metadata)
  if type(path) ~= "string" then
    error(string.format("bad argument #1 to 'save_safetensors' (path expected, got %s)", type(path)), 2)
  end
  if type(tensors) ~= "table" then
    error(string.format("bad argument #2 to 'save_safetensors' (table of name -> tensor expected, got %s)", type(tensors)), 2)
  end
  for k, v in pairs(tensors) do
    if type(k) ~= "string" then
      error(string.format("bad argument #2 to 'save_safetensors' (tensor names must be strings, got %s key %s)",
                          type(k), tostring(k)), 2)
    end
    if k == "__metadata__" then
      error("bad argument #2 to 'save_safetensors' ('__metadata__' is reserved and cannot name a tensor)", 2)
    end
    if not sf.is_tensor(v) then
      error(string.format("bad argument #2 to 'save_safetensors' (entry '%s' is a %s, expected a tensor)", k, type(v)), 2)
    end
  end
  if metadata ~= nil then
    if type(metadata) ~= "table" then
      error(string.format("bad argument #3 to 'save_safetensors' (metadata table expected, got %s)", type(metadata)), 2)
    end
    for k, v in pairs(metadata) do
      if type(k) ~= "string" or type(v) ~= "string" then
        error(string.format("bad argument #3 to 'save_safetensors' (metadata maps strings to strings; entry %s is a %s)",
                            tostring(k), type(v)), 2)
      end
    end
  end
  local entries, pos = {}, 0
  for i, name in ipairs(sorted_keys(tensors)) do
    local t = tensors[name]
    local nbytes = t:numel() * 4
    entries[i] = {name = name, tensor = t, shape = t:size(), begin = pos, finish = pos + nbytes}
    pos = pos + nbytes
  end
  local header = header_text(entries, metadata)

  local tmp = raw.tmpname(path)
  local fh, oerr = io.open(tmp, "wb")
  if not fh then error(string.format("save_safetensors: cannot create '%s': %s", tmp, oerr), 2) end
  local ok, err = pcall(function()
    local w, werr = fh:write(string.pack("<I8", #header), header)
    if not w then error(string.format("save_safetensors: cannot write '%s': %s", tmp, werr), 0) end
    for _, e in ipairs(entries) do
      raw.write(fh, tmp, e.tensor)
      if M._after_tensor_written then M._after_tensor_written(e.name) end
    end
    local c, cerr = fh:close()
    if not c then error(string.format("save_safetensors: cannot write '%s': %s", tmp, cerr), 0) end
  end)
  if not ok then
    if io.type(fh) == "file" then fh:close() end
    os.remove(tmp)
    error(err, 0)
  end
  local r, rerr = os.rename(tmp, path)
  if not r then
    os.remove(tmp)
    error(string.format("save_safetensors: cannot rename '%s' to '%s': %s", tmp, path, rerr), 2)
  end
end

local function isint(v) return math.type(v) == "integer" end

-- validated entries of a decoded header: {name, dtype, shape, begin, finish}, sorted by name
local function check_header(path, h, datalen)
  local function bad(fmt, ...)
    error(string.format("load_safetensors: file '%s' " .. fmt, path, ...), 0)
  end
  local entries = {}
  for _, name in ipairs(sorted_keys(h)) do
    if name ~= "__metadata__" then
      local e = h[name]
      if type(name) ~= "string" then bad("has a bad header: non-string key %s", tostring(name)) end
      if type(e) ~= "table" then bad("has a bad header: entry '%s' is not an object", name) end
      local dtype, shape, offs = e.dtype, e.shape, e.data_offsets
      if type(dtype) ~= "string" then bad("has a bad header: tensor '%s' has no dtype string", name) end
      local esize = raw.dtype_size(dtype)
      if not esize then
        bad("has tensor '%s' of unknown or unsupported dtype '%s' (supported: %s)", name, dtype, raw.dtypes())
      end
      if type(shape) ~= "table" then bad("has a bad header: tensor '%s' has no shape array", name) end
      if #shape > 8 then bad("has tensor '%s' with %d dimensions; at most 8 are supported", name, #shape) end
      local numel = 1
      for i = 1, #shape do
        local s = shape[i]
        if not isint(s) or s < 0 then
          bad("has a bad header: tensor '%s' has shape entry %d = %s, expected a non-negative integer", name, i, tostring(s))
        end
        if s > 0 and numel > MAX_NUMEL // s then bad("has tensor '%s' with an impossible shape", name) end
        numel = numel * s
      end
      for k in pairs(shape) do
        if not isint(k) or k < 1 or k > #shape then bad("has a bad header: tensor '%s' has a shape that is not an array", name) end
      end
      if type(offs) ~= "table" or #offs ~= 2 or not isint(offs[1]) or not isint(offs[2]) then
        bad("has a bad header: tensor '%s' needs data_offsets [begin, end] as two integers", name)
      end
      local b, f = offs[1], offs[2]
      if b < 0 or f < b then bad("has bad data_offsets [%d, %d] for tensor '%s' (begin > end or negative)", b, f, name) end
      if f > datalen then
        bad("is truncated or has bad offsets: tensor '%s' has data_offsets [%d, %d] but the data section has %d bytes",
            name, b, f, datalen)
      end
      if f - b ~= numel * esize then
        bad("has a size mismatch: tensor '%s' of dtype %s and shape %s needs %d bytes, data_offsets [%d, %d] hold %d",
            name, dtype, shape_str(shape), numel * esize, b, f, f - b)
      end
      entries[#entries + 1] = {name = name, dtype = dtype, shape = shape, begin = b, finish = f}
    end
  end
  -- overlaps: walk the non-empty ranges by start, remembering the one reaching furthest
  local ranges = {}
  for _, e in ipairs(entries) do if e.finish > e.begin then ranges[#ranges + 1] = e end end
  table.sort(ranges, function(a, b)
    if a.begin ~= b.begin then return a.begin < b.begin end
    return a.name < b.name
  end)
  local far
  for _, e in ipairs(ranges) do
    if far and e.begin < far.finish then
      bad("has overlapping tensors: '%s' [%d, %d] and '%s' [%d, %d]", far.name, far.begin, far.finish, e.name, e.begin,
          e.finish)
    end
    if not far or e.finish > far.finish then far = e end
  end
  return entries
end

-- sf.load_safetensors(path) -> tensors (name -> float32 tensor), metadata (string -> string,
-- {} when the file has none)
function M.load_safetensors(path)
  if type(path) ~= "string" then
    error(string.format("bad argument #1 to 'load_safetensors' (path expected, got %s)", type(path)), 2)
  end
  local fh <close>, oerr = io.open(path, "rb")
  if not fh then error(string.format("load_safetensors: cannot open '%s': %s", path, oerr), 2) end
  local size = fh:seek("end")
  if not size then error(string.format("load_safetensors: cannot read '%s' (not a regular file?)", path), 2) end
  fh:seek("set", 0)
  local function bad(fmt, ...) error(string.format("load_safetensors: file '%s' " .. fmt, path, ...), 0) end
  if size < 8 then bad("is truncated: %d bytes, shorter than the 8-byte header length", size) end
  local lenbytes, rerr = fh:read(8)
  if not lenbytes or #lenbytes ~= 8 then
    error(string.format("load_safetensors: cannot read '%s': %s", path, rerr or "short read"), 2)
  end
  local n = string.unpack("<i8", lenbytes)
  if n < 0 or n > size - 8 then
    bad("is truncated or not a safetensors file: header length %s is larger than the rest of the file (%d bytes)",
        n < 0 and string.format("%u", n) or string.format("%d", n), size - 8)
  end
  if n > MAX_HEADER then bad("has a header length of %d bytes, over the %d-byte limit", n, MAX_HEADER) end
  local text = n > 0 and fh:read(n) or ""
  if #text ~= n then bad("is truncated: the header is shorter than its declared %d bytes", n) end
  if not text:find("^%s*{") then bad("has a bad JSON header: it does not start with '{'") end
  local h, derr = decode(text)
  if not h then bad("has a bad JSON header: %s", derr) end
  if type(h) ~= "table" then bad("has a bad JSON header: not an object") end
  local metadata = h.__metadata__ or {}
  if type(metadata) ~= "table" then bad("has a bad header: __metadata__ is not an object") end
  for k, v in pairs(metadata) do
    if type(k) ~= "string" or type(v) ~= "string" then
      bad("has a bad header: __metadata__ must map strings to strings (entry '%s' is a %s)", tostring(k),
          v == cjson.null and "null" or type(v))
    end
  end
  local entries = check_header(path, h, size - 8 - n)
  local out = {}
  for _, e in ipairs(entries) do out[e.name] = raw.read(fh, path, e.name, 8 + n + e.begin, e.dtype, e.shape) end
  return out, metadata
end

-- ---- model checkpoints ----

local function check_options(fn, opts, allowed)
  if type(opts) ~= "table" then error(string.format("bad argument #2 to '%s' (options table expected, got %s)", fn, type(opts)), 3) end
  for k in pairs(opts) do
    if not allowed[k] then
      error(string.format("bad argument #2 to '%s' (unknown option '%s'; options: %s)", fn, tostring(k),
                          table.concat(sorted_keys(allowed), ", ")), 3)
    end
  end
  if type(opts.model) ~= "table" or type(opts.model.state) ~= "function" then
    error(string.format("bad argument #2 to '%s' (option 'model' must be a module, got %s)", fn, type(opts.model)), 3)
  end
  if opts.optimizer ~= nil and (type(opts.optimizer) ~= "table" or type(opts.optimizer.state_dict) ~= "function") then
    error(string.format("bad argument #2 to '%s' (option 'optimizer' must be an optimizer, got %s)", fn, type(opts.optimizer)), 3)
  end
  if opts.rng ~= nil and (type(opts.rng) ~= "userdata" or type(opts.rng.state) ~= "function") then
    error(string.format("bad argument #2 to '%s' (option 'rng' must be a generator (sf.rng), got %s)", fn, type(opts.rng)), 3)
  end
end

local OPT_PREFIX = "optim."

local function to_hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end
local function from_hex(h)
  if type(h) ~= "string" or #h % 2 ~= 0 or h:find("[^0-9a-fA-F]") then return nil end
  return (h:gsub("..", function(x) return string.char(tonumber(x, 16)) end))
end

-- sf.checkpoint.save(path, {model = m, optimizer = opt, rng = r, config = table}): one
-- safetensors file, written atomically.
function M.save(path, opts)
  check_options("checkpoint.save", opts, {model = true, optimizer = true, rng = true, config = true})
  local model = opts.model
  local tensors = {}
  for name, t in pairs(model:state()) do tensors[name] = t end
  local trainable, lr_scale = {}, {}
  for _, rec in ipairs(model:parameters()) do
    trainable[rec.name] = rec.trainable and true or false
    lr_scale[rec.name] = rec.lr_scale
  end
  local meta = {["surgft.format"] = "checkpoint", ["surgft.version"] = "1", ["surgft.model"] = model:type()}
  local function enc(v, where)
    local ok, s = pcall(encode, v, where)
    if not ok then error("checkpoint.save: " .. s, 3) end
    return s
  end
  meta["surgft.trainable"] = enc(trainable, "trainable")
  meta["surgft.lr_scale"] = enc(lr_scale, "lr_scale")
  if opts.optimizer then
    local clash = {}
    for _, name in ipairs(sorted_keys(model:state())) do
      if name:sub(1, #OPT_PREFIX) == OPT_PREFIX then clash[#clash + 1] = name end
    end
    if #clash > 0 then
      error(string.format("checkpoint.save: model tensors %s start with '%s', which names optimizer state",
                          table.concat(clash, ", "), OPT_PREFIX), 2)
    end
    local ot, om = opts.optimizer:state_dict()
    for name, t in pairs(ot) do tensors[name] = t end -- all "optim."-prefixed: no clash, checked above
    meta["surgft.optimizer"] = enc(om, "optimizer")
  end
  if opts.rng then meta["surgft.rng"] = to_hex(opts.rng:state()) end
  if opts.config ~= nil then meta["surgft.config"] = enc(opts.config, "config") end
  M.save_safetensors(path, tensors, meta)
end

local function same_shape(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

-- report.message: the one-line summary of everything that did not match (nil when all did)
local function summary(path, r)
  local parts = {}
  if #r.missing > 0 then parts[#parts + 1] = "missing: " .. table.concat(r.missing, ", ") end
  if #r.unexpected > 0 then parts[#parts + 1] = "unexpected: " .. table.concat(r.unexpected, ", ") end
  if #r.mismatched > 0 then
    local m = {}
    for i, x in ipairs(r.mismatched) do
      m[i] = string.format("%s %s in file vs %s in model", x.name, shape_str(x.file), shape_str(x.model))
    end
    parts[#parts + 1] = "shape mismatch: " .. table.concat(m, ", ")
  end
  for _, p in ipairs(r.problems) do parts[#parts + 1] = p end
  if #parts == 0 then return nil end
  return string.format("checkpoint.load: '%s' does not match the model: %s", path, table.concat(parts, "; "))
end

-- sf.checkpoint.load(path, {model = m, optimizer = opt, rng = r, strict = true}) -> report
-- Values are copied into the model's existing tensors (views stay valid). With strict
-- (the default) any mismatch raises one error listing every missing, unexpected and
-- mismatched-shape name, and nothing is changed; with strict = false what matches is
-- loaded and the report says the rest. report = {loaded, missing, unexpected,
-- mismatched = {{name, file, model}}, problems, message, config, metadata}.
function M.load(path, opts)
  check_options("checkpoint.load", opts, {model = true, optimizer = true, rng = true, strict = true})
  local strict = opts.strict ~= false
  local model, opt = opts.model, opts.optimizer
  local ok, tensors, meta = pcall(M.load_safetensors, path)
  if not ok then error(tensors, 0) end
  local function meta_json(key)
    local s = meta[key]
    if s == nil then return nil end
    local v, err = decode(s)
    if v == nil or type(v) ~= "table" then
      error(string.format("checkpoint.load: file '%s' has a bad '%s' entry: %s", path, key, err or "not a JSON object"), 0)
    end
    return v
  end
  local ometa = meta_json("surgft.optimizer")
  local trainable, lr_scale = meta_json("surgft.trainable"), meta_json("surgft.lr_scale")
  local config = nil
  if meta["surgft.config"] ~= nil then
    local v, err = decode(meta["surgft.config"])
    if v == nil then error(string.format("checkpoint.load: file '%s' has a bad 'surgft.config' entry: %s", path, err), 0) end
    config = v
  end

  local r = {loaded = {}, missing = {}, unexpected = {}, mismatched = {}, problems = {}, config = config, metadata = meta}
  local state = model:state()
  local copies = {} -- {dst, src} applied only once everything is checked
  local function is_opt(name) return ometa ~= nil and name:sub(1, #OPT_PREFIX) == OPT_PREFIX end
  for _, name in ipairs(sorted_keys(state)) do
    local src = tensors[name]
    if src == nil then
      r.missing[#r.missing + 1] = name
    elseif not same_shape(src:size(), state[name]:size()) then
      r.mismatched[#r.mismatched + 1] = {name = name, file = src:size(), model = state[name]:size()}
    else
      r.loaded[#r.loaded + 1] = name
      copies[#copies + 1] = {state[name], src}
    end
  end
  for _, name in ipairs(sorted_keys(tensors)) do
    if state[name] == nil and not is_opt(name) then r.unexpected[#r.unexpected + 1] = name end
  end

  -- optimizer: its tensors must belong to parameters of this model, with their shapes
  local ostate
  if opt then
    if not ometa then
      r.problems[#r.problems + 1] = "optimizer: the file has no optimizer state"
    elseif ometa.kind ~= opt.kind then
      r.problems[#r.problems + 1] = string.format("optimizer: the file holds '%s' state, the optimizer is '%s'",
                                                  tostring(ometa.kind), tostring(opt.kind))
    else
      local params = {}
      for _, rec in ipairs(model:parameters()) do params[rec.name] = rec end
      local good, bad_param = {}, {}
      for _, name in ipairs(sorted_keys(tensors)) do
        if is_opt(name) then
          local pname = name:sub(#OPT_PREFIX + 1):match("^(.*)%.[^.]+$")
          local rec = pname and params[pname]
          if not rec or type(ometa.steps) ~= "table" or ometa.steps[pname] == nil then
            r.unexpected[#r.unexpected + 1] = name
            if pname then bad_param[pname] = true end
          elseif not same_shape(tensors[name]:size(), rec.shape) then
            r.mismatched[#r.mismatched + 1] = {name = name, file = tensors[name]:size(), model = rec.shape}
            bad_param[pname] = true
          else
            good[name] = tensors[name]
          end
        end
      end
      local steps = {}
      for _, pname in ipairs(sorted_keys(type(ometa.steps) == "table" and ometa.steps or {})) do
        if not params[pname] then
          if not bad_param[pname] then r.unexpected[#r.unexpected + 1] = OPT_PREFIX .. pname end
        elseif not bad_param[pname] then
          steps[pname] = ometa.steps[pname]
        end
      end
      ostate = {tensors = good, meta = {kind = ometa.kind, opts = ometa.opts, steps = steps}}
    end
  end

  local rng_state
  if opts.rng then
    if meta["surgft.rng"] == nil then
      r.problems[#r.problems + 1] = "rng: the file has no generator state"
    else
      rng_state = from_hex(meta["surgft.rng"])
      if not rng_state or #rng_state ~= 32 then
        error(string.format("checkpoint.load: file '%s' has a bad 'surgft.rng' entry (expected 64 hex digits)", path), 0)
      end
    end
  end

  table.sort(r.unexpected)
  table.sort(r.mismatched, function(a, b) return a.name < b.name end)
  r.message = summary(path, r)
  if strict and r.message then error(r.message, 0) end

  for _, c in ipairs(copies) do c[1]:copy(c[2]) end
  local loaded = {}
  for _, name in ipairs(r.loaded) do loaded[name] = true end
  for _, rec in ipairs(model:parameters()) do
    if loaded[rec.name] then
      if trainable and type(trainable[rec.name]) == "boolean" then rec.trainable = trainable[rec.name] end
      if lr_scale and type(lr_scale[rec.name]) == "number" then rec.lr_scale = lr_scale[rec.name] end
    end
  end
  if ostate then opt:load_state_dict(ostate.tensors, ostate.meta) end
  if rng_state then opts.rng:set_state(rng_state) end
  return r
end

return M
