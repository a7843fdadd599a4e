"""Where a dataset is read from when no ``root`` is given: an environment variable, else a user cache folder.

For a dataset ``name`` (``"omniglot"``, ``"banking77"``, ``"cub200"``, ``"cars196"``, ``"sop"``), in order:

1. the dataset's own variable, where it has one (``PML_RELAXED_OMNIGLOT``, ``PML_RELAXED_BANKING77``);
2. ``$PML_RELAXED_DATA/<name>``, one variable for a folder holding every dataset;
3. the user cache folder ``$XDG_CACHE_HOME/pml_relaxed/<name>``, by default ``~/.cache/pml_relaxed/<name>``.

Never a path derived from the installed package: after ``pip install`` the source tree is not there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Union

PathLike = Union[str, "os.PathLike[str]"]

#: the variable naming a folder that holds every dataset, one subfolder each
DATA_ENV_VAR = "PML_RELAXED_DATA"


class DataRoot(NamedTuple):
    """A dataset folder and where its path came from (for error messages)."""

    path: Path
    source: str


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/pml_relaxed`` if XDG_CACHE_HOME is set, else ``~/.cache/pml_relaxed``."""
    cache = os.environ.get("XDG_CACHE_HOME")
    return (Path(cache) if cache else Path.home() / ".cache") / "pml_relaxed"


def resolve_root(root: Optional[PathLike], name: str, env_var: Optional[str] = None) -> DataRoot:
    """The folder of dataset ``name``: ``root`` when given, else the default described in this module.

    Args:
        root: the caller's folder, or None for the default.
        name: the dataset's folder name below ``$PML_RELAXED_DATA`` or the cache folder.
        env_var: the dataset's own environment variable, if it has one.

    Returns:
        The path, and a phrase saying where it came from.

    Raises:
        TypeError: a root that is not a str, an os.PathLike or None.

    Examples:
        >>> resolve_root("/data/omniglot", "omniglot").source
        'root='
    """
    if root is not None:
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a str, an os.PathLike or None (default); got {type(root).__name__}")
        return DataRoot(Path(root), "root=")
    if env_var and os.environ.get(env_var):
        return DataRoot(Path(os.environ[env_var]).expanduser(), f"${env_var}")
    if os.environ.get(DATA_ENV_VAR):
        return DataRoot(Path(os.environ[DATA_ENV_VAR]).expanduser() / name, f"${DATA_ENV_VAR}/{name}")
    variables = f"${env_var} and ${DATA_ENV_VAR}" if env_var else f"${DATA_ENV_VAR}"
    return DataRoot(user_cache_dir() / name, f"the user cache folder, as {variables} are unset")


def default_root(name: str, env_var: Optional[str] = None) -> Path:
    """The folder dataset ``name`` is read from when no root is given (see the module docstring).

    Examples:
        >>> default_root("cub200").name  # $PML_RELAXED_DATA/cub200 or ~/.cache/pml_relaxed/cub200
        'cub200'
    """
    return resolve_root(None, name, env_var).path


def how_to_set(name: str, env_var: Optional[str] = None) -> str:
    """The sentence telling a user how to point a dataset elsewhere."""
    variables = f"{env_var} or {DATA_ENV_VAR}" if env_var else DATA_ENV_VAR
    return f"pass root= or set {variables} (default folder: $PML_RELAXED_DATA/{name}, else {user_cache_dir() / name})"


def default_root_attribute(module: str, attribute: str, name: str, env_var: Optional[str] = None) -> Callable:
    """A module ``__getattr__`` serving ``attribute`` (e.g. ``DEFAULT_OMNIGLOT_ROOT``) as :func:`default_root`.

    The attribute is computed when it is read, so it follows the environment of that moment.
    """

    def __getattr__(key: str) -> Path:
        if key == attribute:
            return default_root(name, env_var)
        raise AttributeError(f"module {module!r} has no attribute {key!r}")

    return __getattr__
