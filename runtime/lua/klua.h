/*
 * klua.h -- the Lua side: the skein module, native Lua skills run as
 * coroutines, the sandbox (lua.c), and the DataFrame userdata
 * (lua_df.c).  The top layer: it binds core, df and planner.
 */
#ifndef SKEIN_KLUA_H
#define SKEIN_KLUA_H

#include "df/df.h"
#include "planner/planner.h"

/* ---- Lua side ---------------------------------------------------------- */
struct lua_State;
/* The kernel's Lua state, created on first use when none is bound. */
SK_HIDDEN struct lua_State *klua_state(sk_kernel *k);
/* Makes Lua a part of kernel k: skill folders' skill.lua load as native
 * skills, run as coroutines of their own (when one calls skein.invoke it
 * yields to the loop, so natives run side by side). */
SK_HIDDEN sk_status klua_register(sk_kernel *k);
/* require("skein"): binds L to a new kernel from make (init.c passes
 * sk_kernel_new), loads the default skills, and pushes the module. */
SK_HIDDEN int klua_open_module(struct lua_State *L, sk_status (*make)(sk_kernel **));
/* For lua_df.c, from a function whose upvalue 1 is the binding:
 * the kernel (raising if it is closed or if called from a stream
 * function), with L marked as the running thread until klua_leave. */
SK_HIDDEN sk_kernel *klua_enter(struct lua_State *L, struct lua_State **prev);
/* klua_enter for skein.<what> (named in its errors). */
SK_HIDDEN sk_kernel *klua_enter_as(struct lua_State *L, const char *what,
                                   struct lua_State **prev);
SK_HIDDEN void klua_leave(struct lua_State *L, struct lua_State *prev);
/* Pushes e as a skein error table (e borrowed). */
SK_HIDDEN void klua_push_err(struct lua_State *L, const sk_err *e);
/* lua_df.c: with [binding, module] on top of L, adds module.df and the
 * skein.DataFrame metatable, their functions closing over the binding. */
SK_HIDDEN void klua_open_df(struct lua_State *L);
/* lua_memory.c: the same for module.memory (the text memory). */
SK_HIDDEN void klua_open_memory(struct lua_State *L);

#endif /* SKEIN_KLUA_H */
