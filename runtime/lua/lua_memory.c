/*
 * lua_memory.c -- skein.memory: the text memory (runtime/core/memory.c)
 * from Lua, as the built-in TextMemoryPlugin skill uses it.
 *
 *   skein.memory.save(text, key [, collection])
 *   skein.memory.recall(question [, {collection=, limit=, relevance=}])
 *       -> { {collection=, key=, text=, relevance=}, ... } best first
 *   skein.memory.get(key [, collection])      -> text, or nil
 *   skein.memory.remove(key [, collection])
 *
 * collection defaults to "generic", limit to 1 and relevance to 0, as in
 * Semantic Kernel.  Failures raise skein error tables; bad arguments raise
 * ordinary errors.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "lua/klua.h"

#include <lauxlib.h>
#include <lua.h>

/* Raises the kernel's last error as a skein error table. */
static int raise_kernel(lua_State *L, sk_kernel *k)
{
    sk_err *e = err_new(sk_errcode(k), "%s", sk_errmsg(k));
    if (!e)
        return luaL_error(L, "out of memory");
    klua_push_err(L, e);
    err_free(e);
    return lua_error(L);
}

static int l_save(lua_State *L)
{
    const char *text = luaL_checkstring(L, 1);
    const char *key = luaL_checkstring(L, 2);
    const char *coll = luaL_optstring(L, 3, NULL);
    lua_State *prev;
    sk_kernel *k = klua_enter_as(L, "memory", &prev);
    sk_status rc = sk_memory_save(k, coll, key, text);
    klua_leave(L, prev);
    if (rc != SK_OK)
        return raise_kernel(L, k);
    return 0;
}

/* [lightuserdata cJSON array] -> the hits as a table of tables */
static int push_hits_pf(lua_State *L)
{
    const cJSON *arr = lua_touserdata(L, 1);
    lua_createtable(L, cJSON_GetArraySize(arr), 0);
    int i = 0;
    const cJSON *h;
    cJSON_ArrayForEach(h, arr)
    {
        lua_createtable(L, 0, 4);
        static const char *const fields[] = {"collection", "key", "text"};
        for (size_t f = 0; f < sizeof fields / sizeof *fields; f++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(h, fields[f]);
            lua_pushstring(L, cJSON_IsString(v) ? v->valuestring : "");
            lua_setfield(L, -2, fields[f]);
        }
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(h, "relevance");
        lua_pushnumber(L, cJSON_IsNumber(r) ? r->valuedouble : 0);
        lua_setfield(L, -2, "relevance");
        lua_rawseti(L, -2, ++i);
    }
    return 1;
}

static int l_recall(lua_State *L)
{
    const char *query = luaL_checkstring(L, 1);
    const char *coll = NULL;
    lua_Integer limit = 1;
    lua_Number relevance = 0;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        int t = lua_getfield(L, 2, "collection");
        if (t != LUA_TNIL && t != LUA_TSTRING)
            luaL_argerror(L, 2, "'collection' must be a string");
        coll = lua_tostring(L, -1);
        t = lua_getfield(L, 2, "limit");
        if (t != LUA_TNIL) {
            int ok = 0;
            limit = lua_tointegerx(L, -1, &ok);
            if (!ok)
                luaL_argerror(L, 2, "'limit' must be a whole number");
        }
        t = lua_getfield(L, 2, "relevance");
        if (t != LUA_TNIL) {
            int ok = 0;
            relevance = lua_tonumberx(L, -1, &ok);
            if (!ok)
                luaL_argerror(L, 2, "'relevance' must be a number");
        }
    }
    if (limit < INT_MIN || limit > INT_MAX)
        luaL_argerror(L, 2, "'limit' is out of range");
    lua_State *prev;
    sk_kernel *k = klua_enter_as(L, "memory", &prev);
    char *json = NULL;
    sk_status rc = sk_memory_recall(k, coll, query, (int)limit, relevance, &json);
    klua_leave(L, prev);
    if (rc != SK_OK)
        return raise_kernel(L, k);
    cJSON *arr = cJSON_Parse(json);
    sk_free(json);
    if (!arr)
        return luaL_error(L, "out of memory");
    /* pushed under protection, so the tree is freed before any raise */
    lua_pushcfunction(L, push_hits_pf);
    lua_pushlightuserdata(L, arr);
    int prc = lua_pcall(L, 1, 1, 0);
    cJSON_Delete(arr);
    if (prc != LUA_OK)
        return lua_error(L);
    return 1;
}

static int push_text_pf(lua_State *L)
{
    lua_pushstring(L, lua_touserdata(L, 1));
    return 1;
}

static int l_get(lua_State *L)
{
    const char *key = luaL_checkstring(L, 1);
    const char *coll = luaL_optstring(L, 2, NULL);
    lua_State *prev;
    sk_kernel *k = klua_enter_as(L, "memory", &prev);
    char *text = NULL;
    sk_status rc = sk_memory_get(k, coll, key, &text);
    klua_leave(L, prev);
    if (rc == SK_NOT_FOUND) {
        lua_pushnil(L);
        return 1;
    }
    if (rc != SK_OK)
        return raise_kernel(L, k);
    lua_pushcfunction(L, push_text_pf); /* freed before any raise */
    lua_pushlightuserdata(L, text);
    int prc = lua_pcall(L, 1, 1, 0);
    sk_free(text);
    if (prc != LUA_OK)
        return lua_error(L);
    return 1;
}

static int l_remove(lua_State *L)
{
    const char *key = luaL_checkstring(L, 1);
    const char *coll = luaL_optstring(L, 2, NULL);
    lua_State *prev;
    sk_kernel *k = klua_enter_as(L, "memory", &prev);
    sk_status rc = sk_memory_remove(k, coll, key);
    klua_leave(L, prev);
    if (rc != SK_OK)
        return raise_kernel(L, k);
    return 0;
}

static const luaL_Reg memory_funcs[] = {
    {"save", l_save}, {"recall", l_recall}, {"get", l_get}, {"remove", l_remove},
    {NULL, NULL}};

void klua_open_memory(lua_State *L)
{
    /* [b, M] */
    luaL_newlibtable(L, memory_funcs);
    lua_pushvalue(L, -3);
    luaL_setfuncs(L, memory_funcs, 1);
    lua_setfield(L, -2, "memory");
}
