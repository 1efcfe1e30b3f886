"""The results store: one folder per dataset that `score`, the app, the demo data and a distributed run share.

The format and why it is laid out so are in `layout`'s docstring. The modules:

- `layout`: the format on disk, store and folder names, `StudentSettings`, `AppendResult`, Arrow conversions;
- `commit`: `Commit`, the one transaction (new files, then the manifest, rollback on failure) of every write;
- `conversations`: the conversations folder shared by every student, for a writer;
- `batch`: what one append commits and the checks that decide what of it the store accepts;
- `parts`: a student's part files: a new part, size-tiered merges, the vocabulary, filled same-pass columns;
- `writer`: `StoreWriter` and `compact`;
- `rows`, `reader`: `ResultsStore` and the id indexes and row conversions it reads through;
- `integrity`: missing files and `writer_problem`; `correctness`: labels added after scoring (`add_labels`).

API: `StoreWriter(path, StudentSettings(...), vocabulary=None)` with `.append(trajectories, scores, table)`,
`.append_columns(...)` (per-token columns, `store_columns.TokenColumns`), `.append_aggregates(...)` (no
per-token data), `.committed_ids`, `.compact()`; `ResultsStore(path)` with `.students()`, `.settings(s)`,
`.trajectory_table(s, columns=None, r_max=None)`, `.aggregates(s)` (Arrow), `.rank_aggregates(s)` (numpy),
`.rank_aggregate_parts(s)` (numpy views of the memory-mapped files), `.scored_ids(s)`, `.scored_index(s)`,
`.unscored_ids(scored)`, `.token_scores(s, id)`, `.conversation(id)`, `.conversations(ids)`, `.trajectory(id, s)`,
`.vocabulary(s)`; `compact(path)`. `rsr_core.data.store_import` imports flat score files. The file mechanics
live in `store_files.py`, the per-token columns and their checks in `store_columns.py`.
"""
from rsr_core.data.store.correctness import add_labels
from rsr_core.data.store.integrity import missing_files, writer_problem
from rsr_core.data.store.layout import (CONVERSATION_COLUMNS, CONVERSATIONS_FORMAT, INDEX_COLUMNS, LABEL_SCHEMA,
                                        LABELS, NOT_STORED, PART_FILES, STUDENT_FORMAT, AppendResult,
                                        SettingsMismatch, StudentSettings, student_folder_name)
from rsr_core.data.store.reader import ResultsStore
from rsr_core.data.store.writer import StoreWriter, compact
from rsr_core.data.store_columns import TokenColumns
from rsr_core.data.store_files import FORMAT, VERSION, StoreError, StoreVersionError

__all__ = ["FORMAT", "VERSION", "StoreError", "StoreVersionError", "SettingsMismatch", "StudentSettings",
           "AppendResult", "TokenColumns", "StoreWriter", "ResultsStore", "compact", "student_folder_name",
           "writer_problem", "missing_files", "add_labels", "CONVERSATION_COLUMNS", "CONVERSATIONS_FORMAT",
           "INDEX_COLUMNS", "LABEL_SCHEMA", "LABELS", "NOT_STORED", "PART_FILES", "STUDENT_FORMAT"]
