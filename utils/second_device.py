"""A second device on a CPU-only machine, so that device bugs show up without a GPU.

Code written on a laptop often mixes devices without noticing: `torch.zeros(n)` or
`torch.arange(n)` lands on the CPU, and combining it with a CUDA input raises "Expected all
tensors to be on the same device" only on a GPU. Inside `second_device()`, the `meta` device
plays that GPU: a tensor moved or created there is a `Relocated` tensor, which computes real
values on the CPU but reports `device(type='meta')` and, like a CUDA tensor, refuses to be
combined with an ordinary CPU tensor (0-d scalars excepted, as on CUDA).

    with second_device() as dev:
        x = torch.randn(3, 4).to(dev)
        x @ torch.ones(4, 2, device=x.device)  # fine
        x @ torch.ones(4, 2)                    # RuntimeError: ... meta and cpu!

It checks device handling only: a program that runs here may still differ on a real GPU in
numerics or in CUDA-only errors (an out-of-range index is a device-side assert there).
Generators follow CUDA's rule: one made with `torch.Generator(device=dev)` draws only on the
second device, and a CPU generator only on the CPU. Every operation passes through Python,
so it is for graders' small inputs, not for training.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

DEVICE = torch.device("meta")
CPU = torch.device("cpu")

# Operations that take tensors from both devices, as they do on CUDA: copies between devices, and
# indexing a device tensor with CPU indices (but not a CPU tensor with device indices).
_COPIES = {"aten::copy_", "aten::_to_copy", "aten::_has_compatible_shallow_copy_type", "aten::set_",
           "aten::lift_fresh"}
_TAKE_CPU_SCALARS = {"aten::masked_fill.Tensor", "aten::masked_fill_.Tensor", "aten::fill.Tensor", "aten::fill_.Tensor",
                     "aten::index_put", "aten::index_put_", "aten::_index_put_impl_"}
_INDEXING = {"aten::index.Tensor", "aten::index_put_", "aten::index_put", "aten::_index_put_impl_"}


class Relocated(torch.Tensor):
    """A CPU tensor (`inner`) that claims to live on the second device."""

    inner: torch.Tensor

    @staticmethod
    def __new__(cls, inner: torch.Tensor) -> "Relocated":
        out = torch.Tensor._make_wrapper_subclass(
            cls, inner.shape, strides=inner.stride(), storage_offset=inner.storage_offset(),
            dtype=inner.dtype, device=DEVICE, requires_grad=inner.requires_grad)
        out.inner = inner
        return out

    def __repr__(self, *, tensor_contents: Any = None) -> str:
        return f"{self.inner!r} (on the second device)"

    def __reduce_ex__(self, protocol):  # copy.deepcopy and pickling keep it on the device
        return Relocated, (self.inner.clone(),)

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        return _run(func, args, kwargs)

    @property
    def is_meta(self) -> bool:  # real values, unlike a meta tensor
        return False

    def __format__(self, spec: str) -> str:  # f"{loss:.3f}" works on a 0-d tensor on a GPU too
        return self.inner.__format__(spec)

    def tolist(self):
        return self.inner.tolist()

    def numpy(self, *args, **kwargs):
        raise TypeError("can't convert a tensor on the second device to numpy. Use Tensor.cpu() to copy the "
                        "tensor to host memory first.")


def _leaves(args: tuple | list, kwargs: dict | None = None) -> list:
    """Everything inside an operator's arguments: they nest one level at most (a list of tensors).
    Every operation on the device comes through here, so it is a plain loop."""
    out = []
    for value in (*args, *kwargs.values()) if kwargs else args:
        if type(value) in (list, tuple):
            out.extend(value)
        else:
            out.append(value)
    return out


def tree_map(fn, value: Any) -> Any:
    if isinstance(value, list):
        return [tree_map(fn, v) for v in value]
    if isinstance(value, tuple):
        return tuple(tree_map(fn, v) for v in value)
    if isinstance(value, dict):
        return {k: tree_map(fn, v) for k, v in value.items()}
    return fn(value)


def _relocate(value: Any) -> Any:
    return Relocated(value) if isinstance(value, torch.Tensor) and not isinstance(value, Relocated) else value


def _unwrap(value: Any) -> Any:
    if isinstance(value, Relocated):
        return value.inner
    if isinstance(value, torch.device) and value.type == DEVICE.type:
        return CPU
    return value


def _unwrapped(args: tuple | list) -> list:
    return [[_unwrap(v) for v in a] if type(a) in (list, tuple) else _unwrap(a) for a in args]


def _targets_device(kwargs: dict) -> bool:
    device = kwargs.get("device")
    return device is not None and torch.device(device).type == DEVICE.type


def _run(func, args: tuple, kwargs: dict) -> Any:
    """Run `func` on the CPU tensors inside, refusing to mix devices, and relocate what it returns."""
    flat = _leaves(args, kwargs)
    if any(type(a) is torch.Tensor and a.device.type == DEVICE.type
           for a in flat):
        raise NotImplementedError(f"{func.name()} got a tensor built on the meta device behind the second "
                                  "device's back, so it has no values: teach utils/second_device.py that route")
    if any(isinstance(a, Relocated) for a in flat):
        _refuse_mixed_devices(func, args, flat)
    to_cpu = "device" in kwargs and kwargs["device"] is not None and torch.device(kwargs["device"]).type == "cpu"
    moving_here = _targets_device(kwargs)
    inners = {id(a.inner): a for a in flat if isinstance(a, Relocated)}
    out = func(*_unwrapped(args), **{k: _unwrap(v) for k, v in kwargs.items()})
    if to_cpu or (not moving_here and not inners):
        return out
    def relocated(o: Any) -> Any:
        if not isinstance(o, torch.Tensor):
            return o
        return inners[id(o)] if id(o) in inners else _relocate(o)

    return tree_map(relocated, out)


def _plain(values: list, scalars_allowed: bool) -> bool:
    """Whether any of `values` is an ordinary CPU tensor (a 0-d one only counts where CUDA would not take
    it as a scalar: outside elementwise operations)."""
    return any(isinstance(a, torch.Tensor) and not isinstance(a, Relocated) and (a.dim() > 0 or not scalars_allowed)
               for a in values)


def _refuse_mixed_devices(func, args: tuple, flat: list) -> None:
    """Raise the error CUDA would raise for an operation that combines the two devices."""
    name = func.name()
    if name in _COPIES:
        return
    if name in _INDEXING:
        if not isinstance(args[0], Relocated):
            raise RuntimeError(f"indices should be either on cpu or on the same device as the indexed tensor "
                               f"(cpu) (in {name}; the second device stands in for a GPU)")
        flat = _leaves(args[2:])  # the indices may stay on the CPU; the values may not
    if _plain(flat, scalars_allowed=torch.Tag.pointwise in func.tags or name in _TAKE_CPU_SCALARS):
        raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                           f"{DEVICE} and cpu! (in {name}; the second device stands in for a GPU)")


class _CreateOnDevice(TorchDispatchMode):
    """Routes factories and copies aimed at the second device (`device=...`, `.to(dev)`) to `_run`."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat = _leaves(args, kwargs)
        if _targets_device(kwargs) or any(isinstance(a, Relocated) for a in flat):
            return _run(func, args, kwargs)
        return func(*args, **kwargs)


class _BuildOnDevice(TorchFunctionMode):
    """`torch.tensor(data, device=dev)` and its kin build on the device without a dispatched copy:
    build on the CPU and relocate instead."""

    BUILDERS = {torch.tensor, torch.as_tensor, torch.asarray, torch.Tensor.new_tensor}
    INDEXING = {torch.Tensor.__getitem__, torch.Tensor.__setitem__}
    MATMUL = {torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if kwargs.get("generator") is not None:
            _check_generator(kwargs, on_device=_targets_device(kwargs) or any(
                isinstance(a, Relocated) for a in _leaves(args)))
        if func in self.BUILDERS and _targets_device(kwargs):
            return _relocate(func(*args, **{**kwargs, "device": CPU}))
        if func in self.INDEXING and isinstance(args[0], Relocated):  # x[[1, 2]]: the list becomes CPU indices
            args = (args[0], _lists_as_indices(args[1]), *args[2:])
        if func in self.MATMUL and len(args) == 2 and not kwargs and any(isinstance(a, Relocated) for a in args):
            # matmul with a vector runs an in-place squeeze_, which cannot reshape a wrapper: squeeze out of place
            a, b = args
            if a.dim() == 1 and b.dim() >= 2:
                return torch.matmul(a.unsqueeze(0), b).squeeze(-2)
            if b.dim() == 1 and a.dim() >= 2:
                return torch.matmul(a, b.unsqueeze(-1)).squeeze(-1)
        return func(*args, **kwargs)


def _lists_as_indices(index: Any) -> Any:
    if isinstance(index, tuple):
        return tuple(_lists_as_indices(i) for i in index)
    if isinstance(index, list) and all(isinstance(i, (int, bool, list)) for i in index):
        return torch.tensor(index, dtype=torch.long) if not index else torch.tensor(index)  # x[[]] selects nothing
    return index


_CpuGenerator = torch.Generator


class _Generator(torch.Generator):
    """`torch.Generator(device=...)` inside the block: one for the second device draws on the CPU but, like
    a CUDA generator, serves only that device."""

    def __new__(cls, device: torch.device | str = "cpu"):
        here = torch.device(device).type == DEVICE.type
        generator = super().__new__(cls, CPU if here else device)
        generator.on_second_device = here
        return generator

    def __init__(self, device: torch.device | str = "cpu"):
        pass


def _check_generator(kwargs: dict, on_device: bool) -> None:
    generator = kwargs.get("generator")
    if generator is not None and getattr(generator, "on_second_device", False) != on_device:
        wanted, found = (DEVICE, "cpu") if on_device else ("cpu", DEVICE)
        raise RuntimeError(f"Expected a '{wanted}' device type for generator but found '{found}' "
                           "(the second device stands in for a GPU)")


@contextlib.contextmanager
def _transformer_lens_reads_relocated_weights() -> Iterator[None]:
    """TransformerLens takes weights on the meta device for unloaded ones: it refuses to read them
    and stops moving inputs to the model's device, and loading a pretrained model onto meta loads
    no values. Relocated weights are real: tell it so, and load onto the CPU before moving."""
    try:
        from transformer_lens.model_bridge.bridge_core import BridgeCore
        from transformer_lens.utilities import quantization
    except ImportError:
        yield
        return
    from transformer_lens import TransformerBridge

    reason, input_device = quantization.unreadable_weight_reason, BridgeCore._input_device
    boot_transformers = TransformerBridge.__dict__["boot_transformers"]

    def unreadable_weight_reason(weight):
        return reason(weight.inner if isinstance(weight, Relocated) else weight)

    def _input_device(self):
        found = input_device(self)
        if found is None and any(isinstance(p, Relocated) for p in self._driver.parameters()):
            return DEVICE
        return found

    def boot_on_the_cpu_first(*args, device=None, **kwargs):  # loading straight onto meta loads no values
        if device is None or torch.device(device).type != DEVICE.type:
            return boot_transformers.__func__(*args, device=device, **kwargs)
        return boot_transformers.__func__(*args, device=CPU, **kwargs).to(DEVICE)

    quantization.unreadable_weight_reason, BridgeCore._input_device = unreadable_weight_reason, _input_device
    TransformerBridge.boot_transformers = staticmethod(boot_on_the_cpu_first)
    try:
        yield
    finally:
        quantization.unreadable_weight_reason, BridgeCore._input_device = reason, input_device
        TransformerBridge.boot_transformers = boot_transformers


@contextlib.contextmanager
def _generators_for_either_device() -> Iterator[None]:
    before = torch.Generator  # the blocks nest (check() inside a notebook on the stand-in)
    torch.Generator = _Generator
    try:
        yield
    finally:
        torch.Generator = before


@contextlib.contextmanager
def _modules_move_their_parameters_in_place() -> Iterator[None]:
    """`module.to(cuda)` keeps each Parameter object and swaps its data, so aliases of a parameter (as
    TransformerLens keeps) move with it. A Relocated tensor can't be swapped in as `.data`; swapping the
    tensors themselves keeps the objects, as on CUDA."""
    before = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(True)
    try:
        yield
    finally:
        torch.__future__.set_swap_module_params_on_conversion(before)


@contextlib.contextmanager
def second_device() -> Iterator[torch.device]:
    """Within the block, the device returned plays a GPU: see the module's docstring."""
    with (_CreateOnDevice(), _BuildOnDevice(), _transformer_lens_reads_relocated_weights(),
          _generators_for_either_device(), _modules_move_their_parameters_in_place()):
        yield DEVICE


def to_cpu(value: Any) -> Any:
    """`value` with every Relocated tensor inside replaced by its CPU tensor (for comparisons)."""
    return tree_map(lambda v: v.inner if isinstance(v, Relocated) else v, value)
