import base64

import pytest
from cryptography.exceptions import InvalidTag

from outcrop.core.crypto import MasterKeyring, new_key, read_keyring, write_keyring
from outcrop.errors import OutcropError


def test_keyring_file_is_created_0600_and_refused_when_readable_by_others(tmp_path):
    path = tmp_path / "master.key"
    MasterKeyring.from_file(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    path.chmod(0o644)
    with pytest.raises(OutcropError, match="readable by others"):
        MasterKeyring.from_file(path)


def test_wrapped_secret_is_bound_to_its_context(tmp_path):
    ring = MasterKeyring.from_file(tmp_path / "master.key")
    blob = ring.wrap(b"the secret", b"AKIA1")
    assert b"the secret" not in blob
    assert ring.unwrap(blob, b"AKIA1") == b"the secret"
    with pytest.raises(InvalidTag):  # a blob moved to another key ID does not open
        ring.unwrap(blob, b"AKIA2")


def test_legacy_raw_key_file_still_unwraps_its_blobs(tmp_path):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = new_key()
    path = tmp_path / "master.key"
    path.write_bytes(key)
    path.chmod(0o600)
    legacy = b"\x01" + b"n" * 12 + AESGCM(key).encrypt(b"n" * 12, b"old secret", b"ctx")
    assert MasterKeyring.from_file(path).unwrap(legacy, b"ctx") == b"old secret"


def test_a_running_keyring_follows_a_rotation_of_its_file(tmp_path):
    path = tmp_path / "master.key"
    serving = MasterKeyring.from_file(path)
    old = serving.wrap(b"data", b"c")
    first = read_keyring(path)[0]
    rotated = new_key()
    write_keyring(path, [rotated, first])  # what a rotation writes first: the new key leads
    fresh = MasterKeyring(read_keyring(path), path).wrap(b"data", b"c")
    assert serving.unwrap(fresh, b"c") == b"data"  # reloads on the unknown fingerprint
    assert serving.wrapped_by_primary(serving.wrap(b"x", b"c"))
    assert not serving.wrapped_by_primary(old)
    write_keyring(path, [rotated])
    with pytest.raises(OutcropError, match="not in the keyring"):
        MasterKeyring(read_keyring(path)).unwrap(old, b"c")


def test_key_from_environment_must_be_32_bytes_base64():
    MasterKeyring.from_secret(base64.b64encode(new_key()).decode())
    with pytest.raises(OutcropError, match="32"):
        MasterKeyring.from_secret(base64.b64encode(b"short").decode())
    with pytest.raises(OutcropError, match="base64"):
        MasterKeyring.from_secret("not base64!!")


def test_a_named_key_file_is_never_created(tmp_path):
    from outcrop.server.deps import master_keyring
    from outcrop.settings import Settings

    with pytest.raises(OutcropError, match="does not exist"):
        master_keyring(Settings(home=tmp_path, master_key_file=tmp_path / "typo.key"))
    key = base64.b64encode(new_key()).decode()
    assert master_keyring(Settings(home=tmp_path, master_key=key)).unwrap(
        master_keyring(Settings(home=tmp_path, master_key=key)).wrap(b"x", b"c"), b"c") == b"x"
    assert not (tmp_path / "master.key").exists()  # an environment key leaves no key file behind
