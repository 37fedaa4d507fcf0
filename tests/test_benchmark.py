"""The speed benchmark's logic: interleaving, statistics, speed-ups, targets and result files (timings not asserted)."""
import csv

import pytest
import timm
import torch

from wae_timm import WAEWrapper

from wae_timm.experiments.speed import (
    Candidate, Entry, EAGER, Target, TimingRow, check_targets, default_candidates, interleaved_order, optimised_step,
    run_benchmark, summarise, time_entries,
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
    rows = run_benchmark(batch_sizes=(1, 2), rounds={1: 2, 2: 1}, backend='jit', ablation_batch_sizes=(1,),
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
    summary = paths['md'].read_text()
    assert 'Ablation' in summary and 'wae_test_resnet' in summary and 'torch threads' in summary
    assert paths['png'].stat().st_size > 1000
    with pytest.raises(FileExistsError, match='--overwrite'):
        write_results(rows, tmp_path, 'bench', environment(), JIT, 'cmd')
