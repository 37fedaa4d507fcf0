"""Finiteness checks used where data enters the tools."""
import pytest
import torch

from wae_timm import check_finite


def test_finite_batch_passes_through():
    x = torch.randn(4, 3, 8, 8)
    assert check_finite(x, 'batch 0') is x


def test_non_finite_batch_names_batch_and_samples():
    x = torch.randn(4, 3, 8, 8)
    x[1, 0, 0, 0] = float('nan')
    x[3, 2, 1, 1] = float('inf')
    with pytest.raises(ValueError, match=r'train batch 7: non-finite .* \[1, 3\]'):
        check_finite(x, 'train batch 7')
