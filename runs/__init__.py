"""The daily run (DESIGN.md §10): everything the day's work reads, computed once for `as_of` in named steps
and written atomically to `RUNS_DIR/<as_of>/`; the service answers from it and layers the day's recorded
actions on top per customer (`runs.actions`).

- `runs.scoring`: the champion models applied to a ledger as of a date (features, scores, pay dates);
- `runs.reasons`: SHAP contributions in words, for every row at once;
- `runs.day`: the steps and the `Day` they build (one Parquet table per output);
- `runs.folder`: run folders: staging, manifest, the newest complete run, pruning;
- `runs.actions`: a customer's worklist and dunning rows re-derived after a recorded action.
"""
