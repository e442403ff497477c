"""bftnode.node: the validator node, one module per job.

- `node.py`: `Node` (the shared state, lifecycle; implements the RPC layer's NodeAPI)
- `driver.py`: the replica task, group stepping, and `apply_output`, the ONE implementation
  of the Output ordering rule (persist -> send -> execute -> reply), which the simulator and
  the consensus tests' cluster drive too
- `executor.py`: execute + commit blocks (`execute_and_commit`), the executor task, block
  serving with its bounds (`blocks_for_fetch`)
- `waiters.py`: commit waiters and the answers to replies
- `submit.py`: precheck and admission of client requests
- `reads.py`: the read façade (status, net_info, block, tx, query, subscribe, ...); RPC
  reads run in worker threads over a snapshot (`read`)
- `health.py`: `health` (its four conditions) and `read_info` (height, catching_up of a read)
- `metrics.py`: gauges kept current from the node's state
- `build.py`: start-up checks (`load_startup_files`, `check_port_free`) and `build_node`
- `ports.py`: the collaborators as Protocols (Store, Application, Transport, ReplicaLike)
- `verify_cache.py`: `CachingVerifier`; `errors.py`: `StartupError`, `TxRejected`

Nothing is re-exported here (import the module of the job: `bftnode.node.build`, ...), so
`import bftnode.node.executor` (the simulator does) loads no more than it needs; the public
names are `bftnode.Node`, `bftnode.StartupError`, `bftnode.TxRejected` and `bftnode.api`'s.
Imports: stdlib, trio, consensus, storage, network, bftnode.
"""
