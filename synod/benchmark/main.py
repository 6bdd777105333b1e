"""``synod-benchmark``: etcd 3.4's benchmark tool in Python, with its flags and report layout.

Commands: ``put``, ``range``, ``watch``, ``watch-latency`` and ``lease-keepalive``.
Global flags may come before the command (as in etcd's examples) or after it.
``--procs`` is synod's own: how many worker processes share the clients.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from synod.benchmark.lease import LeaseKeepAliveRequests
from synod.benchmark.load import (
    LoadError,
    LoadResult,
    LoadSpec,
    Requests,
    default_procs,
    find_leader_endpoints,
    run_load,
)
from synod.benchmark.put import Compactor, PutRequests, check_key_size, hashkv_summary
from synod.benchmark.range import RangeRequests
from synod.benchmark.report import compute_stats, format_report, time_series
from synod.benchmark.watch import WatchSpec, run_watch, watched_keys
from synod.benchmark.watch_latency import WatchLatencySpec, run_watch_latency

F = TypeVar("F", bound=Callable[..., Any])

_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d*\.?\d*)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """A Go duration (``5s``, ``1m30s``, ``250ms``, ``0``) in seconds."""
    body = text.strip()
    sign = -1.0 if body.startswith("-") else 1.0
    body = body.lstrip("+-")
    if body == "0":
        return 0.0
    pos, seconds = 0, 0.0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if match is None or match.group(1) in ("", "."):
            raise click.BadParameter(f"invalid duration {text!r}")
        seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos == 0:
        raise click.BadParameter(f"invalid duration {text!r}")
    return sign * seconds


class DurationType(click.ParamType[float, Any]):
    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_duration(str(value))
        except click.BadParameter as err:
            self.fail(err.message, param, ctx)


DURATION = DurationType()


def global_options(in_command: bool) -> Callable[[F], F]:
    """etcd's persistent flags; on a command they default to None and override the group's."""

    def default(value: Any) -> Any:
        return None if in_command else value

    def decorate(f: F) -> F:
        options = [
            click.option(
                "--endpoints",
                multiple=True,
                default=None if in_command else ["127.0.0.1:2379"],
                help="gRPC endpoints, comma-separated (default 127.0.0.1:2379)",
            ),
            click.option(
                "--conns",
                type=click.IntRange(min=1),
                default=default(1),
                help="Total number of gRPC connections",
            ),
            click.option(
                "--clients",
                type=click.IntRange(min=1),
                default=default(1),
                help="Total number of gRPC clients",
            ),
            click.option("--precise", is_flag=True, help="use full floating point precision"),
            click.option("--sample", is_flag=True, help="'true' to sample requests for every second"),
            click.option(
                "--dial-timeout",
                type=DURATION,
                default=default(0.0),
                help="dial timeout for client connections",
            ),
            click.option("--target-leader", is_flag=True, help="connect only to the leader node"),
            click.option(
                "--procs",
                type=click.IntRange(min=1),
                default=None,
                help="worker processes generating the load (synod's own; default: one per CPU)",
            ),
        ]
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


@dataclass
class GlobalOptions:
    endpoints: list[str]
    conns: int
    clients: int
    precise: bool
    sample: bool
    dial_timeout: float
    target_leader: bool
    procs: int | None


def _merged(ctx: click.Context, sub: dict[str, Any]) -> GlobalOptions:
    """The group's global options, overridden by those given after the command."""
    base: GlobalOptions = ctx.obj
    merged = GlobalOptions(**vars(base))
    if sub["endpoints"]:
        merged.endpoints = _split_endpoints(sub["endpoints"])
    for name in ("conns", "clients", "dial_timeout", "procs"):
        if sub[name] is not None:
            setattr(merged, name, sub[name])
    for name in ("precise", "sample", "target_leader"):
        setattr(merged, name, getattr(merged, name) or sub[name])
    return merged


def _split_endpoints(values: tuple[str, ...] | list[str]) -> list[str]:
    return [ep.strip() for value in values for ep in value.split(",") if ep.strip()]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@global_options(in_command=False)
@click.pass_context
def cli(ctx: click.Context, /, **opts: Any) -> None:
    """A low-level benchmark tool for etcd3 and synod: etcd's benchmark tool, in Python."""
    opts["endpoints"] = _split_endpoints(opts["endpoints"])
    ctx.obj = GlobalOptions(**opts)


def _endpoints(opts: GlobalOptions) -> list[str]:
    """The endpoints to connect to: the leader's only with ``--target-leader``."""
    if opts.target_leader:
        return find_leader_endpoints(opts.endpoints, opts.dial_timeout or 5.0)
    return opts.endpoints


def _report(opts: GlobalOptions, result: LoadResult) -> str:
    """etcd's report text for a run's result."""
    stats = compute_stats(result.latencies_ns, result.total_ns, result.errors)
    series = (
        time_series(zip(result.starts_unix_ns, result.latencies_ns, strict=True)) if opts.sample else None
    )
    return format_report(stats, opts.precise, series)


def _measure(run: Callable[[], LoadResult]) -> LoadResult:
    """Run a load; if it cannot run, say why and exit 1."""
    try:
        return run()
    except LoadError as err:
        print(err, file=sys.stderr)
        raise SystemExit(1) from None


def _run(opts: GlobalOptions, requests: Requests, total: int, rate: int) -> tuple[LoadResult, str]:
    """Run the load and return its result with etcd's report text."""
    spec = LoadSpec(
        endpoints=_endpoints(opts),
        conns=opts.conns,
        clients=opts.clients,
        procs=opts.procs or default_procs(),
        total=total,
        requests=requests,
        rate=float(rate),
        dial_timeout=opts.dial_timeout,
        sample=opts.sample,
    )
    result = _measure(lambda: run_load(spec))
    return result, _report(opts, result)


@cli.command("put")
@click.option("--key-size", type=int, default=8, show_default=True, help="Key size of put request")
@click.option(
    "--val-size", type=click.IntRange(min=0), default=8, show_default=True, help="Value size of put request"
)
@click.option("--rate", type=click.IntRange(min=0), default=0, help="Maximum puts per second (0 is no limit)")
@click.option(
    "--total",
    type=click.IntRange(min=0),
    default=10000,
    show_default=True,
    help="Total number of put requests",
)
@click.option("--key-space-size", type=int, default=1, show_default=True, help="Maximum possible keys")
@click.option("--sequential-keys", is_flag=True, help="Use sequential keys")
@click.option(
    "--compact-interval",
    type=DURATION,
    default=0.0,
    help="Interval to compact database (e.g. 5m); 0 is never",
)
@click.option(
    "--compact-index-delta",
    type=int,
    default=1000,
    show_default=True,
    help="Delta between current revision and compact revision",
)
@click.option("--check-hashkv", is_flag=True, help="'true' to check hashkv")
@global_options(in_command=True)
@click.pass_context
def put_cmd(
    ctx: click.Context,
    /,
    key_size: int,
    val_size: int,
    rate: int,
    total: int,
    key_space_size: int,
    sequential_keys: bool,
    compact_interval: float,
    compact_index_delta: int,
    check_hashkv: bool,
    **global_opts: Any,
) -> None:
    """Benchmark put."""
    opts = _merged(ctx, global_opts)
    if key_space_size <= 0:
        print(f"expected positive --key-space-size, got ({key_space_size})", file=sys.stderr)
        raise SystemExit(1)
    largest = min(total, key_space_size) - 1 if sequential_keys else key_space_size - 1
    try:
        check_key_size(key_size, largest)
    except ValueError as err:
        print(err, file=sys.stderr)
        raise SystemExit(1) from None
    requests = PutRequests(key_size, key_space_size, sequential_keys, os.urandom(val_size))
    if compact_interval > 0:
        with Compactor(opts.endpoints[0], compact_interval, compact_index_delta):
            _, text = _run(opts, requests, total, rate)
    else:
        _, text = _run(opts, requests, total, rate)
    print(text)
    if check_hashkv:
        print(hashkv_summary(opts.endpoints[0]))


@cli.command("range")
@click.argument("key")
@click.argument("end", required=False, default="")
@click.option(
    "--rate", type=click.IntRange(min=0), default=0, help="Maximum range requests per second (0 is no limit)"
)
@click.option(
    "--total",
    type=click.IntRange(min=0),
    default=10000,
    show_default=True,
    help="Total number of range requests",
)
@click.option("--consistency", default="l", show_default=True, help="Linearizable(l) or Serializable(s)")
@global_options(in_command=True)
@click.pass_context
def range_cmd(
    ctx: click.Context, /, key: str, end: str, rate: int, total: int, consistency: str, **global_opts: Any
) -> None:
    """Benchmark range: KEY, or the range [KEY, END)."""
    opts = _merged(ctx, global_opts)
    if consistency not in ("l", "s"):
        click.echo(ctx.get_usage(), err=True)
        raise SystemExit(1)
    print(f"bench with {'linearizable' if consistency == 'l' else 'serializable'} range")
    requests = RangeRequests(os.fsencode(key), os.fsencode(end), serializable=consistency == "s")
    _, text = _run(opts, requests, total, rate)
    sys.stdout.write(text)


@cli.command("lease-keepalive")
@click.option(
    "--total",
    type=click.IntRange(min=0),
    default=10000,
    show_default=True,
    help="Total number of lease keepalive requests",
)
@global_options(in_command=True)
@click.pass_context
def lease_keepalive_cmd(ctx: click.Context, /, total: int, **global_opts: Any) -> None:
    """Benchmark lease keepalive."""
    opts = _merged(ctx, global_opts)
    _, text = _run(opts, LeaseKeepAliveRequests(), total, 0)
    sys.stdout.write(text)


@cli.command("watch")
@click.option(
    "--streams", type=click.IntRange(min=0), default=10, show_default=True, help="Total watch streams"
)
@click.option(
    "--watch-per-stream",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Total watchers per stream",
)
@click.option(
    "--watched-key-total",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Total number of keys to be watched",
)
@click.option(
    "--put-rate",
    type=click.IntRange(min=0),
    default=0,
    help="Number of keys to put per second (0 is no limit; etcd 3.4's tool hangs)",
)
@click.option(
    "--put-total", type=click.IntRange(min=0), default=1000, show_default=True, help="Number of put requests"
)
@click.option("--key-size", type=int, default=32, show_default=True, help="Key size of watch request")
@click.option("--key-space-size", type=int, default=1, show_default=True, help="Maximum possible keys")
@click.option("--sequential-keys", is_flag=True, help="Use sequential keys")
@global_options(in_command=True)
@click.pass_context
def watch_cmd(
    ctx: click.Context,
    /,
    streams: int,
    watch_per_stream: int,
    watched_key_total: int,
    put_rate: int,
    put_total: int,
    key_size: int,
    key_space_size: int,
    sequential_keys: bool,
    **global_opts: Any,
) -> None:
    """Benchmark watch: creating watches, then receiving the events of concurrent puts."""
    opts = _merged(ctx, global_opts)
    if key_space_size <= 0:
        print(f"expected positive --key-space-size, got ({key_space_size})", file=sys.stderr)
        raise SystemExit(1)
    largest = min(watched_key_total, key_space_size) - 1 if sequential_keys else key_space_size - 1
    try:
        check_key_size(key_size, largest)
    except ValueError as err:
        print(err, file=sys.stderr)
        raise SystemExit(1) from None
    have, need = min(opts.clients, opts.conns), 1 + streams // 100
    if have < need:
        print(
            f"warning: grpc limits 100 streams per client connection, have {have} but need {need}",
            file=sys.stderr,
        )
    spec = WatchSpec(
        endpoints=_endpoints(opts),
        conns=opts.conns,
        clients=opts.clients,
        procs=opts.procs or default_procs(),
        streams=streams,
        watch_per_stream=watch_per_stream,
        watched=watched_keys(watched_key_total, key_size, key_space_size, sequential_keys),
        put_total=put_total,
        put_rate=put_rate,
        dial_timeout=opts.dial_timeout,
    )

    def created(result: LoadResult) -> None:
        sys.stdout.write("Watch creation summary:\n" + _report(opts, result))
        sys.stdout.flush()

    result = _measure(lambda: run_watch(spec, created))
    sys.stdout.write("Watch events received summary:\n" + _report(opts, result))


@cli.command("watch-latency")
@click.option(
    "--total",
    type=click.IntRange(min=0),
    default=10000,
    show_default=True,
    help="Total number of put requests",
)
@click.option(
    "--put-rate",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Number of keys to put per second (0 is no limit; etcd 3.4's tool puts nothing)",
)
@click.option(
    "--key-size", type=click.IntRange(min=0), default=32, show_default=True, help="Key size of watch response"
)
@click.option(
    "--val-size",
    type=click.IntRange(min=0),
    default=32,
    show_default=True,
    help="Value size of watch response",
)
@global_options(in_command=True)
@click.pass_context
def watch_latency_cmd(
    ctx: click.Context, /, total: int, put_rate: int, key_size: int, val_size: int, **global_opts: Any
) -> None:
    """Benchmark watch latency: from a put's acknowledgement to each watcher's event."""
    opts = _merged(ctx, global_opts)
    spec = WatchLatencySpec(
        endpoints=_endpoints(opts),
        conns=opts.conns,
        clients=opts.clients,
        procs=opts.procs or default_procs(),
        total=total,
        put_rate=put_rate,
        key=os.urandom(key_size),
        value=os.urandom(val_size),
        dial_timeout=opts.dial_timeout,
    )
    result = _measure(lambda: run_watch_latency(spec))
    sys.stdout.write(_report(opts, result))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
