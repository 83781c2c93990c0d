"""bench.send_scripts: captured statements as a pgbench script, and what wrk and pgbench print
read back (the figures of the send rows of `make bench` rest on these)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from bench.send_scripts import (
    HOT_CHANNEL,
    MESSAGE_ID_SQL,
    Roles,
    Statement,
    parse_pgbench,
    parse_wrk,
    percentiles,
    pgbench_latencies_ms,
    pgbench_statement,
    send_script,
    sql_literal,
    unstored_acknowledged,
)

WS = uuid.UUID("0190f1f4-0000-7000-8000-000000000001")
MID = uuid.UUID("0190f1f4-0000-7000-8000-0000000000aa")
ROLES = Roles(WS, "1000000", "3000000", MID, "captured send")


def test_varying_values_become_variables_and_constants_literals() -> None:
    statement = Statement(
        "INSERT INTO messages (workspace_id, id, channel_id, user_id, text, parent_id, mentions,"
        " shadow, n) VALUES ($1, $2, $3, $4, $5, $6, $7::text[], $8, $9)",
        (WS, MID, "1000000", "3000000", "captured send", None, ["a", 'b"'], False, 10),
    )
    assert pgbench_statement(statement, ROLES) == (
        "INSERT INTO messages (workspace_id, id, channel_id, user_id, text, parent_id, mentions,"
        f" shadow, n) VALUES (:ws, {MESSAGE_ID_SQL}, :channel, :user, 'pgbench', NULL,"
        """ '{"a","b\\""}'::text[], false, 10);"""
    )


def test_arrays_of_one_send_become_arrays_of_its_variables() -> None:
    # The batched send statement takes one array per column; a captured send fills each with
    # one element, and a constant array stays a literal.
    statement = Statement(
        "SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], "
        "$6::text[])",
        ([WS], [MID], ["1000000"], ["3000000"], ["captured send"], ["{}"]),
    )
    assert pgbench_statement(statement, ROLES) == (
        f"SELECT * FROM unnest(ARRAY[:ws]::uuid[], ARRAY[{MESSAGE_ID_SQL}]::uuid[], "
        "ARRAY[:channel]::text[], ARRAY[:user]::text[], ARRAY['pgbench']::text[], "
        """'{"{}"}'::text[]);"""
    )


def test_placeholders_past_nine_are_not_read_as_their_first_digit() -> None:
    args = tuple(range(1, 12))
    query = "SELECT " + ", ".join(f"${i}" for i in range(11, 0, -1))
    assert pgbench_statement(Statement(query, args), ROLES) == (
        "SELECT 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1;"
    )


def test_a_statement_without_its_value_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\$2 has no value"):
        pgbench_statement(Statement("SELECT $1, $2", (1,)), ROLES)


def test_a_reset_of_several_statements_is_one_pipeline() -> None:
    reset = Statement("SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nUNLISTEN *;\nRESET ALL;\n")
    assert pgbench_statement(reset, ROLES) == (
        "\\startpipeline\nSELECT pg_advisory_unlock_all();\nCLOSE ALL;\nUNLISTEN *;\n"
        "RESET ALL;\n\\endpipeline"
    )


def test_literals() -> None:
    assert sql_literal("it's") == "'it''s'"
    assert sql_literal(True) == "true"
    assert sql_literal([]) == "'{}'"
    assert sql_literal(datetime.now(UTC)) == "now()"


def test_hot_script_sets_the_one_channel_and_keeps_the_sql() -> None:
    statements = [Statement("BEGIN;"), Statement("SELECT $1", ("1000000",)), Statement("COMMIT")]
    spread = send_script(statements, ROLES, channels=1000, users=32, hot=False)
    hot = send_script(statements, ROLES, channels=1000, users=32, hot=True)
    assert "\\set channel random(1000000, 1000999)" in spread
    assert f"\\set channel {HOT_CHANNEL}" in hot
    assert "\\set user random(3000000, 3000031)" in hot
    assert (
        spread.splitlines()[-3:]
        == hot.splitlines()[-3:]
        == ["BEGIN;", "SELECT :channel;", "COMMIT;"]
    )


WRK_OUTPUT = """Running 3s test @ http://127.0.0.1:1
  2 threads and 2 connections
WRK {"ok":90,"other":3,"statuses":[{"503":2},{"503":1,"429":0}],"requests":93,"duration_us":3000000,"p50_us":12500,"p99_us":80000,"connect_errors":0,"read_errors":1,"write_errors":0,"timeouts":0,"threads":[[1,47,45],[2,46,45]]}
"""  # noqa: E501


def test_wrk_done_line() -> None:
    got = parse_wrk(WRK_OUTPUT)
    assert (got.ok, got.other, got.statuses) == (90, 3, {503: 3, 429: 0})
    assert (got.rate, got.p50_ms, got.p99_ms, got.socket_errors) == (30.0, 12.5, 80.0, 1)
    assert got.threads == ((1, 47, 45), (2, 46, 45))


def test_wrk_without_its_line_is_an_error() -> None:
    with pytest.raises(ValueError, match="no WRK line"):
        parse_wrk("unable to connect")


def test_acknowledged_and_stored_agree_per_thread() -> None:
    # Thread 1: 3 answered, 2 of them 2xx (the 2nd failed and is not stored), the 4th was in
    # flight at the end and got stored anyway. Another run's messages are not counted.
    texts = ["wrk t1 1 1", "wrk t1 1 3", "wrk t1 1 4", "wrk t2 1 2", "hello"]
    assert unstored_acknowledged([(1, 3, 2)], texts, "t1") == []
    assert unstored_acknowledged([(1, 3, 3)], texts, "t1") == [
        "wrk t1 thread 1: 3 acknowledged, 2 of its first 3 stored"
    ]
    assert unstored_acknowledged([(1, 1, 1)], texts, "t1") == [
        "wrk t1 thread 1: 2 unanswered sends stored"
    ]


PGBENCH_OUTPUT = """pgbench (15.20 (Debian 15.20-0+deb12u1))
transaction type: exact-spread.sql
number of transactions actually processed: 3879
number of failed transactions: 2 (0.052%)
latency average = 6.179 ms
initial connection time = 40.221 ms
tps = 1294.871152 (without initial connection time)
"""


def test_pgbench_summary_and_log() -> None:
    got = parse_pgbench(PGBENCH_OUTPUT)
    assert (got.tps, got.processed, got.failed) == (1294.871152, 3879, 2)
    log = ["0 1 4810 0 1796015080 280845", "1 1 failed 0 1796015080 281631", "0 2 1200 0 1 2"]
    assert pgbench_latencies_ms(log) == [4.81, 1.2]


def test_percentiles() -> None:
    assert percentiles([]) == (None, None)
    assert percentiles([3.0]) == (3.0, 3.0)
    p50, p99 = percentiles([float(i) for i in range(1, 102)])
    assert (p50, p99) == (51.0, 100.0)
