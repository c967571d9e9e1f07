"""The local state database's schema, as an ordered list of migrations.

``PRAGMA user_version`` records how many have been applied; each runs once, in its
own transaction, so an upgrade of patchd upgrades the database in place.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: inventory history, update sightings, runs with items and transcripts
    """
    CREATE TABLE inventory (
        id INTEGER PRIMARY KEY,
        taken_at TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        document TEXT NOT NULL
    );
    CREATE TABLE update_sightings (
        backend TEXT NOT NULL,
        name TEXT NOT NULL,
        arch TEXT NOT NULL,
        version TEXT NOT NULL,
        classification TEXT NOT NULL,
        severity TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        installed_at TEXT,
        PRIMARY KEY (backend, name, arch, version)
    );
    CREATE TABLE advisories (
        backend TEXT NOT NULL,
        name TEXT NOT NULL,
        arch TEXT NOT NULL,
        version TEXT NOT NULL,
        cves TEXT NOT NULL,
        severity TEXT NOT NULL,
        origin TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        PRIMARY KEY (backend, name, arch, version)
    );
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('apply', 'rollback')),
        status TEXT NOT NULL,
        dry_run INTEGER NOT NULL,
        parent_run TEXT REFERENCES runs(id),
        started_at TEXT NOT NULL,
        finished_at TEXT,
        notes TEXT NOT NULL DEFAULT '[]'
    );
    CREATE TABLE run_items (
        run_id TEXT NOT NULL REFERENCES runs(id),
        seq INTEGER NOT NULL,
        backend TEXT NOT NULL,
        name TEXT NOT NULL,
        arch TEXT NOT NULL,
        from_version TEXT NOT NULL,
        to_version TEXT NOT NULL,
        update_id TEXT,
        classification TEXT,
        severity TEXT,
        cves TEXT NOT NULL DEFAULT '[]',
        outcome TEXT NOT NULL DEFAULT 'pending',
        found_version TEXT,
        detail TEXT NOT NULL DEFAULT '',
        rollback_available INTEGER NOT NULL DEFAULT 0,
        rollback_file TEXT,
        rollback_detail TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE run_transcript (
        run_id TEXT NOT NULL REFERENCES runs(id),
        seq INTEGER NOT NULL,
        at TEXT NOT NULL,
        argv TEXT NOT NULL,
        returncode INTEGER,
        duration_s REAL NOT NULL,
        output TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    CREATE INDEX runs_started ON runs(started_at);
    CREATE INDEX sightings_open ON update_sightings(installed_at);
    """,
    # 2: the policy in force, its protections, and every acceptance or refusal
    """
    CREATE TABLE policy_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        name TEXT,
        version INTEGER,
        sha256 TEXT,
        policy_path TEXT,
        issued_at TEXT,
        expires TEXT,
        activated_at TEXT,
        key_ids TEXT NOT NULL DEFAULT '[]',
        min_version INTEGER NOT NULL DEFAULT 0,
        clock_floor TEXT
    );
    INSERT INTO policy_state (id) VALUES (1);
    CREATE TABLE policy_events (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('accepted', 'refused', 'flagged')),
        reason TEXT NOT NULL,
        code TEXT NOT NULL,
        source TEXT NOT NULL,
        version INTEGER,
        sha256 TEXT
    );
    """,
    # 3: the write-ahead journal of patch runs, and change sets quarantined by a failed run
    """
    CREATE TABLE run_journal (
        run_id TEXT NOT NULL REFERENCES runs(id),
        seq INTEGER NOT NULL,
        step TEXT NOT NULL,
        detail TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE quarantine (
        policy_sha256 TEXT NOT NULL,
        update_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        reason TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (policy_sha256, update_id)
    );
    """,
    # 4: enrolment with a collector, and the outbox of signed reports (patchd.reporting)
    """
    CREATE TABLE reporting_enrolment (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        collector_url TEXT NOT NULL,
        endpoint_id TEXT NOT NULL,
        public_key TEXT NOT NULL,
        enrolled_at TEXT NOT NULL
    );
    CREATE TABLE report_outbox (
        seq INTEGER PRIMARY KEY,
        endpoint_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        envelope BLOB NOT NULL,
        size INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE report_outbox_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        next_seq INTEGER NOT NULL DEFAULT 1,
        last_report_at TEXT,
        failures INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT,
        last_delivery_at TEXT,
        last_delivered_seq INTEGER,
        last_error TEXT,
        last_error_at TEXT
    );
    INSERT INTO report_outbox_state (id) VALUES (1);
    CREATE TABLE report_drops (
        reason TEXT PRIMARY KEY,
        count INTEGER NOT NULL
    );
    """,
    # 5: an inventory's package list is kept once however many scans found it (most find
    # the list the scan before them found), so the history no longer holds 500 copies of
    # a list of thousands of packages. Rows kept before keep their lists inline.
    """
    CREATE TABLE package_lists (
        sha256 TEXT PRIMARY KEY,
        document TEXT NOT NULL
    );
    ALTER TABLE inventory ADD COLUMN packages_sha256 TEXT REFERENCES package_lists (sha256);
    CREATE INDEX inventory_package_lists ON inventory (packages_sha256);
    """,
    # 6: a sighting no scan lists any more, and that was not installed (a newer version
    # came first, or the repository dropped it), is marked unlisted: each scan reads only
    # the pending ones, which would otherwise grow for ever. Listed again, it is pending
    # again, with its first sighting. Cached advisories are kept only while pending.
    """
    ALTER TABLE update_sightings ADD COLUMN unlisted_at TEXT;
    DROP INDEX sightings_open;
    CREATE INDEX sightings_pending ON update_sightings (installed_at, unlisted_at);
    DELETE FROM advisories WHERE NOT EXISTS (
        SELECT 1 FROM update_sightings AS s
        WHERE s.backend = advisories.backend AND s.name = advisories.name
            AND s.arch = advisories.arch AND s.version = advisories.version
            AND s.installed_at IS NULL
    );
    """,
    # 7: retention (patchd.runs.retention): when the history was last pruned, and the time
    # its cutoffs were counted from (which moves forward at most two days a prune)
    """
    CREATE TABLE housekeeping (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        last_pruned_at TEXT,
        pruned_through TEXT
    );
    INSERT INTO housekeeping (id) VALUES (1);
    """,
)
