/*
 * manual.c -- the manual page and the shell completions, made from the
 * tables main.c keeps (the commands, their help texts, the options), so
 * that they say what `skein help` says and cannot drift from it.  The
 * build runs `skein help --man` and `skein completion bash|zsh` and
 * installs what they print.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* ---- the manual page ------------------------------------------------------ */

/* text as the lines of a roff no-fill block: backslashes escaped, a line
 * that starts with '.' or '\'' protected. */
static void roff_block(const char *text)
{
    fputs(".nf\n", stdout);
    int bol = 1;
    for (const char *p = text; *p; p++) {
        if (bol && (*p == '.' || *p == '\''))
            fputs("\\&", stdout);
        if (*p == '\\')
            fputs("\\e", stdout);
        else if (*p == '-' && p > text && p[-1] == '-')
            fputs("\\-", stdout); /* "--option" stays two hyphens */
        else
            fputc(*p, stdout);
        bol = *p == '\n';
    }
    if (!bol)
        fputc('\n', stdout);
    fputs(".fi\n", stdout);
}

int cli_manual(const char *const *commands, cli_usage_fn usage, const char *summary)
{
    printf(".\\\" The manual page of skein, made by `skein help --man` from its help\n"
           ".\\\" texts.  Do not edit: change the help in runtime/cli/main.c.\n"
           ".TH SKEIN 1 \"\" \"skein %s\" \"User Commands\"\n"
           ".SH NAME\n"
           "skein \\- run programs whose steps are prompts\n"
           ".SH SYNOPSIS\n"
           ".B skein\n"
           "[\\fIoptions\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR...]\n"
           ".SH DESCRIPTION\n"
           "skein is a runtime for programs whose steps are prompts, in the spirit of\n"
           "Semantic Kernel: functions (prompt templates run on a model, or Lua and C\n"
           "code) grouped in skills, run from the command line, from Lua and from C.\n"
           "Each command's help follows; the README is the full manual.\n",
           sk_version());
    roff_block(summary);
    fputs(".SH COMMANDS\n", stdout);
    for (size_t i = 0; commands[i]; i++) {
        const char *text = usage(commands[i]);
        if (!text)
            continue;
        printf(".SS %s\n", commands[i]);
        roff_block(text);
    }
    fputs(".SH FILES\n"
          ".TP\n.I ~/.config/skein/config.json\n"
          "the config file ($SKEIN_CONFIG, $XDG_CONFIG_HOME/skein/config.json)\n"
          ".TP\n.I ~/.local/share/skein/history.db\n"
          "the call history ($SKEIN_HISTORY, $XDG_DATA_HOME/skein/history.db)\n"
          ".TP\n.I ~/.cache/skein/cache.db\n"
          "the response cache ($SKEIN_CACHE, $XDG_CACHE_HOME/skein/cache.db)\n"
          ".SH SEE ALSO\n"
          ".BR lua (1),\n"
          ".BR sqlite3 (1);\n"
          "the README of skein, its manual in full.\n",
          stdout);
    return EXIT_OK;
}

/* ---- completions ------------------------------------------------------------- */

/* The one-line description of command in the summary ("  invoke Skill.Fn
 * run a function ..."): into buf, quotes dropped. */
static const char *describe(const char *summary, const char *command, char *buf, size_t n)
{
    buf[0] = '\0';
    size_t cl = strlen(command);
    for (const char *line = summary; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        if (strncmp(line, "  ", 2) != 0 || strncmp(line + 2, command, cl) != 0 ||
            (line[2 + cl] != ' ' && line[2 + cl] != '\n'))
            continue;
        const char *p = line + 2 + cl;
        /* past the arguments: the gap of two or more spaces */
        const char *gap = strstr(p, "  ");
        const char *eol = strchr(p, '\n');
        if (!gap || (eol && gap > eol))
            return buf;
        while (*gap == ' ')
            gap++;
        size_t o = 0;
        for (; *gap && *gap != '\n' && o + 1 < n; gap++)
            if (*gap != '\'' && *gap != '"' && *gap != '`' && *gap != ':' && *gap != '[' &&
                *gap != ']')
                buf[o++] = *gap;
        buf[o] = '\0';
        return buf;
    }
    return buf;
}

static void words(const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        printf("%s%s", i ? " " : "", list[i]);
}

static int is_value_option(const char *const *value_options, const char *opt)
{
    for (size_t i = 0; value_options[i]; i++)
        if (strcmp(value_options[i], opt) == 0)
            return 1;
    return 0;
}

static const char BASH_BODY[] =
    "    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}\n"
    "    local bin=${COMP_WORDS[0]} i cmd= args=0\n"
    "    local -a skills=()\n"
    "    # the command, and the --skills folders the line gives\n"
    "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
    "        local w=${COMP_WORDS[i]}\n"
    "        if [[ \" $value_options \" == *\" $w \"* ]]; then\n"
    "            [[ $w == --skills ]] && skills+=(--skills \"${COMP_WORDS[i+1]}\")\n"
    "            ((i++))\n"
    "        elif [[ $w != -* ]]; then\n"
    "            if [[ -z $cmd ]]; then cmd=$w; else ((args++)); fi\n"
    "        fi\n"
    "    done\n"
    "    case $prev in\n"
    "        --skills) COMPREPLY=($(compgen -d -- \"$cur\")); return ;;\n"
    "        --model|-m)\n"
    "            COMPREPLY=($(compgen -W \"$(\"$bin\" models 2>/dev/null |\n"
    "                awk '/^NAME /{t=1; next} /^$/{t=0} t{print $1}')\" -- \"$cur\"))\n"
    "            return ;;\n"
    "        --reviewer|--check|--function)\n"
    "            COMPREPLY=($(compgen -W \"$(_skein_functions)\" -- \"$cur\")); return ;;\n"
    "        --signal)\n"
    "            COMPREPLY=($(compgen -W \"logprob agreement entropy self_check verbalized\" -- \"$cur\"))\n"
    "            return ;;\n"
    "    esac\n"
    "    if [[ \" $value_options \" == *\" $prev \"* ]]; then\n"
    "        COMPREPLY=($(compgen -f -- \"$cur\")); return\n"
    "    fi\n"
    "    if [[ $cur == -* ]]; then\n"
    "        COMPREPLY=($(compgen -W \"$options\" -- \"$cur\")); return\n"
    "    fi\n"
    "    if [[ -z $cmd ]]; then\n"
    "        COMPREPLY=($(compgen -W \"$commands\" -- \"$cur\")); return\n"
    "    fi\n"
    "    case $cmd in\n"
    "        invoke|eval|calibrate)\n"
    "            ((args == 0)) && COMPREPLY=($(compgen -W \"$(_skein_functions)\" -- \"$cur\")) ;;\n"
    "        help) ((args == 0)) && COMPREPLY=($(compgen -W \"$commands\" -- \"$cur\")) ;;\n"
    "        logs) ((args == 0)) && COMPREPLY=($(compgen -W \"list path status on off\" -- \"$cur\")) ;;\n"
    "        cache) ((args == 0)) && COMPREPLY=($(compgen -W \"clear\" -- \"$cur\")) ;;\n"
    "        completion) ((args == 0)) && COMPREPLY=($(compgen -W \"bash zsh\" -- \"$cur\")) ;;\n"
    "        render|run|run-plan|df) COMPREPLY=($(compgen -f -- \"$cur\")) ;;\n"
    "    esac\n"
    "}\n"
    "# the functions skein loads, with the --skills folders of the line\n"
    "_skein_functions()\n"
    "{\n"
    "    \"$bin\" \"${skills[@]}\" skills 2>/dev/null |\n"
    "        awk '/^[A-Za-z0-9_]+\\.[A-Za-z0-9_]+ / {print $1}'\n"
    "}\n"
    "complete -F _skein skein\n";

static int completion_bash(const char *const *commands, const char *const *options,
                           const char *const *value_options)
{
    printf("# bash completion for skein, made by `skein completion bash` from its\n"
           "# tables of commands and options.  Load it with\n"
           "#   source <(skein completion bash)\n"
           "# or install it as share/bash-completion/completions/skein.\n"
           "_skein()\n{\n    local commands=\"");
    words(commands);
    fputs("\"\n    local options=\"", stdout);
    words(options);
    fputs("\"\n    local value_options=\"", stdout);
    words(value_options);
    fputs("\"\n", stdout);
    fputs(BASH_BODY, stdout);
    return EXIT_OK;
}

static int completion_zsh(const char *const *commands, const char *const *options,
                          const char *const *value_options, const char *summary)
{
    char desc[256];
    printf("#compdef skein\n"
           "# zsh completion for skein, made by `skein completion zsh` from its tables\n"
           "# of commands and options.  Install it as _skein in a folder of $fpath\n"
           "# (share/zsh/site-functions), or load it with\n"
           "#   source <(skein completion zsh)\n"
           "# $bin and $skills come from _skein, which calls these\n"
           "_skein_functions() {\n"
           "  local -a fns\n"
           "  fns=(${(f)\"$($bin $skills skills 2>/dev/null |"
           " awk '/^[A-Za-z0-9_]+\\.[A-Za-z0-9_]+ / {print $1}')\"})\n"
           "  compadd -a fns\n"
           "}\n"
           "_skein_models() {\n"
           "  local -a names\n"
           "  names=(${(f)\"$($bin models 2>/dev/null |"
           " awk '/^NAME /{t=1; next} /^$/{t=0} t{print $1}')\"})\n"
           "  compadd -a names\n"
           "}\n"
           "_skein() {\n"
           "  local curcontext=$curcontext state line bin=$words[1] i\n"
           "  local -a commands skills\n"
           "  # the --skills folders the line gives, before _arguments shifts words\n"
           "  for ((i = 2; i < CURRENT; i++)); do\n"
           "    [[ $words[i] == --skills ]] && skills+=(--skills $words[i+1])\n"
           "  done\n"
           "  commands=(\n");
    for (size_t i = 0; commands[i]; i++)
        printf("    '%s:%s'\n", commands[i], describe(summary, commands[i], desc, sizeof desc));
    printf("  )\n"
           "  _arguments -C \\\n");
    for (size_t i = 0; options[i]; i++) {
        const char *o = options[i];
        if (strcmp(o, "--model") == 0 || strcmp(o, "-m") == 0)
            printf("    '%s[the model]:model:_skein_models' \\\n", o);
        else if (strcmp(o, "--skills") == 0)
            printf("    '*%s[a folder of skills]:folder:_files -/' \\\n", o);
        else if (strcmp(o, "--reviewer") == 0 || strcmp(o, "--check") == 0 ||
                 strcmp(o, "--function") == 0)
            printf("    '%s[a function]:function:_skein_functions' \\\n", o);
        else if (is_value_option(value_options, o))
            printf("    '*%s[]:value:_files' \\\n", o);
        else
            printf("    '*%s[]' \\\n", o);
    }
    printf("    '1:command:->command' \\\n"
           "    '*::argument:->argument'\n"
           "  case $state in\n"
           "    command) _describe -t commands 'skein command' commands ;;\n"
           "    argument)\n"
           "      case $line[1] in\n"
           "        invoke|eval|calibrate) (( CURRENT == 2 )) && _skein_functions ;;\n"
           "        help) (( CURRENT == 2 )) && _describe -t commands 'skein command' commands ;;\n"
           "        logs) (( CURRENT == 2 )) && compadd list path status on off ;;\n"
           "        cache) (( CURRENT == 2 )) && compadd clear ;;\n"
           "        completion) (( CURRENT == 2 )) && compadd bash zsh ;;\n"
           "        render|run|run-plan|df) _files ;;\n"
           "      esac ;;\n"
           "  esac\n"
           "}\n"
           "if [[ $zsh_eval_context[-1] == loadautofunc ]]; then\n"
           "  _skein \"$@\"\n"
           "else\n"
           "  compdef _skein skein\n"
           "fi\n");
    return EXIT_OK;
}

int cli_completion(const char *shell, const char *const *commands,
                   const char *const *options, const char *const *value_options,
                   const char *summary)
{
    if (!shell)
        return cli_usage("completion: which shell? (bash or zsh)");
    if (strcmp(shell, "bash") == 0)
        return completion_bash(commands, options, value_options);
    if (strcmp(shell, "zsh") == 0)
        return completion_zsh(commands, options, value_options, summary);
    return cli_usage("completion: no completion for '%s' (bash or zsh)", shell);
}
