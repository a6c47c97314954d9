"""The background adaptation daemon: jobs from TOML files trained one at a time, niced, only while
the machine is idle and on AC power, controlled over a private Unix socket, publishing gated GGUFs.

    paths.py    where the daemon keeps its files (under the user data dir and $XDG_RUNTIME_DIR)
    jobs.py     a job file: parse, validate (one-line errors), write atomically into the jobs dir
    budget.py   a job's daily time budget ([budget] minutes), counted in its run dir
    policy.py   the conditions to train under (AC power, other processes' CPU use), with hysteresis
    publish.py  gate a candidate on held-out metrics, write it under a new name, switch the pointer
    control.py  the Unix socket: JSON lines, 0600 in a 0700 dir, peer uid checked; the client side
    runner.py   round-robin slices of each job's Trainer, pausing at member boundaries
    service.py  the process: single-instance lock, niceness, signals, logging, detaching; unit files
"""
