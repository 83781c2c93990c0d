"""The load generators' scripts for bench.send_table, and reading what they print: pure text in,
text out, so that what the table rests on can be unit-tested without a server.

- a pgbench script from the statements one real send issued (captured with asyncpg's query
  logger, see bench.send_capture), with the values that vary per send made pgbench variables;
- the minimal message transaction (insert the message row, move the channel's last message);
- a wrk Lua script that posts as one user per connection and counts statuses;
- the figures wrk's `done` hook and pgbench print.
"""

from __future__ import annotations

import json
import re
import statistics
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

# Channel and user ids are digits only (API.md allows [A-Za-z0-9_.@-]): pgbench's `\set` makes
# integers only, and in `-M prepared` mode an integer variable reaches PostgreSQL as the text of
# the parameter, so `random(...)` picks a channel or user without changing the captured SQL.
FIRST_CHANNEL = 1_000_000
HOT_CHANNEL = "2000000"
FIRST_USER = 3_000_000

# A message id as the server makes them (UUIDv7: milliseconds first, so inserts land at the
# right edge of the (workspace_id, id) index): a start time given with -D, plus a per-client
# counter (pgbench variables persist across a client's transactions), then random bits. The
# same expression in every statement of a transaction yields the same id.
MESSAGE_ID_SQL = (
    "(lpad(to_hex(:t0::bigint + :n::bigint), 12, '0') || lpad(to_hex(:r::bigint), 20, '0'))::uuid"
)
_MESSAGE_ID_SETS = "\\set n :n + 1\n\\set r random(0, 9223372036854775806)\n"
PGBENCH_DEFINES = ("n=0",)


@dataclass(frozen=True)
class Statement:
    """One statement as asyncpg sent it: `$n` placeholders and their values."""

    query: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Roles:
    """Which captured values are which: they become pgbench variables or expressions."""

    workspace_id: uuid.UUID
    channel_id: str
    user_id: str
    message_id: uuid.UUID
    text: str


def sql_literal(value: Any) -> str:
    """A constant argument written into the script (the same in every send)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        # The only timestamp a send passes is its own row's created_at (DEFAULT now()).
        return "now()"
    if isinstance(value, list | tuple):
        items = ",".join(
            '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in value
        )
        return sql_literal("{" + items + "}")
    return "'" + str(value).replace("'", "''") + "'"


def _value_sql(value: Any, roles: Roles) -> str:
    # An array of sends (the batched send statement, one send captured): each element in turn.
    if isinstance(value, list | tuple) and value:
        items = [_value_sql(v, roles) for v in value]
        if any(item != sql_literal(v) for item, v in zip(items, value, strict=True)):
            return "ARRAY[" + ", ".join(items) + "]"
    # Checked by identity of meaning, not position: a statement may pass a value twice.
    if isinstance(value, uuid.UUID) and value == roles.workspace_id:
        return ":ws"
    if isinstance(value, uuid.UUID) and value == roles.message_id:
        return MESSAGE_ID_SQL
    if isinstance(value, str) and value == roles.channel_id:
        return ":channel"
    if isinstance(value, str) and value == roles.user_id:
        return ":user"
    if isinstance(value, str) and value == roles.text:
        return "'pgbench'"
    return sql_literal(value)


_PLACEHOLDER = re.compile(r"\$(\d+)")


def pgbench_statement(statement: Statement, roles: Roles) -> str:
    """The statement with each `$n` replaced, as one pgbench command (ending in `;`)."""

    def replace(found: re.Match[str]) -> str:
        index = int(found.group(1)) - 1
        if index >= len(statement.args):
            raise ValueError(f"${index + 1} has no value in: {statement.query}")
        return _value_sql(statement.args[index], roles)

    text = _PLACEHOLDER.sub(replace, statement.query.strip())
    # Several statements in one simple query (asyncpg's reset of a connection on release):
    # prepared mode cannot take them as one command, and as separate commands they would cost
    # a round trip each. A pipeline sends them together and waits once, as asyncpg does.
    parts = [p.strip() for p in text.rstrip(";").split(";") if p.strip()]
    if len(parts) > 1 and not statement.args:
        return "\\startpipeline\n" + "".join(f"{p};\n" for p in parts) + "\\endpipeline"
    return text.rstrip(";") + ";"


def _header(title: str, channels: int, users: int, *, hot: bool) -> str:
    lines = [f"-- {title}"]
    if hot:
        # The same SQL as over many channels: only the choice of channel differs.
        lines.append(f"\\set channel {HOT_CHANNEL}")
    else:
        lines.append(f"\\set channel random({FIRST_CHANNEL}, {FIRST_CHANNEL + channels - 1})")
    lines.append(f"\\set user random({FIRST_USER}, {FIRST_USER + users - 1})")
    return "\n".join(lines) + "\n" + _MESSAGE_ID_SETS


def send_script(
    statements: Sequence[Statement], roles: Roles, *, channels: int, users: int, hot: bool
) -> str:
    """pgbench script (a): the statements of one captured send, in order."""
    where = "one hot channel" if hot else f"{channels} channels"
    body = "\n".join(pgbench_statement(s, roles) for s in statements)
    title = f"the SQL of one POST /v1/channels/{{id}}/messages, as captured ({where})"
    return _header(title, channels, users, hot=hot) + body + "\n"


def minimal_script(*, channels: int, users: int, hot: bool) -> str:
    """pgbench script (b): the least a message needs: its row, and the channel's activity."""
    channel = ":channel"
    where = "one hot channel" if hot else f"{channels} channels"
    return (
        _header(f"the minimal message transaction ({where})", channels, users, hot=hot)
        + "BEGIN;\n"
        + "INSERT INTO messages (workspace_id, id, channel_id, user_id, text)\n"
        + f"VALUES (:ws, {MESSAGE_ID_SQL}, {channel}, :user, 'pgbench');\n"
        + f"UPDATE channels SET last_message_id = {MESSAGE_ID_SQL}, last_message_at = now()\n"
        + f"WHERE workspace_id = :ws AND id = {channel};\n"
        + "COMMIT;\n"
    )


def wrk_script(tokens: Sequence[str], *, channels: int, hot: bool) -> str:
    """A wrk script for one thread per connection (`-t C -c C`): wrk gives a script no
    connection identity, so each thread is one user with its own token. Its argument (after
    `--`) tags the texts of the messages, `wrk TAG THREAD N`. Prints one line `WRK {json}` at
    the end: 2xx count, other statuses, p50/p99 in microseconds, and per thread how many
    requests were answered and how many of them with 2xx: one connection waits for each
    answer before the next request, so the acknowledged messages of a thread are among its
    first `answered` ones."""
    quoted = ", ".join(json.dumps(t) for t in tokens)
    hot_lua = json.dumps(HOT_CHANNEL) if hot else "nil"
    return f"""-- generated by bench/send_table.py
local tokens = {{{quoted}}}
local first, count, hot = {FIRST_CHANNEL}, {channels}, {hot_lua}
local threads = {{}}
local made = 0

function setup(thread)
  made = made + 1
  thread:set("token", tokens[(made - 1) % #tokens + 1])
  thread:set("number", made)
  table.insert(threads, thread)
end

function init(args)
  tag = args[1] or "untagged"
  ok, other, bad, answered = 0, 0, "", 0
  statuses = {{}}
  headers = {{["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}}
end

function request()
  -- Numbered by answers, not by calls: wrk calls request() once more on the first thread to
  -- check it, without sending; the next request of a connection is built after the answer.
  local sent = answered + 1
  -- A stride per user spreads the users over the channels (no two in lock step).
  local channel = hot or tostring(first + (number * 7919 + sent) % count)
  local body = '{{"text":"wrk ' .. tag .. ' ' .. number .. ' ' .. sent .. '"}}'
  return wrk.format("POST", "/v1/channels/" .. channel .. "/messages", headers, body)
end

function response(status, headers, body)
  answered = answered + 1
  if status >= 200 and status < 300 then
    ok = ok + 1
  else
    other = other + 1
    statuses[status] = (statuses[status] or 0) + 1
    -- Rare: kept as a string because that is what thread:get copies between Lua states.
    local parts = {{}}
    for code, n in pairs(statuses) do table.insert(parts, '"' .. code .. '":' .. n) end
    bad = table.concat(parts, ",")
  end
end

function done(summary, latency, requests)
  local total_ok, total_other, bad_parts, per_thread = 0, 0, {{}}, {{}}
  for _, thread in ipairs(threads) do
    table.insert(per_thread, string.format("[%d,%d,%d]",
      thread:get("number"), thread:get("answered"), thread:get("ok")))
    total_ok = total_ok + thread:get("ok")
    total_other = total_other + thread:get("other")
    local b = thread:get("bad")
    if b ~= "" then table.insert(bad_parts, "{{" .. b .. "}}") end
  end
  local e = summary.errors
  io.write(string.format(
    'WRK {{"ok":%d,"other":%d,"statuses":[%s],"requests":%d,"duration_us":%d,' ..
    '"p50_us":%d,"p99_us":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"timeouts":%d,"threads":[%s]}}\\n',
    total_ok, total_other, table.concat(bad_parts, ","), summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.connect, e.read, e.write, e.timeout,
    table.concat(per_thread, ",")))
end
"""


@dataclass(frozen=True)
class WrkResult:
    ok: int
    other: int
    statuses: dict[int, int]
    seconds: float
    p50_ms: float
    p99_ms: float
    socket_errors: int
    # (thread number, requests answered, of them 2xx)
    threads: tuple[tuple[int, int, int], ...] = ()

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


def parse_wrk(output: str) -> WrkResult:
    """The `WRK {json}` line of the script's `done` hook (the statuses of all threads summed)."""
    for line in output.splitlines():
        if line.startswith("WRK "):
            data = json.loads(line[4:])
            break
    else:
        raise ValueError(f"no WRK line in wrk's output:\n{output}")
    statuses: dict[int, int] = {}
    for per_thread in data["statuses"]:
        for code, n in per_thread.items():
            statuses[int(code)] = statuses.get(int(code), 0) + int(n)
    return WrkResult(
        ok=int(data["ok"]),
        other=int(data["other"]),
        statuses=statuses,
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        socket_errors=sum(
            int(data[k]) for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
        ),
        threads=tuple((int(n), int(a), int(k)) for n, a, k in data.get("threads", [])),
    )


def unstored_acknowledged(
    threads: Iterable[tuple[int, int, int]], stored_texts: Iterable[str], tag: str
) -> list[str]:
    """What contradicts "every acknowledged message is stored" in one wrk run: per thread, the
    messages stored among its first `answered` must be exactly its 2xx count (a failed send
    stored is as wrong as an acknowledged one lost); past those, only the one request still in
    flight when wrk stopped may have been stored."""
    stored: dict[int, list[int]] = {}
    for text in stored_texts:
        fields = text.split(" ")
        if len(fields) == 4 and fields[0] == "wrk" and fields[1] == tag:
            stored.setdefault(int(fields[2]), []).append(int(fields[3]))
    problems = []
    for number, answered, ok in threads:
        mine = stored.get(number, [])
        within = sum(1 for i in mine if i <= answered)
        beyond = len(mine) - within
        if within != ok:
            problems.append(
                f"wrk {tag} thread {number}: {ok} acknowledged, {within} of its first "
                f"{answered} stored"
            )
        if beyond > 1:
            problems.append(f"wrk {tag} thread {number}: {beyond} unanswered sends stored")
    return problems


@dataclass(frozen=True)
class PgbenchResult:
    tps: float
    processed: int
    failed: int


_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)
_PROCESSED = re.compile(r"^number of transactions actually processed: (\d+)", re.MULTILINE)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.MULTILINE)


def parse_pgbench(output: str) -> PgbenchResult:
    tps, processed = _TPS.search(output), _PROCESSED.search(output)
    if tps is None or processed is None:
        raise ValueError(f"pgbench printed no tps:\n{output}")
    failed = _FAILED.search(output)
    return PgbenchResult(
        float(tps.group(1)), int(processed.group(1)), int(failed.group(1)) if failed else 0
    )


def pgbench_latencies_ms(lines: Iterable[str]) -> list[float]:
    """Per-transaction latencies from pgbench's `--log` files (the third field, microseconds;
    failed transactions, whose field is `failed`/`skipped`, are left out)."""
    found = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 3 and fields[2].isdigit():
            found.append(int(fields[2]) / 1000)
    return found


def percentiles(values: Sequence[float]) -> tuple[float | None, float | None]:
    """p50 and p99 (None without values)."""
    if len(values) < 2:
        return (values[0], values[0]) if values else (None, None)
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[98]


def read_pgbench_logs(folder: Path, prefix: str) -> list[float]:
    lines: list[str] = []
    for log in sorted(folder.glob(f"{prefix}.*")):
        lines += log.read_text().splitlines()
    return pgbench_latencies_ms(lines)


def defines(values: Mapping[str, str]) -> list[str]:
    """pgbench `-D name=value` arguments."""
    return [a for k, v in values.items() for a in ("-D", f"{k}={v}")]
