"""The long fuzz run: every reader, >= 100,000 inputs each, counts and findings.

    python -m bench.fuzz                                  # 100000 inputs per reader, 2 jobs
    python -m bench.fuzz --inputs 2000 --readers idx,tar  # a short run of two readers
    python -m bench.fuzz --replay bench/results/fuzz/idx-000123   # one input, traceback shown
    python -m bench.fuzz --readers idx --index 123        # the same, from its index

Inputs come from the generators and the oracle of ``tests/fuzz`` (the CI fuzz tests
run the same code with a small hypothesis budget).  Input ``i`` of reader ``r`` is
built from ``random.Random(f"{seed}:{r}:{i}")``, so a run is reproducible and any
input is rebuilt from its index.  Work is spread over ``--jobs`` worker processes
(forked once, reused, in-process calls); each worker takes chunks of indices.
A worker stuck in C code past the watchdog is killed and replaced, and its input
counted as a hang.

Per reader the table records inputs run, loaded OK, typed errors, untyped
exceptions, hangs over 5 s, inputs over the memory bound, files left behind,
other contract breaks (a message that is not one line naming the input, a wrong
result), the largest time and peak memory, and the throughput.  Each finding's
input is saved under ``bench/results/fuzz/<reader>-<index>/`` (the files, the
call, the traceback).  The table goes to ``bench/results/fuzz.md``; the exit
status is 1 when anything was found.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import queue
import shutil
import signal
import sys
import time
from collections import Counter
from pathlib import Path

from .common import RESULTS, markdown_table

FUZZ_DIR = Path(__file__).resolve().parent.parent / "tests" / "fuzz"
OUT_DIR = RESULTS / "fuzz"
REPORT = RESULTS / "fuzz.md"
#: seconds after which the parent kills a worker whose input is still running
#: (the in-process watchdog interrupts Python code at 6 s; this catches C code)
KILL_AFTER = 20.0
#: reproducers saved per reader and kind of finding
SAVE_PER_KIND = 5
KINDS = ("untyped", "hang", "memory", "leftover", "message", "wrong", "crash", "generator")


def _import_fuzz():
    if str(FUZZ_DIR) not in sys.path:
        sys.path.insert(0, str(FUZZ_DIR))
    import fuzz_harness
    import fuzz_readers
    import fuzz_source

    return fuzz_harness, fuzz_readers, fuzz_source


def make_case(readers, source_mod, seed: str, reader: str, index: int):
    return readers[reader].generate(source_mod.RandomSource(f"{seed}:{reader}:{index}"))


def save_reproducer(case, reader: str, index: int, seed: str, outcome=None,
                    finding: str | None = None) -> Path:
    """Write the input's files and a description under OUT_DIR/<reader>-<index>/."""
    _, R, _ = _import_fuzz()
    folder = OUT_DIR / f"{reader}-{index:06d}"
    shutil.rmtree(folder, ignore_errors=True)
    files = folder / "files"
    files.mkdir(parents=True)
    R.write_case(case, files)
    info = {
        "reader": reader, "index": index, "seed": seed, "entry": case.entry,
        "args": case.args, "note": case.note,
        "findings": outcome.findings if outcome else [finding],
        "error": outcome.error if outcome else "",
        "seconds": outcome.seconds if outcome else None,
        "peak_mib": outcome.peak / 2**20 if outcome else None,
        "replay": f"python -m bench.fuzz --replay {folder.relative_to(OUT_DIR.parent.parent.parent)}",
    }
    (folder / "case.json").write_text(json.dumps(info, indent=2, default=str))
    if outcome is not None and outcome.traceback:
        (folder / "traceback.txt").write_text(outcome.traceback)
    return folder


# ----------------------------------------------------------------------------- worker

def _new_stats():
    return {"inputs": 0, "ok": 0, "typed": 0, "untyped": 0, "hang": 0, "memory": 0,
            "leftover": 0, "message": 0, "wrong": 0, "crash": 0, "generator": 0,
            "max_s": 0.0, "max_peak": 0,
            "busy_s": 0.0, "errors": Counter(), "samples": {}}


def worker_main(wid: int, seed: str, names: list[str], tasks, results, status,
                tracemalloc_on: bool = False) -> None:
    """Run chunks of inputs; report per chunk.  ``status[5*wid:5*wid+5]`` is
    (reader index, input index, start time, chunk start, chunk end) of the input
    in progress; the reader index is -1 between chunks."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    H, R, S = _import_fuzz()
    import warnings

    warnings.simplefilter("ignore")
    readers = R.readers()
    harness = H.Harness(readers, trace_python=tracemalloc_on)
    harness.warm_up(names)
    saved: Counter = Counter()
    results.put(("ready", wid))
    while True:
        task = tasks.get()
        if task is None:
            break
        if task[0] == "save":
            _, reader, index, finding = task
            case = make_case(readers, S, seed, reader, index)
            save_reproducer(case, reader, index, seed, finding=finding)
            results.put(("saved", wid, reader, index))
            continue
        _, reader, lo, hi = task
        stats = _new_stats()
        rest, tainted = None, False
        for i in range(lo, hi):
            status[5 * wid:5 * wid + 5] = [names.index(reader), i, time.time(), lo, hi]
            t0 = time.perf_counter()
            try:
                case = make_case(readers, S, seed, reader, i)
            except Exception as exc:  # noqa: BLE001  a bug of the harness, not of a reader
                stats["inputs"] += 1
                stats["generator"] += 1
                stats["samples"].setdefault(f"generator: {type(exc).__name__}",
                                            (i, f"generator: {type(exc).__name__}: {exc}", ""))
                continue
            out = harness.run(case)
            stats["busy_s"] += time.perf_counter() - t0
            stats["inputs"] += 1
            stats[out.status] += 1
            kinds = out.kinds
            for k in kinds:
                stats[k] += 1
            if out.status == "typed":
                stats["errors"][out.error_type or out.error.split(":")[0]] += 1
            stats["max_s"] = max(stats["max_s"], out.seconds)
            stats["max_peak"] = max(stats["max_peak"], out.peak)
            for f in out.findings:
                kind = f.split(":", 1)[0]
                # grouped by kind and outcome (the error's type, or "loaded")
                key = f"{kind}: {out.error_type or ('loaded' if out.status == 'ok' else out.status)}"
                if key not in stats["samples"]:
                    stats["samples"][key] = (i, f, out.error[:300])
                if saved[(reader, key)] < SAVE_PER_KIND:
                    saved[(reader, key)] += 1
                    save_reproducer(case, reader, i, seed, out)
            if any("(interrupted)" in f for f in out.findings):
                # the watchdog may have interrupted an import or a numba compilation
                # half way: this process is no longer trustworthy; a fresh one
                # takes the rest of the chunk
                rest = (i + 1, hi) if i + 1 < hi else None
                tainted = True
                break
        status[5 * wid] = -1
        results.put(("done", wid, reader, lo, hi, stats, rest))
        if tainted:
            break
    harness.close()


# ----------------------------------------------------------------------------- parent

def _merge(total: dict, part: dict) -> None:
    for k, v in part.items():
        if k in ("max_s", "max_peak"):
            total[k] = max(total[k], v)
        elif k == "errors":
            total[k].update(v)
        elif k == "samples":
            for key, sample in v.items():
                total[k].setdefault(key, sample)
        else:
            total[k] += v


def run(args) -> int:
    names = args.readers
    ctx = mp.get_context("fork")
    tasks, results = ctx.Queue(), ctx.Queue()
    status = ctx.Array("d", [-1.0] * (5 * args.jobs), lock=False)
    stats = {n: _new_stats() for n in names}
    # chunks interleaved across readers, so a partial run covers every reader
    chunks = {n: [(lo, min(lo + args.chunk, args.inputs)) for lo in range(0, args.inputs, args.chunk)]
              for n in names}
    pending = []
    for j in range(max(len(c) for c in chunks.values())):
        pending += [(n, *chunks[n][j]) for n in names if j < len(chunks[n])]
    for n, lo, hi in pending:
        tasks.put(("run", n, lo, hi))
    outstanding = len(pending)
    OUT_DIR.mkdir(parents=True, exist_ok=True)

    def spawn(wid):
        p = ctx.Process(target=worker_main, daemon=False,
                        args=(wid, args.seed, names, tasks, results, status, args.tracemalloc))
        p.start()
        return p

    workers = {w: spawn(w) for w in range(args.jobs)}
    start = time.time()
    last = 0.0
    killed: list[tuple[str, int, str]] = []
    ready = 0
    print(f"fuzz: {len(names)} readers x {args.inputs} inputs, {args.jobs} jobs, seed "
          f"{args.seed!r}; reproducers in {OUT_DIR}", flush=True)
    try:
        while outstanding > 0:
            try:
                msg = results.get(timeout=1.0)
            except queue.Empty:
                msg = None
            if msg is not None and msg[0] == "ready":
                ready += 1
                if ready == args.jobs:
                    start = time.time()  # throughput counts from the end of the warm-up
            elif msg is not None and msg[0] == "done":
                _, wid, reader, lo, hi, part, rest = msg
                _merge(stats[reader], part)
                outstanding -= 1
                if rest is not None:
                    tasks.put(("run", reader, *rest))
                    outstanding += 1
            # hung or dead workers
            now = time.time()
            for wid, p in list(workers.items()):
                r_idx, i, t0, lo, hi = status[5 * wid:5 * wid + 5]
                i, lo, hi = int(i), int(lo), int(hi)
                dead = not p.is_alive()
                stuck = r_idx >= 0 and now - t0 > KILL_AFTER
                if not (dead or stuck):
                    continue
                if r_idx >= 0:
                    reader = names[int(r_idx)]
                    kind = "hang" if stuck else "crash"
                    what = (f"hang: still running after {KILL_AFTER:.0f} s, worker killed"
                            if stuck else f"crash: worker died (exit code {p.exitcode})")
                    if stuck:
                        p.kill()
                    p.join()
                    stats[reader]["inputs"] += 1
                    stats[reader][kind] += 1
                    stats[reader]["untyped"] += 1
                    stats[reader]["samples"].setdefault(f"{kind}: worker", (i, what, ""))
                    killed.append((reader, i, what))
                    # the chunk's results were lost: run it again around the input
                    if lo < i:
                        tasks.put(("run", reader, lo, i))
                    if i + 1 < hi:
                        tasks.put(("run", reader, i + 1, hi))
                    outstanding += (lo < i) + (i + 1 < hi) - 1
                    tasks.put(("save", reader, i, what))
                    print(f"fuzz: {what}: {reader} input {i}", flush=True)
                else:
                    p.join()
                status[5 * wid] = -1
                workers[wid] = spawn(wid)
            if now - last > args.progress:
                last = now
                _progress(stats, names, args.inputs, now - start)
    except KeyboardInterrupt:
        print("fuzz: interrupted; the table below covers the inputs run so far", flush=True)
    finally:
        for _ in workers:
            tasks.put(None)
        deadline = time.time() + 30
        for p in workers.values():
            p.join(max(0.1, deadline - time.time()))
            if p.is_alive():
                p.kill()
                p.join()
    elapsed = time.time() - start
    _progress(stats, names, args.inputs, elapsed)
    return _report(stats, names, args, elapsed)


def _progress(stats, names, total, elapsed) -> None:
    parts = []
    for n in names:
        s = stats[n]
        bad = sum(s[k] for k in KINDS if k != "crash") + s["crash"]
        parts.append(f"{n} {s['inputs']}/{total}" + (f" ({bad} findings)" if bad else ""))
    print(f"[{elapsed:7.0f} s] " + ", ".join(parts), flush=True)


def _rows(stats, names, jobs: int) -> list[dict]:
    rows = []
    for n in names:
        s = stats[n]
        rate = s["inputs"] / s["busy_s"] if s["busy_s"] else 0.0
        rows.append({
            "reader": n, "inputs": s["inputs"], "loaded OK": s["ok"], "typed errors": s["typed"],
            "untyped": s["untyped"], "hangs > 5 s": s["hang"], "over memory bound": s["memory"],
            "files left": s["leftover"],
            "other": s["message"] + s["wrong"] + s["crash"] + s["generator"],
            "max time ms": round(1000 * s["max_s"], 1), "max peak MiB": round(s["max_peak"] / 2**20, 1),
            "inputs/s per job": round(rate, 1),
            f"min per 100k ({jobs} jobs)": round(100000 / rate / jobs / 60, 1) if rate else None,
        })
    return rows


def _report(stats, names, args, elapsed) -> int:
    rows = _rows(stats, names, args.jobs)
    table = markdown_table(rows)
    found = sum(stats[n][k] for n in names for k in KINDS)
    lines = [f"# imgcls fuzz run — {time.strftime('%Y-%m-%d %H:%M')}",
             f"machine: {platform.machine()}, Python {platform.python_version()}, "
             f"{os.cpu_count()} cores; {args.jobs} jobs; seed {args.seed!r}; "
             f"{args.inputs} inputs per reader; {elapsed / 60:.1f} min",
             "", "Bounds per input: 5 s; 64 MiB + 10 x input size + output bytes; no file left.",
             "", table, "", "## Findings", ""]
    if not found:
        lines.append("none")
    for n in names:
        for key, (i, finding, error) in sorted(stats[n]["samples"].items()):
            lines.append(f"- **{n}** {key} — e.g. input {i}: {finding}"
                         + (f" — `{error[:200]}`" if error else "")
                         + f" (`python -m bench.fuzz --readers {n} --index {i} --seed {args.seed}`)")
    lines += ["", "Typed errors by class: " + "; ".join(
        f"{n}: " + ", ".join(f"{k} {v}" for k, v in stats[n]["errors"].most_common(6))
        for n in names if stats[n]["errors"])]
    RESULTS.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(lines) + "\n")
    print("\n" + table + "\n")
    print("\n".join(lines[lines.index("## Findings"):]))
    print(f"\nwritten: {REPORT}")
    return 1 if found else 0


def replay(args) -> int:
    """Run one input in this process and print what happened, traceback included."""
    H, R, S = _import_fuzz()
    readers = R.readers()
    if args.replay:
        info = json.loads((Path(args.replay) / "case.json").read_text())
        reader, index, seed = info["reader"], info["index"], info["seed"]
    else:
        reader, index, seed = args.readers[0], args.index, args.seed
    case = make_case(readers, S, seed, reader, index)
    harness = H.Harness(readers)
    try:
        harness.warm_up([reader], n=2)
        out = harness.run(case)
    finally:
        harness.close()
    print(f"{reader} input {index} (seed {seed!r}): {case.entry} {json.dumps(case.args, default=str)[:300]}")
    print(f"note: {case.note}")
    print(f"status: {out.status}; {out.error}")
    print(f"time {out.seconds:.3f} s, peak {out.peak / 2**20:.1f} MiB (bound {out.bound / 2**20:.1f} MiB)")
    for f in out.findings:
        print(f"finding: {f}")
    if out.traceback:
        print(out.traceback)
    folder = save_reproducer(case, reader, index, seed, out)
    print(f"files: {folder}")
    return 1 if out.findings else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=100_000, help="inputs per reader (default 100000)")
    parser.add_argument("--readers", default=None,
                        help="comma-separated readers (default: all): "
                             "idx,gz,cifar-bin,cifar-py,npz,image,folder,tar,model,cli")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--seed", default="0", help="run seed (default 0)")
    parser.add_argument("--chunk", type=int, default=200, help="inputs per task (default 200)")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also trace Python/numpy allocations (sees untouched np.empty "
                             "buffers; 2-4x slower)")
    parser.add_argument("--progress", type=float, default=30.0, help="seconds between progress lines")
    parser.add_argument("--replay", default=None, metavar="DIR",
                        help="run one saved input (a bench/results/fuzz/<reader>-<index> folder)")
    parser.add_argument("--index", type=int, default=None,
                        help="run input INDEX of the (single) reader in --readers")
    args = parser.parse_args(argv)
    _, R, _ = _import_fuzz()
    all_names = list(R.READER_NAMES)
    args.readers = all_names if args.readers is None else [s.strip() for s in args.readers.split(",") if s.strip()]
    unknown = sorted(set(args.readers) - set(all_names))
    if unknown:
        parser.error(f"unknown reader(s) {unknown}; choose from {all_names}")
    if args.inputs < 1 or args.jobs < 1 or args.chunk < 1:
        parser.error("--inputs, --jobs and --chunk must be >= 1")
    if args.replay or args.index is not None:
        if args.index is not None and len(args.readers) != 1:
            parser.error("--index needs exactly one reader in --readers")
        return replay(args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
