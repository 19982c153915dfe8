"""The wire contract, written three times, agrees with itself: the Python TypedDicts in
``flexlab_jupyter/models.py`` (the source of truth), the TypeScript interfaces in
``extension/src/models.ts`` and the schemas of ``openapi.yaml``: the same fields, types,
required keys, and a comment on every field on both the Python and the TypeScript side."""

from __future__ import annotations

import ast
import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from flexlab_jupyter import models

from flexlab.core.poolstate import LeaseView

ROOT = Path(__file__).resolve().parents[2]
PY = ROOT / "extension" / "flexlab_jupyter" / "models.py"
TS = ROOT / "extension" / "src" / "models.ts"
OPENAPI = ROOT / "extension" / "flexlab_jupyter" / "openapi.yaml"

#: Python TypedDict -> OpenAPI component (the request bodies have their own names there).
OPENAPI_NAMES = {
    "LeaseCreateBody": "LeaseCreate",
    "RenewBody": "Renew",
    "ExplainBody": "ExplainRequest",
}
ALIASES = {
    "LeaseState": models.LeaseState,
    "ExplainCode": models.ExplainCode,
    "MenuGroup": models.MenuGroup,
}


def typed_dicts() -> dict[str, type]:
    return {
        name: obj
        for name, obj in vars(models).items()
        if isinstance(obj, type) and typing.is_typeddict(obj) and not name.startswith("_")
    }


class Field:
    def __init__(self, name: str, type_: str, required: bool, comment: str) -> None:
        self.name, self.type, self.required, self.comment = name, type_, required, comment

    def __repr__(self) -> str:
        return f"{self.name}{'' if self.required else '?'}: {self.type}"


# ------------------------------------------------------------------ the Python side
def python_fields() -> dict[str, dict[str, Field]]:
    """Fields of each TypedDict with their annotation text and end-of-line comment."""
    source = PY.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}

    def own(cls: ast.ClassDef) -> dict[str, tuple[str, str]]:
        out = {}
        for stmt in cls.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                line = lines[stmt.lineno - 1]
                comment = line.split("#", 1)[1].strip() if "#" in line else ""
                out[stmt.target.id] = (ast.unparse(stmt.annotation), comment)
        return out

    result: dict[str, dict[str, Field]] = {}
    for name, td in typed_dicts().items():
        node = classes[name]
        merged: dict[str, tuple[str, str]] = {}
        for base in node.bases:
            if isinstance(base, ast.Name) and base.id in classes:
                merged.update(own(classes[base.id]))
        merged.update(own(node))
        required = td.__required_keys__  # type: ignore[attr-defined]
        result[name] = {k: Field(k, t, k in required, c) for k, (t, c) in merged.items()}
    return result


def py_to_ts(annotation: str) -> str:
    """A Python annotation as the TypeScript type it must be."""
    parts = [p.strip() for p in _split_union(annotation)]
    out = []
    for p in parts:
        if p == "None":
            out.append("null")
        elif p == "str":
            out.append("string")
        elif p in ("int", "float"):
            out.append("number")
        elif p == "bool":
            out.append("boolean")
        elif p.startswith("list[") and p.endswith("]"):
            out.append(f"{py_to_ts(p[5:-1])}[]")
        else:
            out.append(p)  # another model or a Literal alias: the same name
    return " | ".join(out)


def _split_union(text: str) -> list[str]:
    depth, cur, parts = 0, "", []
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "|" and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [*parts, cur]


# ------------------------------------------------------------------ the TypeScript side
_INTERFACE = re.compile(r"export interface (\w+) \{(.*?)\n\}", re.S)
_FIELD = re.compile(r"/\*\*\s*(.*?)\s*\*/\s*(\w+)(\??):\s*([^;]+);", re.S)
_ALIAS = re.compile(r"export type (\w+) =([^;]+);", re.S)


def ts_fields() -> dict[str, dict[str, Field]]:
    text = TS.read_text()
    out: dict[str, dict[str, Field]] = {}
    for name, body in _INTERFACE.findall(text):
        fields = {}
        for comment, field, optional, type_ in _FIELD.findall(body):
            fields[field] = Field(field, " ".join(type_.split()), not optional, " ".join(comment.split()))
        # every declared member must have been matched with its comment
        members = re.findall(r"^\s*(\w+)\??:", body, re.M)
        assert sorted(members) == sorted(fields), f"{name}: a field without a /** comment */ in models.ts"
        out[name] = fields
    return out


def ts_aliases() -> dict[str, set[str]]:
    return {
        name: {v.strip().strip("'") for v in body.split("|") if v.strip()}
        for name, body in _ALIAS.findall(TS.read_text())
    }


def norm(comment: str) -> str:
    """Comments compare without case, quoting style and the final full stop."""
    text = comment.replace("``", "`").replace("`", "").replace("None", "null").lower()
    return re.sub(r"\s+", " ", text).strip().rstrip(".")


# ------------------------------------------------------------------ tests
PY_FIELDS = python_fields()
TS_FIELDS = ts_fields()


def test_every_python_model_has_a_typescript_interface() -> None:
    assert set(TS_FIELDS) == set(PY_FIELDS)
    assert len(PY_FIELDS) >= 16


@pytest.mark.parametrize("model", sorted(PY_FIELDS))
def test_typescript_interface_matches(model: str) -> None:
    py, ts = PY_FIELDS[model], TS_FIELDS[model]
    assert list(ts) == list(py), f"{model}: fields differ (or their order)"
    for name, f in py.items():
        t = ts[name]
        assert t.type == py_to_ts(f.type), f"{model}.{name}: {t.type} in TS, {f.type} in Python"
        assert t.required == f.required, f"{model}.{name}: optional on one side only"
        assert f.comment, f"{model}.{name}: no comment in models.py"
        assert norm(t.comment) == norm(f.comment), f"{model}.{name}: comments differ"


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_literal_aliases_match(alias: str) -> None:
    assert ts_aliases()[alias] == set(typing.get_args(ALIASES[alias]))


# ------------------------------------------------------------------ the OpenAPI side
SPEC = yaml.safe_load(OPENAPI.read_text())
COMPONENTS: dict[str, Any] = SPEC["components"]["schemas"]


def openapi_name(model: str) -> str:
    return OPENAPI_NAMES.get(model, model.removesuffix("Model"))


def openapi_type(prop: dict[str, Any]) -> str:
    """An OpenAPI property as the Python annotation it must be."""
    nullable = " | None" if prop.get("nullable") else ""
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[1] + nullable
    if "allOf" in prop:
        return openapi_type(prop["allOf"][0]) + nullable
    if "oneOf" in prop:
        return " | ".join(openapi_type(p) for p in prop["oneOf"]) + nullable
    if "enum" in prop:
        return "enum:" + ",".join(sorted(prop["enum"])) + nullable
    kind = prop["type"]
    if kind == "array":
        return f"list[{openapi_type(prop['items'])}]" + nullable
    return {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}[kind] + nullable


def python_as_openapi(annotation: str) -> str:
    parts = [p.strip() for p in _split_union(annotation)]
    out = []
    for p in parts:
        if p in ALIASES:
            out.append("enum:" + ",".join(sorted(typing.get_args(ALIASES[p]))))
        elif p.startswith("list[") and p.endswith("]"):
            out.append(f"list[{python_as_openapi(p[5:-1])}]")
        elif p in PY_FIELDS:
            out.append(openapi_name(p))
        else:
            out.append(p)
    return " | ".join(out)


def test_every_python_model_has_an_openapi_schema() -> None:
    assert {openapi_name(m) for m in PY_FIELDS} == set(COMPONENTS)


@pytest.mark.parametrize("model", sorted(PY_FIELDS))
def test_openapi_schema_matches(model: str) -> None:
    schema = COMPONENTS[openapi_name(model)]
    py = PY_FIELDS[model]
    assert schema["additionalProperties"] is False
    assert list(schema["properties"]) == list(py), f"{model}: fields differ (or their order)"
    assert set(schema.get("required", [])) == {n for n, f in py.items() if f.required}
    for name, f in py.items():
        prop = schema["properties"][name]
        assert prop.get("description"), f"{openapi_name(model)}.{name}: no description"
        assert openapi_type(prop) == python_as_openapi(f.type), f"{model}.{name}"


LEASE = LeaseView(
    lease_id="L1",
    owner="ana",
    request="t4:0.5",
    state="active",
    reason="",
    priority=0,
    ttl_s=60.0,
    created=1.0,
    expires_at=61.0,
    ttl_left_s=30.0,
    slice_id="L1",
    host="h",
    devices=("h/t4#0",),
    model="t4",
    compute_milli=500,
    memory_mib=7680,
    profile=None,
    utilisation=0.25,
    memory_used_mib=100,
    policy="flexlab",
)


def test_the_builders_fill_every_field() -> None:
    """The builders turn the scheduler's dicts into complete models (no field left out)."""
    lease = models.make_lease(LEASE)
    assert set(lease) == set(PY_FIELDS["LeaseModel"])
    assert (lease["lease_id"], lease["devices"], lease["policy"]) == ("L1", ["h/t4#0"], "flexlab")
    explain = models.make_explain({"code": "UNSCHEDULABLE", "reasons": {}}, request="t4:1", lease=True)
    assert set(explain) == set(PY_FIELDS["ExplainModel"])
    assert explain["summary"] == "no room now; the lease would wait"
    error = models.make_error("InvalidRequest", "bad")
    assert set(error) == set(PY_FIELDS["ErrorModel"])


# ------------------------------------------------------------------ the typed pool state
#: The REST model each class of ``flexlab/core/poolstate/`` (the scheduler's one model) is
#: sent as, and the core fields the REST API leaves behind on purpose (internal to the pool).
CORE_PY = ROOT / "flexlab" / "core" / "poolstate"
CORE_OF = {
    "SliceModel": ("SliceState", {"warm_for", "worker", "load_milli"}),
    "DeviceModel": ("DeviceState", set()),
    "HostModel": ("HostState", set()),
    "PolicyShapeModel": ("PolicyShape", set()),
    "PolicyModel": ("PolicyState", set()),
    "LeaseModel": ("LeaseView", {"worker", "resource", "preemptions"}),
    "EventModel": ("PoolEvent", set()),
    "DeviceChoiceModel": ("MenuChoice", set()),
}
REST_ONLY = {"LeaseModel": {"attach_code"}}
CORE_ALIASES = {"LeaseStateName": "LeaseState"}


def core_fields() -> dict[str, dict[str, Field]]:
    """Fields of each dataclass of the core module with their annotation and comment."""
    out: dict[str, dict[str, Field]] = {}
    for path in sorted(CORE_PY.glob("*.py")):
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.parse(source).body:
            if not isinstance(node, ast.ClassDef):
                continue
            fields = {}
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    tail = lines[(stmt.end_lineno or stmt.lineno) - 1][stmt.end_col_offset or 0 :]
                    comment = tail.split("#", 1)[1].strip() if "#" in tail else ""
                    fields[stmt.target.id] = Field(
                        stmt.target.id, ast.unparse(stmt.annotation), True, comment
                    )
            out[node.name] = fields
    return out


def core_as_rest(annotation: str) -> str:
    """A core annotation as the REST TypedDict annotation it must be sent as."""
    rest_of = {core: rest for rest, (core, _) in CORE_OF.items()}
    parts = []
    for p in (x.strip() for x in _split_union(annotation)):
        if p.startswith("tuple[") and p.endswith(", ...]"):
            parts.append(f"list[{core_as_rest(p[6:-6])}]")
        else:
            parts.append(CORE_ALIASES.get(p, rest_of.get(p, p)))
    return " | ".join(parts)


CORE_FIELDS = core_fields()


def test_every_core_model_is_documented_field_by_field() -> None:
    from flexlab.core import poolstate

    for name, fields in CORE_FIELDS.items():
        cls = getattr(poolstate, name)
        if not dataclasses.is_dataclass(cls):
            continue
        assert [f.name for f in dataclasses.fields(cls)] == list(fields), name
        for f in fields.values():
            assert f.comment, f"{name}.{f.name}: no comment in flexlab/core/poolstate/"


@pytest.mark.parametrize("model", sorted(CORE_OF))
def test_the_rest_models_are_the_core_model_less_internals(model: str) -> None:
    """Field by field: the core class, the REST TypedDict, the TypeScript interface and the
    OpenAPI schema agree on names, order, types and comments (less the internal fields)."""
    core_name, internal = CORE_OF[model]
    core = CORE_FIELDS[core_name]
    py = PY_FIELDS[model]
    sent = [n for n in core if n not in internal]
    assert sent == [n for n in py if n not in REST_ONLY.get(model, set())], f"{model} vs {core_name}"
    assert internal <= set(core), f"{core_name}: {internal - set(core)} are no fields"
    schema = COMPONENTS[openapi_name(model)]
    for name in sent:
        rest_type = core_as_rest(core[name].type)
        assert rest_type == py[name].type, f"{core_name}.{name}: {core[name].type} vs {py[name].type}"
        assert TS_FIELDS[model][name].type == py_to_ts(rest_type), f"{core_name}.{name} in models.ts"
        prop = schema["properties"][name]
        assert openapi_type(prop) == python_as_openapi(rest_type), f"{core_name}.{name} in openapi.yaml"
        assert norm(core[name].comment) == norm(py[name].comment), f"{core_name}.{name}: comments differ"
