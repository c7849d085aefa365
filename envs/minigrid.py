"""MiniGrid tasks from xland-minigrid (Nikulin et al. 2023) behind the gymnax 1.0 API.

Registered as `minigrid/<task>` (`minigrid/DoorKey-8x8`, `minigrid/KeyCorridor...`: every
`MiniGrid-*` id of xland-minigrid), built only when asked for, so the package is an optional
extra: `pip install 'jaxrl[minigrid]'`; without it, making one of these ids is a one-line
`ConfigError` naming the extra.

The adapter keeps xland-minigrid's dynamics and reward (`1 - 0.9 * steps / max_steps` on
reaching the goal, else 0) and maps its `TimeStep` onto gymnax's split:
`terminated` is the goal reached (xland-minigrid's discount 0) and `truncated` gymnax's own
time limit (`state.time >= max_steps_in_episode`, the same count xland-minigrid uses), so
gymnax's `step` auto-resets and keeps the final observation like every other env here.

Observation: the agent's egocentric `[V, V]` symbolic view (tile, colour) one-hot encoded to
`[V, V, NUM_TILES + NUM_COLORS]` float32 for the `cnn` torso (a one-hot followed by the first
convolution is an embedding of each cell), with the carried object drawn on the agent's own
cell as the original MiniGrid does, so a policy without memory can tell it holds the key.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

from jaxrl.config import ConfigError

# The classic MiniGrid tasks xland-minigrid 0.9 ports (its `registered_environments()`);
# listed here so `jaxrl list` shows them without importing the optional package.
TASKS = ("BlockedUnlockPickUp", "DoorKey-5x5", "DoorKey-6x6", "DoorKey-8x8", "DoorKey-16x16",
         "Empty-5x5", "Empty-6x6", "Empty-8x8", "Empty-16x16", "EmptyRandom-5x5",
         "EmptyRandom-6x6", "EmptyRandom-8x8", "EmptyRandom-16x16", "FourRooms",
         "LockedRoom", "MemoryS8", "MemoryS16", "MemoryS32", "MemoryS64", "MemoryS128",
         "Playground", "Unlock", "UnlockPickUp")
EXTRA = "pip install 'jaxrl[minigrid]'"


def _import():
    try:
        import xminigrid  # noqa: F401
        from xminigrid.core import constants
    except ImportError:
        raise ConfigError(f"minigrid environments need the xminigrid package: {EXTRA}") \
            from None
    return xminigrid, constants


@struct.dataclass
class MiniGridState(environment.EnvState):
    """The wrapped xland-minigrid `TimeStep` (its state and last observation) and the step
    count gymnax's time limit reads."""

    timestep: object
    time: int


@struct.dataclass(kw_only=True)
class MiniGridParams(environment.EnvParams):
    """Only gymnax's time limit is a value here: xland-minigrid keeps its grid sizes and
    its own `max_steps` (which its reward decays with) static, so the default limit is
    xland-minigrid's; a shorter one truncates earlier without changing the reward."""

    max_steps_in_episode: int = 0


class MiniGrid(environment.Environment[MiniGridState, MiniGridParams]):
    """One xland-minigrid task as a gymnax environment (see the module docstring)."""

    def __init__(self, task: str):
        if task not in TASKS:
            raise ConfigError(f"minigrid task {task!r} is unknown; allowed: {', '.join(TASKS)}")
        xminigrid, constants = _import()
        self.task = task
        self._env, self._params = xminigrid.make(f"MiniGrid-{task}")
        self._tiles, self._colors = int(constants.NUM_TILES), int(constants.NUM_COLORS)
        self._view = int(self._params.view_size)

    @property
    def name(self) -> str:
        return f"minigrid/{self.task}"

    @property
    def default_params(self) -> MiniGridParams:
        return MiniGridParams(max_steps_in_episode=int(self._params.max_steps))

    @property
    def num_actions(self) -> int:
        return int(self._env.num_actions(self._params))

    def action_space(self, params=None) -> spaces.Discrete:
        return spaces.Discrete(self.num_actions)

    def observation_space(self, params) -> spaces.Box:
        return spaces.Box(0.0, 1.0, (self._view, self._view, self._tiles + self._colors),
                          jnp.float32)

    def encode(self, timestep) -> jax.Array:
        """`[V, V, NUM_TILES + NUM_COLORS]` float32 one-hot view, pocket on the agent's cell."""
        view = timestep.observation.at[self._view - 1, self._view // 2].set(
            timestep.state.agent.pocket)
        return jnp.concatenate([jax.nn.one_hot(view[..., 0], self._tiles),
                                jax.nn.one_hot(view[..., 1], self._colors)], axis=-1)

    def reset_env(self, key: jax.Array, params: MiniGridParams):
        timestep = self._env.reset(self._params, key)
        return self.encode(timestep), MiniGridState(timestep=timestep, time=0)

    def step_env(self, key: jax.Array, state: MiniGridState, action: jax.Array,
                 params: MiniGridParams):
        timestep = self._env.step(self._params, state.timestep, action)
        terminated = timestep.discount == 0.0
        state = MiniGridState(timestep=timestep, time=state.time + 1)
        return (self.encode(timestep), state, timestep.reward.astype(jnp.float32),
                terminated, {})


def _factory(task: str):
    return functools.partial(MiniGrid, task)


ENVS = {f"minigrid/{task}": _factory(task) for task in TASKS}
