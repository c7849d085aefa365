"""Run folders as one tidy table for analysis (`pandas`, the `results` extra).

`load(run_dirs)` reads each folder's `config.json`, `metrics.jsonl` and `timing.jsonl` into
a `pandas.DataFrame` with one row per (run, seed, iteration): `run`, `agent`, `env`,
`seed`, `iteration`, `env_steps`, `wall_time` (seconds since the run started, interpolated
within a chunk, as `jaxrl plot --x wall_time` draws it) and a column per metric.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from jaxrl.config import ConfigError
from jaxrl.plotting import load_curve
from jaxrl.logger import read_metrics


def _pandas():
    try:
        import pandas
    except ImportError:
        raise ConfigError("jaxrl.results needs pandas: pip install 'jaxrl[results]'") from None
    return pandas


def load(run_dirs: str | Sequence[str]):
    """One tidy `DataFrame` of every run's metrics (see the module docstring).

    A resumed run reads as one run (its files hold every iteration once); seeds are
    numbered from 0 within each run, offset by the run's base seed in `seed`.

    Raises:
      ConfigError: pandas is missing, or a folder is not a readable run folder.
    """
    pd = _pandas()
    frames = []
    for run_dir in [run_dirs] if isinstance(run_dirs, str) else list(run_dirs):
        wall_time, _ = load_curve(run_dir, "episode/return", "wall_time")  # checks the folder
        try:
            with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
                config = json.load(f)
            agent, env, base_seed = config["agent"], config["env"], config["run"]["seed"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{run_dir}/config.json is unreadable ({type(e).__name__}: "
                              f"{e})") from None
        steps, metrics = read_metrics(os.path.join(run_dir, "metrics.jsonl"))
        num_seeds, num_iterations = next(iter(metrics.values())).shape
        frame = pd.DataFrame({
            "run": run_dir, "agent": agent, "env": env,
            "seed": np.repeat(np.arange(num_seeds) + base_seed, num_iterations),
            "iteration": np.tile(np.arange(1, num_iterations + 1), num_seeds),
            "env_steps": np.tile(steps, num_seeds),
            "wall_time": np.tile(wall_time, num_seeds),
            **{name: values.reshape(-1) for name, values in metrics.items()}})
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
