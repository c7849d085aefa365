"""jaxrl.envs: the environment registry, wrappers, and jaxrl's own JAX environments.

`make(env_id) -> (env, env_params)` covers every gymnax id plus ours (the probes under
`probe/...`, the sparse-reward mazes `Maze-*` and `PointMaze-v0`, `GoalPendulum-v0`, the
`minigrid/*` tasks of the optional xland-minigrid extra); `register` adds more.
Wrappers live in `jaxrl.envs.wrappers`.
"""

from jaxrl.envs import goals, maze, minigrid, probes, wrappers
from jaxrl.envs.registry import check_env_id, env_spec, list_envs, make, register
from jaxrl.envs.wrappers import (ClipAction, EpisodeStatistics, FlattenObservation,
                                 NormalizeObservation)

for _env_id, _cls in probes.PROBES.items():
    register(_env_id, _cls)
for _env_id, _factory in {**maze.MAZES, **goals.GOAL_ENVS, **minigrid.ENVS}.items():
    register(_env_id, _factory)

__all__ = ["make", "register", "list_envs", "env_spec", "check_env_id", "goals", "maze", "probes",
           "wrappers", "EpisodeStatistics", "FlattenObservation", "NormalizeObservation", "ClipAction"]
