"""Model cards (Hugging Face ``README.md`` with YAML metadata) for the published ``wae_*`` tags.

Every number in a card is computed here or read from a ``results/`` file,
never typed: parameters and fvcore GFLOPs are counted on the model itself,
speed and comparisons are the rows of the ``results/*.csv`` files written by the
benchmark and training tools that name the model. The accuracy of the weights
themselves (and the ``model-index``) is shown only from a row of
``results/pretrained_weights.csv`` recording the sha256 of the exported
``model.safetensors`` (:mod:`wae_timm.publish.measurements`); any other file
gets "not measured" and a warning. A file that does not exist yet gives "not
measured yet". After new results are merged, one command brings the card of
every shipped folder (``hub/<model>.<tag>/README.md``) up to date::

    python tools/make_model_cards.py            # rewrites hub/<model>.<tag>/README.md
    python tools/make_model_cards.py --check    # fails if a card is stale
"""
import csv
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import timm
import torch.nn as nn
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..experiments.flops import count_flops, parameter_count
from ..experiments.tables import markdown_table
from ..models.pretrained import PretrainedTag
from .measurements import MEASUREMENTS_FILE, find_measurement, find_results_dir, read_measurements

__all__ = ['render_model_card', 'result_rows', 'ACCURACY_RESULTS', 'SPEED_RESULTS', 'INSTALL_LINE',
           'NotMeasuredWarning']

# the first line of a card's usage: the package that registers the wae_* models with timm
INSTALL_LINE = 'pip install wae-timm  # the package of this repository; from a checkout: pip install .'


class NotMeasuredWarning(UserWarning):
    """A card is written for weights whose accuracy no results row records: it shows no numbers."""

PathLike = Union[str, Path]

# results/ files a card reads, by the dataset a tag was trained on
ACCURACY_RESULTS: Dict[str, Tuple[str, ...]] = {
    # the equal-cost grid's cost of each architecture (not weights): accuracies of other checkpoints are
    # not put next to these weights' (they live, with seeds, in results/fashion_mnist_seeds.md)
    'zalando-datasets/fashion_mnist': ('fashion_mnist_cost.csv',),
    'imagenet-1k': ('imagenet*.csv', 'in1k*.csv'),
}
SPEED_RESULTS: Tuple[str, ...] = ('speed*.csv', 'benchmark*.csv')
_NAME_COLUMNS = ('key', 'model', 'architecture', 'name', 'tag', 'variant')
# what a reader of a card needs from a results row; files without these columns are shown whole
_SHOWN_COLUMNS = ('label', 'variance', 'top1', 'top5', 'train_images', 'epochs', 'gflops', 'latency_ms')

CITATION = """@inproceedings{chen2018wae,
  title={Learning a Wavelet-like Auto-Encoder to Accelerate Deep Neural Networks},
  author={Chen, Tianshui and Lin, Liang and Zuo, Wangmeng and Luo, Xiaonan and Zhang, Lei},
  booktitle={AAAI Conference on Artificial Intelligence},
  year={2018}
}"""

_METHOD = (
    'A Wavelet-like Auto-Encoder (WAE; Chen et al., AAAI 2018) splits the input image into two half-resolution '
    '3-channel images: I_L, which carries the content, and I_H, high frequencies pushed towards zero energy by the '
    'transform loss L_t = ||I - I\'||^2 + lambda ||I_H||^2. The backbone ({backbone}) runs on I_L at half '
    'resolution; a copy with every width divided by 4 runs on I_H. One classifier scores the low features (s_L), '
    'one the concatenated low and high features (s_c); the logits are (s_L + s_c) / 2.')


def result_rows(results_dir: Optional[PathLike], patterns: Sequence[str], names: Sequence[str]) -> List[Tuple[Path, List[Dict[str, str]]]]:
    """For each ``results_dir`` CSV matching ``patterns``: its rows whose model column is one of ``names``."""
    found = []
    if results_dir is None:
        return found
    files = sorted({p for pattern in patterns for p in Path(results_dir).glob(pattern)})
    for path in files:
        with path.open(newline='') as f:
            rows = [r for r in csv.DictReader(f) if any(r.get(c) in names for c in _NAME_COLUMNS)]
        if rows:
            found.append((path, rows))
    return found


def _cell(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return str(int(number)) if number.is_integer() else f'{number:.4g}'


def _table(rows: List[Dict[str, str]]) -> str:
    keys = [k for k in _SHOWN_COLUMNS if k in rows[0]] or list(rows[0])
    return markdown_table(keys, [[_cell(str(r.get(k, ''))) for k in keys] for r in rows])


def _latency_section(results_dir: Optional[PathLike], patterns: Sequence[str], tag: PretrainedTag) -> str:
    """CPU latency of each results row next to the row keyed 'backbone', when the accuracy files measured it."""
    for path, rows in result_rows(results_dir, patterns, tuple(tag.results_rows)):
        timed = {r['key']: float(r['latency_ms']) for r in rows if r.get('key') and r.get('latency_ms')}
        reference = tag.results_rows[0] if tag.results_rows else 'backbone'
        if reference not in timed:
            continue
        lines = [f'From `results/{path.name}` (CPU, the batch and machine of that run):\n',
                 f'| row | latency (ms) | speed-up over {reference} |', '|---|---|---|']
        lines += [f'| {key} | {ms:.1f} | {timed[reference] / ms:.2f}x |' for key, ms in timed.items()]
        return '\n'.join(lines) + '\n'
    return ''


def _results_section(results_dir: Optional[PathLike], patterns: Sequence[str], tag: PretrainedTag, what: str) -> str:
    found = result_rows(results_dir, patterns, (tag.name, tag.architecture) + tuple(tag.results_rows))
    if not found:
        wanted = ', '.join(f'results/{p}' for p in patterns)
        return f'{what}: not measured yet (no row for {tag.name} in {wanted}).\n'
    return '\n'.join(f'From `results/{path.name}`:\n\n{_table(rows)}\n' for path, rows in found)


def _size_section(tag: PretrainedTag, model: nn.Module) -> str:
    input_size = tuple(model.pretrained_cfg['input_size'])
    backbone = timm.create_model(model.backbone_name, num_classes=model.num_classes)
    wae_flops = count_flops(model, input_size).total / 1e9
    backbone_flops = count_flops(backbone, input_size).total / 1e9
    return (
        f'| model | params (M) | GFLOPs at {input_size[1]}x{input_size[2]} (fvcore, batch 1) |\n|---|---|---|\n'
        f'| {tag.name} (inference, no decoder) | {parameter_count(model) / 1e6:.2f} | {wae_flops:.3f} |\n'
        f'| {model.backbone_name} (same input) | {parameter_count(backbone) / 1e6:.2f} | {backbone_flops:.3f} |\n\n'
        f'FLOPs ratio {model.backbone_name} / {tag.architecture}: {backbone_flops / wae_flops:.2f}x '
        '(fvcore counts one multiply-add as one FLOP).\n')


def _eval_results(tag: PretrainedTag, measured: Optional[Dict[str, str]]) -> List[EvalResult]:
    """Top-1 / top-5 of the measurement of these exact weights (the whole test split), for the model-index."""
    if measured is None:
        return []
    common = dict(task_type='image-classification', dataset_type=tag.dataset, dataset_name=tag.dataset,
                  dataset_split=measured['split'])
    return [EvalResult(metric_type='accuracy', metric_name='Top-1 accuracy',
                       metric_value=round(float(measured['top1']), 2), **common),
            EvalResult(metric_type='top_5_accuracy', metric_name='Top-5 accuracy',
                       metric_value=round(float(measured['top5']), 2), **common)]


def _measured_section(tag: PretrainedTag, results_dir: Optional[Path], weights_sha256: Optional[str],
                      measured: Optional[Dict[str, str]]) -> str:
    """The accuracy of these weights, from the rows that recorded their sha256; else a loud "not measured"."""
    where = f'results/{MEASUREMENTS_FILE}'
    if measured is None:
        if weights_sha256 is None:
            why = 'the card was rendered without the weights file'
        elif results_dir is None:
            why = 'no results/ folder was found when the card was written'
        else:
            why = f'no row of {where} records the sha256 of this model.safetensors ({weights_sha256})'
        return (f'**Accuracy of these weights: not measured.** {why}; numbers measured on other weights are '
                'not shown. Export with `wae-timm push ... --measure` to measure and record them.\n')
    rows = [r for r in read_measurements(results_dir)
            if r['tag'] == tag.name and r['weights_sha256'] == weights_sha256]
    table = markdown_table(
        ('test images', 'top-1 (%)', 'top-5 (%)'),
        [[r['images'], f'{float(r["top1"]):.2f}', f'{float(r["top5"]):.2f}'] for r in rows])
    return (f'From `{where}`, measured on exactly this `model.safetensors` (sha256 `{weights_sha256}`), '
            f'loaded by `timm.create_model(\'{tag.name}\', pretrained=True)`; batch {rows[0]["batch_size"]}, '
            f'the first N images of the {tag.dataset} {rows[0]["split"]} split:\n\n{table}\n')


def _card_data(tag: PretrainedTag, measured: Optional[Dict[str, str]]) -> ModelCardData:
    """The card's YAML metadata: Hub tags, library, license, dataset and, when measured, the model-index."""
    eval_results = _eval_results(tag, measured)
    return ModelCardData(
        tags=['image-classification', 'timm', 'wae', 'wavelet-like-autoencoder'],
        library_name='timm',
        pipeline_tag='image-classification',
        license='apache-2.0',
        datasets=[tag.dataset],
        metrics=['accuracy'],
        model_name=tag.name if eval_results else None,
        eval_results=eval_results or None,
    )


def render_model_card(tag: PretrainedTag, results_dir: Optional[PathLike] = None,
                      weights_sha256: Optional[str] = None) -> str:
    """The model card (``README.md``) of ``tag``'s weights whose file has sha256 ``weights_sha256``.

    Every number is computed or read from ``results_dir`` (default: see
    :func:`wae_timm.publish.measurements.find_results_dir`). The accuracy of the
    weights, and the ``model-index`` (huggingface_hub ``EvalResult``), come only
    from a measurement of that exact file; without one the card says "not
    measured" and a :class:`NotMeasuredWarning` is issued.
    """
    results = find_results_dir(results_dir)
    measured = find_measurement(results, tag.name, weights_sha256) if weights_sha256 else None
    if measured is None:
        warnings.warn(
            f'model card of {tag.name}: the accuracy of these weights (sha256 {weights_sha256}) is NOT MEASURED '
            f'(no row in {results / MEASUREMENTS_FILE if results else "results/ (not found)"}); '
            'the card shows no accuracy and no model-index', NotMeasuredWarning, stacklevel=2)
    model = timm.create_model(tag.name, with_decoder=False)
    cfg, backbone = model.pretrained_cfg, model.backbone_name
    c, h, w = cfg['input_size']
    decoder = ('keeps the WAE decoder, so stage-3 fine-tuning (classification + transform loss) can continue'
               if tag.keeps_decoder else
               'has no WAE decoder (inference only; the model builds without one)')
    usage = (
        f'```bash\n{INSTALL_LINE}\n```\n\n'
        '```python\nimport wae_timm  # registers the wae_* models with timm\nimport timm\nimport torch\n\n'
        f"model = timm.create_model('{tag.name}', pretrained=True).eval()\n"
        f"# or: timm.create_model('hf-hub:{tag.hf_hub_id}', pretrained=True)\n"
        'config = timm.data.resolve_data_config({}, model=model)\n'
        'transform = timm.data.create_transform(**config)\n'
        f'logits = model(torch.randn(1, {c}, {h}, {w}))  # [1, {cfg["num_classes"]}]\n\n'
        '# a new head: both classifiers are re-initialised, everything else loads\n'
        f"model = timm.create_model('{tag.name}', pretrained=True, num_classes=5)\n```\n"
        'Offline: with `HF_HUB_OFFLINE=1` the files are read from the Hugging Face cache; a folder holding '
        "`model.safetensors` and `config.json` loads as it is with "
        "`timm.create_model('local-dir:/path/to/folder', pretrained=True)`.\n")
    patterns = ACCURACY_RESULTS.get(tag.dataset, ())
    comparisons = ''
    if tag.results_rows and measured is not None:  # context for a measurement, never in place of one
        comparisons = ('\nFor context, the cost of this architecture next to the backbone at other input sizes '
                       '(architectures, not weights); the accuracy of every method at equal cost, with seeds, is in '
                       '`results/fashion_mnist_seeds.md` of the repository:\n\n'
                       + _results_section(results, patterns, tag, 'Cost'))
    sections = [
        f'# Model card for {tag.name}\n',
        _METHOD.format(backbone=backbone) + '\n',
        f'Status: {tag.status}.\n',
        '## Model details\n',
        f'- **Architecture:** `{tag.architecture}` (backbone `{backbone}`), registered by `import wae_timm`',
        f'- **Trained on:** {tag.dataset}',
        f'- **Input:** {c}x{h}x{w}, mean {tuple(cfg["mean"])}, std {tuple(cfg["std"])}',
        f'- **Classes:** {cfg["num_classes"]}',
        f'- **Checkpoint:** `model.safetensors`; {decoder}',
        f'- **Paper:** [{cfg["paper_name"]}](https://arxiv.org/abs/{cfg["paper_ids"].split(":")[-1]})\n',
        '## Size and FLOPs\n',
        _size_section(tag, model),
        '## Usage\n',
        usage,
        '## Accuracy\n',
        _measured_section(tag, results, weights_sha256, measured) + comparisons,
        '## Measured speed\n',
        _latency_section(results, patterns, tag) or _results_section(results, SPEED_RESULTS, tag, 'Speed-up'),
        '## Training\n',
        f'{tag.training_command}\n',
        '## Limitations\n',
        f'- Trained only on {tag.dataset}; other data needs fine-tuning (num_classes=... re-initialises the heads).\n'
        '- The speed-up of a WAE model over its backbone depends on the device and batch size: see the measured '
        'speed above, not the FLOPs ratio.\n'
        '- The WAE halves the resolution the backbone sees; fine detail that I_H does not carry is lost.\n',
        '## Citation\n',
        f'```bibtex\n{CITATION}\n```\n',
    ]
    card = ModelCard(f'---\n{_card_data(tag, measured).to_yaml()}\n---\n' + '\n'.join(sections))
    return str(card)
