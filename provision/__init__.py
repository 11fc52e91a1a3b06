"""The bad-debt provision (issue 23): the lifetime expected credit loss of the open receivables as of a date,
for the month-end close, by two methods side by side.

- **Provision matrix** (`provision.matrix`): loss rates per ageing bucket (and segment) from a roll-rate
  (migration) analysis of the ledger's month-end balances (`provision.roll_rates`), times the open amounts.
- **Model-based** (`provision.model_ecl`): per customer, exposure x probability of default x loss given
  default, with the probability from the deterioration model and LGD from the ledger's recoveries.
- **Movement schedule** (`provision.movement`): opening allowance, charge, write-offs against it,
  recoveries, release, closing allowance between two dates.
- **Backtest** (`provision.backtest`): at each past month end, each method's provision against the
  write-offs that followed.

Everything is point-in-time: a computation as of a date sees only what the ledger knew then.
"""

from provision.policy import ProvisionPolicy, load_provision_policy

__all__ = ["ProvisionPolicy", "load_provision_policy"]
