"""Sidecar settings: defaults, TOML file, GUARDRAIL_* environment, overrides, validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from guardrail.serving.settings import ServeSettings, load_settings


def test_precedence_overrides_env_file_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "serve.toml"
    f.write_text('port = 6000\nmax_wait_ms = 9\nhost = "0.0.0.0"\nqueue_texts = 10\n')
    monkeypatch.setenv("GUARDRAIL_MAX_WAIT_MS", "2.5")
    monkeypatch.setenv("GUARDRAIL_QUEUE_TEXTS", "20")
    s = load_settings(f, queue_texts=30, port=None)  # None: not given on the command line
    assert (s.port, s.max_wait_ms, s.host, s.queue_texts) == (6000, 2.5, "0.0.0.0", 30)
    assert load_settings().port == ServeSettings().port == 50051
    monkeypatch.setenv("GUARDRAIL_CONFIG", str(f))
    assert load_settings().port == 6000


def test_secrets_stay_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDRAIL_AUTH_TOKEN", "s3cr3t-value")
    s = load_settings()
    assert s.auth_token is not None and s.auth_token.get_secret_value() == "s3cr3t-value"
    assert "s3cr3t" not in repr(s) and "auth_token" not in s.public()


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="go together"):
        ServeSettings(tls_cert=tmp_path / "c.pem")
    with pytest.raises(ValidationError, match="mutual TLS"):
        ServeSettings(tls_client_ca=tmp_path / "ca.pem")
    with pytest.raises(ValidationError):
        ServeSettings(max_batch_texts=0)
    f = tmp_path / "typo.toml"
    f.write_text("max_wiat_ms = 3\n")
    with pytest.raises(ValidationError, match="max_wiat_ms"):
        load_settings(f)
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "missing.toml")


def test_model_and_patterns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = ServeSettings()
    assert s.model is None and s.patterns is True
    monkeypatch.setenv("GUARDRAIL_MODEL", "/models/gemma-3-270m")
    monkeypatch.setenv("GUARDRAIL_PATTERNS", "false")
    s = load_settings(patterns=None, model=None)  # flags not given: the environment holds
    assert (s.model, s.patterns) == ("/models/gemma-3-270m", False)
    assert s.public()["model"] == "/models/gemma-3-270m"
    assert load_settings(model="smollm2-135m").model == "smollm2-135m"
    monkeypatch.delenv("GUARDRAIL_MODEL")
    monkeypatch.delenv("GUARDRAIL_PATTERNS")
    f = tmp_path / "serve.toml"
    f.write_text('model = "/opt/model"\npatterns = false\n')
    assert (load_settings(f).model, load_settings(f).patterns) == ("/opt/model", False)
    monkeypatch.setenv("GUARDRAIL_PATTERNS", "nope")
    with pytest.raises(ValidationError, match="patterns"):
        load_settings()


def test_a_token_over_plaintext_beyond_loopback_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for host in ("0.0.0.0", "::", "", "10.0.0.5", "sidecar.internal"):
        with pytest.raises(ValidationError, match="plaintext") as e:
            ServeSettings(host=host, auth_token="s3cr3t-value")
        assert "s3cr3t" not in str(e.value)  # nor the token beside the refusal
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"):
        assert not ServeSettings(host=host, auth_token="s3cr3t-value").exposed_token
    tls = {"tls_cert": tmp_path / "c.pem", "tls_key": tmp_path / "k.pem"}
    assert not ServeSettings(host="0.0.0.0", auth_token="s3cr3t-value", **tls).exposed_token
    assert not ServeSettings(host="0.0.0.0").exposed_token  # no token, none to expose
    assert ServeSettings(host="0.0.0.0", auth_token="s3cr3t-value", allow_insecure=True).exposed_token
    monkeypatch.setenv("GUARDRAIL_AUTH_TOKEN", "s3cr3t-value")
    monkeypatch.setenv("GUARDRAIL_HOST", "0.0.0.0")
    with pytest.raises(ValidationError, match="allow_insecure"):
        load_settings()
    monkeypatch.setenv("GUARDRAIL_ALLOW_INSECURE", "true")
    assert load_settings().allow_insecure


def test_metrics_bind_loopback_unless_chosen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServeSettings(host="0.0.0.0").metrics_host == "127.0.0.1"
    f = tmp_path / "serve.toml"
    f.write_text('metrics_host = "0.0.0.0"\n')
    assert load_settings(f).metrics_host == "0.0.0.0"
    monkeypatch.setenv("GUARDRAIL_METRICS_HOST", "::1")
    assert load_settings(f).metrics_host == "::1"
