"""The garbage collector of a server process, settled once it has booted.

A full collection walks every tracked object. After boot most of them (modules, the app and its
routes, schemas, pools) live as long as the process, and a full collection over them took
up to 100 ms on a busy 2-core machine: a request that met one paid for it in its latency. Moving
them out of the collector's sight (`gc.freeze`, as CPython's docs suggest for servers) leaves
collections only the objects made since, so they stay short.

What a server makes after boot is mostly per socket (about 110 tracked objects each: tasks,
futures, queues, protocol state). With CPython's default thresholds (700, 10, 10) a process
holding 2,500 sockets ran a full collection over them twice in 30 s of fanning events out,
170-200 ms each on a 2-core machine: a stall that every socket of the process waited through.
Raising the young generation's threshold to 10,000 makes every collection, full ones included,
run 14 times less often for the same allocations, while a young collection stays a few ms. The
p99 of fan-out to 5,000 sockets fell from 200-535 ms to 150-241 ms (docs/performance.md).
The price: cyclic garbage waits longer to be found.
"""

from __future__ import annotations

import gc

# (young, middle, full): see above; the last two are CPython's defaults.
THRESHOLDS = (10_000, 10, 10)


def freeze_booted_heap() -> None:
    """Collect what boot left behind, exempt every surviving object from collections, and
    collect what comes after less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
