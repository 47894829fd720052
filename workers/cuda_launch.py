"""Loading a cubin and launching it through the CUDA driver (``cuda-bindings``), on torch's stream.

One launcher for every CUDA template: plain pointer-and-scalar kernels, and Hopper kernels that
take TMA tensor maps by value (built here with ``cuTensorMapEncodeTiled`` from the launch's
buffers) and run in thread-block clusters (``cuLaunchKernelEx`` with a cluster-dimension
attribute). Kernels run on torch's current stream, so torch's events and allocations order
correctly around them. Imported only where a GPU is used.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from cuda.bindings import driver

from tuner.kernel_templates.spec import Source, TensorMap

# Beyond this much dynamic shared memory a kernel must opt in (cuFuncSetAttribute).
_DEFAULT_DYNAMIC_SHARED = 48 * 1024
_SCALAR_TYPES = {"int32": ctypes.c_int32, "int64": ctypes.c_int64, "float32": ctypes.c_float,
                 "float64": ctypes.c_double}
_TENSOR_MAP_BYTES = 128
_SWIZZLE = {0: "CU_TENSOR_MAP_SWIZZLE_NONE", 32: "CU_TENSOR_MAP_SWIZZLE_32B", 64: "CU_TENSOR_MAP_SWIZZLE_64B",
            128: "CU_TENSOR_MAP_SWIZZLE_128B"}
_L2_PROMOTION = {0: "CU_TENSOR_MAP_L2_PROMOTION_NONE", 64: "CU_TENSOR_MAP_L2_PROMOTION_L2_64B",
                 128: "CU_TENSOR_MAP_L2_PROMOTION_L2_128B", 256: "CU_TENSOR_MAP_L2_PROMOTION_L2_256B"}
_OOB_FILL = {"zero": "CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE", "nan": "CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA"}
# torch dtype name -> tensor-map element type
_ELEMENT = {"float16": "FLOAT16", "bfloat16": "BFLOAT16", "float32": "FLOAT32", "float64": "FLOAT64",
            "int32": "INT32", "int64": "INT64", "uint8": "UINT8", "int8": "UINT8"}


class CudaDriverError(RuntimeError):
    """A driver call failed: a module that does not load, a bad tensor map, a faulting launch."""


def check(result: tuple[Any, ...]) -> Any:
    """The value(s) of a cuda-bindings call, or CudaDriverError with the driver's error name."""
    error, *values = result
    if error != driver.CUresult.CUDA_SUCCESS:
        _, name = driver.cuGetErrorName(error)
        raise CudaDriverError(name.decode() if isinstance(name, bytes) else str(error))
    return values[0] if len(values) == 1 else tuple(values)


@lru_cache(maxsize=64)
def _function(cubin: str, entry: str, shared_bytes: int) -> Any:
    check(driver.cuInit(0))
    image = Path(cubin).read_bytes()
    module = check(driver.cuModuleLoadData(image))
    function = check(driver.cuModuleGetFunction(module, entry.encode()))
    if shared_bytes > _DEFAULT_DYNAMIC_SHARED:
        attribute = driver.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        check(driver.cuFuncSetAttribute(function, attribute, shared_bytes))
    return function


def encode_tensor_map(spec: TensorMap, tensor: Any) -> ctypes.Array:
    """The 128 bytes of a CUtensorMap over ``tensor`` (last dimension contiguous) tiled by ``spec``."""
    rank = tensor.dim()
    if len(spec.box) != rank:
        raise ValueError(f"tensor map over {spec.buffer!r}: a box of rank {len(spec.box)} for a {rank}-d buffer")
    if tensor.stride(-1) != 1:
        raise ValueError(f"tensor map over {spec.buffer!r}: its last dimension must be contiguous")
    size = tensor.element_size()
    dims = [driver.cuuint64_t(tensor.shape[d]) for d in reversed(range(rank))]
    strides = [driver.cuuint64_t(tensor.stride(d) * size) for d in reversed(range(rank - 1))]
    dtype = str(tensor.dtype).removeprefix("torch.")
    element = getattr(driver.CUtensorMapDataType, "CU_TENSOR_MAP_DATA_TYPE_" + _ELEMENT[dtype])
    tensor_map = check(driver.cuTensorMapEncodeTiled(
        element, rank, tensor.data_ptr(), dims, strides, [driver.cuuint32_t(b) for b in spec.box],
        [driver.cuuint32_t(1)] * rank, driver.CUtensorMapInterleave.CU_TENSOR_MAP_INTERLEAVE_NONE,
        getattr(driver.CUtensorMapSwizzle, _SWIZZLE[spec.swizzle]),
        getattr(driver.CUtensorMapL2promotion, _L2_PROMOTION[spec.l2_promotion]),
        getattr(driver.CUtensorMapFloatOOBfill, _OOB_FILL[spec.oob_fill])))
    raw = (ctypes.c_uint8 * _TENSOR_MAP_BYTES)()
    ctypes.memmove(raw, tensor_map.getPtr(), _TENSOR_MAP_BYTES)
    return raw


def _config(source: Source, function: Any, stream: Any) -> Any:
    """The launch configuration: geometry, stream and cluster dims, the grid clamped to what fits
    the device at once when the kernel is persistent."""
    config = driver.CUlaunchConfig()
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
    grid = list(source.grid)
    if source.persistent:
        grid[0] = min(grid[0], resident_blocks(function, config, source))
    config.gridDimX, config.gridDimY, config.gridDimZ = grid
    return config


def resident_blocks(function: Any, config: Any, source: Source) -> int:
    """How many blocks of this launch the device holds at once (whole clusters of them)."""
    size = source.cluster[0] * source.cluster[1] * source.cluster[2]
    if size > 1:
        config.gridDimX, config.gridDimY, config.gridDimZ = source.grid
        return check(driver.cuOccupancyMaxActiveClusters(function, config)) * size
    per_sm = check(driver.cuOccupancyMaxActiveBlocksPerMultiprocessor(
        function, source.block[0] * source.block[1] * source.block[2], source.shared_bytes))
    device = check(driver.cuCtxGetDevice())
    sms = check(driver.cuDeviceGetAttribute(driver.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device))
    return per_sm * sms


class Launch:
    """Launches one kernel on fixed arguments, packed once, so a timed launch costs the host little;
    refresh inputs in place (``copy_``) to keep them valid. Raises CudaDriverError when it fails."""

    def __init__(self, function: Any, config: Any, values: list[Any]) -> None:
        self._function, self._config, self._values = function, config, values  # values own the storage
        self._pointers = (ctypes.c_void_p * len(values))(*(ctypes.addressof(value) for value in values))
        self._address = ctypes.addressof(self._pointers)

    @property
    def grid(self) -> tuple[int, int, int]:
        return self._config.gridDimX, self._config.gridDimY, self._config.gridDimZ

    def __call__(self) -> None:
        check(driver.cuLaunchKernelEx(self._config, self._function, self._address, 0))


def launcher(cubin: str, source: Source, inputs: Mapping[str, Any], out: Any) -> Launch:
    """The kernel of ``cubin`` on ``inputs`` (torch tensors by name) and ``out``, on torch's current
    stream: ``entry(*tensor maps, *inputs, out, *scalars)``. Raises CudaDriverError for a module
    that does not load, ValueError for a tensor map its buffer cannot carry."""
    import torch

    function = _function(cubin, source.entry, source.shared_bytes)
    buffers = {**inputs, "out": out}
    values: list[Any] = []
    for tensor_map in source.tensor_maps:
        if tensor_map.buffer not in buffers:
            raise ValueError(f"tensor map over {tensor_map.buffer!r}: no launch buffer of that name")
        values.append(encode_tensor_map(tensor_map, buffers[tensor_map.buffer]))
    values += [ctypes.c_void_p(buffer.data_ptr()) for buffer in buffers.values()]
    values += [_SCALAR_TYPES[kind](value) for kind, value in source.scalars]
    return Launch(function, _config(source, function, driver.CUstream(torch.cuda.current_stream().cuda_stream)),
                  values)
