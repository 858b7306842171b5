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

sk_status sk_calibrate(const double *score, const int *correct, size_t n,
                       double alpha, double delta, double *threshold,
                       size_t *min_n, const char **why)
{
    const char *w = NULL;
    if (!threshold || (n && (!score || !correct)) || !(alpha > 0 && alpha < 1) ||
        !(delta > 0 && delta < 1))
        return SK_USAGE;
    if (min_n)
        *min_n = cal_min_n(alpha, delta);
    int rc = cal_fit(score, correct, n, alpha, delta, threshold, &w);
    if (why)
        *why = w;
    return rc == 0 ? SK_OK : SK_DATA;
}
