"""torch.hub entrypoints from a local checkout."""
from pathlib import Path

import pytest
import torch

import hubconf
import wae_timm

REPO = str(Path(__file__).resolve().parents[1])
MODEL_NAMES = sorted([*wae_timm.models.WAE_MODEL_ARGS, *wae_timm.models.baselines.BASELINE_MODEL_ARGS])
# loading every baseline adds little: one model per baseline kind, on the smallest backbone
LOADED_NAMES = sorted(wae_timm.models.WAE_MODEL_ARGS) + [
    f'{kind}_resnet18' for kind in wae_timm.models.baselines.BASELINE_CHANGES]


def test_hub_exposes_exactly_the_registered_models():
    public = [n for n in dir(hubconf) if callable(getattr(hubconf, n)) and not n.startswith('_')]
    assert sorted(public) == MODEL_NAMES
    for name in MODEL_NAMES:
        assert getattr(hubconf, name).__doc__  # what torch.hub.help shows


@pytest.mark.parametrize('name', LOADED_NAMES)
def test_hub_load_local(name):
    model = torch.hub.load(REPO, name, source='local', num_classes=10)
    assert isinstance(model, wae_timm.WAEWrapper)
    assert model.pretrained_cfg['architecture'] == name
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 10)
