"""Run folders: never clobber another run or unrelated files; no empty leftovers."""

import json
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


def test_overwrite_removes_checkpoints_and_timing_too(tmp_path):
    touch(tmp_path / "metrics.jsonl", "{}\n")
    touch(tmp_path / "timing.jsonl", "{}\n")
    os.makedirs(tmp_path / "checkpoints" / "4")
    touch(tmp_path / "checkpoints" / "4" / "_CHECKPOINT_METADATA")
    experiment.prepare_out_dir(str(tmp_path), overwrite=True)
    assert os.listdir(tmp_path) == []


def rows_text(iterations):
    return "".join(f'{{"iteration":{i},"env_steps":{4 * i},"loss/total":[{i}.5]}}\n'
                   for i in iterations)


def test_truncate_keeps_the_rows_up_to_the_checkpoint_byte_for_byte(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(rows_text(range(1, 6)) + '{"iteration":6,"env_st')  # torn by a crash
    rows = logger.truncate_jsonl(str(path), 3)
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    assert path.read_text() == rows_text(range(1, 4))
    assert not (tmp_path / "metrics.jsonl.tmp").exists()
    # Appending continues the file as an uninterrupted run would have written it.
    log = logger.JsonlLogger(str(path), steps_per_iteration=4, append=True)
    log.on_chunk(3, {"loss/total": np.array([[4.5, 5.5]])}, {})
    log.on_end(None)
    assert path.read_text() == rows_text(range(1, 6))


def test_truncate_refuses_a_log_with_missing_rows(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(rows_text([1, 2, 4]))
    with pytest.raises(ConfigError, match=r"iterations 1\.\.3.*cannot resume"):
        logger.truncate_jsonl(str(path), 3)
    assert path.read_text() == rows_text([1, 2, 4])  # untouched
    path.write_text(rows_text([1]) + "garbage\n" + rows_text([2, 3]))
    with pytest.raises(ConfigError, match="line 2 is not a log row"):
        logger.truncate_jsonl(str(path), 3)


def test_truncate_of_a_sparse_log_keeps_chunk_rows(tmp_path):
    path = tmp_path / "timing.jsonl"
    path.write_text('{"iteration":2,"wall_time_s":1.5}\n{"iteration":4,"wall_time_s":2.5}\n')
    rows = logger.truncate_jsonl(str(path), 3, every_iteration=False)
    assert rows == [{"iteration": 2, "wall_time_s": 1.5}]
    assert logger.truncate_jsonl(str(tmp_path / "absent.jsonl"), 2, every_iteration=False) == []


def test_timing_logger_adds_the_earlier_wall_time(tmp_path):
    path = tmp_path / "timing.jsonl"
    timing = logger.TimingLogger(str(path), offset_s=10.0)
    timing.on_chunk(0, {}, {"iteration": 2, "wall_time_s": 1.25})
    timing.on_end(None)
    row = json.loads(path.read_text())
    assert (row["iteration"], row["wall_time_s"]) == (2, 11.25)
