"""The testbed's exceptions: every failure the user can cause or meet is one of these."""

from __future__ import annotations


class TestbedError(Exception):
    """Base of every error the testbed raises on purpose; the CLI turns it into exit code 2."""

    __test__ = False  # not a pytest test class, despite the name


class ScenarioError(TestbedError):
    """A scenario, topology or targets file is wrong.

    Args:
        message: What is wrong and, where possible, how to fix it.
        file: The file it was found in, if known.
        line: The 1-based line in that file, if known.
        path: The field path, e.g. ``sites[2].access``.
    """

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 path: str | None = None) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.path = path
        super().__init__(self._located())

    def _located(self) -> str:
        where = self.file or ""
        if self.file and self.line:
            where = f"{self.file}:{self.line}"
        head = " ".join(part for part in (where, self.path) if part)
        return f"{head}: {self.message}" if head else self.message


class EngineError(TestbedError):
    """An engine could not run a valid scenario (e.g. a simulation that cannot finish)."""


class CapabilityError(TestbedError):
    """The machine lacks something a run needs (root, a kernel feature, a tool)."""


def mark_kept(exc: BaseException, folder: object) -> None:
    """Record on ``exc`` (any error or interrupt that ended a run) the partial folder kept for a resume."""
    exc.kept_folder = folder  # type: ignore[attr-defined]


def kept_folder(exc: BaseException) -> object | None:
    """The partial folder :func:`mark_kept` recorded on ``exc``, if any."""
    return getattr(exc, "kept_folder", None)
