"""Optional dependencies, imported when a capability runs: a missing one is an ImportError (one CLI line) that
names the extra that installs it, e.g. ``pip install 'harrier-embed[serve]'``."""

from __future__ import annotations

import importlib
from types import ModuleType

#: the distribution to install (PyPI's ``harrier`` is another project); the import name is ``harrier``
DIST = "harrier-embed"


def missing_extra(what: str, extra: str, err: ImportError) -> ImportError:
    """The ImportError to raise for ``err`` (a failed import of an optional dependency of ``what``)."""
    name = (err.name or str(err)).split(".")[0]  # the package to install, not its submodule
    return ImportError(f"{what} needs {name}, which is not installed: pip install '{DIST}[{extra}]'")


def require(module: str, extra: str, what: str) -> ModuleType:
    """``import module``, or an ImportError naming the missing package and ``extra`` (``what`` says who needs it).

    A harrier module may be given too (``harrier.serve.server``): a dependency it imports that is missing is
    reported the same way.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise missing_extra(what, extra, err) from err
