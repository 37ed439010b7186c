-- Lua-side tensor methods: printing (Torch-like, elided when large).
return function(sf)
  local T = sf.Tensor
  local mt = sf._tensor_mt

  local EDGE = 3        -- entries kept at each end of an elided dimension
  local LIMIT = 1000    -- tensors with more elements than this are elided

  local function fmt_number(v, int_only, width)
    local s
    if int_only then s = string.format("%d", math.floor(v))
    elseif v ~= v then s = "nan"
    elseif v == math.huge then s = "inf" elseif v == -math.huge then s = "-inf"
    else s = string.format("%.4f", v) end
    return string.rep(" ", width - #s) .. s
  end

  -- indices to show along a dimension of size n
  local function shown(n, elide)
    local idx = {}
    if not elide or n <= 2 * EDGE then
      for i = 1, n do idx[#idx + 1] = i end
    else
      for i = 1, EDGE do idx[#idx + 1] = i end
      idx[#idx + 1] = false -- the ellipsis
      for i = n - EDGE + 1, n do idx[#idx + 1] = i end
    end
    return idx
  end

  local function tostring_tensor(t)
    local size = t:size()
    local nd = #size
    local header = "[surgft.Tensor of size " .. (nd == 0 and "[]" or table.concat(size, "x")) .. "]"
    local n = t:numel()
    if n == 0 then return "[surgft.Tensor with no elements, size " .. (nd == 0 and "[]" or table.concat(size, "x")) .. "]" end
    if nd == 0 then return fmt_number(t:item(), false, 0) .. "\n" .. header end
    local elide = n > LIMIT
    -- gather the shown values to choose a format
    local all_int, width = true, 1
    local flat = t:reshape(-1)
    local function scan(v)
      if v ~= math.floor(v) or v ~= v or math.abs(v) >= 1e9 then all_int = false end
    end
    local sample = elide and math.min(n, 4096) or n
    for i = 1, sample do scan(flat:get(i)) end
    if elide then for i = math.max(1, n - 4096), n do scan(flat:get(i)) end end
    local lines = {}
    local function row_string(row) -- row: a 1-D tensor
      local parts = {}
      for _, j in ipairs(shown(row:size(1), elide)) do
        if j then parts[#parts + 1] = fmt_number(row:get(j), all_int, 0) else parts[#parts + 1] = "..." end
      end
      return parts
    end
    -- first pass for column width
    local rows = {}
    local function collect(sub, prefix)
      local d = sub:dim()
      if d == 1 then
        rows[#rows + 1] = {prefix = prefix, parts = row_string(sub)}
      elseif d == 2 then
        for _, i in ipairs(shown(sub:size(1), elide)) do
          if i then rows[#rows + 1] = {prefix = prefix, parts = row_string(sub:select(1, i))}
          else rows[#rows + 1] = {prefix = prefix, dots = true} end
        end
      else
        for _, i in ipairs(shown(sub:size(1), elide)) do
          if i then collect(sub:select(1, i), prefix .. i .. ",")
          else rows[#rows + 1] = {prefix = prefix, skip = true} end
        end
      end
    end
    collect(t, "")
    for _, r in ipairs(rows) do
      for _, p in ipairs(r.parts or {}) do if #p > width then width = #p end end
    end
    local last_prefix
    for _, r in ipairs(rows) do
      if nd > 2 and r.prefix ~= last_prefix and not r.skip then
        if #lines > 0 then lines[#lines + 1] = "" end
        lines[#lines + 1] = "(" .. r.prefix .. ".,.) = "
        last_prefix = r.prefix
      end
      if r.skip then lines[#lines + 1] = "..."
      elseif r.dots then lines[#lines + 1] = " ..."
      else
        local cells = {}
        for k, p in ipairs(r.parts) do cells[k] = string.rep(" ", width - #p) .. p end
        lines[#lines + 1] = " " .. table.concat(cells, " ")
      end
    end
    if nd == 1 then -- a column, as Torch prints vectors
      local col = {}
      for _, p in ipairs(rows[1].parts) do col[#col + 1] = string.rep(" ", width - #p) .. p end
      lines = col
    end
    lines[#lines + 1] = header
    return table.concat(lines, "\n")
  end

  mt.__tostring = tostring_tensor
  T.tostring = tostring_tensor
end
