"""timm's create_model contract for every registered model, wae_* and baselines alike.

What timm's own zoo tests and tooling rely on: every parameter gets a gradient
from ``model(x).mean().backward()`` in train mode (DistributedDataParallel
needs it), ``device``/``dtype`` (meta included), ``features_only`` with the
default ``out_indices`` and with ``output_stride``, and flags that are checked
rather than ignored.
"""
import pytest
import timm
import torch
from timm.optim import create_optimizer_v2

import wae_timm
from wae_timm.models.baselines import BASELINE_MODEL_ARGS
from wae_timm.models.wae import WAE_MODEL_ARGS
from wae_timm.layers.width_scaling import default_out_indices
from wae_timm.models.wae import OUTPUT_STRIDE_FAMILIES

ALL_MODELS = sorted(WAE_MODEL_ARGS) + sorted(BASELINE_MODEL_ARGS)
SIZE = 64  # small inputs: the suite must stay fast on 2 cores

pytestmark = pytest.mark.usefixtures('single_threaded_torch')


@pytest.mark.parametrize('name', ALL_MODELS)
def test_every_parameter_gets_a_gradient(name):
    model = timm.create_model(name, num_classes=42).train()
    model(torch.randn(2, 3, SIZE, SIZE)).mean().backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, f'parameters without a gradient (plain DDP fails on step 2): {unused[:5]}'


@pytest.mark.parametrize('name', ['wae_resnet18', 'low_only_wae_resnet18', 'decomposition_cnn_resnet18'])
def test_every_parameter_gets_a_gradient_in_stage_3(name):
    kwargs = dict(aux_loss_weight=1e-3) if name != 'decomposition_cnn_resnet18' else {}
    model = timm.create_model(name, num_classes=42, **kwargs).train()
    model(torch.randn(2, 3, SIZE, SIZE)).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize('name', ALL_MODELS)
def test_meta_device_and_dtype(name):
    model = timm.create_model(name, num_classes=7, device='meta', dtype=torch.bfloat16)
    tensors = list(model.parameters()) + list(model.buffers())
    assert {t.device.type for t in tensors} == {'meta'}
    assert {t.dtype for t in tensors if t.is_floating_point()} == {torch.bfloat16}
    model.reset_classifier(3)
    for head in model.get_classifier() if model.fusion else (model.get_classifier(),):
        assert head.weight.device.type == 'meta' and head.weight.dtype == torch.bfloat16


def test_bfloat16_model_runs():
    model = timm.create_model('wae_resnet18', num_classes=3, dtype=torch.bfloat16).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, SIZE, SIZE, dtype=torch.bfloat16)).dtype == torch.bfloat16


@pytest.mark.parametrize('name', ALL_MODELS)
def test_features_only_with_default_out_indices(name):
    backbone = {**WAE_MODEL_ARGS, **BASELINE_MODEL_ARGS}[name]['backbone']
    model = timm.create_model(name, features_only=True).eval()
    with torch.no_grad():
        features = model(torch.randn(1, 3, SIZE, SIZE))
    assert len(features) == len(default_out_indices(backbone))  # every level the backbone itself offers
    assert [f.shape[1] for f in features] == model.feature_info.channels()


@pytest.mark.parametrize('name', sorted(WAE_MODEL_ARGS))
def test_output_stride_where_the_backbone_supports_it(name):
    family = wae_timm.family_of(WAE_MODEL_ARGS[name]['backbone'])
    if family not in OUTPUT_STRIDE_FAMILIES:
        with pytest.raises(ValueError, match=f'output_stride=16: .*{family} family.*supported for the families'):
            timm.create_model(name, features_only=True, output_stride=16)
        return
    model = timm.create_model(name, features_only=True, output_stride=16).eval()
    assert model.feature_info.reduction()[-1] == 16
    with torch.no_grad():
        assert model(torch.randn(1, 3, SIZE, SIZE))[-1].shape[-1] == SIZE // 16


def test_pooled_features_give_each_feature_once():
    model = timm.create_model('wae_resnet18', num_classes=0).eval()
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        features = model(x)
        low, high = model.forward_decomposition(x)
        p_low = model.low.forward_head(model.low.forward_features(model.low_norm(low)), pre_logits=True)
        p_high = model.high.forward_head(model.high.forward_features(model.high_norm(high)), pre_logits=True)
    assert features.shape == (2, model.head_hidden_size) == (2, 512 + 128)
    assert torch.allclose(features, torch.cat([p_low, p_high], dim=1), atol=1e-6)


def test_scripted_model_serves_timm_optimizer_factory():
    model = timm.create_model('wae_convnext_tiny', num_classes=3)
    scripted = torch.jit.script(model)
    assert scripted.no_weight_decay() == model.no_weight_decay()
    for kwargs in (dict(), dict(layer_decay=0.75)):
        optimizer = create_optimizer_v2(scripted, opt='sgd', lr=0.1, weight_decay=1e-4, **kwargs)
        assert sum(len(g['params']) for g in optimizer.param_groups) == len(list(scripted.parameters()))


BAD_FLAGS = [
    (dict(aux_loss_weight=-1.), 'aux_loss_weight=-1.0: expected a weight >= 0'),
    (dict(num_classes=-1), 'num_classes=-1'),
    (dict(decomposition='wavelet', wae_weights='photos'), 'wae_weights=.* needs decomposition="wae"'),
    (dict(decomposition='resize', fusion=False, freeze_wae=True), 'freeze_wae=True needs decomposition="wae"'),
    (dict(decomposition='wavelet', with_decoder=True), 'with_decoder=True needs decomposition="wae"'),
    (dict(decomposition='resize'), "decomposition='resize' has no high band"),
    (dict(decomposition='dct'), "decomposition='dct': expected one of"),
    (dict(with_decoder=False, aux_loss_weight=1e-3), 'aux_loss_weight=0.001 needs the WAE decoder'),
    (dict(freeze_wae=True, aux_loss_weight=1e-3), 'with freeze_wae=True: the transform loss trains only the WAE'),
    (dict(flatten_grid=4, global_pool='avg'), "global_pool='avg' with flatten_grid=4"),
    (dict(global_pool='grid'), "global_pool='grid' needs flatten_grid > 0"),
    (dict(fusion=False, fusion_hidden=(8,)), r'fusion_hidden=\(8,\) with fusion=False'),
    (dict(hidden_drop_rate=0.5), 'hidden_drop_rate=0.5 without hidden layers'),
    (dict(drop_rate=1.5), r'drop_rate=1.5: expected a probability in \[0, 1\)'),
    (dict(width_divisor=0), 'width_divisor=0'),
    (dict(output_stride=8), 'output_stride=8: expected 16, 32 or 64'),
]


@pytest.mark.parametrize('kwargs, message', BAD_FLAGS)
def test_flags_that_would_be_ignored_or_invalid_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        timm.create_model('wae_resnet18', **kwargs)


def test_fused_model_refuses_to_train():
    model = timm.create_model('wae_resnet18', num_classes=3).fuse_for_inference()
    model.eval()  # evaluation stays allowed
    with pytest.raises(RuntimeError, match='fused for inference'):
        model.train()
