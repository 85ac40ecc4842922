"""History and work queues: events, deployments, steps, leases and the status outbox.

Times are UNIX seconds (floats) so that lease arithmetic is the same on SQLite
and PostgreSQL; the API turns them into ISO 8601. State columns are plain
strings holding the values of the StrEnums that own them (`EventStatus`,
`DeploymentStatus`, `StepStatus`, `CommitState`), so rows written before those
existed read the same.
"""

from __future__ import annotations

from sqlalchemy import (
    ColumnElement,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from handlers.gitops.pipeline import HistoryStep


class Base(DeclarativeBase):
    pass


class Event(Base):
    """One webhook delivery, stored before it is acknowledged."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("forge", "delivery_id", name="uq_event_delivery"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    forge: Mapped[str] = mapped_column(String(16))
    event_name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))  # push | pull_request | <event name>
    delivery_id: Mapped[str] = mapped_column(String(128))
    received_at: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), index=True)  # EventStatus
    reason: Mapped[str | None] = mapped_column(Text)
    repository: Mapped[str | None] = mapped_column(String(255))
    clone_url: Mapped[str | None] = mapped_column(Text)
    ref: Mapped[str | None] = mapped_column(String(255))
    before: Mapped[str | None] = mapped_column(String(64))
    after: Mapped[str | None] = mapped_column(String(64))
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires: Mapped[float | None] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    processed_at: Mapped[float | None] = mapped_column(Float)

    deployments: Mapped[list[Deployment]] = relationship(back_populates="event")


class Deployment(Base):
    """One instance (or one plan-only run) for one commit."""

    __tablename__ = "deployments"
    __table_args__ = (
        UniqueConstraint("event_id", "key", name="uq_deployment_event_key"),
        # the overview's latest (and latest successful) deployment per instance: read from
        # the index alone, not from every row of the history
        Index("ix_deployments_latest", "mode", "key", "id"),
        Index("ix_deployments_latest_status", "mode", "status", "key", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), index=True)
    key: Mapped[str] = mapped_column(String(255), index=True)  # project/instance or plan/<ref>
    project: Mapped[str | None] = mapped_column(String(64))
    instance: Mapped[str | None] = mapped_column(String(64))
    context: Mapped[str] = mapped_column(String(255))
    mode: Mapped[str] = mapped_column(String(16))  # deploy | plan
    sha: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)  # DeploymentStatus
    action: Mapped[str | None] = mapped_column(String(32))
    summary: Mapped[str | None] = mapped_column(Text)
    digest: Mapped[str | None] = mapped_column(String(80))
    log: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)

    event: Mapped[Event] = relationship(back_populates="deployments")
    steps: Mapped[list[Step]] = relationship(back_populates="deployment", order_by="Step.id")

    @property
    def recoveries(self) -> list[str]:
        """What start-up recovery did to this deployment's swaps, oldest first."""
        return [s.log for s in self.steps if s.name == RECOVERED_STEP]


RECOVERED_STEP = "recovered"
"""The step that says what start-up recovery did to a deployment's swap (its log)."""


class Step(Base):
    """One journaled step of a deployment, with its timing and log."""

    __tablename__ = "steps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # StepStatus
    started_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    log: Mapped[str] = mapped_column(Text, default="")

    deployment: Mapped[Deployment] = relationship(back_populates="steps")

    @classmethod
    def of(cls, deployment_id: int, record: HistoryStep) -> Step:
        """The stored form of a step the pipeline or the swap journal recorded."""
        return cls(
            deployment_id=deployment_id,
            name=record.name,
            status=record.status,
            started_at=record.started_at,
            finished_at=record.finished_at,
            log=record.log,
        )


class Lease(Base):
    """A named lock that expires: one running deployment per instance key, and the
    `schedule` lease of the process that runs the backup scheduler."""

    __tablename__ = "leases"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[float] = mapped_column(Float)
    taken_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class StatusOutbox(Base):
    """A commit status waiting to reach the forge; retried with backoff until sent."""

    __tablename__ = "status_outbox"
    __table_args__ = (
        # the sender's "is there a newer status of this context" lookup
        Index("ix_status_outbox_context", "repository", "sha", "context"),
        # the sender's "what is due, oldest first" scans, over the waiting rows only: sent
        # and given-up rows are kept, and scanning them made every round cost O(history)
        Index(
            "ix_status_outbox_waiting",
            "id",
            "next_attempt_at",
            sqlite_where=text("sent_at IS NULL AND given_up = 0"),
            postgresql_where=text("sent_at IS NULL AND given_up = false"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    forge: Mapped[str] = mapped_column(String(16))
    repository: Mapped[str] = mapped_column(String(255))
    sha: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # CommitState
    context: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(140))
    target_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[float | None] = mapped_column(Float)
    given_up: Mapped[bool] = mapped_column(default=False)
    last_error: Mapped[str | None] = mapped_column(Text)

    @classmethod
    def waiting(cls) -> ColumnElement[bool]:
        """Not sent and not given up: the rows `ix_status_outbox_waiting` holds, written as
        its condition is, so that SQLite and PostgreSQL use the index."""
        return and_(cls.sent_at.is_(None), cls.given_up == false())
