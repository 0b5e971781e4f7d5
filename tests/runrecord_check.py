#!/usr/bin/python3
"""Checks of real run logs and checkpoints for tests/test_runrecord.c (h5py; schema in
framework/log.h). Each command exits 0 when the check passes, 1 with a message when it fails.

  schema LOG ITERS EPISODES SAMPLE_STEPS   a finished fewshot_mnist run, attribute by attribute
  same_state CKPT_A CKPT_B                 every array and Adam step count bitwise equal
  history REF_LOG LOG STOP                 LOG (resumed at STOP) has REF_LOG's rows, bitwise
  interrupted LOG                          status interrupted; checkpoint at the last logged step
  killed LOG REF_LOG                       a kill -9'd run: readable, rows up to the last flush
                                           complete and equal to REF_LOG's; prints that count
  flushed LOG                              prints the train/loss rows of the last flush
  live LATEST_LINK                         a reader sees rows appear while the run goes on
  stripped NOTEBOOK...                     committed notebooks carry no outputs
"""
import math
import os
import re
import subprocess
import sys
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "notebooks"))
import runlog  # noqa: E402  (the notebooks' reader: the tests keep it honest)

SERIES = ("train/loss", "train/acc", "train/g_loss")


def fail(msg):
    print("runrecord_check:", msg)
    sys.exit(1)


def check(ok, msg):
    if not ok:
        fail(msg)


def open_log(path):
    return h5py.File(path, "r", swmr=True)


def columns(group, names):
    """Complete rows of a series (a kill inside a flush can leave columns of unequal length)."""
    cols = {n: group[n][()] for n in names}
    n = min(len(c) for c in cols.values())
    return {k: v[:n] for k, v in cols.items()}


def last_flush(f):
    """{series path: rows} of the last /flushes row."""
    names = [str(s) for s in f["flushes"].attrs["series"]]
    rows = f["flushes/rows"]
    n = min(len(rows), len(f["flushes/unix_time"]))
    check(n >= 1, "no complete /flushes row")
    return dict(zip(names, (int(r) for r in rows[n - 1])))


# ---- schema ----

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def check_root(f, log, ckpt):
    a = dict(f.attrs)
    config_keys = set(ckpt["config"].attrs)
    check(set(a) - set(runlog.RUN_ATTRS) == config_keys,
          f"root attributes besides the run's own {sorted(set(a) - set(runlog.RUN_ATTRS))} should "
          f"be exactly the config keys {sorted(config_keys)}")
    check(set(runlog.RUN_ATTRS) <= set(a), f"missing: {set(runlog.RUN_ATTRS) - set(a)}")
    strings = ("experiment", "argv", "git_commit", "hostname", "dnnl_version", "hdf5_version",
               "compiler", "start_time", "end_time", "status", "checkpoint", "history_from")
    for k in strings + ("arch", "data", "runs", "resume"):
        check(type(a[k]) is str, f"{k} should be a str (VL UTF-8), is {type(a[k])}")
    for k in ("schema_version", "git_dirty", "pid", "n_threads", "resume_step", "ways", "shots",
              "iters", "seed", "gan", "ckpt_every"):
        check(a[k].dtype == np.int64, f"{k} should be int64, is {a[k].dtype}")
    for k in ("inner_lr", "meta_lr", "gan_weight", "flush_secs", "flush_interval"):
        check(a[k].dtype == np.float64, f"{k} should be float64, is {a[k].dtype}")
    check(a["schema_version"] == 2 and a["experiment"] == "fewshot_mnist", "schema/experiment")
    check(a["status"] == "finished", f"status {a['status']!r}")
    check(ISO.match(a["start_time"]) and ISO.match(a["end_time"]) and
          a["end_time"] >= a["start_time"], f"times {a['start_time']!r} {a['end_time']!r}")
    check(a["argv"].startswith("./build/exp/fewshot_mnist ") and "iters=" in a["argv"],
          f"argv {a['argv']!r}")
    check(a["git_dirty"] in (0, 1), f"git_dirty {a['git_dirty']}")
    check(re.fullmatch(r"[0-9a-f]{40}", a["git_commit"]) is not None, f"git_commit {a['git_commit']!r}")
    known = subprocess.run(["git", "cat-file", "-e", a["git_commit"] + "^{commit}"],
                           capture_output=True).returncode == 0
    check(known, f"git_commit {a['git_commit']} is not a commit of this repository")
    check(a["hdf5_version"] == "%d.%d.%d" % h5py.version.hdf5_version_tuple,
          f"hdf5_version {a['hdf5_version']} (h5py links {h5py.version.hdf5_version})")
    check(re.fullmatch(r"\d+\.\d+\.\d+", a["dnnl_version"]) is not None, a["dnnl_version"])
    check(a["n_threads"] >= 1 and a["hostname"] and a["pid"] > 0, "host, pid, threads")
    check(os.path.samefile(a["checkpoint"], ckpt.filename), "checkpoint attribute")
    check(a["resume_step"] == 0 and a["history_from"] == "", "not a resumed run")


def check_series(f, iters):
    lengths = last_flush(f)
    for s in SERIES:
        g = f["metrics/" + s]
        c = columns(g, ("step", "value", "wall_time"))
        check(all(len(g[n]) == iters for n in ("step", "value", "wall_time")),
              f"{s}: column lengths {[len(g[n]) for n in ('step', 'value', 'wall_time')]}")
        check(g["step"].dtype == np.int64 and g["value"].dtype == np.float64, f"{s} types")
        check(list(c["step"]) == list(range(1, iters + 1)), f"{s} steps {list(c['step'])}")
        check(np.all(np.isfinite(c["value"])), f"{s} has non-finite values")
        check(np.all(np.diff(c["wall_time"]) >= 0) and c["wall_time"][0] >= 0, f"{s} wall_time")
        check(lengths["metrics/" + s] == iters, f"last flush counts {lengths}")


def check_evals(f, iters, episodes):
    for name in ("test/acc", "test/nn_acc"):
        g = f["eval/" + name]
        ep = g["episodes"][()]
        check(ep.shape == (1, episodes) and ep.dtype == np.float32, f"{name} episodes {ep.shape}")
        check(g.attrs["n_episodes"] == episodes and list(g["step"]) == [iters], f"{name} step")
        x = ep[0].astype(np.float64)
        check(abs(g["mean"][0] - x.mean()) < 1e-12, f"{name} mean {g['mean'][0]} vs {x.mean()}")
        ci = 1.96 * x.std() / math.sqrt(len(x))
        check(abs(g["ci95"][0] - ci) < 1e-12, f"{name} ci95 {g['ci95'][0]} vs {ci}")
        check(np.all((x >= 0) & (x <= 1)), f"{name} accuracies outside [0, 1]")


def check_samples(f, sample_steps):
    g = f["samples/generator"]
    img = g["images"]
    check(img.dtype == np.uint8 and img.shape == (len(sample_steps), 140, 140),
          f"samples {img.dtype} {img.shape}")
    check(list(g["step"]) == sample_steps, f"sample steps {list(g['step'])}, want {sample_steps}")
    check(g.attrs["rows"] == 5 and g.attrs["cols"] == 5 and g.attrs["image_h"] == 28,
          "grid attributes")
    check(img[()].max() > img[()].min(), "sample grids are blank")


def check_checkpoint(ckpt, log, iters):
    a = ckpt.attrs
    check(a["format"] == "metagan-checkpoint" and a["format_version"] == 1, "checkpoint format")
    check(a["iteration"] == iters and a["experiment"] == "fewshot_mnist", "checkpoint iteration")
    check(os.path.samefile(a["log_file"], log), "checkpoint log_file")
    for name in ("adam_d", "adam_g"):
        check(ckpt[name].attrs["t"] == iters, f"{name} t {ckpt[name].attrs['t']}")
        check(ckpt[name + "/m"].shape == (ckpt[name].attrs["n"],), f"{name}/m shape")
    check(ckpt["theta"].dtype == np.float32 and ckpt["theta"].shape[0] > 100000, "theta")
    check(ckpt["theta"].fletcher32, "theta has no checksum")
    check(ckpt["config"].attrs["iters"] == str(iters), "checkpoint config")


def cmd_schema(log, iters, episodes, sample_steps):
    iters, episodes = int(iters), int(episodes)
    sample_steps = [int(s) for s in sample_steps.split(",")]
    with open_log(log) as f, h5py.File(f.attrs["checkpoint"], "r") as ckpt:
        check_root(f, log, ckpt)
        check_series(f, iters)
        check_evals(f, iters, episodes)
        check_samples(f, sample_steps)
        check_checkpoint(ckpt, log, iters)
        latest = os.path.join(os.path.dirname(log), "latest.h5")
        check(os.path.islink(latest) and os.readlink(latest) == os.path.basename(log),
              "latest.h5 should be a relative symlink to the run")
    run = runlog.Run(log)  # the notebooks' reader agrees
    check(list(run.metrics().columns) == sorted(SERIES) and len(run.metrics()) == iters,
          "runlog.metrics")
    check(len(run.evals()) == 2 and run.status() == "finished", "runlog.evals/status")
    check(set(run.config()) == set(h5py.File(run.info()["checkpoint"])["config"].attrs),
          "runlog.config")
    print("schema ok:", log)


# ---- resume ----

def arrays(ckpt):
    out = {}
    ckpt.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset)
                    else None)
    return out


def cmd_same_state(a_path, b_path):
    with h5py.File(a_path, "r") as a, h5py.File(b_path, "r") as b:
        xa, xb = arrays(a), arrays(b)
        check(set(xa) == set(xb) and {"theta", "adam_d/m", "adam_g/v"} <= set(xa),
              f"arrays {sorted(xa)} vs {sorted(xb)}")
        for k in xa:
            same = xa[k].shape == xb[k].shape and np.array_equal(
                xa[k].view(np.uint32), xb[k].view(np.uint32))
            if not same:
                diff = int(np.sum(xa[k].view(np.uint32) != xb[k].view(np.uint32)))
                fail(f"{k}: {diff} of {xa[k].size} values differ bitwise")
        check(a.attrs["iteration"] == b.attrs["iteration"], "iterations")
        for k in ("adam_d", "adam_g"):
            check(a[k].attrs["t"] == b[k].attrs["t"], f"{k} t")
    print("same state:", a_path, b_path)


def cmd_history(ref_path, log_path, stop):
    stop = int(stop)
    with open_log(ref_path) as ref, open_log(log_path) as f:
        check(f.attrs["resume_step"] == stop, f"resume_step {f.attrs['resume_step']}")
        check(f.attrs["history_from"].endswith(".h5"), f"history_from {f.attrs['history_from']!r}")
        for s in SERIES:
            r = columns(ref["metrics/" + s], ("step", "value"))
            c = columns(f["metrics/" + s], ("step", "value", "wall_time"))
            check(np.array_equal(r["step"], c["step"]), f"{s} steps {list(c['step'])}")
            check(np.array_equal(r["value"].view(np.uint64), c["value"].view(np.uint64)),
                  f"{s} values differ from the uninterrupted run")
            check(np.all(np.diff(c["wall_time"]) >= 0), f"{s}: wall_time goes back at the resume")
    print("history ok:", log_path)


def cmd_interrupted(log_path):
    with open_log(log_path) as f:
        a = f.attrs
        check(a["status"] == "interrupted", f"status {a['status']!r}")
        check(ISO.match(a["end_time"]) is not None, f"end_time {a['end_time']!r}")
        steps = f["metrics/train/loss/step"][()]
        with h5py.File(a["checkpoint"], "r") as c:
            it = int(c.attrs["iteration"])
        check(it >= 1 and list(steps) == list(range(1, it + 1)),
              f"checkpoint at {it}, logged steps {list(steps)}")
    print(it)


# ---- kill -9 ----

def cmd_killed(log_path, ref_path):
    try:
        f = open_log(log_path)
    except OSError as e:
        fail(f"a killed run's file does not open with swmr=True: {e}")
    with f, open_log(ref_path) as ref:
        check(f.attrs["status"] == "running", f"status {f.attrs['status']!r}")
        check(f.attrs["experiment"] == "fewshot_mnist" and "seed" in f.attrs, "root attributes")
        flushed = last_flush(f)
        for s in SERIES:
            n = flushed["metrics/" + s]
            c = columns(f["metrics/" + s], ("step", "value", "wall_time"))
            r = columns(ref["metrics/" + s], ("step", "value"))
            check(len(c["step"]) >= n, f"{s}: {len(c['step'])} complete rows, last flush had {n}")
            check(len(r["step"]) >= n, f"{s}: reference too short ({len(r['step'])} < {n})")
            check(list(c["step"][:n]) == list(range(1, n + 1)), f"{s} steps {list(c['step'][:n])}")
            check(np.array_equal(c["value"][:n].view(np.uint64), r["value"][:n].view(np.uint64)),
                  f"{s}: flushed rows differ from an uninterrupted run's")
        for path, n in flushed.items():  # evaluations and samples too
            g = f[path]
            c = columns(g, [k for k in g if isinstance(g[k], h5py.Dataset)])
            check(min(len(v) for v in c.values()) >= n, f"{path}: fewer rows than flushed ({n})")
        ckpt = f.attrs["checkpoint"]
        if os.path.exists(ckpt):  # a kill while one was written leaves the previous one whole
            with h5py.File(ckpt, "r") as c:
                it = int(c.attrs["iteration"])
                check(it <= len(f["metrics/train/loss/step"]), f"checkpoint at {it} beyond the log")
                check(np.all(np.isfinite(c["theta"][()])), "checkpoint theta")  # checksummed read
        print(flushed["metrics/train/loss"])


def cmd_flushed(log_path):
    """Rows of train/loss counted by the last flush (0 if the file has none)."""
    with open_log(log_path) as f:
        print(last_flush(f)["metrics/train/loss"])


# ---- live reading ----

def cmd_live(link):
    """Waits for the run file, opens it like a notebook, and waits to see rows appear."""
    deadline = time.time() + 120
    while not os.path.exists(link):
        check(time.time() < deadline, f"{link} never appeared")
        time.sleep(0.05)
    f = h5py.File(link, "r", swmr=True)
    ds = f["metrics/train/loss/step"]
    first = ds.shape[0]
    seen = [first]
    while seen[-1] < first + 3:
        check(time.time() < deadline, f"rows seen {seen}: the reader never saw new rows")
        time.sleep(0.1)
        ds.refresh()  # Dataset.refresh(), not ds.id.refresh(): h5py caches shapes
        if ds.shape[0] != seen[-1]:
            seen.append(ds.shape[0])
    steps = ds[()]
    check(list(steps) == list(range(1, len(steps) + 1)), f"steps read live {list(steps)}")
    run = runlog.Run(link)  # and through the notebooks' module
    check(len(run.metrics()) >= seen[-1] and run.status().startswith("running"), "runlog live")
    print("live rows seen:", seen)


def cmd_stripped(*paths):
    import nbformat
    for p in paths:
        nb = nbformat.read(p, as_version=4)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                check(cell.outputs == [] and cell.execution_count is None,
                      f"{p}: cell {i} has outputs (make notebook-strip before committing)")
    print("stripped:", *paths)


COMMANDS = {"schema": cmd_schema, "same_state": cmd_same_state, "history": cmd_history,
            "interrupted": cmd_interrupted, "killed": cmd_killed, "flushed": cmd_flushed,
            "live": cmd_live,
            "stripped": cmd_stripped}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        fail(__doc__)
    COMMANDS[sys.argv[1]](*sys.argv[2:])
