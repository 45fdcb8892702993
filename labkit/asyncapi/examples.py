"""Example payloads from a JSON Schema, seeded, each one checked with ``jsonschema`` (pure: no I/O).

:func:`example` walks the schema: ``const``, then ``enum``, then the
schema's own ``examples``/``default``, then a value made from the type's
keywords (object ``properties``/``required``/``minProperties``, array
``items``/``minItems``/``maxItems``/``uniqueItems``, string
``minLength``/``maxLength``/``pattern``/``format``, number ``minimum``/
``maximum``/exclusive bounds/``multipleOf``), ``allOf`` merged,
``oneOf``/``anyOf`` a seeded choice, ``$ref`` followed inside the document.
The result is validated against the schema (draft 07, the base of the
AsyncAPI schema); a schema that no attempt satisfies raises
:class:`~labkit.asyncapi.document.AsyncAPIError` naming its JSON pointer.

``size_bytes`` pads the first free text field (no pattern, format, enum or
const) so that the compact JSON comes close to that many bytes, within the
field's ``maxLength``.
"""

from __future__ import annotations

import json
import random
import re
import string
import uuid
from re import _parser as sre  # the stdlib's own regex parser: patterns are read, never re-implemented
from typing import Any

from .document import AsyncAPIError, resolve

__all__ = ["example", "examples", "validator", "pattern_string", "ATTEMPTS"]

#: Fresh draws tried before a schema is called unsatisfiable.
ATTEMPTS = 25
#: Longest string, array or object the generator makes without being asked for more.
SPAN = 4
#: Deepest nesting followed (a recursive schema stops here).
MAX_DEPTH = 12
#: Longest repeat a regex ``*``/``+`` gets.
REGEX_REPEAT = 4
_COMPACT = (",", ":")
_LETTERS = string.ascii_lowercase
_WORD = string.ascii_letters + string.digits + "_"
_FORMATS = {
    "date-time": lambda r: f"2026-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:"
                           f"{r.randint(0, 59):02d}:{r.randint(0, 59):02d}Z",
    "date": lambda r: f"2026-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
    "time": lambda r: f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}Z",
    "uuid": lambda r: str(uuid.UUID(int=r.getrandbits(128), version=4)),
    "email": lambda r: f"{''.join(r.choices(_LETTERS, k=6))}@example.com",
    "hostname": lambda r: f"{''.join(r.choices(_LETTERS, k=6))}.example.com",
    "uri": lambda r: f"https://example.com/{''.join(r.choices(_LETTERS, k=6))}",
    "ipv4": lambda r: ".".join(str(r.randint(1, 254)) for _ in range(4)),
    "ipv6": lambda r: ":".join(f"{r.getrandbits(16):x}" for _ in range(8)),
}


def validator(schema: Any, root: dict[str, Any] | None = None, at: str = "#") -> Any:
    """A draft-07 ``jsonschema`` validator for ``schema`` (found at ``at``, kept for messages).

    With a ``root`` document, every ``#/...`` reference inside the schema resolves in it.
    """
    from jsonschema import Draft7Validator

    if root is None:
        return Draft7Validator(schema)
    # In draft 07 the siblings of "$ref" are ignored: the document is only the place references resolve in,
    # and the schema rides along under a member of its own (so it needs no pointer of its own).
    wrapper = {k: v for k, v in root.items() if k not in ("$id", "$schema", "id")}
    wrapper["x-labkit-schema"] = schema
    wrapper["$ref"] = "#/x-labkit-schema"
    return Draft7Validator(wrapper)


class _Gen:
    def __init__(self, root: dict[str, Any] | None, rng: random.Random) -> None:
        self.root = root or {}
        self.rng = rng
        #: Paths (lists of keys and indexes) to free text fields, with their maxLength (None: unbounded).
        self.free: list[tuple[list[Any], int | None]] = []

    def value(self, schema: Any, at: str, path: list[Any], depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise AsyncAPIError(at, f"nested deeper than {MAX_DEPTH} levels (a recursive schema?); give the "
                                "recursion an end the generator can take (make it optional)")
        if "$ref" in (schema if isinstance(schema, dict) else {}):
            schema, at = resolve(self.root, schema, at)
        if schema is True or schema == {}:
            return "x"
        if schema is False:
            raise AsyncAPIError(at, "the schema is false: no value is allowed; remove it or make it true")
        if not isinstance(schema, dict):
            raise AsyncAPIError(at, f"a schema must be an object or a boolean, not {type(schema).__name__}")
        if "allOf" in schema:
            schema = self.merge(schema, at)
        for key in ("oneOf", "anyOf"):
            if key in schema:
                branches = schema[key]
                i = self.rng.randrange(len(branches))
                rest = {k: v for k, v in schema.items() if k != key}
                branch, b_at = resolve(self.root, branches[i], f"{at}/{key}/{i}")
                merged = self.merge({"allOf": [rest, branch]}, b_at) if rest else branch
                return self.value(merged, b_at, path, depth + 1)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            if not schema["enum"]:
                raise AsyncAPIError(f"{at}/enum", "enum is empty: no value is allowed; list at least one value")
            return self.rng.choice(schema["enum"])
        given = [*schema.get("examples", [])] if isinstance(schema.get("examples"), list) else []
        if "default" in schema:
            given.append(schema["default"])
        if given:
            return self.rng.choice(given)
        kind = self.kind(schema)
        maker = getattr(self, f"make_{kind}", None)
        if maker is None:
            raise AsyncAPIError(f"{at}/type", f"type {kind!r} is not a JSON Schema type")
        return maker(schema, at, path, depth)

    def kind(self, schema: dict[str, Any]) -> str:
        kind = schema.get("type")
        if isinstance(kind, list):
            kinds = [k for k in kind if k != "null"] or ["null"]
            return str(self.rng.choice(kinds))
        if kind is not None:
            return str(kind)
        if {"properties", "required", "additionalProperties", "minProperties"} & schema.keys():
            return "object"
        if {"items", "minItems", "maxItems"} & schema.keys():
            return "array"
        if {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"} & schema.keys():
            return "number"
        return "string"

    def merge(self, schema: dict[str, Any], at: str) -> dict[str, Any]:
        """``allOf`` folded into one schema: properties joined, required united, bounds tightened."""
        out: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for i, part in enumerate(schema.get("allOf", [])):
            part, p_at = resolve(self.root, part, f"{at}/allOf/{i}")
            if not isinstance(part, dict):
                continue
            if "allOf" in part:
                part = self.merge(part, p_at)
            for key, value in part.items():
                if key == "properties":
                    out["properties"] = {**out.get("properties", {}), **value}
                elif key == "required":
                    out["required"] = sorted(set(out.get("required", [])) | set(value))
                elif key in ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties") and key in out:
                    out[key] = max(out[key], value)
                elif key in ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties") and key in out:
                    out[key] = min(out[key], value)
                else:
                    out[key] = value
        return out

    # ------------------------------------------------------------------ the types
    def make_null(self, schema: dict[str, Any], at: str, path: list[Any], depth: int) -> None:
        return None

    def make_boolean(self, schema: dict[str, Any], at: str, path: list[Any], depth: int) -> bool:
        return self.rng.random() < 0.5

    def make_integer(self, schema: dict[str, Any], at: str, path: list[Any], depth: int) -> int:
        low, high = self.bounds(schema, at, whole=True)
        step = schema.get("multipleOf")
        if isinstance(step, int) and step > 0:
            first, last = -(-low // step), high // step
            if first > last:
                raise AsyncAPIError(at, f"no multiple of {step} lies between {low} and {high}; widen the bounds")
            return self.rng.randint(first, last) * step
        return self.rng.randint(low, high)

    def make_number(self, schema: dict[str, Any], at: str, path: list[Any], depth: int) -> float | int:
        step = schema.get("multipleOf")
        if step is not None:
            low, high = self.bounds(schema, at, whole=False)
            first, last = int(-(-low // step)), int(high // step)
            if first > last:
                raise AsyncAPIError(at, f"no multiple of {step} lies between {low} and {high}; widen the bounds")
            k = self.rng.randint(first, last)
            return k * step if isinstance(step, int) else round(k * step, 10)
        low, high = self.bounds(schema, at, whole=False)
        value = round(self.rng.uniform(low, high), 3)
        return min(max(value, low), high)

    def bounds(self, schema: dict[str, Any], at: str, whole: bool) -> tuple[Any, Any]:
        low, high = schema.get("minimum"), schema.get("maximum")
        ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        nudge = 1 if whole else 1e-6
        if isinstance(ex_low, (int, float)) and not isinstance(ex_low, bool):
            low = ex_low + nudge if low is None else max(low, ex_low + nudge)
        if isinstance(ex_high, (int, float)) and not isinstance(ex_high, bool):
            high = ex_high - nudge if high is None else min(high, ex_high - nudge)
        if low is None and high is None:
            low, high = 0, 100
        elif low is None:
            low = high - 100
        elif high is None:
            high = low + 100
        if whole:
            low, high = int(-(-low // 1)), int(high // 1)
        if low > high:
            raise AsyncAPIError(at, f"minimum {low} is above maximum {high}: no number fits; fix the bounds")
        return low, high

    def make_string(self, schema: dict[str, Any], at: str, path: list[Any], depth: int) -> str:
        low = int(schema.get("minLength", 0))
        high = schema.get("maxLength")
        if high is not None and int(high) < low:
            raise AsyncAPIError(at, f"minLength {low} is above maxLength {high}: no string fits; fix the lengths")
        if "pattern" in schema:
            return pattern_string(schema["pattern"], self.rng, f"{at}/pattern", low, high)
        fmt = schema.get("format")
        if fmt in _FORMATS:
            return _FORMATS[fmt](self.rng)
        top = low + SPAN * 2 if high is None else min(int(high), low + SPAN * 2)
        size = self.rng.randint(max(low, min(1, top)), max(low, top))
        if fmt is None:
            self.free.append((list(path), None if high is None else int(high)))
        return "".join(self.rng.choices(_LETTERS, k=size))

    def make_array(self, schema: dict[str, Any], at: str, path: list[Any], depth: int) -> list[Any]:
        low = int(schema.get("minItems", 0))
        high = schema.get("maxItems")
        if high is not None and int(high) < low:
            raise AsyncAPIError(at, f"minItems {low} is above maxItems {high}: no array fits; fix them")
        items = schema.get("items", {})
        if isinstance(items, list):  # draft-07 tuple form: one schema per position
            out = [self.value(s, f"{at}/items/{i}", [*path, i], depth + 1) for i, s in enumerate(items)]
            extra = schema.get("additionalItems", True)
            for i in range(len(out), low):
                out.append(self.value(extra, f"{at}/additionalItems", [*path, i], depth + 1))
            return out
        top = low + SPAN if high is None else min(int(high), low + SPAN)
        count = self.rng.randint(max(low, min(1, top)), max(low, top))
        out, seen = [], set()
        for _ in range(count * ATTEMPTS):  # bounded: uniqueItems may need a few more draws
            if len(out) >= count:
                break
            item = self.value(items, f"{at}/items", [*path, len(out)], depth + 1)
            key = json.dumps(item, sort_keys=True)
            if schema.get("uniqueItems") and key in seen:
                continue
            seen.add(key)
            out.append(item)
        if len(out) < low:
            raise AsyncAPIError(f"{at}/items", f"found only {len(out)} distinct items for uniqueItems with "
                                f"minItems {low}; lower minItems or widen the item schema")
        return out

    def make_object(self, schema: dict[str, Any], at: str, path: list[Any], depth: int) -> dict[str, Any]:
        props = schema.get("properties", {})
        required = list(schema.get("required", []))
        out: dict[str, Any] = {}
        extra = schema.get("additionalProperties", True)
        for name in required:
            if name in props:
                out[name] = self.value(props[name], f"{at}/properties/{name}", [*path, name], depth + 1)
            elif extra is False:
                raise AsyncAPIError(f"{at}/required", f"{name!r} is required but not among the properties and "
                                    "additionalProperties is false; add it to properties")
            else:
                sub = extra if isinstance(extra, dict) else {}
                out[name] = self.value(sub, f"{at}/additionalProperties", [*path, name], depth + 1)
        for name, sub in props.items():  # optional ones: most of them, as a real producer would send
            if name not in out and (depth + 1 < MAX_DEPTH // 2) and self.rng.random() < 0.75:
                out[name] = self.value(sub, f"{at}/properties/{name}", [*path, name], depth + 1)
        want = int(schema.get("minProperties", 0))
        for i in range(want * 2 + 1):  # bounded
            if len(out) >= want:
                break
            name = next((n for n in props if n not in out), None)
            if name is not None:
                out[name] = self.value(props[name], f"{at}/properties/{name}", [*path, name], depth + 1)
            elif extra is not False:
                sub = extra if isinstance(extra, dict) else {}
                out[f"extra{i}"] = self.value(sub, f"{at}/additionalProperties", [*path, f"extra{i}"], depth + 1)
        return out


def pattern_string(pattern: str, rng: random.Random, at: str, min_length: int = 0, max_length: Any = None) -> str:
    """A string matching the regular expression ``pattern`` (a common subset: literals, classes,
    ``\\d \\w \\s``, groups, ``|``, ``? * + {m,n}``, anchors); AsyncAPIError at ``at`` otherwise."""
    try:
        tree = sre.parse(pattern)
    except re.error as exc:
        raise AsyncAPIError(at, f"pattern {pattern!r} is not a valid regular expression ({exc})") from None
    compiled = re.compile(pattern)
    for _ in range(ATTEMPTS):
        text = _emit(tree, rng, at, pattern)
        if compiled.search(text) and len(text) >= min_length and (max_length is None or len(text) <= max_length):
            return text
    raise AsyncAPIError(at, f"could not make a string matching {pattern!r} within minLength/maxLength; add "
                        "'examples' to the schema with a value that matches")


def _emit(items: Any, rng: random.Random, at: str, pattern: str) -> str:
    out = []
    for op, arg in items:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(arg))
        elif name == "ANY":
            out.append(rng.choice(_WORD))
        elif name == "IN":
            out.append(_from_class(arg, rng, at, pattern))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, sub = arg
            top = low + REGEX_REPEAT if high == sre.MAXREPEAT else min(high, low + REGEX_REPEAT)
            out.extend(_emit(sub, rng, at, pattern) for _ in range(rng.randint(low, max(low, top))))
        elif name == "SUBPATTERN":
            out.append(_emit(arg[-1], rng, at, pattern))
        elif name == "BRANCH":
            out.append(_emit(rng.choice(arg[1]), rng, at, pattern))
        elif name == "AT":
            continue  # ^ $ \b: anchors add no characters
        else:
            raise AsyncAPIError(at, f"pattern {pattern!r} uses {name.lower()}, which the generator does not "
                                "handle; add 'examples' to the schema with a value that matches")
    return "".join(out)


_CATEGORIES = {"CATEGORY_DIGIT": string.digits, "CATEGORY_WORD": _WORD, "CATEGORY_SPACE": " "}


def _from_class(items: Any, rng: random.Random, at: str, pattern: str) -> str:
    choices: list[str] = []
    for op, arg in items:
        name = str(op)
        if name == "LITERAL":
            choices.append(chr(arg))
        elif name == "RANGE":
            choices.extend(chr(c) for c in range(arg[0], min(arg[1], arg[0] + 200) + 1))
        elif name == "CATEGORY" and str(arg) in _CATEGORIES:
            choices.extend(_CATEGORIES[str(arg)])
        else:
            raise AsyncAPIError(at, f"pattern {pattern!r}: the class uses {name.lower()} (a negated class or an "
                                "unusual category); add 'examples' to the schema with a value that matches")
    return rng.choice(choices)


def _pad(value: Any, free: list[tuple[list[Any], int | None]], want: int) -> Any:
    """Lengthen the first free text field so the compact JSON grows by up to ``want`` bytes."""
    for path, most in free:
        if not path:
            if isinstance(value, str):
                room = want if most is None else max(0, most - len(value))
                return value + "x" * min(want, room)
            continue
        holder = value
        for key in path[:-1]:
            holder = holder[key]
        text = holder[path[-1]]
        room = want if most is None else max(0, most - len(text))
        if room > 0:
            holder[path[-1]] = text + "x" * min(want, room)
            return value
    return value


def example(schema: Any, *, root: dict[str, Any] | None = None, at: str = "#", seed: int = 0,
            size_bytes: int | None = None) -> Any:
    """One value valid against ``schema`` (at pointer ``at`` of document ``root``), drawn with ``seed``.

    ``size_bytes``: aim for this many bytes of compact JSON by padding a free text field (best effort).
    """
    return examples(schema, 1, root=root, at=at, seed=seed, size_bytes=size_bytes)[0]


def examples(schema: Any, count: int, *, root: dict[str, Any] | None = None, at: str = "#", seed: int = 0,
             size_bytes: int | None = None) -> list[Any]:
    """``count`` values valid against ``schema`` (each checked with jsonschema); AsyncAPIError naming ``at`` if
    the schema cannot be satisfied."""
    rng = random.Random(seed)
    check = validator(schema, root, at)
    out: list[Any] = []
    last_error = ""
    for _ in range(count * ATTEMPTS):  # bounded: a draw that fails validation is drawn again
        if len(out) >= count:
            break
        gen = _Gen(root, rng)
        value = gen.value(schema, at, [])
        if size_bytes:
            grow = size_bytes - len(json.dumps(value, separators=_COMPACT).encode())
            if grow > 0:
                value = _pad(value, gen.free, grow)
        error = next(iter(check.iter_errors(value)), None)
        if error is None:
            out.append(value)
        else:
            where = "/".join(str(p) for p in error.absolute_path)
            last_error = f"{error.message} (at payload /{where})"
    if len(out) < count:
        raise AsyncAPIError(at, f"no generated example satisfies the schema after {count * ATTEMPTS} draws; "
                            f"last: {last_error}; simplify the schema or give it 'examples'")
    return out
