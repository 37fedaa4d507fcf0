"""Writing results without losing what is there: atomic writes, and no overwriting unless asked.

Every tool that writes a file a user may have kept (weights, checkpoints,
result tables, figures) checks its outputs with :func:`refuse_to_overwrite`
before any work, and writes each file with :func:`atomic_write`, so a run
killed while saving leaves the previous file intact.
"""
import os
from pathlib import Path
from typing import Callable, Iterable, Union

__all__ = ['PathLike', 'atomic_write', 'refuse_to_overwrite']

PathLike = Union[str, Path]


def atomic_write(path: PathLike, write: Callable[[str], None]) -> Path:
    """Run ``write(temporary_path)``, then move the result to ``path`` in one step (``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f'.{path.name}.tmp{os.getpid()}')
    try:
        write(str(temporary))
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path


def refuse_to_overwrite(paths: Iterable[PathLike], overwrite: bool) -> None:
    """Raise ``FileExistsError`` naming every one of ``paths`` that exists, unless ``overwrite``."""
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not overwrite:
        what = existing[0] + ' exists' if len(existing) == 1 else ', '.join(existing) + ' exist'
        raise FileExistsError(f'{what}: pass --overwrite (overwrite=True) to replace')
