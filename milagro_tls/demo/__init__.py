"""The one-command ecosystem demo (``milagro demo``): every role a separate process on loopback.

    processes   the child processes (servers announcing a JSON line; one-shot commands), all
                stopped whatever happens
    miner       the miner process (blocks on the clock or on demand) and its control
    deployment  chain node, miner, IdP, two D-TAs, relying service, TBS and its device group
    person      the user approving device codes at the IdP's device page (HTTPS)
    pats        what each PAT does: enrol through the TBS; log in at both D-TAs; M-Pin over YAK
    pipeline    the whole run (run_pipeline), used by ``milagro demo`` and the benchmark
    summary     facts read back from the chain, suites, pcaps, timings
"""
