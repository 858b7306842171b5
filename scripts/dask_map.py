#!/usr/bin/python3
"""dask_map.py -- map a CSV or JSON-lines dataset through a skein function
on a Dask cluster, one `skein invoke FN --jsonl` process per partition.

    scripts/dask_map.py Writer.Summarize docs.jsonl out.jsonl
    scripts/dask_map.py Writer.Summarize docs.csv out.jsonl \\
        --scheduler tcp://10.0.0.5:8786 --rows 1000 --concurrency 16 \\
        --journal-dir /shared/run-42 -- --model openai:gpt-4o-mini

Each CSV row (the header names the variables) or JSON line (an object of
variables) is one call.  The rows are cut into partitions of --rows; the
partitions run side by side on the cluster's workers, each a skein
process with --concurrency calls in flight, and the results are written
to OUTPUT in input order, one JSON line per input row ({"result": ...} or
{"error": {...}}), once every partition is done (OUTPUT appears whole or
not at all).  Arguments after `--` go to skein before the command.

Dask retries a partition whose worker died.  With --journal-dir (a folder
every worker can write), each partition keeps a journal there
(part-N.db), so the retry serves every call that had finished from it and
pays only for the calls that were in flight.  Re-running the driver with
the same folder resumes a whole run the same way.

Without --scheduler it starts a LocalCluster of --workers processes.
Needs Dask distributed (Debian: python3-distributed) and skein on PATH
(or --skein).
"""
import argparse
import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def die(msg, code=2):
    print("dask_map: " + msg, file=sys.stderr)
    sys.exit(code)


def read_rows(path):
    """The dataset as JSON lines of variables, one per row."""
    if path.endswith(".csv"):
        with open(path, newline="", encoding="utf-8") as f:
            return [json.dumps(row, ensure_ascii=False) for row in csv.DictReader(f)]
    lines = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                if not isinstance(json.loads(line), dict):
                    raise ValueError("not an object")
            except ValueError as e:
                die("%s:%d: a line must be a JSON object of variables (%s)" % (path, n, e), 11)
            lines.append(line.rstrip("\n"))
    return lines


def _die_with_parent():
    """In the skein child: be killed when the worker that started it dies,
    so that a killed worker leaves no process calling the model."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def run_partition(index, lines, skein, skein_args, function, concurrency, journal_dir):
    """Runs on a worker: one skein process over the partition's lines.
    Returns the partition's output, one line per input line."""
    cmd = [skein, "--quiet"] + list(skein_args)
    if journal_dir:
        cmd += ["--journal", os.path.join(journal_dir, "part-%d.db" % index)]
    cmd += ["invoke", function, "--jsonl", "--concurrency", str(concurrency)]
    data = ("\n".join(lines) + "\n").encode()
    p = subprocess.run(cmd, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       preexec_fn=_die_with_parent)
    out = p.stdout.decode()
    got = out.count("\n")
    # a line that failed is an {"error": ...} line (and a non-zero exit);
    # a stopped or killed skein owes lines, and the partition is retried
    if p.returncode < 0 or p.returncode >= 128 or got != len(lines):
        raise RuntimeError("partition %d: skein exited %d with %d of %d lines: %s"
                           % (index, p.returncode, got, len(lines),
                              p.stderr.decode().strip()[-2000:]))
    return out


def main():
    ap = argparse.ArgumentParser(
        description="Map a CSV or JSON-lines dataset through a skein function on Dask.",
        epilog="Arguments after -- go to skein, before the command (--model, --skills, ...).")
    ap.add_argument("function", help="Skill.Fn to run on each row")
    ap.add_argument("input", help="a .csv file (header row) or a JSON-lines file")
    ap.add_argument("output", help="the JSON-lines result, one line per row, in order")
    ap.add_argument("--rows", type=int, default=1000, help="rows per partition (1000)")
    ap.add_argument("--concurrency", type=int, default=16,
                    help="calls in flight in each partition's skein (16)")
    ap.add_argument("--scheduler", help="a running scheduler's address; default: a LocalCluster")
    ap.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (2)")
    ap.add_argument("--threads", type=int, default=1,
                    help="partitions at once per LocalCluster worker (1)")
    ap.add_argument("--journal-dir", help="a folder for one journal per partition (resume)")
    ap.add_argument("--skein", default=shutil.which("skein") or "skein",
                    help="the skein binary (default: from PATH)")
    ap.add_argument("--retries", type=int, default=3, help="tries per partition after the first (3)")
    argv = sys.argv[1:]
    skein_args = []
    if "--" in argv:
        cut = argv.index("--")
        argv, skein_args = argv[:cut], argv[cut + 1:]
    a = ap.parse_args(argv)
    if a.rows < 1 or a.concurrency < 1 or a.workers < 1 or a.threads < 1:
        die("--rows, --concurrency, --workers and --threads must be positive")
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        die("needs Dask distributed: apt-get install python3-distributed", 1)
    skein = os.path.abspath(a.skein) if os.sep in a.skein else shutil.which(a.skein)
    if not skein:
        die("no skein binary (give --skein PATH)", 1)
    # the function must exist where skein runs, before the cluster pays
    p = subprocess.run([skein, "--quiet"] + skein_args + ["skills", "--json"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        die("skein %s: %s" % (" ".join(skein_args), p.stderr.decode().strip()), p.returncode)
    names = [f.get("full_name") for f in json.loads(p.stdout or b"[]")]
    if a.function not in names:
        die('unknown function "%s" (`skein skills` lists them)' % a.function, 6)
    if a.journal_dir:
        os.makedirs(a.journal_dir, exist_ok=True)
        a.journal_dir = os.path.abspath(a.journal_dir)
    try:
        rows = read_rows(a.input)
    except OSError as e:
        die("%s: %s" % (a.input, e.strerror), 3)
    parts = [rows[i:i + a.rows] for i in range(0, len(rows), a.rows)]

    t0 = time.monotonic()
    cluster = scratch = None
    if a.scheduler:
        client = Client(a.scheduler)
    else:
        scratch = tempfile.mkdtemp(prefix="dask_map-")
        cluster = LocalCluster(n_workers=a.workers, threads_per_worker=a.threads,
                               processes=True, host="127.0.0.1", dashboard_address=None,
                               local_directory=scratch)
        client = Client(cluster)
    try:
        futures = [client.submit(run_partition, i, part, skein, skein_args, a.function,
                                 a.concurrency, a.journal_dir, key="skein-part-%d" % i,
                                 retries=a.retries, pure=False)
                   for i, part in enumerate(parts)]
        # written beside OUTPUT and renamed once complete: whole or absent
        d = os.path.dirname(os.path.abspath(a.output))
        fd, tmp = tempfile.mkstemp(prefix=".dask_map-", dir=d)
        try:
            with os.fdopen(fd, "w") as f:
                done = 0
                for fut in futures:  # in input order
                    f.write(fut.result())
                    done += 1
                    if sys.stderr.isatty():
                        print("\rdask_map: %d of %d partitions" % (done, len(parts)),
                              end="", file=sys.stderr)
            os.replace(tmp, a.output)
        except BaseException:
            os.unlink(tmp)
            raise
        if sys.stderr.isatty():
            print(file=sys.stderr)
        print("dask_map: %d rows in %d partitions, %.2f s"
              % (len(rows), len(parts), time.monotonic() - t0), file=sys.stderr)
    except KeyboardInterrupt:
        die("interrupted", 130)
    except Exception as e:  # a partition failed past its retries
        die(str(e), 1)
    finally:
        client.close()
        if cluster:
            cluster.close()
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
