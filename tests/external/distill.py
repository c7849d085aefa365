"""An agent made of agents, written outside the package on the contract: online policy
distillation (Rusu et al. 2016, "Policy Distillation").

A teacher (any discrete-action agent record, here PPO) trains as usual; after each of its
iterations a student network is fitted by cross-entropy to the teacher's greedy actions
on the observations the teacher's env copies are at. The composite closes over the
teacher's record, keeps the teacher's state inside its own, and exposes `params` (the
student's: what evaluation runs) and `env_state` (the teacher's envs, as a property: what
the runner guards and evaluation normalises with).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl import networks, optim
from jaxrl.agent import Agent, Setup


@struct.dataclass
class State:
    teacher: object
    params: optax.Params  # the student's: what evaluation runs
    opt_state: optax.OptState
    step: jax.Array

    @property
    def env_state(self):
        return self.teacher.env_state


def make_agent(teacher: Agent, student_sizes=(32,), learning_rate=3e-3) -> Agent:
    """`teacher`'s record distilled into an MLP of `student_sizes`; same Config, HParams."""
    tx = optim.make_optimizer("adam", learning_rate, 10.0, None)

    def setup(config) -> Setup:
        inner = teacher.setup(config)
        student = networks.make_q_network(inner.spec, student_sizes, "tanh")
        return dataclasses.replace(inner, network=student, extras={"teacher": inner})

    def init(key, setup: Setup, hparams):
        teacher_key, student_key = jax.random.split(key)
        student = setup.network.init(student_key)
        return State(teacher=teacher.init(teacher_key, setup.extras["teacher"], hparams),
                     params=student, opt_state=tx.init(student), step=jnp.int32(0))

    def greedy_act(params, obs, key, setup: Setup):
        del key
        return jnp.argmax(setup.network.apply(params, obs)).astype(jnp.int32)

    def loss(params, obs, labels, setup: Setup):
        logits = setup.network.apply(params, obs)
        total = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return total, {"student/loss": total}

    def iteration(state: State, key, hparams, setup: Setup):
        inner = setup.extras["teacher"]
        teacher_state, metrics = teacher.iteration(state.teacher, key, hparams, inner)
        obs = teacher_state.obs
        labels = jax.vmap(lambda o: teacher.greedy_act(teacher_state.params, o, None, inner))(
            obs)
        agree = jnp.mean(jax.vmap(lambda o: greedy_act(state.params, o, None, setup))(obs)
                         == labels)
        state = state.replace(teacher=teacher_state)
        state, student_metrics = optim.gradient_step(loss, state, obs, tx, labels, setup)
        return state, {**metrics, **student_metrics, "student/agreement": agree}

    return Agent(name=f"distill-{teacher.name}", Config=teacher.Config,
                 HParams=teacher.HParams, setup=setup, init=init, iteration=iteration,
                 greedy_act=greedy_act)
