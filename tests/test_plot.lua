-- surgft.plot: the data and script files, rendering through gnuplot (when installed),
-- error bars, log-axis handling, the missing-gnuplot and failed-render paths, bad input.
local lu = require "luaunit"
local plot = require "surgft.plot"

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function exists(path) return read(path) ~= nil end

local dir
local function fresh_dir()
  dir = os.tmpname()
  os.remove(dir)
  return dir .. "/sub/dir"   -- nested: plot.lines creates it
end

local function cleanup()
  if dir and dir:match("^/tmp/") then os.execute("rm -rf '" .. dir .. "'") end
end

local function two_series()
  return {{name = "first layer", x = {1, 2, 4}, y = {1, 0.01, 0}},
          {name = "it's all", x = {1, 2, 4}, y = {1, 0.5, 0.25}, lo = {0.9, 0.4, 0.2}, hi = {1.1, 0.6, 0.3}},
          {name = "sym", x = {1, 2, 4}, y = {2, 1, 0.5}, err = {0.1, 0.1, 0.1}}}
end

TestPlot = {}

function TestPlot:tearDown() cleanup() end

function TestPlot:test_data_and_script()
  local base = fresh_dir() .. "/fig"
  local r = plot.lines{path = base, title = "t 'q'", xlabel = "n", ylabel = "loss", logx = true, logy = true,
                       series = two_series(), gnuplot = "/nonexistent/gnuplot", quiet = true}
  lu.assertEquals(r.dat, base .. ".dat")
  local dat = read(r.dat)
  -- three blocks separated by two blank lines; y = 0 on a log axis becomes NaN
  local _, blank_pairs = dat:gsub("\n\n\n", "")
  lu.assertEquals(blank_pairs, 2)
  lu.assertStrContains(dat, "# series 0: first layer\n# x y\n1 1\n2 0.01\n4 NaN\n")
  lu.assertStrContains(dat, "# x y lo hi\n1 1 0.9 1.1\n")
  lu.assertStrContains(dat, "# x y err\n1 2 0.1\n")
  lu.assertStrContains(dat, "# 1 value(s) not drawable")
  lu.assertEquals(r.undrawable, 1)
  local gp = read(r.gp)
  lu.assertStrContains(gp, "set logscale x")
  lu.assertStrContains(gp, "set logscale y")
  lu.assertStrContains(gp, "set title 't ''q'''")
  lu.assertStrContains(gp, "datafile index 0 using 1:2 with linespoints")
  lu.assertStrContains(gp, "datafile index 1 using 1:2:3:4 with yerrorlines")
  lu.assertStrContains(gp, "datafile index 2 using 1:2:3 with yerrorlines")
  lu.assertStrContains(gp, "title 'it''s all'")
  lu.assertStrContains(gp, "set terminal pngcairo")
  lu.assertStrContains(gp, "set terminal pdfcairo")
  -- linear axes: no logscale, 0 stays a number
  local r2 = plot.lines{path = base .. "2", series = {{name = "a", x = {0, 1}, y = {0, -1}}}, gnuplot = "/nonexistent/gnuplot",
                        quiet = true}
  lu.assertNotStrContains(read(r2.gp), "logscale")
  lu.assertStrContains(read(r2.dat), "0 0\n1 -1\n")
end

function TestPlot:test_without_gnuplot()
  local base = fresh_dir() .. "/fig"
  local r = plot.lines{path = base, series = two_series(), gnuplot = "/nonexistent/gnuplot", quiet = true}
  lu.assertFalse(r.rendered)
  lu.assertStrContains(r.message, "gnuplot ('/nonexistent/gnuplot') not found")
  lu.assertStrContains(r.message, "fig.gp")
  lu.assertTrue(exists(base .. ".dat") and exists(base .. ".gp"))
  lu.assertFalse(exists(base .. ".png"))
  lu.assertFalse(exists(base .. ".pdf"))
end

function TestPlot:test_renders_png_and_pdf()
  if not plot.have_gnuplot() then lu.skip("gnuplot is not installed") end
  local base = fresh_dir() .. "/fig"
  local r = plot.lines{path = base, title = "render", logy = true, series = two_series()}
  lu.assertTrue(r.rendered, r.message)
  lu.assertEquals(read(base .. ".png"):sub(1, 8), "\137PNG\r\n\26\n")
  lu.assertEquals(read(base .. ".pdf"):sub(1, 5), "%PDF-")
  lu.assertFalse(exists(base .. ".png.tmp"))
  lu.assertFalse(exists(base .. ".pdf.tmp"))
  lu.assertFalse(exists(base .. ".gp.tmp"))
  -- the script redraws on its own from its directory
  local d = base:match("^(.*)/")
  os.remove(base .. ".png")
  lu.assertTrue(os.execute("cd '" .. d .. "' && gnuplot fig.gp 2>/dev/null"))
  lu.assertEquals(read(base .. ".png"):sub(1, 4), "\137PNG")
end

function TestPlot:test_gnuplot_failure_leaves_no_figure()
  if not plot.have_gnuplot() then lu.skip("gnuplot is not installed") end
  local base = fresh_dir() .. "/fig"
  local r = plot.lines{path = base, series = two_series(), extra = {"this is not gnuplot"}, quiet = true}
  lu.assertFalse(r.rendered)
  lu.assertStrContains(r.message, "plot.lines: gnuplot failed on " .. base .. ".gp")
  lu.assertFalse(exists(base .. ".png"))
  lu.assertFalse(exists(base .. ".png.tmp"))
  lu.assertFalse(exists(base .. ".pdf.tmp"))
  lu.assertTrue(exists(base .. ".dat"))
end

function TestPlot:test_errors()
  local p = "/tmp/never-written"
  lu.assertErrorMsgContains("plot.lines: expected an options table", plot.lines, "x")
  lu.assertErrorMsgContains("plot.lines: 'path' must be a non-empty string", plot.lines, {series = two_series()})
  lu.assertErrorMsgContains("plot.lines: 'series' must be a non-empty list", plot.lines, {path = p, series = {}})
  lu.assertErrorMsgContains("plot.lines: series #1 (a): x has 2 values, y has 1", plot.lines,
    {path = p, series = {{name = "a", x = {1, 2}, y = {1}}}})
  lu.assertErrorMsgContains("plot.lines: series #2 (b): x and y must be lists of numbers", plot.lines,
    {path = p, series = {{name = "a", x = {1}, y = {1}}, {name = "b", x = 1, y = {1}}}})
  lu.assertErrorMsgContains("plot.lines: series #1 (a): x[2] and y[2] must be numbers", plot.lines,
    {path = p, series = {{name = "a", x = {1, 2}, y = {1, "z"}}}})
  lu.assertErrorMsgContains("plot.lines: series #1 (a): lo and hi go together", plot.lines,
    {path = p, series = {{name = "a", x = {1}, y = {1}, lo = {0}}}})
  lu.assertErrorMsgContains("plot.lines: series #1 (a): err must be a list of 1 numbers", plot.lines,
    {path = p, series = {{name = "a", x = {1}, y = {1}, err = {0, 1}}}})
  lu.assertErrorMsgContains("plot.lines: series #1 (a): give err or lo/hi, not both", plot.lines,
    {path = p, series = {{name = "a", x = {1}, y = {1}, err = {0}, lo = {0}, hi = {1}}}})
  lu.assertFalse(exists(p .. ".dat"))
end

TestBars = {}

function TestBars:tearDown() cleanup() end

local function groups()
  return {{name = "fog \"5\"", bars = {{label = "All", value = 0, err = 1.5}, {label = "Block 1", value = 3.2, err = 0.4}}},
          {name = "flip", bars = {{label = "Last layer", value = -2}, {label = "All", value = 0, err = 0.5}}}}
end

function TestBars:test_data_script_and_render()
  local base = fresh_dir() .. "/rel"
  local r = plot.bars{path = base, title = "relative", ylabel = "points", groups = groups(), gnuplot = "/nonexistent/gnuplot",
                      quiet = true}
  lu.assertFalse(r.rendered)
  local dat = read(r.dat)
  -- labels in order of first appearance; missing bars are gaps (NaN), missing err 0
  lu.assertStrContains(dat, "#   All\n#   Block 1\n#   Last layer\n")
  lu.assertStrContains(dat, "\"fog '5'\" 0 1.5 3.2 0.4 NaN 0\n")
  lu.assertStrContains(dat, "\"flip\" 0 0.5 NaN 0 -2 0\n")
  local gp = read(r.gp)
  lu.assertStrContains(gp, "set style histogram errorbars")
  lu.assertStrContains(gp, "datafile using 2:3:xtic(1) title 'All'")
  lu.assertStrContains(gp, "'' using 6:7 title 'Last layer'")
  lu.assertNotStrContains(gp, "rotate", "two short group names stay level")
  -- six long names would collide: slanted
  local many = {}
  for i = 1, 6 do many[i] = {name = "corruption_name_" .. i, bars = {{label = "All", value = i}}} end
  local r3 = plot.bars{path = base .. "-many", groups = many, gnuplot = "/nonexistent/gnuplot", quiet = true}
  lu.assertStrContains(read(r3.gp), "set xtics rotate by -30")
  if plot.have_gnuplot() then
    local r2 = plot.bars{path = base, title = "relative", ylabel = "points", groups = groups()}
    lu.assertTrue(r2.rendered, r2.message)
    lu.assertEquals(read(base .. ".png"):sub(1, 4), "\137PNG")
    lu.assertEquals(read(base .. ".pdf"):sub(1, 5), "%PDF-")
  end
end

function TestBars:test_errors()
  local p = "/tmp/never-written-bars"
  lu.assertErrorMsgContains("plot.bars: 'path' must be a non-empty string", plot.bars, {groups = groups()})
  lu.assertErrorMsgContains("plot.bars: 'groups' must be a non-empty list", plot.bars, {path = p, groups = {}})
  lu.assertErrorMsgContains("plot.bars: group #1 (a): 'bars' must be a non-empty list", plot.bars,
    {path = p, groups = {{name = "a", bars = {}}}})
  lu.assertErrorMsgContains("plot.bars: group #1 (a), bar #2 (y): value and err must be numbers", plot.bars,
    {path = p, groups = {{name = "a", bars = {{label = "x", value = 1}, {label = "y", value = "1"}}}}})
  lu.assertFalse(exists(p .. ".dat"))
end

-- lines and bars scripts share their start and end: output names that -e can override,
-- the data file, title, labels, key, and the PNG-then-PDF tail at the figure's size
function TestBars:test_script_shares_head_and_tail_with_lines()
  local base = os.tmpname()
  local common = {title = "T", key = "top left", width = 500, height = 300, yrange = {0, 1}, extra = {"set ytics 0.25"},
                  gnuplot = "/nonexistent/gnuplot", quiet = true}
  local function with(o)
    for k, v in pairs(common) do o[k] = v end
    return o
  end
  local rb = plot.bars(with{path = base .. "-b", groups = groups()})
  local rl = plot.lines(with{path = base .. "-l", series = {{name = "s", x = {1}, y = {1}}}})
  local gps = {}
  for i, r in ipairs{rb, rl} do
    local gp, name = read(r.gp), r.gp:match("([^/]+)%.gp$")
    lu.assertStrContains(gp, "# " .. name .. ".gp: redraw with `gnuplot " .. name .. ".gp` in this directory\n" ..
      "# (pass -e \"png_out='a.png'; pdf_out='a.pdf'\" to choose other output names)\n" ..
      "if (!exists('png_out')) png_out = '" .. name .. ".png'\n")
    lu.assertStrContains(gp, "set title 'T'\n")
    lu.assertStrContains(gp, "set yrange [0:1]\nset ytics 0.25\n")
    lu.assertStrContains(gp, "set terminal pngcairo size 500,300 font ',11' noenhanced\nset output png_out\nplot ")
    lu.assertStrContains(gp, "set terminal pdfcairo size 5in,3in font ',10' noenhanced\nset output pdf_out\n" ..
      "replot\nunset output\n")
    gps[i] = gp
    os.remove(r.dat)
    os.remove(r.gp)
  end
  os.remove(base)
  -- each kind keeps its own label defaults and grid
  lu.assertStrContains(gps[1], "set xlabel ''\nset ylabel 'value'\nset key top left noenhanced\nset grid ytics\n")
  lu.assertStrContains(gps[2], "set xlabel 'x'\nset ylabel 'y'\nset key top left noenhanced\nset grid\n")
end

os.exit(lu.LuaUnit.run())
