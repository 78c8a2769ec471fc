"""benchmarks/gpu_ort_carry.py + gpu_ort_install.sh: onnxruntime-gpu cut to one GPU architecture's kernel
images, carried in pieces and installed again, byte for byte what the carry side wrote."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from gpu_ort_carry import FATBIN_MAGIC, KIND_ELF, PROVIDER, fatbin_entries, keep_only, main  # noqa: E402


def entry(kind: int, sm: int, payload: bytes) -> bytes:
    """One fat-binary entry: a 64-byte header (kind, version, header size, payload size, sm at 28)."""
    head = bytearray(64)
    struct.pack_into("<HHIQ", head, 0, kind, 0x0101, 64, len(payload))
    struct.pack_into("<I", head, 28, sm)
    return bytes(head) + payload


def fatbin(*entries: bytes) -> bytes:
    body = b"".join(entries)
    return struct.pack("<IHHQ", FATBIN_MAGIC, 1, 16, len(body)) + body


def library(path: Path) -> bytes:
    """A stand-in shared library: ELF-ish bytes around two fat binaries, one with a PTX entry."""
    data = (
        b"\x7fELF" + b"\x01" * 60
        + fatbin(entry(KIND_ELF, 80, b"A" * 300), entry(KIND_ELF, 90, b"B" * 200))
        + struct.pack("<I", FATBIN_MAGIC) + b"\x00\x00"  # the magic's bytes inside other data
        + fatbin(entry(1, 80, b"ptx text"), entry(KIND_ELF, 120, b"C" * 100), entry(KIND_ELF, 90, b"D" * 50))
        + b"\x02" * 40
    )  # fmt: skip
    path.write_bytes(data)
    return data


def test_entries_are_found_and_other_architectures_zeroed(tmp_path: Path) -> None:
    lib = tmp_path / "lib.so"
    before = library(lib)
    assert [(k, sm, n) for _, n, k, sm in fatbin_entries(before)] == [
        (KIND_ELF, 80, 300),
        (KIND_ELF, 90, 200),
        (1, 80, 8),
        (KIND_ELF, 120, 100),
        (KIND_ELF, 90, 50),
    ]
    assert keep_only(lib, {90}) == (400, 250)
    after = lib.read_bytes()
    assert len(after) == len(before)  # nothing moves: offsets inside the library stay valid
    assert after.count(b"A") == 0 and after.count(b"C") == 0
    assert b"B" * 200 in after and b"D" * 50 in after and b"ptx text" in after
    assert fatbin_entries(after) == fatbin_entries(before)  # headers untouched
    with pytest.raises(SystemExit, match="no kernel image"):
        keep_only(lib, {75})


@pytest.mark.skipif(shutil.which("zstd") is None, reason="needs the zstd command")
def test_carry_then_install_restores_the_cut_package(tmp_path: Path) -> None:
    provider = library(tmp_path / "provider.so")
    wheel = tmp_path / "onnxruntime_gpu-0-cp312-cp312-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(PROVIDER, provider)
        z.writestr("onnxruntime/capi/onnxruntime_pybind11_state.cpython-312-x86_64-linux-gnu.so", b"binding")
        z.writestr("onnxruntime/capi/libonnxruntime_providers_shared.so", b"bridge")
        z.writestr("onnxruntime/capi/libonnxruntime.so.1.0", b"not needed")
        z.writestr("onnxruntime/__init__.py", "__version__ = '0'\n")
        z.writestr("onnxruntime/transformers/big.py", "not needed\n")
    out = tmp_path / "carry"
    assert main(["--wheel", str(wheel), "--out", str(out)]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "a/libonnxruntime_providers_cuda.so.zst",
        "b/onnxruntime_pybind11_state.cpython-312-x86_64-linux-gnu.so.zst",
        "b/ort_py.tar.xz",
    ]
    site = tmp_path / "site"
    run = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_ort_install.sh"), str(out), str(site)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "unpacked libonnxruntime_providers_cuda.so" in run.stdout
    capi = site / "onnxruntime" / "capi"
    expected = tmp_path / "expected.so"
    expected.write_bytes(provider)
    keep_only(expected, {90})
    assert (capi / "libonnxruntime_providers_cuda.so").read_bytes() == expected.read_bytes()
    assert (capi / "onnxruntime_pybind11_state.cpython-312-x86_64-linux-gnu.so").read_bytes() == b"binding"
    assert (capi / "libonnxruntime_providers_shared.so").read_bytes() == b"bridge"
    assert (site / "onnxruntime" / "__init__.py").is_file()
    assert (
        not (capi / "libonnxruntime.so.1.0").exists() and not (site / "onnxruntime" / "transformers").exists()
    )
