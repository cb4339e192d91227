"""The command line under bad input and bad luck: documented exit codes, located messages, nothing left behind.

Exit codes: 0 ok, 1 targets missed, 2 bad input or environment, 3 internal error (traceback in a log file), 130
interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import errno
import os
import re
import select
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from sim import pipeline, results, text
from sim.cli import app
from sim.errors import TestbedError

runner = CliRunner()


def invoke(*args: str):
    """Run ``testbed ARGS`` in-process; the result's output holds stdout and stderr."""
    return runner.invoke(app, [str(a) for a in args])


def assert_clean_exit(result, code: int) -> None:
    """The command ended with ``code``, by the CLI's own exit (no exception escaped), and printed no traceback."""
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output


def leftovers(root) -> list[str]:
    """Every partial (unfinished) run folder under ``root``."""
    return [str(p) for p in root.rglob("*.partial")] if root.exists() else []


# Exit 2: bad input or environment, with the path and what to do


def test_out_naming_a_file_exits_2_naming_it(tmp_path, scenarios_dir):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    result = invoke("run", scenarios_dir / "ci-smoke.yaml", "--out", blocker, "--no-png")
    assert_clean_exit(result, 2)
    assert f"{blocker} is a file, not a folder" in result.output and "--out" in result.output
    assert blocker.read_text() == "not a folder"


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody may create anything in, root included (immutable), or chmod 555 for an ordinary user."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() == 0:
        if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
            pytest.skip("root, and this filesystem cannot make a folder immutable (chattr +i)")
    else:
        folder.chmod(0o555)
    yield folder
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


def test_out_in_a_read_only_folder_exits_2_naming_it(read_only_dir, scenarios_dir):
    result = invoke("run", scenarios_dir / "ci-smoke.yaml", "--out", read_only_dir, "--no-png")
    assert_clean_exit(result, 2)
    assert f"{read_only_dir}: cannot create a results folder there" in result.output
    assert "--out" in result.output and list(read_only_dir.iterdir()) == []


@pytest.mark.parametrize(("option", "value"), [("--seed", "-1"), ("--seed", str(2**32)), ("--workers", "-1")])
def test_out_of_range_numbers_are_refused_before_any_work(tmp_path, scenarios_dir, option, value):
    result = invoke("run", scenarios_dir / "ci-smoke.yaml", "--out", tmp_path, "--no-png", option, value)
    assert_clean_exit(result, 2)
    assert option in result.output
    assert list(tmp_path.iterdir()) == []


def test_too_many_workers_are_refused_saying_how_many_may_run(tmp_path, scenarios_dir):
    allowed = 4 * (os.cpu_count() or 1)
    result = invoke("run", scenarios_dir / "ci-smoke.yaml", "--out", tmp_path, "--no-png", "--workers", allowed + 1)
    assert_clean_exit(result, 2)
    assert f"--workers {allowed + 1}: give 0" in result.output and f"to {allowed} " in result.output
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(("address", "says"), [
    ("not-a-url", "not a scheduler address"),
    ("tcp://127.0.0.1:99999", "a port from 1 to 65535"),
    ("tcp://127.0.0.1:9", "cannot reach the Dask scheduler"),  # discard port: refused at once
])
def test_bad_scheduler_exits_2_and_leaves_no_partial_folder(tmp_path, scenarios_dir, address, says):
    result = invoke("run", scenarios_dir / "ci-smoke.yaml", "--out", tmp_path, "--no-png", "--scheduler", address)
    assert_clean_exit(result, 2)
    assert says in result.output and address in result.output
    assert leftovers(tmp_path) == [] and list(tmp_path.iterdir()) == []


def scenario_copy(tmp_path, scenarios_dir, **replace: str):
    """ci-smoke with its lines starting ``key:`` replaced by ``key: value``."""
    lines = (scenarios_dir / "ci-smoke.yaml").read_text().splitlines()
    for key, value in replace.items():
        lines = [f"{key}: {value}" if line.startswith(f"{key}:") else line for line in lines]
    path = tmp_path / "scenario.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("name", [".", "..", ".hidden"])
def test_scenario_names_that_are_not_plain_names_are_refused_at_their_line(tmp_path, scenarios_dir, name):
    path = scenario_copy(tmp_path, scenarios_dir, name=f'"{name}"')
    result = invoke("run", path, "--out", tmp_path / "out", "--no-png")
    assert_clean_exit(result, 2)
    assert f"{path}:2 name" in result.output
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["scenario.yaml"]


@pytest.mark.parametrize("name", ["", ".", "..", ".x", "a/b", "../x", "a\\b", "a\0b"])
def test_results_folders_never_take_a_name_that_is_a_path(tmp_path, name):
    with pytest.raises(TestbedError, match="cannot name a results folder"):
        with results.run_folder(tmp_path / "out", name, "des", 1):
            pass
    assert list(tmp_path.iterdir()) == []


def test_a_long_path_is_cut_in_the_message_which_keeps_its_end(tmp_path):
    missing = tmp_path / ("d" * 250) / ("e" * 200) / "s.yaml"  # a path longer than text.WORD_CHARS (300)
    result = invoke("check", missing)
    assert_clean_exit(result, 2)
    said = " ".join(result.output.split())
    word = f"{missing}:"  # the message's first word: its first 200 and last 100 characters are shown
    assert f"{word[:200]}...({len(word) - 300:,} characters)...{word[-100:]} no such file" in said
    assert len(result.output) < 600


def test_control_and_bidi_characters_in_a_path_are_shown_escaped(tmp_path):
    missing = tmp_path / "a\x1b[2Jb\u202ec.yaml"
    result = invoke("check", missing)
    assert_clean_exit(result, 2)
    assert "\x1b" not in result.output and "\u202e" not in result.output
    assert "a\\x1b[2Jb\\u202ec.yaml" in result.output


def test_a_site_name_with_a_bidi_override_is_refused_showing_it_escaped_once(tmp_path, scenarios_dir):
    path = scenario_copy(tmp_path, scenarios_dir)
    yaml_text = path.read_text().replace("name: gp-adsl}", 'name: "a\\u202eb"}', 1)
    path.write_text(yaml_text)
    result = invoke("validate", path)
    assert_clean_exit(result, 2)
    assert "\u202e" not in result.output  # (the character itself)
    assert "'a\\u202eb': no leading or trailing spaces" in result.output  # one backslash, as the README shows it


def test_visible_escapes_hidden_characters_and_keeps_text():
    assert text.visible("ok: é, 東京, tab\tnew\nline") == "ok: é, 東京, tab\tnew\nline"
    assert text.visible("a\u202eb\u2066c\u200bd\x00e\x7ff\x9bg") == "a\\u202eb\\u2066c\\u200bd\\x00e\\x7ff\\x9bg"
    assert text.visible("\U000e0001") == "\\U000e0001"  # a tag character (format, outside the BMP)
    assert text.cut("abcdef", 4) == "abcd... (2 more characters)" and text.cut("abcd", 4) == "abcd"
    # a long word keeps its first two thirds and last third of 6 characters; the message around it stays whole
    assert text.cut("a 0123456789 b", word_chars=6) == "a 0123...(4 characters)...89 b"


def test_report_shows_control_and_bidi_characters_of_a_description_escaped(tmp_path, scenarios_dir):
    path = scenario_copy(tmp_path, scenarios_dir, description='"Practice \\u202eevil\\u202c and \\x1b[31mred"')
    outcome = pipeline.run(path, out=tmp_path / "out", png=False)
    page = (outcome.folder / "report.html").read_text(encoding="utf-8")
    assert "Practice \\u202eevil\\u202c and \\x1b[31mred" in page
    assert "\u202e" not in page and "\x1b" not in page


def test_environment_failure_mid_run_exits_2_naming_the_path(tmp_path, scenarios_dir, monkeypatch):
    def disk_full(folder, verdicts):
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / "verdicts.csv"))

    monkeypatch.setattr("sim.results.write_verdicts", disk_full)
    result = invoke("run", scenarios_dir / "ci-smoke.yaml", "--out", tmp_path, "--no-png")
    assert_clean_exit(result, 2)
    assert "verdicts.csv: No space left on device; free some space" in result.output
    assert leftovers(tmp_path) == []


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare (util-linux) "
                    "to mount a small filesystem in a private mount namespace")
def test_a_really_full_disk_is_refused_before_the_run_or_named_mid_run_leaving_nothing(tmp_path, scenarios_dir):
    # A 1 MB filesystem: the run is refused before it starts (it writes about 8 MB). With the report's share of
    # that check set to nothing, the run starts, its tables fit and the report (about 5 MB) does not.
    out = tmp_path / "out"
    out.mkdir()
    run = f"run {scenarios_dir / 'ci-smoke.yaml'} --out {out} --no-png"
    starts = {"checked": "from sim.entry import main; main()",
              "unchecked": "from sim import results; results.REPORT_BYTES = 0; from sim.entry import main; main()"}
    command = f"mount -t tmpfs -o size=1m none {out}"
    for name, start in starts.items():  # the tmpfs is seen only inside the namespace: list what is left there
        command += f" && {{ {_python()} -c '{start}' {run}; echo {name} exit $?; find {out} -mindepth 1; }}"
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", command], capture_output=True,
                          text=True, timeout=300)
    # each exits 2 and leaves nothing in the folder (find lists nothing)
    assert done.stdout == "checked exit 2\nunchecked exit 2\n", done.stdout + done.stderr
    checked, unchecked = (" ".join(part.split()) for part in done.stderr.split("error: ")[1:])
    assert checked.startswith(f"{out}: 1.0 MB free, and this run writes about 8 MB") and "another --out" in checked
    assert unchecked.startswith(f"{out}/ci-smoke: No space left on device; free some space or choose another --out")
    assert "Traceback" not in done.stderr


# Exit 3: a bug, its traceback in a log file


def test_internal_error_exits_3_with_its_traceback_in_a_named_log_file(tmp_path, scenarios_dir, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom in the engine")

    monkeypatch.setattr("sim.pipeline.simulate", broken)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the log goes
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    result = invoke("run", scenarios_dir / "ci-smoke.yaml", "--out", tmp_path / "out", "--no-png")
    assert_clean_exit(result, 3)
    assert "internal error" in result.output and "ZeroDivisionError: boom in the engine" in result.output
    (log,) = tmp_path.glob("testbed-crash-*.log")
    assert str(log) in result.output.replace("\n", "")
    logged = log.read_text()
    assert "Traceback" in logged and "ZeroDivisionError: boom in the engine" in logged and "in broken" in logged
    assert leftovers(tmp_path / "out") == []


# Exit 130: interrupted, saying what was kept and how to finish


@pytest.fixture
def small_shards(monkeypatch):
    from sim import scale
    monkeypatch.setattr(scale, "SESSIONS_PER_SHARD", 100)  # ci-smoke's ~430 sessions in several shards


def test_interrupted_sharded_run_names_its_partial_folder_and_the_resume_command(tmp_path, scenarios_dir,
                                                                                 monkeypatch, small_shards):
    from sim import scale
    real, calls = scale.run_shard, []

    def interrupted_after_two(*args):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(args[2].index)
        return real(*args)

    monkeypatch.setattr(scale, "run_shard", interrupted_after_two)
    scenario = scenarios_dir / "ci-smoke.yaml"
    result = invoke("run", scenario, "--out", tmp_path, "--no-png", "--workers", "0", "--seed", "5")
    assert_clean_exit(result, 130)
    (partial,) = (tmp_path / "ci-smoke").iterdir()
    said = " ".join(result.output.split())
    assert f"the finished shards are kept in {partial}" in said
    command = f"testbed run {scenario} --resume {partial} --seed 5 --workers 0"
    assert f"finish it with: {command}" in said

    monkeypatch.setattr(scale, "run_shard", real)
    resumed = invoke(*command.split()[1:], "--no-png")
    assert_clean_exit(resumed, 0)
    assert not partial.exists() and len([p for p in (tmp_path / "ci-smoke").iterdir()]) == 1


def test_run_interrupted_before_any_shard_finished_keeps_nothing(tmp_path, scenarios_dir, monkeypatch,
                                                                small_shards):
    from sim import scale
    monkeypatch.setattr(scale, "run_shard", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt))
    result = invoke("run", scenarios_dir / "ci-smoke.yaml", "--out", tmp_path, "--no-png", "--workers", "0")
    assert_clean_exit(result, 130)
    assert "interrupted; nothing was kept" in result.output
    assert list(tmp_path.iterdir()) == []  # not even the scenario's folder, made for this run


def test_sigterm_ends_a_sharded_run_as_ctrl_c_does(tmp_path, scenarios_dir):
    # A real process, a real signal: shards of 100 sessions, each one slowed down so the signal lands mid-run.
    script = ("import sys, time\n"
              "from sim import scale, cli\n"
              "scale.SESSIONS_PER_SHARD = 100\n"
              "real = scale.run_shard\n"
              "def slow(*args):\n"
              "    done = real(*args)\n"
              "    time.sleep(0.5)\n"
              "    return done\n"
              "scale.run_shard = slow\n"
              "sys.argv = ['testbed'] + sys.argv[1:]\n"
              "cli.app(prog_name='testbed')\n")
    scenario = scenarios_dir / "ci-smoke.yaml"
    process = subprocess.Popen([_python(), "-c", script, "run", str(scenario), "--out", str(tmp_path), "--no-png",
                                "--workers", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: any(tmp_path.rglob("*.done.json")), process)
        process.terminate()
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    (partial,) = (tmp_path / "ci-smoke").iterdir()
    said = " ".join(stderr.split())
    assert "Traceback" not in stderr and f"kept in {partial}" in said
    assert f"testbed run {scenario} --resume {partial} --workers 0" in said


def _python() -> str:
    import sys
    return sys.executable


def _wait_for(condition, process, attempts: int = 1200) -> None:
    """Poll ``condition`` every 0.1 s until it holds (a bounded wait, not an assertion on time)."""
    import time
    for _ in range(attempts):
        if condition():
            return
        if process.poll() is not None:
            raise AssertionError(f"the run ended first: {process.communicate()}")
        time.sleep(0.1)
    raise AssertionError("the run never got as far as its first shard")


def test_check_missing_targets_is_the_only_exit_1(scenarios_dir, tmp_path):
    # ci-smoke without its declared known failures: its ADSL2+ practice's misses fail the check
    text = (scenarios_dir / "ci-smoke.yaml").read_text()
    path = tmp_path / "ci-smoke.yaml"
    path.write_text(text[:text.index("known_failures:")])
    result = invoke("check", path)
    assert_clean_exit(result, 1)
    assert re.search(r"\d+ verdicts missed their target", result.output)


# Any command line: a documented exit, never a traceback, nothing hidden reaching the terminal, nothing left behind

SMOKE = str(ROOT / "scenarios" / "ci-smoke.yaml")
NASTY = ["", ".", "..", "-1", "0", "1", "nan", "inf", "-inf", "1e999", "4294967296", "x" * 3000, "a\x1b[2Jb",
         "a\u202eb", "/", "/dev/null", "/proc/nope", "afile", "adir", "bad.yaml", "tb00zz"]
SCENARIOS = [SMOKE, "missing.yaml", "adir", "/dev/null", "bad.yaml", "afile", "a\u202eb.yaml", "x" * 3000]
# Fast failures only: a valid scheduler or a worker count above 0 would start a cluster (seconds each).
SCHEDULERS = ["not-a-url", "tcp://127.0.0.1:9", "tcp://:8786", "tcp://127.0.0.1:0", "", "tcp://[::1", "a\x1b[2Jb"]
WORKERS = ["-1", "0", "99999", "x", "1.5", ""]


def _local(value: str) -> bool:
    """A relative path that stays inside the example's folder (so a run never writes elsewhere)."""
    return not value.startswith("/") and ".." not in value and "\0" not in value


values = st.one_of(st.sampled_from(NASTY), st.text(max_size=12), st.integers(-2**40, 2**40).map(str),
                   st.floats(allow_nan=True).map(str))
out_paths = st.one_of(st.sampled_from(["out", "afile", "/dev/null", "/proc/nope", "adir/sub", ""]),
                      st.text(min_size=1, max_size=12).filter(_local))


def _options(**choices) -> st.SearchStrategy[list[str]]:
    """Some of the given options (each ``--name`` with a value from its strategy), in any order."""
    pairs = [st.tuples(st.just(f"--{name.replace('_', '-')}"), strategy) for name, strategy in choices.items()]
    if not pairs:
        return st.just([])
    return st.lists(st.one_of(*pairs), max_size=3).map(lambda chosen: [word for pair in chosen for word in pair])


def _command(name: str, arguments: st.SearchStrategy[list[str]], options: st.SearchStrategy[list[str]],
             fixed: tuple[str, ...] = ()) -> st.SearchStrategy[list[str]]:
    return st.tuples(arguments, options).map(lambda parts: [name, *parts[0], *fixed, *parts[1]])


scenario_arg = st.sampled_from([SMOKE] * 4 + SCENARIOS).map(lambda s: [s])  # mostly one that runs
command_lines = st.one_of(
    _command("run", scenario_arg, _options(seed=values, out=out_paths, engine=st.sampled_from(["des", "x", ""]),
                                           workers=st.sampled_from(WORKERS), scheduler=st.sampled_from(SCHEDULERS),
                                           resume=st.one_of(values.filter(_local), st.just("/nope/.a.partial"))),
             ("--no-png",)),
    _command("check", scenario_arg, _options(seed=values, junit=out_paths, json=out_paths, out=out_paths)),
    _command("validate", st.lists(st.sampled_from(SCENARIOS), min_size=1, max_size=2), _options()),
    _command("list", st.one_of(st.just([]), values.map(lambda v: [v])), _options()),
    _command("report", values.filter(_local).map(lambda v: [v]), _options(), ("--no-png",)),
    _command("compare", st.lists(values.filter(_local), min_size=2, max_size=2), _options(out=out_paths),
             ("--no-png",)),
    _command("plan", scenario_arg, _options(seeds=st.integers(-3, 1).map(str), target_share=values,
                                            site_class=values), ("--workers", "0", "--no-png", "--seeds", "1")),
    _command("sweep", scenario_arg, _options(set=values, seeds=st.sampled_from(["0", "-1", "x"])),
             ("--workers", "0", "--no-png")),
    _command("clean", values.filter(lambda v: not re.fullmatch(r"tb[0-9a-f]{4}", v)).map(lambda v: [v]),
             _options()),
)


def _example_files() -> None:
    """The files the command lines name, in the example's own folder."""
    from pathlib import Path
    Path("afile").write_text("a file, not a folder\n")
    Path("adir").mkdir()
    Path("bad.yaml").write_text("name: [unclosed\n")


@settings(max_examples=80, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(argv=command_lines)
def test_any_command_line_ends_in_a_documented_exit_without_a_traceback(argv, tmp_path):
    from pathlib import Path
    from tempfile import mkdtemp
    here = os.getcwd()
    os.chdir(mkdtemp(dir=tmp_path))  # relative paths of the command line land in the example's own folder
    try:
        _example_files()
        result = runner.invoke(app, argv)
        partials = [str(p) for p in Path().rglob("*.partial")]
    finally:
        os.chdir(here)
    assert result.exit_code in (0, 1, 2), (argv, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), (argv, result.exception)
    assert "Traceback" not in result.output, argv
    if result.exit_code == 1:
        assert argv[0] == "check" and "missed their target" in result.output, (argv, result.output)
    assert "\x1b" not in result.output and "\u202e" not in result.output, (argv, result.output)
    assert len(result.output) < 20_000 or result.exit_code == 0, argv
    assert partials == [], argv


# Deadlines: a scheduler address where something else answers, or nothing does


@pytest.fixture
def peer():
    """Start a TCP server on a free local port that greets each connection with ``greeting`` (b"": silence)."""
    import socket
    import threading
    servers = []

    def start(greeting: bytes) -> str:
        server = socket.create_server(("127.0.0.1", 0))
        servers.append(server)

        def serve() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                servers.append(conn)
                if greeting:
                    conn.sendall(greeting)

        threading.Thread(target=serve, daemon=True).start()
        return f"tcp://127.0.0.1:{server.getsockname()[1]}"

    yield start
    for server in servers:
        server.close()


@pytest.mark.parametrize(("greeting", "says"), [
    (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "answers, but not as a Dask scheduler"),
    (b"", "did not answer within 5 s"),  # silent, as an unroutable address or a firewall that drops
    # a plausible frame length, then nonsense: never handed to Dask's own client
    ((64).to_bytes(8, "little") + b"\xff" * 64, "answers, but not as a Dask scheduler"),
])
def test_a_peer_that_is_not_a_dask_scheduler_is_refused_with_exit_2(peer, tmp_path, scenarios_dir, greeting, says):
    address = peer(greeting)
    result = invoke("run", scenarios_dir / "ci-smoke.yaml", "--out", tmp_path, "--no-png", "--scheduler", address)
    assert_clean_exit(result, 2)
    said = " ".join(result.output.split())
    assert says in said and address in said
    assert list(tmp_path.iterdir()) == []


def test_a_real_scheduler_passes_the_greeting_check(tmp_path, scenarios_dir):
    from dask.distributed import LocalCluster
    with LocalCluster(n_workers=1, processes=False, protocol="tcp", dashboard_address="127.0.0.1:0") as local:
        result = invoke("run", scenarios_dir / "ci-smoke.yaml", "--out", tmp_path, "--no-png", "--scheduler",
                        local.scheduler_address)
    assert_clean_exit(result, 0)
    (folder,) = (tmp_path / "ci-smoke").iterdir()
    assert results.is_complete(folder)


def test_an_emulation_stopped_by_sigterm_exits_130_too(tmp_path, scenarios_dir, monkeypatch):
    # The emulation traps SIGTERM as SystemExit(143) to tear its network down; the command still says 130.
    def terminated(*args, **kwargs):
        raise SystemExit(143)

    monkeypatch.setattr("sim.pipeline._emulated", terminated)
    result = invoke("run", scenarios_dir / "ci-smoke.yaml", "--out", tmp_path, "--engine", "emu", "--no-png")
    assert_clean_exit(result, 130)
    assert "interrupted; nothing was kept" in result.output


def test_a_reader_that_stops_early_does_not_change_the_exit_code(tmp_path):
    # `testbed list | head -1`: the pipe closes before the output is written; the command still succeeds, quietly.
    import sys
    script = "import sys\nfrom sim.cli import app\napp(prog_name='testbed')\n"
    process = subprocess.Popen([sys.executable, "-c", script, "list", "profiles"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    process.stdout.close()  # before Python has even started: every write meets a closed pipe
    stderr = process.stderr.read().decode()
    assert process.wait() == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr


def test_a_report_file_that_names_a_folder_exits_2_naming_it_and_leaves_no_temporary_file(tmp_path, scenarios_dir):
    folder = tmp_path / "out.xml"
    folder.mkdir()
    result = invoke("check", scenarios_dir / "ci-smoke.yaml", "--junit", folder)
    assert_clean_exit(result, 2)
    assert f"{folder}: Is a directory; that is a folder: give a file name" in " ".join(result.output.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.xml"]


@pytest.mark.parametrize("option", ["--junit", "--json"])
def test_a_report_file_under_a_file_is_refused_before_the_run_naming_its_option(tmp_path, scenarios_dir, monkeypatch,
                                                                                option):
    blocker = tmp_path / "afile"
    blocker.write_text("")
    target = blocker / "sub" / "x.xml"

    def not_run(*args, **kwargs):
        raise AssertionError("the run started")

    monkeypatch.setattr("sim.pipeline.simulate", not_run)
    result = invoke("check", scenarios_dir / "ci-smoke.yaml", option, target)
    assert_clean_exit(result, 2)
    assert " ".join(result.output.split()) == (f"error: {option} {target}: {blocker} is a file, not a folder; "
                                               "choose another path")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.parametrize(("argv", "error"), [
    (["check", SMOKE, "--sed", "1"], "Error: No such option: --sed (Possible options: --seed)"),
    (["run", SMOKE, "--seed", "-1"], "Error: Invalid value for '--seed': Input should be greater than or equal to 0"),
])
def test_a_usage_error_off_a_terminal_is_plain_text(tmp_path, argv, error):
    # stderr a pipe (a CI log): Click's own lines, not Typer's Rich box; exit 2 and nothing written.
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "GITHUB_ACTIONS",
                                                              "PY_COLORS", "TTY_INTERACTIVE")}
    done = subprocess.run([_python(), "-c", "from sim.entry import main; main()", *argv], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert "Traceback" not in done.stderr and "╭" not in done.stderr and "│" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1] == error
    assert done.stderr.splitlines()[1] == f"Try 'testbed {argv[0]} --help' for help."
    assert list(tmp_path.iterdir()) == []


def test_help_off_a_terminal_shows_each_commands_summary_whole(tmp_path):
    # Click's plain help at its default 80 columns cut each summary short ("and print the..."): a CI log's reader
    # needs them whole. The doctor's summary (109 characters) ends "exit 0 if it can, else 2."
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "GITHUB_ACTIONS",
                                                              "PY_COLORS", "TTY_INTERACTIVE", "COLUMNS")}
    done = subprocess.run([_python(), "-c", "from sim.entry import main; main()", "--help"], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 0 and "╭" not in done.stdout, done.stdout
    commands = done.stdout.split("Commands:", 1)[1]
    assert "..." not in commands and "exit 0 if it can, else 2." in commands, commands


def _die(code: int) -> None:
    os._exit(code)  # the worker process ends under its task, as the kernel's OOM killer would end it


def test_a_task_that_kills_its_worker_is_a_located_error_not_a_bug():
    import dask
    from dask.distributed import Client, LocalCluster

    from sim import scale
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0") as local, \
            Client(local) as client:
        with pytest.raises(TestbedError, match="worker process died each time it ran it .*fewer --workers"):
            scale.map_ordered(client, _die, [(9,)])


def _hang(seconds: float) -> None:
    time.sleep(seconds)  # a worker stuck in a call that does not return (a hung filesystem, a deadlock)


def test_a_hung_worker_stops_the_run_at_its_deadline_naming_what_is_left():
    from dask.distributed import Client, LocalCluster

    from sim import scale
    # Two threads: both tasks start at once, so the short one finishes whichever the scheduler hands out first.
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address="127.0.0.1:0") as local, \
            Client(local) as client:
        client.submit(abs, -1).result()  # the worker is up: the deadline measures the tasks, not its start
        started = time.monotonic()
        with pytest.raises(TestbedError, match=r"1 of 2 Dask tasks still running and none finished in 10 s"):
            scale.map_ordered(client, _hang, [(0.0,), (600.0,)], stall_s=10.0)
        assert time.monotonic() - started < 300, "the deadline did not stop the wait"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_while_the_command_loads_exits_130_without_a_traceback(tmp_path, signum):
    # The command's modules take about a second to load (numpy, pandas, plotly, Typer): a signal that lands while
    # they load must end the command as an interrupt (130, one line), never with a traceback and exit 1. The
    # signal is sent once numpy's compiled core is mapped into the process: the command is then mid-import.
    process = subprocess.Popen([_python(), "-c", "from sim.entry import main; main()", "list", "apps"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        maps = Path(f"/proc/{process.pid}/maps")
        for _ in range(12_000):  # a bounded wait (60 s), polled finely so the signal lands early in the import
            if "numpy" in maps.read_text() or process.poll() is not None:
                break
            time.sleep(0.005)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130 and "Traceback" not in stderr, (process.returncode, stderr)
    assert "interrupted while starting; nothing was written" in stderr
    assert list(tmp_path.iterdir()) == []


def test_a_ctrl_c_to_the_whole_process_group_mid_plan_ends_it_without_worker_tracebacks(tmp_path, scenarios_dir):
    # A terminal's Ctrl-C reaches every process of the foreground group: the command and its Dask workers. Once the
    # workers are up (the plan's first progress line), SIGINT to the whole group must end the plan as an interrupt
    # (130, one line), with no traceback from any worker, nothing kept, and no process of the group left.
    process = subprocess.Popen([_python(), "-c", "from sim.entry import main; main()", "plan",
                                str(scenarios_dir / "ci-smoke.yaml"), "--seeds", "2", "--workers", "2", "--out",
                                str(tmp_path / "out"), "--no-png"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=tmp_path, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    group = process.pid  # (a session of its own: its group is the command's pid)
    try:
        ready, _, _ = select.select([process.stderr], [], [], 120)  # (a bounded wait for the first line)
        assert ready, "no progress line within 120 s"
        first = process.stderr.readline()  # "planning ci-smoke.yaml: 0% (0 of 8), ...": the workers are up
        assert first.startswith("planning ci-smoke.yaml:"), first
        os.killpg(group, signal.SIGINT)
        _, rest = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, (process.returncode, rest)
    assert "Traceback" not in rest and "interrupted; nothing was kept" in rest, rest
    assert not (tmp_path / "out" / "ci-smoke").exists() or list((tmp_path / "out" / "ci-smoke").iterdir()) == []
    _wait_for_group_to_end(group, "plan")


def test_ctrl_c_pressed_again_while_a_run_closes_its_workers_prints_no_traceback(tmp_path, scenarios_dir):
    # A run stopped by Ctrl-C closes its local cluster, waiting for the shards its workers are running (seconds).
    # Ctrl-C is often pressed again meanwhile: that must not cut the closing short (a cluster left half-closed, which
    # Dask's own exit handler then fails to close, printing a KeyboardInterrupt traceback). Each shard here takes 3 s
    # more, so the second and third Ctrl-C land while the workers are still being closed.
    script = ("import sys, time\n"
              "from sim import scale, entry\n"
              "scale.SESSIONS_PER_SHARD = 100\n"
              "real = scale.run_shard\n"
              "def slow(*args):\n"
              "    done = real(*args)\n"
              "    time.sleep(3.0)\n"
              "    return done\n"
              "scale.run_shard = slow\n"
              "sys.argv = ['testbed'] + sys.argv[1:]\n"
              "entry.main()\n")
    out = tmp_path / "out"
    process = subprocess.Popen([_python(), "-c", script, "run", str(scenarios_dir / "ci-smoke.yaml"), "--out",
                                str(out), "--no-png", "--workers", "2"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=tmp_path, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    group = process.pid
    try:
        _wait_for(lambda: any(out.rglob("*.done.json")), process)
        for _ in range(3):
            os.killpg(group, signal.SIGINT)
            time.sleep(0.5)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    _assert_interrupted_quietly(process, stdout, stderr)
    assert "the finished shards are kept in" in " ".join(stderr.split()), stderr
    _wait_for_group_to_end(group, "run")


def _assert_interrupted_quietly(process, stdout: str, stderr: str) -> None:
    """Fail unless the command ended as an interrupt does (130) without a traceback from it or its workers."""
    said = stdout + stderr
    assert process.returncode == 130, (process.returncode, said)
    assert "Traceback" not in said and "KeyboardInterrupt" not in said, said


def _wait_for_group_to_end(group: int, what: str) -> None:
    """Fail unless every process of ``group`` ends within 30 s (the workers end with the command's cluster)."""
    for _ in range(300):
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail(f"a process of the {what}'s group is still running after it exited")


def _sigint_bits(pid: int) -> dict[str, bool]:
    """SIGINT's bit in the SigBlk, SigIgn and SigCgt masks of process ``pid`` (/proc/PID/status: its main thread)."""
    bits = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        field, _, value = line.partition(":")
        if field in ("SigBlk", "SigIgn", "SigCgt"):
            bits[field] = bool(int(value, 16) >> (signal.SIGINT - 1) & 1)
    return bits


# The moments of a worker process's start-up (before the cluster is up) at which the Ctrl-C lands, each a condition
# on one worker process: it exists (Python still starting); Python's KeyboardInterrupt handler is installed; it is
# importing Dask (psutil's compiled module mapped). The last two are before the worker could have been told to
# ignore SIGINT (no SigIgn): the window in which a worker died printing a KeyboardInterrupt traceback.
WORKER_STARTUP_MOMENTS = {
    "born": lambda pid: True,
    "handler installed": lambda pid: _sigint_bits(pid)["SigCgt"],
    "importing dask": lambda pid: "psutil" in Path(f"/proc/{pid}/maps").read_text() and not _sigint_bits(pid)["SigIgn"],
}


def _worker_pids(pid: int) -> list[int]:
    """The Dask worker processes among the children of process ``pid`` (multiprocessing's spawned children)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:  # (a thread that just ended)
            continue
        for child in children:
            try:
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(int(child))
            except OSError:  # (a child that just ended)
                continue
    return found


@pytest.mark.parametrize("moment", list(WORKER_STARTUP_MOMENTS))
def test_a_ctrl_c_to_the_whole_process_group_while_workers_start_ends_the_run_without_tracebacks(tmp_path,
                                                                                                 scenarios_dir, moment):
    # A Ctrl-C in a run's first second or two reaches worker processes that are still starting (Python's own
    # KeyboardInterrupt handler in place, Dask not yet set up). It must end the run as any interrupt does: 130, one
    # line, no traceback from the command or from a worker, nothing kept, and no process of the group left.
    out = tmp_path / "out"
    process = subprocess.Popen([_python(), "-c", "from sim.entry import main; main()", "run",
                                str(scenarios_dir / "ci-smoke.yaml"), "--workers", "2", "--out", str(out),
                                "--no-png"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                               start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    group, reached = process.pid, WORKER_STARTUP_MOMENTS[moment]
    try:
        for _ in range(60_000):  # a bounded wait (120 s), polled finely so the signal lands at that moment
            try:
                if any(reached(pid) for pid in _worker_pids(process.pid)) or process.poll() is not None:
                    break
            except (OSError, KeyError):  # (a process that ended while it was read)
                pass
            time.sleep(0.002)
        assert process.poll() is None, f"the run ended before the moment {moment!r}: {process.communicate()}"
        os.killpg(group, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    _assert_interrupted_quietly(process, stdout, stderr)
    assert "interrupted; nothing was kept" in stderr, stderr
    assert not (out / "ci-smoke").exists() or list((out / "ci-smoke").iterdir()) == []
    _wait_for_group_to_end(group, "run")


def test_an_interrupt_while_the_local_cluster_starts_is_held_until_it_is_up_unless_it_waited_too_long(monkeypatch):
    # Dask's start, interrupted, leaves a cluster its own atexit fails to close (a traceback): Ctrl-C, pressed once
    # or twice, is held until the cluster is up and then raised; one after a long hold (a start that hangs) at once.
    # (signal.raise_signal sends it to this thread, whose handler then runs at once: one sent to the process with
    # os.kill may land on another thread of the test's process, which a busy machine can schedule too late.)
    from sim import cluster
    with _sigint_as_a_command_has_it():
        _check_interrupts_held(cluster, monkeypatch)


@contextmanager
def _sigint_as_a_command_has_it():
    """SIGINT as a command's main thread has it (Python's handler, not blocked) for the block, then as it was.

    The held-interrupt test checks :func:`sim.cluster._interrupts_held` from that state. In about 1 of 8 runs of
    this file under xdist, SIGINT was not so when the test began (its first interrupt was not held): an earlier test
    in the same worker process had left it otherwise. Which one is not yet found.
    """
    handler = signal.signal(signal.SIGINT, lambda signum, frame: None)  # (drops one pending while blocked)
    blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _check_interrupts_held(cluster, monkeypatch) -> None:
    before = signal.getsignal(signal.SIGINT)
    with cluster._interrupts_held() as release:
        for _ in range(2):
            signal.raise_signal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            release()
    assert signal.getsignal(signal.SIGINT) is before
    with cluster._interrupts_held() as release:  # a run already stopping drops what was held while it closed
        signal.raise_signal(signal.SIGINT)
        release(deliver=False)
    assert signal.getsignal(signal.SIGINT) is before
    monkeypatch.setattr(cluster, "INTERRUPT_HOLD_MAX_S", 0.0)
    with cluster._interrupts_held(), pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
        time.sleep(0.01)  # (held more than INTERRUPT_HOLD_MAX_S, now 0)
        signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
