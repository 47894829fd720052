"""The kernels the server knows and their parameter spaces."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from tuner.service import Service

from .deps import get_service
from .schemas import KernelOut

router = APIRouter(tags=["kernels"])


@router.get("/kernels", response_model=list[KernelOut])
def kernels(service: Annotated[Service, Depends(get_service)]) -> list[KernelOut]:
    return [KernelOut.model_validate(info) for info in service.kernels()]
