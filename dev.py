#!/usr/bin/env python3
"""Developer entry point: everything a fresh clone needs, with only Python 3.11+ and git.

    python3 dev.py demo     set up, then run `ledgerlink demo` on SQLite and the sandboxes
    python3 dev.py test     set up, then ruff, mypy --strict and pytest (SQLite and PostgreSQL)
    python3 dev.py setup    create .venv from uv.lock (uv is installed into .tools/ if missing)
    python3 dev.py bench NAME...   run benchmarks/NAME.py (all of them without NAME)
    python3 dev.py lock     refresh uv.lock after a dependency change

Extra arguments after `test` go to pytest, e.g. `python3 dev.py test -k money`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
UV_VERSION = "0.13.8"
TYPED_SOURCES = [
    "src",
    "connectors/salesforce/src",
    "connectors/stripe/src",
    "connectors/quickbooks/src",
]

# pytest-xdist for `test`: two workers (CI has two cores; much of the suite waits on sandboxes
# and subprocesses), whole files per worker, the files with `slow` tests first (tests/conftest.py).
# `python3 dev.py test -n 0 ...` runs in one process.
PYTEST_PARALLEL = ["-n", "2", "--dist", "loadfile", "--no-loadscope-reorder"]


def run(*args: str | Path) -> None:
    """Run a command in the repository root; stop with its status when it fails."""
    print("+", " ".join(str(a) for a in args), flush=True)
    status = subprocess.call([str(a) for a in args], cwd=ROOT)
    if status != 0:
        sys.exit(status)


def uv() -> str:
    """Return a uv executable, installing the pinned version into .tools/ when none is found."""
    found = shutil.which("uv")
    if found:
        return found
    tools = ROOT / ".tools"
    exe = tools / "bin" / "uv"
    if not exe.exists():
        print(f"installing uv {UV_VERSION} into .tools/", flush=True)
        venv.EnvBuilder(with_pip=True).create(tools)
        run(
            tools / "bin" / "python",
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"uv=={UV_VERSION}",
        )
    return str(exe)


def setup(*groups: str) -> None:
    """Create or update .venv exactly from uv.lock, with every workspace package."""
    os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")
    os.environ.setdefault("UV_PYTHON", sys.executable)
    extra = [arg for group in groups for arg in ("--group", group)]
    run(uv(), "sync", "--all-packages", "--locked", *extra)
    # Bytecode written once here (what is up to date is skipped: about a second). Where
    # PYTHONDONTWRITEBYTECODE is set, as on CI images, every process (each test worker,
    # sandbox, CLI call) would otherwise compile its imports again, about 2 s of CPU each.
    sources = [".venv/lib", "src", *(str(p) for p in sorted(ROOT.glob("connectors/*/src")))]
    subprocess.call(
        [str(venv_bin("python")), "-m", "compileall", "-q", "-j", "0", *sources],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )


def venv_bin(name: str) -> Path:
    """Path of an executable inside .venv."""
    return ROOT / ".venv" / "bin" / name


def main(argv: list[str]) -> None:
    """Dispatch the sub-command."""
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(__doc__)
        return
    command, rest = argv[0], argv[1:]
    if command == "lock":
        run(uv(), "lock")
        return
    setup(*(["bench"] if command == "bench" else []))
    if command == "setup":
        return
    if command == "demo":
        run(venv_bin("ledgerlink"), "demo", *rest)
    elif command == "test":
        run(venv_bin("ruff"), "check", ".")
        run(venv_bin("ruff"), "format", "--check", ".")
        run(venv_bin("mypy"), *TYPED_SOURCES)
        run(venv_bin("pytest"), *PYTEST_PARALLEL, *rest)
    elif command == "bench":
        names = rest or sorted(
            p.stem
            for p in (ROOT / "benchmarks").glob("*.py")
            if not p.stem.startswith("_") and not p.stem.endswith("_common")  # shared helpers
        )
        for name in names:
            run(venv_bin("python"), ROOT / "benchmarks" / f"{name.removesuffix('.py')}.py")
    else:
        sys.exit(f"unknown command {command!r}; see `python3 dev.py --help`")


if __name__ == "__main__":
    main(sys.argv[1:])
