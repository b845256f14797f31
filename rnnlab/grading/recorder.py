"""Kernel side: record the calls an answer must not make, while it runs.

A lab declares, on an answer cell, the dotted names its answers must not call
(``cell.metadata.rnnlab.forbidden``, e.g. ``["torch.autograd.grad", "rnnlab.cells"]``). During
each proxied call of such an answer, :class:`Recorder` is the profile function of the kernel
(``sys.setprofile`` and ``threading.setprofile``) and notes every call that reaches

* a Python function or method named (matched by its code object, through ``functools.wraps``);
* a class named (any function defined in its body: ``__init__``, ``forward``, …);
* a module or package named (any Python code in its files, and C functions it exports);
* a C function or method named (``torch.lstm_cell``, ``torch._C._EngineBase.run_backward``).

Indirect calls count: an answer that calls a library function that calls a forbidden one made
that call. Removing the profile function during the call is recorded as a call of
``sys.setprofile``. Like everything in the student's kernel this is a fence against shortcuts,
not against a student who attacks the recorder with ctypes; the guide says so. Standard library
only: it runs in the kernel.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import threading
import types

__all__ = ["Recorder", "resolve", "SWITCHED_OFF"]

SWITCHED_OFF = "sys.setprofile"


def resolve(name: str):
    """The object a dotted name denotes (its longest importable module, then attributes)."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)
        return obj
    raise ImportError(f"name: expected an importable dotted name, got {name!r}")


class Recorder:
    """A context manager: the forbidden ``names`` called while it is active, in :attr:`hits`.

    A name that cannot be resolved in the kernel (a module not installed) is ignored.
    """

    def __init__(self, names: list[str]):
        self.hits: set[str] = set()
        self._codes: dict[types.CodeType, str] = {}
        self._files: list[tuple[str, str]] = []         # (path or directory prefix, name)
        self._modules: list[tuple[str, str]] = []       # (module name, name): C functions
        self._builtins: dict[int, tuple[object, str]] = {}
        self._methods: list[tuple[type, str, str]] = []
        self._cache: dict[types.CodeType, str | None] = {}
        self._hook = self._profile          # one bound method, so that `is` can find it again
        for name in names:
            try:
                self._add(resolve(name), name)
            except (ImportError, AttributeError):
                pass

    def _add(self, obj, name: str) -> None:
        if isinstance(obj, types.ModuleType):
            path = getattr(obj, "__file__", None)
            if path:
                path = os.path.realpath(path)
                if hasattr(obj, "__path__"):
                    path = os.path.dirname(path) + os.sep
                self._files.append((path, name))
            self._modules.append((obj.__name__, name))
        elif inspect.isclass(obj):
            for value in vars(obj).values():
                value = getattr(value, "__func__", value)
                if inspect.isfunction(value):
                    self._add(value, name)
        elif hasattr(obj, "__code__"):
            while obj is not None:
                code = getattr(obj, "__code__", None)
                if code is not None:
                    self._codes[code] = name
                obj = getattr(obj, "__wrapped__", None)
        elif isinstance(obj, types.BuiltinFunctionType) and not isinstance(
                getattr(obj, "__self__", None), (type(None), types.ModuleType)):
            self._methods.append((type(obj.__self__), obj.__name__, name))
        elif isinstance(obj, types.BuiltinFunctionType):
            self._builtins[id(obj)] = (obj, name)
        elif hasattr(obj, "__objclass__") and hasattr(obj, "__name__"):   # method descriptor
            self._methods.append((obj.__objclass__, obj.__name__, name))

    def _python(self, code: types.CodeType) -> str | None:
        if code in self._codes:
            return self._codes[code]
        if code not in self._cache:
            filename = os.path.realpath(code.co_filename) if self._files else ""
            self._cache[code] = next((name for prefix, name in self._files
                                      if filename == prefix or (prefix.endswith(os.sep)
                                                                and filename.startswith(prefix))),
                                     None)
        return self._cache[code]

    def _c(self, function) -> str | None:
        found = self._builtins.get(id(function))
        if found is not None and found[0] is function:
            return found[1]
        owner = getattr(function, "__self__", None)
        method = getattr(function, "__name__", None)
        for cls, attribute, name in self._methods:
            if method == attribute and isinstance(owner, cls):
                return name
        module = getattr(function, "__module__", None) or ""
        for prefix, name in self._modules:
            if module == prefix or module.startswith(prefix + "."):
                return name
        return None

    def _profile(self, frame, event, arg):
        if event == "call":
            hit = self._python(frame.f_code)
        elif event == "c_call":
            hit = self._c(arg)
        else:
            return
        if hit is not None:
            self.hits.add(hit)

    def __enter__(self) -> Recorder:
        threading.setprofile(self._hook)
        sys.setprofile(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        switched_off = sys.getprofile() is not self._hook
        sys.setprofile(None)
        threading.setprofile(None)
        if switched_off:
            self.hits.add(SWITCHED_OFF)
