"""Rectifiers called as functions (``F.relu``, ``torch.relu``, ``x.relu()``, ``F.relu6``,
``F.leaky_relu``, ``F.hardtanh(x, 0, 6)``) inside a model's ``forward``.

Module rectifiers are converted by replacing the module (:mod:`proxylab.swap`). A functional
call has no module to replace, so while a conversion is active a
:class:`torch.overrides.TorchFunctionMode` sees every torch call the model makes, and each
rectifier call made inside the model's forward is answered by the replacement module that the same
conversion would have made for an equivalent ``nn.ReLU`` / ``nn.ReLU6`` / ``nn.LeakyReLU`` (same
clamp, slope and ``inplace``). The forward is computed by the same kernels, so it stays
bit-identical; only the autograd node differs.

Why a function mode and not a ``torch.fx`` rewrite: fx returns a new traced module (the user's
model object would not change, so ``with proxygrad(model, B): model(x)`` could not work), and it
fails on forwards with data-dependent control flow; the mode converts the user's own model for the
``with`` block and follows whatever Python the forward runs. fx is used only to *count* functional
sites without running the model (:func:`count_functional`). The price: while a conversion is
active every torch call made inside a forward of the model passes through the mode's Python method
(a few microseconds each; ``benchmarks/bench_am.py`` measures AM on GoogLeNet against its bare
forward and backward).

Out of reach: a rectifier inside a fused kernel, such as ``nn.RNN(nonlinearity="relu")`` (its ReLU runs
inside ``_VF.rnn_relu``, no Python call), is neither counted nor converted.

Threads: torch's mode stack is per thread, so the mode is entered by the module hooks in whichever
thread starts a forward of the model, for that forward only, and each thread follows its own
running modules; other threads' modules (and the model run elsewhere outside a conversion) are
left alone. A forward still running in another thread when the ``with`` block ends is refused
(``RuntimeError``): that forward was converted only in part.

Each functional call is named ``"<module>/<function>"`` after the module whose ``forward`` made it
(``"inception3a.branch1/relu"`` in torchvision's GoogLeNet), with ``.k`` appended for the k-th call
of that function in one run of the same forward (``"block/relu.1"``); calls in the root module's own
forward are ``"/relu"``. The function part is the rectifier, not the spelling: ``relu`` for
``F.relu`` / ``torch.relu`` / ``x.relu()`` / their in-place forms, ``relu6`` for ``F.relu6`` and
``F.hardtanh(x, 0, 6)`` (what ``nn.ReLU6`` calls), ``leaky_relu``. The per-layer filters and per-layer slopes of
:func:`proxylab.swap.proxygrad` receive these names, like the qualified names of rectifier modules.
"""
from __future__ import annotations

import contextlib
import threading
import warnings
import weakref
from typing import Callable

import torch
from torch import fx, nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from .proxygrad import RECTIFIERS, ProxyGradReLU
from .rules import BackwardRule

_UNSEEN = object()
_state = threading.local()  # .busy: inside a replacement call (no conversion of its own calls)


def _arg(args, kwargs, i, name, default):
    return args[i] if len(args) > i else kwargs.get(name, default)


def _describe(func, args, kwargs):
    """``(short name, factory)`` for a rectifier call, the factory making the equivalent module
    (``nn.ReLU(inplace)``, ...) when a site is first seen; None when the call is not a rectifier
    (e.g. ``hardtanh(x, -1, 1)``)."""
    if func in (F.relu, torch.relu, torch.Tensor.relu):
        inplace = func is F.relu and bool(_arg(args, kwargs, 1, "inplace", False))
        return "relu", lambda: nn.ReLU(inplace=inplace)
    if func in (torch.relu_, torch.Tensor.relu_):
        return "relu", lambda: nn.ReLU(inplace=True)
    if func is F.relu6:
        inplace = bool(_arg(args, kwargs, 1, "inplace", False))
        return "relu6", lambda: nn.ReLU6(inplace=inplace)
    if func in (F.leaky_relu, F.leaky_relu_):
        slope = float(_arg(args, kwargs, 1, "negative_slope", 0.01))
        inplace = func is F.leaky_relu_ or bool(_arg(args, kwargs, 2, "inplace", False))
        return ("leaky_relu", lambda: nn.LeakyReLU(slope, inplace=inplace)) if slope >= 0 else None
    if func in (F.hardtanh, F.hardtanh_):
        low, high = float(_arg(args, kwargs, 1, "min_val", -1.0)), float(_arg(args, kwargs, 2, "max_val", 1.0))
        if low != 0.0 or high != 6.0:
            return None  # a clamp, not ReLU6
        inplace = func is F.hardtanh_ or bool(_arg(args, kwargs, 3, "inplace", False))
        return "relu6", lambda: nn.ReLU6(inplace=inplace)
    return None


FUNCTIONS = frozenset((F.relu, torch.relu, torch.Tensor.relu, torch.relu_, torch.Tensor.relu_, F.relu6,
                       F.leaky_relu, F.leaky_relu_, F.hardtanh, F.hardtanh_))


def is_rectifier_module(module: nn.Module) -> bool:
    """A module that a conversion replaces: ReLU, ReLU6, LeakyReLU, ProxyGradReLU or a backward rule."""
    return isinstance(module, RECTIFIERS + (ProxyGradReLU, BackwardRule))


@contextlib.contextmanager
def evaluating(model: nn.Module):
    """Put ``model`` in eval mode for a ``with`` block and restore each module's mode after: in
    train mode BatchNorm would mix the images of a batch and dropout would add noise."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes.items():
            m.train(mode)


class _RectifierCallMode(TorchFunctionMode):
    """Sends each rectifier call made inside a forward of the model to its controller."""

    def __init__(self, controller: "_Controller"):
        super().__init__()
        self.controller = controller

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FUNCTIONS and not getattr(_state, "busy", False):  # this method runs for every torch call
            frames = getattr(self.controller.local, "frames", None)
            top = frames[-1] if frames else None
            if top is not None and not top[1]:  # inside a forward of the model, not of a rectifier module
                described = _describe(func, args, kwargs)
                if described is not None:
                    return self.controller.call(top, described, args[0], func, args, kwargs)
        return func(*args, **kwargs)


class _Controller:
    """The functional conversion of one model: its conversions (makes), observers, and the
    replacement module of each site; active while at least one user holds it.

    While active, two process-wide module hooks follow which module of the model is running, per
    thread; a thread that starts a forward of the model gets its own function mode for the
    duration of that forward (torch's mode stack is per thread), so the model is converted in
    whichever thread runs it, and other threads' modules are left alone."""

    def __init__(self, model: nn.Module):
        self.model_ref = weakref.ref(model)
        self.makes: list[tuple[Callable, dict]] = []  # (make(name, old) -> module | None, cache)
        self.observers: list[Callable[[str, torch.Tensor], None]] = []
        self.users = 0
        self.lock = threading.RLock()
        self.local = threading.local()  # per thread: .frames (per running module: (name, is_rectifier,
        #                                 calls per function), None for modules not of the model) and .mode
        self.running: set[int] = set()  # threads inside a forward of the model
        self.calls: dict[str, int] = {}  # site -> calls since activation
        self.names: dict[int, tuple[str, bool]] = {}
        self.forwards = 0  # forward passes of the model since activation
        self.resolved: dict = {}  # site -> its replacement module (None: the call is kept), per activation
        self._handles = []

    # -- activation
    def acquire(self):
        with self.lock:
            self.refresh()
            if self.users == 0:
                self.calls, self.forwards, self.resolved = {}, 0, {}
                if not self._handles:  # still there when a forward in another thread outlived the last user
                    self._handles = [nn.modules.module.register_module_forward_pre_hook(self._push),
                                     nn.modules.module.register_module_forward_hook(self._pop, always_call=True)]
            self.users += 1

    def release(self) -> int:
        """Drop one user; returns how many other threads are still inside a forward of the model
        when the last user left (their forward ends converted as it began; the hooks go after it)."""
        with self.lock:
            self.users -= 1
            if self.users:
                return 0
            self._unhook_if_idle()
            return len(self.running - {threading.get_ident()})

    def _unhook_if_idle(self):
        if self.users == 0 and not self.running:
            for h in self._handles:
                h.remove()
            self._handles = []

    def refresh(self):
        """Re-read the model's module names (after a module swap inside an active block); a module
        registered under several names keeps the first, as :func:`proxylab.swap.rectifier_sites` does."""
        model = self.model_ref()
        if model is not None:
            names = {}
            for n, m in model.named_modules(remove_duplicate=False):
                names.setdefault(id(m), (n, is_rectifier_module(m)))
            self.names = names

    def _push(self, module, args):
        local = self.local
        known = self.names.get(id(module))  # None: not part of the model, its calls are not the model's
        if not getattr(local, "frames", None):
            if known is None:
                return  # another module, outside any forward of the model: not ours
            with self.lock:
                self.running.add(threading.get_ident())
            local.frames, local.mode = [], _RectifierCallMode(self)
            local.mode.__enter__()
        if known is not None and known[0] == "":
            self.forwards += 1
        local.frames.append(None if known is None else (known[0], known[1], {}))
        local.pushed = module

    def _pop(self, module, args, output):
        local = self.local
        local.pushed = None
        if not getattr(local, "frames", None):
            return
        local.frames.pop()
        if not local.frames:  # the outermost module of the model in this thread has returned
            local.mode.__exit__(None, None, None)
            local.mode = None
            with self.lock:
                self.running.discard(threading.get_ident())
                self._unhook_if_idle()

    # -- one functional call
    def call(self, frame, described, x, func, args, kwargs):
        module_name, _, counts = frame  # this thread's frame: no other thread counts in it
        fname, make_old = described
        k = counts.get(fname, 0)
        counts[fname] = k + 1
        site = f"{module_name}/{fname}" + (f".{k}" if k else "")
        replacement = self.resolved.get(site, _UNSEEN)
        if replacement is _UNSEEN:  # first call of this site in this activation: run the conversions
            with self.lock:  # once, also when two threads reach the site together
                replacement = self.resolved.get(site, _UNSEEN)
                if replacement is _UNSEEN:
                    replacement = old = make_old()
                    for make, cache in self.all_makes():
                        if site not in cache:
                            cache[site] = make(site, replacement)
                        if cache[site] is not None:
                            replacement = cache[site]
                    replacement = self.resolved[site] = None if replacement is old else replacement
        _state.busy = True
        try:
            out = func(*args, **kwargs) if replacement is None else replacement(x)
        finally:
            _state.busy = False
        with self.lock:
            n = self.calls.get(site, 0)
            self.calls[site] = n + 1
        for observe in list(self.observers):
            observe(f"{site}#{n}", out)
        return out

    def all_makes(self):
        model = self.model_ref()
        return list(getattr(model, "_proxylab_swaps", [])) + self.makes

    def modules(self) -> list[nn.Module]:
        return [m for _, cache in self.all_makes() for m in cache.values() if m is not None]


_controllers: "weakref.WeakKeyDictionary[nn.Module, _Controller]" = weakref.WeakKeyDictionary()
_controllers_lock = threading.Lock()
STILL_RUNNING = ("{name} was still running in {n} other thread(s) when its conversion ended, so that forward "
                 "was converted only in part; wait for the thread (thread.join()) inside the with block")


def controller(model: nn.Module) -> _Controller:
    with _controllers_lock:  # one per model, also when two threads ask at once
        if model not in _controllers:
            _controllers[model] = _Controller(model)
        return _controllers[model]


class converting:
    """Context manager: functional rectifier calls of ``model`` answered by ``make(site, old)``
    (None keeps the call) and reported to ``observe(key, output)``; reentrant and nestable. The
    model is converted in any thread that runs it inside the block; a forward still running in
    another thread when the block ends is an error (``RuntimeError``: join the thread first).

    With ``only_if_needed``, a model that ``torch.fx`` shows to make no functional rectifier call
    is not watched at all (the watching costs a Python call per torch operation of its forward)."""

    def __init__(self, model: nn.Module, make: Callable | None = None,
                 observe: Callable[[str, torch.Tensor], None] | None = None, only_if_needed: bool = False):
        self.controller, self.make, self.observe = controller(model), make, observe
        self.entry = None
        self.idle = only_if_needed and count_functional(model) == 0

    def __enter__(self):
        if self.idle:
            return self
        with self.controller.lock:
            if self.make is not None:
                self.entry = (self.make, {})
                self.controller.makes.append(self.entry)
                self.controller.resolved = {}
            if self.observe is not None:
                self.controller.observers.append(self.observe)
            self.controller.acquire()
        return self

    def __exit__(self, *exc):
        if self.idle:
            return False
        with self.controller.lock:
            elsewhere = self.controller.release()
            if self.entry is not None:
                self.controller.makes.remove(self.entry)
                self.controller.resolved = {}
            if self.observe is not None:
                self.controller.observers.remove(self.observe)
        if elsewhere and exc[0] is None:
            raise RuntimeError(STILL_RUNNING.format(name=type(self.controller.model_ref()).__name__, n=elsewhere))
        return False

    @property
    def sites(self) -> list[str]:
        """The functional sites this block converted (or saw), in the order first called."""
        if self.idle:
            return []
        return list(self.entry[1]) if self.entry else sorted(self.controller.calls)


# --------------------------------------------------------------------------- permanent conversion
def _enter_hook(module, args):
    ctl = controller(module)
    ctl.acquire()
    ctl.local.installed = getattr(ctl.local, "installed", 0) + 1
    if getattr(ctl.local, "pushed", None) is not module:  # activated just now: the global pre-hook missed this call
        ctl._push(module, args)
    ctl.local.pushed = None


def _exit_hook(module, args, output):
    ctl = _controllers.get(module)
    if ctl is not None and getattr(ctl.local, "installed", 0):
        ctl.local.installed -= 1
        ctl.release()


def install(model: nn.Module, make: Callable) -> None:
    """Convert the functional rectifier calls of ``model`` for good (as :func:`proxylab.swap.swap_activations`
    does its modules): every forward of ``model`` runs under the conversion ``make``."""
    if not hasattr(model, "_proxylab_swaps"):
        model._proxylab_swaps = []
        model.register_forward_pre_hook(_enter_hook)
        model.register_forward_hook(_exit_hook, always_call=True)
    model._proxylab_swaps.append((make, {}))
    controller(model).resolved = {}


def functional_modules(model: nn.Module) -> list[nn.Module]:
    """The replacement modules that answer ``model``'s functional rectifier calls right now
    (for :func:`proxylab.swap.set_state`)."""
    ctl = _controllers.get(model)
    if ctl is not None:
        return ctl.modules()
    return [m for _, cache in getattr(model, "_proxylab_swaps", []) for m in cache.values() if m is not None]


def count_functional(model: nn.Module, example: torch.Tensor | None = None) -> int | None:
    """How many functional rectifier sites ``model`` has: by running ``example`` through it
    (no gradient, eval mode, modes restored) or, without one, by tracing it with ``torch.fx``;
    None when it cannot be traced and no example is given, and when a torch.nn layer, which fx does
    not trace into, may call a rectifier function (``nn.TransformerEncoderLayer``'s F.relu): then
    the conversion watches every forward rather than miss that call."""
    if example is not None:
        with evaluating(model), torch.no_grad(), converting(model, make=lambda site, old: None) as block:
            model(example)
        return len(block.sites)
    # a module swapped in since the last count: count again (rectifier modules are leaves of the
    # trace, so swapping one for another, as every ``with proxygrad`` does, changes nothing)
    shape = tuple(None if is_rectifier_module(m) else (id(m), _callables(m)) for m in model.modules())
    cached = _traced_counts.get(model)
    if cached is not None and cached[0] == shape:
        return cached[1]
    try:
        with _trace_lock, warnings.catch_warnings():  # fx patches nn.Module for the whole process: one trace at a time
            warnings.simplefilter("ignore")
            graph = _CountingTracer().trace(model)
    except Exception:  # noqa: BLE001 - fx refuses many real forwards; then the count is unknown
        _traced_counts[model] = (shape, None)
        return None
    n = 0
    for node in graph.nodes:
        if node.op == "call_function" and node.target in FUNCTIONS:
            n += _describe(node.target, tuple(node.args), dict(node.kwargs)) is not None
        elif node.op == "call_method" and node.target in ("relu", "relu_"):
            n += 1
    _traced_counts[model] = (shape, n)
    return n


class _Uncountable(Exception):
    """A leaf of the fx trace (a torch.nn layer) that may call a rectifier function in its forward."""


def _from_torch(obj) -> bool:
    """Whether ``obj`` (a function, a method descriptor such as ``torch.Tensor.tanh``, a class) is
    torch's own: its module is ``torch`` or ``torch.*`` (not torchvision, not a user's ``torch_utils``)."""
    module = getattr(obj, "__module__", None) or getattr(getattr(obj, "__objclass__", None), "__module__", None)
    return isinstance(module, str) and (module == "torch" or module.startswith("torch."))


def _hidden_call(module: nn.Module) -> str | None:
    """The name (``"activation"``, ``"layers.0.activation"``, ``"layers.0"``) through which a torch.nn
    layer that fx does not trace into may call a rectifier function in its forward: an attribute that
    is one of :data:`FUNCTIONS` (``nn.TransformerEncoderLayer`` keeps ``F.relu``) or a callable from
    outside torch (a lambda, a ``functools.partial``, a user's function), a submodule from outside
    torch (a user's layer, whose forward nobody can read without running it), or an
    ``nn.Hardtanh(0, 6)``, which calls ``F.hardtanh(x, 0, 6)``, ReLU6. None when everything the layer
    holds is torch's own and no rectifier (``F.gelu``, ``nn.GELU``, ``nn.MultiheadAttention``)."""
    for prefix, sub in module.named_modules():
        if is_rectifier_module(sub):
            continue  # a module the conversion replaces
        if not _from_torch(type(sub)):
            return prefix or "."
        if isinstance(sub, nn.Hardtanh) and (float(sub.min_val), float(sub.max_val)) == (0.0, 6.0):
            return prefix or "."
        for attr, value in _plain_callables(sub):
            try:
                rectifier = value in FUNCTIONS
            except TypeError:  # unhashable
                rectifier = False
            if rectifier or not _from_torch(value):
                return f"{prefix}.{attr}" if prefix else attr
    return None


def _plain_callables(module: nn.Module):
    """``(attribute, value)`` for each callable a module holds as a plain attribute (``activation``):
    not a submodule, not a class."""
    return [(attr, v) for attr, v in vars(module).items() if callable(v) and not isinstance(v, (nn.Module, type))]


def _callables(module: nn.Module) -> tuple:
    """The identities of a module's plain callables: the fx count depends on them, so its cache must too."""
    return tuple(id(v) for _, v in _plain_callables(module))


_traced_counts: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()
_trace_lock = threading.RLock()


class _CountingTracer(fx.Tracer):
    """An fx tracer for counting only. Rectifier modules are leaves (counted as modules, not traced
    into); submodules run their bare ``forward``, so the user's hooks never see fx proxies; and
    while it traces, fx's process-wide patch of ``nn.Module.__call__`` / ``__getattr__`` lets
    other threads' module calls and attribute reads run as usual."""

    def __init__(self):
        super().__init__()
        self.thread = threading.get_ident()

    def is_leaf_module(self, m, qualname):
        if is_rectifier_module(m):
            return True
        leaf = super().is_leaf_module(m, qualname)
        if leaf:
            hidden = _hidden_call(m)
            if hidden is not None:  # fx would not look inside, so its count would miss this call
                raise _Uncountable(f"{qualname}{'.' * bool(qualname)}{hidden}")
        return leaf

    def call_module(self, m, forward, args, kwargs):
        if threading.get_ident() != self.thread:
            return forward(*args, **kwargs)  # fx's ``forward`` here is the original nn.Module.__call__
        return super().call_module(m, m.forward, args, kwargs)

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        if threading.get_ident() != self.thread:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)
