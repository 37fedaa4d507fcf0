"""The inference fast path computes what the plain model computes, without the training-only parts."""
import copy

import pytest
import timm
import torch
import torch.nn as nn
from torch.fx import symbolic_trace

from wae_timm import WAEWrapper
from wae_timm.deploy.inference import fold_batchnorms, prepare_for_inference

SMALL = (2, 3, 64, 64)
TOLERANCE = dict(rtol=1e-4, atol=1e-5)


def _randomise_batchnorms(model: nn.Module) -> nn.Module:
    """Non-trivial running statistics and affine parameters, so that a wrong fold shows."""
    generator = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.rand(m.num_features, generator=generator) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=generator) - 0.5)
    return model.eval()


def _batchnorms(model: nn.Module) -> list:
    return [name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]


@pytest.fixture(scope='module')
def wae_resnet18():
    torch.manual_seed(0)
    return _randomise_batchnorms(WAEWrapper('resnet18', num_classes=10))


@pytest.mark.parametrize('backend', ['eager', 'jit'])
def test_backbone_fast_path_same_outputs(backend):
    model = _randomise_batchnorms(timm.create_model('resnet18', num_classes=10))
    x = torch.randn(SMALL)
    with torch.no_grad():
        expected = model(x)
        fast = prepare_for_inference(copy.deepcopy(model), backend=backend)
        actual = fast(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(actual, expected, **TOLERANCE)


def test_fuse_for_inference_same_outputs_no_batchnorm_no_decoder(wae_resnet18):
    x = torch.randn(SMALL)
    fused = copy.deepcopy(wae_resnet18).fuse_for_inference()
    with torch.no_grad():
        torch.testing.assert_close(fused(x), wae_resnet18(x), **TOLERANCE)
    assert _batchnorms(wae_resnet18), 'the plain model must have BatchNorms for this test to mean anything'
    assert not _batchnorms(fused)
    assert isinstance(fused.low_norm, nn.Identity) and isinstance(fused.high_norm, nn.Identity)
    assert not fused.wae.has_decoder and not any(n.startswith('wae.decode') for n, _ in fused.named_parameters())
    with pytest.raises(RuntimeError, match='fused for inference'):
        fused.forward_train(x)


def test_fused_model_stays_scriptable_and_traceable(wae_resnet18):
    x = torch.randn(SMALL)
    fused = copy.deepcopy(wae_resnet18).fuse_for_inference()
    with torch.no_grad():
        expected = fused(x)
        torch.testing.assert_close(torch.jit.script(fused)(x), expected, **TOLERANCE)
        torch.testing.assert_close(symbolic_trace(fused)(x), expected, **TOLERANCE)
        frozen = prepare_for_inference(fused, backend='jit')
        torch.testing.assert_close(frozen(x), expected, **TOLERANCE)


def test_vgg_flatten_heads_fast_path():
    torch.manual_seed(0)
    model = _randomise_batchnorms(WAEWrapper(
        'vgg11', num_classes=5, flatten_grid=2, low_hidden=(32,), fusion_hidden=(32,), hidden_drop_rate=0.5))
    x = torch.randn(SMALL)
    with torch.no_grad():
        expected = model(x)
        fast = prepare_for_inference(copy.deepcopy(model))
        torch.testing.assert_close(fast(x.contiguous(memory_format=torch.channels_last)), expected, **TOLERANCE)
    assert _batchnorms(model) == ['low_norm', 'high_norm'] and not _batchnorms(fast)


def test_batchnorm_act_keeps_its_activation():
    model = _randomise_batchnorms(timm.create_model('mobilenetv3_small_050', num_classes=10))
    x = torch.randn(SMALL)
    with torch.no_grad():
        expected = model(x)
        folded = fold_batchnorms(model)
        torch.testing.assert_close(model(x), expected, **TOLERANCE)
    assert folded > 0 and not _batchnorms(model)


class _ConvReadTwice(nn.Module):
    """A conv whose output feeds a BatchNorm and is also read directly: the BN must stay."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


def test_conv_output_read_elsewhere_is_not_folded():
    model = _randomise_batchnorms(_ConvReadTwice())
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        expected = model(x)
        assert fold_batchnorms(model) == 0
        torch.testing.assert_close(model(x), expected)
    assert isinstance(model.bn, nn.BatchNorm2d)


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match='unknown backend'):
        prepare_for_inference(nn.Conv2d(3, 3, 1), backend='tensorrt')


@pytest.mark.parametrize('name', ['resnet18', 'wae_resnet18', 'half_res_resnet18'])
def test_onnxruntime_backend_matches_eager(name):
    """The backbone and the WAE models through the same onnxruntime path (half_res: antialiased resize)."""
    torch.manual_seed(0)
    model = _randomise_batchnorms(timm.create_model(name, num_classes=10))
    x = torch.randn(SMALL)
    with torch.no_grad():
        expected = model.eval()(x)
        fast = prepare_for_inference(copy.deepcopy(model), backend='onnxruntime', example_input=x[:1])
        torch.testing.assert_close(fast(x), expected, rtol=0, atol=1e-4)  # a batch other than the example's
    assert expected.std() > 1e-2, 'the outputs must depend on the input for the check to mean anything'
    with pytest.raises(ValueError, match=r'exported for \[B, 3, 64, 64\] inputs'):
        fast(torch.randn(1, 3, 96, 96))


def _small_wae_vgg16() -> nn.Module:
    # the registered wae_vgg16 (reference fc heads on the 4x4 pool5 grid), at 64x64 inputs
    return timm.create_model('wae_vgg16', num_classes=10)


@pytest.mark.parametrize('create', [lambda: WAEWrapper('resnet18', num_classes=10), _small_wae_vgg16],
                         ids=['wae_resnet18', 'wae_vgg16'])
@pytest.mark.parametrize('layout', ['nchw', 'channels_last'])
def test_fusion_merges_the_band_convolutions_exactly(create, layout):
    """to_low/to_high (BatchNorms folded in) become one 6-channel conv whose halves are I_L/I_H."""
    torch.manual_seed(0)
    model = _randomise_batchnorms(create())
    memory_format = torch.channels_last if layout == 'channels_last' else torch.contiguous_format
    x = torch.randn(SMALL).contiguous(memory_format=memory_format)
    fused = copy.deepcopy(model).fuse_for_inference()
    wae = fused.wae
    assert wae.to_low is None and wae.to_high is None
    assert isinstance(wae.to_bands, nn.Conv2d) and wae.to_bands.out_channels == 6 and wae.to_bands.stride == (2, 2)
    with torch.no_grad():
        low, high = model.forward_decomposition(x)
        fused_low, fused_high = fused.forward_decomposition(x)
        # the bands of the fused model are the normalised ones, halves of one tensor (views)
        torch.testing.assert_close(fused_low, model.low_norm(low), rtol=0, atol=1e-5)
        torch.testing.assert_close(fused_high, model.high_norm(high), rtol=0, atol=1e-5)
        assert fused_low.untyped_storage().data_ptr() == fused_high.untyped_storage().data_ptr()
        assert fused_low.is_contiguous(memory_format=memory_format) or fused_low.shape[1] == 3
        torch.testing.assert_close(fused(x), model(x), rtol=0, atol=1e-5)
    assert not any(k.startswith(('wae.to_low', 'wae.to_high')) for k in fused.state_dict())


@pytest.mark.parametrize('name', ['low_only_wae_resnet18', 'wavelet_cnn_resnet18', 'half_res_resnet18'])
def test_fusion_without_to_high_leaves_the_front_end_alone(name):
    torch.manual_seed(0)
    model = _randomise_batchnorms(timm.create_model(name, num_classes=10))
    x = torch.randn(SMALL)
    fused = copy.deepcopy(model).fuse_for_inference()
    assert getattr(fused.wae, 'to_bands', None) is None
    assert [k for k in fused.state_dict() if k.startswith('wae.')] == \
        [k for k in model.state_dict() if k.startswith('wae.')]
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=0, atol=1e-5)


def test_checkpoints_are_unaffected_by_fusion_and_fusion_is_idempotent(wae_resnet18):
    saved = copy.deepcopy(wae_resnet18.state_dict())
    fused = copy.deepcopy(wae_resnet18).fuse_for_inference()
    assert set(wae_resnet18.state_dict()) == set(saved)  # the original model is untouched
    # a normal checkpoint loads strictly into a fresh model, which then fuses to the same function
    fresh = WAEWrapper('resnet18', num_classes=10)
    fresh.load_state_dict(saved)
    x = torch.randn(SMALL)
    with torch.no_grad():
        expected = fused(x)
        torch.testing.assert_close(fresh.fuse_for_inference()(x), expected, rtol=0, atol=1e-6)
        weights = fused.wae.to_bands.weight.clone()
        fused.fuse_for_inference()
        assert torch.equal(fused.wae.to_bands.weight, weights)
        torch.testing.assert_close(fused(x), expected, rtol=0, atol=0)


def test_fused_model_has_no_graph_break_for_torch_compile(wae_resnet18):
    fused = copy.deepcopy(wae_resnet18).fuse_for_inference()
    explanation = torch._dynamo.explain(fused)(torch.randn(SMALL))
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


def test_concurrent_branches_fork_under_torchscript_with_the_same_outputs(wae_resnet18):
    x = torch.randn(SMALL).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = wae_resnet18(x)
        fast = prepare_for_inference(copy.deepcopy(wae_resnet18), backend='jit', concurrent_branches=True)
        assert 'prim::fork' in str(fast.graph) or 'aten::fork' in str(fast.graph)
        for _ in range(3):  # TorchScript optimises on its second call
            torch.testing.assert_close(fast(x), expected, rtol=0, atol=1e-5)
        plain = prepare_for_inference(copy.deepcopy(wae_resnet18), backend='jit')
        assert 'fork' not in str(plain.graph)


@pytest.mark.parametrize('name, backend, message', [
    ('wae_resnet18', 'eager', "needs backend='jit'"),
    ('wae_resnet18', 'compile', "needs backend='jit'"),
    ('low_only_wae_resnet18', 'jit', 'needs a WAE model with a fusion branch'),
    ('resnet18', 'jit', 'needs a WAE model with a fusion branch'),
])
def test_concurrent_branches_refused_where_it_cannot_apply(name, backend, message):
    with pytest.raises(ValueError, match=message):
        prepare_for_inference(timm.create_model(name, num_classes=3), backend=backend, concurrent_branches=True)
