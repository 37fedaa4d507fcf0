"""Writing results without losing what is there: atomic writes, and no overwriting unless asked.

Every tool that writes a file a user may have kept (weights, checkpoints,
result tables, figures) checks its outputs with :func:`refuse_to_overwrite`
before any work, and writes each file with :func:`atomic_write`, so a run
killed while saving leaves the previous file intact.
"""
import os
import re
from pathlib import Path
from typing import Callable, Iterable, List, Union

__all__ = ['PathLike', 'atomic_write', 'refuse_to_overwrite', 'remove_stale_temporaries']

PathLike = Union[str, Path]


def _temporary_path(path: Path, pid: int) -> Path:
    return path.with_name(f'.{path.name}.tmp{pid}')


def atomic_write(path: PathLike, write: Callable[[str], None]) -> Path:
    """Run ``write(temporary_path)``, then move the result to ``path`` in one step (``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_path(path, os.getpid())
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


def remove_stale_temporaries(path: PathLike) -> List[Path]:
    """Remove the temporary files that :func:`atomic_write` left beside ``path`` when a process was killed.

    Only ``.<name>.tmp<pid>`` files of ``path`` are touched, never this process's own; call it when a
    run that writes ``path`` starts or resumes (its previous process is gone). Returns the removed files.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = re.compile(rf'\.{re.escape(path.name)}\.tmp(\d+)')
    removed = []
    for candidate in path.parent.iterdir():
        match = pattern.fullmatch(candidate.name)
        if match and int(match.group(1)) != os.getpid() and candidate.is_file():
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed
