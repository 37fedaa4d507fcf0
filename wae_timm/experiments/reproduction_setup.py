"""What the Fashion-MNIST reproduction compares, and with which settings.

Every row is a method of the paper's comparison
(:data:`wae_timm.models.comparison.COMPARISON`) around one backbone (ResNet-18
by default), trained with the same optimizer, schedule, batches and number of
epochs. The WAE method has several rows, one per training variant:

==================  ===================  ===========================================================  ==========
key                 method               training                                                     paper
==================  ===================  ===========================================================  ==========
backbone            backbone @224        the backbone on the 32x32 image                              Tab. 2
resize              I_R                  the backbone on the image resized to 16x16                   Tab. 3
wavelet_ca          cA                   CDF 9/7 DWT, the backbone on cA only                         Tab. 3
wavelet             Wavelet+CNN          CDF 9/7 DWT, cA + (cH, cV, cD) on the 1/4-width copy         Tab. 2
decomposition       Decomposition+CNN    WAE encoder trained by the classification loss only          Tab. 2
wae_low             I_L only             stage-1 WAE (frozen), backbone on I_L only                   Tab. 3
wae_stage2          WAE                  stage-1 WAE (frozen), I_L + I_H (paper stage 2)              Tab. 4
wae_stage3          WAE                  wae_stage2 fine-tuned jointly, + gamma * L_t                 Tab. 2-4
wae_stage2_longer   WAE                  wae_stage2 trained as long again, WAE still frozen           control
==================  ===================  ===========================================================  ==========

The last row is not in the paper: stage 3 trains ``wae_stage2`` for extra
epochs, and the control trains it just as long without unfreezing the WAE or
adding ``L_t``, so Table 4's difference can be told apart from "more training".
"""
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from .noise import NOISE_VARIANCES
from ..models.comparison import Method, comparison_method

__all__ = ['ReproductionConfig', 'RowSpec', 'ROWS', 'SWEEP_ROWS', 'GRID_ROWS', 'NUM_CLASSES', 'INPUT_SIZE',
           'SWEEP_RESOLUTIONS']

NUM_CLASSES = 10
INPUT_SIZE = (3, 32, 32)


@dataclass
class ReproductionConfig:
    """Every choice of a run; written into the markdown report.

    ``lr`` is the classifiers' SGD learning rate (the paper's 0.1 for ResNet-50 at
    batch 256, halved for batch 128), cosine-annealed to 0 over the run after a
    linear warm-up. Stage 1 uses Adam (``wae_lr``): the paper's SGD at lr 1e-6 is
    tuned for millions of steps and does not move the WAE in a budget of a few
    hundred. ``finetune_lr`` is stage 3's (and the control's) starting lr.
    """
    backbone: str = 'resnet18'
    backbone_kwargs: Dict[str, Any] = field(default_factory=dict)  # e.g. narrower ResNet channels
    epochs: int = 1
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_fraction: float = 0.05
    wae_epochs: int = 1
    wae_batch_size: int = 32
    wae_lr: float = 1e-3
    finetune_lr: float = 0.005
    finetune_epochs: Optional[int] = None  # epochs of the 'continue' rows (stage 3, control); None: ``epochs``
    gamma: float = 0.001
    budget_minutes: float = 60.
    train_images: Optional[int] = None  # None: as many as the budget allows (at most 60000)
    test_images: Optional[int] = None  # None: the whole 10k test split
    noise_variances: Tuple[float, ...] = NOISE_VARIANCES
    noise_clip: bool = False
    latency_batch: int = 64
    latency_repeats: int = 10
    calibration_batches: int = 2
    seed: int = 0
    rows: Optional[Tuple[str, ...]] = None  # None: every row of ROWS


@dataclass(frozen=True)
class RowSpec:
    """One row of the comparison: a method of :data:`~wae_timm.models.comparison.COMPARISON`, trained one way.

    ``method`` is the key of the comparison method; ``extra_args`` are
    :class:`~wae_timm.models.wae.WAEWrapper` arguments this row adds to the method's
    changes. ``stage``: 'scratch' (every weight trained), 'frozen_wae' (stage-1
    WAE loaded and kept fixed: the paper's stage 2), or 'continue' (starts from the
    trained ``parent`` row; ``unfreeze_wae`` and ``gamma`` make it the paper's stage 3).
    """
    key: str
    label: str
    method: str
    extra_args: Dict[str, Any] = field(default_factory=dict)
    stage: str = 'scratch'
    parent: Optional[str] = None
    unfreeze_wae: bool = False
    use_gamma: bool = False
    noise: bool = False
    resolution: Optional[int] = None

    @property
    def comparison_method(self) -> Method:
        return comparison_method(self.method)

    @property
    def wrapper_args(self) -> Optional[Dict[str, Any]]:
        """The :class:`~wae_timm.models.wae.WAEWrapper` arguments of the row; ``None``: the plain timm backbone."""
        changes = self.comparison_method.wrapper_changes
        return None if changes is None else {**changes, **self.extra_args}


ROWS: Tuple[RowSpec, ...] = (
    RowSpec('backbone', 'backbone @32 (full resolution)', 'backbone', noise=True),
    RowSpec('resize', 'backbone on I_R @16', 'half_res'),
    RowSpec('wavelet_ca', 'Wavelet+CNN, cA only', 'ca_only_wavelet'),
    RowSpec('wavelet', 'Wavelet+CNN, cA + details', 'wavelet_cnn'),
    RowSpec('decomposition', 'Decomposition+CNN', 'decomposition_cnn'),
    RowSpec('wae_low', 'WAE, I_L only', 'low_only_wae', stage='frozen_wae'),
    # with the (frozen) stage-1 decoder: wae_stage3 continues from this model and computes L_t with it
    RowSpec('wae_stage2', 'WAE, I_L + I_H, w/o stage 3', 'wae', dict(with_decoder=True), stage='frozen_wae'),
    RowSpec('wae_stage3', 'WAE, I_L + I_H, with stage 3 (ours)', 'wae', stage='continue', parent='wae_stage2',
            unfreeze_wae=True, use_gamma=True, noise=True),
    RowSpec('wae_stage2_longer', 'WAE, I_L + I_H, stage 2 continued (control)', 'wae', stage='continue',
            parent='wae_stage2'),
)

# The equal-cost sweep: the backbone itself at input resolutions that span the WAE's cost,
# 32 (full), 24 and 20 (near the WAE's measured cost) and 16 (= I_R, half resolution).
SWEEP_RESOLUTIONS: Tuple[int, ...] = (32, 24, 20, 16)
SWEEP_ROWS: Tuple[RowSpec, ...] = tuple(
    RowSpec(f'backbone_{r}', f'backbone @{r}' + (' (= I_R)' if r == INPUT_SIZE[1] // 2 else ''), 'backbone',
            resolution=r, noise=r == INPUT_SIZE[1])
    for r in SWEEP_RESOLUTIONS)

# The rows of the seeded equal-cost grid (wae_timm.experiments.equal_cost): the sweep, then every
# method of the comparison; the WAE rows first, so the shipped stage-3 checkpoint of a seed comes early.
GRID_ROWS: Tuple[RowSpec, ...] = tuple(
    r for r in ROWS if r.key in ('wae_stage2', 'wae_stage3', 'wae_stage2_longer')) + SWEEP_ROWS + tuple(
    r for r in ROWS if r.key in ('wavelet_ca', 'wavelet', 'decomposition', 'wae_low'))
