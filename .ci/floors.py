"""The dependency floors declared in pyproject.toml, as pins CI can install.

pyproject.toml is the one source of truth: each runtime dependency and each
dependency of the ``test`` extra must state a lower bound (``>=``, ``~=`` or
``==``), and CI installs exactly that version of each and runs the whole suite.
Raising a floor in pyproject.toml therefore changes what CI tests, with no
second list to keep in step.

Usage (python >= 3.11, or 3.10 with tomli, which pytest brings there)::

    python .ci/floors.py constraints > floors.txt   # "name==floor" lines, for pip -c
    python .ci/floors.py check                      # installed == floor, or exit 1

``check`` runs in the environment under test and compares what
``importlib.metadata`` reports with the floors; any package that is missing or
at another version fails it (a silently different resolution would otherwise
test something other than the declared minimum).
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
# The extras whose dependencies CI installs (README: pip install -e '.[test]').
EXTRAS = ("test",)

# PEP 508 without URLs: name, optional [extras], specifiers, optional ; marker.
_REQUIREMENT = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*"
    r"(?:\[[^\]]*\])?\s*(?P<specs>[^;]*?)\s*(?:;\s*(?P<marker>.+))?$")
_SPECIFIER = re.compile(r"^(?P<op>~=|===|==|!=|<=|>=|<|>)\s*(?P<version>\S+)$")
# A version's release segment (1.24.0) and whatever follows it (.post1, rc1, ...).
_VERSION = re.compile(r"^v?(?P<release>\d+(?:\.\d+)*)(?P<rest>.*)$")


def canonical(name: str) -> str:
    """The PEP 503 normalised form of a distribution name (Pillow -> pillow)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def floor_of(requirement: str) -> tuple[str, str, str | None]:
    """``(canonical name, lower bound, marker or None)`` of one requirement.

    Raises
    ------
    ValueError
        The requirement cannot be parsed, or states no lower bound.
    """
    m = _REQUIREMENT.match(requirement)
    if m is None:
        raise ValueError(f"cannot parse the requirement {requirement!r}")
    lower = []
    for spec in filter(None, (s.strip() for s in m["specs"].split(","))):
        s = _SPECIFIER.match(spec)
        if s is None:
            raise ValueError(f"cannot parse the specifier {spec!r} in {requirement!r}")
        if s["op"] in (">=", "~=", "==", "===") and "*" not in s["version"]:
            lower.append(s["version"])
    if len(lower) != 1:
        raise ValueError(f"{requirement!r} must state exactly one lower bound (>=, ~= or ==) "
                         "so that CI can install and test it")
    return canonical(m["name"]), lower[0], m["marker"]


def floors(pyproject: Path = PYPROJECT, extras: tuple[str, ...] = EXTRAS) -> dict:
    """``{canonical name: (floor, marker)}`` for the dependencies and ``extras``.

    Raises
    ------
    ValueError
        A requirement has no lower bound, or two requirements of one package
        state different floors.
    """
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    requirements = list(project.get("dependencies", []))
    for extra in extras:
        if extra not in project.get("optional-dependencies", {}):
            raise ValueError(f"{pyproject}: no optional-dependencies group {extra!r}")
        requirements += project["optional-dependencies"][extra]
    out: dict[str, tuple[str, str | None]] = {}
    for requirement in requirements:
        name, floor, marker = floor_of(requirement)
        if name in out and out[name] != (floor, marker):
            raise ValueError(f"{pyproject}: {name} has two different floors, "
                             f"{out[name][0]} and {floor}")
        out[name] = (floor, marker)
    return out


def same_version(installed: str, floor: str) -> bool:
    """Whether ``installed`` is the release ``floor`` names (1.24 == 1.24.0).

    A post-, pre- or dev-release of the floor is a different version, as it is
    for pip's ``==`` (``==1.8`` does not admit 1.8.0.post1).
    """
    a, b = _VERSION.match(installed.strip()), _VERSION.match(floor.strip())
    if a is None or b is None:
        return installed.strip() == floor.strip()
    ra = [int(x) for x in a["release"].split(".")]
    rb = [int(x) for x in b["release"].split(".")]
    width = max(len(ra), len(rb))
    ra += [0] * (width - len(ra))
    rb += [0] * (width - len(rb))
    return ra == rb and a["rest"].lower() == b["rest"].lower()


def write_constraints(out=sys.stdout) -> None:
    """Print one ``name==floor`` line (with its marker, if any) per dependency."""
    for name, (floor, marker) in sorted(floors().items()):
        out.write(f"{name}=={floor}" + (f"; {marker}" if marker else "") + "\n")


def _applies_here(marker: str) -> bool:
    """Whether an environment marker holds here (packaging comes with pytest)."""
    from packaging.markers import Marker

    return Marker(marker).evaluate()


def check() -> int:
    """Print floor and installed version per dependency; 1 if any differ or is missing."""
    installed = {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    bad = 0
    print(f"{'package':<16} {'floor':<10} {'installed':<12}")
    for name, (floor, marker) in sorted(floors().items()):
        have = installed.get(name)
        if marker and not _applies_here(marker):
            print(f"{name:<16} {floor:<10} {have or '-':<12} not required here ({marker})")
            continue
        ok = have is not None and same_version(have, floor)
        bad += not ok
        print(f"{name:<16} {floor:<10} {have or 'MISSING':<12} {'ok' if ok else 'NOT THE FLOOR'}")
    if bad:
        print(f"{bad} package(s) not at their declared floor: this environment does not "
              "test the minimum versions pyproject.toml promises", file=sys.stderr)
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["constraints", "check"])
    args = parser.parse_args(argv)
    if args.command == "constraints":
        write_constraints()
        return 0
    return check()


if __name__ == "__main__":
    sys.exit(main())
