"""Flat SAC / TD3 with and without hindsight experience replay on the goal-conditioned envs.

Arms: `sac`, `sac-her`, `td3`, `td3-her` (`jaxrl.her.extend` with `future` goals, ratio
0.8). Each arm trains `--seeds` vmapped seeds for `--steps` env steps per seed and reports,
per seed: the success rate of the final greedy policy over `--episodes` fresh episodes of
the env's own task (`env.success`), the same for the actor's own sampling (SAC only), and,
over the last quarter of the iterations, the training episodes' count and mean return
(-time limit when no episode reached the goal).

Results are appended to `--json-out` one (env, arm) at a time, and pairs already there
are skipped, so an interrupted run resumes. Run from the repository root, niced (the
numbers go to `bench/HER.md` by hand):

    nice -n 10 .venv/bin/python bench/her.py --env PointMaze-v0 --steps 60000 --seeds 4
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jaxrl  # noqa: F401 - sets XLA flags before JAX starts
import jax
import jax.numpy as jnp
import numpy as np

from jaxrl import envs, her, runner
from jaxrl.agents import ddpg

ARMS = {"sac": ddpg.SAC_AGENT, "td3": ddpg.TD3_AGENT}


def make_agent(arm: str):
    base = ARMS[arm.removesuffix("-her")]
    return her.extend(base, her.HER(strategy="future", relabel_ratio=0.8)) \
        if arm.endswith("-her") else base


def evaluate(agent, setup, params, key, num_episodes: int, *, sampled: bool) -> jax.Array:
    """Success rate `[]` over `num_episodes` fresh episodes of the greedy policy, or with
    `sampled` of the actor's own sampling (SAC's squashed Gaussian)."""
    env, env_params = envs.make(setup.config.env)

    def policy(obs, key):
        if sampled:
            return ddpg.sample_action(params["actor"], obs, key, setup)[0]
        return agent.greedy_act(params, obs, key, setup)

    horizon = env_params.max_steps_in_episode

    def episode(key):
        reset_key, run_key = jax.random.split(key)
        obs, state = env.reset(reset_key, env_params)

        def step(carry, key):
            obs, state, alive, success = carry
            act_key, step_key = jax.random.split(key)
            action = policy(obs, act_key)
            obs, state, _, terminated, truncated, _ = env.step(step_key, state, action,
                                                               env_params)
            success = success | (alive & terminated)
            return (obs, state, alive & ~terminated & ~truncated, success), None

        carry = (obs, state, jnp.bool_(True), jnp.bool_(False))
        carry, _ = jax.lax.scan(step, carry, jax.random.split(run_key, horizon))
        return carry[3]

    return jax.vmap(episode)(jax.random.split(key, num_episodes)).mean()


def run_arm(env_id: str, arm: str, steps: int, seeds: int, episodes: int, num_envs: int):
    agent = make_agent(arm)
    config, hparams = agent.settings(
        env_id, tuned=False, num_envs=num_envs, rollout_len=250, total_timesteps=steps,
        learning_starts=1000, buffer_size=steps, minibatch_size=128, hidden_sizes=(64, 64))
    setup = agent.setup(config)
    train = jax.jit(jax.vmap(runner.make_train(agent, config, setup), in_axes=(0, None)))
    start = time.perf_counter()
    state, metrics = train(runner.split_seed_keys(0, seeds), hparams)
    jax.block_until_ready(state)
    seconds = time.perf_counter() - start
    params = state.params
    eval_keys = jax.random.split(jax.random.key(1), seeds)
    success = jax.jit(jax.vmap(
        lambda p, k: evaluate(agent, setup, p, k, episodes, sampled=False)))(params, eval_keys)
    sampled = None
    if config.policy == "gaussian":
        sampled = np.asarray(jax.jit(jax.vmap(
            lambda p, k: evaluate(agent, setup, p, k, episodes, sampled=True)))(
                params, eval_keys)).round(3).tolist()
    limit = envs.make(env_id)[1].max_steps_in_episode
    tail = slice(config.num_iterations * 3 // 4, None)  # the last quarter of iterations
    count = np.asarray(metrics["episode/count"])[:, tail]
    returns = np.asarray(metrics["episode/return"])[:, tail]
    return {"env": env_id, "arm": arm, "steps": steps, "seeds": seeds, "num_envs": num_envs,
            "eval_success": np.asarray(success).round(3).tolist(),
            "eval_success_sampled": sampled,
            "train_episodes_last_quarter": count.sum(axis=1).astype(int).tolist(),
            "train_mean_return_last_quarter": np.nanmean(returns, axis=1).round(1).tolist(),
            "time_limit": limit, "seconds_with_compile": round(seconds, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="PointMaze-v0")
    parser.add_argument("--arms", default="sac,sac-her")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--json-out", default="runs/bench_her.json")
    args = parser.parse_args()
    results = []
    if os.path.exists(args.json_out):
        with open(args.json_out) as f:
            results = json.load(f)
    for arm in args.arms.split(","):
        key = (args.env, arm, args.steps, args.seeds)
        if any((r["env"], r["arm"], r["steps"], r["seeds"]) == key for r in results):
            print("skip (done)", key)
            continue
        result = run_arm(args.env, arm, args.steps, args.seeds, args.episodes, args.num_envs)
        print(json.dumps(result), flush=True)
        results.append(result)
        os.makedirs(os.path.dirname(args.json_out) or ".", exist_ok=True)
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
