"""Acting in vectorised environments: `lax.scan` over a vmapped gymnax `step`.

`reset_envs` starts `N` environment copies; `make_rollout` builds the function that acts
for `T` steps in all of them and returns the `[T, N]` transitions plus the per-step episode
statistics from `jaxrl.envs.EpisodeStatistics`. `episode_metrics` reduces those to scalars.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl.envs.wrappers import NormalizeObservation, Wrapper, transplant_statistics
from jaxrl.types import EnvParams, EnvState, Metrics, Params, PRNGKey, Transition

EPISODE_KEYS = ("episode/done", "episode/return", "episode/length")


def reset_envs(env: Any, env_params: EnvParams, key: PRNGKey, num_envs: int):
    """Reset `num_envs` copies of `env`: `(env_state, obs [N, *obs_shape])`, leaves `[N, ...]`."""
    keys = jax.random.split(key, num_envs)
    obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(keys, env_params)
    return env_state, obs


def make_rollout(env: Any, env_params: EnvParams,
                 act: Callable[[Params, jax.Array, PRNGKey], jax.Array], num_steps: int):
    """Build `rollout(params, env_state, obs, key)` acting `num_steps` in every env copy.

    Args:
      env: a gymnax environment wrapped in `EpisodeStatistics` (its info keys are read).
      env_params: the environment's parameters (closed over, so they are constants).
      act: `act(params, obs[*obs_shape], key) -> action` for one observation; vmapped here.
      num_steps: `T`, steps per rollout.

    Returns:
      `rollout(params, env_state, obs[N, ...], key) -> (env_state, obs, traj, episodes)`
      where `traj` is a `Transition` with leaves `[T, N, ...]` and `episodes` holds the
      `[T, N]` arrays `episode/done`, `episode/return`, `episode/length`.
    """
    batched_act = jax.vmap(act, in_axes=(None, 0, 0))
    batched_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def rollout(params: Params, env_state: EnvState, obs: jax.Array, key: PRNGKey):
        num_envs = obs.shape[0]

        def step(carry, step_key):
            env_state, obs = carry
            act_key, env_key = jax.random.split(step_key)
            action = batched_act(params, obs, jax.random.split(act_key, num_envs))
            next_obs, env_state, reward, terminated, truncated, info = batched_step(
                jax.random.split(env_key, num_envs), env_state, action, env_params)
            transition = Transition(
                obs=obs, action=action, reward=reward.astype(jnp.float32),
                terminated=terminated.astype(bool), truncated=truncated.astype(bool),
                next_obs=info["final_observation"])
            episodes = {k: info[k] for k in EPISODE_KEYS}
            return (env_state, next_obs), (transition, episodes)

        (env_state, obs), (traj, episodes) = jax.lax.scan(
            step, (env_state, obs), jax.random.split(key, num_steps))
        return env_state, obs, traj, episodes

    return rollout


def episode_metrics(episodes: dict[str, jax.Array]) -> Metrics:
    """Mean return and length of the episodes completed in a rollout.

    Args:
      episodes: `[T, N]` arrays `episode/done`, `episode/return`, `episode/length`.

    Returns:
      Scalars `episode/return`, `episode/length` (NaN when no episode ended, so that no
      zero is ever logged for an episode that did not happen) and `episode/count`.
    """
    done = episodes["episode/done"].astype(jnp.float32)
    count = done.sum()
    safe = jnp.maximum(count, 1.0)
    nan = jnp.float32(jnp.nan)
    ret = jnp.where(count > 0, (episodes["episode/return"] * done).sum() / safe, nan)
    length = jnp.where(count > 0, (episodes["episode/length"] * done).sum() / safe, nan)
    return {"episode/return": ret, "episode/length": length, "episode/count": count}


def renormalized_observation(env: Any, state: Any, obs: jax.Array) -> jax.Array:
    """One env copy's current observation, normalised with the statistics now in `state`.

    Walks down the wrapper chain to a `NormalizeObservation`; without one, returns `obs`.
    """
    if isinstance(env, NormalizeObservation):
        return env.normalize(state, state.last_obs)
    if isinstance(env, Wrapper) and hasattr(state, "env_state"):
        return renormalized_observation(env._env, state.env_state, obs)
    return obs


def make_evaluate(env: Any, env_params: EnvParams,
                  act: Callable[[Params, jax.Array, PRNGKey], jax.Array], num_episodes: int,
                  max_steps: int):
    """Build `evaluate(params, key) -> returns[num_episodes]`: one episode per env copy.

    Each of `num_episodes` fresh env copies is run with `act` (e.g. a greedy policy) for
    `max_steps` steps; the undiscounted return of its *first* completed episode is kept, so
    short episodes are not over-represented. A copy whose first episode did not end within
    `max_steps` gives NaN (choose `max_steps` at least the env's time limit).

    `env` and `act` are as in `make_rollout`.

    Returns:
      `evaluate(params, key, train_env_state=None)`; pass the training env state (`[N, ...]`)
      to evaluate with the observation statistics learned in training.
    """
    collect = make_rollout(env, env_params, act, max_steps)

    def evaluate(params: Params, key: PRNGKey, train_env_state: Any = None) -> jax.Array:
        reset_key, run_key = jax.random.split(key)
        env_state, obs = reset_envs(env, env_params, reset_key, num_episodes)
        if train_env_state is not None:
            # Fresh copies would normalise observations with fresh statistics: use the
            # training ones (pooled over the training env copies) instead.
            env_state = transplant_statistics(env_state, train_env_state)
            obs = jax.vmap(lambda st, o: renormalized_observation(env, st, o))(env_state, obs)
        _, _, _, episodes = collect(params, env_state, obs, run_key)
        done = episodes["episode/done"]  # [T, N]
        first = jnp.argmax(done, axis=0)  # index of the first True (0 if none)
        ret = jnp.take_along_axis(episodes["episode/return"], first[None], axis=0)[0]
        return jnp.where(done.any(axis=0), ret, jnp.nan)

    return evaluate
