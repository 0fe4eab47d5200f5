"""The life of a stored run record, shared by every command that stores one: open the store,
start the record, keep what finished if the run fails or is interrupted, finish it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console

from lowcomm.cost import Ledger
from lowcomm.report import RunStore, default_db_path


class Recording:
    """A run being recorded (or not, with `no_store`): `add_round` as the run goes, `finish` at
    the end with the summary; the ledger's events are stored either way."""

    def __init__(self, store: RunStore | None, run_id: int | None, ledger: Ledger) -> None:
        self.store, self.run_id, self.ledger = store, run_id, ledger

    def add_round(self, metrics: dict[str, Any]) -> None:
        if self.store is not None:
            self.store.add_round(self.run_id, metrics)

    def finish(self, summary: dict[str, Any], console: Console) -> None:
        if self.store is None:
            return
        self.store.finish(self.run_id, status="done", summary=summary,
                          events=self.ledger.to_rows())
        console.print(f"stored as run {self.run_id} in {self.store.path} "
                      f"(`lowcomm show {self.run_id}`, `lowcomm export {self.run_id}`)")


@contextmanager
def recording(*, db: str | None, no_store: bool, name: str | None, config: dict[str, Any],
              environment: dict[str, Any], console: Console,
              what: str = "rounds") -> Iterator[Recording]:
    """Start a record; on failure or interruption, store what finished (its `what` and the
    ledger) with status 'failed' or 'interrupted', say where, and re-raise."""
    store = None if no_store else RunStore(db or default_db_path())
    run_id = None if store is None else store.start(name=name, config=config,
                                                    environment=environment)
    rec = Recording(store, run_id, Ledger())
    try:
        yield rec
    except BaseException as err:
        if store is not None:
            status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
            store.finish(run_id, status=status, events=rec.ledger.to_rows(),
                         error=f"{type(err).__name__}: {err}")
            console.print(f"run {run_id} {status}; finished {what} and the ledger are stored "
                          f"in {store.path}")
        raise
    finally:
        if store is not None:
            store.close()
