"""How the public functions meet torch.jit.script, torch.fx and torch.compile.

TorchScript compiles a function's whole body (it rejects try/except, f-strings with conversions,
keyword-only arguments), while the eager call should stay as cheap as it is, re-raise the kernels'
errors as torch's exception types and name a bad argument's type. So each public function is
written for eager Python and marked with ``script_as(impl)``: ``impl`` takes the same arguments
with the same defaults, in TorchScript's subset, and is what TorchScript compiles wherever it meets
the public function (scripted itself, or called from scripted code) and what torch.compile traces.

FX: called with a ``torch.fx.Proxy`` where a tensor belongs (``torch.fx.symbolic_trace`` of any
module that calls it), a public function records itself as one ``call_function`` node, as
``torch.fx.wrap`` does, from whichever module it is called; the graph then runs the function
eagerly. The check sits on the path that rejects a non-tensor argument, so eager calls pay nothing
for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.fx


def script_as(impl: Callable) -> Callable[[Callable], Callable]:
    """Decorator: torch.jit.script (and torch.compile) use ``impl`` for the decorated function,
    eager Python the function itself. The two attributes are torch.jit's own protocol for this
    (``torch.jit._script_if_tracing`` sets them; ``torch.jit.script`` and dynamo read them);
    ``impl`` takes the public function's name, which TorchScript requires."""

    def mark(fn: Callable) -> Callable:
        impl.__name__ = fn.__name__  # TorchScript compiles impl under the public function's name
        fn.__script_if_tracing_wrapper = True
        fn.__original_fn = impl
        return fn

    return mark


def _find_proxy(value: Any) -> torch.fx.Proxy | None:
    found: list[torch.fx.Proxy] = []

    def visit(v):
        if isinstance(v, torch.fx.Proxy) and not found:
            found.append(v)
        return v

    torch.fx.node.map_aggregate(value, visit)
    return found[0] if found else None


def trace_or_type_error(fn: Callable, args: tuple, name: str, value: Any, kwargs: dict | None = None) -> Any:
    """For a public function ``fn`` whose argument ``name`` (= ``value``) is not a tensor: fn's
    node when an FX tracer passed a Proxy among ``args`` (fn's positional arguments) or ``kwargs``
    (its keyword-only ones), else a TypeError naming the argument."""
    kwargs = kwargs or {}
    proxy = _find_proxy((args, kwargs))
    if proxy is not None:
        return proxy.tracer.create_proxy("call_function", fn, args, kwargs)
    raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
