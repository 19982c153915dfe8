"""The checked JSON codec of the pool state's models (any frozen dataclass of plain fields,
optionals, tuples, dicts and literals): one encoder and one decoder per class, built once from
its field types. A decoder checks every field and raises :class:`MalformedPoolState` naming the
path, what it found and what is allowed."""

from __future__ import annotations

import dataclasses
import operator
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

from flexlab.core.errors import FlexlabError

T = TypeVar("T")


class MalformedPoolState(FlexlabError, ValueError):
    """A pool state payload that does not follow the wire contract (``docs/wire.md``)."""

    __module__ = "flexlab.core.poolstate"  # where it is imported from, and how errors name it

    def __init__(self, path: str, value: object, expected: str) -> None:
        self.path = path
        self.value = value
        self.expected = expected
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        got = "nothing" if value is _MISSING else f"{shown} ({type(value).__name__})"
        super().__init__(f"pool state: {path}: expected {expected}, got {got}")


_MISSING: Any = object()
Decoder = Callable[[Any, Any], Any]


Encoder = Callable[[Any], Any]
_ENCODERS: dict[type, Encoder] = {}


def _identity(v: Any) -> Any:
    return v


def _encoder(cls: type) -> Encoder:
    """A JSON encoder for a model class, built once per class from its field types."""
    known = _ENCODERS.get(cls)
    if known is None:
        known = _ENCODERS[cls] = _build_encoder(cls)
    return known


def _type_encoder(tp: Any) -> Encoder:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _encoder(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        enc_inner = _type_encoder(inner[0]) if len(inner) == 1 else encode
        if enc_inner is _identity:
            return _identity
        return lambda v: None if v is None else enc_inner(v)
    if origin is tuple:
        encs = [_type_encoder(a) for a in args if a is not Ellipsis]
        if all(e is _identity for e in encs):
            return list
        if len(args) == 2 and args[1] is Ellipsis:
            enc_item = encs[0]
            return lambda v: [enc_item(x) for x in v]
        return lambda v: [e(x) for e, x in zip(encs, v, strict=True)]
    if origin is dict:
        enc_value = _type_encoder(args[1])
        return lambda v: {k: enc_value(x) for k, x in v.items()}
    return _identity  # str, int, float, bool, Literal


def _build_encoder(cls: type) -> Encoder:
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    names = tuple(f.metadata.get("wire", f.name) for f in fields)
    # All values at once (attrgetter runs in C), then the nested ones encoded in place.
    get = operator.attrgetter(*(f.name for f in fields))
    nested = [
        (i, enc) for i, f in enumerate(fields) if (enc := _type_encoder(hints[f.name])) is not _identity
    ]
    if len(fields) == 1:
        only = nested[0][1] if nested else _identity
        return lambda obj: {names[0]: only(get(obj))}

    def encode(obj: Any) -> dict[str, Any]:
        values = list(get(obj))
        for i, enc in nested:
            values[i] = enc(values[i])
        return dict(zip(names, values, strict=True))

    return encode


def encode(obj: object) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _encoder(type(obj))(obj)
    if isinstance(obj, (tuple, list)):
        return [encode(x) for x in obj]
    if isinstance(obj, Mapping):
        return {str(k): encode(v) for k, v in obj.items()}
    return obj


# A path into the payload is built only when an error names it: "" (the root), a name such as
# "lease", or (parent path, key) for a field or a list item.
def _render(path: Any) -> str:
    keys: list[str | int] = []
    while isinstance(path, tuple):
        path, key = path
        keys.append(key)
    out = str(path)
    for k in reversed(keys):
        out = f"{out}[{k}]" if isinstance(k, int) else (f"{out}.{k}" if out else k)
    return out


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _dec_bool(v: Any, path: Any) -> bool:
    if not isinstance(v, bool):
        raise MalformedPoolState(_render(path), v, "true or false")
    return v


def _dec_int(v: Any, path: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            return int(v)
        raise MalformedPoolState(_render(path), v, "an integer")
    return v


def _dec_float(v: Any, path: Any) -> float:
    if not _is_number(v):
        raise MalformedPoolState(_render(path), v, "a number")
    return float(v)


def _dec_str(v: Any, path: Any) -> str:
    if not isinstance(v, str):
        raise MalformedPoolState(_render(path), v, "a string")
    return v


_SCALARS: dict[Any, tuple[Decoder, str]] = {
    # type: (its decoder, a Python expression on x that is true when x needs no decoding)
    bool: (_dec_bool, "x is True or x is False"),
    int: (_dec_int, "x.__class__ is int"),
    float: (_dec_float, "x.__class__ is float"),
    str: (_dec_str, "x.__class__ is str"),
}


def _fast_check(tp: Any) -> str | None:
    """A Python expression on ``x``, true when ``x`` is already a valid ``tp`` (None: no
    such shortcut, always decode)."""
    if tp in _SCALARS:
        return _SCALARS[tp][1]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        fast = _fast_check(inner[0]) if len(inner) == 1 else None
        return f"x is None or {fast}" if fast else None
    return None


def _type_decoder(tp: Any) -> Decoder:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return decoder(tp)
    if tp in _SCALARS:
        return _SCALARS[tp][0]
    if origin is Literal:
        allowed = args

        def dec_literal(v: Any, path: Any) -> Any:
            if not isinstance(v, str) or v not in allowed:
                raise MalformedPoolState(_render(path), v, "one of " + ", ".join(map(str, allowed)))
            return v

        return dec_literal
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"no decoder for {tp!r}")
        dec_inner = _type_decoder(inner[0])

        def dec_optional(v: Any, path: Any) -> Any:
            return None if v is None else dec_inner(v, path)

        return dec_optional
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            dec_item = _type_decoder(args[0])
            item_type = args[0] if args[0] in (str, int) else None

            def dec_seq(v: Any, path: Any) -> tuple[Any, ...]:
                if not isinstance(v, (list, tuple)):
                    raise MalformedPoolState(_render(path), v, "a list")
                if item_type is not None and all(x.__class__ is item_type for x in v):
                    return tuple(v)
                return tuple([dec_item(x, (path, i)) for i, x in enumerate(v)])

            return dec_seq
        decs = [_type_decoder(a) for a in args]

        def dec_fixed(v: Any, path: Any) -> tuple[Any, ...]:
            if not isinstance(v, (list, tuple)) or len(v) != len(decs):
                raise MalformedPoolState(_render(path), v, f"a list of {len(decs)} items")
            return tuple(d(x, (path, i)) for i, (d, x) in enumerate(zip(decs, v, strict=True)))

        return dec_fixed
    if origin is dict:
        dec_value = _type_decoder(args[1])

        def dec_dict(v: Any, path: Any) -> dict[str, Any]:
            if not isinstance(v, Mapping):
                raise MalformedPoolState(_render(path), v, "an object")
            out = {}
            for k, x in v.items():
                if not isinstance(k, str):
                    raise MalformedPoolState(_render(path), k, "string keys")
                out[k] = dec_value(x, (path, k))
            return out

        return dec_dict
    raise TypeError(f"no decoder for {tp!r}")  # a model this module cannot read: a bug here


_DECODERS: dict[type, Decoder] = {}


def decoder(cls: type[T]) -> Callable[[Any, Any], T]:
    """A checking decoder for a model class, built once per class."""
    known = _DECODERS.get(cls)
    if known is None:
        known = _DECODERS[cls] = _build_decoder(cls)
    return known


def _build_decoder(cls: type) -> Decoder:
    """The decoder of a model class as generated Python (as ``dataclasses`` makes ``__init__``):
    one ``get`` per field, a type check inline for scalars, and a field's own decoder only for
    nested values or when the check fails (it then names the path)."""
    hints = typing.get_type_hints(cls)
    ns: dict[str, Any] = {
        "Mapping": Mapping,
        "MalformedPoolState": MalformedPoolState,
        "_render": _render,
        "_MISSING": _MISSING,
        "cls": cls,
        "new": object.__new__,
        "what": f"an object ({cls.__name__})",
        "required": "a value: the field is required",
    }
    body = [
        "def decode(v, path):",
        "    if not isinstance(v, Mapping):",
        "        raise MalformedPoolState(_render(path) or 'the payload', v, what)",
        "    get = v.get",
    ]
    kwargs = []
    for i, f in enumerate(dataclasses.fields(cls)):
        wire = f.metadata.get("wire", f.name)
        tp = hints[f.name]
        ns[f"d{i}"] = _type_decoder(tp)
        body += [f"    x = get({wire!r}, _MISSING)", "    if x is _MISSING:"]
        if f.default is not dataclasses.MISSING:
            ns[f"default{i}"] = f.default
            body.append(f"        x = default{i}")
        elif f.default_factory is not dataclasses.MISSING:
            ns[f"factory{i}"] = f.default_factory
            body.append(f"        x = factory{i}()")
        else:
            body.append(f"        raise MalformedPoolState(_render((path, {wire!r})), x, required)")
        fast = _fast_check(tp)
        body.append(f"    elif not ({fast}):" if fast else "    else:")
        body += [f"        x = d{i}(x, (path, {wire!r}))", f"    x{i} = x"]
        kwargs.append(f"{f.name}=x{i}")
    # Every field was checked: fill the frozen instance directly (its __init__ sets each
    # field through object.__setattr__, three times slower), then run its __post_init__.
    body += [
        "    o = new(cls)",
        f"    o.__dict__.update({', '.join(kwargs)})",
        *(["    o.__post_init__()"] if hasattr(cls, "__post_init__") else []),
        "    return o",
    ]
    exec("\n".join(body), ns)  # generated from the class's own fields, as dataclasses does
    decode: Decoder = ns["decode"]
    return decode
