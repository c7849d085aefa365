"""Probe environments: tiny MDPs whose exact values are known, for debugging agents.

After Andy Jones, "Debugging RL, Without the Agonizing Pain" (2021). Each isolates one
piece of an agent: value learning, observation dependence, discounting across steps,
truncation bootstrapping, and action dependence. All have observation shape `(1,)`, two
discrete actions (the action is ignored except in `ProbeActionReward`), and are registered
as `probe/<name>`.

| id | dynamics | exact value |
| --- | --- | --- |
| probe/constant-reward | one step, reward 1, terminal | V = 1 |
| probe/reward-equals-obs | obs in {-1, +1}, reward = obs, terminal | V(obs) = obs |
| probe/one-step-delay | obs 0 then obs 1; reward 1 only on the 2nd step | V(0) = gamma, V(1) = 1 |
| probe/time-limit-endless | reward 1 forever, truncated (never terminated) at the limit | V = 1/(1-gamma) |
| probe/action-reward | obs in {-1, +1}; reward 1 iff action == (obs > 0) | V = 1 under the best policy |
| probe/two-step-tree | obs 0, then -1 or +1 by the first action; two steps | enumerable (4 paths) |
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces


@struct.dataclass
class ProbeState(environment.EnvState):
    """Probe state: the current observation value and the step count."""

    obs: jax.Array  # float32 scalar
    time: int


@struct.dataclass
class ProbeParams(environment.EnvParams):
    """Probe parameters: only the time limit (truncation) matters."""

    max_steps_in_episode: int = 1000


class _Probe(environment.Environment[ProbeState, ProbeParams]):
    """Shared plumbing: a scalar observation, two actions, a (1,) observation box."""

    signed_start = False  # the first observation: 0, or -1 or +1 with equal probability

    def __init__(self, max_steps_in_episode: int = 1000):
        self._max_steps = max_steps_in_episode

    @property
    def default_params(self) -> ProbeParams:
        return ProbeParams(max_steps_in_episode=self._max_steps)

    @property
    def num_actions(self) -> int:
        return 2

    def action_space(self, params=None) -> spaces.Discrete:
        return spaces.Discrete(2)

    def observation_space(self, params) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)

    def get_obs(self, state: ProbeState, params=None, key=None) -> jax.Array:
        return jnp.reshape(state.obs, (1,)).astype(jnp.float32)

    def reset_env(self, key, params):
        sign = jnp.where(jax.random.bernoulli(key), 1.0, -1.0).astype(jnp.float32)
        state = ProbeState(obs=sign if self.signed_start else jnp.float32(0.0), time=0)
        return self.get_obs(state), state

    def _transition(self, key, state, action):
        """Return `(next_obs_value, reward, terminated)`; each probe below defines it."""
        del key, action
        return state.obs, 0.0, True

    def step_env(self, key, state, action, params):
        next_obs, reward, terminated = self._transition(key, state, action)
        state = ProbeState(obs=jnp.float32(next_obs), time=state.time + 1)
        return (self.get_obs(state), state, jnp.float32(reward), jnp.asarray(terminated),
                {})


class ProbeConstantReward(_Probe):
    """One step, reward 1, then termination: V = 1 everywhere."""

    def _transition(self, key, state, action):
        return 0.0, 1.0, True


class ProbeRewardEqualsObs(_Probe):
    """Observation drawn from {-1, +1}; the one step's reward equals it: V(obs) = obs."""

    signed_start = True

    def _transition(self, key, state, action):
        return state.obs, state.obs, True


class ProbeOneStepDelay(_Probe):
    """Two steps: obs 0 (reward 0), then obs 1 (reward 1, terminal): V(0)=gamma, V(1)=1."""

    def _transition(self, key, state, action):
        second = state.obs > 0.5
        return 1.0, jnp.where(second, 1.0, 0.0), second


class ProbeTimeLimitEndless(_Probe):
    """Reward 1 on every step, never terminated, truncated at the time limit.

    The true value is 1/(1-gamma) at every step: an agent that treats the time limit as a
    terminal state learns less, and less still near the limit (which it cannot observe).
    """

    def __init__(self, max_steps_in_episode: int = 20):
        super().__init__(max_steps_in_episode)

    def _transition(self, key, state, action):
        return 0.0, 1.0, False


class ProbeActionReward(_Probe):
    """Observation in {-1, +1}; one step; reward 1 iff action == 1 exactly when obs > 0."""

    signed_start = True

    def _transition(self, key, state, action):
        good = jnp.asarray(action) == (state.obs > 0).astype(jnp.int32)
        return state.obs, jnp.where(good, 1.0, 0.0), True


class ProbeTwoStepTree(_Probe):
    """A depth-two binary tree: its 4 trajectories make the policy gradient enumerable.

    The root has obs 0; action `a` leads to obs `-1` (a = 0) or `+1` (a = 1) with reward
    `ROOT_REWARD[a]`; the second action `b` there gives `LEAF_REWARD[leaf][b]` and ends the
    episode. Rewards differ on every path, so every policy parameter has a gradient.
    """

    ROOT_REWARD = (0.0, 0.5)
    LEAF_REWARD = ((1.0, 0.0), (-0.5, 2.0))  # [leaf (a = 0, a = 1)][b]

    def _transition(self, key, state, action):
        action = jnp.asarray(action, jnp.int32)
        at_root = state.obs == 0.0
        leaf = (state.obs > 0).astype(jnp.int32)
        reward = jnp.where(at_root, jnp.asarray(self.ROOT_REWARD)[action],
                           jnp.asarray(self.LEAF_REWARD)[leaf, action])
        next_obs = jnp.where(at_root, 2.0 * action - 1.0, state.obs)
        return next_obs, reward, jnp.logical_not(at_root)


PROBES: dict[str, type[_Probe]] = {
    "probe/constant-reward": ProbeConstantReward,
    "probe/reward-equals-obs": ProbeRewardEqualsObs,
    "probe/one-step-delay": ProbeOneStepDelay,
    "probe/time-limit-endless": ProbeTimeLimitEndless,
    "probe/action-reward": ProbeActionReward,
    "probe/two-step-tree": ProbeTwoStepTree,
}
