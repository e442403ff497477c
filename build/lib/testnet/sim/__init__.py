"""The deterministic simulator (TigerBeetle's VOPR for bftnode): whole PBFT clusters on a
virtual clock with seeded network faults, crashes and Byzantine replicas; every failure is a
seed that replays exactly. Imports: stdlib, consensus, testnet.checkers.
"""

from .cluster import (
    DOMAIN,
    PLANTED_BUGS,
    SimCluster,
    SimNode,
    SimOptions,
    SimResult,
    Violation,
    run_sim,
)
from .network import Faults, OneWay, Partition, SimNetwork
from .scenarios import f_plus_one_options, random_options
from .stores import SimBlocks, SimRecords, recovered_state
