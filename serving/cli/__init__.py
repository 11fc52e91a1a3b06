"""The `arrisk` command line (DESIGN.md §9): one command per stage, each usable alone; a module per stage,
each registering its commands on the one app, listed by stage in `arrisk --help`:

    ledger.py     generate, import, validate, features
    training.py   backtest, train
    reports.py    aging, dunning, kpis, score, worklist, forecast, report drift | performance | kpis
    cash.py       cash-apply, unapplied
    deductions.py, escalations.py, credit_reviews.py   the work queues (issue 21)
    provision.py  provision report | backtest (issue 23)
    activity.py   activity ..., audit verify
    reminders.py  reminders draft | list | show | approve | send | settle (issue 22)
    runs.py       run (the daily run)
    serving.py    serve, token create | list

`common.py` holds the app and what several stages share; `errors.py` the one error decorator (bad input: a
one-line error and exit 1; our bugs: one line naming the log, exit 2); `logs.py` sends library chatter to
the log file. Nothing runs at import: the environment and logging are set by the app's callback.
"""

from serving.cli import (
    activity,
    cash,
    credit_reviews,
    deductions,
    escalations,
    ledger,
    provision,
    reminders,
    reports,
    runs,
    serving,
    training,
)
from serving.cli.common import app, main
from serving.cli.serving import run_server

__all__ = ["activity", "app", "cash", "credit_reviews", "deductions", "escalations", "ledger", "main", "provision",
           "reminders", "reports", "run_server", "runs", "serving", "training"]
