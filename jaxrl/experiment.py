"""A run folder: train an agent over seeds, checkpoint it, resume it, evaluate it.

This is what `jaxrl train`, `jaxrl resume` and `jaxrl eval` do, as functions notebooks can
call too. The folder holds `config.json` (agent, env, config, hparams, run options, library
versions), `metrics.jsonl` (per iteration, per seed), `timing.jsonl` (wall time at each
chunk end), `checkpoints/<iteration>/` (the whole training state, see `jaxrl.checkpoint`),
`learning_curve.png` and `summary.json`. `resume` restores the newest checkpoint into a
template built from `config.json`, cuts the logs back to its iteration and continues: the
result is the uninterrupted run's, bit for bit on CPU.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
from importlib import metadata
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxrl import checkpoint, rollout, runner, stats
from jaxrl.agent import Agent, Setup
from jaxrl.config import ConfigError, check_int, to_dict
from jaxrl.logger import (FINAL_RETURN_SOURCE, JsonlLogger, Progress, TensorBoardLogger,
                          TimingLogger, WandbLogger, final_returns, json_float,
                          print_summary, read_metrics, truncate_jsonl)
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


RUN_FILES = ("config.json", "metrics.jsonl", "timing.jsonl", "summary.json",
             "learning_curve.png", "metrics.jsonl.tmp", "timing.jsonl.tmp")
RUN_DIRS = ("tensorboard", checkpoint.CHECKPOINT_DIR)
DEFAULT_KEEP_CHECKPOINTS = 3


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
            resumable = checkpoint.steps(os.path.join(out, checkpoint.CHECKPOINT_DIR))
            raise ConfigError(f"out {out!r} already holds a run (metrics.jsonl); choose "
                              "another folder or pass --overwrite"
                              + (f" (or continue it: jaxrl resume {out})" if resumable else ""))
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


def evaluate(agent: Agent, setup: Setup, params: Any, *, num_episodes: int, seed: int,
             train_env_state: Any = None) -> np.ndarray:
    """Greedy returns `[S, num_episodes]` of seed-batched `params`, one episode per env copy.

    Uses the agent's `greedy_act` on fresh environments (seeded apart from training), for
    the env's time limit plus one step so every episode can end. Pass the seed-batched
    training env state to normalise observations with the statistics learned in training.
    `setup` is `agent.setup(config)`, built once by the caller.
    """
    max_steps = int(getattr(setup.env_params, "max_steps_in_episode", 1000)) + 1
    evaluate_one = rollout.make_evaluate(
        setup.env, setup.env_params, functools.partial(agent.greedy_act, setup=setup),
        num_episodes, max_steps)
    num_seeds = jax.tree.leaves(params)[0].shape[0]
    keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), 0x5EED), num_seeds)
    args = (params, keys) if train_env_state is None else (params, keys, train_env_state)
    return np.asarray(jax.jit(jax.vmap(evaluate_one))(*args))


def summarize(agent_name: str, config: Any, result: runner.RunResult, num_seeds: int) -> dict:
    """The `summary.json` contents for a finished run.

    `result.metrics` must cover the whole run. For a resumed run (`resumed_from_iteration`
    says where the last process started), `wall_time_s` includes the earlier processes'
    time; compile and train time and the speed are the last process's.
    """
    per_seed = final_returns(result.metrics)
    finite = per_seed[np.isfinite(per_seed)]
    steps_here = result.env_steps - result.first_iteration * config.steps_per_iteration
    summary = {
        "agent": agent_name,
        "env": config.env,
        "num_seeds": num_seeds,
        "total_timesteps": int(result.env_steps),
        "final_return_mean": json_float(finite.mean()) if finite.size else None,
        "final_return_std": json_float(finite.std()) if finite.size else None,
        "final_return_iqm": json_float(stats.iqm(finite)) if finite.size else None,
        "final_return_ci95": ([json_float(x) for x in stats.interval(finite)] if finite.size
                              else None),
        "per_seed_final_return": [json_float(x) for x in per_seed],
        "final_return_source": FINAL_RETURN_SOURCE,
        "wall_time_s": result.wall_time_s,
        "compile_time_s": result.compile_time_s,
        "train_time_s": result.train_time_s,
        "env_steps_per_s": steps_here * num_seeds / max(result.train_time_s, 1e-9),
    }
    if result.first_iteration:
        summary["resumed_from_iteration"] = result.first_iteration
    return summary


class Run(NamedTuple):
    """What a run folder's `config.json` describes."""

    agent: Agent
    config: Any
    hparams: Any
    options: dict  # seed, num_seeds, devices, chunk_iterations, checkpoint_every, ...


def _checkpoint_meta(run: Run) -> dict:
    """What a checkpoint must match to continue `run`: a different value of any of these
    changes the state's shapes or the computation (`run.seed` and `chunk_iterations`
    included: the run keys and the compiled chunk grid)."""
    return {"agent": run.agent.name, "env": run.config.env, "config": to_dict(run.config),
            "hparams": to_dict(run.hparams),
            "run": {k: run.options[k] for k in ("seed", "num_seeds", "chunk_iterations")}}


def _execute(run: Run, setup: Setup, out: str, *, start: runner.Start | None, progress: bool,
             quiet: bool, callbacks: Sequence[runner.Callback],
             wall_offset_s: float = 0.0) -> dict:
    """Train (or continue) `run` into `out`, then write the summary and the curve."""
    config, opts = run.config, run.options
    steps = config.steps_per_iteration
    resumed = start is not None
    init_fn, iteration_fn = runner.parts(run.agent, config, setup)
    cbs: list = [
        JsonlLogger(os.path.join(out, "metrics.jsonl"), steps, append=resumed),
        TimingLogger(os.path.join(out, "timing.jsonl"), offset_s=wall_offset_s,
                     append=resumed),
        Progress(config.num_iterations * steps, f"{run.agent.name} {config.env}",
                 enabled=progress and not quiet,
                 start_env_steps=(start.iteration if resumed else 0) * steps)]
    if opts.get("tensorboard"):
        cbs.append(TensorBoardLogger(os.path.join(out, "tensorboard"), steps))
    if opts.get("wandb"):
        cbs.append(WandbLogger(steps, project=opts.get("wandb_project"),
                               name=os.path.basename(os.path.abspath(out)),
                               config=_checkpoint_meta(run), directory=out))
    # After the loggers: a checkpoint never covers an iteration the logs lack.
    cbs.append(checkpoint.Checkpointer(
        os.path.join(out, checkpoint.CHECKPOINT_DIR),
        {**_checkpoint_meta(run), "versions": library_versions()},
        every=opts.get("checkpoint_every"),
        keep=opts.get("keep_checkpoints", DEFAULT_KEEP_CHECKPOINTS)))
    cbs.extend(callbacks)
    result = runner.run(init_fn, iteration_fn, num_iterations=config.num_iterations,
                        steps_per_iteration=steps, hparams=run.hparams, seed=opts["seed"],
                        num_seeds=opts["num_seeds"], chunk_iterations=opts["chunk_iterations"],
                        devices=opts.get("devices"), num_envs=config.num_envs, callbacks=cbs,
                        start=start, seed_batch=opts.get("seed_batch"))
    if resumed:  # the whole run's metrics, for the summary and the curve
        _, metrics = read_metrics(os.path.join(out, "metrics.jsonl"))
        result = dataclasses.replace(result, metrics=metrics,
                                     wall_time_s=result.wall_time_s + wall_offset_s)
    return _finish(run, setup, out, result, quiet=quiet)


def _eval_summary(returns: np.ndarray, episodes: int) -> dict:
    finished = np.isfinite(returns)
    per_seed = np.where(finished.any(1), np.where(finished, returns, 0.0).sum(1)
                        / np.maximum(finished.sum(1), 1), np.nan)
    ok = per_seed[np.isfinite(per_seed)]
    return {"eval_episodes": episodes,
            "eval_return_mean": json_float(ok.mean()) if ok.size else None,
            "eval_return_std": json_float(ok.std()) if ok.size else None,
            "per_seed_eval_return": [json_float(x) for x in per_seed],
            "eval_return_source": "greedy policy after training, first episode of each of "
                                  "eval_episodes fresh env copies"}


def _finish(run: Run, setup: Setup, out: str, result: runner.RunResult, *,
            quiet: bool) -> dict:
    config, opts = run.config, run.options
    summary = summarize(run.agent.name, config, result, opts["num_seeds"])
    episodes = opts.get("eval_episodes", 0)
    if episodes:
        returns = evaluate(run.agent, setup, result.state.params, num_episodes=episodes,
                           seed=opts["seed"], train_env_state=result.state.env_state)
        summary.update(_eval_summary(returns, episodes))
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, allow_nan=False)
    steps = np.arange(1, config.num_iterations + 1) * config.steps_per_iteration
    plot_curves([(run.agent.name, steps, result.metrics["episode/return"])],
                os.path.join(out, "learning_curve.png"),
                title=f"{run.agent.name} on {config.env}")
    if not quiet:
        print_summary(summary)
    return summary


def train(agent: Agent, config: Any, hparams: Any, out: str, *,
          seed: int = 0, num_seeds: int = 1, devices: int | None = None,
          seed_batch: int | None = None,
          chunk_iterations: int | None = None, progress: bool = True,
          overwrite: bool = False, quiet: bool = False, eval_episodes: int = 0,
          tensorboard: bool = False, wandb: bool = False, wandb_project: str | None = None,
          checkpoint_every: int | None = None,
          keep_checkpoints: int = DEFAULT_KEEP_CHECKPOINTS,
          callbacks: Sequence[runner.Callback] = (), tuned: str | None = None) -> dict:
    """Train `num_seeds` seeds of `agent` and write the run folder `out`.

    Args:
      agent: the `Agent` record (`jaxrl.agents.get("ppo")`, or your own); `resume` finds
        it by its name in the registry it is given.
      config, hparams: the agent's `Config` and `HParams`.
      out: run folder; must not already hold a run unless `overwrite`.
      seed_batch, chunk_iterations: see `runner.run`; the chunk length used is recorded in
        `config.json` so that `resume` keeps the same chunks.
      tensorboard: also write TensorBoard events to `out/tensorboard` (tensorboardX).
      wandb: also log to Weights & Biases (the `wandb` extra), in project `wandb_project`
        (None: wandb's default); a failure there only warns.
      eval_episodes: if > 0, also evaluate the final greedy policy on this many episodes
        per seed and record `eval_return_*` in the summary.
      checkpoint_every, keep_checkpoints: see `checkpoint.Checkpointer` (`every`, `keep`).
      callbacks: more `runner.Callback`s, called after the built-in ones (so after a
        chunk's checkpoint is saved).
      tuned: the tuned-settings entry `config` and `hparams` started from (`jaxrl.tuned`),
        recorded in `config.json` and named in one line once the folder is ready.

    Returns:
      The summary dict (also written to `summary.json`).
    """
    check_int("num_seeds", num_seeds)
    check_int("seed", seed, zero=True)
    check_int("eval_episodes", eval_episodes, zero=True)
    if wandb_project is not None and not (isinstance(wandb_project, str) and wandb_project):
        raise ConfigError(f"wandb_project must be a non-empty string, got {wandb_project!r}")
    check_int("chunk_iterations", chunk_iterations, none=True)
    check_int("checkpoint_every", checkpoint_every, none=True)
    check_int("keep_checkpoints", keep_checkpoints)
    runner.choose_devices(devices, num_seeds, config.num_envs)  # validate before any work
    runner.check_seed_batch(seed_batch)
    try:
        setup = agent.setup(config)  # built once, now: a failure leaves no folder
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - e.g. an env that downloads data at construction
        raise ConfigError(f"env {config.env!r} could not be built: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}") from None
    prepare_out_dir(out, overwrite=overwrite)
    if tuned is not None and not quiet:
        print(f"tuned settings: {tuned}, {config.total_timesteps} steps (flags override them; "
              "--no-tuned for the plain defaults)")
    options = {"seed": seed, "num_seeds": num_seeds, "devices": devices,
               "seed_batch": seed_batch,
               "chunk_iterations": runner.default_chunk_iterations(config.num_iterations,
                                                                   chunk_iterations),
               "checkpoint_every": checkpoint_every, "keep_checkpoints": keep_checkpoints,
               "eval_episodes": eval_episodes, "tensorboard": tensorboard,
               "wandb": wandb, "wandb_project": wandb_project}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump({"agent": agent.name, "env": config.env, "config": to_dict(config),
                   "hparams": to_dict(hparams), "tuned": tuned, "run": options,
                   "versions": library_versions()}, f, indent=2)
    run = Run(agent, config, hparams, options)
    return _execute(run, setup, out, start=None, progress=progress, quiet=quiet,
                    callbacks=callbacks)


def _from_dict(cls: Any, values: dict, where: str) -> Any:
    """Build a `Config` from its `to_dict` form (lists back to tuples)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{where} field {unknown[0]!r} is unknown to this version of "
                          f"the agent; allowed: {', '.join(fields)}")
    return cls(**{k: tuple(v) if isinstance(fields[k].default, tuple) and isinstance(v, list)
                  else v for k, v in values.items()})


def load_run(out: str, agents: Mapping[str, Agent]) -> Run:
    """Read the `Run` a run folder's `config.json` describes (validated like the CLI's).

    `agents` maps agent names to records (the CLI passes `jaxrl.agents.REGISTRY`).

    Raises:
      ConfigError: the folder or its config.json is missing or unreadable, or names an
        unknown agent or invalid values.
    """
    if not os.path.isdir(out):
        raise ConfigError(f"run folder {out!r} does not exist")
    path = os.path.join(out, "config.json")
    if not os.path.isfile(path):
        raise ConfigError(f"run folder {out!r} has no config.json (not a jaxrl run folder)")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        agent_name, config_values = data["agent"], dict(data["config"])
        hparam_values, options = dict(data["hparams"]), dict(data["run"])
        missing = [k for k in ("seed", "num_seeds") if k not in options]
        if missing:
            raise KeyError(f"run.{missing[0]}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} is unreadable ({type(e).__name__}: {e})") from None
    if agent_name not in agents:
        raise ConfigError(f"{path}: agent {agent_name!r} is unknown; allowed: "
                          f"{', '.join(agents)}")
    agent = agents[agent_name]
    config = _from_dict(agent.Config, config_values, f"{path}: config")
    hparams = agent.HParams.create(**{k: np.asarray(v) if isinstance(v, list) else v
                                      for k, v in hparam_values.items()})
    options["chunk_iterations"] = runner.default_chunk_iterations(
        config.num_iterations, options.get("chunk_iterations"))
    return Run(agent, config, hparams, options)


def restore_checkpoint(run: Run, setup: Setup, out: str,
                       step: int | None = None) -> tuple[Any, dict]:
    """Restore checkpoint `step` (default: the newest) of run folder `out`.

    The template is built from `run` (`jax.eval_shape` of the agent's init), and the
    checkpoint must have been saved with the same agent, env, config, hyperparameters, seed,
    seed count and chunk length (see `jaxrl.checkpoint.restore`).

    Returns:
      `({"state": [S, ...], "run_keys": [S]}, meta)`.
    """
    directory = os.path.join(out, checkpoint.CHECKPOINT_DIR)
    if not checkpoint.steps(directory):
        raise ConfigError(f"run folder {out!r} has no checkpoint ({directory} is missing or "
                          "empty)")
    init_fn, _ = runner.parts(run.agent, run.config, setup)
    state, run_keys = runner.state_shapes(init_fn, run.hparams, seed=run.options["seed"],
                                          num_seeds=run.options["num_seeds"])
    return checkpoint.restore(directory, {"state": state, "run_keys": run_keys},
                              expected=_checkpoint_meta(run), step=step)


def resume(out: str, agents: Mapping[str, Agent], *, progress: bool = True,
           quiet: bool = False,
           callbacks: Sequence[runner.Callback] = (), tuned: str | None = None) -> dict:
    """Continue the run in folder `out` from its newest checkpoint to the configured end.

    `metrics.jsonl` and `timing.jsonl` are first cut back to the checkpoint's iteration
    (dropping what a crashed process wrote after it), then continued, so the metrics file
    ends up byte-identical to an uninterrupted run's. A run whose newest checkpoint is the
    last iteration only gets its summary and curve rewritten.

    Returns:
      The summary dict (also written to `summary.json`).
    """
    run = load_run(out, agents)
    setup = run.agent.setup(run.config)
    tree, meta = restore_checkpoint(run, setup, out)
    iteration = meta["iteration"]
    truncate_jsonl(os.path.join(out, "metrics.jsonl"), iteration)
    timing = truncate_jsonl(os.path.join(out, "timing.jsonl"), iteration,
                            every_iteration=False)
    offset = float(timing[-1]["wall_time_s"]) if timing else 0.0
    start = runner.Start(state=tree["state"], run_keys=tree["run_keys"], iteration=iteration)
    return _execute(run, setup, out, start=start, progress=progress, quiet=quiet,
                    callbacks=callbacks, wall_offset_s=offset)


@dataclasses.dataclass
class Evaluation:
    """Greedy returns of one checkpoint: `returns[S, episodes]` (NaN: did not end)."""

    checkpoint: str
    iteration: int
    num_iterations: int
    returns: np.ndarray


def evaluate_run(out: str, agents: Mapping[str, Agent], *, episodes: int = 100,
                 step: int | None = None,
                 seed: int | None = None) -> Evaluation:
    """Evaluate checkpoint `step` (default: the newest) of run folder `out` greedily.

    Uses `evaluate` (vmapped fresh envs, the training observation statistics), with the
    run's seed unless `seed` is given, so it reproduces the `--eval-episodes` numbers of
    `jaxrl train` for the final checkpoint.
    """
    check_int("episodes", episodes)
    check_int("seed", seed, zero=True, none=True)
    run = load_run(out, agents)
    setup = run.agent.setup(run.config)
    tree, meta = restore_checkpoint(run, setup, out, step)
    state = tree["state"]
    returns = evaluate(run.agent, setup, state.params, num_episodes=episodes,
                       seed=run.options["seed"] if seed is None else seed,
                       train_env_state=state.env_state)
    return Evaluation(
        checkpoint=os.path.join(out, checkpoint.CHECKPOINT_DIR, str(meta["iteration"])),
        iteration=meta["iteration"], num_iterations=run.config.num_iterations,
        returns=returns)


def config_fields(config_cls) -> list[dataclasses.Field]:
    """The dataclass fields of a `Config` or `HParams` class, in declaration order."""
    return list(dataclasses.fields(config_cls))
