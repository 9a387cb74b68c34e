"""The reference for the HTTP benchmark on PostgreSQL: the textbook async app.

The same model and endpoints as `bench/textbook_app.py`, written the way the async
tutorials write them: `async def` endpoints, an `AsyncSession` per request, asyncpg, the
engine's default pool, the tables created at start-up. Deliberately ordinary: it is the
yardstick, measured by the same load generator in the same run as the real service.
Run as `uvicorn bench.textbook_async_app:app` with TEXTBOOK_DATABASE_URL set.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict
from sqlalchemy import DateTime, String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

engine = create_async_engine(os.environ["TEXTBOOK_DATABASE_URL"])
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class Incident(Base):
    __tablename__ = "incidents"
    id: Mapped[int] = mapped_column(primary_key=True)
    description: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    source: Mapped[str] = mapped_column(String(32), default="operator")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=lambda: datetime.now(UTC)
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


class IncidentIn(BaseModel):
    description: str
    source: str = "operator"
    status: str = "open"


class StatusIn(BaseModel):
    status: str


class IncidentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    description: str
    status: str
    source: str
    created_at: datetime


async def get_db() -> AsyncIterator[AsyncSession]:
    async with SessionLocal() as db:
        yield db


DB = Annotated[AsyncSession, Depends(get_db)]


@app.post("/incidents", status_code=201, response_model=IncidentOut)
async def create_incident(body: IncidentIn, db: DB) -> Incident:
    incident = Incident(**body.model_dump())
    db.add(incident)
    await db.commit()
    await db.refresh(incident)
    return incident


@app.get("/incidents", response_model=list[IncidentOut])
async def list_incidents(
    db: DB, status: str | None = None, limit: int = 50, offset: int = 0
) -> list[Incident]:
    query = select(Incident)
    if status:
        query = query.where(Incident.status == status)
    result = await db.scalars(query.order_by(Incident.id.desc()).offset(offset).limit(limit))
    return list(result)


@app.patch("/incidents/{incident_id}/status", response_model=IncidentOut)
async def change_status(incident_id: int, body: StatusIn, db: DB) -> Incident:
    incident = await db.get(Incident, incident_id)
    if incident is None:
        raise HTTPException(404, f"Incident {incident_id} not found")
    incident.status = body.status
    await db.commit()
    await db.refresh(incident)
    return incident
