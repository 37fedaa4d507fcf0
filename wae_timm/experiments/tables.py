"""Markdown tables, the one renderer behind every table in results/ and in the model cards."""
from dataclasses import asdict
from typing import Any, Callable, Dict, List, Sequence

__all__ = ['markdown_table', 'records_table', 'plain_cell', 'dataclass_records']


def plain_cell(value: Any) -> str:
    """``str(value)``; ``None`` is an empty cell."""
    return '' if value is None else str(value)


def markdown_table(
        header: Sequence[str],
        rows: Sequence[Sequence[Any]],
        cell: Callable[[Any], str] = plain_cell,
) -> str:
    """A pipe table: the header, the ``|---|`` rule, one line per row; each value rendered by ``cell``.

    >>> print(markdown_table(['model', 'GFLOPs'], [['vgg16', 15.5], ['wae_vgg16', None]]))
    | model | GFLOPs |
    |---|---|
    | vgg16 | 15.5 |
    | wae_vgg16 |  |
    """
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(cell(value) for value in row) + ' |' for row in rows]
    return '\n'.join(lines)


def records_table(records: Sequence[Dict[str, Any]], cell: Callable[[Any], str] = plain_cell) -> str:
    """Records of equal keys as a :func:`markdown_table`: the first record's keys are the header."""
    keys = list(records[0])
    return markdown_table(keys, [[record[key] for key in keys] for record in records], cell)


def dataclass_records(rows: Sequence[Any]) -> List[Dict[str, Any]]:
    """Dataclass instances as records for a results CSV, floats to 4 significant digits."""
    return [{k: f'{v:.4g}' if isinstance(v, float) else v for k, v in asdict(row).items()} for row in rows]
