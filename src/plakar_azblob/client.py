"""Build Azure Blob clients from an :class:`AzureConfig`."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.exceptions import ClientAuthenticationError
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import ContainerClient, ExponentialRetry
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from . import __version__
from .config import AzureConfig, connection_string_settings
from .errors import TokenError, token_reason

# The Azure SDK logs every request's headers at INFO; plakar shows our stderr.
logging.getLogger("azure").setLevel(logging.WARNING)
# azure.identity warns about every failed credential; errors.translate reports it once.
logging.getLogger("azure.identity").setLevel(logging.ERROR)

CONNECTION_TIMEOUT = 10  # seconds: a wrong endpoint must fail fast
READ_TIMEOUT = 120  # seconds without a byte from the service
IDENTITY_RETRIES = 1  # the token endpoint: one retry, then report
# Bytes read from a response at a time (the Azure SDK's own default; azure-core's
# is 4 KiB, which makes downloads CPU-bound).
DATA_BLOCK_SIZE = 256 * 1024
DEV_STORAGE_URL = "http://127.0.0.1:10000/devstoreaccount1"


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
    # Room for every block in flight plus concurrent small requests from plakar.
    pool = max(32, 2 * cfg.max_concurrency + 16)
    session = requests.Session()
    # Retries are the Azure pipeline's job; the adapter must not add its own.
    adapter = _PoolAdapter(pool_connections=4, pool_maxsize=pool,
                           max_retries=Retry(total=False, redirect=False, raise_on_status=False))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return RequestsTransport(session=session, session_owner=True,
                             connection_timeout=CONNECTION_TIMEOUT, read_timeout=READ_TIMEOUT,
                             connection_data_block_size=DATA_BLOCK_SIZE)


def client_options(cfg: AzureConfig) -> dict[str, Any]:
    """Keyword arguments shared by every client: transport, retries, block sizes."""
    return {
        "transport": _transport(cfg),
        # Server errors are retried 3 times (after about 3, 5 and 9 s); a connection
        # failure only once, so a wrong endpoint or account fails within seconds.
        "retry_policy": ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=3,
                                         random_jitter_range=1, retry_connect=1),
        "max_single_put_size": cfg.block_size,
        "max_block_size": cfg.block_size,
        "max_single_get_size": cfg.block_size,
        "max_chunk_get_size": cfg.block_size,
        "user_agent": f"plakar-azblob/{__version__}",
    }


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
