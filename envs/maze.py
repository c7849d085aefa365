"""Sparse-reward mazes whose start, goal and difficulty are `EnvParams` values.

Two gymnax 1.0 environments for exploration and goal-reaching, registered as
`Maze-9x9-v0`, `Maze-15x15-v0` and `PointMaze-v0`:

* `DiscreteMaze`: a grid maze with 4 moves. The walls are a fixed boolean array built once
  at construction (from a layout string, or a perfect maze carved by a seeded depth-first
  search for a given size); the start cell, goal cell, start spread, action slip and time
  limit live in `MazeParams`, so a curriculum is a value that can be vmapped. Reward 1 on
  the step that reaches the goal (terminated there), else 0.
* `PointMaze`: a continuous point mass in the unit square with optional wall segments;
  actions are target velocities in `[-1, 1]^2`. Reward -1 per step until within
  `goal_radius` of the goal (0 on that step, terminated), or 1 there and 0 elsewhere with
  `zero_one_reward`.

Both expose `success(state, params)`, `distance(state, params)`, `achieved_goal(state)` and
`goal_space(params)` for goal-conditioned agents, and `make_params(...)`, which validates a
start and goal on the host. For hindsight relabelling (Andrychowicz et al. 2017,
`jaxrl.her`) they also read and replace goals in observations (`obs_achieved`, `obs_goal`,
`with_goal`) and score any goal (`goal_reached`, `goal_reward`); `step` computes its reward
and termination with the same two functions, so a relabelled transition is one the env
could have produced.
"""

from __future__ import annotations

import functools
from collections import deque

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from jaxrl.config import ConfigError

# Moves of actions 0..3 as (row, col) offsets: up, right, down, left.
MOVES = np.array([[-1, 0], [0, 1], [1, 0], [0, -1]], np.int32)
OBSERVATIONS = ("image", "flat")


def carve_maze(size: int, seed: int = 0) -> np.ndarray:
    """A perfect maze (one path between any two cells) of `size` x `size`, walls True.

    Cells sit at odd coordinates inside a wall border; a depth-first search from (1, 1)
    with a seeded generator knocks down the wall between each cell and an unvisited
    neighbour (the "recursive backtracker"). Host code, run once at construction.

    Args:
      size: odd side length, at least 5.
      seed: seed of the carving order.

    Returns:
      `[size, size]` bool array.
    """
    rng = np.random.default_rng(seed)
    walls = np.ones((size, size), bool)
    walls[1, 1] = False
    stack = [(1, 1)]
    while stack:
        r, c = stack[-1]
        nexts = [(r + 2 * dr, c + 2 * dc) for dr, dc in MOVES
                 if 0 < r + 2 * dr < size - 1 and 0 < c + 2 * dc < size - 1
                 and walls[r + 2 * dr, c + 2 * dc]]
        if not nexts:
            stack.pop()
            continue
        nr, nc = nexts[rng.integers(len(nexts))]
        walls[(r + nr) // 2, (c + nc) // 2] = False
        walls[nr, nc] = False
        stack.append((nr, nc))
    return walls


def parse_layout(layout: str) -> tuple[np.ndarray, tuple | None, tuple | None]:
    """`(walls[H, W] bool, start, goal)` from rows of `#` (wall), `.`, `S`, `G` (free).

    `S` and `G` mark the default start and goal cells (None where absent).
    """
    rows = [line.strip() for line in layout.strip().splitlines() if line.strip()]
    if not rows or len({len(r) for r in rows}) != 1 or set("".join(rows)) - set("#.SG"):
        raise ConfigError("layout must be equal-length rows of '#', '.', 'S', 'G'; got "
                          f"{layout!r}")
    grid = np.array([list(r) for r in rows])

    def find(ch):
        where = np.argwhere(grid == ch)
        return tuple(int(v) for v in where[0]) if len(where) else None

    return grid == "#", find("S"), find("G")


def shortest_paths(walls: np.ndarray) -> np.ndarray:
    """All-pairs shortest-path lengths in moves, by one breadth-first search per free cell.

    Args:
      walls: `[H, W]` bool.

    Returns:
      `[H * W, H * W]` int32 (flat cell index `row * W + col`); -1 where unreachable or
      either cell is a wall.
    """
    h, w = walls.shape
    dist = np.full((h * w, h * w), -1, np.int32)
    for source in np.flatnonzero(~walls.reshape(-1)):
        dist[source, source] = 0
        queue = deque([divmod(int(source), w)])
        while queue:
            r, c = queue.popleft()
            for dr, dc in MOVES:
                nr, nc = r + dr, c + dc
                if 0 <= nr < h and 0 <= nc < w and not walls[nr, nc] \
                        and dist[source, nr * w + nc] < 0:
                    dist[source, nr * w + nc] = dist[source, r * w + c] + 1
                    queue.append((nr, nc))
    return dist


@struct.dataclass
class MazeState(environment.EnvState):
    """Grid maze state: the agent's cell and the step count."""

    pos: jax.Array  # [2] int32 (row, col)
    time: int


@struct.dataclass(kw_only=True)
class MazeParams(environment.EnvParams):
    """Grid maze parameters: all values, so a curriculum may move or vmap them.

    Attributes:
      start: [2] int32 (row, col) start cell.
      goal: [2] int32 (row, col) goal cell.
      start_spread: int32; each episode starts on a free cell drawn uniformly among those
        within this many moves of `start` (0: always `start`). A reverse curriculum
        (Florensa et al. 2017) sets `start = goal` and grows it.
      start_weights: [K] float32 relative weight of each free cell (`free_cells` order)
        among those within the spread; a reverse curriculum's start set (all ones: uniform).
      slip: float32 probability that the action taken is replaced by a uniform one.
      max_steps_in_episode: time limit (truncation).
    """

    start: jax.Array
    goal: jax.Array
    start_weights: jax.Array
    start_spread: jax.Array = 0
    slip: jax.Array = 0.0
    max_steps_in_episode: int = 200


class DiscreteMaze(environment.Environment[MazeState, MazeParams]):
    """A grid maze with a sparse goal reward (see the module docstring).

    Observation `image`: `[H, W, 3]` float32, channels (walls, agent, goal) as 0/1, for the
    `cnn` torso. Observation `flat`: `[4]` float32 `(agent_row, agent_col, goal_row,
    goal_col)`, each divided by its axis length minus one (in [0, 1]).
    """

    def __init__(self, layout: str | None = None, *, size: int | None = None,
                 maze_seed: int = 0, observation: str = "image",
                 max_steps_in_episode: int | None = None):
        if (layout is None) == (size is None):
            raise ConfigError("give exactly one of layout (a string) or size (an odd int)")
        if observation not in OBSERVATIONS:
            raise ConfigError(f"observation must be one of {', '.join(OBSERVATIONS)}; got "
                              f"{observation!r}")
        if layout is not None:
            walls, start, goal = parse_layout(layout)
        else:
            if type(size) is not int or size < 5 or size % 2 == 0:
                raise ConfigError(f"size must be an odd int >= 5, got {size!r}")
            walls, start, goal = carve_maze(size, maze_seed), (1, 1), (size - 2, size - 2)
        self.walls = walls
        self.dist = shortest_paths(walls)
        self.free_cells = np.argwhere(~walls).astype(np.int32)  # [K, 2]
        # Flat index of each free cell, the key of `dist`'s rows and columns.
        self.free_index = self.free_cells[:, 0] * walls.shape[1] + self.free_cells[:, 1]
        if len(self.free_cells) == 0:
            raise ConfigError("layout has no free cell")
        self.observation = observation
        # Default: top-left to bottom-right free cell, the farthest corners of a carved maze.
        self._start = start if start is not None else tuple(self.free_cells[0])
        self._goal = goal if goal is not None else tuple(self.free_cells[-1])
        if max_steps_in_episode is None:
            max_steps_in_episode = 4 * walls.size  # room to explore every cell a few times
        self._max_steps = max_steps_in_episode
        self.make_params()  # validates the defaults

    @property
    def shape(self) -> tuple[int, int]:
        """`(H, W)` of the grid."""
        return self.walls.shape

    def make_params(self, start=None, goal=None, *, start_spread: int = 0, slip: float = 0.0,
                    max_steps_in_episode: int | None = None) -> MazeParams:
        """Validated `MazeParams` (host code); unset start and goal take the defaults.

        Raises:
          ConfigError: a start or goal outside the grid or on a wall, a negative spread, a
            slip outside [0, 1], or a non-positive time limit.
        """
        start = self._start if start is None else tuple(int(v) for v in start)
        goal = self._goal if goal is None else tuple(int(v) for v in goal)
        for name, cell in (("start", start), ("goal", goal)):
            h, w = self.shape
            if len(cell) != 2 or not (0 <= cell[0] < h and 0 <= cell[1] < w) \
                    or self.walls[cell]:
                raise ConfigError(f"{name} must be a free (row, col) cell of the {h}x{w} "
                                  f"maze, got {cell}")
        if type(start_spread) is not int or start_spread < 0:
            raise ConfigError(f"start_spread must be a non-negative int, got {start_spread!r}")
        if not 0.0 <= slip <= 1.0:
            raise ConfigError(f"slip must be in [0, 1], got {slip!r}")
        limit = self._max_steps if max_steps_in_episode is None else max_steps_in_episode
        if type(limit) is not int or limit <= 0:
            raise ConfigError(f"max_steps_in_episode must be a positive int, got {limit!r}")
        return MazeParams(start=jnp.asarray(start, jnp.int32),
                          goal=jnp.asarray(goal, jnp.int32),
                          start_weights=jnp.ones(len(self.free_cells), jnp.float32),
                          start_spread=jnp.int32(start_spread), slip=jnp.float32(slip),
                          max_steps_in_episode=limit)

    @property
    def default_params(self) -> MazeParams:
        return self.make_params()

    @property
    def num_actions(self) -> int:
        return 4

    def action_space(self, params=None) -> spaces.Discrete:
        return spaces.Discrete(4)

    def observation_space(self, params) -> spaces.Box:
        if self.observation == "flat":
            return spaces.Box(0.0, 1.0, (4,), jnp.float32)
        return spaces.Box(0.0, 1.0, self.shape + (3,), jnp.float32)

    def goal_space(self, params=None) -> spaces.Box:
        """Goals are cells: `[2]` int32 (row, col)."""
        h, w = self.shape
        return spaces.Box(jnp.zeros(2, jnp.int32), jnp.asarray([h - 1, w - 1], jnp.int32),
                          (2,), jnp.int32)

    def get_obs(self, state: MazeState, params: MazeParams, key=None) -> jax.Array:
        if self.observation == "flat":
            scale = jnp.asarray(self.shape, jnp.float32) - 1.0
            return jnp.concatenate([state.pos / scale, params.goal / scale]).astype(jnp.float32)
        def one_hot(cell):
            return jnp.zeros(self.shape, jnp.float32).at[cell[0], cell[1]].set(1.0)

        return jnp.stack([jnp.asarray(self.walls, jnp.float32), one_hot(state.pos),
                          one_hot(params.goal)], axis=-1)

    def _index(self, cell: jax.Array) -> jax.Array:
        return cell[0] * self.shape[1] + cell[1]

    def achieved_goal(self, state: MazeState) -> jax.Array:
        """The goal this state achieves: its cell, `[2]` int32."""
        return state.pos

    def goal_reached(self, achieved: jax.Array, goal: jax.Array,
                     params: MazeParams) -> jax.Array:
        """bool scalar: cell `achieved [2]` is cell `goal [2]`."""
        del params
        return jnp.all(achieved == goal)

    def goal_reward(self, achieved: jax.Array, goal: jax.Array,
                    params: MazeParams) -> jax.Array:
        """float32 scalar: the step's reward had `goal` been the goal (1 on it, else 0)."""
        return self.goal_reached(achieved, goal, params).astype(jnp.float32)

    def obs_achieved(self, obs: jax.Array) -> jax.Array:
        """The cell `[2]` int32 an observation shows the agent on."""
        if self.observation == "flat":
            scale = jnp.asarray(self.shape, jnp.float32) - 1.0
            return jnp.round(obs[:2] * scale).astype(jnp.int32)
        flat = jnp.argmax(obs[..., 1].reshape(-1))
        return jnp.stack([flat // self.shape[1], flat % self.shape[1]]).astype(jnp.int32)

    def obs_goal(self, obs: jax.Array) -> jax.Array:
        """The goal cell `[2]` int32 an observation shows."""
        if self.observation == "flat":
            scale = jnp.asarray(self.shape, jnp.float32) - 1.0
            return jnp.round(obs[2:] * scale).astype(jnp.int32)
        flat = jnp.argmax(obs[..., 2].reshape(-1))
        return jnp.stack([flat // self.shape[1], flat % self.shape[1]]).astype(jnp.int32)

    def with_goal(self, obs: jax.Array, goal: jax.Array) -> jax.Array:
        """The observation `obs` would be with goal cell `goal [2]`."""
        if self.observation == "flat":
            scale = jnp.asarray(self.shape, jnp.float32) - 1.0
            return obs.at[2:].set(goal / scale)
        plane = jnp.zeros(self.shape, jnp.float32).at[goal[0], goal[1]].set(1.0)
        return obs.at[..., 2].set(plane)

    def success(self, state: MazeState, params: MazeParams) -> jax.Array:
        """bool scalar: the agent is on the goal cell."""
        return self.goal_reached(state.pos, params.goal, params)

    def distance(self, state: MazeState, params: MazeParams) -> jax.Array:
        """int32 scalar: moves on the shortest path to the goal (-1 if unreachable)."""
        return jnp.asarray(self.dist)[self._index(state.pos), self._index(params.goal)]

    def reset_env(self, key: jax.Array, params: MazeParams):
        # Draw among free cells within `start_spread` moves of `start`, by `start_weights`;
        # all-zero weights there fall back to `start` itself, so the draw is never empty.
        near = jnp.asarray(self.dist)[self._index(params.start)][self.free_index]
        ok = (near >= 0) & (near <= params.start_spread)
        weights = jnp.where(ok, params.start_weights, 0.0)
        weights = jnp.where(weights.sum() > 0, weights, (near == 0).astype(jnp.float32))
        pick = jax.random.choice(key, len(self.free_cells), p=weights / weights.sum())
        state = MazeState(pos=jnp.asarray(self.free_cells)[pick], time=0)
        return self.get_obs(state, params), state

    def step_env(self, key: jax.Array, state: MazeState, action: jax.Array,
                 params: MazeParams):
        slip_key, random_key = jax.random.split(key)
        action = jnp.where(jax.random.bernoulli(slip_key, params.slip),
                           jax.random.randint(random_key, (), 0, 4), action)
        h, w = self.shape
        target = state.pos + jnp.asarray(MOVES)[action]
        # Clipping keeps layouts without a border wall in bounds: the edge blocks too.
        target = jnp.clip(target, 0, jnp.asarray([h - 1, w - 1], jnp.int32))
        blocked = jnp.asarray(self.walls)[target[0], target[1]]
        pos = jnp.where(blocked, state.pos, target)
        state = MazeState(pos=pos, time=state.time + 1)
        reward = self.goal_reward(state.pos, params.goal, params)
        return (self.get_obs(state, params), state, reward, self.success(state, params), {})


@struct.dataclass
class PointState(environment.EnvState):
    """Point-mass state."""

    pos: jax.Array  # [2] float32 in [0, 1]^2
    vel: jax.Array  # [2] float32 in [-max_speed, max_speed]^2
    time: int


@struct.dataclass(kw_only=True)
class PointParams(environment.EnvParams):
    """Point-maze parameters: all values (vmappable).

    Attributes:
      start: [2] float32 start position.
      goal: [2] float32 goal position.
      goal_radius: success when within this Euclidean distance of the goal.
      start_noise: each episode starts uniformly in the square of this half-width around
        `start` (clipped to the box; a start inside a wall's reach is not re-drawn).
      zero_one_reward: reward 1 at the goal and 0 elsewhere, instead of -1 per step.
      max_steps_in_episode: time limit (truncation).
    """

    start: jax.Array
    goal: jax.Array
    goal_radius: jax.Array = 0.05
    start_noise: jax.Array = 0.0
    zero_one_reward: jax.Array = False
    max_steps_in_episode: int = 200


def segments_cross(p: jax.Array, q: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
    """Whether segment p-q touches segment a-b (orientation tests, touching included).

    Args:
      p, q: [2] the move's endpoints.
      a, b: [2] the wall's endpoints.

    Returns:
      bool scalar. Collinear segments count as touching (a measure-zero over-block).
    """
    def orient(u, v, w):
        return jnp.sign((v[0] - u[0]) * (w[1] - u[1]) - (v[1] - u[1]) * (w[0] - u[0]))
    return ((orient(p, q, a) * orient(p, q, b) <= 0)
            & (orient(a, b, p) * orient(a, b, q) <= 0))


class PointMaze(environment.Environment[PointState, PointParams]):
    """A point mass in the unit square with wall segments and a sparse goal reward.

    Dynamics, per step of `dt`: the velocity moves a fraction `1 - damping` toward
    `max_speed * action` (`action` clipped to `[-1, 1]^2`), then the position moves by
    `dt * velocity`. A move that would touch a wall segment is cancelled (position kept,
    velocity zeroed); the box edges clip the position and zero the blocked component.
    Observation `[6]` float32: `(pos, vel, goal)`.
    """

    def __init__(self, walls=((0.5, 0.0, 0.5, 0.6),), *, start=(0.2, 0.2), goal=(0.8, 0.2),
                 dt: float = 0.1, damping: float = 0.5, max_speed: float = 1.0,
                 max_steps_in_episode: int = 200):
        walls = np.asarray(walls, np.float32).reshape(-1, 4)
        if ((walls < 0) | (walls > 1)).any():
            raise ConfigError(f"walls must be segments (x0, y0, x1, y1) inside [0, 1]^2, got "
                              f"{walls.tolist()}")
        for name, value in (("dt", dt), ("max_speed", max_speed)):
            if not (isinstance(value, (int, float)) and value > 0):
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
        if not (isinstance(damping, (int, float)) and 0 <= damping < 1):
            raise ConfigError(f"damping must be in [0, 1), got {damping!r}")
        self.walls = walls  # [K, 4]
        self.dt, self.damping, self.max_speed = float(dt), float(damping), float(max_speed)
        self._start, self._goal, self._max_steps = start, goal, max_steps_in_episode
        self.make_params()

    def make_params(self, start=None, goal=None, *, goal_radius: float = 0.05,
                    start_noise: float = 0.0, zero_one_reward: bool = False,
                    max_steps_in_episode: int | None = None) -> PointParams:
        """Validated `PointParams` (host code); unset start and goal take the defaults.

        Raises:
          ConfigError: a start or goal outside `[0, 1]^2`, a non-positive radius, a negative
            noise, or a non-positive time limit.
        """
        start = np.asarray(self._start if start is None else start, np.float32)
        goal = np.asarray(self._goal if goal is None else goal, np.float32)
        for name, point in (("start", start), ("goal", goal)):
            if point.shape != (2,) or ((point < 0) | (point > 1)).any():
                raise ConfigError(f"{name} must be an (x, y) point in [0, 1]^2, got "
                                  f"{point.tolist()}")
        if not goal_radius > 0:
            raise ConfigError(f"goal_radius must be positive, got {goal_radius!r}")
        if not start_noise >= 0:
            raise ConfigError(f"start_noise must be non-negative, got {start_noise!r}")
        if type(zero_one_reward) is not bool:
            raise ConfigError(f"zero_one_reward must be true or false, got {zero_one_reward!r}")
        limit = self._max_steps if max_steps_in_episode is None else max_steps_in_episode
        if type(limit) is not int or limit <= 0:
            raise ConfigError(f"max_steps_in_episode must be a positive int, got {limit!r}")
        return PointParams(start=jnp.asarray(start), goal=jnp.asarray(goal),
                           goal_radius=jnp.float32(goal_radius),
                           start_noise=jnp.float32(start_noise),
                           zero_one_reward=jnp.bool_(zero_one_reward),
                           max_steps_in_episode=limit)

    @property
    def default_params(self) -> PointParams:
        return self.make_params()

    @property
    def num_actions(self) -> int:
        return 2

    def action_space(self, params=None) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (2,), jnp.float32)

    def observation_space(self, params) -> spaces.Box:
        v = self.max_speed
        low = jnp.asarray([0.0, 0.0, -v, -v, 0.0, 0.0], jnp.float32)
        high = jnp.asarray([1.0, 1.0, v, v, 1.0, 1.0], jnp.float32)
        return spaces.Box(low, high, (6,), jnp.float32)

    def goal_space(self, params=None) -> spaces.Box:
        """Goals are positions: `[2]` float32 in `[0, 1]^2`."""
        return spaces.Box(0.0, 1.0, (2,), jnp.float32)

    def get_obs(self, state: PointState, params: PointParams, key=None) -> jax.Array:
        return jnp.concatenate([state.pos, state.vel, params.goal]).astype(jnp.float32)

    def achieved_goal(self, state: PointState) -> jax.Array:
        """The goal this state achieves: its position, `[2]` float32."""
        return state.pos

    def distance(self, state: PointState, params: PointParams) -> jax.Array:
        """float32 scalar: Euclidean distance to the goal (walls ignored)."""
        return jnp.linalg.norm(state.pos - params.goal)

    def goal_reached(self, achieved: jax.Array, goal: jax.Array,
                     params: PointParams) -> jax.Array:
        """bool scalar: position `achieved [2]` is within `goal_radius` of `goal [2]`."""
        return jnp.linalg.norm(achieved - goal) <= params.goal_radius

    def goal_reward(self, achieved: jax.Array, goal: jax.Array,
                    params: PointParams) -> jax.Array:
        """float32 scalar: the step's reward had `goal` been the goal (see the class)."""
        reached = self.goal_reached(achieved, goal, params).astype(jnp.float32)
        return jnp.where(params.zero_one_reward, reached, reached - 1.0)

    def obs_achieved(self, obs: jax.Array) -> jax.Array:
        """The position `[2]` an observation `[6]` shows."""
        return obs[:2]

    def obs_goal(self, obs: jax.Array) -> jax.Array:
        """The goal `[2]` an observation `[6]` shows."""
        return obs[4:]

    def with_goal(self, obs: jax.Array, goal: jax.Array) -> jax.Array:
        """The observation `obs [6]` would be with goal `goal [2]`."""
        return obs.at[4:].set(goal)

    def success(self, state: PointState, params: PointParams) -> jax.Array:
        """bool scalar: within `goal_radius` of the goal."""
        return self.goal_reached(state.pos, params.goal, params)

    def reset_env(self, key: jax.Array, params: PointParams):
        noise = jax.random.uniform(key, (2,), jnp.float32, -1.0, 1.0) * params.start_noise
        state = PointState(pos=jnp.clip(params.start + noise, 0.0, 1.0),
                           vel=jnp.zeros(2, jnp.float32), time=0)
        return self.get_obs(state, params), state

    def step_env(self, key: jax.Array, state: PointState, action: jax.Array,
                 params: PointParams):
        del key
        action = jnp.clip(jnp.asarray(action, jnp.float32), -1.0, 1.0)
        vel = self.damping * state.vel + (1.0 - self.damping) * self.max_speed * action
        target = state.pos + self.dt * vel
        inside = jnp.clip(target, 0.0, 1.0)
        vel = jnp.where(inside == target, vel, 0.0)
        walls = jnp.asarray(self.walls)
        hit = jax.vmap(segments_cross, in_axes=(None, None, 0, 0))(
            state.pos, inside, walls[:, :2], walls[:, 2:]).any()
        state = PointState(pos=jnp.where(hit, state.pos, inside),
                           vel=jnp.where(hit, 0.0, vel), time=state.time + 1)
        reward = self.goal_reward(state.pos, params.goal, params)
        return self.get_obs(state, params), state, reward, self.success(state, params), {}


MAZES = {
    "Maze-9x9-v0": functools.partial(DiscreteMaze, size=9),
    "Maze-15x15-v0": functools.partial(DiscreteMaze, size=15),
    "PointMaze-v0": PointMaze,
}
