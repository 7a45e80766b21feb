"""Configuration of the azblob connectors: parse and check plakar's string map.

Location: ``azblob://CONTAINER[/PREFIX]``. PREFIX may be percent-encoded by
plakar; it is decoded, duplicate slashes are collapsed and leading/trailing
slashes removed.

Authentication:

1. ``connection_string`` takes precedence over every other option (they are
   then ignored, as with the official connector). It must be ``key=value;...``
   pairs holding AccountName+AccountKey, SharedAccessSignature, BlobEndpoint
   or UseDevelopmentStorage=true.

Without it, the options must choose exactly one of these methods; options of
two methods together (say ``account_key`` and ``sas_token``, or
``no_auth=true`` and a ``client_secret``) are a conflict, reported by name:

2. ``account_key`` (needs ``account_name``): shared key (base64).
3. ``sas_token`` (needs ``account_name`` or ``endpoint``): shared access
   signature, with or without its leading ``?``.
4. ``no_auth=true`` (needs ``endpoint``): anonymous requests, for public
   containers and emulators only.
5. Microsoft Entra ID: ``account_name`` or an https ``endpoint`` and no key nor
   SAS. With ``tenant_id``, ``client_id`` and ``client_secret`` all set, a
   service principal (client secret) is used; otherwise DefaultAzureCredential
   (environment, workload identity, managed identity — ``client_id`` selects a
   user-assigned one — Azure CLI, ...).

Without ``endpoint`` the account URL is ``https://ACCOUNT.blob.core.windows.net``.

An option given with an empty value is an error (an unset shell variable in
``sas_token="$SAS"`` must not silently select another method). Messages name
the option and say what is expected; they never quote a secret value.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from kloset_sdk import ConfigError

ROLES = {"importer": "source", "exporter": "destination", "storage": "storage"}

COMMON_KEYS = frozenset({
    "location", "connection_string", "account_name", "account_key", "sas_token",
    "endpoint", "no_auth", "tenant_id", "client_id", "client_secret",
    "max_concurrency", "block_size",
})
# The connectors that list (the destination only writes).
IMPORTER_KEYS = COMMON_KEYS | {"list_concurrency"}
STORAGE_KEYS = COMMON_KEYS | {"tier", "list_concurrency"}
EXPORTER_KEYS = COMMON_KEYS | {"metadata_style"}
# Keys of a store's configuration that are plakar's own: it reads the store
# passphrase from them, but leaves them in the map it gives the connector when
# the store is the peer of `plakar sync` (and to its cache daemon). Ignored.
PLAKAR_KEYS = frozenset({"passphrase", "passphrase_cmd"})
# Options whose values are never quoted in a message.
SECRET_KEYS = frozenset({"connection_string", "account_key", "sas_token", "client_secret"})
ENTRA_KEYS = ("tenant_id", "client_id", "client_secret")

SCHEME = "azblob://"
MiB = 1024 * 1024
MIN_BLOCK_SIZE = 1 * MiB
MAX_BLOCK_SIZE = 100 * MiB
MAX_CONCURRENCY = 256
# List requests in flight at once for one listing (see transfer/keyranges.py).
DEFAULT_LIST_CONCURRENCY = 10
MAX_LIST_CONCURRENCY = 64
TIERS = ("hot", "cool", "cold")
# Which tool's metadata keys a restored blob gets its time, mode and owner in
# (see plakar_azblob.mapping.conventions); auto: the ones it came with.
METADATA_STYLES = ("auto", "rclone", "azcopy", "none")

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}
_SIZE = re.compile(r"^\s*(\d+)\s*([a-z]*)\s*$", re.IGNORECASE)
_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "kib": 1024, "kb": 1000,
    "m": MiB, "mib": MiB, "mb": 1000 ** 2,
    "g": 1024 ** 3, "gib": 1024 ** 3, "gb": 1000 ** 3,
}
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")


@dataclass(frozen=True)
class AzureConfig:
    """Checked settings of one connector; secrets are left out of its repr."""

    container: str
    prefix: str
    connection_string: str | None = field(default=None, repr=False)
    account_name: str | None = None
    account_key: str | None = field(default=None, repr=False)
    sas_token: str | None = field(default=None, repr=False)
    endpoint: str | None = None
    no_auth: bool = False
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    max_concurrency: int = 8
    block_size: int = 4 * MiB
    list_concurrency: int = DEFAULT_LIST_CONCURRENCY
    tier: str | None = None
    metadata_style: str = "auto"

    @property
    def auth_method(self) -> str:
        """Which way of authenticating is used (see the module docstring)."""
        if self.connection_string:
            return "connection_string"
        if self.account_key:
            return "account_key"
        if self.sas_token:
            return "sas"
        if self.no_auth:
            return "anonymous"
        return "entra_id"

    @property
    def location(self) -> str:
        """The location as the user would write it, for messages."""
        return f"{SCHEME}{self.container}/{self.prefix}" if self.prefix else \
            f"{SCHEME}{self.container}"

    def sas(self) -> str | None:
        """The SAS token in use (plain or inside the connection string), if any."""
        if self.connection_string:
            return connection_string_settings(self.connection_string).get(
                "SHAREDACCESSSIGNATURE") or None
        if self.auth_method == "sas":
            return self.sas_token
        return None


def sas_permissions(token: str) -> str | None:
    """The ``sp=`` permission letters of a SAS token, or None when absent."""
    values = parse_qs(token.lstrip("?")).get("sp")
    return values[0] if values else None


def connection_string_settings(value: str) -> dict[str, str]:
    """The settings of a connection string, keys upper-cased (Azure ignores their case).

    Messages never echo the string: it holds the account key or a SAS.
    """
    settings: dict[str, str] = {}
    for part in value.strip().split(";"):
        part = part.strip()
        if not part:
            continue
        key, sep, val = part.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z]+", key.strip()):
            raise ConfigError('malformed connection_string: expected key=value pairs '
                              'separated by ";"')
        settings[key.strip().upper()] = val.strip()
    return settings


def is_base64(value: str) -> bool:
    """Whether ``value`` is standard base64, as Azure shows account keys."""
    try:
        return bool(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return False


def _check_connection_string(value: str) -> None:
    s = connection_string_settings(value)
    if not s:
        raise ConfigError("malformed connection_string: it is empty")
    if s.get("USEDEVELOPMENTSTORAGE", "").lower() == "true":
        return
    if "ACCOUNTKEY" in s and "ACCOUNTNAME" not in s:
        raise ConfigError("malformed connection_string: AccountKey needs AccountName")
    if s.get("ACCOUNTKEY") and not is_base64(s["ACCOUNTKEY"]):
        raise ConfigError("malformed connection_string: AccountKey is not base64 (copy the "
                          "connection string from the storage account's Access keys)")
    if s.get("SHAREDACCESSSIGNATURE") and not _has_signature(s["SHAREDACCESSSIGNATURE"]):
        raise ConfigError("malformed connection_string: SharedAccessSignature has no sig= "
                          "signature (expected sv=...&sp=...&sig=...)")
    has_key = bool(s.get("ACCOUNTNAME")) and bool(s.get("ACCOUNTKEY"))
    if not (has_key or s.get("SHAREDACCESSSIGNATURE") or s.get("BLOBENDPOINT")):
        raise ConfigError("malformed connection_string: it needs AccountName and AccountKey, "
                          "SharedAccessSignature or BlobEndpoint")
    endpoint = s.get("BLOBENDPOINT")
    if not endpoint and not s.get("ACCOUNTNAME"):
        raise ConfigError("malformed connection_string: it needs BlobEndpoint or AccountName")
    if endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("malformed connection_string: BlobEndpoint is not an http(s) URL")


def check_container(name: str) -> None:
    """Apply Azure's container naming rules, saying exactly which one is broken."""
    bad = f'invalid container name "{name}"'
    if not 3 <= len(name) <= 63:
        raise ConfigError(f"{bad}: it must be 3 to 63 characters long")
    if not re.fullmatch(r"[a-z0-9-]+", name):
        raise ConfigError(f"{bad}: use lowercase letters, digits and hyphens only")
    if name[0] == "-" or name[-1] == "-":
        raise ConfigError(f"{bad}: it must start and end with a letter or digit")
    if "--" in name:
        raise ConfigError(f"{bad}: it must not contain two consecutive hyphens")


def parse_location(location: str) -> tuple[str, str]:
    """Split ``azblob://CONTAINER[/PREFIX]`` into container and clean prefix."""
    if not location:
        raise ConfigError("missing location: expected azblob://CONTAINER[/PREFIX]")
    if location[:len(SCHEME)].lower() != SCHEME:
        scheme = location.split("://", 1)[0] if "://" in location else ""
        what = f'unsupported scheme "{scheme}"' if scheme else "missing azblob:// scheme"
        raise ConfigError(f"invalid location: {what} (expected azblob://CONTAINER[/PREFIX])")
    rest = location[len(SCHEME):]
    if "?" in rest or "#" in rest:
        raise ConfigError("invalid location: it must not contain a query string or fragment")
    container, _, raw_prefix = rest.partition("/")
    container = unquote(container)
    if not container:
        raise ConfigError("invalid location: missing container (expected azblob://CONTAINER[/PREFIX])")
    check_container(container)
    segments = [s for s in unquote(raw_prefix).split("/") if s]
    if any(s in (".", "..") for s in segments):
        raise ConfigError('invalid location: the prefix must not contain "." or ".." segments')
    return container, "/".join(segments)


def _has_signature(token: str) -> bool:
    return "sig" in parse_qs(token.lstrip("?"))


def parse_bool(key: str, value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ConfigError(f'invalid value for {key}: "{value}" (expected true or false)')


def parse_size(key: str, value: str) -> int:
    """Bytes, or a number with a unit: K/M/G and KiB/MiB/GiB are binary, KB/MB/GB decimal."""
    m = _SIZE.match(value)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise ConfigError(f'invalid value for {key}: "{value}" (expected a size such as 4MiB)')
    return int(m.group(1)) * _UNITS[unit]


def _parse_int(key: str, value: str, low: int, high: int) -> int:
    expected = f"expected a whole number from {low} to {high}"
    try:
        n = int(value.strip())
    except ValueError:
        raise ConfigError(f'invalid value for {key}: "{value}" ({expected})') from None
    if not low <= n <= high:
        raise ConfigError(f'invalid value for {key}: "{value}" ({expected})')
    return n


def _check_endpoint(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("invalid endpoint: expected an http(s) URL such as "
                          "https://ACCOUNT.blob.core.windows.net")
    if parts.query or parts.fragment:
        # A query there would be a SAS: keep it in sas_token, where it is never shown.
        raise ConfigError("invalid endpoint: it must not contain a query string "
                          "(put a SAS in sas_token)")
    if parts.username or parts.password:
        raise ConfigError("invalid endpoint: it must not contain a user or password")
    return value.rstrip("/")


def parse_config(config: Mapping[str, str], role: str) -> AzureConfig:
    """Check plakar's config map for ``role`` (importer, exporter or storage)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    allowed = {"importer": IMPORTER_KEYS, "storage": STORAGE_KEYS,
               "exporter": EXPORTER_KEYS}[role]
    for key in sorted(config):
        if key not in allowed and key not in PLAKAR_KEYS:
            raise ConfigError(_unknown_option(key, role, allowed))
    for key in sorted(config):
        if key in allowed and key != "location" and not config[key].strip():
            raise ConfigError(f"empty value for {key}: give a value or leave the option out")

    def opt(key: str) -> str | None:
        value = config.get(key)
        return value.strip() if value and value.strip() else None

    container, prefix = parse_location(config.get("location", "").strip())

    no_auth = parse_bool("no_auth", config["no_auth"]) if opt("no_auth") else False
    max_concurrency = 8
    if (v := opt("max_concurrency")) is not None:
        max_concurrency = _parse_int("max_concurrency", v, 1, MAX_CONCURRENCY)
    list_concurrency = DEFAULT_LIST_CONCURRENCY
    if (v := opt("list_concurrency")) is not None:
        list_concurrency = _parse_int("list_concurrency", v, 1, MAX_LIST_CONCURRENCY)
    block_size = 4 * MiB
    if (v := opt("block_size")) is not None:
        block_size = parse_size("block_size", v)
        if not MIN_BLOCK_SIZE <= block_size <= MAX_BLOCK_SIZE:
            raise ConfigError(f'invalid value for block_size: "{v}" (expected 1MiB to 100MiB)')
    tier = None
    if (v := opt("tier")) is not None:
        tier = v.lower()
        if tier not in TIERS:
            raise ConfigError(f'invalid value for tier: "{v}" (expected hot, cool or cold)')

    metadata_style = "auto"
    if (v := opt("metadata_style")) is not None:
        metadata_style = v.lower()
        if metadata_style not in METADATA_STYLES:
            raise ConfigError(f'invalid value for metadata_style: "{v}" (expected auto, '
                              "rclone, azcopy or none)")

    endpoint = _check_endpoint(v) if (v := opt("endpoint")) is not None else None
    account_name = opt("account_name")
    if account_name is not None and not _ACCOUNT.match(account_name):
        raise ConfigError(f'invalid account_name "{account_name}": use 3 to 24 lowercase '
                          "letters and digits")
    sas_token = opt("sas_token")
    if sas_token is not None:
        sas_token = sas_token.lstrip("?")
        if not _has_signature(sas_token):
            raise ConfigError("malformed sas_token: expected a query string with a sig= "
                              "signature, such as sv=...&sp=rl&sig=...")
    account_key = opt("account_key")
    if account_key is not None and not is_base64(account_key):
        raise ConfigError("invalid account_key: it is not base64 (copy key1 or key2 from the "
                          "storage account's Access keys)")

    cfg = AzureConfig(
        container=container, prefix=prefix,
        connection_string=opt("connection_string"), account_name=account_name,
        account_key=account_key, sas_token=sas_token, endpoint=endpoint,
        no_auth=no_auth, tenant_id=opt("tenant_id"), client_id=opt("client_id"),
        client_secret=opt("client_secret"), max_concurrency=max_concurrency,
        block_size=block_size, list_concurrency=list_concurrency, tier=tier,
        metadata_style=metadata_style,
    )
    _check_auth(cfg)
    return cfg


def _unknown_option(key: str, role: str, allowed: frozenset[str]) -> str:
    owners = [owner for keys, owner in ((IMPORTER_KEYS, "source"), (STORAGE_KEYS, "storage"),
                                        (EXPORTER_KEYS, "destination")) if key in keys]
    if owners:
        return (f'option "{key}" is only for the azblob {" and ".join(owners)} '
                f"connector{'s' if len(owners) > 1 else ''}, not the {ROLES[role]} connector")
    text = f'unknown option "{key}" for the azblob {ROLES[role]} connector'
    close = difflib.get_close_matches(key.lower(), sorted(allowed), n=1, cutoff=0.75)
    return f'{text} (did you mean "{close[0]}"?)' if close else text


def _methods(cfg: AzureConfig) -> list[str]:
    """The authentication options set, one per method (no connection string)."""
    found = [k for k, v in (("account_key", cfg.account_key), ("sas_token", cfg.sas_token))
             if v]
    if cfg.no_auth:
        found.append("no_auth=true")
    entra = next((k for k in ENTRA_KEYS if getattr(cfg, k)), None)
    if entra is not None:
        found.append(entra)
    return found


def _check_auth(cfg: AzureConfig) -> None:
    method = cfg.auth_method
    if method != "connection_string":
        chosen = _methods(cfg)
        if len(chosen) > 1:
            raise ConfigError(f"conflicting options {chosen[0]} and {chosen[1]}: they are "
                              "different ways to authenticate, keep only one (or use "
                              "connection_string, which takes precedence)")
    if method == "connection_string":
        assert cfg.connection_string is not None
        _check_connection_string(cfg.connection_string)
    elif method == "account_key":
        if not cfg.account_name:
            raise ConfigError("account_key needs account_name")
    elif method == "sas":
        if not (cfg.account_name or cfg.endpoint):
            raise ConfigError("sas_token needs account_name or endpoint")
    elif method == "anonymous":
        if not cfg.endpoint:
            raise ConfigError("no_auth=true needs endpoint")
    else:
        if not (cfg.account_name or cfg.endpoint):
            raise ConfigError("no credentials: set connection_string, account_name+account_key, "
                              "sas_token, no_auth=true with endpoint, or account_name for "
                              "Microsoft Entra ID")
        if cfg.client_secret and not (cfg.tenant_id and cfg.client_id):
            raise ConfigError("client_secret needs tenant_id and client_id")
        if cfg.endpoint and not cfg.endpoint.startswith("https://"):
            # The Azure SDK refuses to send bearer tokens over plain http.
            raise ConfigError("Microsoft Entra ID needs an https endpoint")
