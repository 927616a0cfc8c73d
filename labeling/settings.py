"""Settings from the environment, with zero-config defaults.

RLHF_HOME          data root: SQLite file, snapshots, checkpoints (default: ./.rlhf where
                   that folder exists, as in earlier versions; else the user's data directory,
                   e.g. ~/.local/share/rlhf on Linux: the same data from any working directory)
RLHF_DATABASE_URL  SQLAlchemy URL (default: sqlite:///$RLHF_HOME/rlhf.db);
                   PostgreSQL: postgresql+psycopg://user@host/db
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str

    @property
    def snapshots_dir(self) -> Path:
        return self.home / "snapshots"

    @property
    def checkpoints_dir(self) -> Path:
        return self.home / "checkpoints"


def default_home(cwd: Path | None = None) -> Path:
    """./.rlhf if it exists (data made before the default moved), else the user's data dir."""
    legacy = (cwd or Path.cwd()) / ".rlhf"
    if legacy.is_dir():
        return legacy
    import platformdirs

    return Path(platformdirs.user_data_dir("rlhf", appauthor=False))


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    home = Path(env.get("RLHF_HOME") or default_home()).expanduser().resolve()
    url = env.get("RLHF_DATABASE_URL") or f"sqlite:///{home / 'rlhf.db'}"
    return Settings(home=home, database_url=url)


def resolve_under(root: Path, relative: str | os.PathLike[str]) -> Path:
    """The one path resolver under the data root: refuses anything that escapes it."""
    root = root.resolve()
    path = (root / relative).resolve()
    if path != root and root not in path.parents:
        raise ValueError(f"path {relative!s} escapes the data root {root}")
    return path
