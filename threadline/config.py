"""Settings: where the Threadline home is and which engines back it.

A home is a `.threadline/` folder found by walking up from the working folder, like git;
`THREADLINE_HOME` names one explicitly. `THREADLINE_DATABASE_URL` and `THREADLINE_STORE_URL`
point metadata and objects at shared engines instead of the embedded defaults.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path

from threadline.errors import AlreadyExists, NotInitialized

HOME_DIRNAME = ".threadline"
ENV_HOME = "THREADLINE_HOME"
ENV_DATABASE_URL = "THREADLINE_DATABASE_URL"
ENV_STORE_URL = "THREADLINE_STORE_URL"
ENV_AUTHOR = "THREADLINE_AUTHOR"


@dataclass(frozen=True)
class Settings:
    """Everything a process needs to open a Threadline home, parsed once.

    Attributes:
        home: the `.threadline` folder.
        database_url: SQLAlchemy URL of the metadata database.
        store_url: URL of the object store (`file://...` or, later, `s3://...`).
        author: default author recorded on commits.
    """

    home: Path
    database_url: str
    store_url: str
    author: str

    @property
    def tmp_dir(self) -> Path:
        """Scratch space on the same filesystem as the home (for atomic renames)."""
        return self.home / "tmp"

    @property
    def cache_dir(self) -> Path:
        """Machine-local caches that may be deleted at any time."""
        return self.home / "cache"

    @property
    def lock_dir(self) -> Path:
        """Lock files (each records its owner's pid, host and command)."""
        return self.home / "locks"


def _default_author() -> str:
    explicit = os.environ.get(ENV_AUTHOR)
    if explicit:
        return explicit
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def settings_for(home: Path, env: dict[str, str] | None = None) -> Settings:
    """Build the settings of a given home folder, honouring the engine URL variables."""
    env = dict(os.environ) if env is None else env
    home = home.resolve()
    return Settings(
        home=home,
        database_url=env.get(ENV_DATABASE_URL) or f"sqlite:///{home / 'meta.db'}",
        store_url=env.get(ENV_STORE_URL) or (home / "objects").as_uri(),
        author=_default_author(),
    )


def find_home(start: Path | None = None, env: dict[str, str] | None = None) -> Path | None:
    """Return the home that applies to `start` (default: the working folder), or None."""
    env = dict(os.environ) if env is None else env
    if env.get(ENV_HOME):
        return Path(env[ENV_HOME]).expanduser().resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / HOME_DIRNAME
        if candidate.is_dir():
            return candidate
    return None


def load_settings(start: Path | None = None) -> Settings:
    """Settings of the home that applies to `start`; raises NotInitialized if there is none."""
    home = find_home(start)
    if home is None or not home.is_dir():
        where = home or (start or Path.cwd())
        raise NotInitialized(
            f"no Threadline home found at or above {where}; "
            "run `threadline init` there (or set THREADLINE_HOME)"
        )
    return settings_for(home)


def init_home(folder: Path | None = None) -> Settings:
    """Create a home: `.threadline/` in `folder` (or `THREADLINE_HOME` when set)."""
    env_home = os.environ.get(ENV_HOME)
    if folder is None and env_home:
        home = Path(env_home).expanduser()
    else:
        home = (folder or Path.cwd()) / HOME_DIRNAME
    if (home / "meta.db").exists() or (home / "objects").exists():
        raise AlreadyExists(f"a Threadline home exists already at {home.resolve()}")
    home.mkdir(parents=True, exist_ok=True)
    settings = settings_for(home)
    for sub in (settings.tmp_dir, settings.cache_dir, settings.lock_dir):
        sub.mkdir(exist_ok=True)
    return settings
