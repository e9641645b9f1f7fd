"""Prometheus metrics (GET /metrics, docs/api.md): what an operator graphs and alerts
on across instances: applies and their latency, pending changes, per-node reachability
and registered phones (every [[asterisk.nodes]] entry; `default` without them), API
requests by route and status, who leads.

One registry per process (not prometheus_client's global one: tests build several
apps in one process). Counters are this instance's since it started; the config
versions are read from the database at each scrape (every instance reports the same);
node gauges come from the instance that leads (the one talking to Asterisk).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from sipprov.apply.applier import Applier
    from sipprov.context import Services

APPLY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# The label of requests that matched no route (any number of raw paths: one label).
UNMATCHED = "unmatched"


@dataclass(frozen=True)
class NodeSample:
    name: str
    reachable: bool
    registered_phones: int | None


def node_samples(services: Services) -> list[NodeSample]:
    """Each Asterisk node as this instance sees it (nothing when it does not lead):
    reachable = its AMI link is connected; registered phones from the phone tracker."""
    applier, phones = services.applier, services.phones
    if applier is None:
        return []
    watched = phones.nodes() if phones is not None else {}
    return [NodeSample(node.name, node.ami.connected,
                       (watched.get(node.name) or {}).get("registered"))
            for node in applier.nodes]


class Metrics:
    def __init__(self, instance: str) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.requests = Counter("sipprov_http_requests", "API and console requests",
                                ["route", "method", "status"], registry=r)
        self.request_seconds = Histogram("sipprov_http_request_duration_seconds",
                                         "Time to answer a request", ["route"],
                                         buckets=REQUEST_BUCKETS, registry=r)
        self.applies = Counter("sipprov_applies", "Applies run by this instance, by result",
                               ["result"], registry=r)
        self.apply_seconds = Histogram("sipprov_apply_duration_seconds",
                                       "Time from snapshot to verified, per apply",
                                       buckets=APPLY_BUCKETS, registry=r)
        self.config_version = Gauge("sipprov_config_version",
                                    "The latest config version", registry=r)
        self.applied_version = Gauge("sipprov_config_applied_version",
                                     "The config version Asterisk has", registry=r)
        self.pending = Gauge("sipprov_config_pending_versions",
                             "Config versions committed but not applied yet", registry=r)
        self.database_up = Gauge("sipprov_database_up", "The database answers (1/0)",
                                 registry=r)
        self.node_up = Gauge("sipprov_asterisk_node_up", "The node's AMI is connected (1/0)",
                             ["node"], registry=r)
        self.registered = Gauge("sipprov_registered_phones",
                                "Agents with a registered phone, per node", ["node"],
                                registry=r)
        self.leader = Gauge("sipprov_leader", "This instance is the applier leader (1/0)",
                            registry=r)
        self.info = Gauge("sipprov_instance_info", "This instance's name", ["name"],
                          registry=r)
        self.info.labels(name=instance).set(1)
        self.applies.labels(result="ok")
        self.applies.labels(result="failed")

    def watch_applier(self, applier: Applier) -> None:
        """Count this applier's applies (called for each applier the instance runs)."""
        applier.stats.listeners.append(self._apply_done)

    def _apply_done(self, ok: bool, seconds: float | None) -> None:
        self.applies.labels(result="ok" if ok else "failed").inc()
        if ok and seconds is not None:
            self.apply_seconds.observe(seconds)

    def request_done(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, method=method, status=str(status)).inc()
        self.request_seconds.labels(route=route).observe(seconds)

    def refresh_nodes(self, samples: list[NodeSample], is_leader: bool) -> None:
        self.leader.set(1 if is_leader else 0)
        self.node_up.clear()
        self.registered.clear()
        for node in samples:
            self.node_up.labels(node=node.name).set(1 if node.reachable else 0)
            if node.registered_phones is not None:
                self.registered.labels(node=node.name).set(node.registered_phones)
