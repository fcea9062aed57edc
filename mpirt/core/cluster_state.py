"""The whole job's state, gathered from every live rank and merged: the data behind ``mpirt.util.state`` and
the driver's status snapshot (``status_snapshot.py``).

Each rank answers a ``state_query`` with its part (``rank_state.collect``); this rank's own part is read here
under the runtime lock. Merging fills in what no single rank knows: a sent task is RUNNING when the rank it
went to says so, an actor's state is its owner's word and its pid its host's, a rank's node and pid come
from the answers. A rank that does not answer within the time left is listed in ``missing``.
"""
from typing import Any, Dict, List, Optional, Tuple

from . import rank_state
from .ids import node_id_hex, worker_id_hex
from .protocol import HEAD_RANK

DEFAULT_TIMEOUT_S = 30.0


def gather(rt, what: str, timeout: float = DEFAULT_TIMEOUT_S) -> Tuple[List[Dict[str, Any]], List[int]]:
    """Every live rank's ``rank_state.collect(what)``, and the ranks that did not answer within ``timeout``
    seconds in all (dead meanwhile, or busy past it)."""
    with rt.lock:
        part = rank_state.capture(rt, what)
    others, missing = rt.queries.ask_each("state_query", what, timeout=timeout)
    answers = [rank_state.complete(rt, part)]   # the finished tasks outside the lock: the driver submits most
    answers += others.values()
    return answers, missing


def _where(rt, task, pids):
    rank = task.pop("worker_rank", None)
    task.pop("owner_rank", None)
    task["node_id"] = rank_state.node_hex(rt, rank)
    task["worker_id"] = worker_id_hex(rt.session, rank) if rank is not None else None
    task["worker_pid"] = pids.get(rank) if rank is not None else None
    return task


def class_names(answers) -> Dict[str, str]:
    """Actor id (hex) -> class name, from the owners and the hosts that answered."""
    names = {}
    for answer in answers:
        names.update(answer.get("classes", ()))
        for actor in answer.get("actors_hosted", ()):
            names[actor["actor_id"]] = actor["class_name"]
        for actor in answer.get("actors_owned", ()):
            if actor.get("class_name"):
                names[actor["actor_id"]] = actor["class_name"]
    return names


def tasks(rt, answers) -> List[Dict[str, Any]]:
    """Ray's TaskState fields (a dict per task), oldest first as far as ids order them."""
    running = {task_id for answer in answers for task_id in answer.get("running", ())}
    pids = {answer["rank"]: answer["pid"] for answer in answers}
    names = class_names(answers)
    merged: Dict[str, Dict[str, Any]] = {}
    for answer in answers:
        for task in answer["tasks"]:
            if task["state"] == "SUBMITTED_TO_WORKER" and task["task_id"] in running:
                task["state"] = "RUNNING"
            if task["type"] == "ACTOR_TASK":
                cls = names.get(task["actor_id"])
                if cls:
                    task["func_or_class_name"] = task["name"] = f"{cls}.{task['name']}"
            elif task["type"] == "ACTOR_CREATION_TASK" and task["name"] == ".__init__":
                cls = names.get(task["actor_id"], "")
                task["func_or_class_name"] = task["name"] = f"{cls}.__init__"
            merged[task["task_id"]] = _where(rt, task, pids)
    return sorted(merged.values(), key=lambda t: t["task_id"])


def actors(rt, answers) -> List[Dict[str, Any]]:
    """Ray's ActorState fields: the owner says the state (its host, that an ALIVE one ended), the host the pid
    (0 before it is created)."""
    hosted = {a["actor_id"]: a for answer in answers for a in answer.get("actors_hosted", ())}
    owned = {a["actor_id"]: a for answer in answers for a in answer.get("actors_owned", ())}
    job = format(rt.session, "08x")
    out = []
    for actor_id in sorted(set(hosted) | set(owned)):
        host, owner = hosted.get(actor_id, {}), owned.get(actor_id)
        if owner is not None:
            state = owner["state"]
            if state == "ALIVE" and host and not host["alive"]:
                state = "DEAD"   # killed or exited at its host: the owner hears of it only from a failed call
        else:   # its owner is gone (a detached actor) or did not answer
            state = "ALIVE" if host.get("alive") else "DEAD"
        rank = owner["worker_rank"] if owner is not None and owner["worker_rank"] is not None \
            else host.get("worker_rank")
        out.append({"actor_id": actor_id, "class_name": (owner or {}).get("class_name") or host.get("class_name"),
                    "state": state, "job_id": job, "name": (owner or {}).get("name") or host.get("name") or "",
                    "node_id": rank_state.node_hex(rt, rank), "pid": host.get("pid", 0), "ray_namespace": None,
                    "required_resources": (owner or {}).get("required_resources"),
                    "death_cause": (owner or {}).get("death_cause"), "is_detached": host.get("is_detached"),
                    "placement_group_id": host.get("placement_group_id"), "repr_name": host.get("repr_name", ""),
                    "num_restarts": (owner or host).get("num_restarts", 0),
                    "num_restarts_due_to_lineage_reconstruction": 0, "num_restarts_due_to_node_preemption": 0})
    return out


def objects(rt, answers) -> List[Dict[str, Any]]:
    """Ray's ObjectState fields, one per object some live rank owns. ``ip`` is the owner's host name."""
    info = rt.config.get("rank_info") or {}
    out = []
    for answer in answers:
        host = (info.get(answer["rank"]) or {}).get("hostname", "")
        for obj in answer["objects"]:
            obj.pop("owner_rank", None)
            obj["ip"] = host
            out.append(obj)
    return sorted(out, key=lambda o: o["object_id"])


def nodes(rt) -> List[Dict[str, Any]]:
    """Ray's NodeState fields, one per node with a live rank; the head node is the scheduler rank's."""
    node_of = rt.store.arena.node_of
    info = rt.config.get("rank_info") or {}
    by_node: Dict[Any, Dict[str, Any]] = {}
    for rank in rt.live_ranks():
        node = node_of[rank]
        hostname = (info.get(rank) or {}).get("hostname", "")
        node_id = node_id_hex(rt.session, node)
        entry = by_node.setdefault(node, {"node_id": node_id, "node_ip": hostname, "is_head_node": False,
                                          "state": "ALIVE", "state_message": None, "node_name": hostname,
                                          "resources_total": {}, "labels": {"ray.io/node-id": node_id},
                                          "start_time_ms": None, "end_time_ms": None})
        entry["is_head_node"] = entry["is_head_node"] or rank == HEAD_RANK
        for name, amount in rt.cluster.resources_by_rank[rank].items():
            entry["resources_total"][name] = entry["resources_total"].get(name, 0.0) + amount
    return [by_node[node] for node in sorted(by_node)]


def placement_groups(rt, timeout: Optional[float] = None) -> List[Dict[str, Any]]:
    """Ray's PlacementGroupState fields, from the head's table."""
    table = rt.queries.ask(HEAD_RANK, "group_table_query", None,
                           **({} if timeout is None else {"timeout": timeout}))
    job = format(rt.session, "08x")
    out = []
    for group_id, entry in sorted(table.items()):
        bundles = [{"bundle_id": f"{group_id}_{index}", "node_id": entry["bundles_to_node_id"].get(index),
                    "unit_resources": dict(shape)} for index, shape in sorted(entry["bundles"].items())]
        out.append({"placement_group_id": group_id, "name": entry["name"] or "", "creator_job_id": job,
                    "state": entry["state"], "bundles": bundles, "is_detached": None, "stats": entry["stats"]})
    return out


def object_store_stats(rt) -> Dict[str, Any]:
    """Object store figures per node and per rank (``mpirt.object_store_stats`` documents them)."""
    ranks = [rt.store.local_stats()]
    ranks += [rt.queries.ask(rank, "store_stats_query") for rank in rt.live_ranks() if rank != rt.rank]
    by_node: Dict[Any, Dict[str, Any]] = {}
    for stats in sorted(ranks, key=lambda s: s["rank"]):
        node = by_node.setdefault(stats["node"], {"ranks": [], **stats["node_store"]})
        node["ranks"].append(stats["rank"])
        for key, value in stats.items():
            if key not in ("rank", "node", "node_store") and key not in stats["node_store"]:
                node[key] = node.get(key, 0) + value
    for node in by_node.values():
        node["free_bytes"] = node["capacity_bytes"] - node["used_bytes"]
        # used_bytes sums the ranks' figures, each read at its own moment, so it can briefly exceed the table's
        # reserved_bytes; fragmentation is then 0, not negative
        reserved = node["reserved_bytes"]
        node["fragmentation"] = max(0.0, 1 - node["used_bytes"] / reserved) if reserved else 0.0
    return {"nodes": by_node, "ranks": sorted(ranks, key=lambda s: s["rank"])}
