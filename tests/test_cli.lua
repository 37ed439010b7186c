-- The surgft-lua command line: runs the built binary as a child process, from another
-- working directory, and checks its stdout, stderr and exit status like `lua`'s.
local lu = require "luaunit"

local U = require "testutil"
local BIN = U.binary() -- absolute: children run in another directory
local CWD = "/tmp" -- not the source tree: nothing may depend on the working directory

local function q(s) return "'" .. tostring(s):gsub("'", [['\'']]) .. "'" end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function spit(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- run(args [, {stdin = text, env = "K=V ...", cwd = dir}]) -> {out, err, code}
-- args is a shell fragment (quote with q); stdin is /dev/null unless given.
local function run(args, opts)
  opts = opts or {}
  local out, err = os.tmpname(), os.tmpname()
  local inp = "/dev/null"
  if opts.stdin then
    inp = os.tmpname()
    spit(inp, opts.stdin)
  end
  local cmd = string.format("cd %s && %s %s %s <%s >%s 2>%s", q(opts.cwd or CWD), opts.env or "",
                            q(BIN), args, q(inp), q(out), q(err))
  local _, how, code = os.execute(cmd)
  local r = {out = slurp(out), err = slurp(err), code = how == "exit" and code or 128 + code}
  os.remove(out)
  os.remove(err)
  if opts.stdin then os.remove(inp) end
  return r
end

-- a temporary script holding src; returns its absolute path (caller removes it)
local function script(src)
  local path = os.tmpname()
  spit(path, src)
  return path
end

local function basename(p) return p:match("[^/]+$") end

-- prints arg[i] for i = lo..hi as "i=value" lines, then the varargs
local ARGDUMP = [[
local lo, hi = ...
for i = -3, #arg do if arg[i] ~= nil then print(i .. "=" .. arg[i]) end end
print("n=" .. select("#", ...))
print("varargs=" .. table.concat({...}, "|"))
]]

local function ok(r, msg)
  lu.assertEquals(r.code, 0, (msg or "") .. " stderr: " .. r.err)
end

TestArgs = {}

function TestArgs:test_script_and_arguments()
  local s = script(ARGDUMP)
  local r = run(q(s) .. " a 'b c' ''")
  os.remove(s)
  ok(r)
  lu.assertStrContains(r.out, "-1=" .. BIN .. "\n")
  lu.assertStrContains(r.out, "0=" .. s .. "\n")
  lu.assertStrContains(r.out, "1=a\n2=b c\n3=\n")
  lu.assertStrContains(r.out, "n=3\n")
  lu.assertStrContains(r.out, "varargs=a|b c|\n")
  lu.assertEquals(r.err, "")
end

function TestArgs:test_relative_script_path_from_cwd()
  local s = script('print("cwd ok", arg[0])')
  local r = run(q(basename(s)), {cwd = "/tmp"})
  os.remove(s)
  ok(r)
  lu.assertEquals(r.out, "cwd ok\t" .. basename(s) .. "\n")
end

function TestArgs:test_options_get_negative_indices()
  local s = script(ARGDUMP .. 'print("x=" .. tostring(x))\n')
  local r = run("-e 'x = 7' " .. q(s) .. " -e")
  os.remove(s)
  ok(r)
  lu.assertStrContains(r.out, "-3=" .. BIN .. "\n-2=-e\n-1=x = 7\n0=" .. s .. "\n1=-e\n")
  lu.assertStrContains(r.out, "x=7\n") -- -e runs before the script, in the same state
end

function TestArgs:test_double_dash_stops_options()
  local s = script(ARGDUMP)
  local r = run("-- " .. q(s) .. " -v -x")
  os.remove(s)
  ok(r)
  lu.assertStrContains(r.out, "-1=--\n0=" .. s .. "\n1=-v\n2=-x\n")
  lu.assertNotStrContains(r.out, "surgft 0") -- -v after the script is the script's
end

function TestArgs:test_trailing_double_dash_runs_stdin()
  local r = run("--", {stdin = 'print("from stdin", arg[0] == nil)'})
  ok(r)
  lu.assertEquals(r.out, "from stdin\tfalse\n")
end

function TestArgs:test_dash_reads_script_from_stdin()
  local r = run("- p 'q r'", {stdin = 'print(arg[0], ...)'})
  ok(r)
  lu.assertEquals(r.out, "-\tp\tq r\n")
end

function TestArgs:test_no_arguments_runs_stdin_when_not_a_tty()
  local r = run("", {stdin = 'local sf = require "surgft"\nprint(6 * 7, sf.zeros(2):numel())'})
  ok(r)
  lu.assertEquals(r.out, "42\t2\n")
  lu.assertEquals(r.err, "")
end

TestOptions = {}

function TestOptions:test_e_runs_code()
  local r = run([[-e 'print(1 + 1)' -e 'print("two")']])
  ok(r)
  lu.assertEquals(r.out, "2\ntwo\n")
end

-- A Lua library loaded against a core of another interface (a stale build) refuses to
-- load, naming both numbers, instead of computing with mismatched bindings
function TestOptions:test_stale_core_is_refused()
  local r = run([[-e 'local core = require "surgft.core"; print(math.type(core.abi)); core.abi = 999; ]]
    .. [[package.loaded.surgft = nil; require "surgft"']])
  lu.assertEquals(r.code, 1)
  lu.assertStrContains(r.out, "integer")
  lu.assertStrContains(r.err, "expects the C core's interface")
  lu.assertStrContains(r.err, "has 999: the build is stale or from another checkout; rebuild it")
end

-- OpenBLAS's idle-thread spin timeout: the library sets a short one at its first BLAS use
-- when the user has not chosen one (tests/c/test_linalg.c checks that OpenBLAS re-reads
-- it); the interpreter no longer re-executes itself for it, so arguments and stdin reach
-- the script as they are
function TestOptions:test_openblas_thread_timeout()
  local show = [[print(os.getenv("OPENBLAS_THREAD_TIMEOUT")); require("surgft").threads(); ]] ..
               [[print(os.getenv("OPENBLAS_THREAD_TIMEOUT"), arg[1])]]
  local r = run("-e " .. q(show) .. " - x", {env = "env -u OPENBLAS_THREAD_TIMEOUT", stdin = "print('from stdin', ...)"})
  ok(r)
  lu.assertEquals(r.out, "nil\n4\tx\nfrom stdin\tx\n")
  local mine = run("-e " .. q(show) .. " - y", {env = "OPENBLAS_THREAD_TIMEOUT=12"})
  ok(mine)
  lu.assertEquals(mine.out, "12\n12\ty\n")
end

function TestOptions:test_e_concatenated()
  local r = run([[-e'print(3)']])
  ok(r)
  lu.assertEquals(r.out, "3\n")
end

function TestOptions:test_l_requires_into_global()
  local r = run([[-l surgft -e 'print(type(surgft.zeros))']])
  ok(r)
  lu.assertEquals(r.out, "function\n")
  r = run([[-l s=surgft -e 'print(type(s.ones), surgft)']])
  ok(r)
  lu.assertEquals(r.out, "function\tnil\n")
end

function TestOptions:test_l_missing_module_fails()
  local r = run("-l no_such_module_xyz")
  lu.assertNotEquals(r.code, 0)
  lu.assertStrContains(r.err, "module 'no_such_module_xyz' not found")
end

function TestOptions:test_v_prints_version_line()
  local r = run("-v")
  ok(r)
  local surgft_v = run([[-e 'io.write(require("surgft").version)']]).out
  lu.assertStrMatches(r.out, "surgft " .. surgft_v:gsub("%.", "%%.") .. "  " .. _VERSION .. "%.%d+  Copyright.*\n")
end

function TestOptions:test_version_lists_components()
  local r = run("--version")
  ok(r)
  local lines = {}
  for l in r.out:gmatch("[^\n]+") do lines[#lines + 1] = l end
  lu.assertEquals(#lines, 4, r.out)
  local v = run([[-e 'io.write(require("surgft").version)']]).out
  lu.assertStrMatches(v, "%d+%.%d+%.%d+")
  lu.assertEquals(lines[1], "surgft  " .. v)
  lu.assertStrMatches(lines[2], "lua     " .. _VERSION .. "%.%d+  Copyright.*")
  lu.assertStrMatches(lines[3], "blas    OpenBLAS %d+%.%d+.*")
  local n = tonumber(lines[4]:match("^threads (%d+)$"))
  lu.assertNotNil(n, lines[4])
  lu.assertTrue(n >= 1)
  -- the same count the library reports
  local lib = run([[-e 'local sf = require "surgft"; io.write(sf.threads and sf.threads() or "")']])
  ok(lib)
  if lib.out ~= "" then lu.assertEquals(n, tonumber(lib.out)) end
  -- the default comes from $SURGFT_THREADS
  for _, k in ipairs{1, 3} do
    local rk = run("--version", {env = "SURGFT_THREADS=" .. k})
    ok(rk)
    lu.assertStrContains(rk.out, "\nthreads " .. k .. "\n")
  end
end

function TestOptions:test_version_then_e_still_runs()
  local r = run([[--version -e 'print("after")']])
  ok(r)
  lu.assertStrContains(r.out, "threads ")
  lu.assertStrContains(r.out, "after\n")
end

function TestOptions:test_upper_e_ignores_environment()
  local env = [[LUA_INIT='print("init ran")' SURGFT_LUA_DIR=/nonexistent-surgft]]
  local plain = run([[-e 'print(pcall(require, "surgft"))']], {env = env})
  ok(plain)
  lu.assertStrContains(plain.out, "init ran\n")
  lu.assertStrContains(plain.out, "false") -- $SURGFT_LUA_DIR points nowhere
  local r = run([[-E -e 'print(type(require("surgft").zeros))']], {env = env})
  ok(r)
  lu.assertEquals(r.out, "function\n")
end

function TestOptions:test_lua_init_file()
  local s = script('init_value = 5')
  local r = run([[-e 'print(init_value)']], {env = "LUA_INIT=@" .. q(s)})
  os.remove(s)
  ok(r)
  lu.assertEquals(r.out, "5\n")
end

function TestOptions:test_upper_w_turns_warnings_on()
  local r = run([[-e 'warn("quiet")']])
  ok(r)
  lu.assertEquals(r.err, "")
  r = run([[-W -e 'warn("loud")']])
  ok(r)
  lu.assertStrContains(r.err, "Lua warning: loud")
end

function TestOptions:test_bad_options_print_usage()
  for _, case in ipairs{{"-x", "unrecognized option '-x'"}, {"-e", "'-e' needs argument"},
                        {"-l", "'-l' needs argument"}, {"-vx", "unrecognized option '-vx'"},
                        {"---", "unrecognized option '---'"}} do
    local r = run(case[1])
    lu.assertEquals(r.code, 1, case[1])
    lu.assertStrContains(r.err, case[2])
    lu.assertStrContains(r.err, "usage: ")
    lu.assertEquals(r.out, "")
  end
end

TestREPL = {}

function TestREPL:test_i_evaluates_lines()
  local r = run("-i", {stdin = "x = 20\nx + 22\n=x * 2\nfor i = 1, 2 do\nprint('loop', i)\nend\n"})
  ok(r)
  lu.assertStrContains(r.out, "surgft ") -- -i implies -v
  lu.assertStrContains(r.out, "> 42\n")
  lu.assertStrContains(r.out, "> 40\n")
  lu.assertStrContains(r.out, ">> loop\t1\nloop\t2\n") -- continuation prompt, then the loop
end

function TestREPL:test_i_survives_errors_and_uses_surgft()
  local r = run("-i", {stdin = "error('oops')\nsf = require 'surgft'\nsf.ones(3):numel()\n"})
  ok(r)
  lu.assertStrContains(r.err, "oops")
  lu.assertStrContains(r.err, "stack traceback")
  lu.assertStrContains(r.out, "> 3\n")
end

function TestREPL:test_i_after_script_keeps_its_globals()
  local s = script("answer = 41")
  local r = run("-i " .. q(s), {stdin = "answer + 1\n"})
  os.remove(s)
  ok(r)
  lu.assertStrContains(r.out, "> 42\n")
end

function TestREPL:test_long_line()
  local long = "return " .. string.rep("1 + ", 3000) .. "1\n" -- longer than any fixed buffer
  local r = run("-i", {stdin = long})
  ok(r)
  lu.assertStrContains(r.out, "> 3001\n")
end

TestSurgft = {}

function TestSurgft:test_require_from_any_directory_no_global()
  for _, dir in ipairs{"/tmp", "/"} do
    local r = run([[-e 'local sf = require "surgft"; print(sf.zeros(2, 3):numel(), rawget(_G, "sf"))']],
                  {cwd = dir})
    ok(r, dir)
    lu.assertEquals(r.out, "6\tnil\n")
  end
end

function TestSurgft:test_lua_dir_is_the_project_lua_dir()
  local r = run([[-e 'print(package.searchpath("surgft", package.path))']])
  ok(r)
  local path = r.out:gsub("\n$", "")
  lu.assertStrMatches(path, "/.*lua/+surgft/init%.lua")
  lu.assertNotNil(io.open(path, "r"), path)
  -- the same file the running suite was given (both from this source tree)
  local here = package.searchpath("surgft", package.path)
  lu.assertEquals(slurp(path), slurp(here))
end

-- a copy of the binary (and its library) in a fresh tree: the lua/ directory beside the
-- executable wins over the source tree it was built from
function TestSurgft:test_lua_dir_relative_to_executable()
  local root = os.tmpname()
  os.remove(root)
  local bindir = BIN:match("^(.*)/[^/]+$")
  local function sh(c) lu.assertTrue(os.execute(c), c) end
  sh(string.format("mkdir -p %s/bin %s/lua/surgft %s/inst/bin %s/inst/share/surgft/lua/surgft", q(root), q(root),
                   q(root), q(root)))
  for _, d in ipairs{"/bin", "/inst/bin"} do
    sh(string.format("cp %s %s/libsurgft.so %s", q(BIN), q(bindir), q(root .. d)))
  end
  spit(root .. "/lua/surgft/init.lua", 'return {cli_probe_location = "beside"}')
  spit(root .. "/inst/share/surgft/lua/surgft/init.lua", 'return {cli_probe_location = "prefix"}')
  sh(string.format("ln -s %s %s/link", q(BIN), q(root)))
  local code = [[-e 'print(require("surgft").cli_probe_location)']]
  local beside = run(code, {cwd = "/"})
  local function run_as(bin)
    local out = os.tmpname()
    local ok = os.execute(string.format("cd / && %s %s >%s 2>&1", q(bin), code, q(out)))
    local s = slurp(out)
    os.remove(out)
    return ok, s
  end
  local ok1, s1 = run_as(root .. "/bin/surgft-lua")
  local ok2, s2 = run_as(root .. "/inst/bin/surgft-lua")
  local ok3, s3 = run_as(root .. "/link") -- a symlink resolves to the real build tree
  os.execute("rm -rf " .. q(root))
  ok(beside)
  lu.assertEquals(beside.out, "nil\n") -- the real library has no such field
  lu.assertTrue(ok1, s1)
  lu.assertEquals(s1, "beside\n")
  lu.assertTrue(ok2, s2)
  lu.assertEquals(s2, "prefix\n")
  lu.assertTrue(ok3, s3)
  lu.assertEquals(s3, "nil\n")
end

function TestSurgft:test_cjson_and_luaunit_on_the_path()
  local r = run([[-e 'print(require("cjson").encode({1, 2}), type(require("luaunit").run))']])
  ok(r)
  lu.assertEquals(r.out, "[1,2]\tfunction\n")
end

TestErrors = {}

function TestErrors:test_script_error_has_traceback_and_status()
  local s = script("local function f() error('boom') end\nf()\n")
  local r = run(q(s))
  os.remove(s)
  lu.assertEquals(r.code, 1)
  lu.assertEquals(r.out, "")
  lu.assertStrContains(r.err, "surgft-lua: " .. s .. ":1: boom")
  lu.assertStrContains(r.err, "stack traceback:")
  lu.assertStrContains(r.err, "in local 'f'")
end

function TestErrors:test_core_error_names_function_and_shapes()
  local r = run([[-e 'local sf = require "surgft"; sf.zeros(2, 3):reshape{4}']])
  lu.assertEquals(r.code, 1)
  lu.assertStrContains(r.err, "reshape")
  lu.assertStrContains(r.err, "[2,3]")
  lu.assertStrContains(r.err, "stack traceback:")
end

function TestErrors:test_e_error_status()
  local r = run([[-e 'error("in e")' -e 'print("not reached")']])
  lu.assertEquals(r.code, 1)
  lu.assertStrContains(r.err, "(command line):1: in e")
  lu.assertEquals(r.out, "")
end

function TestErrors:test_error_stops_before_script()
  local s = script('print("script ran")')
  local r = run([[-e 'error("first")' ]] .. q(s))
  os.remove(s)
  lu.assertEquals(r.code, 1)
  lu.assertEquals(r.out, "")
end

function TestErrors:test_syntax_error()
  local s = script("local = 1\n")
  local r = run(q(s))
  os.remove(s)
  lu.assertEquals(r.code, 1)
  lu.assertStrContains(r.err, s .. ":1:")
end

function TestErrors:test_missing_script()
  local r = run("/nonexistent/script.lua")
  lu.assertEquals(r.code, 1)
  lu.assertStrContains(r.err, "cannot open /nonexistent/script.lua")
end

function TestErrors:test_stdin_error_status()
  local r = run("-", {stdin = "error('piped')"})
  lu.assertEquals(r.code, 1)
  lu.assertStrContains(r.err, "stdin:1: piped")
end

function TestErrors:test_error_objects()
  local r = run([[-e 'error(setmetatable({}, {__tostring = function() return "custom msg" end}))']])
  lu.assertEquals(r.code, 1)
  lu.assertStrContains(r.err, "custom msg")
  r = run([[-e 'error({})']])
  lu.assertEquals(r.code, 1)
  lu.assertStrContains(r.err, "(error object is a table value)")
end

function TestErrors:test_os_exit_status()
  local r = run([[-e 'os.exit(3)']])
  lu.assertEquals(r.code, 3)
  r = run([[-e 'os.exit(false)']])
  lu.assertEquals(r.code, 1)
  r = run([[-e 'os.exit(true, true)']])
  lu.assertEquals(r.code, 0)
end

function TestErrors:test_script_return_value_is_ignored()
  local r = run([[-e 'return false']])
  ok(r)
end

os.exit(lu.LuaUnit.run())
