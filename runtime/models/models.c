/*
 * models.c -- the connector kinds this library has, registered with a
 * kernel when it is made (runtime/init.c).  The kernel itself knows none
 * of them by name: it finds a spec's kind in what was registered.
 */
#include "models/models.h"

sk_status models_register(sk_kernel *k)
{
    static const conn_kind *const kinds[] = {
        &conn_kind_openai, &conn_kind_openai_flavor, &conn_kind_ollama,
        &conn_kind_anthropic, &conn_kind_scripted, &conn_kind_azure,
        &conn_kind_openai_embed, &conn_kind_openai_flavor_embed,
        &conn_kind_ollama_embed,
    };
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
        sk_status rc = kern_add_conn_kind(k, kinds[i]);
        if (rc != SK_OK)
            return rc;
    }
    return SK_OK;
}
