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
import io
import json
import os
from importlib import metadata
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxrl import checkpoint, guard, rollout, runner, stats
from jaxrl.agent import Agent, Setup
from jaxrl.config import ConfigError, check_int, to_dict
from jaxrl.logger import (FINAL_RETURN_SOURCE, JsonlLogger, Progress, TensorBoardLogger,
                          TimingLogger, WandbLogger, final_returns, json_float,
                          print_summary, read_jsonl, read_metrics, truncate_jsonl)
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


STACKS_FILE = "hang-stacks.txt"  # where the watchdog writes every thread's stack
RUN_FILES = ("config.json", "metrics.jsonl", "timing.jsonl", "summary.json",
             "learning_curve.png", "metrics.jsonl.tmp", "timing.jsonl.tmp", STACKS_FILE)
RUN_DIRS = ("tensorboard", checkpoint.CHECKPOINT_DIR)
DEFAULT_KEEP_CHECKPOINTS = 3
DEFAULT_WATCHDOG_FACTOR = 20.0
DEFAULT_WATCHDOG_FLOOR_S = 60.0
# Run options a config.json written before them lacks, with the value that means "as then".
ADDED_OPTIONS = {"watchdog_factor": DEFAULT_WATCHDOG_FACTOR,
                 "watchdog_floor_s": DEFAULT_WATCHDOG_FLOOR_S}


def _is_run_file(name: str) -> bool:
    """A file or folder a jaxrl run writes (a killed atomic write leaves `NAME.tmp-PID`)."""
    base, sep, pid = name.rpartition(".tmp-")
    if sep and pid.isdigit():
        name = base
    return (name in RUN_FILES or name in RUN_DIRS
            or name in (guard.RunFolder.ASIDE, guard.RunFolder.DELETING))


def check_out_dir(out: str, *, overwrite: bool = False) -> None:
    """Refuse an `out` that cannot take a new run, reading only (nothing is created).

    `out` may be missing, or a folder holding nothing but jaxrl run files; one that holds a
    run (`metrics.jsonl`) needs `overwrite`. It must not be, or hold, a symbolic link.

    Raises:
      ConfigError: `out` is empty or not a folder, holds other files or a link, or holds
        a previous run (without `overwrite`).
    """
    if not isinstance(out, str) or not out:
        raise ConfigError(f"out must be a non-empty folder path, got {out!r}")
    guard.check_no_symlink(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"out {out!r} exists and is not a directory")
    if not os.path.isdir(out):
        parent = os.path.dirname(os.path.abspath(out))
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise ConfigError(f"out {out!r} cannot be created: {parent!r} is not a directory")
        return
    try:
        names = os.listdir(out)
    except OSError as e:
        raise ConfigError(f"out {out!r} is not readable: {e.strerror}") from None
    foreign = sorted(n for n in names if not _is_run_file(n))
    if foreign:
        raise ConfigError(f"out {out!r} is not empty and is not a jaxrl run folder (it "
                          f"holds {foreign[0]!r}); choose a new or empty folder")
    if os.path.exists(os.path.join(out, "metrics.jsonl")) and not overwrite:
        resumable = checkpoint.steps(os.path.join(out, checkpoint.CHECKPOINT_DIR))
        raise ConfigError(f"out {out!r} already holds a run (metrics.jsonl); choose "
                          "another folder or pass --overwrite"
                          + (f" (or continue it: jaxrl resume {out})" if resumable else ""))


def _check_writable(out: str) -> None:
    try:
        probe = os.path.join(out, f".write-test-{os.getpid()}")
        guard.write_atomic(probe, b"")
        os.remove(probe)
    except OSError as e:
        raise ConfigError(f"out {out!r} is not writable: {e.strerror}") from None


def prepare_out_dir(out: str, *, overwrite: bool = False) -> None:
    """`check_out_dir`, then create `out` and remove every file of an earlier run in it.

    `train` does not use this: it moves the earlier run aside and deletes it only once the
    new run has compiled (`guard.RunFolder`).
    """
    check_out_dir(out, overwrite=overwrite)
    try:
        for name in RUN_FILES + RUN_DIRS:
            guard.remove_tree(os.path.join(out, name))
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"out {out!r} is not writable: {e.strerror}") from None
    _check_writable(out)


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


def _segments(out: str, steps_per_iteration: int, num_seeds: int) -> list[dict]:
    """The training segments (one per process: the first run, then each resume) whose
    chunks `timing.jsonl` keeps, with their compile time, train time and speed."""
    path = os.path.join(out, "timing.jsonl")
    if not os.path.exists(path):
        return []
    segments: dict[int, dict] = {}
    for row in read_jsonl(path):
        if not isinstance(row, dict) or "segment_start" not in row:
            continue
        seg = segments.setdefault(row["segment_start"], {"from_iteration": row["segment_start"]})
        seg.update(to_iteration=row["iteration"], compile_time_s=row["compile_time_s"],
                   train_time_s=row["train_time_s"])
    out_rows = []
    for seg in sorted(segments.values(), key=lambda s: s["from_iteration"]):
        steps = (seg["to_iteration"] - seg["from_iteration"]) * steps_per_iteration
        seg["env_steps_per_s"] = steps * num_seeds / max(seg["train_time_s"], 1e-9)
        out_rows.append(seg)
    return out_rows


def summarize(agent_name: str, config: Any, result: runner.RunResult, num_seeds: int,
              segments: Sequence[dict] = ()) -> dict:
    """The `summary.json` contents for a finished run.

    `result.metrics` must cover the whole run. For a resumed run (`resumed_from_iteration`
    says where the last process started), `segments` lists every process's part of the
    training (`from_iteration`, `to_iteration`, `compile_time_s`, `train_time_s`,
    `env_steps_per_s`, as `timing.jsonl` kept them); then `compile_time_s` and
    `train_time_s` are their sums and `env_steps_per_s` the steps they trained over that
    time, so a resume that had nothing left to train keeps the run's honest numbers.
    `wall_time_s` includes the earlier processes' time.
    """
    per_seed = final_returns(result.metrics)
    finite = per_seed[np.isfinite(per_seed)]
    steps_here = result.env_steps - result.first_iteration * config.steps_per_iteration
    compile_time, train_time = result.compile_time_s, result.train_time_s
    speed = steps_here * num_seeds / max(result.train_time_s, 1e-9)
    if segments:
        compile_time = sum(s["compile_time_s"] for s in segments)
        train_time = sum(s["train_time_s"] for s in segments)
        trained = sum(s["to_iteration"] - s["from_iteration"] for s in segments)
        speed = trained * config.steps_per_iteration * num_seeds / max(train_time, 1e-9)
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
        "compile_time_s": compile_time,
        "train_time_s": train_time,
        "env_steps_per_s": speed,
    }
    if result.first_iteration:
        summary["resumed_from_iteration"] = result.first_iteration
    if len(segments) > 1 or result.first_iteration:
        summary["segments"] = [dict(s) for s in segments]
    return summary


class Run(NamedTuple):
    """What a run folder's `config.json` describes."""

    agent: Agent
    config: Any
    hparams: Any
    options: dict  # exactly guard.RUN_OPTIONS: seed, num_seeds, chunk_iterations, ...


def _checkpoint_meta(run: Run) -> dict:
    """What a checkpoint must match to continue `run`: a different value of any of these
    changes the state's shapes or the computation (`run.seed` and `chunk_iterations`
    included: the run keys and the compiled chunk grid)."""
    return {"agent": run.agent.name, "env": run.config.env, "config": to_dict(run.config),
            "hparams": to_dict(run.hparams),
            "run": {k: run.options[k] for k in ("seed", "num_seeds", "chunk_iterations")}}


class _OnCompiled:
    """A callback that commits a replacement run folder once the run has compiled."""

    def __init__(self, folder: guard.RunFolder):
        self.folder = folder

    def on_compiled(self, compile_time_s: float) -> None:
        self.folder.commit()

    def on_chunk(self, first_iteration, metrics, info) -> None:
        pass

    def on_end(self, result) -> None:
        pass


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
                     append=resumed, start_iteration=start.iteration if resumed else 0),
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
    factor = opts.get("watchdog_factor", 0)
    watchdog = (guard.Watchdog(os.path.join(out, STACKS_FILE), factor=factor,
                               floor_s=opts.get("watchdog_floor_s", DEFAULT_WATCHDOG_FLOOR_S))
                if factor else None)
    result = runner.run(init_fn, iteration_fn, num_iterations=config.num_iterations,
                        steps_per_iteration=steps, hparams=run.hparams, seed=opts["seed"],
                        num_seeds=opts["num_seeds"], chunk_iterations=opts["chunk_iterations"],
                        devices=opts.get("devices"), num_envs=config.num_envs, callbacks=cbs,
                        start=start, seed_batch=opts.get("seed_batch"), watchdog=watchdog)
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
    summary = summarize(run.agent.name, config, result, opts["num_seeds"],
                        _segments(out, config.steps_per_iteration, opts["num_seeds"]))
    episodes = opts.get("eval_episodes", 0)
    if episodes:
        returns = evaluate(run.agent, setup, result.state.params, num_episodes=episodes,
                           seed=opts["seed"], train_env_state=result.state.env_state)
        summary.update(_eval_summary(returns, episodes))
    guard.write_atomic(os.path.join(out, "summary.json"),
                       json.dumps(summary, indent=2, allow_nan=False))
    steps = np.arange(1, config.num_iterations + 1) * config.steps_per_iteration
    figure = plot_curves([(run.agent.name, steps, result.metrics["episode/return"])],
                         title=f"{run.agent.name} on {config.env}")
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=120)
    guard.write_atomic(os.path.join(out, "learning_curve.png"), image.getvalue())
    if not quiet:
        print_summary(summary)
    return summary


def run_options(*, seed: int = 0, num_seeds: int = 1, devices: int | None = None,
                seed_batch: int | None = None, chunk_iterations: int | None = None,
                checkpoint_every: int | None = None,
                keep_checkpoints: int = DEFAULT_KEEP_CHECKPOINTS, eval_episodes: int = 0,
                tensorboard: bool = False, wandb: bool = False,
                wandb_project: str | None = None,
                watchdog_factor: float = DEFAULT_WATCHDOG_FACTOR,
                watchdog_floor_s: float = DEFAULT_WATCHDOG_FLOOR_S) -> dict:
    """A run's options (`config.json`'s `run` section), checked by `guard.check_run_options`."""
    options = {"seed": seed, "num_seeds": num_seeds, "devices": devices,
               "seed_batch": seed_batch, "chunk_iterations": chunk_iterations,
               "checkpoint_every": checkpoint_every, "keep_checkpoints": keep_checkpoints,
               "eval_episodes": eval_episodes, "tensorboard": tensorboard, "wandb": wandb,
               "wandb_project": wandb_project, "watchdog_factor": watchdog_factor,
               "watchdog_floor_s": watchdog_floor_s}
    guard.check_run_options(options)
    return options


def _build_setup(agent: Agent, config: Any) -> Setup:
    try:
        return agent.setup(config)  # built once, now: a failure leaves no folder
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - e.g. an env that downloads data at construction
        raise ConfigError(f"env {config.env!r} could not be built: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}") from None


def validate(agent: Agent, config: Any, hparams: Any,
             options: Mapping[str, Any]) -> tuple[Setup, guard.MemoryEstimate]:
    """Every check a run passes before any file is touched, in one place.

    The run options' schema, int32 sizes, seeds, pointless configurations, the devices,
    the env (built once: its setup is returned for the run) and a memory estimate of the
    run against the memory available.

    Returns:
      `(setup, estimate)`.

    Raises:
      ConfigError: one line naming the field (and, for memory, the estimate).
    """
    guard.check_run_options(options)
    guard.check_int32_fields(config)
    guard.check_pointless(config)
    runner.choose_devices(options["devices"], options["num_seeds"], config.num_envs)
    if options["seed_batch"] is not None and options["devices"] not in (None, 1):
        raise ConfigError(f"seed_batch ({options['seed_batch']}) runs seeds in groups on one "
                          f"device; it cannot be combined with devices={options['devices']}")
    setup = _build_setup(agent, config)
    init_fn, _ = runner.parts(agent, config, setup)
    state, _ = runner.state_shapes(init_fn, hparams, seed=0, num_seeds=1)
    obs_bytes = int(np.prod(setup.spec.obs_shape, dtype=np.int64)) * 4
    max_steps = int(getattr(setup.env_params, "max_steps_in_episode", 1000)) + 1
    estimate = guard.estimate_memory(state, config, num_seeds=options["num_seeds"],
                                     eval_episodes=options["eval_episodes"],
                                     obs_bytes=obs_bytes, max_episode_steps=max_steps)
    guard.check_memory(estimate)
    return setup, estimate


def config_document(agent: Agent, config: Any, hparams: Any, options: Mapping[str, Any],
                    tuned: str | None = None) -> dict:
    """The `config.json` of a run (what `load_run` reads back and checks)."""
    return {"agent": agent.name, "env": config.env, "config": to_dict(config),
            "hparams": to_dict(hparams), "tuned": tuned, "run": dict(options),
            "versions": library_versions()}


def _interrupted(out: str, restored: bool) -> guard.Interrupted:
    done = checkpoint.steps(os.path.join(out, checkpoint.CHECKPOINT_DIR))
    if restored:
        return guard.Interrupted(f"interrupted before the new run compiled: nothing to "
                                 f"resume; the earlier run in {out} is kept as it was")
    if done:
        return guard.Interrupted(f"interrupted; `jaxrl resume {out}` continues from the "
                                 f"newest checkpoint (iteration {done[-1]})")
    return guard.Interrupted(f"interrupted before the first checkpoint (while compiling or "
                             f"in the first chunk): there is nothing to resume in {out}")


def train(agent: Agent, config: Any, hparams: Any, out: str, *,
          seed: int = 0, num_seeds: int = 1, devices: int | None = None,
          seed_batch: int | None = None,
          chunk_iterations: int | None = None, progress: bool = True,
          overwrite: bool = False, quiet: bool = False, eval_episodes: int = 0,
          tensorboard: bool = False, wandb: bool = False, wandb_project: str | None = None,
          checkpoint_every: int | None = None,
          keep_checkpoints: int = DEFAULT_KEEP_CHECKPOINTS,
          callbacks: Sequence[runner.Callback] = (), tuned: str | None = None,
          watchdog_factor: float = DEFAULT_WATCHDOG_FACTOR,
          watchdog_floor_s: float = DEFAULT_WATCHDOG_FLOOR_S,
          dry_run: bool = False) -> dict:
    """Train `num_seeds` seeds of `agent` and write the run folder `out`.

    Everything is validated (`validate`, `check_out_dir`) before any file is touched. The
    folder is then locked against other writers; an earlier run in it (with `overwrite`)
    is moved aside and deleted only once the new run has compiled, and put back if the
    new run fails before that.

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
      watchdog_factor, watchdog_floor_s: stop the run, writing every thread's stack to
        `out/hang-stacks.txt`, when a chunk takes longer than `watchdog_factor` times the
        slowest earlier one and at least `watchdog_floor_s` seconds (`guard.Watchdog`;
        factor 0: off).
      dry_run: validate, print the memory estimate and return without touching disk.

    Returns:
      The summary dict (also written to `summary.json`); with `dry_run`,
      `{"dry_run": True, "memory_bytes": ..., "available_bytes": ...}`.
    """
    options = run_options(
        seed=seed, num_seeds=num_seeds, devices=devices, seed_batch=seed_batch,
        chunk_iterations=chunk_iterations, checkpoint_every=checkpoint_every,
        keep_checkpoints=keep_checkpoints, eval_episodes=eval_episodes,
        tensorboard=tensorboard, wandb=wandb, wandb_project=wandb_project,
        watchdog_factor=watchdog_factor, watchdog_floor_s=watchdog_floor_s)
    check_out_dir(out, overwrite=overwrite)
    setup, estimate = validate(agent, config, hparams, options)
    options["chunk_iterations"] = runner.default_chunk_iterations(config.num_iterations,
                                                                  chunk_iterations)
    if dry_run:
        if not quiet:
            print(f"dry run: {agent.name} on {config.env}, {num_seeds} seed(s) x "
                  f"{config.num_iterations} iterations of {config.steps_per_iteration} env "
                  f"steps; {estimate.describe()}; nothing written")
        return {"dry_run": True, "memory_bytes": estimate.total,
                "available_bytes": estimate.available}
    folder = guard.RunFolder(out)
    try:
        folder.acquire(create=True)
    except OSError as e:
        raise ConfigError(f"out {out!r} cannot be created: {e.strerror}") from None
    restored = False
    try:
        check_out_dir(out, overwrite=overwrite)  # again, now that no other writer can act
        _check_writable(out)
        folder.move_aside(RUN_FILES + RUN_DIRS, written=RUN_FILES + RUN_DIRS)
        if tuned is not None and not quiet:
            print(f"tuned settings: {tuned}, {config.total_timesteps} steps (flags override "
                  "them; --no-tuned for the plain defaults)")
        guard.write_atomic(os.path.join(out, "config.json"), json.dumps(
            config_document(agent, config, hparams, options, tuned), indent=2))
        run = Run(agent, config, hparams, options)
        return _execute(run, setup, out, start=None, progress=progress, quiet=quiet,
                        callbacks=[_OnCompiled(folder), *callbacks])
    except BaseException as e:
        restored = folder.replacing
        folder.rollback()
        if isinstance(e, KeyboardInterrupt) and not isinstance(e, guard.Interrupted):
            raise _interrupted(out, restored) from None
        raise
    finally:
        folder.release()


def _from_dict(cls: Any, values: Any, where: str) -> Any:
    """Build a `Config` from its `to_dict` form (lists back to tuples), every field present
    and of its default's type."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be an object, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    guard.check_exact_keys(values, tuple(fields), where, ".{key} is unknown to this version "
                           "of the agent; allowed: {allowed}", ".{key} is missing")
    kwargs = {}
    for name, field in fields.items():
        value, default = values[name], field.default
        if isinstance(default, tuple):
            if not isinstance(value, list):
                raise ConfigError(f"{where}.{name} must be a list, got {value!r}")
            value = tuple(value)
        elif isinstance(default, bool) or isinstance(default, str):
            if type(value) is not type(default):
                raise ConfigError(f"{where}.{name} must be a {type(default).__name__}, got "
                                  f"{value!r}")
        elif isinstance(default, int):
            if type(value) is not int:
                raise ConfigError(f"{where}.{name} must be an integer, got {value!r}")
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where}.{name} must be a real number, got {value!r}")
        kwargs[name] = value
    if "torso" in kwargs and not isinstance(kwargs["torso"], str):
        raise ConfigError(f"{where}.torso must be a string, got {kwargs['torso']!r}")
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def _hparams_from_dict(cls: Any, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be an object, got {values!r}")
    names = [f.name for f in dataclasses.fields(cls)]
    missing = [n for n in names if n not in values]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]} is unknown; allowed: {', '.join(names)}")
    if missing:
        raise ConfigError(f"{where}.{missing[0]} is missing")
    out = {}
    for k, v in values.items():
        if isinstance(v, list):
            if not v or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                for x in v):
                raise ConfigError(f"{where}.{k} must be a number or a list of numbers, got "
                                  f"{v!r}")
            v = np.asarray(v, np.float64)
        out[k] = v
    try:
        return cls.create(**out)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


CONFIG_KEYS = ("agent", "env", "config", "hparams", "tuned", "run", "versions")


def load_run(out: str, agents: Mapping[str, Agent]) -> Run:
    """Read the `Run` a run folder's `config.json` describes, checked against its schema.

    Every key, type and range is checked: the top-level keys (`CONFIG_KEYS`), every field
    of the agent's `Config` and `HParams` (validated as at construction), and every run
    option (`guard.check_run_options`). `agents` maps agent names to records (the CLI
    passes `jaxrl.agents.REGISTRY`).

    Raises:
      ConfigError: the folder or its config.json is missing or unreadable, a key is
        unknown or missing, or a value has the wrong type or range: one line naming it.
    """
    if not isinstance(out, str) or not out:
        raise ConfigError(f"run folder must be a non-empty path, got {out!r}")
    if not os.path.isdir(out):
        raise ConfigError(f"run folder {out!r} does not exist")
    path = os.path.join(out, "config.json")
    if not os.path.isfile(path):
        raise ConfigError(f"run folder {out!r} has no config.json (not a jaxrl run folder)")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path} is unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is unreadable (it is not a JSON object)")
    agent_name = data.get("agent")
    if not isinstance(agent_name, str) or agent_name not in agents:
        raise ConfigError(f"{path}: agent {agent_name!r} is unknown; allowed: "
                          f"{', '.join(agents)}")
    guard.check_exact_keys(data, CONFIG_KEYS, path, ": key {key!r} is unknown; allowed: "
                           "{allowed}", ": key {key!r} is missing")
    if data["tuned"] is not None and not isinstance(data["tuned"], str):
        raise ConfigError(f"{path}: tuned must be a string or null, got {data['tuned']!r}")
    if not isinstance(data["versions"], dict):
        raise ConfigError(f"{path}: versions must be an object, got {data['versions']!r}")
    agent = agents[agent_name]
    config = _from_dict(agent.Config, data["config"], f"{path}: config")
    if data["env"] != config.env:
        raise ConfigError(f"{path}: env {data['env']!r} differs from config.env "
                          f"{config.env!r}")
    hparams = _hparams_from_dict(agent.HParams, data["hparams"], f"{path}: hparams")
    options = data["run"]
    if not isinstance(options, dict):
        raise ConfigError(f"{path}: run must be an object, got {options!r}")
    # Options added after run folders existed: an older folder resumes with their defaults.
    options = {**ADDED_OPTIONS, **options}
    guard.check_run_options(options, f"{path}: run.")
    guard.check_int32_fields(config)
    options = dict(options)
    options["chunk_iterations"] = runner.default_chunk_iterations(
        config.num_iterations, options["chunk_iterations"])
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
           callbacks: Sequence[runner.Callback] = (), tuned: str | None = None,
           watchdog: Mapping[str, float] | None = None) -> dict:
    """Continue the run in folder `out` from its newest checkpoint to the configured end.

    `config.json` is checked against its schema and the run validated as `train` does;
    the folder is locked against other writers and must hold no symbolic link.
    `metrics.jsonl` and `timing.jsonl` are first cut back to the checkpoint's iteration
    (dropping what a crashed process wrote after it), then continued, so the metrics file
    ends up byte-identical to an uninterrupted run's. A run whose newest checkpoint is the
    last iteration only gets its summary and curve rewritten (with the training segments'
    own compile times and speeds). `watchdog` replaces the run's `watchdog_factor` and
    `watchdog_floor_s` for this process (they change no computation).

    Returns:
      The summary dict (also written to `summary.json`).
    """
    run = load_run(out, agents)
    if watchdog:
        unknown = sorted(set(watchdog) - {"watchdog_factor", "watchdog_floor_s"})
        if unknown:
            raise ConfigError(f"{unknown[0]} cannot be changed on resume; allowed: "
                              "watchdog_factor, watchdog_floor_s")
        run = run._replace(options={**run.options, **watchdog})
    guard.check_no_symlink(out)
    setup, _ = validate(run.agent, run.config, run.hparams, run.options)
    folder = guard.RunFolder(out).acquire(create=False)
    try:
        tree, meta = restore_checkpoint(run, setup, out)
        iteration = meta["iteration"]
        truncate_jsonl(os.path.join(out, "metrics.jsonl"), iteration)
        timing = truncate_jsonl(os.path.join(out, "timing.jsonl"), iteration,
                                every_iteration=False)
        offset = float(timing[-1]["wall_time_s"]) if timing else 0.0
        start = runner.Start(state=tree["state"], run_keys=tree["run_keys"],
                             iteration=iteration)
        return _execute(run, setup, out, start=start, progress=progress, quiet=quiet,
                        callbacks=callbacks, wall_offset_s=offset)
    except KeyboardInterrupt as e:
        if isinstance(e, guard.Interrupted):
            raise
        raise _interrupted(out, False) from None
    finally:
        folder.release()


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
    guard.check_int32("episodes", episodes)
    guard.check_seed("seed", seed, none=True)
    run = load_run(out, agents)
    setup, _ = validate(run.agent, run.config, run.hparams,
                        {**run.options, "eval_episodes": episodes})
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
