"""The regression cases: a short fixed-seed run of every registered agent (CLI name,
`Config` fields, `HParams` values), and how a parameter tree is flattened for storage."""

from __future__ import annotations

import jax
import numpy as np

_ON = dict(num_envs=4, rollout_len=16, total_timesteps=4 * 16 * 4)
_OFF = dict(num_envs=2, rollout_len=10, total_timesteps=2 * 10 * 6, buffer_size=64,
            minibatch_size=8, learning_starts=40, train_frequency=5, hidden_sizes=(16,))

CASES = {
    "reinforce": ("reinforce", {**_ON, "env": "CartPole-v1"}, {}),
    "ppo": ("ppo", {**_ON, "env": "CartPole-v1", "num_epochs": 2, "num_minibatches": 2}, {}),
    "ppo-pendulum": ("ppo", {**_ON, "env": "Pendulum-v1", "num_epochs": 2,
                             "num_minibatches": 2, "normalize_obs": True}, {}),
    "ppo-kl": ("ppo-kl", {**_ON, "env": "CartPole-v1", "num_epochs": 2,
                          "num_minibatches": 2}, {}),
    "a2c": ("a2c", {**_ON, "env": "CartPole-v1"}, {}),
    "a2c-pendulum": ("a2c", {**_ON, "env": "Pendulum-v1", "shared_trunk": True}, {}),
    "trpo": ("trpo", {**_ON, "env": "CartPole-v1", "value_minibatches": 2,
                      "value_epochs": 2, "hidden_sizes": (16, 16)}, {}),
    "dqn": ("dqn", {**_OFF, "env": "CartPole-v1", "target_update_period": 2}, {}),
    "c51": ("c51", {**_OFF, "env": "CartPole-v1", "target_update_period": 2}, {}),
    "rainbow": ("rainbow", {**_OFF, "env": "CartPole-v1", "target_update_period": 2}, {}),
    "cq-sample": ("cq-sample", {**_OFF, "env": "Pendulum-v1", "num_samples": 8,
                                "cem_elites": 2}, {}),
    "cq-grad": ("cq-grad", {**_OFF, "env": "Pendulum-v1", "num_samples": 8,
                            "cem_elites": 2}, {}),
    "naf": ("naf", {**_OFF, "env": "Pendulum-v1"}, {}),
    "ddpg": ("ddpg", {**_OFF, "env": "Pendulum-v1", "exploration_noise": "ou"}, {}),
    "td3": ("td3", {**_OFF, "env": "Pendulum-v1"}, {}),
    "sac": ("sac", {**_OFF, "env": "Pendulum-v1"}, {}),
}


def flatten(tree) -> dict[str, np.ndarray]:
    """`{keypath: array}` for every leaf of `tree` (a parameter tree)."""
    return {jax.tree_util.keystr(path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}
