"""bftnode's testnet tooling: local process launcher, deterministic simulator, checkers,
attack runner and benchmarks. Imports bftnode, consensus, storage, network."""
