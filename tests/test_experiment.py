"""Run folders: never clobber another run or unrelated files; no empty leftovers."""

import os

import numpy as np
import pytest

from jaxrl import experiment, logger
from jaxrl.config import ConfigError


def touch(path, text="x"):
    with open(path, "w") as f:
        f.write(text)


def test_refuses_a_folder_with_other_files(tmp_path):
    touch(tmp_path / "notes.txt")
    with pytest.raises(ConfigError, match="not a jaxrl run folder.*notes.txt"):
        experiment.prepare_out_dir(str(tmp_path))
    assert (tmp_path / "notes.txt").read_text() == "x"


def test_refuses_an_earlier_run_without_overwrite(tmp_path):
    touch(tmp_path / "metrics.jsonl", "{}\n")
    with pytest.raises(ConfigError, match="already holds a run"):
        experiment.prepare_out_dir(str(tmp_path))
    assert (tmp_path / "metrics.jsonl").read_text() == "{}\n"


def test_overwrite_removes_every_file_of_the_old_run(tmp_path):
    for name in experiment.RUN_FILES:
        touch(tmp_path / name)
    os.makedirs(tmp_path / "tensorboard")
    touch(tmp_path / "tensorboard" / "events.out.tfevents.1")
    experiment.prepare_out_dir(str(tmp_path), overwrite=True)
    assert os.listdir(tmp_path) == []


def test_a_folder_whose_run_never_trained_is_reused(tmp_path):
    touch(tmp_path / "config.json")  # e.g. interrupted while compiling
    experiment.prepare_out_dir(str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_metrics_file_is_created_with_the_first_chunk_and_never_appended_to(tmp_path):
    path = str(tmp_path / "metrics.jsonl")
    log = logger.JsonlLogger(path, steps_per_iteration=4)
    log.on_abort()  # stopped before training: nothing written
    assert not os.path.exists(path)
    log = logger.JsonlLogger(path, steps_per_iteration=4)
    log.on_chunk(0, {"loss/total": np.ones((2, 3))}, {})
    log.on_end(None)
    assert len(open(path).read().splitlines()) == 3
    other = logger.JsonlLogger(path, steps_per_iteration=4)
    with pytest.raises(FileExistsError):
        other.on_chunk(0, {"loss/total": np.ones((2, 1))}, {})
