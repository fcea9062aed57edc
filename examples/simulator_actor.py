"""A Simulator actor wrapping a Gymnasium environment, stepped with non-blocking calls.

    python examples/simulator_actor.py
"""
import gymnasium as gym

import mpirt as ray

ray.init()


@ray.remote
class Simulator:
    def __init__(self):
        self.env = gym.make("CartPole-v1")
        self.env.reset(seed=0)

    def step(self, action):
        observation, reward, terminated, truncated, _ = self.env.step(action)
        return observation, reward, terminated or truncated


simulator = Simulator.remote()

observations = []
for _ in range(4):
    # Take action 0 in the simulator. This call does not block and
    # it returns a future.
    observations.append(simulator.step.remote(0))

for observation, reward, done in ray.get(observations):
    print("observation", [round(float(x), 3) for x in observation], "reward", reward, "done", done)
