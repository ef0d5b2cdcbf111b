#!/usr/bin/env python3
"""Adds the index tansu 0.6's SQLite store lacks: record headers by record.

tansu looks up a fetched record's headers with a query on `header (topition, offset_id)`,
a table without an index, so every fetched record scans every header stored: fetching n
records whose topics hold h headers costs n x h (docs/broker-limitations.md). This creates
the index (idempotent) once tansu has made its schema; run it after each start.

Usage: tansu-index-headers.py PATH/TO/tansu.db [seconds to wait for the schema, default 30]
"""
import sqlite3
import sys
import time

path = sys.argv[1]
deadline = time.monotonic() + float(sys.argv[2] if len(sys.argv) > 2 else 30)
while True:
    try:
        with sqlite3.connect(path, timeout=30) as db:
            db.execute(
                "create index if not exists header_by_record on header (topition, offset_id)"
            )
        break
    except sqlite3.OperationalError as error:
        # The schema is made when tansu starts; until then there is no header table.
        if "no such table" not in str(error) or time.monotonic() > deadline:
            sys.exit(f"tansu-index-headers: {path}: {error}")
        time.sleep(0.2)
