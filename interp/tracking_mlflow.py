"""`--log mlflow` (`interp.tracking`): the trainer's and the analysis's rows in an MLflow run.

Where: the tracking server or database MLFLOW_TRACKING_URI names, else a SQLite database
LOG_DIR/mlflow.db with the artifacts beside it in LOG_DIR/artifacts (MLflow 3 keeps its file
store in maintenance; `mlflow ui --backend-store-uri sqlite:///PATH` shows the database).
The run folder is the run's tag `interp.run_dir`: a resumed trainer finds its MLflow run by
it and goes on after the last step that run has (`LAST_STEP_TAG`), and an analysis adds its
columns to it.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from interp.tracking_rows import Hparams, event_texts, require, scalars

#: The tag holding the last step a training run sent (where a resumed run goes on).
LAST_STEP_TAG = "interp.last_step"


class MlflowTracker:
    """The same rows in an MLflow run: scalars as metrics at their step, events as text
    artifacts (events/step_NNNNNNNN.txt), the hyperparameters as params, the run folder as the
    tag `interp.run_dir` (how a resumed run and its analysis find the run again)."""

    def __init__(
        self,
        log_dir: Path,
        hparams: Hparams | None = None,
        *,
        run_dir: Path,
        name: str,
        group: str | None = None,
        job_type: str = "train",
    ):
        require("mlflow")
        self.log_dir, self.hparams, self.run_dir = Path(log_dir), hparams, Path(run_dir).resolve()
        self.name, self.group, self.job_type = name, group, job_type
        self._client = self._run_id = None
        self._finish = True
        self._sent = -1  # the last step the MLflow run has (a resumed run's)

    def _open(self, step: int) -> None:
        from mlflow.tracking import MlflowClient

        # Our own SQLite store unless the user names one (a server handles its own writers).
        local = not os.environ.get("MLFLOW_TRACKING_URI")
        uri = self._sqlite_uri() if local else os.environ["MLFLOW_TRACKING_URI"]
        with _store_lock(self.log_dir if local else None):
            # A new database's schema is created on the first connection: two sweep workers
            # doing that at once corrupt it, so they take turns (and for the experiment).
            self._client = client = MlflowClient(tracking_uri=uri)
            experiment = self._experiment(local)
        # A trainer starting past step 0 resumes; an analysis adds to the training run.
        found = self._training_run(experiment) if step > 0 or self.job_type != "train" else None
        if found is not None:
            self._run_id = found.info.run_id
            if self.job_type == "train":
                client.update_run(self._run_id, status="RUNNING")
                self._sent = int(found.data.tags.get(LAST_STEP_TAG, -1))
            else:
                self._finish = False  # the training run's status is the trainer's
            return
        tags = {"interp.run_dir": str(self.run_dir), "interp.job_type": self.job_type}
        if self.group:
            tags["interp.group"] = self.group
        self._run_id = client.create_run(experiment, run_name=self.name, tags=tags).info.run_id
        from mlflow.entities import Param

        params = [Param(k, str(v)) for k, v in (self.hparams() if self.hparams else {}).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            client.log_batch(self._run_id, params=params[i : i + 100])

    def _sqlite_uri(self) -> str:
        import logging

        # A new database's schema migration logs at INFO on stderr, through `-q`.
        for name in ("mlflow.store.db.utils", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.log_dir / 'mlflow.db').resolve()}"

    def _experiment(self, local: bool) -> str:
        from mlflow.exceptions import MlflowException

        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "interp")
        found = self._client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        # Artifacts beside the database (MLflow's default is ./mlruns in the working directory).
        location = (self.log_dir / "artifacts").resolve().as_uri() if local else None
        try:
            return self._client.create_experiment(name, artifact_location=location)
        except MlflowException:  # a sweep's other worker created it first
            return self._client.get_experiment_by_name(name).experiment_id

    def _training_run(self, experiment: str):
        folder = _literal(str(self.run_dir))
        if folder is None:
            return None
        runs = self._client.search_runs(
            [experiment],
            filter_string=f"tags.`interp.run_dir` = {folder} and tags.`interp.job_type` = 'train'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0] if runs else None

    def log_row(self, row: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric

        step = int(row["step"])
        if self._client is None:
            self._open(step)
        if step <= self._sent:
            return  # a resumed run repeats rows the killed one sent (resume is exact)
        stamp = int(time.time() * 1000)
        metrics = [Metric(metric_key(k), v, stamp, step) for k, v in scalars(row).items()]
        self._client.log_batch(self._run_id, metrics=metrics)
        texts = event_texts(row)
        if texts:
            self._client.log_text(self._run_id, "\n".join(texts), f"events/step_{step:08d}.txt")
        if self.job_type == "train":
            self._client.set_tag(self._run_id, LAST_STEP_TAG, str(step))

    def close(self) -> None:
        if self._client is not None and self._finish:
            self._client.set_terminated(self._run_id, "FINISHED")
        self._client = None


@contextmanager
def _store_lock(folder: Path | None):
    """Hold an exclusive lock on FOLDER/mlflow.db.lock (nothing without a folder)."""
    if folder is None:
        yield
        return
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "mlflow.db.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def metric_key(column: str) -> str:
    """A column name as an MLflow metric key (letters, digits, _ - . / and space)."""
    return re.sub(r"[^\w\-./ ]", "_", column)


def _literal(text: str) -> str | None:
    """`text` as a string in an MLflow search filter (None if it holds both quote marks)."""
    for quote in "'\"":
        if quote not in text:
            return f"{quote}{text}{quote}"
    return None
