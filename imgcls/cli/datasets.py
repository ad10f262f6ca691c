"""``imgcls datasets``: list, describe, download and verify data sets.

    imgcls datasets list
    imgcls datasets info mnist --root ../shared/data/mnist
    imgcls datasets info folder:./pets --image-size 64x64 --json
    imgcls datasets download cifar10
    imgcls datasets verify mnist --root ../shared/data/mnist
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "datasets", help="list, describe, download and verify data sets",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="datasets_command", metavar="ACTION")
    sub.required = True

    def common(q, root=True):
        if root:
            q.add_argument("--root", default=None, metavar="DIR",
                           help="folder holding the data set's files (default: $IMGCLS_DATA "
                                "or the user cache dir)")
        q.add_argument("--json", action="store_true", help="print JSON instead of tables")

    q = sub.add_parser("list", help="the known data set names")
    common(q, root=False)
    q.set_defaults(func=_list)

    q = sub.add_parser("info", help="load a data set and print its summary")
    q.add_argument("name", metavar="NAME")
    common(q)
    q.add_argument("--download", action="store_true", help="download the files if missing")
    q.add_argument("--label", choices=("fine", "coarse"), default=None,
                   help="cifar100: fine (100) or coarse (20) classes")
    q.add_argument("--image-size", default=None, metavar="HxW",
                   help="folder: resize images to H x W (e.g. 32x32)")
    q.add_argument("--mode", choices=("RGB", "L"), default=None, help="folder: colour mode")
    q.add_argument("--skip-bad", action="store_true",
                   help="folder: skip corrupt images (listed) instead of stopping")
    q.set_defaults(func=_info)

    q = sub.add_parser("download", help="download a data set (SHA-256 verified) and check it loads")
    q.add_argument("name", metavar="NAME")
    common(q)
    q.set_defaults(func=_download)

    q = sub.add_parser("verify", help="check the SHA-256 of a data set's files")
    q.add_argument("name", metavar="NAME")
    common(q)
    q.set_defaults(func=_verify)


def _console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _options(args) -> dict:
    from ..errors import ConfigError

    options = {}
    if args.label:
        options["label"] = args.label
    if args.mode:
        options["mode"] = args.mode
    if args.skip_bad:
        options["on_error"] = "skip"
    if args.image_size:
        try:
            h, w = (int(v) for v in args.image_size.lower().split("x"))
        except ValueError:
            raise ConfigError(f"--image-size must look like 32x32, got {args.image_size!r}") from None
        options["image_size"] = (h, w)
    return options


def _list(args) -> int:
    from ..datasets import dataset_info, list_datasets

    rows = [dataset_info(n.replace(":PATH", ":x")) | {"name": n} for n in list_datasets()]
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    from rich.table import Table

    table = Table(title="imgcls data sets", title_justify="left")
    table.add_column("name")
    table.add_column("download")
    table.add_column("description")
    for r in rows:
        table.add_row(r["name"], "yes" if r["downloadable"] else "-", r["description"])
    _console().print(table)
    return 0


def print_summary(summary: dict, console, skipped=()) -> None:
    """The summary of :meth:`Dataset.summary` as text and a per-class table."""
    from rich.table import Table

    shape = summary["image_shape"]
    kind = (f"images {shape[0]}x{shape[1]}x{shape[2]}" if shape
            else f"{summary['n_features']} features")
    console.print(f"[bold]{summary['name']}[/bold]: {summary['n_train']} train / "
                  f"{summary['n_test']} test, {kind} {summary['dtype']}, "
                  f"{summary['n_classes']} classes")
    console.print(f"source: {summary['source']}")
    table = Table(title_justify="left")
    for col, justify in (("label", "right"), ("class", "left"), ("train", "right"),
                         ("test", "right")):
        table.add_column(col, justify=justify)
    counts = summary["counts"]
    for i, name in enumerate(summary["classes"]):
        table.add_row(str(i), name, str(counts["train"][i]), str(counts["test"][i]))
    table.add_section()
    table.add_row("", "total", str(summary["n_train"]), str(summary["n_test"]))
    console.print(table)
    for path, reason in skipped:
        console.print(f"skipped: {path}: {reason}")


def _info(args) -> int:
    from ..datasets import load_dataset

    ds = load_dataset(args.name, root=args.root, download=args.download, **_options(args))
    summary = ds.summary()
    if args.json:
        summary["skipped"] = [list(s) for s in ds.skipped]
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print_summary(summary, _console(), ds.skipped)
    return 0


def _download(args) -> int:
    from ..datasets import load_dataset
    from ..datasets.base import get_spec
    from ..errors import ConfigError

    spec, _ = get_spec(args.name)
    if not spec.downloadable:
        raise ConfigError(f"{args.name}: nothing to download (it is bundled or local)")
    # Loading after the download parses every file: a download that "succeeds" but
    # cannot be read is reported now, not at the first experiment.
    ds = load_dataset(args.name, root=args.root, download=True)
    if args.json:
        json.dump(ds.summary(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print_summary(ds.summary(), _console())
    return 0


def _verify(args) -> int:
    from ..datasets.verify import verify_dataset

    rows = verify_dataset(args.name, root=args.root)
    bad = [r for r in rows if r["status"] == "mismatch"]
    present = [r for r in rows if r["status"] != "missing"]
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        from rich.table import Table

        table = Table(title=f"{args.name}: SHA-256 check", title_justify="left")
        for col in ("file", "status", "detail"):
            table.add_column(col, overflow="fold")
        for r in rows:
            style = {"ok": "green", "mismatch": "bold red"}.get(r["status"], "dim")
            table.add_row(r["path"] or r["file"], f"[{style}]{r['status']}[/{style}]", r["detail"])
        _console().print(table)
    if bad or not present:
        # The table above is the result; the exit status and this one line (in
        # the CLI's error format) say that the check failed.
        from ..datasets.base import get_spec
        from ..datasets.locations import resolve_root

        folder = resolve_root(get_spec(args.name)[0].name, args.root)
        print(f"imgcls: error: {args.name}: {len(bad)} file(s) failed the SHA-256 check in "
              f"{folder}" if bad else f"imgcls: error: {args.name}: no file of this data set "
              f"was found in {folder}", file=sys.stderr)
        return 1
    return 0
