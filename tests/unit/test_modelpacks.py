import hashlib

import pytest

from outcrop import modelpacks
from outcrop.errors import ModelNotReady


def test_missing_pack_names_the_package(tmp_path):
    pack = modelpacks.Pack("x", (("no-such-pack-part1", "1.0"),), "no_such/part{n:02d}.bin", "x.gguf", "0" * 64)
    with pytest.raises(ModelNotReady, match="no-such-pack-part1==1.0"):
        modelpacks.pack_path(pack, tmp_path)


def test_corrupt_pack_fails_verification(tmp_path, monkeypatch):
    part = tmp_path / "part01.bin"
    part.write_bytes(b"not the model")
    monkeypatch.setattr(modelpacks, "locate_member", lambda dist, version, member: part)
    pack = modelpacks.Pack("x", (("fake-pack", "1.0"),), "p{n}", "x.gguf", hashlib.sha256(b"model").hexdigest())
    with pytest.raises(ModelNotReady, match="failed verification"):
        modelpacks.pack_path(pack, tmp_path / "cache")
    assert not (tmp_path / "cache" / "x.gguf").exists()  # nothing half-written is left behind


def test_assembles_parts_in_order_once(tmp_path, monkeypatch):
    parts = {1: tmp_path / "a", 2: tmp_path / "b"}
    parts[1].write_bytes(b"mod")
    parts[2].write_bytes(b"el")
    monkeypatch.setattr(modelpacks, "locate_member", lambda d, v, member: parts[int(member)])
    pack = modelpacks.Pack("x", (("p1", "1"), ("p2", "1")), "{n}", "x.gguf", hashlib.sha256(b"model").hexdigest(), 5)
    path = modelpacks.pack_path(pack, tmp_path / "cache")
    assert path.read_bytes() == b"model"
    parts[1].unlink()  # a second call uses the verified cache, not the packages
    assert modelpacks.pack_path(pack, tmp_path / "cache") == path
