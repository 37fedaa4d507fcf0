"""How well a stage-1 WAE keeps its reconstruction through stage 3 (a check for weights before they ship).

Stage 3 (the paper's Eq. 9) trains the WAE jointly with the classifier, ``L = L_c + gamma L_t``
with gamma = 0.001 and SGD at lr 1e-4. The classifier normalises ``I_H`` by a BatchNorm, which
divides by ``I_H``'s spread, so the cross-entropy's gradient on the encoder grows as ``I_H``
shrinks, and ``D_H`` turns what the encoder's step changes into reconstruction error: stage-1
weights with a tiny ``I_H`` can lose their reconstruction in a few steps, which gamma = 0.001 does
not pull back.

:func:`stage3_transform_drift` measures that with the project's own trainer
(:func:`wae_timm.train.classifier.train_classifier`), as a user runs it but small: a
``wae_resnet18`` on crops of the training photographs (never the held-out ones; 32 px by default,
the paper's 224 in ``tools/stage3_drift.py``) with batch 2, stage 2
(the WAE frozen) and then stage 3 from its checkpoint. It returns the epoch means of ``L_t`` in
stage 3 next to those of the same run at lr 0 (the same crops, the WAE untouched): their ratio
is how much stage 3 degraded the WAE.
"""
import math
import shutil
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from ..data.photographs import split_photographs, write_photograph_folder
from ..train.classifier import ClassifierTrainConfig, train_classifier

__all__ = ['Stage3Probe', 'stage3_transform_drift', 'ratio_summary']


@dataclass(frozen=True)
class Stage3Probe:
    """The small stage-2-then-3 run :func:`stage3_transform_drift` makes.

    ``stage2_epochs = 0`` starts stage 3 from an untrained classifier (its gradient is then
    largest: the harshest case).
    """
    model: str = 'wae_resnet18'
    img_size: int = 32
    photo_size: Sequence[int] = (48, 36)
    batch_size: int = 2
    stage2_epochs: int = 4
    stage2_lr: float = 0.01  # the paper's stage-2 lr (VGG16)
    stage3_epochs: int = 2
    stage3_lr: float = 1e-4  # the paper's stage-3 lr
    seed: int = 1


def _epoch_transform(history: List[Dict[str, float]]) -> List[float]:
    return [float(epoch['transform']) for epoch in history]


def stage3_transform_drift(wae_weights: str, probe: Stage3Probe = Stage3Probe(),
                           photographs: Optional[Sequence[Path]] = None,
                           workdir: Optional[Union[str, Path]] = None) -> Dict[str, List[float]]:
    """Epoch means of ``L_t`` in a small stage 3 from ``wae_weights`` (a shipped name or a .safetensors path).

    Returns ``dict(stage3=[...], untouched=[...])``: ``L_t`` per stage-3 epoch at
    ``probe.stage3_lr``, and the same run at lr 0. A value is ``inf`` where ``L_t`` overflowed.
    ``photographs`` default to the training photographs of :func:`split_photographs`. The
    runs are written under ``workdir`` (a temporary folder, removed afterwards, by default).
    """
    photographs = list(photographs) if photographs is not None else split_photographs()[0]
    own_workdir = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix='stage3_drift_') if own_workdir else workdir)
    try:
        data = write_photograph_folder(workdir / 'data', photographs, probe.photo_size)
        common = dict(model=probe.model, model_kwargs=dict(wae_weights=wae_weights), data_dir=str(data),
                      img_size=probe.img_size, batch_size=probe.batch_size, workers=0, progress=False,
                      device='cpu', seed=probe.seed, sched='cosine', checkpoint_interval=10 ** 6)
        initial = ''
        if probe.stage2_epochs:
            train_classifier(ClassifierTrainConfig(output=str(workdir / 'stage2'), stage=2,
                                                   epochs=probe.stage2_epochs, lr=probe.stage2_lr, **common))
            initial = str(workdir / 'stage2' / 'model.safetensors')
        runs = {}
        for name, lr in (('stage3', probe.stage3_lr), ('untouched', 0.)):
            try:
                runs[name] = _epoch_transform(train_classifier(ClassifierTrainConfig(
                    output=str(workdir / name), stage=3, epochs=probe.stage3_epochs, lr=lr,
                    initial_checkpoint=initial, **common))['history'])
            except FloatingPointError:  # the trainer stops on a non-finite loss
                runs[name] = [math.inf] * probe.stage3_epochs
        return runs
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def ratio_summary(rows: Sequence[Dict[str, Any]],
                  keys: Sequence[str] = ('weights', 'img_size', 'stage2_epochs', 'stage3_lr')) -> List[Dict[str, Any]]:
    """Rows of one run each (with a ``ratio``) grouped by ``keys``: runs, the median ratio and the overflows."""
    groups: Dict[tuple, List[float]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(float(row['ratio']))
    return [dict(zip(keys, key), runs=len(ratios), median_ratio=statistics.median(ratios),
                 overflows=sum(not math.isfinite(r) for r in ratios)) for key, ratios in groups.items()]
