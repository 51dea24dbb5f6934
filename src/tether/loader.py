"""Finding the user's `Tether` app from `module:attribute` or a path to a .py file."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from tether.app import Tether
from tether.errors import ConfigurationError


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
    spec.loader.exec_module(module)
    return module


def load_app(target: str) -> Tether:
    """`pkg.module:app`, `pkg.module` (its one Tether instance), or `path/to/file.py[:app]`."""
    ref, _, attribute = target.partition(":")
    if ref.endswith(".py") or "/" in ref:
        module = _import_path(Path(ref))
    else:
        sys.path.insert(0, str(Path.cwd()))
        try:
            module = importlib.import_module(ref)
        except ModuleNotFoundError as exc:
            raise ConfigurationError(f"cannot import {ref!r}: {exc}") from None
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
