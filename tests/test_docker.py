"""The container recipe, checked without a Docker engine: the Dockerfile's shape, and the commands it runs
(cache warm-up, health probe, entrypoint) run here, outside a container."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEALTHCHECK = REPO / "docker" / "healthcheck.py"


def _instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of the Dockerfile, continuation lines joined, comments dropped."""
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", "\n".join(x for x in text.splitlines() if not x.lstrip().startswith("#")))
    return [(m[1].upper(), m[2].strip()) for m in re.finditer(r"^\s*(\w+)\s+(.*)$", text, re.M)]


def test_dockerfile_shape() -> None:
    ins = _instructions()
    get = lambda key: [a for k, a in ins if k == key]  # noqa: E731
    args = dict(a.split("=", 1) for a in get("ARG") if "=" in a)
    base = get("FROM")[-1].replace("${CUDA_IMAGE}", args.get("CUDA_IMAGE", ""))
    assert base.startswith("nvidia/cuda:") and "runtime" in base
    users = get("USER")
    assert users and users[-1] not in ("root", "0")  # the service runs as an unprivileged user
    (health,) = get("HEALTHCHECK")
    assert "docker/healthcheck.py" in health and "--start-period" in health
    assert get("ENTRYPOINT") == ['["guardrail", "serve"]']
    env = " ".join(get("ENV"))
    assert (
        "GUARDRAIL_HOST=0.0.0.0" in env
        and "GUARDRAIL_CACHE=" in env
        and "GUARDRAIL_PROBES=/app/probes" in env
    )
    # the model is baked as the service user, after the code and the bundles are in
    order = [k + " " + a for k, a in ins]
    warm = next(i for i, x in enumerate(order) if "docker/warm-cache.sh" in x and x.startswith("RUN"))
    assert warm > max(i for i, x in enumerate(order) if x.startswith(("COPY probes", "USER")))


def test_health_probe_reads_the_grpc_health_service() -> None:
    from concurrent import futures

    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDRAIL_TLS")}
    env["GUARDRAIL_PORT"] = str(port)
    probe = [sys.executable, str(HEALTHCHECK), "--timeout", "5"]
    try:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        ok = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=60)
        assert ok.returncode == 0 and "SERVING" in ok.stdout
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert subprocess.run(probe, env=env, capture_output=True, timeout=60).returncode == 1
    finally:
        server.stop(None)
    down = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=60)
    assert down.returncode == 1 and "UNREACHABLE" in down.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_entrypoint_serves_and_turns_healthy(tiny_bundle_dir: Path) -> None:
    """``guardrail serve`` configured only by the environment, as in the container, passes the probe."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDRAIL_TLS")}
    env.update(
        GUARDRAIL_HOST="127.0.0.1",
        GUARDRAIL_PORT=str(port),
        GUARDRAIL_BUNDLE=str(tiny_bundle_dir),
        GUARDRAIL_DEVICE="cpu",
        GUARDRAIL_DTYPE="fp32",
    )
    env.pop("GUARDRAIL_METRICS_PORT", None)
    guardrail = Path(sys.executable).with_name("guardrail")
    proc = subprocess.Popen([str(guardrail), "serve"], env=env, stderr=subprocess.PIPE, text=True)
    probe = [sys.executable, str(HEALTHCHECK), "--timeout", "2"]
    try:
        deadline, healthy = time.monotonic() + 240, False
        while time.monotonic() < deadline and proc.poll() is None and not healthy:
            healthy = subprocess.run(probe, env=env, capture_output=True, timeout=60).returncode == 0
            time.sleep(0.5)
        assert healthy, f"sidecar never became healthy (exit {proc.poll()})"
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert proc.returncode == 0  # SIGTERM: a graceful stop


@pytest.mark.model
def test_cache_warming_step_works_here() -> None:
    """The Dockerfile's warm-up command, run here against the configured cache."""
    (cmd,) = [a for k, a in _instructions() if k == "RUN" and "warm-cache" in a]
    env = dict(os.environ)
    env.setdefault("GUARDRAIL_CACHE", str(REPO / ".cache" / "guardrail"))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(shlex.split(cmd), cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-500:]
    assert "sample redacted" in done.stdout
