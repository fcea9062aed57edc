"""The progress table tune.run prints every few seconds, like Ray's CLI reporter."""
import numbers
import sys
import time

_SKIP = {"done", "trial_id", "hostname", "pid", "timestamp", "time_this_iter_s", "iterations_since_restore",
         "training_iteration", "time_total_s", "config", "date", "node_ip", "experiment_tag"}


def _fmt(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.5g}"


def _varied_keys(trials, limit=5):
    """Config keys (flattened) whose value differs between trials: the ones worth a column."""
    from .storage import flatten
    seen = {}
    for trial in trials:
        for key, value in flatten(trial.config).items():
            seen.setdefault(key, set()).add(repr(value))
    return [k for k, values in seen.items() if len(values) > 1][:limit]


class ProgressReporter:
    def __init__(self, metric=None, mode=None, interval=5.0, max_rows=20, out=None, quiet=False):
        self.metric, self.mode = metric, mode
        self.quiet = quiet      # verbose=0: no table at all, the final one included (Ray: "0 = silent")
        self.interval = interval
        self.max_rows = max_rows
        self.out = out or sys.stdout
        self._start = time.time()
        self._last = time.monotonic()

    def maybe_report(self, trials, total=None):
        if self.interval is None or time.monotonic() - self._last < self.interval:
            return
        self.report(trials, total)

    def report(self, trials, total=None, done=False):
        self._last = time.monotonic()
        if self.quiet:
            return
        self.out.write(self.render(trials, total, done) + "\n")
        self.out.flush()

    def render(self, trials, total=None, done=False):
        from .storage import flatten
        counts = {}
        for trial in trials:
            counts[trial.status] = counts.get(trial.status, 0) + 1
        elapsed = time.time() - self._start
        lines = [f"== Status == {'(finished) ' if done else ''}running for {elapsed:.1f} s",
                 "Trials: " + str(len(trials)) + (f" of {total}" if total else "") + " ("
                 + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ")"]
        best = self._best(trials)
        if best is not None:
            lines.append(f"Best so far: {self.metric}={_fmt(best.last_result[self.metric])} "
                         f"({best.trial_name}, config {best.config})")
        varied = _varied_keys(trials)
        metric_keys = []
        if self.metric:
            metric_keys.append(self.metric)
        for trial in trials:
            for key, value in trial.last_result.items():
                if key not in _SKIP and key not in metric_keys and isinstance(value, numbers.Number) and len(metric_keys) < 4:
                    metric_keys.append(key)
        header = ["Trial name", "status"] + varied + ["iter", "total time (s)"] + metric_keys
        rows = []
        shown = sorted(trials, key=lambda t: (t.status != "RUNNING", t.index))[:self.max_rows]
        for trial in shown:
            config = flatten(trial.config)
            last = trial.last_result
            rows.append([trial.trial_name, trial.status] + [_fmt(config.get(k, "")) for k in varied]
                        + [_fmt(last.get("training_iteration", "")), _fmt(last.get("time_total_s", ""))]
                        + [_fmt(last.get(k, "")) for k in metric_keys])
        widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
        rule = "+-" + "-+-".join("-" * w for w in widths) + "-+"
        lines.append(rule)
        lines.append("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
        lines.append(rule)
        for row in rows:
            lines.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")
        lines.append(rule)
        if len(trials) > len(shown):
            lines.append(f"... {len(trials) - len(shown)} more trials not shown")
        errors = [t for t in trials if t.status == "ERROR"]
        if errors:
            lines.append(f"Errored trials: {len(errors)} ({', '.join(t.trial_name for t in errors[:5])})")
        return "\n".join(lines)

    def _best(self, trials):
        if not self.metric or not self.mode:
            return None
        scored = [t for t in trials if isinstance(t.last_result.get(self.metric), numbers.Number)]
        if not scored:
            return None
        pick = max if self.mode == "max" else min
        return pick(scored, key=lambda t: t.last_result[self.metric])


class CLIReporter(ProgressReporter):
    """Ray's console reporter's arguments, mapped onto the same table (the columns are chosen
    from the metric and the configs that vary; ``metric_columns``/``parameter_columns`` are kept
    for reference but not used to pick columns)."""

    def __init__(self, metric_columns=None, parameter_columns=None, total_samples=None, max_progress_rows=20,
                 max_error_rows=20, max_column_length=20, max_report_frequency=5, infer_limit=3,
                 print_intermediate_tables=None, metric=None, mode=None, sort_by_metric=False):
        super().__init__(metric, mode, interval=max_report_frequency, max_rows=max_progress_rows)
        self.metric_columns, self.parameter_columns = metric_columns, parameter_columns
