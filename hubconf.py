"""torch.hub entrypoints: ``torch.hub.load(repo, 'wae_resnet50', num_classes=10)``.

Each registered ``wae_*`` model and each of the paper's baselines
(:mod:`wae_timm.models.baselines`) is exposed under its own name and built by
``timm.create_model``, so hub users get exactly what timm users get
(pretrained tags, ``num_classes`` adaptation, ``features_only``...).
Imports carry a leading underscore so ``torch.hub.list`` shows models only.
"""
import functools as _functools

import timm as _timm

import wae_timm as _wae_timm

dependencies = ['torch', 'timm', 'huggingface_hub', 'safetensors']


def _entrypoint(model_name: str):
    entry = _functools.partial(_timm.create_model, model_name)
    _functools.update_wrapper(entry, _timm.models.model_entrypoint(model_name))
    return entry


globals().update({
    name: _entrypoint(name)
    for name in [*_wae_timm.models.WAE_MODEL_ARGS, *_wae_timm.models.BASELINE_MODEL_ARGS]})
