#!/usr/bin/env python3
"""Print the runtime requirements of the project's pyproject files, minus the ones excluded.

The image build installs torch first (the CPU wheel, or the CUDA build that the GPU base
image already carries), then the remaining dependencies from this list, then the project
itself with ``--no-deps``. So pip never pulls a second torch (several GB of CUDA wheels)
because of the ``torch==`` pin in pyproject.toml, and the dependency layer stays cached
while only the source changes.

    python deploy/docker/requirements.py pyproject.toml client/pyproject.toml --exclude torch
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pip vendors the same parser
    from pip._vendor import tomli as tomllib

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(pyprojects: list[Path], exclude: set[str]) -> list[str]:
    """Dependencies of every pyproject, without excluded names and without the projects themselves."""
    projects = [tomllib.loads(path.read_text())["project"] for path in pyprojects]
    own = {canonical(project["name"]) for project in projects}
    skip = own | {canonical(name) for name in exclude}
    out: list[str] = []
    for project in projects:
        for requirement in project.get("dependencies", []):
            match = _NAME.match(requirement)
            if match is None or canonical(match.group(1)) in skip or requirement in out:
                continue
            out.append(requirement)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", nargs="+", type=Path)
    parser.add_argument("--exclude", action="append", default=[], help="distribution name to leave out")
    args = parser.parse_args(argv)
    existing = [path for path in args.pyproject if path.is_file()]
    if not existing:
        parser.error("none of the pyproject files exists")
    print("\n".join(requirements(existing, set(args.exclude))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
