-- The workbench: policies, the fine-tuning protocol, automatic criteria against hand
-- computations, and the experiment runner's selection, resumption and result files.
local lu = require "luaunit"
local sf = require "surgft"
local cjson = require "cjson"
local P = sf.policy

-- a small seeded task: the class is the sign of an image's mean; the target is shifted
local function make(rng, n, shift, name)
  local x = sf.randn({n, 1, 8, 8}, rng)
  local y = sf.zeros(n)
  for i = 1, n do y:set(i, x:select(1, i):mean() > 0 and 2 or 1) end
  if shift then x:mul_(2):add_(0.5) end
  return sf.data.dataset{x = x, y = y, classes = {"neg", "pos"}, name = name or "toy"}
end

local function source_model()
  local rng = sf.rng(11)
  local src = {train = make(rng, 256), val = make(rng, 64)}
  return sf.pretrain{arch = {"cnn", {in_channels = 1, widths = {4, 8}, classes = 2}}, data = src, epochs = 1,
                     lr = 0.05, cache = false, verbose = false}
end

local SRC = source_model()
local function target(seed)
  local rng = sf.rng(100 + seed)
  return {train = make(rng, 64, true), val = make(rng, 32, true), test = make(rng, 64, true)}
end

TestPolicies = {}

function TestPolicies:test_builtin_selections()
  local m = SRC:clone()
  local ctx = P.context{model = m}
  local function trains(policy)
    P.apply(m, policy.select(ctx), policy.empty)
    local out = {}
    for _, rec in ipairs(m:parameters()) do if rec.trainable then out[#out + 1] = rec.name end end
    return table.concat(out, " ")
  end
  lu.assertEquals(m:blocks(), {"block1", "block2", "head"})
  lu.assertEquals(trains(P.first(1)), "block1.conv.weight block1.bn.weight block1.bn.bias")
  lu.assertEquals(trains(P.last(1)), "head.fc.weight head.fc.bias")
  lu.assertEquals(trains(P.last_layer()), "head.fc.weight head.fc.bias")
  lu.assertEquals(trains(P.blocks{"block2"}), "block2.conv.weight block2.bn.weight block2.bn.bias")
  lu.assertEquals(trains(P.pattern("%.bn%.")), "block1.bn.weight block1.bn.bias block2.bn.weight block2.bn.bias")
  lu.assertEquals(trains(P.none()), "")
  lu.assertEquals(#m:parameters(), select(2, trains(P.all()):gsub("%S+", "")))
  -- a parameter name overrides its block's scale
  P.apply(m, {block2 = 1, ["block2.bn.bias"] = 0.5})
  lu.assertEquals(m:parameter("block2.bn.bias").lr_scale, 0.5)
  lu.assertEquals(m:parameter("block2.bn.weight").lr_scale, 1)
end

function TestPolicies:test_selection_errors()
  local m = SRC:clone()
  lu.assertErrorMsgContains("policy: 'block7' matches no block and no parameter (blocks: block1, block2, head)",
    P.apply, m, {block7 = 1})
  lu.assertErrorMsgContains("leaves no parameter trainable", P.apply, m, {})
  lu.assertErrorMsgContains("lr scale for 'head' must be a number >= 0", P.apply, m, {head = -1})
  local ctx = P.context{model = m}
  lu.assertErrorMsgContains("policy.pattern: 'nothing' matches no parameter", P.pattern("nothing").select, ctx)
  lu.assertErrorMsgContains("policy.first(5): the model has only 3 blocks", P.first(5).select, ctx)
  lu.assertErrorMsgContains("k must be a positive integer", P.last, 0)
  lu.assertErrorMsgContains("expected a function or a policy", P.wrap, 3)
  lu.assertErrorMsgContains("variant must be 'paper' or 'code'", P.auto_rgn, {variant = "x"})
end

function TestPolicies:test_report()
  local m = SRC:clone()
  P.apply(m, {head = 0.5})
  m:set_bn_mode("eval")
  local r = P.report(m)
  lu.assertStrContains(r, "head.fc.weight")
  lu.assertStrContains(r, "2 tensors train")
  lu.assertStrContains(r, "norm layer block1.bn (BatchNorm2d): mode eval (explicit)")
end

TestAuto = {}

-- Auto-RGN's scales are ||g|| / ||theta|| over the first batches, divided by the maximum
function TestAuto:test_rgn_matches_hand_computation()
  local m = SRC:clone()
  m:set_bn_mode("eval")
  local data = target(0)
  local x, y = data.train:tensors()
  local xb, yb = x:narrow(1, 1, 32), y:narrow(1, 1, 32)
  local ctx = P.context{model = m, stat_batches = 1, loss = sf.nn.cross_entropy,
                        batches = function()
                          local done = false
                          return function() if not done then done = true; return xb, yb end end
                        end}
  local scales = P.auto_rgn().select(ctx)
  -- by hand: one batch, every parameter trainable
  m:set_trainable(true)
  m:zero_grad()
  local _, d = sf.nn.cross_entropy(m:forward(xb), yb)
  m:backward(xb, d, false)
  local rgn, mx = {}, 0
  for _, rec in ipairs(m:parameters()) do
    rgn[rec.name] = rec.grad:norm() / rec.value:norm()
    mx = math.max(mx, rgn[rec.name])
  end
  for name, v in pairs(rgn) do lu.assertAlmostEquals(scales[name], v / mx, 1e-5) end
end

-- per-example SNR against an explicit loop over examples
function TestAuto:test_snr_matches_per_example_loop()
  local m = SRC:clone()
  m:set_bn_mode("eval")
  local x, y = target(1).train:tensors()
  local xb, yb = x:narrow(1, 1, 6), y:narrow(1, 1, 6)
  local ctx = P.context{model = m, stat_batches = 1, loss = sf.nn.cross_entropy,
                        batches = function()
                          local done = false
                          return function() if not done then done = true; return xb, yb end end
                        end}
  local snr = ctx:snr()
  m:set_trainable(true)
  local name = "head.fc.weight"
  local per = {}
  for i = 1, 6 do
    m:zero_grad()
    local _, d = sf.nn.cross_entropy(m:forward(xb:narrow(1, i, 1)), yb:narrow(1, i, 1))
    m:backward(xb:narrow(1, i, 1), d, false)
    per[i] = m:parameter(name).grad:clone():reshape(1, -1)
  end
  local stack = sf.zeros(6, per[1]:size(2))
  for i = 1, 6 do stack:narrow(1, i, 1):copy(per[i]) end
  lu.assertAlmostEquals(snr[name], sf.kernels.snr_examples(stack), 1e-3 * math.abs(snr[name]) + 1e-6)
end

-- per-example gradient moments in one backward pass equal one backward pass per example,
-- for every kind of layer with parameters (conv + BN, GroupNorm, LayerNorm, tokens,
-- attention's 3-D linears)
function TestAuto:test_snr_moments_equal_per_example_loop()
  local specs = {
    {"cnn", {in_channels = 1, widths = {4, 8}, classes = 3}},
    {"resnet", {depth = 8, block = "preact", in_channels = 1, classes = 3, norm = "gn", widths = {4, 8, 8}}},
    {"vit", {image = 8, patch = 4, channels = 1, dim = 8, depth = 2, heads = 2, classes = 3}},
  }
  for _, spec in ipairs(specs) do
    local cfg = {rng = sf.rng(1)}
    for k, v in pairs(spec[2]) do cfg[k] = v end
    local m = sf.models[spec[1]](cfg)
    m:set_bn_mode("eval")
    local x, y = sf.randn({10, 1, 8, 8}, sf.rng(2)), sf.randint(1, 4, {10}, sf.rng(3))
    local ctx = P.context{model = m, stat_batches = 2, loss = sf.nn.cross_entropy, batches = function()
      local i = 0
      return function()
        i = i + 1
        if i <= 2 then return x:narrow(1, 5 * i - 4, 5), y:narrow(1, 5 * i - 4, 5) end
      end
    end}
    local fast, loop = ctx:snr(), ctx:snr_loop()
    local n = 0
    for name, v in pairs(loop) do
      n = n + 1
      -- SNR = mean^2 / var over examples: the float32 per-example gradients (relative
      -- rounding ~6e-8 each) leave about 1e-7 x SNR of relative error in the variance
      -- (var = E[g^2] - E[g]^2 cancels), so the tolerance grows with the SNR (head.fc.bias
      -- has ~2300 here; -O0 builds, without FMA contraction, differ by 5e-4 of it)
      lu.assertAlmostEquals(fast[name], v, (1e-4 + 5e-7 * math.abs(v)) * math.abs(v) + 1e-6, spec[1] .. " " .. name)
    end
    lu.assertEquals(n, #m:parameters())
  end
end

function TestAuto:test_moment_kernels()
  local K = sf.kernels
  -- linear, 2-D input: per-example gradients are outer products dout_n x_n^T
  local dout, x = sf.tensor{{1, 2}, {3, -1}}, sf.tensor{{1, 0, 2}, {-1, 1, 1}}
  local sw, qw, sb, qb = sf.zeros(2, 3), sf.zeros(2, 3), sf.zeros(2), sf.zeros(2)
  K.linear_grad_moments(dout, x, sw, qw, sb, qb)
  lu.assertEquals(sw:totable(), {{1 - 3, 3, 2 + 3}, {2 + 1, -1, 4 - 1}})
  lu.assertEquals(qw:totable(), {{1 + 9, 9, 4 + 9}, {4 + 1, 1, 16 + 1}})
  lu.assertEquals(sb:totable(), {4, 1})
  lu.assertEquals(qb:totable(), {10, 5})
  -- conv2d: against conv2d_backward_weight run on each example alone
  local rng = sf.rng(7)
  local inp, w = sf.randn({3, 2, 5, 5}, rng), sf.randn({4, 2, 3, 3}, rng)
  local g = sf.randn({3, 4, 3, 3}, rng) -- stride 2, pad 1 -> 3x3
  local cs, cq, bs, bq = sf.zeros(4, 2, 3, 3), sf.zeros(4, 2, 3, 3), sf.zeros(4), sf.zeros(4)
  K.conv2d_grad_moments(g, inp, w:size(), 2, 1, cs, cq, bs, bq)
  local es, eq = sf.zeros(4, 2, 3, 3), sf.zeros(4, 2, 3, 3)
  for i = 1, 3 do
    local dw, db = sf.zeros(4, 2, 3, 3), sf.zeros(4)
    K.conv2d_backward_weight(g:narrow(1, i, 1), inp:narrow(1, i, 1), dw, db, 2, 1)
    es:add_(dw)
    eq:add_(dw * dw)
  end
  lu.assertTrue(cs:allclose(es, 1e-4, 1e-5))
  lu.assertTrue(cq:allclose(eq, 1e-4, 1e-5))
  lu.assertErrorMsgContains("(sum_w) has shape [3,2], expected [2,3]", K.linear_grad_moments, dout, x, sf.zeros(3, 2))
end

TestFinetune = {}

function TestFinetune:test_frozen_parameters_are_bit_identical()
  local data = target(0)
  local r = sf.finetune{model = SRC, data = data, policy = P.blocks{"head"}, lr = 1e-2, epochs = 2, seed = 3}
  for _, rec in ipairs(r.model:parameters()) do
    local before = SRC:parameter(rec.name).value
    if rec.block ~= "head" then
      lu.assertTrue(rec.value:equal(before), rec.name .. " moved although frozen")
    end
  end
  lu.assertFalse(r.model:parameter("head.fc.weight").value:equal(SRC:parameter("head.fc.weight").value))
  -- BatchNorm in eval mode: running statistics never change during fine-tuning
  local r2 = sf.finetune{model = SRC, data = data, policy = P.all(), lr = 1e-2, epochs = 1}
  lu.assertTrue(r2.model:state()["block1.bn.running_mean"]:equal(SRC:state()["block1.bn.running_mean"]))
  -- the source model itself is untouched (finetune clones it)
  lu.assertEquals(#r.epochs, 2)
end

function TestFinetune:test_best_epoch_by_validation()
  local r = sf.finetune{model = SRC, data = target(1), policy = P.all(), lr = 1e-2, epochs = 3, seed = 0}
  local best = r.epochs[1]
  for _, e in ipairs(r.epochs) do if e.val > best.val then best = e end end
  lu.assertEquals(r.best.epoch, best.epoch)
  lu.assertEquals(r.best.test, best.test)
  local n = sf.finetune{model = SRC, data = target(1), policy = P.none()}
  lu.assertEquals(#n.epochs, 1)
  lu.assertEquals(n.best.epoch, 0)
end

function TestFinetune:test_test_only_at_validation_improvements()
  local every = sf.finetune{model = SRC, data = target(1), policy = P.all(), lr = 1e-2, epochs = 4, seed = 2}
  local best = sf.finetune{model = SRC, data = target(1), policy = P.all(), lr = 1e-2, epochs = 4, seed = 2,
                           test = "best"}
  lu.assertEquals(best.best, every.best)
  local running = -1
  for i, e in ipairs(best.epochs) do
    lu.assertEquals(e.val, every.epochs[i].val)
    if e.val > running then lu.assertEquals(e.test, every.epochs[i].test) else lu.assertNil(e.test) end
    running = math.max(running, e.val)
  end
  lu.assertErrorMsgContains("test must be 'every' or 'best'", sf.finetune,
    {model = SRC, data = target(1), test = "some"})
end

function TestFinetune:test_lr_scale_reaches_the_update()
  local data = target(2)
  local function delta(scale)
    local r = sf.finetune{model = SRC, data = data, policy = P.blocks{head = scale}, optim = "sgd", momentum = 0,
                          weight_decay = 0, lr = 1e-2, epochs = 1, seed = 5}
    return (r.model:parameter("head.fc.bias").value - SRC:parameter("head.fc.bias").value):norm()
  end
  lu.assertAlmostEquals(delta(0.5) / delta(1), 0.5, 1e-3)
end

function TestFinetune:test_deterministic()
  local a = sf.finetune{model = SRC, data = target(0), policy = P.all(), lr = 1e-2, epochs = 1, seed = 9}
  local b = sf.finetune{model = SRC, data = target(0), policy = P.all(), lr = 1e-2, epochs = 1, seed = 9}
  lu.assertTrue(a.model:flat():equal(b.model:flat()))
end

function TestFinetune:test_worst_group_accuracy()
  local data = target(4)
  local x, y = data.test:tensors()
  local groups = {}
  for i = 1, data.test:size() do groups[i] = i % 3 + 1 end
  data.test = sf.data.dataset{x = x, y = y:totable(), classes = {"neg", "pos"}, meta = {group = groups}, name = "g"}
  local r = sf.finetune{model = SRC, data = data, policy = P.all(), lr = 1e-2, epochs = 1}
  local _, pred = sf.evaluate(r.model, data.test)
  local hit, n = {0, 0, 0}, {0, 0, 0}
  for i, p in ipairs(pred) do
    n[groups[i]] = n[groups[i]] + 1
    if p == y:get(i) then hit[groups[i]] = hit[groups[i]] + 1 end
  end
  local worst = math.min(hit[1] / n[1], hit[2] / n[2], hit[3] / n[3])
  lu.assertAlmostEquals(r.epochs[1].worst_group, worst, 1e-12)
  lu.assertEquals(r.best.worst_group, worst)
end

-- frozen-prefix caching: the same numbers as running the whole model, and the prefix's
-- convolutions run once per data set, not once per epoch or learning rate
function TestFinetune:test_frozen_prefix_cache()
  local data = target(5)
  for _, pol in ipairs{P.last_layer(), P.blocks{"block2"}} do
    local a = sf.finetune{model = SRC, data = data, policy = pol, lr = 1e-2, epochs = 2}
    local b = sf.finetune{model = SRC, data = data, policy = pol, lr = 1e-2, epochs = 2, prefix_cache = false}
    lu.assertTrue(a.prefix > 0 and b.prefix == 0)
    lu.assertTrue(a.model:flat():equal(b.model:flat()), pol.name .. ": cached and uncached runs differ")
    lu.assertEquals(a.best, b.best)
  end
  local K = sf.kernels
  K.reset_counters()
  sf.finetune{model = SRC, data = data, policy = P.last_layer(), lr = 1e-3, epochs = 3}
  lu.assertEquals(K.counters().conv_fwd, 0) -- every feature came from the cache
  -- auto policies change the selection: no caching
  lu.assertEquals(sf.finetune{model = SRC, data = data, policy = P.auto_rgn(), epochs = 1}.prefix, 0)
end

function TestFinetune:test_errors()
  lu.assertErrorMsgContains("finetune: unknown option 'lrs'", sf.finetune, {model = SRC, data = target(0), lrs = 1})
  lu.assertErrorMsgContains("finetune: data.val must be a dataset", sf.finetune,
    {model = SRC, data = {train = target(0).train}})
  lu.assertErrorMsgContains("optim must be 'adam', 'adamw' or 'sgd'", sf.finetune,
    {model = SRC, data = target(0), optim = "rmsprop"})
  lu.assertErrorMsgContains("matches no block", sf.finetune,
    {model = SRC, data = target(0), policy = P.blocks{"stem"}})
end

TestExperiment = {}

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  os.execute("mkdir -p " .. d)
  return d
end

function TestExperiment:test_run_resume_and_files()
  local dir = tmpdir()
  local function exp()
    return sf.experiment{name = "toy", dir = dir, lrs = {1e-2, 1e-3}, seeds = {0, 1}, epochs = 2, verbose = false,
                         tasks = {{name = "Toy", model = SRC, data = target}},
                         policies = {{"No fine-tuning", P.none()}, {"All", P.all()}, {"Last layer", P.last_layer()}}}
  end
  local r1 = exp():run()
  lu.assertEquals(#r1.cells, 2 + 4 + 4)
  local r2 = exp():run()
  for _, c in ipairs(r2.cells) do lu.assertTrue(c.skipped, "a finished cell ran again") end
  lu.assertEquals(r2.summary.Toy.All.mean, r1.summary.Toy.All.mean)
  -- selection: the reported test accuracy is the one at the best validation (lr, epoch)
  for _, pk in ipairs(r1.summary.Toy.All.picks) do
    local best
    for _, c in ipairs(r1.cells) do
      if c.policy == "All" and c.seed == pk.seed then
        for _, e in ipairs(c.epochs) do
          if e.epoch > 0 and (not best or e.val > best.val) then best = e end
        end
      end
    end
    lu.assertEquals(pk.test, best.test)
  end
  -- the files
  local f = assert(io.open(dir .. "/results.json"))
  local doc = cjson.decode(f:read("a"))
  f:close()
  lu.assertEquals(doc.config.name, "toy")
  lu.assertEquals(#doc.cells, 10)
  lu.assertNotNil(doc.versions.surgft)
  local lines = {}
  for l in io.lines(dir .. "/results.csv") do lines[#lines + 1] = l end
  lu.assertEquals(lines[1], "task,policy,policy_name,seed,lr,epoch,loss,val_acc,test_acc,trainable_tensors,selected")
  lu.assertEquals(#lines, 1 + 2 * 1 + 8 * 2) -- none: epoch 0 only; the others: epochs 1..2
  for i = 2, #lines do lu.assertEquals(select(2, lines[i]:gsub(",", "")), 10, lines[i]) end
  local t = io.open(dir .. "/table.txt"):read("a")
  lu.assertStrContains(t, "No fine-tuning")
  lu.assertStrContains(t, "mean (std) over 2 seeds")
  os.execute("rm -rf " .. dir)
end

function TestExperiment:test_option_errors()
  lu.assertErrorMsgContains("experiment: unknown option 'seed'", sf.experiment, {name = "x", seed = 1})
  lu.assertErrorMsgContains("name must be a string", sf.experiment, {name = "a b"})
  lu.assertErrorMsgContains("tasks must be a non-empty list", sf.experiment, {name = "x", tasks = {}})
  lu.assertErrorMsgContains("policies[1] must be {label, policy}", sf.experiment,
    {name = "x", tasks = {{name = "T", model = SRC, data = target}}, policies = {P.all()}})
end

-- ---- curves against a task variable (target_size.lua) and the paper's task helpers ----

TestCurves = {}

local E = require "surgft.experiment"

-- a summary as sf.experiment makes it: task -> policy -> {mean, std}
local CURVE_SUMMARY = {
  ["10"] = {A = {mean = 0.80, std = 0.02}, B = {mean = 0.70, std = 0 / 0}},
  ["1"] = {A = {mean = 0.50, std = 0.10}, B = {mean = 0.60, std = cjson.null}},
  ["2"] = {A = {mean = 0.55, std = 0.05}, B = {mean = 0.65, std = 0.01}},
}
local CURVE_TASKS = {{name = "10", size = 10}, {name = "1", size = 1}, {name = "2", size = 2}}

function TestCurves:test_series_sorted_by_size_in_percent()
  local s = E.curve_series(CURVE_SUMMARY, CURVE_TASKS, {"B", "A"})
  lu.assertEquals(#s, 2)
  lu.assertEquals(s[1].name, "B")
  lu.assertEquals(s[2].name, "A")
  lu.assertEquals(s[2].x, {1, 2, 10})
  for i, v in ipairs{50, 55, 80} do lu.assertAlmostEquals(s[2].y[i], v, 1e-9) end
  for i, v in ipairs{10, 5, 2} do lu.assertAlmostEquals(s[2].err[i], v, 1e-9) end
  -- one seed (NaN) or a std read back from results.json (null): no error bar, not NaN
  lu.assertEquals(s[1].err[1], 0)
  lu.assertEquals(s[1].err[3], 0)
  lu.assertAlmostEquals(s[1].err[2], 1, 1e-9)
  -- x from a function instead of task.size
  local s2 = E.curve_series(CURVE_SUMMARY, CURVE_TASKS, {"A"}, function(t) return -t.size end)
  lu.assertEquals(s2[1].x, {-10, -2, -1})
end

function TestCurves:test_series_errors()
  lu.assertErrorMsgContains("task #2 (x) has no numeric x", E.curve_series, CURVE_SUMMARY,
    {{name = "1", size = 1}, {name = "x"}}, {"A"})
  lu.assertErrorMsgContains("no result for task '1', policy 'C'", E.curve_series, CURVE_SUMMARY, CURVE_TASKS, {"C"})
end

function TestCurves:test_plot_files_without_gnuplot()
  local dir = tmpdir()
  local out = E.plot_curves{results = {summary = CURVE_SUMMARY, dir = dir}, tasks = CURVE_TASKS, labels = {"A", "B"},
                            title = "toy", xlabel = "images per class", gnuplot = "/nonexistent/gnuplot", quiet = true}
  lu.assertFalse(out.rendered)
  lu.assertStrContains(out.message, "gnuplot ('/nonexistent/gnuplot') not found")
  lu.assertEquals(out.dat, dir .. "/curves.dat")
  local dat = io.open(out.dat):read("a")
  lu.assertStrContains(dat, "# series 0: A\n# x y err\n1 50 10\n2 55 5\n10 80 2\n")
  lu.assertStrContains(dat, "# series 1: B\n# x y err\n1 60 0\n")
  local gp = io.open(out.gp):read("a")
  lu.assertStrContains(gp, "set xtics (1, 2, 10)")
  lu.assertStrContains(gp, "set logscale x")
  lu.assertStrContains(gp, "set xrange [0.8:12.5]")
  lu.assertStrContains(gp, "yerrorlines")
  os.execute("rm -rf " .. dir)
end

TestPaper = {}

local paper = require "surgft.paper"

function TestPaper:test_pick_rows()
  local rows = paper.pick_rows{"Last layer", "Block 1"}
  lu.assertEquals(#rows, 2)
  lu.assertEquals(rows[1][1], "Last layer")
  lu.assertEquals(rows[1][2].name, "last_layer")
  lu.assertEquals(rows[2][2].name, "blocks(block1,stem)")
  lu.assertErrorMsgContains("paper.pick_rows: no row 'Block 9' (rows: No fine-tuning, All, Block 1", paper.pick_rows,
    {"Block 9"})
end

local have_fmnist = io.open("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", "rb")
if have_fmnist then have_fmnist:close() end

function TestPaper:test_size_tasks_share_source_and_evaluation_sets()
  if not have_fmnist then lu.skip("dataset-fashion-mnist is not installed") end
  local saved = print
  print = function() end -- suite_task reports the source model's accuracy
  local ok, tasks = pcall(paper.size_tasks, {
    name = "toy sizes", sizes = {1, 3}, suite = sf.data.suites.fmnist_c,
    options = {corruption = "contrast", severity = 3, n_test_per_class = 4, n_val_per_class = 2,
               n_source_per_class = 3, n_source_val_per_class = 1},
    arch = {"mlp", {sizes = {784, 8, 10}}},
    pretrain = {epochs = 1, lr = 0.05, batch = 16, cache = false, verbose = false}})
  print = saved
  lu.assertTrue(ok, tostring(tasks))
  lu.assertEquals(#tasks, 2)
  lu.assertEquals({tasks[1].name, tasks[2].name, tasks[1].size, tasks[2].size}, {"1", "3", 1, 3})
  lu.assertIs(tasks[2].model, tasks[1].model)
  lu.assertEquals(tasks[2].key, tasks[1].key)
  for _, seed in ipairs{0, 1} do
    local a, b = tasks[1].data(seed), tasks[2].data(seed)
    lu.assertEquals(a.train:size(), 10)
    lu.assertEquals(b.train:size(), 30)
    -- the same test and validation images at every size: only the training set grows
    lu.assertEquals(a.test.meta.index, b.test.meta.index)
    lu.assertEquals(a.val.meta.index, b.val.meta.index)
    lu.assertEquals(a.test.x:sub(b.test.x):abs():max(), 0)
  end
  lu.assertNotEquals(tasks[1].data(0).test.meta.index, tasks[1].data(1).test.meta.index)
  lu.assertErrorMsgContains("sizes[2] must be a positive integer, got 0", paper.size_tasks, {sizes = {1, 0}})
  lu.assertErrorMsgContains("sizes must be a non-empty list", paper.size_tasks, {sizes = {}})
end

os.exit(lu.LuaUnit.run())
