"""Accuracy of exported weights, bound to the exact file by its sha256.

A model card, the demo and the tests quote the accuracy of a tag's weights only
from a row that records the sha256 of the ``model.safetensors`` it measured
(:data:`MEASUREMENTS_FILE` in ``results/``). Weights whose hash has no row
(a new export, random weights, a different dtype) have no numbers: "not
measured", never the numbers of another file.

Each measurement is made through timm's own loader (``create_model(tag,
pretrained=True)`` with the file as the weight source), so what is measured is
what a user's ``pretrained=True`` gives. Rows are per (tag, sha256, images):
the full test split, and its first :data:`SLICE_IMAGES` images, the slice the
tests re-measure with tolerance 0.

    wae-timm push CKPT wae_resnet18.fmnist --out hub/wae_resnet18.fmnist --dtype float16 --measure --dry-run
    # -> hub/wae_resnet18.fmnist/ and its rows in results/pretrained_weights.csv
"""
import csv
import hashlib
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import timm
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from ..files import PathLike, write_csv
from ..models.pretrained import PretrainedTag

__all__ = [
    'MEASUREMENTS_FILE', 'MEASUREMENT_COLUMNS', 'SLICE_IMAGES', 'EVAL_BATCH_SIZE', 'MEASURABLE_DATASETS',
    'sha256_of_file', 'find_results_dir', 'load_for_measurement', 'evaluate_test_split',
    'measure_weights', 'record_measurements', 'read_measurements', 'find_measurement',
]

MEASUREMENTS_FILE = 'pretrained_weights.csv'
MEASUREMENT_COLUMNS = ('tag', 'weights_sha256', 'dataset', 'split', 'images', 'batch_size', 'top1', 'top5', 'loss')
SLICE_IMAGES = 1000  # the fixed slice (the first images of the test split) tests re-measure
EVAL_BATCH_SIZE = 250  # fixed: another batch size may round differently
MEASURABLE_DATASETS = ('zalando-datasets/fashion_mnist',)

# the repository's results/, for a checkout installed in editable mode run from any folder
_REPOSITORY_RESULTS = Path(__file__).resolve().parents[2] / 'results'


def sha256_of_file(path: PathLike) -> str:
    """Hex sha256 of a file's bytes (what huggingface_hub names an LFS blob by)."""
    digest = hashlib.sha256()
    with Path(path).open('rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def find_results_dir(results_dir: Optional[PathLike] = None) -> Optional[Path]:
    """The ``results/`` folder to read: ``results_dir`` if given, else ``./results``, else the checkout's.

    Returns ``None`` (after a warning naming the places looked at) when none
    exists, e.g. from a wheel installed outside the repository: callers then
    say "not measured" instead of quoting numbers.
    """
    candidates = [Path(results_dir)] if results_dir is not None else [Path('results'), _REPOSITORY_RESULTS]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    warnings.warn(f'no results/ folder found (looked in {", ".join(str(c.resolve()) for c in candidates)}): '
                  'accuracy numbers cannot be read; pass results_dir / --results-dir', stacklevel=2)
    return None


def load_for_measurement(tag: PretrainedTag, weights: PathLike) -> nn.Module:
    """``tag``'s model with ``weights`` loaded by timm's ``load_pretrained``, exactly as ``pretrained=True`` does."""
    return timm.create_model(tag.name, pretrained=True, pretrained_cfg_overlay=dict(file=str(weights))).eval()


def _test_split(dataset: str, images: Optional[int]):
    if dataset not in MEASURABLE_DATASETS:
        raise ValueError(f'cannot measure weights trained on {dataset!r} here: only {MEASURABLE_DATASETS}')
    from ..data.fashion_mnist import FashionMNIST  # the inputs the fmnist tags were trained on
    return FashionMNIST('test', indices=None if images is None else range(images))


def evaluate_test_split(model: nn.Module, dataset: str, images: Optional[int] = None,
                        progress: bool = False) -> Dict[str, float]:
    """Top-1/top-5 (%) and loss of ``model`` on the test split of ``dataset`` (its first ``images`` images).

    Batches of :data:`EVAL_BATCH_SIZE` in order, scored by the training library's
    ``evaluate``: the same call gives the same number on the same machine.
    """
    from ..train.engine import evaluate
    loader = DataLoader(_test_split(dataset, images), batch_size=EVAL_BATCH_SIZE, shuffle=False)
    with torch.no_grad():
        return evaluate(model, loader, progress=progress)


def measure_weights(tag: PretrainedTag, weights: PathLike,
                    subsets: Sequence[Optional[int]] = (None, SLICE_IMAGES),
                    progress: bool = False) -> List[Dict[str, str]]:
    """One row per subset (``None`` = the whole test split) for ``weights`` as ``tag``'s checkpoint."""
    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f'weights file {weights} does not exist')
    model = load_for_measurement(tag, weights)
    digest = sha256_of_file(weights)
    rows = []
    for images in subsets:
        result = evaluate_test_split(model, tag.dataset, images, progress=progress)
        rows.append(dict(tag=tag.name, weights_sha256=digest, dataset=tag.dataset, split='test',
                         images=str(result['count']), batch_size=str(EVAL_BATCH_SIZE),
                         top1=repr(result['top1']), top5=repr(result['top5']), loss=repr(result['loss'])))
    return rows


def read_measurements(results_dir: Optional[PathLike]) -> List[Dict[str, str]]:
    """The rows of ``results_dir/`` :data:`MEASUREMENTS_FILE` (none if the folder or file is absent)."""
    if results_dir is None or not (Path(results_dir) / MEASUREMENTS_FILE).is_file():
        return []
    with (Path(results_dir) / MEASUREMENTS_FILE).open(newline='') as f:
        return list(csv.DictReader(f))


def _row_key(row: Dict[str, str]):
    return row['tag'], row['weights_sha256'], row['dataset'], row['split'], row['images']


def record_measurements(results_dir: PathLike, rows: Sequence[Dict[str, str]]) -> Path:
    """Add ``rows`` to ``results_dir/`` :data:`MEASUREMENTS_FILE`, replacing rows of the same file and subset.

    Rows of other weights are kept (an older export stays measured); the file is
    written atomically.
    """
    new = {_row_key(r): r for r in rows}
    kept = [r for r in read_measurements(results_dir) if _row_key(r) not in new]
    records = sorted(kept + list(new.values()), key=lambda r: (r['tag'], r['weights_sha256'], -int(r['images'])))
    path = Path(results_dir) / MEASUREMENTS_FILE
    return write_csv(path, records, MEASUREMENT_COLUMNS)


def find_measurement(results_dir: Optional[PathLike], tag_name: str, weights_sha256: str,
                     images: Optional[int] = None) -> Optional[Dict[str, str]]:
    """The row measuring the weights with this sha256 as ``tag_name`` on ``images`` test images
    (``None``: the largest subset measured, i.e. the whole split when it was); ``None`` if there is none."""
    rows = [r for r in read_measurements(results_dir)
            if r['tag'] == tag_name and r['weights_sha256'] == weights_sha256
            and (images is None or int(r['images']) == images)]
    return max(rows, key=lambda r: int(r['images'])) if rows else None

