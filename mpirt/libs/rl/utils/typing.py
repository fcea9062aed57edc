"""``ray.rllib.utils.typing``: the type aliases RLlib's signatures use."""
from typing import Any, Callable, Dict, Union

from mpirt.libs.rl.policy.sample_batch import SampleBatch

SampleBatchType = SampleBatch
AlgorithmConfigDict = Dict[str, Any]
PartialAlgorithmConfigDict = Dict[str, Any]
EnvConfigDict = Dict[str, Any]
EnvCreator = Callable[[Dict[str, Any]], Any]
EnvType = Any
PolicyID = str
ModuleID = str
AgentID = Any
ResultDict = Dict[str, Any]
TensorType = Any
TensorStructType = Union[TensorType, dict, tuple]
