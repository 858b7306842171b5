/*
 * lua_df.c -- skein.df and the skein.DataFrame userdata: a Lua face on
 * runtime/df/df.c (tables and views in the session database), csv.c,
 * nl2sql.c (English to SQL) and rowops.c (semantic operators over rows).
 *
 * Every function closes over the binding (upvalue 1), as in lua.c.  C
 * objects live in userdata with __gc and __close sharing one idempotent
 * close; errors from the library are raised as skein error tables after
 * everything the call allocated is freed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <sqlite3.h>

#include "lua/klua.h"

#define DF_MT "skein.DataFrame"
#define ROWS_MT "skein.DataFrame.rows"

typedef struct ldf {
    sk_df *df; /* NULL once closed */
} ldf;

static ldf *check_df(lua_State *L, int idx)
{
    ldf *d = luaL_checkudata(L, idx, DF_MT);
    if (!d->df)
        luaL_error(L, "attempt to use a closed DataFrame");
    return d;
}

static int df_close_l(lua_State *L)
{
    ldf *d = luaL_checkudata(L, 1, DF_MT);
    df_free(d->df);
    d->df = NULL;
    return 0;
}

/* Wraps df in a new userdata.  Takes ownership; frees df if that fails. */
static void push_df(lua_State *L, sk_df *df)
{
    ldf *d = lua_newuserdatauv(L, sizeof *d, 0);
    d->df = df;
    luaL_setmetatable(L, DF_MT);
}

/* Raises err (taking ownership) as a skein error table. */
static int raise_err(lua_State *L, sk_err *err)
{
    if (!err)
        err = err_new(SK_NOMEM, "out of memory");
    klua_push_err(L, err);
    err_free(err);
    return lua_error(L);
}

static int push_owned(lua_State *L, char *s)
{
    if (!s)
        return raise_err(L, NULL);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, s);
    free(s);
    luaL_pushresult(&b);
    return 1;
}

/* ---- making DataFrames ------------------------------------------------- */

/* skein.df.read_csv(path [, {delimiter = ",", header = true, table = "t"}]) */
static int l_read_csv(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    df_csv_opts o = {0, -1, NULL};
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "delimiter"); /* 3 */
        size_t n = 0;
        const char *d = lua_tolstring(L, 3, &n);
        if (d && n != 1 && strcmp(d, "\\t") != 0)
            return luaL_argerror(L, 2, "'delimiter' must be one character");
        if (d)
            o.delimiter = strcmp(d, "\\t") == 0 ? '\t' : d[0];
        if (lua_getfield(L, 2, "header") != LUA_TNIL) /* 4 */
            o.header = lua_toboolean(L, 4);
        lua_getfield(L, 2, "table"); /* 5 */
        o.table = lua_tostring(L, 5);
    }
    lua_State *prev;
    sk_kernel *k = klua_enter(L, &prev);
    sk_df *df = NULL;
    sk_err *err = NULL;
    sk_status rc = df_read_csv(k, path, &o, &df, &err);
    klua_leave(L, prev);
    if (rc != SK_OK)
        return raise_err(L, err);
    push_df(L, df);
    return 1;
}

/* skein.df.from_sql(query): a view over the session's tables (your SQL
 * runs as written: it is trusted, unlike the model's). */
static int l_from_sql(lua_State *L)
{
    const char *sql = luaL_checkstring(L, 1);
    lua_State *prev;
    sk_kernel *k = klua_enter(L, &prev);
    sk_df *df = NULL;
    sk_err *err = NULL;
    sk_status rc = df_from_query(k, sql, NULL, NULL, &df, &err);
    klua_leave(L, prev);
    if (rc != SK_OK)
        return raise_err(L, err);
    push_df(L, df);
    return 1;
}

static int l_from_table(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_State *prev;
    sk_kernel *k = klua_enter(L, &prev);
    sk_err *err = NULL;
    df_engine *e = kern_engine(k, &err);
    df_col *cols = NULL;
    size_t n = 0;
    char *msg = NULL;
    sk_status rc = e ? e->vt->columns(e, name, &cols, &n, &msg) : SK_NOMEM;
    klua_leave(L, prev);
    if (!e)
        return raise_err(L, err);
    df_cols_free(cols, n);
    if (rc != SK_OK || n == 0) {
        sk_err *x = err_new(rc == SK_OK ? SK_NOT_FOUND : rc, "no table or view named %s%s%s",
                            name, msg ? ": " : "", msg ? msg : "");
        free(msg);
        return raise_err(L, x);
    }
    free(msg);
    sk_df *df = df_wrap(k, name, NULL, NULL);
    if (!df)
        return raise_err(L, NULL);
    push_df(L, df);
    return 1;
}

/* The SQL type of a Lua value, for from_rows. */
static const char *lua_sql_type(lua_State *L, int idx)
{
    switch (lua_type(L, idx)) {
    case LUA_TNUMBER: return lua_isinteger(L, idx) ? "INTEGER" : "REAL";
    case LUA_TBOOLEAN: return "INTEGER";
    default: return "TEXT";
    }
}

static int bind_value(lua_State *L, sqlite3_stmt *st, int col, int idx)
{
    switch (lua_type(L, idx)) {
    case LUA_TNIL: return sqlite3_bind_null(st, col);
    case LUA_TBOOLEAN: return sqlite3_bind_int(st, col, lua_toboolean(L, idx));
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            return sqlite3_bind_int64(st, col, (sqlite3_int64)lua_tointeger(L, idx));
        return sqlite3_bind_double(st, col, lua_tonumber(L, idx));
    default: {
        size_t n;
        const char *s = luaL_tolstring(L, idx, &n);
        int rc = sqlite3_bind_text(st, col, s, (int)n, SQLITE_TRANSIENT);
        lua_pop(L, 1);
        return rc;
    }
    }
}

/* Collects the column names of rows (an array of tables): given, or the
 * sorted keys of every row.  Leaves an array of names on the stack. */
static void row_columns(lua_State *L, int rows, int given)
{
    if (given) {
        lua_pushvalue(L, given);
        return;
    }
    lua_newtable(L); /* set */
    int set = lua_gettop(L);
    size_t n = lua_rawlen(L, rows);
    for (size_t i = 1; i <= n; i++) {
        if (lua_rawgeti(L, rows, (lua_Integer)i) != LUA_TTABLE)
            luaL_error(L, "from_rows: row %d is not a table", (int)i);
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            if (lua_type(L, -2) == LUA_TSTRING) {
                lua_pushvalue(L, -2);
                lua_pushboolean(L, 1);
                lua_rawset(L, set);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_newtable(L); /* [set, names] */
    int names = lua_gettop(L);
    lua_pushnil(L);
    int k = 0;
    while (lua_next(L, set)) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_rawseti(L, names, ++k);
    }
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "sort");
    lua_remove(L, -2);
    lua_pushvalue(L, names);
    lua_call(L, 1, 0);  /* table.sort(names) */
    lua_remove(L, set); /* [names] */
}

/* skein.df.from_rows({{a = 1, b = "x"}, ...} [, {"a", "b"}]) */
static int l_from_rows(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int given = 0;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        given = 2;
    }
    lua_settop(L, 2);
    row_columns(L, 1, given); /* 3: names */
    size_t nc = lua_rawlen(L, 3), nr = lua_rawlen(L, 1);
    if (nc == 0)
        return luaL_argerror(L, 1, "no columns: give rows with named fields, or the column names");
    if (nc > 2000)
        return luaL_argerror(L, 1, "more than 2000 columns");
    /* the CREATE statement, built in a Lua buffer so a raise leaks nothing */
    lua_State *prev;
    sk_kernel *k = klua_enter(L, &prev);
    klua_leave(L, prev);
    char *name = df_new_name(k);
    if (!name)
        return raise_err(L, NULL);
    lua_pushstring(L, name); /* 4 */
    free(name);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    char *q = df_quote_ident(lua_tostring(L, 4));
    if (!q)
        return raise_err(L, NULL);
    luaL_addstring(&b, "CREATE TABLE ");
    luaL_addstring(&b, q);
    free(q);
    luaL_addstring(&b, " (");
    for (size_t c = 1; c <= nc; c++) {
        lua_rawgeti(L, 3, (lua_Integer)c);
        const char *col = lua_tostring(L, -1);
        if (!col)
            return luaL_argerror(L, 2, "column names must be strings");
        /* the type of the first non-nil value in the column */
        const char *type = "TEXT";
        for (size_t r = 1; r <= nr; r++) {
            lua_rawgeti(L, 1, (lua_Integer)r);
            lua_getfield(L, -1, col);
            int isnil = lua_isnil(L, -1);
            if (!isnil)
                type = lua_sql_type(L, -1);
            lua_pop(L, 2);
            if (!isnil)
                break;
        }
        char *qc = df_quote_ident(col);
        lua_pop(L, 1);
        if (!qc)
            return raise_err(L, NULL);
        lua_pushstring(L, qc);
        free(qc);
        luaL_addvalue(&b);
        luaL_addchar(&b, ' ');
        luaL_addstring(&b, type);
        if (c < nc)
            luaL_addstring(&b, ", ");
    }
    luaL_addchar(&b, ')');
    luaL_pushresult(&b); /* 5: create */
    sk_err *err = NULL;
    df_engine *e = kern_engine(k, &err);
    if (!e)
        return raise_err(L, err);
    sqlite3 *db = df_sqlite(e);
    if (!db)
        return raise_err(L, err_new(SK_USAGE, "from_rows needs the SQLite engine"));
    char *msg = NULL;
    if (e->vt->exec(e, lua_tostring(L, 5), &msg) != SK_OK) {
        sk_err *x = err_new(SK_QUERY, "from_rows: %s", msg ? msg : "cannot create the table");
        free(msg);
        return raise_err(L, x);
    }
    /* one prepared INSERT in one transaction */
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "INSERT INTO ");
    q = df_quote_ident(lua_tostring(L, 4));
    if (!q)
        return raise_err(L, NULL);
    luaL_addstring(&b, q);
    free(q);
    luaL_addstring(&b, " VALUES (");
    for (size_t c = 1; c <= nc; c++)
        luaL_addstring(&b, c < nc ? "?," : "?");
    luaL_addchar(&b, ')');
    luaL_pushresult(&b); /* 6: insert */
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, lua_tostring(L, 6), -1, &st, NULL) != SQLITE_OK)
        return raise_err(L, err_new(SK_QUERY, "from_rows: %s", sqlite3_errmsg(db)));
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    int rc = SQLITE_OK;
    for (size_t r = 1; rc == SQLITE_OK && r <= nr; r++) {
        lua_rawgeti(L, 1, (lua_Integer)r);
        for (size_t c = 1; rc == SQLITE_OK && c <= nc; c++) {
            lua_rawgeti(L, 3, (lua_Integer)c);
            lua_gettable(L, -2);
            rc = bind_value(L, st, (int)c, -1);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st);
            rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
            sqlite3_reset(st);
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return raise_err(L, err_new(SK_QUERY, "from_rows: %s", sqlite3_errmsg(db)));
    }
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sk_df *df = df_wrap(k, lua_tostring(L, 4), NULL, NULL);
    if (!df)
        return raise_err(L, NULL);
    push_df(L, df);
    return 1;
}

/* ---- reading ----------------------------------------------------------- */

static int df_columns_l(lua_State *L)
{
    ldf *d = check_df(L, 1);
    lua_State *prev;
    sk_kernel *k = klua_enter(L, &prev);
    klua_leave(L, prev);
    sk_err *err = NULL;
    df_engine *e = kern_engine(k, &err);
    if (!e)
        return raise_err(L, err);
    df_col *cols = NULL;
    size_t n = 0;
    char *msg = NULL;
    if (e->vt->columns(e, d->df->name, &cols, &n, &msg) != SK_OK) {
        sk_err *x = err_new(SK_QUERY, "%s", msg ? msg : "cannot read the columns");
        free(msg);
        return raise_err(L, x);
    }
    free(msg);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, cols[i].name);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, cols[i].type ? cols[i].type : "");
        lua_setfield(L, -2, "type");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    df_cols_free(cols, n);
    return 1;
}

static int df_count_l(lua_State *L)
{
    ldf *d = check_df(L, 1);
    long long n = 0;
    sk_err *err = NULL;
    lua_State *prev;
    klua_enter(L, &prev);
    sk_status rc = df_count(d->df, &n, &err);
    klua_leave(L, prev);
    if (rc != SK_OK)
        return raise_err(L, err);
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

/* The rows iterator: an engine cursor in a userdata, closed by __gc /
 * __close or at the end.  The engine bounds a read of generated SQL
 * however it is read, this one included. */
typedef struct lrows {
    df_cursor *cur;
} lrows;

static int rows_close(lua_State *L)
{
    lrows *r = luaL_checkudata(L, 1, ROWS_MT);
    df_cursor_close(r->cur);
    r->cur = NULL;
    return 0;
}

static void push_value(lua_State *L, const df_value *v)
{
    switch (v->type) {
    case DF_INT: lua_pushinteger(L, (lua_Integer)v->i); break;
    case DF_REAL: lua_pushnumber(L, v->r); break;
    case DF_NULL: lua_pushnil(L); break;
    case DF_TEXT: lua_pushlstring(L, v->s, v->len); break;
    }
}

static int rows_next(lua_State *L)
{
    lrows *r = luaL_checkudata(L, lua_upvalueindex(2), ROWS_MT);
    if (!r->cur)
        return 0;
    lua_State *prev;
    klua_enter(L, &prev); /* a step may call skein() from the SQL */
    char *msg = NULL;
    int row = 0;
    sk_status rc = df_cursor_next(r->cur, &row, &msg);
    klua_leave(L, prev);
    if (rc != SK_OK || !row) {
        df_cursor_close(r->cur);
        r->cur = NULL;
        if (rc == SK_OK)
            return 0;
        sk_err *e = rc == SK_NOMEM ? NULL : err_new(rc, "%s", msg ? msg : sk_strerror(rc));
        free(msg);
        return raise_err(L, e);
    }
    const char *const *names;
    const df_value *values;
    size_t n = df_cursor_row(r->cur, &names, &values);
    lua_createtable(L, 0, (int)n);
    for (size_t c = 0; c < n; c++) {
        push_value(L, &values[c]);
        lua_setfield(L, -2, names[c]);
    }
    return 1;
}

/* for row in df:rows() do ... end: each row a table keyed by column */
static int df_rows_l(lua_State *L)
{
    ldf *d = check_df(L, 1);
    lua_State *prev;
    sk_kernel *k = klua_enter(L, &prev);
    klua_leave(L, prev);
    sk_err *err = NULL;
    df_engine *e = kern_engine(k, &err);
    if (!e)
        return raise_err(L, err);
    char *q = df_quote_ident(d->df->name);
    char *sql = q ? sk_asprintf("SELECT * FROM %s", q) : NULL;
    free(q);
    if (!sql)
        return raise_err(L, NULL);
    lua_pushvalue(L, lua_upvalueindex(1)); /* the binding, for klua_enter */
    lrows *r = lua_newuserdatauv(L, sizeof *r, 0);
    r->cur = NULL;
    luaL_setmetatable(L, ROWS_MT);
    char *msg = NULL;
    sk_status rc = df_cursor_open(e, sql, &r->cur, &msg);
    free(sql);
    if (rc != SK_OK) {
        sk_err *x = rc == SK_NOMEM ? NULL : err_new(rc, "%s", msg ? msg : sk_strerror(rc));
        free(msg);
        return raise_err(L, x);
    }
    lua_pushcclosure(L, rows_next, 2); /* upvalues: binding, rows */
    return 1;
}

typedef struct show_ctx {
    char **cells; /* row-major, ncols per row, header first */
    size_t ncols, nrows, cap;
} show_ctx;

static int show_row(void *ud, size_t n, const char *const *names,
                    const char *const *values)
{
    show_ctx *c = ud;
    if (c->nrows == 0) {
        c->ncols = n;
        c->cap = 64;
        c->cells = sk_calloc(c->cap * n + n, sizeof *c->cells);
        if (!c->cells)
            return 1;
        for (size_t i = 0; i < n; i++)
            c->cells[i] = sk_strdup(names[i]);
        c->nrows = 1;
    }
    if (c->nrows == c->cap) {
        char **p = sk_realloc(c->cells, (c->cap * 2) * n * sizeof *p);
        if (!p)
            return 1;
        c->cells = p;
        c->cap *= 2;
    }
    for (size_t i = 0; i < n; i++) {
        const char *v = values[i] ? values[i] : "NULL";
        /* one line per cell, at most 40 characters */
        char buf[44];
        size_t j = 0;
        for (; v[j] && j < 40; j++)
            buf[j] = v[j] == '\n' || v[j] == '\t' ? ' ' : v[j];
        if (v[j])
            memcpy(buf + 37, "...", 3);
        buf[j] = '\0';
        c->cells[c->nrows * n + i] = sk_strdup(buf);
    }
    c->nrows++;
    return 0;
}

/* df:show([n]): the first n rows (default 10) as an aligned table */
static int df_show_l(lua_State *L)
{
    ldf *d = check_df(L, 1);
    lua_Integer limit = luaL_optinteger(L, 2, 10);
    lua_State *prev;
    sk_kernel *k = klua_enter(L, &prev);
    klua_leave(L, prev);
    sk_err *err = NULL;
    df_engine *e = kern_engine(k, &err);
    if (!e)
        return raise_err(L, err);
    char *q = df_quote_ident(d->df->name);
    char *sql = q ? sk_asprintf("SELECT * FROM %s LIMIT %lld", q, (long long)limit) : NULL;
    free(q);
    if (!sql)
        return raise_err(L, NULL);
    show_ctx c = {0};
    char *msg = NULL;
    sk_status rc = e->vt->query(e, sql, NULL, 0, show_row, &c, &msg);
    free(sql);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    if (rc == SK_OK && c.cells) {
        size_t w[256] = {0};
        size_t nc = c.ncols < 256 ? c.ncols : 256;
        for (size_t r = 0; r < c.nrows; r++)
            for (size_t i = 0; i < nc; i++) {
                size_t len = c.cells[r * c.ncols + i] ? strlen(c.cells[r * c.ncols + i]) : 0;
                if (len > w[i])
                    w[i] = len;
            }
        for (size_t r = 0; r < c.nrows; r++) {
            for (size_t i = 0; i < nc; i++) {
                const char *cell = c.cells[r * c.ncols + i] ? c.cells[r * c.ncols + i] : "";
                luaL_addstring(&b, cell);
                if (i + 1 < nc)
                    for (size_t pad = strlen(cell); pad < w[i] + 2; pad++)
                        luaL_addchar(&b, ' ');
            }
            luaL_addchar(&b, '\n');
            if (r == 0) {
                for (size_t i = 0; i < nc; i++) {
                    for (size_t x = 0; x < w[i]; x++)
                        luaL_addchar(&b, '-');
                    if (i + 1 < nc)
                        luaL_addstring(&b, "  ");
                }
                luaL_addchar(&b, '\n');
            }
        }
    }
    for (size_t i = 0; c.cells && i < c.nrows * c.ncols; i++)
        free(c.cells[i]);
    free(c.cells);
    if (rc != SK_OK) {
        sk_err *x = err_new(rc, "%s", msg ? msg : sk_strerror(rc));
        free(msg);
        return raise_err(L, x);
    }
    free(msg);
    luaL_pushresult(&b);
    lua_getglobal(L, "io");
    lua_getfield(L, -1, "write");
    lua_pushvalue(L, -3);
    lua_call(L, 1, 0);
    return 0;
}

static int df_to_csv_l(lua_State *L)
{
    ldf *d = check_df(L, 1);
    const char *path = luaL_checkstring(L, 2);
    sk_err *err = NULL;
    lua_State *prev;
    klua_enter(L, &prev);
    sk_status rc = df_write_csv(d->df, path, &err);
    klua_leave(L, prev);
    if (rc != SK_OK)
        return raise_err(L, err);
    return 0;
}

/* df:sql("SELECT ... FROM {df}") -> a new DataFrame (your SQL, trusted) */
static int df_sql_l(lua_State *L)
{
    ldf *d = check_df(L, 1);
    const char *sql = luaL_checkstring(L, 2);
    char *full = df_subst(d->df, sql);
    if (!full)
        return raise_err(L, NULL);
    lua_State *prev;
    sk_kernel *k = klua_enter(L, &prev);
    sk_df *out = NULL;
    sk_err *err = NULL;
    sk_status rc = df_from_query(k, full, NULL, NULL, &out, &err);
    klua_leave(L, prev);
    free(full);
    if (rc != SK_OK)
        return raise_err(L, err);
    push_df(L, out);
    return 1;
}

/* ---- the model's part -------------------------------------------------- */

#define MAX_SQL_FUNCTIONS 256

/* Reads ai_transform / ai_verify options; names (MAX_SQL_FUNCTIONS slots)
 * receives `functions`, kept alive by the list it leaves on the stack. */
static void ai_opts(lua_State *L, int idx, df_ai_opts *o, const char **names)
{
    memset(o, 0, sizeof *o);
    o->samples = -1;
    o->repairs = -1;
    if (!lua_istable(L, idx))
        return;
    if (lua_getfield(L, idx, "functions") == LUA_TTABLE) {
        int list = lua_gettop(L);
        size_t n = lua_rawlen(L, list);
        if (n > MAX_SQL_FUNCTIONS)
            luaL_argerror(L, idx, "at most 256 functions");
        for (size_t i = 0; i < n; i++) {
            lua_rawgeti(L, list, (lua_Integer)i + 1);
            names[i] = lua_tostring(L, -1);
            lua_pop(L, 1);
            if (!names[i])
                luaL_argerror(L, idx, "functions must be names");
        }
        o->functions = names;
        o->n_functions = n;
    } else if (!lua_isnil(L, -1)) {
        luaL_argerror(L, idx, "'functions' must be a list of names");
    }
    lua_getfield(L, idx, "samples");
    if (lua_isboolean(L, -1))
        o->samples = lua_toboolean(L, -1) ? -1 : 0;
    else
        o->samples = (int)luaL_optinteger(L, -1, -1);
    lua_getfield(L, idx, "repairs");
    o->repairs = (int)luaL_optinteger(L, -1, -1);
    lua_getfield(L, idx, "cache");
    o->no_cache = lua_isboolean(L, -1) && !lua_toboolean(L, -1);
    lua_pop(L, 3); /* the functions list stays */
}

static int df_ai_transform_l(lua_State *L)
{
    ldf *d = check_df(L, 1);
    const char *instruction = luaL_checkstring(L, 2);
    df_ai_opts o;
    const char *fns[MAX_SQL_FUNCTIONS];
    ai_opts(L, 3, &o, fns);
    lua_State *prev;
    klua_enter(L, &prev);
    sk_df *out = NULL;
    sk_err *err = NULL;
    sk_status rc = df_ai_transform(d->df, instruction, &o, &out, &err);
    klua_leave(L, prev);
    if (rc != SK_OK)
        return raise_err(L, err);
    push_df(L, out);
    return 1;
}

static int df_ai_explain_l(lua_State *L)
{
    ldf *d = check_df(L, 1);
    lua_State *prev;
    klua_enter(L, &prev);
    char *out = NULL;
    sk_err *err = NULL;
    sk_status rc = df_ai_explain(d->df, &out, &err);
    klua_leave(L, prev);
    if (rc != SK_OK)
        return raise_err(L, err);
    return push_owned(L, out);
}

/* df:ai_verify(expectation) -> ok, evidence, sql */
static int df_ai_verify_l(lua_State *L)
{
    ldf *d = check_df(L, 1);
    const char *expectation = luaL_checkstring(L, 2);
    df_ai_opts o;
    const char *fns[MAX_SQL_FUNCTIONS];
    ai_opts(L, 3, &o, fns);
    lua_State *prev;
    klua_enter(L, &prev);
    df_verdict v = {0, NULL, NULL};
    sk_err *err = NULL;
    sk_status rc = df_ai_verify(d->df, expectation, &o, &v, &err);
    klua_leave(L, prev);
    if (rc != SK_OK) {
        free(v.evidence);
        free(v.sql);
        return raise_err(L, err);
    }
    lua_pushboolean(L, v.ok);
    lua_pushstring(L, v.evidence ? v.evidence : "");
    lua_pushstring(L, v.sql ? v.sql : "");
    free(v.evidence);
    free(v.sql);
    return 3;
}

/* The options shared by the row operators; string arrays are kept alive
 * by the options table on the stack. */
static void rowop_opts(lua_State *L, int idx, df_rowop_opts *o)
{
    memset(o, 0, sizeof *o);
    o->progress = -1;
    if (!lua_istable(L, idx))
        return;
    lua_getfield(L, idx, "as");
    o->as = lua_tostring(L, -1);
    lua_getfield(L, idx, "concurrency");
    o->concurrency = (int)luaL_optinteger(L, -1, 0);
    lua_getfield(L, idx, "batch");
    o->batch = (int)luaL_optinteger(L, -1, 0);
    lua_getfield(L, idx, "cache");
    o->no_cache = lua_isboolean(L, -1) && !lua_toboolean(L, -1);
    lua_getfield(L, idx, "raise_uncertain");
    o->raise_uncertain = lua_toboolean(L, -1);
    lua_getfield(L, idx, "progress");
    if (lua_isboolean(L, -1))
        o->progress = lua_toboolean(L, -1);
    lua_getfield(L, idx, "model");
    o->model = lua_tostring(L, -1);
    lua_pop(L, 7);
}

/* Runs a row operator and returns the new DataFrame and the summary. */
static int run_rowop(lua_State *L, ldf *d, df_op op, const char *instruction,
                     df_rowop_opts *o)
{
    lua_State *prev;
    klua_enter(L, &prev);
    sk_df *out = NULL;
    df_rowop_summary sum;
    memset(&sum, 0, sizeof sum);
    sk_err *err = NULL;
    sk_status rc = df_rowop(d->df, op, instruction, o, &out, &sum, &err);
    klua_leave(L, prev);
    if (rc != SK_OK)
        return raise_err(L, err);
    push_df(L, out);
    lua_createtable(L, 0, 7);
    lua_pushinteger(L, sum.rows);
    lua_setfield(L, -2, "rows");
    lua_pushinteger(L, sum.done);
    lua_setfield(L, -2, "done");
    lua_pushinteger(L, sum.failed);
    lua_setfield(L, -2, "failed");
    lua_pushinteger(L, sum.uncertain);
    lua_setfield(L, -2, "uncertain");
    lua_pushinteger(L, sum.cached);
    lua_setfield(L, -2, "cached");
    lua_pushinteger(L, sum.model_calls);
    lua_setfield(L, -2, "model_calls");
    lua_pushinteger(L, sum.batch_fallbacks);
    lua_setfield(L, -2, "batch_fallbacks");
    return 2;
}

/* df:ai_map(instruction [, {as = "col", ...}]) -> df, summary */
static int df_ai_map_l(lua_State *L)
{
    ldf *d = check_df(L, 1);
    const char *instruction = luaL_checkstring(L, 2);
    lua_settop(L, 3);
    df_rowop_opts o;
    rowop_opts(L, 3, &o);
    return run_rowop(L, d, DF_MAP, instruction, &o);
}

static int df_ai_filter_l(lua_State *L)
{
    ldf *d = check_df(L, 1);
    const char *instruction = luaL_checkstring(L, 2);
    lua_settop(L, 3);
    df_rowop_opts o;
    rowop_opts(L, 3, &o);
    return run_rowop(L, d, DF_FILTER, instruction, &o);
}

/* Reads an array of strings at idx into names (at most max). */
static size_t string_list(lua_State *L, int idx, const char **names, size_t max,
                          const char *what)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    size_t n = lua_rawlen(L, idx);
    if (n == 0 || n > max)
        luaL_argerror(L, idx, lua_pushfstring(L, "give 1 to %d %s", (int)max, what));
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, idx, (lua_Integer)i + 1);
        names[i] = lua_tostring(L, -1); /* kept alive by the table */
        lua_pop(L, 1);
        if (!names[i])
            luaL_argerror(L, idx, lua_pushfstring(L, "%s must be strings", what));
    }
    return n;
}

/* df:ai_classify(column, {labels...} [, opts]) -> df, summary */
static int df_ai_classify_l(lua_State *L)
{
    ldf *d = check_df(L, 1);
    const char *column = luaL_checkstring(L, 2);
    lua_settop(L, 4);
    const char *labels[64];
    size_t n = string_list(L, 3, labels, 64, "labels");
    df_rowop_opts o;
    rowop_opts(L, 4, &o);
    o.column = column;
    o.labels = labels;
    o.n_labels = n;
    const char *instruction = lua_istable(L, 4) && lua_getfield(L, 4, "instruction") == LUA_TSTRING
                                  ? lua_tostring(L, -1)
                                  : "";
    return run_rowop(L, d, DF_CLASSIFY, instruction, &o);
}

/* df:ai_extract(column, {fields...} [, opts]) -> df, summary */
static int df_ai_extract_l(lua_State *L)
{
    ldf *d = check_df(L, 1);
    const char *column = luaL_checkstring(L, 2);
    lua_settop(L, 4);
    const char *fields[64];
    size_t n = string_list(L, 3, fields, 64, "fields");
    df_rowop_opts o;
    rowop_opts(L, 4, &o);
    o.column = column;
    o.fields = fields;
    o.n_fields = n;
    const char *instruction = lua_istable(L, 4) && lua_getfield(L, 4, "instruction") == LUA_TSTRING
                                  ? lua_tostring(L, -1)
                                  : "";
    return run_rowop(L, d, DF_EXTRACT, instruction, &o);
}

/* df.sql, df.name, df.instruction as fields; methods otherwise */
static int df_index(lua_State *L)
{
    ldf *d = luaL_checkudata(L, 1, DF_MT);
    const char *key = luaL_checkstring(L, 2);
    if (d->df && strcmp(key, "name") == 0) {
        lua_pushstring(L, d->df->name);
        return 1;
    }
    if (d->df && strcmp(key, "instruction") == 0) {
        lua_pushstring(L, d->df->instruction);
        return 1;
    }
    if (d->df && strcmp(key, "query") == 0) {
        lua_pushstring(L, d->df->sql);
        return 1;
    }
    lua_pushvalue(L, lua_upvalueindex(2)); /* the methods */
    lua_getfield(L, -1, key);
    return 1;
}

static int df_tostring(lua_State *L)
{
    ldf *d = luaL_checkudata(L, 1, DF_MT);
    if (!d->df)
        lua_pushliteral(L, "skein.DataFrame (closed)");
    else
        lua_pushfstring(L, "skein.DataFrame %s", d->df->name);
    return 1;
}

static const luaL_Reg df_methods[] = {
    {"columns", df_columns_l},   {"count", df_count_l},
    {"rows", df_rows_l},         {"show", df_show_l},
    {"to_csv", df_to_csv_l},     {"sql", df_sql_l},
    {"ai_transform", df_ai_transform_l}, {"ai_explain", df_ai_explain_l},
    {"ai_verify", df_ai_verify_l},       {"ai_map", df_ai_map_l},
    {"ai_filter", df_ai_filter_l},       {"ai_classify", df_ai_classify_l},
    {"ai_extract", df_ai_extract_l},     {"close", df_close_l},
    {NULL, NULL}};

static const luaL_Reg df_funcs[] = {
    {"read_csv", l_read_csv},     {"from_sql", l_from_sql},
    {"from_table", l_from_table}, {"from_rows", l_from_rows},
    {NULL, NULL}};

void klua_open_df(lua_State *L)
{
    /* [b, M] */
    luaL_newmetatable(L, ROWS_MT); /* [b, M, rmt] */
    lua_pushcfunction(L, rows_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, rows_close);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);

    luaL_newmetatable(L, DF_MT); /* [b, M, mt] */
    luaL_newlibtable(L, df_methods);
    lua_pushvalue(L, -4);
    luaL_setfuncs(L, df_methods, 1); /* [b, M, mt, methods] */
    lua_pushvalue(L, -4);            /* binding */
    lua_insert(L, -2);               /* [b, M, mt, b, methods] */
    lua_pushcclosure(L, df_index, 2);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, df_close_l);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, df_close_l);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, df_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1); /* [b, M] */

    luaL_newlibtable(L, df_funcs);
    lua_pushvalue(L, -3);
    luaL_setfuncs(L, df_funcs, 1);
    lua_setfield(L, -2, "df");
}
