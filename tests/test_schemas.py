"""The package's JSON Schema validators agree with clients/config.py (options, rules, precedence).

The schemas ship in the plakar package (manifest ``validator``); plakar
v1.1.4 only checks that they are valid JSON, so nothing else would notice a
schema drifting from ``parse_config``. A small validator for the keywords
the schemas use (checked below) stands in for a JSON Schema library, which
the project does not depend on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from json_schema import valid

from kloset_sdk import ConfigError
from plakar_azblob.clients import config

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "src" / "plakar_azblob" / "schemas"
ROLES = ("importer", "exporter", "storage")

ANNOTATIONS = {"$schema", "title", "description", "default", "examples", "writeOnly"}
ASSERTIONS = {"type", "properties", "additionalProperties", "required", "pattern", "minLength",
              "enum", "const", "oneOf", "anyOf", "allOf", "not", "dependentRequired"}


def schema(role: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SCHEMAS / f"{role}.json").read_text())
    return data


def walk(s: Any) -> list[dict[str, Any]]:
    """Every subschema of ``s`` (``s`` included)."""
    found = [s]
    for sub in s.get("properties", {}).values():
        found += walk(sub)
    for key in ("oneOf", "anyOf", "allOf"):
        for sub in s.get(key, []):
            found += walk(sub)
    if "not" in s:
        found += walk(s["not"])
    return found


def accepted(cfg: Mapping[str, str], role: str) -> bool:
    try:
        config.parse_config(cfg, role)
    except ConfigError:
        return False
    return True


# -- the schemas' shape --

def allowed_keys(role: str) -> set[str]:
    """The options of ``role`` in clients/config.py; for a store, also plakar's own keys
    (passphrase...) that users put in a store's configuration and the connector
    ignores."""
    if role == "storage":
        return set(config.STORAGE_KEYS | config.PLAKAR_KEYS)
    if role == "exporter":
        return set(config.EXPORTER_KEYS)
    return set(config.IMPORTER_KEYS)


@pytest.mark.parametrize("role", ROLES)
def test_options_are_exactly_config_py_keys(role: str) -> None:
    allowed = allowed_keys(role)
    s = schema(role)
    assert set(s["properties"]) == set(allowed)
    assert s["additionalProperties"] is False and s["required"] == ["location"]
    # Branches may only speak of known options.
    for sub in walk(s):
        named = set(sub.get("properties", {})) | set(sub.get("required", []))
        named |= set(sub.get("dependentRequired", {}))
        assert named <= set(allowed), named - set(allowed)


@pytest.mark.parametrize("role", ROLES)
def test_only_known_keywords_and_portable_patterns(role: str) -> None:
    for sub in walk(schema(role)):
        unknown = set(sub) - ANNOTATIONS - ASSERTIONS
        assert not unknown, f"the tiny validator does not know {unknown}"
        if "pattern" in sub:
            re.compile(sub["pattern"])
            # ECMA-262 and RE2 (Go) alike: no lookaround, no backreference.
            assert not re.search(r"\(\?[=!<]|\\[1-9]", sub["pattern"]), sub["pattern"]


@pytest.mark.parametrize("role", ROLES)
def test_every_value_is_a_string(role: str) -> None:
    for name, prop in schema(role)["properties"].items():
        assert prop["type"] == "string", name
        assert prop.get("description"), name
        if "default" in prop:
            assert isinstance(prop["default"], str) and valid(prop, prop["default"]), name


def test_common_options_are_described_the_same_for_all_connectors() -> None:
    importer, exporter, storage = (schema(r) for r in ROLES)
    listing = {"list_concurrency"}  # the connectors that list: source and storage
    assert {k: v for k, v in exporter["properties"].items() if k != "metadata_style"} == \
        {k: v for k, v in importer["properties"].items() if k not in listing}
    own = {"tier", *config.PLAKAR_KEYS}
    assert {k: v for k, v in storage["properties"].items() if k not in own} == \
        importer["properties"]
    assert importer["oneOf"] == exporter["oneOf"] == storage["oneOf"]
    precedence = "connection_string takes precedence over every other option"
    assert all(precedence in schema(r)["description"] for r in ROLES)


def test_manifest_points_at_the_schemas() -> None:
    text = (ROOT / "manifest.yaml").read_text()
    found = dict(re.findall(r"- type: (\w+)\n(?:\s{4}.*\n)*?\s{4}validator: (\S+)", text))
    assert set(found) == set(ROLES)
    for role in ROLES:
        assert found[role].endswith(f"schemas/{role}.json"), found


# -- the schemas decide like parse_config --

CS = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
      "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;")
SAS = "sv=2024-08-04&sp=rl&sr=c&sig=c2lnbmF0dXJl"
HTTP = "http://127.0.0.1:10000/devstoreaccount1"
HTTPS = "https://acct.blob.core.windows.net"
LOC = "azblob://my-container/some/prefix"

SAMPLES: list[tuple[dict[str, str], bool]] = [
    # connection string, alone or over everything else
    ({"connection_string": CS}, True),
    ({"connection_string": CS, "account_name": "acct", "account_key": "a2V5", "no_auth": "true",
      "sas_token": SAS, "endpoint": HTTP, "client_secret": "s"}, True),
    ({"connection_string": "UseDevelopmentStorage=true"}, True),
    # shared key
    ({"account_name": "acct", "account_key": "a2V5"}, True),
    ({"account_name": "devstoreaccount1", "account_key": "a2V5", "endpoint": HTTP}, True),
    ({"account_name": "acct", "account_key": "a2V5", "no_auth": "false"}, True),
    ({"account_name": "acct", "account_key": "a2V5/+A="}, True),
    ({"account_key": "a2V5"}, False),
    ({"account_name": "acct", "account_key": "not base64"}, False),
    ({"account_name": "acct", "account_key": "a2V"}, False),
    # conflicting methods (no connection string)
    ({"account_name": "acct", "account_key": "a2V5", "sas_token": SAS, "no_auth": "true"}, False),
    ({"account_name": "acct", "account_key": "a2V5", "sas_token": SAS}, False),
    ({"account_name": "acct", "account_key": "a2V5", "no_auth": "true", "endpoint": HTTP}, False),
    ({"account_name": "acct", "account_key": "a2V5", "client_id": "c"}, False),
    ({"account_name": "acct", "sas_token": SAS, "no_auth": "1", "endpoint": HTTP}, False),
    ({"account_name": "acct", "sas_token": SAS, "tenant_id": "t"}, False),
    ({"no_auth": "true", "endpoint": HTTP, "client_secret": "s"}, False),
    ({"account_key": "a2V5", "endpoint": HTTP}, False),
    # SAS
    ({"account_name": "acct", "sas_token": SAS}, True),
    ({"endpoint": HTTP, "sas_token": "?" + SAS}, True),
    ({"sas_token": SAS}, False),
    ({"account_name": "acct", "sas_token": "sv=2024-08-04&sp=rl"}, False),
    ({"connection_string": "BlobEndpoint=" + HTTP + ";SharedAccessSignature=" + SAS}, True),
    # anonymous
    ({"no_auth": "true", "endpoint": HTTP}, True),
    ({"no_auth": "True", "endpoint": HTTP, "account_name": "devstoreaccount1"}, True),
    ({"no_auth": "1", "endpoint": HTTPS}, True),
    ({"no_auth": "true"}, False),
    ({"no_auth": "true", "account_name": "acct"}, False),
    ({"no_auth": "maybe", "endpoint": HTTP}, False),
    # Microsoft Entra ID
    ({"account_name": "acct"}, True),
    ({"endpoint": HTTPS}, True),
    ({"account_name": "acct", "no_auth": "false"}, True),
    ({"account_name": "acct", "client_id": "11111111-2222"}, True),
    ({"account_name": "acct", "tenant_id": "t", "client_id": "c", "client_secret": "s"}, True),
    ({"endpoint": HTTPS, "tenant_id": "t"}, True),
    ({"account_name": "acct", "client_secret": "s"}, False),
    ({"account_name": "acct", "client_secret": "s", "tenant_id": "t"}, False),
    ({"endpoint": HTTP}, False),
    ({"account_name": "acct", "endpoint": HTTP}, False),
    ({}, False),
    # other options
    ({"account_name": "acct", "max_concurrency": "16", "block_size": "8MiB"}, True),
    ({"account_name": "acct", "max_concurrency": "256", "block_size": "1048576"}, True),
    ({"account_name": "acct", "block_size": "16 mb"}, True),
    ({"account_name": "acct", "max_concurrency": "0"}, False),
    ({"account_name": "acct", "max_concurrency": "257"}, False),
    ({"account_name": "acct", "max_concurrency": "many"}, False),
    ({"account_name": "acct", "block_size": "4 parsecs"}, False),
    ({"account_name": "Bad_Name"}, False),
    ({"account_name": "acct", "endpoint": "https://h/acct?sv=1&sig=x"}, False),
    ({"account_name": "acct", "endpoint": "https://user:pw@h/acct"}, False),
    ({"account_name": "acct", "endpoint": "ftp://h/acct"}, False),
    ({"account_name": "acct", "bucket": "x"}, False),
    # empty values
    ({"account_name": "acct", "client_id": ""}, False),
    ({"account_name": "acct", "client_id": "  "}, False),
    ({"account_name": "acct", "max_concurrency": ""}, False),
    ({"connection_string": CS, "sas_token": ""}, False),
]
LOCATIONS: list[tuple[str, bool]] = [
    ("azblob://abc", True), ("azblob://my-container", True), ("AZBLOB://c0ntainer/x", True),
    ("azblob://c-1/a/b/", True), ("azblob://ab", False), ("azblob://a--b", False),
    ("azblob://-abc", False), ("azblob://Upper", False), ("s3://bucket", False),
    ("azblob://", False), ("azblob:///prefix", False),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("options", "ok"), SAMPLES)
def test_schema_decides_like_parse_config(role: str, options: dict[str, str], ok: bool) -> None:
    cfg = {"location": LOC, **options}
    assert accepted(cfg, role) is ok, "the sample's expectation is wrong"
    assert valid(schema(role), cfg) is ok


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("location", "ok"), LOCATIONS)
def test_location(role: str, location: str, ok: bool) -> None:
    cfg = {"location": location, "connection_string": CS}
    assert accepted(cfg, role) is ok
    assert valid(schema(role), cfg) is ok
    assert not valid(schema(role), {"connection_string": CS})


ROLE_OPTIONS = [("storage", "tier", value, ok) for value, ok in (
    ("hot", True), ("cool", True), ("Cold", True), ("archive", False), ("", False))] + [
    ("exporter", "metadata_style", value, ok) for value, ok in (
        ("auto", True), ("rclone", True), ("AzCopy", True), ("none", True), ("s3", False),
        ("", False))]


@pytest.mark.parametrize(("role", "key", "value", "ok"), ROLE_OPTIONS)
def test_options_of_one_connector(role: str, key: str, value: str, ok: bool) -> None:
    """tier is the storage's own option, metadata_style the destination's."""
    cfg = {"location": LOC, "connection_string": CS, key: value}
    if value:
        assert accepted(cfg, role) is ok
    assert valid(schema(role), cfg) is ok
    for other in set(ROLES) - {role}:
        assert not accepted(cfg, other) and not valid(schema(other), cfg)


def test_a_store_may_hold_plakar_s_passphrase() -> None:
    cfg = {"location": LOC, "connection_string": CS, "passphrase": "secret",
           "passphrase_cmd": "cat /run/secret"}
    assert accepted(cfg, "storage") and valid(schema("storage"), cfg)


def test_what_a_schema_cannot_say() -> None:
    """Ranges of sizes are the known difference."""
    s = schema("storage")
    big = {"location": LOC, "account_name": "acct", "block_size": "200MiB"}
    assert valid(s, big) and not accepted(big, "storage")
