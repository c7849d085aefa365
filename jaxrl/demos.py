"""Expert demonstrations: the dataset pytree, its versioned file format, and recording one
from any run folder.

A `Demos` is a flat dataset of complete episodes, one row per env step, episode-major
(episode 0's steps in order, then episode 1's, ...), so "the first k episodes" is a prefix
of every array and a learner can mask by episode id. It keeps both end flags and the
observation each action led to (`next_obs`, before any auto-reset), like a `Transition`.

The file is an uncompressed-or-compressed NumPy `.npz` holding, under these names:

* `format_version`: int, `FORMAT_VERSION` (a file of another version is refused);
* `env`: the registered env id the episodes were recorded on (a 0-d unicode array);
* `obs`, `next_obs`: `[D, *obs_shape]` float32 raw env observations (not normalised);
* `action`: `[D]` int32 (discrete) or `[D, *action_shape]` float32 (as the policy chose it,
  before the env's clipping);
* `reward`: `[D]` float32 env reward; `terminated`, `truncated`: `[D]` bool;
* `episode`: `[D]` int32 episode id, `0 .. E-1`, non-decreasing;
* `episode_return`: `[E]` float32 undiscounted return of each episode.

`load` checks all of it (and, given them, the env id and the env's spaces) and names the
first problem in one line (`ConfigError`). `record(run_dir, episodes)` rolls out a run's
greedy (or sampling) policy; `load_expert` gives a run's policy as a pure function for a
learner to query inside its own jitted run (DAgger). `jaxrl demos` is `command`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl import rollout
from jaxrl.config import ConfigError, check_int
from jaxrl.envs.wrappers import NormalizeObservationState, transplant_statistics
from jaxrl.types import EnvSpec, PRNGKey

FORMAT_VERSION = 1
ARRAYS = ("obs", "next_obs", "action", "reward", "terminated", "truncated", "episode",
          "episode_return")


@struct.dataclass
class Demos:
    """A demonstration dataset (see the module docstring for each field's meaning).

    Attributes:
      obs, next_obs: [D, *obs_shape] float32.
      action: [D, *action_shape] int32 (discrete) or float32.
      reward: [D] float32; terminated, truncated: [D] bool.
      episode: [D] int32 episode id, episode-major.
      episode_return: [E] float32.
      env: the env id (static: not a pytree leaf).
    """

    obs: Any
    next_obs: Any
    action: Any
    reward: Any
    terminated: Any
    truncated: Any
    episode: Any
    episode_return: Any
    env: str = struct.field(pytree_node=False, default="")

    @property
    def size(self) -> int:
        """Rows (env steps), `D`."""
        return int(np.shape(self.reward)[0])

    @property
    def num_episodes(self) -> int:
        """Episodes, `E`."""
        return int(np.shape(self.episode_return)[0])

    @property
    def expert_return(self) -> float:
        """Mean undiscounted return of the recorded episodes."""
        return float(np.mean(self.episode_return))


def first_episodes(demos: Demos, num_episodes: int) -> Demos:
    """The first `num_episodes` episodes of `demos` (host-side; a prefix of every row)."""
    check_int("num_episodes", num_episodes)
    if num_episodes > demos.num_episodes:
        raise ConfigError(f"num_episodes ({num_episodes}) must be at most the "
                          f"{demos.num_episodes} episodes in the demos")
    rows = int(np.sum(np.asarray(demos.episode) < num_episodes))
    take = lambda x: np.asarray(x)[:rows]  # noqa: E731
    return Demos(**{name: take(getattr(demos, name)) for name in ARRAYS[:-1]},
                 episode_return=np.asarray(demos.episode_return)[:num_episodes],
                 env=demos.env)


def save(path: str, demos: Demos) -> None:
    """Write `demos` to `path` (must end in `.npz`), atomically (temporary file, rename)."""
    if not isinstance(path, str) or not path.endswith(".npz"):
        raise ConfigError(f"out must be a file name ending in .npz, got {path!r}")
    _check_arrays({name: np.asarray(getattr(demos, name)) for name in ARRAYS}, path)
    tmp = path[:-4] + ".tmp.npz"
    try:
        np.savez_compressed(tmp, format_version=np.int64(FORMAT_VERSION),
                            env=np.array(demos.env),
                            **{name: np.asarray(getattr(demos, name)) for name in ARRAYS})
        os.replace(tmp, path)
    except OSError as e:
        raise ConfigError(f"out {path!r} is not writable: {e.strerror}") from None


def _check_arrays(arrays: dict[str, np.ndarray], path: str) -> None:
    """Raise `ConfigError` on the first internal inconsistency of a dataset's arrays."""
    size = arrays["reward"].shape[0] if arrays["reward"].ndim == 1 else -1
    if size <= 0:
        raise ConfigError(f"demos {path!r}: reward must have shape [D] with D > 0, got "
                          f"{arrays['reward'].shape}")
    for name in ("obs", "next_obs", "action", "terminated", "truncated", "episode"):
        if arrays[name].ndim == 0 or arrays[name].shape[0] != size:
            raise ConfigError(f"demos {path!r}: {name} must have {size} rows (as reward), "
                              f"got shape {arrays[name].shape}")
    if arrays["obs"].shape != arrays["next_obs"].shape:
        raise ConfigError(f"demos {path!r}: next_obs shape {arrays['next_obs'].shape} differs "
                          f"from obs shape {arrays['obs'].shape}")
    for name in ("reward", "terminated", "truncated", "episode"):
        if arrays[name].ndim != 1:
            raise ConfigError(f"demos {path!r}: {name} must have shape [D], got "
                              f"{arrays[name].shape}")
    episode = arrays["episode"]
    if not np.issubdtype(episode.dtype, np.integer):
        raise ConfigError(f"demos {path!r}: episode must be integer ids, got {episode.dtype}")
    num = arrays["episode_return"].shape[0] if arrays["episode_return"].ndim == 1 else -1
    if (episode[0] != 0 or np.any(np.diff(episode) < 0) or np.any(np.diff(episode) > 1)
            or episode[-1] != num - 1):
        raise ConfigError(f"demos {path!r}: episode ids must run 0, 1, ... without gaps in "
                          f"order, one episode_return each ({num} given)")
    ends = np.flatnonzero(np.diff(episode)).tolist() + [size - 1]
    done = np.logical_or(arrays["terminated"], arrays["truncated"])
    if not np.all(done[ends]) or done.sum() != len(ends):
        raise ConfigError(f"demos {path!r}: every episode must end (terminated or truncated) "
                          "on its last row and only there")


def load(path: str, *, env: str | None = None, spec: EnvSpec | None = None) -> Demos:
    """Read and check a demonstrations file.

    Args:
      path: an `.npz` file written by `save`.
      env: if given, the env id the demos must have been recorded on.
      spec: if given, the env's spaces the demos must fit (observation shape, action
        shape and kind, discrete actions in range).

    Raises:
      ConfigError: one line naming the first problem: missing or unreadable file, another
        format version, a missing or inconsistent array, another env, another shape.
    """
    if not isinstance(path, str) or not path:
        raise ConfigError(f"demos must be the path of a .npz file, got {path!r}")
    if not os.path.isfile(path):
        raise ConfigError(f"demos {path!r} does not exist (record one with `jaxrl demos "
                          "RUN_DIR --episodes N --out FILE.npz`)")
    try:
        with np.load(path, allow_pickle=False) as data:
            files = dict(data.items())
    except (OSError, ValueError, EOFError) as e:
        raise ConfigError(f"demos {path!r} is not a readable .npz file ({type(e).__name__})"
                          ) from None
    if "format_version" not in files:
        raise ConfigError(f"demos {path!r} has no format_version (not a jaxrl demos file)")
    version = files["format_version"]
    if version.shape != () or int(version) != FORMAT_VERSION:
        raise ConfigError(f"demos {path!r} has format version {version.tolist()}; this "
                          f"jaxrl reads version {FORMAT_VERSION}")
    missing = [name for name in ("env",) + ARRAYS if name not in files]
    if missing:
        raise ConfigError(f"demos {path!r} lacks the array {missing[0]!r}")
    _check_arrays(files, path)
    recorded = str(files["env"])
    if env is not None and recorded != env:
        raise ConfigError(f"demos {path!r} were recorded on {recorded!r}, not on env {env!r}")
    if spec is not None:
        _check_spec(files, spec, path)
    action = files["action"]
    return Demos(obs=files["obs"].astype(np.float32),
                 next_obs=files["next_obs"].astype(np.float32),
                 action=action.astype(np.int32 if spec is None or spec.discrete else np.float32),
                 reward=files["reward"].astype(np.float32),
                 terminated=files["terminated"].astype(bool),
                 truncated=files["truncated"].astype(bool),
                 episode=files["episode"].astype(np.int32),
                 episode_return=files["episode_return"].astype(np.float32), env=recorded)


def _check_spec(files: dict[str, np.ndarray], spec: EnvSpec, path: str) -> None:
    obs_shape = files["obs"].shape[1:]
    if obs_shape != spec.obs_shape:
        raise ConfigError(f"demos {path!r} have observations of shape {obs_shape}; the env's "
                          f"are {spec.obs_shape}")
    action = files["action"]
    if spec.discrete:
        if action.shape[1:] != () or not np.issubdtype(action.dtype, np.integer):
            raise ConfigError(f"demos {path!r} have actions of shape {action.shape[1:]} and "
                              f"dtype {action.dtype}; the env's are discrete (integers)")
        if action.min() < 0 or action.max() >= spec.num_actions:
            raise ConfigError(f"demos {path!r} have actions outside 0..{spec.num_actions - 1}")
    elif action.shape[1:] != spec.action_shape:
        raise ConfigError(f"demos {path!r} have actions of shape {action.shape[1:]}; the "
                          f"env's are {spec.action_shape}")


class Expert(NamedTuple):
    """A trained run's policy, ready to act inside a learner's trace.

    Attributes:
      env: the env id it was trained on.
      spec: that env's `EnvSpec`.
      act: `act(obs [*obs_shape], key) -> action` on a *raw* observation (the run's
        observation normalisation, with its training statistics, is applied inside):
        greedy, or sampling from the policy with `sample`. Pure; the expert's parameters
        are constants closed over.
    """

    env: str
    spec: EnvSpec
    act: Callable[[jax.Array, PRNGKey], jax.Array]


def _sampling_act(agent: Any) -> Callable:
    """The module-level `act(params, obs, key, setup)` beside `agent.greedy_act`."""
    module = importlib.import_module(agent.greedy_act.__module__)
    act = getattr(module, "act", None)
    if act is None or tuple(act.__code__.co_varnames[:4]) != ("params", "obs", "key", "setup"):
        raise ConfigError(f"--sample needs a sampling policy; agent {agent.name!r} has only a "
                          "greedy one (drop --sample)")
    return act


def _normalizer(setup: Any, train_env_state: Any) -> Callable[[jax.Array], jax.Array]:
    """Raw observation -> what the run's policy saw in training (identity without
    observation normalisation): the training statistics pooled over its env copies."""
    if not getattr(setup.config, "normalize_obs", False):
        return lambda obs: obs
    _, fresh = rollout.reset_envs(setup.env, setup.env_params, jax.random.key(0), 1)
    fresh = transplant_statistics(fresh, train_env_state)
    state = fresh
    while not isinstance(state, NormalizeObservationState):
        state = state.env_state
    state = jax.tree.map(lambda x: x[0], state)
    return lambda obs: setup.env.normalize(state, obs)


def load_expert(run_dir: str, agents: Mapping[str, Any], *,
                expert_seed: int = 0, sample: bool = False) -> Expert:
    """The policy of seed `expert_seed` of run folder `run_dir`'s newest checkpoint.

    `agents` maps agent names to records (`jaxrl.agents.REGISTRY`).

    Raises:
      ConfigError: not a run folder, no checkpoint, no such seed, or (`sample`) an agent
        without a sampling policy.
    """
    from jaxrl import experiment

    check_int("expert_seed", expert_seed, zero=True)
    run = experiment.load_run(run_dir, agents)
    if expert_seed >= run.options["num_seeds"]:
        raise ConfigError(f"expert_seed ({expert_seed}) must be below the run's "
                          f"{run.options['num_seeds']} seeds")
    setup = run.agent.setup(run.config)
    tree, _ = experiment.restore_checkpoint(run, setup, run_dir)
    state = jax.tree.map(lambda x: x[expert_seed], tree["state"])
    policy = _sampling_act(run.agent) if sample else run.agent.greedy_act
    normalize = _normalizer(setup, state.env_state)
    params = state.params

    def act(obs: jax.Array, key: PRNGKey) -> jax.Array:
        return policy(params, normalize(obs), key, setup=setup)

    return Expert(env=run.config.env, spec=setup.spec, act=act)


def record(expert: Expert, episodes: int, *, seed: int = 0) -> Demos:
    """Roll out `expert` for `episodes` complete episodes (one per fresh env copy).

    Each copy runs for the env's time limit plus one step, and its first episode is kept.

    Returns:
      The `Demos`, episode-major, raw observations.
    """
    from jaxrl.agent import make_env

    check_int("episodes", episodes)
    check_int("seed", seed, zero=True)
    env, env_params, _ = make_env(expert.env)
    max_steps = int(getattr(env_params, "max_steps_in_episode", 1000)) + 1
    run = rollout.make_rollout(env, env_params, lambda params, obs, key: expert.act(obs, key),
                               max_steps)

    @jax.jit
    def collect(key):
        reset_key, run_key = jax.random.split(key)
        env_state, obs = rollout.reset_envs(env, env_params, reset_key, episodes)
        _, _, traj, _ = run(None, env_state, obs, run_key)
        return traj

    traj = jax.tree.map(lambda x: np.swapaxes(np.asarray(x), 0, 1),  # [N, T, ...]
                        collect(jax.random.fold_in(jax.random.key(seed), 0xDE405)))
    done = traj.terminated | traj.truncated
    if not done.any(axis=1).all():
        raise ConfigError(f"an episode did not end within {max_steps} steps; the env has no "
                          "time limit jaxrl can read")
    lengths = np.argmax(done, axis=1) + 1
    keep = np.arange(max_steps)[None, :] < lengths[:, None]  # [N, T]
    rows = {name: getattr(traj, name)[keep] for name in
            ("obs", "next_obs", "action", "reward", "terminated", "truncated")}
    episode = np.repeat(np.arange(episodes, dtype=np.int32), lengths)
    returns = np.array([traj.reward[i, :n].sum() for i, n in enumerate(lengths)], np.float32)
    return Demos(**rows, episode=episode, episode_return=returns, env=expert.env)


def command(argv: list[str], agents: Mapping[str, Any]) -> int:
    """`jaxrl demos RUN_DIR --episodes N --out FILE.npz [--sample] [--seed S]`; `agents`
    is the registry run folders are read with (the CLI passes `jaxrl.agents.REGISTRY`)."""
    from jaxrl.cli import _Parser

    parser = _Parser(prog="jaxrl demos",
                     description="Record a run's policy as a demonstrations file (.npz).")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the expert's run folder")
    parser.add_argument("--episodes", type=int, required=True, metavar="INT",
                        help="complete episodes to record")
    parser.add_argument("--out", required=True, metavar="FILE.npz", help="file to write")
    parser.add_argument("--sample", action="store_true",
                        help="sample actions from the policy (default: greedy)")
    parser.add_argument("--seed", type=int, default=0, metavar="INT",
                        help="rollout seed (default: 0)")
    parser.add_argument("--expert-seed", type=int, default=0, metavar="INT",
                        help="which of the run's seeds acts (default: 0)")
    args = parser.parse_args(argv)
    check_int("episodes", args.episodes)
    if not args.out.endswith(".npz"):
        raise ConfigError(f"out must be a file name ending in .npz, got {args.out!r}")
    expert = load_expert(args.run_dir, agents, expert_seed=args.expert_seed,
                         sample=args.sample)
    demos = record(expert, args.episodes, seed=args.seed)
    save(args.out, demos)
    ret = np.asarray(demos.episode_return)
    print(f"{args.out}: {demos.num_episodes} episodes, {demos.size} steps on {demos.env}, "
          f"expert return {ret.mean():.2f} +- {ret.std():.2f}")
    return 0


def as_jax(demos: Demos) -> Demos:
    """`demos` with device arrays (to close over in a learner's `Setup.extras`)."""
    return jax.tree.map(jnp.asarray, demos)


__all__ = ["ARRAYS", "Demos", "Expert", "FORMAT_VERSION", "as_jax", "command",
           "first_episodes", "load", "load_expert", "record", "save"]
