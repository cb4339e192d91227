"""See a failover over real packets: one practice's video call through a line fault, its backup and the repair.

    sudo .venv/bin/python -m sim.emu.faultdemo --line fttc_40_10 --backup 4g_router --call 90 --failover 10

One site on the catalogue's ``--line`` profile, one video call (apps.yaml's ``video``: target, minimum and packet)
of ``--call`` seconds to a far end that limits nothing; the line fails at a third of the call, the backup
(faults.yaml's ``--backup``: its profile, and its failover time unless ``--failover`` shortens it) carries the
call after the failover, and the line is repaired at two thirds. Prints each change's lateness and read-back, and
the call's rate and one-way delay per direction and phase (:mod:`sim.failover`). Needs root and Mininet.
Exit status 0, or 2 with the reason (bad names, the machine cannot emulate, a change not in force, links that did
not hold during the run: the table is then printed with the health checks' reason below it).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

from sim import calibrate, failover
from sim import linkchanges as lc
from sim.errors import CapabilityError, EngineError
from sim.load import load

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    """Run the demonstration (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m sim.emu.faultdemo", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default=str(ROOT / "scenarios" / "ci-smoke.yaml"),
                        help="a scenario whose catalogue to use")
    parser.add_argument("--line", default="fttc_40_10", help="the practice's access profile")
    parser.add_argument("--backup", default="4g_router", help="a backup of faults.yaml with a profile")
    parser.add_argument("--call", type=float, default=90.0, help="the call's length (s)")
    parser.add_argument("--failover", type=float, default=None, help="failover time (s; default the backup's)")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds left out at each phase's start")
    args = parser.parse_args(argv)
    try:
        text, held = demo(Path(args.scenario), args.line, args.backup, args.call, args.failover, args.settle)
    except (CapabilityError, EngineError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    print(text)  # noqa: T201
    return 0 if held else 2


def demo(scenario: Path, line: str, backup: str, call_s: float, failover_s: float | None,
         settle_s: float) -> tuple[str, bool]:
    """Emulate the fault; the report's text, and whether the links held (else the text says why, exit 2).

    Raises:
        ValueError: An unknown profile or backup (naming it and the known ones).
        EngineError: A change not in force, or the emulation failed.
    """
    catalogue = load(scenario).catalogue
    profiles, backups = catalogue.profiles, catalogue.backups
    for name, known in ((line, profiles), (backup, backups)):
        if name not in known:
            raise ValueError(f"{name!r} is not in the catalogue (it has {', '.join(sorted(known))})")
    chosen = backups[backup]
    primary = _line(profiles[line])
    spare = None if chosen.profile is None else _line(profiles[chosen.profile])  # none: down until the repair
    if spare is not None and chosen.carries == "realtime_first":  # calls first: EF served before the rest
        spare = dataclasses.replace(spare, qos="priority")
    failover_s = (chosen.failover or 0.0) if failover_s is None else failover_s
    changes = lc.failover("practice", primary, spare, call_s / 3, 2 * call_s / 3, failover_s)
    topo = calibrate.one_site(primary.up_bps, primary.down_bps, primary.rtt_s, primary.buffer_up_bytes,
                              buffer_down_bytes=primary.buffer_down_bytes, qos=primary.qos, name="practice")
    video = catalogue.apps["video"].rate
    sessions = calibrate.trace(calibrate.call(0.0, call_s, video.target, video.minimum, video.packet,
                                              site="practice", app="video"))
    with tempfile.TemporaryDirectory(prefix="faultdemo-") as work:
        replayed = calibrate.emulate(topo, sessions, call_s + 1.0, Path(work), drain_s=1.0, link_changes=changes)
    onto = f"{chosen.label} ({profiles[chosen.profile].label}) after {failover_s:g} s" if spare else chosen.label
    lines = [f"{profiles[line].label} -> {onto} -> repaired; one video call of {call_s:g} s "
             f"(target {video.target / 1e6:g} Mbit/s)", ""]
    for r in replayed.changes:
        late = "not applied" if r["lateness_s"] is None else f"applied {r['lateness_s'] * 1e3:.0f} ms late"
        lines.append(f"  {r['at_s']:6.1f} s {r['cause']:<9} {late}; "
                     f"{'in force' if r['ok'] else 'NOT in force: ' + '; '.join(r['problems'])}")
    table = failover.summary(replayed.calls, changes, 0.0, call_s, replayed.records, settle_s=settle_s)
    lines += ["", failover.text(table), ""]
    lines.append("links held: yes" if replayed.held else f"links did NOT hold: {replayed.why}")
    if not all(r["ok"] for r in replayed.changes):
        raise EngineError("\n".join(lines))
    return "\n".join(lines), replayed.held


def _line(profile) -> lc.LineState:
    buffers_bytes = profile.buffers_bytes(profile.down, profile.up)
    return lc.LineState(profile.down, profile.up, profile.rtt, profile.loss, *buffers_bytes, profile.qos)


if __name__ == "__main__":
    sys.exit(main())
