"""Reminders that go out (issue 22): dunning e-mails rendered per customer, level and language with a
statement of account PDF (`reminders.compose`, `reminders.statement`), sent over SMTP at most once
(`reminders.smtp`; the outbox and its state machine live in the activity store)."""
