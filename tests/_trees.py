"""Helpers for tests of the output protocol: snapshots of whole folder trees."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path


def tree(root) -> dict[str, str]:
    """Every entry under ``root`` (hidden ones too) -> a digest of what it is.

    Files map to their SHA-256, folders to ``"dir"``, symbolic links to their
    target, other entries (FIFOs, devices) to their type: two snapshots are
    equal only if nothing was created, removed or changed.
    """
    root = Path(root)
    out = {}
    if not os.path.lexists(root):
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "link:" + os.readlink(p)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = "dir"
            elif stat.S_ISREG(st.st_mode):
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = f"special:{stat.S_IFMT(st.st_mode)}"
    return out


def manifest_consistent(folder) -> bool:
    """True if every file the last run in ``folder``'s manifest lists is there.

    Also checks that each listed file has the recorded size and SHA-256.
    """
    folder = Path(folder)
    data = json.loads((folder / "dtitool-run.json").read_text())
    for run in data["runs"]:
        for rel, rec in run["files"].items():
            p = folder / rel
            if not p.is_file():
                return False
            if hashlib.sha256(p.read_bytes()).hexdigest() != rec["sha256"]:
                return False
    return True


def without(snapshot: dict[str, str], *names: str) -> dict[str, str]:
    """``snapshot`` without the entries named (and anything under them)."""
    return {k: v for k, v in snapshot.items()
            if not any(k == n or k.startswith(n + "/") for n in names)}
