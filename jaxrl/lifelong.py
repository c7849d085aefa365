"""Lifelong learning: one agent trained on a sequence of tasks, with Net2Net growth.

A task is a registered environment with some of its `EnvParams` overridden (`Task`; e.g.
CartPole's pole length or gravity, a maze's goal cell); all tasks of a sequence share one
observation and action interface, so one network plays them all. `run_sequence` trains any
agent on the tasks one after another: each task for training phases of
`config.total_timesteps` env steps per seed, stopping early once the training return
reaches `threshold`; with growth on, a phase that ends below the threshold widens every
hidden layer (`jaxrl.net2net`, function-preserving) and another phase follows. The agent
keeps its parameters and optimizer state (and target network) across tasks; environments,
replay buffers and schedules start fresh on each task. After every stage the greedy policy
is evaluated on every task: the transfer/forgetting matrix `R[i, j]` (row 0 before any
training), from which `transfer_metrics` computes average accuracy, backward and forward
transfer as Lopez-Paz and Ranzato 2017 (GEM, section 5) define them.

`run_orders` runs the same tasks in several orders, reads the pairwise transfer matrix
(performance on task j after training on task i alone, minus the untrained performance)
from the first stages, and `greedy_order` chooses an order from it the way Taskonomy
(Zamir et al. 2018) picks source tasks greedily from a transfer graph. Each network width is
a separately compiled program: a grown network is rebuilt from a config with the new
`hidden_sizes` between jitted phases, and every stage's checkpoint records the widths, so
a resumed run restores into the right architecture. `main` is `jaxrl lifelong`.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import time
import warnings
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl import checkpoint, net2net, rollout, runner
from jaxrl import config as cfg
from jaxrl.agent import Agent, Setup
from jaxrl.config import ConfigError

# What an agent keeps from one task to the next; the rest of its state starts afresh.
CARRIED = ("params", "opt_state", "target_params")
# EnvParams fields computed from others (gymnax CartPole), recomputed after overrides.
DERIVED = {"total_mass": lambda p: p.masscart + p.masspole,
           "polemass_length": lambda p: p.masspole * p.length}


@dataclasses.dataclass(frozen=True)
class Task:
    """A registered env with `EnvParams` overrides.

    Attributes:
      env: environment id.
      overrides: `((field, value), ...)`; a vector value is a tuple.
    """

    env: str
    overrides: tuple = ()

    @property
    def name(self) -> str:
        """`ENV:field=value:...`, the form `parse_task` reads."""
        parts = [f"{k}={'/'.join(map(_fmt, v)) if isinstance(v, tuple) else _fmt(v)}"
                 for k, v in self.overrides]
        return ":".join([self.env] + parts)


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _number(text: str) -> float | int:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"task override values must be numbers, got {text!r}") from None


def parse_task(text: str) -> Task:
    """`Task` from `ENV` or `ENV:field=value:field=v1/v2` (a `/` separates vector entries)."""
    env, *parts = text.strip().split(":")
    overrides = []
    for part in parts:
        if "=" not in part:
            raise ConfigError(f"task override must be field=value, got {part!r} in {text!r}")
        field, value = part.split("=", 1)
        values = tuple(_number(v) for v in value.split("/"))
        overrides.append((field, values if len(values) > 1 else values[0]))
    return Task(env, tuple(overrides))


def task_params(task: Task, env_params: Any) -> Any:
    """`env_params` with the task's overrides (dtypes kept; `DERIVED` fields recomputed)."""
    fields = {f.name for f in dataclasses.fields(env_params)}
    values = {}
    for name, value in task.overrides:
        if name not in fields:
            raise ConfigError(f"task {task.name!r}: {name!r} is not a field of "
                              f"{type(env_params).__name__}; allowed: {', '.join(sorted(fields))}")
        old = getattr(env_params, name)
        if isinstance(old, (jax.Array, np.ndarray)):
            new = jnp.asarray(value, old.dtype)
            if new.shape != old.shape:
                raise ConfigError(f"task {task.name!r}: {name} must have shape {old.shape}, "
                                  f"got {value!r}")
            values[name] = new
        else:
            values[name] = type(old)(value)
    params = env_params.replace(**values)
    derived = {k: fn(params) for k, fn in DERIVED.items()
               if k in fields and k not in values
               and all(hasattr(params, a) for a in ("masscart", "masspole", "length"))}
    return params.replace(**derived)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LifelongConfig:
    """How a task sequence is trained (the agent's `Config` holds the rest).

    Attributes:
      threshold: target training return: a task stops training once the seed-mean return
        of the last `window` iterations reaches it; None trains every phase to its budget.
      window: iterations averaged for the training performance.
      chunk: iterations per jitted chunk (how often the threshold is checked).
      grow: widen (Net2Net) after a phase that ends below `threshold`.
      grow_factor: each hidden width is multiplied by this (rounded up).
      max_growths: growth steps allowed per task.
      max_phases: training phases allowed per task while its threshold is missed (None:
        `1 + max_growths` with growth, else 1); with more phases than growths, the last
        phases continue at the grown width (a budget-matched baseline without growth sets
        `max_phases` and `grow=False`).
      noise: `net2net.widen`'s symmetry-breaking noise.
      opt_rule: `map` the optimizer moments with the replication, or `reset` them.
      eval_episodes: greedy episodes per seed and task for the transfer matrix.
    """

    threshold: float | None = None
    window: int = 10
    chunk: int = 10
    grow: bool = False
    grow_factor: float = 2.0
    max_growths: int = 1
    max_phases: int | None = None
    noise: float = 0.0
    opt_rule: str = "map"
    eval_episodes: int = 16

    @property
    def phases(self) -> int:
        """Training phases allowed per task (see `max_phases`)."""
        if self.max_phases is not None:
            return self.max_phases
        return 1 + self.max_growths if self.grow else 1

    def __post_init__(self):
        cfg.check_positive_int(self, ("window", "chunk", "eval_episodes"))
        cfg.check_int("max_growths", self.max_growths, zero=True)
        cfg.check_int("max_phases", self.max_phases, none=True)
        cfg.check_bool(self, ("grow",))
        cfg.check_choice("opt_rule", self.opt_rule, net2net.OPT_RULES)
        if self.threshold is not None:
            cfg.check_real("threshold", self.threshold)
        if cfg.check_real("grow_factor", self.grow_factor) <= 1.0:
            raise ConfigError(f"grow_factor must be > 1, got {self.grow_factor}")
        if cfg.check_real("noise", self.noise) < 0:
            raise ConfigError(f"noise must be >= 0, got {self.noise}")
        if self.grow and self.threshold is None:
            raise ConfigError("grow needs a threshold (growth happens when training "
                              "performance ends below it)")


def transfer_metrics(R: np.ndarray) -> dict[str, float]:
    """Average accuracy, backward and forward transfer of one sequence (GEM, section 5).

    Lopez-Paz and Ranzato 2017 with `T` tasks in training order: `ACC = 1/T sum_i
    R[T, i]`, `BWT = 1/(T-1) sum_{i<T} (R[T, i] - R[i, i])`, `FWT = 1/(T-1) sum_{i>1}
    (R[i-1, i] - b_i)`. Here row 0 holds `b` (the untrained network), so the paper's
    1-based row `i` is our row `i` and its column `i` our column `i - 1`.

    Args:
      R: `[T + 1, T]` performance on task j (column, training order) after stage i (row).

    Returns:
      `{"acc", "bwt", "fwt"}` (BWT and FWT NaN for one task).
    """
    R = np.asarray(R, np.float64)
    T = R.shape[1]
    if R.shape != (T + 1, T):
        raise ValueError(f"R must be [T + 1, T], got {R.shape}")
    acc = R[T].mean()
    if T == 1:
        return {"acc": float(acc), "bwt": float("nan"), "fwt": float("nan")}
    bwt = np.mean([R[T, i] - R[i + 1, i] for i in range(T - 1)])
    fwt = np.mean([R[i, i] - R[0, i] for i in range(1, T)])
    return {"acc": float(acc), "bwt": float(bwt), "fwt": float(fwt)}


def greedy_order(transfer: np.ndarray) -> list[int]:
    """A task order from a pairwise transfer matrix, greedily.

    `transfer[i, j]`: gain on task j from training on task i alone. The first task is the
    best source (largest total transfer to the others, as Taskonomy ranks sources); each
    next task is the unvisited one the last task transfers to best. Ties: lowest index.
    """
    transfer = np.asarray(transfer, np.float64)
    n = transfer.shape[0]
    off = transfer * (1 - np.eye(n))
    order = [int(np.argmax(off.sum(axis=1)))]
    while len(order) < n:
        rest = [j for j in range(n) if j not in order]
        order.append(max(rest, key=lambda j: (transfer[order[-1], j], -j)))
    return order


def pairwise_transfer(results: Sequence[dict]) -> np.ndarray:
    """`[T, T]` transfer from the first stage of each order (task i trained alone).

    Args:
      results: `run_sequence` results whose `order` covers every task as a first task.

    Returns:
      `P[i, j] = R_after_i[j] - R_untrained[j]` in the tasks' canonical indices (means over
      seeds and over the orders that start with task i).
    """
    T = len(results[0]["order"])
    rows = {i: [] for i in range(T)}
    for res in results:
        order = res["order"]
        R = np.asarray(res["R_mean"])
        inverse = np.argsort(order)
        rows[order[0]].append(R[1, inverse] - R[0, inverse])
    missing = [i for i, r in rows.items() if not r]
    if missing:
        raise ConfigError(f"pairwise transfer needs an order starting with each task; none "
                          f"starts with task(s) {missing}")
    return np.stack([np.mean(rows[i], axis=0) for i in range(T)])


def make_orders(num_tasks: int, orders: str | int, *, seed: int = 0) -> list[tuple[int, ...]]:
    """`all` permutations (in lexicographic order), or `N` of them: the first of each
    starting task in turn (so the pairwise transfer is measured), then seeded random ones."""
    perms = list(itertools.permutations(range(num_tasks)))
    if orders == "all":
        return perms
    cfg.check_int("orders", orders)
    if orders > len(perms):
        raise ConfigError(f"orders must be 'all' or at most {len(perms)} for {num_tasks} "
                          f"tasks, got {orders}")
    firsts = [next(p for p in perms if p[0] == i) for i in range(num_tasks)]
    rng = np.random.default_rng(seed)
    rest = [perms[k] for k in rng.permutation(len(perms)) if perms[k] not in firsts]
    return (firsts + rest)[:orders]


class Programs:
    """Setups and jitted programs per (env, hidden widths), built once and shared by every
    task, stage and order that needs them: a task's `EnvParams` are an argument of the
    compiled programs, not constants in them, so variants of one env share one program.
    Of `lcfg` it reads `chunk`, `eval_episodes`, `noise` and `opt_rule`; runs with another
    `LifelongConfig` that agrees on those may share it."""

    def __init__(self, agent: Agent, config: Any, lcfg: LifelongConfig, num_seeds: int):
        self.agent, self.config, self.lcfg, self.num_seeds = agent, config, lcfg, num_seeds
        self._cache: dict = {}

    def _cached(self, key: tuple, build):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def setup(self, env: str, sizes: tuple[int, ...]) -> Setup:
        return self._cached(("setup", env, sizes), lambda: self.agent.setup(
            dataclasses.replace(self.config, env=env, hidden_sizes=sizes)))

    def env_params(self, task: Task) -> Any:
        """The task's `EnvParams` as arrays (so every variant has one signature)."""
        def build():
            base = self.setup(task.env, tuple(self.config.hidden_sizes)).env_params
            return jax.tree.map(jnp.asarray, task_params(task, base))
        return self._cached(("env_params", task), build)

    def _with(self, env: str, sizes: tuple[int, ...]):
        setup = self.setup(env, sizes)
        return lambda env_params: dataclasses.replace(setup, env_params=env_params)

    def init(self, task: Task, sizes: tuple[int, ...]):
        """`init(keys[S], hparams) -> state[S, ...]` on `task`."""
        def build():
            with_params = self._with(task.env, sizes)
            one = lambda k, hp, ep: self.agent.init(k, with_params(ep), hp)  # noqa: E731
            return jax.jit(runner.vmap_seeds(one, (0, None, None)))
        fn, env_params = self._cached(("init", task.env, sizes), build), self.env_params(task)
        return lambda keys, hparams: fn(keys, hparams, env_params)

    def chunk(self, task: Task, sizes: tuple[int, ...]):
        """`chunk(state, run_keys, start, hparams) -> (state, metrics[S, K])` on `task`."""
        def build():
            with_params = self._with(task.env, sizes)

            def iteration(state, key, packed):
                hparams, env_params = packed
                return self.agent.iteration(state, key, hparams, with_params(env_params))

            fn = runner.make_chunk(iteration, self.lcfg.chunk, self.config.num_iterations)
            return jax.jit(runner.vmap_seeds(fn, (0, 0, None, None)))
        fn, env_params = self._cached(("chunk", task.env, sizes), build), self.env_params(task)
        return lambda state, keys, start, hparams: fn(state, keys, start, (hparams, env_params))

    def evaluate(self, task: Task, sizes: tuple[int, ...]):
        """`evaluate(params[S, ...], keys[S]) -> greedy returns [S, eval_episodes]`."""
        env_params = self.env_params(task)
        max_steps = int(getattr(env_params, "max_steps_in_episode", 1000)) + 1

        def build():
            with_params = self._with(task.env, sizes)

            def one(params, key, env_params):
                setup = with_params(env_params)
                act = lambda p, o, k: self.agent.greedy_act(p, o, k, setup)  # noqa: E731
                return rollout.make_evaluate(setup.env, env_params, act,
                                             self.lcfg.eval_episodes, max_steps)(params, key)

            return jax.jit(jax.vmap(one, in_axes=(0, 0, None)))
        fn = self._cached(("eval", task.env, sizes, max_steps), build)
        return lambda params, keys: fn(params, keys, env_params)


def _carry(fresh: Any, previous: Any) -> Any:
    return fresh.replace(**{f: getattr(previous, f) for f in CARRIED
                            if hasattr(fresh, f) and hasattr(previous, f)})


def _grow_state(programs: Programs, task: Task, state: Any, sizes: tuple[int, ...],
                new_sizes: tuple[int, ...], hparams: Any, key: jax.Array) -> Any:
    """The seed-batched state with hidden layer `i` widened from `sizes[i]` to
    `new_sizes[i]`, one layer after another (`net2net.widen`, `net2net.grow_opt_state`)."""
    seed_keys = jax.random.split(key, programs.num_seeds)
    init_keys = jax.random.split(jax.random.fold_in(key, 1), programs.num_seeds)
    params, opt_state = state.params, state.opt_state
    target = getattr(state, "target_params", None)
    for index, (old, new) in enumerate(zip(sizes, new_sizes)):
        if new == old:
            continue
        step = net2net.Growth("widen", index, new, programs.lcfg.noise)
        keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(seed_keys, index)
        grow = jax.vmap(lambda p, k, s=step: net2net.grow_params(p, s, k))
        params = grow(params, keys)
        if target is not None:
            target = grow(target, keys)  # the same mapping: target and online stay paired
        # Only the structure and shapes of the intermediate network's optimizer state are
        # read under the `map` rule: trace its init, compile nothing.
        inter = tuple(new_sizes[: index + 1]) + tuple(sizes[index + 1:])
        shapes = jax.eval_shape(programs.init(task, inter), init_keys, hparams).opt_state
        template = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        opt_state = jax.vmap(lambda o, f, k, s=step: net2net.grow_opt_state(o, f, s, k))(
            opt_state, template, keys)
    if programs.lcfg.opt_rule == "reset":
        opt_state = programs.init(task, new_sizes)(init_keys, hparams).opt_state
    new_state = state.replace(params=params, opt_state=opt_state)
    return new_state.replace(target_params=target) if target is not None else new_state


def _performance(returns: np.ndarray, window: int) -> float:
    """Seed-mean of each seed's mean episode return over the last `window` iterations."""
    tail = np.asarray(returns)[:, -window:]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a seed with no finished episode
        per_seed = np.nanmean(np.where(np.isfinite(tail), tail, np.nan), axis=1)
    return float(np.nanmean(per_seed)) if np.isfinite(per_seed).any() else float("nan")


def _grown_sizes(sizes: tuple[int, ...], factor: float) -> tuple[int, ...]:
    return tuple(int(math.ceil(w * factor)) for w in sizes)


def _json_ready(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_ready(v) for v in x]
    if isinstance(x, (np.ndarray, jax.Array)):
        return _json_ready(np.asarray(x).tolist())
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def run_sequence(agent: Agent, config: Any, hparams: Any, tasks: Sequence[Task],
                 lcfg: LifelongConfig, *, order: Sequence[int] | None = None, seed: int = 0,
                 num_seeds: int = 1, out: str | None = None, stop_after: int | None = None,
                 programs: Programs | None = None, log=print) -> dict:
    """Train `agent` on `tasks` in `order`, evaluating every task after every stage.

    Args:
      config: the agent's `Config`; `total_timesteps` is one training phase's budget per
        task, `hidden_sizes` the starting widths.
      order: task indices in training order (default: as given).
      num_seeds: seeds vmapped together; they share the architecture, so growth is decided
        on their mean performance (run seeds one at a time for per-seed decisions).
      out: a folder for this sequence's stage checkpoints (and resume from them).
      stop_after: stop (as if interrupted) once this many stages are done in total.

    Returns:
      A JSON-ready dict: `order`, `task_names` (training order), `R` `[S, T+1, T]` (row 0:
      untrained, columns in training order), `R_mean`, per-seed and mean `metrics`
      (`transfer_metrics`), the `stages` log (phases, iterations, performance, widths) and
      the `growth` events (stage, task, performance, threshold, widths before and after).
    """
    order = list(range(len(tasks))) if order is None else list(order)
    if sorted(order) != list(range(len(tasks))):
        raise ConfigError(f"order must be a permutation of 0..{len(tasks) - 1}, got {order}")
    check_interface(agent, config, tasks)
    if getattr(config, "anneal_lr", False):
        raise ConfigError("anneal_lr decays the learning rate to 0 at the end of the first "
                          "task; set anneal_lr False for a task sequence")
    if config.normalize_obs:
        raise ConfigError("normalize_obs is not supported in task sequences (statistics "
                          "would mix tasks); set it False")
    programs = programs or Programs(agent, config, lcfg, num_seeds)
    seq = [tasks[i] for i in order]
    T = len(seq)
    base_key = jax.random.key(seed)
    sizes = tuple(config.hidden_sizes)
    progress = {"stage": 0, "R": [], "stages": [], "growth": [], "sizes": list(sizes)}
    state = None
    manager = None
    if out is not None:
        ckpt_dir = os.path.join(out, checkpoint.CHECKPOINT_DIR)
        # As JSON reads it back (tuples become lists), so a resume compares like with like.
        meta = json.loads(json.dumps(_json_ready({
            "agent": agent.name, "tasks": [t.name for t in seq], "seed": seed,
            "num_seeds": num_seeds, "config": cfg.to_dict(config),
            "lifelong": dataclasses.asdict(lcfg)})))
        if checkpoint.steps(ckpt_dir):
            saved = checkpoint.read_meta(ckpt_dir, checkpoint.steps(ckpt_dir)[-1])
            progress = saved["progress"]
            sizes = tuple(progress["sizes"])
            template = jax.eval_shape(programs.init(seq[0], sizes),
                                      jax.random.split(base_key, num_seeds), hparams)
            tree, _ = checkpoint.restore(ckpt_dir, {"state": template}, expected=meta)
            state = tree["state"]
            log(f"resumed after stage {progress['stage']} at widths {sizes}")
        manager = checkpoint.Checkpointer(ckpt_dir, meta, keep=2)

    # Every row evaluates on the same episodes (common random numbers): differences between
    # rows are the training's, not the evaluation's.
    eval_key = jax.random.fold_in(base_key, 1)

    def evaluate_all(state, sizes, row_key):
        row = []
        for task in seq:
            # Keyed by the task, not its position: every order evaluates a task on the same
            # episodes, so the untrained rows of different orders agree.
            task_key = jax.random.fold_in(row_key, zlib.crc32(task.name.encode()) & 0x7FFFFFFF)
            keys = jax.random.split(task_key, num_seeds)
            returns = programs.evaluate(task, sizes)(state.params, keys)
            row.append(np.nanmean(np.asarray(returns), axis=1))
        return np.stack(row, axis=1)  # [S, T]

    try:
        if progress["stage"] == 0 and not progress["R"]:
            init_keys = jax.random.split(jax.random.fold_in(base_key, 0), num_seeds)
            state = programs.init(seq[0], sizes)(init_keys, hparams)
            progress["R"].append(evaluate_all(state, sizes, eval_key))
        for stage in range(progress["stage"], T):
            if stop_after is not None and stage >= stop_after:
                break
            task = seq[stage]
            stage_key = jax.random.fold_in(base_key, 1000 + stage)
            fresh = programs.init(task, sizes)(
                jax.random.split(jax.random.fold_in(stage_key, 0), num_seeds), hparams)
            state = _carry(fresh, state)
            phase, growths, used = 0, 0, 0
            record = {"stage": stage, "task": task.name, "phases": []}
            while True:
                run_keys = jax.random.split(jax.random.fold_in(stage_key, 1 + phase),
                                            num_seeds)
                chunk = programs.chunk(task, sizes)
                returns, start, reached = [], 0, False
                while start < config.num_iterations:
                    state, metrics = chunk(state, run_keys, jnp.int32(start), hparams)
                    k = min(lcfg.chunk, config.num_iterations - start)
                    returns.append(np.asarray(metrics["episode/return"])[:, :k])
                    start += k
                    perf = _performance(np.concatenate(returns, axis=1), lcfg.window)
                    if lcfg.threshold is not None and perf >= lcfg.threshold:
                        reached = True
                        break
                used += start
                curve = np.concatenate(returns, axis=1)
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # no episode ended
                    mean_curve = np.nanmean(curve, axis=0)
                record["phases"].append({"sizes": list(sizes), "iterations": start,
                                         "performance": perf, "reached": reached,
                                         "curve": mean_curve})
                if reached or lcfg.threshold is None or phase + 1 >= lcfg.phases:
                    break
                if not lcfg.grow or growths >= lcfg.max_growths:
                    phase += 1
                    continue
                new_sizes = _grown_sizes(sizes, lcfg.grow_factor)
                event = {"stage": stage, "task": task.name, "after_iterations": used,
                         "performance": perf, "threshold": lcfg.threshold,
                         "from": list(sizes), "to": list(new_sizes),
                         "why": f"training return {perf:.3g} < threshold {lcfg.threshold:g} "
                                f"after {start} iterations"}
                log(f"grow at stage {stage} ({task.name}): {event['why']}; widths "
                    f"{sizes} -> {new_sizes}")
                state = _grow_state(programs, task, state, sizes, new_sizes, hparams,
                                    jax.random.fold_in(stage_key, 10_000 + phase))
                progress["growth"].append(event)
                sizes, growths, phase = new_sizes, growths + 1, phase + 1
            record["iterations"] = used
            progress["R"].append(evaluate_all(state, sizes, eval_key))
            progress["stages"].append(record)
            progress["stage"], progress["sizes"] = stage + 1, list(sizes)
            log(f"stage {stage} ({task.name}): {used} iterations, widths {sizes}, eval "
                f"{np.round(progress['R'][-1].mean(axis=0), 1).tolist()}")
            if manager is not None:
                manager.meta["progress"] = _json_ready(progress)
                manager.save(stage + 1, {"state": state})
    finally:
        if manager is not None:
            manager.close()
    R = np.stack([np.asarray(r) for r in progress["R"]], axis=1)  # [S, rows, T]
    result = {"order": order, "task_names": [t.name for t in seq], "R": R,
              "R_mean": R.mean(axis=0), "stages": progress["stages"],
              "growth": progress["growth"], "final_sizes": list(sizes),
              "complete": progress["stage"] == T, "state": state}
    if result["complete"]:
        per_seed = [transfer_metrics(r) for r in R]
        result["metrics_per_seed"] = per_seed
        result["metrics"] = {k: float(np.mean([m[k] for m in per_seed])) for k in per_seed[0]}
    return result


def check_interface(agent: Agent, config: Any, tasks: Sequence[Task]) -> None:
    """Raise `ConfigError` unless every task's env has the first one's spec."""
    if not tasks:
        raise ConfigError("tasks must name at least one task")
    specs = {}
    for task in tasks:
        if task.env not in specs:
            specs[task.env] = agent.setup(dataclasses.replace(config, env=task.env)).spec
    first = specs[tasks[0].env]
    for env, spec in specs.items():
        if spec != first:
            raise ConfigError(f"tasks must share one observation/action interface: {env} has "
                              f"{spec}, {tasks[0].env} has {first}")


def run_orders(agent: Agent, config: Any, hparams: Any, tasks: Sequence[Task],
               lcfg: LifelongConfig, orders: Sequence[Sequence[int]], *, seed: int = 0,
               num_seeds: int = 1, out: str | None = None, programs: Programs | None = None,
               log=print) -> dict:
    """`run_sequence` for each order (sharing compiled programs, `programs` if given), then
    the pairwise transfer matrix, the greedy order and whether it was the best measured
    (by ACC)."""
    programs = programs or Programs(agent, config, lcfg, num_seeds)
    results = []
    for k, order in enumerate(orders):
        sub = None if out is None else os.path.join(out, "orders", str(k))
        res = run_sequence(agent, config, hparams, tasks, lcfg, order=order, seed=seed,
                           num_seeds=num_seeds, out=sub, programs=programs, log=log)
        res.pop("state")
        results.append(res)
        log(f"order {[tasks[i].name for i in order]}: {res.get('metrics')}")
    summary = {"tasks": [t.name for t in tasks], "orders": results}
    complete = [r for r in results if r["complete"]]
    if complete:
        best = max(range(len(complete)), key=lambda i: complete[i]["metrics"]["acc"])
        summary["best_order"] = complete[best]["order"]
        try:
            transfer = pairwise_transfer(complete)
        except ConfigError as e:
            summary["order_search"] = {"error": str(e)}
        else:
            choice = greedy_order(transfer)
            measured = {tuple(r["order"]): r["metrics"]["acc"] for r in complete}
            ranked = sorted(measured, key=measured.get, reverse=True)
            summary["pairwise_transfer"] = transfer
            summary["order_search"] = {
                "greedy_order": choice,
                "greedy_order_names": [tasks[i].name for i in choice],
                "measured": tuple(choice) in measured,
                "greedy_acc": measured.get(tuple(choice)),
                "best_measured_order": list(ranked[0]),
                "best_measured_acc": measured[ranked[0]],
                "greedy_is_best": tuple(choice) == ranked[0],
                "greedy_rank": ranked.index(tuple(choice)) + 1 if tuple(choice) in measured
                else None}
    return _json_ready(summary)


def plot_matrices(summary: dict, path: str) -> None:
    """Heatmaps of every order's mean `R` (rows: untrained, then after each stage)."""
    # A bare Figure: no pyplot state, and the caller's backend (e.g. a notebook's) is kept.
    from matplotlib.figure import Figure

    results = summary["orders"]
    cols = min(3, len(results))
    rows = math.ceil(len(results) / cols)
    fig = Figure(figsize=(5.4 * cols, 4.0 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, res in zip(axes.flat, results):
        R = np.asarray(res["R_mean"], float)
        im = ax.imshow(R, cmap="viridis", aspect="auto")
        names = [n.split(":", 1)[-1] or n for n in res["task_names"]]
        ax.set_xticks(range(R.shape[1]), names, rotation=30, ha="right", fontsize=7)
        ax.set_yticks(range(R.shape[0]), ["untrained"] + [f"after {n}" for n in names],
                      fontsize=7)
        for (i, j), v in np.ndenumerate(R):
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", color="w", fontsize=7)
        m = res.get("metrics") or {}
        ax.set_title(f"ACC {m.get('acc', float('nan')):.1f}  BWT {m.get('bwt') or 0:.1f}  "
                     f"FWT {m.get('fwt') or 0:.1f}", fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046)
    for ax in list(axes.flat)[len(results):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str], agents: Mapping[str, Any]) -> int:
    """`jaxrl lifelong AGENT --tasks A,B,C [--orders all|N] [--grow] --out DIR`; `agents`
    maps names to records (the CLI passes `jaxrl.agents.REGISTRY`)."""
    parser = argparse.ArgumentParser(
        prog="jaxrl lifelong", description="Train an agent on a task sequence in one or "
        "more orders; write the transfer/forgetting matrices (JSON) and heatmaps (PNG).")
    parser.add_argument("agent", help="agent name (jaxrl list)")
    parser.add_argument("--tasks", required=True,
                        help="comma-separated tasks ENV[:field=value...], e.g. "
                             "CartPole-v1,CartPole-v1:length=1.0")
    parser.add_argument("--orders", default="1",
                        help="'all' permutations or a number N of orders (default 1: as given)")
    parser.add_argument("--grow", action="store_true", help="widen below --threshold")
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=50_000,
                        help="env steps per seed per training phase (default 50000)")
    parser.add_argument("--hidden-sizes", default=None, help="starting widths, e.g. 16,16")
    parser.add_argument("--num-envs", type=int, default=None)
    parser.add_argument("--rollout-len", type=int, default=None)
    parser.add_argument("--num-seeds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-episodes", type=int, default=16)
    parser.add_argument("--grow-factor", type=float, default=2.0)
    args = parser.parse_args(argv)

    cfg.check_choice("agent", args.agent, agents)
    agent = agents[args.agent]
    tasks = [parse_task(t) for t in args.tasks.split(",") if t.strip()]
    overrides: dict[str, Any] = {"total_timesteps": args.steps}
    if "anneal_lr" in {f.name for f in dataclasses.fields(agent.Config)}:
        overrides["anneal_lr"] = False
    for name in ("num_envs", "rollout_len"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.hidden_sizes:
        overrides["hidden_sizes"] = tuple(int(w) for w in args.hidden_sizes.split(","))
    config, hparams = agent.settings(tasks[0].env if tasks else None, tuned=False,
                                     **overrides)
    lcfg = LifelongConfig(threshold=args.threshold, grow=args.grow,
                          grow_factor=args.grow_factor, eval_episodes=args.eval_episodes)
    order_arg: str | int = args.orders if args.orders == "all" else _number(args.orders)
    orders = make_orders(len(tasks), order_arg, seed=args.seed)
    os.makedirs(args.out, exist_ok=True)
    started = time.time()
    summary = run_orders(agent, config, hparams, tasks, lcfg, orders, seed=args.seed,
                         num_seeds=args.num_seeds, out=args.out)
    summary.update(agent=agent.name, config=cfg.to_dict(config),
                   lifelong=dataclasses.asdict(lcfg), num_seeds=args.num_seeds,
                   wall_time_s=time.time() - started)
    with open(os.path.join(args.out, "lifelong.json"), "w") as f:
        json.dump(_json_ready(summary), f, indent=1)
    plot_matrices(summary, os.path.join(args.out, "transfer_matrix.png"))
    search = summary.get("order_search", {})
    print(f"wrote {args.out}/lifelong.json and transfer_matrix.png; best order "
          f"{summary.get('best_order')}; greedy order {search.get('greedy_order')} "
          f"(best measured: {search.get('greedy_is_best')})")
    return 0
