"""The simulator's hot modules compiled by mypyc: built by `make install`, used only while they match the sources.

`make install` runs ``python -m sim.native``, which compiles :data:`MODULES` of ``sim/des`` (the group's event loop
and its parts, links, flows, sharing, TCP's start-up and tails) into ``des-native`` of the virtual environment, and
writes last a stamp: the digest of every source of ``sim/des`` and of the Python that built it. ``sim.des`` puts the
compiled modules first on its search path (:func:`enable`) only while that stamp matches the sources now: a module
edited since the build is never run stale, the simulator runs interpreted until the next build. Both give the same
tables to the bit (``tests/test_native.py``; benchmarks/README.md has what the compiled one saves).
``TESTBED_INTERPRETED=1`` runs the interpreted simulator whatever is built: the tests' setting (``conftest.py``), as
they patch the simulator's classes and constants, which compiled modules do not allow; ``tests/test_native.py`` runs
the compiled one in processes of its own.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

MODULES = ("state", "group", "rounds", "shortcuts", "shared", "crowd", "connections", "context", "links", "flows",
           "linkshare", "tcp", "queueing", "sharing", "overflow", "tails")
INTERPRETED_ENV = "TESTBED_INTERPRETED"
DES = Path(__file__).parent / "des"
STAMP = "stamp"


def folder() -> Path:
    """Where the build is: ``des-native`` in the environment running this (a virtual environment's own)."""
    return Path(sys.prefix) / "des-native"


def digest() -> str:
    """The digest of every source of ``sim/des``, the modules compiled, and this Python's version."""
    sha = hashlib.sha256(f"{sys.version}\n{MODULES}\n".encode())
    for path in sorted(DES.glob("*.py")):
        sha.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return sha.hexdigest()


def state() -> str:
    """``"current"`` (built from the sources as they are), ``"stale"`` (from others) or ``"missing"``."""
    stamp = folder() / STAMP
    if not stamp.is_file():
        return "missing"
    return "current" if stamp.read_text(encoding="utf-8").strip() == digest() else "stale"


def enable(des_path: list[str]) -> bool:
    """Put the compiled modules first on ``sim.des``'s search path ``des_path``, if current and not refused.

    Returns:
        Whether the compiled modules will be imported.
    """
    if os.environ.get(INTERPRETED_ENV) == "1" or state() != "current":
        return False
    sys.path.append(str(folder()))  # mypyc's library shared by the modules
    des_path.insert(0, str(folder() / "des"))
    return True


def in_use() -> bool:
    """Whether ``sim.des``'s hot modules are the compiled ones in this process."""
    from sim.des import group
    return not group.__file__.endswith(".py")


def describe() -> str:
    """One line on which simulator this process runs, and why (for ``testbed doctor``)."""
    if in_use():
        return f"simulator: compiled (mypyc, {folder()})"
    if os.environ.get(INTERPRETED_ENV) == "1":
        return f"simulator: interpreted ({INTERPRETED_ENV}=1)"
    why = {"missing": "not compiled here", "stale": "compiled from other sources",
           "current": "compiled after this process started"}[state()]
    return f"simulator: interpreted ({why}: `make install` compiles it; the same records, more slowly)"


def build() -> None:
    """Compile :data:`MODULES` into :func:`folder`, replacing any build there; the stamp written last.

    Raises:
        SystemExit: If mypyc fails (its messages say why).
    """
    from mypyc.build import mypycify
    from setuptools import setup

    target = folder()
    work = Path(tempfile.mkdtemp(prefix="des-native-", dir=target.parent))
    here = Path.cwd()
    try:
        os.chdir(work)  # (setuptools reads the project's own files from where it runs)
        sources = [str(DES / f"{name}.py") for name in MODULES]
        modules = mypycify(["--ignore-missing-imports", "--follow-imports=silent", *sources], opt_level="3",
                           target_dir=str(work / "c"))
        setup(name="des-native", ext_modules=modules, script_args=[
            "--quiet", "build_ext", "--build-lib", str(work / "lib"), "--build-temp", str(work / "temp")])
        built = work / "built"
        (built / "des").mkdir(parents=True)
        for path in (work / "lib").rglob("*.so"):
            shutil.move(path, built / ("des" if path.parent.name == "des" else "") / path.name)
        (built / STAMP).write_text(digest() + "\n", encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        built.rename(target)
    finally:
        os.chdir(here)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    build()
    sys.stdout.write(f"compiled sim/des ({len(MODULES)} modules) into {folder()}\n")
