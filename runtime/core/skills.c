/*
 * skills.c -- loading skill folders from disk.
 *
 * A skills directory holds skill folders; a skill folder holds Semantic
 * Kernel function folders (<Fn>/skprompt.txt, optional <Fn>/config.json),
 * YAML prompt functions (*.yaml, *.yml) and/or a native skill.lua, as
 * Semantic Kernel's plugin folders do.  Entries are visited in byte order of their
 * names so that a load is the same on every machine, and hidden entries
 * are skipped.  Registration itself (parsing, replacing by name) belongs
 * to the registry: this file only finds and reads files.
 *
 * One bad plugin fails only itself, as in Semantic Kernel: a function (or
 * a skill.lua) that does not load is skipped, noticed on stderr and kept
 * in the kernel's list of problems, and the load goes on.  Only running
 * out of memory, or a folder the caller named that cannot be read, stops
 * a load.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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
#define PROBLEMS_MAX 1000

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

/* ---- problems ------------------------------------------------------------ */

typedef struct problem {
    char *path, *message, *what;
    int line, col;
    sk_status code;
} problem;

typedef struct problems {
    problem *v;
    size_t n, cap;
} problems;

static problems *problem_list(const sk_kernel *k)
{
    return *kern_problems_slot((sk_kernel *)k);
}

size_t sk_kernel_skill_problem_count(const sk_kernel *k)
{
    const problems *ps = k ? problem_list(k) : NULL;
    return ps ? ps->n : 0;
}

sk_status sk_kernel_skill_problem(const sk_kernel *k, size_t i,
                                  sk_skill_problem *out)
{
    const problems *ps = k ? problem_list(k) : NULL;
    if (!out || !ps || i >= ps->n)
        return SK_USAGE;
    const problem *p = &ps->v[i];
    out->path = p->path;
    out->line = p->line;
    out->col = p->col;
    out->code = p->code;
    out->message = p->message;
    out->what = p->what;
    return SK_OK;
}

void sk_kernel_clear_skill_problems(sk_kernel *k)
{
    if (!k)
        return;
    void **slot = kern_problems_slot(k);
    problems *ps = *slot;
    for (size_t i = 0; ps && i < ps->n; i++) {
        free(ps->v[i].path);
        free(ps->v[i].message);
        free(ps->v[i].what);
    }
    if (ps)
        free(ps->v);
    free(ps);
    *slot = NULL;
}

const char *skills_problem_for(const sk_kernel *k, const char *name,
                               sk_status *code)
{
    const problems *ps = problem_list(k);
    const char *dot = strchr(name, '.');
    size_t skill_len = dot ? (size_t)(dot - name) : 0;
    for (size_t i = 0; ps && i < ps->n; i++) {
        const char *w = ps->v[i].what;
        if (strcasecmp(w, name) == 0 ||
            (!strchr(w, '.') && skill_len && strlen(w) == skill_len &&
             strncasecmp(w, name, skill_len) == 0)) {
            *code = ps->v[i].code;
            return ps->v[i].message;
        }
    }
    return NULL;
}

/* "123:" at s: the number, and s moved past the colon; 0 when s does not
 * start that way. */
static int read_pos(const char **s)
{
    const char *p = *s;
    int n = 0;
    while (*p >= '0' && *p <= '9' && n < 10000000)
        n = n * 10 + (*p++ - '0');
    if (p == *s || *p != ':')
        return 0;
    *s = p + 1;
    return n;
}

/* Turns the kernel's error (what a file failed with) into a problem:
 * noticed on stderr, kept in the kernel's list, and the error cleared so
 * the load goes on.  `files` are the files the error can name (its
 * message starts "file:line:col: " or "file:line: " when it has a
 * position); `what` is what was skipped.  SK_NOMEM is not a problem of a
 * plugin: it is returned, as is a failure to record the problem. */
static sk_status skip(sk_kernel *k, const char *what, const char *const *files,
                      size_t n_files)
{
    sk_status code = sk_errcode(k);
    if (code == SK_NOMEM || code == SK_OK)
        return code == SK_OK ? SK_OK : SK_NOMEM;
    const char *msg = sk_errmsg(k);
    const char *path = files[0];
    int line = 0, col = 0;
    for (size_t i = 0; i < n_files; i++) {
        size_t len = strlen(files[i]);
        if (strncmp(msg, files[i], len) == 0 && msg[len] == ':') {
            const char *p = msg + len + 1;
            path = files[i];
            if ((line = read_pos(&p)) > 0)
                col = read_pos(&p);
            break;
        }
    }
    int named = strncmp(msg, path, strlen(path)) == 0;
    char *message = named ? sk_strdup(msg) : sk_asprintf("%s: %s", path, msg);
    if (!message)
        return kern_fail(k, NULL);
    kern_notice(k, "warning: %s; skipped %s", message, what);
    void **slot = kern_problems_slot(k);
    problems *ps = *slot;
    if (!ps && !(ps = *slot = sk_calloc(1, sizeof *ps))) {
        free(message);
        return kern_fail(k, NULL);
    }
    if (ps->n >= PROBLEMS_MAX) {
        free(message);
        kern_ok(k);
        return SK_OK;
    }
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 8;
        problem *grown = sk_realloc(ps->v, cap * sizeof *grown);
        if (!grown) {
            free(message);
            return kern_fail(k, NULL);
        }
        ps->v = grown;
        ps->cap = cap;
    }
    problem *p = &ps->v[ps->n];
    p->path = sk_strdup(path);
    p->what = sk_strdup(what);
    p->message = message;
    if (!p->path || !p->what) {
        free(p->path);
        free(p->what);
        free(message);
        return kern_fail(k, NULL);
    }
    p->line = line;
    p->col = col;
    p->code = code;
    ps->n++;
    kern_ok(k);
    return SK_OK;
}

/* A problem of one of our own making (a name that cannot be written). */
static sk_status skip_because(sk_kernel *k, const char *what, const char *path,
                              sk_status code, const char *why)
{
    kern_failf(k, code, "%s: %s", path, why);
    return skip(k, what, &path, 1);
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

/* The functions one skill folder has defined so far, with the file that
 * defined each: two of one name in one folder are a mistake (SK .NET
 * refuses such a plugin), not an override. */
typedef struct seen {
    char **names, **paths;
    size_t n, cap;
} seen;

static void seen_free(seen *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->names[i]);
        free(s->paths[i]);
    }
    free(s->names);
    free(s->paths);
}

static const char *seen_find(const seen *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcasecmp(s->names[i], name) == 0)
            return s->paths[i];
    return NULL;
}

static sk_status seen_add(sk_kernel *k, seen *s, const char *name, const char *path)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        char **n = sk_realloc(s->names, cap * sizeof *n);
        if (n)
            s->names = n;
        char **p = n ? sk_realloc(s->paths, cap * sizeof *p) : NULL;
        if (!n || !p)
            return kern_fail(k, NULL);
        s->paths = p;
        s->cap = cap;
    }
    char *nm = sk_strdup(name), *pt = sk_strdup(path);
    if (!nm || !pt) {
        free(nm);
        free(pt);
        return kern_fail(k, NULL);
    }
    s->names[s->n] = nm;
    s->paths[s->n++] = pt;
    return SK_OK;
}

/* Registers the prompt function in fn_dir if it has a skprompt.txt.
 * *loaded counts it when it loaded; a failure is a problem (skip).
 * Borrows every argument; SK_OK or SK_NOMEM. */
static sk_status load_prompt_function(sk_kernel *k, const char *skill,
                                      const char *fn, const char *fn_dir,
                                      seen *defined, int *loaded)
{
    char *tpl_path = sk_asprintf("%s/skprompt.txt", fn_dir);
    char *cfg_path = sk_asprintf("%s/config.json", fn_dir);
    char *what = sk_asprintf("%s.%s", skill, fn);
    char *tpl = NULL, *cfg = NULL, *taken = NULL;
    size_t tpl_len = 0, cfg_len = 0;
    sk_status rc = SK_OK;
    if (!tpl_path || !cfg_path || !what) {
        rc = kern_fail(k, NULL);
        goto done;
    }
    if (!is_file(tpl_path))
        goto done; /* not a function folder */
    /* a name taken in this folder: the function is still read and
     * checked, so that what else is wrong with it is what is reported */
    const char *first = seen_find(defined, fn);
    if (first && !(taken = sk_asprintf("%s: %s is already defined in this "
                                       "skill, by %s", fn_dir, what, first)))
        rc = kern_fail(k, NULL);
    if (rc == SK_OK)
        rc = read_skill_file(k, tpl_path, PROMPT_MAX, &tpl, &tpl_len);
    if (rc == SK_OK && is_file(cfg_path))
        rc = read_skill_file(k, cfg_path, CONFIG_MAX, &cfg, &cfg_len);
    if (rc == SK_OK) {
        prompt_src src = {.skill = skill, .name = fn, .tpl = tpl,
                          .tpl_len = tpl_len, .tpl_origin = tpl_path,
                          .cfg = cfg, .cfg_len = cfg_len,
                          .cfg_origin = cfg ? cfg_path : NULL, .path = fn_dir,
                          .taken = taken};
        rc = reg_add_prompt(k, &src);
    }
    if (rc == SK_OK)
        rc = seen_add(k, defined, fn, fn_dir);
    if (rc == SK_OK) {
        (*loaded)++;
    } else if (rc != SK_NOMEM) {
        const char *files[] = {cfg_path, tpl_path, fn_dir};
        rc = skip(k, what, files, 3);
    }
done:
    free(taken);
    free(tpl);
    free(cfg);
    free(tpl_path);
    free(cfg_path);
    free(what);
    return rc;
}

/* Whether name is a YAML prompt's file name (*.yaml, *.yml). */
static int is_yaml_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && dot != name &&
           (strcasecmp(dot, ".yaml") == 0 || strcasecmp(dot, ".yml") == 0);
}

/* Registers the YAML prompt function in file `path`, named by its `name`
 * (else the file's name without its extension).  *loaded counts it; a
 * failure is a problem.  Borrows every argument; SK_OK or SK_NOMEM. */
static sk_status load_yaml_function(sk_kernel *k, const char *skill,
                                    const char *file, const char *path,
                                    seen *defined, int *loaded)
{
    char *stem = sk_strndup(file, (size_t)(strrchr(file, '.') - file));
    char *text = NULL, *msg = NULL, *what = NULL, *taken = NULL;
    size_t len = 0;
    yml_prompt *y = NULL;
    if (!stem)
        return kern_fail(k, NULL);
    sk_status rc = read_skill_file(k, path, PROMPT_MAX, &text, &len);
    if (rc == SK_OK) {
        rc = yml_prompt_parse(text, len, path, &y, &msg);
        if (rc != SK_OK && rc != SK_NOMEM)
            kern_failf(k, rc, "%s", msg ? msg : sk_strerror(rc));
        else if (rc == SK_NOMEM)
            kern_fail(k, NULL);
    }
    const char *name = y && y->name ? y->name : stem;
    if (!(what = sk_asprintf("%s.%s", skill, name)))
        rc = kern_fail(k, NULL);
    if (rc == SK_OK && !valid_name(name)) {
        if (y->name)
            rc = kern_failf(k, SK_CONFIG, "%s:%d:%d: function name '%s' may "
                            "only hold letters, digits and '_'",
                            path, y->name_line, y->name_col, name);
        else
            rc = kern_failf(k, SK_CONFIG, "%s: no 'name', and the file's name "
                            "'%s' is not a function name (letters, digits "
                            "and '_')", path, stem);
    }
    const char *first = rc == SK_OK ? seen_find(defined, name) : NULL;
    if (first && y->name)
        taken = sk_asprintf("%s:%d:%d: %s is already defined in this skill, "
                            "by %s", path, y->name_line, y->name_col, what, first);
    else if (first)
        taken = sk_asprintf("%s: %s is already defined in this skill, by %s",
                            path, what, first);
    if (first && !taken)
        rc = kern_fail(k, NULL);
    if (rc == SK_OK) {
        cfg_srcmap map = {y->pos, y->n_pos};
        prompt_src src = {.skill = skill, .name = name, .tpl = y->tpl,
                          .tpl_len = y->tpl_len, .tpl_origin = path,
                          .tpl_at = &y->tpl_at, .cfg = y->config,
                          .cfg_len = y->config_len, .cfg_origin = path,
                          .cfg_map = &map, .path = path, .taken = taken};
        rc = reg_add_prompt(k, &src);
    }
    if (rc == SK_OK)
        rc = seen_add(k, defined, name, path);
    if (rc == SK_OK)
        (*loaded)++;
    else if (rc != SK_NOMEM || what)
        rc = skip(k, what ? what : stem, &path, 1);
    yml_prompt_free(y);
    free(taken);
    free(msg);
    free(text);
    free(stem);
    free(what);
    return rc;
}

/* Runs the native skill loaders (skill.lua) of the skill folder dir.  A
 * failing one skips the skill's native functions.  SK_OK or SK_NOMEM. */
static sk_status load_native(sk_kernel *k, const char *skill, const char *dir,
                             int *loaded)
{
    const char *file;
    skill_loader_fn load;
    sk_status rc = SK_OK;
    for (size_t i = 0; rc == SK_OK && kern_skill_loaders(k, &file, &load, i); i++) {
        char *path = sk_asprintf("%s/%s", dir, file);
        if (!path)
            return kern_fail(k, NULL);
        if (is_file(path)) {
            rc = load(k, skill, path);
            if (rc == SK_OK) {
                (*loaded)++;
            } else {
                const char *files[] = {path, dir};
                rc = skip(k, skill, files, 2);
            }
        }
        free(path);
    }
    return rc;
}

/* Loads the skill folder `dir` as skill `skill`: its function folders in
 * name order, then skill.lua, so native code can replace a prompt
 * function of the same name.  *loaded counts what was registered; what
 * failed is a problem.  Borrows both strings; SK_OK or SK_NOMEM. */
static sk_status load_skill_dir(sk_kernel *k, const char *skill,
                                const char *dir, int *loaded)
{
    struct dirent **list = NULL;
    int n = scandir(dir, &list, visible, by_name);
    if (n < 0) {
        kern_failf(k, SK_IO, "%s: %s", dir, strerror(errno));
        return skip(k, skill, &dir, 1);
    }
    sk_status rc = SK_OK;
    seen defined = {0};
    for (int i = 0; rc == SK_OK && i < n; i++) {
        const char *name = list[i]->d_name;
        char *fn_dir = sk_asprintf("%s/%s", dir, name);
        if (!fn_dir) {
            rc = kern_fail(k, NULL);
            break;
        }
        if (is_dir(fn_dir)) {
            if (valid_name(name)) {
                rc = load_prompt_function(k, skill, name, fn_dir, &defined, loaded);
            } else {
                char *probe = sk_asprintf("%s/skprompt.txt", fn_dir);
                char *what = sk_asprintf("%s.%s", skill, name);
                if (!probe || !what)
                    rc = kern_fail(k, NULL);
                else if (is_file(probe))
                    rc = skip_because(k, what, fn_dir, SK_CONFIG,
                                      "a function name may only hold "
                                      "letters, digits and '_'");
                free(probe);
                free(what);
            }
        } else if (is_yaml_name(name) && is_file(fn_dir)) {
            rc = load_yaml_function(k, skill, name, fn_dir, &defined, loaded);
        }
        free(fn_dir);
    }
    free_list(list, n);
    seen_free(&defined);
    if (rc == SK_OK)
        rc = load_native(k, skill, dir, loaded);
    return rc;
}

/* Whether the folder holds anything a skill is made of: a function folder
 * (<Fn>/skprompt.txt), a YAML prompt or a native skill file.  1 with
 * *example (when asked for; caller frees) the first such entry, 0 when
 * none, -1 when memory ran out. */
static int find_function(sk_kernel *k, const char *dir, char **example)
{
    struct dirent **list = NULL;
    int n = scandir(dir, &list, visible, by_name);
    int found = 0;
    const char *what = NULL;
    for (int i = 0; !found && i < n; i++) {
        const char *name = list[i]->d_name;
        char *p = sk_asprintf("%s/%s/skprompt.txt", dir, name);
        char *q = sk_asprintf("%s/%s", dir, name);
        if (!p || !q)
            found = -1;
        else if (is_file(p) || (is_yaml_name(name) && is_file(q)))
            found = 1;
        if (found == 1 && example)
            what = name;
        if (found == 1 && example && !(*example = is_file(p)
                                           ? sk_asprintf("%s/skprompt.txt", what)
                                           : sk_strdup(what)))
            found = -1;
        free(p);
        free(q);
    }
    free_list(list, n < 0 ? 0 : n);
    const char *file;
    skill_loader_fn load;
    for (size_t i = 0; !found && kern_skill_loaders(k, &file, &load, i); i++) {
        char *p = sk_asprintf("%s/%s", dir, file);
        if (!p)
            found = -1;
        else if (is_file(p))
            found = 1;
        if (found == 1 && example && !(*example = sk_strdup(file)))
            found = -1;
        free(p);
    }
    return found;
}

/* Whether a subfolder of dir is a skill folder: 1 with *example its
 * first function ("Skill/Fn/skprompt.txt"), 0, or -1 out of memory. */
static int find_skill_folder(sk_kernel *k, const char *dir, char **example)
{
    struct dirent **list = NULL;
    int n = scandir(dir, &list, visible, by_name);
    int found = 0;
    for (int i = 0; !found && i < n; i++) {
        char *sub = sk_asprintf("%s/%s", dir, list[i]->d_name);
        char *inner = NULL;
        if (!sub)
            found = -1;
        else if (is_dir(sub) && valid_name(list[i]->d_name))
            found = find_function(k, sub, &inner);
        if (found == 1 && !(*example = sk_asprintf("%s/%s", list[i]->d_name, inner)))
            found = -1;
        free(inner);
        free(sub);
    }
    free_list(list, n < 0 ? 0 : n);
    return found;
}

static char *skill_name_of(const char *dir);

/* Loads every skill folder in dir (its subfolders). */
static sk_status load_skill_folders(sk_kernel *k, const char *dir)
{
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
            int loaded = 0, holds = 0;
            if (valid_name(name))
                rc = load_skill_dir(k, name, path, &loaded);
            else if ((holds = find_function(k, path, NULL)) < 0)
                rc = kern_fail(k, NULL);
            else if (holds)
                rc = skip_because(k, name, path, SK_CONFIG,
                                  "a skill name may only hold letters, "
                                  "digits and '_'");
        }
        free(path);
    }
    free_list(list, n);
    return rc;
}

/* Loads dir as one skill named after it. */
static sk_status load_as_skill(sk_kernel *k, const char *dir)
{
    char *name = skill_name_of(dir);
    if (!name)
        return kern_fail(k, NULL);
    int loaded = 0;
    sk_status rc = valid_name(name)
                       ? load_skill_dir(k, name, dir, &loaded)
                       : skip_because(k, *name ? name : dir, dir, SK_CONFIG,
                                      "a skill folder's name may only hold "
                                      "letters, digits and '_'");
    free(name);
    return rc;
}

/* dir is a folder of skill folders, as SK Python's parent_directory is;
 * or, as SK .NET users pass it, a skill (plugin) folder itself, holding
 * function folders, YAML prompts or a skill.lua.  A folder that is both
 * is loaded both ways, and a notice says so. */
sk_status sk_kernel_load_skills(sk_kernel *k, const char *dir)
{
    if (!k)
        return SK_USAGE;
    if (!dir)
        return kern_failf(k, SK_USAGE, "load_skills: no directory given");
    if (!is_dir(dir)) {
        struct stat st;
        int e = stat(dir, &st) != 0 ? errno : ENOTDIR;
        return kern_failf(k, SK_IO, "%s: %s", dir, strerror(e));
    }
    char *own = NULL, *below = NULL;
    int is_skill = find_function(k, dir, &own);
    int has_skills = is_skill > 0 ? find_skill_folder(k, dir, &below) : 0;
    sk_status rc = SK_OK;
    if (is_skill < 0 || has_skills < 0)
        rc = kern_fail(k, NULL);
    if (rc == SK_OK && has_skills) {
        char *name = skill_name_of(dir);
        kern_notice(k, "%s holds functions of its own (%s) and skill folders "
                       "(%s): loading both, it as the skill %s and the skills "
                       "in it", dir, own, below, name ? name : dir);
        free(name);
    }
    if (rc == SK_OK && (!is_skill || has_skills))
        rc = load_skill_folders(k, dir);
    if (rc == SK_OK && is_skill)
        rc = load_as_skill(k, dir);
    free(own);
    free(below);
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
    size_t before = sk_kernel_skill_problem_count(k);
    if (!valid_name(name))
        rc = kern_failf(k, SK_USAGE,
                        "%s: a skill name may only hold letters, digits "
                        "and '_'", skill_dir);
    else
        rc = load_skill_dir(k, name, skill_dir, &loaded);
    sk_skill_problem first;
    if (rc == SK_OK && !loaded &&
        sk_kernel_skill_problem(k, before, &first) == SK_OK)
        rc = kern_failf(k, first.code, "%s", first.message);
    else if (rc == SK_OK && !loaded)
        rc = kern_failf(k, SK_NOT_FOUND,
                        "%s: no function folder with a skprompt.txt, no YAML "
                        "prompt and no skill.lua", skill_dir);
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

/* Loads one folder of the search path; one that cannot be read is a
 * problem, not a failure of every command. */
static sk_status load_path_entry(sk_kernel *k, const char *dir)
{
    sk_status rc = sk_kernel_load_skills(k, dir);
    if (rc == SK_OK || rc == SK_NOMEM)
        return rc;
    return skip(k, dir, &dir, 1);
}

sk_status sk_kernel_load_default_skills(sk_kernel *k)
{
    if (!k)
        return SK_USAGE;
    const char *builtin = builtin_dir();
    sk_status rc = SK_OK;
    if (is_dir(builtin))
        rc = load_path_entry(k, builtin);
    if (rc == SK_OK && is_dir("skills") && !same_dir("skills", builtin))
        rc = load_path_entry(k, "skills");
    const char *path = getenv("SKEIN_SKILLS_PATH");
    while (rc == SK_OK && path && *path) {
        const char *colon = strchr(path, ':');
        size_t len = colon ? (size_t)(colon - path) : strlen(path);
        if (len) {
            char *dir = sk_strndup(path, len);
            if (!dir)
                return kern_fail(k, NULL);
            if (is_dir(dir))
                rc = load_path_entry(k, dir);
            free(dir);
        }
        path = colon ? colon + 1 : NULL;
    }
    if (rc == SK_OK)
        kern_ok(k);
    return rc;
}
