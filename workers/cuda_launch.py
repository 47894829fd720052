"""Loading a cubin and launching its kernel through the CUDA driver (``cuda-bindings``): the one
CUDA launcher, used by the measuring workers and by :mod:`tuner.runtime`.

Every CUDA template launches here: plain pointer-and-scalar kernels, and Hopper kernels that take
TMA tensor maps by value (built with ``cuTensorMapEncodeTiled`` from the launch's buffers), run in
thread-block clusters (a cluster-dimension attribute of ``cuLaunchKernelEx``), when
persistent, start no more blocks than the device holds at once, and may ask for a workspace
(``Source.workspace_bytes`` a block: zeroed global memory, one per stream, passed after the
buffers). A :class:`Kernel` does the work
once: the module loaded into the GPU's primary context (the one torch uses), the launch
configuration, and the argument block of each set of buffers it is given (tensor maps, addresses,
scalars), kept, so a launch on buffers seen before (the caching allocator hands the same
addresses back) is a dict lookup and the driver call. Launches go to the stream the caller
passes (torch's current one), so they order with torch's work and are captured into CUDA
graphs. Imports no compiler: an exported bundle's cubins run where no toolkit is installed.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from cuda.bindings import driver

from tuner.kernel_templates.spec import Source, TensorMap

# Beyond this much dynamic shared memory a kernel must opt in (cuFuncSetAttribute).
_DEFAULT_DYNAMIC_SHARED = 48 * 1024
_SCALAR_TYPES = {"int32": ctypes.c_int32, "int64": ctypes.c_int64, "float32": ctypes.c_float,
                 "float64": ctypes.c_double}
_TENSOR_MAP_BYTES = 128
_TMA_ALIGN = 16  # bytes: a tensor map's global address and strides are multiples of this
_SWIZZLE = {0: "CU_TENSOR_MAP_SWIZZLE_NONE", 32: "CU_TENSOR_MAP_SWIZZLE_32B", 64: "CU_TENSOR_MAP_SWIZZLE_64B",
            128: "CU_TENSOR_MAP_SWIZZLE_128B"}
_L2_PROMOTION = {0: "CU_TENSOR_MAP_L2_PROMOTION_NONE", 64: "CU_TENSOR_MAP_L2_PROMOTION_L2_64B",
                 128: "CU_TENSOR_MAP_L2_PROMOTION_L2_128B", 256: "CU_TENSOR_MAP_L2_PROMOTION_L2_256B"}
_OOB_FILL = {"zero": "CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE", "nan": "CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA"}
# torch dtype name -> tensor-map element type
_ELEMENT = {"float16": "FLOAT16", "bfloat16": "BFLOAT16", "float32": "FLOAT32", "float64": "FLOAT64",
            "int32": "INT32", "int64": "INT64", "uint8": "UINT8", "int8": "UINT8",
            "float8_e4m3fn": "UINT8"}  # TMA moves FP8 as bytes
# Argument blocks (one per set of buffer addresses) and launch configurations (one per stream) a
# Kernel keeps; beyond these the oldest goes.
_KEPT = 64
_SUCCESS = driver.CUresult.CUDA_SUCCESS
_NO_CONTEXT = driver.CUresult.CUDA_ERROR_INVALID_CONTEXT


class CudaDriverError(RuntimeError):
    """A driver call failed: a module that does not load, a bad tensor map, a faulting launch."""


def check(result: tuple[Any, ...]) -> Any:
    """The value(s) of a cuda-bindings call, or CudaDriverError with the driver's error name."""
    error, *values = result
    if error != _SUCCESS:
        _, name = driver.cuGetErrorName(error)
        raise CudaDriverError(name.decode() if isinstance(name, bytes) else str(error))
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


@cache
def primary_context(device_index: int) -> Any:
    """The primary context of a GPU: the one the CUDA runtime, and so torch, works in."""
    check(driver.cuInit(0))
    return check(driver.cuDevicePrimaryCtxRetain(check(driver.cuDeviceGet(device_index))))


@cache
def _function(cubin: str, entry: str, shared_bytes: int, device_index: int) -> Any:
    """The kernel ``entry`` of a cubin file, loaded once into the GPU's primary context (current
    while the caller holds it); its module stays loaded for the process."""
    module = check(driver.cuModuleLoadData(Path(cubin).read_bytes()))
    function = check(driver.cuModuleGetFunction(module, entry.encode()))
    if shared_bytes > _DEFAULT_DYNAMIC_SHARED:
        attribute = driver.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        try:
            check(driver.cuFuncSetAttribute(function, attribute, shared_bytes))
        except CudaDriverError as exc:
            message = f"{exc}: {_shared_refusal(function, entry, shared_bytes, device_index)}"
            driver.cuModuleUnload(module)
            raise CudaDriverError(message) from None
    return function


def _shared_refusal(function: Any, entry: str, shared_bytes: int, device_index: int) -> str:
    """Why the driver refuses a kernel's dynamic shared memory, in numbers: the dynamic and the
    static bytes together must be within what a block may opt in to."""
    static = check(driver.cuFuncGetAttribute(driver.CUfunction_attribute.CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES,
                                             function))
    limit = device_limits(device_index)["max_shared_bytes"]
    return (f"{entry} asks for {shared_bytes} bytes of dynamic shared memory and has {static} static; a block "
            f"on this GPU may have {limit} in all (a config checked for another problem or device?)")


def device_limits(device_index: int) -> dict[str, int]:
    """A GPU's limits as templates' ``check`` reads them, from the driver."""
    check(driver.cuInit(0))
    device = check(driver.cuDeviceGet(device_index))
    names = {"max_shared_bytes": "MAX_SHARED_MEMORY_PER_BLOCK_OPTIN",
             "max_shared_bytes_per_sm": "MAX_SHARED_MEMORY_PER_MULTIPROCESSOR",
             "max_threads_per_block": "MAX_THREADS_PER_BLOCK", "sm_count": "MULTIPROCESSOR_COUNT"}
    return {key: check(driver.cuDeviceGetAttribute(getattr(driver.CUdevice_attribute, f"CU_DEVICE_ATTRIBUTE_{name}"),
                                                   device))
            for key, name in names.items()}


def encode_tensor_map(spec: TensorMap, tensor: Any) -> ctypes.Array:
    """The 128 bytes of a CUtensorMap over ``tensor`` (last dimension contiguous) tiled by ``spec``.
    ValueError for a buffer TMA cannot read (layout or alignment)."""
    rank = tensor.dim()
    if len(spec.box) != rank:
        raise ValueError(f"tensor map over {spec.buffer!r}: a box of rank {len(spec.box)} for a {rank}-d buffer")
    if tensor.stride(-1) != 1:
        raise ValueError(f"tensor map over {spec.buffer!r}: its last dimension must be contiguous")
    size = tensor.element_size()
    strides = [tensor.stride(d) * size for d in reversed(range(rank - 1))]
    if tensor.data_ptr() % _TMA_ALIGN or any(stride % _TMA_ALIGN for stride in strides):
        raise ValueError(f"tensor map over {spec.buffer!r}: its address and row strides must be multiples of "
                         f"{_TMA_ALIGN} bytes")
    dims = [driver.cuuint64_t(tensor.shape[d]) for d in reversed(range(rank))]
    dtype = str(tensor.dtype).removeprefix("torch.")
    element = getattr(driver.CUtensorMapDataType, "CU_TENSOR_MAP_DATA_TYPE_" + _ELEMENT[dtype])
    tensor_map = check(driver.cuTensorMapEncodeTiled(
        element, rank, tensor.data_ptr(), dims, [driver.cuuint64_t(s) for s in strides],
        [driver.cuuint32_t(b) for b in spec.box], [driver.cuuint32_t(1)] * rank,
        driver.CUtensorMapInterleave.CU_TENSOR_MAP_INTERLEAVE_NONE,
        getattr(driver.CUtensorMapSwizzle, _SWIZZLE[spec.swizzle]),
        getattr(driver.CUtensorMapL2promotion, _L2_PROMOTION[spec.l2_promotion]),
        getattr(driver.CUtensorMapFloatOOBfill, _OOB_FILL[spec.oob_fill])))
    raw = (ctypes.c_uint8 * _TENSOR_MAP_BYTES)()
    ctypes.memmove(raw, tensor_map.getPtr(), _TENSOR_MAP_BYTES)
    return raw


def _launch_config(source: Source, grid: Sequence[int], stream: int) -> Any:
    """A launch configuration: geometry, shared memory, stream and cluster dims."""
    config = driver.CUlaunchConfig()
    config.gridDimX, config.gridDimY, config.gridDimZ = grid
    config.blockDimX, config.blockDimY, config.blockDimZ = source.block
    config.sharedMemBytes = source.shared_bytes
    config.hStream = stream
    cluster = tuple(source.cluster)
    if cluster != (1, 1, 1):
        attribute = driver.CUlaunchAttribute()
        attribute.id = driver.CUlaunchAttributeID.CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION
        attribute.value.clusterDim.x, attribute.value.clusterDim.y, attribute.value.clusterDim.z = cluster
        config.attrs = [attribute]
        config.numAttrs = 1
    return config


def resident_blocks(function: Any, source: Source) -> int:
    """How many blocks of this launch the device holds at once (whole clusters of them)."""
    size = source.cluster[0] * source.cluster[1] * source.cluster[2]
    if size > 1:
        return check(driver.cuOccupancyMaxActiveClusters(function, _launch_config(source, source.grid, 0))) * size
    per_sm = check(driver.cuOccupancyMaxActiveBlocksPerMultiprocessor(
        function, source.block[0] * source.block[1] * source.block[2], source.shared_bytes))
    device = check(driver.cuCtxGetDevice())
    sms = check(driver.cuDeviceGetAttribute(driver.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device))
    return per_sm * sms


class Kernel:
    """The kernel of one cubin for one rendered :class:`Source`, on one GPU, ready to launch on
    buffers (torch tensors in the kernel's order: inputs, then ``out``, named by ``names`` for
    the tensor maps) of the shapes it was rendered for: ``entry(*tensor maps, *buffers, *scalars)``,
    or with a workspace ``entry(*tensor maps, *buffers, workspace, *scalars)``.

    A workspace (``source.workspace_bytes`` times the launched grid's blocks) is allocated once per
    stream, from torch's caching allocator on that stream, and zeroed there (an ordinary async
    memset: made during a CUDA-graph capture, the graph zeroes it before its launch); the kernel
    leaves it zeroed for the next launch on that stream, so launches on one stream share it and
    launches on different streams never do. It lives as long as the Kernel.

    Thread-safe: the argument blocks and configurations it keeps never change once made (the
    driver copies arguments at launch); making one takes a lock. Raises CudaDriverError for a
    module that does not load or a launch the driver refuses, ValueError for a buffer a tensor
    map cannot carry (its layout, or an address TMA cannot read)."""

    def __init__(self, cubin: str | Path, source: Source, names: Sequence[str], device_index: int):
        import torch

        self.source, self.device_index = source, device_index
        self._current_device = torch._C._cuda_getDevice
        self._address = torch.Tensor.data_ptr  # mapped over the buffers with no Python frame
        self._context = primary_context(device_index)
        with _Pushed(self._context):
            self._function = _function(str(cubin), source.entry, source.shared_bytes, device_index)
            grid = list(source.grid)
            if source.persistent:
                grid[0] = min(grid[0], resident_blocks(self._function, source))
        self.grid: tuple[int, int, int] = (grid[0], grid[1], grid[2])
        names = list(names)
        missing = [m.buffer for m in source.tensor_maps if m.buffer not in names]
        if missing:
            raise ValueError(f"tensor map over {missing[0]!r}: no launch buffer of that name")
        self._maps = [(m, names.index(m.buffer)) for m in source.tensor_maps]
        self._scalars = [_SCALAR_TYPES[kind](value) for kind, value in source.scalars]
        self._arguments: dict[tuple[Any, ...], tuple[int, list[Any]]] = {}
        self._configs: dict[int, Any] = {}
        self._workspaces: dict[int, int] = {}  # stream -> address (kept for the Kernel's life)
        self._lock = threading.Lock()
        # not at exit: the process's memory goes with it, and torch may be gone by then
        weakref.finalize(self, _free_workspaces, self._workspaces, device_index).atexit = False

    def launch(self, buffers: Sequence[Any], stream: int) -> None:
        """Enqueues one launch on ``buffers`` on ``stream`` (a raw ``cudaStream_t``); returns at
        once, without synchronizing. The buffers must stay alive until it returns."""
        key = tuple(map(self._address, buffers))
        if self._maps:  # a tensor map holds its buffer's strides too
            key += tuple([buffers[i].stride() for _, i in self._maps])
        if self.source.workspace_bytes:  # the stream's own workspace
            key += (stream,)
        arguments = self._arguments.get(key)
        if arguments is None:
            arguments = self._pack(key, buffers, stream)
        config = self._configs.get(stream)
        if config is None:
            config = self._configure(stream)
        if self._current_device() != self.device_index:  # torch works on another GPU in this thread
            with _Pushed(self._context):
                check(driver.cuLaunchKernelEx(config, self._function, arguments[0], 0))
            return
        error = driver.cuLaunchKernelEx(config, self._function, arguments[0], 0)[0]
        if error != _SUCCESS:
            self._failed(error, config, arguments[0])

    def arguments(self, buffers: Sequence[Any], stream: int) -> int:
        """The address of the packed argument block for ``buffers`` launched on ``stream`` (made now
        if new)."""
        key = tuple(map(self._address, buffers)) + tuple([buffers[i].stride() for _, i in self._maps])
        if self.source.workspace_bytes:
            key += (stream,)
        arguments = self._arguments.get(key)
        return (arguments or self._pack(key, buffers, stream))[0]

    def config(self, stream: int) -> Any:
        """The launch configuration (a ``CUlaunchConfig``) on ``stream``."""
        config = self._configs.get(stream)
        return config if config is not None else self._configure(stream)

    @property
    def function(self) -> Any:
        return self._function

    def _pack(self, key: tuple[Any, ...], buffers: Sequence[Any], stream: int) -> tuple[int, list[Any]]:
        values: list[Any] = [encode_tensor_map(spec, buffers[i]) for spec, i in self._maps]
        values += [ctypes.c_void_p(buffer.data_ptr()) for buffer in buffers]
        if self.source.workspace_bytes:
            values.append(ctypes.c_void_p(self._workspace(stream)))
        values += self._scalars
        pointers = (ctypes.c_void_p * len(values))(*(ctypes.addressof(value) for value in values))
        values.append(pointers)  # the block owns its storage
        arguments = (ctypes.addressof(pointers), values)
        with self._lock:
            _keep(self._arguments, key, arguments)
        return arguments

    def _workspace(self, stream: int) -> int:
        """The address of ``stream``'s workspace, allocated and zeroed on it the first time."""
        with self._lock:
            address = self._workspaces.get(stream)
            if address is None:
                import torch

                size = self.source.workspace_bytes * self.grid[0] * self.grid[1] * self.grid[2]
                address = torch.cuda.caching_allocator_alloc(size, self.device_index, stream)
                with _Pushed(self._context):
                    check(driver.cuMemsetD8Async(address, 0, size, stream))
                self._workspaces[stream] = address
            return address

    def _configure(self, stream: int) -> Any:
        config = _launch_config(self.source, self.grid, stream)
        with self._lock:
            _keep(self._configs, stream, config)
        return config

    def _failed(self, error: Any, config: Any, arguments: int) -> None:
        if error == _NO_CONTEXT:  # a thread that has used no GPU yet: bind it to ours, as torch would
            check(driver.cuCtxSetCurrent(self._context))
            check(driver.cuLaunchKernelEx(config, self._function, arguments, 0))
            return
        check((error,))


class _Pushed:
    """The context made current for a block, and the caller's given back after it."""

    def __init__(self, context: Any):
        self._context = context

    def __enter__(self) -> None:
        check(driver.cuCtxPushCurrent(self._context))

    def __exit__(self, *exc: object) -> None:
        driver.cuCtxPopCurrent()


def _free_workspaces(workspaces: dict[int, int], device_index: int) -> None:
    """Gives a Kernel's workspaces back to torch's caching allocator (its finalizer)."""
    import torch

    with torch.cuda.device(device_index):
        for address in workspaces.values():
            torch.cuda.caching_allocator_delete(address)


def _keep(kept: dict[Any, Any], key: Any, value: Any) -> None:
    """Stores ``value`` under ``key``, the oldest entry dropped beyond _KEPT (caller holds the lock)."""
    if len(kept) >= _KEPT:
        del kept[next(iter(kept))]
    kept[key] = value


class Launch:
    """Launches one kernel on fixed buffers on a fixed stream, packed once, so a timed launch
    costs the host little; refresh inputs in place (``copy_``) to keep them valid. Raises
    CudaDriverError when it fails."""

    def __init__(self, kernel: Kernel, buffers: Sequence[Any], stream: int) -> None:
        self._buffers = list(buffers)  # keeps the tensors alive for the block's addresses
        self._kernel = kernel  # keeps the module's function and the argument block's storage alive
        self._config = kernel.config(stream)
        self._function, self._arguments = kernel.function, kernel.arguments(self._buffers, stream)
        self.grid = kernel.grid

    def __call__(self) -> None:
        check(driver.cuLaunchKernelEx(self._config, self._function, self._arguments, 0))


def launcher(cubin: str, source: Source, inputs: Mapping[str, Any], out: Any) -> Launch:
    """The kernel of ``cubin`` on ``inputs`` (torch tensors by name) and ``out``, on torch's current
    stream and device: ``entry(*tensor maps, *inputs, out, *scalars)``. Raises CudaDriverError for
    a module that does not load, ValueError for a tensor map its buffer cannot carry."""
    import torch

    names = [*inputs, "out"]
    kernel = Kernel(cubin, source, names, torch.cuda.current_device())
    return Launch(kernel, [*inputs.values(), out], torch.cuda.current_stream().cuda_stream)
