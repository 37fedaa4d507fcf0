"""Plain DistributedDataParallel, as timm's train.py wraps a model, on 2 processes (gloo, CPU).

timm's train.py builds ``DistributedDataParallel(model, device_ids=[local_rank])``
without ``find_unused_parameters`` and optimises ``criterion(model(x), y)``: a
parameter that loss does not reach fails step 2 ("Expected to have finished
reduction in the prior iteration"). Each configuration below is what the
README's multi-GPU commands pass through ``--model-kwargs``; all run in one pair
of processes, 3 steps each, and must end with identical replicas.
"""
import json
import os
import socket

import pytest
import timm
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from wae_timm.layers.autoencoder import WaveletLikeAutoEncoder
from wae_timm.models.baselines import BASELINE_CHANGES
from wae_timm.train import save_wae

STEPS = 3
STAGE1 = 'STAGE1'  # replaced by the stage-1 weights file in each worker

CONFIGS = {
    'default wae_resnet18': ('wae_resnet18', {}),
    'stage 2 (frozen WAE)': ('wae_resnet18', dict(wae_weights=STAGE1, freeze_wae=True)),
    'stage 3 (aux_loss_weight)': ('wae_resnet18', dict(wae_weights=STAGE1, aux_loss_weight=0.001)),
    **{f'baseline {kind}': (f'{kind}_resnet18', {}) for kind in BASELINE_CHANGES},
    'baseline low_only_wae, stage 3': ('low_only_wae_resnet18', dict(aux_loss_weight=0.001)),
}


def _train_worker(rank: int, world_size: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    stage1 = os.path.join(folder, 'stage1.safetensors')
    results = {}
    for label, (name, kwargs) in CONFIGS.items():
        kwargs = {k: (stage1 if v == STAGE1 else v) for k, v in kwargs.items()}
        torch.manual_seed(0)  # identical replicas at the start, as DDP's broadcast would make them anyway
        model = DistributedDataParallel(timm.create_model(name, num_classes=3, **kwargs))
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
        generator = torch.Generator().manual_seed(100 + rank)  # each rank its own shard
        try:
            for _ in range(STEPS):
                x = torch.randn(4, 3, 32, 32, generator=generator)
                y = torch.randint(0, 3, (4,), generator=generator)
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()
            # the largest difference between this replica and rank 0's, over the trained parameters
            spread = 0.
            for p in model.module.parameters():
                reference = p.detach().clone()
                dist.broadcast(reference, src=0)
                spread = max(spread, (p.detach() - reference).abs().max().item())
            results[label] = dict(ok=True, spread=spread)
        except RuntimeError as err:
            results[label] = dict(ok=False, error=str(err).splitlines()[0])
            break  # a failed collective leaves the group unusable
    with open(os.path.join(folder, f'rank{rank}.json'), 'w') as f:
        json.dump(results, f)
    dist.destroy_process_group()


@pytest.fixture(scope='module')
def ddp_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp('ddp')
    torch.manual_seed(0)
    save_wae(WaveletLikeAutoEncoder(), folder / 'stage1.safetensors')
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    mp.spawn(_train_worker, args=(2, port, str(folder)), nprocs=2, join=True)
    return [json.loads((folder / f'rank{rank}.json').read_text()) for rank in range(2)]


@pytest.mark.parametrize('label', list(CONFIGS))
def test_plain_ddp_trains_three_steps(ddp_results, label):
    for rank, results in enumerate(ddp_results):
        assert label in results, f'rank {rank} never reached {label!r} (an earlier configuration failed)'
        result = results[label]
        assert result['ok'], f'rank {rank}: {result.get("error")}'
        assert result['spread'] < 1e-5, f'rank {rank} drifted from rank 0 by {result["spread"]}'
