"""Finding the user's `Tether` app from `module:attribute` or a path to a .py file.

An app that fails to import is a ConfigurationError that says where, in one line: `app.py line 3:
SyntaxError: invalid syntax`, or `importing app.py raised KeyError: 'x' (app.py line 7)`. The
original exception is its cause, for a full traceback on request."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import sysconfig
import traceback
from pathlib import Path
from types import ModuleType

from tether.app import Tether
from tether.errors import ConfigurationError

_PACKAGE = Path(__file__).resolve().parent


def shown_path(filename: str) -> str:
    """A file as the user would write it: relative to the working directory when inside it."""
    path = Path(filename)
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return filename


def _is_users(filename: str) -> bool:
    """Code of the user's, not of Python, an installed package or Tether."""
    if filename.startswith("<"):
        return False
    path = Path(filename).resolve()
    roots = [_PACKAGE, *(Path(sysconfig.get_path(name)).resolve()
                         for name in ("stdlib", "platstdlib", "purelib", "platlib"))]
    return not any(path.is_relative_to(root) for root in roots)


def import_failure(shown: str, exc: Exception) -> ConfigurationError:
    """One line for an app that raised while being imported (raise it `from exc`)."""
    if isinstance(exc, SyntaxError):  # the file (or one it imports) is not valid Python
        where = shown_path(exc.filename) if exc.filename else shown
        line = f" line {exc.lineno}" if exc.lineno else ""
        error = ConfigurationError(f"{where}{line}: {type(exc).__name__}: {exc.msg}")
    else:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if _is_users(f.filename)]
        at = f" ({shown_path(frames[-1].filename)} line {frames[-1].lineno})" if frames else ""
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        error = ConfigurationError(f"importing {shown} raised {text}{at}")
    return error


def _import_path(path: Path) -> ModuleType:
    if not path.is_file():
        raise ConfigurationError(f"no such file: {path}")
    name = path.stem
    sys.path.insert(0, str(path.parent.resolve()))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]  # as a failed `import` leaves nothing behind
        raise import_failure(os.fspath(path), exc) from exc
    return module


def _import_module(ref: str) -> ModuleType:
    sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(ref)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (ref == exc.name or ref.startswith(exc.name + ".")):
            raise ConfigurationError(f"cannot import {ref!r}: {exc}") from None
        raise import_failure(ref, exc) from exc  # the module imports something missing
    except Exception as exc:
        raise import_failure(ref, exc) from exc


def load_app(target: str) -> Tether:
    """`pkg.module:app`, `pkg.module` (its one Tether instance), or `path/to/file.py[:app]`."""
    ref, _, attribute = target.partition(":")
    is_path = ref.endswith(".py") or "/" in ref
    module = _import_path(Path(ref)) if is_path else _import_module(ref)
    if attribute:
        app = getattr(module, attribute, None)
        if not isinstance(app, Tether):
            raise ConfigurationError(f"{target!r} is not a Tether app")
        return app
    apps = [v for v in vars(module).values() if isinstance(v, Tether)]
    if len(apps) != 1:
        raise ConfigurationError(
            f"{ref!r} holds {len(apps)} Tether apps; name one as {ref}:ATTRIBUTE")
    return apps[0]
