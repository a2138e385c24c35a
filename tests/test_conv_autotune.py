"""path="auto"'s measured choice (fastops.nn.conv_autotune) with a scripted timer: which path wins,
the margin, the cache and its keys, the fallback, the results, torch.compile. No timing asserts."""

import pytest
import torch
import torch.nn.functional as F

import fastops
import fastops.nn
from fastops.nn import conv_autotune
from fastops.ops import conv as conv_ops

F64 = dict(rtol=1e-10, atol=1e-12)


@pytest.fixture
def timer(monkeypatch):
    """Scripted times: ``timer.times[name]`` seconds per call of that candidate (by default
    fastops faster, but not clearly enough to stop measuring early; torch on an NCHW copy, the
    third candidate for a channels_last input, slowest); every call is recorded in
    ``timer.calls`` and the candidate runs (so it must work)."""

    class Timer:
        def __init__(self):
            self.times = {"fastops": 1.0, "torch": 1.2, conv_autotune.TORCH_NCHW: 1.3}
            self.calls: list[str] = []

        def __call__(self, name, run, device):
            run()
            self.calls.append(name)
            return self.times[name]

    fake = Timer()
    monkeypatch.setattr(conv_autotune, "time_candidate", fake)
    conv_autotune.clear_autotune_choices()
    previous = fastops.nn.set_conv_autotune(True)
    yield fake
    fastops.nn.set_conv_autotune(previous)
    conv_autotune.clear_autotune_choices()


def _dense():
    """A dense 3x3 convolution: the fixed rule sends it to torch."""
    return fastops.nn.Conv2d(4, 6, 3, padding=1).double(), torch.randn(2, 4, 9, 8, dtype=torch.float64)


def test_the_faster_path_wins_and_is_cached(timer):
    conv, x = _dense()
    with torch.no_grad():
        assert conv.selected_path(x) == "fastops"
        assert timer.calls.count("fastops") == timer.calls.count("torch") == conv_autotune.REPEATS
        conv(x), conv(x)
    assert len(timer.calls) == 2 * conv_autotune.REPEATS  # measured once
    timer.times = {"fastops": 3.0, "torch": 1.0}
    conv_autotune.clear_autotune_choices()
    with torch.no_grad():
        assert conv.selected_path(x) == "torch"


def test_a_clear_winner_ends_the_measurement_early(timer):
    timer.times = {"fastops": 1.0, "torch": conv_autotune.CLEAR_RATIO * 1.01}
    conv, x = _dense()
    with torch.no_grad():
        assert conv.selected_path(x) == "fastops"
    assert timer.calls == ["fastops", "torch"]


@pytest.mark.parametrize(
    "fastops_time,expected",
    [(0.97, "torch"), (0.9, "fastops")],
)
def test_a_candidate_must_beat_the_fixed_rule_by_the_margin(timer, fastops_time, expected):
    timer.times = {"fastops": fastops_time, "torch": 1.0}
    conv, x = _dense()
    with torch.no_grad():
        assert conv.selected_path(x) == expected


def test_the_margin_also_protects_a_fastops_fallback(timer):
    timer.times = {"fastops": 1.0, "torch": 0.97}
    conv = fastops.nn.Conv2d(4, 6, 3, padding=12, dilation=12).double()  # the rule: ours
    with torch.no_grad():
        assert conv.selected_path(torch.randn(1, 4, 9, 9, dtype=torch.float64)) == "fastops"


def test_problem_keys_separate_directions_shapes_and_dtypes(timer):
    conv, x = _dense()
    with torch.no_grad():
        conv(x)
    conv(x)  # training: forward plus backward is another problem
    conv(x.detach().requires_grad_())  # the input gradient too
    conv(torch.randn(2, 4, 9, 9, dtype=torch.float64))
    conv.float()(x.float())
    assert len(conv_autotune.autotune_choices()) == 5
    assert len(timer.calls) == 5 * 2 * conv_autotune.REPEATS
    grads = sorted(key[5] for key in conv_autotune.autotune_choices())
    assert grads[0] == (False, False, False) and (True, True, True) in grads


def test_measuring_a_training_call_leaves_the_graph_alone(timer):
    conv, x = _dense()
    xg = x.clone().requires_grad_()
    out = conv(xg)  # measured with forward and backward on detached copies
    assert conv.weight.grad is None and xg.grad is None
    out.sum().backward()
    reference = torch.nn.Conv2d(4, 6, 3, padding=1).double()
    reference.load_state_dict(conv.state_dict())
    xr = x.clone().requires_grad_()
    reference(xr).sum().backward()
    torch.testing.assert_close(xg.grad, xr.grad, **F64)
    torch.testing.assert_close(conv.weight.grad, reference.weight.grad, **F64)


@pytest.mark.parametrize("winner", ["fastops", "torch"])
def test_each_candidate_runs_its_implementation_and_results_match(timer, monkeypatch, winner):
    calls = []
    original = conv_ops.conv2d
    monkeypatch.setattr(conv_ops, "conv2d", lambda *a, **k: calls.append(1) or original(*a, **k))
    timer.times = {"fastops": 1.0, "torch": 2.0} if winner == "fastops" else {"fastops": 2.0, "torch": 1.0}
    conv, x = _dense()
    with torch.no_grad():
        first = conv(x)
    # warm-up, one timed round (a clear winner ends the measurement), the real call
    assert len(calls) == 1 + 1 + (winner == "fastops")
    calls.clear()
    with torch.no_grad():
        second = conv(x)
    assert len(calls) == (winner == "fastops")
    assert torch.equal(first, second)  # a problem's path never changes: the same bits
    torch.testing.assert_close(first, F.conv2d(x, conv.weight, conv.bias, padding=1), **F64)


@pytest.mark.parametrize("transposed", [False, True])
def test_channels_last_input_may_run_torch_on_an_nchw_copy(timer, transposed):
    """The third candidate: output and input gradient channels_last, the weight's gradient in the
    weight's layout, values torch's; an NCHW input never times it."""
    nchw = conv_autotune.TORCH_NCHW
    timer.times = {"fastops": 2.0, "torch": 2.0, nchw: 1.0}
    if transposed:
        conv = fastops.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1).double()
        reference = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1).double()
    else:
        conv = fastops.nn.Conv2d(4, 6, 3, padding=2, dilation=2).double()
        reference = torch.nn.Conv2d(4, 6, 3, padding=2, dilation=2).double()
    reference.load_state_dict(conv.state_dict())
    x = torch.randn(2, 4, 9, 8, dtype=torch.float64)
    xc = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    out = conv(xc)
    assert conv.selected_path(xc) == nchw and nchw in timer.calls
    assert out.is_contiguous(memory_format=torch.channels_last)
    grad = torch.randn_like(out)
    out.backward(grad)
    xr = x.clone().requires_grad_()
    expected = reference(xr)
    expected.backward(grad)
    torch.testing.assert_close(out, expected, **F64)
    assert xc.grad.is_contiguous(memory_format=torch.channels_last) and conv.weight.grad.is_contiguous()
    torch.testing.assert_close(xc.grad, xr.grad, **F64)
    torch.testing.assert_close(conv.weight.grad, reference.weight.grad, **F64)
    torch.testing.assert_close(conv.bias.grad, reference.bias.grad, **F64)
    timer.calls.clear()
    conv(x)
    assert timer.calls and nchw not in timer.calls


def test_autotune_off_uses_the_fixed_rule_without_timing(timer):
    fastops.nn.set_conv_autotune(False)
    conv, x = _dense()
    assert conv.selected_path(x) == "torch"
    assert fastops.nn.Conv2d(4, 6, 3, padding=12, dilation=12).selected_path(torch.randn(1, 4, 9, 9)) == "fastops"
    assert timer.calls == [] and conv_autotune.autotune_choices() == {}


def test_forced_paths_and_grouped_convolutions_are_never_timed(timer):
    x = torch.randn(1, 4, 9, 9)
    assert fastops.nn.Conv2d(4, 6, 3, path="fastops").selected_path(x) == "fastops"
    assert fastops.nn.Conv2d(4, 6, 3, path="torch").selected_path(x) == "torch"
    assert fastops.nn.Conv2d(4, 6, 3, groups=2).selected_path(x) == "torch"
    assert timer.calls == []


def test_a_failing_candidate_falls_back_and_caches_nothing(timer):
    def broken(name, run, device):
        raise RuntimeError("out of memory")

    conv_autotune.time_candidate, saved = broken, conv_autotune.time_candidate
    try:
        conv, x = _dense()
        assert conv.selected_path(x) == "torch"
        assert conv_autotune.autotune_choices() == {}
    finally:
        conv_autotune.time_candidate = saved


def test_bad_output_size_reports_torchs_error(timer):
    conv = fastops.nn.Conv2d(4, 6, 5)
    with pytest.raises(ValueError, match="Kernel size can't be greater"):
        conv(torch.randn(1, 4, 3, 3))
    assert timer.calls == []


def test_choices_save_and_load(timer):
    conv, x = _dense()
    with torch.no_grad():
        conv(x)
    saved = conv_autotune.autotune_choices()
    conv_autotune.clear_autotune_choices()
    fastops.nn.load_autotune_choices(dict.fromkeys(saved, "torch"))
    with torch.no_grad():
        assert conv.selected_path(x) == "torch"
    assert len(timer.calls) == 2 * conv_autotune.REPEATS
    with pytest.raises(ValueError, match="fastops"):
        fastops.nn.load_autotune_choices({next(iter(saved)): "cudnn"})
    fastops.nn.load_autotune_choices(dict.fromkeys(saved, conv_autotune.TORCH_NCHW))


def test_transposed_convolution_keys_its_output_padding(timer):
    up = fastops.nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1).double()
    x = torch.randn(1, 6, 5, 5, dtype=torch.float64)
    reference = torch.nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1).double()
    reference.load_state_dict(up.state_dict())
    with torch.no_grad():
        for size in (None, [10, 10]):
            torch.testing.assert_close(up(x, output_size=size), reference(x, output_size=size), **F64)
    assert len(conv_autotune.autotune_choices()) == 2
    assert {key[-1] for key in conv_autotune.autotune_choices()} == {(0, 0), (1, 1)}


def test_aspp_measures_fused_against_torch_branches(timer):
    aspp = fastops.nn.ASPP(8, 4, [2, 3]).double().eval()
    reference = fastops.nn.ASPP(8, 4, [2, 3], path="torch").double().eval()
    reference.load_state_dict(aspp.state_dict())
    x = torch.randn(1, 8, 16, 16, dtype=torch.float64)  # the fixed rule: unfused
    with torch.no_grad():
        assert aspp.selected_path(x) == "fastops"
        torch.testing.assert_close(aspp(x), reference(x), **F64)
    assert next(iter(conv_autotune.autotune_choices()))[:2] == ("ASPP", (1, 8, 16, 16))
    timer.times = {"fastops": 2.0, "torch": 1.0}
    conv_autotune.clear_autotune_choices()
    xg = x.clone().requires_grad_()
    assert aspp.selected_path(xg) == "torch"
    torch.testing.assert_close(aspp(xg), reference(x), **F64)


def _graph_targets(fn, *args):
    targets = set()

    def backend(gm, inputs):
        targets.update(str(node.target) for node in gm.graph.nodes)
        return gm.forward

    torch._dynamo.reset()
    torch.compile(fn, fullgraph=True, backend=backend)(*args)
    return targets


def test_compile_traces_the_cached_choice_without_timing(timer):
    conv = fastops.nn.Conv2d(4, 6, 3, padding=1)
    x = torch.randn(1, 4, 9, 9)
    with torch.no_grad():
        assert conv.selected_path(x) == "fastops"
        calls = len(timer.calls)
        targets = _graph_targets(conv, x)
    assert any("fastops.conv2d" in t for t in targets)
    assert len(timer.calls) == calls
    conv_autotune.clear_autotune_choices()  # nothing cached: the fixed rule, still no timing
    with torch.no_grad():
        targets = _graph_targets(conv, x)
    assert not any("fastops.conv2d" in t for t in targets)
    assert len(timer.calls) == calls


def test_compile_runs_a_cached_nchw_choice_with_gradients(timer):
    timer.times = {"fastops": 2.0, "torch": 2.0, conv_autotune.TORCH_NCHW: 1.0}
    conv = fastops.nn.Conv2d(4, 6, 3, padding=1).double()
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    xg = x.clone().requires_grad_()
    eager = conv(xg)
    assert conv.selected_path(xg) == conv_autotune.TORCH_NCHW
    calls = len(timer.calls)
    torch._dynamo.reset()
    xc = x.clone().requires_grad_()
    compiled = torch.compile(conv, backend="aot_eager", fullgraph=True)(xc)
    compiled.sum().backward()
    eager.sum().backward()
    assert len(timer.calls) == calls
    torch.testing.assert_close(compiled, eager, **F64)
    assert compiled.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(xc.grad, xg.grad, **F64)


def test_real_timer_picks_a_path():
    """The unscripted timer on a tiny problem: some path is chosen and the output is torch's."""
    conv_autotune.clear_autotune_choices()
    previous = fastops.nn.set_conv_autotune(True)
    try:
        conv, x = _dense()
        out = conv(x)
        assert list(conv_autotune.autotune_choices().values()) in (["fastops"], ["torch"])
        torch.testing.assert_close(out, F.conv2d(x, conv.weight, conv.bias, padding=1), **F64)
    finally:
        fastops.nn.set_conv_autotune(previous)
        conv_autotune.clear_autotune_choices()


@pytest.mark.parametrize("path", ["fastops", "torch"])
def test_channels_last_in_channels_last_out(path):
    """Both implementations keep a channels_last network in channels_last (same values)."""
    conv = fastops.nn.Conv2d(4, 6, 3, padding=2, dilation=2, path=path).double()
    up = fastops.nn.ConvTranspose2d(6, 3, 2, stride=2, path=path).double()
    aspp = fastops.nn.ASPP(4, 2, [1, 2], path=path).double().eval()
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64)
    xc = x.contiguous(memory_format=torch.channels_last)
    for module, inp in [(conv, x), (up, conv(x)), (aspp, x)]:
        ref = module(inp)
        out = module(inp.contiguous(memory_format=torch.channels_last))
        assert out.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(out, ref, **F64)
    assert conv(xc).is_contiguous(memory_format=torch.channels_last) and conv(x).is_contiguous()
