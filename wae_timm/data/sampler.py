"""Reproducible training data: an epoch order that can start part-way through, and per-sample augmentation seeds.

Together they make a resumed run read exactly what the interrupted one would
have: :class:`ResumableSampler` gives the order (and where to start), and
:class:`SeededSamples` draws each sample's random augmentation from
``(seed, epoch, index)`` instead of the process's global random state, which
depends on how many samples, workers and restarts came before.
"""
import random
from typing import Any, Iterator, Optional, Tuple, Union

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler

__all__ = ['ResumableSampler', 'SeededSamples', 'sample_seed']


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (also for one process) that can skip the first samples of an epoch.

    The order of epoch ``e`` depends only on ``seed + e``, so a resumed run that
    calls ``set_epoch(e)`` and ``set_start(n)`` yields exactly the samples the
    killed run had not reached. Works without an initialised process group.

    Args:
        with_epoch: yield ``(index, epoch)`` pairs instead of indices, for a
            :class:`SeededSamples` dataset (the epoch reaches it even in persistent workers).
    """

    def __init__(
            self,
            dataset: Dataset,
            shuffle: bool = True,
            seed: int = 0,
            drop_last: bool = False,
            num_replicas: Optional[int] = None,
            rank: Optional[int] = None,
            with_epoch: bool = False,
    ) -> None:
        if num_replicas is None:
            num_replicas = dist.get_world_size() if dist.is_initialized() else 1
        if rank is None:
            rank = dist.get_rank() if dist.is_initialized() else 0
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.start = 0
        self.with_epoch = with_epoch

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` samples of this process's share of the current epoch."""
        self.start = start

    def __iter__(self) -> Iterator[Union[int, Tuple[int, int]]]:
        indices = list(super().__iter__())[self.start:]
        if self.with_epoch:
            return iter([(index, self.epoch) for index in indices])
        return iter(indices)

    def __len__(self) -> int:
        return max(self.num_samples - self.start, 0)


def sample_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed from ``seed`` and ``keys`` (e.g. epoch and sample index); nearby keys give unrelated seeds."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class SeededSamples(Dataset):
    """``dataset`` whose sample ``index`` in epoch ``epoch`` is augmented with randomness from ``(seed, epoch, index)``.

    ``self[(index, epoch)]`` (what ``ResumableSampler(with_epoch=True)`` yields; a
    plain ``index`` means epoch 0) seeds torch's CPU generator, ``random`` and
    numpy's global generator for the call, so any transform (torchvision's,
    timm's, :class:`~wae_timm.data.FashionMNIST`'s flips) draws the same values
    for that sample whatever ran before, in whichever process or worker, and
    restores them afterwards: the process's own random state (e.g. dropout's) is
    left untouched.
    """

    def __init__(self, dataset: Dataset, seed: int = 0) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Union[int, Tuple[int, int]]) -> Any:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        seed = sample_seed(self.seed, epoch, index)
        python_state, numpy_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)  # CPU only: CUDA generators are the model's
            random.seed(seed)
            np.random.seed(seed % 2 ** 32)
            try:
                return self.dataset[index]
            finally:
                random.setstate(python_state)
                np.random.set_state(numpy_state)
