"""The credential of a configuration: shared key, SAS, or Microsoft Entra ID."""

from __future__ import annotations

import logging
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.exceptions import ClientAuthenticationError

from .config import AzureConfig
from .errors import TokenError, token_reason
from .retry import CONNECTION_TIMEOUT

# azure.identity warns about every failed credential; errors.translate reports it once.
logging.getLogger("azure.identity").setLevel(logging.ERROR)

IDENTITY_RETRIES = 1  # the token endpoint: one retry, then report


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


