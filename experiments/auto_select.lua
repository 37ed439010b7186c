-- Automatic selection (the paper's Table 3): Auto-RGN and Auto-SNR (the paper's
-- definitions and the released code's variants) against full fine-tuning and the
-- cross-validated best block (the block whose run has the best target-validation
-- accuracy, per seed), on the Fashion-MNIST shift suites; ranks per task and their
-- average (lower is better). This script reports what it measures.
--
--   surgft-lua experiments/auto_select.lua [--quick]
local sf = require "surgft"
local paper = require "surgft.paper"
local P = sf.policy
local quick = arg and arg[1] == "--quick"

local n_src = quick and 200 or 1000
local arch = paper.fmnist_arch
local pre = paper.fmnist_pretrain(quick)
local S = sf.data.suites
local tasks = {
  paper.suite_task{name = "FMNIST-C gaussian_noise", cache_name = "FMNIST_C_source", suite = S.fmnist_c,
                   options = {corruption = "gaussian_noise", severity = 5, n_per_class = 10, n_test_per_class = 100,
                              n_source_per_class = n_src}, arch = arch(10), pretrain = pre},
  paper.suite_task{name = "FMNIST-Flip", suite = S.fmnist_flip,
                   options = {n_per_class = 10, n_test_per_class = 100, n_source_per_class = n_src},
                   arch = arch(10), pretrain = pre},
}
if not quick then
  tasks[#tasks + 1] = paper.suite_task{name = "FMNIST-C defocus_blur", cache_name = "FMNIST_C_source",
    suite = S.fmnist_c, options = {corruption = "defocus_blur", severity = 5, n_per_class = 10, n_test_per_class = 100,
                                   n_source_per_class = n_src}, arch = arch(10), pretrain = pre}
  tasks[#tasks + 1] = paper.suite_task{name = "FMNIST-Subpop", suite = S.fmnist_subpop,
    options = {n_per_class = 30, n_test_per_class = 300, n_source_per_class = 3 * n_src}, arch = arch(3),
    pretrain = pre}
  tasks[#tasks + 1] = paper.suite_task{name = "FMNIST-Spurious", suite = S.fmnist_spurious,
    options = {n_per_class = 20, n_test_per_class = 200, n_source_per_class = n_src}, arch = arch(10), pretrain = pre}
end

local blocks = {"Block 1", "Block 2", "Block 3", "Last layer"}
local rows = {{"All", P.all()}}
for _, r in ipairs(paper.resnet_rows()) do
  for _, b in ipairs(blocks) do if r[1] == b then rows[#rows + 1] = r end end
end
rows[#rows + 1] = {"Auto-RGN", P.auto_rgn()}
rows[#rows + 1] = {"Auto-RGN (code)", P.auto_rgn{variant = "code"}}
rows[#rows + 1] = {"Auto-SNR", P.auto_snr()}
rows[#rows + 1] = {"Auto-SNR (code)", P.auto_snr{variant = "code"}}

local res = paper.fmnist_experiment{name = "auto_select", tasks = tasks, policies = rows, quick = quick,
                                   title = "Automatic selection on the Fashion-MNIST shift suites"}

-- the cross-validated best block: per task and seed, the block row whose selected run has
-- the best validation accuracy (ties: the earlier block), its test accuracy reported
local methods = {"All", "Best block (val)", "Auto-RGN", "Auto-RGN (code)", "Auto-SNR", "Auto-SNR (code)"}
local scores = {}
for _, t in ipairs(tasks) do
  local s = res.summary[t.name]
  scores[t.name] = {}
  for _, m in ipairs(methods) do
    if m ~= "Best block (val)" then scores[t.name][m] = s[m].mean end
  end
  local tests = {}
  for k, pick in ipairs(s[blocks[1]].picks) do
    local best
    for _, b in ipairs(blocks) do
      local p = s[b].picks[k]
      if not best or p.val > best.val then best = p end
    end
    tests[#tests + 1] = best.test
  end
  scores[t.name]["Best block (val)"] = (require "surgft.experiment").mean_std(tests)
end

-- ranks per task (1 = best test accuracy; ties share the average rank)
local avg = {}
print("\nAccuracy (%) and rank per task:")
local header = string.format("%-20s", "method")
for _, t in ipairs(tasks) do header = header .. string.format("  %24s", t.name:sub(1, 24)) end
print(header .. "  avg rank")
for _, m in ipairs(methods) do avg[m] = 0 end
local ranks = {}
for _, t in ipairs(tasks) do
  ranks[t.name] = {}
  for _, m in ipairs(methods) do
    local better, equal = 0, 0
    for _, o in ipairs(methods) do
      if scores[t.name][o] > scores[t.name][m] + 1e-12 then better = better + 1
      elseif math.abs(scores[t.name][o] - scores[t.name][m]) <= 1e-12 then equal = equal + 1 end
    end
    ranks[t.name][m] = better + (equal + 1) / 2
    avg[m] = avg[m] + ranks[t.name][m] / #tasks
  end
end
for _, m in ipairs(methods) do
  local line = string.format("%-20s", m)
  for _, t in ipairs(tasks) do
    line = line .. string.format("  %17.1f (%4.1f)", 100 * scores[t.name][m], ranks[t.name][m])
  end
  print(line .. string.format("  %8.2f", avg[m]))
end
