-- The benchmark's surgft worker (tests/bench/surgft_worker.lua, run by bench.lua) as a
-- child process on a tiny batch: it reports every requested mode with positive rates,
-- counts a forward's work the same in eval mode and on batch statistics, trains only
-- the selected tensors, and refuses bad options by name. (Timings are not checked: the
-- bench compares them, the tests do not.)
local lu = require "luaunit"
local cjson = require "cjson"

local U = require "testutil"
local BIN = U.binary()

local function q(s) return "'" .. tostring(s):gsub("'", [['\'']]) .. "'" end

-- runs the worker (from the tests directory, as meson does) with args; -> stdout, stderr, exit code
local function worker(args)
  local out, err = os.tmpname(), os.tmpname()
  local _, how, code = os.execute(string.format("%s bench/surgft_worker.lua %s >%s 2>%s", q(BIN), args, q(out),
                                                q(err)))
  local o, e = U.slurp(out), U.slurp(err)
  os.remove(out)
  os.remove(err)
  return o, e, how == "exit" and code or 128 + code
end

TestBenchWorker = {}

function TestBenchWorker:test_modes()
  local out, err, code = worker("--model=cnn --threads=1 --batch=4 --modes=fwd,fwd_bntrain,head " ..
                                "--select=head=head. --target=0.01 --samples=1")
  lu.assertEquals(code, 0, err)
  local json = out:match("RESULT (%b{})")
  lu.assertNotNil(json, "no RESULT line in: " .. out)
  local r = cjson.decode(json)
  lu.assertEquals({r.side, r.model, r.batch, r.threads}, {"surgft", "cnn", 4, 1})
  local by = {}
  for _, m in ipairs(r.results) do by[m.mode] = m end
  for _, mode in ipairs{"fwd", "fwd_bntrain", "head"} do
    lu.assertNotNil(by[mode], "mode " .. mode .. " missing")
    lu.assertTrue(#by[mode].samples >= 1 and by[mode].samples[1] > 0, mode .. ": a positive rate")
  end
  -- a forward is a forward whichever BatchNorm mode: 2 x its multiply-accumulates (per image)
  lu.assertEquals(by.fwd.flops, 2 * r.macs_fwd)
  lu.assertEquals(by.fwd_bntrain.flops, by.fwd.flops)
  lu.assertEquals({by.fwd.trainable, by.fwd_bntrain.trainable, by.head.trainable}, {0, 0, 2})
  lu.assertTrue(by.head.flops > by.fwd.flops, "the head step adds the head's gradients")
end

function TestBenchWorker:test_bad_options()
  local _, err, code = worker("--model=cnn --bogus=1")
  lu.assertEquals(code, 2)
  lu.assertStrContains(err, "surgft_worker: unknown option --bogus")
  _, err, code = worker("--threads=1")
  lu.assertEquals(code, 2)
  lu.assertStrContains(err, "surgft_worker: --model is required")
  _, err, code = worker("--model=cnn --modes=head")
  lu.assertEquals(code, 2)
  lu.assertStrContains(err, "mode 'head' has no --select")
end

os.exit(lu.LuaUnit.run())
