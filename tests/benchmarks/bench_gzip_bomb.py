"""Benchmark: peak memory of ``dtitool fit-tensor`` on gzip bombs, per gzip library.

A gzip bomb here is a ``.nii.gz`` whose header describes an ordinary DWI but
whose gzip stream goes on inflating long after the voxel data end: the
2.6 MB bomb inflates to about 2.6 GB, the 17 MB one to about 17 GB (members of
1 GiB of zeros each, level 9). dtitool reads a ``.nii.gz`` through a stream
bounded by the size its header implies (``dtitool/_gzip.py``), so the run
must fail (exit 2, one line naming the file) with a peak memory of at most 2x
what the header implies above the interpreter's own.

Each case runs ``dtitool fit-tensor`` in a child process, with each gzip
library dtitool can inflate with (zlib-ng, ISA-L, the standard library's
zlib: the others blocked from import), and reports the child's peak RSS
(``resource.getrusage(RUSAGE_CHILDREN)`` in a fresh runner process), the
same run on the valid DWI (the header without the bomb's tail) and on a
missing file (the interpreter and its imports: ``idle``), and the size the
header implies. The figure to read is (peak - idle) / implied: the memory
the run took for the file, in units of what its header implies.

Run:  python tests/benchmarks/bench_gzip_bomb.py [--shape 96,96,60,70]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

GIB = 1 << 30

CHILD = r"""
import json, resource, subprocess, sys, time
argv, block = json.loads(sys.argv[1]), json.loads(sys.argv[2])
code = (
    "import sys\n"
    "class _Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    f"        if name.split('.')[0] in {tuple(block)!r}:\n"
    "            raise ImportError(name + ' blocked for the benchmark')\n"
    "        return None\n"
    "sys.meta_path.insert(0, _Block())\n"
    "from dtitool._gzip import _inflater\n"
    "print('inflater:', _inflater().__name__, file=sys.stderr)\n"
    "from dtitool.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
t = time.perf_counter()
r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True,
                   text=True)
wall = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"rc": r.returncode, "stderr": r.stderr, "peak": peak,
                  "wall": wall}))
"""

BACKENDS = {
    "zlib-ng": ["isal"],
    "isal": ["zlib_ng"],
    "zlib": ["zlib_ng", "isal"],
}


def _zero_member(size: int) -> bytes:
    """One gzip member holding ``size`` zero bytes (level 9), made in chunks."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 24)
    parts, left = [], size
    while left:
        n = min(left, len(block))
        parts.append(c.compress(block[:n]))
        left -= n
    parts.append(c.flush())
    return b"".join(parts)


def write_cases(folder: Path, shape: tuple[int, ...]) -> tuple[Path, dict, int]:
    """The valid DWI and its bombs; return (valid, {name: path}, implied bytes)."""
    rng = np.random.default_rng(0)
    k = shape[3]
    bvals = np.where(np.arange(k) % 10 == 0, 0.0, 1000.0)
    # A noiseless sphere of MD 0.8e-3 mm^2/s in zeros: it compresses to little,
    # so the bombs are mostly their tail (2.6 MB and 17 MB on disk).
    axes = [np.linspace(-1, 1, n) for n in shape[:3]]
    inside = sum(np.meshgrid(*[a**2 for a in axes], indexing="ij")) < 0.7
    signal = np.round(1000 * np.exp(-bvals * 0.8e-3)).astype(np.int16)
    data = np.where(inside[..., None], signal, np.int16(0)).astype(np.int16)
    raw = nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])).to_bytes()
    implied = len(raw)
    valid = folder / "dwi.nii.gz"
    head = zlib.compressobj(1, zlib.DEFLATED, 31)
    first = head.compress(raw) + head.flush()
    valid.write_bytes(first)
    g = rng.normal(size=(k, 3))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    g[bvals == 0] = 0
    (folder / "dwi.bval").write_text(" ".join(f"{b:g}" for b in bvals) + "\n")
    (folder / "dwi.bvec").write_text(
        "\n".join(" ".join(f"{v:.6f}" for v in row) for row in g.T) + "\n")
    member = _zero_member(GIB)
    bombs = {}
    for name, gib in (("bomb-2.6GB", 2.6), ("bomb-17GB", 17)):
        whole, frac = int(gib), gib - int(gib)
        tail = member * whole + (_zero_member(int(frac * GIB)) if frac else b"")
        path = folder / f"{name}.nii.gz"
        path.write_bytes(first + tail)
        bombs[name] = path
    return valid, bombs, implied


def run_case(dwi: Path, folder: Path, backend: str, out: str) -> dict:
    argv = ["fit-tensor", str(dwi), "--bval", str(folder / "dwi.bval"), "--bvec",
            str(folder / "dwi.bvec"), "--out", str(folder / out / "sub-01"),
            "--quiet", "--force"]
    r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(argv),
                        json.dumps(BACKENDS[backend])],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="96,96,60,70",
                    help="the DWI shape every header claims (int16)")
    args = ap.parse_args()
    shape = tuple(int(x) for x in args.shape.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        valid, bombs, implied = write_cases(folder, shape)
        print(f"header: {' x '.join(map(str, shape))} int16, implies "
              f"{implied / 1e6:.1f} MB (header + voxel data); cases made in "
              f"{time.perf_counter() - t:.0f} s")
        for name, path in bombs.items():
            print(f"  {name}: {path.stat().st_size / 1e6:.1f} MB on disk")
        print(f"{'backend':8} {'case':12} {'exit':>4} {'peak RSS':>10} "
              f"{'peak - idle':>12} {'(x implied)':>11} {'wall':>6}")
        for backend in BACKENDS:
            idle = run_case(folder / "missing.nii.gz", folder, backend, "idle")
            lib = idle["stderr"].splitlines()[0]
            print(f"{backend:8} {'idle':12} {idle['rc']:>4} "
                  f"{idle['peak'] / 1e6:>7.0f} MB {'':>12} {'':>11} "
                  f"{idle['wall']:>5.1f}s   ({lib})")
            for name, path in {"valid": valid, **bombs}.items():
                r = run_case(path, folder, backend, f"{name}-{backend}")
                over = r["peak"] - idle["peak"]
                print(f"{backend:8} {name:12} {r['rc']:>4} {r['peak'] / 1e6:>7.0f} "
                      f"MB {over / 1e6:>9.0f} MB {over / implied:>10.2f}x "
                      f"{r['wall']:>5.1f}s")
                err = [ln for ln in r["stderr"].splitlines()
                       if not ln.startswith("inflater:")]
                if name != "valid":
                    print(f"         stderr ({len(err)} line): {err[0][:160]}")


if __name__ == "__main__":
    main()
