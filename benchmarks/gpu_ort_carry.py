"""Carry onnxruntime-gpu to a lent GPU machine that can download nothing and takes 64 MiB a call.

Its wheel is 243 MiB, almost all of it the CUDA provider library's kernel images for seven GPU
architectures. A Hopper card (H100, H200: sm_90) reads only its own, so this keeps the sm_90 images and
zeroes the others' bytes in place (the fat binaries' headers and sizes stay as they were; the CUDA
runtime picks the image of the card's architecture and never reads the zeroed ones), then compresses
the libraries with zstd, which squeezes the zeroed runs to nothing: 284 MB -> 50 MiB.

    python benchmarks/gpu_ort_carry.py --wheel onnxruntime_gpu-*.whl --out .ort   # here
    # there, after carrying .ort/ in two calls (it is over one call's 64 MiB with the repo):
    eval "$(bash benchmarks/gpu_ort_install.sh .ort /tmp/site | grep ^export)"
    export PYTHONPATH=/tmp/site:$PYTHONPATH

Writes ``OUT/a/libonnxruntime_providers_cuda.so.zst`` (the big one, its own call) and ``OUT/b/``
(the Python binding, zstd, and the package's Python files with the small provider bridge, tar.xz).
The wheel must be the CUDA build that matches the machine (onnxruntime-gpu 1.31 is CUDA 13, as is
the lent machines' torch); nothing else is needed there: CUDA, cuBLAS and cuRAND come with torch.
"""

from __future__ import annotations

import argparse
import io
import mmap
import shutil
import struct
import sys
import tarfile
import zipfile
from pathlib import Path

FATBIN_MAGIC = 0xBA55ED50
KIND_ELF = 2  # an entry holding a compiled kernel image (1: PTX text, kept)
PROVIDER = "onnxruntime/capi/libonnxruntime_providers_cuda.so"
SKIP = (
    "onnxruntime/capi/libonnxruntime.so",  # the C API library: the Python binding does not load it
    "onnxruntime/capi/libonnxruntime_providers_tensorrt.so",
    "onnxruntime/transformers/",
)


def fatbin_entries(buf: bytes | mmap.mmap) -> list[tuple[int, int, int, int]]:
    """Every kernel entry of every fat binary in ``buf``: ``(payload offset, payload size, kind, sm)``.

    A fat binary: magic ``u32``, version ``u16``, header size ``u16`` (16), size of its entries ``u64``;
    then entries, each a header (kind ``u16``, version ``u16``, header size ``u32``, payload size ``u64``,
    ..., the sm architecture ``u32`` at byte 28) and its payload.
    """
    out = []
    magic = struct.pack("<I", FATBIN_MAGIC)
    pos = 0
    while (i := buf.find(magic, pos)) >= 0:
        _, _, head, size = struct.unpack_from("<IHHQ", buf, i)
        if head != 16 or i + head + size > len(buf):  # the magic's bytes inside something else
            pos = i + 4
            continue
        at, end = i + head, i + head + size
        while at + 32 <= end:
            kind, _, ehead, payload = struct.unpack_from("<HHIQ", buf, at)
            if ehead == 0 or at + ehead + payload > end:
                break
            sm = struct.unpack_from("<I", buf, at + 28)[0]
            out.append((at + ehead, payload, kind, sm))
            at += ehead + payload
        pos = end
    return out


def keep_only(path: Path, archs: set[int]) -> tuple[int, int]:
    """Zero, in place, the kernel images of ``path`` for architectures outside ``archs``; returns the
    bytes zeroed and kept. Refuses a file with no image for ``archs`` (it would run nowhere)."""
    with path.open("r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        entries = [e for e in fatbin_entries(m) if e[2] == KIND_ELF]
        kept = sum(size for _, size, _, sm in entries if sm in archs)
        if entries and not kept:
            raise SystemExit(f"{path.name} has no kernel image for sm {sorted(archs)}")
        zeroed = 0
        for at, size, _, sm in entries:
            if sm not in archs:
                m[at : at + size] = bytes(size)
                zeroed += size
        m.flush()
    return zeroed, kept


def zstd(src: Path, dst: Path, level: int = 19) -> None:
    """``zstd -level --long`` (the command-line tool: the stdlib has no zstd before Python 3.14)."""
    import subprocess

    subprocess.run(
        ["zstd", "-q", "-f", f"-{level}", "--long=27", "-T0", str(src), "-o", str(dst)], check=True
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheel", type=Path, required=True, help="an onnxruntime-gpu wheel (manylinux x86_64)")
    ap.add_argument("--out", type=Path, default=Path(".ort"))
    ap.add_argument("--sm", default="90", help="architectures to keep, comma-separated (90: H100, H200)")
    a = ap.parse_args(argv)
    if shutil.which("zstd") is None:
        raise SystemExit("needs the zstd command")
    archs = {int(x) for x in a.sm.split(",")}
    work = a.out / "work"
    shutil.rmtree(work, ignore_errors=True)
    for sub in ("a", "b"):
        (a.out / sub).mkdir(parents=True, exist_ok=True)
    py = io.BytesIO()
    with zipfile.ZipFile(a.wheel) as z, tarfile.open(fileobj=py, mode="w:xz") as tar:
        for info in z.infolist():
            name = info.filename
            if name.startswith(SKIP) or info.is_dir():
                continue
            if name == PROVIDER or name.startswith("onnxruntime/capi/onnxruntime_pybind11_state"):
                target = work / Path(name).name
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 24)
                continue
            data = z.read(info)
            t = tarfile.TarInfo(name)
            t.size, t.mode = len(data), 0o755 if name.endswith(".so") else 0o644
            tar.addfile(t, io.BytesIO(data))
    (a.out / "b" / "ort_py.tar.xz").write_bytes(py.getvalue())
    provider = work / Path(PROVIDER).name
    zeroed, kept = keep_only(provider, archs)
    print(
        f"{provider.name}: kept {kept / 2**20:.0f} MiB of sm {sorted(archs)} kernel images, "
        f"zeroed {zeroed / 2**20:.0f} MiB"
    )
    zstd(provider, a.out / "a" / (provider.name + ".zst"))
    for lib in work.glob("onnxruntime_pybind11_state*"):
        zstd(lib, a.out / "b" / (lib.name + ".zst"))
    shutil.rmtree(work)
    for f in sorted(a.out.glob("[ab]/*")):
        print(f"{f}: {f.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
