from alembic.config import Config
from alembic.script import ScriptDirectory

from outcrop.storage import db


def test_head_constant_matches_alembic():
    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == db.HEAD


def test_migrate_is_idempotent(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    assert db.current_revision(engine) is None
    db.migrate(engine)
    db.migrate(engine)
    assert db.current_revision(engine) == db.HEAD
