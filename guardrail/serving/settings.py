"""Sidecar configuration: ``GUARDRAIL_*`` environment variables, a TOML file, and command-line overrides.

Precedence, highest first: command-line flags, environment variables, the file named by ``--config`` (or
``GUARDRAIL_CONFIG``), the defaults below. Every field is ``GUARDRAIL_<FIELD>`` in the environment and
``<field> = ...`` at the top level of the TOML file, e.g. ``GUARDRAIL_MAX_WAIT_MS=2``.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from guardrail.bundle import DEFAULT_BUNDLE

if TYPE_CHECKING:
    from guardrail.vault import Vault

CONFIG_ENV = "GUARDRAIL_CONFIG"
"""Environment variable naming the TOML configuration file (``--config`` wins over it)."""


class ServeSettings(BaseSettings):
    """Everything ``guardrail serve`` can be told."""

    # hide_input_in_errors: a refused setting must not print the token beside it
    model_config = SettingsConfigDict(
        env_prefix="GUARDRAIL_", extra="forbid", validate_default=True, hide_input_in_errors=True
    )

    # where to listen
    host: str = "127.0.0.1"
    """Address to bind; the sidecar default is loopback, ``0.0.0.0`` for every interface."""
    port: int = Field(50051, ge=0, le=65535)
    """gRPC port; 0 picks a free one (the chosen port is logged)."""
    metrics_port: int | None = Field(None, ge=0, le=65535)
    """Prometheus ``/metrics`` on this separate port; unset: no metrics endpoint."""
    metrics_host: str = "127.0.0.1"
    """Address the metrics endpoint binds, whatever ``host`` is: it has no authentication, so loopback
    unless chosen (``0.0.0.0`` for a scraper on another host)."""

    # the model
    bundle: str = DEFAULT_BUNDLE
    """Bundle name under ``probes/`` or a folder path."""
    model: str | None = None
    """Backbone to load instead of the bundle's (``GUARDRAIL_MODEL``): a converted model folder, a
    ``.gguf`` file, an embedded alias or a hub id; it must be the model the bundle was trained on (its
    sha256 is checked where the folder keeps a ``source.json``). For air-gapped hosts and containers."""
    patterns: bool = True
    """Presidio's pattern recognisers beside the probe; false: the probe only (Presidio not imported)."""
    device: str = "auto"
    runtime: str | None = None
    """None: the one the bundle was fitted on (see ``Guardrail.load``); ``torch``, ``torch-int8`` (int8
    products, compiled; CPU), ``onnx-int8`` (the backbone in ONNX Runtime, CPU) or ``onnx`` (the
    exported graph)."""
    onnx_dir: str | None = None
    """Folder written by ``guardrail export-onnx``: the graph the ``onnx`` runtime runs."""
    dtype: str = "auto"
    compile: bool = False
    """``torch.compile`` the backbone: slower start, faster serving."""
    warmup: bool = True
    """Run every input shape once before reporting SERVING."""

    # micro-batching
    max_batch_texts: int = Field(64, ge=1)
    """Texts per forward pass; 1 turns micro-batching off (one request's text at a time)."""
    max_batch_chars: int = Field(32_768, ge=1)
    """Character budget of one forward pass (a single larger request still runs, alone)."""
    max_wait_ms: float = Field(5.0, ge=0)
    """While the model is idle, a batch waits for company until no request came for this long (4x at most)."""
    queue_texts: int = Field(2048, ge=1)
    """Texts waiting for the model at most; more is answered RESOURCE_EXHAUSTED."""

    # limits of one request
    max_texts: int = Field(256, ge=1)
    max_text_chars: int = Field(100_000, ge=1)
    max_message_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    """Larger requests get INVALID_ARGUMENT; beyond 4x this gRPC itself refuses them (RESOURCE_EXHAUSTED)."""

    # streaming redaction
    stream_hold_words: int = Field(8, ge=1)
    """Whitespace-separated words at the end of a stream held back: a later chunk may still change them."""
    stream_hold_chars: int = Field(64, ge=0)
    """At least this many trailing characters are held back too (long identifiers have few spaces)."""
    stream_window_chars: int = Field(8192, ge=256)
    """Input one detection of a stream reads at most (at least 2 x (context + 1024)): a burst of chunks
    is read, and released, window by window."""
    stream_context_chars: int = Field(1024, ge=0)
    """Released text a stream's detection reads again as context; streams whose released part is shorter
    equal unary ``Redact`` exactly."""
    stream_queue_messages: int = Field(8, ge=1)
    """Messages of a stream read ahead of its redaction at most; then the server stops reading and gRPC
    flow control holds the client back."""
    max_streams: int = Field(256, ge=1)
    """Streams open at once; more are answered RESOURCE_EXHAUSTED."""

    # tracing
    otlp_endpoint: str | None = None
    """OTLP/gRPC collector for OpenTelemetry traces of each call (counts and times, never text); unset:
    OpenTelemetry's ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``, and without
    those no tracing. Needs the ``otel`` extra."""

    # security
    tls_cert: Path | None = None
    """PEM certificate chain of the server; with ``tls_key`` turns TLS on."""
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    """PEM CA bundle: clients must present a certificate it signed (mutual TLS)."""
    auth_token: SecretStr | None = None
    """Bearer token every call but health checks must carry (``authorization: Bearer <token>``)."""
    hash_key: SecretStr | None = None
    """Key of the ``hash`` operator when a request brings none (``GUARDRAIL_HASH_KEY``)."""
    vault_key: SecretStr | None = None
    """Keys that seal and open pseudonym mappings (``GUARDRAIL_VAULT_KEY``: ``ID:BASE64[,ID:BASE64...]``,
    the first seals, the others still open: rotation); unset: ``seal`` and ``Restore`` are refused."""
    vault_ttl_s: float | None = Field(24 * 3600.0, gt=0)
    """How long a sealed mapping opens; None: for ever."""
    allow_insecure: bool = False
    """Serve ``auth_token`` over plaintext on an address that is not loopback (TLS ends before the
    sidecar, e.g. in a mesh); without it such settings are refused: the token would cross the network
    readable."""

    # shutdown
    drain_s: float = Field(0.0, ge=0)
    """After SIGTERM: seconds of health NOT_SERVING (load balancers notice) before refusing new calls."""
    grace_s: float = Field(10.0, ge=0)
    """Then: seconds in-flight calls get to finish."""

    @model_validator(mode="after")
    def _tls_pair(self) -> ServeSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca (mutual TLS) needs tls_cert and tls_key")
        if self.auth_token is not None and not self.auth_token.get_secret_value():
            raise ValueError("auth_token is empty")
        if self.vault_key is not None:
            from guardrail.vault import Vault

            Vault.from_spec(self.vault_key.get_secret_value())  # a bad key fails at start, not per call
        if self.exposed_token and not self.allow_insecure:
            raise ValueError(
                f"a bearer token over plaintext on {self.host or 'every interface'} (not loopback) crosses "
                "the network readable: set tls_cert and tls_key, bind loopback, or accept it with "
                "allow_insecure (--allow-insecure, GUARDRAIL_ALLOW_INSECURE=true)"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # no .env file and no secrets dir: the file is the one TOML file named on purpose
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls)

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def exposed_token(self) -> bool:
        """A bearer token sent in plaintext to an address that is not loopback."""
        return self.auth_token is not None and not self.tls and not is_loopback(self.host)

    def public(self) -> dict[str, Any]:
        """The settings without secrets (for the startup log line)."""
        return self.model_dump(exclude={"auth_token", "hash_key", "vault_key"}, mode="json")

    def vault(self) -> Vault | None:
        """The vault of ``vault_key`` (None without one)."""
        from guardrail.vault import Vault

        if self.vault_key is None:
            return None
        return Vault.from_spec(self.vault_key.get_secret_value(), ttl_s=self.vault_ttl_s)


def is_loopback(host: str) -> bool:
    """``host`` names this machine only: ``localhost``, ``127.0.0.0/8`` or ``::1`` (brackets allowed)."""
    name = host.strip().removeprefix("[").removesuffix("]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:  # a host name other than localhost, or "" (every interface)
        return False


def load_settings(config: str | Path | None = None, **overrides: Any) -> ServeSettings:
    """Settings from ``overrides`` (None values ignored) > environment > TOML file > defaults.

    ``config`` (else ``$GUARDRAIL_CONFIG``) names the TOML file; a named file that is missing is an error.
    """
    path = config if config is not None else os.environ.get(CONFIG_ENV)
    given = {k: v for k, v in overrides.items() if v is not None}
    cls = ServeSettings
    if path:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"configuration file {path} does not exist")
        cls = type(
            "ServeSettings", (ServeSettings,), {"model_config": {**cls.model_config, "toml_file": path}}
        )
    return cls(**given)
