"""Lifelong-learning measurements: Net2Net growth on demand, and the order of tasks.

Part `growth`: PPO on two tasks of a one-step contextual bandit (`bench/pattern-bandit`,
registered here): first act on the sign of one input (linearly separable), then XOR of the
two inputs, which a hidden layer of one tanh unit cannot represent (at most 3 of 4 corners,
see `_register_pattern_bandit`). The return is 1 for the right action, so the training
return is the accuracy. Three runs of the sequence per seed, each seed run alone so that
its growth decision is its own: the small network (one hidden unit) without growth, the
same with growth (x4 when the training accuracy of a phase ends below the threshold), and
the large network (4 units) from scratch; every run may train a task for two phases while
below the threshold, so all three get the same budget. Part `orders`: three CartPole
variants in all six orders through `jaxrl lifelong`, with the transfer matrices, heatmaps
and the greedy order search.

    nice -n 10 .venv/bin/python bench/lifelong.py [--part growth|orders|all] [--seeds 4]

Writes `bench/lifelong/` (one JSON per part, the CLI's run folder for the orders) and
prints the tables `bench/LIFELONG.md` quotes.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "lifelong")


def _register_pattern_bandit() -> None:
    """`bench/pattern-bandit`: one-step contextual bandit on the corners of [-1, 1]^2.

    Each episode shows a uniformly drawn corner `x` (plus N(0, 0.05) noise); the reward is
    1 iff the action is `labels[corner]` (corners ordered (-,-), (-,+), (+,-), (+,+)). The
    labels are `EnvParams`, so `labels=0/0/1/1` (act on the sign of x1, linearly separable)
    and `labels=0/1/1/0` (XOR) are two tasks of one env. One tanh unit cannot do XOR: the
    policy's logit difference is monotone in one projection `a.x + b`, and the XOR corners'
    projections have equal sums for both labels, so at most 3 of 4 corners are right
    (training return <= 0.75); two units suffice.
    """
    import jax
    import jax.numpy as jnp
    from flax import struct
    from gymnax.environments import environment, spaces

    from jaxrl import envs

    @struct.dataclass
    class State(environment.EnvState):
        corner: jax.Array
        obs: jax.Array
        time: int

    @struct.dataclass
    class Params(environment.EnvParams):
        labels: jax.Array = struct.field(default_factory=lambda: jnp.array([0, 0, 1, 1]))
        max_steps_in_episode: int = 1

    corners = jnp.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])

    class PatternBandit(environment.Environment):
        @property
        def default_params(self):
            return Params()

        @property
        def num_actions(self):
            return 2

        def action_space(self, params=None):
            return spaces.Discrete(2)

        def observation_space(self, params):
            return spaces.Box(-2.0, 2.0, (2,), jnp.float32)

        def get_obs(self, state, params=None, key=None):
            return state.obs

        def reset_env(self, key, params):
            corner_key, noise_key = jax.random.split(key)
            corner = jax.random.randint(corner_key, (), 0, 4)
            obs = corners[corner] + 0.05 * jax.random.normal(noise_key, (2,))
            state = State(corner=corner, obs=obs.astype(jnp.float32), time=0)
            return state.obs, state

        def step_env(self, key, state, action, params):
            reward = (action == params.labels[state.corner]).astype(jnp.float32)
            state = state.replace(time=state.time + 1)
            return state.obs, state, reward, jnp.asarray(True), {}

    if "bench/pattern-bandit" not in envs.list_envs():
        envs.register("bench/pattern-bandit", PatternBandit)


def growth(seeds: int, steps: int, threshold: float, ent_coef: float) -> dict:
    from jaxrl import lifelong
    from jaxrl.agents import ppo

    _register_pattern_bandit()
    tasks = [lifelong.parse_task("bench/pattern-bandit:labels=0/0/1/1"),
             lifelong.parse_task("bench/pattern-bandit:labels=0/1/1/0")]
    # (widths, grow, symmetry-breaking noise): without noise the copies of the one unit
    # keep identical incoming weights under gradient descent (equal outgoing weights give
    # equal gradients), so the widened network stays a one-unit network (Net2Net, 2.3).
    runs = {"small, no growth": ((1,), False, 0.0), "small, growth, no noise": ((1,), True, 0.0),
            "small, growth, noise 0.3": ((1,), True, 0.3),
            "large from scratch": ((4,), False, 0.0)}
    hparams = ppo.HParams.create(learning_rate=3e-3, ent_coef=ent_coef)
    table = {}
    for name, (sizes, grow, noise) in runs.items():
        config = ppo.Config(env="bench/pattern-bandit", num_envs=16, rollout_len=8,
                            total_timesteps=steps, hidden_sizes=sizes, anneal_lr=False)
        # Every run may train a task for two phases while it is below the threshold, so
        # the runs without growth get the same budget as the one that grows.
        lcfg = lifelong.LifelongConfig(threshold=threshold, grow=grow, grow_factor=4.0,
                                       max_growths=1, max_phases=2, chunk=8, window=8,
                                       eval_episodes=64, noise=noise)
        programs = lifelong.Programs(ppo.AGENT, config, lcfg, 1)
        rows = []
        for seed in range(seeds):
            t0 = time.time()
            res = lifelong.run_sequence(ppo.AGENT, config, hparams, tasks, lcfg, seed=seed,
                                        programs=programs, log=lambda *_: None)
            res.pop("state")
            final_train = [s["phases"][-1]["performance"] for s in res["stages"]]
            rows.append({"seed": seed, "R": np.asarray(res["R_mean"]).tolist(),
                         "train_perf_per_stage": final_train,
                         "reached_per_stage": [s["phases"][-1]["reached"]
                                               for s in res["stages"]],
                         "iterations_per_stage": [s["iterations"] for s in res["stages"]],
                         "growth": res["growth"], "final_sizes": res["final_sizes"],
                         "metrics": res["metrics"], "wall_s": time.time() - t0})
            print(f"{name:20s} seed {seed}: train perf per stage "
                  f"{np.round(final_train, 3).tolist()}, reached "
                  f"{rows[-1]['reached_per_stage']}, iterations "
                  f"{rows[-1]['iterations_per_stage']}, greedy eval after the sequence "
                  f"{np.round(res['R_mean'][-1], 3).tolist()}, growth "
                  f"{[(g['stage'], round(g['performance'], 3)) for g in res['growth']]}, "
                  f"widths {res['final_sizes']}", flush=True)
        table[name] = rows
    return {"tasks": [t.name for t in tasks], "threshold": threshold, "ent_coef": ent_coef,
            "steps_per_phase": steps, "runs": table}


def orders(seeds: int, steps: int) -> int:
    from jaxrl import cli

    out = os.path.join(OUT, "orders")
    return cli.main(["lifelong", "ppo", "--tasks",
                     "CartPole-v1,CartPole-v1:length=2.0:force_mag=5.0,CartPole-v1:gravity=30",
                     "--orders", "all", "--steps", str(steps), "--hidden-sizes", "16,16",
                     "--num-envs", "4", "--rollout-len", "128", "--num-seeds", str(seeds),
                     "--eval-episodes", "8", "--out", out])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=("growth", "orders", "all"), default="all")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--growth-steps", type=int, default=8_192)
    parser.add_argument("--orders-steps", type=int, default=20_480)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--ent-coef", type=float, default=0.05)
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    if args.part in ("growth", "all"):
        result = growth(args.seeds, args.growth_steps, args.threshold, args.ent_coef)
        with open(os.path.join(OUT, "growth.json"), "w") as f:
            json.dump(result, f, indent=1)
    if args.part in ("orders", "all"):
        return orders(args.seeds, args.orders_steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
