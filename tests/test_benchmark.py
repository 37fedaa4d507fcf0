"""The speed benchmark's logic: interleaving, statistics, speed-ups, targets and result files (timings not asserted)."""
import csv

import pytest
import timm
import torch

from wae_timm import WAEWrapper

from wae_timm.experiments.speed import (
    create_with_wae_padding,
    CONCURRENT, Candidate, Entry, EAGER, TARGETS, TIMM_COLUMNS, Target, TimingRow, check_targets, default_candidates,
    interleaved_order, optimised_step, run_benchmark, summarise, time_entries, timm_rows,
)
from wae_timm.experiments.speed_report import environment, write_results
from wae_timm.models.comparison import COMPARISON

JIT = optimised_step('jit')


def test_interleaved_order_calls_every_entry_once_per_round_rotating():
    order = interleaved_order(3, 4)
    assert order == [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 1, 2]]
    assert all(sorted(r) == [0, 1, 2] for r in order)


def test_default_candidates_are_the_comparison_methods():
    candidates = default_candidates('vgg16')
    assert [c.label for c in candidates] == [m.label for m in COMPARISON]
    assert [(c.model_name, c.input_size) for c in candidates[:3]] == [
        ('vgg16', 224), ('vgg16', 112), ('wae_vgg16', 224)]
    assert all(c.backbone == 'vgg16' for c in candidates)
    assert all(name in timm.list_models() for name in {c.model_name for c in candidates})


def test_time_entries_follows_the_interleaved_order():
    calls = []
    candidate = Candidate('backbone @224', 'm', 8, 'm')
    entries = [Entry(candidate, EAGER, lambda x, i=i: calls.append(i), torch.zeros(1)) for i in range(3)]
    time_entries(entries, rounds=2, progress=False)
    assert calls == [0, 1, 2, 1, 2, 0]
    assert all(len(e.samples) == 2 and len(e.loads) == 2 for e in entries)


def _entry(label: str, model: str, step: str, samples: list) -> Entry:
    entry = Entry(Candidate(label, model, 224, 'net'), step, lambda x: x, torch.zeros(1))
    entry.samples = samples
    return entry


def test_summarise_medians_and_speedups():
    rows = summarise([
        _entry('backbone @224', 'net', EAGER, [0.4, 0.2, 0.3]),
        _entry('backbone @224', 'net', JIT, [0.1, 0.3, 0.2]),
        _entry('WAE', 'wae_net', EAGER, [0.1, 0.15, 0.9]),
        _entry('WAE', 'wae_net', JIT, [0.05, 0.04, 0.5]),
    ], batch_size=2)
    by = {(r.model, r.step): r for r in rows}
    wae = by['wae_net', JIT]
    assert wae.median_ms == pytest.approx(50) and wae.min_ms == pytest.approx(40) and wae.max_ms == pytest.approx(500)
    assert wae.throughput_img_s == pytest.approx(2 / 0.05)
    assert wae.speedup_same_step == pytest.approx(0.2 / 0.05)  # both at the jit step
    assert wae.speedup_vs_eager_backbone == pytest.approx(0.3 / 0.05)
    assert by['wae_net', EAGER].speedup_same_step == pytest.approx(0.3 / 0.15)
    assert by['net', JIT].speedup_same_step == pytest.approx(1.0)

    targets = {t['step']: t for t in check_targets(rows, [Target('wae_net', 'net', 2, 3.0, None, 'throughput')])}
    assert set(targets) == {EAGER, JIT}
    assert targets[EAGER]['both_same_step'] == pytest.approx(2.0) and not targets[EAGER]['met']
    assert targets[JIT]['both_same_step'] == pytest.approx(4.0) and targets[JIT]['met']
    assert targets[JIT]['wae_vs_eager_backbone'] == pytest.approx(6.0)


def _create_tiny(name: str) -> torch.nn.Module:
    if name == 'wae_test_resnet':
        return WAEWrapper('test_resnet', num_classes=10)
    return timm.create_model(name, num_classes=10)


def test_run_benchmark_on_tiny_models_and_write_results(tmp_path):
    models = ('test_resnet', 'wae_test_resnet')
    candidates = [Candidate('backbone @224', models[0], 32, models[0]), Candidate('WAE', models[1], 32, models[0])]
    ablation = [EAGER, 'fold BN', 'fold BN + channels_last']  # graph backends are slow to prepare: one is enough
    rows = run_benchmark(batch_sizes=(1, 2), rounds={1: 2, 2: 1}, backends=('jit',), ablation_batch_sizes=(1,),
                         candidates=candidates, warmup=1, progress=False, steps=ablation, create=_create_tiny)
    assert {(r.model, r.step, r.batch_size) for r in rows} == (
        {(m, s, 1) for m in models for s in ablation} | {(m, s, 2) for m in models for s in (EAGER, JIT)})
    # every step ran the same weights: the fast path is exact
    assert max(r.max_abs_diff for r in rows) < 1e-3
    assert all(r.gflops > 0 and r.median_ms > 0 and r.rounds == (2 if r.batch_size == 1 else 1) for r in rows)

    paths = write_results(rows, tmp_path, 'bench', environment(), JIT, 'cmd')
    with open(paths['csv']) as f:
        written = list(csv.DictReader(f))
    assert len(written) == len(rows) and set(written[0]) == set(TimingRow.__dataclass_fields__)
    with open(paths['timm_csv']) as f:
        timm_format = list(csv.DictReader(f))
    assert len(timm_format) == len(rows) and tuple(timm_format[0])[:len(TIMM_COLUMNS)] == TIMM_COLUMNS
    summary = paths['md'].read_text()
    assert 'Ablation' in summary and 'wae_test_resnet' in summary and 'torch threads' in summary
    assert paths['png'].stat().st_size > 1000
    with pytest.raises(FileExistsError, match='--overwrite'):
        write_results(rows, tmp_path, 'bench', environment(), JIT, 'cmd')


ONNX = optimised_step('onnxruntime')


def test_every_backend_and_bf16_on_tiny_models_through_the_same_path():
    """Both models of a ratio run eager, onnxruntime and the concurrent-branch step (WAE only, compared with
    the backbone's jit step); bf16 casts weights and inputs, and its reference is bf16 eager."""
    models = ('test_resnet', 'wae_test_resnet')
    candidates = [Candidate('backbone @224', models[0], 32, models[0]), Candidate('WAE', models[1], 32, models[0])]
    rows = run_benchmark(batch_sizes=(2,), rounds={2: 1}, backends=('jit', 'onnxruntime'), ablation_batch_sizes=(2,),
                         candidates=candidates, warmup=1, progress=False, create=_create_tiny,
                         steps=[EAGER, JIT, ONNX, CONCURRENT])
    by = {(r.model, r.step): r for r in rows}
    assert set(by) == {(m, s) for m in models for s in (EAGER, JIT, ONNX)} | {('wae_test_resnet', CONCURRENT)}
    assert by['wae_test_resnet', ONNX].backend == 'onnxruntime' and by['test_resnet', ONNX].backend == 'onnxruntime'
    assert max(r.max_abs_diff for r in rows) < 1e-4
    concurrent = by['wae_test_resnet', CONCURRENT]
    assert concurrent.speedup_same_step == pytest.approx(by['test_resnet', JIT].median_ms / concurrent.median_ms)

    bf16 = run_benchmark(batch_sizes=(1,), rounds={1: 1}, backends=('jit',), ablation_batch_sizes=(), warmup=1,
                         candidates=candidates, progress=False, create=_create_tiny, precision='bf16')
    assert {r.precision for r in bf16} == {'bf16'} and all(r.max_abs_diff < 0.1 for r in bf16)
    assert all(r.speedup_same_step == r.speedup_same_step for r in bf16)  # the bf16 backbone is the reference


def test_precision_combinations_that_cannot_run_are_refused():
    with pytest.raises(ValueError, match='onnxruntime'):
        run_benchmark(backends=('onnxruntime',), precision='bf16', candidates=[], batch_sizes=())
    with pytest.raises(ValueError, match="precision='fp16'"):
        run_benchmark(precision='fp16', candidates=[], batch_sizes=())
    from wae_timm.experiments.speed import check_precision
    with pytest.raises(ValueError, match='CPUExecutionProvider'):
        check_precision('fp32', torch.device('cuda'), ('onnxruntime',))
    assert check_precision('bf16', torch.device('cuda'), ('jit', 'compile')) == torch.bfloat16


def test_timm_rows_use_timm_benchmark_columns_and_units():
    row = TimingRow(backbone='resnet50', label='WAE', model='wae_resnet50', input_size=224, step=JIT, backend='jit',
                    precision='fp32', batch_size=32, device='cpu', threads=2, rounds=3, median_ms=400.0, min_ms=390.0,
                    max_ms=410.0, throughput_img_s=80.0, speedup_same_step=2.61, speedup_vs_eager_backbone=3.0,
                    gflops=1.4312, params_m=25.5567, load_avg_1m=0.5)
    (record,) = timm_rows([row])
    assert tuple(record)[:len(TIMM_COLUMNS)] == TIMM_COLUMNS
    assert record['infer_samples_per_sec'] == 80.0 and record['infer_step_time'] == 400.0  # ms per batch
    assert record['infer_batch_size'] == 32 and record['infer_img_size'] == 224
    assert record['param_count'] == 25.56 and record['infer_gmacs'] == 1.43  # millions; GMACs per sample
    assert record['backend'] == 'jit' and record['fair_speedup_same_step'] == 2.61 and record['load_avg_1m'] == 0.5


def test_targets_have_an_eager_and_an_optimised_bar():
    target = Target('wae_net', 'net', 1, 1.9, 1.88, 'latency', required_optimised=2.3)
    assert target.required_at(EAGER) == 1.9 and target.required_at(JIT) == 2.3
    rows = summarise([
        _entry('backbone @224', 'net', EAGER, [0.2]), _entry('WAE', 'wae_net', EAGER, [0.1]),
        _entry('backbone @224', 'net', JIT, [0.2]), _entry('WAE', 'wae_net', JIT, [0.1]),
    ], batch_size=1)
    results = {t['step']: t for t in check_targets(rows, [target])}
    assert results[EAGER]['met'] and not results[JIT]['met']  # 2.0x both: meets 1.9 eager, not 2.3 optimised
    assert [(t.model, t.batch_size, t.required) for t in TARGETS] == [
        ('wae_vgg16', 1, 4.0), ('wae_resnet50', 1, 1.9), ('wae_resnet50', 32, 2.6)]


# ----------------------------------------------------------------------------- command line (no GPU needed)
def test_device_resolution_and_cuda_defaults():
    from wae_timm.cli import UsageError
    from wae_timm.cli.benchmark import default_batch_sizes, default_name, resolve_device
    assert resolve_device('auto', cuda_available=False) == 'cpu'
    assert resolve_device('auto', cuda_available=True) == 'cuda'
    assert resolve_device('cuda:1', cuda_available=True) == 'cuda:1'
    with pytest.raises(UsageError, match='no CUDA device is available'):
        resolve_device('cuda', cuda_available=False)
    with pytest.raises(UsageError, match="expected 'cpu', 'cuda'"):
        resolve_device('tpu', cuda_available=False)
    assert default_batch_sizes('cuda:0') == [1, 256] and default_batch_sizes('cpu') == [1, 32]
    assert default_name('cuda', False) == 'benchmark_gpu' and default_name('cpu', True) == 'profile_cpu'


@pytest.mark.parametrize('argv, device, message', [
    (['--precision', 'bf16', '--backends', 'jit', 'onnxruntime'], 'cpu', 'onnxruntime'),
    (['--backends', 'onnxruntime'], 'cuda', 'CPUExecutionProvider'),
    (['--clock', 'thread'], 'cuda', 'CUDA events'),
    (['--profile', '--precision', 'bf16'], 'cpu', 'fp32 only'),
    (['--batch-sizes', '1', '256', '--rounds', '5'], 'cuda', 'one count per batch size'),
])
def test_benchmark_arguments_refused_with_the_reason(argv, device, message):
    from wae_timm.cli import UsageError, parse_args
    from wae_timm.cli.benchmark import check_arguments
    args = parse_args(['benchmark', *argv])
    with pytest.raises(UsageError, match=message):
        check_arguments(args, device)


def test_benchmark_arguments_cuda_bf16_defaults():
    from wae_timm.cli import parse_args
    from wae_timm.cli.benchmark import check_arguments
    args = parse_args(['benchmark', '--precision', 'fp32', 'bf16', '--backend', 'compile'])
    check_arguments(args, 'cuda')
    assert args.batch_sizes == [1, 256] and args.backends == ['compile'] and args.precision == ['fp32', 'bf16']


# ----------------------------------------------------------------------------- per-component profile
def _create_tiny_wae(name: str) -> torch.nn.Module:
    return WAEWrapper('test_resnet', num_classes=10, fusion=name != 'low_only')


def test_profile_components_table(tmp_path):
    from wae_timm.experiments.profile import (
        COMPONENTS, FORWARD, TOTAL, VARIANTS, ComponentRow, profile_components, write_profile)
    rows = profile_components(['wae', 'low_only'], batch_sizes=(1, 2), rounds={1: 3, 2: 2}, input_size=32, warmup=1,
                              create=_create_tiny_wae, progress=False)
    keys = {(r.model, r.variant, r.batch_size, r.component) for r in rows}
    everything = COMPONENTS + (TOTAL, FORWARD)
    assert keys == ({('wae', v, b, c) for v in VARIANTS for b in (1, 2) for c in everything}
                    | {('low_only', v, b, c) for v in VARIANTS for b in (1, 2) for c in everything
                       if c != 'high branch'})
    for model, variant, batch_size in {k[:3] for k in keys}:
        mine = {r.component: r for r in rows if (r.model, r.variant, r.batch_size) == (model, variant, batch_size)}
        parts = [mine[c] for c in COMPONENTS if c in mine]
        assert all(p.median_ms > 0 for p in parts) and mine[FORWARD].median_ms > 0
        # the components of one call add up to at most that call's total
        assert sum(p.mean_ms for p in parts) <= mine[TOTAL].mean_ms * (1 + 1e-9)
        assert sum(p.share_of_total for p in parts) <= 1 + 1e-9 and mine[TOTAL].share_of_total == pytest.approx(1)
        assert all(p.rounds == (3 if batch_size == 1 else 2) and p.input_size == 32 for p in parts)

    paths = write_profile(rows, tmp_path, 'profile', {'cpu': 'test'}, 'cmd')
    with open(paths['csv']) as f:
        written = list(csv.DictReader(f))
    assert len(written) == len(rows) and set(written[0]) == set(ComponentRow.__dataclass_fields__)
    summary = paths['md'].read_text()
    assert '## wae, batch 2' in summary and 'fused + jit ms' in summary and 'high branch' in summary
    with pytest.raises(FileExistsError, match='--overwrite'):
        write_profile(rows, tmp_path, 'profile', {}, 'cmd')


def test_profile_refuses_what_it_cannot_split():
    from wae_timm.experiments.profile import profile_components
    with pytest.raises(ValueError, match='needs a WAE model'):
        profile_components(['resnet'], batch_sizes=(1,), input_size=32, progress=False,
                           create=lambda name: timm.create_model('test_resnet'))
    with pytest.raises(ValueError, match='unknown profile variants'):
        profile_components(['wae'], variants=['tensorrt'], create=_create_tiny_wae, progress=False)


def test_ablation_leaves_onnxruntime_out_unless_asked_for():
    from wae_timm.experiments.speed import STEPS, ablation_steps
    assert ONNX not in ablation_steps(('jit',)) and CONCURRENT in ablation_steps(('jit',))
    assert ablation_steps(('jit', 'onnxruntime')) == list(STEPS)


def test_profile_command_writes_the_table_and_refuses_to_overwrite(tmp_path, monkeypatch, capsys):
    """``wae-timm benchmark --profile`` hands its flags to profile_components and writes profile_cpu.{csv,md}."""
    from wae_timm.cli import main
    from wae_timm.experiments import profile
    calls = {}
    real = profile.profile_components

    def tiny_profile(model_names, batch_sizes, rounds, **kwargs):
        calls['args'] = (list(model_names), list(batch_sizes), rounds, kwargs['clock'])
        return real(['wae'], batch_sizes=(1,), rounds={1: 1}, input_size=32, warmup=0, variants=['eager'],
                    create=_create_tiny_wae, progress=False)

    monkeypatch.setattr(profile, 'profile_components', tiny_profile)
    argv = ['benchmark', '--profile', '--batch-sizes', '1', '32', '--rounds', '4', '2', '--device', 'cpu',
            '--clock', 'thread', '--out-dir', str(tmp_path), '--no-progress']
    assert main(argv) == 0
    assert calls['args'] == (['wae_resnet50', 'wae_vgg16'], [1, 32], {1: 4, 32: 2}, 'thread')
    assert (tmp_path / 'profile_cpu.csv').is_file() and 'tools/benchmark.py --profile' in \
        (tmp_path / 'profile_cpu.md').read_text()
    assert '| encoder |' in capsys.readouterr().out
    with pytest.raises(FileExistsError, match='--overwrite'):
        main(argv)


def test_benchmark_builds_the_learned_wae_models_with_the_padding_asked_for():
    reflecting = {name: create_with_wae_padding(name, 'reflect') for name in
                  ('wae_resnet18', 'decomposition_cnn_resnet18', 'wavelet_cnn_resnet18', 'resnet18')}
    assert reflecting['wae_resnet18'].wae.padding_mode == 'reflect'
    assert reflecting['decomposition_cnn_resnet18'].wae.padding_mode == 'reflect'
    assert reflecting['wavelet_cnn_resnet18'].decomposition == 'wavelet'  # no learned WAE: built as it is
    assert create_with_wae_padding('wae_resnet18').wae.padding_mode == 'zeros'
