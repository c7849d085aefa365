"""PPO with and without sparse-reward add-ons on a maze whose goal is far from the start.

Arms: `ppo` (plain), `icm` (`jaxrl.sparse.icm`), `rnd` (`jaxrl.sparse.rnd`), `shaping`
(`jaxrl.sparse.potential_shaping` with phi = -(shortest-path moves to the goal) / 10, an
oracle potential read from the maze's distance table: an upper reference, not a method
that needs no knowledge), `teacher` (`jaxrl.curriculum.teacher` over lessons whose episodes start
anywhere within `d` moves of the goal, `d` growing by `--lesson` up to the start's
distance; it advances when a moving average of success reaches 80%) and
`reverse` (`jaxrl.curriculum.reverse`, reverse curriculum generation from the goal). Each
arm trains `--seeds` vmapped seeds for `--steps` env steps per seed and reports, per seed:
the success rate on the target task (start to goal) of the final policy, sampled and
greedy, over 64 fresh episodes; the training success (the mean `episode/return`, 1 on
reaching the goal) over the episodes completed in the last quarter of the iterations (from
the curriculum's starts, not the target's, for the curriculum arms); the first iteration
with a success; and the mean intrinsic reward the add-on added.

Run from the repository root (results and the command go to `bench/SPARSE.md` by hand):

    .venv/bin/python bench/sparse_maze.py --env Maze-15x15-v0 --steps 400000 --seeds 2
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl import actor_critic, curriculum, envs, rollout, runner, sparse
from jaxrl.agents import ppo


def distance_potential(env_id: str):
    """phi(image obs) = -(moves from the agent's cell to the goal cell) / 10."""
    env, _ = envs.make(env_id)
    dist = jnp.asarray(env.dist, jnp.float32)

    def phi(obs):
        agent = jnp.argmax(obs[..., 1].reshape(-1))
        goal = jnp.argmax(obs[..., 2].reshape(-1))
        return -dist[agent, goal] / 10.0

    return phi


def spread_levels(env_id: str, every: int) -> list:
    """Maze params whose episodes start anywhere within `d` moves of the goal, `d` growing
    by `every` up to the start-goal distance (the last lesson holds every start, the
    target's among them; evaluation is on the target alone)."""
    env, params = envs.make(env_id)
    start, goal = env._index(np.asarray(params.start)), env._index(np.asarray(params.goal))
    length = int(env.dist[start, goal])
    goal_cell = tuple(int(v) for v in params.goal)
    return [env.make_params(start=goal_cell, start_spread=d)
            for d in list(range(every, length, every)) + [length]]


def arms(env_id: str, gamma: float, lesson: int) -> dict:
    env, params = envs.make(env_id)
    return {
        "ppo": ppo.AGENT,
        "icm": ppo.AGENT.extend("ppo-icm", sparse.icm(sparse.ICMConfig(coef=0.1))),
        "rnd": ppo.AGENT.extend("ppo-rnd", sparse.rnd(sparse.RNDConfig(coef=0.5))),
        "shaping": ppo.AGENT.extend("ppo-shaping", sparse.potential_shaping(
            distance_potential(env_id), gamma)),
        "teacher": ppo.AGENT.extend("ppo-teacher", curriculum.teacher(
            spread_levels(env_id, lesson), 0.8, smoothing=0.5)),
        "reverse": ppo.AGENT.extend("ppo-reverse", curriculum.reverse(
            curriculum.maze_starts(env, params, radius=lesson // 2), period=10)),
    }


def target_success(agent, config, params, episodes: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """`(sampled, greedy)` success rates `[S]` of seed-batched `params` from the target
    task's start (the env's own params, not the curriculum's)."""
    setup = agent.setup(config)
    limit = int(setup.env_params.max_steps_in_episode) + 1

    def sample(p, obs, key):
        return actor_critic.policy(p, obs, setup)[0].sample(seed=key)

    def greedy(p, obs, key):
        return agent.greedy_act(p, obs, key, setup)

    rates = []
    for act in (sample, greedy):
        run = rollout.make_evaluate(setup.env, setup.env_params, act, episodes, limit)
        keys = jax.random.split(jax.random.key(7), jax.tree.leaves(params)[0].shape[0])
        rates.append(np.nanmean(np.asarray(jax.jit(jax.vmap(run))(params, keys)), 1))
    return rates[0], rates[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="Maze-15x15-v0")
    parser.add_argument("--steps", type=int, default=400_000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--arms", default="ppo,icm,rnd,shaping,teacher,reverse")
    parser.add_argument("--torso", default="mlp", choices=("mlp", "cnn"))
    parser.add_argument("--lesson", type=int, default=8,
                        help="moves between the teacher's starts (the reverse curriculum's "
                             "expansion radius is half of it)")
    args = parser.parse_args()
    config = ppo.Config(env=args.env, num_envs=16, rollout_len=128,
                        total_timesteps=args.steps, num_minibatches=4, num_epochs=4,
                        torso=args.torso)
    hparams = ppo.HParams.create()
    table = arms(args.env, float(hparams.gamma), args.lesson)
    print(f"{args.env}, {args.torso} torso, {args.steps} steps/seed, {args.seeds} seeds, "
          f"{config.num_iterations} iterations of {config.steps_per_iteration} steps")
    for name in args.arms.split(","):
        agent = table[name]
        train = jax.jit(jax.vmap(runner.make_train(agent, config), in_axes=(0, None)))
        start = time.perf_counter()
        state, metrics = jax.block_until_ready(
            train(jax.random.split(jax.random.key(0), args.seeds), hparams))
        wall = time.perf_counter() - start
        ret = np.asarray(metrics["episode/return"])  # [S, I], NaN: no episode ended
        count = np.asarray(metrics["episode/count"])
        last = slice(3 * ret.shape[1] // 4, None)
        # Weight each iteration's mean return by its episode count: success per episode.
        wins = np.nansum(np.nan_to_num(ret[:, last]) * count[:, last], 1)
        success = wins / np.maximum(count[:, last].sum(1), 1)
        first = [int(np.argmax(r > 0)) if (r > 0).any() else None for r in np.nan_to_num(ret)]
        key = next((k for k in metrics if k.endswith("/intrinsic_mean")), None)
        intrinsic = np.asarray(metrics[key]).mean(1) if key else np.zeros(args.seeds)
        sampled, greedy = target_success(agent, config, state.params)
        # Where a curriculum ended: its stage or its starts' mean distance to the goal.
        ends = {k: np.round(np.asarray(v)[:, -10:].mean(1).astype(float), 1).tolist()
                for k, v in metrics.items() if k.endswith(("/stage", "/mean_distance"))}
        print(f"{name:8s} target success sampled {np.round(sampled.astype(float), 3).tolist()} greedy "
              f"{np.round(greedy.astype(float), 3).tolist()} training success(last 25%) "
              f"{np.round(success.astype(float), 3).tolist()} "
              f"first success iteration {first} intrinsic mean "
              f"{np.round(intrinsic, 4).tolist()} {ends or ''} ({wall:.0f} s with compilation)",
              flush=True)


if __name__ == "__main__":
    main()
