"""Plain-data codec between the grader and a student kernel, and the kernel side of a call.

Values cross the process boundary as JSON, never as pickles. The accepted *plain data* is:
``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``, lists, tuples, dicts (keys plain),
NumPy scalars (sent as Python numbers), NumPy arrays and torch tensors of numeric or bool
dtype. An array or tensor of shape ``(d_1, …, d_n)`` travels as::

    {"__tensor__": {"dtype": "float32", "shape": [d_1, …, d_n], "data": "<base64 bytes>"}}

(``__ndarray__`` for NumPy), raw little-endian bytes, so values are bit-exact. Anything else —
an object with a custom ``__eq__``, a module, a closure, a subclass of ``str`` — is rejected with
``TypeError``. Decoding rebuilds fresh built-in objects, so nothing the student defined survives.

This module is imported inside the student's kernel too (:func:`serve`), so it imports only the
standard library; torch and NumPy are used only if already imported.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import sys

__all__ = ["encode", "decode", "dumps", "loads", "serve", "reset", "MAX_DEPTH", "MAX_ITEMS"]

MAX_DEPTH = 32
MAX_ITEMS = 2**18
"""The most list/dict items a decoded text may hold (a small text of empty lists would
otherwise cost the grader far more memory and time than its size); more data travels as a
tensor or an array."""
_TORCH_DTYPES = (
    "bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16", "float32",
    "float64", "complex64", "complex128",
)
_NUMPY_KINDS = "biufc"


def _tensor(value):
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(value, torch.Tensor):
        return None
    name = str(value.dtype).removeprefix("torch.")
    if name not in _TORCH_DTYPES or value.layout != torch.strided:
        raise TypeError(f"not plain data: tensor of dtype {value.dtype}, layout {value.layout}")
    plain = value.detach().to("cpu").as_subclass(torch.Tensor).contiguous()
    # read the bytes directly: .numpy() would leave the caller's storage unresizable
    raw = ctypes.string_at(plain.data_ptr(), plain.numel() * plain.element_size()) \
        if plain.numel() else b""
    return {"__tensor__": {"dtype": name, "shape": list(plain.shape),
                           "data": base64.b64encode(raw).decode("ascii")}}


def _array(value):
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return NotImplemented
    if isinstance(value, numpy.generic):
        if value.dtype.kind not in _NUMPY_KINDS:
            raise TypeError(f"not plain data: numpy scalar of dtype {value.dtype}")
        return value.item()
    if type(value) is not numpy.ndarray:
        return NotImplemented
    if value.dtype.kind not in _NUMPY_KINDS:
        raise TypeError(f"not plain data: array of dtype {value.dtype}")
    plain = numpy.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<"))
    return {"__ndarray__": {"dtype": plain.dtype.str, "shape": list(plain.shape),
                            "data": base64.b64encode(plain.tobytes()).decode("ascii")}}


def encode(value, depth: int = 0):
    """Plain data → JSON-ready structure (tagged dicts for tuples, dicts, arrays, tensors).

    Raises:
        TypeError: ``value`` (or something inside it) is not plain data.
        ValueError: nesting deeper than :data:`MAX_DEPTH`.
    """
    if depth > MAX_DEPTH:
        raise ValueError(f"value: expected nesting depth <= {MAX_DEPTH}")
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if kind is complex:
        return {"__complex__": [value.real, value.imag]}
    if kind is list:
        return [encode(v, depth + 1) for v in value]
    if kind is tuple or type(value).__name__ == "Size" and isinstance(value, tuple):
        return {"__tuple__": [encode(v, depth + 1) for v in tuple.__iter__(value)]}
    if kind is dict:
        return {"__dict__": [[encode(k, depth + 1), encode(v, depth + 1)]
                             for k, v in dict.items(value)]}
    tensor = _tensor(value)
    if tensor is not None:
        return tensor
    array = _array(value)
    if array is not NotImplemented:
        return array
    raise TypeError(f"not plain data: {kind.__module__}.{kind.__qualname__}")


def _decode_tensor(spec):
    import torch

    name, shape, raw = spec["dtype"], spec["shape"], base64.b64decode(spec["data"])
    if name not in _TORCH_DTYPES or not all(type(d) is int and d >= 0 for d in shape):
        raise ValueError(f"bad tensor: dtype {name!r}, shape {shape!r}")
    dtype = getattr(torch, name)
    numel = 1
    for d in shape:
        numel *= d
    if len(raw) != numel * torch.empty((), dtype=dtype).element_size():
        raise ValueError(f"bad tensor: {len(raw)} bytes for shape {shape} of {name}")
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape).clone()


def _decode_array(spec):
    import numpy

    dtype = numpy.dtype(spec["dtype"])
    shape = spec["shape"]
    if dtype.kind not in _NUMPY_KINDS or not all(type(d) is int and d >= 0 for d in shape):
        raise ValueError(f"bad array: dtype {dtype}, shape {shape!r}")
    return numpy.frombuffer(base64.b64decode(spec["data"]), dtype=dtype).reshape(shape).copy()


def _hook(obj: dict):
    if len(obj) != 1:
        raise ValueError(f"bad plain data: untagged object with keys {sorted(obj)[:5]}")
    (tag, body), = obj.items()
    if tag == "__tuple__":
        return tuple(body)
    if tag == "__dict__":
        return {k: v for k, v in body}
    if tag == "__complex__":
        return complex(*body)
    if tag == "__tensor__":
        return _decode_tensor(body)
    if tag == "__ndarray__":
        return _decode_array(body)
    raise ValueError(f"bad plain data: unknown tag {tag!r}")


def decode(structure):
    """The inverse of :func:`encode` (fresh built-in objects, tensors and arrays)."""
    return loads(json.dumps(structure))


def dumps(value) -> str:
    """``json.dumps(encode(value))``."""
    return json.dumps(encode(value))


def loads(text: str):
    """Decode a JSON text made by :func:`dumps`; ``ValueError`` on anything else.

    Raises:
        ValueError: not such a text, or more than :data:`MAX_ITEMS` items (counted before
            decoding, from the separators: a tensor's data is one string).
    """
    items = text.count(",") + text.count("[") + text.count("{")
    if items > MAX_ITEMS:
        raise ValueError(f"text: expected at most {MAX_ITEMS} items, got about {items}")

    def hook(obj):
        if set(obj) == {"dtype", "shape", "data"}:     # the spec inside a tensor or array tag
            return obj
        return _hook(obj)
    return json.loads(text, object_hook=hook)


def _error(exc: BaseException) -> dict:
    try:
        message = str(exc)[:2000]
    except BaseException:      # a hostile __str__
        message = "<unprintable>"
    error = {"type": type(exc).__name__, "message": message,
             "memory": isinstance(exc, MemoryError)
             or "can't allocate memory" in message or "out of memory" in message}
    where = _unanswered_name(exc)
    if where:
        error["where"] = where
    return {"error": error}


def _unanswered_name(exc: BaseException) -> str:
    """The function that raised a ``NotImplementedError`` (its innermost frame), or the name a
    ``NameError`` did not find: the grader tells "uses sigmoid, which is not implemented yet"
    from "not implemented yet" with it, when that name is one of the lab's answers."""
    try:
        if isinstance(exc, NotImplementedError):
            tb = exc.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            name = tb.tb_frame.f_code.co_name if tb is not None else ""
        elif isinstance(exc, NameError):
            name = exc.name
        else:
            return ""
        return name[:200] if type(name) is str else ""
    except BaseException:      # a hostile exception object
        return ""


def _call(namespace: dict, request: dict) -> dict:
    function = namespace[request["name"]]
    args, kwargs = loads(request["args"]), loads(request["kwargs"])
    before = dumps([args, kwargs])
    forbidden = request.get("forbidden") or []
    if forbidden:
        from rnnlab.grading.recorder import Recorder

        with Recorder(forbidden) as recorder:
            value = function(*args, **kwargs)
        calls = sorted(recorder.hits)
    else:
        value, calls = function(*args, **kwargs), []
    envelope = {"ok": dumps(value), "args": None}
    try:
        after = dumps([args, kwargs])
        if after != before:
            envelope["args"] = after
    except (TypeError, ValueError):
        envelope["args"] = "not plain data"
    if calls:
        envelope["forbidden"] = calls
    return envelope


def serve(namespace: dict, request_path: str) -> None:
    """Kernel side: answer the request in ``request_path`` and write its result file.

    A request is ``{"op": "call", "name", "args", "kwargs", "forbidden", "result"}`` or
    ``{"op": "describe", "names", "result"}``. A call's result file gets the *envelope*
    ``{"ok": value, "args": arguments after the call or null if unchanged, "forbidden": [calls
    made that the request forbids]}`` (:mod:`rnnlab.grading.recorder`); a description's gets
    ``{"ok": {name: {"kind": "callable" | "missing" | "value", "value": …}}}``; an exception
    gives ``{"error": {...}}``. The file is written to a temporary name and renamed, so the
    grader never reads half a file.
    """
    with open(request_path, encoding="utf-8") as handle:
        request = json.load(handle)
    try:
        if request["op"] == "call":
            envelope = _call(namespace, request)
        else:
            value = {}
            for name in request["names"]:
                if name not in namespace:
                    value[name] = {"kind": "missing"}
                elif callable(namespace[name]):
                    value[name] = {"kind": "callable"}
                else:
                    value[name] = {"kind": "value", "value": namespace[name]}
            envelope = {"ok": dumps(value)}
        text = json.dumps(envelope)
    except BaseException as exc:     # the student's code may raise anything, even SystemExit
        text = json.dumps(_error(exc))
    partial = request["result"] + ".part"
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(partial, request["result"])


def reset(shell) -> None:
    """Kernel side, between two labs of a student: forget the previous lab.

    Empties the IPython user namespace (``%reset -f``), puts back the global state a lab can
    change and a fresh kernel would have (working directory, torch's default dtype, grad and
    anomaly modes, deterministic algorithms; open figures are closed) and collects garbage.
    Seeds, threads and print options are set again by the next lab's ``setup()``.

    What survives the collection (modules: torch, matplotlib, …) is then frozen (``gc.freeze``):
    later collections, the next reset's and those while a lab runs, skip it. A full collection
    with torch loaded took 0.1–0.2 s of CPU, twice per reset (IPython's reset collects too);
    frozen, the resets of a student's later labs cost a few milliseconds. What a lab creates
    after the freeze is still collected.
    """
    import gc

    shell.reset(new_session=False)
    os.chdir(os.environ.get("HOME", "/tmp"))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_default_dtype(torch.float32)
        torch.set_grad_enabled(True)
        torch.autograd.set_detect_anomaly(False)
        if torch.are_deterministic_algorithms_enabled() \
                or torch.is_deterministic_algorithms_warn_only_enabled():
            torch.use_deterministic_algorithms(False)   # 1.9 s of CPU on a first call
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close("all")
    gc.collect()
    gc.freeze()
