"""Bad input through the real plakar: one clear line, no traceback, no secret, fast.

Each case of the table configures one connector the way a user does (source:
``source add`` + ``backup @NAME`` or ``backup -o ... LOCATION``; storage:
``store add`` + ``at @NAME create`` or ``ls``; destination:
``destination add`` + ``restore -to @NAME`` or ``restore -o ... -to
LOCATION``) with one mistake, and checks what plakar shows: a non-zero exit,
exactly one line holding the expected message (see
:func:`clear_errors.assert_clear_failure`), and none of the case's secrets
(each case carries a distinctive fake one, or Azurite's key) anywhere in
stdout or stderr.

Templates in the table (``{ep}``, ``{c}``...) are filled from :class:`World`.
Everything runs in one plakar environment with a plaintext local store
(no key derivation per command), so the ~60 plakar commands take well under
a minute; every one is bounded (``TIMEOUT``), and a service that cannot be
reached (a closed loopback port) must be reported within ``FAIL_FAST``.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest
from azblob_helpers import new_container
from azure.storage.blob import ContainerSasPermissions, generate_container_sas
from azurite import ACCOUNT, KEY, Azurite, free_port
from clear_errors import assert_clear_failure
from plakar_env import PlakarEnv, snapshot_id

pytestmark = [pytest.mark.plakar, pytest.mark.azurite]

TIMEOUT = 60  # seconds, for any plakar command
FAIL_FAST = 15  # seconds: an unreachable endpoint must be reported within this

# Distinctive fake secrets: none may ever be shown.
FAKE_KEY = base64.b64encode(b"fake account key, never to be shown: " + b"k" * 27).decode()
FAKE_SIG = "FakeSignatureNeverShown0123456789abcdef%3D"
FAKE_SAS = f"sv=2024-08-04&sp=rwl&sr=c&se=2099-01-01T00%3A00%3A00Z&sig={FAKE_SIG}"
FAKE_SECRET = "fake-client-secret-never-shown-5f2c"
FAKE_PASS = "fake-passphrase-never-shown-81d7"
FAKE_CONN_KEY = "Fake*Key*Not*Base64*Never*Shown"


Connector = Literal["source", "storage", "destination"]


@dataclass(frozen=True)
class Case:
    """One mistake: where, how, what the line must say, and what must never show."""

    id: str
    connector: Connector
    location: str
    options: tuple[str, ...]
    expect: str
    secrets: tuple[str, ...]
    # source/destination: "add" (a named source/destination) or "-o" (options on the
    # command line); storage: "create" or "ls" (after store add).
    via: str = "add"


def case(id: str, connector: Connector, location: str, options: str, expect: str,
         secrets: str, via: str = "add") -> pytest.ParameterSet:
    """A table row: ``options`` and ``secrets`` are space-separated."""
    return pytest.param(Case(id, connector, location, tuple(options.split()), expect,
                             tuple(secrets.split()), via), id=id)


KEYED = "account_name=devstoreaccount1 account_key={fake_key}"
AZ_KEY = "account_name=devstoreaccount1 account_key={key} endpoint={ep}"
WRONG_KEY = "account_name=devstoreaccount1 account_key={fake_key} endpoint={ep}"
CLOSED = "account_name=devstoreaccount1 account_key={fake_key} endpoint={closed}"
NO_CREDENTIALS = ("no credentials: set connection_string, account_name+account_key, sas_token, "
                  "no_auth=true with endpoint, or account_name for Microsoft Entra ID")
CONFLICT = ("conflicting options {}: they are different ways to authenticate, keep only one "
            "(or use connection_string, which takes precedence)")
EMPTY = "empty value for {}: give a value or leave the option out"
KEY_REFUSED = ("the account key was refused (wrong key, or not allowed by the account's "
               "network rules) (AuthorizationFailure, HTTP 403)")
SAS_REFUSED = ("the SAS token was refused (wrong signature, or not allowed by the account's "
               "network rules) (AuthorizationFailure, HTTP 403)")
UNREACHABLE = "cannot reach {closed}: connection refused"

CASES = [
    # -- source: plakar at STORE backup @NAME / backup -o ... LOCATION --
    case("src-unknown-option", "source", "azblob://{c}", "connection_string={conn} colour=blue",
         'unknown option "colour" for the azblob source connector', "{key}"),
    case("src-misspelled-option", "source", "azblob://{c}",
         "account_name=devstoreaccount1 acount_key={fake_key}",
         'unknown option "acount_key" for the azblob source connector (did you mean '
         '"account_key"?)', "{fake_key}", via="-o"),
    case("src-storage-only-option", "source", "azblob://{c}", KEYED + " tier=cool",
         'option "tier" is only for the azblob storage connector, not the source connector',
         "{fake_key}"),
    case("src-container-uppercase", "source", "azblob://Bad_Name", "connection_string={conn}",
         'invalid container name "Bad_Name": use lowercase letters, digits and hyphens only',
         "{key}", via="-o"),
    case("src-container-too-short", "source", "azblob://ab", KEYED,
         'invalid container name "ab": it must be 3 to 63 characters long', "{fake_key}"),
    case("src-container-double-hyphen", "source", "azblob://a--b", KEYED,
         'invalid container name "a--b": it must not contain two consecutive hyphens',
         "{fake_key}", via="-o"),
    case("src-no-container", "source", "azblob://", KEYED,
         "invalid location: missing container (expected azblob://CONTAINER[/PREFIX])",
         "{fake_key}", via="-o"),
    case("src-dot-dot-prefix", "source", "azblob://{c}/a/../b", KEYED,
         'invalid location: the prefix must not contain "." or ".." segments', "{fake_key}",
         via="-o"),
    case("src-query-in-location", "source", "azblob://{c}/p?x=1", KEYED,
         "invalid location: it must not contain a query string or fragment", "{fake_key}",
         via="-o"),
    case("src-bad-boolean", "source", "azblob://{c}", KEYED + " no_auth=maybe",
         'invalid value for no_auth: "maybe" (expected true or false)', "{fake_key}"),
    case("src-bad-account-name", "source", "azblob://{c}",
         "account_name=My_Account account_key={fake_key}",
         'invalid account_name "My_Account": use 3 to 24 lowercase letters and digits',
         "{fake_key}"),
    case("src-key-not-base64", "source", "azblob://{c}",
         "account_name=devstoreaccount1 account_key={fake_conn_key}",
         "invalid account_key: it is not base64 (copy key1 or key2 from the storage "
         "account's Access keys)", "{fake_conn_key}"),
    case("src-empty-sas", "source", "azblob://{c}", KEYED + " sas_token=",
         EMPTY.format("sas_token"), "{fake_key}", via="-o"),
    case("src-conflict-key-and-sas", "source", "azblob://{c}", KEYED + " sas_token={fake_sas}",
         CONFLICT.format("account_key and sas_token"), "{fake_key} {fake_sas}"),
    case("src-conflict-no-auth-and-secret", "source", "azblob://{c}",
         "endpoint={ep} no_auth=true tenant_id=t client_id=c client_secret={fake_secret}",
         CONFLICT.format("no_auth=true and tenant_id"), "{fake_secret}"),
    case("src-conn-garbage", "source", "azblob://{c}",
         "connection_string=not-a-connection-string-{fake_secret}",
         'malformed connection_string: expected key=value pairs separated by ";"',
         "{fake_secret}"),
    case("src-conn-key-not-base64", "source", "azblob://{c}",
         "connection_string=AccountName=devstoreaccount1;AccountKey={fake_conn_key};"
         "BlobEndpoint={ep}",
         "malformed connection_string: AccountKey is not base64", "{fake_conn_key}"),
    case("src-conn-key-without-name", "source", "azblob://{c}",
         "connection_string=AccountKey={fake_key};BlobEndpoint={ep}",
         "malformed connection_string: AccountKey needs AccountName", "{fake_key}", via="-o"),
    case("src-conn-sas-without-endpoint", "source", "azblob://{c}",
         "connection_string=SharedAccessSignature={fake_sas}",
         "malformed connection_string: it needs BlobEndpoint or AccountName", "{fake_sas}"),
    case("src-conn-wrong-key", "source", "azblob://{c}",
         "connection_string=DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
         "AccountKey={fake_key};BlobEndpoint={ep}",
         "cannot list azblob://{c}: " + KEY_REFUSED, "{fake_key}"),
    case("src-missing-container", "source", "azblob://{nc}", "connection_string={conn}",
         "cannot list azblob://{nc}: the container does not exist (ContainerNotFound, "
         "HTTP 404)", "{key}"),
    case("src-sas-garbage", "source", "azblob://{c}",
         "endpoint={ep} sas_token=garbage-{fake_secret}",
         "malformed sas_token: expected a query string with a sig= signature, such as "
         "sv=...&sp=rl&sig=...", "{fake_secret}", via="-o"),
    case("src-sas-wrong-signature", "source", "azblob://{c}",
         "endpoint={ep} sas_token={sas_badsig}",
         "cannot list azblob://{c}: " + SAS_REFUSED, "{sas_badsig}"),
    case("src-sas-expired", "source", "azblob://{c}", "endpoint={ep} sas_token={sas_expired}",
         "cannot list azblob://{c}: the SAS token expired at {expired_at} (make a new one)",
         "{sas_expired}"),
    case("src-unreachable", "source", "azblob://{c}", CLOSED,
         "cannot list azblob://{c}: " + UNREACHABLE, "{fake_key}", via="-o"),
    case("src-endpoint-not-http", "source", "azblob://{c}",
         "account_name=devstoreaccount1 account_key={fake_key} endpoint=ftp://127.0.0.1/x",
         "invalid endpoint: expected an http(s) URL such as "
         "https://ACCOUNT.blob.core.windows.net", "{fake_key}"),
    case("src-endpoint-with-sas", "source", "azblob://{c}",
         "account_name=devstoreaccount1 endpoint={ep}?{fake_sas}",
         "invalid endpoint: it must not contain a query string (put a SAS in sas_token)",
         "{fake_sas}", via="-o"),
    case("src-endpoint-with-password", "source", "azblob://{c}",
         "account_name=devstoreaccount1 endpoint=http://admin:{fake_secret}@127.0.0.1:1/x",
         "invalid endpoint: it must not contain a user or password", "{fake_secret}"),
    case("src-client-secret-alone", "source", "azblob://{c}",
         "account_name=devstoreaccount1 client_secret={fake_secret}",
         "client_secret needs tenant_id and client_id", "{fake_secret}"),
    case("src-entra-over-http", "source", "azblob://{c}",
         "endpoint={ep} tenant_id=t client_id=c client_secret={fake_secret}",
         "Microsoft Entra ID needs an https endpoint", "{fake_secret}"),

    # -- storage: plakar store add NAME ... ; plakar at @NAME create / ls --
    case("st-unknown-option", "storage", "azblob://{c}/k", KEYED + " bucket=x",
         'unknown option "bucket" for the azblob storage connector', "{fake_key}",
         via="create"),
    case("st-bad-tier", "storage", "azblob://{c}/k", KEYED + " tier=archive",
         'invalid value for tier: "archive" (expected hot, cool or cold)', "{fake_key}",
         via="create"),
    case("st-concurrency-zero", "storage", "azblob://{c}/k", KEYED + " max_concurrency=0",
         'invalid value for max_concurrency: "0" (expected a whole number from 1 to 256)',
         "{fake_key}", via="ls"),
    case("st-concurrency-words", "storage", "azblob://{c}/k", KEYED + " max_concurrency=lots",
         'invalid value for max_concurrency: "lots" (expected a whole number from 1 to 256)',
         "{fake_key}", via="create"),
    case("st-block-size-too-big", "storage", "azblob://{c}/k", KEYED + " block_size=200MiB",
         'invalid value for block_size: "200MiB" (expected 1MiB to 100MiB)', "{fake_key}",
         via="create"),
    case("st-block-size-too-small", "storage", "azblob://{c}/k", KEYED + " block_size=512KiB",
         'invalid value for block_size: "512KiB" (expected 1MiB to 100MiB)', "{fake_key}",
         via="ls"),
    case("st-block-size-unit", "storage", "azblob://{c}/k", KEYED + " block_size=4parsecs",
         'invalid value for block_size: "4parsecs" (expected a size such as 4MiB)',
         "{fake_key}", via="create"),
    case("st-no-auth-without-endpoint", "storage", "azblob://{c}/k",
         "no_auth=true passphrase={fake_pass}", "no_auth=true needs endpoint", "{fake_pass}",
         via="create"),
    case("st-no-credentials", "storage", "azblob://{c}/k", "passphrase={fake_pass}",
         NO_CREDENTIALS, "{fake_pass}", via="ls"),
    case("st-empty-account-key", "storage", "azblob://{c}/k",
         "account_name=devstoreaccount1 account_key= passphrase={fake_pass}",
         EMPTY.format("account_key"), "{fake_pass}", via="ls"),
    case("st-conflict-key-and-no-auth", "storage", "azblob://{c}/k",
         AZ_KEY + " no_auth=true", CONFLICT.format("account_key and no_auth=true"), "{key}",
         via="create"),
    case("st-bad-container", "storage", "azblob://-abc/k", KEYED,
         'invalid container name "-abc": it must start and end with a letter or digit',
         "{fake_key}", via="ls"),
    case("st-wrong-key-create", "storage", "azblob://{c}/k", WRONG_KEY,
         "azblob://{c}/k: " + KEY_REFUSED, "{fake_key}", via="create"),
    case("st-wrong-key-ls", "storage", "azblob://{c}/k", WRONG_KEY,
         "cannot open the Kloset store at azblob://{c}/k: " + KEY_REFUSED, "{fake_key}",
         via="ls"),
    case("st-sas-wrong-signature", "storage", "azblob://{c}/k",
         "endpoint={ep} sas_token={sas_badsig}",
         "cannot open the Kloset store at azblob://{c}/k: " + SAS_REFUSED, "{sas_badsig}",
         via="ls"),
    case("st-sas-expired", "storage", "azblob://{c}/k", "endpoint={ep} sas_token={sas_expired}",
         "azblob://{c}/k: the SAS token expired at {expired_at} (make a new one)",
         "{sas_expired}", via="create"),
    case("st-unreachable-create", "storage", "azblob://{c}/k", CLOSED,
         "azblob://{c}/k: " + UNREACHABLE, "{fake_key}", via="create"),
    case("st-unreachable-ls", "storage", "azblob://{c}/k", CLOSED,
         "cannot open the Kloset store at azblob://{c}/k: " + UNREACHABLE, "{fake_key}",
         via="ls"),
    case("st-no-store-there", "storage", "azblob://{c}/nothing-here", AZ_KEY,
         "no Kloset store at azblob://{c}/nothing-here: CONFIG not found", "{key}", via="ls"),
    case("st-no-auth-private-container", "storage", "azblob://{c}/k",
         "no_auth=true endpoint={ep} passphrase={fake_pass}",
         "cannot open the Kloset store at azblob://{c}/k: the credentials are not allowed to do "
         "this (AuthorizationFailure, HTTP 403)", "{fake_pass}", via="ls"),

    # -- destination: plakar at STORE restore -to @NAME / restore -o ... -to LOCATION --
    case("dst-unknown-option", "destination", "azblob://{c}", KEYED + " prefix=x",
         'unknown option "prefix" for the azblob destination connector', "{fake_key}"),
    case("dst-storage-only-option", "destination", "azblob://{c}", KEYED + " tier=hot",
         'option "tier" is only for the azblob storage connector, not the destination '
         "connector", "{fake_key}", via="-o"),
    case("dst-bad-metadata-style", "destination", "azblob://{c}", KEYED + " metadata_style=s3",
         'invalid value for metadata_style: "s3" (expected auto, rclone, azcopy or none)',
         "{fake_key}", via="-o"),
    case("src-destination-only-option", "source", "azblob://{c}",
         KEYED + " metadata_style=rclone",
         'option "metadata_style" is only for the azblob destination connector, not the '
         "source connector", "{fake_key}"),
    case("dst-container-with-dot", "destination", "azblob://my.container", KEYED,
         'invalid container name "my.container": use lowercase letters, digits and hyphens '
         "only", "{fake_key}"),
    case("dst-bad-boolean", "destination", "azblob://{c}", KEYED + " no_auth=sometimes",
         'invalid value for no_auth: "sometimes" (expected true or false)', "{fake_key}",
         via="-o"),
    case("dst-concurrency-too-high", "destination", "azblob://{c}",
         KEYED + " max_concurrency=1000",
         'invalid value for max_concurrency: "1000" (expected a whole number from 1 to 256)',
         "{fake_key}"),
    case("dst-conflict-sas-and-client-id", "destination", "azblob://{c}",
         "account_name=devstoreaccount1 sas_token={fake_sas} client_id=c",
         CONFLICT.format("sas_token and client_id"), "{fake_sas}", via="-o"),
    case("dst-conn-sas-without-signature", "destination", "azblob://{c}",
         "connection_string=BlobEndpoint={ep};SharedAccessSignature=sv=1&sp=rw&{fake_secret}=1",
         "malformed connection_string: SharedAccessSignature has no sig= signature",
         "{fake_secret}"),
    case("dst-read-only-sas", "destination", "azblob://{c}",
         "endpoint={ep} sas_token={sas_read_only}",
         'sas_token cannot write blobs (its permissions are "rl"): a destination needs w '
         "(write) or c (create)", "{sas_read_only}"),
    case("dst-wrong-key", "destination", "azblob://{c}/restored", WRONG_KEY,
         "cannot restore to azblob://{c}/restored: " + KEY_REFUSED, "{fake_key}"),
    case("dst-sas-expired", "destination", "azblob://{c}",
         "endpoint={ep} sas_token={sas_expired_rw}",
         "cannot restore to azblob://{c}: the SAS token expired at {expired_at} "
         "(make a new one)", "{sas_expired_rw}", via="-o"),
    case("dst-unreachable", "destination", "azblob://{c}", CLOSED,
         "cannot restore to azblob://{c}: " + UNREACHABLE, "{fake_key}"),
]


@dataclass
class World:
    """What the cases run against: one plakar, one local store and snapshot, Azurite."""

    env: PlakarEnv
    store: str
    snapshot: str
    values: dict[str, str]

    def fill(self, template: str) -> str:
        return template.format(**self.values)


def _sas(container: str, expiry: datetime, **perms: bool) -> str:
    return generate_container_sas(ACCOUNT, container, account_key=KEY,
                                  permission=ContainerSasPermissions(**perms),
                                  start=expiry - timedelta(days=1), expiry=expiry)


@pytest.fixture(scope="module")
def world(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from azblob_package import install_azblob

    env = PlakarEnv()
    try:
        install_azblob(env, tmp_path_factory.mktemp("azblob-pkg"))
        store = str(env.root / "store")
        env.run("at", store, "create", "-plaintext", timeout=TIMEOUT)
        files = tmp_path_factory.mktemp("files")
        (files / "a.txt").write_text("a file to restore\n")
        snap = snapshot_id(env.run("at", store, "backup", str(files), timeout=TIMEOUT))
        container = new_container(azurite, "bad")  # private
        container.upload_blob("x.txt", b"x")
        name = container.container_name
        good = datetime.now(UTC) + timedelta(hours=1)
        past = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
        badsig = _sas(name, good, read=True, list=True).split("&sig=")[0] + "&sig=" + \
            base64.b64encode(b"a wrong signature, never shown!!").decode()
        values = {
            "ep": azurite.endpoint,
            "closed": f"http://127.0.0.1:{free_port()}/{ACCOUNT}",
            "c": name,
            "nc": f"missing-{uuid.uuid4().hex[:10]}",
            "key": KEY,
            "conn": azurite.connection_string,
            "fake_key": FAKE_KEY,
            "fake_sas": FAKE_SAS,
            "fake_secret": FAKE_SECRET,
            "fake_pass": FAKE_PASS,
            "fake_conn_key": FAKE_CONN_KEY,
            "sas_badsig": badsig,
            "sas_expired": _sas(name, past, read=True, list=True),
            "sas_expired_rw": _sas(name, past, read=True, write=True, create=True, list=True),
            "sas_read_only": _sas(name, good, read=True, list=True),
            "expired_at": past.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        yield World(env, store, snap, values)
    finally:
        env.stop()


def commands(world: World, c: Case) -> tuple[list[list[str]], list[str]]:
    """The setup commands (which must succeed) and the command that must fail."""
    location = world.fill(c.location)
    options = [world.fill(o) for o in c.options]
    name = c.id
    if c.connector == "source":
        if c.via == "-o":
            return [], ["at", world.store, "backup", *_dash_o(options), location]
        return [["source", "add", name, location, *options]], \
            ["at", world.store, "backup", f"@{name}"]
    if c.connector == "storage":
        action = ["create", "-plaintext"] if c.via == "create" else ["ls"]
        return [["store", "add", name, location, *options]], ["at", f"@{name}", *action]
    if c.via == "-o":
        return [], ["at", world.store, "restore", *_dash_o(options), "-to", location,
                    world.snapshot]
    return [["destination", "add", name, location, *options]], \
        ["at", world.store, "restore", "-to", f"@{name}", world.snapshot]


def _dash_o(options: list[str]) -> list[str]:
    return [word for option in options for word in ("-o", option)]


@pytest.mark.parametrize("c", CASES)
def test_bad_input(world: World, c: Case) -> None:
    assert c.secrets, "every case carries a secret that must not be shown"
    setup, failing = commands(world, c)
    for args in setup:
        world.env.run(*args, timeout=TIMEOUT)
    started = time.monotonic()
    proc = world.env.run(*failing, ok=False, timeout=TIMEOUT)
    elapsed = time.monotonic() - started
    line = assert_clear_failure(proc, world.fill(c.expect), [world.fill(s) for s in c.secrets])
    print(f"{elapsed:.2f} s: {line}")
    if "{closed}" in "".join(c.options):
        assert elapsed < FAIL_FAST, f"an unreachable endpoint took {elapsed:.1f} s to report"


def test_the_table() -> None:
    """At least 40 cases, every connector and way in, ids unique and usable as names."""
    cases = [c for p in CASES for c in p.values if isinstance(c, Case)]
    assert len(cases) == len(CASES) >= 40
    assert len({c.id for c in cases}) == len(cases)
    ways = {(c.connector, c.via) for c in cases}
    assert ways == {("source", "add"), ("source", "-o"), ("storage", "create"),
                    ("storage", "ls"), ("destination", "add"), ("destination", "-o")}


def test_nothing_was_written_by_the_failed_restores(world: World, azurite: Azurite) -> None:
    """The destination cases stopped before writing: the container holds only its blob."""
    from azblob_helpers import service

    container = service(azurite).get_container_client(world.values["c"])
    assert [b.name for b in container.list_blobs()] == ["x.txt"]

