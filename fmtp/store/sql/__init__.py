"""
The SQL store: one engine (L{fmtp.store.sql.engine}: the thread, the
connection, transactions, lifecycle and schema upgrades) and one module per
feature holding that feature's SQL and a mixin of its store methods
(objects, accounts, the delivery queue and inboxes, presence, rooms), with
the schema's upgrade steps in order in L{fmtp.store.sql.schema}.

L{fmtp.store.sqlite.SQLiteStore} composes them; a feature added later (or
another engine) adds a module rather than growing one file.
"""
