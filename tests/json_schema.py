"""A tiny JSON Schema (2020-12) validator, for the keywords the connectors' schemas and
the official Go package's use: type (object, string, boolean), const, enum, minLength,
pattern, properties, required, additionalProperties, dependentRequired, allOf, anyOf,
oneOf, not."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


def valid(s: Mapping[str, Any], value: Any) -> bool:
    t = s.get("type")
    if t == "object" and not isinstance(value, dict):
        return False
    if t == "string" and not isinstance(value, str):
        return False
    if t == "boolean" and not isinstance(value, bool):
        return False
    if "const" in s and value != s["const"]:
        return False
    if "enum" in s and value not in s["enum"]:
        return False
    if isinstance(value, str):
        if len(value) < s.get("minLength", 0):
            return False
        if "pattern" in s and not re.search(s["pattern"], value):
            return False
    if isinstance(value, dict):
        props = s.get("properties", {})
        if any(k not in value for k in s.get("required", [])):
            return False
        if s.get("additionalProperties") is False and any(k not in props for k in value):
            return False
        if any(k in value and not valid(sub, value[k]) for k, sub in props.items()):
            return False
        for key, needed in s.get("dependentRequired", {}).items():
            if key in value and any(n not in value for n in needed):
                return False
    if "allOf" in s and not all(valid(sub, value) for sub in s["allOf"]):
        return False
    if "anyOf" in s and not any(valid(sub, value) for sub in s["anyOf"]):
        return False
    if "oneOf" in s and sum(valid(sub, value) for sub in s["oneOf"]) != 1:
        return False
    return not ("not" in s and valid(s["not"], value))
