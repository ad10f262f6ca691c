"""``imgcls run``: the whole study on one data set, and its report.

    imgcls run                                   # digits, all three models, ./imgcls-report
    imgcls run --dataset mnist --root ../shared/data/mnist --out mnist-report
    imgcls run --models knn --folds 10 --json    # machine-readable results on stdout
    imgcls run --dataset folder:cifar --features pixels,hog+color,kmeans

Stage lines go to stderr with the seconds since the start (``[  12.3s] kNN:
5-fold cross-validation ...``): styled, with progress bars, on a terminal;
plain lines in pipes and logs, so a long run is visible there too.  stdout
holds only the table (or, with ``--json``, only the JSON document).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run", help="choose hyperparameters, evaluate kNN / linear SVM / softmax, write a report",
        description="The whole study: load a data set; choose kNN's k, metric and weighting by "
                    "k-fold cross-validation and the linear models' learning rate, "
                    "regularisation and epochs on a validation split (training split only); "
                    "refit the chosen models on the whole training split; evaluate the test "
                    "split once; write report.html, results.json and the model files.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="digits", metavar="NAME",
                   help="digits (default, bundled), mnist, fashion-mnist, cifar10, cifar100, "
                        "folder:PATH or npz:PATH")
    p.add_argument("--root", default=None, metavar="DIR", help="where the data set's files lie")
    p.add_argument("--download", action="store_true", help="download the data set if missing")
    p.add_argument("--models", default="knn,svm,softmax", metavar="LIST",
                   help="comma-separated models among knn, svm, softmax (default: all)")
    p.add_argument("--folds", type=int, default=5, help="folds of the kNN cross-validation")
    p.add_argument("--seed", type=int, default=0, help="seed of every split and fit")
    p.add_argument("--out", default="imgcls-report", metavar="DIR",
                   help="output directory (default: ./imgcls-report)")
    p.add_argument("--json", action="store_true",
                   help="print results.json to stdout instead of the table")
    p.add_argument("--features", default=None, metavar="LIST",
                   help="compare feature sets: comma-separated names among pixels, hog, color, "
                        "kmeans, joined with '+' to concatenate (e.g. pixels,hog+color,kmeans); "
                        "each is fitted on the training part of one validation split "
                        "(80/20, which then chooses every model), never on validation or "
                        "test images. Default: the samples as they are")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the cross-validation searches and grid-search fits on a Dask "
                        "cluster: tcp://HOST:8786 (see `dask scheduler`), or local:N for N "
                        "worker processes on this machine; same results as a local run "
                        "(pip install 'imgcls[distributed]')")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from rich.console import Console

    from ..pipeline import run_study

    from .._progress import progress_enabled

    log = stage_logger(progress_enabled(), time.perf_counter())
    client = None
    if args.scheduler is not None:
        from ..distributed import check_workers, connect

        client = connect(args.scheduler)
    try:
        if client is not None:
            check_workers(client)
            log(f"Dask cluster at {client.scheduler.address}: "
                f"{len(client.nthreads())} workers")
        results = run_study(args.dataset, root=args.root, download=args.download,
                            models=args.models, folds=args.folds, seed=args.seed,
                            out=args.out, log=log, client=client, features=args.features)
    finally:
        if client is not None:
            client.close()
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print_summary(results, Console(highlight=False))
    return 0


def stage_logger(terminal: bool, t_start: float):
    """``log(msg)`` writing ``[  12.3s] msg`` (seconds since ``t_start``) to stderr.

    On a terminal the line goes through rich (dimmed time stamp, drawn above any
    progress bar); elsewhere it is a plain line, flushed at once, so logs of a
    long run show each stage as it starts.
    """
    if terminal:
        from rich.console import Console
        from rich.markup import escape

        err = Console(stderr=True, highlight=False)
        return lambda msg: err.print(f"[dim]\\[{time.perf_counter() - t_start:7.1f}s][/dim] "
                                     f"{escape(msg)}")

    def plain(msg: str) -> None:
        sys.stderr.write(f"[{time.perf_counter() - t_start:7.1f}s] {msg}\n")
        sys.stderr.flush()
    return plain


def print_summary(results: dict, console) -> None:
    """The results table: one row per model, and the report path."""
    from rich.table import Table

    ds = results["dataset"]
    table = Table(title=f"{ds.get('name', 'data set')}: {ds.get('n_train')} training / "
                        f"{ds.get('n_test')} test samples, {ds.get('n_classes')} classes")
    for col, justify in (("model", "left"), ("chosen hyperparameters", "left"),
                         ("test top-1", "right"), ("test top-5", "right"),
                         ("fit s", "right"), ("predict s", "right")):
        table.add_column(col, justify=justify)
    for name, m in results["models"].items():
        params = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in m["params"].items())
        table.add_row(name, params, f"{m['test_top1']:.4f}", f"{m['test_top5']:.4f}",
                      f"{m['fit_time']:.2f}", f"{m['predict_time']:.2f}")
    console.print(table)
    # plain print: a path must never be wrapped or restyled by the terminal width
    print(f"report: {results['report']}", flush=True)
