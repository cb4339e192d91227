"""Apply a run's link changes at their moment, read each back, and say when it took and whether it is in force.

A thread started with the traffic agents (:func:`sim.emu.playback.replay`) sleeps until each step's moment on the
run's clock (the agents' wall-clock epoch is the window's start, :mod:`sim.emu.clock`: a step at ``at_s`` is due at
``epoch + at_s``), runs its commands (:mod:`sim.emu.linksteps`) in the delay node and the switch, sets the shim's
delay, then reads everything back: the HTB class rate and queue length (``tc``), the loss and outage rules
(``iptables -S``), the shim's delay from its state file (which the shim rewrites with the control's sequence number
once it has applied it). Each step gives one row (:meth:`Changer.rows`): planned, started and applied time (Unix
s), lateness (applied - planned), what was wanted and what was read back, and ``ok``. A step that failed or did not
read back as wanted is never silent: :func:`health_rows` turns it into a failed health check of its link, which
refuses the site's results (:mod:`sim.emu.health`).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

from sim.emu import batch, linksteps, probe
from sim.emu.health import Interval, row
from sim.errors import EngineError

log = logging.getLogger(__name__)

CHANGE_LATE_S = 0.25   # a step applied later than this is a failed check: see health_rows for the reason
SHIM_ACK_S = 2.0       # how long the shim gets to confirm a new delay in its state file (s)


class Changer:
    """Applies ``steps`` to the running network ``emu`` on a thread; ``watch`` learns when each took.

    Args:
        emu: The running :class:`sim.emu.net.EmuNet`.
        steps: From :func:`sim.emu.linksteps.plan_steps`.
        watch: The run's :class:`sim.emu.utilisation.Watch` (its shaper and loss checks follow the changes).
    """

    def __init__(self, emu, steps: list[linksteps.Step], watch=None) -> None:
        self.emu, self.steps, self.watch = emu, steps, watch
        self.links = {link.name: link for link in emu.plan.links}
        self.results: list[dict] = []
        self.epoch_s = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error = ""
        self._seq = itertools.count(1)  # control sequence numbers (next() is atomic: steps apply on threads)

    def start(self, epoch_s: float) -> None:
        """Apply the steps from ``epoch_s`` (Unix s: the window's start on the run's clock)."""
        self.epoch_s = epoch_s
        self._thread = threading.Thread(target=self._run, name="link-changes", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop and wait for the thread; every step without a row yet gets one saying it was not applied."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30.0)
        why = self._error or "the run ended before its time"
        self.results += [self._row(step, self.epoch_s + step.at_s, None, None, {}, [f"not applied: {why}"])
                         for step in self.steps[len(self.results):]]

    def _run(self) -> None:
        """Apply the steps (:meth:`_steps`); an unexpected error ends the thread, and is recorded, never lost."""
        try:
            self._steps()
        except Exception as exc:  # noqa: BLE001 (any failure here must reach the run's verdict, not vanish)
            self._error = f"the link-change thread failed: {exc!r}"
            log.error("%s", self._error)

    def _steps(self) -> None:
        """Apply the steps due at each moment (all at once, then read each back), in time order."""
        k = 0
        while k < len(self.steps):
            group = [s for s in self.steps[k:] if s.at_s == self.steps[k].at_s]
            k += len(group)
            planned_s = self.epoch_s + group[0].at_s
            if self._stop.wait(max(0.0, planned_s - time.time())):
                return  # stop() records the rest as not applied
            with ThreadPoolExecutor(max_workers=len(group)) as pool:  # sites' lines change at once, not in turn
                applied = list(pool.map(self._apply, group))
            self.results += [self._finish(step, planned_s, *done) for step, done in zip(group, applied)]

    def apply(self, step: linksteps.Step, planned_s: float) -> dict:
        """Apply one step now and read it back; its row (see the module docstring)."""
        return self._finish(step, planned_s, *self._apply(step))

    def _apply(self, step: linksteps.Step) -> tuple[float, float, list[str]]:
        """Run a step's commands; (started, applied: Unix s, problems); tell the watch what is now in force."""
        link = self.links[step.link]
        started_s = time.time()
        cmds = linksteps.step_cmds(step, link, self.emu.devices(link), self.emu.plan.method,
                                   self.emu.plan.settings.loss_min_ip_bytes)
        try:
            for node, script in cmds.first:
                self._script(node, script, step)
            if cmds.shim_delays:
                self._set_shim(link.delay_node, cmds.shim_delays)
            for node, script in cmds.last:
                self._script(node, script, step)
            failed: list[str] = []
        except EngineError as exc:
            failed = [f"not applied: {exc}"]
        applied_s = time.time()
        if self.watch is not None:
            for d in linksteps.DIRECTIONS:
                self.watch.note_change(step.link, d, started_s, applied_s, step.after[d])
        return started_s, applied_s, failed

    def _finish(self, step: linksteps.Step, planned_s: float, started_s: float, applied_s: float,
                failed: list[str]) -> dict:
        read = self.read_back(step)
        out = self._row(step, planned_s, started_s, applied_s, read, failed + linksteps.problems(step.after, read))
        log.info("link change %s at %.1f s (%s): applied %.0f ms late%s", step.site, step.at_s, step.cause,
                 out["lateness_s"] * 1e3, "" if out["ok"] else f"; NOT IN FORCE: {'; '.join(out['problems'])}")
        return out

    def _script(self, node: str, cmds: list[list[str]], step: linksteps.Step) -> None:
        """Run a step's commands in ``node``, one process per tool (:mod:`sim.emu.batch`).

        A change then takes a few processes, not one per command, on a machine that may be busy; the iptables
        rules of one table change in one atomic commit.
        """
        path = self.emu.state.work_dir / f"change-{step.site}-{step.at_s:g}-{node}.sh"
        path.write_text(batch.script(batch.batch(cmds)), encoding="utf-8")
        out, err, code = self.emu.node(node).pexec(["sh", str(path)])
        if code != 0:
            raise EngineError(f"changing {node} failed: {(out + err).strip()[-800:]}")

    def _set_shim(self, delay_node: str, delays: dict[int, float]) -> None:
        """Write the shim's control file, signal it, and wait until its state file shows the new delays."""
        seq = next(self._seq)
        control = self.emu.shim_control_path(delay_node)
        tmp = control.with_suffix(".tmp")
        tmp.write_text(json.dumps({"seq": seq, "queues": {str(k): v for k, v in delays.items()}}))
        os.replace(tmp, control)
        state = _shim_state(self.emu, delay_node)
        try:
            os.kill(int(state["pid"]), signal.SIGUSR1)
        except (OSError, KeyError, ValueError) as exc:
            raise EngineError(f"cannot signal the delay shim of {delay_node}: {exc}") from None
        deadline_s = time.monotonic() + SHIM_ACK_S
        while time.monotonic() < deadline_s:
            state = _shim_state(self.emu, delay_node)
            if state.get("control_seq") == seq:
                return
            if state.get("control_error"):
                raise EngineError(f"the delay shim of {delay_node} refused its control: {state['control_error']}")
            time.sleep(0.002)
        raise EngineError(f"the delay shim of {delay_node} did not confirm new delays within {SHIM_ACK_S:g} s")

    def read_back(self, step: linksteps.Step) -> dict[str, dict]:
        """Per direction: the shaper's rate and queue, the loss and outage rules, and the delay, as in force now."""
        try:
            return self._read(self.links[step.link])
        except EngineError as exc:
            return {d: {"error": str(exc)} for d in linksteps.DIRECTIONS}

    def _read(self, link) -> dict[str, dict]:
        devices = self.emu.devices(link)
        rules = _out(self.emu.node(link.delay_node), ["iptables", "-w", "-t", "mangle", "-S", "FORWARD"])
        shim = _shim_state(self.emu, link.delay_node) if self.emu.plan.method == "nfqueue" else {}
        losses, blocked = probe.parse_iptables_rules(rules), linksteps.parse_blocked_ports(rules)
        delays = {q["num"]: q["delay_s"] for q in shim.get("queues", [])}
        out = {}
        for d, queue in (("up", 1), ("down", 2)):
            node, intf = devices[d]
            port = devices[f"delay_in_{d}"][1]
            tc = _out(self.emu.node(node), ["sh", "-c", f"tc class show dev {intf}; echo @@; tc qdisc show dev {intf}"])
            classes, _, qdiscs = tc.partition("@@")
            delay_s = delays.get(queue) if self.emu.plan.method == "nfqueue" else self._netem_delay(devices, d)
            out[d] = {"rate_bps": probe.parse_htb_rate(classes), "queue_pkts": probe.parse_pfifo_limit(qdiscs),
                      "loss": losses.get((port, "loss"), 0.0), "blocked": port in blocked, "delay_s": delay_s}
        return out

    def _netem_delay(self, devices: dict, direction: str) -> float:
        node, out_port = devices["delay_in_down" if direction == "up" else "delay_in_up"]
        return probe.parse_netem_delay(_out(self.emu.node(node), ["tc", "qdisc", "show", "dev", out_port]))

    def _row(self, step: linksteps.Step, planned_s: float, started_s: float | None, applied_s: float | None,
             read: dict, problems: list[str]) -> dict:
        return {"site": step.site, "link": step.link, "at_s": step.at_s, "cause": step.cause,
                "planned_wall_s": planned_s, "started_wall_s": started_s, "applied_wall_s": applied_s,
                "lateness_s": None if applied_s is None else applied_s - planned_s,
                "took_s": None if applied_s is None else applied_s - started_s,
                "wanted": {d: asdict(w) for d, w in step.after.items()}, "read_back": read,
                "ok": not problems, "problems": problems}


def _shim_state(emu, delay_node: str) -> dict:
    try:
        return json.loads(emu.shim_state_path(delay_node).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EngineError(f"the delay shim's state of {delay_node} is unreadable ({exc})") from None


def _out(node, argv: list[str]) -> str:
    out, err, code = node.pexec(argv)
    if code != 0:
        raise EngineError(f"{' '.join(argv)} in {node.name} failed: {(out + err).strip()}")
    return out


def health_rows(results: list[dict], window_start_s: float, bin_s: float, late_s: float = CHANGE_LATE_S) -> list[dict]:
    """One health row per step (check ``link_change``): failed when not in force or applied over ``late_s`` late.

    Why 0.25 s: the calls' measures come in one-second bins, and phases are cut at the planned times; a step a
    quarter of a second late moves at most a quarter of one bin to the wrong phase. A step that did not take at all
    fails whatever its time. The row's interval is the utilisation bin the step fell in.
    """
    out = []
    for r in results:
        lateness_s = r["lateness_s"]
        ok = r["ok"] and lateness_s is not None and lateness_s <= late_s
        k = int(r["at_s"] // bin_s)
        late = "not applied" if lateness_s is None else f"applied {lateness_s * 1e3:.0f} ms late"
        detail = f"{r['cause']} at {r['at_s']:g} s {late}" + (f": {'; '.join(r['problems'])}" if r["problems"] else "")
        out.append(row(Interval(k, window_start_s + k * bin_s, bin_s), r["link"], "-", "link_change",
                       lateness_s, late_s, ok, detail))
    return out


def describe(results: list[dict]) -> dict:
    """The link changes of a run for meta.json: every step's row, and their lateness (s) and how many held."""
    late = [r["lateness_s"] for r in results if r["lateness_s"] is not None]
    return {"steps": results, "applied": len(late), "in_force": sum(1 for r in results if r["ok"]),
            "lateness_mean_s": sum(late) / len(late) if late else None, "lateness_max_s": max(late, default=None),
            "late_limit_s": CHANGE_LATE_S}
