"""FLOP counting: hand-computed counts, handles for the ops fvcore skips, WAE components, the report and its CLI."""
import csv
import io
import subprocess
import sys

import pytest
import timm
import torch
import torch.nn as nn

from wae_timm.experiments import flops
from wae_timm.cli import main as cli_main
from wae_timm.experiments.flops import count_decoder_flops, count_flops, flop_report, parse_model_spec, wae_components
from wae_timm.experiments.tables import markdown_table, records_table
from wae_timm.models.comparison import COMPARISON


def test_known_convolution():
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)
    # one multiply-add per weight per output pixel: C_in * C_out * k * k * H * W (bias not counted)
    assert count_flops(conv, (3, 16, 16)).total == 3 * 8 * 3 * 3 * 16 * 16


class _CheapOps(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x))  # 8 x 16 x 16
        x = nn.functional.max_pool2d(x, 2)  # -> 8 x 8 x 8
        x = torch.sigmoid(x) * x + x
        return x.mean(dim=(2, 3))


def test_ops_fvcore_skips_are_counted():
    count = count_flops(_CheapOps(), (3, 16, 16))
    assert count.unsupported_ops == {}
    full, pooled = 8 * 16 * 16, 8 * 8 * 8
    assert count.by_operator == {
        'conv': 3 * 8 * 9 * 16 * 16,
        'relu': full,  # one per output element
        'max_pool2d': full,  # one per input element, as fvcore counts adaptive_avg_pool2d
        'sigmoid': pooled, 'mul': pooled, 'add': pooled,
        'mean': pooled,
    }
    assert count.total == sum(count.by_operator.values())


def test_an_op_without_handle_is_listed_not_dropped(monkeypatch):
    monkeypatch.setattr(flops, 'POOLING_OPS', ())  # as if max_pool2d and mean had no handle
    count = count_flops(_CheapOps(), (3, 16, 16))
    assert count.unsupported_ops == {'aten::max_pool2d': 1, 'aten::mean': 1}
    rows = flop_report(['resnet18@64']).rows
    assert rows[0]['uncounted ops'] == 'aten::max_pool2d x1'


def test_wae_components_sum_to_the_total_and_match_hand_counts():
    model = timm.create_model('wae_resnet18', num_classes=10)
    count = count_flops(model, (3, 64, 64))
    parts = wae_components(count)
    assert sum(parts.values()) == count.total
    assert all(parts[name] > 0 for name in ('encoder', 'low branch', 'high branch', 'heads'))
    # the wrapper's own ops are the score average (s_L + s_c) / 2: an add and a div over 10 logits
    assert parts['heads'] == count.component(('head_low', 'head_fusion')) + 2 * 10
    full, half = 64 * 64, 32 * 32
    encoder_convs = (3 * 16 + 16 * 16 + 16 * 16) * 9 * full + 2 * 16 * 3 * 9 * half
    encoder_relus = 3 * 16 * full
    assert count.by_module['wae'] == encoder_convs + encoder_relus
    assert parts['low branch'] > 8 * parts['high branch']


def test_decoder_is_counted_apart():
    model = timm.create_model('wae_resnet18', num_classes=10, with_decoder=True)
    full, half = 64 * 64, 32 * 32
    # per branch: 4x4 stride-2 transposed conv 3->16 (fvcore: per input pixel), convs 16->16->16->3, 3 ReLUs
    branch = 3 * 16 * 16 * half + (16 * 16 + 16 * 16 + 16 * 3) * 9 * full + 3 * 16 * full
    assert count_decoder_flops(model, (3, 64, 64)) == 2 * branch + 3 * full  # + the sum of both branches
    assert count_decoder_flops(timm.create_model('wae_resnet18', with_decoder=False), (3, 64, 64)) is None


@pytest.mark.parametrize('spec,expected', [('vgg16', ('vgg16', 224)), ('vgg16@112', ('vgg16', 112))])
def test_parse_model_spec(spec, expected):
    assert parse_model_spec(spec) == expected


@pytest.mark.parametrize('spec', ['vgg16@', '@112', 'vgg16@big', 'vgg16@8'])
def test_parse_model_spec_rejects(spec):
    with pytest.raises(ValueError, match='MODEL|integer'):
        parse_model_spec(spec)


def test_report_rows_ratios_and_formats():
    report = flop_report(['resnet18', 'resnet18@112', 'wae_resnet18'])
    plain, half, wae = report.rows
    assert plain['x fewer than backbone@224'] == 1.0
    assert 3.5 < half['x fewer than backbone@224'] < 4.0  # a quarter of the pixels, the same fc
    assert wae['GFLOPs'] == pytest.approx(sum(wae[f'{p} GFLOPs'] for p in flops.WAE_COMPONENTS), abs=1e-3)
    assert plain['encoder GFLOPs'] is None and wae['decoder GFLOPs (training only)'] > 0
    assert any('3.76x' in note for note in report.notes)
    parsed = list(csv.DictReader(io.StringIO(report.csv())))
    assert [row['model'] for row in parsed] == ['resnet18', 'resnet18', 'wae_resnet18']
    assert sum(line.startswith('| ') for line in report.markdown().splitlines()) == 4  # header, three rows
    with pytest.raises(ValueError, match='unknown report format'):
        report.render('xlsx')


def test_default_report_is_the_comparison_for_the_papers_backbones():
    assert flops.DEFAULT_REPORT_MODELS[:len(COMPARISON)] == (
        'vgg16', 'vgg16@112', 'wae_vgg16', 'wavelet_cnn_vgg16', 'ca_only_wavelet_vgg16', 'decomposition_cnn_vgg16',
        'low_only_wae_vgg16', 'half_res_vgg16')
    assert flops.DEFAULT_REPORT_MODELS[len(COMPARISON):] == flops.comparison_specs(['resnet50'])
    registered = set(timm.list_models())
    assert all(parse_model_spec(spec)[0] in registered for spec in flops.DEFAULT_REPORT_MODELS)


def test_markdown_tables():
    assert markdown_table(['a', ''], [[1, None], ['x', 2.5]]) == '| a |  |\n|---|---|\n| 1 |  |\n| x | 2.5 |'
    assert markdown_table(['v'], [[0.5]], cell=lambda v: f'{v:.2f}') == '| v |\n|---|\n| 0.50 |'
    assert records_table([{'a': 1, 'b': None}]) == markdown_table(['a', 'b'], [[1, None]])


def test_cli_refuses_to_overwrite(tmp_path, capsys):
    existing = tmp_path / 'flops.md'
    existing.write_text('mine')
    with pytest.raises(SystemExit) as exit_info:
        cli_main(['flops', 'resnet18@64', '--output', str(existing)])
    assert exit_info.value.code == 2 and 'pass --overwrite' in capsys.readouterr().err
    assert existing.read_text() == 'mine'


def test_importing_the_flop_report_shows_no_warning_of_fvcore():
    """fvcore's import-time jit.script would put a deprecation warning on every demo and report."""
    result = subprocess.run([sys.executable, '-W', 'error::FutureWarning', '-c', 'import wae_timm.experiments.flops'],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
