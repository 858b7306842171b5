/*
 * init.c -- what a kernel is made of.  The core knows no connector, no Lua
 * and no DataFrame by name; this file, above every layer, puts a kernel
 * together from them, as Lua's linit.c opens its standard libraries.
 */
#include "models/models.h"
#include "lua/klua.h"

sk_status sk_kernel_new(sk_kernel **out)
{
    sk_status rc = kern_new(out);
    if (!*out)
        return rc;
    sk_kernel *k = *out;
    /* the parts register themselves; a failure here is memory */
    if (models_register(k) != SK_OK || klua_register(k) != SK_OK)
        return rc == SK_OK ? SK_NOMEM : rc;
    return rc;
}

int luaopen_skein(struct lua_State *L)
{
    return klua_open_module(L, sk_kernel_new);
}
