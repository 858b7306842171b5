/*
 * skills.c -- loading skill folders from disk.
 *
 * A skills directory holds skill folders; a skill folder holds Semantic
 * Kernel function folders (<Fn>/skprompt.txt, optional <Fn>/config.json)
 * and/or a native skill.lua.  Entries are visited in byte order of their
 * names so that a load is the same on every machine, and hidden entries
 * are skipped.  Registration itself (parsing, replacing by name) belongs
 * to the registry: this file only finds and reads files.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/core.h"

#ifndef SKEIN_SKILLS_DIR
#define SKEIN_SKILLS_DIR "/usr/local/share/skein/skills"
#endif
#ifndef SKEIN_SOURCE_SKILLS
#define SKEIN_SOURCE_SKILLS "skills"
#endif

#define PROMPT_MAX ((size_t)16 << 20)
#define CONFIG_MAX ((size_t)1 << 20)

static int visible(const struct dirent *d) { return d->d_name[0] != '.'; }

/* Byte order, not the locale's collation that alphasort uses. */
static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static void free_list(struct dirent **list, int n)
{
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Names become "Skill.Fn" in templates, where only letters, digits and
 * '_' can be written. */
static int valid_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || *s == '_'))
            return 0;
    return 1;
}

/* Reads one file for a skill; the kernel error names the file.  *out is
 * the caller's to free. */
static sk_status read_skill_file(sk_kernel *k, const char *path, size_t max,
                                 char **out, size_t *len)
{
    sk_status rc = sk_read_file(path, max, out, len);
    if (rc == SK_IO)
        return kern_failf(k, SK_IO, "%s: %s", path, strerror(errno));
    if (rc == SK_TOO_LARGE)
        return kern_failf(k, SK_TOO_LARGE, "%s: larger than %zu bytes", path,
                          max);
    if (rc != SK_OK)
        return kern_failf(k, rc, "%s: %s", path, sk_strerror(rc));
    return SK_OK;
}

/* Registers the prompt function in fn_dir if it has a skprompt.txt.
 * *loaded is set when it did.  Borrows every argument. */
static sk_status load_prompt_function(sk_kernel *k, const char *skill,
                                      const char *fn, const char *fn_dir,
                                      int *loaded)
{
    char *tpl_path = sk_asprintf("%s/skprompt.txt", fn_dir);
    char *cfg_path = sk_asprintf("%s/config.json", fn_dir);
    char *tpl = NULL, *cfg = NULL;
    size_t tpl_len = 0, cfg_len = 0;
    sk_status rc = SK_OK;
    if (!tpl_path || !cfg_path) {
        rc = kern_fail(k, NULL);
        goto done;
    }
    if (!is_file(tpl_path))
        goto done; /* not a function folder */
    rc = read_skill_file(k, tpl_path, PROMPT_MAX, &tpl, &tpl_len);
    if (rc == SK_OK && is_file(cfg_path))
        rc = read_skill_file(k, cfg_path, CONFIG_MAX, &cfg, &cfg_len);
    if (rc == SK_OK)
        rc = reg_add_semantic(k, skill, fn, tpl, tpl_len, tpl_path, cfg,
                              cfg_len, cfg ? cfg_path : NULL, fn_dir);
    if (rc == SK_OK)
        *loaded = 1;
done:
    free(tpl);
    free(cfg);
    free(tpl_path);
    free(cfg_path);
    return rc;
}

/* Loads the skill folder `dir` as skill `skill`: its function folders in
 * name order, then skill.lua, so native code can replace a prompt
 * function of the same name.  *loaded counts what was registered.
 * Borrows both strings. */
static sk_status load_skill_dir(sk_kernel *k, const char *skill,
                                const char *dir, int *loaded)
{
    struct dirent **list = NULL;
    int n = scandir(dir, &list, visible, by_name);
    if (n < 0)
        return kern_failf(k, SK_IO, "%s: %s", dir, strerror(errno));
    sk_status rc = SK_OK;
    for (int i = 0; rc == SK_OK && i < n; i++) {
        const char *name = list[i]->d_name;
        char *fn_dir = sk_asprintf("%s/%s", dir, name);
        if (!fn_dir) {
            rc = kern_fail(k, NULL);
            break;
        }
        if (is_dir(fn_dir)) {
            int got = 0;
            if (valid_name(name)) {
                rc = load_prompt_function(k, skill, name, fn_dir, &got);
            } else {
                char *probe = sk_asprintf("%s/skprompt.txt", fn_dir);
                if (!probe)
                    rc = kern_fail(k, NULL);
                else if (is_file(probe))
                    kern_notice(k, "%s: skipped: a function name may only "
                                   "hold letters, digits and '_'", fn_dir);
                free(probe);
            }
            *loaded += got;
        }
        free(fn_dir);
    }
    free_list(list, n);
    if (rc != SK_OK)
        return rc;

    /* native skills: the files the layers above load (skill.lua) */
    const char *file;
    skill_loader_fn load;
    for (size_t i = 0; rc == SK_OK && kern_skill_loaders(k, &file, &load, i); i++) {
        char *path = sk_asprintf("%s/%s", dir, file);
        if (!path)
            return kern_fail(k, NULL);
        if (is_file(path)) {
            rc = load(k, skill, path);
            if (rc == SK_OK)
                (*loaded)++;
        }
        free(path);
    }
    return rc;
}

sk_status sk_kernel_load_skills(sk_kernel *k, const char *dir)
{
    if (!k)
        return SK_USAGE;
    if (!dir)
        return kern_failf(k, SK_USAGE, "load_skills: no directory given");
    struct dirent **list = NULL;
    int n = scandir(dir, &list, visible, by_name);
    if (n < 0)
        return kern_failf(k, SK_IO, "%s: %s", dir, strerror(errno));
    sk_status rc = SK_OK;
    for (int i = 0; rc == SK_OK && i < n; i++) {
        const char *name = list[i]->d_name;
        char *path = sk_asprintf("%s/%s", dir, name);
        if (!path) {
            rc = kern_fail(k, NULL);
            break;
        }
        if (is_dir(path)) {
            int loaded = 0;
            if (valid_name(name))
                rc = load_skill_dir(k, name, path, &loaded);
            else
                kern_notice(k, "%s: skipped: a skill name may only hold "
                               "letters, digits and '_'", path);
        }
        free(path);
    }
    free_list(list, n);
    if (rc == SK_OK)
        kern_ok(k);
    return rc;
}

/* The folder's own name, trailing slashes ignored; "." and ".." are
 * resolved to the directory they stand for.  Caller frees. */
static char *skill_name_of(const char *dir)
{
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        len--;
    size_t start = len;
    while (start > 0 && dir[start - 1] != '/')
        start--;
    char *name = sk_strndup(dir + start, len - start);
    if (!name || (strcmp(name, ".") != 0 && strcmp(name, "..") != 0))
        return name;
    free(name);
    char *real = realpath(dir, NULL);
    if (!real)
        return sk_strdup("");
    const char *slash = strrchr(real, '/');
    name = sk_strdup(slash ? slash + 1 : real);
    free(real);
    return name;
}

sk_status sk_kernel_load_skill(sk_kernel *k, const char *skill_dir)
{
    if (!k)
        return SK_USAGE;
    if (!skill_dir || !*skill_dir)
        return kern_failf(k, SK_USAGE, "load_skill: no directory given");
    struct stat st;
    if (stat(skill_dir, &st) != 0)
        return kern_failf(k, SK_IO, "%s: %s", skill_dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return kern_failf(k, SK_IO, "%s: %s", skill_dir, strerror(ENOTDIR));
    char *name = skill_name_of(skill_dir);
    if (!name)
        return kern_fail(k, NULL);
    sk_status rc;
    int loaded = 0;
    if (!valid_name(name))
        rc = kern_failf(k, SK_USAGE,
                        "%s: a skill name may only hold letters, digits "
                        "and '_'", skill_dir);
    else
        rc = load_skill_dir(k, name, skill_dir, &loaded);
    if (rc == SK_OK && !loaded)
        rc = kern_failf(k, SK_NOT_FOUND,
                        "%s: no function folder with a skprompt.txt and no "
                        "skill.lua", skill_dir);
    free(name);
    if (rc == SK_OK)
        kern_ok(k);
    return rc;
}

static int same_dir(const char *a, const char *b)
{
    struct stat sa, sb;
    return a && b && stat(a, &sa) == 0 && stat(b, &sb) == 0 &&
           sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* The built-in skills: $SKEIN_BUILTIN_SKILLS, else the source tree the
 * library was built from while it exists, else the installed copy. */
static const char *builtin_dir(void)
{
    const char *env = getenv("SKEIN_BUILTIN_SKILLS");
    if (env && *env)
        return env;
    /* The source tree's copy first: a build run from its tree must see the
     * skills beside it, not an older installed copy. */
    if (is_dir(SKEIN_SOURCE_SKILLS))
        return SKEIN_SOURCE_SKILLS;
    return SKEIN_SKILLS_DIR;
}

sk_status sk_kernel_load_default_skills(sk_kernel *k)
{
    if (!k)
        return SK_USAGE;
    const char *builtin = builtin_dir();
    sk_status rc = SK_OK;
    if (is_dir(builtin))
        rc = sk_kernel_load_skills(k, builtin);
    if (rc == SK_OK && is_dir("skills") && !same_dir("skills", builtin))
        rc = sk_kernel_load_skills(k, "skills");
    const char *path = getenv("SKEIN_SKILLS_PATH");
    while (rc == SK_OK && path && *path) {
        const char *colon = strchr(path, ':');
        size_t len = colon ? (size_t)(colon - path) : strlen(path);
        if (len) {
            char *dir = sk_strndup(path, len);
            if (!dir)
                return kern_fail(k, NULL);
            if (is_dir(dir))
                rc = sk_kernel_load_skills(k, dir);
            free(dir);
        }
        path = colon ? colon + 1 : NULL;
    }
    if (rc == SK_OK)
        kern_ok(k);
    return rc;
}
