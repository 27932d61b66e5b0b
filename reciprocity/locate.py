"""Load a user's object by name: ``MODULE:NAME`` or ``path/to/file.py:NAME``.

Used wherever the command line or a configuration names something the user wrote: a learner
(``--algo mylearners:Hill`` or ``--algo learners/hill.py:Hill``) or a policy
(``reciprocity evaluate --policy mypolicy.py:disc_sj``). ``NAME`` may be dotted
(``module:Outer.inner``).

A file is imported as a module of its own, named after its absolute path, once per process: the
same file named twice gives the same object, and a class defined there pickles by reference
within the process tree that loaded it (a process pool forked from it). A Ray worker or any other
fresh process loads it again from the locator, which is why locators of files are made absolute
(:func:`canonical`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

__all__ = ["canonical", "is_locator", "load_object"]


def is_locator(text: str) -> bool:
    """Whether ``text`` has the form ``MODULE:NAME`` or ``FILE.py:NAME``."""
    if not isinstance(text, str):
        return False
    head, sep, tail = text.rpartition(":")
    return bool(sep and head and tail)


def _split(locator: str, field: str) -> tuple[str, str]:
    head, sep, name = locator.rpartition(":")
    if not (sep and head and name) or not all(part.isidentifier() for part in name.split(".")):
        raise ValueError(f"{field}: {locator!r} is not MODULE:NAME or path/to/file.py:NAME")
    return head, name


def canonical(locator: str, field: str = "locator") -> str:
    """The locator with a file path made absolute (a module path is kept as it is)."""
    head, name = _split(locator, field)
    if head.endswith(".py"):
        return f"{Path(head).expanduser().resolve()}:{name}"
    return locator


def _module_of_file(path: Path, field: str):
    if not path.is_file():
        raise ValueError(f"{field}: no such file {str(path)!r}")
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    module_name = f"reciprocity_user_{path.stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"{field}: {str(path)!r} cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # before executing it: dataclasses look themselves up
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[module_name]
        raise ValueError(f"{field}: importing {str(path)!r} failed: "
                         f"{type(err).__name__}: {err}") from None
    return module


def load_object(locator: str, field: str = "locator") -> Any:
    """The object a locator names. Every failure is a ``ValueError`` naming ``field``."""
    if not isinstance(locator, str):
        raise ValueError(f"{field}: expected MODULE:NAME or path/to/file.py:NAME, got "
                         f"{locator!r}")
    head, name = _split(locator, field)
    if head.endswith(".py"):
        module = _module_of_file(Path(head).expanduser().resolve(), field)
    else:
        try:
            module = importlib.import_module(head)
        except ImportError as err:
            raise ValueError(f"{field}: cannot import module {head!r} ({err}); is it on the "
                             "Python path? A file is named as path/to/file.py:NAME") from None
        except Exception as err:
            raise ValueError(f"{field}: importing module {head!r} failed: "
                             f"{type(err).__name__}: {err}") from None
    obj: Any = module
    for part in name.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{field}: {head!r} has no {name!r}") from None
    return obj
