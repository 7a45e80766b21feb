"""parse_config: locations, options, authentication precedence and error messages."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError

from kloset_sdk import ConfigError, ConnectorError, NotFoundError, PermissionDeniedError
from plakar_azblob.clients.config import AzureConfig, parse_config, sas_permissions
from plakar_azblob.clients.errors import scrub, translate
from plakar_azblob.clients.factory import account_url

KEY = "c2VjcmV0LWtleS1ub3QtZm9yLXlvdXItZXllcw=="
CONN = (f"DefaultEndpointsProtocol=https;AccountName=myacct;AccountKey={KEY};"
        "EndpointSuffix=core.windows.net")
SAS = "sv=2024-08-04&sp=rl&se=2030-01-01T00%3A00%3A00Z&sr=c&sig=SIGNATUREsecret%3D"


def parse(role: str = "storage", **opts: str) -> AzureConfig:
    opts.setdefault("location", "azblob://backups")
    return parse_config(opts, role)


def error(role: str = "storage", **opts: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(role, **opts)
    return str(info.value)


# -- location --

@pytest.mark.parametrize(("location", "container", "prefix"), [
    ("azblob://backups", "backups", ""),
    ("azblob://backups/", "backups", ""),
    ("azblob://backups/a/b", "backups", "a/b"),
    ("azblob://backups//a///b//", "backups", "a/b"),
    ("azblob://backups/my%20dir/x%2Fy", "backups", "my dir/x/y"),
    ("azblob://b-1-2/%C3%A9t%C3%A9", "b-1-2", "été"),
    ("AZBLOB://backups/p", "backups", "p"),
])
def test_location(location: str, container: str, prefix: str) -> None:
    cfg = parse(location=location, account_name="myacct", account_key=KEY)
    assert (cfg.container, cfg.prefix) == (container, prefix)


def test_location_display() -> None:
    assert parse(location="azblob://c01/a//b/", account_name="myacct").location == \
        "azblob://c01/a/b"
    assert parse(location="azblob://c01", account_name="myacct").location == "azblob://c01"


@pytest.mark.parametrize(("location", "message"), [
    ("", "missing location: expected azblob://CONTAINER[/PREFIX]"),
    ("s3://bucket/x", 'invalid location: unsupported scheme "s3" '
                      "(expected azblob://CONTAINER[/PREFIX])"),
    ("backups", "invalid location: missing azblob:// scheme "
                "(expected azblob://CONTAINER[/PREFIX])"),
    ("azblob://", "invalid location: missing container (expected azblob://CONTAINER[/PREFIX])"),
    ("azblob:///prefix", "invalid location: missing container "
                         "(expected azblob://CONTAINER[/PREFIX])"),
    ("azblob://backups/a/../b", 'invalid location: the prefix must not contain "." or ".." '
                                "segments"),
    ("azblob://backups/./b", 'invalid location: the prefix must not contain "." or ".." '
                             "segments"),
    ("azblob://backups/%2E%2E", 'invalid location: the prefix must not contain "." or ".." '
                                "segments"),
    ("azblob://backups/p?sig=x", "invalid location: it must not contain a query string or "
                                 "fragment"),
])
def test_bad_location(location: str, message: str) -> None:
    assert error(location=location, account_name="myacct") == message


@pytest.mark.parametrize(("name", "rule"), [
    ("Foo", "use lowercase letters, digits and hyphens only"),
    ("foo_bar", "use lowercase letters, digits and hyphens only"),
    ("foo.bar", "use lowercase letters, digits and hyphens only"),
    ("ab", "it must be 3 to 63 characters long"),
    ("a" * 64, "it must be 3 to 63 characters long"),
    ("-abc", "it must start and end with a letter or digit"),
    ("abc-", "it must start and end with a letter or digit"),
    ("ab--c", "it must not contain two consecutive hyphens"),
])
def test_bad_container(name: str, rule: str) -> None:
    assert error(location=f"azblob://{name}/p", account_name="myacct") == \
        f'invalid container name "{name}": {rule}'


@pytest.mark.parametrize("name", ["abc", "a" * 63, "0-1-2", "9lives", "a-b"])
def test_good_container(name: str) -> None:
    assert parse(location=f"azblob://{name}", account_name="myacct").container == name


# -- keys --

@pytest.mark.parametrize(("role", "label"), [
    ("importer", "source"), ("exporter", "destination"), ("storage", "storage"),
])
def test_unknown_key(role: str, label: str) -> None:
    assert error(role, account_name="myacct", foo="1") == \
        f'unknown option "foo" for the azblob {label} connector'


def test_keys_are_case_sensitive() -> None:
    assert error(account_name="myacct", Account_Key=KEY) == \
        'unknown option "Account_Key" for the azblob storage connector ' \
        '(did you mean "account_key"?)'


@pytest.mark.parametrize(("key", "hint"), [
    ("acount_key", ' (did you mean "account_key"?)'),
    ("sas", ""),
    ("max-concurrency", ' (did you mean "max_concurrency"?)'),
    ("colour", ""),
])
def test_unknown_key_suggests_a_close_one(key: str, hint: str) -> None:
    assert error("importer", account_name="myacct", **{key: "SECRET"}) == \
        f'unknown option "{key}" for the azblob source connector{hint}'


@pytest.mark.parametrize(("role", "label"), [("importer", "source"),
                                             ("exporter", "destination")])
def test_tier_is_storage_only(role: str, label: str) -> None:
    assert error(role, account_name="myacct", tier="cool") == \
        f'option "tier" is only for the azblob storage connector, not the {label} connector'


def test_all_keys_accepted() -> None:
    cfg = parse(connection_string=CONN, account_name="myacct", account_key=KEY, sas_token=SAS,
                endpoint="https://myacct.blob.core.windows.net", no_auth="false",
                tenant_id="t", client_id="c", client_secret="s", max_concurrency="16",
                block_size="8MiB", tier="Cool")
    assert cfg.auth_method == "connection_string"
    assert (cfg.max_concurrency, cfg.block_size, cfg.tier) == (16, 8 << 20, "cool")


@pytest.mark.parametrize("role", ["importer", "exporter", "storage"])
def test_plakar_passphrase_keys_are_ignored(role: str) -> None:
    # plakar leaves them in a sync peer store's config (regression: "unknown option").
    cfg = parse(role, account_name="myacct", account_key=KEY, passphrase="pass phrase",
                passphrase_cmd="echo secret")
    assert cfg.auth_method == "account_key"
    assert "pass phrase" not in repr(cfg) and "echo secret" not in repr(cfg)


def test_unknown_role() -> None:
    with pytest.raises(ValueError):
        parse_config({"location": "azblob://abc"}, "source")


# -- values --

@pytest.mark.parametrize(("value", "expected"), [
    ("true", True), ("TRUE", True), ("1", True), ("yes", True), ("Yes", True),
    ("false", False), ("False", False), ("0", False), ("no", False), ("NO", False),
])
def test_booleans(value: str, expected: bool) -> None:
    cfg = parse(no_auth=value, endpoint="https://127.0.0.1:10000/devstoreaccount1")
    assert cfg.no_auth is expected


def test_bad_boolean() -> None:
    assert error(no_auth="maybe", endpoint="http://127.0.0.1:1/x") == \
        'invalid value for no_auth: "maybe" (expected true or false)'


@pytest.mark.parametrize(("value", "expected"), [
    ("1048576", 1 << 20), ("4MiB", 4 << 20), ("8M", 8 << 20), ("8m", 8 << 20),
    ("2048K", 2 << 20), ("2048KiB", 2 << 20), ("100MiB", 100 << 20), ("5MB", 5_000_000),
])
def test_block_size(value: str, expected: int) -> None:
    assert parse(account_name="myacct", block_size=value).block_size == expected


@pytest.mark.parametrize(("value", "message"), [
    ("1MB", 'invalid value for block_size: "1MB" (expected 1MiB to 100MiB)'),
    ("101MiB", 'invalid value for block_size: "101MiB" (expected 1MiB to 100MiB)'),
    ("1G", 'invalid value for block_size: "1G" (expected 1MiB to 100MiB)'),
    ("4 parsecs", 'invalid value for block_size: "4 parsecs" (expected a size such as 4MiB)'),
    ("-4M", 'invalid value for block_size: "-4M" (expected a size such as 4MiB)'),
    ("4.5M", 'invalid value for block_size: "4.5M" (expected a size such as 4MiB)'),
])
def test_bad_block_size(value: str, message: str) -> None:
    assert error(account_name="myacct", block_size=value) == message


def test_defaults() -> None:
    cfg = parse(account_name="myacct")
    assert (cfg.max_concurrency, cfg.block_size, cfg.tier, cfg.no_auth) == \
        (8, 4 << 20, None, False)


@pytest.mark.parametrize(("value", "message"), [
    ("0", 'invalid value for max_concurrency: "0" (expected a whole number from 1 to 256)'),
    ("257", 'invalid value for max_concurrency: "257" (expected a whole number from 1 to 256)'),
    ("eight", 'invalid value for max_concurrency: "eight" (expected a whole number from 1 '
              "to 256)"),
    ("2.5", 'invalid value for max_concurrency: "2.5" (expected a whole number from 1 to 256)'),
])
def test_bad_max_concurrency(value: str, message: str) -> None:
    assert error(account_name="myacct", max_concurrency=value) == message


@pytest.mark.parametrize("value", ["1", "256", " 32 "])
def test_max_concurrency(value: str) -> None:
    assert parse(account_name="myacct", max_concurrency=value).max_concurrency == int(value)


@pytest.mark.parametrize(("value", "tier"), [("hot", "hot"), ("COOL", "cool"), ("Cold", "cold")])
def test_tier(value: str, tier: str) -> None:
    assert parse(account_name="myacct", tier=value).tier == tier


def test_bad_tier() -> None:
    assert error(account_name="myacct", tier="archive") == \
        'invalid value for tier: "archive" (expected hot, cool or cold)'


@pytest.mark.parametrize("endpoint", ["ftp://host/x", "127.0.0.1:10000", "http://", "https:///p"])
def test_bad_endpoint(endpoint: str) -> None:
    assert error(account_name="myacct", account_key=KEY, endpoint=endpoint) == \
        "invalid endpoint: expected an http(s) URL such as https://ACCOUNT.blob.core.windows.net"


def test_endpoint_with_query_is_refused_without_echo() -> None:
    msg = error(account_name="myacct", endpoint="https://h/acct?sv=1&sig=SECRETSIG")
    assert msg == "invalid endpoint: it must not contain a query string (put a SAS in sas_token)"


def test_endpoint_with_password_is_refused_without_echo() -> None:
    msg = error(account_name="myacct", endpoint="https://user:hunter2@h/acct")
    assert msg == "invalid endpoint: it must not contain a user or password"


def test_bad_account_name() -> None:
    assert error(account_name="My_Acct", account_key=KEY) == \
        'invalid account_name "My_Acct": use 3 to 24 lowercase letters and digits'


@pytest.mark.parametrize("key", ["account_key", "sas_token", "connection_string", "endpoint",
                                 "no_auth", "max_concurrency", "block_size", "tier",
                                 "account_name", "client_id"])
@pytest.mark.parametrize("blank", ["", "  "])
def test_empty_values_are_errors(key: str, blank: str) -> None:
    # sas_token="$SAS" with SAS unset must not quietly switch to Microsoft Entra ID.
    opts = {"account_name": "myacct", key: blank}
    assert error(**opts) == \
        f"empty value for {key}: give a value or leave the option out"


def test_plakar_s_own_keys_may_be_empty() -> None:
    assert parse(account_name="myacct", passphrase="").auth_method == "entra_id"


@pytest.mark.parametrize("key", ["not base64!", "abc", "a2V5=x"])
def test_account_key_must_be_base64(key: str) -> None:
    message = ("invalid account_key: it is not base64 (copy key1 or key2 from the storage "
               "account's Access keys)")
    assert error(account_name="myacct", account_key=key) == message


# -- authentication --

def test_connection_string_takes_precedence() -> None:
    everything = {"connection_string": CONN, "account_name": "myacct", "account_key": KEY,
                  "sas_token": SAS, "no_auth": "true", "endpoint": "https://h/myacct",
                  "tenant_id": "t", "client_id": "c", "client_secret": "s"}
    assert parse(**everything).auth_method == "connection_string"


@pytest.mark.parametrize(("opts", "method"), [
    ({"account_name": "myacct", "account_key": KEY}, "account_key"),
    ({"account_name": "myacct", "account_key": KEY, "no_auth": "false"}, "account_key"),
    ({"account_name": "myacct", "sas_token": SAS}, "sas"),
    ({"endpoint": "https://h/myacct", "no_auth": "true", "account_name": "myacct"},
     "anonymous"),
    ({"account_name": "myacct", "tenant_id": "t", "client_id": "c"}, "entra_id"),
])
def test_one_method_each(opts: dict[str, str], method: str) -> None:
    assert parse(**opts).auth_method == method


@pytest.mark.parametrize(("opts", "first", "second"), [
    ({"account_key": KEY, "sas_token": SAS}, "account_key", "sas_token"),
    ({"account_key": KEY, "no_auth": "true"}, "account_key", "no_auth=true"),
    ({"sas_token": SAS, "no_auth": "yes"}, "sas_token", "no_auth=true"),
    ({"account_key": KEY, "client_secret": "s", "tenant_id": "t", "client_id": "c"},
     "account_key", "tenant_id"),
    ({"sas_token": SAS, "client_id": "c"}, "sas_token", "client_id"),
    ({"no_auth": "true", "client_secret": "s"}, "no_auth=true", "client_secret"),
    ({"account_key": KEY, "sas_token": SAS, "no_auth": "true"}, "account_key", "sas_token"),
])
def test_conflicting_methods(opts: dict[str, str], first: str, second: str) -> None:
    msg = error(account_name="myacct", endpoint="https://h/myacct", **opts)
    assert msg == (f"conflicting options {first} and {second}: they are different ways to "
                   "authenticate, keep only one (or use connection_string, which takes "
                   "precedence)")
    assert KEY not in msg and "SIGNATURE" not in msg


def test_connection_string_accepted_forms() -> None:
    for conn in (CONN, CONN + ";", f"AccountName=myacct;AccountKey={KEY}",
                 "BlobEndpoint=https://myacct.blob.core.windows.net;SharedAccessSignature=" + SAS,
                 "UseDevelopmentStorage=true",
                 f"accountname=myacct;accountkey={KEY}"):
        assert parse(connection_string=conn).auth_method == "connection_string"


@pytest.mark.parametrize(("conn", "message"), [
    (f"this is {KEY} not a connection string",
     'malformed connection_string: expected key=value pairs separated by ";"'),
    (f"AccountName=myacct;{KEY}",
     'malformed connection_string: expected key=value pairs separated by ";"'),
    (f"AccountKey={KEY}", "malformed connection_string: AccountKey needs AccountName"),
    ("DefaultEndpointsProtocol=https;EndpointSuffix=core.windows.net",
     "malformed connection_string: it needs AccountName and AccountKey, SharedAccessSignature "
     "or BlobEndpoint"),
    (f"SharedAccessSignature={SAS}",
     "malformed connection_string: it needs BlobEndpoint or AccountName"),
    (f"BlobEndpoint=ftp://x/y;SharedAccessSignature={SAS}",
     "malformed connection_string: BlobEndpoint is not an http(s) URL"),
    (";;", "malformed connection_string: it is empty"),
    ("AccountName=myacct;AccountKey=not*base64",
     "malformed connection_string: AccountKey is not base64 (copy the connection string "
     "from the storage account's Access keys)"),
    ("BlobEndpoint=https://myacct.blob.core.windows.net;SharedAccessSignature=sv=1&sp=SIGNATURE",
     "malformed connection_string: SharedAccessSignature has no sig= signature "
     "(expected sv=...&sp=...&sig=...)"),
])
def test_bad_connection_string(conn: str, message: str) -> None:
    msg = error(connection_string=conn)
    assert msg == message
    assert KEY not in msg and "SIGNATURE" not in msg and "not*base64" not in msg


@pytest.mark.parametrize(("opts", "message"), [
    ({"account_key": KEY}, "account_key needs account_name"),
    ({"account_key": KEY, "endpoint": "http://127.0.0.1:1/x"}, "account_key needs account_name"),
    ({"sas_token": SAS}, "sas_token needs account_name or endpoint"),
    ({"no_auth": "true"}, "no_auth=true needs endpoint"),
    ({"no_auth": "true", "account_name": "myacct"}, "no_auth=true needs endpoint"),
    ({"account_name": "myacct", "client_secret": "s"},
     "client_secret needs tenant_id and client_id"),
    ({"account_name": "myacct", "client_secret": "s", "tenant_id": "t"},
     "client_secret needs tenant_id and client_id"),
    ({"endpoint": "http://127.0.0.1:10000/devstoreaccount1"},
     "Microsoft Entra ID needs an https endpoint"),
    ({"sas_token": "sv=2024&sp=rl"}, "malformed sas_token: expected a query string with a sig= "
                                     "signature, such as sv=...&sp=rl&sig=..."),
])
def test_auth_errors(opts: dict[str, str], message: str) -> None:
    assert error(**opts) == message


def test_no_credentials() -> None:
    assert error() == ("no credentials: set connection_string, account_name+account_key, "
                       "sas_token, no_auth=true with endpoint, or account_name for "
                       "Microsoft Entra ID")


def test_sas_token_leading_question_mark() -> None:
    cfg = parse(account_name="myacct", sas_token="?" + SAS)
    assert cfg.sas_token == SAS
    assert cfg.auth_method == "sas"
    assert sas_permissions(cfg.sas_token) == "rl"


def test_sas_with_endpoint_only() -> None:
    cfg = parse(endpoint="http://127.0.0.1:10000/devstoreaccount1", sas_token=SAS)
    assert cfg.auth_method == "sas"


def test_sas_inside_connection_string() -> None:
    conn = f"BlobEndpoint=https://myacct.blob.core.windows.net/;SharedAccessSignature={SAS}"
    assert parse(connection_string=conn).sas() == SAS
    assert parse(connection_string=CONN).sas() is None
    assert parse(account_name="myacct", account_key=KEY).sas() is None


def test_entra_id() -> None:
    cfg = parse(account_name="myacct")
    assert cfg.auth_method == "entra_id"
    cfg = parse(account_name="myacct", tenant_id="t", client_id="c", client_secret="s")
    assert cfg.auth_method == "entra_id"
    assert parse(endpoint="https://myacct.blob.core.usgovcloudapi.net").auth_method == "entra_id"


# -- account URL --

@pytest.mark.parametrize(("opts", "url"), [
    ({"account_name": "myacct"}, "https://myacct.blob.core.windows.net"),
    ({"account_name": "myacct", "account_key": KEY, "endpoint": "http://127.0.0.1:1000/myacct/"},
     "http://127.0.0.1:1000/myacct"),
    ({"connection_string": CONN}, "https://myacct.blob.core.windows.net"),
    ({"connection_string": f"DefaultEndpointsProtocol=http;AccountName=myacct;AccountKey={KEY};"
                           "EndpointSuffix=core.chinacloudapi.cn"},
     "http://myacct.blob.core.chinacloudapi.cn"),
    ({"connection_string": "BlobEndpoint=https://x.example/acct?sv=1&sig=SECRET;"
                           "SharedAccessSignature=" + SAS}, "https://x.example/acct"),
    ({"connection_string": "UseDevelopmentStorage=true"},
     "http://127.0.0.1:10000/devstoreaccount1"),
])
def test_account_url(opts: dict[str, str], url: str) -> None:
    assert account_url(parse(**opts)) == url


# -- secrets --

def test_secrets_never_in_repr() -> None:
    cfg = parse(connection_string=CONN, account_name="myacct", account_key=KEY,
                sas_token=SAS, tenant_id="tenant", client_id="client",
                client_secret="CLIENTSECRET")
    for text in (repr(cfg), str(cfg), f"{cfg}"):
        assert KEY not in text
        assert "SIGNATUREsecret" not in text
        assert "CLIENTSECRET" not in text
        assert "AccountKey" not in text
        assert "myacct" in text  # the non-secret fields are still shown


# -- error translation (errors.translate) --

def test_translate_strips_signed_urls() -> None:
    url = "https://acct.blob.core.windows.net/c/b?sv=2024&sp=rw&sig=TOPSECRETSIG%3D"
    exc = ServiceRequestError(f"HTTPSConnectionPool(host='acct.blob.core.windows.net'): Max "
                              f"retries exceeded with url: {url} (Caused by NewConnectionError"
                              "('[Errno 111] Connection refused'))")
    err = translate(exc, "cannot access azblob://c", endpoint="https://acct.blob.core.windows.net")
    assert type(err) is ConnectorError
    assert str(err) == ("cannot access azblob://c: cannot reach "
                        "https://acct.blob.core.windows.net: connection refused")

    exc2 = HttpResponseError(message=f"Weird failure at {url}\nsecond line AccountKey=KEYKEY")
    err = translate(exc2, "get x")
    assert "TOPSECRETSIG" not in str(err) and "KEYKEY" not in str(err)
    assert str(err) == "get x: Weird failure at https://acct.blob.core.windows.net/c/b"


def test_translate_plain_exceptions() -> None:
    assert str(translate(ValueError("bad value"), "put x")) == "put x: ValueError: bad value"
    original = NotFoundError("already translated")
    assert translate(original, "ignored") is original
    assert scrub("see /c/b?sig=abc&x=1 and sig=zzz") == "see /c/b and sig=REDACTED"
    assert len(scrub("x" * 500)) == 200


class _Request:
    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url, self.headers = url, headers


class _Response:
    """Just what HttpResponseError reads from a response, and the request it answers."""

    def __init__(self, status: int, url: str, headers: dict[str, str] | None = None) -> None:
        self.status_code, self.reason = status, "Forbidden"
        self.request = _Request(url, headers or {})
        self.headers: dict[str, str] = {}

    def text(self) -> str:
        return ""


def refused(code: str, url: str, headers: dict[str, str] | None = None) -> str:
    exc = HttpResponseError(message="Server failed to authenticate the request. sig=LEAK",
                            response=_Response(403, url, headers))
    exc.error_code = code
    return str(translate(exc, "cannot list azblob://c"))


URL = "https://acct.blob.core.windows.net/c?restype=container&comp=list"


@pytest.mark.parametrize("code", ["AuthenticationFailed", "AuthorizationFailure"])
def test_translate_names_an_expired_or_early_sas(code: str) -> None:
    expired = f"{URL}&sv=2024-08-04&se=2020-01-02T03%3A04%3A05Z&sp=rl&sig=SECRETSIG"
    assert refused(code, expired) == ("cannot list azblob://c: the SAS token expired at "
                                      f"2020-01-02T03:04:05Z (make a new one) ({code}, HTTP 403)")
    early = f"{URL}&st=2099-01-01&se=2099-02-01&sp=rl&sig=SECRETSIG"
    assert refused(code, early) == ("cannot list azblob://c: the SAS token is not valid before "
                                    f"2099-01-01T00:00:00Z ({code}, HTTP 403)")


def test_translate_names_the_refused_credential() -> None:
    sas_url = f"{URL}&se=2099-01-01&sp=rl&sig=SECRETSIG"
    assert refused("AuthenticationFailed", sas_url) == (
        "cannot list azblob://c: the SAS token was refused: its signature does not match "
        "(AuthenticationFailed, HTTP 403)")
    key = {"Authorization": "SharedKey acct:SECRETSIG"}
    assert refused("AuthenticationFailed", URL, key) == (
        "cannot list azblob://c: authentication failed: the account key is wrong "
        "(AuthenticationFailed, HTTP 403)")
    assert refused("AuthorizationFailure", URL, key).startswith(
        "cannot list azblob://c: the account key was refused (wrong key, or not allowed")
    # Anonymous or Entra ID requests: the generic reason.
    assert refused("AuthorizationFailure", URL) == (
        "cannot list azblob://c: the credentials are not allowed to do this "
        "(AuthorizationFailure, HTTP 403)")
    assert refused("AuthenticationFailed", URL, {"Authorization": "Bearer x"}) == (
        "cannot list azblob://c: authentication failed (check the account key or SAS token) "
        "(AuthenticationFailed, HTTP 403)")


def test_translate_token_and_signing_failures() -> None:
    from azure.core.exceptions import ClientAuthenticationError

    from plakar_azblob.clients.errors import TokenError

    token = TokenError("no credential available")
    assert str(token) == "cannot get a Microsoft Entra ID token: no credential available"
    err = translate(token, "cannot list azblob://c")
    assert str(err) == ("cannot list azblob://c: cannot get a Microsoft Entra ID token: "
                        "no credential available")
    assert isinstance(err, PermissionDeniedError)

    class AzureSigningError(ClientAuthenticationError):
        pass

    signing = AzureSigningError("Invalid base64-encoded string: SECRETKEY")
    assert str(translate(signing, "cannot list azblob://c")) == (
        "cannot list azblob://c: cannot sign the request with the account key (is it the "
        "base64 key of the account?)")


def test_list_concurrency_for_the_connectors_that_list() -> None:
    assert parse("importer", connection_string=CONN).list_concurrency == 10
    assert parse("importer", list_concurrency="1", connection_string=CONN).list_concurrency == 1
    assert parse("storage", list_concurrency=" 64 ", connection_string=CONN).list_concurrency == 64
    assert error("importer", list_concurrency="65", connection_string=CONN) == \
        'invalid value for list_concurrency: "65" (expected a whole number from 1 to 64)'
    assert error("storage", list_concurrency="many", connection_string=CONN) == \
        'invalid value for list_concurrency: "many" (expected a whole number from 1 to 64)'
    assert error("exporter", list_concurrency="4") == (
        'option "list_concurrency" is only for the azblob source and storage connectors, '
        "not the destination connector")
