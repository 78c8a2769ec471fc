#!/bin/bash
# Device side of benchmarks/gpu_ort_carry.py: install the carried onnxruntime-gpu into a target folder.
#   bash benchmarks/gpu_ort_install.sh CARRIED_DIR TARGET   (CARRIED_DIR holds a/ and b/ or their files)
# then: export PYTHONPATH=TARGET:$PYTHONPATH (it shadows a CPU onnxruntime already there); the last
# line printed is the LD_LIBRARY_PATH export for the CUDA libraries: eval "$(... | grep ^export)".
# The zstd command where there is one; the lent machines have none, but pyarrow reads zstd frames.
set -euo pipefail
src=${1:?carried folder}; dst=${2:?target folder}
mkdir -p "$dst"
tar xJf "$(find "$src" -name ort_py.tar.xz | head -1)" -C "$dst"
python3 - "$src" "$dst/onnxruntime/capi" <<'PY'
import pathlib, shutil, subprocess, sys
for f in sorted(pathlib.Path(sys.argv[1]).rglob("*.so.zst")):
    out = f"{sys.argv[2]}/{f.stem}"
    if shutil.which("zstd"):
        subprocess.run(["zstd", "-q", "-d", "-f", "--long=27", str(f), "-o", out], check=True)
    else:
        import pyarrow as pa
        with pa.CompressedInputStream(pa.OSFile(str(f)), "zstd") as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 24)
    print("unpacked", f.stem)
PY
# cuBLAS, cuRAND and the CUDA runtime come from the nvidia-* wheels beside torch
nv=$(python3 -c "import nvidia; print(list(nvidia.__path__)[0])" 2>/dev/null || true)
if [ -n "$nv" ]; then
  echo "export LD_LIBRARY_PATH=$(find "$nv" -name 'lib*.so*' -printf '%h\n' | sort -u | paste -sd:)"
fi
