"""Liveness: a constant answer that touches nothing (also the load test's baseline)."""

from __future__ import annotations

from fastapi import APIRouter

from .schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health()
