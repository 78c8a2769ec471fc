"""Container health probe: exit 0 when the sidecar's ``grpc.health.v1`` service answers SERVING, else 1.

Like ``grpc_health_probe``, in Python with the packages the sidecar already has. Reads the sidecar's own
settings from the environment: ``GUARDRAIL_PORT`` (default 50051) and, with TLS on, ``GUARDRAIL_TLS_CERT``
as the trusted root (the certificate must name ``localhost``). Mutual TLS needs a client certificate:
point ``GUARDRAIL_HEALTH_CLIENT_CERT`` / ``GUARDRAIL_HEALTH_CLIENT_KEY`` at one.

    python docker/healthcheck.py [--addr host:port] [--service NAME] [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _credentials():
    import grpc

    cert = os.environ.get("GUARDRAIL_TLS_CERT")
    if not cert:
        return None
    key, chain = os.environ.get("GUARDRAIL_HEALTH_CLIENT_KEY"), os.environ.get("GUARDRAIL_HEALTH_CLIENT_CERT")
    return grpc.ssl_channel_credentials(
        root_certificates=Path(cert).read_bytes(),
        private_key=Path(key).read_bytes() if key else None,
        certificate_chain=Path(chain).read_bytes() if chain else None,
    )


def check(addr: str, service: str = "", timeout: float = 3.0) -> str:
    """The serving status name (``SERVING``, ``NOT_SERVING``…) or ``UNREACHABLE``."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    creds = _credentials()
    channel = grpc.secure_channel(addr, creds) if creds else grpc.insecure_channel(addr)
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as e:
            return "UNREACHABLE" if e.code() != grpc.StatusCode.NOT_FOUND else "SERVICE_UNKNOWN"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="exit 0 if the guardrail sidecar reports SERVING")
    port = os.environ.get("GUARDRAIL_PORT", "50051")
    host = "localhost" if os.environ.get("GUARDRAIL_TLS_CERT") else "127.0.0.1"
    ap.add_argument("--addr", default=f"{host}:{port}")
    ap.add_argument("--service", default="", help="'' is the whole server")
    ap.add_argument("--timeout", type=float, default=3.0)
    args = ap.parse_args(argv)
    status = check(args.addr, args.service, args.timeout)
    print(f"{args.addr}: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
