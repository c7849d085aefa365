"""A/B: one seed's whole training run unvmapped vs vmapped over a batch of 1.

Usage: `.venv/bin/python bench/profile/vmap_one_seed.py {dqn,ppo} [SEEDS]`. With SEEDS > 1
the A/B is instead SEEDS seeds vmapped vs one at a time (`runner.vmap_seeds` with
`seed_batch=1`, i.e. `--seed-batch 1`). The two compiled runs
alternate 4 times in one process, so drifts of the machine hit both alike; prints every
wall time and the best of each. DQN: the bench's PureJaxRL config at 1e5 steps; PPO: the
PureJaxRL CartPole config at 2.5e5 steps.
"""

import sys
import time

import _timing  # noqa: F401 - imports jaxrl first
import jax

from jaxrl import runner
from jaxrl.agents import dqn, ppo


def dqn_config(total_timesteps: int) -> dqn.Config:
    """`bench/dqn_cartpole.py`'s jaxrl DQN config (PureJaxRL CartPole) at a given budget."""
    return dqn.Config(env="CartPole-v1", num_envs=10, rollout_len=100,
                      total_timesteps=total_timesteps, buffer_size=10_000, minibatch_size=128,
                      learning_starts=10_000, train_frequency=1, gradient_steps=1,
                      target_update_period=50, hidden_sizes=(120, 84), activation="relu",
                      anneal_lr=False, loss="mse")


DQN_HPARAMS = dqn.HParams.create(learning_rate=2.5e-4, gamma=0.99, tau=1.0,
                                 epsilon_start=1.0, epsilon_end=0.05, exploration_fraction=0.5)


def setup(agent: str):
    """`(train, hparams)` of the A/B for `agent` (`dqn` or `ppo`)."""
    if agent == "dqn":
        return runner.make_train(dqn.AGENT, dqn_config(100_000)), DQN_HPARAMS
    config = ppo.Config(env="CartPole-v1", total_timesteps=250_000)
    return runner.make_train(ppo.AGENT, config), ppo.HParams.create(learning_rate=2.5e-4)


def main() -> None:
    agent = sys.argv[1] if len(sys.argv) > 1 else "dqn"
    num_seeds = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    train, hparams = setup(agent)
    keys = jax.random.split(jax.random.key(0), num_seeds)
    vmapped = jax.jit(jax.vmap(train, in_axes=(0, None)))
    if num_seeds == 1:
        runs = {"unvmapped": (jax.jit(train), keys[0]), "vmapped over 1": (vmapped, keys)}
    else:
        one_at_a_time = jax.jit(runner.vmap_seeds(train, (0, None), seed_batch=1))
        runs = {f"{num_seeds} vmapped": (vmapped, keys),
                f"{num_seeds} one by one": (one_at_a_time, keys)}
    for fn, key in runs.values():
        jax.block_until_ready(fn(key, hparams))
    times = {name: [] for name in runs}
    for _ in range(4):
        for name, (fn, key) in runs.items():
            t = time.perf_counter()
            jax.block_until_ready(fn(key, hparams))
            times[name].append(time.perf_counter() - t)
    for name, ts in times.items():
        print(f"{agent} {name:15s} " + " ".join(f"{t:.3f}" for t in ts) + f"  best {min(ts):.3f} s")


if __name__ == "__main__":
    main()
