/*
 * main.c -- the `skein` command-line tool.
 *
 * Uses only the public API (skein.h) plus Lua's own headers for
 * `skein run`, so anything the tool does an embedder can do too.
 *
 *   skein [options] invoke Skill.Fn [--var k=v]... [--input TEXT]
 *   skein [options] render FILE|- [--var k=v]... [--no-calls]
 *   skein [options] skills [--json]
 *   skein [options] run FILE.lua [ARGS...]
 *   skein help [COMMAND]
 */
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include <cjson/cJSON.h>

#include "cli.h"


typedef struct cli {
    const char *model;
    const char **skills;
    size_t n_skills;
    const char *trace;
    int quiet;
    int json_errors;
    int help;
    const char *command;
    const char **pos; /* positional arguments after the command */
    size_t n_pos;
    const char **vars; /* "name=value" */
    size_t n_vars;
    const char **options; /* --option "name=value" */
    size_t n_options;
    const char *input;
    const char *policy; /* --policy JSON for this call */
    const char *task;   /* review --task */
    const char *reviewer;
    const char *save;      /* plan --save FILE */
    const char *functions; /* plan/agent --functions a,b */
    int run_plan;          /* plan --run */
    const char *db;        /* --db FILE */
    const char *journal;   /* --journal FILE */
    const char *timeout;   /* --timeout SECONDS */
    const char *idle_timeout; /* --idle-timeout SECONDS */
    const char *out;       /* df --out FILE */
    int show_sql;          /* df --sql */
    int jsonl;             /* invoke --jsonl */
    long concurrency;      /* invoke --jsonl --concurrency N */
    int stats;             /* --stats */
    int no_cache;          /* --no-cache */
    int allow_os;          /* --allow-os */
    int dot;               /* plan --dot */
    long max_steps, max_tokens, max_ms, max_parallel;
    int stream; /* -1: when stdout is a terminal */
    int no_calls;
    int json;
    const char *data;   /* eval/calibrate --data FILE */
    const char *check;  /* --check Skill.Fn */
    const char *plot;   /* eval --plot FILE.svg */
    const char *signal; /* calibrate --signal NAME */
    double alpha, delta, test;
    int test_given;       /* --test given (distill takes 0) */
    const char *calibration; /* distill --calibration SHARE */
    const char **from;    /* distill --from FILE */
    size_t n_from;
    long seed;
    int seed_given;
    int dry_run;
    /* the conventions of llm: prompt, chat, logs */
    const char *system;       /* -s, --system */
    int cont;                 /* -c, --continue */
    const char *conversation; /* --cid, --conversation */
    long count;               /* logs -n; -1 when not given */
    const char *search;       /* logs -q, --query */
    const char *function;     /* logs --function */
    int truncate;             /* logs -t */
    int no_log, log;          /* --no-log, --log */
    int man;                  /* help --man */
    int check_skills;   /* skills --check */
    char **run_args; /* `run`: everything after the script */
    int n_run_args;
    const char *argv0;
} cli;

static const char *const COMMANDS[] = {"invoke", "render", "skills", "run",
                                       "review", "plan", "run-plan", "agent",
                                       "df", "cache", "eval", "calibrate", "distill", "models",
                                       "logs", "prompt", "chat", "completion", "help",
                                       NULL};

static const char USAGE[] =
    "usage: skein [options] COMMAND [ARGS...]\n"
    "\n"
    "Commands:\n"
    "  prompt TEXT       an ad hoc prompt (stdin, then TEXT) to the model: -s SYSTEM,\n"
    "                    -m MODEL, -c to continue the last conversation\n"
    "  chat              a conversation with the model, turn by turn (-c, --cid)\n"
    "  invoke Skill.Fn   run a function on --input or stdin, print the result\n"
    "  render FILE|-     render a prompt template, running its function calls\n"
    "  render Skill.Fn   render a function's prompt with its defaults, as invoke would\n"
    "  skills            list the functions that are loaded; --check: what did not\n"
    "                    load (file:line:col), exit 3 when anything did not\n"
    "  run FILE.lua      run a Lua script with the skein module\n"
    "  review            check a text (stdin or --input) in a fresh context\n"
    "  plan GOAL         ask the model for a plan; --run, --save, --dot\n"
    "  run-plan FILE     run a plan (steps run in parallel when they can)\n"
    "  agent GOAL        a step-by-step agent over the functions\n"
    "  df FILE.csv TEXT  transform a CSV in English (SQL on SQLite)\n"
    "  cache [clear]     show the response cache (where, entries, size), or empty it\n"
    "  eval Skill.Fn     run a function over labelled examples (--data FILE.jsonl):\n"
    "                    accuracy, signals, risk and coverage, calls, time\n"
    "  calibrate Skill.Fn  fit an uncertainty threshold with a stated error rate\n"
    "                    (--data FILE.jsonl --alpha 0.1) into its config.json\n"
    "  distill Skill.Fn  its accepted answers in traces and cassettes (--from FILE)\n"
    "                    as fine-tuning data and held-out splits (--out DIR)\n"
    "  models            the default model, the names the config file gives\n"
    "                    models (aliases), and the connector kinds\n"
    "  logs              the call history: list, search (-q), a conversation\n"
    "                    (-c, --cid); logs path|status|on|off\n"
    "  completion bash|zsh  print the shell completion script\n"
    "  help [COMMAND]    show help for a command (help --man: the manual page)\n"
    "\n"
    "Options (before or after the command):\n"
    "  -m, --model SPEC  default model: openai:MODEL[@URL], scripted:FILE.json, or\n"
    "                    a name from the config file's \"aliases\" or \"services\"\n"
    "  --skills DIR      load skills from DIR too: a folder of skill folders, or\n"
    "                    a skill folder itself (repeatable; overrides the\n"
    "                    built-in skills, ./skills and SKEIN_SKILLS_PATH)\n"
    "  --trace FILE      append one JSON line per model call to FILE\n"
    "  --db FILE         keep DataFrames in this SQLite file (default: memory)\n"
    "  --journal FILE    record every model exchange in FILE as it completes; run\n"
    "                    the same command again with it to resume: what was\n"
    "                    answered is served from it, only the rest is paid for\n"
    "  --stats           print usage on stderr at the end: calls, cache hits,\n"
    "                    tokens per model, retries, escalations, wall time\n"
    "  --no-cache        read and write no cache in this run\n"
    "  --allow-os        let Lua functions that run for a model (plan steps,\n"
    "                    agent actions, generated SQL) reach the system:\n"
    "                    os.execute, io.open, ... (refused by default)\n"
    "  --option NAME=VALUE  set a kernel option for this run (repeatable), e.g.\n"
    "                    sql_max_rows=5000000 or timeout_ms=30000\n"
    "  --no-log          record nothing in the call history in this run\n"
    "  --log             record in it even when `skein logs off` turned it off\n"
    "  --timeout SECONDS total time for one model request (default 120;\n"
    "                    SKEIN_TIMEOUT)\n"
    "  --idle-timeout SECONDS  the longest a reply may go silent once it has\n"
    "                    begun, or a streamed one before it (default 30; 0: no\n"
    "                    limit; SKEIN_IDLE_TIMEOUT)\n"
    "  --quiet           no notices on stderr\n"
    "  --json-errors     print errors as JSON, not text (the default when stderr\n"
    "                    is not a terminal)\n"
    "  -h, --help        show this help\n"
    "  --version         print the version\n"
    "\n"
    "Environment: SKEIN_MODEL, OPENAI_API_KEY, OPENAI_BASE_URL, SKEIN_SKILLS_PATH,\n"
    "SKEIN_TRACE, SKEIN_TIMEOUT, SKEIN_IDLE_TIMEOUT, SKEIN_HISTORY (the call\n"
    "history's file, or off).\n"
    "\n"
    "Exit codes:\n"
    "  0  success\n"
    "  1  other runtime error\n"
    "  2  usage error (bad option, unknown command, missing argument)\n"
    "  3  template, config or file error\n"
    "  4  model or network error (server error, timeout, bad or too large reply)\n"
    "  5  script error (a Lua script or native function failed)\n"
    "  6  not found (unknown function)\n"
    "  7  the model was uncertain\n"
    "  8  rejected by a review or blocked by a content filter\n"
    "  9  no valid plan (malformed, invalid after repair, or none possible)\n"
    " 10  an agent ran out of steps, tokens or time, or tool rounds\n"
    " 11  bad data or a failed or refused query (CSV, SQL, JSON lines)\n"
    " 12  the reply was cut by the token limit (truncated)\n";

static const char USAGE_INVOKE[] =
    "usage: skein invoke Skill.Fn [--var NAME=VALUE]... [--input TEXT]\n"
    "                    [--policy JSON] [--stream | --no-stream] [--dry-run]\n"
    "                    [--functions A,B]\n"
    "       skein invoke Skill.Fn --jsonl [--concurrency N] < in.jsonl > out.jsonl\n"
    "\n"
    "Runs a function and prints its result.  The input comes from --input,\n"
    "else from stdin when it is not a terminal (one trailing newline is\n"
    "removed).  The reply streams as it arrives when stdout is a terminal.\n"
    "--policy overlays the function's policy for this call, e.g.\n"
    "'{\"uncertainty\": {\"protocol\": true}, \"review\": \"Review.Check\"}'.\n"
    "A function whose settings carry function_choice_behavior offers the\n"
    "model tools; --functions narrows what its tool calls may reach.\n"
    "\n"
    "--dry-run: print the request as it would be sent (the URL, headers with\n"
    "keys masked, the messages after rendering, chat parsing and redaction,\n"
    "the settings and the body) as JSON, and send nothing.\n"
    "\n"
    "When the model is uncertain and stdin and stderr are terminals, skein\n"
    "prints its question, reads your answer and runs the function again\n"
    "with the answer in {{$clarification}}.  Otherwise it exits with code 7\n"
    "and the error, with the question, as JSON on stderr.\n"
    "\n"
    "--jsonl: batch mode.  Each input line is a JSON object of variables;\n"
    "each output line, in input order, is {\"result\": TEXT} or\n"
    "{\"error\": {...}}.  Up to --concurrency calls (default 16) are in\n"
    "flight at once; progress goes to stderr when it is a terminal.  The\n"
    "exit code is 0 when every line succeeded, else that of the first error.\n";

static const char USAGE_REVIEW[] =
    "usage: skein review [--input TEXT] [--task TEXT] [--var input=TEXT]\n"
    "                    [--reviewer Skill.Fn]\n"
    "\n"
    "Checks a text (--input, else stdin) in a fresh context with a review\n"
    "function (default Review.Check), told the --task it was written for.\n"
    "Prints PASS, or FAIL: and the reasons; exits 0 on PASS, 8 on FAIL.\n";

static const char USAGE_RENDER[] =
    "usage: skein render FILE|-|Skill.Fn [--var NAME=VALUE]... [--input TEXT]\n"
    "                    [--no-calls]\n"
    "\n"
    "Renders a prompt template (\"-\" reads it from stdin), running its\n"
    "{{Skill.Fn}} blocks unless --no-calls leaves them as written.  Given a\n"
    "function's name instead of a file, renders that function's prompt as\n"
    "invoke would send it: its parameters' defaults (config.json, YAML) fill\n"
    "what --var leaves unset.  No model is called for the function itself.\n";

static const char USAGE_SKILLS[] =
    "usage: skein skills [--json] [--check]\n"
    "\n"
    "Lists every loaded function: name, kind, description, parameters.\n"
    "A function or skill whose files do not load is skipped with a warning,\n"
    "and the rest load.  --check lists every such problem instead (file,\n"
    "line and column), and exits 3 when there is one, 0 when there is none.\n";

static const char USAGE_RUN[] =
    "usage: skein run FILE.lua [ARGS...]\n"
    "\n"
    "Runs a Lua 5.4 script with the standard libraries and the skein module\n"
    "(local skein = require(\"skein\")).  `arg` holds the script name at 0 and\n"
    "ARGS from 1.  An uncaught skein error exits with its kind's code.\n";

static const char USAGE_HELP[] =
    "usage: skein help [COMMAND]\n"
    "       skein help --man\n"
    "\n"
    "Shows the help of a command, or of skein.  --man prints the manual page,\n"
    "made of every command's help, as roff (what `make install` installs as\n"
    "skein(1)).\n";

static const char USAGE_COMPLETION[] =
    "usage: skein completion bash|zsh\n"
    "\n"
    "Prints the completion script for the shell: commands, options, the\n"
    "functions skein loads (with the --skills folders on the line), model\n"
    "names and files.  `make install` installs both (bash-completion and\n"
    "zsh site-functions); to load one by hand:\n"
    "  source <(skein completion bash)     # in ~/.bashrc\n"
    "  source <(skein completion zsh)      # in ~/.zshrc, after compinit\n";

static const char USAGE_PROMPT[] =
    "usage: skein prompt [TEXT] [-s SYSTEM] [-m MODEL] [-c | --cid ID]\n"
    "                    [--stream | --no-stream] [--policy JSON] [--no-log]\n"
    "\n"
    "Sends an ad hoc prompt to the model and prints the reply, streaming it\n"
    "when stdout is a terminal.  The prompt is TEXT, or what comes on stdin,\n"
    "or both: stdin, a space, then TEXT (as `llm` builds it), so\n"
    "`git diff | skein prompt 'describe these changes'` works.  -s sets a\n"
    "system prompt; -m MODEL a model spec or a name from the config file.\n"
    "\n"
    "Each prompt starts a conversation in the call history (skein logs);\n"
    "-c continues the most recent one, sending its turns again, with its\n"
    "model unless -m says otherwise; --cid ID continues that one.\n";

static const char USAGE_CHAT[] =
    "usage: skein chat [-s SYSTEM] [-m MODEL] [-c | --cid ID] [--policy JSON]\n"
    "\n"
    "A conversation with the model: each line typed is sent with the turns\n"
    "before it, and the reply printed (streamed at a terminal).  At a\n"
    "terminal lines can be edited, and up and down recall earlier ones; from a\n"
    "pipe each line is a message.  !multi starts a message of several lines\n"
    "and !end sends it (!multi WORD ... !end WORD when the text holds a line\n"
    "!end).  !exit, !quit (or exit, quit) or Ctrl-D ends it; !help shows this.\n"
    "\n"
    "The turns go to the call history as one conversation: -c continues the\n"
    "most recent conversation of prompt or chat, --cid ID that one.  The\n"
    "exit code is that of the first turn that failed, else 0.\n";

static const char USAGE_LOGS[] =
    "usage: skein logs [-n N] [-q WORDS] [-c | --cid ID] [-m MODEL]\n"
    "                  [--function Skill.Fn] [--json] [-t]\n"
    "       skein logs path | status | on | off\n"
    "\n"
    "Every model call is recorded in the call history, a SQLite file\n"
    "($SKEIN_HISTORY, else $XDG_DATA_HOME/skein/history.db, else\n"
    "~/.local/share/skein/history.db): the prompt and system prompt as sent,\n"
    "the reply, the model, tokens, time, duration, the function and the\n"
    "conversation.  Keys and other secrets are scrubbed before anything is\n"
    "stored, and values that redaction replaced stay placeholders.\n"
    "\n"
    "logs lists the newest calls (-n N, default 3; -n 0 all), newest first.\n"
    "-q WORDS lists the calls whose prompt, system prompt or reply holds\n"
    "every word (full-text search), best match first.  -c shows the most\n"
    "recent conversation and --cid ID that one, in order.  -m and --function\n"
    "keep the calls to that model or of that function.  --json prints a JSON\n"
    "array; -t cuts each text to one short line.\n"
    "\n"
    "logs path prints where the history is; status whether it records, and\n"
    "how many calls and conversations it holds; off stops recording for\n"
    "every later run (on starts again).  SKEIN_HISTORY=off, or --no-log for\n"
    "one run, records nothing too; --log records even when it is off.\n";

static const char USAGE_MODELS[] =
    "usage: skein models [--json]\n"
    "\n"
    "Lists the default model, the names the config file gives models (its\n"
    "\"aliases\" and the service ids of its \"services\": --model NAME takes\n"
    "either), each with its connector kind, and the connector kinds a model\n"
    "spec can start with.  Credentials in a URL are masked.  --json prints\n"
    "{\"default\": {\"spec\", \"kind\"} or null, \"names\": [{\"name\", \"spec\",\n"
    "\"kind\", \"from\"}], \"kinds\": [...]}.\n";

static const char USAGE_CACHE[] =
    "usage: skein cache [clear]\n"
    "\n"
    "Shows where the response cache is ($SKEIN_CACHE, else\n"
    "$XDG_CACHE_HOME/skein/cache.db, else ~/.cache/skein/cache.db), how many\n"
    "answers it holds and their size; `clear` removes them all.  --no-cache\n"
    "on any command reads and writes no cache for that run.\n";

static const char USAGE_PLAN[] =
    "usage: skein plan GOAL [--save FILE] [--run] [--dot] [--var NAME=VALUE]...\n"
    "                  [--functions A,B,...] [--max-parallel N]\n"
    "\n"
    "Asks the model for a plan over the loaded functions, checks it (unknown\n"
    "functions or parameters, bad references, cycles) and asks again with\n"
    "the problems when it is wrong.  Prints the plan, or with --dot a\n"
    "Graphviz graph of it; --save writes it to FILE to read, edit and run\n"
    "with run-plan; --run runs it and prints the result.  --functions\n"
    "limits the functions it may use.\n";

static const char USAGE_RUN_PLAN[] =
    "usage: skein run-plan FILE|- [--var NAME=VALUE]... [--dot]\n"
    "                      [--max-parallel N] [--functions A,B,...]\n"
    "\n"
    "Checks and runs a plan file; independent steps run at the same time.\n"
    "A plan is model output: --functions limits what its steps may call.\n"
    "Prints the last step's output.  --dot prints the plan as a Graphviz\n"
    "graph instead of running it.  When a step is uncertain at a terminal,\n"
    "skein asks you and resumes without re-running the finished steps.\n";

static const char USAGE_AGENT[] =
    "usage: skein agent GOAL [--functions A,B,...] [--max-steps N]\n"
    "                   [--max-tokens N] [--max-ms N]\n"
    "\n"
    "Runs a step-by-step agent: the model thinks, calls one function, reads\n"
    "its output, and so on until it answers.  Steps go to stderr, the answer\n"
    "to stdout.  Exit code 10 when it runs out of steps, tokens or time.\n"
    "It uses the server's native tool calls where it takes them (OpenAI,\n"
    "Anthropic, Ollama), and its own text protocol elsewhere.\n";

static const char USAGE_DF[] =
    "usage: skein df FILE.csv INSTRUCTION [--sql] [--out RESULT.csv] [--db FILE]\n"
    "                [--functions A,B,...]\n"
    "\n"
    "Loads the CSV into SQLite, has the model write one read-only SELECT for\n"
    "the instruction (checked, repaired when it fails, cached), runs it and\n"
    "prints the result as CSV (or writes it to --out).  --sql shows the SQL\n"
    "on stderr.  Generated SQL can only read: anything else is refused.  It\n"
    "may call skein('Fn', text) and ai(...) only for the --functions listed\n"
    "(\"ai\" allows ai()), and runs within the sql_timeout_ms, sql_max_rows\n"
    "and sql_max_bytes limits (raise them with --option).\n";

static const char USAGE_EVAL[] =
    "usage: skein eval Skill.Fn --data FILE.jsonl [--check Skill.Fn] [--json]\n"
    "                  [--plot FILE.svg] [--policy JSON] [--concurrency N]\n"
    "       skein calibrate Skill.Fn --data FILE.jsonl [--signal NAME]\n"
    "                  [--alpha 0.1] [--delta 0.1] [--test FRACTION] [--seed N]\n"
    "                  [--dry-run]\n"
    "\n"
    "Each line of the data is a JSON object: its strings are the function's\n"
    "variables, and \"expected\" the right answer (compared with case,\n"
    "spacing, quotes and trailing punctuation folded), unless --check names\n"
    "a function that is given input (the answer), expected and task (the\n"
    "line) and answers yes or no.\n"
    "\n"
    "eval runs the function as configured and prints accuracy, how often each\n"
    "signal raised, escalations, review flips, calls, tokens, wall time, and\n"
    "risk (wrong among answered) and coverage (share answered) at each\n"
    "threshold of every signal that gave scores; --json prints the same as\n"
    "one object, --plot draws the risk-coverage curves as SVG.\n"
    "\n"
    "calibrate scores every example on one signal (logprob, agreement,\n"
    "entropy, self_check, verbalized) with raising off, and fits the lowest\n"
    "threshold for which, with probability 1 - delta, an answer at or above\n"
    "it is wrong with probability at most alpha.  It writes the result into\n"
    "the skill's config.json as uncertainty.calibrated (signal, threshold,\n"
    "alpha, delta, n, date); --dry-run only prints it.  --test holds out a\n"
    "seeded share of the examples and reports whether the bound held on\n"
    "them.  Too few examples for the alpha asked is exit code 11.\n";

static const char USAGE_DISTILL[] =
    "usage: skein distill Skill.Fn --from FILE [--from FILE]... --out DIR\n"
    "                     [--seed N] [--calibration SHARE] [--test SHARE] [--json]\n"
    "\n"
    "Reads traces (--trace, SKEIN_TRACE) and cassettes (SKEIN_RECORD) and keeps\n"
    "the function's calls that ended with an answer: never one that was\n"
    "uncertain, rejected, filtered, truncated or failed, nor one that called\n"
    "tools or sent earlier turns.  Each example is the prompt as sent (with\n"
    "its system message) and the answer the caller received; identical\n"
    "examples are kept once.  It writes into DIR (made when missing):\n"
    "\n"
    "  train.txt          for llama-finetune: each example as the prompt, the\n"
    "                     answer right after it, and a line <|endoftext|>\n"
    "  train.jsonl        the same examples as chat fine-tuning lines:\n"
    "                     {\"messages\": [system?, user, assistant]}\n"
    "  calibration.jsonl  held out: {\"input\", \"expected\", \"function\"} a\n"
    "  test.jsonl         line, for skein calibrate and skein eval\n"
    "\n"
    "--calibration and --test are the shares of distinct prompts held out\n"
    "(default 0.2 each, 0 for none, together below 1), drawn by --seed\n"
    "(default 1): the same inputs and seed give the same files.  The counts\n"
    "per split and what was skipped, by reason, go to stderr (--json: also\n"
    "as JSON on stdout).  A line that is neither a trace line nor a recorded\n"
    "exchange stops it with FILE:LINE (exit 11); no accepted answer at all\n"
    "is exit 11 too, and writes nothing.\n";

static const char *command_usage(const char *cmd)
{
    if (!cmd)
        return USAGE;
    if (strcmp(cmd, "df") == 0)
        return USAGE_DF;
    if (strcmp(cmd, "plan") == 0)
        return USAGE_PLAN;
    if (strcmp(cmd, "run-plan") == 0)
        return USAGE_RUN_PLAN;
    if (strcmp(cmd, "agent") == 0)
        return USAGE_AGENT;
    if (strcmp(cmd, "review") == 0)
        return USAGE_REVIEW;
    if (strcmp(cmd, "invoke") == 0)
        return USAGE_INVOKE;
    if (strcmp(cmd, "render") == 0)
        return USAGE_RENDER;
    if (strcmp(cmd, "skills") == 0)
        return USAGE_SKILLS;
    if (strcmp(cmd, "run") == 0)
        return USAGE_RUN;
    if (strcmp(cmd, "help") == 0)
        return USAGE_HELP;
    if (strcmp(cmd, "models") == 0)
        return USAGE_MODELS;
    if (strcmp(cmd, "logs") == 0)
        return USAGE_LOGS;
    if (strcmp(cmd, "prompt") == 0)
        return USAGE_PROMPT;
    if (strcmp(cmd, "chat") == 0)
        return USAGE_CHAT;
    if (strcmp(cmd, "completion") == 0)
        return USAGE_COMPLETION;
    if (strcmp(cmd, "cache") == 0)
        return USAGE_CACHE;
    if (strcmp(cmd, "eval") == 0 || strcmp(cmd, "calibrate") == 0)
        return USAGE_EVAL;
    if (strcmp(cmd, "distill") == 0)
        return USAGE_DISTILL;
    return NULL;
}

/* ---- errors ------------------------------------------------------------- */

static int exit_code(sk_status st) { return cli_exit_code(st); }

static sk_status kind_status(const char *kind)
{
    for (int c = SK_OK; c <= SK_STATUS_MAX; c++)
        if (strcmp(sk_status_kind((sk_status)c), kind) == 0)
            return (sk_status)c;
    return SK_SCRIPT;
}

/* A usage error (exit 2): fmt with one %s for arg, and a suggestion. */
static int usage_error(const char *fmt, const char *arg, const char *hint)
{
    char msg[1024];
    snprintf(msg, sizeof msg, fmt, arg);
    if (hint)
        return cli_usage("%s (did you mean '%s'?)", msg, hint);
    return cli_usage("%s", msg);
}

/* Reports the kernel's last error and returns the exit code for it. */
static int report(const cli *o, sk_kernel *k, sk_status st)
{
    (void)o;
    return cli_report(k, st, NULL);
}

/* ---- small helpers ------------------------------------------------------ */

/* Levenshtein distance, case-insensitive, for "did you mean". */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 99;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = tolower((unsigned char)a[i - 1]) !=
                          tolower((unsigned char)b[j - 1]);
            size_t best = diag + cost;
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static const char *closest_command(const char *word)
{
    const char *best = NULL;
    size_t best_d = 3; /* suggest within two edits */
    for (int i = 0; COMMANDS[i]; i++) {
        size_t d = distance(word, COMMANDS[i]);
        if (d < best_d) {
            best_d = d;
            best = COMMANDS[i];
        }
    }
    return best;
}

#define read_all cli_read_all

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---- argument parsing --------------------------------------------------- */

/* The value of an option given as "--opt VALUE" or "--opt=VALUE"; NULL
 * when a does not name opt.  *i advances past a separate value. */
static const char *opt_value(const char *a, const char *opt, int argc,
                             char **argv, int *i, int *missing)
{
    size_t n = strlen(opt);
    if (strncmp(a, opt, n) != 0)
        return NULL;
    if (a[n] == '=')
        return a + n + 1;
    if (a[n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    return argv[++*i];
}

static const char *const OPTIONS[] = {
    "--model", "--skills", "--trace", "--quiet", "--json-errors", "--help",
    "--version", "--var", "--input", "--stream", "--no-stream", "--no-calls",
    "--json", "--policy", "--task", "--reviewer", "--save", "--run", "--dot",
    "--functions", "--max-steps", "--max-tokens", "--max-ms", "--max-parallel",
    "--db", "--out", "--sql", "--jsonl", "--concurrency", "--stats", "--allow-os",
    "--option", "--no-cache", "--data", "--check", "--plot", "--signal", "--alpha",
    "--delta", "--test", "--seed", "--dry-run", "--journal", "-m", "-s", "--system",
    "-c", "--continue", "--cid", "--conversation", "-n", "-q", "--query", "--function",
    "-t", "--truncate", "--no-log", "--log", "--man", "--timeout", "--idle-timeout",
    "--from", "--calibration", NULL};

/* The options that take a value (for the completions). */
static const char *const VALUE_OPTIONS[] = {
    "--model", "-m", "--skills", "--trace", "--var", "--option", "--input", "--policy",
    "--task", "--reviewer", "--save", "--db", "--journal", "--out", "--concurrency",
    "--data", "--check", "--plot", "--signal", "--alpha", "--delta", "--test", "--seed",
    "--functions", "--max-steps", "--max-tokens", "--max-ms", "--max-parallel",
    "--system", "-s", "--cid", "--conversation", "--function", "--query", "-n",
    "--timeout", "--idle-timeout", "--from", "--calibration", NULL};


static const char *closest_option(const char *word)
{
    const char *best = NULL;
    size_t best_d = 3;
    for (int i = 0; OPTIONS[i]; i++) {
        size_t d = distance(word, OPTIONS[i]);
        if (d < best_d) {
            best_d = d;
            best = OPTIONS[i];
        }
    }
    return best;
}

/* Returns -1 to go on, or an exit code. */
static int parse(cli *o, int argc, char **argv)
{
    int only_positional = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (o->command && strcmp(o->command, "run") == 0 && o->n_pos == 1) {
            o->run_args = argv + i;
            o->n_run_args = argc - i;
            break;
        }
        if (only_positional || a[0] != '-' || strcmp(a, "-") == 0) {
            if (!o->command)
                o->command = a;
            else
                o->pos[o->n_pos++] = a;
            continue;
        }
        int missing = 0;
        const char *v;
        if (strcmp(a, "--") == 0) {
            only_positional = 1;
        } else if ((v = opt_value(a, "--model", argc, argv, &i, &missing)) ||
                   (v = opt_value(a, "-m", argc, argv, &i, &missing))) {
            o->model = v;
        } else if ((v = opt_value(a, "--system", argc, argv, &i, &missing)) ||
                   (v = opt_value(a, "-s", argc, argv, &i, &missing))) {
            o->system = v;
        } else if ((v = opt_value(a, "--cid", argc, argv, &i, &missing)) ||
                   (v = opt_value(a, "--conversation", argc, argv, &i, &missing))) {
            o->conversation = v;
        } else if ((v = opt_value(a, "--function", argc, argv, &i, &missing))) {
            o->function = v;
        } else if ((v = opt_value(a, "--query", argc, argv, &i, &missing)) ||
                   (o->command && strcmp(o->command, "logs") == 0 &&
                    (v = opt_value(a, "-q", argc, argv, &i, &missing)))) {
            o->search = v; /* -q is --quiet but for logs, as in llm */
        } else if ((v = opt_value(a, "-n", argc, argv, &i, &missing))) {
            char *end;
            o->count = strtol(v, &end, 10);
            if (*end || o->count < 0 || end == v)
                return usage_error("-n expects a whole number (0: all), got '%s'", v, NULL);
        } else if ((v = opt_value(a, "--skills", argc, argv, &i, &missing))) {
            o->skills[o->n_skills++] = v;
        } else if ((v = opt_value(a, "--trace", argc, argv, &i, &missing))) {
            o->trace = v;
        } else if ((v = opt_value(a, "--var", argc, argv, &i, &missing))) {
            if (!strchr(v, '=') || v[0] == '=')
                return usage_error("--var expects NAME=VALUE, got '%s'", v,
                                   NULL);
            o->vars[o->n_vars++] = v;
        } else if ((v = opt_value(a, "--option", argc, argv, &i, &missing))) {
            if (!strchr(v, '=') || v[0] == '=')
                return usage_error("--option expects NAME=VALUE, got '%s'", v, NULL);
            o->options[o->n_options++] = v;
        } else if ((v = opt_value(a, "--input", argc, argv, &i, &missing))) {
            o->input = v;
        } else if ((v = opt_value(a, "--policy", argc, argv, &i, &missing))) {
            o->policy = v;
        } else if ((v = opt_value(a, "--task", argc, argv, &i, &missing))) {
            o->task = v;
        } else if ((v = opt_value(a, "--reviewer", argc, argv, &i, &missing))) {
            o->reviewer = v;
        } else if ((v = opt_value(a, "--save", argc, argv, &i, &missing))) {
            o->save = v;
        } else if ((v = opt_value(a, "--db", argc, argv, &i, &missing))) {
            o->db = v;
        } else if ((v = opt_value(a, "--journal", argc, argv, &i, &missing))) {
            o->journal = v;
        } else if ((v = opt_value(a, "--timeout", argc, argv, &i, &missing))) {
            o->timeout = v;
        } else if ((v = opt_value(a, "--idle-timeout", argc, argv, &i, &missing))) {
            o->idle_timeout = v;
        } else if ((v = opt_value(a, "--out", argc, argv, &i, &missing))) {
            o->out = v;
        } else if ((v = opt_value(a, "--concurrency", argc, argv, &i, &missing))) {
            char *end;
            o->concurrency = strtol(v, &end, 10);
            if (*end || o->concurrency < 1 || o->concurrency > 10000)
                return usage_error("--concurrency expects a number from 1 to %s", "10000", NULL);
        } else if ((v = opt_value(a, "--data", argc, argv, &i, &missing))) {
            o->data = v;
        } else if (strcmp(a, "--check") == 0 &&
                   ((o->command && strcmp(o->command, "skills") == 0) ||
                    (!o->command && i + 1 < argc && strcmp(argv[i + 1], "skills") == 0))) {
            o->check_skills = 1; /* skills --check takes no value */
        } else if ((v = opt_value(a, "--check", argc, argv, &i, &missing))) {
            o->check = v;
        } else if ((v = opt_value(a, "--plot", argc, argv, &i, &missing))) {
            o->plot = v;
        } else if ((v = opt_value(a, "--signal", argc, argv, &i, &missing))) {
            o->signal = v;
        } else if ((v = opt_value(a, "--from", argc, argv, &i, &missing))) {
            o->from[o->n_from++] = v;
        } else if ((v = opt_value(a, "--calibration", argc, argv, &i, &missing))) {
            o->calibration = v; /* checked by distill, which alone takes it */
        } else if ((v = opt_value(a, "--alpha", argc, argv, &i, &missing)) ||
                   (v = opt_value(a, "--delta", argc, argv, &i, &missing)) ||
                   (v = opt_value(a, "--test", argc, argv, &i, &missing))) {
            char *end;
            double d = strtod(v, &end);
            int is_test = strncmp(a, "--test", 6) == 0;
            /* distill holds out no test share with --test 0 */
            if (*end || end == v || !((d > 0 || (is_test && d == 0)) && d < 1))
                return usage_error("%s expects a number between 0 and 1", a, NULL);
            o->test_given |= is_test;
            if (strncmp(a, "--alpha", 7) == 0)
                o->alpha = d;
            else if (strncmp(a, "--delta", 7) == 0)
                o->delta = d;
            else
                o->test = d;
        } else if ((v = opt_value(a, "--seed", argc, argv, &i, &missing))) {
            char *end;
            o->seed = strtol(v, &end, 10);
            o->seed_given = 1;
            if (*end || end == v)
                return usage_error("--seed expects a whole number, got '%s'", v, NULL);
        } else if (strcmp(a, "--dry-run") == 0) {
            o->dry_run = 1;
        } else if ((v = opt_value(a, "--functions", argc, argv, &i, &missing))) {
            o->functions = v;
        } else if ((v = opt_value(a, "--max-steps", argc, argv, &i, &missing)) ||
                   (v = opt_value(a, "--max-tokens", argc, argv, &i, &missing)) ||
                   (v = opt_value(a, "--max-ms", argc, argv, &i, &missing)) ||
                   (v = opt_value(a, "--max-parallel", argc, argv, &i, &missing))) {
            char *end;
            long n = strtol(v, &end, 10);
            if (*end || n < 1)
                return usage_error("%s expects a positive whole number", a, NULL);
            if (strncmp(a, "--max-steps", 11) == 0)
                o->max_steps = n;
            else if (strncmp(a, "--max-tokens", 12) == 0)
                o->max_tokens = n;
            else if (strncmp(a, "--max-ms", 8) == 0)
                o->max_ms = n;
            else
                o->max_parallel = n;
        } else if (missing) {
            return usage_error("option '%s' needs a value", a, NULL);
        } else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
            o->quiet = 1;
        } else if (strcmp(a, "--json-errors") == 0) {
            o->json_errors = 1;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            o->help = 1;
        } else if (strcmp(a, "--version") == 0) {
            printf("skein %s\n", sk_version());
            return EXIT_OK;
        } else if (strcmp(a, "--stream") == 0) {
            o->stream = 1;
        } else if (strcmp(a, "--no-stream") == 0) {
            o->stream = 0;
        } else if (strcmp(a, "--no-calls") == 0) {
            o->no_calls = 1;
        } else if (strcmp(a, "--json") == 0) {
            o->json = 1;
        } else if (strcmp(a, "--run") == 0) {
            o->run_plan = 1;
        } else if (strcmp(a, "--sql") == 0) {
            o->show_sql = 1;
        } else if (strcmp(a, "--stats") == 0) {
            o->stats = 1;
        } else if (strcmp(a, "--no-cache") == 0) {
            o->no_cache = 1;
        } else if (strcmp(a, "--allow-os") == 0) {
            o->allow_os = 1;
        } else if (strcmp(a, "--jsonl") == 0) {
            o->jsonl = 1;
        } else if (strcmp(a, "--dot") == 0) {
            o->dot = 1;
        } else if (strcmp(a, "--continue") == 0 || strcmp(a, "-c") == 0) {
            o->cont = 1;
        } else if (strcmp(a, "--truncate") == 0 || strcmp(a, "-t") == 0) {
            o->truncate = 1;
        } else if (strcmp(a, "--man") == 0) {
            o->man = 1;
        } else if (strcmp(a, "--no-log") == 0) {
            o->no_log = 1;
        } else if (strcmp(a, "--log") == 0) {
            o->log = 1;
        } else {
            return usage_error("unknown option '%s'", a, closest_option(a));
        }
        if (missing)
            return usage_error("option '%s' needs a value", a, NULL);
    }
    return -1;
}

/* ---- the kernel --------------------------------------------------------- */

/* --timeout / --idle-timeout: seconds (decimals allowed; 0 turns the
 * idle timeout off) into the millisecond option.  -1, or an exit code. */
static int set_seconds(sk_kernel *k, const char *flag, const char *v,
                       const char *option, int positive)
{
    if (!v)
        return -1;
    char *end;
    errno = 0;
    double s = strtod(v, &end);
    if (errno || end == v || *end || !(s >= 0) || s > 86400 || (positive && s <= 0)) {
        fprintf(stderr, "skein: %s expects a number of seconds %s (at most 86400), "
                        "got '%s'\nTry 'skein --help'.\n",
                flag, positive ? "above 0" : "(0: no limit)", v);
        return EXIT_USAGE;
    }
    char ms[32];
    long n = (long)(s * 1000 + 0.5);
    snprintf(ms, sizeof ms, "%ld", positive && n < 1 ? 1L : n);
    if (sk_kernel_set_option(k, option, ms) != SK_OK) {
        fprintf(stderr, "skein: %s %s: %s\n", flag, v, sk_errmsg(k));
        return EXIT_USAGE;
    }
    return -1;
}

/* Makes the kernel: options, the Lua binding (for `run`, before any
 * skill.lua loads so native skills share the script's state), the default
 * skills, then --skills folders so they override. */
static int setup(const cli *o, lua_State *L, sk_kernel **out)
{
    int rc;
    sk_kernel *k = NULL;
    sk_status st = sk_kernel_new(&k);
    *out = k;
    if (st != SK_OK)
        return report(o, k, st);
    /* skills --check prints the problems of the load as its output */
    int quiet = o->quiet || o->check_skills;
    if (quiet && (st = sk_kernel_set_option(k, "quiet", "1")) != SK_OK)
        return report(o, k, st);
    if (o->db && (st = sk_kernel_set_option(k, "db", o->db)) != SK_OK)
        return report(o, k, st);
    if (o->allow_os && (st = sk_kernel_set_option(k, "allow_os", "1")) != SK_OK)
        return report(o, k, st);
    if (o->no_cache && (st = sk_kernel_set_option(k, "cache", "0")) != SK_OK)
        return report(o, k, st);
    if (o->journal && (st = sk_kernel_set_option(k, "journal", o->journal)) != SK_OK)
        return report(o, k, st);
    if (o->log && o->no_log)
        return usage_error("%s", "--log and --no-log contradict each other", NULL);
    /* every model call goes to the user's history unless told otherwise;
     * `logs` reads it wherever it is, even when it records nothing */
    const char *history = o->no_log ? "off"
                          : o->log || strcmp(o->command, "logs") == 0 ? "always"
                                                                       : "auto";
    if ((st = sk_kernel_set_option(k, "history", history)) != SK_OK)
        return report(o, k, st);
    for (size_t i = 0; i < o->n_options; i++) {
        char name[64];
        const char *eq = strchr(o->options[i], '=');
        size_t n = (size_t)(eq - o->options[i]);
        if (n >= sizeof name)
            return usage_error("--option: unknown option '%s'", o->options[i], NULL);
        memcpy(name, o->options[i], n);
        name[n] = '\0';
        if ((st = sk_kernel_set_option(k, name, eq + 1)) != SK_OK)
            return cli_usage("--option %s: %s", o->options[i], sk_errmsg(k));
    }
    if ((rc = set_seconds(k, "--timeout", o->timeout, "timeout_ms", 1)) >= 0 ||
        (rc = set_seconds(k, "--idle-timeout", o->idle_timeout, "idle_timeout_ms", 0)) >= 0)
        return rc;
    if (L && (st = sk_lua_open(k, L)) != SK_OK)
        return report(o, k, st);
    if ((st = sk_kernel_load_default_skills(k)) != SK_OK)
        return report(o, k, st);
    for (size_t i = 0; i < o->n_skills; i++) {
        if (!is_dir(o->skills[i]))
            return cli_error(SK_IO, NULL, "--skills %s: not a directory", o->skills[i]);
        if ((st = sk_kernel_load_skills(k, o->skills[i])) != SK_OK)
            return report(o, k, st);
    }
    if (o->model && (st = sk_kernel_set_model(k, o->model)) != SK_OK)
        return report(o, k, st);
    if (o->trace && (st = sk_kernel_set_trace(k, o->trace)) != SK_OK)
        return report(o, k, st);
    return -1;
}

/* Builds the variables from --var and --input.  Returns -1 or an exit
 * code. */
static int make_vars(const cli *o, sk_kernel *k, sk_vars **out)
{
    sk_status st = sk_vars_new(out);
    for (size_t i = 0; st == SK_OK && i < o->n_vars; i++) {
        const char *eq = strchr(o->vars[i], '=');
        size_t n = (size_t)(eq - o->vars[i]);
        char name[256];
        if (n >= sizeof name)
            return cli_usage("--var: the name is longer than %zu bytes", sizeof name - 1);
        memcpy(name, o->vars[i], n);
        name[n] = '\0';
        st = sk_vars_set(*out, name, eq + 1);
    }
    if (st == SK_OK && o->input)
        st = sk_vars_set(*out, "input", o->input);
    if (st != SK_OK)
        return cli_error(st, NULL, "%s", sk_strerror(st));
    (void)k;
    return -1;
}

/* ---- invoke -------------------------------------------------------------- */

typedef struct stream_state {
    size_t bytes;
    char last;
    const char *name;  /* for the busy line */
    int busy_shown;    /* a busy line is on stderr now */
} stream_state;

/* Takes the busy line off the terminal. */
static void busy_clear(stream_state *s)
{
    if (s->busy_shown) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        s->busy_shown = 0;
    }
}

/* While a call runs at a terminal and nothing streams (a check may still
 * replace the reply, so it is printed once it has passed), says so on
 * stderr: "- Writer.Summarize: waiting for the model and its checks 2.1 s". */
static void busy_tick(void *ud, long long elapsed_ms)
{
    stream_state *s = ud;
    if (s->bytes || elapsed_ms < 300)
        return;
    static const char spin[] = "|/-\\";
    fprintf(stderr, "\r\033[K%c %s: waiting for the model and its checks %.1f s",
            spin[(elapsed_ms / 100) % 4], s->name, elapsed_ms / 1000.0);
    fflush(stderr);
    s->busy_shown = 1;
}

static void stream_out(void *ud, const char *text, size_t len)
{
    stream_state *s = ud;
    if (!len)
        return;
    busy_clear(s);
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    s->bytes += len;
    s->last = text[len - 1];
}

/* The hint for an error that comes from having no model, or NULL. */
static const char *no_model_hint(sk_kernel *k, const char *name, sk_status st)
{
    sk_function_info fi;
    if (st != SK_NOT_FOUND && st != SK_CONFIG)
        return NULL;
    if (strstr(sk_errmsg(k), "--model"))
        return NULL; /* the kernel's message says it already */
    if (sk_kernel_model(k) || sk_kernel_function_find(k, name, &fi) != SK_OK)
        return NULL;
    if (strcmp(fi.kind, "semantic") != 0)
        return NULL;
    return "no model is configured; set SKEIN_MODEL or OPENAI_API_KEY, or pass --model";
}

#define json_str cli_json_str

/* s as a JSON string literal.  Caller frees. */
static char *json_quote(const char *s)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f)
        return NULL;
    json_str(f, s);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* Records in the trace that the user answered a clarifying question. */
static void trace_clarified(sk_kernel *k, const char *name,
                            const char *question, const char *answer)
{
    char *q = json_quote(question ? question : "");
    char *a = json_quote(answer);
    char *n = json_quote(name);
    if (q && a && n) {
        size_t need = strlen(q) + strlen(a) + strlen(n) + 128;
        char *m = malloc(need);
        if (m) {
            snprintf(m, need,
                     "\"type\":\"clarified\",\"function\":%s,"
                     "\"handled_by\":\"cli\",\"question\":%s,\"answer\":%s",
                     n, q, a);
            sk_trace_event(k, m);
            free(m);
        }
    }
    free(q);
    free(a);
    free(n);
}

/* After an uncertainty error: when stdin and stderr are terminals, asks
 * the model's question, and adds the answer to the `clarification`
 * variable (answers accumulate, so a second question sees the first).
 * Returns 1 when there is an answer to run again with. */
static int clarify(sk_kernel *k, const char *name, sk_vars *vars)
{
    if (!isatty(0) || !isatty(2))
        return 0;
    fflush(stdout);
    const char *q = sk_error_get(k, "question");
    char *question = q ? strdup(q) : NULL;
    const char *r = sk_error_get(k, "reason");
    fprintf(stderr, "skein: %s is unsure (%s).\n", name, r ? r : sk_errmsg(k));
    /* the answers the samples gave, each once: the user may pick one */
    enum { MAX_SHOWN = 5, CLIP = 200 };
    char *cand[MAX_SHOWN];
    int n_cand = 0;
    char *js = NULL;
    if (sk_error_json(k, &js) == SK_OK && js) {
        cJSON *d = cJSON_Parse(js);
        const cJSON *c, *arr = cJSON_GetObjectItemCaseSensitive(d, "candidates");
        cJSON_ArrayForEach(c, arr)
        {
            if (n_cand == MAX_SHOWN || !cJSON_IsString(c) || !*c->valuestring)
                continue;
            int seen = 0;
            for (int i = 0; i < n_cand; i++)
                seen |= strcmp(cand[i], c->valuestring) == 0;
            if (!seen && (cand[n_cand] = strdup(c->valuestring)))
                n_cand++;
        }
        cJSON_Delete(d);
        sk_free(js);
    }
    if (n_cand > 1) {
        fprintf(stderr, "The answers it gave:\n");
        for (int i = 0; i < n_cand; i++) {
            size_t len = strlen(cand[i]);
            fprintf(stderr, "  %d) %.*s%s\n", i + 1, (int)(len > CLIP ? CLIP : len),
                    cand[i], len > CLIP ? "..." : "");
        }
    }
    fprintf(stderr, "%s\nyour answer%s (empty to give up)> ",
            question ? question
                     : n_cand > 1 ? "Which of these do you mean, or what else?"
                                  : "What exactly do you want?",
            n_cand > 1 ? ", or the number of one above" : "");
    fflush(stderr);
    char line[4096];
    if (!fgets(line, sizeof line, stdin)) {
        for (int i = 0; i < n_cand; i++)
            free(cand[i]);
        free(question);
        return 0;
    }
    line[strcspn(line, "\r\n")] = '\0';
    /* a number picks a candidate: the model is told which answer is meant,
     * and the call runs again through every check */
    char *end = NULL;
    long pick = n_cand > 1 && line[0] ? strtol(line, &end, 10) : 0;
    if (end && *end == '\0' && pick >= 1 && pick <= n_cand)
        snprintf(line, sizeof line, "Of the answers you gave, this is the one I "
                                    "mean: %.3900s", cand[pick - 1]);
    for (int i = 0; i < n_cand; i++)
        free(cand[i]);
    const char *prev = sk_vars_get(vars, "clarification");
    size_t need = strlen(line) + (prev ? strlen(prev) + 1 : 0) + 1;
    char *clar = line[0] ? malloc(need) : NULL;
    if (!clar) {
        free(question);
        return 0;
    }
    snprintf(clar, need, "%s%s%s", prev ? prev : "", prev ? "\n" : "", line);
    sk_status st = sk_vars_set(vars, "clarification", clar);
    free(clar);
    if (st == SK_OK)
        trace_clarified(k, name, question, line);
    free(question);
    return st == SK_OK;
}

/* Reads the main input: --input, else stdin when it is not a terminal,
 * minus one trailing newline.  Returns NULL with errno set on failure;
 * *none is set when there is no input at all. */
static char *main_input(const cli *o, int *none)
{
    *none = 0;
    if (o->input)
        return strdup(o->input);
    if (isatty(0)) {
        *none = 1;
        return NULL;
    }
    size_t len = 0;
    char *in = read_all(stdin, &len);
    if (in && len && in[len - 1] == '\n') {
        in[--len] = '\0';
        if (len && in[len - 1] == '\r')
            in[--len] = '\0';
    }
    return in;
}

static int cmd_review(const cli *o, sk_kernel *k)
{
    if (o->n_pos)
        return usage_error("review: unexpected argument '%s'", o->pos[0], NULL);
    int none = 0;
    char *text = main_input(o, &none);
    if (!text) {
        if (none)
            return usage_error("%s", "review: give the text with --input or on stdin",
                               NULL);
        return cli_error(SK_IO, NULL, "reading stdin: %s",
                         errno == EFBIG ? "input larger than 64 MiB" : strerror(errno));
    }
    if (!*text) {
        free(text);
        return usage_error("%s", "review: the text to review is empty", NULL);
    }
    const char *source = NULL;
    for (size_t i = 0; i < o->n_vars; i++)
        if (strncmp(o->vars[i], "input=", 6) == 0)
            source = o->vars[i] + 6;
    int passed = 0;
    char *critique = NULL;
    sk_status st = sk_review(k, text, o->task, source, o->reviewer, &passed, &critique);
    free(text);
    if (st != SK_OK)
        return report(o, k, st);
    if (passed) {
        puts("PASS");
        return EXIT_OK; /* cli_stdout_done reports a failed write */
    }
    printf("FAIL: %s\n", critique ? critique : "");
    sk_free(critique);
    fflush(stdout);
    return EXIT_REJECTED;
}

/* Reads a template or plan file, or stdin for "-" (64 MiB at most).
 * Returns -1 with *text set (caller frees), or an exit code after saying
 * what went wrong. */
static int read_input_file(const char *path, char **text, size_t *len)
{
    int from_stdin = strcmp(path, "-") == 0;
    FILE *f = from_stdin ? stdin : fopen(path, "rb");
    if (!f)
        return cli_error(SK_IO, NULL, "%s: %s", path, strerror(errno));
    *text = read_all(f, len);
    int saved = errno;
    if (!from_stdin)
        fclose(f);
    if (!*text)
        return cli_error(SK_IO, NULL, "%s: %s", path,
                         saved == EFBIG ? "larger than 64 MiB" : strerror(saved));
    return -1;
}

/* ---- plans and agents ------------------------------------------------- */

/* Splits --functions "A,B" into a NULL-terminated array (pointers into
 * buf).  Returns the count. */
static size_t split_functions(const char *list, char *buf, size_t bufsize,
                              const char **names, size_t max)
{
    size_t n = 0;
    if (!list)
        return 0;
    snprintf(buf, bufsize, "%s", list);
    for (char *tok = strtok(buf, ", "); tok && n < max; tok = strtok(NULL, ", "))
        names[n++] = tok;
    return n;
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    int failed = !f || fputs(text, f) == EOF;
    int e = errno;
    if (f && fclose(f) != 0 && !failed) {
        failed = 1;
        e = errno;
    }
    if (failed)
        return cli_error(SK_IO, NULL, "%s: %s", path, strerror(e));
    return EXIT_OK;
}

/* Runs a plan, clarifying uncertain steps at a terminal: the plan keeps
 * its finished steps, so each retry resumes where it stopped. */
static int run_plan(const cli *o, sk_kernel *k, sk_plan *p)
{
    sk_vars *vars = NULL;
    int rc = make_vars(o, k, &vars);
    if (rc >= 0) {
        sk_vars_free(vars);
        return rc;
    }
    if (o->input)
        sk_vars_set(vars, "input", o->input);
    char *out = NULL;
    sk_status st = sk_plan_run(k, p, vars, (int)o->max_parallel, &out);
    for (int round = 0; st == SK_UNCERTAIN && round < 3; round++) {
        if (!clarify(k, "the plan", vars))
            break;
        st = sk_plan_run(k, p, vars, (int)o->max_parallel, &out);
    }
    sk_vars_free(vars);
    if (st != SK_OK)
        return report(o, k, st);
    size_t n = strlen(out);
    fwrite(out, 1, n, stdout);
    if (!n || out[n - 1] != '\n')
        putchar('\n');
    sk_free(out);
    return EXIT_OK; /* cli_stdout_done reports a failed write */
}

static int cmd_plan(const cli *o, sk_kernel *k)
{
    if (o->n_pos != 1)
        return usage_error("%s", o->n_pos ? "plan: give the goal as one argument (quote it)"
                                          : "plan: missing the goal",
                           NULL);
    char buf[4096];
    const char *names[256];
    sk_plan_opts po = {0, -1, NULL, 0};
    po.n_only = split_functions(o->functions, buf, sizeof buf, names, 256);
    if (po.n_only)
        po.only = names;
    sk_plan *p = NULL;
    sk_status st = sk_plan_create(k, o->pos[0], &po, &p);
    if (st != SK_OK)
        return cli_report(k, st, no_model_hint(k, "Planner.Create", st));
    char *text = sk_plan_text(p);
    int rc = EXIT_OK;
    if (o->save && text)
        rc = write_file(o->save, text);
    if (rc == EXIT_OK) {
        char *show = o->dot ? sk_plan_dot(p) : NULL;
        if (o->dot)
            fputs(show ? show : "", stdout);
        else if (!o->run_plan || isatty(2))
            fputs(text ? text : "", o->run_plan ? stderr : stdout);
        sk_free(show);
        if (o->run_plan)
            rc = run_plan(o, k, p);
    }
    sk_free(text);
    sk_plan_free(p);
    return rc;
}

static int cmd_run_plan(const cli *o, sk_kernel *k)
{
    if (o->n_pos != 1)
        return usage_error("%s", o->n_pos ? "run-plan: one plan file at a time"
                                          : "run-plan: missing the plan file",
                           NULL);
    const char *path = o->pos[0];
    int from_stdin = strcmp(path, "-") == 0;
    size_t len = 0;
    char *text = NULL;
    int rc = read_input_file(path, &text, &len);
    if (rc >= 0)
        return rc;
    sk_plan *p = NULL;
    sk_status st = sk_plan_parse(k, text, from_stdin ? "<stdin>" : path, &p);
    free(text);
    if (st == SK_OK && o->functions) {
        char buf[4096];
        const char *names[256];
        size_t n = split_functions(o->functions, buf, sizeof buf, names, 256);
        st = sk_plan_allow(k, p, names, n);
    }
    if (st != SK_OK) {
        sk_plan_free(p);
        return report(o, k, st);
    }
    if (o->dot) {
        char *dot = sk_plan_dot(p);
        fputs(dot ? dot : "", stdout);
        sk_free(dot);
        rc = EXIT_OK;
    } else {
        rc = run_plan(o, k, p);
    }
    sk_plan_free(p);
    return rc;
}

static void agent_step_out(void *ud, const char *text, size_t len)
{
    (void)ud;
    fwrite(text, 1, len, stderr);
    fflush(stderr);
}

static int cmd_agent(const cli *o, sk_kernel *k)
{
    if (o->n_pos != 1)
        return usage_error("%s", o->n_pos ? "agent: give the goal as one argument (quote it)"
                                          : "agent: missing the goal",
                           NULL);
    char buf[4096];
    const char *names[256];
    sk_agent_opts ao;
    memset(&ao, 0, sizeof ao);
    ao.goal = o->pos[0];
    ao.n_functions = split_functions(o->functions, buf, sizeof buf, names, 256);
    if (ao.n_functions)
        ao.functions = names;
    ao.max_steps = (int)o->max_steps;
    ao.max_tokens = o->max_tokens;
    ao.max_ms = o->max_ms;
    if (!o->quiet)
        ao.on_step = agent_step_out;
    char *answer = NULL;
    sk_status st = sk_agent_run(k, &ao, &answer);
    if (st != SK_OK)
        return cli_report(k, st, no_model_hint(k, "Agent.Step", st));
    puts(answer);
    sk_free(answer);
    return EXIT_OK; /* cli_stdout_done reports a failed write */
}

/* ---- batch mode: JSON lines ------------------------------------------- */

typedef struct jl_item {
    sk_call *call;    /* NULL when the line could not be started */
    long line;
    char *error_json; /* the line's own error (bad JSON, unknown function) */
    sk_status error;  /* and its status */
} jl_item;

#define JSONL_LINE_MAX ((size_t)16 << 20)

/* Sets vars from one JSON object line: strings as they are, other values
 * as their JSON text, nulls skipped.  NULL on success, else a message
 * (static). */
static const char *jl_vars(const char *line, sk_vars **out)
{
    cJSON *j = cJSON_Parse(line);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return "not a JSON object";
    }
    sk_vars *v = NULL;
    if (sk_vars_new(&v) != SK_OK) {
        cJSON_Delete(j);
        return "out of memory";
    }
    const char *bad = NULL;
    cJSON *it;
    cJSON_ArrayForEach(it, j)
    {
        if (cJSON_IsNull(it))
            continue;
        char *text = cJSON_IsString(it) ? NULL : cJSON_PrintUnformatted(it);
        if (sk_vars_set(v, it->string, cJSON_IsString(it) ? it->valuestring
                                                          : (text ? text : "")) != SK_OK)
            bad = "out of memory";
        cJSON_free(text);
    }
    cJSON_Delete(j);
    if (bad) {
        sk_vars_free(v);
        return bad;
    }
    *out = v;
    return NULL;
}

/* Writes the head item's outcome as one line; returns its status. */
/* Writes all of s, retrying short writes; 0, or -1 with errno (EPIPE when
 * the reader went away). */
static int write_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Set by SIGINT and SIGTERM during --jsonl: stop reading, settle, exit. */
static volatile sig_atomic_t jl_stop;
static void jl_on_signal(int sig) { jl_stop = sig; }

#define JL_GRACE_MS 5000 /* how long calls in flight may finish after a stop */

static long long mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* One result line, written and flushed at once: a line on stdout is whole
 * or absent.  *wrote is 0 when stdout is gone. */
static sk_status jl_emit(jl_item *it, int *wrote)
{
    sk_status st = SK_OK;
    cJSON *o = cJSON_CreateObject();
    if (it->error_json) {
        st = it->error;
        cJSON_AddItemToObject(o, "error", cJSON_Parse(it->error_json));
    } else if (!sk_call_done(it->call)) {
        /* stopped before it finished: its line says so, in its place */
        st = SK_CANCELLED;
        cJSON *e = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(e, "kind", "cancelled");
        cJSON_AddNumberToObject(e, "code", exit_code(SK_CANCELLED));
        cJSON_AddStringToObject(e, "message", "stopped before the call finished");
        cJSON_AddNumberToObject(e, "line", (double)it->line);
    } else {
        st = sk_call_status(it->call);
        if (st == SK_OK) {
            cJSON_AddStringToObject(o, "result", sk_call_result(it->call));
        } else {
            char *ej = NULL;
            sk_call_error_json(it->call, &ej);
            cJSON_AddItemToObject(o, "error", ej ? cJSON_Parse(ej) : cJSON_CreateNull());
            sk_free(ej);
        }
    }
    /* as on stderr, an error's code is the exit code it would end with */
    cJSON *err = cJSON_GetObjectItemCaseSensitive(o, "error");
    if (cJSON_IsObject(err)) {
        cJSON *code = cJSON_GetObjectItemCaseSensitive(err, "code");
        if (cJSON_IsNumber(code))
            cJSON_SetNumberValue(code, exit_code(st));
        else
            cJSON_AddNumberToObject(err, "code", exit_code(st));
    }
    char *line = cJSON_PrintUnformatted(o);
    *wrote = 1;
    if (line) {
        size_t n = strlen(line);
        char *l = malloc(n + 2);
        if (l) {
            memcpy(l, line, n);
            l[n] = '\n';
            *wrote = write_all(1, l, n + 1) == 0;
            free(l);
        }
    }
    cJSON_free(line);
    cJSON_Delete(o);
    sk_call_free(it->call);
    free(it->error_json);
    it->call = NULL;
    it->error_json = NULL;
    return st;
}

static int cmd_invoke_jsonl(const cli *o, sk_kernel *k, const char *name)
{
    /* `window` calls in flight at once; finished results wait in the ring
     * (four windows, at least 256 lines) for the lines before them, so
     * one slow call does not stop new calls from starting. */
    size_t window = o->concurrency > 0 ? (size_t)o->concurrency : 16;
    size_t cap = window * 4 < 256 ? 256 : window * 4;
    size_t inflight = 0;
    jl_item *ring = calloc(cap, sizeof *ring);
    if (!ring)
        return cli_error(SK_NOMEM, NULL, "out of memory");
    size_t head = 0, count = 0;
    long lines = 0, done = 0;
    sk_status first = SK_OK;
    char fbuf[4096];
    const char *fnames[256];
    sk_invoke_opts fo = {0};
    fo.n_functions = split_functions(o->functions, fbuf, sizeof fbuf, fnames, 256);
    fo.functions = fnames;
    int progress = isatty(2);
    char *buf = NULL;
    size_t bufcap = 0;
    int eof = 0, gone = 0;
    long long deadline = 0;
    /* SIGINT, SIGTERM: stop reading, let the calls in flight finish for up
     * to JL_GRACE_MS, write every line in order (an unfinished one as a
     * "cancelled" error), exit 128 + the signal.  A closed stdout (EPIPE)
     * stops the same way, exit 141.  No SA_RESTART, so a read or a wait
     * that the signal interrupts returns. */
    struct sigaction sa = {0}, old_int, old_term, old_pipe;
    sa.sa_handler = jl_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, &old_pipe);
    fflush(stdout);
    while (!eof || count) {
        if ((jl_stop || gone) && !eof)
            eof = 1;
        if ((jl_stop || gone) && !deadline)
            deadline = mono_ms() + (gone ? 0 : JL_GRACE_MS);
        /* fill the window */
        while (!eof && count < cap && inflight < window) {
            ssize_t n = getline(&buf, &bufcap, stdin);
            if (n < 0 && jl_stop) {
                eof = 1;
                break;
            }
            if (n < 0) {
                eof = 1;
                break;
            }
            while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
                buf[--n] = '\0';
            if (n == 0)
                continue; /* blank lines are skipped */
            jl_item *it = &ring[(head + count) % cap];
            it->line = ++lines;
            sk_vars *vars = NULL;
            const char *bad = (size_t)n > JSONL_LINE_MAX ? "line longer than 16 MiB"
                                                         : jl_vars(buf, &vars);
            if (!bad) {
                sk_status st = sk_invoke_async(k, name, vars, o->functions ? &fo : NULL,
                                               &it->call);
                if (st == SK_OK)
                    inflight++;
                if (st != SK_OK) {
                    char *ej = NULL;
                    it->error = st;
                    sk_error_json(k, &ej);
                    it->error_json = ej ? strdup(ej) : NULL;
                    sk_free(ej);
                    if (!it->error_json)
                        bad = "could not start the call";
                }
            }
            sk_vars_free(vars);
            if (bad) {
                it->error = SK_DATA;
                char *q = json_quote(bad);
                size_t need = (q ? strlen(q) : 0) + 96;
                it->error_json = malloc(need);
                if (it->error_json)
                    snprintf(it->error_json, need,
                             "{\"kind\":\"data\",\"code\":%d,\"message\":%s,"
                             "\"line\":%ld}",
                             EXIT_DATA, q ? q : "\"\"", it->line);
                free(q);
            }
            count++;
        }
        /* emit finished items at the head, in input order; past the
         * deadline, the unfinished ones too */
        int late = deadline && mono_ms() >= deadline;
        while (count && (late || ring[head].error_json || sk_call_done(ring[head].call))) {
            int wrote = 1;
            sk_status st = gone ? SK_CANCELLED : jl_emit(&ring[head], &wrote);
            if (gone) {
                sk_call_free(ring[head].call);
                free(ring[head].error_json);
                ring[head].call = NULL;
                ring[head].error_json = NULL;
            }
            if (!wrote)
                gone = 1;
            if (st != SK_OK && first == SK_OK)
                first = st;
            head = (head + 1) % cap;
            count--;
            done++;
        }
        if (progress)
            fprintf(stderr, "\r  %ld lines done, %zu in flight ", done, inflight);
        if (count)
            inflight = sk_kernel_run(k, 50);
    }
    free(buf);
    free(ring);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    if (progress)
        fputc('\n', stderr);
    /* Stopped: every line is written; calls still in flight are abandoned
     * (their connections close with the process) rather than waited for
     * in sk_kernel_free, so the stop is bounded by the grace period. */
    if (gone) {
        fflush(NULL);
        _exit(128 + SIGPIPE);
    }
    if (jl_stop) {
        cli_fail("cancelled", 128 + jl_stop, NULL, "stopped by signal %d after %ld lines",
                 (int)jl_stop, done);
        fflush(NULL);
        _exit(128 + jl_stop);
    }
    return exit_code(first);
}

static int cmd_invoke(const cli *o, sk_kernel *k)
{
    if (o->n_pos < 1)
        return usage_error("%s", "invoke: missing the function name (Skill.Fn)",
                           NULL);
    if (o->n_pos > 1)
        return usage_error("invoke: unexpected argument '%s'", o->pos[1], NULL);
    const char *name = o->pos[0];
    if (o->jsonl && o->dry_run)
        return usage_error("%s", "invoke: --dry-run shows one request; it does not "
                                 "take --jsonl", NULL);
    if (o->jsonl)
        return cmd_invoke_jsonl(o, k, name);
    sk_vars *vars = NULL;
    int rc = make_vars(o, k, &vars);
    if (rc >= 0) {
        sk_vars_free(vars);
        return rc;
    }
    /* stdin is the input unless the command line gave one */
    if (!o->input && !sk_vars_get(vars, "input") && !isatty(0)) {
        size_t len = 0;
        char *in = read_all(stdin, &len);
        if (!in) {
            int e = errno;
            sk_vars_free(vars);
            return cli_error(SK_IO, NULL, "reading stdin: %s",
                             e == EFBIG ? "input larger than 64 MiB" : strerror(e));
        }
        if (len && in[len - 1] == '\n') {
            in[--len] = '\0';
            if (len && in[len - 1] == '\r')
                in[--len] = '\0';
        }
        sk_status st = sk_vars_set(vars, "input", in);
        free(in);
        if (st != SK_OK) {
            sk_vars_free(vars);
            return cli_error(st, NULL, "%s", sk_strerror(st));
        }
    }
    int stream = o->stream >= 0 ? o->stream : isatty(1);
    stream_state ss = {0, 0, name, 0};
    sk_invoke_opts io = {.stream = stream ? stream_out : NULL, .stream_ud = &ss,
                         .policy = o->policy, .dry_run = o->dry_run};
    char fbuf[4096];
    const char *fnames[256];
    io.n_functions = split_functions(o->functions, fbuf, sizeof fbuf, fnames, 256);
    io.functions = o->functions ? fnames : NULL;
    if (isatty(2) && !o->quiet) {
        io.tick = busy_tick;
        io.tick_ud = &ss;
    }
    char *out = NULL;
    sk_status st = sk_invoke(k, name, vars, &io, &out);
    busy_clear(&ss);
    /* Uncertainty at the top: a person at a terminal can clarify. */
    for (int round = 0; st == SK_UNCERTAIN && round < 3; round++) {
        if (ss.bytes && ss.last != '\n')
            putchar('\n');
        if (!clarify(k, name, vars))
            break;
        ss.bytes = 0;
        ss.last = 0;
        st = sk_invoke(k, name, vars, &io, &out);
        busy_clear(&ss);
    }
    sk_vars_free(vars);
    if (st != SK_OK) {
        if (ss.bytes && ss.last != '\n')
            putchar('\n');
        return cli_report(k, st, no_model_hint(k, name, st));
    }
    if (ss.bytes) {
        if (ss.last != '\n')
            putchar('\n');
    } else {
        size_t n = strlen(out);
        fwrite(out, 1, n, stdout);
        if (!n || out[n - 1] != '\n')
            putchar('\n');
    }
    sk_free(out);
    return EXIT_OK; /* cli_stdout_done reports a failed write */
}

/* ---- eval and calibrate ---------------------------------------------------- */

static int cmd_eval(const cli *o, sk_kernel *k, int calibrate)
{
    const char *cmd = calibrate ? "calibrate" : "eval";
    if (o->n_pos < 1)
        return usage_error("%s: missing the function name (Skill.Fn)", cmd, NULL);
    if (o->n_pos > 1)
        return usage_error("unexpected argument '%s'", o->pos[1], NULL);
    if (!o->data)
        return usage_error("%s: missing --data FILE.jsonl (labelled examples)", cmd, NULL);
    if (o->test_given && o->test == 0)
        return usage_error("%s --test expects a number between 0 and 1", cmd, NULL);
    eval_opts e = {
        .function = o->pos[0], .data = o->data, .check = o->check, .policy = o->policy,
        .plot = o->plot, .signal = o->signal, .alpha = o->alpha, .delta = o->delta,
        .test = o->test, .seed = o->seed, .concurrency = o->concurrency, .json = o->json,
        .quiet = o->quiet, .dry_run = o->dry_run,
    };
    return calibrate ? cli_calibrate(k, &e) : cli_eval(k, &e);
}

/* ---- distill ------------------------------------------------------------- */

static int looks_like_function(const char *s);

/* A share held out: [0, 1). */
static int parse_share(const char *opt, const char *v, double *out)
{
    char *end;
    double d = strtod(v, &end);
    if (*end || end == v || !(d >= 0 && d < 1))
        return usage_error("distill: %s expects a share from 0 to below 1", opt, NULL);
    *out = d;
    return -1;
}

static int cmd_distill(const cli *o)
{
    if (o->n_pos < 1)
        return usage_error("%s: missing the function name (Skill.Fn)", "distill", NULL);
    if (o->n_pos > 1)
        return usage_error("unexpected argument '%s'", o->pos[1], NULL);
    if (!looks_like_function(o->pos[0]))
        return usage_error("distill: '%s' is not a function name (Skill.Fn)", o->pos[0], NULL);
    if (!o->n_from)
        return usage_error("%s: missing --from FILE (a trace or a cassette)", "distill", NULL);
    if (o->n_from > 1024)
        return usage_error("distill: more than %s --from files", "1024", NULL);
    if (!o->out)
        return usage_error("%s: missing --out DIR", "distill", NULL);
    distill_opts d = {
        .function = o->pos[0], .from = o->from, .n_from = o->n_from, .out = o->out,
        .calibration = 0.2, .test = o->test_given ? o->test : 0.2,
        .seed = o->seed_given ? o->seed : 1, .json = o->json,
    };
    int rc;
    if (o->calibration && (rc = parse_share("--calibration", o->calibration,
                                            &d.calibration)) >= 0)
        return rc;
    if (d.calibration + d.test >= 1)
        return usage_error("distill: --calibration and --test together must be below 1%s",
                           "", "nothing would be left to train on");
    return cli_distill(&d);
}

/* ---- render -------------------------------------------------------------- */

/* "Skill.Fn": a name with one dot between two names of letters, digits
 * and '_'. */
static int looks_like_function(const char *s)
{
    const char *dot = strchr(s, '.');
    if (!dot || dot == s || !dot[1] || strchr(dot + 1, '.'))
        return 0;
    for (const char *p = s; *p; p++)
        if (p != dot && !isalnum((unsigned char)*p) && *p != '_')
            return 0;
    return 1;
}

/* render Skill.Fn: the function's own prompt with its defaults. */
static int render_function(const cli *o, sk_kernel *k, const char *name)
{
    sk_vars *vars = NULL;
    int rc = make_vars(o, k, &vars);
    if (rc >= 0) {
        sk_vars_free(vars);
        return rc;
    }
    char *out = NULL;
    sk_status st = sk_render_function(k, name, vars,
                                      o->no_calls ? SK_RENDER_NO_CALLS : 0, &out);
    sk_vars_free(vars);
    if (st == SK_NOT_FOUND)
        fprintf(stderr, "skein: render: no file named %s either\n", name);
    if (st != SK_OK)
        return report(o, k, st);
    size_t n = strlen(out);
    fwrite(out, 1, n, stdout);
    if (!n || out[n - 1] != '\n')
        putchar('\n');
    sk_free(out);
    return fflush(stdout) == 0 ? EXIT_OK : EXIT_RUNTIME;
}

static int cmd_render(const cli *o, sk_kernel *k)
{
    if (o->n_pos != 1)
        return usage_error("%s", o->n_pos ? "render: one template at a time"
                                          : "render: missing the template file "
                                            "or Skill.Fn",
                           NULL);
    const char *path = o->pos[0];
    int from_stdin = strcmp(path, "-") == 0;
    struct stat st_path;
    if (!from_stdin && stat(path, &st_path) != 0 && looks_like_function(path))
        return render_function(o, k, path);
    size_t len = 0;
    char *text = NULL;
    int rrc = read_input_file(path, &text, &len);
    if (rrc >= 0)
        return rrc;
    sk_template *t = NULL;
    sk_status st = sk_template_parse(k, text, len, from_stdin ? "<stdin>" : path,
                                     &t);
    free(text);
    if (st != SK_OK)
        return report(o, k, st);
    sk_vars *vars = NULL;
    int rc = make_vars(o, k, &vars);
    if (rc >= 0) {
        sk_vars_free(vars);
        sk_template_free(t);
        return rc;
    }
    char *out = NULL;
    st = sk_render(k, t, vars, o->no_calls ? SK_RENDER_NO_CALLS : 0, &out);
    sk_vars_free(vars);
    sk_template_free(t);
    if (st != SK_OK)
        return report(o, k, st);
    size_t n = strlen(out);
    fwrite(out, 1, n, stdout);
    if (!n || out[n - 1] != '\n')
        putchar('\n');
    sk_free(out);
    return EXIT_OK; /* cli_stdout_done reports a failed write */
}

/* ---- skills -------------------------------------------------------------- */

/* skills --check: every problem of the load, on stdout; exit 3 when there
 * is one. */
static int check_skills(const cli *o, sk_kernel *k)
{
    size_t n = sk_kernel_skill_problem_count(k);
    size_t fns = sk_kernel_function_count(k);
    if (o->json) {
        fputc('[', stdout);
        for (size_t i = 0; i < n; i++) {
            sk_skill_problem p;
            if (sk_kernel_skill_problem(k, i, &p) != SK_OK)
                break;
            fputs(i ? ",\n {\"file\":" : "{\"file\":", stdout);
            cli_json_str(stdout, p.path);
            printf(",\"line\":%d,\"col\":%d,\"kind\":", p.line, p.col);
            cli_json_str(stdout, sk_status_kind(p.code));
            fputs(",\"skipped\":", stdout);
            cli_json_str(stdout, p.what);
            fputs(",\"message\":", stdout);
            cli_json_str(stdout, p.message);
            fputc('}', stdout);
        }
        fputs("]\n", stdout);
    } else {
        for (size_t i = 0; i < n; i++) {
            sk_skill_problem p;
            if (sk_kernel_skill_problem(k, i, &p) == SK_OK)
                printf("%s\n  skipped %s\n", p.message, p.what);
        }
        if (n)
            printf("%zu problem%s; %zu function%s loaded\n", n, n == 1 ? "" : "s",
                   fns, fns == 1 ? "" : "s");
        else
            printf("no problems; %zu function%s loaded\n", fns, fns == 1 ? "" : "s");
    }
    if (fflush(stdout) != 0)
        return EXIT_RUNTIME;
    return n ? EXIT_TEMPLATE : EXIT_OK;
}

static int cmd_skills(const cli *o, sk_kernel *k)
{
    if (o->n_pos)
        return usage_error("skills: unexpected argument '%s'", o->pos[0], NULL);
    if (o->check_skills)
        return check_skills(o, k);
    size_t n = sk_kernel_function_count(k);
    if (o->json) {
        fputc('[', stdout);
        for (size_t i = 0; i < n; i++) {
            sk_function_info fi;
            if (sk_kernel_function_at(k, i, &fi) != SK_OK)
                break;
            fputs(i ? ",\n {" : "{", stdout);
            fputs("\"full_name\":", stdout);
            json_str(stdout, fi.full_name);
            fputs(",\"skill\":", stdout);
            json_str(stdout, fi.skill);
            fputs(",\"name\":", stdout);
            json_str(stdout, fi.name);
            fputs(",\"kind\":", stdout);
            json_str(stdout, fi.kind);
            fputs(",\"description\":", stdout);
            json_str(stdout, fi.description);
            if (fi.path) {
                fputs(",\"path\":", stdout);
                json_str(stdout, fi.path);
            }
            fputs(",\"parameters\":[", stdout);
            for (size_t j = 0; j < fi.n_params; j++) {
                const sk_param_info *p = &fi.params[j];
                fputs(j ? ",{\"name\":" : "{\"name\":", stdout);
                json_str(stdout, p->name);
                fputs(",\"description\":", stdout);
                json_str(stdout, p->description);
                if (p->default_value) {
                    fputs(",\"default\":", stdout);
                    json_str(stdout, p->default_value);
                }
                printf(",\"required\":%s}", p->required ? "true" : "false");
            }
            fputs("]}", stdout);
        }
        fputs("]\n", stdout);
        return EXIT_OK; /* cli_stdout_done reports a failed write */
    }
    int w = 8;
    for (size_t i = 0; i < n; i++) {
        sk_function_info fi;
        if (sk_kernel_function_at(k, i, &fi) == SK_OK &&
            (int)strlen(fi.full_name) > w)
            w = (int)strlen(fi.full_name);
    }
    if (n == 0)
        printf("no functions loaded (see --skills and SKEIN_SKILLS_PATH)\n");
    for (size_t i = 0; i < n; i++) {
        sk_function_info fi;
        if (sk_kernel_function_at(k, i, &fi) != SK_OK)
            break;
        printf("%-*s  %-8s  %s\n", w, fi.full_name, fi.kind,
               fi.description ? fi.description : "");
        for (size_t j = 0; j < fi.n_params; j++) {
            const sk_param_info *p = &fi.params[j];
            printf("%-*s    --var %s", w, "", p->name);
            if (p->description && *p->description)
                printf("  %s", p->description);
            if (p->default_value)
                printf(" (default \"%s\")", p->default_value);
            if (p->required)
                printf(" (required)");
            putchar('\n');
        }
    }
    return EXIT_OK; /* cli_stdout_done reports a failed write */
}

/* ---- run ----------------------------------------------------------------- */

/* Wraps the error value with a traceback: {value = err, traceback = tb}. */
static int run_msghandler(lua_State *L)
{
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "value");
    luaL_traceback(L, L, NULL, 1);
    lua_setfield(L, -2, "traceback");
    return 1;
}

static int openlibs(lua_State *L)
{
    luaL_openlibs(L);
    return 0;
}

/* The string field key of the table at idx, or NULL. */
static const char *str_field(lua_State *L, int idx, const char *key)
{
    lua_getfield(L, idx, key);
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    lua_pop(L, 1); /* the table keeps the string alive */
    return s;
}

/* Reports an uncaught Lua error (the wrapper from run_msghandler at the
 * top) and returns the exit code: a skein error table exits by its kind,
 * anything else is a script error.  On a terminal: "skein: kind:
 * message" and the traceback (unless tracebacks is 0, for commands
 * written in Lua whose frames mean nothing to the user); otherwise the
 * error table as JSON with every field it carries (question, sql,
 * plan_step, ..., and the traceback). */
static int report_lua_error(const cli *o, lua_State *L, int tracebacks)
{
    int w = lua_gettop(L);
    const char *tb = NULL;
    if (lua_istable(L, w)) {
        tb = str_field(L, w, "traceback");
        lua_getfield(L, w, "value");
    } else {
        lua_pushvalue(L, w);
    }
    int v = lua_gettop(L);
    const char *kind = NULL, *msg = NULL;
    if (lua_istable(L, v)) {
        kind = str_field(L, v, "kind");
        msg = str_field(L, v, "message");
    }
    sk_status st = SK_SCRIPT;
    const char *inner = NULL;
    int plain = 0; /* not a skein error: its text alone */
    if (kind && msg) {
        st = kind_status(kind);
        inner = str_field(L, v, "traceback");
    } else {
        msg = luaL_tolstring(L, v, NULL); /* [.., msg]: kept until the end */
        kind = "script";
        plain = 1;
    }
    /* the terminal's form: "kind: message", then the tracebacks */
    const char *tb1 = inner && tracebacks ? inner : "";
    const char *tb2 = tb && tracebacks ? tb : "";
    size_t need = strlen(kind) + strlen(msg) + strlen(tb1) + strlen(tb2) + 8;
    char *text = malloc(need);
    if (text) {
        if (plain)
            snprintf(text, need, "%s", msg);
        else
            snprintf(text, need, "%s: %s", kind, msg);
        if (*tb1)
            snprintf(text + strlen(text), need - strlen(text), "\n%s", tb1);
        if (*tb2)
            snprintf(text + strlen(text), need - strlen(text), "\n%s", tb2);
    }
    {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "kind", kind);
        cJSON_AddNumberToObject(j, "code", exit_code(st));
        cJSON_AddStringToObject(j, "message", msg);
        if (lua_istable(L, v)) {
            lua_pushnil(L);
            while (lua_next(L, v)) { /* [.., key, value] */
                const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
                if (key && strcmp(key, "kind") && strcmp(key, "code") &&
                    strcmp(key, "message") && strcmp(key, "traceback")) {
                    if (lua_type(L, -1) == LUA_TSTRING)
                        cJSON_AddStringToObject(j, key, lua_tostring(L, -1));
                    else if (lua_type(L, -1) == LUA_TNUMBER)
                        cJSON_AddNumberToObject(j, key, lua_tonumber(L, -1));
                    else if (lua_type(L, -1) == LUA_TBOOLEAN)
                        cJSON_AddBoolToObject(j, key, lua_toboolean(L, -1));
                    else if (lua_type(L, -1) == LUA_TTABLE) {
                        cJSON *arr = cJSON_AddArrayToObject(j, key);
                        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
                        for (lua_Integer i = 1; arr && i <= n; i++) {
                            lua_rawgeti(L, -1, i);
                            if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER)
                                cJSON_AddItemToArray(arr, cJSON_CreateString(lua_tostring(L, -1)));
                            lua_pop(L, 1);
                        }
                    }
                }
                lua_pop(L, 1);
            }
        }
        if (tb && tracebacks && !inner)
            cJSON_AddStringToObject(j, "traceback", tb);
        else if (inner && tracebacks)
            cJSON_AddStringToObject(j, "traceback", inner);
        char *json = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
        cli_report_json(json, exit_code(st), text ? text : msg, NULL);
        cJSON_free(json);
        free(text);
    }
    lua_settop(L, w - 1);
    return exit_code(st);
}

static int report_script_error(const cli *o, lua_State *L)
{
    return report_lua_error(o, L, 1);
}

static int cmd_run(const cli *o, lua_State *L)
{
    const char *script = o->pos[0];
    /* arg as in lua.c: the script at 0, its arguments from 1 */
    lua_createtable(L, o->n_run_args, 2);
    lua_pushstring(L, o->argv0);
    lua_rawseti(L, -2, -1);
    lua_pushstring(L, script);
    lua_rawseti(L, -2, 0);
    for (int i = 0; i < o->n_run_args; i++) {
        lua_pushstring(L, o->run_args[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setglobal(L, "arg");

    int st = luaL_loadfile(L, strcmp(script, "-") == 0 ? NULL : script);
    if (st != LUA_OK) {
        int rc = st == LUA_ERRFILE ? cli_error(SK_IO, NULL, "%s", lua_tostring(L, -1))
                                   : cli_error(SK_SCRIPT, NULL, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return rc;
    }
    luaL_checkstack(L, o->n_run_args + 3, "too many arguments");
    for (int i = 0; i < o->n_run_args; i++)
        lua_pushstring(L, o->run_args[i]);
    int base = lua_gettop(L) - o->n_run_args;
    lua_pushcfunction(L, run_msghandler);
    lua_insert(L, base);
    st = lua_pcall(L, o->n_run_args, 0, base);
    lua_remove(L, base);
    if (st != LUA_OK)
        return report_script_error(o, L);
    return EXIT_OK;
}

/* `skein df`: written in Lua over the skein module, so the command line
 * still goes through the public API only. */
static const char DF_CHUNK[] =
    "local skein = require('skein')\n"
    "local path, instruction, show_sql, out, functions = ...\n"
    "local src = skein.df.read_csv(path)\n"
    "local fns\n"
    "if functions then\n"
    "  fns = {}\n"
    "  for name in functions:gmatch('[^,%s]+') do fns[#fns + 1] = name end\n"
    "end\n"
    "local df = src:ai_transform(instruction, { functions = fns })\n"
    "if show_sql then io.stderr:write(df.query, '\\n') end\n"
    "if out then df:to_csv(out) return end\n"
    "local cols = {}\n"
    "for i, c in ipairs(df:columns()) do cols[i] = c.name end\n"
    "local function field(v)\n"
    "  if v == nil then return '' end\n"
    "  v = tostring(v)\n"
    "  if v:find('[,\"\\r\\n]') then v = '\"' .. v:gsub('\"', '\"\"') .. '\"' end\n"
    "  return v\n"
    "end\n"
    "local line = {}\n"
    "for i, c in ipairs(cols) do line[i] = field(c) end\n"
    "io.write(table.concat(line, ','), '\\n')\n"
    "for row in df:rows() do\n"
    "  for i, c in ipairs(cols) do line[i] = field(row[c]) end\n"
    "  io.write(table.concat(line, ','), '\\n')\n"
    "end\n";

static int cmd_df(const cli *o, lua_State *L)
{
    if (luaL_loadbuffer(L, DF_CHUNK, sizeof DF_CHUNK - 1, "=skein df") != LUA_OK)
        return cli_fail("runtime", EXIT_RUNTIME, NULL, "%s", lua_tostring(L, -1));
    lua_pushstring(L, o->pos[0]);
    lua_pushstring(L, o->pos[1]);
    lua_pushboolean(L, o->show_sql);
    if (o->out)
        lua_pushstring(L, o->out);
    else
        lua_pushnil(L);
    if (o->functions)
        lua_pushstring(L, o->functions);
    else
        lua_pushnil(L);
    int base = lua_gettop(L) - 5;
    lua_pushcfunction(L, run_msghandler);
    lua_insert(L, base);
    int st = lua_pcall(L, 5, 0, base);
    lua_remove(L, base);
    if (st != LUA_OK)
        return report_lua_error(o, L, 0);
    return EXIT_OK; /* cli_stdout_done reports a failed write */
}

/* ---- prompt and chat ---------------------------------------------------------- */

static int cmd_prompt(const cli *o, sk_kernel *k, int chat)
{
    if (o->n_pos > 1)
        return usage_error("%s: give the prompt as one argument (quote it)",
                           chat ? "chat" : "prompt", NULL);
    prompt_opts po = {
        .text = o->n_pos ? o->pos[0] : NULL,
        .system = o->system,
        .model = o->model,
        .cont = o->cont,
        .conversation = o->conversation,
        .stream = o->stream,
        .quiet = o->quiet,
        .policy = o->policy,
    };
    return chat ? cli_chat(k, &po) : cli_prompt(k, &po);
}

/* ---- logs ----------------------------------------------------------------- */

static int cmd_logs(const cli *o, sk_kernel *k)
{
    if (o->n_pos > 1)
        return usage_error("logs: unexpected argument '%s'", o->pos[1], NULL);
    logs_opts lo = {
        .action = o->n_pos ? o->pos[0] : NULL,
        .count = o->count,
        .search = o->search,
        .last_conversation = o->cont,
        .conversation = o->conversation,
        .model = o->model ? sk_kernel_model(k) : NULL,
        .function = o->function,
        .json = o->json,
        .truncate = o->truncate,
    };
    return cli_logs(k, &lo);
}

/* ---- cache ---------------------------------------------------------------- */

static int cmd_cache(const cli *o, sk_kernel *k)
{
    int clear = o->n_pos == 1 && strcmp(o->pos[0], "clear") == 0;
    if (o->n_pos > 1 || (o->n_pos == 1 && !clear))
        return usage_error("cache: unexpected argument '%s' (`skein cache clear` "
                           "empties it)", o->pos[o->n_pos - 1], NULL);
    const char *path = NULL;
    long long entries = 0, bytes = 0;
    sk_status st = sk_kernel_cache_info(k, &path, &entries, &bytes);
    if (st != SK_OK)
        return report(o, k, st);
    if (!path) {
        puts("the response cache is off (SKEIN_CACHE=off, or no place for it)");
        return EXIT_OK;
    }
    if (clear) {
        if ((st = sk_kernel_cache_clear(k)) != SK_OK)
            return report(o, k, st);
        printf("cleared %lld answers (%lld bytes) from %s\n", entries, bytes, path);
        return EXIT_OK; /* cli_stdout_done reports a failed write */
    }
    printf("%s\n%lld answers, %lld bytes\n", path, entries, bytes);
    return EXIT_OK; /* cli_stdout_done reports a failed write */
}

/* --stats: what the run cost, per model and in all, on stderr. */
static void print_stats(sk_kernel *k, int journal)
{
    sk_usage u;
    sk_kernel_usage(k, &u);
    size_t n = sk_kernel_model_usage_count(k);
    fprintf(stderr, "\n%-38s %7s %7s %8s %9s %9s %6s %9s\n", "model", "calls", "cached",
            "answered", "tokens in", "out", "failed", "busy ms");
    long answered = 0;
    for (size_t i = 0; i < n; i++) {
        sk_model_usage m;
        sk_kernel_model_usage_at(k, i, &m);
        answered += m.answered;
        fprintf(stderr, "%-38.38s %7ld %7ld %8ld %9ld %9ld %6ld %9lld\n", m.model, m.calls,
                m.cache_hits, m.answered, m.prompt_tokens, m.completion_tokens, m.failures,
                m.busy_ms);
    }
    fprintf(stderr, "%-38s %7ld %7ld %8ld %9ld %9ld %6ld\n", "all models", u.calls,
            u.cache_hits, answered, u.prompt_tokens, u.completion_tokens, u.failures);
    fprintf(stderr, "retries %ld, escalations %ld, fallbacks %ld, uncertain %ld, "
                    "reviews %ld, filtered %ld, redacted %ld, wall time %lld ms\n",
            u.retries, u.escalations, u.fallbacks, u.uncertain, u.reviews, u.filtered,
            u.redacted, u.wall_ms);
    if (journal)
        fprintf(stderr, "served from the journal %ld\n", u.journal_hits);
}

/* ---- main ---------------------------------------------------------------- */

static int help(const char *cmd)
{
    const char *u = command_usage(cmd);
    if (!u)
        return usage_error("help: unknown command '%s'", cmd,
                           closest_command(cmd));
    fputs(u, stdout);
    return EXIT_OK;
}

static int run_command(cli *o)
{
    const char *cmd = o->command;
    if (strcmp(cmd, "help") == 0 && o->man)
        return o->n_pos ? usage_error("help --man: unexpected argument '%s'", o->pos[0], NULL)
                        : cli_manual(COMMANDS, command_usage, USAGE);
    if (strcmp(cmd, "help") == 0)
        return help(o->n_pos ? o->pos[0] : NULL);
    if (strcmp(cmd, "completion") == 0 && !o->help)
        return o->n_pos > 1 ? usage_error("completion: unexpected argument '%s'", o->pos[1], NULL)
                            : cli_completion(o->n_pos ? o->pos[0] : NULL, COMMANDS, OPTIONS,
                                             VALUE_OPTIONS, USAGE);
    if (o->help)
        return help(cmd);
    if (!command_usage(cmd))
        return usage_error("unknown command '%s'", cmd, closest_command(cmd));
    /* a flag that promises no model call must not be ignored where it
     * cannot keep that promise */
    if (o->dry_run && strcmp(cmd, "invoke") != 0 && strcmp(cmd, "calibrate") != 0)
        return usage_error("--dry-run is for invoke (show the request, send "
                           "nothing) and calibrate (write nothing), not %s", cmd, NULL);

    /* distill reads files only: no kernel, no skills, no model */
    if (strcmp(cmd, "distill") == 0)
        return cmd_distill(o);
    if (o->n_from || o->calibration)
        return usage_error("%s is for distill", o->n_from ? "--from" : "--calibration", NULL);

    lua_State *L = NULL;
    int is_df = strcmp(cmd, "df") == 0;
    if (is_df && o->n_pos != 2)
        return usage_error("%s", "df: give the CSV file and the instruction (quoted)", NULL);
    if (strcmp(cmd, "run") == 0 || is_df) {
        if (!is_df && o->n_pos < 1)
            return usage_error("%s", "run: missing the script (FILE.lua)",
                               NULL);
        L = luaL_newstate();
        if (!L) {
            return cli_error(SK_NOMEM, NULL, "cannot create a Lua state");
        }
        lua_pushcfunction(L, openlibs);
        if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
            lua_close(L);
            return cli_error(SK_NOMEM, NULL, "cannot open the Lua libraries");
        }
    }
    sk_kernel *k = NULL;
    int rc = setup(o, L, &k);
    if (rc < 0) {
        if (L && is_df)
            rc = cmd_df(o, L);
        else if (L)
            rc = cmd_run(o, L);
        else if (strcmp(cmd, "invoke") == 0)
            rc = cmd_invoke(o, k);
        else if (strcmp(cmd, "render") == 0)
            rc = cmd_render(o, k);
        else if (strcmp(cmd, "review") == 0)
            rc = cmd_review(o, k);
        else if (strcmp(cmd, "plan") == 0)
            rc = cmd_plan(o, k);
        else if (strcmp(cmd, "run-plan") == 0)
            rc = cmd_run_plan(o, k);
        else if (strcmp(cmd, "agent") == 0)
            rc = cmd_agent(o, k);
        else if (strcmp(cmd, "cache") == 0)
            rc = cmd_cache(o, k);
        else if (strcmp(cmd, "eval") == 0 || strcmp(cmd, "calibrate") == 0)
            rc = cmd_eval(o, k, strcmp(cmd, "calibrate") == 0);
        else if (strcmp(cmd, "logs") == 0)
            rc = cmd_logs(o, k);
        else if (strcmp(cmd, "prompt") == 0 || strcmp(cmd, "chat") == 0)
            rc = cmd_prompt(o, k, strcmp(cmd, "chat") == 0);
        else if (strcmp(cmd, "models") == 0)
            rc = o->n_pos ? usage_error("models: unexpected argument '%s'", o->pos[0], NULL)
                          : cli_models(k, o->json);
        else
            rc = cmd_skills(o, k);
    }
    if (o->stats && k)
        print_stats(k, o->journal != NULL);
    /* The state first: its finalizers may still use the kernel. */
    if (L)
        lua_close(L);
    sk_kernel_free(k);
    return rc;
}

int main(int argc, char **argv)
{
    cli_stdio_init();
    /* the error format is known before the first error can happen */
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--json-errors") == 0)
            cli_errors_json(1);
    cli o;
    memset(&o, 0, sizeof o);
    o.stream = -1;
    o.count = -1;
    o.argv0 = argv[0];
    size_t slots = argc > 0 ? (size_t)argc : 1;
    o.skills = calloc(slots, sizeof *o.skills);
    o.pos = calloc(slots, sizeof *o.pos);
    o.vars = calloc(slots, sizeof *o.vars);
    o.options = calloc(slots, sizeof *o.options);
    o.from = calloc(slots, sizeof *o.from);
    if (!o.skills || !o.pos || !o.vars || !o.options || !o.from) {
        return cli_error(SK_NOMEM, NULL, "out of memory");
    }
    int rc = parse(&o, argc, argv);
    if (rc < 0) {
        if (!o.command) {
            if (o.help) {
                fputs(USAGE, stdout);
                rc = EXIT_OK;
            } else if (cli_errors_are_json()) {
                rc = cli_usage("no command given (skein --help lists them)");
            } else {
                fputs(USAGE, stderr); /* the text form of this usage error */
                rc = EXIT_USAGE;
            }
        } else {
            rc = run_command(&o);
        }
    }
    free(o.skills);
    free(o.pos);
    free(o.vars);
    free(o.options);
    free(o.from);
    return cli_stdout_done(rc);
}
