"""Build Azure Blob clients from an :class:`AzureConfig`."""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.exceptions import AzureError, ClientAuthenticationError
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import ContainerClient, ExponentialRetry
from azure.storage.blob import __version__ as sdk_version
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from . import __version__
from .config import AzureConfig, connection_string_settings, parse_config
from .errors import TokenError, token_reason

# The Azure SDK logs every request's headers at INFO; plakar shows our stderr.
logging.getLogger("azure").setLevel(logging.WARNING)
# azure-core warns "Unable to stream download." before each retry of a cut download.
logging.getLogger("azure.core.pipeline.transport").setLevel(logging.ERROR)
# azure.identity warns about every failed credential; errors.translate reports it once.
logging.getLogger("azure.identity").setLevel(logging.ERROR)

# The timeouts of every request, through the SDK's clients and the direct path alike.
CONNECTION_TIMEOUT = 10  # seconds: a wrong endpoint must fail fast
READ_TIMEOUT = 120  # seconds without a byte from the service
# The direct path's bodies must also arrive at this rate (bytes/s) once READ_TIMEOUT
# has passed: a body dripping a byte now and then would never hit READ_TIMEOUT.
MIN_BODY_RATE = 16 * 1024
IDENTITY_RETRIES = 1  # the token endpoint: one retry, then report
# Retries of one request (see AzblobRetry).
STATUS_RETRIES = 6  # 408, 429 and 5xx answers (not 501/505)
READ_RETRIES = 3  # the connection failed after the request was sent
CONNECT_RETRIES = 1  # the service could not be reached: a wrong endpoint fails fast
INITIAL_BACKOFF = 0.5  # seconds, doubled at each retry, +-20 % jitter
MAX_BACKOFF = 8.0
MAX_RETRY_AFTER = 30.0  # a longer Retry-After is waited for this long only
# Bytes read from a response at a time, at least (the Azure SDK's own default;
# azure-core's is 4 KiB, which makes downloads CPU-bound). Reads are as large as
# a block (see _transport).
DATA_BLOCK_SIZE = 256 * 1024
DEV_STORAGE_URL = "http://127.0.0.1:10000/devstoreaccount1"
USER_AGENT = f"plakar-azblob/{__version__}"


class _PoolAdapter(HTTPAdapter):
    """A requests adapter with a large pool and 32 KiB socket reads (faster bulk transfers)."""

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False,
                         **pool_kwargs: Any) -> None:
        pool_kwargs.setdefault("blocksize", 32 * 1024)
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)


def _strip_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def account_url(cfg: AzureConfig) -> str:
    """The blob service URL of the account, without any secret (fit for display)."""
    if cfg.connection_string:
        s = connection_string_settings(cfg.connection_string)
        if s.get("USEDEVELOPMENTSTORAGE", "").lower() == "true":
            return DEV_STORAGE_URL
        if s.get("BLOBENDPOINT"):
            return _strip_query(s["BLOBENDPOINT"])
        proto = s.get("DEFAULTENDPOINTSPROTOCOL", "https").lower()
        suffix = s.get("ENDPOINTSUFFIX", "core.windows.net")
        return f"{proto}://{s['ACCOUNTNAME']}.blob.{suffix}"
    if cfg.endpoint:
        return _strip_query(cfg.endpoint)
    return f"https://{cfg.account_name}.blob.core.windows.net"


def _transport(cfg: AzureConfig) -> RequestsTransport:
    """requests-based transport. A response body is read one block at a time: every
    ranged read (source, storage Get) is at most one block, so its body is read in
    one call into one bytes object, which the Azure SDK's downloader then passes on
    as is; smaller reads cost a join of the pieces and the Python machinery of each
    read (http.client never reads past the Content-Length, so small responses do
    not allocate a whole block)."""
    pool = pool_size(cfg)
    session = requests.Session()
    # Retries are the Azure pipeline's job; the adapter must not add its own.
    adapter = _PoolAdapter(pool_connections=4, pool_maxsize=pool,
                           max_retries=Retry(total=False, redirect=False, raise_on_status=False))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return RequestsTransport(session=session, session_owner=True,
                             connection_timeout=CONNECTION_TIMEOUT, read_timeout=READ_TIMEOUT,
                             connection_data_block_size=max(DATA_BLOCK_SIZE, cfg.block_size))


def pool_size(cfg: AzureConfig) -> int:
    """Connections kept per host: room for every block in flight plus concurrent
    small requests from plakar."""
    return max(32, 2 * cfg.max_concurrency + 16)


def _retryable_status(status: int) -> bool:
    """Statuses worth another try: timeouts, throttling, server errors."""
    return status in (408, 429) or (status >= 500 and status not in (501, 505))


def retry_after(headers: Any) -> float | None:
    """Seconds asked for by ``Retry-After`` (seconds or an HTTP date) or
    ``x-ms-retry-after-ms`` / ``retry-after-ms``; None without one."""
    for name, scale in (("retry-after-ms", 0.001), ("x-ms-retry-after-ms", 0.001),
                        ("retry-after", 1.0)):
        value = headers.get(name)
        if not value:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            pass
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
    return None


class AzblobRetry(ExponentialRetry):
    """The storage retry policy, with short backoff, throttling retried and Retry-After honoured.

    azure-storage-blob's own policy never retries a 429 (it treats every 4xx
    but 408 as final) and ignores Retry-After; its backoff (15 s, then
    15 + 3^n s by default) makes a few transient errors cost minutes. Here
    each request is retried up to STATUS_RETRIES times on 408, 429 and 5xx,
    READ_RETRIES times when the connection breaks after the request went out,
    and CONNECT_RETRIES time when the service cannot be reached, so that a
    wrong endpoint is reported within seconds. The wait before retry n is
    INITIAL_BACKOFF * 2^(n-1) seconds (at most MAX_BACKOFF, +-20 %), or what
    the service's Retry-After asks if longer (at most MAX_RETRY_AFTER).
    """

    def __init__(self) -> None:
        super().__init__(initial_backoff=0, increment_base=2, retry_total=STATUS_RETRIES,
                         random_jitter_range=0, retry_connect=CONNECT_RETRIES,
                         retry_read=READ_RETRIES, retry_status=STATUS_RETRIES)

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        count = max(1, int(settings["count"]))
        backoff = min(MAX_BACKOFF, INITIAL_BACKOFF * 2 ** (count - 1))
        backoff *= random.uniform(0.8, 1.2)
        asked = settings.pop("retry_after", None)
        if asked is not None:
            backoff = max(backoff, min(float(asked), MAX_RETRY_AFTER))
        return float(backoff)

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        settings = self.configure_retries(request)
        while True:
            try:
                response = self.next.send(request)
            except AzureError as err:
                # A request that cannot be signed, or a token refused, is final.
                if isinstance(err, ClientAuthenticationError) or not self.increment(
                        settings, request=request.http_request, error=err):
                    raise
                time.sleep(self.get_backoff_time(settings))
                continue
            http = response.http_response
            if not _retryable_status(http.status_code) or not self.increment(
                    settings, request=request.http_request, response=http):
                break
            settings["retry_after"] = retry_after(http.headers)
            time.sleep(self.get_backoff_time(settings))
        if settings["history"]:
            response.context["history"] = settings["history"]
        http.location_mode = settings["mode"]
        return response


def client_options(cfg: AzureConfig) -> dict[str, Any]:
    """Keyword arguments shared by every client: transport, retries, block sizes."""
    return {
        "transport": _transport(cfg),
        "retry_policy": AzblobRetry(),
        "max_single_put_size": cfg.block_size,
        "max_block_size": cfg.block_size,
        "max_single_get_size": cfg.block_size,
        "max_chunk_get_size": cfg.block_size,
        "user_agent": USER_AGENT,
    }


def user_agent_options() -> dict[str, str]:
    """The arguments of azure-core's ``UserAgentPolicy`` that make the user agent of
    the SDK's clients (ours first, then the SDK's own moniker, Python and platform)."""
    return {"user_agent": USER_AGENT, "sdk_moniker": f"storage-blob/{sdk_version}"}


class _TokenCredential:
    """Wraps an azure.identity credential so that a failure to get a token fails at once.

    Without it the storage retry policy retries token failures with backoff,
    and a wrong setup takes half a minute to report.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        try:
            token: AccessToken = self.inner.get_token(*scopes, **kwargs)
            return token
        except ClientAuthenticationError as exc:
            raise TokenError(token_reason(exc)) from None

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        try:
            info: AccessTokenInfo = self.inner.get_token_info(*scopes, options=options)
            return info
        except ClientAuthenticationError as exc:
            raise TokenError(token_reason(exc)) from None

    def close(self) -> None:
        self.inner.close()


def credential(cfg: AzureConfig) -> Any:
    """The credential object for ``cfg`` (None for anonymous or a connection string)."""
    method = cfg.auth_method
    if method == "account_key":
        return {"account_name": cfg.account_name, "account_key": cfg.account_key}
    if method == "sas":
        return cfg.sas_token
    if method == "entra_id":
        # Imported here only: azure.identity is slow to load and rarely needed.
        from azure.identity import ClientSecretCredential, DefaultAzureCredential

        if cfg.tenant_id and cfg.client_id and cfg.client_secret:
            return _TokenCredential(ClientSecretCredential(
                cfg.tenant_id, cfg.client_id, cfg.client_secret,
                retry_total=IDENTITY_RETRIES, connection_timeout=CONNECTION_TIMEOUT))
        kwargs: dict[str, str] = {}
        if cfg.client_id:
            kwargs["managed_identity_client_id"] = cfg.client_id
            kwargs["workload_identity_client_id"] = cfg.client_id
        if cfg.tenant_id:
            kwargs["workload_identity_tenant_id"] = cfg.tenant_id
        return _TokenCredential(DefaultAzureCredential(**kwargs))
    return None


def container_client(cfg: AzureConfig) -> ContainerClient:
    """A client for the configured container; makes no request."""
    options = client_options(cfg)
    if cfg.connection_string:
        return ContainerClient.from_connection_string(cfg.connection_string, cfg.container,
                                                      **options)
    return ContainerClient(account_url(cfg), cfg.container, credential=credential(cfg),
                           **options)


def preload() -> None:
    """Import what the Azure SDK and requests import only at their first request
    (for the fork server: its children then start with it all loaded)."""
    import importlib
    import platform

    for name in ("azure.core.rest._requests_basic", "azure.core.rest._http_response_impl",
                 "encodings.utf_8_sig", "netrc", "shlex"):
        importlib.import_module(name)
    # Computed once per process and cached: azure-core's user agent asks for the
    # platform, which runs `uname -p` in a subprocess (3 ms).
    platform.platform()
    # A client for a made-up account (no request is made): the configuration's
    # regular expressions compiled, the SDK's pipeline classes set up.
    from .direct import DirectReader

    key = "AAAA" * 11
    cfg = parse_config({"location": "azblob://warm-up",
                        "connection_string": f"AccountName=warmup;AccountKey={key};"
                                             "BlobEndpoint=http://127.0.0.1:9/warmup;"},
                       "importer")
    client = container_client(cfg)
    DirectReader.for_client(client, pool_size(cfg))
    client.close()
