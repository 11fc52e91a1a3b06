"""Cash application (issue 20): match incoming payments to open items and keep unapplied cash near zero.

For every payment not yet applied on `as_of`: identify the paying customer (`cash_application.payers`),
propose candidate sets of its (and its group's) open items by rules and a bounded subset search
(`cash_application.candidates`), score every set with a LightGBM model learnt from the ledger's past
applications (`cash_application.ranker`), and decide per payment: `auto`, `proposed` or `unmatched` with a
reason, by the thresholds of a YAML policy (`cash_application.policy`). `cash_application.matching.apply_cash`
is the entry point; it reads nothing but the ledger and the date it is given.
"""

from cash_application.matching import apply_cash
from cash_application.policy import DEFAULT_POLICY, MatchPolicy, load_match_policy

__all__ = ["DEFAULT_POLICY", "MatchPolicy", "apply_cash", "load_match_policy"]
