"""The sidecar's Python stubs, generated from ``proto/guardrail/v1/guardrail.proto`` and committed.

Committed rather than generated at install: an install needs no protoc, and ``tests/test_serving_stubs.py``
regenerates them into a temporary folder with ``grpc_tools.protoc`` and fails when they differ from the
committed files. After editing the proto: ``python -m guardrail.serving.stubs`` (needs ``grpcio-tools``,
in the ``dev`` extra).

protoc names the modules after the proto's path (``guardrail/v1/``); they live in this package instead,
so the one import line of the service stub is pointed here. The descriptor keeps the proto's own path,
which is what reflection shows to clients in other languages.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROTO_ROOT = PACKAGE_DIR.parent.parent / "proto"
PROTO = "guardrail/v1/guardrail.proto"
FILES = ("guardrail_pb2.py", "guardrail_pb2.pyi", "guardrail_pb2_grpc.py")
"""The generated files, as they lie in this package."""

_PROTOC_IMPORT = "from guardrail.v1 import guardrail_pb2"
_PACKAGE_IMPORT = "from guardrail.serving import guardrail_pb2"


def generate(out: Path, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Run protoc (from grpc_tools) on the proto and write :data:`FILES` into ``out``; returns their paths."""
    import tempfile

    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{proto_root}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            str(proto_root / PROTO),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {proto_root / PROTO}")
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name in FILES:
            text = (Path(tmp) / "guardrail" / "v1" / name).read_text(encoding="utf-8")
            if name.endswith("_grpc.py"):
                if _PROTOC_IMPORT not in text:
                    raise RuntimeError("unexpected import line in the generated service stub")
                text = text.replace(_PROTOC_IMPORT, _PACKAGE_IMPORT)
            target = out / name
            target.write_text(text, encoding="utf-8")
            written.append(target)
    return written


if __name__ == "__main__":
    for path in generate(PACKAGE_DIR):
        print(f"wrote {path}", file=sys.stderr)
