"""Any classifier module as a ``SplitModel``, cut on its real module tree with ``torch.fx``.

Why ``torch.fx``: a split must hand back two callables, ``lower(x) -> z`` and
``upper(z) -> logits``, that share the model's own parameters. Forward hooks can capture
``z`` but cannot run the model *from* ``z`` (the functional ops between modules, such as
ResNet's ``torch.flatten`` or ViT's class-token ``x[:, 0]``, live in ``forward`` and not in
any module). Module-tree surgery only works where the model is a chain of children, which
few torchvision models are. ``torch.export`` traces to ATen and would hand back copies of
the weights under new names. ``torch.fx`` records the Python-level graph (calls of the
model's own submodules and the functions between them) and a ``GraphModule`` built over
the original model shares its submodules and keeps their qualified names, so training
``upper`` trains the model, and ``upper``'s state-dict keys are the model's own
(``fc.weight``, ``layer4.1.conv1.weight``). torchvision's feature extraction relies on the
same tracing for every classification model.

The model itself is never rewritten: its class is swapped for a subclass that adds the
``SplitModel`` interface, so ``forward`` and ``state_dict`` are exactly the user's.

- **Head**: the last ``nn.Linear`` whose output is the logits (nothing with parameters runs
  after it), or the module named by ``head_module`` (``"classifier.3"``).
- **Cut**: ``cut=1`` is the head alone; ``cut=k`` adds the ``k-1`` blocks below it. Block
  boundaries are points of the graph where exactly one tensor is alive (nothing else flows
  past, so residual connections are never cut through) at the start of a child of the model
  or of a plain ``nn.Sequential`` (ResNet's ``layer4.1``, EfficientNet's ``features.8``,
  ViT's ``encoder.layers.encoder_layer_11``); parameter-free steps (pooling, flatten) join
  the block above them. ``cut_points()`` lists them.
- The graph is traced in eval mode: ``Dropout`` and ``BatchNorm`` modules still follow
  ``train()``, but Python branches on ``self.training`` (e.g. stochastic depth) are taken
  as in eval inside the split parts. ``forward`` on the whole model is the original code.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import fx, nn

from .architectures import SplitModel

__all__ = ["CutPoint", "TracedSplitModel", "as_split_model"]


@dataclass(frozen=True)
class CutPoint:
    """Where ``cut`` starts: ``module`` is the first module above the cut; ``node`` its graph
    position; ``prefixes`` the state-dict prefixes of what lies above."""

    cut: int
    module: str
    node: int
    prefixes: tuple[str, ...]


def _ancestors(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _node_modules(node: fx.Node) -> list[str]:
    """Qualified names of the modules a node runs inside (outermost first)."""
    if node.op in ("call_module", "get_attr"):
        path = str(node.target)
        chain = _ancestors(path)
        return chain if node.op == "call_module" else chain[:-1]
    stack = node.meta.get("nn_module_stack") or {}
    out: list[str] = []
    for value in stack.values():
        name = value[0] if isinstance(value, tuple) else str(value)
        if name:
            out.append(name)
    return out


class _Trace:
    """The traced graph of a model plus its usable cut points."""

    def __init__(self, model: nn.Module, head_path: str) -> None:
        was = model.training
        model.eval()
        try:
            self.graph_module = fx.symbolic_trace(model)
        finally:
            model.train(was)
        self.nodes = list(self.graph_module.graph.nodes)
        self.head_path = head_path
        self._last_use = self._last_uses()
        head_nodes = [
            i
            for i, n in enumerate(self.nodes)
            if n.op == "call_module" and str(n.target) == head_path
        ]
        if len(head_nodes) != 1:
            raise ValueError(f"head module {head_path!r} must run exactly once in forward")
        self.head_node = head_nodes[0]
        if self._alive(self.head_node) is None:
            raise ValueError(f"the model cannot be cut below its head {head_path!r}")
        self.points = self._cut_points(model)

    def _last_uses(self) -> dict[fx.Node, int]:
        position = {n: i for i, n in enumerate(self.nodes)}
        last: dict[fx.Node, int] = {}
        for n in self.nodes:
            for used in n.all_input_nodes:
                last[used] = max(last.get(used, -1), position[n])
        return last

    def _alive(self, at: int) -> fx.Node | None:
        """The single tensor flowing into node ``at`` from before it, if only one does."""
        live = [n for n in self.nodes[:at] if self._last_use.get(n, -1) >= at]
        if len(live) != 1 or live[0].op == "get_attr":
            return None
        node: fx.Node = live[0]
        return node

    def _has_params(self, lo: int, hi: int, model: nn.Module) -> bool:
        for n in self.nodes[lo:hi]:
            if n.op == "get_attr":
                return True
            if n.op == "call_module":
                mod = model.get_submodule(str(n.target))
                if any(True for _ in mod.parameters()):
                    return True
        return False

    def _block_starts(self, model: nn.Module) -> list[tuple[int, str]]:
        """(node index, module) where a child of the model or of a plain Sequential begins."""
        starts: list[tuple[int, str]] = []
        previous: list[str] = []
        for i, n in enumerate(self.nodes[: self.head_node]):
            if n.op in ("placeholder", "output"):
                continue
            mods = _node_modules(n)
            if not mods:
                previous = []
                continue
            new = [m for m in mods if m not in previous]
            for m in new:
                parent = m.rpartition(".")[0]
                container = model.get_submodule(parent) if parent else model
                if parent == "" or type(container) in (nn.Sequential, nn.ModuleList):
                    starts.append((i, m))
                    break
            previous = mods
        return starts

    def _cut_points(self, model: nn.Module) -> list[CutPoint]:
        points = [CutPoint(1, self.head_path, self.head_node, ())]
        bounds = [(i, m) for i, m in self._block_starts(model) if self._alive(i) is not None]
        hi = self.head_node
        for i, m in reversed(bounds):
            if i >= hi or not self._has_params(i, hi, model):
                continue
            points.append(CutPoint(len(points) + 1, m, i, ()))
            hi = i
        return points

    def split(self, model: nn.Module, at: int) -> tuple[fx.GraphModule, fx.GraphModule]:
        boundary = self._alive(at)
        assert boundary is not None
        lower_graph = fx.Graph()
        env: dict[fx.Node, fx.Node] = {}
        for n in self.nodes[:at]:
            if n.op == "output":
                continue
            env[n] = lower_graph.node_copy(n, lambda a: env[a])
        lower_graph.output(env[boundary])
        upper_graph = fx.Graph()
        up: dict[fx.Node, fx.Node] = {boundary: upper_graph.placeholder("z")}
        for n in self.nodes[at:]:
            up[n] = upper_graph.node_copy(n, lambda a: up[a])
        lower = fx.GraphModule(model, lower_graph, class_name="Lower")
        upper = fx.GraphModule(model, upper_graph, class_name="Upper")
        return lower, upper


def _find_head(model: nn.Module, num_classes: int | None) -> str:
    """The last ``nn.Linear`` of the traced graph after which no parameters run."""
    was = model.training
    model.eval()
    try:
        nodes = list(fx.symbolic_trace(model).graph.nodes)
    finally:
        model.train(was)
    for i in range(len(nodes) - 1, -1, -1):
        n = nodes[i]
        if n.op == "get_attr":
            break
        if n.op != "call_module":
            continue
        mod = model.get_submodule(str(n.target))
        if isinstance(mod, nn.Linear):
            if num_classes is not None and mod.out_features != num_classes:
                break
            return str(n.target)
        if any(True for _ in mod.parameters()):
            break
    raise ValueError(
        "no head found: the logits must come from an nn.Linear with nothing trainable after "
        "it; name it with head_module (e.g. 'classifier.3')"
    )


class TracedSplitModel(SplitModel):
    """Mixed into the class of a user's model: ``head``, ``split`` and ``upper_prefixes``
    from the traced graph; ``forward`` and the state dict stay the model's own."""

    head_path: str

    def __init__(self) -> None:  # pragma: no cover - never constructed, only mixed in
        raise TypeError("use as_split_model(module)")

    @property
    def head(self) -> nn.Linear:  # type: ignore[override]
        mod: nn.Module = self
        for part in self.head_path.split("."):  # not get_submodule: `head` may be the path
            mod = mod._modules[part]  # type: ignore[assignment]
        assert isinstance(mod, nn.Linear)
        return mod

    def _trace(self) -> _Trace:
        return _Trace(self, self.head_path)

    def cut_points(self) -> list[CutPoint]:
        """Every usable cut, head first, with the module above which it lies."""
        trace = self._trace()
        return [self._with_prefixes(trace, p) for p in trace.points]

    def _with_prefixes(self, trace: _Trace, point: CutPoint) -> CutPoint:
        _, upper = trace.split(self, point.node)
        names = sorted({k.rsplit(".", 1)[0] + "." for k in upper.state_dict()})
        return CutPoint(point.cut, point.module, point.node, tuple(names))

    def _point(self, trace: _Trace, cut: int) -> CutPoint:
        if not 1 <= cut <= len(trace.points):
            raise ValueError(f"cut must be in 1..{len(trace.points)}, got {cut}")
        return trace.points[cut - 1]

    def split(self, cut: int = 1) -> tuple[nn.Module, nn.Module]:
        trace = self._trace()
        return trace.split(self, self._point(trace, cut).node)

    def upper_prefixes(self, cut: int = 1) -> tuple[str, ...]:
        trace = self._trace()
        return self._with_prefixes(trace, self._point(trace, cut)).prefixes


_CLASSES: dict[type[nn.Module], type[TracedSplitModel]] = {}


def _split_class(cls: type[nn.Module]) -> type[TracedSplitModel]:
    if cls not in _CLASSES:
        name = f"Split{cls.__name__}"
        _CLASSES[cls] = type(name, (cls, TracedSplitModel), {"__module__": cls.__module__})
    return _CLASSES[cls]


def as_split_model(
    module: nn.Module,
    *,
    head_module: str | None = None,
    arch_id: str = "",
    num_classes: int | None = None,
) -> TracedSplitModel:
    """``module`` itself (same object, same state dict) with the ``SplitModel`` interface."""
    if isinstance(module, TracedSplitModel):
        return module
    head = head_module or _find_head(module, num_classes)
    try:
        mod = module.get_submodule(head)
    except AttributeError:
        raise ValueError(f"head_module {head!r} is not a submodule of the model") from None
    if not isinstance(mod, nn.Linear):
        raise ValueError(f"head_module {head!r} is a {type(mod).__name__}, not an nn.Linear")
    if num_classes is not None and mod.out_features != num_classes:
        raise ValueError(
            f"head_module {head!r} is an nn.Linear with {mod.out_features} outputs, not the "
            f"model's {num_classes} logits"
        )
    module.__class__ = _split_class(type(module))
    assert isinstance(module, TracedSplitModel)
    module.head_path = head
    module.arch_id = arch_id
    trace = _Trace(module, head)  # fail now, not at the first erasure, if it cannot be cut
    if trace._has_params(trace.head_node + 1, len(trace.nodes), module):
        raise ValueError(
            f"head_module {head!r} is not the logits layer: layers with parameters run after it"
        )
    return module
