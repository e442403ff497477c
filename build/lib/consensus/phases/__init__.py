"""The replica's message handlers, one module per PBFT protocol phase.

`consensus.replica.Replica` keeps the state (`__init__`), `step`, the common checks and
dispatch of received messages, the timers and the invariants; it inherits its `on_<message>`
handlers and their helpers from one mixin per phase:

- `intake`: client requests, the pending pool, relay (`_on_client_request`, `on_forward`)
- `proposal`: the primary batches pending requests into PRE-PREPAREs (`_maybe_propose`)
- `normal_case`: PRE-PREPARE, PREPARE, COMMIT and in-order execution (`on_pre_prepare`,
  `on_prepare`, `on_commit`, `_execute_ready`)
- `checkpoints`: CHECKPOINT, the stable checkpoint, garbage collection (`on_checkpoint`)
- `view_change`: VIEW-CHANGE and NEW-VIEW (`on_view_change`, `on_new_view`)
- `catch_up`: STATUS, FETCH-BLOCKS, BLOCK-SYNC (`on_status`, `on_fetch_blocks`, `on_block_sync`)
- `evidence`: evidence, the proof exchange (`on_conflict`) and convictions
- `restore`: persisted votes and prepared certificates re-entering after a restart
- `liveness`: progress without client traffic (stale-but-vouched pre-prepares, checkpoint
  resend, the idle-primary watchdog; docs/protocol.md "Liveness rules")
- `state_roots`: our StateVote per executed block, peers' StateVotes, state certificates and
  the divergence alarm (`_on_executed`, `on_state_vote`)
- `report`: `health()` and its one-line `why` (read-only)
- `state`: `ReplicaState`, the typed state all of them share, and the send/sign helpers

The pure rules these handlers apply stay one level up, importable and testable alone:
`normal` (request and pre-prepare checks, client table, batch split), `checkpoint`
(checkpoint votes), `state_votes` (state votes and certificates), `view_change` (view-change votes, NEW-VIEW construction, backoff),
`certificates`, `evidence`, `log`, `quorum`, `fair`.
"""
