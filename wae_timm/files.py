"""Writing results without losing what is there: atomic writes, and no overwriting unless asked.

Every tool that writes a file a user may have kept (weights, checkpoints,
result tables, figures) checks its outputs with :func:`refuse_to_overwrite`
before any work, and writes each file with :func:`atomic_write`, so a run
killed while saving leaves the previous file intact.
"""
import csv
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable, List, Mapping, Optional, Sequence, Union

__all__ = ['PathLike', 'atomic_write', 'write_csv', 'refuse_to_overwrite', 'remove_stale_temporaries']

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


def write_csv(path: PathLike, records: Sequence[Mapping[str, Any]], columns: Optional[Sequence[str]] = None) -> Path:
    """Write ``records`` as a CSV with a header, atomically (:func:`atomic_write`).

    ``columns`` (default: the first record's keys) are the header; a record's missing value is an empty cell.
    """
    if columns is None:
        if not records:
            raise ValueError(f'write_csv({path}): no records and no columns: nothing to write a header from')
        columns = list(records[0])

    def write(tmp: str) -> None:
        with open(tmp, 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=list(columns))
            writer.writeheader()
            writer.writerows({c: record.get(c, '') for c in columns} for record in records)
    return atomic_write(path, write)


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
