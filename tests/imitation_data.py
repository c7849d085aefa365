"""Small expert runs and demonstration files shared by the imitation tests (built once
per test process, in a temporary folder): a tiny PPO run folder (a barely trained
expert: the tests need its plumbing, not its skill) and demos recorded from it, plus a
scripted CartPole expert for data whose content the tests know."""

from __future__ import annotations

import functools
import os
import tempfile

import jax.numpy as jnp

from jaxrl import demos, envs, experiment
from jaxrl.agents import ppo


def scripted_expert(env: str = "CartPole-v1") -> demos.Expert:
    """Push toward the side the pole leans to: a CartPole policy good for ~200 steps."""
    e, params = envs.make(env)
    return demos.Expert(env=env, spec=envs.env_spec(e, params),
                        act=lambda obs, key: (obs[2] + 0.5 * obs[3] > 0).astype(jnp.int32))


@functools.cache
def files() -> dict[str, str]:
    """`{"expert": RUN_DIR, "demos": FILE.npz}` on CartPole-v1 (created on first call)."""
    root = tempfile.mkdtemp(prefix="jaxrl-imitation-")
    run = os.path.join(root, "expert")
    config = ppo.Config(env="CartPole-v1", num_envs=2, rollout_len=16, total_timesteps=64,
                        hidden_sizes=(8,), num_minibatches=2)
    experiment.train(ppo.AGENT, config, ppo.HParams.create(), run, progress=False,
                     quiet=True)
    path = os.path.join(root, "demos.npz")
    demos.save(path, demos.record(scripted_expert(), 3, seed=0))
    return {"expert": run, "demos": path}


__all__ = ["files", "scripted_expert"]
