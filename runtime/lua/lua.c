/*
 * lua.c -- the Lua side of skein: the `skein` module, native Lua skills,
 * and the bridge between Lua coroutines and the kernel's event loop.
 *
 * A kernel is bound to at most one Lua state.  The binding is a small
 * private struct (klua) in the kernel's slot for Lua (kern_slot) and a
 * full userdata (binding) in the state's registry on the Lua side; each
 * points at the other and whichever side goes first clears the other's
 * pointer, so the kernel and the state may be closed in either order.
 *
 * Three ways a state gets bound:
 *   sk_lua_open(k, L)   an embedder's (or the CLI's) state; nobody owns
 *                       anybody, the embedder closes both;
 *   klua_state(k)       the kernel needs Lua (a skill.lua) and has no
 *                       state: it makes one and closes it in klua_close;
 *   luaopen_skein(L)    require("skein") from a stock interpreter: the
 *                       state owns a fresh kernel through the binding's
 *                       __gc.
 *
 * Every entry from C into Lua goes through docall() with msghandler, which
 * turns any error into a skein error table carrying a traceback.  C heap
 * memory never stays live across a call that can raise: it is either owned
 * by a userdata with __gc (box, cbox, sched) or by a caller-side struct
 * outside the protected call.
 *
 * Waiting.  skein.invoke normally starts the call with inv_start and pumps
 * the loop until it finishes.  Inside a coroutine run by skein.parallel it
 * yields instead (lua_yieldk); the scheduler pumps the loop for all its
 * branches at once and resumes each branch when its call completes, so
 * hundreds of model calls are in flight on one thread.
 */
#include <ctype.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "lua/klua.h"

#define ERROR_MT "skein.error"
#define BINDING_MT "skein.binding"
#define BOX_MT "skein.box"
#define CBOX_MT "skein.cbox"
#define SCHED_MT "skein.parallel"
#define ARGS_MT "skein.args"
#define PLAN_MT "skein.Plan"

/* Registry keys (their addresses; the values are never written). */
static const char BINDING_KEY = 'b';  /* -> binding userdata */
static const char MODULE_KEY = 'm';   /* -> the module table */
static const char BRANCHES_KEY = 'p'; /* -> {thread = lightuserdata branch} */

#define MAX_BRANCHES 1000000 /* ceiling on one skein.parallel call */
#define MAX_PARAMS 256       /* ceiling on parameters of one function */
#define JSON_DEPTH 32        /* nesting limit converting JSON to Lua */

typedef struct binding binding;

/* The kernel side of a binding. */
typedef struct klua {
    sk_kernel *k;
    lua_State *L;       /* main thread of the bound state; NULL once closed */
    int owns_state;     /* made by klua_state: klua_close closes it */
    binding *bind;      /* the Lua side, NULL once collected */
    lua_State *current; /* the thread currently inside a skein call */
    int next_depth;     /* nesting depth of invokes started from Lua now */
    int in_stream;      /* inside a stream function: no waiting allowed */
} klua;

/* The Lua side: a userdata in the registry. */
struct binding {
    klua *st;          /* NULL once the kernel side is gone */
    sk_kernel *owned;  /* luaopen_skein: the kernel this state owns */
};

/* The outcome of one call started with inv_start, plus its streaming
 * callback.  Lives inside a box (synchronous invoke) or a sched (parallel
 * branch), both userdata whose __gc frees what is left here. */
typedef struct sched sched;
typedef struct waiter {
    klua *st;
    int done;
    sk_status status;
    char *text;          /* owned until pushed */
    sk_err *err;         /* owned until raised */
    int stream_ref;      /* the Lua stream function, or LUA_NOREF */
    sk_err *stream_err;  /* the stream function's first failure */
    /* called when the call ends, for a coroutine that yielded waiting on
     * it (a parallel branch, a native function): it resumes the
     * coroutine from a loop task */
    void (*wake)(struct waiter *w);
    int json;            /* the answer is JSON (an output shape): push it
                            as a table */
} waiter;

/* Temporaries of one skein.invoke / skein.render call. */
typedef struct box {
    waiter w;
    sk_vars *vars;
    sk_template *tpl;
} box;

/* One C pointer with its destructor, freed by __gc if a raise strands it. */
typedef struct cbox {
    void *p;
    void (*fn)(void *);
} cbox;

/* A coroutine that skein.invoke may yield from: a branch of
 * skein.parallel, or a native Lua function run by the kernel.  The
 * registry's branch map takes its thread to it. */
typedef struct branch {
    waiter w;      /* first member: a branch is passed as its waiter */
    int nargs;     /* arguments pushed for the first resume */
    int waiting;   /* yielded inside skein.invoke, its call in flight */
    sched *s;      /* a parallel branch: its scheduler, and its index */
    size_t i;
} branch;

/* The scheduler of one skein.parallel call.  Branches are started and
 * resumed by loop tasks, never by a loop of the caller's own: so while
 * one branch waits inside a call that pumps the loop itself (a DataFrame
 * operation, a plan), the others still start and resume.  Its threads,
 * results and first error live in a registry table (ref). */
struct sched {
    klua *st;
    int ref;          /* {threads = {...}, results = {...}, err = e} */
    size_t n, max;
    size_t started, finished, running, first_err;
    int done;         /* every branch has finished */
    int nomem;        /* a step could not be filed: out of memory */
    branch b[];
};

/* ---- small helpers ----------------------------------------------------- */

static lua_State *main_thread(lua_State *L)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    lua_State *m = lua_tothread(L, -1);
    lua_pop(L, 1);
    return m;
}

/* The thread C code may call into now: the one inside a skein call (it is
 * running C, so it can take a nested call), else the main thread. */
static lua_State *run_state(const klua *st)
{
    return st->current ? st->current : st->L;
}

static sk_status kind_to_code(const char *kind)
{
    for (int c = SK_OK; c <= SK_STATUS_MAX; c++)
        if (strcmp(sk_status_kind((sk_status)c), kind) == 0)
            return (sk_status)c;
    return (sk_status)-1;
}

static int is_err_table(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx))
        return 0;
    luaL_getmetatable(L, ERROR_MT);
    int same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return same;
}

static void free_json(void *p) { cJSON_Delete(p); }

static cbox *cbox_new(lua_State *L, void (*fn)(void *))
{
    cbox *c = lua_newuserdatauv(L, sizeof *c, 0);
    c->p = NULL;
    c->fn = fn;
    luaL_setmetatable(L, CBOX_MT);
    return c;
}

static void cbox_release(cbox *c)
{
    if (c->p) {
        c->fn(c->p);
        c->p = NULL;
    }
}

static int cbox_gc(lua_State *L)
{
    cbox_release(lua_touserdata(L, 1));
    return 0;
}

static void waiter_init(waiter *w, klua *st)
{
    memset(w, 0, sizeof *w);
    w->st = st;
    w->stream_ref = LUA_NOREF;
}

/* Frees what the waiter still owns.  Safe to call twice. */
static void waiter_clear(lua_State *L, waiter *w)
{
    free(w->text);
    w->text = NULL;
    err_free(w->err);
    w->err = NULL;
    err_free(w->stream_err);
    w->stream_err = NULL;
    if (w->stream_ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, w->stream_ref);
        w->stream_ref = LUA_NOREF;
    }
}

static box *box_new(lua_State *L, klua *st)
{
    box *bx = lua_newuserdatauv(L, sizeof *bx, 0);
    memset(bx, 0, sizeof *bx);
    waiter_init(&bx->w, st);
    luaL_setmetatable(L, BOX_MT);
    return bx;
}

static void box_clear(lua_State *L, box *bx)
{
    waiter_clear(L, &bx->w);
    sk_vars_free(bx->vars);
    bx->vars = NULL;
    sk_template_free(bx->tpl);
    bx->tpl = NULL;
}

static int box_gc(lua_State *L)
{
    box_clear(L, lua_touserdata(L, 1));
    return 0;
}

/* ---- JSON and error tables --------------------------------------------- */

/* Pushes a JSON value as Lua (objects and arrays as tables). */
static void push_json(lua_State *L, const cJSON *j, int depth)
{
    if (depth > JSON_DEPTH || !j || cJSON_IsNull(j)) {
        lua_pushnil(L);
    } else if (cJSON_IsBool(j)) {
        lua_pushboolean(L, cJSON_IsTrue(j));
    } else if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d == (double)(lua_Integer)d)
            lua_pushinteger(L, (lua_Integer)d);
        else
            lua_pushnumber(L, d);
    } else if (cJSON_IsString(j)) {
        lua_pushstring(L, j->valuestring);
    } else if (cJSON_IsArray(j)) {
        lua_createtable(L, cJSON_GetArraySize(j), 0);
        lua_Integer i = 1;
        for (const cJSON *c = j->child; c; c = c->next) {
            push_json(L, c, depth + 1);
            lua_rawseti(L, -2, i++);
        }
    } else if (cJSON_IsObject(j)) {
        lua_createtable(L, 0, 4);
        for (const cJSON *c = j->child; c; c = c->next) {
            if (!c->string)
                continue;
            push_json(L, c, depth + 1);
            lua_setfield(L, -2, c->string);
        }
    } else {
        lua_pushnil(L);
    }
}

/* Pushes the error table for e (borrowed; NULL means out of memory).  The
 * caller keeps e reachable from a userdata so a raise here cannot leak it. */
static void push_err(lua_State *L, const sk_err *e)
{
    sk_status code = e ? e->code : SK_NOMEM;
    lua_createtable(L, 0, 8); /* [t] */
    if (e && e->detail_json) {
        cbox *tree = cbox_new(L, free_json); /* [t, tree] */
        tree->p = cJSON_Parse(e->detail_json);
        const cJSON *o = tree->p;
        if (cJSON_IsObject(o)) {
            for (const cJSON *c = o->child; c; c = c->next) {
                if (!c->string)
                    continue;
                push_json(L, c, 1);
                lua_setfield(L, -3, c->string);
            }
        }
        cbox_release(tree);
        lua_pop(L, 1); /* [t] */
    }
    lua_pushstring(L, sk_status_kind(code));
    lua_setfield(L, -2, "kind");
    lua_pushinteger(L, code);
    lua_setfield(L, -2, "code");
    lua_pushstring(L, e && e->message ? e->message : sk_strerror(code));
    lua_setfield(L, -2, "message");
    if (e && e->function) {
        lua_pushstring(L, e->function);
        lua_setfield(L, -2, "function");
    }
    lua_createtable(L, e ? (int)e->n_chain : 0, 0);
    for (size_t i = 0; e && i < e->n_chain; i++) {
        lua_pushstring(L, e->chain[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "chain");
    if (e && e->http_status) {
        lua_pushinteger(L, e->http_status);
        lua_setfield(L, -2, "http_status");
    }
    luaL_setmetatable(L, ERROR_MT);
}

/* Pushes the kernel's last error as an error table (via sk_error_json, so
 * function, chain and details come along). */
static void push_kernel_err(lua_State *L, sk_kernel *k)
{
    cbox *text = cbox_new(L, free);     /* [text] */
    cbox *tree = cbox_new(L, free_json); /* [text, tree] */
    char *json = NULL;
    if (sk_error_json(k, &json) == SK_OK)
        text->p = json;
    if (text->p)
        tree->p = cJSON_Parse(text->p);
    if (cJSON_IsObject((cJSON *)tree->p)) {
        push_json(L, tree->p, 0); /* [text, tree, t] */
        if (lua_getfield(L, -1, "chain") != LUA_TTABLE) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_setfield(L, -2, "chain");
        } else {
            lua_pop(L, 1);
        }
        luaL_setmetatable(L, ERROR_MT);
    } else {
        sk_err e = {0};
        e.code = sk_errcode(k);
        e.message = (char *)sk_errmsg(k);
        push_err(L, &e);
    }
    cbox_release(tree);
    cbox_release(text);
    lua_replace(L, -3);
    lua_pop(L, 1); /* [t] */
}

/* Raises the error table on the top of the stack. */
static int raise_top(lua_State *L) { return lua_error(L); }

static int error_tostring(lua_State *L)
{
    lua_getfield(L, 1, "kind");
    lua_getfield(L, 1, "message");
    const char *kind = lua_tostring(L, -2);
    const char *msg = lua_tostring(L, -1);
    lua_pushfstring(L, "%s: %s", kind ? kind : "error", msg ? msg : "?");
    return 1;
}

/* ---- the one door from C into Lua -------------------------------------- */

/* Turns any error into a skein error table with a traceback; skein error
 * tables pass through unchanged so they keep kind, function and chain
 * across nested levels. */
static int msghandler(lua_State *L)
{
    if (is_err_table(L, 1))
        return 1;
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            msg = lua_tostring(L, -1);
        else
            msg = lua_pushfstring(L, "(error object is a %s value)",
                                  luaL_typename(L, 1));
    }
    lua_createtable(L, 0, 6); /* [.., t] */
    lua_pushstring(L, sk_status_kind(SK_SCRIPT));
    lua_setfield(L, -2, "kind");
    lua_pushinteger(L, SK_SCRIPT);
    lua_setfield(L, -2, "code");
    lua_pushstring(L, msg);
    lua_setfield(L, -2, "message");
    lua_newtable(L);
    lua_setfield(L, -2, "chain");
    luaL_traceback(L, L, NULL, 1);
    lua_setfield(L, -2, "traceback");
    luaL_setmetatable(L, ERROR_MT);
    return 1;
}

/* Calls the function below narg arguments in protected mode with the
 * message handler.  Returns the lua_pcall status; on error the error value
 * is on the top. */
static int docall(lua_State *L, int narg, int nres)
{
    int base = lua_gettop(L) - narg;
    lua_pushcfunction(L, msghandler);
    lua_insert(L, base);
    int status = lua_pcall(L, narg, nres, base);
    lua_remove(L, base);
    return status;
}

/* Converting a Lua error value into an sk_err happens in protected mode;
 * the result lands in this caller-owned struct, so nothing leaks if the
 * conversion itself fails half way. */
typedef struct conv_ctx {
    sk_err *err;
    cJSON *detail;
} conv_ctx;

static const char *const ERR_FIELDS[] = {"kind", "code", "message",
                                         "function", "chain", "http_status",
                                         NULL};

static int is_err_field(const char *key)
{
    for (int i = 0; ERR_FIELDS[i]; i++)
        if (strcmp(key, ERR_FIELDS[i]) == 0)
            return 1;
    return 0;
}

static int err_conv_pf(lua_State *L)
{
    conv_ctx *c = lua_touserdata(L, 1);
    if (!is_err_table(L, 2)) {
        const char *msg = lua_tostring(L, 2);
        if (!msg)
            msg = lua_pushfstring(L, "(error object is a %s value)",
                                  luaL_typename(L, 2));
        c->err = err_new(SK_SCRIPT, "%s", msg);
        return 0;
    }
    sk_status code = (sk_status)-1;
    if (lua_getfield(L, 2, "code") == LUA_TNUMBER) {
        lua_Integer n = lua_tointeger(L, -1);
        if (n > SK_OK && n <= SK_RECURSION)
            code = (sk_status)n;
    }
    if ((int)code < 0 && lua_getfield(L, 2, "kind") == LUA_TSTRING)
        code = kind_to_code(lua_tostring(L, -1));
    if ((int)code <= 0)
        code = SK_SCRIPT;
    lua_getfield(L, 2, "message");
    const char *msg = lua_tostring(L, -1);
    c->err = err_new(code, "%s", msg ? msg : sk_strerror(code));
    if (!c->err)
        return 0;
    if (lua_getfield(L, 2, "function") == LUA_TSTRING)
        c->err->function = sk_strdup(lua_tostring(L, -1));
    if (lua_getfield(L, 2, "chain") == LUA_TTABLE) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer i = 1; i <= n; i++) {
            if (lua_rawgeti(L, -1, i) == LUA_TSTRING)
                err_push(c->err, lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    if (lua_getfield(L, 2, "http_status") == LUA_TNUMBER)
        c->err->http_status = (int)lua_tointeger(L, -1);
    /* Other scalar fields (traceback, details a script added) travel as
     * the error's detail object. */
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        if (lua_type(L, -2) == LUA_TSTRING &&
            !is_err_field(lua_tostring(L, -2))) {
            const char *key = lua_tostring(L, -2);
            if (!c->detail && !(c->detail = cJSON_CreateObject()))
                return 0;
            switch (lua_type(L, -1)) {
            case LUA_TSTRING:
                cJSON_AddStringToObject(c->detail, key, lua_tostring(L, -1));
                break;
            case LUA_TNUMBER:
                cJSON_AddNumberToObject(c->detail, key, lua_tonumber(L, -1));
                break;
            case LUA_TBOOLEAN:
                cJSON_AddBoolToObject(c->detail, key, lua_toboolean(L, -1));
                break;
            default:
                break;
            }
        }
        lua_pop(L, 1);
    }
    if (c->detail)
        c->err->detail_json = cJSON_PrintUnformatted(c->detail);
    return 0;
}

/* The error value at idx as a new sk_err (caller frees; never NULL unless
 * memory ran out, in which case *code says SK_NOMEM).  Leaves the stack as
 * it found it. */
static sk_err *err_from_value(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    conv_ctx c = {NULL, NULL};
    int top = lua_gettop(L);
    if (lua_checkstack(L, 8)) {
        lua_pushcfunction(L, err_conv_pf);
        lua_pushlightuserdata(L, &c);
        lua_pushvalue(L, idx);
        if (docall(L, 2, 0) != LUA_OK && !c.err) {
            size_t n;
            const char *m = lua_tolstring(L, -1, &n);
            if (m)
                c.err = err_new(SK_SCRIPT, "%s", m);
        }
    }
    lua_settop(L, top);
    cJSON_Delete(c.detail);
    return c.err;
}

/* ---- arguments ----------------------------------------------------------- */

/* args.X finds a variable whatever the case of its name, as the kernel's
 * variable sets do. */
static int args_index(lua_State *L)
{
    if (lua_type(L, 2) != LUA_TSTRING)
        return 0;
    const char *key = lua_tostring(L, 2);
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        if (lua_type(L, -2) == LUA_TSTRING &&
            strcasecmp(lua_tostring(L, -2), key) == 0)
            return 1;
        lua_pop(L, 1);
    }
    return 0;
}

static void push_args(lua_State *L, const sk_vars *vars)
{
    size_t n = sk_vars_count(vars);
    lua_createtable(L, 0, (int)n + 1);
    for (size_t i = 0; i < n; i++) {
        const char *name, *value;
        sk_vars_at(vars, i, &name, &value);
        lua_pushstring(L, value);
        lua_setfield(L, -2, name);
    }
    if (!sk_vars_get(vars, "input")) {
        lua_pushliteral(L, "");
        lua_setfield(L, -2, "input");
    }
    luaL_setmetatable(L, ARGS_MT);
}

/* Reads a variables argument (nil, a string/number meaning input, or a
 * table of name = value) into *slot, a field of a userdata, so a raise
 * midway frees it with the userdata. */
static void vars_from_lua(lua_State *L, int idx, sk_vars **slot)
{
    idx = lua_absindex(L, idx);
    if (sk_vars_new(slot) != SK_OK)
        luaL_error(L, "out of memory");
    int t = lua_type(L, idx);
    if (t == LUA_TNONE || t == LUA_TNIL)
        return;
    if (t == LUA_TSTRING || t == LUA_TNUMBER) {
        lua_pushvalue(L, idx);
        const char *s = lua_tostring(L, -1);
        if (sk_vars_set(*slot, "input", s) != SK_OK)
            luaL_error(L, "out of memory");
        lua_pop(L, 1);
        return;
    }
    if (t != LUA_TTABLE)
        luaL_typeerror(L, idx, "string or table");
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_argerror(L, idx, "variable names must be strings");
        const char *name = lua_tostring(L, -2);
        const char *value;
        switch (lua_type(L, -1)) {
        case LUA_TSTRING:
        case LUA_TNUMBER:
            /* converting the value slot in place is safe; only keys
             * must stay untouched for lua_next */
            value = lua_tostring(L, -1);
            break;
        case LUA_TBOOLEAN:
            value = lua_toboolean(L, -1) ? "true" : "false";
            break;
        default:
            luaL_argerror(L, idx, lua_pushfstring(L,
                "variable '%s' must be a string, number or boolean", name));
            return;
        }
        if (value && sk_vars_set(*slot, name, value) != SK_OK)
            luaL_error(L, "out of memory");
        lua_pop(L, 1);
    }
}

/* ---- registering native Lua functions ---------------------------------- */

static void klua_close(sk_kernel *k);
static void lua_fn_release(sk_kernel *k, sk_function *f);
static sk_status klua_start(sk_kernel *k, sk_function *f, const sk_vars *vars,
                            int depth, int untrusted, fn_done_fn done, void *ud,
                            sk_err **err);
static const fn_ops lua_fn_ops = {klua_start, lua_fn_release};

static int valid_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_')
            return 0;
    return 1;
}

/* A parameter field as a string, or NULL for nil; numbers and booleans
 * are converted, pushed strings stay on the stack (the caller resets it). */
static const char *param_field(lua_State *L, int tidx, const char *key,
                               lua_Integer pos)
{
    int t = lua_getfield(L, tidx, key);
    if (t == LUA_TNIL && pos > 0) {
        lua_pop(L, 1);
        t = lua_rawgeti(L, tidx, pos);
    }
    if (t == LUA_TNIL)
        return NULL;
    if (t == LUA_TBOOLEAN)
        return lua_toboolean(L, -1) ? "true" : "false";
    return lua_tostring(L, -1);
}

/* Registers the value at vidx (a function, or {description, parameters,
 * run}) as Lua native function skill.name.  Raises on misuse.  path
 * (borrowed, may be NULL) is the folder it came from. */
static void register_one(lua_State *L, klua *st, const char *skill,
                         const char *name, int vidx, const char *path)
{
    vidx = lua_absindex(L, vidx);
    int top = lua_gettop(L);
    if (!valid_name(skill) || !valid_name(name))
        luaL_error(L, "invalid function name '%s.%s' (letters, digits and _)",
                   skill, name);
    const char *desc = NULL;
    int fnidx = vidx;
    cfg_param *params = NULL;
    size_t n_params = 0;
    if (lua_type(L, vidx) == LUA_TTABLE) {
        if (lua_getfield(L, vidx, "run") != LUA_TFUNCTION)
            luaL_error(L, "%s.%s: 'run' must be a function", skill, name);
        fnidx = lua_gettop(L);
        int dt = lua_getfield(L, vidx, "description");
        if (dt != LUA_TNIL && dt != LUA_TSTRING)
            luaL_error(L, "%s.%s: 'description' must be a string", skill, name);
        desc = lua_tostring(L, -1);
        int pt = lua_getfield(L, vidx, "parameters");
        if (pt == LUA_TTABLE) {
            int pidx = lua_gettop(L);
            n_params = lua_rawlen(L, pidx);
            if (n_params > MAX_PARAMS)
                luaL_error(L, "%s.%s: more than %d parameters", skill, name,
                           MAX_PARAMS);
            /* Lua-owned, so a raise below leaks nothing. */
            params = lua_newuserdatauv(L, (n_params ? n_params : 1) *
                                              sizeof *params, 0);
            memset(params, 0, (n_params ? n_params : 1) * sizeof *params);
            for (size_t i = 0; i < n_params; i++) {
                luaL_checkstack(L, 8, "too many parameters");
                int et = lua_rawgeti(L, pidx, (lua_Integer)i + 1);
                int eidx = lua_gettop(L);
                if (et == LUA_TSTRING) {
                    params[i].name = (char *)lua_tostring(L, eidx);
                    continue; /* the string stays on the stack */
                }
                if (et != LUA_TTABLE)
                    luaL_error(L, "%s.%s: parameter %d must be a table",
                               skill, name, (int)i + 1);
                params[i].name = (char *)param_field(L, eidx, "name", 1);
                params[i].description =
                    (char *)param_field(L, eidx, "description", 2);
                params[i].default_value =
                    (char *)param_field(L, eidx, "default", 3);
                lua_getfield(L, eidx, "required");
                params[i].required = lua_toboolean(L, -1);
                if (!params[i].name || !*params[i].name)
                    luaL_error(L, "%s.%s: parameter %d has no name", skill,
                               name, (int)i + 1);
            }
        } else if (pt != LUA_TNIL) {
            luaL_error(L, "%s.%s: 'parameters' must be an array", skill, name);
        }
    } else if (lua_type(L, vidx) != LUA_TFUNCTION) {
        luaL_error(L, "%s.%s: expected a function or a table with 'run'",
                   skill, name);
    }

    /* From here on nothing raises once C memory is live: the reference is
     * taken first, and fn_release drops it if anything fails. */
    lua_pushvalue(L, fnidx);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    sk_function *f = fn_new(FN_NATIVE_OPS, skill, name);
    if (!f) {
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        luaL_error(L, "out of memory");
    }
    f->ops = &lua_fn_ops;
    f->ref = ref;
    free(f->description);
    f->description = sk_strdup(desc ? desc : "");
    free(f->path);
    f->path = path ? sk_strdup(path) : NULL;
    int ok = f->description && (!path || f->path) &&
             fn_set_params(f, params, n_params) == SK_OK;
    if (!ok) {
        fn_release(st->k, f);
        luaL_error(L, "out of memory");
    }
    sk_status rc = reg_add(st->k, f);
    if (rc != SK_OK)
        luaL_error(L, "%s.%s: %s", skill, name, sk_strerror(rc));
    lua_settop(L, top);
}

/* Registers every entry of the table at tidx as skill.<key>. */
static void register_table(lua_State *L, klua *st, const char *skill,
                           int tidx, const char *path)
{
    tidx = lua_absindex(L, tidx);
    lua_pushnil(L);
    while (lua_next(L, tidx)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "skill %s: function names must be strings", skill);
        register_one(L, st, skill, lua_tostring(L, -2), -1, path);
        lua_pop(L, 1);
    }
}

/* ---- binding ------------------------------------------------------------ */

static const char SLOT_KEY = 'L'; /* the kernel slot of the Lua side */

static void **lua_slot(sk_kernel *k) { return kern_slot(k, &SLOT_KEY); }

static klua *slot_state(sk_kernel *k)
{
    void **slot = lua_slot(k);
    return slot ? *slot : NULL;
}

/* The module functions' upvalue 1 is the binding; a closed kernel makes
 * every call fail cleanly instead of touching freed memory. */
static klua *check_st(lua_State *L)
{
    binding *b = lua_touserdata(L, lua_upvalueindex(1));
    if (!b || !b->st)
        luaL_error(L, "skein: the kernel is closed");
    return b->st;
}

/* check_st for functions that run the event loop.  A stream function may
 * run inside a transfer callback, where pumping the loop again would
 * re-enter libcurl, so those calls are refused there. */
static klua *check_waiting_st(lua_State *L, const char *what)
{
    klua *st = check_st(L);
    if (st->in_stream)
        luaL_error(L, "skein.%s cannot run inside a stream function", what);
    return st;
}

static int binding_gc(lua_State *L)
{
    binding *b = lua_touserdata(L, 1);
    if (b->st) {
        b->st->L = NULL;
        b->st->bind = NULL;
        b->st = NULL;
    }
    if (b->owned) {
        sk_kernel *k = b->owned;
        b->owned = NULL;
        sk_kernel_free(k);
    }
    return 0;
}

/* ---- skein.invoke and the parallel scheduler ---------------------------- */

static void wait_done(void *ud, sk_status status, char *text, sk_err *err)
{
    waiter *w = ud;
    w->done = 1;
    w->status = status;
    w->text = text;
    w->err = err;
    if (w->wake)
        w->wake(w);
}

typedef struct stream_ctx {
    waiter *w;
    const char *text;
    size_t len;
} stream_ctx;

static int stream_pf(lua_State *L)
{
    stream_ctx *c = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->w->stream_ref);
    lua_pushlstring(L, c->text, c->len);
    lua_call(L, 1, 0);
    return 0;
}

/* Streamed text from the invoke path, possibly from inside a transfer
 * callback: the Lua function runs protected, and its first failure is
 * kept to be raised once the call ends. */
static void stream_cb(void *ud, const char *text, size_t len)
{
    waiter *w = ud;
    klua *st = w->st;
    if (w->stream_err || w->stream_ref == LUA_NOREF || !st->L)
        return;
    lua_State *L = run_state(st);
    if (!lua_checkstack(L, 6))
        return;
    stream_ctx c = {w, text, len};
    lua_pushcfunction(L, stream_pf);
    lua_pushlightuserdata(L, &c);
    st->in_stream++;
    int rc = docall(L, 1, 0);
    st->in_stream--;
    if (rc != LUA_OK) {
        w->stream_err = err_from_value(L, -1);
        if (!w->stream_err)
            w->stream_err = err_new(SK_NOMEM, "out of memory");
        lua_pop(L, 1);
    }
}

/* Pushes the finished call's text, or raises its error.  The waiter's
 * memory belongs to a userdata, so raising leaks nothing. */
static int finish_wait(lua_State *L, waiter *w)
{
    if (w->stream_ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, w->stream_ref);
        w->stream_ref = LUA_NOREF;
    }
    if (w->status == SK_OK && !w->stream_err) {
        cJSON *j = w->json && w->text ? cJSON_Parse(w->text) : NULL;
        if (j) {
            /* the cJSON tree is freed first if pushing raises: boxed */
            cbox *c = cbox_new(L, free_json);
            c->p = j;
            push_json(L, j, 0);
            lua_remove(L, -2);
            cbox_release(c);
        } else {
            lua_pushstring(L, w->text ? w->text : "");
        }
        free(w->text);
        w->text = NULL;
        return 1;
    }
    push_err(L, w->status != SK_OK ? w->err : w->stream_err);
    waiter_clear(L, w);
    return raise_top(L);
}

static int invoke_cont(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    branch *b = (branch *)ctx;
    b->waiting = 0;
    return finish_wait(L, &b->w);
}

/* The branch of a running skein.parallel that L is, if L can yield to it
 * (not from inside a non-yieldable C call). */
static branch *parallel_branch(lua_State *L)
{
    if (!lua_isyieldable(L))
        return NULL;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &BRANCHES_KEY);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return NULL;
    }
    lua_pushthread(L);
    lua_rawget(L, -2);
    branch *b = lua_touserdata(L, -1);
    lua_pop(L, 2);
    return b;
}

/* skein.invoke(name, input_or_vars [, {model=, stream=}]) -> text */
/* Encodes the Lua value at idx as JSON (tables with a sequence part are
 * arrays, others objects with string keys).  Returns NULL for values JSON
 * cannot hold (functions, userdata, deep nesting); never raises, so the
 * caller can free what it holds before reporting. */
static cJSON *lua_to_json(lua_State *L, int idx, int depth)
{
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN: return cJSON_CreateBool(lua_toboolean(L, idx));
    case LUA_TNUMBER: return cJSON_CreateNumber(lua_tonumber(L, idx));
    case LUA_TSTRING: return cJSON_CreateString(lua_tostring(L, idx));
    case LUA_TTABLE: break;
    default: return NULL;
    }
    if (depth > 32 || !lua_checkstack(L, 4))
        return NULL;
    size_t n = lua_rawlen(L, idx);
    cJSON *out = n ? cJSON_CreateArray() : cJSON_CreateObject();
    if (!out)
        return NULL;
    if (n) {
        for (size_t i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, (lua_Integer)i);
            cJSON *item = lua_to_json(L, -1, depth + 1);
            lua_pop(L, 1);
            if (!item) {
                cJSON_Delete(out);
                return NULL;
            }
            cJSON_AddItemToArray(out, item);
        }
        return out;
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) { /* [.., key, value] */
        cJSON *item = lua_type(L, -2) == LUA_TSTRING ? lua_to_json(L, -1, depth + 1) : NULL;
        if (!item) {
            lua_pop(L, 2);
            cJSON_Delete(out);
            return NULL;
        }
        cJSON_AddItemToObject(out, lua_tostring(L, -2), item);
        lua_pop(L, 1);
    }
    return out;
}

/* The JSON text of the value at idx (caller frees with free), or NULL. */
static char *lua_to_json_text(lua_State *L, int idx)
{
    cJSON *j = lua_to_json(L, idx, 0);
    if (!j)
        return NULL;
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

/* Whether f's answers are JSON: its policy, or this call's (argument 3,
 * a table), requires a JSON-schema output shape. */
static int answers_json(lua_State *L, sk_kernel *k, sk_function *f)
{
    int json = 0;
    if (f->kind == FN_SEMANTIC) {
        sk_err *pe = NULL;
        const sk_policy *fp = kern_policy(k, f, &pe);
        err_free(pe);
        if (fp && fp->shape) {
            const char *js = NULL, *re = NULL;
            char *const *ch = NULL;
            size_t nc = 0;
            shape_request(fp->shape, &js, &ch, &nc, &re);
            json = js != NULL;
        }
    }
    if (!lua_istable(L, 3))
        return json;
    int top = lua_gettop(L);
    if (lua_getfield(L, 3, "policy") == LUA_TTABLE) {
        int t = lua_getfield(L, -1, "output");
        if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1))
            json = 0;
        else if (t == LUA_TTABLE)
            json = lua_getfield(L, -1, "json_schema") != LUA_TNIL;
    }
    lua_settop(L, top); /* exactly what this pushed */
    return json;
}

#define MAX_ALLOWED 256 /* names in one `functions` list */
static long functions_opt(lua_State *L, int arg, const char **names);

static int l_invoke(lua_State *L)
{
    klua *st = check_waiting_st(L, "invoke");
    const char *name = luaL_checkstring(L, 1);
    int vt = lua_type(L, 2);
    if (vt != LUA_TNONE && vt != LUA_TNIL && vt != LUA_TSTRING &&
        vt != LUA_TNUMBER && vt != LUA_TTABLE)
        luaL_typeerror(L, 2, "string or table");
    const char *model = NULL;
    int has_stream = 0, dry_run = 0;
    lua_settop(L, 3);
    if (!lua_isnil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        /* dry_run = true: the request as it would be sent, as a table */
        lua_getfield(L, 3, "dry_run");
        dry_run = lua_toboolean(L, -1);
        lua_pop(L, 1);
        int mt = lua_getfield(L, 3, "model"); /* 4 */
        if (mt != LUA_TNIL && mt != LUA_TSTRING)
            luaL_argerror(L, 3, "'model' must be a string");
        model = lua_tostring(L, 4);
        int ft = lua_getfield(L, 3, "stream"); /* 5 */
        if (ft != LUA_TNIL && ft != LUA_TFUNCTION)
            luaL_argerror(L, 3, "'stream' must be a function");
        has_stream = ft == LUA_TFUNCTION;
    } else {
        lua_pushnil(L);
        lua_pushnil(L);
    }
    /* opts.functions: what the model's tool calls may reach */
    const char *tool_names[MAX_ALLOWED];
    long n_tools = functions_opt(L, 3, tool_names);
    if (n_tools < 0)
        lua_pushnil(L); /* 6: the list, kept alive until the call starts */
    box *bx = box_new(L, st); /* 7 */
    vars_from_lua(L, 2, &bx->vars);
    /* the script's author names the function: a user call (a native
     * running for a model still runs untrusted, through inv_start) */
    sk_function *f = inv_lookup(st->k, name, NULL, NULL, &bx->w.err);
    if (!f) {
        if (!bx->w.err)
            bx->w.err = err_new(SK_NOMEM, "out of memory");
        push_err(L, bx->w.err);
        box_clear(L, bx);
        return raise_top(L);
    }
    branch *br = parallel_branch(L);
    waiter *w = br ? &br->w : &bx->w;
    if (br) {
        waiter_clear(L, w);
        w->done = 0;
        w->status = SK_OK;
    }
    if (has_stream) {
        lua_pushvalue(L, 5);
        w->stream_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    w->json = dry_run || answers_json(L, st->k, f);
    /* opts.policy: a JSON string, or a table encoded here */
    char *policy_json = NULL;
    const char *policy = NULL;
    int pt = lua_istable(L, 3) ? lua_getfield(L, 3, "policy") : LUA_TNIL; /* 7 */
    if (pt == LUA_TSTRING) {
        policy = lua_tostring(L, -1);
    } else if (pt == LUA_TTABLE) {
        policy_json = lua_to_json_text(L, -1);
        if (!policy_json) {
            if (has_stream)
                waiter_clear(L, w);
            box_clear(L, bx);
            return luaL_argerror(L, 3, "'policy' holds a value JSON cannot represent");
        }
        policy = policy_json;
    } else if (pt != LUA_TNIL) {
        if (has_stream)
            waiter_clear(L, w);
        box_clear(L, bx);
        return luaL_argerror(L, 3, "'policy' must be a table or a JSON string");
    }
    sk_grant *tools = NULL;
    if (n_tools >= 0) {
        sk_err *ge = NULL;
        if (grant_new(st->k, "the model's tool calls", tool_names, (size_t)n_tools, &tools,
                      &ge) != SK_OK) {
            cJSON_free(policy_json);
            if (has_stream)
                waiter_clear(L, w);
            bx->w.err = ge ? ge : err_new(SK_NOMEM, "out of memory");
            push_err(L, bx->w.err);
            box_clear(L, bx);
            return raise_top(L);
        }
    }
    inv_opts o = {.model = model, .stream = has_stream ? stream_cb : NULL,
                  .stream_ud = w, .policy = policy, .dry_run = dry_run,
                  .tools = tools};
    sk_err *e = NULL;
    lua_State *prev = st->current;
    st->current = L;
    sk_status rc = inv_start(st->k, f, bx->vars, st->next_depth, &o,
                             wait_done, w, &e);
    grant_release(tools); /* the invoke keeps its own */
    cJSON_free(policy_json);
    if (rc != SK_OK) {
        st->current = prev;
        bx->w.err = e;
        bx->w.status = rc;
        if (br)
            waiter_clear(L, w);
        push_err(L, bx->w.err);
        box_clear(L, bx);
        return raise_top(L);
    }
    if (br) {
        st->current = prev;
        box_clear(L, bx);
        br->waiting = 1;
        return lua_yieldk(L, 0, (lua_KContext)br, invoke_cont);
    }
    loop_run_until(st->k, &w->done);
    st->current = prev;
    if (!w->done) {
        /* The loop went idle with the call unfinished: it still points at
         * this box, so pin the box for the kernel's lifetime. */
        lua_pushvalue(L, 7);
        luaL_ref(L, LUA_REGISTRYINDEX);
        sk_err *stuck = err_new(SK_CANCELLED, "%s: the call never completed",
                                name);
        push_err(L, stuck);
        err_free(stuck);
        return raise_top(L);
    }
    int n = finish_wait(L, w);
    box_clear(L, bx);
    return n;
}

static int sched_gc(lua_State *L)
{
    sched *s = lua_touserdata(L, 1);
    for (size_t i = 0; i < s->n; i++)
        waiter_clear(L, &s->b[i].w);
    return 0;
}

/* The registry table of a scheduler: its threads, results, first error. */
enum { R_THREADS = 1, R_RESULTS = 2, R_ERR = 3 };

/* Turns the error value on top of L (raised in coroutine co) into a skein
 * error table, in place. */
static void error_table(lua_State *L, lua_State *co)
{
    int base = lua_gettop(L);
    if (is_err_table(L, base))
        return;
    const char *msg = lua_tostring(L, base);
    if (!msg)
        msg = lua_pushfstring(L, "(error object is a %s value)",
                              luaL_typename(L, base));
    lua_createtable(L, 0, 6);
    lua_pushstring(L, sk_status_kind(SK_SCRIPT));
    lua_setfield(L, -2, "kind");
    lua_pushinteger(L, SK_SCRIPT);
    lua_setfield(L, -2, "code");
    lua_pushstring(L, msg);
    lua_setfield(L, -2, "message");
    lua_newtable(L);
    lua_setfield(L, -2, "chain");
    luaL_traceback(L, co, NULL, 0);
    lua_setfield(L, -2, "traceback");
    luaL_setmetatable(L, ERROR_MT);
    lua_replace(L, base);
    lua_settop(L, base);
}

/* Forgets that thread co may yield from skein.invoke. */
static void unmap_thread(lua_State *L, lua_State *co)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &BRANCHES_KEY);
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

/* [sched, i, nargs]: resumes branch i once and files what it returns.
 * Returns 0 while it waits on a call, 1 when it finished, 2 when it
 * yielded on its own (it goes again next round).  Runs protected. */
static int sched_step_pf(lua_State *L)
{
    sched *s = lua_touserdata(L, 1);
    size_t i = (size_t)lua_tointeger(L, 2);
    int nargs = (int)lua_tointeger(L, 3);
    branch *b = &s->b[i];
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref); /* [.., T] */
    int t = lua_gettop(L);
    lua_rawgeti(L, t, R_THREADS);
    lua_rawgeti(L, -1, (lua_Integer)i + 1);
    lua_State *co = lua_tothread(L, -1);
    lua_pop(L, 2);
    klua *st = s->st;
    lua_State *prev = st->current;
    st->current = co;
    int nres = 0;
    int rc = lua_resume(co, L, nargs, &nres);
    st->current = prev;
    if (rc == LUA_YIELD) {
        if (b->waiting) {
            lua_pushinteger(L, 0);
            return 1;
        }
        lua_pop(co, nres); /* a plain coroutine.yield */
        lua_pushinteger(L, 2);
        return 1;
    }
    unmap_thread(L, co);
    if (rc == LUA_OK) {
        if (nres > 0) {
            lua_rawgeti(L, t, R_RESULTS);
            lua_xmove(co, L, nres);
            lua_pop(L, nres - 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
            lua_pop(L, 1);
        }
    } else {
        lua_xmove(co, L, 1); /* [.., T, err] */
        error_table(L, co);
        if (s->first_err == 0 || i + 1 < s->first_err) {
            s->first_err = i + 1;
            lua_rawseti(L, t, R_ERR);
        } else {
            lua_pop(L, 1);
        }
    }
    lua_pushinteger(L, 1);
    return 1;
}

static void branch_resume_task(void *ud);

/* Starts branches while there is room under `max`. */
static void sched_fill(sched *s)
{
    while (s->started < s->n && (s->max == 0 || s->running < s->max)) {
        branch *b = &s->b[s->started++];
        s->running++;
        b->waiting = -1; /* the first resume takes its arguments */
        if (loop_defer(s->st->k, branch_resume_task, b) != SK_OK) {
            s->nomem = 1;
            s->running--;
            s->finished++;
        }
    }
    if (s->finished == s->n)
        s->done = 1;
}

/* Resumes branch b, from a loop task: whichever pump runs it, the one of
 * skein.parallel or one nested in another branch's own wait. */
static void branch_resume_task(void *ud)
{
    branch *b = ud;
    sched *s = b->s;
    int nargs = b->waiting == -1 ? b->nargs : 0;
    b->waiting = 0;
    klua *st = s->st;
    lua_State *L = st->L ? run_state(st) : NULL;
    int what = 1;
    if (!L || !lua_checkstack(L, 8)) {
        s->nomem = 1;
    } else {
        lua_pushcfunction(L, sched_step_pf);
        lua_pushlightuserdata(L, s);
        lua_pushinteger(L, (lua_Integer)b->i);
        lua_pushinteger(L, nargs);
        if (docall(L, 3, 1) == LUA_OK)
            what = (int)lua_tointeger(L, -1);
        else
            s->nomem = 1; /* filing the outcome ran out of memory */
        lua_pop(L, 1);
    }
    if (what == 2 && loop_defer(st->k, branch_resume_task, b) == SK_OK)
        return;
    if (what == 0)
        return; /* its call's end wakes it */
    s->running--;
    s->finished++;
    sched_fill(s);
}

static void branch_wake(waiter *w)
{
    branch *b = (branch *)w;
    if (loop_defer(b->s->st->k, branch_resume_task, b) != SK_OK) {
        b->s->nomem = 1;
        b->s->running--;
        b->s->finished++;
        sched_fill(b->s);
    }
}

/* skein.parallel({f1, {name, vars}, ...} [, {max = N}]) -> {r1, r2, ...}
 * Each branch runs as a coroutine; their invokes are in flight together
 * on the kernel's loop.  All branches run to the end; then the error of
 * the lowest-numbered failed branch, if any, is raised. */
static int l_parallel(lua_State *L)
{
    klua *st = check_waiting_st(L, "parallel");
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer max = 0;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        if (lua_getfield(L, 2, "max") != LUA_TNIL) {
            int isnum = 0;
            max = lua_tointegerx(L, -1, &isnum);
            if (!isnum || max < 1)
                luaL_argerror(L, 2, "'max' must be a positive integer");
        }
    }
    lua_settop(L, 2);
    size_t n = lua_rawlen(L, 1);
    if (n > MAX_BRANCHES)
        luaL_argerror(L, 1, "too many branches");
    for (size_t i = 1; i <= n; i++) {
        int t = lua_rawgeti(L, 1, (lua_Integer)i);
        int ok = t == LUA_TFUNCTION;
        if (t == LUA_TTABLE) {
            ok = lua_rawgeti(L, -1, 1) == LUA_TSTRING;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        if (!ok)
            luaL_argerror(L, 1, lua_pushfstring(L,
                "branch %d must be a function or {name, vars}", (int)i));
    }
    if (n == 0) {
        lua_newtable(L);
        return 1;
    }

    size_t size = sizeof(sched) + n * sizeof(branch);
    sched *s = lua_newuserdatauv(L, size, 0); /* 3 */
    memset(s, 0, size);
    s->st = st;
    s->n = n;
    s->max = (size_t)max;
    s->ref = LUA_NOREF;
    for (size_t i = 0; i < n; i++) {
        waiter_init(&s->b[i].w, st);
        s->b[i].w.wake = branch_wake;
        s->b[i].s = s;
        s->b[i].i = i;
    }
    luaL_setmetatable(L, SCHED_MT);
    lua_createtable(L, 3, 0);          /* 4: T */
    lua_createtable(L, (int)n, 0);
    lua_rawseti(L, 4, R_THREADS);
    lua_createtable(L, (int)n, 0);
    lua_rawseti(L, 4, R_RESULTS);
    lua_rawgeti(L, 4, R_THREADS);      /* 5 */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &BRANCHES_KEY); /* 6 */
    for (size_t i = 0; i < n; i++) {
        lua_State *co = lua_newthread(L);
        lua_rawgeti(L, 1, (lua_Integer)i + 1);
        if (lua_isfunction(L, -1)) {
            lua_xmove(L, co, 1);
            s->b[i].nargs = 0;
        } else {
            int e = lua_gettop(L);
            lua_pushvalue(L, lua_upvalueindex(1));
            lua_pushcclosure(L, l_invoke, 1);
            lua_rawgeti(L, e, 1);
            lua_rawgeti(L, e, 2);
            lua_xmove(L, co, 3);
            lua_pop(L, 1);
            s->b[i].nargs = 2;
        }
        lua_pushvalue(L, -1);
        lua_rawseti(L, 5, (lua_Integer)i + 1);
        lua_pushlightuserdata(L, &s->b[i]);
        lua_rawset(L, 6);
    }
    lua_settop(L, 4);
    s->ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops T */
    /* Pinned while calls may be in flight: their callbacks write into it
     * even if something below unwinds this frame. */
    lua_pushvalue(L, 3);
    int anchor = luaL_ref(L, LUA_REGISTRYINDEX);

    lua_State *prev = st->current;
    st->current = L;
    sched_fill(s);
    while (!s->done) {
        loop_run_until(st->k, &s->done);
        if (s->done)
            break;
        /* Idle loop, branches still waiting: fail them rather than spin. */
        int any = 0;
        for (size_t i = 0; i < n; i++) {
            branch *b = &s->b[i];
            if (b->waiting > 0 && !b->w.done) {
                b->w.wake = NULL;
                wait_done(&b->w, SK_CANCELLED, NULL,
                          err_new(SK_CANCELLED, "the call never completed"));
                branch_resume_task(b);
                any = 1;
            }
        }
        if (!any)
            break;
    }
    st->current = prev;
    luaL_unref(L, LUA_REGISTRYINDEX, anchor);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref); /* [.., T] */
    luaL_unref(L, LUA_REGISTRYINDEX, s->ref);
    s->ref = LUA_NOREF;
    if (s->nomem)
        return luaL_error(L, "skein.parallel: out of memory");
    if (s->first_err) {
        lua_rawgeti(L, -1, R_ERR);
        return raise_top(L);
    }
    lua_rawgeti(L, -1, R_RESULTS);
    return 1;
}

/* ---- other module functions --------------------------------------------- */

/* skein.render(text, vars [, {no_calls = bool, origin = name}]) -> text */
static int l_render(lua_State *L)
{
    klua *st = check_waiting_st(L, "render");
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    int flags = 0;
    const char *origin = "template";
    lua_settop(L, 3);
    if (!lua_isnil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_getfield(L, 3, "no_calls");
        if (lua_toboolean(L, -1))
            flags |= SK_RENDER_NO_CALLS;
        if (lua_getfield(L, 3, "origin") == LUA_TSTRING)
            origin = lua_tostring(L, -1);
    }
    box *bx = box_new(L, st);
    vars_from_lua(L, 2, &bx->vars);
    if (sk_template_parse(st->k, text, len, origin, &bx->tpl) != SK_OK) {
        box_clear(L, bx);
        push_kernel_err(L, st->k);
        return raise_top(L);
    }
    lua_State *prev = st->current;
    st->current = L;
    sk_status rc = sk_render(st->k, bx->tpl, bx->vars, flags, &bx->w.text);
    st->current = prev;
    if (rc != SK_OK) {
        box_clear(L, bx);
        push_kernel_err(L, st->k);
        return raise_top(L);
    }
    lua_pushstring(L, bx->w.text);
    box_clear(L, bx);
    return 1;
}

/* skein.render_function(name, vars [, {no_calls = true}]): the function's
 * prompt as invoke renders it, with its own defaults (sk_render_function). */
static int l_render_function(lua_State *L)
{
    klua *st = check_waiting_st(L, "render_function");
    const char *name = luaL_checkstring(L, 1);
    int flags = 0;
    lua_settop(L, 3);
    if (!lua_isnil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_getfield(L, 3, "no_calls");
        if (lua_toboolean(L, -1))
            flags |= SK_RENDER_NO_CALLS;
        lua_pop(L, 1);
    }
    box *bx = box_new(L, st);
    vars_from_lua(L, 2, &bx->vars);
    lua_State *prev = st->current;
    st->current = L;
    sk_status rc = sk_render_function(st->k, name, bx->vars, flags, &bx->w.text);
    st->current = prev;
    if (rc != SK_OK) {
        box_clear(L, bx);
        push_kernel_err(L, st->k);
        return raise_top(L);
    }
    lua_pushstring(L, bx->w.text);
    box_clear(L, bx);
    return 1;
}

static void push_info(lua_State *L, const sk_function_info *fi)
{
    lua_createtable(L, 0, 8);
    lua_pushstring(L, fi->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, fi->skill);
    lua_setfield(L, -2, "skill");
    lua_pushstring(L, fi->full_name);
    lua_setfield(L, -2, "full_name");
    lua_pushstring(L, fi->description ? fi->description : "");
    lua_setfield(L, -2, "description");
    lua_pushstring(L, fi->kind);
    lua_setfield(L, -2, "kind");
    if (fi->path) {
        lua_pushstring(L, fi->path);
        lua_setfield(L, -2, "path");
    }
    lua_createtable(L, (int)fi->n_params, 0);
    for (size_t i = 0; i < fi->n_params; i++) {
        const sk_param_info *p = &fi->params[i];
        lua_createtable(L, 0, 4);
        lua_pushstring(L, p->name);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, p->description ? p->description : "");
        lua_setfield(L, -2, "description");
        if (p->default_value) {
            lua_pushstring(L, p->default_value);
            lua_setfield(L, -2, "default");
        }
        lua_pushboolean(L, p->required);
        lua_setfield(L, -2, "required");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "parameters");
}

/* skein.skills() -> array of function descriptions, sorted by name */
static int l_skills(lua_State *L)
{
    klua *st = check_st(L);
    size_t n = sk_kernel_function_count(st->k);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        sk_function_info fi;
        if (sk_kernel_function_at(st->k, i, &fi) != SK_OK)
            break;
        push_info(L, &fi);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

/* skein.define("Skill.Fn", fn_or_table) */
/* Splits argument 1, "Skill.Function": pushes the skill name and returns
 * the function name (borrowed from full).  Raises on a malformed name. */
static const char *push_skill_of(lua_State *L, const char *full)
{
    const char *dot = strchr(full, '.');
    if (!dot || dot == full || !dot[1])
        luaL_argerror(L, 1, "expected \"Skill.Function\"");
    lua_pushlstring(L, full, (size_t)(dot - full));
    return dot + 1;
}

static int l_define(lua_State *L)
{
    klua *st = check_st(L);
    const char *full = luaL_checkstring(L, 1);
    luaL_argexpected(L, lua_isfunction(L, 2) || lua_istable(L, 2), 2,
                     "function or table");
    const char *name = push_skill_of(L, full); /* 3: skill */
    register_one(L, st, lua_tostring(L, 3), name, 2, NULL);
    return 0;
}

/* skein.prompt("Skill.Fn", template [, config_json]): a semantic function
 * from text, as if loaded from skprompt.txt and config.json. */
static int l_prompt(lua_State *L)
{
    klua *st = check_st(L);
    const char *full = luaL_checkstring(L, 1);
    const char *tpl = luaL_checkstring(L, 2);
    const char *cfg = luaL_optstring(L, 3, NULL);
    const char *name = push_skill_of(L, full); /* [.., skill] */
    if (sk_kernel_add_semantic(st->k, lua_tostring(L, -1), name, tpl, cfg) !=
        SK_OK) {
        push_kernel_err(L, st->k);
        return raise_top(L);
    }
    return 0;
}

/* skein.skill("Skill", {Fn = fn_or_table, ...}) */
static int l_skill(lua_State *L)
{
    klua *st = check_st(L);
    const char *skill = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    register_table(L, st, skill, 2, NULL);
    return 0;
}

/* The kernel's skill problems from the first-th on, as a list of
 * { file, line, col, kind, code, message, what }. */
static void push_problems(lua_State *L, sk_kernel *k, size_t first)
{
    size_t n = sk_kernel_skill_problem_count(k);
    lua_createtable(L, n > first ? (int)(n - first) : 0, 0);
    for (size_t i = first; i < n; i++) {
        sk_skill_problem p;
        if (sk_kernel_skill_problem(k, i, &p) != SK_OK)
            break;
        lua_createtable(L, 0, 7);
        lua_pushstring(L, p.path);
        lua_setfield(L, -2, "file");
        lua_pushinteger(L, p.line);
        lua_setfield(L, -2, "line");
        lua_pushinteger(L, p.col);
        lua_setfield(L, -2, "col");
        lua_pushstring(L, sk_status_kind(p.code));
        lua_setfield(L, -2, "kind");
        lua_pushinteger(L, p.code);
        lua_setfield(L, -2, "code");
        lua_pushstring(L, p.message);
        lua_setfield(L, -2, "message");
        lua_pushstring(L, p.what);
        lua_setfield(L, -2, "what");
        lua_rawseti(L, -2, (lua_Integer)(i - first + 1));
    }
}

/* skein.load_skills(dir) loads what loads and returns the problems of
 * what did not (an empty table when none); a folder that cannot be read
 * raises. */
static int l_load_skills(lua_State *L)
{
    klua *st = check_waiting_st(L, "load_skills");
    const char *dir = luaL_checkstring(L, 1);
    size_t before = sk_kernel_skill_problem_count(st->k);
    lua_State *prev = st->current;
    st->current = L;
    sk_status rc = sk_kernel_load_skills(st->k, dir);
    st->current = prev;
    if (rc != SK_OK) {
        push_kernel_err(L, st->k);
        return raise_top(L);
    }
    push_problems(L, st->k, before);
    return 1;
}

/* skein.skill_problems(): every problem met loading skills so far. */
static int l_skill_problems(lua_State *L)
{
    klua *st = check_st(L);
    push_problems(L, st->k, 0);
    return 1;
}

static int l_set_model(lua_State *L)
{
    klua *st = check_st(L);
    const char *spec = luaL_checkstring(L, 1);
    if (sk_kernel_set_model(st->k, spec) != SK_OK) {
        push_kernel_err(L, st->k);
        return raise_top(L);
    }
    return 0;
}

static int l_model(lua_State *L)
{
    klua *st = check_st(L);
    const char *m = sk_kernel_model(st->k);
    if (m)
        lua_pushstring(L, m);
    else
        lua_pushnil(L);
    return 1;
}

static int l_set_option(lua_State *L)
{
    klua *st = check_st(L);
    const char *name = luaL_checkstring(L, 1);
    luaL_checkany(L, 2);
    lua_pushvalue(L, 2);
    const char *value = lua_tostring(L, -1);
    if (!value)
        luaL_typeerror(L, 2, "string or number");
    if (sk_kernel_set_option(st->k, name, value) != SK_OK) {
        push_kernel_err(L, st->k);
        return raise_top(L);
    }
    return 0;
}

static int l_usage(lua_State *L)
{
    klua *st = check_st(L);
    sk_usage u;
    sk_kernel_usage(st->k, &u);
    lua_createtable(L, 0, 13);
    static const struct {
        const char *name;
        size_t off;
    } more[] = {
        {"uncertain", offsetof(sk_usage, uncertain)},
        {"escalations", offsetof(sk_usage, escalations)},
        {"fallbacks", offsetof(sk_usage, fallbacks)},
        {"reviews", offsetof(sk_usage, reviews)},
        {"revisions", offsetof(sk_usage, revisions)},
        {"rejected", offsetof(sk_usage, rejected)},
        {"filtered", offsetof(sk_usage, filtered)},
        {"redacted", offsetof(sk_usage, redacted)},
        {"cache_hits", offsetof(sk_usage, cache_hits)},
        {"cache_misses", offsetof(sk_usage, cache_misses)},
        {"journal_hits", offsetof(sk_usage, journal_hits)},
    };
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) {
        lua_pushinteger(L, *(const long *)((const char *)&u + more[i].off));
        lua_setfield(L, -2, more[i].name);
    }
    lua_pushinteger(L, (lua_Integer)u.wall_ms);
    lua_setfield(L, -2, "wall_ms");
    size_t nm = sk_kernel_model_usage_count(st->k);
    lua_createtable(L, (int)nm, 0);
    for (size_t i = 0; i < nm; i++) {
        sk_model_usage mu;
        sk_kernel_model_usage_at(st->k, i, &mu);
        lua_createtable(L, 0, 7);
        lua_pushstring(L, mu.model);
        lua_setfield(L, -2, "model");
        lua_pushinteger(L, mu.calls);
        lua_setfield(L, -2, "calls");
        lua_pushinteger(L, mu.cache_hits);
        lua_setfield(L, -2, "cache_hits");
        lua_pushinteger(L, mu.prompt_tokens);
        lua_setfield(L, -2, "prompt_tokens");
        lua_pushinteger(L, mu.completion_tokens);
        lua_setfield(L, -2, "completion_tokens");
        lua_pushinteger(L, mu.failures);
        lua_setfield(L, -2, "failures");
        lua_pushinteger(L, (lua_Integer)mu.busy_ms);
        lua_setfield(L, -2, "busy_ms");
        lua_pushinteger(L, mu.answered);
        lua_setfield(L, -2, "answered");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "models");
    lua_pushinteger(L, u.calls);
    lua_setfield(L, -2, "calls");
    lua_pushinteger(L, u.prompt_tokens);
    lua_setfield(L, -2, "prompt_tokens");
    lua_pushinteger(L, u.completion_tokens);
    lua_setfield(L, -2, "completion_tokens");
    lua_pushinteger(L, u.retries);
    lua_setfield(L, -2, "retries");
    lua_pushinteger(L, u.failures);
    lua_setfield(L, -2, "failures");
    return 1;
}

/* skein.review(text [, {task=, input=, reviewer=}]) -> passed, critique:
 * the text checked in a fresh context by a review function. */
static int l_review(lua_State *L)
{
    klua *st = check_waiting_st(L, "review");
    const char *text = luaL_checkstring(L, 1);
    const char *task = NULL, *input = NULL, *reviewer = NULL;
    lua_settop(L, 2);
    if (!lua_isnil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "task");     /* 3 */
        lua_getfield(L, 2, "input");    /* 4 */
        lua_getfield(L, 2, "reviewer"); /* 5 */
        task = lua_tostring(L, 3);
        input = lua_tostring(L, 4);
        reviewer = lua_tostring(L, 5);
    }
    int passed = 0;
    char *critique = NULL;
    lua_State *prev = st->current;
    st->current = L;
    sk_status rc = sk_review(st->k, text, task, input, reviewer, &passed, &critique);
    st->current = prev;
    if (rc != SK_OK) {
        push_kernel_err(L, st->k);
        return raise_top(L);
    }
    lua_pushboolean(L, passed);
    if (critique) {
        lua_pushstring(L, critique);
        free(critique);
    } else {
        lua_pushnil(L);
    }
    return 2;
}

/* skein.set_policy(table or JSON): the kernel-wide policy every
 * function's own overlays; nil resets it. */
static int l_set_policy(lua_State *L)
{
    klua *st = check_st(L);
    char *json = NULL;
    const char *text = NULL;
    if (lua_istable(L, 1)) {
        if (!(json = lua_to_json_text(L, 1)))
            return luaL_argerror(L, 1, "a table JSON can represent");
        text = json;
    } else if (!lua_isnoneornil(L, 1)) {
        text = luaL_checkstring(L, 1);
    }
    sk_status rc = sk_kernel_set_policy(st->k, text);
    cJSON_free(json);
    if (rc != SK_OK) {
        push_kernel_err(L, st->k);
        return raise_top(L);
    }
    return 0;
}

/* skein.set_limits(endpoint, {rpm =, tpm =, inflight =}) */
static int l_set_limits(lua_State *L)
{
    klua *st = check_st(L);
    const char *endpoint = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "rpm");
    lua_getfield(L, 2, "tpm");
    lua_getfield(L, 2, "inflight");
    long rpm = (long)luaL_optinteger(L, 3, 0), tpm = (long)luaL_optinteger(L, 4, 0);
    int inflight = (int)luaL_optinteger(L, 5, 0);
    if (sk_kernel_set_limits(st->k, endpoint, rpm, tpm, inflight) != SK_OK)
        return luaL_argerror(L, 2, "limits must be whole numbers, 0 or more");
    return 0;
}

/* skein.set_trace(path) appends the trace to path; nil turns it off. */
static int l_set_trace(lua_State *L)
{
    klua *st = check_st(L);
    const char *path = luaL_optstring(L, 1, NULL);
    if (sk_kernel_set_trace(st->k, path) != SK_OK) {
        push_kernel_err(L, st->k);
        return raise_top(L);
    }
    return 0;
}

/* skein.trace{type = ..., ...}: an event in the trace, if there is one. */
static int l_trace(lua_State *L)
{
    klua *st = check_st(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    char *j = lua_to_json_text(L, 1);
    if (!j)
        return luaL_argerror(L, 1, "a table of strings, numbers and booleans");
    size_t n = strlen(j);
    if (n > 2) { /* strip the braces: the kernel adds the time first */
        j[n - 1] = '\0';
        sk_trace_event(st->k, j + 1);
    }
    cJSON_free(j);
    return 0;
}

/* Helpers written in Lua: they only compose the functions above. */
static const char PRELUDE[] =
    "local skein = ...\n"
    "function skein.uncertain(t)\n"
    "  if type(t) == 'string' then t = { reason = t } end\n"
    "  t = t or {}\n"
    "  local reason = t.reason or 'the intent is unclear'\n"
    "  skein.error('uncertain', 'uncertain: ' .. reason, { reason = reason,\n"
    "    question = t.question, confidence = t.confidence, candidates = t.candidates })\n"
    "end\n"
    "function skein.clarify(name, vars, ask, opts)\n"
    "  if type(ask) ~= 'function' then error('skein.clarify: argument 3 must be a function', 2) end\n"
    "  local v = {}\n"
    "  if type(vars) == 'table' then for k, x in pairs(vars) do v[k] = x end\n"
    "  elseif vars ~= nil then v.input = vars end\n"
    "  local rounds = opts and opts.rounds or 3\n"
    "  for round = 0, rounds do\n"
    "    local ok, res = pcall(skein.invoke, name, v, opts)\n"
    "    if ok then return res end\n"
    "    if round == rounds or not (skein.is_error(res) and res.kind == 'uncertain') then error(res, 0) end\n"
    "    local answer = ask(res)\n"
    "    if answer == nil then error(res, 0) end\n"
    "    answer = tostring(answer)\n"
    "    skein.trace({ type = 'clarified', ['function'] = name, handled_by = 'skein.clarify',\n"
    "      raised_in = res['function'], question = res.question, answer = answer })\n"
    "    v.clarification = v.clarification and (v.clarification .. '\\n' .. answer) or answer\n"
    "  end\n"
    "end\n";

/* ---- plans and agents -------------------------------------------------- */

typedef struct lplan {
    sk_plan *p; /* NULL once closed */
} lplan;

static lplan *check_plan(lua_State *L)
{
    lplan *lp = luaL_checkudata(L, 1, PLAN_MT);
    if (!lp->p)
        luaL_error(L, "attempt to use a closed plan");
    return lp;
}

static int plan_close(lua_State *L)
{
    lplan *lp = luaL_checkudata(L, 1, PLAN_MT);
    sk_plan_free(lp->p);
    lp->p = NULL;
    return 0;
}

static void push_plan(lua_State *L, sk_plan *p)
{
    lplan *lp = lua_newuserdatauv(L, sizeof *lp, 0);
    lp->p = p;
    luaL_setmetatable(L, PLAN_MT);
}

/* Pushes a string returned by the library, freeing it first so nothing
 * is held if pushing raises. */
static int push_owned(lua_State *L, char *s)
{
    if (!s)
        return luaL_error(L, "out of memory");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, s);
    free(s);
    luaL_pushresult(&b);
    return 1;
}

static int plan_text_l(lua_State *L) { return push_owned(L, sk_plan_text(check_plan(L)->p)); }
static int plan_dot_l(lua_State *L) { return push_owned(L, sk_plan_dot(check_plan(L)->p)); }

static int plan_steps_l(lua_State *L)
{
    lplan *lp = check_plan(L);
    size_t n = sk_plan_step_count(lp->p);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        sk_plan_step_info si;
        sk_plan_step(lp->p, i, &si);
        lua_createtable(L, 0, 9);
        lua_pushinteger(L, si.number);
        lua_setfield(L, -2, "number");
        lua_pushinteger(L, si.line);
        lua_setfield(L, -2, "line");
        lua_pushstring(L, si.function);
        lua_setfield(L, -2, "function");
        lua_pushstring(L, si.text);
        lua_setfield(L, -2, "text");
        lua_pushstring(L, si.state);
        lua_setfield(L, -2, "state");
        if (si.output) {
            lua_pushstring(L, si.output);
            lua_setfield(L, -2, "output");
        }
        lua_createtable(L, (int)si.n_deps, 0);
        for (size_t d = 0; d < si.n_deps; d++) {
            lua_pushinteger(L, si.deps[d]);
            lua_rawseti(L, -2, (lua_Integer)d + 1);
        }
        lua_setfield(L, -2, "deps");
        lua_pushinteger(L, (lua_Integer)si.start_ms);
        lua_setfield(L, -2, "start_ms");
        lua_pushinteger(L, (lua_Integer)si.end_ms);
        lua_setfield(L, -2, "end_ms");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

/* plan:run([vars [, {max_parallel = n}]]) -> the last step's output */
static int plan_run_l(lua_State *L)
{
    lplan *lp = check_plan(L);
    lua_settop(L, 3);
    klua *st = check_waiting_st(L, "plan:run");
    int max_parallel = 0;
    if (lua_istable(L, 3)) {
        lua_getfield(L, 3, "max_parallel");
        max_parallel = (int)luaL_optinteger(L, -1, 0);
        lua_pop(L, 1);
    }
    box *bx = box_new(L, st); /* 4: owns the vars across a raise */
    if (!lua_isnil(L, 2))
        vars_from_lua(L, 2, &bx->vars);
    char *out = NULL;
    lua_State *prev = st->current;
    st->current = L;
    sk_status rc = sk_plan_run(st->k, lp->p, bx->vars, max_parallel, &out);
    st->current = prev;
    box_clear(L, bx);
    if (rc != SK_OK) {
        push_kernel_err(L, st->k);
        return raise_top(L);
    }
    return push_owned(L, out);
}

static int plan_tostring(lua_State *L)
{
    lplan *lp = luaL_checkudata(L, 1, PLAN_MT);
    if (!lp->p) {
        lua_pushliteral(L, "skein.Plan (closed)");
        return 1;
    }
    return push_owned(L, sk_plan_text(lp->p));
}

static const luaL_Reg plan_methods[] = {
    {"text", plan_text_l}, {"dot", plan_dot_l}, {"steps", plan_steps_l},
    {"run", plan_run_l},   {"close", plan_close}, {NULL, NULL}};

/* opts.functions (opts at arg): the names, into names[MAX_ALLOWED] (kept
 * alive by the list, left on the stack), and how many; -1 when absent.
 * Pushes one value (the list or nil) when opts is a table. */
static long functions_opt(lua_State *L, int arg, const char **names)
{
    if (!lua_istable(L, arg))
        return -1;
    if (lua_getfield(L, arg, "functions") != LUA_TTABLE) { /* [.., list] */
        if (!lua_isnil(L, -1))
            luaL_argerror(L, arg, "'functions' must be a list of names");
        return -1;
    }
    int list = lua_gettop(L);
    size_t n = lua_rawlen(L, list);
    if (n > MAX_ALLOWED)
        luaL_argerror(L, arg, "at most 256 functions");
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, list, (lua_Integer)i + 1);
        names[i] = lua_tostring(L, -1); /* kept alive by the table */
        lua_pop(L, 1);
        if (!names[i])
            luaL_argerror(L, arg, "functions must be names");
    }
    return (long)n;
}

/* skein.plan(goal [, {functions = {...}, max_functions = n, repairs = n}]) */
static int l_plan(lua_State *L)
{
    klua *st = check_waiting_st(L, "plan");
    const char *goal = luaL_checkstring(L, 1);
    lua_settop(L, 2);
    sk_plan_opts o = {0, -1, NULL, 0};
    const char *only[MAX_ALLOWED];
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "max_functions"); /* 3 */
        o.max_functions = (size_t)luaL_optinteger(L, 3, 0);
        lua_getfield(L, 2, "repairs"); /* 4 */
        o.repairs = (int)luaL_optinteger(L, 4, -1);
        long n = functions_opt(L, 2, only); /* 5 */
        if (n >= 0) {
            o.only = only;
            o.n_only = (size_t)n;
        }
    }
    sk_plan *p = NULL;
    lua_State *prev = st->current;
    st->current = L;
    sk_status rc = sk_plan_create(st->k, goal, &o, &p);
    st->current = prev;
    if (rc != SK_OK) {
        push_kernel_err(L, st->k);
        return raise_top(L);
    }
    push_plan(L, p);
    return 1;
}

/* skein.load_plan(text [, origin [, {functions = {...}}]]): a plan
 * written or edited by hand, held to `functions` when given */
static int l_load_plan(lua_State *L)
{
    klua *st = check_st(L);
    const char *text = luaL_checkstring(L, 1);
    const char *origin = luaL_optstring(L, 2, "plan");
    lua_settop(L, 3);
    const char *only[MAX_ALLOWED];
    long n = functions_opt(L, 3, only);
    sk_plan *p = NULL;
    if (sk_plan_parse(st->k, text, origin, &p) != SK_OK) {
        push_kernel_err(L, st->k);
        return raise_top(L);
    }
    push_plan(L, p); /* owned by the userdata from here */
    if (n >= 0 && sk_plan_allow(st->k, p, only, (size_t)n) != SK_OK) {
        push_kernel_err(L, st->k);
        return raise_top(L);
    }
    return 1;
}

typedef struct agent_ctx {
    lua_State *L;
    int fn;        /* stack index of on_step */
    sk_err *err;   /* on_step's first failure */
    const char *text;
    size_t len;
} agent_ctx;

/* [fn, ctx]: calls on_step(text).  The function comes in as an argument:
 * docall runs this on a fresh frame where the caller's indices mean
 * nothing. */
static int agent_step_pf(lua_State *L)
{
    agent_ctx *c = lua_touserdata(L, 2);
    lua_pushvalue(L, 1);
    lua_pushlstring(L, c->text, c->len);
    lua_call(L, 1, 0);
    return 0;
}

static void agent_step_cb(void *ud, const char *text, size_t len)
{
    agent_ctx *c = ud;
    if (c->err || !lua_checkstack(c->L, 4))
        return;
    c->text = text;
    c->len = len;
    lua_pushcfunction(c->L, agent_step_pf);
    lua_pushvalue(c->L, c->fn);
    lua_pushlightuserdata(c->L, c);
    if (docall(c->L, 2, 0) != LUA_OK) {
        c->err = err_from_value(c->L, -1);
        lua_pop(c->L, 1);
    }
}

/* skein.agent{goal=, functions={...}, max_steps=, max_tokens=, max_ms=,
 * on_step=function(text) end} -> the final answer */
static int l_agent(lua_State *L)
{
    klua *st = check_waiting_st(L, "agent");
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    sk_agent_opts o;
    memset(&o, 0, sizeof o);
    lua_getfield(L, 1, "goal"); /* 2 */
    o.goal = lua_tostring(L, 2);
    if (!o.goal)
        return luaL_argerror(L, 1, "'goal' must be a string");
    lua_getfield(L, 1, "max_steps"); /* 3 */
    o.max_steps = (int)luaL_optinteger(L, 3, 0);
    lua_getfield(L, 1, "max_tokens"); /* 4 */
    o.max_tokens = (long)luaL_optinteger(L, 4, 0);
    lua_getfield(L, 1, "max_ms"); /* 5 */
    o.max_ms = (long)luaL_optinteger(L, 5, 0);
    const char *only[MAX_ALLOWED];
    long n = functions_opt(L, 1, only); /* 6: the list, or nil */
    if (n >= 0) {
        o.functions = only;
        o.n_functions = (size_t)n;
    }
    agent_ctx c = {L, 7, NULL, NULL, 0};
    int ft = lua_getfield(L, 1, "on_step"); /* 7 */
    if (ft != LUA_TNIL && ft != LUA_TFUNCTION)
        return luaL_argerror(L, 1, "'on_step' must be a function");
    if (ft == LUA_TFUNCTION) {
        o.on_step = agent_step_cb;
        o.on_step_ud = &c;
    }
    char *answer = NULL;
    lua_State *prev = st->current;
    st->current = L;
    sk_status rc = sk_agent_run(st->k, &o, &answer);
    st->current = prev;
    if (c.err) {
        free(answer);
        push_err(L, c.err);
        err_free(c.err);
        return raise_top(L);
    }
    if (rc != SK_OK) {
        push_kernel_err(L, st->k);
        return raise_top(L);
    }
    return push_owned(L, answer);
}

sk_kernel *klua_enter_as(lua_State *L, const char *what, lua_State **prev)
{
    klua *st = check_waiting_st(L, what);
    *prev = st->current;
    st->current = L;
    return st->k;
}

sk_kernel *klua_enter(lua_State *L, lua_State **prev)
{
    return klua_enter_as(L, "DataFrame", prev);
}

void klua_leave(lua_State *L, lua_State *prev)
{
    binding *b = lua_touserdata(L, lua_upvalueindex(1));
    if (b && b->st)
        b->st->current = prev;
}

void klua_push_err(lua_State *L, const sk_err *e) { push_err(L, e); }

/* skein.error(kind, message [, fields]) raises a skein error table. */
static int l_error(lua_State *L)
{
    const char *kind = luaL_checkstring(L, 1);
    const char *msg = luaL_checkstring(L, 2);
    sk_status code = kind_to_code(kind);
    if ((int)code <= 0)
        luaL_argerror(L, 1, lua_pushfstring(L, "unknown error kind '%s'", kind));
    lua_settop(L, 3);
    lua_createtable(L, 0, 6); /* 4 */
    if (lua_istable(L, 3)) {
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, 4);
        }
    }
    lua_pushstring(L, kind);
    lua_setfield(L, 4, "kind");
    lua_pushinteger(L, code);
    lua_setfield(L, 4, "code");
    lua_pushstring(L, msg);
    lua_setfield(L, 4, "message");
    if (lua_getfield(L, 4, "chain") != LUA_TTABLE) {
        lua_newtable(L);
        lua_setfield(L, 4, "chain");
    }
    lua_settop(L, 4);
    luaL_setmetatable(L, ERROR_MT);
    return lua_error(L);
}

/* skein.now() -> Unix seconds: the kernel's clock (fixed by the option
 * now or SKEIN_NOW, else the system's), what the time skill reads. */
static int l_now(lua_State *L)
{
    klua *st = check_st(L);
    lua_pushinteger(L, (lua_Integer)kern_now(st->k));
    return 1;
}

static int l_is_error(lua_State *L)
{
    lua_pushboolean(L, is_err_table(L, 1));
    return 1;
}

static const luaL_Reg module_funcs[] = {
    {"invoke", l_invoke},
    {"parallel", l_parallel},
    {"render", l_render},
    {"skills", l_skills},
    {"define", l_define},
    {"prompt", l_prompt},
    {"skill", l_skill},
    {"render_function", l_render_function},
    {"load_skills", l_load_skills},
    {"skill_problems", l_skill_problems},
    {"set_model", l_set_model},
    {"model", l_model},
    {"set_option", l_set_option},
    {"usage", l_usage},
    {"review", l_review},
    {"trace", l_trace},
    {"set_trace", l_set_trace},
    {"set_policy", l_set_policy},
    {"set_limits", l_set_limits},
    {"plan", l_plan},
    {"load_plan", l_load_plan},
    {"agent", l_agent},
    {"now", l_now},
    {NULL, NULL}};

static int preload_module(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    return 1;
}

static void new_mt(lua_State *L, const char *name, lua_CFunction gc)
{
    luaL_newmetatable(L, name);
    if (gc) {
        lua_pushcfunction(L, gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
}

/* Protected part of sk_lua_open: builds the metatables, the binding and
 * the module.  Binds st only at the very end, once nothing can fail, so a
 * failure never leaves the binding pointing at a struct about to be
 * freed. */
static int sandbox_install_pf(lua_State *L);

static int bind_pf(lua_State *L)
{
    klua *st = lua_touserdata(L, 1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &BINDING_KEY);
    binding *old = lua_touserdata(L, -1);
    if (old && old->st) {
        st->owns_state = -1; /* conflict marker for the caller */
        return luaL_error(L, "this Lua state is bound to another kernel");
    }
    lua_pop(L, 1);

    new_mt(L, BINDING_MT, binding_gc);
    new_mt(L, BOX_MT, box_gc);
    new_mt(L, CBOX_MT, cbox_gc);
    new_mt(L, SCHED_MT, sched_gc);
    luaL_newmetatable(L, ARGS_MT);
    lua_pushcfunction(L, args_index);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newmetatable(L, ERROR_MT);
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    lua_newtable(L); /* branches map, weak keys: finished threads go */
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &BRANCHES_KEY);

    binding *b = lua_newuserdatauv(L, sizeof *b, 0); /* [b] */
    b->st = NULL;
    b->owned = NULL;
    luaL_setmetatable(L, BINDING_MT);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &BINDING_KEY);

    /* plan methods reach the kernel through the binding, as the module
     * functions do */
    luaL_newmetatable(L, PLAN_MT); /* [b, mt] */
    luaL_newlibtable(L, plan_methods);
    lua_pushvalue(L, -3);
    luaL_setfuncs(L, plan_methods, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, plan_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, plan_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, plan_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1); /* [b] */

    lua_createtable(L, 0, 16); /* [b, M] */
    lua_pushvalue(L, -2);
    luaL_setfuncs(L, module_funcs, 1);
    lua_pushcfunction(L, l_error);
    lua_setfield(L, -2, "error");
    lua_pushcfunction(L, l_is_error);
    lua_setfield(L, -2, "is_error");
    lua_pushliteral(L, SKEIN_VERSION);
    lua_setfield(L, -2, "version");
    klua_open_df(L); /* [b, M]: adds M.df */
    klua_open_memory(L); /* [b, M]: adds M.memory */
    if (luaL_loadbuffer(L, PRELUDE, sizeof PRELUDE - 1, "=skein") != LUA_OK)
        return lua_error(L);
    lua_pushvalue(L, -2);
    lua_call(L, 1, 0);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &MODULE_KEY);

    lua_getglobal(L, "package");
    if (lua_istable(L, -1)) { /* [b, M, package] */
        if (lua_getfield(L, -1, "loaded") == LUA_TTABLE) {
            lua_pushvalue(L, -3);
            lua_setfield(L, -2, "skein");
        }
        lua_pop(L, 1);
        if (lua_getfield(L, -1, "preload") == LUA_TTABLE) {
            lua_pushvalue(L, -3);
            lua_pushcclosure(L, preload_module, 1);
            lua_setfield(L, -2, "skein");
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 2); /* [b] */
    /* the sandbox, before any skill.lua can take a reference */
    lua_pushcfunction(L, sandbox_install_pf);
    lua_call(L, 0, 0);
    b->st = st;
    st->bind = b;
    return 0;
}

sk_status sk_lua_open(sk_kernel *k, lua_State *L)
{
    if (!k || !L)
        return SK_USAGE;
    if (!lua_checkstack(L, 4))
        return SK_NOMEM;
    lua_State *m = main_thread(L);
    klua *st = slot_state(k);
    if (st && st->L)
        return st->L == m ? SK_OK
                          : kern_failf(k, SK_USAGE,
                                       "the kernel is bound to another Lua state");
    void **slot = lua_slot(k);
    if (!slot || kern_on_free(k, 10, klua_close) != SK_OK)
        return kern_failf(k, SK_NOMEM, "out of memory");
    if (st) { /* its old state is gone: start afresh */
        *slot = NULL;
        free(st);
    }
    st = sk_calloc(1, sizeof *st);
    if (!st)
        return kern_failf(k, SK_NOMEM, "out of memory");
    st->k = k;
    st->L = m;
    lua_pushcfunction(L, bind_pf);
    lua_pushlightuserdata(L, st);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        lua_pop(L, 1);
        int conflict = st->owns_state == -1;
        free(st);
        if (conflict)
            return kern_failf(k, SK_USAGE,
                              "the Lua state is bound to another kernel");
        return kern_failf(k, SK_NOMEM, "out of memory");
    }
    *slot = st;
    kern_ok(k);
    return SK_OK;
}

static int openlibs_pf(lua_State *L)
{
    luaL_openlibs(L);
    return 0;
}

lua_State *klua_state(sk_kernel *k)
{
    klua *st = slot_state(k);
    if (st)
        return st->L;
    lua_State *L = luaL_newstate();
    if (!L)
        return NULL;
    lua_pushcfunction(L, openlibs_pf);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK || sk_lua_open(k, L) != SK_OK) {
        lua_close(L);
        return NULL;
    }
    slot_state(k)->owns_state = 1;
    return L;
}

/* The Lua kind of function: its handle is a reference in the registry. */
static void lua_fn_release(sk_kernel *k, sk_function *f)
{
    klua *st = slot_state(k);
    if (!st || !st->L || f->ref <= 0)
        return;
    luaL_unref(st->L, LUA_REGISTRYINDEX, f->ref);
    f->ref = -1;
}

/* Closes the kernel's own Lua state, if it made one, and frees the Lua
 * side's private state (registered with kern_on_free). */
static void klua_close(sk_kernel *k)
{
    void **slot = lua_slot(k);
    klua *st = slot ? *slot : NULL;
    if (!st)
        return;
    *slot = NULL;
    if (st->bind) {
        st->bind->st = NULL;
        st->bind = NULL;
    }
    if (st->owns_state == 1 && st->L)
        lua_close(st->L);
    free(st);
}

/* ---- skill.lua and calls from the kernel -------------------------------- */

typedef struct load_ctx {
    klua *st;
    const char *skill;
    const char *file;
    const char *dir;
    int file_error;
} load_ctx;

static int load_skill_pf(lua_State *L)
{
    load_ctx *c = lua_touserdata(L, 1);
    int rc = luaL_loadfile(L, c->file);
    if (rc != LUA_OK) {
        c->file_error = rc == LUA_ERRFILE;
        return lua_error(L);
    }
    lua_call(L, 0, 1);
    if (!lua_istable(L, -1))
        return luaL_error(L, "%s: must return a table of functions", c->file);
    register_table(L, c->st, c->skill, -1, c->dir);
    return 0;
}

static sk_status klua_load_skill(sk_kernel *k, const char *skill, const char *path)
{
    if (!klua_state(k))
        return kern_failf(k, SK_NOMEM, "%s: cannot create a Lua state", path);
    klua *st = slot_state(k);
    lua_State *L = run_state(st);
    if (!lua_checkstack(L, 8))
        return kern_failf(k, SK_NOMEM, "out of memory");
    /* path is the skill folder or the skill.lua file itself */
    size_t len = strlen(path);
    int is_file = len >= 4 && strcmp(path + len - 4, ".lua") == 0;
    char *file = is_file ? sk_strdup(path) : sk_asprintf("%s/skill.lua", path);
    char *dir = NULL;
    if (file && is_file) {
        const char *slash = strrchr(file, '/');
        dir = slash ? sk_strndup(file, (size_t)(slash - file)) : sk_strdup(".");
    } else if (file) {
        dir = sk_strdup(path);
    }
    if (!file || !dir) {
        free(file);
        free(dir);
        return kern_failf(k, SK_NOMEM, "out of memory");
    }
    load_ctx c = {st, skill, file, dir, 0};
    int top = lua_gettop(L);
    lua_State *prev = st->current;
    st->current = L;
    lua_pushcfunction(L, load_skill_pf);
    lua_pushlightuserdata(L, &c);
    int rc = docall(L, 1, 0);
    st->current = prev;
    sk_status status = SK_OK;
    if (rc != LUA_OK) {
        sk_err *e = err_from_value(L, -1);
        if (e && c.file_error)
            e->code = SK_IO;
        /* Lua shortens a long file name in its messages to ".../tail";
         * put the whole name back, so that the message reads
         * "file:line: ..." like every other skill error */
        const char *colon = e && strncmp(e->message, "...", 3) == 0
                                ? strchr(e->message + 3, ':') : NULL;
        size_t tail = colon ? (size_t)(colon - e->message - 3) : 0;
        if (colon && tail <= strlen(file) &&
            memcmp(file + strlen(file) - tail, e->message + 3, tail) == 0) {
            char *m = sk_asprintf("%s%s", file, colon);
            if (m) {
                free(e->message);
                e->message = m;
            }
        }
        if (e && strncmp(e->message, file, strlen(file)) != 0) {
            char *m = sk_asprintf("%s: %s", file, e->message);
            if (m) {
                free(e->message);
                e->message = m;
            }
        }
        status = kern_fail(k, e);
    } else {
        kern_ok(k);
    }
    lua_settop(L, top);
    free(file);
    free(dir);
    return status;
}

/* ---- native functions as coroutines --------------------------------------
 * A native Lua function runs in a coroutine of its own.  When it calls
 * skein.invoke, the call starts and the coroutine yields to the loop; its
 * end resumes it from a loop task.  So natives run side by side (plan
 * steps, template blocks), each paying only for its own waits, and a
 * native never blocks the loop.  Where a yield is impossible (inside a C
 * callback such as table.sort's comparator) skein.invoke waits by pumping
 * the loop instead. */
typedef struct ntask {
    branch b;            /* first: how skein.invoke finds it, its waiter */
    klua *st;
    int thread_ref;      /* the coroutine, in the registry */
    sk_function *f;      /* retained */
    int depth, untrusted;
    fn_done_fn done;
    void *ud;
} ntask;

/* The result of a native function as text: strings and numbers as they
 * are, nil as "", booleans as true/false, anything else only through its
 * __tostring.  [value] -> text; upvalue 1 names the function. */
static int to_text_pf(lua_State *L)
{
    const char *name = lua_tostring(L, lua_upvalueindex(1));
    switch (lua_type(L, 1)) {
    case LUA_TNIL:
        lua_pushliteral(L, "");
        break;
    case LUA_TSTRING:
        lua_pushvalue(L, 1);
        break;
    case LUA_TNUMBER:
    case LUA_TBOOLEAN:
        luaL_tolstring(L, 1, NULL);
        break;
    default:
        if (!luaL_getmetafield(L, 1, "__tostring"))
            return luaL_error(L, "%s returned a %s; return a string", name,
                              luaL_typename(L, 1));
        lua_pop(L, 1);
        luaL_tolstring(L, 1, NULL);
        break;
    }
    return 1;
}

/* After the native returned (or raised): leaves true, text or false, err
 * on the coroutine's stack. */
static int native_finish(lua_State *L, int status, lua_KContext ctx)
{
    (void)ctx;
    if (status == LUA_OK || status == LUA_YIELD) {
        /* [msgh, to_text, result] */
        lua_pushvalue(L, 1);
        lua_insert(L, -3); /* [msgh, msgh, to_text, result] */
        status = lua_pcall(L, 1, 1, -3);
    }
    if (status != LUA_OK && status != LUA_YIELD) {
        lua_pushboolean(L, 0);
        lua_insert(L, -2);
        return 2;
    }
    lua_pushboolean(L, 1);
    lua_insert(L, -2);
    return 2;
}

/* The coroutine's body: [fn, args, to_text] -> ok, text | err.  The call
 * is a yieldable pcall, so skein.invoke inside it can yield. */
static int native_body(lua_State *L)
{
    lua_pushcfunction(L, msghandler);
    lua_insert(L, 1);  /* [msgh, fn, args, to_text] */
    lua_insert(L, 2);  /* [msgh, to_text, fn, args] */
    int st = lua_pcallk(L, 1, 1, 1, 0, native_finish);
    return native_finish(L, st, 0);
}

/* [nt, vars]: makes the coroutine and its arguments.  Protected. */
static int native_setup_pf(lua_State *L)
{
    ntask *nt = lua_touserdata(L, 1);
    const sk_vars *vars = lua_touserdata(L, 2);
    lua_State *co = lua_newthread(L);           /* [.., co] */
    lua_pushcfunction(L, native_body);
    if (lua_rawgeti(L, LUA_REGISTRYINDEX, nt->f->ref) != LUA_TFUNCTION)
        return luaL_error(L, "%s: its Lua function is gone", nt->f->full_name);
    push_args(L, vars);
    lua_pushstring(L, nt->f->full_name);
    lua_pushcclosure(L, to_text_pf, 1);
    lua_xmove(L, co, 4);                         /* body, fn, args, to_text */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &BRANCHES_KEY);
    lua_pushvalue(L, -2);
    lua_pushlightuserdata(L, &nt->b);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    nt->thread_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops co */
    return 0;
}

/* [nt]: forgets the coroutine.  Protected. */
static int native_forget_pf(lua_State *L)
{
    ntask *nt = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, nt->thread_ref);
    lua_State *co = lua_tothread(L, -1);
    lua_pop(L, 1);
    if (co)
        unmap_thread(L, co);
    luaL_unref(L, LUA_REGISTRYINDEX, nt->thread_ref);
    nt->thread_ref = LUA_NOREF;
    return 0;
}

static void native_resume(ntask *nt, int nargs);

static void native_resume_task(void *ud) { native_resume(ud, 0); }

static void native_wake(waiter *w)
{
    ntask *nt = (ntask *)w;
    if (loop_defer(nt->st->k, native_resume_task, nt) != SK_OK)
        native_resume(nt, 0); /* out of memory: resume here instead */
}

/* Ends the task: hands the outcome to the invoke and frees the task. */
static void native_end(ntask *nt, lua_State *L, sk_status status, char *text,
                       sk_err *err)
{
    if (L && lua_checkstack(L, 4)) {
        lua_pushcfunction(L, native_forget_pf);
        lua_pushlightuserdata(L, nt);
        if (docall(L, 1, 0) != LUA_OK)
            lua_pop(L, 1);
    }
    if (L)
        waiter_clear(L, &nt->b.w);
    fn_done_fn done = nt->done;
    void *ud = nt->ud;
    fn_release(nt->st->k, nt->f);
    free(nt);
    done(ud, status, text, err);
}

/* Runs the native's coroutine until it waits on a call or ends. */
static void native_resume(ntask *nt, int nargs)
{
    klua *st = nt->st;
    sk_kernel *k = st->k;
    lua_State *L = st->L ? run_state(st) : NULL;
    if (!L || !lua_checkstack(L, 8)) {
        native_end(nt, L, SK_NOMEM, NULL, err_new(SK_NOMEM, "out of memory"));
        return;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, nt->thread_ref);
    lua_State *co = lua_tothread(L, -1);
    lua_pop(L, 1); /* the registry keeps it */
    /* the call's own state while it runs: how deep it is, and whether it
     * runs for a model (the sandbox's guards ask) */
    int saved_depth, saved_untrusted;
    kern_native_get(k, &saved_depth, &saved_untrusted);
    kern_native_set(k, nt->depth + 1, nt->untrusted);
    int saved_next = st->next_depth;
    st->next_depth = nt->depth + 1;
    lua_State *prev = st->current;
    st->current = co;
    int nres = 0;
    int rc = lua_resume(co, L, nargs, &nres);
    st->current = prev;
    st->next_depth = saved_next;
    kern_native_set(k, saved_depth, saved_untrusted);
    if (rc == LUA_YIELD) {
        if (nt->b.waiting)
            return; /* its call's end wakes it */
        lua_pop(co, nres); /* a plain coroutine.yield: go on next round */
        if (loop_defer(k, native_resume_task, nt) == SK_OK)
            return;
        native_end(nt, L, SK_NOMEM, NULL, err_new(SK_NOMEM, "out of memory"));
        return;
    }
    char *text = NULL;
    sk_err *err = NULL;
    sk_status status = SK_OK;
    if (rc == LUA_OK && nres >= 2 && lua_toboolean(co, -2)) {
        size_t n;
        const char *t = lua_tolstring(co, -1, &n);
        text = sk_strndup(t ? t : "", t ? n : 0);
        status = text ? SK_OK : SK_NOMEM;
    } else {
        /* the native raised (false, err), or the body itself failed */
        lua_xmove(co, L, 1);
        err = err_from_value(L, -1);
        lua_pop(L, 1);
        status = err ? err->code : SK_NOMEM;
    }
    lua_settop(co, 0);
    if (status == SK_NOMEM && !err)
        err = err_new(SK_NOMEM, "out of memory");
    native_end(nt, L, status, text, err);
}

static sk_status klua_start(sk_kernel *k, sk_function *f, const sk_vars *vars,
                     int depth, int untrusted, fn_done_fn done, void *ud,
                     sk_err **err)
{
    *err = NULL;
    klua *st = slot_state(k);
    if (!st || !st->L) {
        *err = err_new(SK_SCRIPT, "%s: no Lua state is bound to the kernel",
                       f->full_name);
        return *err ? SK_SCRIPT : SK_NOMEM;
    }
    lua_State *L = run_state(st);
    ntask *nt = sk_calloc(1, sizeof *nt);
    if (!nt || !lua_checkstack(L, 8)) {
        free(nt);
        *err = err_new(SK_NOMEM, "out of memory");
        return SK_NOMEM;
    }
    waiter_init(&nt->b.w, st);
    nt->b.w.wake = native_wake;
    nt->st = st;
    nt->thread_ref = LUA_NOREF;
    nt->f = f;
    fn_retain(f);
    nt->depth = depth;
    nt->untrusted = untrusted;
    nt->done = done;
    nt->ud = ud;
    lua_pushcfunction(L, native_setup_pf);
    lua_pushlightuserdata(L, nt);
    lua_pushlightuserdata(L, (void *)vars);
    if (docall(L, 2, 0) != LUA_OK) {
        *err = err_from_value(L, -1);
        lua_pop(L, 1);
        fn_release(k, f);
        free(nt);
        if (!*err)
            *err = err_new(SK_NOMEM, "out of memory");
        return *err ? (*err)->code : SK_NOMEM;
    }
    native_resume(nt, 3);
    return SK_OK;
}

/* ---- the sandbox for calls a model chose ------------------------------
 * A plan step, an agent action or generated SQL runs functions a model
 * picked, perhaps steered by text in the data.  While such a call runs,
 * a Lua native gets no way out of the process: the functions below refuse
 * unless the user set the allow_os option.  The guard is the function
 * itself, put in place when the state is bound (before any skill.lua
 * loads), and it asks the kernel, at the moment it is called, whether the
 * call running now is untrusted.  So a reference a skill saved at load
 * time (`local exec = os.execute`), an upvalue or an alias is guarded the
 * same.  The debug library is guarded too, since it reaches everything. */
static const struct {
    const char *lib, *fn; /* lib NULL: a global; fn NULL: every function */
} GUARDED[] = {
    {"os", "execute"}, {"os", "remove"},  {"os", "rename"}, {"os", "tmpname"},
    {"os", "exit"},    {"os", "getenv"},  {"io", "popen"},  {"io", "open"},
    {"io", "lines"},   {"io", "input"},   {"io", "output"}, {"package", "loadlib"},
    {NULL, "dofile"},  {NULL, "loadfile"}, {NULL, "require"}, {"debug", NULL},
};
#define N_GUARDED (sizeof GUARDED / sizeof GUARDED[0])

/* 1 when the native running now runs for a model and the user did not
 * allow the system to it. */
static int call_is_sandboxed(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &BINDING_KEY) != LUA_TUSERDATA) {
        lua_pop(L, 1);
        return 0;
    }
    binding *b = lua_touserdata(L, -1);
    lua_pop(L, 1);
    sk_kernel *k = b && b->st ? b->st->k : NULL;
    return k && kern_untrusted(k) && !kern_allow_os(k);
}

/* What the guard does with a call's arguments before passing them on. */
enum { G_PLAIN, G_REQUIRE, G_LEVEL, G_TRACEBACK };

/* The guard, a C closure: upvalues [1] the original, [2] its name, [3]
 * its kind.  It asks whether the call running now is sandboxed, then
 * calls the original.  The guard is one more frame on the stack, so a
 * level given to the debug library's level-based functions is moved up
 * one, and they still see their caller's levels. */
static int guarded(lua_State *L)
{
    int kind = (int)lua_tointeger(L, lua_upvalueindex(3));
    if (call_is_sandboxed(L)) {
        int loaded = 0;
        if (kind == G_REQUIRE && lua_type(L, 1) == LUA_TSTRING) {
            lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
            loaded = lua_getfield(L, -1, lua_tostring(L, 1)) != LUA_TNIL;
            lua_pop(L, 2);
        }
        if (!loaded)
            return luaL_error(L, "%s is not allowed in a function run for a model "
                                 "(a plan step, an agent action, a tool call or "
                                 "generated SQL); the user permits it with "
                                 "--allow-os (the allow_os option)",
                              lua_tostring(L, lua_upvalueindex(2)));
    }
    int first = lua_type(L, 1) == LUA_TTHREAD ? 2 : 1; /* another thread's levels */
    if (first == 1 && kind == G_LEVEL && lua_isinteger(L, 1))
        lua_pushinteger(L, lua_tointeger(L, 1) + 1), lua_replace(L, 1);
    if (first == 1 && kind == G_TRACEBACK) {
        if (lua_gettop(L) < 1)
            lua_pushnil(L);
        if (lua_gettop(L) < 2 || lua_isnil(L, 2)) {
            lua_settop(L, 1);
            lua_pushinteger(L, 2);
        } else if (lua_isinteger(L, 2)) {
            lua_pushinteger(L, lua_tointeger(L, 2) + 1);
            lua_replace(L, 2);
        }
    }
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, LUA_MULTRET);
    return lua_gettop(L);
}

static int guard_kind(const char *name)
{
    if (strcmp(name, "require") == 0)
        return G_REQUIRE;
    if (strcmp(name, "debug.getinfo") == 0 || strcmp(name, "debug.getlocal") == 0 ||
        strcmp(name, "debug.setlocal") == 0)
        return G_LEVEL;
    if (strcmp(name, "debug.traceback") == 0)
        return G_TRACEBACK;
    return G_PLAIN;
}

/* Replaces t[key] (t at idx) with its guard, named name. */
static void guard_field(lua_State *L, int idx, const char *key, const char *name)
{
    idx = lua_absindex(L, idx);
    if (lua_getfield(L, idx, key) != LUA_TFUNCTION ||
        lua_tocfunction(L, -1) == guarded) { /* bound before: already guarded */
        lua_pop(L, 1);
        return;
    }
    lua_pushstring(L, name);
    lua_pushinteger(L, guard_kind(name));
    lua_pushcclosure(L, guarded, 3);
    lua_setfield(L, idx, key);
}

/* Puts the guards in place in the standard libraries L has.  Runs
 * protected (it allocates). */
static int sandbox_install_pf(lua_State *L)
{
    for (size_t i = 0; i < N_GUARDED; i++) {
        if (!GUARDED[i].lib) {
            lua_pushglobaltable(L);
            guard_field(L, -1, GUARDED[i].fn, GUARDED[i].fn);
            lua_pop(L, 1);
            continue;
        }
        if (lua_getglobal(L, GUARDED[i].lib) != LUA_TTABLE) {
            lua_pop(L, 1);
            continue;
        }
        if (GUARDED[i].fn) {
            lua_pushfstring(L, "%s.%s", GUARDED[i].lib, GUARDED[i].fn);
            guard_field(L, -2, GUARDED[i].fn, lua_tostring(L, -1));
            lua_pop(L, 1);
        } else {
            /* every function of the library: collect the names first,
             * since the table changes while we walk it */
            int lib = lua_gettop(L);
            lua_newtable(L);
            int names = lua_gettop(L);
            lua_Integer n = 0;
            lua_pushnil(L);
            while (lua_next(L, lib)) {
                if (lua_type(L, -2) == LUA_TSTRING && lua_isfunction(L, -1)) {
                    lua_pushvalue(L, -2);
                    lua_rawseti(L, names, ++n);
                }
                lua_pop(L, 1);
            }
            for (lua_Integer j = 1; j <= n; j++) {
                lua_rawgeti(L, names, j);
                const char *key = lua_tostring(L, -1);
                lua_pushfstring(L, "%s.%s", GUARDED[i].lib, key);
                guard_field(L, lib, key, lua_tostring(L, -1));
                lua_pop(L, 2);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* ---- require("skein") from a stock interpreter -------------------------- */

/* The body of luaopen_skein (init.c), which passes the constructor of a
 * whole kernel: this layer does not know what a kernel is made of. */
int klua_open_module(lua_State *L, sk_status (*make)(sk_kernel **))
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &BINDING_KEY) == LUA_TUSERDATA) {
        binding *b = lua_touserdata(L, -1);
        if (b->st) {
            lua_rawgetp(L, LUA_REGISTRYINDEX, &MODULE_KEY);
            return 1;
        }
    }
    lua_pop(L, 1);
    sk_kernel *k = NULL;
    if (make(&k) != SK_OK) {
        /* copy the message out before freeing its owner: luaL_error
         * does not return */
        lua_pushstring(L, k ? sk_errmsg(k) : "out of memory");
        sk_kernel_free(k);
        return luaL_error(L, "skein: %s", lua_tostring(L, -1));
    }
    if (sk_lua_open(k, L) != SK_OK) {
        sk_kernel_free(k);
        return luaL_error(L, "skein: cannot bind the kernel to this state");
    }
    klua *st = slot_state(k);
    st->bind->owned = k; /* from here the state owns the kernel */
    lua_State *prev = st->current;
    st->current = L;
    if (sk_kernel_load_default_skills(k) != SK_OK)
        kern_notice(k, "skein: %s", sk_errmsg(k));
    st->current = prev;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &MODULE_KEY);
    return 1;
}

/* ---- the Lua side as a part of a kernel ------------------------------- */

sk_status klua_register(sk_kernel *k)
{
    return kern_add_skill_loader(k, "skill.lua", klua_load_skill);
}
