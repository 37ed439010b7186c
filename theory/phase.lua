-- Where each method succeeds: the input-shift construction of input_shift.lua swept over
-- the number of target samples n, the dimensions d and k, and the dimension m of the
-- shifted subspace. Run:
--   surgft-lua theory/phase.lua [ns=2,4,...] [seeds=0,1,2] [setting=d,k,m] [out=runs/theory]
--
-- For every setting (d, k, m), n and seed: the construction of input_shift.lua (balanced
-- scale, alpha = 3; n/2 samples in the unchanged subspace U, n - n/2 in the shifted S),
-- then first-layer, last-layer and full fine-tuning by small-step gradient descent until
-- the training loss is <= 1e-12 x its start, stops moving, or the step cap. The measure is
-- the final population target loss relative to the source model's, L/L0; a method
-- "succeeds" when L/L0 <= 1e-6.
--
-- What the theory predicts (n_S = n - n/2 samples in S, n_U = n/2 in U):
--   first layer: succeeds iff the S samples span S (n_S >= m): its correction lives in
--     span(X) and U needs none. Asserted (runs whose descent converged).
--   last layer: with k < d, w* leaves row(B_src): fails for every n. Asserted. With
--     k = d (B_src orthogonal) it is the same regression as the first layer: reported.
--   full fine-tuning: forgets unseen U directions while n_U < d - m; once the samples
--     span R^d the interpolant is unique and it succeeds. Asserted for n_U >= d - m and
--     n_S >= m (converged runs); the region in between is reported.
-- Writes <out>/phase.csv (one row per run) and <out>/phase_d<d>_k<k>_m<m>.{dat,gp,png,pdf}
-- (L/L0 vs n per method: geometric mean over seeds, bars from the best to the worst seed).
local sf = require "surgft"
local here = (debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./")
package.path = here .. "../?.lua;" .. package.path
local C = require "theory.common"
local IS = require "theory.input_shift"
local plot = require "surgft.plot"

local M = {}

M.defaults = {
  settings = {{d = 40, k = 20, m = 3}, {d = 40, k = 40, m = 3}, {d = 40, k = 20, m = 8}, {d = 20, k = 10, m = 3}},
  ns = {2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 80, 96},
  seeds = {0, 1, 2},
  alpha = 3, scale = "balanced", steps = 10000, tol = 1e-12, stall = 1000, lr_frac = 0.2,
  out = "runs/theory", plots = true, setting = false,
}

M.SUCCESS = 1e-6   -- L/L0 at or below this: the method reached ~zero population loss
M.CONVERGED = 1e-10 -- train loss / initial train loss at or below this: the descent converged

local METHODS = {"first", "last", "all"}

local function run_one(o, st, n, seed)
  local c = IS.construct{d = st.d, k = st.k, m = st.m, alpha = o.alpha, n = n, scale = o.scale, rng = sf.rng(seed)}
  local lr = C.step_size(c.X, c.B, c.v, o.lr_frac)
  local L0 = c.pop(c.B, c.v)
  local res = {}
  for _, method in ipairs(METHODS) do
    local g = C.gd{X = c.X, y = c.y, B = c.B, v = c.v, train = method, lr = lr, steps = o.steps, tol = o.tol,
                   stall = o.stall}
    local pop = g.diverged and math.huge or c.pop(g.B, g.v)
    res[method] = {d = st.d, k = st.k, m = st.m, alpha = o.alpha, n = n, n_s = n - n // 2, n_u = n // 2, seed = seed,
                   method = method, L0 = L0, pop = pop, rel = pop / L0, train_rel = g.train_loss / g.initial_loss,
                   steps = g.steps, converged = g.train_loss <= M.CONVERGED * g.initial_loss}
    res[method].success = res[method].rel <= M.SUCCESS
  end
  return res
end

local CSV_COLUMNS = {"d", "k", "m", "alpha", "n", "n_s", "n_u", "seed", "method", "L0", "pop", "rel", "train_rel", "steps",
                     "converged", "success"}

local function write_csv(path, records)
  local lines = {table.concat(CSV_COLUMNS, ",")}
  for _, r in ipairs(records) do
    local cells = {}
    for i, col in ipairs(CSV_COLUMNS) do
      local val = r[col]
      if type(val) == "number" and math.type(val) ~= "integer" then cells[i] = string.format("%.6g", val)
      else cells[i] = tostring(val) end
    end
    lines[#lines + 1] = table.concat(cells, ",")
  end
  os.execute("mkdir -p '" .. path:match("^(.*)/[^/]*$"):gsub("'", "'\\''") .. "'")
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "w"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
  assert(os.rename(tmp, path))
end

local function geomean(xs)
  local s = 0
  for _, x in ipairs(xs) do s = s + math.log(math.max(x, 1e-300)) end
  return math.exp(s / #xs)
end

-- run(opts) -> {records, table = per setting/n summaries, claims, files}
function M.run(opts)
  local o = C.options(M.defaults, opts, "phase")
  if type(o.seeds) == "number" then o.seeds = {o.seeds} end
  if type(o.ns) == "number" then o.ns = {o.ns} end
  if o.setting then
    local s = o.setting
    if type(s) ~= "table" or #s ~= 3 then error("phase: setting must be d,k,m", 0) end
    o.settings = {{d = s[1], k = s[2], m = s[3]}}
  end
  local out = {records = {}, summary = {}, claims = {}, opts = o, files = {}}
  -- claim bookkeeping
  local first_ok, last_ok, all_ok, nonconv = true, true, true, 0
  local n_first, n_last, n_all = 0, 0, 0
  for _, st in ipairs(o.settings) do
    local rows = {setting = st, ns = {}}
    for _, n in ipairs(o.ns) do
      local per = {first = {}, last = {}, all = {}}
      for _, seed in ipairs(o.seeds) do
        local res = run_one(o, st, n, seed)
        for _, method in ipairs(METHODS) do
          local r = res[method]
          out.records[#out.records + 1] = r
          per[method][#per[method] + 1] = r
          if not r.converged then nonconv = nonconv + 1 end
          if method == "first" and (r.converged or r.n_s < st.m) then
            n_first = n_first + 1
            if (r.n_s >= st.m) ~= r.success then first_ok = false end
          elseif method == "last" and st.k < st.d then
            n_last = n_last + 1
            if r.success then last_ok = false end
          elseif method == "all" and r.n_u >= st.d - st.m and r.n_s >= st.m and r.converged then
            n_all = n_all + 1
            if not r.success then all_ok = false end
          end
        end
      end
      local s = {n = n}
      for _, method in ipairs(METHODS) do
        local rels, nsucc = {}, 0
        for i, r in ipairs(per[method]) do
          rels[i] = r.rel
          if r.success then nsucc = nsucc + 1 end
        end
        s[method] = {gmean = geomean(rels), min = C.min(rels), max = C.max(rels), nsucc = nsucc, nrun = #rels}
      end
      rows.ns[#rows.ns + 1] = s
    end
    out.summary[#out.summary + 1] = rows
  end
  local cl = out.claims
  cl[#cl + 1] = {text = string.format("first layer succeeds iff the S samples span S (n_S >= m) (%d runs)", n_first),
                 ok = first_ok and n_first > 0}
  if n_last > 0 then
    cl[#cl + 1] = {text = string.format("last layer fails for every n when k < d (%d runs)", n_last), ok = last_ok}
  end
  if n_all > 0 then
    cl[#cl + 1] = {text = string.format("full fine-tuning succeeds once the samples span R^d (%d runs)", n_all), ok = all_ok}
  end
  out.nonconverged = nonconv
  -- outputs
  if o.out and o.out ~= "" then
    out.files.csv = o.out .. "/phase.csv"
    write_csv(out.files.csv, out.records)
    if o.plots then
      for _, rows in ipairs(out.summary) do
        local st = rows.setting
        local series = {}
        local names = {first = "first layer", last = "last layer", all = "all layers"}
        for _, method in ipairs(METHODS) do
          local s = {name = names[method], x = {}, y = {}, lo = {}, hi = {}}
          for i, e in ipairs(rows.ns) do
            s.x[i], s.y[i], s.lo[i], s.hi[i] = e.n, e[method].gmean, e[method].min, e[method].max
          end
          series[#series + 1] = s
        end
        local path = string.format("%s/phase_d%d_k%d_m%d", o.out, st.d, st.k, st.m)
        local r = plot.lines{path = path, title = string.format(
            "input shift on an m-dim subspace: d = %d, k = %d, m = %d, alpha = %g (%d seeds)", st.d, st.k, st.m, o.alpha, #o.seeds),
          xlabel = "target samples n", ylabel = "population target loss / source model's (L/L0)", logx = true, logy = true,
          series = series, key = "bottom left",
          extra = {string.format("set arrow from graph 0, first %g to graph 1, first %g nohead dt 2 lc rgb 'gray40'", M.SUCCESS, M.SUCCESS)}}
        out.files[#out.files + 1] = r
      end
    end
  end
  return out
end

function M.print(out)
  local o = out.opts
  for _, rows in ipairs(out.summary) do
    local st = rows.setting
    print(string.format("d = %d, k = %d, m = %d, alpha = %g: population loss / L0, geometric mean over %d seed(s) " ..
      "(successes = runs with L/L0 <= %g)", st.d, st.k, st.m, o.alpha, #o.seeds, M.SUCCESS))
    local t = {}
    for _, e in ipairs(rows.ns) do
      t[#t + 1] = {e.n, (e.n - e.n // 2) .. "/" .. (e.n // 2), e.first.gmean, e.first.nsucc .. "/" .. e.first.nrun,
                   e.last.gmean, e.last.nsucc .. "/" .. e.last.nrun, e.all.gmean, e.all.nsucc .. "/" .. e.all.nrun}
    end
    C.print_table({"n", "n_S/n_U", "first", "ok", "last", "ok", "all", "ok"}, t)
    print()
  end
  print(string.format("  %d of %d runs stopped before the training loss reached %g x its start (the step cap or a stall)",
    out.nonconverged, #out.records, M.CONVERGED))
  if out.files.csv then print("  wrote " .. out.files.csv) end
  for _, f in ipairs(out.files) do
    print("  wrote " .. f.dat .. ", " .. f.gp .. (f.rendered and (", " .. f.png .. ", " .. f.pdf) or " (not rendered)"))
  end
  print()
  return C.report_claims(out.claims)
end

C.main("theory.phase", ..., function(argv)
  local out = M.run(C.parse_args(argv, M.defaults, "phase"))
  return M.print(out)
end)

return M
