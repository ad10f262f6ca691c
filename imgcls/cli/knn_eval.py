"""``imgcls knn-eval``: the weighted kNN evaluation of features (DINO), at fixed settings.

    imgcls knn-eval --dataset features:feats/ --k 10,20,100,200 --temperature 0.07
    imgcls knn-eval --dataset features:feats/ --out eval --json
    imgcls knn-eval --dataset features:feats/ --algorithm ivf --nlist 4096 --nprobe 64

Cosine similarity, the k most similar training vectors vote ``exp(s / T)``, one
search at the largest k on the test split and every k scored from it; top-1
and top-5 per k in the terminal, ``OUT/results.json`` and ``OUT/report.html``.
See :mod:`imgcls.neighbors.dino` for the protocol and how it matches DINO's.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import ConfigError

__all__ = ["register", "parse_ks"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "knn-eval", help="DINO's weighted kNN evaluation of features: top-1/top-5 for every k",
        description="The weighted kNN evaluation of self-supervised features (DINO, Caron et al. "
                    "2021): cosine similarity, the k most similar training vectors vote "
                    "exp(similarity / T) for their class; one search at the largest k on the test "
                    "split, every k scored from it. Evaluation at fixed settings, not model "
                    "selection: every k is scored on the test split.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, metavar="NAME",
                   help="features:DIR (X_train.npy, y_train.npy, X_test.npy, y_test.npy, "
                        "memory-mapped), npz:PATH, or any data set name")
    p.add_argument("--root", default=None, metavar="DIR", help="where the data set's files lie")
    p.add_argument("--k", default="10,20,100,200", metavar="LIST",
                   help="comma-separated k to score (default: 10,20,100,200, as DINO)")
    p.add_argument("--temperature", type=float, default=0.07, metavar="T",
                   help="temperature of the votes exp(similarity / T) (default 0.07, as DINO)")
    p.add_argument("--algorithm", default="exact", choices=("exact", "ivf", "hnsw"),
                   help="exact search (default), or approximate through faiss "
                        "(pip install imgcls[ann]); then recall@k against an exact search is "
                        "reported too")
    p.add_argument("--nlist", type=int, default=None, help="ivf: inverted lists")
    p.add_argument("--nprobe", type=int, default=None, help="ivf: lists searched per query")
    p.add_argument("--hnsw-m", type=int, default=None, help="hnsw: links per node")
    p.add_argument("--ef-search", type=int, default=None,
                   help="hnsw: candidate list length while searching")
    p.add_argument("--working-memory", type=float, default=None, metavar="MiB",
                   help="MiB for temporary blocks of the search (default: the global setting)")
    p.add_argument("--n-jobs", type=int, default=None, metavar="N",
                   help="threads of the search (default: all cores)")
    p.add_argument("--out", default="imgcls-knn-eval", metavar="DIR",
                   help="output directory for results.json and report.html "
                        "(default: ./imgcls-knn-eval)")
    p.add_argument("--json", action="store_true",
                   help="print results.json to stdout instead of the table")
    p.set_defaults(func=_run)


def parse_ks(text: str) -> list[int]:
    """``"10,20,100"`` -> ``[10, 20, 100]``; each must be a positive integer."""
    ks = []
    for part in text.split(","):
        part = part.strip()
        try:
            k = int(part)
        except ValueError:
            raise ConfigError(f"--k {text!r}: expected comma-separated positive integers, "
                              f"e.g. 10,20,100,200; {part!r} is not an integer") from None
        if k < 1:
            raise ConfigError(f"--k {text!r}: every k must be >= 1, got {k}")
        ks.append(k)
    return ks


def _ann_params(args) -> dict:
    given = {"nlist": args.nlist, "nprobe": args.nprobe, "hnsw_m": args.hnsw_m,
             "ef_search": args.ef_search}
    given = {key: value for key, value in given.items() if value is not None}
    if given and args.algorithm == "exact":
        names = ", ".join("--" + key.replace("_", "-") for key in given)
        raise ConfigError(f"{names} only apply to --algorithm ivf or hnsw")
    return given


def _run(args) -> int:
    from rich.console import Console

    from ..datasets import load_dataset
    from ..neighbors.dino import knn_evaluate
    from ..report import RESULTS_NAME
    from ..report.knn_eval import write_knn_eval_report

    ks = parse_ks(args.k)
    ann = _ann_params(args)
    ds = load_dataset(args.dataset, root=args.root)
    evaluation = knn_evaluate(ds.X_train, ds.y_train, ds.X_test, ds.y_test, ks,
                              args.temperature, algorithm=args.algorithm, ann_params=ann,
                              working_memory=args.working_memory, n_jobs=args.n_jobs,
                              progress=False if args.json else None)
    summary = ds.summary()
    report = write_knn_eval_report(args.out, summary, evaluation)
    if args.json:
        with open(report.parent / RESULTS_NAME, encoding="utf-8") as f:
            sys.stdout.write(f.read())
        return 0
    print_table(summary, evaluation, Console(highlight=False))
    # plain print: a path must never be wrapped or restyled by the terminal width
    print(f"report: {report}", flush=True)
    return 0


def print_table(dataset: dict, evaluation: dict, console) -> None:
    """Top-1/top-5 (and recall@k) per k, under the fixed-settings note."""
    from rich.table import Table

    params = evaluation["params"]
    console.print(f"{dataset.get('name', 'data set')}: {evaluation['n_train']} training / "
                  f"{evaluation['n_test']} test vectors, {evaluation['n_classes']} classes; "
                  f"cosine similarity, votes exp(s / T), T={params['temperature']:g}, "
                  f"{params['algorithm']} search")
    table = Table()
    approximate = any("recall" in r for r in evaluation["rows"])
    for col in ("k", "test top-1", "test top-5") + (("recall@k",) if approximate else ()):
        table.add_column(col, justify="right")
    for r in evaluation["rows"]:
        table.add_row(str(r["k"]), f"{r['top1']:.4f}", f"{r['top5']:.4f}",
                      *((f"{r['recall']:.4f}",) if approximate else ()))
    console.print(table)
    console.print(evaluation["note"], style="bold")
