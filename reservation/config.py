"""One settings class, read from the environment (prefix ``RESERVATION_``) and flags."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reservation.store.link import target_for

DEV_SECRET_FILE = "dev-secret-key"


class Settings(BaseSettings):
    """Everything configurable about a front end, its actors and its store."""

    model_config = SettingsConfigDict(env_prefix="RESERVATION_", extra="ignore", frozen=True)

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path("var")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; defaults to an SQLite file in data_dir",
    )
    ray_address: str | None = Field(
        default=None,
        validation_alias=AliasChoices("RESERVATION_RAY_ADDRESS", "RAY_ADDRESS"),
        description="Ray cluster to join; unset starts a local Ray",
    )
    ray_namespace: str = "reservation"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=256)
    secret_key: SecretStr | None = None
    token_ttl_s: int = Field(default=12 * 3600, ge=60)

    hold_ttl_s: float = Field(default=600.0, gt=0)
    max_queue_per_event: int = Field(default=20_000, ge=1)
    max_batch: int = Field(default=2_000, ge=1)
    # Serve the hot routes beneath FastAPI (see reservation/api/hot.py).
    hot_routes: bool = True
    # Send the writes a connection makes in one loop pass as one (reservation/api/http.py).
    coalesce_writes: bool = True
    # Actor calls in flight per event and front-end process (see actors/gateway.py).
    calls_in_flight: int = Field(default=8, ge=1, le=64)
    # How booking commands reach the actors: over each actor's own channel (direct)
    # or as Ray actor calls (ray); see actors/channel.py.
    actor_transport: Literal["direct", "ray"] = "direct"
    actor_call_timeout_s: float = Field(default=10.0, gt=0)
    actor_idle_s: float = Field(default=900.0, gt=0)
    # Ray memory each event actor reserves, in MiB: a node runs at most its memory
    # resource / this many event actors, and the rest wait for room (0: no reservation).
    actor_memory_mb: int = Field(default=200, ge=0)
    # While the cluster has no room for another event actor, an actor idle this long
    # (and holding no open holds) stops early, making room for one that waits.
    actor_idle_when_full_s: float = Field(default=60.0, gt=0)
    retry_after_s: int = Field(default=1, ge=1)

    max_items_per_order: int = Field(default=10, ge=1, le=100)
    max_attendees_per_item: int = Field(default=20, ge=1, le=1000)
    max_page_size: int = Field(default=100, ge=1, le=1000)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    read_cache_ttl_s: float = Field(default=1.0, ge=0)
    db_pool_size: int = Field(default=10, ge=1)
    # How long a front end keeps an idle client connection open. Longer than the idle
    # timeout of a load balancer in front (60 s on common ones), so that the balancer,
    # not the server, closes it: a server that closes first races the balancer's (or a
    # pooled client's) next request on that connection, which then fails unanswered.
    keep_alive_s: int = Field(default=75, ge=1)

    @model_validator(mode="after")
    def _production_needs_a_secret(self) -> Settings:
        if self.environment == "production" and self.secret_key is None:
            raise ValueError("RESERVATION_SECRET_KEY must be set in production")
        return self

    @model_validator(mode="after")
    def _store_the_actors_reach(self) -> Settings:
        # The event actors connect with the drivers alone (reservation/store/link.py):
        # a URL they cannot use is refused here, at start, not at the first booking.
        target_for(self.store_url)
        return self

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def store_url(self) -> str:
        """The database URL in force (absolute SQLite path: actors run elsewhere)."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.resolved_data_dir / 'reservation.db'}"

    def signing_key(self) -> str:
        """The token signing key; in development one is made once and kept in data_dir."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.resolved_data_dir / DEV_SECRET_FILE
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            candidate = secrets.token_urlsafe(48)
            try:
                with path.open("x") as fh:  # first writer wins; the others read its key
                    fh.write(candidate)
                os.chmod(path, 0o600)
            except FileExistsError:
                pass
            return path.read_text().strip()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
