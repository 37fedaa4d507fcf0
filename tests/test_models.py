"""The timm model contract for every registered wae_* model, as timm's own suite checks its zoo."""
import pytest
import timm
import torch
import torch.nn as nn
from torch.fx import symbolic_trace

import wae_timm
from wae_timm.models.wae import WAE_MODEL_ARGS

MODEL_NAMES = sorted(WAE_MODEL_ARGS)
SMALL = (2, 3, 64, 64)  # every model at small input: the suite must stay fast on 2 cores
FAST = ['wae_resnet18', 'wae_efficientnet_b0']


@pytest.fixture(scope='module', params=MODEL_NAMES)
def model_name(request):
    return request.param


def test_registered():
    assert set(timm.list_models('wae_*')) >= {'wae_vgg16', 'wae_resnet50'}
    assert set(timm.list_models('wae_*')) == set(MODEL_NAMES)


def test_forward_backward(model_name):
    model = timm.create_model(model_name, num_classes=10)
    x = torch.randn(SMALL)
    out = model(x)
    assert out.shape == (2, 10)
    out.mean().backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None and not n.startswith('wae.decode')]
    assert not unused, f'parameters that get no gradient (DDP would fail): {unused[:5]}'
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_default_cfg_and_heads(model_name):
    model = timm.create_model(model_name).eval()
    cfg = model.pretrained_cfg
    for key in ('input_size', 'mean', 'std', 'crop_pct', 'interpolation', 'first_conv', 'classifier', 'pool_size'):
        assert key in cfg, key
    state_dict = model.state_dict()
    assert cfg['first_conv'] + '.weight' in state_dict
    assert state_dict[cfg['first_conv'] + '.weight'].shape[1] == 3
    for classifier in cfg['classifier']:
        assert state_dict[classifier + '.weight'].shape[0] == cfg['num_classes']

    x = torch.randn(1, *cfg['input_size'])
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape[1] == model.num_features
        assert tuple(features.shape[-2:]) == tuple(cfg['pool_size'])
        assert model.forward_head(features, pre_logits=True).shape == (1, model.head_hidden_size)
        assert torch.allclose(model.forward_head(features), model(x), atol=1e-5)

        model.reset_classifier(0)
        assert model.num_classes == 0
        assert model(x).shape == (1, model.head_hidden_size)
        model.reset_classifier(0, '')
        assert model(x).shape == features.shape
        model.reset_classifier(5, 'grid' if model.flatten_grid else 'avg')
        assert model(x).shape == (1, 5)


def test_get_classifier_and_reset(model_name):
    model = timm.create_model(model_name, num_classes=3)
    low, fusion = model.get_classifier()
    assert low.out_features == fusion.out_features == 3
    model.reset_classifier(7)
    assert all(head.out_features == 7 for head in model.get_classifier())
    with pytest.raises(ValueError, match='num_classes=0'):
        model.reset_classifier(7, '')


def test_fusion_branch_is_a_quarter(model_name):
    model = timm.create_model(model_name)
    assert model.high_channels * 4 == model.low_channels
    low_params = sum(p.numel() for p in model.low.parameters())
    high_params = sum(p.numel() for p in model.high.parameters())
    assert high_params < low_params / 8


def test_features_only(model_name):
    model = timm.create_model(model_name, features_only=True, out_indices=(1, 2))
    x = torch.randn(SMALL)
    features = model(x)
    assert [f.shape[1] for f in features] == model.feature_info.channels()
    for f, reduction in zip(features, model.feature_info.reduction()):
        assert f.shape[-1] == pytest.approx(64 / reduction, abs=1)


def test_torchscript_keeps_input_checks(model_name):
    model = timm.create_model(model_name, num_classes=4).eval()
    scripted = torch.jit.script(model)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(scripted(x), model(x), atol=1e-5)
    with pytest.raises(Exception, match='expected 3 input channels, got 1'):
        scripted(torch.randn(1, 1, 64, 64))


@pytest.mark.parametrize('name', FAST + ['wae_vgg16'])
def test_fx_trace_keeps_input_checks(name):
    model = timm.create_model(name, num_classes=4).eval()
    traced = symbolic_trace(model)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(traced(x), model(x), atol=1e-5)
    with pytest.raises(ValueError, match='at least 32x32'):
        traced(torch.randn(1, 3, 16, 16))


def test_timm_fx_feature_extractor():
    from timm.models import create_feature_extractor
    model = timm.create_model('wae_resnet18', num_classes=4).eval()
    extractor = create_feature_extractor(model, return_nodes={'low.layer2': 'layer2'})
    assert extractor(torch.randn(1, 3, 64, 64))['layer2'].shape == (1, 128, 4, 4)


def test_torch_compile_has_no_graph_break():
    model = timm.create_model('wae_resnet18', num_classes=4).eval()
    explanation = torch._dynamo.explain(model)(torch.randn(1, 3, 64, 64))
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


@pytest.mark.parametrize('name', FAST)
def test_channels_last_and_bf16_autocast(name):
    model = timm.create_model(name, num_classes=4).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = model(x)
        channels_last = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        assert torch.allclose(channels_last, reference, atol=1e-4)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low_precision = model(x)
    assert low_precision.dtype == torch.bfloat16
    assert torch.allclose(low_precision.float(), reference, atol=0.1 * reference.abs().max().item() + 0.05)


def test_grad_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    model = timm.create_model('wae_resnet18', num_classes=4).train()
    x = torch.randn(2, 3, 64, 64)
    model(x).sum().backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    # BatchNorm running stats moved once; compare in eval mode for determinism
    model.eval()
    model.zero_grad()
    model(x).sum().backward()
    checkpointed = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.set_grad_checkpointing(False)
    model.zero_grad()
    model(x).sum().backward()
    for n, p in model.named_parameters():
        if p.grad is not None:
            assert torch.allclose(p.grad, checkpointed[n], atol=1e-5), n
    assert reference.keys() == checkpointed.keys()


def test_group_matcher_covers_both_branches():
    from timm.models import group_parameters
    model = timm.create_model('wae_resnet18')
    groups = group_parameters(model, model.group_matcher())
    stem = next(iter(groups.values()))
    assert any(n.startswith('wae.') for n in stem) and 'low.conv1.weight' in stem and 'high.conv1.weight' in stem
    layer1_group = [g for g in groups.values() if 'low.layer1.0.conv1.weight' in g][0]
    assert 'high.layer1.0.conv1.weight' in layer1_group


def test_training_forward_returns_everything_the_losses_need():
    model = timm.create_model('wae_resnet18', num_classes=4, with_decoder=True)
    x = torch.randn(2, 3, 65, 63)
    out = model.forward_train(x)
    assert out.logits.shape == out.logits_low.shape == out.logits_fusion.shape == (2, 4)
    assert torch.allclose(out.logits, (out.logits_low + out.logits_fusion) / 2)
    assert out.low.shape == out.high.shape == (2, 3, 33, 32)
    assert out.reconstruction.shape == x.shape
    loss = model.transform_loss(x, out)
    assert loss.item() == pytest.approx(wae_timm.transform_loss(x, out.reconstruction, out.high).item())


def test_decoder_only_where_the_transform_loss_trains_it():
    assert not timm.create_model('wae_resnet18').wae.has_decoder
    assert timm.create_model('wae_resnet18', aux_loss_weight=1e-3).wae.has_decoder
    assert timm.create_model('wae_resnet18', with_decoder=True).wae.has_decoder


def test_without_decoder_is_inference_only():
    model = timm.create_model('wae_resnet18', num_classes=4, with_decoder=False)
    assert not any(n.startswith('wae.decode') for n, _ in model.named_parameters())
    x = torch.randn(2, 3, 64, 64)
    out = model.forward_train(x)
    assert out.reconstruction is None
    with pytest.raises(RuntimeError, match='with_decoder=True'):
        model.transform_loss(x, out)


def test_generic_wrapper_any_backbone():
    model = wae_timm.WAEWrapper('resnet26d', num_classes=3, width_divisor=2)
    assert model.high_channels * 2 == model.low_channels
    assert model.eval()(torch.randn(1, 3, 48, 48)).shape == (1, 3)


def test_vgg16_reference_heads():
    model = timm.create_model('wae_vgg16', num_classes=10)
    hidden = [m.out_features for m in model.head_low.hidden if isinstance(m, nn.Linear)]
    fusion = [m.out_features for m in model.head_fusion.hidden if isinstance(m, nn.Linear)]
    assert hidden == [1024, 1024] and fusion == [2048, 2048]
    # fc on a 4x4 pool5 of both branches (512 + 128 channels), as the reference Caffe model
    assert model.head_low.hidden[0].in_features == 512 * 16
    assert model.head_fusion.hidden[0].in_features == (512 + 128) * 16
    assert model.forward_features(torch.randn(1, 3, 224, 224)).shape[-2:] == (4, 4)


def test_in_chans():
    model = timm.create_model('wae_resnet18', in_chans=1, num_classes=2)
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 2)
    assert model.wae.stem[0].in_channels == 1 and model.low.conv1.in_channels == 3


@pytest.mark.parametrize('bad,error,message', [
    (torch.randn(3, 64, 64), ValueError, r'shape \[B, 3, H, W\].*3 dims'),
    (torch.randn(1, 4, 64, 64), ValueError, 'expected 3 input channels, got 4'),
    (torch.randn(1, 3, 31, 64), ValueError, 'at least 32x32 pixels, got 31x64'),
    (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), TypeError, 'floating point.*uint8'),
])
def test_bad_input_errors(bad, error, message):
    model = timm.create_model('wae_resnet18', num_classes=2)
    with pytest.raises(error, match=message):
        model(bad)
    with pytest.raises(error, match=message):
        model.forward_features(bad)


def test_odd_sizes():
    model = timm.create_model('wae_resnet18', num_classes=2).eval()
    for size in [(33, 33), (97, 61)]:
        assert model(torch.randn(1, 3, *size)).shape == (1, 2)
