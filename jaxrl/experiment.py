"""A run folder: train an agent over seeds and write config, metrics, curve and summary.

This is what `jaxrl train` does, as a function notebooks can call too. The folder holds
`config.json` (agent, env, config, hparams, run options, library versions),
`metrics.jsonl` (per iteration, per seed), `learning_curve.png` and `summary.json`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
from importlib import metadata
from typing import Any

import jax
import numpy as np

from jaxrl import rollout, runner
from jaxrl.config import ConfigError, to_dict
from jaxrl.logger import (FINAL_RETURN_SOURCE, JsonlLogger, Progress, TensorBoardLogger,
                          final_returns, print_summary)
from jaxrl.plotting import plot_curves

def library_versions() -> dict[str, str]:
    """Installed versions of jaxrl and the libraries a run depends on."""
    out = {}
    for name in ("jaxrl", "jax", "jaxlib", "flax", "optax", "chex", "gymnax", "rlax",
                 "distrax", "orbax-checkpoint", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "learning_curve.png")
RUN_DIRS = ("tensorboard",)


def prepare_out_dir(out: str, *, overwrite: bool = False) -> None:
    """Create `out`, refusing to clobber an earlier run or unrelated files.

    An existing folder is accepted only if it holds nothing but jaxrl run files. If it
    holds a run (`metrics.jsonl`), `overwrite` is needed, and then every file of the old
    run is removed first, so the folder never mixes two runs.

    Raises:
      ConfigError: `out` holds a previous run (without `overwrite`), holds other files, or
        cannot be created or written.
    """
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"out {out!r} exists and is not a directory")
    if os.path.isdir(out):
        foreign = sorted(set(os.listdir(out)) - set(RUN_FILES) - set(RUN_DIRS))
        if foreign:
            raise ConfigError(f"out {out!r} is not empty and is not a jaxrl run folder (it "
                              f"holds {foreign[0]!r}); choose a new or empty folder")
        if os.path.exists(os.path.join(out, "metrics.jsonl")) and not overwrite:
            raise ConfigError(f"out {out!r} already holds a run (metrics.jsonl); choose "
                              "another folder or pass --overwrite")
        try:
            for name in RUN_FILES:
                if os.path.exists(os.path.join(out, name)):
                    os.remove(os.path.join(out, name))
            for name in RUN_DIRS:
                shutil.rmtree(os.path.join(out, name), ignore_errors=True)
        except OSError as e:
            raise ConfigError(f"out {out!r} is not writable: {e.strerror}") from None
    try:
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, ".write-test")
        with open(probe, "w") as f:
            f.write("")
        os.remove(probe)
    except OSError as e:
        raise ConfigError(f"out {out!r} is not writable: {e.strerror}") from None


def evaluate(agent: Any, config: Any, params: Any, *, num_episodes: int, seed: int,
             train_env_state: Any = None) -> np.ndarray:
    """Greedy returns `[S, num_episodes]` of seed-batched `params`, one episode per env copy.

    Uses the agent's `greedy_act` on fresh environments (seeded apart from training), for
    the env's time limit plus one step so every episode can end. Pass the seed-batched
    training env state to normalise observations with the statistics learned in training.
    """
    s = agent.setup(config)
    max_steps = int(getattr(s.env_params, "max_steps_in_episode", 1000)) + 1
    evaluate_one = rollout.make_evaluate(
        s.env, s.env_params, functools.partial(agent.greedy_act, config=config), num_episodes,
        max_steps)
    num_seeds = jax.tree.leaves(params)[0].shape[0]
    keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), 0x5EED), num_seeds)
    if train_env_state is None:
        return np.asarray(jax.jit(jax.vmap(evaluate_one))(params, keys))
    return np.asarray(jax.jit(jax.vmap(evaluate_one))(params, keys, train_env_state))


def _json_float(x: float) -> float | None:
    """A float for JSON, or None for NaN and infinities (strict JSON has neither)."""
    return float(x) if np.isfinite(x) else None


def summarize(agent_name: str, config: Any, result: runner.RunResult, num_seeds: int) -> dict:
    """The `summary.json` contents for a finished run."""
    per_seed = final_returns(result.metrics)
    finite = per_seed[np.isfinite(per_seed)]
    as_float = _json_float
    return {
        "agent": agent_name,
        "env": config.env,
        "num_seeds": num_seeds,
        "total_timesteps": int(result.env_steps),
        "final_return_mean": as_float(finite.mean()) if finite.size else None,
        "final_return_std": as_float(finite.std()) if finite.size else None,
        "per_seed_final_return": [as_float(x) for x in per_seed],
        "final_return_source": FINAL_RETURN_SOURCE,
        "wall_time_s": result.wall_time_s,
        "compile_time_s": result.compile_time_s,
        "train_time_s": result.train_time_s,
        "env_steps_per_s": result.env_steps * num_seeds / max(result.train_time_s, 1e-9),
    }


def train(agent_name: str, agent: Any, config: Any, hparams: Any, out: str, *,
          seed: int = 0, num_seeds: int = 1, devices: int | None = None,
          chunk_iterations: int | None = None, progress: bool = True,
          overwrite: bool = False, quiet: bool = False, eval_episodes: int = 0,
          tensorboard: bool = False) -> dict:
    """Train `num_seeds` seeds of `agent` and write the run folder `out`.

    Args:
      agent_name: CLI name of the agent (recorded in the files).
      agent: the agent module (`jaxrl.agents.ppo`, ...).
      config, hparams: the agent's `Config` and `HParams`.
      out: run folder; must not already hold a run unless `overwrite`.
      tensorboard: also write TensorBoard events to `out/tensorboard` (tensorboardX).
      eval_episodes: if > 0, also evaluate the final greedy policy on this many episodes
        per seed and record `eval_return_*` in the summary.

    Returns:
      The summary dict (also written to `summary.json`).
    """
    if type(num_seeds) is not int or num_seeds <= 0:
        raise ConfigError(f"num_seeds must be a positive integer, got {num_seeds!r}")
    if type(seed) is not int or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if type(eval_episodes) is not int or eval_episodes < 0:
        raise ConfigError(f"eval_episodes must be a non-negative integer, got {eval_episodes!r}")
    runner.choose_devices(devices, num_seeds, config.num_envs)  # validate before any work
    try:
        agent.setup(config)  # build the env and network now: a failure leaves no folder
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - e.g. an env that downloads data at construction
        raise ConfigError(f"env {config.env!r} could not be built: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}") from None
    prepare_out_dir(out, overwrite=overwrite)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump({"agent": agent_name, "env": config.env, "config": to_dict(config),
                   "hparams": to_dict(hparams),
                   "run": {"seed": seed, "num_seeds": num_seeds, "devices": devices},
                   "versions": library_versions()}, f, indent=2)

    init_fn, iteration_fn = agent.make_parts(config)
    callbacks = [JsonlLogger(os.path.join(out, "metrics.jsonl"), config.batch_size),
                 Progress(config.num_iterations * config.batch_size,
                          f"{agent_name} {config.env}", enabled=progress and not quiet)]
    if tensorboard:
        callbacks.append(TensorBoardLogger(os.path.join(out, "tensorboard"), config.batch_size))
    result = runner.run(init_fn, iteration_fn, num_iterations=config.num_iterations,
                        steps_per_iteration=config.batch_size, hparams=hparams, seed=seed,
                        num_seeds=num_seeds, chunk_iterations=chunk_iterations,
                        devices=devices, num_envs=config.num_envs, callbacks=callbacks)
    summary = summarize(agent_name, config, result, num_seeds)
    if eval_episodes:
        returns = evaluate(agent, config, result.state.params, num_episodes=eval_episodes,
                           seed=seed, train_env_state=result.state.env_state)
        finished = np.isfinite(returns)
        per_seed = np.where(finished.any(1), np.where(finished, returns, 0.0).sum(1)
                            / np.maximum(finished.sum(1), 1), np.nan)
        ok = per_seed[np.isfinite(per_seed)]
        summary.update({"eval_episodes": eval_episodes,
                        "eval_return_mean": _json_float(ok.mean()) if ok.size else None,
                        "eval_return_std": _json_float(ok.std()) if ok.size else None,
                        "per_seed_eval_return": [_json_float(x) for x in per_seed],
                        "eval_return_source": "greedy policy after training, first episode "
                                              "of each of eval_episodes fresh env copies"})
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, allow_nan=False)
    steps = np.arange(1, config.num_iterations + 1) * config.batch_size
    plot_curves([(agent_name, steps, result.metrics["episode/return"])],
                os.path.join(out, "learning_curve.png"), title=f"{agent_name} on {config.env}")
    if not quiet:
        print_summary(summary)
    return summary


def config_fields(config_cls) -> list[dataclasses.Field]:
    """The dataclass fields of a `Config` or `HParams` class, in declaration order."""
    return list(dataclasses.fields(config_cls))
