"""The example generator (labkit.asyncapi.examples): every value it makes validates; what it cannot make is named.

Pure: no brokers.  hypothesis draws many schemas from the supported subset;
each generated example must pass ``jsonschema`` (draft 07) and be the same
for the same seed.
"""

from __future__ import annotations

import json
import random
import re

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labkit.asyncapi.document import AsyncAPIError
from labkit.asyncapi.examples import example, examples, pattern_string
from labkit.errors import ConfigError

# ---------------------------------------------------------------------------------------- schema strategies

_PATTERNS = [r"^[A-Z]{3}$", r"^op-[0-9]{3}$", r"(ab|cd)+x?", r"^\d{2,4}-\w+$", r"^[a-f0-9]{8}$", r"^p[0-9]$"]
_FORMATS = ["date-time", "date", "uuid", "email", "ipv4", "uri"]


def _string() -> st.SearchStrategy[dict]:
    def bounded(lo: int, extra: int) -> dict:
        return {"type": "string", "minLength": lo, "maxLength": lo + extra}

    return st.one_of(
        st.builds(bounded, st.integers(0, 20), st.integers(0, 20)),
        st.sampled_from(_PATTERNS).map(lambda p: {"type": "string", "pattern": p}),
        st.sampled_from(_FORMATS).map(lambda f: {"type": "string", "format": f}),
        st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=4, unique=True).map(
            lambda xs: {"enum": xs}),
    )


def _number() -> st.SearchStrategy[dict]:
    def numeric(kind: str, lo: int, span: int, exclusive: bool, step: int | None) -> dict:
        out: dict = {"type": kind, "minimum": lo, "maximum": lo + span}
        if exclusive:
            out = {"type": kind, "exclusiveMinimum": lo - 1, "maximum": lo + span}
        if step and kind == "integer":
            out["multipleOf"] = step
            out["maximum"] = lo + span + step
        return out

    return st.builds(numeric, st.sampled_from(["integer", "number"]), st.integers(-1000, 1000),
                     st.integers(0, 500), st.booleans(), st.one_of(st.none(), st.integers(1, 7)))


def _leaf() -> st.SearchStrategy[dict]:
    return st.one_of(_string(), _number(), st.just({"type": "boolean"}), st.just({"type": "null"}),
                     st.integers(-5, 5).map(lambda v: {"const": v}))


def _schemas() -> st.SearchStrategy[dict]:
    names = st.text(alphabet="abcdefghijklmnop", min_size=1, max_size=6)

    def obj(props: dict, n_required: int, closed: bool) -> dict:
        keys = list(props)
        out = {"type": "object", "properties": props, "required": keys[:n_required]}
        if closed:
            out["additionalProperties"] = False
        return out

    def arr(items: dict, lo: int, extra: int) -> dict:
        return {"type": "array", "items": items, "minItems": lo, "maxItems": lo + extra}

    def choice(kind: str, branches: list) -> dict:
        return {kind: branches}

    return st.recursive(
        _leaf(),
        lambda inner: st.one_of(
            st.builds(obj, st.dictionaries(names, inner, min_size=1, max_size=5), st.integers(0, 5), st.booleans()),
            st.builds(arr, inner, st.integers(0, 3), st.integers(0, 3)),
            st.builds(choice, st.just("anyOf"), st.lists(inner, min_size=1, max_size=3)),
            # allOf of two open objects over different property names (so the parts never contradict)
            st.builds(lambda a, b: {"allOf": [a, b]},
                      st.builds(obj, st.dictionaries(names.map("a_".__add__), inner, min_size=1, max_size=2),
                                st.integers(0, 2), st.just(False)),
                      st.builds(obj, st.dictionaries(names.map("b_".__add__), inner, min_size=1, max_size=2),
                                st.integers(0, 2), st.just(False))),
        ),
        max_leaves=12,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=_schemas(), seed=st.integers(0, 2**31 - 1))
def test_every_generated_example_validates_and_a_seed_repeats(schema, seed):
    value = example(schema, seed=seed)
    jsonschema.validate(value, schema, cls=jsonschema.Draft7Validator)
    assert example(schema, seed=seed) == value


@settings(max_examples=60, deadline=None)
@given(pattern=st.sampled_from(_PATTERNS), seed=st.integers(0, 10_000))
def test_pattern_strings_match(pattern, seed):
    assert re.search(pattern, pattern_string(pattern, random.Random(seed), "#/p"))


@settings(max_examples=40, deadline=None)
@given(size=st.integers(50, 3000), seed=st.integers(0, 1000))
def test_size_pads_a_free_text_field_up_to_the_target(size, seed):
    schema = {"type": "object", "required": ["id", "note"], "additionalProperties": False,
              "properties": {"id": {"type": "string", "format": "uuid"}, "note": {"type": "string"}}}
    value = example(schema, seed=seed, size_bytes=size)
    jsonschema.validate(value, schema)
    plain = len(json.dumps(example(schema, seed=seed), separators=(",", ":")).encode())
    assert len(json.dumps(value, separators=(",", ":")).encode()) == max(size, plain)


def test_padding_respects_max_length():
    schema = {"type": "object", "required": ["note"], "properties": {"note": {"type": "string", "maxLength": 40}}}
    value = example(schema, size_bytes=5000)
    assert len(value["note"]) == 40


def test_refs_resolve_inside_the_document_and_validation_follows_them():
    doc = {"components": {"schemas": {
        "Point": {"type": "object", "required": ["x", "y"], "properties": {
            "x": {"$ref": "#/components/schemas/Coord"}, "y": {"$ref": "#/components/schemas/Coord"}}},
        "Coord": {"type": "number", "minimum": 0, "maximum": 1}}}}
    values = examples({"$ref": "#/components/schemas/Point"}, 5, root=doc, at="#/components/schemas/Point", seed=4)
    assert len(values) == 5 and all(0 <= v["x"] <= 1 and 0 <= v["y"] <= 1 for v in values)


def test_const_enum_examples_and_default_come_first():
    assert example({"type": "string", "const": "fixed"}) == "fixed"
    assert example({"type": "integer", "enum": [3, 5]}, seed=2) in (3, 5)
    assert example({"type": "string", "pattern": "^(?!x).*$", "examples": ["given"]}) == "given"
    assert example({"type": "string", "default": "dflt"}) == "dflt"


def test_formats_are_well_formed():
    assert re.fullmatch(r"2026-\d\d-\d\dT\d\d:\d\d:\d\dZ", example({"type": "string", "format": "date-time"}))
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                        example({"type": "string", "format": "uuid"}))


def test_one_of_picks_a_branch_that_validates_exactly_once():
    schema = {"oneOf": [{"type": "integer", "minimum": 0, "maximum": 9}, {"type": "string", "minLength": 3}]}
    values = examples(schema, 20, seed=1)
    for v in values:
        jsonschema.validate(v, schema)
    assert {type(v) for v in values} == {int, str}


@pytest.mark.parametrize("schema, where, words", [
    ({"type": "integer", "minimum": 10, "maximum": 2}, "#/s", "above maximum"),
    ({"type": "string", "minLength": 9, "maxLength": 2}, "#/s", "above maxLength"),
    ({"type": "object", "properties": {"a": False}, "required": ["a"]}, "#/s/properties/a", "false"),
    ({"type": "string", "pattern": "[^abc]+"}, "#/s/pattern", "negated"),
    ({"type": "string", "pattern": "("}, "#/s/pattern", "not a valid regular expression"),
    ({"enum": []}, "#/s/enum", "empty"),
    ({"type": "integer", "multipleOf": 7, "minimum": 1, "maximum": 6}, "#/s", "no multiple"),
    ({"type": "integer", "not": {"type": "integer"}}, "#/s", "no generated example"),
    ({"$ref": "#/components/schemas/Nope"}, "#/s", "does not resolve"),
])
def test_unsatisfiable_schemas_name_their_pointer(schema, where, words):
    with pytest.raises(AsyncAPIError) as err:
        example(schema, root={"components": {"schemas": {}}}, at="#/s")
    assert isinstance(err.value, ConfigError)
    assert err.value.pointer == where and str(err.value).startswith(where)
    assert words in str(err.value)
