//! The repository schema, one SQL script per version (applied in order by [`super::migrate`]).

/// `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: bases, base change sets, rebased layers, resolutions, stacks, assignments, history.
    r#"
    CREATE TABLE bases (
        image_id    TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        top_layer   TEXT NOT NULL,
        layer_count INTEGER NOT NULL,
        first_seen  INTEGER NOT NULL,
        last_seen   INTEGER NOT NULL
    );
    -- B vs N comparisons, computed once per pair of base tops.
    CREATE TABLE base_changes (
        old_top  TEXT NOT NULL,
        new_top  TEXT NOT NULL,
        changes  TEXT NOT NULL,
        created  INTEGER NOT NULL,
        hits     INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (old_top, new_top)
    );
    CREATE TABLE rebased_layers (
        id           TEXT PRIMARY KEY,      -- sha256(parent_id + "+" + diff_id)
        parent_id    TEXT NOT NULL,
        diff_id      TEXT NOT NULL,
        source_layer TEXT NOT NULL,         -- the app layer as stored on the old base
        old_parent   TEXT NOT NULL,
        new_base     TEXT NOT NULL,         -- new base image id
        new_base_top TEXT NOT NULL,
        conflicts    TEXT NOT NULL,         -- JSON [Conflict]
        created      INTEGER NOT NULL,
        last_used    INTEGER NOT NULL,
        hits         INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE resolutions (
        id           TEXT PRIMARY KEY,
        rebased_top  TEXT NOT NULL,
        old_base_top TEXT NOT NULL,
        policy       TEXT NOT NULL,
        dir          TEXT,                  -- relative to the store; NULL when nothing to write
        decisions    TEXT NOT NULL,         -- JSON [{path, how}]
        created      INTEGER NOT NULL,
        last_used    INTEGER NOT NULL,
        hits         INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE stacks (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        image_id        TEXT NOT NULL,
        orig_top        TEXT NOT NULL,
        orig_layers     TEXT NOT NULL,      -- JSON ids, bottom first
        old_base_image  TEXT NOT NULL,
        new_base_image  TEXT NOT NULL,
        new_base_name   TEXT NOT NULL,
        new_base_layers TEXT NOT NULL,      -- JSON ids, bottom first
        app_layers      TEXT NOT NULL,      -- JSON source ids, bottom first
        rebased_layers  TEXT NOT NULL,      -- JSON rebased ids, bottom first
        resolution_id   TEXT REFERENCES resolutions(id),
        policy          TEXT NOT NULL,
        created         INTEGER NOT NULL,
        serves          INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX stacks_by_orig_top ON stacks(orig_top);
    -- Which stack an image is set to (absent = its original stack).
    CREATE TABLE image_assignments (
        image_id TEXT PRIMARY KEY,
        stack_id INTEGER NOT NULL REFERENCES stacks(id),
        set_at   INTEGER NOT NULL
    );
    -- Which stack each container (by read-write layer) was last mounted with (NULL = original).
    CREATE TABLE container_mounts (
        container_layer TEXT PRIMARY KEY,
        image_top       TEXT NOT NULL,
        stack_id        INTEGER REFERENCES stacks(id),
        first_mounted   INTEGER NOT NULL,
        last_mounted    INTEGER NOT NULL,
        mounts          INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE history (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        image_id   TEXT NOT NULL,
        action     TEXT NOT NULL CHECK (action IN ('rebase', 'rollback')),
        from_stack INTEGER,
        to_stack   INTEGER,
        undone     INTEGER NOT NULL DEFAULT 0,
        at         INTEGER NOT NULL
    );
    "#,
];

/// The schema version this build writes.
pub fn latest() -> i64 {
    MIGRATIONS.len() as i64
}
