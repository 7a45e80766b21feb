"""The Azure SDK's clients of a configuration (:func:`container_client`).

Every client of the connectors is built here, alike: one transport (requests,
with a large pool), the retry policy and timeouts of :mod:`.retry`, the
credential of :mod:`.credentials`, our user agent, and block sizes from the
configuration.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import ContainerClient
from azure.storage.blob import __version__ as sdk_version
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .. import __version__
from .config import AzureConfig, connection_string_settings
from .credentials import credential
from .retry import CONNECTION_TIMEOUT, READ_TIMEOUT, AzblobRetry

# The Azure SDK logs every request's headers at INFO; plakar shows our stderr.
logging.getLogger("azure").setLevel(logging.WARNING)
# azure-core warns "Unable to stream download." before each retry of a cut download.
logging.getLogger("azure.core.pipeline.transport").setLevel(logging.ERROR)

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
