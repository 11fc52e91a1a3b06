"""The `arrisk` command line (DESIGN.md §9): one command per stage, each usable alone; a module per stage,
each registering its commands on the one app, listed by stage in `arrisk --help`:

    ledger.py     generate, import, validate, features
    training.py   backtest, train
    reports.py    aging, dunning, kpis, score, worklist, forecast, report drift | performance | kpis
    cash.py       cash-apply, unapplied
    activity.py   activity ..., audit verify
    runs.py       run (the daily run)
    serving.py    serve, token create | list

`common.py` holds the app and what several stages share; `errors.py` the one error decorator (bad input: a
one-line error and exit 1; our bugs: one line naming the log, exit 2); `logs.py` sends library chatter to
the log file. Nothing runs at import: the environment and logging are set by the app's callback.
"""

from serving.cli import activity, cash, ledger, reports, runs, serving, training
from serving.cli.common import app, main
from serving.cli.serving import run_server

__all__ = ["activity", "app", "cash", "ledger", "main", "reports", "run_server", "runs", "serving", "training"]
