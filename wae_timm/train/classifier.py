"""Stages 2 and 3 with the paper's exact loss: one run of a classifier (WAE model or timm baseline).

:func:`train_classifier` builds everything from timm's parts (``create_model``,
``create_dataset``/``create_transform``, ``create_optimizer_v2``,
``create_scheduler_v2``, ``update_summary``) and the project's loop, loss and
checkpoints; ``wae-timm train`` is its command line. It runs on one process or
under ``torchrun`` (DDP), and ``resume`` continues a killed run from its last
checkpoint (every ``checkpoint_interval`` steps and every epoch).

Outputs in ``output``: ``last.pth.tar`` (resumable), ``summary.csv`` (per epoch),
``model.safetensors`` (the final weights; loads with ``timm.create_model(...,
checkpoint_path=...)``).
"""
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import timm
import torch
import torch.nn as nn
from safetensors.torch import save_file
from timm.data import create_transform, resolve_data_config
from timm.loss import LabelSmoothingCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import random_seed, update_summary
from torch.utils.data import Dataset

from ..data import FASHION_MNIST_CLASSES, FashionMNIST, create_eval_loader, create_image_dataset, \
    create_train_loader, dataset_class_to_idx, paper_crop_transform
from ..models.checkpoint_files import load_weights_file
from ..models.wae import WAEWrapper
from ..files import atomic_write, remove_stale_temporaries
from .checkpoint import LAST_CHECKPOINT, SUMMARY_CSV, Checkpointer, check_fresh_output, clear_run, read_checkpoint, \
    read_train_state, write_run_config
from .distillation import create_teacher, distillation_loss_fn
from .distributed import DistributedContext, init_distributed, wrap_ddp
from .engine import fit
from .losses import paper_loss

__all__ = ['ClassifierTrainConfig', 'train_classifier', 'stage_model_kwargs', 'FASHION_MNIST']

_logger = logging.getLogger(__name__)

FASHION_MNIST = 'fashion_mnist'
PAPER_GAMMA = 0.001


@dataclass
class ClassifierTrainConfig:
    """Every setting of one run; field names are timm train.py's flag names (``--batch-size`` -> batch_size)."""
    output: str
    model: str = 'wae_resnet50'
    model_kwargs: Dict[str, Any] = field(default_factory=dict)
    stage: Optional[int] = None  # 2: freeze the WAE; 3: gamma = 0.001 (both only as defaults of model_kwargs)
    # data
    data_dir: Optional[str] = None
    dataset: str = ''  # '' image folder, 'fashion_mnist', or a timm dataset type
    train_split: str = 'train'
    val_split: str = 'validation'
    train_samples: Optional[int] = None  # use only the first N training samples (quick runs)
    val_samples: Optional[int] = None
    num_classes: Optional[int] = None
    img_size: Optional[int] = None
    aug: str = 'paper'  # 'paper': resize to img_size*256/224, random crop, flip; 'timm': create_transform
    hflip: float = 0.5
    workers: int = 2
    # model
    pretrained: bool = False
    pretrained_path: Optional[str] = None
    initial_checkpoint: str = ''
    drop: float = 0.
    drop_path: Optional[float] = None
    # optimisation (paper: SGD, momentum 0.9, wd 5e-4, batch 256, lr 0.1 ResNet-50 / 0.01 VGG, /10 on plateau)
    epochs: int = 90
    batch_size: int = 256
    validation_batch_size: Optional[int] = None
    opt: str = 'sgd'
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    clip_grad: Optional[float] = None
    sched: str = 'plateau'
    decay_rate: float = 0.1
    decay_epochs: float = 30
    decay_milestones: Sequence[int] = (30, 60)
    patience_epochs: int = 5
    warmup_epochs: int = 0
    warmup_lr: float = 1e-5
    min_lr: float = 0.
    smoothing: float = 0.
    aux_loss_weight: Optional[float] = None  # gamma; None: the model's own
    eval_metric: str = 'top1'
    # distillation (beyond the paper)
    kd_model_name: Optional[str] = None
    kd_pretrained_path: Optional[str] = None
    kd_temperature: float = 4.0
    task_loss_weight: Optional[float] = None
    distill_loss_weight: Optional[float] = None
    # run
    seed: int = 42
    device: Optional[str] = None
    amp: bool = False
    amp_dtype: str = 'bfloat16'
    checkpoint_interval: int = 500
    resume: bool = False
    overwrite: bool = False
    max_updates: Optional[int] = None
    progress: bool = True


def stage_model_kwargs(stage: Optional[int], model_kwargs: Dict[str, Any], initial_checkpoint: str = '') -> Dict[str, Any]:
    """``model_kwargs`` with the paper's stage defaults filled in (explicit values win).

    Stage 2 keeps the stage-1 WAE (``wae_weights``) fixed; stage 3 unfreezes it
    and adds ``gamma * L_t`` with gamma = 0.001, usually from a stage-2 checkpoint.
    """
    kwargs = dict(model_kwargs)
    if stage is None:
        return kwargs
    if stage == 2:
        if not kwargs.get('wae_weights') and not initial_checkpoint:
            raise ValueError('stage 2 trains on a stage-1 WAE: give model_kwargs wae_weights=<stage1.safetensors> '
                             '(or an initial checkpoint)')
        kwargs.setdefault('freeze_wae', True)
    elif stage == 3:
        kwargs.setdefault('aux_loss_weight', PAPER_GAMMA)
    else:
        raise ValueError(f'stage must be 2 or 3 (stage 1 is wae-timm train-wae), got {stage}')
    return kwargs


def _create_model(cfg: ClassifierTrainConfig, num_classes: int, in_chans: int) -> nn.Module:
    factory_kwargs = {}
    if cfg.pretrained_path:
        # timm's --pretrained-path: weights from a local file, head re-initialised if it differs
        factory_kwargs['pretrained_cfg_overlay'] = dict(file=cfg.pretrained_path, num_classes=-1)
    model = timm.create_model(
        cfg.model, pretrained=cfg.pretrained or bool(cfg.pretrained_path), in_chans=in_chans,
        num_classes=num_classes, drop_rate=cfg.drop, drop_path_rate=cfg.drop_path, **factory_kwargs,
        **stage_model_kwargs(cfg.stage, cfg.model_kwargs, cfg.initial_checkpoint))
    if cfg.initial_checkpoint:
        # loaded here rather than by create_model(checkpoint_path=...), so that the errors of any model name the file
        load_weights_file(model, cfg.initial_checkpoint, '--initial-checkpoint')
    return model


def _subset(dataset: Dataset, count: Optional[int]) -> Dataset:
    if count is None or count >= len(dataset):
        return dataset
    return torch.utils.data.Subset(dataset, range(count))


def _create_datasets(cfg: ClassifierTrainConfig) -> Tuple[Dataset, Dataset]:
    """Training and evaluation sets; image folders get their transforms later (see :func:`_set_transforms`)."""
    if cfg.dataset == FASHION_MNIST:
        return FashionMNIST('train', hflip=cfg.hflip > 0), FashionMNIST('test')
    if not cfg.data_dir:
        raise ValueError('give data_dir (an image folder with train/validation splits) or dataset="fashion_mnist"')
    try:
        train = create_image_dataset(cfg.data_dir, None, cfg.dataset, cfg.train_split, require_split=True)
    except FileNotFoundError as err:
        raise FileNotFoundError(f'train_split (--train-split) {cfg.train_split!r}: {err}') from err
    try:
        # one class map, the training split's: a split with other classes would be labelled with the wrong indices
        evaluation = create_image_dataset(cfg.data_dir, None, cfg.dataset, cfg.val_split, is_training=False,
                                          class_to_idx=dataset_class_to_idx(train), require_split=True)
    except FileNotFoundError as err:
        raise FileNotFoundError(f'val_split (--val-split) {cfg.val_split!r}: {err}') from err
    return train, evaluation


def _set_transforms(cfg: ClassifierTrainConfig, train: Dataset, evaluation: Dataset, data_config: Dict[str, Any]):
    size = data_config['input_size'][-1]
    if cfg.aug == 'paper':
        train.transform = paper_crop_transform(size, round(size * 256 / 224), cfg.hflip > 0, data_config['mean'],
                                               data_config['std'])
    elif cfg.aug == 'timm':
        train.transform = create_transform(**data_config, is_training=True, hflip=cfg.hflip)
    else:
        raise ValueError(f"aug must be 'paper' or 'timm', got {cfg.aug!r}")
    evaluation.transform = create_transform(**data_config, is_training=False)


def _check_settings(cfg: ClassifierTrainConfig) -> None:
    """Refuse values no run can use, before anything is read or written."""
    at_least_one = dict(epochs=cfg.epochs, batch_size=cfg.batch_size, validation_batch_size=cfg.validation_batch_size,
                        train_samples=cfg.train_samples, val_samples=cfg.val_samples, num_classes=cfg.num_classes)
    for name, value in at_least_one.items():
        if value is not None and value < 1:
            hint = ' (omit it to evaluate on the whole split)' if name == 'val_samples' else ''
            raise ValueError(f'{name} (--{name.replace("_", "-")}) must be at least 1, got {value}{hint}')


def _check_num_classes(cfg: ClassifierTrainConfig, data_classes: int) -> None:
    if cfg.num_classes is not None and cfg.num_classes < data_classes:
        raise ValueError(f'num_classes (--num-classes) {cfg.num_classes} is fewer than the {data_classes} classes of '
                         f'the data (labels 0..{data_classes - 1}): give at least {data_classes}, or leave it out')


# settings a resumed run may change: they move where and how fast it runs, not what it computes
RESUMABLE_CHANGES = frozenset({'resume', 'overwrite', 'output', 'workers', 'device', 'progress',
                               'checkpoint_interval', 'max_updates', 'validation_batch_size'})


def _check_resume_settings(cfg: ClassifierTrainConfig, checkpoint: Path) -> None:
    """Refuse to resume with settings that differ from those the run was started with (except RESUMABLE_CHANGES).

    A changed batch size, number of epochs, schedule, model or data would silently
    continue the old run's optimizer and schedule with other meanings.
    """
    saved = read_checkpoint(checkpoint).get('config')
    if saved is None:  # a checkpoint written without its settings: nothing to compare
        return
    changed = [f'--{key.replace("_", "-")} {saved.get(key)!r} -> {value!r}' for key, value in _plain_config(cfg).items()
               if key not in RESUMABLE_CHANGES and saved.get(key) != value]
    if changed:
        raise ValueError(f'--resume continues the run in {checkpoint.parent} as it was started, but these settings '
                         f'differ from its checkpoint: {", ".join(changed)}. Resume with the run\'s settings (see '
                         f'{checkpoint.parent / "config.json"}), or start a new run (another --output, or --overwrite)')


def _plain_config(cfg: ClassifierTrainConfig) -> Dict[str, Any]:
    """The config as JSON values (what ``torch.load(weights_only=True)`` accepts)."""
    return json.loads(json.dumps(asdict(cfg), default=str))


def train_classifier(cfg: ClassifierTrainConfig, context: Optional[DistributedContext] = None) -> Dict[str, Any]:
    """Run (or resume) one training run; returns ``dict(model=..., history=[per-epoch metrics], output=...)``."""

    output = Path(cfg.output)
    final = output / 'model.safetensors'
    context = context or init_distributed(cfg.device)
    # --overwrite removes the old run only once everything below has been checked (see clear_run)
    _check_settings(cfg)
    check_fresh_output(cfg.output, cfg.resume, cfg.overwrite, final_output=final, primary=context.is_primary)
    if cfg.resume:
        _check_resume_settings(cfg, output / LAST_CHECKPOINT)
    random_seed(cfg.seed, context.rank)

    train_set, eval_set = _create_datasets(cfg)
    class_to_idx = {c: i for i, c in enumerate(FASHION_MNIST_CLASSES)} if cfg.dataset == FASHION_MNIST \
        else dataset_class_to_idx(train_set)
    if class_to_idx is None:
        if not cfg.num_classes:
            raise ValueError(f'dataset {cfg.dataset!r} has no class map: give num_classes (--num-classes)')
        num_classes = cfg.num_classes
    else:
        _check_num_classes(cfg, len(class_to_idx))
        num_classes = cfg.num_classes or len(class_to_idx)
    model = _create_model(cfg, num_classes, in_chans=3)
    if cfg.dataset == FASHION_MNIST:
        input_mean, input_std = (train_set.mean,) * 3, (train_set.std,) * 3
    else:
        overrides = {'img_size': cfg.img_size} if cfg.img_size else {}
        data_config = resolve_data_config(overrides, model=model)
        _set_transforms(cfg, train_set, eval_set, data_config)
        input_mean, input_std = data_config['mean'], data_config['std']
    train_set, eval_set = _subset(train_set, cfg.train_samples), _subset(eval_set, cfg.val_samples)

    gamma = float(getattr(model, 'aux_loss_weight', 0.)) if cfg.aux_loss_weight is None else cfg.aux_loss_weight
    if isinstance(model, WAEWrapper) and gamma == 0 and getattr(model.wae, 'has_decoder', False):
        # only L_t trains the decoder; without it DDP would wait for gradients that never come
        model.wae.decode_low.requires_grad_(False)
        model.wae.decode_high.requires_grad_(False)
    model.to(context.device)
    optimizer = create_optimizer_v2(model, opt=cfg.opt, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                    momentum=cfg.momentum)
    train_loader = create_train_loader(train_set, cfg.batch_size, seed=cfg.seed, workers=cfg.workers,
                                       pin_memory=context.device.type == 'cuda')
    eval_loader = create_eval_loader(eval_set, cfg.validation_batch_size or cfg.batch_size, workers=cfg.workers)
    scheduler, _ = create_scheduler_v2(
        optimizer, sched=cfg.sched, num_epochs=cfg.epochs, decay_epochs=cfg.decay_epochs,
        decay_milestones=list(cfg.decay_milestones), decay_rate=cfg.decay_rate, patience_epochs=cfg.patience_epochs,
        warmup_epochs=cfg.warmup_epochs, warmup_lr=cfg.warmup_lr, min_lr=cfg.min_lr,
        plateau_mode='min' if cfg.eval_metric == 'loss' else 'max', updates_per_epoch=len(train_loader))

    criterion = None
    if cfg.smoothing:
        criterion = LabelSmoothingCrossEntropy(smoothing=cfg.smoothing)
    if cfg.kd_model_name:
        teacher = create_teacher(cfg.kd_model_name, model, cfg.kd_pretrained_path, context.device)
        # the teacher sees the images re-normalised from what this run feeds the student
        loss_fn = distillation_loss_fn(teacher, input_mean, input_std, cfg.kd_temperature, cfg.task_loss_weight,
                                       cfg.distill_loss_weight, gamma, criterion)
    else:
        def loss_fn(m, x, y):
            return paper_loss(m, x, y, aux_loss_weight=gamma, criterion=criterion)

    amp_dtype = None
    loss_scaler = None
    if cfg.amp:
        amp_dtype = {'bfloat16': torch.bfloat16, 'float16': torch.float16}[cfg.amp_dtype]
        if amp_dtype == torch.float16 and context.device.type == 'cuda':
            loss_scaler = torch.amp.GradScaler('cuda')  # exact here: L_t is part of the scaled loss

    checkpointer = Checkpointer(output, model, optimizer, scheduler, cfg.checkpoint_interval, _plain_config(cfg))
    summary = output / SUMMARY_CSV
    if context.is_primary:
        if cfg.overwrite and not cfg.resume:
            clear_run(output)  # last: data, model, kwargs, optimizer and output were all accepted
        output.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(final)  # of a process killed while saving the final weights
        write_run_config(output, _plain_config(cfg))
        _logger.info('%s: %.2fM parameters, %d classes, gamma=%g; %d train / %d eval samples, %d steps per epoch '
                     'on %d process(es)', cfg.model, sum(p.numel() for p in model.parameters()) / 1e6, num_classes,
                     gamma, len(train_set), len(eval_set), len(train_loader), context.world_size)

    def log_epoch(epoch: int, metrics: Dict[str, float]) -> None:
        if not context.is_primary:
            return
        train_metrics = {k: v for k, v in metrics.items() if not k.startswith('eval_') and k != 'epoch'}
        eval_metrics = {k[len('eval_'):]: v for k, v in metrics.items() if k.startswith('eval_')}
        _logger.info('epoch %d: train loss %.4f, eval top1 %.2f top5 %.2f loss %.4f, lr %.3g', epoch,
                     train_metrics['loss'], eval_metrics['top1'], eval_metrics['top5'], eval_metrics['loss'],
                     train_metrics['lr'])
        update_summary(epoch, train_metrics, eval_metrics, str(summary), write_header=not summary.exists())

    history = fit(
        wrap_ddp(model, context), train_loader, optimizer, epochs=cfg.epochs, loss_fn=loss_fn,
        lr_scheduler=scheduler, checkpointer=checkpointer, resume=cfg.resume, eval_loader=eval_loader,
        eval_metric=cfg.eval_metric, device=context.device, max_updates=cfg.max_updates,
        on_epoch_end=log_epoch, clip_grad=cfg.clip_grad, amp_dtype=amp_dtype, loss_scaler=loss_scaler,
        progress=cfg.progress, seed=cfg.seed)

    if context.is_primary and read_train_state(output).epoch >= cfg.epochs:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        atomic_write(final, lambda tmp: save_file(state, tmp, metadata={'format': 'pt', 'model': cfg.model}))
        _logger.info('saved the final weights to %s', final)
    return dict(model=model, history=history, output=output)
