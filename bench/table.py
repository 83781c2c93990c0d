"""`make bench`: issue 15's one table. Send throughput over 1,000 channels and into one hot
channel beside pgbench (the SQL of one send, the minimal message transaction), fan-out to 1,000
and 5,000 sockets, memory of 10,000 idle sockets, and the same send and fan-out workloads
against Matrix Synapse; each figure the median of its runs, the load generator's CPU share
beside it, every ratio to pgbench from the same run, and the targets.

    python -m bench.table --runs 3 --seconds 10
    python -m bench.table --runs 1 --seconds 5 --channels 100 --fanout 200 --idle 1000 \\
        --synapse-rooms 20 --synapse-fanout 20          # a quick look
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import dataclass

from bench import fanout, send_table, synapse
from bench.figures import Run, median


@dataclass(frozen=True)
class Row:
    name: str
    unit: str
    runs: list[Run]
    ratio: str = ""  # "0.42 of pgbench (a)", ...
    target: str = ""
    met: bool | None = None


def _cell(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def render(rows: list[Row]) -> str:
    lines = [
        "| workload | rate | p50 ms | p99 ms | load generator CPU | memory | ratio | target |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in rows:
        m = median(row.runs)
        load = "-" if m.load_cpu is None else f"{m.load_cpu:.0%}"
        per_k = m.extra.get("rss_mib_per_1000")
        memory = "" if per_k is None else f"{per_k:,.1f} MiB / 1,000"
        target = row.target
        if row.met is not None:
            target += " ✔" if row.met else " ✘"
        lines.append(
            f"| {row.name} | {_cell(m.rate)} {row.unit if m.rate is not None else ''} "
            f"| {_cell(m.p50_ms, 1)} | {_cell(m.p99_ms, 1)} | {load} | {memory} "
            f"| {row.ratio} | {target} |"
        )
    return "\n".join(lines)


def _rate(runs: list[Run]) -> float:
    rate = median(runs).rate
    return 0.0 if rate is None else rate


def send_rows(table: dict[str, list[Run]], channels: int) -> list[Row]:
    """The send rows, with server ÷ pgbench (median over runs of each run's own ratio)."""
    rows: list[Row] = []
    targets = {
        (send_table.EXACT, send_table.SPREAD): 0.6,
        (send_table.MINIMAL, send_table.SPREAD): 0.3,
        (send_table.EXACT, send_table.HOT): 1.0,
    }
    for where in (send_table.SPREAD, send_table.HOT):
        server = send_table.row_name(send_table.SERVER, where, channels)
        rows.append(Row(server, "msg/s", table[server]))
        for kind, label in ((send_table.EXACT, "(a)"), (send_table.MINIMAL, "(b)")):
            name = send_table.row_name(kind, where, channels)
            ratio = median(table[name]).extra.get("ratio")
            wanted = targets.get((kind, where))
            rows.append(
                Row(
                    f"{name} {label}",
                    "tps",
                    table[name],
                    "" if ratio is None else f"server = {ratio:.2f} x this",
                    "" if wanted is None else f"server ≥ {wanted:g} x this",
                    None if wanted is None or ratio is None else ratio >= wanted,
                )
            )
    return rows


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="each figure the median of these")
    parser.add_argument("--seconds", type=float, default=10.0, help="per send and fan-out run")
    parser.add_argument("--workers", type=int, default=2, help="`cariosan serve --workers`")
    parser.add_argument("--channels", type=int, default=1000, help="of the send workload")
    parser.add_argument(
        "--fanout", type=int, nargs="*", default=[1000, 5000], help="sockets in one channel"
    )
    parser.add_argument("--idle", type=int, default=10000, help="idle sockets (0: skip)")
    parser.add_argument("--synapse-rooms", type=int, default=1000, help="0: skip Synapse")
    parser.add_argument("--synapse-fanout", type=int, default=1000, help="/sync clients")
    parser.add_argument("--synapse-reuse-database", metavar="NAME", help="a kept Synapse setup")
    parser.add_argument("--synapse-keep-database", action="store_true")
    args = parser.parse_args(argv)
    # A `kill` stops the bench as Ctrl-C does: through each part's cleanup, not around it.
    signal.signal(signal.SIGTERM, _interrupt)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    rows: list[Row] = []
    table = send_table.measure(
        args.runs, args.seconds, args.workers, channels=args.channels, progress=say
    )
    rows += send_rows(table, args.channels)
    ours_send = _rate(
        table[send_table.row_name(send_table.SERVER, send_table.SPREAD, args.channels)]
    )
    for sockets in args.fanout:
        runs = fanout.measure_fanout(args.runs, sockets, seconds=args.seconds, workers=args.workers)
        limit = 50.0 if sockets <= 1000 else 250.0
        p99 = median(runs).p99_ms
        rows.append(
            Row(
                f"fan-out to {sockets:,} sockets at 10 msg/s",
                "deliveries/s",
                runs,
                target=f"p99 < {limit:g} ms",
                met=None if p99 is None else p99 < limit,
            )
        )
    if args.idle:
        runs = fanout.measure_idle(args.runs, args.idle)
        total = median(runs).extra.get("rss_mib_total")
        rows.append(
            Row(
                f"{args.idle:,} idle sockets, one server process",
                "",
                runs,
                "" if total is None else f"{total:,.0f} MiB in all",
                "10,000 in < 0.5 GiB",
                None if total is None or args.idle < 10000 else total < 512,
            )
        )
    if args.synapse_rooms:
        with synapse.synapse(
            keep_database=args.synapse_keep_database,
            reuse_database=args.synapse_reuse_database,
        ) as handle:
            seconds = max(1, round(args.seconds))
            spread = synapse.measure_send(handle, args.runs, seconds, args.synapse_rooms, 32, False)
            hot = synapse.measure_send(handle, args.runs, seconds, args.synapse_rooms, 32, True)
            fan = synapse.measure_fanout(handle, args.runs, args.synapse_fanout, 10.0, args.seconds)
        theirs = _rate(spread)
        ratio = ours_send / theirs if theirs else 0.0
        rows.append(
            Row(
                f"Synapse: send over {args.synapse_rooms:,} rooms",
                "msg/s",
                spread,
                f"server = {ratio:.1f} x this",
                "server ≥ 30 x this",
                ratio >= 30,
            )
        )
        rows.append(Row("Synapse: send into one hot room", "msg/s", hot))
        rows.append(
            Row(f"Synapse: fan-out to {args.synapse_fanout:,} /sync clients", "deliveries/s", fan)
        )
    print(
        f"Median of {args.runs} run(s) of {args.seconds:g} s; server --workers {args.workers} "
        f"with Redis; load generator CPU as a share of all {os.cpu_count()} cores; wrk and "
        "pgbench with 32 connections/clients"
    )
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
