-- Experiments: sweeps of policies x learning rates x seeds over one or more tasks, with
-- progress, resumable cells, result files, the paper-style table and a figure.
--
--   local exp = sf.experiment{
--     name = "camelyon_embed",
--     tasks = {{name = "Camelyon17", model = source_model, data = function(seed) ... end}},
--     policies = {{"No fine-tuning", P.none()}, {"All", P.all()}, {"Embedding", P.embed()}},
--     lrs = {1e-3, 1e-4}, seeds = {0, 1, 2}, epochs = 15,
--   }
--   local results = exp:run()
--
-- Each cell (task, policy, seed, lr) is one sf.finetune run from the task's source model;
-- its trajectory is saved under runs/<name>/cells/ and skipped when the experiment is run
-- again with the same configuration. For each (task, policy, seed) the (lr, epoch) with
-- the best target-validation accuracy is selected (ties: the first in lr order, then
-- epoch order) and its test accuracy reported; the table shows mean (sample std, ddof 1)
-- over seeds. Outputs: results.json, results.csv, table.txt, table.md and the figure
-- relative.{png,pdf} with its gnuplot script and data.
local sf = require "surgft.core"
-- NaN (a std over one seed) is written as null: results.json stays valid JSON
local cjson = require("cjson").new()
cjson.encode_invalid_numbers("null")
local train = require "surgft.train"
local P = require "surgft.policy"

local E = {}
local Experiment = {}
Experiment.__index = Experiment

local function fail(fmt, ...) error("experiment: " .. string.format(fmt, ...), 3) end

local OPTIONS = {name = true, tasks = true, policies = true, lrs = true, seeds = true, epochs = true, batch = true,
                 optim = true, weight_decay = true, bn = true, dir = true, baseline = true, verbose = true,
                 every = true, stat_batches = true, label_smoothing = true, resume = true, title = true,
                 test = true}

function E.new(o)
  require("surgft.util").check_options("experiment", o, OPTIONS, 3)
  if type(o.name) ~= "string" or not o.name:match("^[%w_%-]+$") then
    fail("name must be a string of letters, digits, '_' or '-', got %s", tostring(o.name))
  end
  if type(o.tasks) ~= "table" or #o.tasks == 0 then fail("tasks must be a non-empty list") end
  for i, t in ipairs(o.tasks) do
    if type(t) ~= "table" or type(t.name) ~= "string" or not t.model or not t.data then
      fail("tasks[%d] must be {name = string, model = source model, data = target or function(seed)}", i)
    end
  end
  if type(o.policies) ~= "table" or #o.policies == 0 then fail("policies must be a non-empty list of {label, policy}") end
  local policies = {}
  for i, p in ipairs(o.policies) do
    if type(p) ~= "table" or type(p[1]) ~= "string" or p[2] == nil then
      fail("policies[%d] must be {label, policy}, got %s", i, type(p))
    end
    policies[i] = {label = p[1], policy = P.wrap(p[2], p[1])}
  end
  local self = setmetatable({}, Experiment)
  self.name, self.tasks, self.policies = o.name, o.tasks, policies
  self.lrs = o.lrs or {1e-2, 1e-3, 1e-4}
  self.seeds = o.seeds or {0, 1, 2}
  self.cfg = {epochs = o.epochs or 15, batch = o.batch or 64, optim = o.optim or "adam",
              weight_decay = o.weight_decay or 1e-4, bn = o.bn or "eval", every = o.every,
              stat_batches = o.stat_batches, label_smoothing = o.label_smoothing, test = o.test}
  self.dir = o.dir or (train.root_dir() .. "/runs/" .. o.name)
  self.baseline = o.baseline or "All"
  self.verbose = o.verbose ~= false -- false: no progress, no printed table
  self.resume = o.resume ~= false
  self.title = o.title or o.name
  return self
end

-- ---- files ----

local function mkdir(path) os.execute(string.format("mkdir -p '%s'", path:gsub("'", "'\\''"))) end

local function write_atomic(path, text)
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "wb"))
  f:write(text)
  f:close()
  assert(os.rename(tmp, path))
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function slug(s) return (tostring(s):gsub("[^%w]+", "_"):gsub("^_+", ""):gsub("_+$", "")) end

-- ---- cells ----

function Experiment:cells()
  local cells = {}
  for ti, task in ipairs(self.tasks) do
    for pi, p in ipairs(self.policies) do
      for _, seed in ipairs(self.seeds) do
        local lrs = p.policy.empty and {0} or self.lrs
        for _, lr in ipairs(lrs) do
          cells[#cells + 1] = {task = task, ti = ti, pol = p, pi = pi, seed = seed, lr = lr}
        end
      end
    end
  end
  return cells
end

function Experiment:cell_key(c)
  return train.canon{task = c.task.name, policy = c.pol.label, pname = c.pol.policy.name, seed = c.seed, lr = c.lr,
                     cfg = self.cfg, key = c.task.key}
end

function Experiment:cell_path(c)
  return string.format("%s/cells/%s__%s__s%d__lr%s.json", self.dir, slug(c.task.name), slug(c.pol.label), c.seed,
    c.lr == 0 and "none" or string.format("%g", c.lr))
end

local function fmt_time(s)
  if s ~= s or s == math.huge then return "?" end
  s = math.floor(s + 0.5)
  if s >= 3600 then return string.format("%dh%02dm", s // 3600, (s % 3600) // 60) end
  if s >= 60 then return string.format("%dm%02ds", s // 60, s % 60) end
  return string.format("%ds", s)
end

-- one progress line: a bar on a terminal, plain lines otherwise
local function progress(done, total, eta, what, tty)
  if tty then
    local w = 24
    local fill = math.floor(w * done / math.max(total, 1))
    io.stdout:write(string.format("\r[%s%s] %d/%d cells, ETA %s  %-48s", string.rep("#", fill),
      string.rep(".", w - fill), done, total, fmt_time(eta), what:sub(1, 48)))
    if done == total then io.stdout:write("\n") end
  else
    io.stdout:write(string.format("cell %d/%d (ETA %s): %s\n", done, total, fmt_time(eta), what))
  end
  io.stdout:flush()
end

function Experiment:run_cell(c, data)
  local r = train.finetune{model = c.task.model, data = data, policy = c.pol.policy, lr = c.lr > 0 and c.lr or 1e-3,
                           seed = c.seed, epochs = self.cfg.epochs, batch = self.cfg.batch, optim = self.cfg.optim,
                           weight_decay = self.cfg.weight_decay, bn = self.cfg.bn, every = self.cfg.every,
                           stat_batches = self.cfg.stat_batches, label_smoothing = self.cfg.label_smoothing,
                           standardize = c.task.standardize, test = self.cfg.test}
  return {task = c.task.name, policy = c.pol.label, policy_name = c.pol.policy.name, seed = c.seed, lr = c.lr,
          epochs = r.epochs, best = r.best}
end

-- run() -> results {cells, summary, table}
function Experiment:run()
  io.stdout:setvbuf("line") -- progress shows as it happens, also through a pipe
  mkdir(self.dir .. "/cells")
  local cells = self:cells()
  local tty = sf.isatty(1)
  local t_start = os.time()
  local clock_start = os.clock()
  local computed_seconds, computed = 0, 0
  local data_cache = {}
  local results = {}
  local print = self.verbose and print or function() end
  print(string.format("experiment %s: %d tasks x %d policies x %d seeds x %d learning rates = %d cells -> %s",
    self.name, #self.tasks, #self.policies, #self.seeds, #self.lrs, #cells, self.dir))
  -- cells left to compute after cell i (for the ETA): those without a saved result
  local left_after, left = {}, 0
  for i = #cells, 1, -1 do
    left_after[i] = left
    if not (self.resume and read_file(self:cell_path(cells[i]))) then left = left + 1 end
  end
  for i, c in ipairs(cells) do
    local path = self:cell_path(c)
    local key = self:cell_key(c)
    local saved = self.resume and read_file(path)
    local res
    if saved then
      local ok, obj = pcall(cjson.decode, saved)
      if ok and obj.key == key then
        res = obj.result
        res.seed = math.tointeger(res.seed) or res.seed -- JSON numbers come back as floats
      end
    end
    local what = string.format("%s | %s | seed %d%s", c.task.name, c.pol.label, c.seed,
      c.lr > 0 and string.format(" | lr %g", c.lr) or "")
    if not res then
      local dkey = c.ti .. ":" .. c.seed
      if not data_cache[dkey] then
        local d = c.task.data
        if type(d) == "function" then d = d(c.seed) end
        data_cache = {[dkey] = d} -- one task/seed's data at a time
      end
      local t0 = os.clock()
      res = self:run_cell(c, data_cache[dkey])
      res.seconds = os.clock() - t0
      computed_seconds, computed = computed_seconds + res.seconds, computed + 1
      write_atomic(path, cjson.encode{key = key, result = res})
    else
      res.skipped = true
    end
    results[i] = res
    local remaining = left_after[i]
    local eta = computed > 0 and computed_seconds / computed * remaining or (remaining == 0 and 0 or 0 / 0)
    if self.verbose then progress(i, #cells, eta, what .. (res.skipped and " (done before)" or ""), tty) end
  end
  self.results = results
  local summary = self:summarize(results)
  local wall = os.time() - t_start
  self:write_outputs(results, summary, {wall_seconds = wall, cpu_seconds = os.clock() - clock_start,
                                        computed_cells = computed})
  print(self:table_text(summary))
  return {cells = results, summary = summary, dir = self.dir}
end

-- ---- selection and summary ----

-- the selected epoch of one (task, policy, seed): best validation over lrs and epochs
local function select_best(runs)
  local best
  for _, r in ipairs(runs) do
    for _, e in ipairs(r.epochs) do
      if (r.policy_name == "none" or e.epoch > 0) and (not best or e.val > best.val) then
        best = {val = e.val, test = e.test, worst_group = e.worst_group, epoch = e.epoch, lr = r.lr}
      end
    end
  end
  return best
end

local function mean_std(xs)
  local n = #xs
  if n == 0 then return 0 / 0, 0 / 0, 0 end
  local s = 0
  for _, x in ipairs(xs) do s = s + x end
  local m = s / n
  if n < 2 then return m, 0 / 0, n end
  local v = 0
  for _, x in ipairs(xs) do v = v + (x - m) ^ 2 end
  return m, math.sqrt(v / (n - 1)), n
end
E.mean_std = mean_std

function Experiment:summarize(results)
  local groups = {}
  for _, r in ipairs(results) do
    local k = r.task .. "\0" .. r.policy .. "\0" .. r.seed
    groups[k] = groups[k] or {}
    table.insert(groups[k], r)
  end
  local summary = {}
  for _, task in ipairs(self.tasks) do
    summary[task.name] = {}
    local base_by_seed = {}
    for _, seed in ipairs(self.seeds) do
      local g = groups[task.name .. "\0" .. self.baseline .. "\0" .. seed]
      base_by_seed[seed] = g and select_best(g)
    end
    for _, p in ipairs(self.policies) do
      local tests, rel, picks, worst = {}, {}, {}, {}
      for _, seed in ipairs(self.seeds) do
        local g = groups[task.name .. "\0" .. p.label .. "\0" .. seed]
        local best = g and select_best(g)
        if best then
          tests[#tests + 1] = best.test
          if best.worst_group then worst[#worst + 1] = best.worst_group end
          picks[#picks + 1] = {seed = seed, lr = best.lr, epoch = best.epoch, val = best.val, test = best.test,
                               worst_group = best.worst_group}
          if base_by_seed[seed] then rel[#rel + 1] = best.test - base_by_seed[seed].test end
        end
      end
      local m, s, n = mean_std(tests)
      local rm, rs = mean_std(rel)
      local wm, ws = mean_std(worst)
      summary[task.name][p.label] = {mean = m, std = s, n = n, rel_mean = rm, rel_std = rs, picks = picks,
                                     worst_mean = #worst > 0 and wm or nil, worst_std = #worst > 0 and ws or nil}
    end
  end
  return summary
end

-- ---- the table ----

-- metric: "mean" (test accuracy) or "worst" (worst-group test accuracy)
function Experiment:table_rows(summary, metric)
  local mkey, skey = "mean", "std"
  if metric == "worst" then mkey, skey = "worst_mean", "worst_std" end
  local header = {"Parameters tuned"}
  for _, t in ipairs(self.tasks) do header[#header + 1] = t.name end
  local best = {}
  for _, t in ipairs(self.tasks) do
    local b
    for _, p in ipairs(self.policies) do
      local v = summary[t.name][p.label][mkey]
      if v and v == v and (not b or v > b) then b = v end
    end
    best[t.name] = b
  end
  local rows = {}
  for _, p in ipairs(self.policies) do
    local row = {p.label}
    for _, t in ipairs(self.tasks) do
      local s = summary[t.name][p.label]
      local v, sd = s[mkey], s[skey]
      local cell = v and string.format("%.1f", 100 * v) or "-"
      if v and s.n > 1 then cell = cell .. string.format(" (%.1f)", 100 * sd) end
      if v and best[t.name] and math.abs(v - best[t.name]) < 1e-12 then cell = cell .. " *" end
      row[#row + 1] = cell
    end
    rows[#rows + 1] = row
  end
  return header, rows
end

function Experiment:has_worst(summary)
  for _, t in ipairs(self.tasks) do
    for _, p in ipairs(self.policies) do if summary[t.name][p.label].worst_mean then return true end end
  end
  return false
end

function Experiment:table_text(summary, metric)
  local header, rows = self:table_rows(summary, metric)
  local widths = {}
  for j, h in ipairs(header) do widths[j] = #h end
  for _, r in ipairs(rows) do for j, c in ipairs(r) do widths[j] = math.max(widths[j], #c) end end
  local function line(r)
    local parts = {}
    for j, c in ipairs(r) do
      parts[j] = j == 1 and (c .. string.rep(" ", widths[j] - #c)) or (string.rep(" ", widths[j] - #c) .. c)
    end
    return table.concat(parts, "  ")
  end
  local what = metric == "worst" and "worst-group target test accuracy" or "target test accuracy"
  local out = {string.format("%s: %s (%%), mean (std) over %d seeds; * = best", self.title, what, #self.seeds),
               line(header)}
  local total = 0
  for _, w in ipairs(widths) do total = total + w + 2 end
  out[#out + 1] = string.rep("-", total - 2)
  for _, r in ipairs(rows) do out[#out + 1] = line(r) end
  if metric == nil and self:has_worst(summary) then
    return table.concat(out, "\n") .. "\n\n" .. self:table_text(summary, "worst")
  end
  return table.concat(out, "\n")
end

function Experiment:table_markdown(summary, metric)
  local header, rows = self:table_rows(summary, metric)
  local out = {"| " .. table.concat(header, " | ") .. " |", "|" .. string.rep("---|", #header)}
  for _, r in ipairs(rows) do out[#out + 1] = "| " .. table.concat(r, " | ") .. " |" end
  local md = table.concat(out, "\n") .. "\n"
  if metric == nil and self:has_worst(summary) then
    md = md .. "\nWorst-group accuracy:\n\n" .. self:table_markdown(summary, "worst")
  end
  return md
end

-- ---- outputs ----

local function git_commit()
  local p = io.popen("git -C '" .. train.root_dir() .. "' rev-parse HEAD 2>/dev/null")
  local c = p and p:read("l")
  if p then p:close() end
  return c or "unknown"
end

function Experiment:write_outputs(results, summary, timing)
  local cfg = {name = self.name, lrs = self.lrs, seeds = self.seeds, tasks = {}, policies = {}, baseline = self.baseline}
  for k, v in pairs(self.cfg) do cfg[k] = v end
  for i, t in ipairs(self.tasks) do cfg.tasks[i] = {name = t.name, info = t.info} end
  for i, p in ipairs(self.policies) do cfg.policies[i] = {label = p.label, policy = p.policy.name} end
  local doc = {config = cfg, versions = {surgft = sf.version, lua = _VERSION, openblas = sf.blas_config(),
                                         threads = sf.threads()},
               git_commit = git_commit(), timing = timing, summary = summary, cells = results}
  write_atomic(self.dir .. "/results.json", cjson.encode(doc))
  local csv = {"task,policy,policy_name,seed,lr,epoch,loss,val_acc,test_acc,trainable_tensors,selected"}
  for _, r in ipairs(results) do
    local pick
    for _, pk in ipairs(summary[r.task][r.policy].picks) do
      if pk.seed == r.seed and pk.lr == r.lr then pick = pk.epoch end
    end
    for _, e in ipairs(r.epochs) do
      csv[#csv + 1] = string.format("%q,%q,%s,%d,%g,%d,%s,%.6f,%s,%d,%s", r.task, r.policy, r.policy_name, r.seed,
        r.lr, e.epoch, e.loss and string.format("%.6f", e.loss) or "", e.val, e.test and string.format("%.6f", e.test) or "", e.trainable or 0,
        tostring(pick == e.epoch))
    end
  end
  write_atomic(self.dir .. "/results.csv", table.concat(csv, "\n") .. "\n")
  write_atomic(self.dir .. "/table.txt", self:table_text(summary) .. "\n")
  write_atomic(self.dir .. "/table.md", self:table_markdown(summary))
  self:figure(summary)
end

-- accuracy relative to the baseline (full fine-tuning) per subset, with error bars
function Experiment:figure(summary)
  local ok, plot = pcall(require, "surgft.plot")
  if not ok or not plot.bars then
    if self.verbose then print("experiment: figure skipped (surgft.plot with bar charts is not available)") end
    return
  end
  local groups = {}
  for _, t in ipairs(self.tasks) do
    local bars = {}
    for _, p in ipairs(self.policies) do
      local s = summary[t.name][p.label]
      bars[#bars + 1] = {label = p.label, value = 100 * s.rel_mean, err = s.rel_std == s.rel_std and 100 * s.rel_std or 0}
    end
    groups[#groups + 1] = {name = t.name, bars = bars}
  end
  plot.bars{path = self.dir .. "/relative", title = self.title .. ": test accuracy relative to " .. self.baseline,
            ylabel = "accuracy - " .. self.baseline .. " (points)", groups = groups}
end

-- ---- curves: accuracy against a task variable ----

-- curve_series(summary, tasks, labels[, x]) -> plot.lines series, one per policy label:
-- x = the task's x value (x(task), or task.size when x is absent), y = mean test accuracy
-- (%), err = its std over seeds (0 with one seed, where there is no spread to draw).
-- Tasks are sorted by x; a task without a number for x is an error.
function E.curve_series(summary, tasks, labels, x)
  local xof = x or function(t) return t.size end
  local pts = {}
  for i, t in ipairs(tasks) do
    local v = xof(t)
    if type(v) ~= "number" then
      error(string.format("experiment.curve_series: task #%d (%s) has no numeric x (got %s)", i, tostring(t.name),
        tostring(v)), 2)
    end
    pts[#pts + 1] = {x = v, name = t.name}
  end
  table.sort(pts, function(a, b) return a.x < b.x end)
  local series = {}
  for _, label in ipairs(labels) do
    local s = {name = label, x = {}, y = {}, err = {}}
    for _, p in ipairs(pts) do
      local e = summary[p.name] and summary[p.name][label]
      if not e then
        error(string.format("experiment.curve_series: no result for task '%s', policy '%s'", p.name, label), 2)
      end
      s.x[#s.x + 1] = p.x
      s.y[#s.y + 1] = 100 * e.mean
      local sd = e.std -- NaN with one seed; null (cjson.null) in a summary read back from results.json
      s.err[#s.err + 1] = type(sd) == "number" and sd == sd and 100 * sd or 0
    end
    series[#series + 1] = s
  end
  return series
end

-- plot_curves{results = exp:run()'s result, tasks, labels, x, path (default
-- <results.dir>/<name>), name = "curves", title, xlabel, ylabel, logx = true, gnuplot,
-- quiet} -> plot.lines' result: accuracy against x with error bars over seeds, written
-- as PNG + PDF with the .gp script and .dat data beside them (only those two without gnuplot)
function E.plot_curves(o)
  local series = E.curve_series(o.results.summary, o.tasks, o.labels, o.x)
  local path = o.path or (o.results.dir .. "/" .. (o.name or "curves"))
  -- a tic at every x value, and some room at both ends (the error bars' whiskers)
  local xs, tics = series[1].x, {}
  for i, v in ipairs(xs) do tics[i] = string.format("%g", v) end
  local logx = o.logx ~= false
  local lo, hi = xs[1], xs[#xs]
  local pad = logx and 1.25 or 0.05 * math.max(hi - lo, 1)
  local xrange = logx and {lo / pad, hi * pad} or {lo - pad, hi + pad}
  local out = require("surgft.plot").lines{path = path, title = o.title, xlabel = o.xlabel, ylabel = o.ylabel or
    "target test accuracy (%)", logx = logx, series = series, gnuplot = o.gnuplot, quiet = o.quiet,
    key = o.key, xrange = xrange, extra = {"set xtics (" .. table.concat(tics, ", ") .. ")"}}
  out.series = series
  return out
end

E.Experiment = Experiment
return E
