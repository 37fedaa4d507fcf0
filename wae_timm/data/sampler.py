"""A sampler whose epoch order is reproducible and can start part-way through, for mid-epoch resume."""
from typing import Iterator, Optional

import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler

__all__ = ['ResumableSampler']


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (also for one process) that can skip the first samples of an epoch.

    The order of epoch ``e`` depends only on ``seed + e``, so a resumed run that
    calls ``set_epoch(e)`` and ``set_start(n)`` yields exactly the samples the
    killed run had not reached. Works without an initialised process group.
    """

    def __init__(
            self,
            dataset: Dataset,
            shuffle: bool = True,
            seed: int = 0,
            drop_last: bool = False,
            num_replicas: Optional[int] = None,
            rank: Optional[int] = None,
    ) -> None:
        if num_replicas is None:
            num_replicas = dist.get_world_size() if dist.is_initialized() else 1
        if rank is None:
            rank = dist.get_rank() if dist.is_initialized() else 0
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` samples of this process's share of the current epoch."""
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.start:])

    def __len__(self) -> int:
        return max(self.num_samples - self.start, 0)
