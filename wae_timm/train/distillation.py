"""Beyond the paper: knowledge distillation from the full-resolution backbone into a WAE model.

The teacher (e.g. ``resnet50`` at 224 px with its pretrained timm weights) is
built by timm's own :class:`timm.task.DistillationTeacher`, as timm's train.py
does for ``--kd-model-name``; inputs are re-normalised for it when its mean/std
differ from the student's. The loss is the paper's (:func:`paper_loss`) plus the
temperature-scaled KL divergence between the teacher's and the student's final
scores, with timm's weighting rules for ``task_loss_weight``/``distill_loss_weight``.
"""
from typing import Optional, Tuple

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.task import DistillationTeacher

from ..models.checkpoint_files import load_weights_file
from .distributed import unwrap
from .losses import LossFn, model_scores, paper_loss_from_output
from ..models.wae import WAEOutput

__all__ = ['create_teacher', 'distillation_loss_fn', 'resolve_distillation_weights']


def create_teacher(
        model_name: str,
        student: nn.Module,
        pretrained_path: Optional[str] = None,
        device=None,
):
    """timm's ``DistillationTeacher``: ``model_name`` with pretrained weights (hub, or ``pretrained_path``),
    the student's number of classes and input channels, in eval mode.

    A ``pretrained_path`` that is missing, unreadable, or of another architecture or number of
    classes raises the errors of :mod:`wae_timm.models.checkpoint_files`, naming the file.
    """
    inner = unwrap(student)
    if pretrained_path:
        model = timm.create_model(model_name, num_classes=inner.num_classes, in_chans=inner.in_chans)
        load_weights_file(model, pretrained_path, f'--kd-pretrained-path (teacher {model_name})')
        teacher = DistillationTeacher(model.to(device), device=device)
    else:
        teacher = DistillationTeacher(model_name, num_classes=inner.num_classes, in_chans=inner.in_chans,
                                      device=device)
    teacher.requires_grad_(False)
    return teacher


def resolve_distillation_weights(
        task_loss_weight: Optional[float], distill_loss_weight: Optional[float]) -> Tuple[float, float]:
    """timm's rules: both given -> as given; only the task weight -> the distillation gets
    ``1 - task``; only the distillation weight -> task 1; neither -> 1 and 1."""
    if task_loss_weight is not None and distill_loss_weight is None:
        return task_loss_weight, 1. - task_loss_weight
    return (1. if task_loss_weight is None else task_loss_weight,
            1. if distill_loss_weight is None else distill_loss_weight)


def distillation_loss_fn(
        teacher,
        student_mean: Tuple[float, ...],
        student_std: Tuple[float, ...],
        temperature: float = 4.0,
        task_loss_weight: Optional[float] = None,
        distill_loss_weight: Optional[float] = None,
        aux_loss_weight: Optional[float] = None,
        criterion=None,
) -> LossFn:
    """``loss_fn(model, x, y)``: ``w_task * paper_loss + w_kd * T^2 * KL(teacher || student)``.

    The student's distilled score is its inference score (``(s_L + s_c) / 2`` for
    a WAE model); ``x`` is normalised with ``student_mean``/``student_std``.
    """
    task_weight, distill_weight = resolve_distillation_weights(task_loss_weight, distill_loss_weight)
    mean = torch.tensor(student_mean).view(1, -1, 1, 1)
    std = torch.tensor(student_std).view(1, -1, 1, 1)

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        inner = unwrap(model)
        gamma = float(getattr(inner, 'aux_loss_weight', 0.)) if aux_loss_weight is None else aux_loss_weight
        out = model_scores(model, x)
        task_loss, metrics = paper_loss_from_output(out, x, y, gamma, criterion, getattr(inner, 'energy_weight', 1.))
        student_logits = out.logits if isinstance(out, WAEOutput) else out
        with torch.no_grad():
            teacher_x = teacher.normalize_input(x, mean.to(x), std.to(x))
            teacher_logits = teacher(teacher_x)
        kd = F.kl_div(F.log_softmax(student_logits / temperature, dim=-1),
                      F.log_softmax(teacher_logits.float() / temperature, dim=-1),
                      reduction='batchmean', log_target=True) * temperature ** 2
        loss = task_weight * task_loss + distill_weight * kd
        metrics.update(task_loss=metrics['loss'], kd=kd.item(), loss=loss.item())
        return loss, metrics

    return loss_fn
