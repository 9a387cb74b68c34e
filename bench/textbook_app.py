"""The reference for the HTTP benchmark on SQLite: the implementation this task usually gets.

FastAPI with plain `def` endpoints (run in the thread pool), a synchronous SQLAlchemy
session per request, SQLite with its default settings. Deliberately ordinary: it is the
yardstick, measured by the same load generator in the same run as the real service.
Run as `uvicorn bench.textbook_app:app` with TEXTBOOK_DATABASE_URL set. On PostgreSQL the
reference is its async twin, `bench/textbook_async_app.py`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict
from sqlalchemy import DateTime, String, Text, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

engine = create_engine(
    os.environ.get("TEXTBOOK_DATABASE_URL", "sqlite:///textbook.db"),
    connect_args={"check_same_thread": False},
)
SessionLocal = sessionmaker(bind=engine)


class Base(DeclarativeBase):
    pass


class Incident(Base):
    __tablename__ = "incidents"
    id: Mapped[int] = mapped_column(primary_key=True)
    description: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    source: Mapped[str] = mapped_column(String(32), default="operator")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=lambda: datetime.now(UTC))


Base.metadata.create_all(engine)
app = FastAPI()


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


def get_db() -> Iterator[Session]:
    db = SessionLocal()
    try:
        yield db
    finally:
        db.close()


DB = Annotated[Session, Depends(get_db)]


@app.post("/incidents", status_code=201, response_model=IncidentOut)
def create_incident(body: IncidentIn, db: DB) -> Incident:
    incident = Incident(**body.model_dump())
    db.add(incident)
    db.commit()
    db.refresh(incident)
    return incident


@app.get("/incidents", response_model=list[IncidentOut])
def list_incidents(
    db: DB, status: str | None = None, limit: int = 50, offset: int = 0
) -> list[Incident]:
    query = db.query(Incident)
    if status:
        query = query.filter(Incident.status == status)
    return query.order_by(Incident.id.desc()).offset(offset).limit(limit).all()


@app.patch("/incidents/{incident_id}/status", response_model=IncidentOut)
def change_status(incident_id: int, body: StatusIn, db: DB) -> Incident:
    incident = db.get(Incident, incident_id)
    if incident is None:
        raise HTTPException(404, f"Incident {incident_id} not found")
    incident.status = body.status
    db.commit()
    db.refresh(incident)
    return incident
