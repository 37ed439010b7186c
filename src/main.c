/*
 * surgft-lua: the standard Lua 5.4 interpreter's command line, with surgft preloaded
 * and the project's lua/ directory on the module path.
 *
 *   surgft-lua [options] [script [args]]
 *     -e stat   execute string 'stat'          -l mod   require 'mod' into global 'mod'
 *     -i        interactive mode after script  -v       show version information
 *     -E        ignore environment variables   -W       turn warnings on
 *     --        stop handling options          -        execute stdin and stop handling options
 *     --version surgft, Lua and OpenBLAS versions and the thread count
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "src/core/tensor.h"
#include "surgft_config.h"

int luaopen_surgft_core(lua_State *L);

static const char *progname = "surgft-lua";
static lua_State *globalL = NULL;

/* ---- messages and errors ---- */

static void l_message(const char *pname, const char *msg) {
  if (pname) fprintf(stderr, "%s: ", pname);
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
}

static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    if (!msg) msg = "(error object is not a string)";
    l_message(progname, msg);
    lua_pop(L, 1);
  }
  return status;
}

static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Ctrl-C while a script runs: stop it with an error at the next hook. */
static void lstop(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

static void laction(int i) {
  signal(i, SIG_DFL);
  lua_sethook(globalL, lstop, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static int docall(lua_State *L, int narg, int nres) {
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  globalL = L;
  signal(SIGINT, laction);
  int status = lua_pcall(L, narg, nres, base);
  signal(SIGINT, SIG_DFL);
  lua_remove(L, base);
  return status;
}

static int dochunk(lua_State *L, int status) {
  if (status == LUA_OK) status = docall(L, 0, 0);
  return report(L, status);
}

static int dostring(lua_State *L, const char *s, const char *name) {
  return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* -l mod or -l g=mod */
static int dolibrary(lua_State *L, char *spec) {
  char *eq = strchr(spec, '=');
  const char *glb = spec, *mod = spec;
  if (eq) {
    *eq = '\0';
    mod = eq + 1;
  }
  lua_getglobal(L, "require");
  lua_pushstring(L, mod);
  int status = docall(L, 1, 1);
  if (status == LUA_OK) lua_setglobal(L, glb);
  return report(L, status);
}

/* ---- the module path ---- */

static int file_exists(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  fclose(f);
  return 1;
}

/* The lua/ directory holding surgft/init.lua: $SURGFT_LUA_DIR, then relative to the
 * executable (<tree>/build/surgft-lua -> <tree>/lua; <prefix>/bin -> <prefix>/share/
 * surgft/lua; a build directory one level deeper), then the source tree this binary
 * was built from, then the configured install prefix. */
static int find_lua_dir(char *out, size_t n, int use_env) {
  char cand[PATH_MAX + 64], exe[PATH_MAX];
  const char *env = use_env ? getenv("SURGFT_LUA_DIR") : NULL;
  if (env && *env) {
    snprintf(out, n, "%s", env);
    return 1;
  }
  ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (len > 0) {
    exe[len] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    const char *rel[] = {"/../lua", "/../share/surgft/lua", "/../../lua"};
    for (size_t i = 0; i < sizeof rel / sizeof *rel; i++) {
      snprintf(cand, sizeof cand, "%s%s/surgft/init.lua", exe, rel[i]);
      if (file_exists(cand)) {
        snprintf(out, n, "%s%s", exe, rel[i]);
        return 1;
      }
    }
  }
  const char *fixed[] = {SURGFT_SOURCE_LUA_DIR, SURGFT_INSTALL_LUA_DIR};
  for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) {
    snprintf(cand, sizeof cand, "%s/surgft/init.lua", fixed[i]);
    if (file_exists(cand)) {
      snprintf(out, n, "%s", fixed[i]);
      return 1;
    }
  }
  return 0;
}

static void setup_paths(lua_State *L, int use_env) {
  char dir[PATH_MAX];
  lua_getglobal(L, "package");
  if (find_lua_dir(dir, sizeof dir, use_env)) {
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 1);
  }
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_surgft_core);
  lua_setfield(L, -2, "surgft.core");
  lua_pop(L, 2);
}

/* ---- version ---- */

/* The thread count as the library reports it: ask surgft.core (so whatever default it
 * applies when opened, e.g. from $SURGFT_THREADS, is in effect), else OpenBLAS. */
static int current_threads(lua_State *L) {
  int n = sf_threads(), top = lua_gettop(L);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "surgft.core");
  if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1) && lua_getfield(L, -1, "threads") == LUA_TFUNCTION) {
    if (lua_pcall(L, 0, 1, 0) == LUA_OK && lua_isinteger(L, -1)) n = (int)lua_tointeger(L, -1);
  }
  lua_settop(L, top);
  return n;
}

/* -v: one line, like lua -v. --version: one "key value" line per component. */
static void print_version(lua_State *L, int full) {
  if (!full) {
    printf("surgft %s  %s\n", SURGFT_VERSION, LUA_COPYRIGHT);
  } else {
    printf("surgft  %s\n", SURGFT_VERSION);
    printf("lua     %s\n", LUA_COPYRIGHT);
    printf("blas    %s\n", sf_blas_config());
    printf("threads %d\n", current_threads(L));
  }
  fflush(stdout);
}

/* ---- the REPL ---- */

static const char *get_prompt(lua_State *L, int first) {
  lua_getglobal(L, first ? "_PROMPT" : "_PROMPT2");
  const char *p = lua_tostring(L, -1);
  lua_pop(L, 1);
  return p ? p : (first ? "> " : ">> ");
}

static int incomplete(lua_State *L, int status) {
  if (status == LUA_ERRSYNTAX) {
    size_t lmsg;
    const char *msg = lua_tolstring(L, -1, &lmsg);
    const char *eof = "<eof>";
    size_t le = strlen(eof);
    if (lmsg >= le && strcmp(msg + lmsg - le, eof) == 0) {
      lua_pop(L, 1);
      return 1;
    }
  }
  return 0;
}

/* Reads one line (any length) and pushes it; 0 at end of input. */
static int pushline(lua_State *L, int first) {
  char *buf = NULL;
  size_t cap = 0;
  fputs(get_prompt(L, first), stdout);
  fflush(stdout);
  ssize_t got = getline(&buf, &cap, stdin);
  if (got < 0) {
    free(buf);
    return 0;
  }
  size_t l = (size_t)got;
  if (l > 0 && buf[l - 1] == '\n') buf[--l] = '\0';
  if (first && buf[0] == '=')
    lua_pushfstring(L, "return %s", buf + 1);
  else
    lua_pushlstring(L, buf, l);
  free(buf);
  return 1;
}

static int addreturn(lua_State *L) {
  const char *line = lua_tostring(L, -1);
  const char *retline = lua_pushfstring(L, "return %s;", line);
  int status = luaL_loadbuffer(L, retline, strlen(retline), "=stdin");
  if (status == LUA_OK)
    lua_remove(L, -2);
  else
    lua_pop(L, 2);
  return status;
}

static int multiline(lua_State *L) {
  for (;;) {
    size_t len;
    const char *line = lua_tolstring(L, 1, &len);
    int status = luaL_loadbuffer(L, line, len, "=stdin");
    if (!incomplete(L, status) || !pushline(L, 0)) return status;
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);
  }
}

static int loadline(lua_State *L) {
  lua_settop(L, 0);
  if (!pushline(L, 1)) return -1;
  int status = addreturn(L);
  if (status != LUA_OK) status = multiline(L);
  lua_remove(L, 1);
  return status;
}

static void l_print(lua_State *L) {
  int n = lua_gettop(L);
  if (n > 0) {
    luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
    lua_getglobal(L, "print");
    lua_insert(L, 1);
    if (lua_pcall(L, n, 0, 0) != LUA_OK)
      l_message(progname, lua_pushfstring(L, "error calling 'print' (%s)", lua_tostring(L, -1)));
  }
}

static void doREPL(lua_State *L) {
  int status;
  const char *old = progname;
  progname = NULL;
  while ((status = loadline(L)) != -1) {
    if (status == LUA_OK) status = docall(L, 0, LUA_MULTRET);
    if (status == LUA_OK)
      l_print(L);
    else
      report(L, status);
  }
  lua_settop(L, 0);
  fputs("\n", stdout);
  fflush(stdout);
  progname = old;
}

/* ---- the command line ---- */

static void print_usage(const char *badoption) {
  fprintf(stderr, "%s: ", progname);
  if (badoption[1] == 'e' || badoption[1] == 'l')
    fprintf(stderr, "'%s' needs argument\n", badoption);
  else
    fprintf(stderr, "unrecognized option '%s'\n", badoption);
  fprintf(stderr,
          "usage: %s [options] [script [args]]\n"
          "Available options are:\n"
          "  -e stat   execute string 'stat'\n"
          "  -i        enter interactive mode after executing 'script'\n"
          "  -l mod    require library 'mod' into global 'mod'\n"
          "  -l g=mod  require library 'mod' into global 'g'\n"
          "  -v        show version information\n"
          "  -E        ignore environment variables\n"
          "  -W        turn warnings on\n"
          "  --version show surgft, Lua and OpenBLAS versions and the thread count\n"
          "  --        stop handling options\n"
          "  -         stop handling options and execute stdin\n",
          progname);
}

enum { HAS_ERROR = 1, HAS_I = 2, HAS_V = 4, HAS_E = 8, HAS_UPPER_E = 16, HAS_VERSION = 32 };

/* Scans options; returns flags and sets *script to the index of the script (or argc). */
static int collectargs(char **argv, int *script) {
  int args = 0;
  *script = 0;
  if (argv[0] == NULL) return 0; /* no program name (argc == 0): no options either */
  for (int i = 1; argv[i] != NULL; i++) {
    *script = i;
    if (argv[i][0] != '-') return args;
    if (strcmp(argv[i], "--version") == 0) {
      args |= HAS_VERSION;
      continue;
    }
    switch (argv[i][1]) {
      case '-':
        if (argv[i][2] != '\0') return HAS_ERROR;
        *script = argv[i + 1] != NULL ? i + 1 : 0; /* a trailing '--' names no script */
        return args;
      case '\0':
        return args;
      case 'E':
        if (argv[i][2] != '\0') return HAS_ERROR;
        args |= HAS_UPPER_E;
        break;
      case 'W':
        if (argv[i][2] != '\0') return HAS_ERROR;
        break;
      case 'i':
        args |= HAS_I; /* fall through: -i implies -v */
        /* FALLTHROUGH */
      case 'v':
        if (argv[i][2] != '\0') return HAS_ERROR;
        args |= HAS_V;
        break;
      case 'e':
        args |= HAS_E; /* FALLTHROUGH */
      case 'l':
        if (argv[i][2] == '\0') {
          i++;
          if (argv[i] == NULL || argv[i][0] == '-') return HAS_ERROR;
        }
        break;
      default:
        return HAS_ERROR;
    }
  }
  *script = 0;
  return args;
}

/* Runs -e, -l and -W in order. */
static int runargs(lua_State *L, char **argv, int n) {
  for (int i = 1; i < n; i++) {
    if (strcmp(argv[i], "--version") == 0) continue;
    int option = argv[i][1];
    switch (option) {
      case 'e':
      case 'l': {
        char *extra = argv[i] + 2;
        if (*extra == '\0') extra = argv[++i];
        int status = option == 'e' ? dostring(L, extra, "=(command line)") : dolibrary(L, extra);
        if (status != LUA_OK) return 0;
        break;
      }
      case 'W':
        lua_warning(L, "@on", 0);
        break;
      default:
        break;
    }
  }
  return 1;
}

/* arg table as in lua.c: arg[0] = script, arg[1..] = its arguments, negative = interpreter and options */
static void createargtable(lua_State *L, char **argv, int argc, int script) {
  if (script == argc) script = 0;
  int narg = argc - (script + 1);
  lua_createtable(L, narg, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static int pushargs(lua_State *L) {
  if (lua_getglobal(L, "arg") != LUA_TTABLE) luaL_error(L, "'arg' is not a table");
  int n = (int)luaL_len(L, -1);
  luaL_checkstack(L, n + 3, "too many arguments to script");
  int i;
  for (i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
  lua_remove(L, -i);
  return n;
}

static int handle_script(lua_State *L, char **argv) {
  const char *fname = argv[0];
  if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0) fname = NULL; /* stdin */
  int status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    int n = pushargs(L);
    status = docall(L, n, LUA_MULTRET);
  }
  return report(L, status);
}

static int handle_luainit(lua_State *L) {
  const char *name = "=LUA_INIT_5_4";
  const char *init = getenv(name + 1);
  if (init == NULL) {
    name = "=LUA_INIT";
    init = getenv(name + 1);
  }
  if (init == NULL) return LUA_OK;
  if (init[0] == '@') return dochunk(L, luaL_loadfile(L, init + 1));
  return dostring(L, init, name);
}

static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  int script = 0;
  int args = collectargs(argv, &script);
  luaL_checkversion(L);
  if (args == HAS_ERROR) {
    print_usage(argv[script]);
    return 0;
  }
  if (args & HAS_UPPER_E) {
    lua_pushboolean(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
  }
  luaL_openlibs(L);
  setup_paths(L, !(args & HAS_UPPER_E));
  createargtable(L, argv, argc, script);
  lua_gc(L, LUA_GCRESTART);
  lua_gc(L, LUA_GCGEN, 0, 0);
  if (args & HAS_VERSION) print_version(L, 1);
  else if (args & HAS_V) print_version(L, 0);
  if (!(args & HAS_UPPER_E) && handle_luainit(L) != LUA_OK) return 0;
  if (!runargs(L, argv, script > 0 ? script : argc)) return 0;
  if (script > 0) {
    if (handle_script(L, argv + script) != LUA_OK) return 0;
  }
  if (args & HAS_I) {
    doREPL(L);
  } else if (script == 0 && !(args & (HAS_E | HAS_V | HAS_VERSION))) {
    if (isatty(0)) {
      print_version(L, 0);
      doREPL(L);
    } else {
      dochunk(L, luaL_loadfile(L, NULL));
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

int main(int argc, char **argv) {
  lua_State *L = luaL_newstate();
  if (L == NULL) {
    l_message(argv[0], "cannot create state: not enough memory");
    return EXIT_FAILURE;
  }
  lua_gc(L, LUA_GCSTOP);
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  int status = lua_pcall(L, 2, 1, 0);
  int result = lua_toboolean(L, -1);
  report(L, status);
  lua_close(L);
  return (result && status == LUA_OK) ? EXIT_SUCCESS : EXIT_FAILURE;
}
