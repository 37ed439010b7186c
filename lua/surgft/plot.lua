-- Figures through gnuplot: data (.dat), a re-renderable script (.gp), and PNG + PDF.
-- Two kinds: plot.lines (curves, optional error bars, log axes) and plot.bars (grouped
-- bar charts with error bars, e.g. one cluster per task and one bar per layer subset).
--
--   local plot = require "surgft.plot"
--   plot.lines{path = "runs/theory/phase_loss", title = "...", xlabel = "n", ylabel = "loss",
--              logx = true, logy = true,
--              series = {{name = "first layer", x = {...}, y = {...}},
--                        {name = "all", x = {...}, y = {...}, err = {...}}}}
--
-- writes <path>.dat (one gnuplot data block per series, separated by two blank lines),
-- <path>.gp (a complete script: `cd <dir> && gnuplot <name>.gp` redraws both figures),
-- and renders <path>.png (pngcairo) and <path>.pdf (pdfcairo). Each file is written to
-- a temporary name and renamed, so an interrupted run never leaves half a figure.
-- Without gnuplot the .dat and .gp files are still written and a message says so.
--
-- Options: path (required), title, xlabel, ylabel, logx, logy, xrange/yrange = {lo, hi},
-- key (gnuplot's `set key` argument, default "outside right top"), width/height (PNG
-- pixels; the PDF is the same size at 100 px per inch), extra = {raw gnuplot lines put
-- before the plot command}, gnuplot (the command, default "gnuplot"), quiet (no message
-- on stderr when the figure can't be drawn).
--
-- Error bars: a series with `err = {...}` (symmetric) or `lo = {...}, hi = {...}`
-- (absolute bounds) is drawn with yerrorlines; other series with linespoints.
-- On a log axis, points that cannot be drawn (<= 0, NaN, inf) are written as NaN,
-- which gnuplot skips, and are counted in the .dat header.
local plot = {}

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- a gnuplot single-quoted string literal ('' stands for a quote inside)
local function gp_str(s) return "'" .. tostring(s):gsub("'", "''") .. "'" end

local function basename(p) return p:match("([^/]+)$") or p end
local function dirname(p) return p:match("^(.*)/[^/]*$") or "." end

-- write a whole file atomically: tmp, then rename over the target
local function write_atomic(path, text)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "w")
  if not f then error(string.format("plot.lines: cannot write '%s': %s", tmp, err), 3) end
  local ok, werr = f:write(text)
  f:close()
  if not ok then
    os.remove(tmp)
    error(string.format("plot.lines: cannot write '%s': %s", tmp, werr), 3)
  end
  local rok, rerr = os.rename(tmp, path)
  if not rok then
    os.remove(tmp)
    error(string.format("plot.lines: cannot rename '%s' to '%s': %s", tmp, path, rerr), 3)
  end
end

local function ensure_dir(dir)
  if dir == "." or dir == "" then return end
  local ok = os.execute("mkdir -p " .. shell_quote(dir))
  if not ok then error(string.format("plot.lines: cannot create directory '%s'", dir), 3) end
end

-- is a gnuplot executable available? (cmd may be a name on PATH or a path)
function plot.have_gnuplot(cmd)
  cmd = cmd or "gnuplot"
  return os.execute("command -v " .. shell_quote(cmd) .. " >/dev/null 2>&1") == true
end

local function fmt_num(v, log_axis, bad)
  if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge or (log_axis and v <= 0) then
    bad.n = bad.n + 1
    return "NaN"
  end
  return string.format("%.10g", v)
end

local function check_series(o)
  if type(o.series) ~= "table" or #o.series == 0 then
    error("plot.lines: 'series' must be a non-empty list of {name =, x =, y =}", 3)
  end
  for i, s in ipairs(o.series) do
    local who = string.format("plot.lines: series #%d (%s)", i, tostring(s.name))
    if type(s.x) ~= "table" or type(s.y) ~= "table" then error(who .. ": x and y must be lists of numbers", 3) end
    if #s.x ~= #s.y then error(string.format("%s: x has %d values, y has %d", who, #s.x, #s.y), 3) end
    for _, key in ipairs{"err", "lo", "hi"} do
      if s[key] ~= nil and (type(s[key]) ~= "table" or #s[key] ~= #s.y) then
        error(string.format("%s: %s must be a list of %d numbers", who, key, #s.y), 3)
      end
    end
    if (s.lo == nil) ~= (s.hi == nil) then error(who .. ": lo and hi go together", 3) end
    if s.err and s.lo then error(who .. ": give err or lo/hi, not both", 3) end
    for j = 1, #s.x do
      if type(s.x[j]) ~= "number" or type(s.y[j]) ~= "number" then
        error(string.format("%s: x[%d] and y[%d] must be numbers", who, j, j), 3)
      end
    end
  end
end

local function data_text(o)
  local bad = {n = 0}
  local blocks = {}
  for i, s in ipairs(o.series) do
    local lines = {string.format("# series %d: %s", i - 1, tostring(s.name or ("series " .. i)))}
    local cols = s.err and "x y err" or (s.lo and "x y lo hi" or "x y")
    lines[#lines + 1] = "# " .. cols
    for j = 1, #s.x do
      local row = {fmt_num(s.x[j], o.logx, bad), fmt_num(s.y[j], o.logy, bad)}
      if s.err then row[3] = fmt_num(s.err[j], false, bad) end
      if s.lo then
        row[3] = fmt_num(s.lo[j], o.logy, bad)
        row[4] = fmt_num(s.hi[j], o.logy, bad)
      end
      lines[#lines + 1] = table.concat(row, " ")
    end
    blocks[#blocks + 1] = table.concat(lines, "\n")
  end
  local head = string.format("# %s\n# %d value(s) not drawable (NaN, inf, or <= 0 on a log axis) written as NaN\n",
    tostring(o.title or basename(o.path)), bad.n)
  -- two blank lines separate gnuplot data blocks (addressed with `index`)
  return head .. table.concat(blocks, "\n\n\n") .. "\n", bad.n
end

-- The start of a figure's script, shared by lines and bars: where it draws to (png_out and
-- pdf_out, which emit sets to temporary names), its data file, title, axis labels (the
-- kind's defaults in d.xlabel, d.ylabel) and key, d.grid, and NaN as a missing value.
local function script_head(o, d)
  local name = basename(o.path)
  return {
    "# " .. name .. ".gp: redraw with `gnuplot " .. name .. ".gp` in this directory",
    "# (pass -e \"png_out='a.png'; pdf_out='a.pdf'\" to choose other output names)",
    "if (!exists('png_out')) png_out = " .. gp_str(name .. ".png"),
    "if (!exists('pdf_out')) pdf_out = " .. gp_str(name .. ".pdf"),
    "datafile = " .. gp_str(name .. ".dat"),
    "set encoding utf8",
    "set title " .. gp_str(o.title or name),
    "set xlabel " .. gp_str(o.xlabel or d.xlabel),
    "set ylabel " .. gp_str(o.ylabel or d.ylabel),
    "set key " .. (o.key or "outside right top") .. " noenhanced",
    d.grid,
    "set datafile missing 'NaN'",
  }
end

-- a figure's size in PNG pixels
local function fig_size(o) return o.width or 800, o.height or 560 end

local function set_range(axis, r) return string.format("set %srange [%s:%s]", axis, tostring(r[1] or ""), tostring(r[2] or "")) end

-- o.yrange, then o.extra (raw gnuplot lines, the escape hatch), appended to the script L
local function script_yrange_extra(L, o)
  if o.yrange then L[#L + 1] = set_range("y", o.yrange) end
  for _, extra in ipairs(o.extra or {}) do L[#L + 1] = extra end
end

-- The end of the script L: the plot command drawn to png_out at o.width x o.height pixels,
-- then replotted to pdf_out at the same size (100 px per inch); returns the whole text.
local function script_tail(L, o, plotcmd)
  local w, h = fig_size(o)
  L[#L + 1] = string.format("set terminal pngcairo size %d,%d font ',11' noenhanced", w, h)
  L[#L + 1] = "set output png_out"
  L[#L + 1] = plotcmd
  L[#L + 1] = string.format("set terminal pdfcairo size %gin,%gin font ',10' noenhanced", w / 100, h / 100)
  L[#L + 1] = "set output pdf_out"
  L[#L + 1] = "replot"
  L[#L + 1] = "unset output"
  return table.concat(L, "\n") .. "\n"
end

local function script_text(o)
  local L = script_head(o, {xlabel = "x", ylabel = "y", grid = "set grid"})
  if o.logx then L[#L + 1] = "set logscale x" end
  if o.logy then L[#L + 1] = "set logscale y" end
  if o.logy then L[#L + 1] = "set format y '1e%L'" end
  if o.xrange then L[#L + 1] = set_range("x", o.xrange) end
  script_yrange_extra(L, o)
  local items = {}
  for i, s in ipairs(o.series) do
    local using, style
    if s.err then using, style = "1:2:3", "yerrorlines"
    elseif s.lo then using, style = "1:2:3:4", "yerrorlines"
    else using, style = "1:2", "linespoints" end
    items[#items + 1] = string.format("datafile index %d using %s with %s lw 2 pt %d title %s noenhanced",
      i - 1, using, style, (i - 1) % 13 + 1, gp_str(s.name or ("series " .. i)))
  end
  return script_tail(L, o, "plot " .. table.concat(items, ", \\\n     "))
end

-- write <path>.dat and <path>.gp, then render both figures (shared by lines and bars)
local function emit(fn, o, dat, script)
  local dir, name = dirname(o.path), basename(o.path)
  ensure_dir(dir)
  local out = {dat = o.path .. ".dat", gp = o.path .. ".gp", png = o.path .. ".png", pdf = o.path .. ".pdf"}
  write_atomic(out.dat, dat)
  write_atomic(out.gp, script)
  local cmd = o.gnuplot or "gnuplot"
  if not plot.have_gnuplot(cmd) then
    out.rendered = false
    out.message = string.format("plot.%s: gnuplot ('%s') not found: wrote %s and %s; install gnuplot-nox and run " ..
      "`cd %s && gnuplot %s.gp` to draw the figures", fn, cmd, out.dat, out.gp, dir, name)
    if not o.quiet then io.stderr:write(out.message, "\n") end
    return out
  end
  -- render to temporary names in the figure's directory, then rename both
  local qname = (name:gsub("'", "''"))
  local call = string.format("cd %s && %s -e %s %s 2>&1", shell_quote(dir), shell_quote(cmd),
    shell_quote(string.format("png_out='%s.png.tmp'; pdf_out='%s.pdf.tmp'", qname, qname)), shell_quote(name .. ".gp"))
  local p = io.popen(call, "r")
  local log = p:read("a")
  local ok = p:close()
  if not ok then
    os.remove(out.png .. ".tmp")
    os.remove(out.pdf .. ".tmp")
    out.rendered = false
    out.message = string.format("plot.%s: gnuplot failed on %s:\n%s", fn, out.gp, log)
    if not o.quiet then io.stderr:write(out.message, "\n") end
    return out
  end
  assert(os.rename(out.png .. ".tmp", out.png))
  assert(os.rename(out.pdf .. ".tmp", out.pdf))
  out.rendered = true
  if log ~= "" then out.message = log end -- gnuplot's warnings, if any
  return out
end

local function check_common(fn, o)
  if type(o) ~= "table" then error(string.format("plot.%s: expected an options table", fn), 3) end
  if type(o.path) ~= "string" or o.path == "" then error(string.format("plot.%s: 'path' must be a non-empty string", fn), 3) end
end

-- plot.lines(o) -> {dat, gp, png, pdf, rendered = bool, message = string|nil, undrawable}
function plot.lines(o)
  check_common("lines", o)
  check_series(o)
  local dat, nbad = data_text(o)
  local out = emit("lines", o, dat, script_text(o))
  out.undrawable = nbad
  return out
end

-- ---- grouped bar charts ----

-- plot.bars{path, title, xlabel, ylabel, groups = {{name, bars = {{label, value, err}}}}}:
-- one cluster per group along x, one coloured bar per label (the legend), error bars
-- from err (0 or absent = none drawn). Labels are matched across groups by name, in
-- order of first appearance; a label missing from a group leaves a gap.
local function bar_labels(o)
  if type(o.groups) ~= "table" or #o.groups == 0 then
    error("plot.bars: 'groups' must be a non-empty list of {name =, bars = {{label =, value =, err =}}}", 3)
  end
  local labels, seen = {}, {}
  for i, g in ipairs(o.groups) do
    if type(g.bars) ~= "table" or #g.bars == 0 then
      error(string.format("plot.bars: group #%d (%s): 'bars' must be a non-empty list", i, tostring(g.name)), 3)
    end
    for j, b in ipairs(g.bars) do
      if type(b.value) ~= "number" or (b.err ~= nil and type(b.err) ~= "number") then
        error(string.format("plot.bars: group #%d (%s), bar #%d (%s): value and err must be numbers", i, tostring(g.name), j,
          tostring(b.label)), 3)
      end
      local l = tostring(b.label or ("bar " .. j))
      if not seen[l] then seen[l] = true; labels[#labels + 1] = l end
    end
  end
  return labels
end

-- a data-file string column: double-quoted, inner double quotes replaced
local function dat_str(s) return '"' .. tostring(s):gsub('"', "'") .. '"' end

function plot.bars(o)
  check_common("bars", o)
  local labels = bar_labels(o)
  local bad = {n = 0}
  local lines = {"# " .. tostring(o.title or basename(o.path)), "# group, then value and err per label:"}
  for _, l in ipairs(labels) do lines[#lines + 1] = "#   " .. l end
  for _, g in ipairs(o.groups) do
    local by = {}
    for j, b in ipairs(g.bars) do by[tostring(b.label or ("bar " .. j))] = b end
    local row = {dat_str(g.name)}
    for _, l in ipairs(labels) do
      local b = by[l]
      row[#row + 1] = b and fmt_num(b.value, false, bad) or "NaN"
      row[#row + 1] = b and b.err and fmt_num(b.err, false, bad) or "0"
    end
    lines[#lines + 1] = table.concat(row, " ")
  end
  local L = script_head(o, {xlabel = "", ylabel = "value", grid = "set grid ytics"})
  for _, line in ipairs{
    "set style data histograms",
    "set style histogram errorbars gap 1 lw 1",
    "set style fill solid 0.75 border -1",
    "set boxwidth 0.9",
    "set xzeroaxis lt -1",
    "set xtics nomirror noenhanced",
  } do L[#L + 1] = line end
  -- group names that would run into each other (about 7 px per character at 11 pt over
  -- the ~60% of the width the plot area gets) are slanted
  local longest = 0
  for _, g in ipairs(o.groups) do longest = math.max(longest, #tostring(g.name)) end
  if #o.groups * (longest + 2) * 7 > 0.6 * fig_size(o) then L[#L + 1] = "set xtics rotate by -30" end
  script_yrange_extra(L, o)
  local items = {}
  for i, l in ipairs(labels) do
    items[#items + 1] = string.format("%s using %d:%d%s title %s noenhanced", i == 1 and "datafile" or "''", 2 * i, 2 * i + 1,
      i == 1 and ":xtic(1)" or "", gp_str(l))
  end
  local out = emit("bars", o, table.concat(lines, "\n") .. "\n", script_tail(L, o, "plot " .. table.concat(items, ", \\\n     ")))
  out.undrawable = bad.n
  return out
end

return plot
