"""Hostile conditions for everything clsx writes: races, disk full, signals, umask, planted symlinks,
odd file names and files that are not files. Real processes (``python -m clsx``), real file systems.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import resource
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from runtimes.tiny_models import tiny_onnx_once

import clsx
from clsx.core.errors import OutputExistsError
from clsx.core.files import OutputError, OutputSet, write_file
from clsx.zoo import samples

REPO = Path(clsx.__file__).resolve().parent.parent


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    env.pop("CLSX_DEBUG", None)
    env.update(extra)
    return env


def clsx_run(*args: str, cwd: Path | None = None, timeout: float = 240, preexec=None, stdout=subprocess.PIPE, **env: str):
    """Run the real CLI; stdout is decoded as UTF-8 *without* newline translation (a CR is data)."""
    res = subprocess.run([sys.executable, "-m", "clsx", *args], cwd=cwd, env=_env(**env), stdout=stdout,
                         stderr=subprocess.PIPE, timeout=timeout, preexec_fn=preexec)
    res.stdout = res.stdout.decode("utf-8") if res.stdout is not None else None
    res.stderr = res.stderr.decode("utf-8", "replace")
    return res


def one_error_line(stderr: str) -> str:
    """The stderr of a failed command: exactly one ``clsx: error:`` line and no traceback."""
    errors = [ln for ln in stderr.splitlines() if ln.startswith("clsx: error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_onnx_once(tmp_path_factory)


@pytest.fixture(scope="module")
def images(tmp_path_factory, photos) -> Path:
    root = tmp_path_factory.mktemp("hostile-out") / "images"
    samples.write_photo_variants(root, photos[:8], per_photo=4, size=40)
    return root


# ---------------------------------------------------------------------------------------------
# Races: the exists check runs at the start, publishing is exclusive at the end


def _stage_and_publish(path: str, text: str, barrier, results) -> None:
    try:
        with OutputSet([Path(path), Path(path + ".json")]) as out:
            out.write_text(Path(path), text)
            out.write_text(Path(path + ".json"), text)
            barrier.wait(timeout=30)  # both have passed every early check and staged their files
        results.put(("ok", text))
    except OutputExistsError as exc:
        results.put(("lost", str(exc)))


def test_two_processes_publishing_one_output_set_one_wins(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    target = str(tmp_path / "model.onnx")
    procs = [ctx.Process(target=_stage_and_publish, args=(target, name, barrier, results)) for name in ("first", "second")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    outcomes = sorted(results.get(timeout=5) for _ in procs)
    assert [o[0] for o in outcomes] == ["lost", "ok"], outcomes
    winner = outcomes[1][1]
    # the set is whole and from one writer: the loser took back nothing of the winner's and left nothing
    assert Path(target).read_text() == winner and Path(target + ".json").read_text() == winner
    assert leftovers(tmp_path, {"model.onnx", "model.onnx.json"}) == []
    assert "already exists" in outcomes[0][1]


def test_two_infer_runs_to_one_csv_without_force(tiny, images, tmp_path):
    out = tmp_path / "same.csv"
    cmd = [sys.executable, "-m", "clsx", "infer", str(tiny), str(images), "-o", str(out)]
    procs = [subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    done = [p.communicate(timeout=240) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], done
    loser = done[[p.returncode for p in procs].index(1)][1]
    assert "already exists" in one_error_line(loser)
    rows = list(csv.reader(out.open(newline="")))
    assert len(rows) == 1 + 32  # header + every image, from one run
    assert leftovers(tmp_path, {"same.csv"}) == []


def test_a_planted_symlink_at_the_output_is_never_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    link = tmp_path / "out.csv"
    link.symlink_to(victim)
    with pytest.raises(OutputExistsError):
        write_file(link, "rows\n")
    assert victim.read_text() == "precious\n"
    write_file(link, "rows\n", force=True)  # --force replaces the link itself, not what it points to
    assert victim.read_text() == "precious\n" and not link.is_symlink() and link.read_text() == "rows\n"


def test_temporary_files_have_unpredictable_names_and_are_created_exclusively(tmp_path):
    target = tmp_path / "out.csv"
    planted = [tmp_path / f".out.csv.{os.getpid()}.tmp", tmp_path / ".out.csv.tmp"]  # the old, predictable names
    victim = tmp_path / "victim"
    victim.write_text("precious")
    for p in planted:
        p.symlink_to(victim)
    with OutputSet([target]) as out:
        tmp = out.temp(target)
        assert tmp not in planted and tmp.parent == tmp_path and not tmp.is_symlink()
        assert stat.S_IMODE(tmp.stat().st_mode) == 0o600  # private until published
        out.write_text(target, "x")
    assert victim.read_text() == "precious" and target.read_text() == "x"


# ---------------------------------------------------------------------------------------------
# Disk full and write errors: one line, nothing half-written, no temporaries


def _fsize_limit(nbytes: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return apply


def test_infer_output_past_a_file_size_limit_is_one_line_and_nothing(tiny, images, tmp_path):
    res = clsx_run("infer", str(tiny), str(images), "-o", str(tmp_path / "out.csv"), preexec=_fsize_limit(2048))
    assert res.returncode == 1, res.stderr
    line = one_error_line(res.stderr)
    assert "out.csv" in line and "too large" in line.lower()
    assert leftovers(tmp_path, set()) == []


def test_infer_to_a_full_stdout_is_one_line(tiny, images):
    with open("/dev/full", "w") as full:
        res = clsx_run("infer", str(tiny), str(images), stdout=full)
    assert res.returncode == 1
    assert "cannot write to stdout: No space left on device" in one_error_line(res.stderr)


def test_infer_into_a_closed_pipe_stops_quietly(tiny, images):
    proc = subprocess.Popen([sys.executable, "-m", "clsx", "infer", str(tiny), str(images), "-b", "1"], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("path,")
    proc.stdout.close()  # `| head -1`
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 141 and "Traceback" not in err and "clsx: error" not in err, err


@pytest.fixture
def small_fs(tmp_path):
    """A real, tiny file system (tmpfs, as root) with ``free`` bytes left; RLIMIT_FSIZE elsewhere."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root and tmpfs for a real full file system (RLIMIT_FSIZE covers the rest)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_calib_on_a_full_disk_leaves_neither_graph_nor_sidecar(tiny, images, small_fs):
    graph = small_fs / "tiny.onnx"
    graph.write_bytes(tiny.read_bytes())
    fs = os.statvfs(small_fs)
    free = fs.f_bavail * fs.f_frsize
    (small_fs / "filler").write_bytes(b"\0" * (free - 3 * 4096))  # a few KB left: less than the INT8 graph needs
    res = clsx_run("calib", str(graph), str(images), "--num", "8", "--eval-num", "8")
    assert res.returncode == 1, res.stderr
    assert "No space left on device" in one_error_line(res.stderr)
    assert leftovers(small_fs, {"tiny.onnx", "filler"}) == []


# ---------------------------------------------------------------------------------------------
# Signals


def _default_hangup() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)  # as in a terminal, even if the tests run under nohup


def _start(args: list[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "clsx", *args], env=_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_hangup)


def _wait_for(proc: subprocess.Popen, what: str, timeout: float = 180) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen += line
        if what in line:
            return seen
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"never saw {what!r}: {seen}")


def test_sigterm_during_calibration_removes_every_temporary(tiny, many, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    # 336 photos of 640 px are decoded while it calibrates: about a second after "calibrating" (at 64 px it
    # was 0.2 s, short enough for a loaded machine to miss)
    proc = _start(["calib", str(tiny), str(many), "-o", str(out / "q.onnx"), "--num", "384", "--batch", "4"], TMPDIR=str(tmp))
    _wait_for(proc, "calibrating")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted (SIGTERM)" in err and "Traceback" not in err
    # (.ses: a session id onnxruntime.quantization writes into TMPDIR when imported, not a clsx temporary)
    assert list(out.iterdir()) == [] and leftovers(tmp, {".ses"}) == []


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> Path:
    """408 photos of 640 px: decoding them one at a time takes about a second (the tiny model itself
    runs 400 small images in 0.3 s), long enough for a signal to find the run still writing."""
    root = tmp_path_factory.mktemp("hostile-many") / "many"
    samples.write_photo_variants(root, samples.photo_paths(), per_photo=24, size=640)
    return root


def _signal_infer(tiny: Path, many: Path, out: Path, ready, signum: int = signal.SIGTERM) -> subprocess.Popen:
    """Start ``clsx infer`` into ``out``, wait until ``ready(temporary)`` holds, send ``signum``."""
    proc = _start(["infer", str(tiny), str(many), "-o", str(out), "-b", "1", "--workers", "1"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        temporaries = [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
        if temporaries and ready(temporaries[0]):
            break
        assert proc.poll() is None, "clsx infer finished before the signal could be sent: the run is too short"
        time.sleep(0.01)
    proc.send_signal(signum)
    return proc


def _interrupted_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("clsx:") and "warning" not in ln]
    assert len(lines) == 1 and "Traceback" not in stderr and "Fatal" not in stderr, stderr
    return lines[0]


def _rows_written(temporary: Path) -> bool:
    try:
        return temporary.read_bytes().count(b"\n") >= 2  # the header and a row, flushed per batch
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_during_infer_leaves_no_output_and_no_temporary(tiny, many, tmp_path, signum):
    # (SIGHUP: the terminal closed under a running command; by default it killed clsx on the spot)
    proc = _signal_infer(tiny, many, tmp_path / "rows.csv", _rows_written, signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert _interrupted_line(err) == f"clsx: interrupted ({signal.Signals(signum).name}); nothing was published"
    assert leftovers(tmp_path, set()) == []


def test_sigterm_while_starting_up_is_the_same_one_line(tiny, many, tmp_path):
    # The output's temporary exists before the backends are imported: a signal then lands inside an
    # import, where an exception raised into a native module's initialisation (onnx) used to end the
    # process with SIGSEGV or std::terminate (one run in five), no line and no cleanup.
    for attempt in range(4):
        work = tmp_path / str(attempt)
        work.mkdir()
        proc = _signal_infer(tiny, many, work / "rows.csv", lambda temporary: True)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 128 + signal.SIGTERM, (attempt, err)
        assert _interrupted_line(err) == "clsx: interrupted (SIGTERM); nothing was published"
        assert leftovers(work, set()) == []


def test_output_that_is_a_folder_is_refused_before_the_run(tiny, images, tmp_path):
    t0 = time.monotonic()
    res = clsx_run("infer", str(tiny), str(images), "-o", str(tmp_path))
    assert res.returncode == 1 and "it is a folder" in one_error_line(res.stderr)
    assert res.stdout == "" and time.monotonic() - t0 < 60


# ---------------------------------------------------------------------------------------------
# Permissions follow the umask


def test_every_output_follows_the_umask(tiny, images, tmp_path):
    def umask027() -> None:
        os.umask(0o027)

    work = tmp_path / "w"
    work.mkdir()
    graph = work / "tiny.onnx"
    graph.write_bytes(tiny.read_bytes())
    runs = [
        ("infer", str(graph), str(images), "-o", str(work / "rows.csv")),
        ("calib", str(graph), str(images), "--num", "8", "--eval-num", "8", "--cache", str(work / "r.calib.json")),
        ("parity", str(graph), str(graph), "-i", str(images), "--flips", str(work / "flips.csv")),
        ("build", str(graph), "--target", "rtx", "-o", str(work / "tiny.plan")),
    ]
    for args in runs:
        res = clsx_run(*args, preexec=umask027)
        assert res.returncode == 0, (args, res.stderr)
    written = sorted(p for p in work.iterdir() if p.name not in ("tiny.onnx", "tiny.onnx.json"))
    assert {p.name for p in written} >= {"rows.csv", "tiny.int8.onnx", "tiny.int8.onnx.json", "r.calib.json",
                                         "flips.csv", "tiny.plan", "tiny.plan.json"}
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in written}
    assert set(modes.values()) == {oct(0o640)}, modes


# ---------------------------------------------------------------------------------------------
# Odd file names and files that are not files


ODD_NAMES = ["comma,name.jpg", 'quote"name.jpg', "cr\rname.jpg", "lf\nname.jpg", "-leading-dash.jpg",
             "=formula.jpg", "@at.jpg", "+plus.jpg", " space .jpg", "tab\tname.jpg"]


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory, photos) -> Path:
    root = tmp_path_factory.mktemp("odd") / "odd"
    root.mkdir()
    good = sorted(samples.write_photo_variants(root / "_src", photos[:1], per_photo=1, size=40))[0]
    data = good.read_bytes()
    for name in ODD_NAMES:
        (root / name).write_bytes(data)
    (root / os.fsdecode(b"latin1-\xe9t\xe9.jpg")).write_bytes(data)  # not UTF-8
    for p in (root / "_src").iterdir():
        p.unlink()
    (root / "_src").rmdir()
    return root


def test_every_odd_name_is_one_row_csv_reads_back(tiny, odd_folder, tmp_path):
    names = sorted(os.listdir(odd_folder))
    for where in ("stdout", "file"):
        out = tmp_path / f"rows-{where}.csv"
        args = ["infer", str(tiny), str(odd_folder), "--topk", "2"] + (["-o", str(out)] if where == "file" else [])
        res = clsx_run(*args)
        assert res.returncode == 0, res.stderr
        text = out.read_bytes().decode("utf-8") if where == "file" else res.stdout
        rows = list(csv.reader(io.StringIO(text, newline="")))
        header, body = rows[0], rows[1:]
        assert len(body) == len(names) and all(len(r) == len(header) for r in body), rows
        got = sorted(os.path.basename(r[0]) for r in body)
        want = sorted(os.fsencode(n).decode("utf-8", "backslashreplace") for n in names)
        assert got == want
        assert all(r[-1] == "" for r in body), [r[-1] for r in body]  # every one was classified


def test_jsonl_names_match_the_csv_rule(tiny, odd_folder):
    res = clsx_run("infer", str(tiny), str(odd_folder), "-f", "jsonl")
    assert res.returncode == 0, res.stderr
    docs = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(docs) == len(os.listdir(odd_folder))
    assert any(d["path"].endswith("latin1-\\xe9t\\xe9.jpg") for d in docs)
    assert any(d["path"].endswith("cr\rname.jpg") for d in docs)


def test_names_never_act_on_the_terminal(tiny, tmp_path):
    """A file name that holds an escape sequence (clear screen), a line break (a forged second
    ``clsx:`` line) or a right-to-left override reaches stderr as visible escapes, one line per
    message; the CSV on stdout keeps the name exact (it is data)."""
    folder = tmp_path / "names"
    folder.mkdir()
    evil = ["\x1b[2Jclear.jpg", "line\nclsx: error: forged.jpg", "rtl\u202egpj.exe.jpg"]
    for name in evil:
        (folder / name).write_bytes(b"not an image")
    res = clsx_run("infer", str(tiny), str(folder), "--random-weights")
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert not any(ch in res.stderr for ch in "\x1b\u202e\r"), res.stderr
    assert [ln for ln in lines if "forged" in ln] == [ln for ln in lines if ln.startswith("clsx: warning: ") and "forged" in ln]
    assert sum("\\x1b[2Jclear.jpg" in ln for ln in lines) == 1 and sum("\\u202egpj" in ln for ln in lines) == 1
    rows = list(csv.reader(io.StringIO(res.stdout, newline="")))[1:]
    assert sorted(os.path.basename(r[0]) for r in rows) == sorted(evil)

    missing = clsx_run("infer", str(tiny), str(folder / "\x1b]0;title\x07gone"))
    assert missing.returncode == 1 and "\x1b" not in missing.stderr and "\x07" not in missing.stderr
    assert "\\x1b]0;title\\x07gone" in one_error_line(missing.stderr)


def test_info_shows_a_documents_text_without_acting(tiny, tmp_path):
    """``clsx info`` prints fields of a document someone else wrote: shown, never acting."""
    from clsx.tools.info import describe

    doc = json.loads(clsx_run("info", str(tiny), "--json").stdout)
    doc["model"]["ref"] = "tiny\x1b[2J\nforged  yes"
    text = describe(tiny, doc)
    assert "\x1b" not in text and "\nforged" not in text
    assert [ln for ln in text.splitlines() if "forged" in ln] == [ln for ln in text.splitlines() if ln.startswith("model")]


def test_a_pipe_or_device_as_output_is_never_replaced(tiny, images, tmp_path):
    """Publishing puts a whole new file in place of the old one: in place of a named pipe or a device
    (``-o /dev/null --force`` as root) that would replace the node itself. Refused, with and without --force."""
    fifo = tmp_path / "rows.csv"
    os.mkfifo(fifo)
    for force in ([], ["--force"]):
        res = clsx_run("infer", str(tiny), str(images), "-o", str(fifo), *force)
        assert res.returncode == 1 and "it is a named pipe, not a file" in one_error_line(res.stderr)
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    res = clsx_run("parity", str(tiny), str(tiny), "-i", str(images), "--flips", str(fifo), "--force")
    assert res.returncode == 1 and "it is a named pipe, not a file" in one_error_line(res.stderr)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and leftovers(tmp_path, {"rows.csv"}) == []


def test_fifos_sockets_and_devices_never_block(tiny, images, tmp_path):
    folder = tmp_path / "special"
    folder.mkdir()
    os.mkfifo(folder / "fifo.jpg")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "socket.jpg"))
    (folder / "zero.jpg").symlink_to("/dev/zero")
    good = sorted(images.glob("*.jpg"))[0]
    (folder / "good.jpg").write_bytes(good.read_bytes())
    try:
        res = clsx_run("infer", str(tiny), str(folder), str(folder / "fifo.jpg"), timeout=120)
    finally:
        sock.close()
    assert res.returncode == 0, res.stderr
    rows = {Path(r[0]).name: r[-1] for r in list(csv.reader(io.StringIO(res.stdout, newline="")))[1:]}
    assert rows["good.jpg"] == ""
    assert "not a regular file (a FIFO)" in rows["fifo.jpg"]
    assert "not a regular file (a device)" in rows["zero.jpg"]
    assert rows["socket.jpg"] != ""


def test_output_error_names_the_file(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions: a folder that cannot be created instead
            (tmp_path / "afile").write_text("")
            target = tmp_path / "afile" / "missing" / "x.csv"
        else:
            target = locked / "x.csv"
        with pytest.raises(OutputError, match=r"cannot write .*x\.csv"):
            write_file(target, "x")
    finally:
        locked.chmod(0o700)


# ---------------------------------------------------------------------------------------------
# Triton repositories and Ray runs


def test_two_triton_repo_runs_for_one_model_one_wins(tiny, tmp_path):
    repo = tmp_path / "repo"
    cmd = [sys.executable, "-m", "clsx", "triton-repo", str(tiny), "-o", str(repo), "--name", "tiny"]
    procs = [subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    done = [p.communicate(timeout=240) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 1, 1], done
    for (_, err), code in zip(done, codes):
        if code:
            line = one_error_line(err)
            assert "exist" in line and "--force" in line
    assert sorted(p.name for p in repo.iterdir()) == ["tiny"]  # no staging folders, no half model
    assert (repo / "tiny" / "1" / "model.onnx").read_bytes() == tiny.read_bytes()
    assert (repo / "tiny" / "config.pbtxt").is_file()


def test_ray_worker_that_cannot_load_the_model_keeps_stdout_clean(tiny, images, tmp_path):
    pytest.importorskip("ray.data", reason="needs Ray Data (pip install 'clsx[ray]')")
    plan = tmp_path / "tiny.plan"
    built = clsx_run("build", str(tiny), "--target", "rtx", "-o", str(plan))
    if built.returncode != 0:
        pytest.skip(f"needs tensorrt_rtx to build a plan: {built.stderr.strip()[-200:]}")
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without a GPU, where the workers cannot load a TensorRT plan")
    res = clsx_run("infer", str(plan), str(images), "--ray", timeout=300)
    assert res.returncode == 1
    # Ray's own log lines stay on stderr (issue: quiet them unless --verbose); clsx says it once
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("clsx: error:")]
    assert len(errors) == 1 and "a Ray worker could not load the model: TensorRT engines run on an NVIDIA GPU" in errors[0]
    assert "\x1b[" not in res.stdout and "raylet" not in res.stdout and "Traceback" not in res.stdout
    assert res.stdout == ""  # no header-only CSV: the header waits for the first batch, which never came
