"""One process or many: ``torchrun`` environments, DDP wrapping and unwrapping, the primary process.

Nothing here depends on the model class: a model is any ``nn.Module``, and a
WAE model is recognised by its ``forward_train``.

Under ``torchrun --nproc_per_node N`` each process trains on its share of every
epoch (see :class:`ResumableSampler`); gradients are averaged by
DistributedDataParallel over NCCL on GPUs, gloo on CPUs.
"""
import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ['DistributedContext', 'TrainingForward', 'unwrap', 'init_distributed', 'wrap_ddp', 'cleanup_distributed']


class TrainingForward(nn.Module):
    """``forward(x)`` runs ``model.forward_train(x)`` (a :class:`WAEOutput` for a WAEWrapper).

    DistributedDataParallel only synchronises gradients of the forward it
    wraps; wrap this module, not the model, when training with
    :func:`paper_loss` under DDP. Its state dict keys start with ``model.``:
    save ``unwrap(module).state_dict()``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        forward_train = getattr(self.model, 'forward_train', None)
        return forward_train(x) if forward_train is not None else self.model(x)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside ``DistributedDataParallel``, ``torch.compile`` and :class:`TrainingForward` shells."""
    while True:
        if hasattr(model, 'module'):  # DistributedDataParallel / DataParallel
            model = model.module
        elif hasattr(model, '_orig_mod'):  # torch.compile
            model = model._orig_mod
        elif isinstance(model, TrainingForward):
            model = model.model
        else:
            return model


@dataclass
class DistributedContext:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_primary(self) -> bool:
        return self.rank == 0


def init_distributed(device: Optional[str] = None) -> DistributedContext:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE > 1``), else a single process.

    ``device``: 'cpu', 'cuda' (each process takes ``cuda:LOCAL_RANK``) or None for
    CUDA when available.
    """
    if device is None:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    on_cuda = torch.device(device).type == 'cuda'
    if on_cuda:
        torch_device = torch.device('cuda', local_rank if world_size > 1 else (torch.device(device).index or 0))
        torch.cuda.set_device(torch_device)
    else:
        torch_device = torch.device(device)
    if world_size <= 1:
        return DistributedContext(torch_device)
    if not dist.is_initialized():
        dist.init_process_group(backend='nccl' if on_cuda else 'gloo')
    return DistributedContext(torch_device, dist.get_rank(), dist.get_world_size(), local_rank)


def wrap_ddp(model: nn.Module, context: DistributedContext, training_forward: bool = True) -> nn.Module:
    """``model`` itself on one process; otherwise DDP around it.

    With ``training_forward`` the DDP module wraps :class:`TrainingForward`, so
    :func:`paper_loss` gets every score through DDP's synchronised forward.
    """
    if not context.distributed:
        return model
    inner = TrainingForward(model) if training_forward else model
    device_ids = [context.device.index] if context.device.type == 'cuda' else None
    return DistributedDataParallel(inner, device_ids=device_ids)


def cleanup_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
