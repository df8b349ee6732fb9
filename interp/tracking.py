"""Live tracking in the field's tools: TensorBoard, Weights & Biases or MLflow (optional
extras).

`interp train --log tensorboard|wandb|mlflow` (and `interp sweep run`) hands the trainer a
`Tracker`, which it calls with every metrics row right after the row is in metrics.jsonl
(`log_row`): the row's numbers as scalars at its step, its collapse events as text. The run's
config, flattened to `section.field` keys (plus a sweep run's axis values), is its
hyperparameters: TensorBoard's HParams view, wandb's config, MLflow's params. `interp analyze
--log` sends the analysis-only columns the same way (`for_analysis`).

The backends are imported when a tracker is made, never when this module is: `interp --help`
stays instant, and a missing extra is one line naming the pip install (`MissingExtra`, exit
code 2) before anything is written. Each backend's writer opens at the first row, after the
trainer has prepared the run folder (`overwrite` replaces the folder, so nothing may be in
its way before), and reads the hyperparameters from the run's config.json then, so a resumed
run needs no config here.

TensorBoard: event files in LOG_DIR (default RUN_DIR/tensorboard). A trainer's writer that
starts at step s first discards earlier events at steps >= s (`purge_step`), so a resumed
run's curves have no doubled tail. wandb: a run in LOG_DIR/wandb/ (default RUN_DIR/wandb/),
offline when no credentials are configured (WANDB_API_KEY unset and no netrc entry for the
wandb host; `wandb sync` uploads it later), online otherwise; WANDB_MODE overrides.

MLflow (`interp.tracking_mlflow`): a run in the store MLFLOW_TRACKING_URI names, else in a
SQLite database LOG_DIR/mlflow.db (default RUN_DIR/mlflow; a sweep's runs share
SWEEP_DIR/mlflow); a resumed run goes on in the same MLflow run, an analysis adds its columns
to it.
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from interp.tracking_rows import (  # noqa: F401 (LOG_KINDS: part of this module's interface)
    EVENTS_TAG,
    LOG_KINDS,
    Hparams,
    Scalar,
    event_texts,
    flatten,
    require,
    scalars,
)


class Tracker(Protocol):
    """Where the trainer sends each metrics row once it is on disk; the trainer closes it when
    its run ends (`Trainer.run`), so a tracker serves one run."""

    def log_row(self, row: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


def run_hparams(run_dir: Path, extra: Mapping[str, Scalar] | None = None) -> Hparams:
    """The run's config.json, flattened, then `extra` (a sweep run's axes), read when called."""

    def read() -> dict[str, Scalar]:
        from interp.runs import CONFIG_FILE, read_json

        return {**flatten(read_json(run_dir / CONFIG_FILE)), **flatten(extra or {})}

    return read


class TensorBoardTracker:
    """Scalars, events as text and the hyperparameters (HParams plugin) in TensorBoard event
    files. `purge`: the first row's step discards earlier events at later steps (a trainer's
    tracker; an analysis adds tags to the same folder and must not)."""

    def __init__(self, log_dir: Path, hparams: Hparams | None = None, *, purge: bool = True):
        self._module = require("tensorboard")
        self.log_dir, self.hparams, self.purge = Path(log_dir), hparams, purge
        self._writer = None

    def _open(self, step: int):
        writer = self._module.SummaryWriter(
            str(self.log_dir), purge_step=step if self.purge else None
        )
        if self.hparams is not None:
            from torch.utils.tensorboard.summary import hparams

            # Only the session's start: TensorBoard builds the experiment from every run's
            # start info and scalars, so a sweep's runs land in one HParams table.
            _, start, _ = hparams(dict(self.hparams()), {})
            writer._get_file_writer().add_summary(start)
        return writer

    def log_row(self, row: Mapping[str, Any]) -> None:
        step = int(row["step"])
        if self._writer is None:
            self._writer = self._open(step)
        for tag, value in scalars(row).items():
            self._writer.add_scalar(tag, value, step)
        for text in event_texts(row):
            self._writer.add_text(EVENTS_TAG, text, step)
        self._writer.flush()  # live: TensorBoard sees each checkpoint as it is written

    def close(self) -> None:
        if self._writer is None:
            return
        if self.hparams is not None:
            from torch.utils.tensorboard.summary import hparams

            _, _, end = hparams({}, {})  # status: success
            self._writer._get_file_writer().add_summary(end)
        self._writer.close()
        self._writer = None


def wandb_mode() -> str:
    """WANDB_MODE if set; else online with credentials (WANDB_API_KEY or a netrc entry for the
    wandb host), offline without (files only, no network)."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        found = netrc.netrc(os.environ.get("NETRC")).authenticators(host or "")
    except (OSError, netrc.NetrcParseError):
        found = None
    return "online" if found else "offline"


class WandbTracker:
    """The same rows as a wandb run (offline without credentials): scalars with `step=`, events
    under "events", the hyperparameters as its config."""

    def __init__(
        self,
        log_dir: Path,
        hparams: Hparams | None = None,
        *,
        name: str,
        group: str | None = None,
        job_type: str = "train",
    ):
        self._wandb = require("wandb")
        self.log_dir, self.hparams = Path(log_dir), hparams
        self.name, self.group, self.job_type = name, group, job_type
        self._run = None

    def _open(self):
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self._wandb.init(
            project=os.environ.get("WANDB_PROJECT", "interp"),
            dir=str(self.log_dir),
            name=self.name,
            group=self.group,
            job_type=self.job_type,
            config=dict(self.hparams()) if self.hparams is not None else None,
            mode=wandb_mode(),
            settings=self._wandb.Settings(console="off", silent=True),
        )

    def log_row(self, row: Mapping[str, Any]) -> None:
        if self._run is None:
            self._run = self._open()
        data: dict[str, Any] = dict(scalars(row))
        texts = event_texts(row)
        if texts:
            data[EVENTS_TAG] = "\n".join(texts)
        self._run.log(data, step=int(row["step"]))

    def close(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None
            # finish() can return before wandb's service has written the run's files, and the
            # atexit hook that waits for it does not run in multiprocessing workers (sweeps):
            # wait here, unless another wandb run of the caller's is still active.
            if self._wandb.run is None:
                self._wandb.teardown()


def default_log_dir(kind: str, run_dir: Path) -> Path:
    """RUN_DIR/tensorboard or RUN_DIR/mlflow; for wandb the run folder, in which wandb makes
    its own wandb/."""
    return run_dir if kind == "wandb" else run_dir / kind


def for_run(
    kind: str,
    run_dir: str | Path,
    *,
    log_dir: str | Path | None = None,
    extra_hparams: Mapping[str, Scalar] | None = None,
    group: str | None = None,
) -> Tracker:
    """The trainer's tracker of the run in `run_dir`: logs in `log_dir` (default
    `default_log_dir`), the run's config (and `extra_hparams`) as hyperparameters."""
    run_dir = Path(run_dir)
    log_dir = Path(log_dir) if log_dir is not None else default_log_dir(kind, run_dir)
    hparams = run_hparams(run_dir, extra_hparams)
    if kind == "wandb":
        return WandbTracker(log_dir, hparams, name=run_dir.name, group=group)
    if kind == "mlflow":
        from interp.tracking_mlflow import MlflowTracker

        return MlflowTracker(log_dir, hparams, run_dir=run_dir, name=run_dir.name, group=group)
    require(kind)  # an unknown kind: ValueError
    return TensorBoardTracker(log_dir, hparams)


def for_analysis(kind: str, run_dir: str | Path, *, log_dir: str | Path | None = None) -> Tracker:
    """`interp analyze --log`: the analysis-only columns beside the run's training curves
    (TensorBoard: the same folder, nothing purged; wandb: a run named after the training one,
    job type "analysis"; MLflow: the training run of the same folder in the same store)."""
    run_dir = Path(run_dir)
    log_dir = Path(log_dir) if log_dir is not None else default_log_dir(kind, run_dir)
    if kind == "wandb":
        return WandbTracker(log_dir, name=f"{run_dir.name} analysis", job_type="analysis")
    if kind == "mlflow":
        from interp.tracking_mlflow import MlflowTracker

        name = f"{run_dir.name} analysis"
        return MlflowTracker(log_dir, run_dir=run_dir, name=name, job_type="analysis")
    require(kind)
    return TensorBoardTracker(log_dir, purge=False)


def analysis_only(
    table: list[Mapping[str, Any]], metrics: list[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The analysis table's rows cut to the columns that metrics.jsonl does not have (and the
    step): what `interp analyze --log` adds to the training curves."""
    known = {key for row in metrics for key in row}
    return [
        {"step": row["step"], **{k: v for k, v in row.items() if k not in known}}
        for row in table
    ]
