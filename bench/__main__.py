"""Run the benchmark sections in one process and write ``bench/results/bench.md``.

    python -m bench                      # every section, full MNIST
    python -m bench --only knn --quick   # one section, a small subset

Each section is a module ``bench/<name>.py`` with ``run(data, quick) -> list[dict]``
returning table rows; a row's ``section`` key groups the table.

The fuzz run of the readers is separate (it needs no MNIST and runs for tens of
minutes): ``python -m bench.fuzz``, see ``bench/fuzz.py``.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time

from .common import RESULTS, load_mnist, markdown_table, mnist_root

SECTIONS = ("datasets", "knn", "linear", "cv", "scale", "distributed", "features", "serve")
# run only when named: ImageNet-size data, an hour or more on 2 cores (bench/scale.py)
ON_REQUEST = ("scale",)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(s for s in SECTIONS if s not in ON_REQUEST),
                        help="comma-separated sections to run (default: all but "
                             f"{', '.join(ON_REQUEST)})")
    parser.add_argument("--quick", action="store_true",
                        help="a small subset, to check that the harness works")
    args = parser.parse_args(argv)
    names = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    if not mnist_root().is_dir():
        print(f"bench: MNIST not found at {mnist_root()} (set IMGCLS_BENCH_MNIST)", file=sys.stderr)
        return 2
    data = load_mnist()
    out = [f"# imgcls benchmark — {time.strftime('%Y-%m-%d %H:%M')}",
           f"machine: {platform.machine()}, {platform.python_version()}, "
           f"{__import__('os').cpu_count()} cores; quick={args.quick}", ""]
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        rows = module.run(data, args.quick)
        table = markdown_table(rows)
        out += [f"## {name}", "", table, ""]
        print(f"\n## {name}\n\n{table}\n", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / ("bench-quick.md" if args.quick else "bench.md")
    path.write_text("\n".join(out))
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
