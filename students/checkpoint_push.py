"""Saved checkpoints handed out while training runs: pushed to the Hub as revisions (``student.push_checkpoints``)
and given to the checkpoint evaluator (``eval.on_checkpoints``), without the training loop waiting for either.

When the Trainer reports a save (``on_save``), the checkpoint's model files are hard-linked into a folder
of their own (a snapshot: free on disk, and it survives the Trainer deleting the checkpoint past
``save_total_limit``); the snapshot then goes to each consumer.  The pusher sends snapshots from one
background thread, in order, through :func:`distill.publish.hub.push_folder` (the final push's code:
only changed files, retried, the token scrubbed from every message and never written), to branch
``step-<N>``, records each result in ``train/checkpoint_pushes.json`` and deletes the snapshot once pushed.
A failed push is recorded and logged; it does not stop training.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import threading
from pathlib import Path
from typing import Any, Protocol

from distill.store import write_json_atomic

log = logging.getLogger(__name__)

ADAPTER_FILES = ("adapter_config.json",)  # a LoRA checkpoint: the adapters and their config
PUSHES_FILE = "checkpoint_pushes.json"


def checkpoint_revision(step: int) -> str:
    """The Hub branch a checkpoint is pushed to."""
    return f"step-{step}"


def snapshot_model(checkpoint: Path, dest: Path) -> Path | None:
    """Hard-link (copy, across filesystems) the checkpoint's model and tokenizer files into ``dest``; optimizer
    and scheduler states stay behind.  None when the checkpoint holds no weights in a loadable form (ZeRO-3 /
    FSDP shards until the final gather)."""
    from distill.publish.upload import MODEL_FILE_PATTERNS

    files = {p.name: p for pattern in (*MODEL_FILE_PATTERNS, *ADAPTER_FILES) for p in Path(checkpoint).glob(pattern)
             if p.is_file()}
    if not any(name.endswith(".safetensors") for name in files):
        log.warning("checkpoint %s has no *.safetensors weights; not handed out", checkpoint)
        return None
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, src in files.items():
        try:
            os.link(src, tmp / name)
        except OSError:
            shutil.copy2(src, tmp / name)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


class CheckpointConsumer(Protocol):
    """Something that takes each saved checkpoint: ``saved`` must return at once; ``finish`` waits for its work."""

    def saved(self, step: int, checkpoint: Path) -> None: ...

    def finish(self) -> None: ...


def handoff_callback(consumers: list[CheckpointConsumer]) -> Any:
    """A TrainerCallback giving each checkpoint the main process saves to every consumer, and waiting for
    them when training ends (the pushes of the last checkpoints finish before the stage does)."""
    from transformers import TrainerCallback

    class _Handoff(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                for consumer in consumers:
                    consumer.saved(state.global_step, checkpoint)

        def on_train_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                for consumer in consumers:
                    consumer.finish()

    return _Handoff()


class CheckpointPusher:
    """Pushes checkpoint snapshots to ``repo_id`` branch ``step-<N>`` from one background thread."""

    def __init__(self, repo_id: str, token: str, private: bool, train_dir: Path):
        self.repo_id, self.private = repo_id, private
        self._token = token  # in memory only: never written, scrubbed from every message
        self.work_dir = Path(train_dir) / "checkpoint_push"
        self.record_path = Path(train_dir) / PUSHES_FILE
        earlier = json.loads(self.record_path.read_text()) if self.record_path.is_file() else {}
        self.results: dict[str, Any] = dict(earlier.get("pushes") or {})  # a resumed run keeps its earlier pushes
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None

    def saved(self, step: int, checkpoint: Path) -> None:
        snapshot = snapshot_model(checkpoint, self.work_dir / checkpoint_revision(step))
        if snapshot is None:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="checkpoint-push", daemon=True)
            self._thread.start()
        self._queue.put((step, snapshot))

    def finish(self) -> None:
        """Wait for the queued pushes; idempotent."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            self._push(*item)

    def _push(self, step: int, snapshot: Path) -> None:
        from distill.publish import hub

        revision = checkpoint_revision(step)
        try:
            pushed = hub.push_folder(snapshot, self.repo_id, self._token, private=self.private, revision=revision,
                                     commit_message=f"checkpoint at step {step}")
            result: dict[str, Any] = {"step": step, "revision": revision, "commit": pushed["commit"],
                                      "uploaded": len(pushed["uploaded"]), "skipped": len(pushed["skipped"])}
            shutil.rmtree(snapshot, ignore_errors=True)
            log.info("checkpoint at step %d pushed to %s@%s", step, self.repo_id, revision)
        except Exception as exc:  # noqa: BLE001 -- a failed checkpoint push is recorded; training goes on
            message = hub.scrub(f"{type(exc).__name__}: {exc}", self._token)
            result = {"step": step, "revision": revision, "error": message}
            log.warning("checkpoint at step %d not pushed to %s@%s: %s", step, self.repo_id, revision, message)
        self.results[revision] = result
        write_json_atomic(self.record_path, {"repo_id": self.repo_id, "pushes": self.results})
