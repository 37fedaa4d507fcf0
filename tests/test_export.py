"""Export parity: one model per backbone family and per front end, exported and run outside eager PyTorch.

Each exported model must compute what the eager model computes (eval mode, fixed seeds, 64x64 images),
at the batch size it was exported with (2) and at another one (3), since every export has a dynamic
batch axis:

- ONNX from the legacy TorchScript-based exporter (``dynamo=False``) and from the dynamo exporter
  (``dynamo=True``), each file run by onnxruntime on CPU: within ``ONNX_ATOL`` (see ``EagerCase``);
- ``torch.export.export``, the ExportedProgram's module run: equal up to float noise;
- TorchScript, ``torch.jit.script`` and ``torch.jit.trace``: equal up to float noise.

The dynamo exporter takes 3-15 s of CPU per model and TorchScript 1-6 s on the deep backbones, so by
default (see ``DEFAULT_MODELS``) the dynamo exporter runs on one model per front end and wae_vgg16,
TorchScript on the ResNet-18 models and wae_vgg16; ``WAE_TIMM_ALL_EXPORTS=1`` runs the whole matrix
(about 3 minutes on 2 cores instead of 80 s).

An exporter that cannot handle a model is listed in ``KNOWN_FAILURES`` with the error it raises; its
test asserts that exact error and is reported as XFAIL, and fails once the exporter handles the model,
so that the entry and the note in results/export.md get removed.
"""
import copy
import os
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Tuple, Type

import onnxruntime
import pytest
import timm
import torch
import torch.nn as nn
from torch.export import Dim
from torch.onnx.errors import UnsupportedOperatorError

import wae_timm  # noqa: F401  (registers the models)
from wae_timm.models.baselines import BASELINE_MODEL_ARGS
from wae_timm.models.wae import WAE_MODEL_ARGS

# one registered model per backbone family, each with the learned WAE front end
FAMILY_MODELS = (
    'wae_resnet18', 'wae_vgg16', 'wae_convnext_tiny', 'wae_efficientnet_b0',
    'wae_mobilenetv3_large_100', 'wae_regnety_016',
)
# every other front end, and the variants without fusion branch or decoder, on the smallest backbone
FRONT_END_MODELS = (
    'wavelet_cnn_resnet18', 'ca_only_wavelet_resnet18', 'half_res_resnet18',
    'low_only_wae_resnet18', 'decomposition_cnn_resnet18',
)
MODELS = FAMILY_MODELS + FRONT_END_MODELS
RESNET18_MODELS = ('wae_resnet18',) + FRONT_END_MODELS
# the models each exporter's test runs on by default (every model with WAE_TIMM_ALL_EXPORTS=1)
DEFAULT_MODELS = {
    'onnx_legacy': MODELS,
    'torch_export': MODELS,
    # one model per front end ('wae', 'wavelet', 'resize'), and the reference VGG head
    'onnx_dynamo': ('wae_resnet18', 'wavelet_cnn_resnet18', 'half_res_resnet18', 'wae_vgg16'),
    # test_models.py scripts every wae_* model already (without files or a second batch size)
    'jit_script': RESNET18_MODELS + ('wae_vgg16',),
    'jit_trace': RESNET18_MODELS + ('wae_vgg16',),
}
ALL_EXPORTS = os.environ.get('WAE_TIMM_ALL_EXPORTS', '') not in ('', '0')

# the exporters' own deprecation notices (TorchScript and the legacy ONNX exporter), the tracer's note that it
# evaluates the input checks once, and TorchScript's note on WAEWrapper's Optional attribute
pytestmark = [
    pytest.mark.filterwarnings('ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning'),
    pytest.mark.filterwarnings('ignore:The feature will be removed:DeprecationWarning'),
    pytest.mark.filterwarnings('ignore:`torch.jit.[a-z_]+` is deprecated:FutureWarning'),
    pytest.mark.filterwarnings('ignore::torch.jit.TracerWarning'),
    pytest.mark.filterwarnings("ignore:The TorchScript type system doesn't support instance-level annotations"),
]

NUM_CLASSES = 5
IMAGE_SIZE = 64
EXPORT_BATCH, OTHER_BATCH = 2, 3
ONNX_ATOL = 1e-4
FLOAT32_NOISE_FACTOR = 10  # see EagerCase
TORCH_TOLERANCE = dict(rtol=1e-5, atol=1e-6)  # the same kernels as eager: float noise only


class KnownFailure(NamedTuple):
    """An exporter that cannot handle a model: the error it raises and why."""
    error: Type[Exception]
    message: str  # regular expression the error's text matches
    reason: str


KNOWN_FAILURES: Dict[Tuple[str, str], KnownFailure] = {
    ('half_res_resnet18', 'onnx_legacy'): KnownFailure(
        UnsupportedOperatorError, r"operator 'aten::_upsample_bilinear2d_aa' to ONNX opset version \d+ is not supported",
        'the legacy exporter has no symbolic for antialiased bilinear resizing (the half_res_* front end); '
        'the dynamo exporter maps it to ONNX Resize(antialias=1)'),
}


def models_for(exporter: str) -> List[Any]:
    """Test parameters: every model, those outside the exporter's default set skipped unless WAE_TIMM_ALL_EXPORTS=1."""
    skip = pytest.mark.skipif(
        not ALL_EXPORTS, reason=f'{exporter} on this model runs with WAE_TIMM_ALL_EXPORTS=1 (slow)')
    return [pytest.param(name, marks=() if name in DEFAULT_MODELS[exporter] else skip) for name in MODELS]


# ----------------------------------------------------------------------------- eager reference
def _make_logits_depend_on_the_image(model: nn.Module, generator: torch.Generator) -> None:
    """Weights under which a wrong export cannot hide inside the tolerance.

    With timm's initialisation the logits barely depend on the image (their spread over a batch is
    1e-6 for wae_efficientnet_b0, 1e-4 for wae_vgg16): the last BatchNorm of each residual block is
    zeroed, BatchNorm statistics (0 and 1) normalise nothing, default linear heads shrink the signal.
    Here every BatchNorm gets random affine parameters and the statistics of two training-mode batches,
    every linear layer He initialisation.
    """
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batches
            if module.affine:
                module.weight.data.copy_(0.5 + torch.rand(module.num_features, generator=generator))
                module.bias.data.copy_(0.1 * torch.randn(module.num_features, generator=generator))
        elif isinstance(module, nn.Linear):
            nn.init.kaiming_normal_(module.weight, nonlinearity='relu', generator=generator)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(8, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator))
    model.eval()


class EagerCase(NamedTuple):
    """A model in eval mode, two image batches (the export batch first) and its eager logits for them.

    ``onnx_tolerance`` is ``ONNX_ATOL``, or ``FLOAT32_NOISE_FACTOR`` times the model's own float32
    rounding error (its distance to the same model in float64) where that is larger: deep backbones
    with realistic activations reach 3e-4 (wae_regnety_016) and 1e-2 (wae_efficientnet_b0, logits near
    100), where no reordering of float32 operations could stay within 1e-4.
    """
    model: nn.Module
    images: Tuple[torch.Tensor, torch.Tensor]
    logits: Tuple[torch.Tensor, torch.Tensor]
    onnx_tolerance: float


def build_eager_case(
        name: str, image_size: int = IMAGE_SIZE, batches: Tuple[int, int] = (EXPORT_BATCH, OTHER_BATCH)) -> EagerCase:
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=NUM_CLASSES)
    generator = torch.Generator().manual_seed(1)
    _make_logits_depend_on_the_image(model, generator)
    images = tuple(torch.randn(batch, 3, image_size, image_size, generator=generator)
                   for batch in batches)
    float64_model = copy.deepcopy(model).double()
    with torch.no_grad():
        logits = tuple(model(image) for image in images)
        float32_error = max((float64_model(image.double()) - out).abs().max().item()
                            for image, out in zip(images, logits))
    tolerance = max(ONNX_ATOL, FLOAT32_NOISE_FACTOR * float32_error)
    # a parity check means something only if the logits depend on the image well beyond the tolerance
    all_logits = torch.cat(logits)
    spread = (all_logits - all_logits.mean(dim=0)).abs().max().item()
    assert spread > 20 * tolerance, f'{name}: logits barely depend on the image (spread {spread:.1e})'
    return EagerCase(model, images, logits, tolerance)


class ExportCache:
    """Eager cases and ExportedPrograms, built once per test module (the dynamo ONNX exporter reuses the programs)."""

    def __init__(self) -> None:
        self._cases: Dict[str, EagerCase] = {}
        self._programs: Dict[str, torch.export.ExportedProgram] = {}

    def case(self, name: str) -> EagerCase:
        if name not in self._cases:
            self._cases[name] = build_eager_case(name)
        return self._cases[name]

    def program(self, name: str) -> torch.export.ExportedProgram:
        if name not in self._programs:
            case = self.case(name)
            self._programs[name] = torch.export.export(
                case.model, (case.images[0],), dynamic_shapes={'x': {0: Dim('batch')}})
        return self._programs[name]


@pytest.fixture(scope='module')
def cache(single_threaded_torch) -> ExportCache:
    # one thread: exporting is single-threaded Python, the eager runs are small, the machine is shared
    return ExportCache()


def check_parity(
        name: str, exporter: str, export: Callable[[], Callable[[torch.Tensor], torch.Tensor]],
        case: EagerCase, **tolerance: float,
) -> None:
    """``export()`` returns a runner of the exported model: compare it with eager on both batches,
    or assert the known failure of this exporter on this model."""
    known = KNOWN_FAILURES.get((name, exporter))
    if known is None:
        run = export()
        with torch.no_grad():
            for image, expected in zip(case.images, case.logits):
                torch.testing.assert_close(run(image), expected, **tolerance)
        return
    try:
        export()
    except known.error as err:
        assert re.search(known.message, str(err)), f'{exporter} fails on {name} in a new way: {err}'
        pytest.xfail(f'known limitation: {known.reason}')
    pytest.fail(f'{exporter} now handles {name}: remove its KNOWN_FAILURES entry and the note in results/export.md')


# ----------------------------------------------------------------------------- ONNX
def onnx_runner(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # small inputs, and the machine is shared
    session = onnxruntime.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])
    (image_input,) = session.get_inputs()
    assert isinstance(image_input.shape[0], str), f'no dynamic batch axis in {path.name}: {image_input.shape}'

    def run(image: torch.Tensor) -> torch.Tensor:
        (logits,) = session.run(None, {image_input.name: image.numpy()})
        return torch.from_numpy(logits)

    return run


def export_onnx_legacy(model: nn.Module, image: torch.Tensor, path: Path) -> Path:
    with torch.no_grad():
        torch.onnx.export(
            model, (image,), str(path), dynamo=False, input_names=['image'], output_names=['logits'],
            dynamic_axes={'image': {0: 'batch'}, 'logits': {0: 'batch'}})
    return path


def export_onnx_dynamo(program: torch.export.ExportedProgram, path: Path) -> Path:
    """The dynamo exporter on an ExportedProgram (what it builds from a module first), batch axis named 'batch'."""
    onnx_program = torch.onnx.export(program, dynamo=True, input_names=['image'], output_names=['logits'])
    onnx_program.save(str(path))
    return path


@pytest.mark.parametrize('name', models_for('onnx_legacy'))
def test_onnx_legacy_exporter_matches_eager(name, cache, tmp_path):
    case = cache.case(name)
    check_parity(
        name, 'onnx_legacy',
        lambda: onnx_runner(export_onnx_legacy(case.model, case.images[0], tmp_path / f'{name}.onnx')),
        case, rtol=0, atol=case.onnx_tolerance)


@pytest.mark.parametrize('name', models_for('onnx_dynamo'))
def test_onnx_dynamo_exporter_matches_eager(name, cache, tmp_path):
    case = cache.case(name)
    check_parity(
        name, 'onnx_dynamo', lambda: onnx_runner(export_onnx_dynamo(cache.program(name), tmp_path / f'{name}.onnx')),
        case, rtol=0, atol=case.onnx_tolerance)


@pytest.mark.parametrize('name', models_for('torch_export'))
def test_torch_export_matches_eager(name, cache):
    check_parity(name, 'torch_export', lambda: cache.program(name).module(), cache.case(name), **TORCH_TOLERANCE)


# ----------------------------------------------------------------------------- TorchScript
@pytest.mark.parametrize('name', models_for('jit_script'))
def test_torchscript_script_matches_eager(name, cache):
    case = cache.case(name)
    check_parity(name, 'jit_script', lambda: torch.jit.script(case.model), case, **TORCH_TOLERANCE)


@pytest.mark.parametrize('name', models_for('jit_trace'))
def test_torchscript_trace_matches_eager(name, cache):
    case = cache.case(name)
    # check_trace would run the model twice more: the comparison with eager is the check
    check_parity(
        name, 'jit_trace', lambda: torch.jit.trace(case.model, case.images[0], check_trace=False), case,
        **TORCH_TOLERANCE)


# ----------------------------------------------------------------------------- files
def test_saved_programs_load_and_match(cache, tmp_path):
    """What a deployment ships: the ExportedProgram and the scripted model, saved and loaded back."""
    case = cache.case('wae_resnet18')
    torch.export.save(cache.program('wae_resnet18'), tmp_path / 'wae_resnet18.pt2')
    torch.jit.save(torch.jit.script(case.model), str(tmp_path / 'wae_resnet18.pt'))
    loaded = {
        'torch.export': torch.export.load(tmp_path / 'wae_resnet18.pt2').module(),
        'torch.jit': torch.jit.load(str(tmp_path / 'wae_resnet18.pt')),
    }
    with torch.no_grad():
        for kind, module in loaded.items():
            for image, expected in zip(case.images, case.logits):
                torch.testing.assert_close(module(image), expected, **TORCH_TOLERANCE, msg=lambda m: f'{kind}: {m}')


# ----------------------------------------------------------------------------- coverage of the registry
def _backbone_family(model_args: Dict[str, Any]) -> str:
    """timm's module of the backbone: 'resnet' for resnet18 to resnet101, 'efficientnet', 'vgg', ..."""
    return timm.models.model_entrypoint(model_args['backbone']).__module__.rsplit('.', 1)[-1]


def _front_end(model_args: Dict[str, Any]) -> Tuple[str, bool, bool]:
    """What runs besides the backbone: the decomposition, a fusion branch or not, a decoder or not."""
    return model_args.get('decomposition', 'wae'), model_args.get('fusion', True), model_args.get('with_decoder', True)


def test_models_cover_every_registered_family_and_front_end():
    registry = {**WAE_MODEL_ARGS, **BASELINE_MODEL_ARGS}
    assert set(registry) <= set(timm.list_models())
    tested = [registry[name] for name in MODELS]
    assert {_backbone_family(a) for a in registry.values()} <= {_backbone_family(a) for a in tested}
    assert {_front_end(a) for a in registry.values()} <= {_front_end(a) for a in tested}
    # by default too, every exporter sees every decomposition
    decompositions = {_front_end(a)[0] for a in registry.values()}
    for exporter, names in DEFAULT_MODELS.items():
        assert {_front_end(registry[n])[0] for n in names} == decompositions, exporter
