"""The work queues beyond the call list (issue 21): deductions, escalations, credit reviews and the SLA clocks
on every queue. Pure functions of the ledger (with the activity store's records merged in), the day's
customer table and a policy YAML; the records themselves live in the activity store (`queue_items`)."""
