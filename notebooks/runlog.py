"""runlog: read metagan run logs (HDF5, schema version 2, documented in framework/log.h).

Works on finished, interrupted, killed and still-running runs. Files are opened with
swmr=True, which a running or killed run needs, and every read refreshes the dataset first
(Dataset.refresh(), not .id.refresh(): h5py caches shapes), so a notebook re-running a cell
sees the rows a live run has flushed since. Every series is trimmed to its complete rows.

    import runlog
    runlog.list_runs("runs/fewshot_mnist")     # one row per run: status, settings, accuracy
    run = runlog.Run("runs/fewshot_mnist/latest.h5")
    run.info()                                 # experiment, status, times, git, host, versions
    run.config()                               # the config keys, typed
    run.metrics()                              # steps x series ("train/loss", "train/acc", ...)
    run.evals()                                # one row per evaluation: mean, ci95, ...
    run.samples("generator")                   # steps, uint8 grids (n, H, W)
    runlog.show_samples(run, "generator")      # the grids over time, as a figure

Needs h5py, numpy, pandas (Debian: python3-h5py python3-numpy python3-pandas) and, for the
plots, matplotlib. Use /usr/bin/python3; a pyenv python3 on PATH has no h5py.
"""
import os
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

SCHEMA_VERSION = 2

# Root attributes the log writes besides the config keys (framework/log.h, "Root attributes").
RUN_ATTRS = (
    "schema_version", "experiment", "argv", "git_commit", "git_dirty", "hostname", "pid",
    "n_threads", "dnnl_version", "hdf5_version", "compiler", "start_time", "end_time",
    "status", "flush_interval", "checkpoint", "resume_step", "history_from",
)

REPO = Path(__file__).resolve().parent.parent


def resolve(path):
    """A path as given, or relative to the repository (notebooks run in notebooks/)."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return REPO / p


def _plain(value):
    """numpy scalars and bytes as plain Python values."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


class Run:
    """One run log, kept open so that a live run's new rows can be read again."""

    def __init__(self, path):
        self.path = resolve(path)
        self.real_path = Path(os.path.realpath(self.path))  # latest.h5 is a symlink
        try:
            self.file = h5py.File(self.real_path, "r", swmr=True)
        except OSError:
            self.file = h5py.File(self.real_path, "r")  # a file not written in SWMR format
        version = _plain(self.file.attrs.get("schema_version", 1))
        if version != SCHEMA_VERSION:
            self.file.close()
            raise ValueError(f"{self.real_path}: schema version {version}; this module reads "
                             f"version {SCHEMA_VERSION} (framework/log.h)")

    def close(self):
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"Run({str(self.real_path)!r}, status={self.status()!r})"

    # ---- attributes ----

    def attrs(self):
        return {k: _plain(v) for k, v in self.file.attrs.items()}

    def info(self):
        """The run's identity: every root attribute that is not a config key."""
        a = self.attrs()
        return {k: a[k] for k in RUN_ATTRS if k in a}

    def config(self):
        """The config keys as a dict (int, float or str, as the experiment typed them)."""
        a = self.attrs()
        return {k: v for k, v in sorted(a.items()) if k not in RUN_ATTRS}

    def config_table(self):
        c = self.config()
        return pd.DataFrame({"value": [str(v) for v in c.values()],
                             "type": [type(v).__name__ for v in c.values()]},
                            index=pd.Index(list(c), name="key"))

    def status(self):
        """status, and for a "running" log whose heartbeat stopped, a note saying so."""
        a = self.attrs()
        status = a.get("status", "?")
        if status != "running":
            return status
        last = self.last_flush_age()
        limit = max(3 * float(a.get("flush_interval", 10)), 60.0)
        if last is not None and last > limit:
            return f"running? (no flush for {last / 60:.0f} min: killed, or stopped by a crash)"
        return status

    # ---- reading series ----

    def _read(self, path):
        ds = self.file[path]
        try:
            ds.refresh()  # new rows of a live run (SWMR)
        except Exception:
            pass  # not opened in SWMR mode: nothing to refresh
        return ds[()]

    def _columns(self, group, names):
        """The named columns of a series group, cut to the rows the last flush vouched for
        (after a kill, rows beyond it may be partly written)."""
        cols = {n: self._read(f"{group}/{n}") for n in names}
        n = min(len(c) for c in cols.values())
        if group != "flushes":
            n = min(n, self._flushed_rows().get(group, n))
        return {k: v[:n] for k, v in cols.items()}

    def _flushed_rows(self):
        """{series path: rows} of the last complete /flushes row ({} if there is none)."""
        if "flushes/rows" not in self.file:
            return {}
        c = self._columns("flushes", ("rows", "unix_time"))
        if len(c["rows"]) == 0:
            return {}
        names = [_plain(s) for s in self.file["flushes"].attrs["series"]]
        return dict(zip(names, (int(r) for r in c["rows"][-1])))

    def _series_names(self, top):
        if top not in self.file:
            return []
        found = []

        def visit(name, obj):
            if isinstance(obj, h5py.Group) and "step" in obj:
                found.append(name)
        self.file[top].visititems(visit)
        return sorted(found)

    def metric_names(self):
        return self._series_names("metrics")

    def eval_names(self):
        return self._series_names("eval")

    def sample_names(self):
        return self._series_names("samples")

    def metric(self, name):
        """One scalar series: DataFrame with columns step, value, wall_time."""
        return pd.DataFrame(self._columns(f"metrics/{name}", ("step", "value", "wall_time")))

    def metrics(self, names=None):
        """Scalar series side by side: index step, one column per series."""
        names = self.metric_names() if names is None else list(names)
        frames = [self.metric(n).set_index("step")["value"].rename(n) for n in names]
        if not frames:
            return pd.DataFrame(index=pd.Index([], name="step"))
        return pd.concat(frames, axis=1).sort_index()

    def evals(self):
        """One row per evaluation: name, step, mean, ci95, n_episodes, wall_time."""
        rows = []
        for name in self.eval_names():
            c = self._columns(f"eval/{name}", ("step", "mean", "ci95", "wall_time"))
            n_ep = _plain(self.file[f"eval/{name}"].attrs["n_episodes"])
            for i in range(len(c["step"])):
                rows.append({"name": name, "step": int(c["step"][i]), "mean": c["mean"][i],
                             "ci95": c["ci95"][i], "n_episodes": n_ep,
                             "wall_time": c["wall_time"][i]})
        return pd.DataFrame(rows, columns=["name", "step", "mean", "ci95", "n_episodes",
                                           "wall_time"])

    def eval_episodes(self, name, row=-1):
        """Per-episode accuracies of one evaluation (the last one by default)."""
        c = self._columns(f"eval/{name}", ("episodes", "step"))
        return c["episodes"][row]

    def samples(self, name="generator"):
        """(steps, grids): int64[n] and uint8[n, H, W] (0 black, 255 white)."""
        c = self._columns(f"samples/{name}", ("images", "step"))
        return c["step"], c["images"]

    def flushes(self):
        """One row per flush: unix_time, wall_time, then the rows of each series on disk."""
        if "flushes" not in self.file:
            return pd.DataFrame(columns=["unix_time", "wall_time"])
        cols = ["unix_time", "wall_time"] + (["rows"] if "rows" in self.file["flushes"] else [])
        c = self._columns("flushes", cols)
        df = pd.DataFrame({"unix_time": c["unix_time"], "wall_time": c["wall_time"]})
        if "rows" in c:
            for j, s in enumerate(self.file["flushes"].attrs["series"]):
                df[_plain(s)] = c["rows"][:, j]
        return df

    def last_flush_age(self):
        """Seconds since the last flush (None if the log has none)."""
        f = self.flushes()
        return None if f.empty else time.time() - float(f["unix_time"].iloc[-1])

    def last_step(self):
        steps = [self.metric(n)["step"] for n in self.metric_names()]
        return int(max((s.max() for s in steps if len(s)), default=0))


# ---- several runs ----

def run_files(folder="runs"):
    """Run logs under folder (recursively), oldest first; latest.h5 links and .part files skipped."""
    folder = resolve(folder)
    if folder.is_file():
        return [folder]
    files = [p for p in folder.rglob("*.h5")
             if p.name != "latest.h5" and not p.name.endswith(".ckpt.h5")
             and not p.name.startswith(".")]
    return sorted(files, key=lambda p: (p.parent.name, p.name))


def summary(run):
    """One dict describing a run: identity, main settings, last step, test accuracy."""
    a = run.attrs()
    row = {"path": str(run.real_path), "experiment": a.get("experiment"),
           "start_time": a.get("start_time"), "status": run.status(),
           "seed": a.get("seed"), "ways": a.get("ways"), "shots": a.get("shots"),
           "gan": a.get("gan"), "iters": a.get("iters"), "last_step": run.last_step()}
    row["model"] = label(run)
    ev = run.evals()
    for name in ("test/acc", "test/nn_acc"):
        e = ev[ev["name"] == name]
        if len(e):
            row[name + " mean"] = e["mean"].iloc[-1]
            row[name + " ci95"] = e["ci95"].iloc[-1]
    return row


def label(run):
    """A short name for plots: 'MetaGAN 5w1s s1', 'MAML 5w5s s2', or the experiment's name."""
    a = run.attrs()
    model = {1: "MetaGAN", 0: "MAML"}.get(a.get("gan"), a.get("experiment", "run"))
    parts = [model]
    if "ways" in a and "shots" in a:
        parts.append(f"{a['ways']}w{a['shots']}s")
    if "seed" in a:
        parts.append(f"s{a['seed']}")
    return " ".join(str(p) for p in parts)


def list_runs(folder="runs", paths=None):
    """DataFrame of runs (all logs under folder, or the given paths), oldest first.
    A file that cannot be read is listed with its error as status."""
    rows = []
    for p in (run_files(folder) if paths is None else [resolve(p) for p in paths]):
        try:
            with Run(p) as run:
                rows.append(summary(run))
        except (OSError, ValueError, KeyError) as e:
            rows.append({"path": str(p), "status": f"unreadable: {e}", "model": Path(p).stem})
    table = pd.DataFrame(rows)
    if len(table):  # tell runs with the same settings apart by their file name
        dup = table["model"].duplicated(keep=False)
        table.loc[dup, "model"] = [f"{m} ({Path(p).stem})" for m, p in
                                   zip(table.loc[dup, "model"], table.loc[dup, "path"])]
    return table


def config_differences(runs):
    """Config keys whose values differ between runs: DataFrame keys x run labels."""
    configs = {f"{label(r)} ({r.real_path.name})": r.config() for r in runs}
    keys = sorted(set().union(*[c.keys() for c in configs.values()])) if configs else []
    table = pd.DataFrame({name: [c.get(k) for k in keys] for name, c in configs.items()},
                         index=keys)
    if table.empty:
        return table
    differs = table.astype(str).nunique(axis=1) > 1
    return table[differs]


# ---- plots (matplotlib is imported here only, so the readers work without it) ----

def plot_metrics(run, names, ax=None, title=None):
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    m = run.metrics(names)
    for n in names:
        if n in m:
            ax.plot(m.index, m[n], label=n)
    ax.set_xlabel("meta-iteration")
    ax.set_title(title or ", ".join(names))
    ax.legend()
    ax.grid(alpha=0.3)
    return ax


def show_samples(run, name="generator", max_grids=6):
    """Up to max_grids grids of a sample series, evenly spaced over the run, with their steps."""
    import matplotlib.pyplot as plt
    steps, grids = run.samples(name)
    if len(steps) == 0:
        print(f"{run.real_path.name}: no samples in /samples/{name} yet")
        return None
    pick = np.unique(np.linspace(0, len(steps) - 1, min(max_grids, len(steps))).round().astype(int))
    fig, axes = plt.subplots(1, len(pick), figsize=(3 * len(pick), 3.2), squeeze=False)
    for ax, i in zip(axes[0], pick):
        ax.imshow(grids[i], cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"step {steps[i]}")
        ax.axis("off")
    fig.suptitle(f"/samples/{name}")
    fig.tight_layout()
    return fig


def plot_accuracy(table, ax=None, names=("test/acc", "test/nn_acc")):
    """Bars of mean accuracy with 95 % CI error bars, one group per run (a list_runs table)."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(max(4, 1.6 * len(table)), 3.5))
    width = 0.8 / len(names)
    x = np.arange(len(table))
    for j, name in enumerate(names):
        if name + " mean" not in table:
            continue
        ax.bar(x + j * width, 100 * table[name + " mean"], width,
               yerr=100 * table[name + " ci95"], capsize=4,
               label={"test/acc": "meta-learner", "test/nn_acc": "pixel 1-NN"}.get(name, name))
    ax.set_xticks(x + width * (len(names) - 1) / 2)
    ax.set_xticklabels(table["model"], rotation=20, ha="right")
    ax.set_ylabel("test accuracy (%), 95 % CI")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    ax.figure.tight_layout()
    return ax
